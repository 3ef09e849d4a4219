"""Run the commands of a manual page (``docs/…/*.md``) or the README as a reader would.

A page's shell blocks are fenced ```` ```sh ````; each is a step a reader pastes into a terminal.
Tests pick blocks by the heading they sit under and run them with ``run_blocks`` in a prepared
directory and environment, so a page that drifts from what KMI does fails the suite.
Blocks fenced ```` ```console ```` or ```` ```text ```` are output or illustration, never run.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^```sh[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """One ```sh block: the heading it sits under and its text."""

    heading: str
    text: str


def page(path: str | Path) -> str:
    """The text of a page, relative to the repository root."""
    return (ROOT / path).read_text(encoding="utf-8")


def sh_blocks(path: str | Path, *, under: str | None = None) -> list[Block]:
    """The ```sh blocks of a page in order; ``under`` keeps those below a heading of that title."""
    text = page(path)
    headings = [(m.start(), m.group(2)) for m in _HEADING.finditer(text)]
    blocks = []
    for match in _FENCE.finditer(text):
        title = ""
        for start, name in headings:
            if start > match.start():
                break
            title = name
        blocks.append(Block(heading=title, text=match.group(1)))
    if under is not None:
        blocks = [b for b in blocks if b.heading == under]
        if not blocks:
            raise AssertionError(f"{path} has no ```sh block under a heading {under!r}")
    return blocks


def run_blocks(
    blocks: list[Block],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    prelude: str = "",
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``blocks`` as one bash script (``set -euo pipefail``) in ``cwd``; fail with its output."""
    script = "\n".join(["set -euo pipefail", prelude, *(b.text for b in blocks)])
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        # A complete environment (one with PATH) is used as given; otherwise it extends ours.
        env=env if env is not None and "PATH" in env else {**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"the page's commands failed (exit {result.returncode}):\n{script}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result
