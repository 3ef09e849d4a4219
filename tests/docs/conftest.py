"""A fresh checkout to run a manual page's commands in: manage.py, .venv and a migrated SQLite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.docs import ROOT


def reader_env(work: Path) -> dict[str, str]:
    """The environment of a reader in ``work``: ours without KMI's settings, data in ``work/var``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KMI_", "DATABASE_URL", "REDIS_URL", "DJANGO_", "VIRTUAL_ENV", "SOFTHSM2_"))
    }
    env["KMI_DATA_DIR"] = str(work / "var")
    return env


@pytest.fixture(scope="session")
def migrated_var(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``var/`` with a KEK file and a migrated SQLite database, made once per test process."""
    work = tmp_path_factory.mktemp("migrated")
    (work / "manage.py").symlink_to(ROOT / "manage.py")
    subprocess.run(
        [sys.executable, "manage.py", "create_kek", "--out", "var/kek"],
        cwd=work,
        env=reader_env(work),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=work,
        env=reader_env(work),
        check=True,
        capture_output=True,
    )
    return work / "var"


@pytest.fixture
def checkout(tmp_path: Path, migrated_var: Path) -> Callable[[], tuple[Path, dict[str, str]]]:
    """``checkout()`` gives a directory like a reader's checkout (after ``make run``) and its env."""

    def make() -> tuple[Path, dict[str, str]]:
        work = tmp_path / "checkout"
        work.mkdir()
        (work / "manage.py").symlink_to(ROOT / "manage.py")
        (work / ".venv").symlink_to(sys.prefix)  # the virtualenv running these tests
        shutil.copytree(migrated_var, work / "var")
        return work, reader_env(work)

    return make


@pytest.fixture(scope="session")
def pki_var(migrated_var: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``migrated_var`` with the CAs ``root`` and ``issuing`` (as ``make run`` makes them), once."""
    work = tmp_path_factory.mktemp("pki")
    (work / "manage.py").symlink_to(ROOT / "manage.py")
    shutil.copytree(migrated_var, work / "var")
    env = {**reader_env(work), "KMI_KEK_FILE": "var/kek"}
    for args in (
        ["--name", "root", "--subject", "CN=Root,O=Example"],
        ["--name", "issuing", "--parent", "root", "--subject", "CN=Issuing,O=Example", "--path-length", "0"],
    ):
        subprocess.run(
            [sys.executable, "manage.py", "init_ca", *args],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
        )
    return work / "var"


@pytest.fixture
def pki_checkout(tmp_path: Path, pki_var: Path) -> tuple[Path, dict[str, str]]:
    """A checkout whose KMI has the CAs ``root`` and ``issuing`` and a client's CSR ``www.csr``
    (a committed fixture) in the working directory; ``KMI_KEK_FILE`` is set."""
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "manage.py").symlink_to(ROOT / "manage.py")
    (work / ".venv").symlink_to(sys.prefix)
    shutil.copytree(pki_var, work / "var")
    shutil.copy(ROOT / "tests" / "fixtures" / "csrs" / "ec-p256.pem", work / "www.csr")
    return work, {**reader_env(work), "KMI_KEK_FILE": "var/kek"}
