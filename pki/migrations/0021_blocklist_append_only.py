"""The compromised-key blocklist is append-only: on PostgreSQL a trigger refuses any UPDATE or
DELETE of a ``pki_blockedkey`` row, whoever the role (as migration 0017's do for audit rows), so
a database writer cannot take a compromised key off it; the application role also loses those
privileges (docs/runbooks/database-roles.md, docker/entrypoint.sh). ``verify_audit`` reports a
key the trail records as blocked that is missing from the table.
"""

from django.db import migrations

TRIGGER = """
CREATE TRIGGER kmi_blockedkey_append_only BEFORE UPDATE OR DELETE ON pki_blockedkey
    FOR EACH ROW EXECUTE FUNCTION kmi_refuse_change();
"""
DROP_TRIGGER = "DROP TRIGGER IF EXISTS kmi_blockedkey_append_only ON pki_blockedkey;"


def add_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGER, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_TRIGGER, params=None)


class Migration(migrations.Migration):
    dependencies = [("pki", "0020_ca_creation_audit_mac")]

    operations = [migrations.RunPython(add_trigger, drop_trigger)]
