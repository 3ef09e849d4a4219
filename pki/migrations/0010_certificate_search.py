"""Certificate search: a stored ``search_text`` column and, on PostgreSQL, its trigram index.

The API's ``q=`` and the admin's search box look for a substring of the subject, the SAN lines
or the serial, case-insensitively: ``search_text__icontains`` compiles to
``UPPER(search_text::text) LIKE UPPER('%term%')``. Without an index every search that matches
little reads the whole table; a GIN trigram index on the same expression (pg_trgm, shipped with
PostgreSQL and trusted, so the database owner may create it) serves any term of three
characters or more. The index is built CONCURRENTLY (outside a transaction) so issuance goes on
while a large table is indexed. SQLite, the no-setup default, keeps the plain scan.
"""

import django.db.models.functions.text
from django.db import migrations, models

INDEX = "pki_cert_search_trgm"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} "
        "ON pki_certificate USING gin (upper(search_text) gin_trgm_ops)"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("pki", "0009_acme_order_csr"),
    ]

    operations = [
        migrations.AddField(
            model_name="certificate",
            name="search_text",
            field=models.GeneratedField(
                db_persist=True,
                expression=django.db.models.functions.text.Concat(
                    "subject",
                    models.Value("\n"),
                    "san_text",
                    models.Value("\n"),
                    "serial",
                    output_field=models.TextField(),
                ),
                help_text="subject, SAN lines and serial, for search",
                output_field=models.TextField(),
            ),
        ),
        migrations.RunPython(create_index, drop_index),
    ]
