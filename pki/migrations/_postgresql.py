"""For migrations: SQL that only PostgreSQL runs (triggers and their functions; SQLite has none).

Not a migration itself: Django's loader skips modules whose names start with ``_``.
"""

from django.db import migrations


def on_postgresql(forward: str, backward: str) -> migrations.RunPython:
    """A ``RunPython`` that executes ``forward`` (``backward`` when unapplied) on PostgreSQL only."""

    def run(sql: str):
        def execute(apps, schema_editor):
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.execute(sql, params=None)

        return execute

    return migrations.RunPython(run(forward), run(backward))
