"""CRL use cases: publish a CA's CRL (full or one partition), find and publish what is due.

The revokedCertificates list is DER-encoded straight from database rows (``pki.x509.der``): on
PostgreSQL the rows stream out of ``COPY … TO STDOUT`` already formatted, so a million entries
never become a million Python objects. The TBSCertList is signed through the CA's KeyBackend
(``sign_data``) and wrapped into the CertificateList by hand (RFC 5280 §5.1).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gc
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.db import DatabaseError, connection, transaction
from django.db.models import Max
from psycopg import pq, sql

from pki import audit
from pki.clock import resolve
from pki.conf import pki_settings
from pki.exceptions import CAUnavailable, InvalidState, NotFound, PolicyViolation
from pki.generations import NO_SIGN_STATES, answering_generations, generation_of
from pki.keys import get_backend, signature_hash
from pki.locations import crl_url
from pki.models.authority import CAGeneration, CertificateAuthority, certificate_chain
from pki.models.certificate import Certificate, CertificateQuerySet, RevocationReason
from pki.models.crl import CertificateRevocationList, CRLScope, CRLStaleMark
from pki.x509 import der

log = logging.getLogger(__name__)

# A row ready for encoding: hex serial, revocation stamp, reason, invalidity stamp (b"" if none).
Row = tuple[bytes, bytes, bytes, bytes]
Progress = Callable[[int, int], None]

MAX_SHARDS = 1024


def shard_for(serial: int, shards: int) -> int | None:
    """Return the CRL partition (1…shards) of a serial, or None when the CA keeps one full CRL."""
    if shards <= 1:
        return None
    return serial % shards + 1


# --- encoding ---------------------------------------------------------------------------------

_REASON_EXTENSIONS: dict[bytes, bytes] = {
    reason.value.encode(): der.reason_extension(reason.code)
    for reason in RevocationReason
    # RFC 5280 §5.3.1: leave the reasonCode out rather than say "unspecified"; removeFromCRL
    # only belongs in delta CRLs, which KMI does not issue.
    if reason not in (RevocationReason.UNSPECIFIED, RevocationReason.REMOVE_FROM_CRL)
}
_KNOWN_REASONS = {r.value.encode() for r in RevocationReason}
# Everything of an invalidityDate extension before its 14 stamp digits and "Z".
_INVALIDITY_PREFIX = der.invalidity_date_extension("20000101000000")[:-15]


def encode_revoked(rows: Iterator[Row], out: list[bytes]) -> int:
    """Append one DER ``revokedCertificates`` entry per row to ``out``; return how many.

    Each entry is SEQUENCE { userCertificate INTEGER, revocationDate Time, crlEntryExtensions }
    and always shorter than 128 octets (a ≤ 20-octet serial, a time, two small extensions), so
    its lengths take the short form. This loop is the hot path of a million-entry CRL.
    """
    reason_exts = _REASON_EXTENSIONS
    known = _KNOWN_REASONS
    invalidity_prefix = _INVALIDITY_PREFIX
    unhexlify = binascii.unhexlify
    append = out.append
    count = 0
    # bytes %-formatting builds each entry in one allocation; it is the fastest way CPython has.
    for serial, revoked, reason, invalid in rows:
        body = unhexlify(b"0" + serial if len(serial) & 1 else serial)
        if body[0] & 0x80:
            body = b"\x00" + body  # keep the INTEGER positive
        size = len(body)
        if size > 20 or (size > 1 and body[0] == 0 and not body[1] & 0x80):
            raise ValueError(f"serial {serial.decode()} is not a canonical serial of at most 20 octets")
        # RFC 5280 §5.1.2.6 revocationDate: UTCTime through 2049, GeneralizedTime from 2050.
        utc_time = b"1950" <= revoked[:4] <= b"2049"
        when = b"\x17\x0d%sZ" % revoked[2:] if utc_time else b"\x18\x0f%sZ" % revoked
        exts = reason_exts.get(reason, b"")
        if not exts and reason not in known:
            raise ValueError(f"unknown revocation reason {reason!r} for serial {serial.decode()}")
        if invalid:
            exts = b"%s%s%sZ" % (exts, invalidity_prefix, invalid)
        if exts:
            entry = b"\x02%c%s%s\x30%c%s" % (size, body, when, len(exts), exts)
        else:
            entry = b"\x02%c%s%s" % (size, body, when)
        append(b"\x30%c%s" % (len(entry), entry))
        count += 1
    return count


@dataclass(frozen=True)
class CRLFields:
    """Everything in a TBSCertList except the entries."""

    issuer_der: bytes
    signature_algorithm: bytes
    this_update: dt.datetime
    next_update: dt.datetime
    crl_number: int
    authority_key_identifier: x509.AuthorityKeyIdentifier
    issuing_distribution_point: x509.IssuingDistributionPoint | None


def tbs_cert_list(fields: CRLFields, entries: list[bytes]) -> bytes:
    """Assemble the DER TBSCertList (RFC 5280 §5.1.2) around pre-encoded entries."""
    number = der.integer_body(fields.crl_number)
    if len(number) > 20:  # RFC 5280 §5.2.3: CRL numbers fit in 20 octets
        raise PolicyViolation(f"CRL number {fields.crl_number} is longer than 20 octets")
    extensions = [
        der.extension(der.OID_AUTHORITY_KEY_IDENTIFIER, fields.authority_key_identifier.public_bytes()),
        der.extension(der.OID_CRL_NUMBER, der.tlv(der.TAG_INTEGER, number)),
    ]
    if fields.issuing_distribution_point is not None:
        # RFC 5280 §5.2.5: the IssuingDistributionPoint is critical.
        extensions.append(
            der.extension(
                der.OID_ISSUING_DISTRIBUTION_POINT,
                fields.issuing_distribution_point.public_bytes(),
                critical=True,
            )
        )
    parts = [
        der.integer(1),  # v2
        fields.signature_algorithm,
        fields.issuer_der,
        der.time(fields.this_update),
        der.time(fields.next_update),
    ]
    if entries:  # RFC 5280 §5.1.2.6: absent, not empty, when nothing is revoked
        revoked = b"".join(entries)
        parts.append(b"\x30" + der.length(len(revoked)) + revoked)
    parts.append(der.tlv(der.TAG_CONTEXT_0, der.sequence(*extensions)))
    return der.sequence(*parts)


def certificate_list(tbs: bytes, signature_algorithm: bytes, signature: bytes) -> bytes:
    """Wrap a signed TBSCertList into CertificateList (RFC 5280 §5.1.1)."""
    body_len = len(tbs) + len(signature_algorithm)
    sig = der.bit_string(signature)
    return b"\x30" + der.length(body_len + len(sig)) + tbs + signature_algorithm + sig


def issuing_distribution_point(ca_name: str, shard: int) -> x509.IssuingDistributionPoint:
    """The IDP of a partition: its URL exactly as the certificates' CDP writes it (``ca_name`` is
    the generation's repository name)."""
    return x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(crl_url(ca_name, shard))],
        relative_name=None,
        only_contains_user_certs=True,  # partitions hold end-entity certificates only
        only_contains_ca_certs=False,
        only_some_reasons=None,
        indirect_crl=False,
        only_contains_attribute_certs=False,
    )


