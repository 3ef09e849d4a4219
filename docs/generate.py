"""Write the manual's generated reference pages (``make docs`` runs this before building).

``python docs/generate.py`` rewrites them; ``--check`` only reports the pages that differ from
what the code would generate (exit 1), as the test suite does, so they never drift.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configuration() -> str:
    """docs/reference/configuration.md, from pki/settings_registry.py."""
    from pki.settings_registry import reference_markdown

    return reference_markdown()


PAGES: dict[str, Callable[[], str]] = {
    "docs/reference/configuration.md": configuration,
}


def main(argv: list[str]) -> int:
    """Write (or with ``--check`` compare) every generated page."""
    check = "--check" in argv
    stale = []
    for name, generate in PAGES.items():
        path = ROOT / name
        text = generate()
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not check:
            path.write_text(text, encoding="utf-8")
    if check and stale:
        print("generated pages out of date (run make docs):", *stale, sep="\n  ")  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
