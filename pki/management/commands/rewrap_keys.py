"""``rewrap_keys``: re-wrap every sealed data key under the current KEK (after ``create_kek``)."""

from __future__ import annotations

from typing import Any, TextIO, cast

from tqdm import tqdm

from pki.conf import pki_settings
from pki.keystore import rewrap_keys, rewrap_secrets
from pki.management.base import PKICommand


class Command(PKICommand):
    help = __doc__

    def handle(self, *args: Any, **opts: Any) -> None:
        bar: tqdm[Any] | None = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total, unit="key", desc="re-wrapping", file=cast(TextIO, self.stdout._out))
            bar.update(1)

        interactive = self.stdout.isatty()
        try:
            changed = rewrap_keys(actor=self.actor(), progress=progress if interactive else None)
        finally:
            if bar is not None:
                bar.close()
        current = pki_settings().current_kek_id
        self.stdout.write(f"re-wrapped {changed} key{'s' if changed != 1 else ''} under KEK {current}")
        sealed = rewrap_secrets(actor=self.actor())
        if sealed:
            self.stdout.write(
                f"re-sealed {sealed} ACME EAB key{'s' if sealed != 1 else ''} under KEK {current}"
            )
        changed += sealed
        if changed:
            self.stdout.write("the old KEK may be removed once every process reads the new KEK file")