# --- reading the entries ------------------------------------------------------------------------


def _entry_queryset(generation: CAGeneration, shard: int, now: dt.datetime) -> CertificateQuerySet:
    keep = dt.timedelta(days=pki_settings().crl_keep_expired_days)
    qs = Certificate.objects.filter(
        ca_id=generation.ca_id,
        issuer_generation=generation.number,
        revoked_at__isnull=False,
        not_after__gt=now - keep,
    )
    # A root's own (self-signed) certificates are not on its CRL: nothing else carries its key.
    qs = qs.exclude(key_fingerprint=generation.key.spki_sha256)
    if shard:
        qs = qs.filter(crl_shard=shard)
    return qs


def _rows_orm(generation: CAGeneration, shard: int, now: dt.datetime) -> Generator[Row]:
    """Entries through the ORM (any database; used where COPY is not available)."""
    qs = _entry_queryset(generation, shard, now).values_list(
        "serial", "revoked_at", "revocation_reason", "invalidity_date"
    )
    for serial, revoked_at, reason, invalidity in qs.iterator(chunk_size=10000):
        assert revoked_at is not None  # the queryset keeps revoked rows only
        yield (
            serial.encode(),
            der.stamp(revoked_at).encode(),
            reason.encode(),
            der.stamp(invalidity).encode() if invalidity is not None else b"",
        )


_STAMP = "'YYYYMMDDHH24MISS'"


