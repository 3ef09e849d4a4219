"""CA creations waiting for a second administrator (pki.ca_creation), and audit event MACs that
cover the lane sequence number (pki.audit.event_mac, "v2").

Events written with the v1 MAC (previous hash and body only) are given their v2 MAC when their v1
MAC verifies under SECRET_KEY or a fallback (the trail was trusted up to here, as in 0017); an
event whose v1 MAC does not verify keeps it, and goes on failing verification. The append-only
trigger is switched off for that one UPDATE: migrations run as the tables' owner.
"""

import hashlib
import hmac

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

_V1_LABEL = b"kmi audit event mac v1"


def _v1_macs(prev_hash, body):
    message = f"{prev_hash}\n{body}".encode()
    for secret in (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ())):
        key = hmac.new(str(secret).encode(), _V1_LABEL, hashlib.sha256).digest()
        yield hmac.new(key, message, hashlib.sha256).hexdigest()


def mac_v2(apps, schema_editor):
    """Re-MAC every event whose v1 MAC verifies with the v2 MAC (which covers its seq)."""
    from pki.audit import event_mac, stored_body

    AuditEvent = apps.get_model("pki", "AuditEvent")
    postgres = schema_editor.connection.vendor == "postgresql"
    batch = []

    def flush():
        if postgres:
            schema_editor.execute("ALTER TABLE pki_auditevent DISABLE TRIGGER kmi_auditevent_append_only")
        AuditEvent.objects.bulk_update(batch, ["mac"])
        if postgres:
            schema_editor.execute("ALTER TABLE pki_auditevent ENABLE TRIGGER kmi_auditevent_append_only")
        batch.clear()

    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        body = stored_body(event)
        if any(hmac.compare_digest(mac, event.mac) for mac in _v1_macs(event.prev_hash, body)):
            event.mac = event_mac(event.seq, event.prev_hash, body)
            batch.append(event)
            if len(batch) == 2000:
                flush()
    if batch:
        flush()


class Migration(migrations.Migration):

    dependencies = [
        ('pki', '0019_device_enrollment'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='CACreation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.SlugField(max_length=64)),
                ('subject', models.TextField()),
                ('key_type', models.CharField(max_length=16)),
                ('validity_days', models.PositiveIntegerField()),
                ('path_length', models.PositiveIntegerField(blank=True, null=True)),
                ('name_constraints', models.JSONField(blank=True, null=True)),
                ('state', models.CharField(choices=[('pending', 'Waiting for a second person'), ('approved', 'Approved'), ('done', 'Done'), ('cancelled', 'Cancelled')], default='pending', max_length=16)),
                ('approvals_required', models.PositiveIntegerField(help_text='distinct other administrators who approve')),
                ('approvals', models.JSONField(blank=True, default=list)),
                ('requested_by', models.CharField(help_text='audit actor who asked', max_length=150)),
                ('decided_by', models.CharField(blank=True, help_text='who approved last or rejected', max_length=150)),
                ('reason', models.TextField(blank=True, help_text='why it was rejected or failed')),
                ('created_at', models.DateTimeField()),
                ('decided_at', models.DateTimeField(blank=True, null=True)),
                ('ca', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='creation', to='pki.certificateauthority')),
                ('parent', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='pki.certificateauthority')),
                ('requester', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at', '-pk'],
                'constraints': [models.UniqueConstraint(condition=models.Q(('state__in', ['pending', 'approved'])), fields=('name',), name='pki_cacreation_one_open_per_name')],
            },
        ),
        migrations.RunPython(mac_v2, migrations.RunPython.noop),
    ]
