"""A reader's checkout for the runbooks: manage.py, .venv and a migrated SQLite database in var/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.docs import ROOT


def reader_env(work: Path) -> dict[str, str]:
    """Our environment without KMI's settings, the data in ``work/var``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KMI_", "DATABASE_URL", "REDIS_URL", "DJANGO_", "VIRTUAL_ENV", "SOFTHSM2_"))
    }
    env["KMI_DATA_DIR"] = str(work / "var")
    return env


@pytest.fixture(scope="session")
def migrated_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``var/`` with a KEK file and a migrated SQLite database, made once per test process."""
    work = tmp_path_factory.mktemp("runbook-data")
    (work / "manage.py").symlink_to(ROOT / "manage.py")
    for args in (["create_kek", "--out", "var/kek"], ["migrate", "-v0"]):
        subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=work,
            env=reader_env(work),
            check=True,
            capture_output=True,
        )
    return work / "var"


@pytest.fixture
def reader_checkout(tmp_path: Path, migrated_data: Path) -> tuple[Path, dict[str, str]]:
    """A directory like a reader's checkout (manage.py, .venv, var/) and the reader's environment."""
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "manage.py").symlink_to(ROOT / "manage.py")
    (work / ".venv").symlink_to(sys.prefix)  # the virtualenv running these tests
    shutil.copytree(migrated_data, work / "var")
    return work, reader_env(work)
