"""Use cases of KMI's transparency logs: create a log, sequence issued certificates into it, sign
tree heads, serve proofs and entries, and verify a whole log against what it published.

Sequencing happens under the log row's lock (``SELECT … FOR UPDATE``): indexes are contiguous
and assigned once, whatever number of sequencers run. A certificate's leaf is queued by a
trigger in the certificate's own transaction (migration 0018), so a crash anywhere after the
commit only delays the leaf until the next ``tick`` (Celery beat, every 10 s).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.db import connection, transaction
from django.db.models import Subquery

from pki import audit
from pki.clock import resolve
from pki.exceptions import AlreadyExists, InvalidState, NotFound, PolicyViolation
from pki.keys import get_backend
from pki.keystore import generate_key
from pki.models.authority import certificate_chain_rows
from pki.models.certificate import Certificate
from pki.models.key import KeyPurpose, KeyType
from pki.models.transparency import LogEntry, MerkleNode, PendingLeaf, SignedTreeHead, TransparencyLog
from pki.transparency import merkle
from pki.transparency.structures import (
    certificate_chain,
    timestamp_ms,
    tree_head_input,
    x509_leaf,
)

MAX_ENTRIES = 1000  # per get-entries call (RFC 6962 §4.6 lets a log return fewer)
SEQUENCE_BATCH = 10_000


_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # a URL segment: /ct/<name>/


def _valid_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise PolicyViolation(f"{name!r} is not a log name (lower-case letters, digits and '-')")
    return name


def create_log(
    *,
    name: str,
    actor: str,
    description: str = "",
    mmd_seconds: int = 60,
    feeds_issuance: bool = True,
    backend: str | None = None,
    now: dt.datetime | None = None,
) -> TransparencyLog:
    """Create a log with a fresh ECDSA P-256 log key (RFC 6962 §2.1.4) behind the KeyBackend."""
    now = resolve(now)
    _valid_name(name)
    if not 1 <= mmd_seconds <= 86400:
        raise PolicyViolation("the maximum merge delay is between 1 and 86400 seconds")
    if TransparencyLog.objects.filter(name=name).exists():
        raise AlreadyExists(f"a transparency log named {name} exists")
    with transaction.atomic():
        key = generate_key(
            key_type=KeyType.EC_P256, purpose=KeyPurpose.TRANSPARENCY, actor=actor, backend=backend, now=now
        )
        log = TransparencyLog.objects.create(
            name=name,
            description=description or f"KMI transparency log {name}",
            key=key,
            log_id=hashlib.sha256(bytes(key.public_key_der)).digest(),
            mmd_seconds=mmd_seconds,
            feeds_issuance=feeds_issuance,
            created_at=now,
        )
        audit.record(
            action="transparency.log_created",
            actor=actor,
            obj=log,
            details={"name": name, "log_id": bytes(log.log_id).hex(), "feeds_issuance": feeds_issuance},
            scope=f"log:{name}",
            now=now,
        )
    # A log answers get-sth from its first minute: its first tree head covers what is queued.
    sign_tree_head(log=log, actor=actor, force=True, now=now)
    return log


def get_log(name: str) -> TransparencyLog:
    """The log called ``name``, or NotFound."""
    try:
        return TransparencyLog.objects.select_related("key").get(name=name)
    except TransparencyLog.DoesNotExist:
        raise NotFound(f"no transparency log named {name}") from None


def public_key_der(log: TransparencyLog) -> bytes:
    """The log key's DER SubjectPublicKeyInfo (what a CT log list publishes as ``key``)."""
    return bytes(log.key.public_key_der)


# --- the tree in the database ------------------------------------------------------------------


_PG_NODES = (
    "SELECT 0, leaf_index, leaf_hash FROM pki_logentry WHERE log_id = %s AND leaf_index = ANY(%s::bigint[]) "
    "UNION ALL SELECT n.level, n.index, n.hash FROM unnest(%s::integer[], %s::bigint[]) AS w(level, idx) "
    "JOIN pki_merklenode n ON n.log_id = %s AND n.level = w.level AND n.index = w.idx"
)


