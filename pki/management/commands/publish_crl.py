"""``publish_crl --ca NAME [--shard N | --all]``: sign and store a new CRL now."""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import CommandParser
from tqdm import tqdm

from pki.clock import utcnow
from pki.crl import publish_crl, scopes_of
from pki.locations import crl_url
from pki.management.base import PKICommand, get_ca


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--ca", required=True, help="CA name")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--shard", type=int, help="publish one partition (1…crl_shards)")
        group.add_argument("--all", action="store_true", help="the full CRL and every partition")

    def handle(self, *args: Any, **opts: Any) -> None:
        ca = get_ca(opts["ca"])
        if opts["all"]:
            shards: list[int | None] = [s or None for s in scopes_of(ca, utcnow())]
        else:
            shards = [opts["shard"]]
        for shard in shards:
            bar: tqdm[Any] | None = None
            if sys.stderr.isatty():
                bar = tqdm(total=0, unit=" entries", desc=f"{ca.name} shard {shard or 'full'}", leave=False)

            def progress(done: int, total: int, bar: tqdm[Any] | None = bar) -> None:
                if bar is not None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()

            t0 = time.perf_counter()
            crl = publish_crl(ca=ca, shard=shard, actor=self.actor(), progress=progress if bar else None)
            if bar is not None:
                bar.close()
            self.stdout.write(
                f"published CRL {crl.crl_number} of CA {ca.name} ({crl_url(ca.name, shard)}): "
                f"{crl.entry_count} entries, next update {crl.next_update:%Y-%m-%d %H:%M:%S}Z, "
                f"sha256 {crl.sha256[:16]}…, {time.perf_counter() - t0:.2f} s"
            )
