"""The compromised-key blocklist is append-only: on PostgreSQL a trigger refuses any UPDATE or
DELETE of a ``pki_blockedkey`` row, whoever the role (as migration 0017's do for audit rows), so
a database writer cannot take a compromised key off it; the application role also loses those
privileges (docs/runbooks/database-roles.md, docker/entrypoint.sh). ``verify_audit`` reports a
key the trail records as blocked that is missing from the table.
"""

from django.db import migrations

from pki.migrations._postgresql import on_postgresql

TRIGGER = """
CREATE TRIGGER kmi_blockedkey_append_only BEFORE UPDATE OR DELETE ON pki_blockedkey
    FOR EACH ROW EXECUTE FUNCTION kmi_refuse_change();
"""
DROP_TRIGGER = "DROP TRIGGER IF EXISTS kmi_blockedkey_append_only ON pki_blockedkey;"


class Migration(migrations.Migration):
    dependencies = [("pki", "0020_ca_creation_audit_mac")]

    operations = [on_postgresql(TRIGGER, DROP_TRIGGER)]
