"""Issue 10 §2: an audit trail that a database writer cannot rewrite unnoticed.

Each attack of the outside review is replayed here as raw SQL by someone who can write every
table (the PostgreSQL triggers are switched off for it, as a table owner could) and who knows how
the chain is hashed, but not SECRET_KEY and not the KEK. Each one passes the unkeyed check of
before (``unkeyed_verify_passes``: hash links and heads only) and is caught by ``verify_trail``,
against the database's own signed checkpoints and against the exported checkpoint file.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from unittest import mock

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from pki import audit
from pki.access import grant_role
from pki.audit_checkpoints import (
    audit_key,
    latest_checkpoint,
    make_checkpoint,
    public_key_pem,
    read_exported,
    verify_trail,
)
from pki.exceptions import AuditChainBroken
from pki.models import AuditCheckpoint, AuditEvent, AuditStream, Certificate, SealedKey
from pki.revocation import revoke_certificate
from pki.signals import checkpoint_made
from tests.conftest import NOW
from tests.support.certs import issue
from tests.support.tamper import owner_sql as sql

pytestmark = pytest.mark.django_db


@pytest.fixture
def export(settings, tmp_path) -> Path:
    """The checkpoint file of this test."""
    path = tmp_path / "exported" / "checkpoints.jsonl"
    settings.KMI_AUDIT_CHECKPOINT_PATH = str(path)
    return path


@pytest.fixture
def trail(issuing_ca, profile, export) -> dict[str, object]:
    """CAs, three certificates (one revoked for keyCompromise), a grant, then a checkpoint."""
    certs = [issue(issuing_ca, profile) for _ in range(3)]
    revoke_certificate(certificate=certs[0], reason="keyCompromise", actor="alice", now=NOW)
    user = get_user_model().objects.create_user(username="bob")
    grant_role(user=user, role="auditor", actor="alice", now=NOW)
    checkpoint = make_checkpoint(actor="test", now=NOW)
    return {"certs": certs, "checkpoint": checkpoint, "user": user}


def rechain(stream: str) -> None:
    """Recompute a lane's hashes and head as the attacker can (the MACs they cannot)."""
    prev, seq = audit.GENESIS, 0
    for seq, event in enumerate(AuditEvent.objects.filter(stream=stream).order_by("seq"), start=1):
        event.seq, event.prev_hash = seq, prev
        event.hash = audit.event_hash(event)
        sql(
            "UPDATE pki_auditevent SET seq = %s, prev_hash = %s, hash = %s WHERE id = %s",
            [seq, event.prev_hash, event.hash, event.pk],
        )
        prev = event.hash
    sql("UPDATE pki_auditstream SET seq = %s, head = %s WHERE name = %s", [seq, prev, stream])


def unkeyed_verify_passes() -> bool:
    """What verify_audit checked before: every lane's hash links and head, nothing keyed."""
    with mock.patch.object(audit, "mac_verifies", return_value=True):
        return audit.verify_chain().ok


def problems(report) -> str:
    return "\n".join(f"{b.stream}: {b.problem}" for b in report.breaks)


def busiest_lane() -> str:
    return AuditStream.objects.filter(name__startswith="ca:").order_by("-seq").first().name


def test_a_checkpoint_is_signed_stored_exported_and_announced(
    trail, export, django_capture_on_commit_callbacks
):
    seen: list[int] = []

    def receiver(checkpoint_id: int, **_: object) -> None:
        seen.append(checkpoint_id)

    checkpoint_made.connect(receiver, dispatch_uid="t-cp")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            second = make_checkpoint(actor="test", now=NOW)
    finally:
        checkpoint_made.disconnect(dispatch_uid="t-cp")
    first = trail["checkpoint"]
    assert (first.number, second.number) == (1, 2)
    assert second.prev_digest == first.digest
    assert second.events == AuditEvent.objects.count() == sum(s.seq for s in AuditStream.objects.all())
    assert seen == [second.pk]
    assert latest_checkpoint() == second
    lines, bad = read_exported(export)
    assert not bad
    assert [c.body["number"] for c in lines] == [1, 2]
    assert json.loads(lines[1].payload)["lanes"] == second.lanes
    # Anyone can check a line with the exported public key alone.
    line = json.loads(export.read_text().splitlines()[1])
    public = serialization.load_der_public_key(base64.b64decode(line["public_key"]))
    assert isinstance(public, ed25519.Ed25519PublicKey)
    public.verify(base64.b64decode(line["signature"]), line["payload"].encode())
    assert public_key_pem(second.key) == public_key_pem(audit_key(actor="test"))
    report = verify_trail(checkpoints=export)
    assert report.ok, problems(report)