def _rows_copy(generation: CAGeneration, shard: int, now: dt.datetime) -> Generator[Row]:
    """Entries streamed from PostgreSQL with COPY, times already formatted by the server."""
    query, params = (
        _entry_queryset(generation, shard, now)
        .values_list("serial")
        .query.sql_with_params()  # the WHERE clause, exactly as the ORM writes it
    )
    where = query[query.index(" WHERE ") :]
    statement = sql.SQL(
        "COPY (SELECT serial, to_char(revoked_at AT TIME ZONE 'UTC', {stamp}), revocation_reason, "
        "coalesce(to_char(invalidity_date AT TIME ZONE 'UTC', {stamp}), '') "
        'FROM "pki_certificate"' + where.replace("%s", "{}") + ") TO STDOUT"
    ).format(*[sql.Literal(p) for p in params], stamp=sql.SQL(_STAMP))
    return _copy_out(statement)  # type: ignore[return-value]


def _copy_out(statement: sql.Composable) -> Generator[list[bytes]]:
    """Yield the rows of ``COPY … TO STDOUT`` (text format) as lists of fields.

    This talks to libpq directly: psycopg's ``Cursor.copy()`` costs about a microsecond of
    Python per row, as much as everything else a million-entry CRL needs. libpq returns one
    whole row per ``get_copy_data`` call.
    """
    connection.ensure_connection()
    raw = connection.connection
    pgconn = raw.pgconn
    pgconn.send_query(statement.as_bytes(raw))
    result = pgconn.get_result()
    if result is None or result.status != pq.ExecStatus.COPY_OUT:
        message = result.get_error_field(pq.DiagnosticField.MESSAGE_PRIMARY) if result else None
        while pgconn.get_result() is not None:
            pass
        raise DatabaseError(f"COPY of the CRL entries failed: {(message or b'').decode(errors='replace')}")
    get = pgconn.get_copy_data
    finished = False
    try:
        while True:
            nbytes, data = get(0)
            if nbytes < 0:
                finished = True
                break
            yield bytes(data[:-1]).split(b"\t")
    finally:
        if not finished:  # the consumer stopped early: drain, so the connection stays usable
            while get(0)[0] >= 0:
                pass
        failed = None
        while (result := pgconn.get_result()) is not None:
            if result.status == pq.ExecStatus.FATAL_ERROR:
                failed = result.get_error_field(pq.DiagnosticField.MESSAGE_PRIMARY)
        if failed is not None:
            raise DatabaseError(f"COPY of the CRL entries failed: {failed.decode(errors='replace')}")


def entry_rows(generation: CAGeneration, shard: int, now: dt.datetime) -> Generator[Row]:
    """The CRL entries of one scope at ``now``: COPY on PostgreSQL, the ORM elsewhere."""
    if connection.vendor == "postgresql":
        return _rows_copy(generation, shard, now)
    return _rows_orm(generation, shard, now)


def _counting(rows: Generator[Row], total: int, progress: Progress) -> Generator[Row]:
    done = 0
    try:
        for row in rows:
            yield row
            done += 1
            if done % 10000 == 0:
                progress(done, total)
    finally:
        rows.close()
    progress(done, total)


# --- use cases ------------------------------------------------------------------------------------


def _check_can_sign_crls(generation: CAGeneration, now: dt.datetime) -> None:
    # A disabled or retired CA (or a previous generation) still answers for what it issued, so
    # only the key and its certificate matter.
    ca, key = generation.ca, generation.key
    label = ca.name if generation.number == ca.generation else f"{ca.name} generation {generation.number}"
    if not ca.holds_key:
        raise CAUnavailable(
            f"CA {ca.name} was imported as a certificate only: KMI holds no key to sign its CRL"
        )
    if key.state in NO_SIGN_STATES:
        raise CAUnavailable(f"the key of CA {label} is {key.state}: it cannot sign a CRL")
    if generation.certificate is None:
        raise CAUnavailable(f"CA {label} has no certificate yet")
    if generation.certificate.not_after <= now:
        raise CAUnavailable(f"CA {label} has expired: its CRL would vouch for nothing")