def _pg_rows(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Run a hot read as a server-side prepared statement (planned once per connection)."""
    connection.ensure_connection()
    with psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchall()


def lookup_nodes(log_id: int, nodes: Iterable[merkle.Node]) -> dict[merkle.Node, bytes]:
    """Stored hashes of complete subtrees (level 0 from the entries): one indexed query."""
    wanted = set(nodes)
    found: dict[merkle.Node, bytes] = {}
    leaves = [i for level, i in wanted if level == 0]
    inner = [(level, i) for level, i in wanted if level]
    if connection.vendor == "postgresql":
        rows = _pg_rows(_PG_NODES, [log_id, leaves, [lv for lv, _ in inner], [i for _, i in inner], log_id])
        found = {(level, index): bytes(h) for level, index, h in rows}
    else:
        for index, h in LogEntry.objects.filter(log_id=log_id, leaf_index__in=leaves).values_list(
            "leaf_index", "leaf_hash"
        ):
            found[(0, index)] = bytes(h)
        for level, index in inner:
            for value in MerkleNode.objects.filter(log_id=log_id, level=level, index=index).values_list(
                "hash", flat=True
            ):
                found[(level, index)] = bytes(value)
    missing = wanted - found.keys()
    if missing:
        raise InvalidState(f"log {log_id} lacks the subtree hashes {sorted(missing)[:5]}")
    return found


def _frontier(log: TransparencyLog) -> merkle.Frontier:
    nodes = merkle.range_nodes(0, log.tree_size)
    found = lookup_nodes(log.pk, nodes)
    return merkle.Frontier(log.tree_size, [found[n] for n in nodes])


@dataclass(frozen=True)
class NewLeaf:
    """A leaf to append: its MerkleTreeLeaf bytes and, for a certificate, the row it rebuilds from."""

    leaf_input: bytes
    timestamp: int
    certificate_id: int | None = None


EntryRow = tuple[int, int, int | None, int, bytes, bytes | None]  # the COPY columns of pki_logentry
NodeRow = tuple[int, int, int, bytes]  # ... of pki_merklenode


def append_leaves(*, log: TransparencyLog, leaves: Sequence[NewLeaf]) -> int:
    """Append leaves to a log whose row the caller has locked; store entries and completed nodes."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("append_leaves runs in the transaction that locked the log")
    frontier = _frontier(log)
    entries: list[EntryRow] = []
    nodes: list[NodeRow] = []
    for leaf in leaves:
        h = merkle.leaf_hash(leaf.leaf_input)
        # A certificate's leaf is rebuilt from its row: no second copy of the DER.
        raw = None if leaf.certificate_id is not None else leaf.leaf_input
        entries.append((log.pk, frontier.size, leaf.certificate_id, leaf.timestamp, h, raw))
        nodes.extend((log.pk, lv, ix, nh) for lv, ix, nh in frontier.append(h))
    _insert(entries, nodes)
    log.tree_size = frontier.size
    TransparencyLog.objects.filter(pk=log.pk).update(tree_size=log.tree_size)
    return len(leaves)


def _insert(entries: list[EntryRow], nodes: list[NodeRow]) -> None:
    """Bulk-insert entries and nodes: COPY on PostgreSQL (the sequencer's hot path), ORM elsewhere."""
    if connection.vendor != "postgresql":
        LogEntry.objects.bulk_create(
            [
                LogEntry(log_id=lg, leaf_index=i, certificate_id=c, timestamp_ms=t, leaf_hash=h, leaf_input=r)
                for lg, i, c, t, h, r in entries
            ],
            batch_size=2000,
        )
        MerkleNode.objects.bulk_create(
            [MerkleNode(log_id=lg, level=lv, index=ix, hash=h) for lg, lv, ix, h in nodes], batch_size=2000
        )
        return
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg 3's cursor: COPY FROM STDIN with binary-safe rows
        with raw.copy(
            "COPY pki_logentry (log_id, leaf_index, certificate_id, timestamp_ms, leaf_hash, leaf_input) "
            "FROM STDIN"
        ) as copy:
            for entry in entries:
                copy.write_row(entry)
        with raw.copy('COPY pki_merklenode (log_id, level, "index", hash) FROM STDIN') as copy:
            for node in nodes:
                copy.write_row(node)


# Takes the oldest queued certificates off the queue and reads what their leaves are made of, in
# one statement (the caller holds the logs' locks, so no other sequencer takes them meanwhile).
_PG_TAKE_PENDING = (
    "WITH taken AS (DELETE FROM pki_pendingleaf WHERE id IN "
    "(SELECT id FROM pki_pendingleaf ORDER BY id LIMIT %s) RETURNING id, certificate_id) "
    "SELECT c.id, c.der, floor(EXTRACT(EPOCH FROM c.created_at) * 1000)::bigint "
    "FROM taken t JOIN pki_certificate c ON c.id = t.certificate_id ORDER BY t.id"
)


def _take_pending(limit: int) -> tuple[int, list[tuple[int, bytes, int]]]:
    """(rows taken off the queue, [(certificate id, DER, timestamp ms)] in queue order)."""
    if connection.vendor == "postgresql":
        rows = [(pk, bytes(der), ts) for pk, der, ts in _pg_rows(_PG_TAKE_PENDING, [limit])]
        return len(rows), rows
    pending = list(PendingLeaf.objects.order_by("id").values_list("id", "certificate_id")[:limit])
    found = {
        pk: (bytes(der), timestamp_ms(created_at))
        for pk, der, created_at in Certificate.objects.filter(pk__in={c for _, c in pending}).values_list(
            "pk", "der", "created_at"
        )
    }
    PendingLeaf.objects.filter(id__in=[p for p, _ in pending]).delete()
    # The trigger writes in the row's transaction: only a deleted certificate row is missing.
    return len(pending), [(c, *found[c]) for _, c in pending if c in found]


def sequence(*, limit: int = SEQUENCE_BATCH) -> int:
    """Move queued certificates into every log that takes KMI's issuance; return how many were
    taken off the queue."""
    with transaction.atomic():
        logs = list(TransparencyLog.objects.select_for_update().filter(feeds_issuance=True).order_by("pk"))
        if not logs:
            return 0  # queued leaves wait for the first log
        taken, rows = _take_pending(limit)
        leaves = [NewLeaf(x509_leaf(timestamp=ts, certificate_der=der), ts, pk) for pk, der, ts in rows]
        for log in logs:
            append_leaves(log=log, leaves=leaves)
    return taken


def latest_tree_head(log: TransparencyLog) -> SignedTreeHead | None:
    """The newest tree head the log signed, or None before its first."""
    return SignedTreeHead.objects.filter(log=log).order_by("-timestamp_ms").first()


def sign_tree_head(
    *, log: TransparencyLog, actor: str, force: bool = False, now: dt.datetime | None = None
) -> SignedTreeHead:
    """Sequence what is queued, then sign a tree head if the tree grew (or ``force``)."""
    now = resolve(now)
    if log.feeds_issuance:
        while sequence() == SEQUENCE_BATCH:
            pass
    with transaction.atomic():
        log = TransparencyLog.objects.select_for_update().select_related("key").get(pk=log.pk)
        last = latest_tree_head(log)
        if last is not None and last.tree_size == log.tree_size and not force:
            return last
        frontier = _frontier(log)
        ts = timestamp_ms(now)
        if last is not None and ts <= last.timestamp_ms:
            ts = last.timestamp_ms + 1  # tree heads are strictly ordered in time
        root = frontier.root()
        signature = get_backend(log.key.backend).sign_data(
            log.key.handle,
            tree_head_input(timestamp=ts, tree_size=frontier.size, root_hash=root),
            hashes.SHA256(),
        )
        sth = SignedTreeHead.objects.create(
            log=log, tree_size=frontier.size, timestamp_ms=ts, root_hash=root, signature=signature
        )
        audit.record(
            action="transparency.tree_head_signed",
            actor=actor,
            obj=log,
            details={"tree_size": frontier.size, "timestamp": ts, "root_hash": root.hex()},
            scope=f"log:{log.name}",
            now=now,
        )
    return sth


# The beat job signs a grown tree at most this often: every certificate is under a tree head
# within this plus one tick (10 s) of its commit, well inside the 60 s MMD, while a busy log
# publishes at most 2,880 tree heads a day (each one a consistency proof for verify_log).
TREE_HEAD_INTERVAL = dt.timedelta(seconds=30)


def tick(*, actor: str, now: dt.datetime | None = None) -> dict[str, int]:
    """The beat job: sequence the queue, then sign a tree head for every log that grew (at most
    one per ``TREE_HEAD_INTERVAL``); return each log's published size."""
    now = resolve(now)
    out: dict[str, int] = {}
    while sequence() == SEQUENCE_BATCH:
        pass
    for log in TransparencyLog.objects.select_related("key").order_by("pk"):
        last = latest_tree_head(log)
        if last is not None and last.timestamp_ms > timestamp_ms(now - TREE_HEAD_INTERVAL):
            out[log.name] = last.tree_size
            continue
        out[log.name] = sign_tree_head(log=log, actor=actor, now=now).tree_size
    return out


# --- reading: proofs and entries -----------------------------------------------------------------


def tree_head_at(log: TransparencyLog, tree_size: int) -> SignedTreeHead | None:
    """A published tree head of exactly ``tree_size`` leaves, if any."""
    return SignedTreeHead.objects.filter(log=log, tree_size=tree_size).order_by("-timestamp_ms").first()


def _published_size(log: TransparencyLog) -> int:
    sth = latest_tree_head(log)
    return sth.tree_size if sth is not None else 0


_PG_PROOF_INDEX = (
    "SELECT (SELECT tree_size FROM pki_signedtreehead WHERE log_id = %s ORDER BY timestamp_ms DESC LIMIT 1), "
    "(SELECT leaf_index FROM pki_logentry WHERE log_id = %s AND leaf_hash = %s AND leaf_index < %s LIMIT 1)"
)


def inclusion_proof(*, log: TransparencyLog, leaf_hash: bytes, tree_size: int) -> tuple[int, list[bytes]]:
    """(leaf index, audit path) of the leaf with this hash in the tree of ``tree_size`` (§4.5)."""
    # One round trip: the published size and the leaf's index. No ORDER BY on the entry: it
    # would tempt the planner to walk the (log, leaf_index) index instead of looking the hash
    # up. A hash names one leaf (a certificate is logged once).
    if connection.vendor == "postgresql":
        size, index = _pg_rows(_PG_PROOF_INDEX, [log.pk, log.pk, leaf_hash, tree_size])[0]
    else:
        published = (
            SignedTreeHead.objects.filter(log_id=log.pk).order_by("-timestamp_ms").values("tree_size")[:1]
        )
        index_of = LogEntry.objects.filter(
            log_id=log.pk, leaf_hash=leaf_hash, leaf_index__lt=tree_size
        ).values("leaf_index")[:1]
        row = (
            TransparencyLog.objects.filter(pk=log.pk)
            .values_list(Subquery(published), Subquery(index_of))
            .first()
        )
        size, index = row if row is not None else (None, None)
    if not 0 < tree_size <= (size or 0):
        raise PolicyViolation(f"tree_size {tree_size} is not a published tree size of log {log.name}")
    if index is None:
        raise NotFound(f"no leaf with that hash in the first {tree_size} entries of log {log.name}")
    return index, proof_for_index(log=log, index=index, tree_size=tree_size)


def proof_for_index(*, log: TransparencyLog, index: int, tree_size: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``tree_size`` (one query per level kind)."""
    return merkle.range_hashes(
        merkle.inclusion_ranges(index, tree_size), lambda nodes: lookup_nodes(log.pk, nodes)
    )


def consistency_proof(*, log: TransparencyLog, first: int, second: int) -> list[bytes]:
    """PROOF(first, D[second]) between two tree sizes up to the published one (§4.4)."""
    if not 0 < first <= second <= _published_size(log):
        raise PolicyViolation(f"no consistency proof from {first} to {second} in log {log.name}")
    return merkle.range_hashes(
        merkle.consistency_ranges(first, second), lambda nodes: lookup_nodes(log.pk, nodes)
    )


def leaf_input_of(entry: LogEntry, certificate_der: bytes | None) -> bytes:
    """The MerkleTreeLeaf of an entry, rebuilt from its certificate's DER when it has one."""
    if entry.certificate_id is None:
        return bytes(entry.leaf_input or b"")
    return x509_leaf(timestamp=entry.timestamp_ms, certificate_der=certificate_der or b"")


def entries(*, log: TransparencyLog, start: int, end: int) -> list[tuple[bytes, bytes]]:
    """(leaf_input, extra_data) of entries ``start``..``end`` inclusive, within the published tree."""
    size = _published_size(log)
    if start < 0 or end < start:
        raise PolicyViolation("get-entries needs 0 ≤ start ≤ end")
    if start >= size:
        raise PolicyViolation(f"entry {start} is beyond the published tree of {size}")
    end = min(end, size - 1, start + MAX_ENTRIES - 1)
    rows = list(
        LogEntry.objects.filter(log=log, leaf_index__gte=start, leaf_index__lte=end)
        .select_related("certificate", "certificate__ca")
        .order_by("leaf_index")
    )
    chains: dict[tuple[int | None, int | None], bytes] = {}
    out: list[tuple[bytes, bytes]] = []
    for entry in rows:
        cert = entry.certificate
        if cert is None:
            out.append((leaf_input_of(entry, None), b""))
            continue
        key = (cert.ca_id, cert.issuer_generation)
        if key not in chains or cert.ca is None:
            # RFC 6962 §4.6: extra_data of an x509_entry is the chain up to a root.
            chains[key] = certificate_chain([bytes(r.der) for r in certificate_chain_rows(cert)[1:]])
        out.append((leaf_input_of(entry, bytes(cert.der)), chains[key]))
    return out


def roots() -> list[bytes]:
    """DER certificates of KMI's root CAs (get-roots: the anchors its entries chain to)."""
    from pki.models.authority import CertificateAuthority

    out = []
    for ca in CertificateAuthority.objects.filter(parent__isnull=True).order_by("pk"):
        cert = ca.certificate
        if cert is not None:
            out.append(bytes(cert.der))
    return out


def entry_for_certificate(certificate: Certificate, log: TransparencyLog) -> LogEntry | None:
    """The certificate's leaf in ``log``, or None while it is still queued."""
    return LogEntry.objects.filter(log=log, certificate=certificate).first()


@dataclass(frozen=True)
class InclusionReceipt:
    """Where a certificate is in a log: its leaf, the tree head that covers it, the audit path."""

    log: TransparencyLog
    entry: LogEntry
    tree_head: SignedTreeHead
    audit_path: list[bytes]


def inclusion_receipt(*, certificate: Certificate, log: TransparencyLog | None = None) -> InclusionReceipt:
    """The certificate's inclusion proof against the log's latest tree head (an SCT-like receipt).

    ``log`` defaults to the first log that takes KMI's issuance. InvalidState while the
    certificate is not yet under a signed tree head (it will be within the log's MMD).
    """
    if log is None:
        log = TransparencyLog.objects.filter(feeds_issuance=True).select_related("key").order_by("pk").first()
        if log is None:
            raise NotFound("KMI runs no transparency log")
    entry = entry_for_certificate(certificate, log)
    sth = latest_tree_head(log)
    if entry is None or sth is None or entry.leaf_index >= sth.tree_size:
        raise InvalidState(
            f"certificate {certificate.serial} is not yet under a signed tree head of log {log.name}: "
            f"retry within {log.mmd_seconds} s"
        )
    return InclusionReceipt(
        log=log,
        entry=entry,
        tree_head=sth,
        audit_path=proof_for_index(log=log, index=entry.leaf_index, tree_size=sth.tree_size),
    )


# --- verification -----------------------------------------------------------------------------


@dataclass
class LogReport:
    """What ``verify_log`` found: sizes checked and every problem (empty when the log is sound)."""

    log: str
    leaves: int = 0
    tree_heads: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems


def verify_signature(log: TransparencyLog, sth: SignedTreeHead) -> bool:
    """Does the tree head's signature verify under the log's key?"""
    key = serialization.load_der_public_key(public_key_der(log))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    data = tree_head_input(
        timestamp=sth.timestamp_ms, tree_size=sth.tree_size, root_hash=bytes(sth.root_hash)
    )
    try:
        key.verify(bytes(sth.signature), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def verify_log(*, log: TransparencyLog, batch: int = 5000) -> LogReport:
    """Recompute the tree from the leaves (certificates' DER), check every tree head's signature
    and root, the stored subtree hashes, and the consistency proofs between consecutive heads."""
    log = TransparencyLog.objects.select_related("key").get(pk=log.pk)  # its current size
    report = LogReport(log=log.name)
    sths = list(SignedTreeHead.objects.filter(log=log).order_by("timestamp_ms"))
    report.tree_heads = len(sths)
    roots_at = _replay_leaves(log, {s.tree_size for s in sths}, report, batch)
    previous: SignedTreeHead | None = None
    for sth in sths:
        _check_head(log, sth, previous, roots_at, report)
        previous = sth
    return report


def _replay_leaves(log: TransparencyLog, wanted: set[int], report: LogReport, batch: int) -> dict[int, bytes]:
    """Rebuild the tree from the entries; return its root at each size in ``wanted``."""
    roots_at: dict[int, bytes] = {0: merkle.EMPTY_ROOT}
    frontier = merkle.Frontier()
    start = 0
    while start < log.tree_size and len(report.problems) <= 100:
        rows = list(
            LogEntry.objects.filter(log=log, leaf_index__gte=start, leaf_index__lt=start + batch)
            .order_by("leaf_index")
            .values_list(
                "leaf_index", "certificate__der", "certificate_id", "timestamp_ms", "leaf_input", "leaf_hash"
            )
        )
        made: dict[merkle.Node, bytes] = {}
        for index, der, cert_id, ts, raw, stored_leaf in rows:
            if index != frontier.size:
                break
            leaf_input = x509_leaf(timestamp=ts, certificate_der=bytes(der)) if cert_id else bytes(raw or b"")
            h = merkle.leaf_hash(leaf_input)
            if h != bytes(stored_leaf):
                report.problems.append(f"entry {index}: its leaf hash does not match its certificate")
            made.update({(lv, ix): nh for lv, ix, nh in frontier.append(h)})
            if frontier.size in wanted:
                roots_at[frontier.size] = frontier.root()
        if frontier.size != min(start + batch, log.tree_size):
            report.problems.append(f"entry {frontier.size} is missing")
            break
        try:
            stored = lookup_nodes(log.pk, made)
        except InvalidState as exc:
            report.problems.append(str(exc))
            stored = {}
        bad = sorted(n for n, h in made.items() if stored.get(n, h) != h)
        if bad:
            report.problems.append(
                f"{len(bad)} stored subtree hashes do not match the leaves, first {bad[0]}"
            )
        start += batch
    report.leaves = frontier.size
    return roots_at


def _check_head(
    log: TransparencyLog,
    sth: SignedTreeHead,
    previous: SignedTreeHead | None,
    roots_at: dict[int, bytes],
    report: LogReport,
) -> None:
    label = f"tree head of size {sth.tree_size} at {sth.timestamp_ms}"
    if not verify_signature(log, sth):
        report.problems.append(f"{label}: bad signature")
    if sth.tree_size > report.leaves:
        report.problems.append(f"{label}: larger than the log ({report.leaves} leaves)")
    elif roots_at.get(sth.tree_size) != bytes(sth.root_hash):
        report.problems.append(f"{label}: root hash does not match the leaves")
    if previous is None or not previous.tree_size:
        return
    if sth.tree_size < previous.tree_size:
        report.problems.append(f"{label}: the tree shrank from {previous.tree_size}")
        return
    if sth.tree_size > report.leaves:
        return
    try:
        proof = merkle.range_hashes(
            merkle.consistency_ranges(previous.tree_size, sth.tree_size),
            lambda nodes: lookup_nodes(log.pk, nodes),
        )
    except InvalidState as exc:
        report.problems.append(f"{label}: {exc}")
        return
    if not merkle.verify_consistency(
        first=previous.tree_size,
        second=sth.tree_size,
        first_root=bytes(previous.root_hash),
        second_root=bytes(sth.root_hash),
        proof=proof,
    ):
        report.problems.append(f"{label}: not consistent with the head before it")
