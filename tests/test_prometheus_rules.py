"""The Prometheus alerting rules shipped in docker/ pass ``promtool check rules`` and name only
metrics KMI exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[1] / "docker" / "prometheus" / "kmi-alerts.yml"


@pytest.mark.interop
def test_alerting_rules_pass_promtool():
    result = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_rules_use_only_exported_metrics():
    exported = set(re.findall(r'"(kmi_[a-z_]+)"', (RULES.parents[2] / "web" / "metrics.py").read_text()))
    used = set(re.findall(r"\b(kmi_[a-z_]+)\b", RULES.read_text()))
    assert used <= exported, used - exported