def _check_shard(generation: CAGeneration, shard: int, now: dt.datetime) -> None:
    if shard == 0:
        return
    ca = generation.ca
    if shard < 0 or shard > MAX_SHARDS:
        raise PolicyViolation(f"CRL shard {shard} is out of range (1…{MAX_SHARDS})")
    if generation.number == ca.generation and shard <= ca.crl_shards and ca.crl_shards > 1:
        return
    if not Certificate.objects.filter(
        ca_id=ca.pk, issuer_generation=generation.number, crl_shard=shard, not_after__gt=now
    ).exists():
        raise NotFound(f"CA {generation.repository_name} has no CRL shard {shard} (it has {ca.crl_shards})")


def _lock_scope(generation: CAGeneration, shard: int, *, skip_locked: bool) -> CRLScope | None:
    ca_id, number = generation.ca_id, generation.number
    CRLScope.objects.bulk_create(
        [CRLScope(ca_id=ca_id, generation=number, shard=shard)], ignore_conflicts=True
    )
    return (
        CRLScope.objects.select_for_update(skip_locked=skip_locked)
        .filter(ca_id=ca_id, generation=number, shard=shard)
        .first()
    )


def is_due(generation: CAGeneration, shard: int, now: dt.datetime) -> bool:
    """True when the scope has no CRL, its CRL is past half-life, or a status changed since."""
    scope = {"ca_id": generation.ca_id, "generation": generation.number, "shard": shard}
    latest = (
        CertificateRevocationList.objects.filter(**scope)
        .order_by("-crl_number")
        .values("this_update", "next_update")
        .first()
    )
    if latest is None:
        return True
    half_life = latest["this_update"] + (latest["next_update"] - latest["this_update"]) / 2
    if now >= half_life:
        return True
    if CRLStaleMark.objects.filter(**scope).exists():
        return True
    # A second guard that needs no mark: a revocation dated after the latest CRL (the
    # (ca, revoked_at) index answers it). Rows revoked outside the use cases are caught too.
    revoked = Certificate.objects.filter(
        ca_id=generation.ca_id, issuer_generation=generation.number, revoked_at__gt=latest["this_update"]
    )
    if shard:
        revoked = revoked.filter(crl_shard=shard)
    return revoked.exists()


def _atomic_write(directory: Path, name: str, data: bytes) -> None:
    """Write ``directory/name`` through a temporary file and a rename: readers see old or new."""
    target = directory / name
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).chmod(0o644)
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_crl_file(name: str, shard: int, data: bytes, *, issuer: Certificate | None = None) -> None:
    """Write a CRL to ``KMI_CRL_DIR`` (nothing without the setting), with its issuer beside it.

    ``name`` is the repository name of the CA generation (``pki.locations.repository_name``).
    The directory is what any web server can serve, and what KMI's own repository serves when
    the database is unavailable (web/protocols/repository.py): ``<name>.crl``, ``<name>-<n>.crl``,
    and with ``issuer`` (the generation's certificate) ``<name>.cer`` (DER) and ``<name>-chain.pem``.
    """
    directory = pki_settings().crl_dir
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_write(directory, f"{name}.crl" if not shard else f"{name}-{shard}.crl", data)
    if issuer is None:
        return
    cert_der = bytes(issuer.der)
    cer = directory / f"{name}.cer"
    if not cer.is_file() or cer.read_bytes() != cert_der:
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificate_chain(issuer))
        _atomic_write(directory, f"{name}-chain.pem", chain)
        _atomic_write(directory, f"{name}.cer", cert_der)


def _store(crl: CertificateRevocationList) -> CertificateRevocationList:
    """Insert a CRL row; on PostgreSQL the DER goes as a binary parameter.

    Django's psycopg cursors bind on the client, which escapes 50 MB of bytea into text (seconds
    for a million entries); a server-binding cursor sends the bytes as they are.
    """
    if connection.vendor != "postgresql":
        crl.save(force_insert=True)
        return crl
    data = bytes(crl.der)
    crl.der = b""
    crl.save(force_insert=True)
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(
            "UPDATE pki_certificaterevocationlist SET der = %s WHERE id = %s", [data, crl.pk], binary=True
        )
    crl.der = data
    return crl


