"""Publishing CRLs: content, numbering, partitions, retention, files, and the scheduler's view."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading

import pytest
from cryptography import x509
from django.db import connection

from pki import crl as crl_module
from pki.crl import mark_stale, publish_crl, publish_due_crls, set_crl_shards
from pki.enrollment import sign_csr
from pki.exceptions import InvalidState, NotFound, PolicyViolation
from pki.generations import current_generation
from pki.models import (
    AuditEvent,
    Certificate,
    CertificateAuthority,
    CertificateRevocationList,
    CRLStaleMark,
    RevocationReason,
)
from pki.revocation import release_hold, revoke_certificate
from pki.x509.serials import random_serial, serial_hex
from tests.conftest import NOW, load_key, make_csr

pytestmark = pytest.mark.django_db

REASONS = [r for r in RevocationReason.values if r != RevocationReason.REMOVE_FROM_CRL]


def revoked_row(
    ca: CertificateAuthority,
    *,
    revoked_at: dt.datetime,
    reason: str,
    invalidity_date: dt.datetime | None = None,
    serial: int | None = None,
    not_after: dt.datetime | None = None,
    crl_shard: int | None = None,
) -> Certificate:
    """A revoked certificate row (no DER needed for the CRL), for dates no real clock gives."""
    serial = serial if serial is not None else random_serial()
    return Certificate.objects.create(
        ca=ca,
        serial=serial_hex(serial),
        der=b"",
        subject="CN=row",
        not_before=revoked_at - dt.timedelta(days=1),
        not_after=not_after or dt.datetime(2055, 1, 1, tzinfo=dt.UTC),
        fingerprint_sha256=hashlib.sha256(serial_hex(serial).encode() + ca.name.encode()).hexdigest(),
        key_fingerprint="0" * 64,
        revoked_at=revoked_at,
        revocation_reason=reason,
        invalidity_date=invalidity_date,
        crl_shard=crl_shard,
        created_at=revoked_at,
    )


def reference_crl(
    ca: CertificateAuthority, key_name: str, ours: x509.CertificateRevocationList
) -> x509.CertificateRevocationList:
    """The same CRL built by ``cryptography`` from the database rows, entries in our order."""
    rows = {c.serial_int: c for c in Certificate.objects.filter(ca=ca, revoked_at__isnull=False)}
    entries = []
    for ours_entry in ours:
        row = rows[ours_entry.serial_number]
        builder = (
            x509.RevokedCertificateBuilder()
            .serial_number(row.serial_int)
            .revocation_date(row.revoked_at.replace(microsecond=0))
        )
        if row.revocation_reason != RevocationReason.UNSPECIFIED:
            builder = builder.add_extension(
                x509.CRLReason(RevocationReason(row.revocation_reason).x509()), critical=False
            )
        if row.invalidity_date is not None:
            builder = builder.add_extension(
                x509.InvalidityDate(row.invalidity_date.replace(microsecond=0, tzinfo=None)), critical=False
            )
        entries.append(builder.build())
    ski = ca.x509_certificate().extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    extensions = [
        x509.Extension(
            x509.AuthorityKeyIdentifier.oid,
            False,
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
        ),
        x509.Extension(
            x509.CRLNumber.oid,
            False,
            x509.CRLNumber(ours.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number),
        ),
    ]
    algorithm = ours.signature_hash_algorithm
    return x509.CertificateRevocationListBuilder(
        issuer_name=ca.x509_certificate().subject,
        last_update=ours.last_update_utc,
        next_update=ours.next_update_utc,
        extensions=extensions,
        revoked_certificates=entries,
    ).sign(load_key(key_name), algorithm)  # type: ignore[arg-type]


@pytest.mark.parametrize("key_name", ["ec-p256", "rsa-2048", "ed25519", "ec-p384"])
@pytest.mark.parametrize(
    "now", [NOW, dt.datetime(2051, 3, 1, 8, 30, 15, 123456, tzinfo=dt.UTC)], ids=["2026", "2051"]
)
def test_crl_matches_cryptography_builder_entry_by_entry(fixture_ca, key_name, now):
    ca = fixture_ca(f"ca-{key_name}", key_name)
    times = [
        dt.datetime(2026, 5, 1, 10, 0, 1, 999999, tzinfo=dt.UTC),
        dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
        dt.datetime(2050, 1, 1, 0, 0, 0, tzinfo=dt.UTC),
        dt.datetime(2051, 2, 28, 12, 0, tzinfo=dt.UTC),
    ]
    for i, reason in enumerate(REASONS):
        when = times[i % len(times)]
        if when > now:
            when = now - dt.timedelta(hours=i)
        invalid = when - dt.timedelta(days=2, seconds=i) if i % 2 else None
        serial = [1, 0x80, 0xFF, (1 << 159) - 1][i] if i < 4 else random_serial()
        revoked_row(ca, revoked_at=when, reason=reason, invalidity_date=invalid, serial=serial)
    row = publish_crl(ca=ca, actor="test", now=now)
    ours = x509.load_der_x509_crl(bytes(row.der))
    assert ours.is_signature_valid(ca.key.public_key())  # type: ignore[arg-type]
    assert len(ours) == len(REASONS) == row.entry_count
    theirs = reference_crl(ca, key_name, ours)
    assert ours.tbs_certlist_bytes == theirs.tbs_certlist_bytes
    if key_name == "ed25519":  # deterministic signatures: the whole CRL is identical
        assert bytes(row.der) == theirs.public_bytes(
            __import__("cryptography").hazmat.primitives.serialization.Encoding.DER
        )
    for entry in ours:
        db = Certificate.objects.get(ca=ca, serial=serial_hex(entry.serial_number))
        assert entry.revocation_date_utc == db.revoked_at.replace(microsecond=0)
    assert row.sha256 == hashlib.sha256(bytes(row.der)).hexdigest()
    assert row.this_update == now.replace(microsecond=0)
    assert row.next_update - row.this_update == dt.timedelta(hours=24)


def test_ml_dsa_ca_publishes_a_verifiable_crl(db):
    from pki.authorities import create_root_ca
    from pki.x509.names import parse_subject

    ca = create_root_ca(
        name="pq", subject=parse_subject("CN=PQ Root"), key_type="ml-dsa-44", actor="t", now=NOW
    )
    revoked_row(ca, revoked_at=NOW, reason="keyCompromise")
    parsed = x509.load_der_x509_crl(bytes(publish_crl(ca=ca, actor="t", now=NOW).der))
    assert len(parsed) == 1
    assert parsed.is_signature_valid(ca.key.public_key())  # type: ignore[arg-type]


def test_empty_crl_has_no_revoked_certificates_field(issuing_ca):
    row = publish_crl(ca=issuing_ca, actor="test", now=NOW)
    parsed = x509.load_der_x509_crl(bytes(row.der))
    assert len(parsed) == 0
    assert parsed.is_signature_valid(issuing_ca.key.public_key())  # type: ignore[arg-type]
    assert parsed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    aki = parsed.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = issuing_ca.x509_certificate().extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_revoked_certificate_is_in_next_crl(issuing_ca, profile):
    cert = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    other = sign_csr(
        ca=issuing_ca, profile=profile("tls-server"), csr=make_csr("ec-p256-b"), actor="t", now=NOW
    )
    later = NOW + dt.timedelta(hours=1)
    invalid = NOW + dt.timedelta(minutes=5)
    revoke_certificate(
        certificate=cert, reason="keyCompromise", invalidity_date=invalid, actor="t", now=later
    )
    parsed = x509.load_der_x509_crl(bytes(publish_crl(ca=issuing_ca, actor="t", now=later).der))
    entry = parsed.get_revoked_certificate_by_serial_number(cert.serial_int)
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        == x509.ReasonFlags.key_compromise
    )
    assert entry.extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc == invalid
    assert parsed.get_revoked_certificate_by_serial_number(other.serial_int) is None


def test_released_hold_leaves_the_next_crl(issuing_ca, profile):
    cert = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    revoke_certificate(certificate=cert, reason="certificateHold", actor="t", now=NOW)
    held = x509.load_der_x509_crl(bytes(publish_crl(ca=issuing_ca, actor="t", now=NOW).der))
    entry = held.get_revoked_certificate_by_serial_number(cert.serial_int)
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        == x509.ReasonFlags.certificate_hold
    )
    release_hold(certificate=cert, actor="t", now=NOW)
    released = x509.load_der_x509_crl(bytes(publish_crl(ca=issuing_ca, actor="t", now=NOW).der))
    assert released.get_revoked_certificate_by_serial_number(cert.serial_int) is None


def test_root_crl_lists_its_revoked_intermediate_not_itself(root_ca, issuing_ca):
    revoke_certificate(certificate=issuing_ca.own_certificate(), reason="cACompromise", actor="t", now=NOW)
    revoke_certificate(certificate=root_ca.own_certificate(), reason="cACompromise", actor="t", now=NOW)
    parsed = x509.load_der_x509_crl(bytes(publish_crl(ca=root_ca, actor="t", now=NOW).der))
    assert [e.serial_number for e in parsed] == [issuing_ca.own_certificate().serial_int]
    assert parsed.issuer == root_ca.x509_certificate().subject


def test_expired_certificates_leave_the_crl_unless_kept(fixture_ca, kmi_settings):
    ca = fixture_ca("exp", "ec-p256")
    gone = revoked_row(
        ca, revoked_at=NOW - dt.timedelta(days=20), reason="superseded", not_after=NOW - dt.timedelta(days=3)
    )
    live = revoked_row(ca, revoked_at=NOW - dt.timedelta(days=20), reason="superseded")
    parsed = x509.load_der_x509_crl(bytes(publish_crl(ca=ca, actor="t", now=NOW).der))
    assert [e.serial_number for e in parsed] == [live.serial_int]
    kmi_settings(CRL_KEEP_EXPIRED_DAYS=7)
    parsed = x509.load_der_x509_crl(bytes(publish_crl(ca=ca, actor="t", now=NOW).der))
    assert {e.serial_number for e in parsed} == {live.serial_int, gone.serial_int}


def test_crl_numbers_increase_per_scope_and_old_crls_are_pruned(issuing_ca, kmi_settings):
    kmi_settings(CRL_HISTORY=2)
    numbers = [publish_crl(ca=issuing_ca, actor="t", now=NOW).crl_number for _ in range(4)]
    assert numbers == [1, 2, 3, 4]
    kept = CertificateRevocationList.objects.filter(ca=issuing_ca).values_list("crl_number", flat=True)
    assert sorted(kept) == [3, 4]
    assert (
        AuditEvent.objects.filter(action="crl.published", object_type="certificaterevocationlist").count()
        == 4
    )


def test_crl_is_written_to_the_directory_after_commit(
    issuing_ca, kmi_settings, tmp_path, django_capture_on_commit_callbacks
):
    kmi_settings(CRL_DIR=str(tmp_path / "crls"))
    with django_capture_on_commit_callbacks(execute=True):
        row = publish_crl(ca=issuing_ca, actor="t", now=NOW)
    written = tmp_path / "crls" / "issuing.crl"
    assert written.read_bytes() == bytes(row.der)
    # The CA certificate and chain beside it (served from there when the database is down), and
    # no temporary files left.
    names = sorted(p.name for p in (tmp_path / "crls").iterdir())
    assert names == ["issuing-chain.pem", "issuing.cer", "issuing.crl"]
    assert (tmp_path / "crls" / "issuing.cer").read_bytes() == bytes(issuing_ca.own_certificate().der)


def test_partitioned_ca_names_a_shard_in_each_cdp_and_shard_crls_carry_a_matching_idp(issuing_ca, profile):
    set_crl_shards(ca=issuing_ca, shards=3, actor="t", now=NOW)
    certs = [
        sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(k), actor="t", now=NOW)
        for k in ("ec-p256", "ec-p256-b", "rsa-2048", "ec-p384")
    ]
    for cert in certs:
        assert cert.crl_shard == cert.serial_int % 3 + 1
        cdp = cert.x509().extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        assert cdp[0].full_name == [
            x509.UniformResourceIdentifier(f"http://pki.example.test/crl/issuing-{cert.crl_shard}.crl")
        ]
        revoke_certificate(certificate=cert, reason="superseded", actor="t", now=NOW)
    full = x509.load_der_x509_crl(bytes(publish_crl(ca=issuing_ca, actor="t", now=NOW).der))
    assert {e.serial_number for e in full} == {c.serial_int for c in certs}
    with pytest.raises(x509.ExtensionNotFound):
        full.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    for shard in (1, 2, 3):
        part = x509.load_der_x509_crl(bytes(publish_crl(ca=issuing_ca, shard=shard, actor="t", now=NOW).der))
        assert {e.serial_number for e in part} == {c.serial_int for c in certs if c.crl_shard == shard}
        idp = part.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
        assert idp.critical
        assert idp.value.full_name == [
            x509.UniformResourceIdentifier(f"http://pki.example.test/crl/issuing-{shard}.crl")
        ]
        assert idp.value.only_contains_user_certs
        assert part.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1


def test_shard_outside_the_partitions_is_refused(issuing_ca):
    with pytest.raises(NotFound):
        publish_crl(ca=issuing_ca, shard=2, actor="t", now=NOW)
    with pytest.raises(PolicyViolation):
        publish_crl(ca=issuing_ca, shard=0, actor="t", now=NOW)
    with pytest.raises(PolicyViolation):
        set_crl_shards(ca=issuing_ca, shards=0, actor="t", now=NOW)


def test_partitions_may_not_collide_with_another_ca_name(root_ca, fixture_ca):
    fixture_ca("root-2", "ec-p256")
    with pytest.raises(InvalidState, match="collide"):
        set_crl_shards(ca=root_ca, shards=4, actor="t", now=NOW)


def test_new_ca_name_may_not_collide_with_partition_urls(root_ca):
    from pki.authorities import create_intermediate_ca
    from pki.x509.names import parse_subject

    set_crl_shards(ca=root_ca, shards=2, actor="t", now=NOW)
    with pytest.raises(InvalidState, match="collide"):
        create_intermediate_ca(
            name="root-7", parent=root_ca, subject=parse_subject("CN=x"), actor="t", now=NOW
        )


def test_orm_and_copy_read_the_same_entries(fixture_ca):
    ca = fixture_ca("rows", "ec-p256")
    for i, reason in enumerate(REASONS):
        revoked_row(
            ca,
            revoked_at=NOW - dt.timedelta(days=i, microseconds=i),
            reason=reason,
            invalidity_date=NOW - dt.timedelta(days=30) if i % 2 else None,
        )
    assert connection.vendor == "postgresql"
    generation = current_generation(ca)
    copied = sorted(tuple(r) for r in crl_module._rows_copy(generation, 0, NOW))
    orm = sorted(crl_module._rows_orm(generation, 0, NOW))
    assert copied == orm
    assert len(orm) == len(REASONS)


def test_copy_of_a_bad_row_fails_cleanly_and_leaves_the_connection_usable(fixture_ca):
    ca = fixture_ca("bad", "ec-p256")
    revoked_row(ca, revoked_at=NOW, reason="superseded")
    Certificate.objects.filter(ca=ca, revoked_at__isnull=False).update(serial="xyz")
    with pytest.raises(Exception, match=r"hex|Non-hexadecimal|Odd-length"):
        publish_crl(ca=ca, actor="t", now=NOW)
    assert CertificateRevocationList.objects.filter(ca=ca).count() == 0
    assert Certificate.objects.filter(ca=ca).count() == 2


def test_destroyed_ca_key_cannot_sign_a_crl(issuing_ca):
    from pki.exceptions import CAUnavailable

    issuing_ca.key.state = "destroyed"
    issuing_ca.key.save()
    with pytest.raises(CAUnavailable):
        publish_crl(ca=issuing_ca, actor="t", now=NOW)


def test_due_run_publishes_missing_then_nothing_until_a_revocation_or_half_life(issuing_ca, profile):
    first = publish_due_crls(actor="beat", now=NOW)
    assert sorted(c.ca.name for c in first) == ["issuing", "root"]
    assert publish_due_crls(actor="beat", now=NOW + dt.timedelta(hours=1)) == []
    cert = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    revoke_certificate(certificate=cert, reason="superseded", actor="t", now=NOW)
    mark_stale(certificate_ids=[cert.pk], now=NOW)
    again = publish_due_crls(actor="beat", now=NOW + dt.timedelta(hours=1))
    assert [(c.ca.name, c.crl_number) for c in again] == [("issuing", 2)]
    assert not CRLStaleMark.objects.exists()
    parsed = x509.load_der_x509_crl(bytes(again[0].der))
    assert parsed.get_revoked_certificate_by_serial_number(cert.serial_int) is not None
    half_life = publish_due_crls(actor="beat", now=NOW + dt.timedelta(hours=13))
    assert sorted(c.ca.name for c in half_life) == ["issuing", "root"]


def test_status_change_marks_the_crl_stale_after_commit(
    issuing_ca, profile, django_capture_on_commit_callbacks
):
    set_crl_shards(ca=issuing_ca, shards=2, actor="t", now=NOW)
    cert = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    with django_capture_on_commit_callbacks(execute=True):
        revoke_certificate(certificate=cert, reason="keyCompromise", actor="t", now=NOW)
    marks = set(CRLStaleMark.objects.values_list("ca_id", "shard"))
    assert marks == {(issuing_ca.pk, 0), (issuing_ca.pk, cert.crl_shard)}


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_publishers_at_once_never_reuse_a_crl_number(issuing_ca):
    from django.db import connections

    barrier = threading.Barrier(2)
    numbers: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            ca = CertificateAuthority.objects.select_related("key", "certificate").get(pk=issuing_ca.pk)
            barrier.wait()
            for _ in range(3):
                numbers.append(publish_crl(ca=ca, actor="t").crl_number)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(numbers) == [1, 2, 3, 4, 5, 6]
    stored = CertificateRevocationList.objects.filter(ca=issuing_ca).order_by("crl_number")
    latest = stored.last()
    assert latest is not None
    assert latest.crl_number == 6


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_due_runs_at_once_publish_each_crl_once(issuing_ca):
    from django.db import connections

    barrier = threading.Barrier(2)
    published: list[tuple[str, int]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            published.extend((c.ca.name, c.crl_number) for c in publish_due_crls(actor="beat", now=NOW))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(published) == [("issuing", 1), ("root", 1)]
    assert CertificateRevocationList.objects.count() == 2
