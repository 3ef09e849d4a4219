"""The hash-chained audit trail: it verifies, and tampering is caught at the first broken link."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from django.db import OperationalError, connection, transaction

from pki import audit, conf
from pki.audit import GENESIS, verify_chain
from pki.models import AuditEvent, AuditStream
from tests.conftest import NOW
from tests.support.tamper import owner_sql, triggers_off

pytestmark = pytest.mark.django_db


@pytest.fixture
def lanes(settings):
    """Set the number of lanes per scope (1 makes a scope's stream predictable)."""

    def apply(n: int) -> None:
        settings.KMI = {**settings.KMI, "AUDIT_LANES": n}
        conf.reset()

    yield apply
    conf.reset()


def write(n: int, scope: str = "ca:1") -> list[AuditEvent]:
    events = []
    for i in range(n):
        with transaction.atomic():
            events.append(
                audit.record(
                    action="test.event", actor="t", object_id=str(i), details={"i": i}, scope=scope, now=NOW
                )
            )
    return events


def sql(statement: str, params: list[object]) -> None:
    owner_sql(statement, params)


def test_chain_links_every_event_to_the_one_before(lanes):
    lanes(1)
    events = write(5)
    assert events[0].prev_hash == GENESIS
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    assert {e.stream for e in events} == {"ca:1/0"}
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    report = verify_chain()
    assert report.ok
    assert (report.streams, report.events) == (1, 5)


def test_record_outside_a_transaction_is_refused():
    # Another thread has its own connection, in autocommit: exactly "outside a transaction".
    raised: list[BaseException] = []

    def bare() -> None:
        try:
            audit.record(action="x", actor="t")
        except RuntimeError as exc:
            raised.append(exc)

    in_thread(bare).join(timeout=30)
    assert [str(e) for e in raised] == [
        "audit.record must run inside the transaction of the change it records"
    ]


def test_an_edited_row_is_caught(lanes):
    lanes(1)
    events = write(4)
    sql("UPDATE pki_auditevent SET details = %s WHERE id = %s", ['{"i": 99}', events[2].pk])
    [brk] = verify_chain().breaks
    assert (brk.stream, brk.seq, brk.event_id, brk.problem) == (
        "ca:1/0",
        3,
        events[2].pk,
        "event was altered",
    )


def test_an_edited_row_with_a_recomputed_hash_fails_its_mac(lanes):
    lanes(1)
    events = write(4)
    forged = AuditEvent.objects.get(pk=events[1].pk)
    forged.actor = "mallory"
    sql(
        "UPDATE pki_auditevent SET actor = %s, hash = %s WHERE id = %s",
        ["mallory", audit.event_hash(forged), forged.pk],
    )
    [brk] = verify_chain().breaks
    # The hash links still hold up to the next event; the MAC (keyed by SECRET_KEY) does not.
    assert (brk.seq, brk.event_id, brk.problem) == (
        2,
        events[1].pk,
        "event MAC does not verify (forged or rewritten)",
    )


def test_a_deleted_row_is_caught(lanes):
    lanes(1)
    events = write(5)
    sql("DELETE FROM pki_auditevent WHERE id = %s", [events[2].pk])
    [brk] = verify_chain().breaks
    assert (brk.seq, brk.event_id, brk.problem) == (3, events[3].pk, "event missing before this one")


def test_a_deleted_last_row_is_caught_by_the_head(lanes):
    lanes(1)
    events = write(3)
    sql("DELETE FROM pki_auditevent WHERE id = %s", [events[-1].pk])
    [brk] = verify_chain().breaks
    assert (brk.seq, brk.event_id, brk.problem) == (3, None, "chain head does not match the last event")


def test_reordered_rows_are_caught(lanes):
    lanes(1)
    events = write(4)
    a, b = events[1], events[2]
    sql("UPDATE pki_auditevent SET seq = -1 WHERE id = %s", [a.pk])
    sql("UPDATE pki_auditevent SET seq = %s WHERE id = %s", [a.seq, b.pk])
    sql("UPDATE pki_auditevent SET seq = %s WHERE id = %s", [b.seq, a.pk])
    [brk] = verify_chain().breaks
    assert (brk.seq, brk.event_id) == (2, b.pk)
    assert brk.problem in {"prev_hash does not match", "event was altered"}


def test_each_broken_stream_reports_only_its_first_break(lanes):
    lanes(1)
    first = write(4, scope="ca:1")
    second = write(3, scope="ca:2")
    write(2, scope="ca:3")  # intact
    sql("UPDATE pki_auditevent SET actor = 'x' WHERE id IN (%s, %s)", [first[1].pk, first[3].pk])
    sql("UPDATE pki_auditevent SET action = 'y' WHERE id = %s", [second[0].pk])
    report = verify_chain()
    assert not report.ok
    assert [(b.stream, b.seq) for b in report.breaks] == [("ca:1/0", 2), ("ca:2/0", 1)]
    assert (report.streams, report.events) == (3, 2 + 1 + 2)  # a broken stream stops counting at its break


def test_events_without_a_chain_head_are_caught(lanes):
    lanes(1)
    write(2, scope="ca:9")
    AuditStream.objects.filter(name="ca:9/0").delete()
    [brk] = verify_chain().breaks
    assert (brk.stream, brk.problem) == ("ca:9/0", "events without a chain head")


# --- concurrency: threads use their own connections, so their commits are real ----------------
def in_thread(target: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def cleanup(prefix: str) -> None:
    def delete() -> None:
        with triggers_off():
            AuditEvent.objects.filter(stream__startswith=prefix).delete()
            AuditStream.objects.filter(name__startswith=prefix).delete()

    in_thread(delete).join()


def test_concurrent_writers_keep_every_chain_whole():
    prefix = f"concurrency-{uuid.uuid4().hex[:8]}"
    errors: list[BaseException] = []

    def writer(n: int) -> Callable[[], None]:
        def run() -> None:
            try:
                for i in range(25):
                    with transaction.atomic():
                        audit.record(action="test.concurrent", actor=f"w{n}", object_id=str(i), scope=prefix)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        return run

    try:
        for thread in [in_thread(writer(n)) for n in range(4)]:
            thread.join(timeout=60)
        assert errors == []
        ours = AuditEvent.objects.filter(stream__startswith=prefix)
        assert ours.count() == 100
        streams = set(ours.values_list("stream", flat=True))
        assert len(streams) > 1  # spread over lanes
        for stream in streams:
            seqs = list(ours.filter(stream=stream).order_by("seq").values_list("seq", flat=True))
            assert seqs == list(range(1, len(seqs) + 1))
        assert verify_chain().ok
    finally:
        cleanup(prefix)


def test_writers_on_different_lanes_do_not_wait_for_each_other(lanes):
    lanes(1)
    prefix = f"lanes-{uuid.uuid4().hex[:8]}"
    holding = threading.Event()
    release = threading.Event()
    outcome: dict[str, str] = {}

    def slow_writer() -> None:
        with transaction.atomic():
            audit.record(action="test.hold", actor="a", scope=f"{prefix}-a")
            holding.set()
            release.wait(timeout=30)  # keeps the lock on stream "<prefix>-a/0"

    def writer(scope: str, key: str) -> Callable[[], None]:
        def run() -> None:
            try:
                with transaction.atomic():
                    with connection.cursor() as cursor:
                        cursor.execute("SET LOCAL lock_timeout = '300ms'")
                    audit.record(action="test.other", actor="b", scope=scope)
                outcome[key] = "committed"
            except OperationalError as exc:
                outcome[key] = f"blocked: {exc}".splitlines()[0]

        return run

    try:
        holder = in_thread(slow_writer)
        assert holding.wait(timeout=30)
        in_thread(writer(f"{prefix}-b", "other lane")).join(timeout=30)
        in_thread(writer(f"{prefix}-a", "same lane")).join(timeout=30)
        release.set()
        holder.join(timeout=30)
        assert outcome["other lane"] == "committed"
        assert outcome["same lane"].startswith("blocked: canceling statement due to lock timeout")
    finally:
        release.set()
        cleanup(prefix)


def test_the_periodic_task_reports_the_chain(lanes, caplog):
    from pki.tasks import verify_audit_chain

    lanes(1)
    events = write(2)
    assert verify_audit_chain() == {"streams": 1, "events": 2, "ok": True}
    sql("UPDATE pki_auditevent SET actor = 'x' WHERE id = %s", [events[0].pk])
    assert verify_audit_chain()["ok"] is False
    assert "audit chain ca:1/0 broken at seq 1: event was altered" in caplog.text


def test_an_append_committed_while_a_lane_is_verified_is_not_a_break():
    """verify_chain reads each head before its events: events committed in between lie beyond
    the head it read, and are verified with the head read again, not reported as a break."""
    with transaction.atomic():
        audit.record(action="test.first", actor="t", scope="race", details={})
    head = AuditStream.objects.get(name__startswith="race/")
    with transaction.atomic():
        for _ in range(3):
            audit.record(action="test.meanwhile", actor="t", scope="race", details={})
    count, problem = audit._verify_stream(head)  # the head as read before the appends
    assert (count, problem) == (4, None)


def test_an_event_beyond_a_head_that_does_not_move_is_a_break():
    with transaction.atomic():
        event = audit.record(action="test.first", actor="t", scope="beyond", details={})
    owner_sql("UPDATE pki_auditstream SET seq = 0, head = %s WHERE name = %s", [GENESIS, event.stream])
    report = verify_chain()
    assert [b.problem for b in report.breaks if b.stream == event.stream] == ["event beyond the chain head"]