def test_the_audit_key_is_a_sealed_kmi_key_made_once_and_audited(trail):
    key = trail["checkpoint"].key
    assert (key.purpose, key.key_type, key.backend) == ("audit", "ed25519", "encrypted")
    assert SealedKey.objects.filter(key_id=key.pk).exists()  # sealed under the KEK like a CA key
    assert audit_key(actor="test") == key
    assert AuditEvent.objects.filter(action="key.generated", object_id=str(key.pk)).count() == 1


def test_attack_delete_the_last_events_and_reset_the_head(trail, export):
    lane = busiest_lane()
    last = AuditStream.objects.get(name=lane).seq
    sql("DELETE FROM pki_auditevent WHERE stream = %s AND seq > %s", [lane, last - 2])
    rechain(lane)
    assert unkeyed_verify_passes()
    report = verify_trail()
    assert "the database lost some" in problems(report)
    assert "the database lost some" in problems(verify_trail(checkpoints=export))


def test_attack_rewrite_a_lane_from_an_event_onward(trail, export):
    lane = busiest_lane()
    victim = AuditEvent.objects.filter(stream=lane).order_by("seq")[1]
    sql("UPDATE pki_auditevent SET actor = 'mallory' WHERE id = %s", [victim.pk])
    rechain(lane)
    assert unkeyed_verify_passes()
    report = verify_trail(checkpoints=export)
    assert "MAC does not verify" in problems(report)
    assert "it was rewritten since" in problems(report)


def test_attack_delete_a_whole_lane(trail, export):
    lane = busiest_lane()
    sql("DELETE FROM pki_auditevent WHERE stream = %s", [lane])
    sql("DELETE FROM pki_auditstream WHERE name = %s", [lane])
    assert unkeyed_verify_passes()
    for report in (verify_trail(), verify_trail(checkpoints=export)):
        assert f"{lane}: checkpoint" in problems(report)
        assert "the database lost some" in problems(report)


def test_attack_append_a_forged_administrator_grant(trail, export):
    """After the last checkpoint: only the MAC can tell, and it does."""
    head = AuditStream.objects.filter(name__startswith="global/").order_by("-seq").first()
    body = audit.canonical_body(
        stream=head.name,
        timestamp=NOW,
        actor="alice",
        action="access.granted",
        object_type="user",
        object_id=str(trail["user"].pk),
        details={"role": "administrator"},
    )
    forged_hash = audit.chain_hash(head.head, body)
    sql(
        "INSERT INTO pki_auditevent (stream, seq, timestamp, actor, action, object_type, object_id, "
        "details, prev_hash, hash, mac) VALUES (%s, %s, %s, 'alice', 'access.granted', 'user', %s, "
        "%s::jsonb, %s, %s, %s)",
        [
            head.name,
            head.seq + 1,
            NOW,
            str(trail["user"].pk),
            '{"role": "administrator"}',
            head.head,
            forged_hash,
            AuditEvent.objects.last().mac,  # the best an attacker without SECRET_KEY can do
        ],
    )
    sql("UPDATE pki_auditstream SET seq = seq + 1, head = %s WHERE name = %s", [forged_hash, head.name])
    assert unkeyed_verify_passes()
    assert "MAC does not verify (forged or rewritten)" in problems(verify_trail(checkpoints=export))
    # And the next checkpoint refuses to sign it.
    with pytest.raises(AuditChainBroken, match="MAC does not verify"):
        make_checkpoint(actor="test", now=NOW)
    assert AuditCheckpoint.objects.count() == 1


def test_attack_erase_a_key_compromise_revocation_and_rechain(trail, export):
    revoked = trail["certs"][0]
    event = AuditEvent.objects.get(action="certificate.revoked", object_id=str(revoked.pk))
    sql("DELETE FROM pki_auditevent WHERE id = %s", [event.pk])
    sql("UPDATE pki_certificate SET revoked_at = NULL, revocation_reason = '' WHERE id = %s", [revoked.pk])
    rechain(event.stream)
    assert unkeyed_verify_passes()
    assert Certificate.objects.get(pk=revoked.pk).revoked_at is None
    report = verify_trail(checkpoints=export)
    assert "MAC does not verify" in problems(report) or "the database lost some" in problems(report)
    assert f"{event.stream}: " in problems(report)