def _publish(
    *,
    generation: CAGeneration,
    shard: int,
    actor: str,
    now: dt.datetime,
    only_if_due: bool,
    progress: Progress | None,
) -> CertificateRevocationList | None:
    settings = pki_settings()
    this_update = now.replace(microsecond=0)
    next_update = this_update + dt.timedelta(seconds=settings.crl_next_update_seconds)
    ca = generation.ca
    name = generation.repository_name
    scope_filter = {"ca_id": ca.pk, "generation": generation.number, "shard": shard}
    ca_cert = generation.x509_certificate()
    signer = generation.key
    algorithm = signature_hash(signer.key_type)
    signature_algorithm = der.signature_algorithm(signer.public_key(), algorithm)
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(ca_cert.public_key())
    with transaction.atomic():
        scope = _lock_scope(generation, shard, skip_locked=only_if_due)
        if scope is None:
            return None  # another worker is publishing this scope right now
        if only_if_due and not is_due(generation, shard, now):
            return None
        seen_mark = CRLStaleMark.objects.filter(**scope_filter).aggregate(m=Max("id"))["m"]
        number = scope.last_crl_number + 1
        fields = CRLFields(
            issuer_der=ca_cert.subject.public_bytes(),
            signature_algorithm=signature_algorithm,
            this_update=this_update,
            next_update=next_update,
            crl_number=number,
            authority_key_identifier=x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
            issuing_distribution_point=issuing_distribution_point(name, shard) if shard else None,
        )
        rows = entry_rows(generation, shard, now)
        if progress is not None:
            rows = _counting(rows, _entry_queryset(generation, shard, now).count(), progress)
        entries: list[bytes] = []
        # A million rows are a million small lists: nothing cyclic, but enough allocations to
        # run the cycle collector thousands of times. Pause it while encoding.
        collecting = gc.isenabled()
        gc.disable()
        try:
            count = encode_revoked(rows, entries)
        finally:
            rows.close()
            if collecting:
                gc.enable()
        tbs = tbs_cert_list(fields, entries)
        del entries
        signature = get_backend(signer.backend).sign_data(signer.handle, tbs, algorithm)
        data = certificate_list(tbs, signature_algorithm, signature)
        del tbs
        digest = hashlib.sha256(data).hexdigest()
        crl = _store(
            CertificateRevocationList(
                ca=ca,
                generation=generation.number,
                shard=shard,
                crl_number=number,
                this_update=this_update,
                next_update=next_update,
                der=data,
                sha256=digest,
                entry_count=count,
                published_by=actor,
                created_at=now,
            )
        )
        CRLScope.objects.filter(pk=scope.pk).update(last_crl_number=number)
        if seen_mark is not None:
            CRLStaleMark.objects.filter(**scope_filter, id__lte=seen_mark).delete()
        CertificateRevocationList.objects.filter(
            **scope_filter, crl_number__lte=number - settings.crl_history
        ).delete()
        audit.record(
            action="crl.published",
            actor=actor,
            obj=crl,
            details={
                "ca": ca.name,
                "generation": generation.number,
                "shard": shard,
                "crl_number": number,
                "entries": count,
                "this_update": this_update.isoformat(),
                "next_update": next_update.isoformat(),
                "sha256": digest,
            },
            scope=f"ca:{ca.pk}",
            now=now,
        )
        issuer = generation.certificate
        transaction.on_commit(lambda: write_crl_file(name, shard, data, issuer=issuer))
    return crl


def publish_crl(
    *,
    ca: CertificateAuthority,
    actor: str,
    shard: int | None = None,
    generation: int | None = None,
    now: dt.datetime | None = None,
    progress: Progress | None = None,
) -> CertificateRevocationList:
    """Sign and store a new CRL of ``ca`` (its full CRL, or partition ``shard``); audited.

    ``generation`` picks the CA key (the current one by default): after a rollover the previous
    generation keeps publishing the CRL of what it issued, at its own URL.
    The CRL number comes from the scope's counter row, locked for the whole publication and
    committed with the CRL, so concurrent publishers get distinct, increasing numbers.
    """
    now = resolve(now)
    scope = shard or 0
    if shard is not None and shard < 1:
        raise PolicyViolation(f"CRL shards are numbered from 1 (got {shard})")
    gen = generation_of(ca, generation)
    _check_can_sign_crls(gen, now)
    _check_shard(gen, scope, now)
    crl = _publish(generation=gen, shard=scope, actor=actor, now=now, only_if_due=False, progress=progress)
    assert crl is not None
    return crl


