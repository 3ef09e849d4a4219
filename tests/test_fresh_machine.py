"""What a fresh machine needs: one script installs the system packages (make test and .ci/run),
no kombu runtime files in the repository, and no kombu warning from the command line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "system-packages.sh"


def test_make_test_and_ci_use_the_one_package_script():
    makefile = (ROOT / "Makefile").read_text()
    assert "scripts/system-packages.sh" in makefile
    assert "test-steps: system-packages" in makefile
    assert "bash scripts/system-packages.sh" in (ROOT / ".ci" / "run").read_text()
    assert "apt-get" not in (ROOT / ".ci" / "run").read_text()  # only the script installs


def test_the_package_script_names_the_install_command_when_not_root(tmp_path):
    # As an unprivileged user with no programs on PATH, every package is missing.
    result = subprocess.run(
        [shutil.which("runuser") or "runuser", "-u", "nobody", "--", "/bin/bash", str(SCRIPT)],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    command = next(line for line in result.stderr.splitlines() if "install them with:" in line)
    for package in ("softhsm2", "docker-compose", "chromium", "libnss3-tools", "scep", "certmonger"):
        assert f" {package}" in command
    assert "apt-get install -y" in command


def test_the_package_script_passes_on_this_machine():
    assert subprocess.run(["bash", str(SCRIPT)], capture_output=True, check=False).returncode == 0


def test_no_kombu_runtime_files_are_tracked():
    tracked = subprocess.run(
        ["git", "ls-files", "control", "*.exchange"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert tracked == ""


def test_a_command_that_sends_a_task_prints_no_kombu_warning_and_writes_under_kmi_data_dir(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(KMI_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    code = "from web.celery import app; app.send_task('pki.noop', queue='signing'); print('sent')"
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "sent" in result.stdout
    assert "No hostname was supplied" not in result.stderr
    assert not (tmp_path / "control").exists()
    assert list((tmp_path / "data" / "broker" / "queue").glob("*.signing.msg"))
