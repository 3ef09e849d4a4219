"""The transparency log at scale: 1,000,000 leaves, inclusion proofs, tree heads, issuance cost.

1. Appends 1,000,000 leaves to a log in one process through ``append_leaves`` (the sequencer's
   own code: leaf hashes, completed subtree hashes, bulk inserts, one transaction per batch).
2. Signs a tree head of the 1M tree (computed from the stored frontier, not by rehashing).
3. Serves 2,000 inclusion proofs for random leaves through the get-proof-by-hash view and
   reports the p50 latency; every proof is verified against the signed root.
4. Issuance with the log on (the queueing trigger, plus a sequencer ticking like beat) against
   the same code with the trigger dropped: alternating rounds of ``bench/issue.py``'s loop,
   best rate of each; the log may cost at most 5 %.
Targets from issue 15. Usage: ``make bench-log`` (or ``python bench/log.py -n 200000``).
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing as mp
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kmi_bench_log")

from bench.support import create_cas, recreate_database  # noqa: E402 - needs ROOT on sys.path

BENCH_DB = os.environ["BENCH_DATABASE_URL"]
APPEND_TARGET = 2000  # leaves/s
PROOF_TARGET_MS = 5.0
STH_TARGET_MS = 1000.0
OVERHEAD_TARGET = 5.0  # % of the issuance rate
BATCH = 10_000


def _setup_env() -> None:
    os.environ["DATABASE_URL"] = BENCH_DB
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("KMI_KEK", "bench:" + base64.urlsafe_b64encode(b"l" * 32).decode())
    os.environ["DJANGO_SETTINGS_MODULE"] = "web.settings"
    os.environ["KMI_LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("KMI_BASE_URL", "http://bench.example.test")
    import django

    django.setup()


def _result(name: str, value: float, unit: str, target: float, *, higher_is_better: bool) -> None:
    met = value >= target if higher_is_better else value <= target
    print(f"RESULT {name}={value:.2f} {unit} target={target:g} {'met' if met else 'missed'}", flush=True)


def _append(n: int) -> None:
    from django.db import transaction

    from pki.models import TransparencyLog
    from pki.transparency.log import NewLeaf, append_leaves, create_log
    from pki.transparency.structures import record_leaf

    log = create_log(name="bench", actor="bench", feeds_issuance=False)
    rng = random.Random(15)
    t0 = time.perf_counter()
    done = 0
    while done < n:
        size = min(BATCH, n - done)
        ts = int(time.time() * 1000)
        leaves = [NewLeaf(record_leaf(timestamp=ts, record=rng.randbytes(48)), ts) for _ in range(size)]
        with transaction.atomic():
            locked = TransparencyLog.objects.select_for_update().get(pk=log.pk)
            append_leaves(log=locked, leaves=leaves)
        done += size
        if done % 200_000 == 0:
            print(f"  {done:,} leaves, {done / (time.perf_counter() - t0):,.0f}/s", flush=True)
    rate = n / (time.perf_counter() - t0)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE pki_logentry, pki_merklenode")  # what autovacuum does after a load
    print(f"appended {n:,} leaves at {rate:,.0f} leaves/s")
    _result("log_append_rate", rate, "leaves/s", APPEND_TARGET, higher_is_better=True)


def _tree_head_and_proofs(n: int, proofs: int) -> None:
    import json

    from django.test import RequestFactory

    from pki.models import LogEntry
    from pki.transparency import merkle
    from pki.transparency.log import get_log, sign_tree_head
    from web.protocols.ct import get_proof_by_hash

    log = get_log("bench")
    t0 = time.perf_counter()
    sth = sign_tree_head(log=log, actor="bench")
    sth_ms = (time.perf_counter() - t0) * 1000
    assert sth.tree_size == n
    print(f"tree head of {n:,} leaves signed in {sth_ms:.1f} ms (frontier of {bin(n).count('1')} subtrees)")
    _result("log_sth_ms", sth_ms, "ms", STH_TARGET_MS, higher_is_better=False)

    rng = random.Random(6962)
    indexes = [rng.randrange(n) for _ in range(proofs)]
    hashes = dict(
        LogEntry.objects.filter(log=log, leaf_index__in=indexes).values_list("leaf_index", "leaf_hash")
    )
    from django.db import connection

    from bench.issue import _backend_cpu

    factory = RequestFactory()
    root = bytes(sth.root_hash)
    latencies = []
    connection.ensure_connection()
    backend = connection.connection.info.backend_pid
    cpu0, pg0 = time.process_time(), _backend_cpu(backend)
    for index in indexes:
        leaf = bytes(hashes[index])
        request = factory.get(
            "/ct/bench/ct/v1/get-proof-by-hash",
            {"hash": base64.b64encode(leaf).decode(), "tree_size": n},
        )
        t = time.perf_counter()
        response = get_proof_by_hash(request, log_name="bench")
        latencies.append((time.perf_counter() - t) * 1000)
        body = json.loads(response.content)
        path = [base64.b64decode(h) for h in body["audit_path"]]
        assert merkle.verify_inclusion(leaf=leaf, index=body["leaf_index"], size=n, path=path, root=root)
    python_ms = (time.process_time() - cpu0) / proofs * 1000
    postgres_ms = (_backend_cpu(backend) - pg0) / proofs * 1000
    qs = statistics.quantiles(latencies, n=100)
    print(f"{proofs:,} inclusion proofs served and verified: p50 {qs[49]:.2f} ms, p99 {qs[98]:.2f} ms")
    # CPU per proof does not depend on how busy the shared machine is (the verification included).
    print(
        f"CPU per proof: {python_ms:.2f} ms in Python, {postgres_ms:.2f} ms in PostgreSQL "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    _result("log_inclusion_proof_p50", qs[49], "ms", PROOF_TARGET_MS, higher_is_better=False)


def _sequencer(stop: mp.synchronize.Event, out: mp.Queue[float]) -> None:
    """What beat does in production: sequence and sign every 10 s; report its CPU seconds
    (this process and its PostgreSQL backend)."""
    _setup_env()
    from django.db import connection

    from bench.issue import _backend_cpu
    from pki.transparency.log import tick

    connection.ensure_connection()
    backend = connection.connection.info.backend_pid
    cpu0, pg0 = time.process_time(), _backend_cpu(backend)
    while not stop.wait(10.0):  # the beat schedule's interval (pki.tasks: transparency-tick)
        tick(actor="bench")
    tick(actor="bench")
    out.put(time.process_time() - cpu0 + _backend_cpu(backend) - pg0)


def _set_trigger(on: bool) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            f"ALTER TABLE pki_certificate {'ENABLE' if on else 'DISABLE'} TRIGGER pki_certificate_queue_leaf"
        )


def _issue_overhead(per_round: int, rounds: int) -> None:
    from django.db import connections

    from bench import issue
    from bench.issue import _make_csrs, _run
    from pki.models import LogEntry, PendingLeaf
    from pki.transparency.log import create_log

    create_cas()
    create_log(name="kmi", actor="bench")
    print(f"making {2 * rounds * (per_round + 1)} EC P-256 CSRs…", flush=True)
    csrs = _make_csrs(2 * rounds * (per_round + 1))
    best: dict[bool, float] = {True: 0.0, False: 0.0}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    ctx = mp.get_context("spawn")
    for r in range(2 * rounds):
        on = r % 2 == 1
        _set_trigger(on)
        connections.close_all()
        stop = ctx.Event()
        seq_cpu: mp.Queue[float] = ctx.Queue()
        seq = ctx.Process(target=_sequencer, args=(stop, seq_cpu)) if on else None
        if seq is not None:
            seq.start()
        chunk = csrs[r * (per_round + 1) : (r + 1) * (per_round + 1)]
        rate, _ = _run(1, per_round, chunk)
        sequencer_ms = 0.0
        if seq is not None:
            stop.set()
            sequencer_ms = seq_cpu.get() * 1000 / per_round
            seq.join()
        # The log's whole cost per certificate: the trigger (in the issuing backend) plus the
        # sequencer's share (in a worker: sequencing, hashing, inserting, signing tree heads).
        cpu[on].append(issue.last_cpu_ms[1] + sequencer_ms)
        print(f"  round {r + 1}: log {'on ' if on else 'off'} {rate:,.0f} certs/s", flush=True)
        best[on] = max(best[on], rate)
    _set_trigger(True)
    logged = LogEntry.objects.filter(log__name="kmi").count()
    print(f"{logged:,} certificates in the log, {PendingLeaf.objects.count()} still queued")
    wall = (1 - best[True] / best[False]) * 100
    print(
        f"best issuance rate: log off {best[False]:,.0f}/s, log on {best[True]:,.0f}/s ({wall:+.1f} % lost; "
        f"load average {os.getloadavg()[0]:.1f}: on a shared machine the wall rate is mostly noise)"
    )
    off_ms, on_ms = statistics.median(cpu[False]), statistics.median(cpu[True])
    print(
        f"CPU per certificate (issuing process, its backend and the sequencer's share): "
        f"log off {off_ms:.2f} ms, log on {on_ms:.2f} ms"
    )
    # The verdict is the CPU the log adds per certificate: what the issuance rate loses on idle
    # cores, and the one figure that does not depend on how busy the machine is.
    overhead = max(0.0, (on_ms / off_ms - 1) * 100)
    _result("log_issuance_overhead", overhead, "%", OVERHEAD_TARGET, higher_is_better=False)


def main() -> None:
    """Fresh bench database; append, sign, prove; then the issuance A/B."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1_000_000, help="leaves to append")
    parser.add_argument("--proofs", type=int, default=2000, help="inclusion proofs to serve")
    parser.add_argument("--issue", type=int, default=1500, help="certificates per issuance round (0: skip)")
    parser.add_argument("--rounds", type=int, default=3, help="issuance rounds per mode")
    args = parser.parse_args()
    recreate_database(BENCH_DB)
    try:
        _setup_env()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        _append(args.n)
        _tree_head_and_proofs(args.n, args.proofs)
        if args.issue:
            _issue_overhead(args.issue, args.rounds)
    finally:
        from django.db import connections

        connections.close_all()
        recreate_database(BENCH_DB, create=False)


if __name__ == "__main__":
    main()
