"""Turning a signed ``x509.Certificate`` into its database row.

``record_issuance`` is a fast path: on PostgreSQL one prepared statement inserts the request,
the certificate and their audit events. It may never diverge from the ORM path beside it (the
same rows, the same audit chain, nothing written when it fails);
tests/pki/test_enrollment_statement.py holds the twins.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.db import connection, transaction

from pki import audit, blocklist
from pki.models.authority import CertificateAuthority
from pki.models.certificate import Certificate
from pki.models.key import Key
from pki.models.profile import Profile
from pki.models.request import CertificateRequest, RequestState
from pki.x509.csr import spki_fingerprint
from pki.x509.names import certificate_sans
from pki.x509.serials import serial_hex


def san_lines(cert: x509.Certificate) -> str:
    """Return the certificate's SANs as ``kind:value`` lines (the searchable column)."""
    return "\n".join(str(san) for san in certificate_sans(cert))


def is_ca_certificate(cert: x509.Certificate) -> bool:
    """True when basicConstraints says cA."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def certificate_row(
    cert: x509.Certificate,
    *,
    ca: CertificateAuthority,
    now: dt.datetime,
    der: bytes | None = None,
    key: Key | None = None,
    profile: Profile | None = None,
    request: CertificateRequest | None = None,
    renewed_from: Certificate | None = None,
    auto_renew: bool = False,
    renew_before_days: int | None = None,
    san_text: str | None = None,
    key_fingerprint: str | None = None,
    is_ca: bool | None = None,
    crl_shard: int | None = None,
    owner_email: str = "",
    owner_webhook_url: str = "",
    owner_id: int | None = None,
    issuer_generation: int | None = None,
) -> Certificate:
    """The (unsaved) row of a certificate ``ca`` signed: the one place a ``Certificate`` is built.

    ``san_text``, ``key_fingerprint`` and ``is_ca`` may be passed when the caller already knows
    them (reading them back from the signed certificate parses its extensions again).
    ``issuer_generation`` is the generation (key) of ``ca`` that signed it: the current one
    unless said otherwise.
    """
    der = der if der is not None else cert.public_bytes(serialization.Encoding.DER)
    return Certificate(
        ca=ca,
        serial=serial_hex(cert.serial_number),
        der=der,
        subject=cert.subject.rfc4514_string(),
        san_text=san_lines(cert) if san_text is None else san_text,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        key_fingerprint=key_fingerprint or spki_fingerprint(cert.public_key()),
        key=key,
        is_ca=is_ca_certificate(cert) if is_ca is None else is_ca,
        profile=profile,
        request=request,
        renewed_from=renewed_from,
        auto_renew=auto_renew,
        renew_before_days=renew_before_days,
        crl_shard=crl_shard,
        issuer_generation=ca.generation if issuer_generation is None else issuer_generation,
        owner_email=owner_email,
        owner_webhook_url=owner_webhook_url,
        owner_id=owner_id,
        created_at=now,
    )


def record_certificate(
    cert: x509.Certificate,
    *,
    ca: CertificateAuthority,
    now: dt.datetime,
    key: Key | None = None,
    der: bytes | None = None,
    issuer_generation: int | None = None,
) -> Certificate:
    """Insert the row for a certificate ``ca`` signed (in the caller's transaction): CA
    certificates, cross certificates and imports; issuance goes through ``record_issuance``."""
    row = certificate_row(cert, ca=ca, now=now, key=key, der=der, issuer_generation=issuer_generation)
    row.save(force_insert=True)
    return row


_CERT_COLUMNS = (
    "id",
    "ca_id",
    "serial",
    "der",
    "subject",
    "san_text",
    "not_before",
    "not_after",
    "fingerprint_sha256",
    "key_fingerprint",
    "key_id",
    "is_ca",
    "profile_id",
    "request_id",
    "renewed_from_id",
    "auto_renew",
    "renew_before_days",
    "revocation_reason",
    "crl_shard",
    "issuer_generation",
    "owner_email",
    "owner_webhook_url",
    "owner_id",
    "created_at",
)

# Built once from the constant column list above; values are always bound parameters. The
# insert is guarded by the audit head CTE (``head``, defined first): no head row, no insert.
_CERT_INSERT_CTE = (
    f"cert AS (INSERT INTO pki_certificate ({', '.join(_CERT_COLUMNS)}) "  # noqa: S608
    f"SELECT {', '.join(f'%(c_{col})s' for col in _CERT_COLUMNS)} "
    "WHERE EXISTS (SELECT 1 FROM head) RETURNING id),\n"
)


class _IdBlock:
    """Row ids taken from a table's sequence in blocks, so the row id is known before the insert
    (the audit event that covers it is hashed in the same statement)."""

    def __init__(self, table: str = "pki_certificate", size: int = 64) -> None:
        self.table = table
        self.size = size
        self._ids: list[int] = []
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            if not self._ids:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                        [self.table, self.size],
                    )
                    self._ids = [r[0] for r in cursor.fetchall()][::-1]
            return self._ids.pop()


_ids = _IdBlock()
_request_ids = _IdBlock("pki_certificaterequest")

_REQUEST_COLUMNS = (
    "id",
    "ca_id",
    "profile_id",
    "csr_der",
    "subject",
    "san_text",
    "key_fingerprint",
    "validity_days",
    "state",
    "requester_id",
    "requested_by",
    "reviewer_id",
    "reviewed_by",
    "reason",
    "created_at",
    "reviewed_at",
)

# A request submitted and issued at once is inserted in the issuance statement (guarded by the
# audit head like the certificate): one round trip for both rows and both audit events. Values
# it shares with the certificate row reuse its parameters, and constants are literals, so the
# statement stays under psycopg's limit of 50 parameters for its parsed-query cache.
_REQUEST_VALUES = {
    "id": "%(c_request_id)s",
    "ca_id": "%(c_ca_id)s",
    "profile_id": "%(c_profile_id)s",
    "reviewer_id": "NULL",
    "reason": "''",
    # The submitter is the submission event's actor (checked): one parameter fewer leaves room
    # for a guard's (pki.est's code claim) under psycopg's limit.
    "requested_by": "%(actor)s",
}
_REQUEST_PARAMS = tuple(col for col in _REQUEST_COLUMNS if col not in _REQUEST_VALUES)
_REQUEST_INSERT_CTE = (
    f"submitted AS (INSERT INTO pki_certificaterequest ({', '.join(_REQUEST_COLUMNS)}) "  # noqa: S608
    f"SELECT {', '.join(_REQUEST_VALUES.get(col, f'%(r_{col})s') for col in _REQUEST_COLUMNS)} "
    "WHERE EXISTS (SELECT 1 FROM head) RETURNING id),\n"
)
# The second event shares the first one's stream, timestamp and actor.
_SECOND_EVENT_PARAMS = ("body", "action", "object_type", "object_id", "details")


# What decides that a compromised key is never certified again (pki.blocklist): no statement
# records a certificate whose key is on the blocklist, and each reports the table's highest id
# so that the processes' copies (read before signing) follow it.
UNBLOCKED = "NOT EXISTS (SELECT 1 FROM pki_blockedkey WHERE spki_sha256 = %(c_key_fingerprint)s)"
_BLOCKLIST_HIGHEST = "(SELECT max(id) FROM pki_blockedkey)"


@dataclasses.dataclass(frozen=True)
class Guard:
    """A data-modifying statement written in an issuance's own statement, first: the issuance
    is written only when it returns a row (EST: the enrollment code claimed by the request).

    ``cte`` is ``guard AS (UPDATE … RETURNING …),``; it may use the statement's parameters
    (``timestamp``, ``c_request_id``, …) and its own ``params`` (named ``g_…``). It runs even
    when the statement writes nothing else, so its WHERE includes ``UNBLOCKED``.
    """

    cte: str
    params: dict[str, Any]


class GuardRefused(Exception):
    """An issuance's guard returned no row: nothing was written."""


def new_request_id() -> int | None:
    """A request id reserved ahead of its insert (PostgreSQL), or None elsewhere."""
    return _request_ids.take() if connection.vendor == "postgresql" else None


def record_issuance(
    cert: x509.Certificate,
    *,
    ca: CertificateAuthority,
    now: dt.datetime,
    event: Callable[[Certificate], audit.PendingEvent],
    key: Key | None = None,
    profile: Profile | None = None,
    request: CertificateRequest | None = None,
    renewed_from: Certificate | None = None,
    auto_renew: bool = False,
    renew_before_days: int | None = None,
    san_text: str | None = None,
    key_fingerprint: str | None = None,
    crl_shard: int | None = None,
    owner_email: str = "",
    owner_webhook_url: str = "",
    owner_id: int | None = None,
    submitted: audit.PendingEvent | None = None,
    is_ca: bool | None = None,
    issuer_generation: int | None = None,
    guard: Guard | None = None,
) -> Certificate:
    """Insert a certificate, mark its request issued and append its audit event, atomically.

    With ``submitted`` (the request's ``request.submitted`` event), ``request`` is a new,
    unsaved row (its id from ``new_request_id``): it is inserted already issued, and both audit
    events are chained in the same statement, the submission first.

    The row is ``certificate_row``'s. On PostgreSQL this is one statement (one round trip);
    elsewhere the ORM does it in the caller's transaction. ``event`` builds the audit event
    from the (unsaved) row.

    ``guard`` (PostgreSQL, with ``submitted`` only) joins the statement: ``GuardRefused`` when
    it returns no row, and nothing is written.

    On PostgreSQL the statement writes nothing for a key on the blocklist (``KeyBlocked``, the
    refusal audited): the check and the insert are one, whatever the caller checked before.
    """
    row = certificate_row(
        cert,
        ca=ca,
        now=now,
        key=key,
        profile=profile,
        request=request,
        renewed_from=renewed_from,
        auto_renew=auto_renew,
        renew_before_days=renew_before_days,
        san_text=san_text,
        key_fingerprint=key_fingerprint,
        is_ca=is_ca,
        crl_shard=crl_shard,
        owner_email=owner_email,
        owner_webhook_url=owner_webhook_url,
        owner_id=owner_id,
        issuer_generation=issuer_generation,
    )
    if submitted is not None and request is None:
        raise ValueError("a submission event needs the request row it records")
    _check_guard(guard, submitted)
    if connection.vendor != "postgresql":
        with transaction.atomic():
            if submitted is not None and request is not None:
                request.state = RequestState.ISSUED
                request.save(force_insert=True)
                audit.record(**_event_kwargs(submitted))
            row.save(force_insert=True)
            if request is not None and submitted is None:
                CertificateRequest.objects.filter(pk=request.pk).update(state=RequestState.ISSUED)
            audit.record(**_event_kwargs(event(row)))
        return row
    row.pk = _ids.take()
    pending = event(row)
    audit.ensure_stream(pending.stream)
    params: dict[str, Any] = pending.sql_params()
    params.update({f"c_{col}": getattr(row, col) for col in _CERT_COLUMNS})
    ctes = _CERT_INSERT_CTE
    if submitted is not None and request is not None:
        # Both events go to one lane: the submission is chained first, the issuance after it.
        same = (submitted.timestamp, submitted.actor) == (pending.timestamp, pending.actor)
        if not same or request.requested_by != submitted.actor:
            raise ValueError(
                "a submission recorded with its issuance has the same time and actor (its submitter)"
            )
        first = dataclasses.replace(submitted, stream=pending.stream)
        second = pending.sql_params()
        params = {**first.sql_params(), **{f"{k}2": second[k] for k in _SECOND_EVENT_PARAMS}}
        params.update({f"c_{col}": getattr(row, col) for col in _CERT_COLUMNS})
        request.state = RequestState.ISSUED
        params.update({f"r_{col}": getattr(request, col) for col in _REQUEST_PARAMS})
        params["r_csr_der"] = bytes(request.csr_der)
        sql = audit.pg_append_two_sql(
            _REQUEST_INSERT_CTE + ctes,
            guard=guard.cte if guard else "",
            condition=UNBLOCKED,
            returning=_BLOCKLIST_HIGHEST,
        )
        params.update(guard.params if guard else {})
    elif request is not None:
        params["request_pk"] = request.pk
        params["issued"] = RequestState.ISSUED.value
        ctes += (
            "req AS (UPDATE pki_certificaterequest SET state = %(issued)s "
            "WHERE id = %(request_pk)s AND EXISTS (SELECT 1 FROM head) RETURNING id),\n"
        )
        sql = audit.pg_append_sql(ctes, condition=UNBLOCKED, returning=_BLOCKLIST_HIGHEST)
    else:
        sql = audit.pg_append_sql(ctes, condition=UNBLOCKED, returning=_BLOCKLIST_HIGHEST)
    _execute_issuance(sql, params, pending=pending, guard=guard)
    row._state.adding = False
    row._state.db = connection.alias
    if submitted is not None and request is not None:
        request._state.adding = False
        request._state.db = connection.alias
    return row


def _check_guard(guard: Guard | None, submitted: audit.PendingEvent | None) -> None:
    if guard is not None and (submitted is None or connection.vendor != "postgresql"):
        raise ValueError("a guard joins the one statement of a submission issued at once (PostgreSQL)")
    if guard is not None and UNBLOCKED not in guard.cte:
        raise ValueError("a guard runs whatever the statement writes: its WHERE must hold UNBLOCKED")


def _execute_issuance(
    sql: str, params: dict[str, Any], *, pending: audit.PendingEvent, guard: Guard | None
) -> None:
    """Run the issuance statement (``GuardRefused`` when its guard wrote nothing, ``KeyBlocked``
    when the key is on the blocklist).

    One statement, atomic by itself: in autocommit mode it is the whole transaction (one round
    trip); inside a caller's transaction it joins it. When the stream head is missing (made in a
    transaction that rolled back) the guarded inserts write nothing: create the head and run it
    again.
    """
    stream = pending.stream
    for attempt in range(2):
        result = execute_prepared(sql, params)
        if result is not None:
            blocklist.note_highest(result[-1])
            return
        if attempt == 0:
            blocklist.after_refused_statement(
                spki_sha256=params["c_key_fingerprint"], actor=pending.actor, now=pending.timestamp
            )
        if attempt:
            if guard is not None:
                raise GuardRefused(guard.cte)
            raise RuntimeError(f"audit stream {stream} has no head row")
        audit.forget_stream(stream)
        audit.ensure_stream(stream)


def execute_prepared(sql: str, params: dict[str, Any] | list[Any]) -> tuple[Any, ...] | None:
    """Run a hot statement as a server-side prepared statement and return its first row.

    Django's psycopg cursors bind parameters on the client, which re-plans this large statement
    on every call; a server-binding cursor with ``prepare=True`` plans it once per connection.
    (PostgreSQL only; the other hot queries of an API call use it too.) psycopg honours
    ``prepare=True`` only when the connection's ``prepare_threshold`` is not None: web.settings
    sets it (tests/pki/test_enrollment_statement.py checks the statements really are prepared).
    """
    connection.ensure_connection()
    raw = connection.connection
    with psycopg.Cursor(raw) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone()


def _event_kwargs(pending: audit.PendingEvent) -> dict[str, Any]:
    return {
        "action": pending.action,
        "actor": pending.actor,
        "object_type": pending.object_type,
        "object_id": pending.object_id,
        "details": pending.details,
        "scope": pending.stream.rsplit("/", 1)[0],
        "now": pending.timestamp,
    }
