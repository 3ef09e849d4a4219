"""Write the manual's generated reference pages (``make docs`` runs this before building).

``python docs/generate.py`` rewrites them; ``--check`` only reports the pages that differ from
what the code would generate (exit 1), as the test suite does, so they never drift.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configuration() -> str:
    """docs/reference/configuration.md, from pki/settings_registry.py."""
    from pki.settings_registry import reference_markdown

    return reference_markdown()


# Django's options every command has; the CLI reference lists them once instead of 26 times.
COMMON_OPTIONS = {
    "--version", "--verbosity", "--settings", "--pythonpath", "--traceback", "--no-color",
    "--force-color", "--skip-checks",
}  # fmt: skip


def cli() -> str:
    """docs/reference/cli.md, from every KMI management command's ``--help``."""
    import argparse
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")
    import django
    from django.core.management import get_commands, load_command_class

    django.setup()
    names = sorted(name for name, app in get_commands().items() if app in {"pki", "web"})
    lines = [
        "# Command line reference",
        "",
        "<!-- Generated from the commands' --help by `make docs` (docs/generate.py); do not edit. -->",
        "",
        "Every KMI command, as `python manage.py COMMAND --help` prints it. Each also takes Django's",
        "common options (`--verbosity {0,1,2,3}`, `--settings`, `--pythonpath`, `--traceback`,",
        "`--no-color`, `--force-color`, `--skip-checks`), left out below. Django's own commands",
        "(`migrate`, `createsuperuser`, `check`, `shell`, …) work as usual; `python manage.py help`",
        "lists them all. An overview by task is in the [Command line](../guide/command-line.md) guide.",
        "",
        " ".join(f"[`{name}`](#{name})" for name in names),
        "",
    ]
    for name in names:
        command = load_command_class(get_commands()[name], name)
        parser = command.create_parser("manage.py", name)
        for action in parser._actions:  # argparse has no public way to hide an inherited option
            if COMMON_OPTIONS.intersection(action.option_strings):
                action.help = argparse.SUPPRESS
        lines += [f"## {name}", "", "```text", _help(parser), "```", ""]
    return "\n".join(lines)


def _help(parser: Any) -> str:
    """The parser's help at a fixed width (argparse wraps to the terminal's, from COLUMNS)."""
    import os

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        return str(parser.format_help()).rstrip()
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


PAGES: dict[str, Callable[[], str]] = {
    "docs/reference/configuration.md": configuration,
    "docs/reference/cli.md": cli,
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
