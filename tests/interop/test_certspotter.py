"""certspotter (SSLMate's CT monitor, Debian's ``certspotter``) follows a live KMI log.

KMI serves its log from a real gunicorn; certspotter reads the log list KMI publishes
(``/ct/kmi/log.json``), verifies the tree head's signature with the log key, downloads every
entry, recomputes the Merkle root and reports the certificates issued for the watched domain.
When a stored certificate is altered after its tree head was signed, certspotter's root no
longer matches the signed one, and ``verify_log`` exits non-zero too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError

from pki.enrollment import sign_csr
from pki.models import Certificate, Profile
from pki.transparency.log import create_log, get_log, sign_tree_head
from tests.conftest import make_csr
from tests.support.processes import Proc, base_env, free_port_in, http, start_gunicorn, wait_for, worker_ports

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PORTS = (22300, 22399)  # this area's port range
WATCHED = "watched.example.test"


@pytest.fixture
def live_log(issuing_ca, tmp_path: Path) -> Iterator[str]:
    """The log ``kmi`` with two watched and one unwatched certificate, served by gunicorn."""
    create_log(name="kmi", actor="test")
    profile = Profile.objects.get(name="tls-server")
    for name in (f"www.{WATCHED}", "other.example.test", f"api.{WATCHED}"):
        csr = make_csr(subject=f"CN={name}", sans=[x509.DNSName(name)])
        sign_csr(ca=issuing_ca, profile=profile, csr=csr, actor="test")
    sign_tree_head(log=get_log("kmi"), actor="test")
    port = free_port_in(*worker_ports(*PORTS))
    env = base_env(
        redis_url=str(django_settings.REDIS_URL),
        prefix=f"kmi-test-{uuid.uuid4().hex[:10]}:",
        data_dir=tmp_path,
        kek=False,
    )
    env["KMI_BASE_URL"] = f"http://127.0.0.1:{port}"
    web: Proc = start_gunicorn(env, tmp_path / "gunicorn.log", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        web.stop()


def run_certspotter(base: str, tmp: Path, *, until: str, stream: str = "stdout") -> tuple[str, str]:
    """Run certspotter on the log list KMI serves until ``until`` shows on ``stream``; stop it."""
    status, _, body = http(f"{base}/ct/kmi/log.json")
    assert status == 200
    logs = tmp / "logs.json"
    logs.write_bytes(body)
    watchlist = tmp / "watchlist"
    watchlist.write_text(f".{WATCHED}\n")
    state = tmp / f"state-{uuid.uuid4().hex[:6]}"
    out, err = tmp / "certspotter.out", tmp / "certspotter.err"
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(
            [
                "certspotter",
                "-logs",
                str(logs),
                "-watchlist",
                str(watchlist),
                "-state_dir",
                str(state),
                "-stdout",
                "-verbose",
                "-no_save",
            ],
            stdout=fo,
            stderr=fe,
            start_new_session=True,
            env={**os.environ, "HOME": str(tmp)},
        )
    try:
        target = out if stream == "stdout" else err
        wait_for(
            lambda: until in target.read_text(errors="replace"), timeout=60, what=f"certspotter: {until}"
        )
        time.sleep(0.5)  # let it finish the entries it is writing
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    return out.read_text(errors="replace"), err.read_text(errors="replace")


def test_certspotter_follows_the_log_and_reports_the_watched_certificates(live_log, tmp_path):
    stdout, stderr = run_certspotter(
        live_log, tmp_path, until="finished downloading entries", stream="stderr"
    )
    assert f"www.{WATCHED}" in stdout
    assert f"api.{WATCHED}" in stdout
    assert "other.example.test" not in stdout
    # The only error is the one our SIGTERM causes ("stopped with error context canceled").
    problems = [ln for ln in stderr.splitlines() if "error" in ln and "context canceled" not in ln]
    assert not problems, stderr
    log_state = next((tmp_path).glob("state-*/logs/*/state.json"))
    state = json.loads(log_state.read_text())
    assert state["verified_sth"]["tree_size"] == 5  # two CA certificates and three leaves


def test_a_tampered_leaf_fails_certspotter_and_verify_log(live_log, tmp_path):
    victim = Certificate.objects.get(san_text=f"dns:api.{WATCHED}")
    der = bytearray(victim.der)
    der[60] ^= 0xFF
    Certificate.objects.filter(pk=victim.pk).update(der=bytes(der))
    _, stderr = run_certspotter(
        live_log, tmp_path, until="does not match the entries returned by the log", stream="stderr"
    )
    assert "the STH root hash" in stderr
    with pytest.raises(CommandError, match="inconsistent"):
        call_command("verify_log", "--log", "kmi")
