"""The package: the lock files agree with pyproject.toml, and the wheel runs KMI on its own.

The wheel test builds the wheel once, installs it into a fresh virtualenv exactly as
docker/Dockerfile does (the locked, hash-checked dependencies, then the wheel without
dependencies) and runs the ``kmi`` command outside the source tree.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
_PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)", re.MULTILINE)


def pins(lock: str) -> dict[str, str]:
    """``{canonical name: version}`` of a requirements file made by ``make lock``."""
    text = (ROOT / lock).read_text(encoding="utf-8")
    return {canonicalize_name(name.split("[")[0]): version for name, version in _PIN.findall(text)}


def project() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _disagreements(requirements: list[str], locked: dict[str, str], lock: str) -> list[str]:
    problems = []
    for text in requirements:
        req = Requirement(text)
        version = locked.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req.name} is in pyproject.toml but not in {lock}")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{lock} pins {req.name}=={version}, outside pyproject.toml's {req.specifier}")
    return problems


def test_lock_files_agree_with_pyproject():
    meta = project()
    main, dev = pins("requirements/main.txt"), pins("requirements/dev.txt")
    runtime = list(meta["dependencies"])
    problems = _disagreements(runtime, main, "requirements/main.txt")
    problems += _disagreements(runtime + meta["optional-dependencies"]["dev"], dev, "requirements/dev.txt")
    problems += [
        f"requirements/dev.txt pins {name}=={dev[name]} but requirements/main.txt {version}"
        for name, version in main.items()
        if dev.get(name, version) != version
    ]
    assert not problems, "run `make lock` and commit requirements/:\n" + "\n".join(problems)


def test_every_pin_carries_hashes():
    for lock in ("requirements/main.txt", "requirements/dev.txt"):
        entries = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / lock).read_text(encoding="utf-8").split("\n", 2)[2])
        unhashed = [e.split()[0] for e in entries if e.strip() and "--hash=sha256:" not in e]
        assert not unhashed, f"{lock}: pins without hashes: {unhashed}"


def test_the_lock_disagreement_check_catches_a_new_dependency():
    assert _disagreements(["not-a-kmi-dependency>=1"], pins("requirements/main.txt"), "lock") == [
        "not-a-kmi-dependency is in pyproject.toml but not in lock"
    ]
    assert _disagreements(["django<1"], pins("requirements/main.txt"), "lock")[0].startswith(
        "lock pins django=="
    )


def test_license_file_is_the_licence_pyproject_declares():
    assert project()["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


def test_changelog_follows_keep_a_changelog():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog\n")
    assert "https://keepachangelog.com/en/1.1.0/" in text
    versions = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, flags=re.MULTILINE)
    assert versions[0] == ("Unreleased", "")
    released = [v for v, _ in versions[1:]]
    assert str(project()["version"]) in released
    headings = set(re.findall(r"^### (\w+)$", text, flags=re.MULTILINE))
    assert headings <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


# --- the wheel, installed as the Dockerfile installs it ------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [BIN / "uv", "build", "--wheel", "--quiet", "--out-dir", out, ROOT], check=True, capture_output=True
    )
    [built] = out.glob("kmi-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    uv = [str(BIN / "uv")]
    subprocess.run(
        [*uv, "venv", "--quiet", "--python", sys.executable, venv], check=True, capture_output=True
    )
    python = ["--python", str(venv / "bin" / "python")]
    lock = ROOT / "requirements" / "main.txt"
    # pip (the Dockerfile's installer) compiles bytecode as it installs; uv does when asked.
    for args in (["--require-hashes", "-r", str(lock)], ["--no-deps", str(wheel)]):
        done = subprocess.run(
            [*uv, "pip", "install", "--quiet", "--compile-bytecode", *python, *args],
            check=False,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    return venv


def kmi(venv: Path, cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``kmi`` in ``cwd`` (no source tree there) with only ``settings`` set."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KMI_", "DJANGO_", "DATABASE_", "REDIS_"))
    }
    env.update(settings)
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        ["kmi", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"kmi {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def test_wheel_carries_the_templates_and_static_files(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("templates", "static"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file():
                assert f"web/assets/{path.relative_to(ROOT).as_posix()}" in names, path
    assert "pki/migrations/0001_initial.py" in names
    assert not any(name.startswith(("tests/", "bench/", "docs/")) for name in names)


@pytest.mark.interop
def test_installed_kmi_runs_outside_the_source_tree(installed: Path, tmp_path: Path):
    # The package, not this checkout: web is imported from the fresh virtualenv.
    where = subprocess.run(
        [installed / "bin" / "python", "-c", "import web; print(web.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(installed))
    listing = kmi(installed, tmp_path, "help").stdout
    assert all(name in listing for name in ("init_ca", "sign_csr", "revoke", "runstack", "migrate"))
    kmi(installed, tmp_path, "check", "--fail-level", "WARNING")
    # Data goes to ./var of the working directory when KMI_DATA_DIR is unset.
    kmi(installed, tmp_path, "migrate", "-v0")
    assert (tmp_path / "var" / "kmi.sqlite3").exists()
    # Static files of the apps (admin, the API docs) are found in the installed packages.
    found = kmi(
        installed,
        tmp_path,
        "findstatic",
        "--first",
        "admin/css/base.css",
        "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css",
    )
    assert found.stdout.count(str(installed)) == 2
