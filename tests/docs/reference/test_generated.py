"""The generated reference pages are what the code generates now (``make docs`` rewrites them)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from tests.support.docs import ROOT, page


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATE = _generator()


@pytest.mark.parametrize("name", sorted(GENERATE.PAGES))
def test_committed_page_is_what_the_code_generates(name):
    assert page(name) == GENERATE.PAGES[name](), f"{name} is out of date: run make docs and commit it"


def test_check_mode_reports_a_stale_page(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "docs" / "reference" / "configuration.md"
    stale.parent.mkdir(parents=True)
    stale.write_text("# Configuration\n\nhand-edited\n")
    monkeypatch.setattr(GENERATE, "ROOT", tmp_path)
    monkeypatch.setattr(GENERATE, "PAGES", {"docs/reference/configuration.md": GENERATE.configuration})
    assert GENERATE.main(["--check"]) == 1
    assert "docs/reference/configuration.md" in capsys.readouterr().out
    assert stale.read_text() == "# Configuration\n\nhand-edited\n"  # --check never writes
    assert GENERATE.main([]) == 0
    assert GENERATE.main(["--check"]) == 0