def test_attack_erase_a_revocation_made_after_the_last_checkpoint(trail, profile, kmi_settings):
    """Between checkpoints the MAC of the next event (it links to the erased one) tells."""
    # kmi_settings restores settings.KMI, then forgets the cached settings: a reset here, before
    # the restore, let the rest of the test cache one lane for the tests after it in this process.
    kmi_settings(AUDIT_LANES=1)
    cert = trail["certs"][1]
    revoke_certificate(certificate=cert, reason="keyCompromise", actor="alice", now=NOW)
    issue(cert.ca, profile, key_name="ec-p384")  # (another key) the next event of the same (only) lane
    event = AuditEvent.objects.get(action="certificate.revoked", object_id=str(cert.pk))
    assert AuditEvent.objects.filter(stream=event.stream, seq__gt=event.seq).exists()
    sql("DELETE FROM pki_auditevent WHERE id = %s", [event.pk])
    sql("UPDATE pki_certificate SET revoked_at = NULL, revocation_reason = '' WHERE id = %s", [cert.pk])
    rechain(event.stream)
    assert unkeyed_verify_passes()
    assert "MAC does not verify" in problems(verify_trail())


def test_attack_empty_the_trail(trail, export):
    sql("DELETE FROM pki_auditcheckpoint")
    sql("DELETE FROM pki_auditevent")
    sql("DELETE FROM pki_auditstream")
    assert unkeyed_verify_passes()
    assert audit.verify_chain().events == 0
    assert "an audit key exists but the database holds no checkpoint" in problems(verify_trail())
    report = verify_trail(checkpoints=export)
    assert "this checkpoint was deleted from the database" in problems(report)
    assert "the database lost some" in problems(report)
    # Even with the audit key gone too, CAs without a trail are a broken trail.
    sql("DELETE FROM pki_sealedkey WHERE key_id IN (SELECT id FROM pki_key WHERE purpose = 'audit')")
    sql("DELETE FROM pki_key WHERE purpose = 'audit'")
    assert "the trail is empty but the database holds 2 CAs" in problems(verify_trail())


def test_cross_check_a_valid_certificate_whose_revocation_is_recorded(trail):
    revoked = trail["certs"][0]
    sql("UPDATE pki_certificate SET revoked_at = NULL WHERE id = %s", [revoked.pk])
    assert f"certificate {revoked.serial} is valid but the trail records its revocation" in problems(
        verify_trail()
    )


def test_cross_check_a_missing_certificate_whose_issuance_is_recorded(trail):
    gone = trail["certs"][2]
    sql("DELETE FROM pki_certificate WHERE id = %s", [gone.pk])
    assert f"certificate {gone.serial} is missing although the trail records its issued" in problems(
        verify_trail()
    )


def test_cross_check_a_key_taken_off_the_blocklist_whose_blocking_is_recorded(trail):
    from pki.models import BlockedKey

    blocked = BlockedKey.objects.get(spki_sha256=trail["certs"][0].key_fingerprint)
    sql("DELETE FROM pki_blockedkey WHERE id = %s", [blocked.pk])
    assert (
        f"key {blocked.spki_sha256} is off the blocklist although the trail records it blocked"
        in problems(verify_trail())
    )


def test_cross_check_a_grant_the_trail_never_recorded(trail, issuing_ca):
    """A database writer makes themselves administrator with a row: verify_audit names it."""
    mallory = get_user_model().objects.create_user(username="mallory")
    sql(
        "INSERT INTO pki_rolegrant (user_id, role, ca_id, profile_id, granted_by, created_at) "
        "VALUES (%s, 'administrator', NULL, NULL, 'alice', now())",
        [mallory.pk],
    )
    found = problems(verify_trail())
    assert "mallory holds the administrator role but the trail records no such grant" in found
    assert "bob holds" not in found  # granted through grant_role: in the trail


def test_a_checkpoint_signed_by_another_key_is_refused(trail, export):
    """A database writer who signs their own checkpoints with their own key gets nowhere."""
    row = trail["checkpoint"]
    mallory = ed25519.Ed25519PrivateKey.generate()
    forged = base64.b64encode(mallory.sign(row.payload.encode())).decode()
    sql("UPDATE pki_auditcheckpoint SET signature = %s WHERE id = %s", [forged, row.pk])
    assert "its signature does not verify with a trusted audit key" in problems(verify_trail())


