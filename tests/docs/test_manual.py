"""The manual's pages: every ```sh block a reader would paste is run by some test.

Tests run a page's blocks with ``tests.support.docs.sh_blocks(PAGE, under=HEADING)``; this test
reads the test sources (statically, so it needs no other test to have run) and fails for a
block no test picks, unless it is listed below with the reason it cannot run here.
"""

from __future__ import annotations

import ast

from tests.support.docs import ROOT, sh_blocks

# (page, heading) -> why no test runs it. Keep this short: every entry is a page a reader
# cannot trust as much as the others.
NOT_RUN = {
    ("docs/guide/deployment.md", "Production deployment"): (
        "needs Docker Engine and a DNS name; tests/test_docker.py checks the compose file and Dockerfile"
    ),
    ("docs/guide/installation.md", "As a package"): (
        "tests/test_packaging.py runs these steps with uv (pip would download every dependency each run)"
    ),
    ("docs/api/ocsp.md", "OCSP"): "needs `make run` serving on 127.0.0.1:8000",
    ("docs/api/rest.md", "Enroll"): "needs `make run` serving on 127.0.0.1:8000",
    ("docs/api/acme.md", "Endpoints and clients"): "needs `make run` serving on 127.0.0.1:8000",
    ("docs/api/acme.md", "The demo endpoint"): "needs `make run` serving on 127.0.0.1:8000",
    ("docs/api/acme.md", "Over the API"): "needs `make run` serving on 127.0.0.1:8000",
}


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments (a test's ``PAGE = "docs/…"``)."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    out[target.id] = node.value.value
    return out


def _text(node: ast.expr | None, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def picked_blocks() -> set[tuple[str, str | None]]:
    """(page, heading) of every ``sh_blocks`` call in tests/; heading None = every block of the page.

    A heading the source does not spell out (a loop variable, say) counts as the whole page.
    """
    picked: set[tuple[str, str | None]] = set()
    for path in (ROOT / "tests").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = _constants(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            if name != "sh_blocks" or not node.args:
                continue
            page = _text(node.args[0], constants)
            if page is None:
                continue
            under = next((kw.value for kw in node.keywords if kw.arg == "under"), None)
            picked.add((page, _text(under, constants) if under is not None else None))
    return picked


def manual_blocks() -> set[tuple[str, str]]:
    """(page, heading) of every ```sh block of the manual."""
    return {
        (path.relative_to(ROOT).as_posix(), block.heading)
        for path in sorted((ROOT / "docs").rglob("*.md"))
        for block in sh_blocks(path)
    }


def test_every_sh_block_of_the_manual_is_run_by_a_test():
    picked = picked_blocks()
    unrun = sorted(
        (page, heading)
        for page, heading in manual_blocks()
        if (page, heading) not in picked and (page, None) not in picked and (page, heading) not in NOT_RUN
    )
    assert not unrun, (
        "```sh blocks no test runs (run them with tests.support.docs, or fence output as ```text):\n"
        + "\n".join(f"  {page} under {heading!r}" for page, heading in unrun)
    )


def test_every_exemption_still_names_a_block():
    assert set(NOT_RUN) <= manual_blocks(), "NOT_RUN lists a block that is gone: remove it"


def test_the_coverage_check_sees_a_call_by_constant():
    # This module's own scan must find the keys page's test (PAGE constant, literal heading).
    assert ("docs/guide/keys.md", "Trying it with SoftHSM2") in picked_blocks()
