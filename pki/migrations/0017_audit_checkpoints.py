"""Audit checkpoints, per-event MACs, and the triggers that keep audit rows and certificates.

The triggers refuse, on PostgreSQL, any UPDATE or DELETE of an audit event or checkpoint, any
DELETE of a certificate, and any DELETE of the audit key's row, whoever the role (only the
tables' owner can disable them: a deployment migrates as the owner and runs as another role;
docs/runbooks/database-roles.md). TRUNCATE is a separate privilege the application role lacks.
"""

import django.db.models.deletion
from django.db import migrations, models

TRIGGERS = """
CREATE OR REPLACE FUNCTION kmi_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'KMI: % on % is refused: this table is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER kmi_auditevent_append_only BEFORE UPDATE OR DELETE ON pki_auditevent
    FOR EACH ROW EXECUTE FUNCTION kmi_refuse_change();
CREATE TRIGGER kmi_auditcheckpoint_append_only BEFORE UPDATE OR DELETE ON pki_auditcheckpoint
    FOR EACH ROW EXECUTE FUNCTION kmi_refuse_change();
CREATE TRIGGER kmi_certificate_no_delete BEFORE DELETE ON pki_certificate
    FOR EACH ROW EXECUTE FUNCTION kmi_refuse_change();
CREATE TRIGGER kmi_audit_key_no_delete BEFORE DELETE ON pki_key
    FOR EACH ROW WHEN (OLD.purpose = 'audit') EXECUTE FUNCTION kmi_refuse_change();
"""

DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS kmi_audit_key_no_delete ON pki_key;
DROP TRIGGER IF EXISTS kmi_certificate_no_delete ON pki_certificate;
DROP TRIGGER IF EXISTS kmi_auditcheckpoint_append_only ON pki_auditcheckpoint;
DROP TRIGGER IF EXISTS kmi_auditevent_append_only ON pki_auditevent;
DROP FUNCTION IF EXISTS kmi_refuse_change();
"""


def mac_existing_events(apps, schema_editor):
    """Give every event written before this migration its MAC (the trail was trusted up to here)."""
    from pki.audit import event_mac, stored_body

    AuditEvent = apps.get_model("pki", "AuditEvent")
    batch = []
    for event in AuditEvent.objects.filter(mac="").order_by("id").iterator(chunk_size=2000):
        event.mac = event_mac(event.seq, event.prev_hash, stored_body(event))
        batch.append(event)
        if len(batch) == 2000:
            AuditEvent.objects.bulk_update(batch, ["mac"])
            batch = []
    if batch:
        AuditEvent.objects.bulk_update(batch, ["mac"])


def add_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGERS, params=None)


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_TRIGGERS, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("pki", "0016_policy"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="mac",
            field=models.CharField(default="", max_length=64),
        ),
        migrations.AlterField(
            model_name="key",
            name="purpose",
            field=models.CharField(
                choices=[
                    ("ca", "CA signing"),
                    ("ocsp", "OCSP responder"),
                    ("end_entity", "End entity (server-generated)"),
                    ("external", "External (public key only)"),
                    ("audit", "Audit checkpoint signing"),
                ],
                default="ca",
                max_length=16,
            ),
        ),
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("number", models.PositiveBigIntegerField(unique=True)),
                ("created_at", models.DateTimeField()),
                ("lanes", models.JSONField(default=dict, help_text="lane name -> [seq, head hash]")),
                ("events", models.PositiveBigIntegerField()),
                ("prev_digest", models.CharField(max_length=64)),
                ("digest", models.CharField(help_text="SHA-256 of the payload", max_length=64)),
                ("payload", models.TextField()),
                ("signature", models.TextField(help_text="base64 signature over the payload")),
                (
                    "key",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="audit_checkpoints",
                        to="pki.key",
                    ),
                ),
            ],
            options={
                "ordering": ["number"],
            },
        ),
        migrations.RunPython(mac_existing_events, migrations.RunPython.noop),
        migrations.RunPython(add_triggers, drop_triggers),
    ]