def test_pinned_public_key_and_the_commands(trail, export, tmp_path):
    pem = tmp_path / "audit.pem"
    call_command("checkpoint_audit", "--public-key", str(pem))
    out = io.StringIO()
    call_command("checkpoint_audit", stdout=out)
    assert out.getvalue().startswith("checkpoint 2: ")
    out = io.StringIO()
    call_command("verify_audit", "--checkpoints", str(export), "--public-key", str(pem), stdout=out)
    assert out.getvalue().splitlines()[-1].endswith(" events: OK (2 checkpoints)")
    lane = busiest_lane()
    sql("DELETE FROM pki_auditevent WHERE stream = %s", [lane])
    sql("DELETE FROM pki_auditstream WHERE name = %s", [lane])
    out = io.StringIO()
    with pytest.raises(CommandError, match="audit trail broken"):
        call_command("verify_audit", "--checkpoints", str(export), stdout=out)
    assert f"BROKEN {lane}" in out.getvalue()


def test_verify_audit_refuses_a_missing_file_and_a_bad_key(trail, tmp_path):
    with pytest.raises(CommandError, match="cannot read checkpoint file"):
        call_command("verify_audit", "--checkpoints", str(tmp_path / "nope.jsonl"))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(CommandError, match="is not a PEM public key"):
        call_command("verify_audit", "--public-key", str(bad))
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("{not json\n")
    report = verify_trail(checkpoints=garbage)
    assert "line 1 is not an exported checkpoint" in problems(report)


