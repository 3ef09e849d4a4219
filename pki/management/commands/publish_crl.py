"""``publish_crl --ca NAME [--shard N | --all] [--generation N]``: sign and store a new CRL now.

``--generation`` publishes the CRL of an earlier generation (key) of the CA; ``--all`` publishes
every scope of every generation that still answers for what it issued.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import CommandParser
from tqdm import tqdm

from pki.clock import utcnow
from pki.crl import publish_crl, scopes_of
from pki.generations import answering_generations
from pki.locations import crl_url, repository_name
from pki.management.base import PKICommand, get_ca


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ca", required=True, help="CA name")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--shard", type=int, help="publish one partition (1…crl_shards)")
        group.add_argument(
            "--all", action="store_true", help="the full CRL and every partition, of every generation"
        )
        parser.add_argument("--generation", type=int, help="the CA generation (default: the current one)")

    def handle(self, *args: Any, **opts: Any) -> None:
        ca = get_ca(opts["ca"])
        scopes: list[tuple[int, int | None]]
        if opts["all"]:
            numbers = (
                [opts["generation"]] if opts["generation"] else [g.number for g in answering_generations(ca)]
            )
            scopes = [(n, s or None) for n in numbers for s in scopes_of(ca, utcnow(), n)]
        else:
            scopes = [(opts["generation"] or ca.generation, opts["shard"])]
        for number, shard in scopes:
            name = repository_name(ca.name, number)
            bar: tqdm[Any] | None = None
            if sys.stderr.isatty():
                bar = tqdm(total=0, unit=" entries", desc=f"{name} shard {shard or 'full'}", leave=False)

            def progress(done: int, total: int, bar: tqdm[Any] | None = bar) -> None:
                if bar is not None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()

            t0 = time.perf_counter()
            crl = publish_crl(
                ca=ca, shard=shard, generation=number, actor=self.actor(), progress=progress if bar else None
            )
            if bar is not None:
                bar.close()
            self.stdout.write(
                f"published CRL {crl.crl_number} of CA {name} ({crl_url(name, shard)}): "
                f"{crl.entry_count} entries, next update {crl.next_update:%Y-%m-%d %H:%M:%S}Z, "
                f"sha256 {crl.sha256[:16]}…, {time.perf_counter() - t0:.2f} s"
            )