def scopes_of(ca: CertificateAuthority, now: dt.datetime, generation: int | None = None) -> list[int]:
    """Every scope a CA generation publishes: 0 (full) and each partition still named by a live
    certificate (the current generation: every configured partition)."""
    number = ca.generation if generation is None else generation
    scopes = {0}
    floor = 0
    if number == ca.generation and ca.crl_shards > 1:
        scopes.update(range(1, ca.crl_shards + 1))
        floor = ca.crl_shards
    for shard in CRLScope.objects.filter(ca_id=ca.pk, generation=number, shard__gt=floor).values_list(
        "shard", flat=True
    ):
        if Certificate.objects.filter(
            ca_id=ca.pk, issuer_generation=number, crl_shard=shard, not_after__gt=now
        ).exists():
            scopes.add(shard)
    return sorted(scopes)


def publish_due_crls(*, actor: str, now: dt.datetime | None = None) -> list[CertificateRevocationList]:
    """Publish every CA scope whose CRL is missing, past half-life or stale; skip busy scopes.

    Safe to run on several workers at once: a scope another worker is publishing is skipped, and
    a scope is re-checked under its lock, so it is published once.
    """
    now = resolve(now)
    published: list[CertificateRevocationList] = []
    for ca in CertificateAuthority.objects.select_related("key", "certificate").order_by("pk"):
        for generation in answering_generations(ca):
            cert = generation.certificate
            if cert is None or generation.key.state in NO_SIGN_STATES or cert.not_after <= now:
                continue
            for shard in scopes_of(ca, now, generation.number):
                if not is_due(generation, shard, now):
                    continue
                try:
                    crl = _publish(
                        generation=generation,
                        shard=shard,
                        actor=actor,
                        now=now,
                        only_if_due=True,
                        progress=None,
                    )
                except Exception:  # one broken CA must not stop the others
                    log.exception(
                        "publishing the CRL of CA %s shard %s failed", generation.repository_name, shard
                    )
                    continue
                if crl is not None:
                    published.append(crl)
    return published


def mark_stale(*, certificate_ids: list[int], now: dt.datetime | None = None) -> int:
    """Mark the CRL scopes covering these certificates stale (the next due run republishes them)."""
    now = resolve(now)
    scopes: set[tuple[int, int, int]] = set()
    for ca_id, generation, shard in (
        Certificate.objects.filter(pk__in=certificate_ids, ca_id__isnull=False)
        .values_list("ca_id", "issuer_generation", "crl_shard")
        .distinct()
    ):
        scopes.add((ca_id, generation, 0))
        if shard:
            scopes.add((ca_id, generation, shard))
    CRLStaleMark.objects.bulk_create(
        [
            CRLStaleMark(ca_id=ca_id, generation=generation, shard=shard, marked_at=now)
            for ca_id, generation, shard in sorted(scopes)
        ]
    )
    return len(scopes)


def set_crl_shards(
    *, ca: CertificateAuthority, shards: int, actor: str, now: dt.datetime | None = None
) -> CertificateAuthority:
    """Set how many CRL partitions ``ca`` spreads newly issued certificates over; audited.

    Certificates already issued keep the CRL their CDP names: old partitions stay published
    while they hold unexpired certificates, and the full CRL always covers everything.
    """
    now = resolve(now)
    if not 1 <= shards <= MAX_SHARDS:
        raise PolicyViolation(f"crl_shards must be between 1 and {MAX_SHARDS}")
    clash = [
        n
        for n in CertificateAuthority.objects.filter(name__startswith=f"{ca.name}-").values_list(
            "name", flat=True
        )
        if n[len(ca.name) + 1 :].isdigit()
    ]
    if clash and shards > 1:
        raise InvalidState(f"CA names {', '.join(clash)} would collide with the partition URLs of {ca.name}")
    with transaction.atomic():
        locked = CertificateAuthority.objects.select_for_update().get(pk=ca.pk)
        previous = locked.crl_shards
        if previous == shards:
            return locked
        locked.crl_shards = shards
        locked.save(update_fields=["crl_shards"])
        audit.record(
            action="ca.crl_shards_changed",
            actor=actor,
            obj=locked,
            details={"from": previous, "to": shards},
            scope=f"ca:{ca.pk}",
            now=now,
        )
    ca.crl_shards = shards
    return ca


def pem(data: bytes, label: str = "X509 CRL") -> bytes:
    """Return DER as PEM (RFC 7468: base64 in lines of 64 characters)."""
    text = base64.b64encode(data)
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return b"".join(
        [f"-----BEGIN {label}-----\n".encode(), b"\n".join(lines), f"\n-----END {label}-----\n".encode()]
    )