def test_the_database_refuses_to_rewrite_audit_rows_or_delete_certificates(trail):
    event = AuditEvent.objects.first()
    revoked = trail["certs"][0].pk  # revoked for keyCompromise
    for statement, params in (
        ("UPDATE pki_auditevent SET actor = 'mallory' WHERE id = %s", [event.pk]),
        ("DELETE FROM pki_auditevent WHERE id = %s", [event.pk]),
        ("DELETE FROM pki_auditcheckpoint", []),
        ("UPDATE pki_auditcheckpoint SET events = 0", []),
        ("DELETE FROM pki_certificate WHERE id = %s", [trail["certs"][0].pk]),
        ("DELETE FROM pki_key WHERE purpose = 'audit'", []),
        ("DELETE FROM pki_blockedkey", []),
        ("UPDATE pki_blockedkey SET spki_sha256 = repeat('0', 64)", []),
        # A revocation is final: not cleared, not re-dated, its reason only raised to keyCompromise.
        ("UPDATE pki_certificate SET revoked_at = NULL, revocation_reason = '' WHERE id = %s", [revoked]),
        ("UPDATE pki_certificate SET revoked_at = revoked_at + interval '1 day' WHERE id = %s", [revoked]),
        ("UPDATE pki_certificate SET revocation_reason = 'superseded' WHERE id = %s", [revoked]),
    ):
        with (
            pytest.raises(DatabaseError, match="is refused"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement, params)
    with pytest.raises(DatabaseError, match="is refused"), transaction.atomic():
        Certificate.objects.filter(pk=trail["certs"][1].pk).delete()
    with pytest.raises(DatabaseError, match="a revocation is final"), transaction.atomic():
        Certificate.objects.filter(pk=revoked).update(revoked_at=None, revocation_reason="")
    assert verify_trail().ok


def test_each_checkpoint_is_posted_to_the_webhook_once_stored(
    trail, settings, webhook_receiver, django_capture_on_commit_callbacks
):
    settings.KMI_AUDIT_CHECKPOINT_WEBHOOK_URL = webhook_receiver.url
    with django_capture_on_commit_callbacks(execute=True):
        row = make_checkpoint(actor="test", now=NOW)
    [(headers, body)] = webhook_receiver.calls
    assert headers["x-kmi-event"] == "audit.checkpoint"
    line = json.loads(body)
    assert line["payload"] == row.payload
    assert line["signature"] == row.signature
    # A webhook that fails is logged; the checkpoint (and its file line) stays.
    webhook_receiver.status = 500
    with django_capture_on_commit_callbacks(execute=True):
        make_checkpoint(actor="test", now=NOW)
    assert AuditCheckpoint.objects.count() == 3


def test_a_process_without_the_kek_verifies_with_the_rows_public_key(trail, without_kek):
    without_kek()
    report = verify_trail()
    assert report.ok, problems(report)
    assert any("cannot be unsealed here" in note for note in report.notes)


def test_attack_renumber_events_the_mac_covers_each_events_place(trail, export):
    """The MAC covers the lane sequence number: an event moved to another place does not verify,
    whatever else the attacker re-links."""
    lane = busiest_lane()
    last = AuditEvent.objects.filter(stream=lane).order_by("-seq").first()
    assert audit.mac_verifies(last)
    sql("UPDATE pki_auditevent SET seq = seq + 1000 WHERE id = %s", [last.pk])
    sql("UPDATE pki_auditstream SET seq = seq + 1000 WHERE name = %s", [lane])
    moved = AuditEvent.objects.get(pk=last.pk)
    assert not audit.mac_verifies(moved)  # with the v1 MAC (previous hash and body only) it did
    assert f"{lane}: " in problems(verify_trail(checkpoints=export))


def test_the_migration_gives_v1_macs_their_v2_mac_and_leaves_forgeries_failing(trail):
    """Events MAC'd before the MAC covered the sequence number get the new MAC when their old
    one verifies (migration 0020_ca_creation_audit_mac); a forged MAC stays refused."""
    import hashlib
    import hmac
    import importlib
    from pathlib import Path

    from django.apps import apps

    module = next(Path(audit.__file__).parent.glob("migrations/0020_ca_creation_audit_mac.py"))
    migration = importlib.import_module(f"pki.migrations.{module.stem}")
    lane = busiest_lane()
    honest, forged = AuditEvent.objects.filter(stream=lane).order_by("seq")[:2]
    v1_key = hmac.new(str(settings_secret()).encode(), b"kmi audit event mac v1", hashlib.sha256).digest()
    v1 = hmac.new(v1_key, f"{honest.prev_hash}\n{audit.stored_body(honest)}".encode(), hashlib.sha256)
    sql("UPDATE pki_auditevent SET mac = %s WHERE id = %s", [v1.hexdigest(), honest.pk])
    sql("UPDATE pki_auditevent SET mac = %s WHERE id = %s", ["0" * 64, forged.pk])
    assert not audit.verify_chain().ok
    with connection.schema_editor() as editor:
        migration.mac_v2(apps, editor)
    assert audit.mac_verifies(AuditEvent.objects.get(pk=honest.pk))
    assert not audit.mac_verifies(AuditEvent.objects.get(pk=forged.pk))
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE pki_auditevent SET mac = '' WHERE id = %s", [honest.pk])


def settings_secret() -> str:
    from django.conf import settings

    return str(settings.SECRET_KEY)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_events_appended_while_a_checkpoint_is_made_are_covered_by_the_next(issuing_ca, profile, export):
    """A checkpoint covers the heads it read; events committed while it is being made (here: while
    it waits to insert its row) are covered by the next one, never skipped."""
    import threading

    from django.db import connections

    from tests.support.processes import wait_for

    issue(issuing_ca, profile)
    first = make_checkpoint(actor="test")
    # Another transaction holds the next checkpoint number: the checkpointer reads the heads,
    # verifies and signs, then waits on that row's unique index until it is released.
    blocker = connections.create_connection("default")
    blocker.set_autocommit(False)
    with blocker.cursor() as cursor:
        cursor.execute(
            "INSERT INTO pki_auditcheckpoint (number, created_at, key_id, lanes, events, prev_digest, "
            "digest, payload, signature) VALUES (%s, now(), %s, '{}', 0, '', '', '', '')",
            [first.number + 1, first.key_id],
        )
    made: list[AuditCheckpoint] = []
    errors: list[BaseException] = []

    def checkpointer() -> None:
        try:
            made.append(make_checkpoint(actor="test"))
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=checkpointer)
    thread.start()
    try:

        def waiting() -> bool:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                    ['INSERT INTO "pki_auditcheckpoint"%'],
                )
                return bool(cursor.fetchone()[0])

        wait_for(waiting, timeout=60, what="the checkpointer waiting to insert its row")
        issue(issuing_ca, profile)  # committed while the checkpoint is being made
        with transaction.atomic():
            audit.record(action="test.during_checkpoint", actor="test", details={})
    finally:
        blocker.rollback()
        blocker.close()
        thread.join(timeout=120)
    assert not errors, errors
    during = made[0]
    heads = dict(AuditStream.objects.filter(seq__gt=0).values_list("name", "seq"))
    behind = {name for name, seq in heads.items() if during.lanes.get(name, [0])[0] < seq}
    assert behind, "the events appended meanwhile are not in the checkpoint that was being made"
    following = make_checkpoint(actor="test")
    assert {name: following.lanes[name][0] for name in heads} == heads
    report = verify_trail(checkpoints=export)
    assert report.ok, problems(report)
