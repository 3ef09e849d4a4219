"""The operator console in Debian's headless Chromium (Playwright), with axe-core on every page.

One live server (pytest-django's) and one browser for the module (its one test); each person
has a browser context of their own.
A requester submits a CSR; an operator signs in with TOTP, approves it from the queue, downloads
the chain and revokes it; the next CRL lists it and the dashboard shows it; the operator cannot
approve her own request; an auditor sees but cannot act; a requester sees only her certificates;
the queue works on a 375-px-wide phone; an administrator walks every other page. axe-core
(npm, injected into every page) must find no serious or critical violation, and the page must
break no rule of its Content-Security-Policy. Screenshots land in ``var/console-screenshots/``.

Playwright's sync API keeps an event loop running in this thread while the browser is open, and
Django refuses ORM calls under a running loop unless ``DJANGO_ALLOW_ASYNC_UNSAFE`` is set: the
ORM here runs in plain synchronous test code between browser steps, so the module sets it.
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from django.contrib.auth.models import User
from django.db import connections
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from pki import health
from pki.access import grant_role
from pki.authorities import create_intermediate_ca, create_root_ca
from pki.ca_creation import request_ca_creation
from pki.crl import publish_crl
from pki.enrollment import enroll
from pki.models import Certificate, CertificateRequest, Profile, RequestState, Role
from pki.x509.names import parse_subject
from tests.conftest import make_csr
from tests.support.chromium import CHROMIUM_FLAGS

pytestmark = [pytest.mark.interop, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "interop" / "node" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "var" / "console-screenshots"
PASSWORD = "a-long-password-42"


@pytest.fixture
def server_url(live_server: Any) -> str:
    """pytest-django's live server (one per test session; static files from the finders)."""
    return str(live_server.url)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's Chromium for the module's one test (closed before the database is reset: while
    Playwright runs, Django's connections belong to its greenlet, not to the test's teardown)."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class Visitor:
    """A browser context (one person) with the checks every page load gets."""

    page: Page
    base: str
    csp_errors: list[str]
    pages_checked: list[str]

    def go(self, path: str) -> None:
        """Open ``path`` and check it."""
        self.page.goto(self.base + path)
        self.check()

    def check(self, shot: str = "") -> None:
        """axe-core: no serious or critical violation; no CSP violation; optionally a screenshot."""
        self.page.wait_for_load_state("load")
        result: dict[str, Any] = self.page.evaluate(
            "async () => await axe.run(document, {resultTypes: ['violations']})"
        )
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert bad == [], f"{self.page.url}: {bad}"
        assert self.csp_errors == [], f"{self.page.url}: {self.csp_errors}"
        self.pages_checked.append(self.page.url)
        if shot:
            SHOTS.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)


@pytest.fixture
def contexts(browser: Browser) -> Iterator[list[BrowserContext]]:
    """The test's browser contexts, closed before the database is flushed (no late request)."""
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        context.close()
    # The ORM calls made while Playwright ran opened connections of their own context: close them
    # (else the test database cannot be dropped at the end of the session).
    connections.close_all()


def visitor(
    contexts: list[BrowserContext], browser: Browser, base: str, *, width: int = 1280, height: int = 900
) -> Visitor:
    """A fresh context with axe-core loaded into every page (an init script: CSP does not apply)."""
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    contexts.append(context)
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    return Visitor(page=page, base=base, csp_errors=errors, pages_checked=[])


def code_for(user: User) -> str:
    """The TOTP code of ``user``'s device now (the next step's when this one was used)."""
    device = TOTPDevice.objects.get(user=user)
    t = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    t.time = time.time()
    t.drift = device.drift + max(0, device.last_t + 1 - t.t())
    return f"{t.token():06d}"


def sign_in(v: Visitor, username: str, *, totp_user: User | None = None, check: bool = False) -> None:
    """The contract: /console/login/ with username and password, then the TOTP step if asked."""
    v.go("/console/login/")
    v.page.get_by_label("Username").fill(username)
    v.page.get_by_label("Password").fill(PASSWORD)
    v.page.get_by_role("button", name="Sign in").click()
    if totp_user is not None:
        v.page.wait_for_url("**/console/login/totp/**")
        if check:
            v.check("totp")
        v.page.get_by_label("Code").fill(code_for(totp_user))
        v.page.get_by_role("button", name="Verify").click()
    v.page.wait_for_url(lambda url: "/login/" not in url)


@dataclass
class World:
    """Who and what the story starts with."""

    rita: User
    oscar: User
    audrey: User
    alice: User
    foreign: Certificate


def _user(username: str, *grants: tuple[Any, ...], totp: bool = False) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD)
    for role, ca, profile in grants:
        grant_role(user=user, role=role, ca=ca, profile=profile, actor="test")
    if totp:
        TOTPDevice.objects.create(user=user, name="console", confirmed=True)
    return user


@pytest.fixture
def world(server_url: str, kmi_settings: Any) -> World:
    """Two CAs whose URLs point at the live server, four people, a certificate of someone else."""
    kmi_settings(BASE_URL=server_url)
    root = create_root_ca(name="root", subject=parse_subject("CN=KMI Console Root,O=KMI"), actor="test")
    issuing = create_intermediate_ca(
        name="issuing",
        parent=root,
        subject=parse_subject("CN=KMI Console Issuing,O=KMI"),
        path_length=0,
        actor="test",
    )
    tls, signing = Profile.objects.get(name="tls-server"), Profile.objects.get(name="code-signing")
    rita = _user("rita", (Role.REQUESTER, issuing, tls), (Role.REQUESTER, issuing, signing))
    bob = _user("bob", (Role.REQUESTER, issuing, tls))
    foreign = enroll(
        ca=issuing,
        profile=tls,
        csr=make_csr("ec-p384", sans=[x509.DNSName("bob.example.test")]),
        requester=bob,
        actor="bob",
    ).certificate
    assert foreign is not None
    return World(
        rita=rita,
        oscar=_user("oscar", (Role.CA_OPERATOR, issuing, None), totp=True),
        audrey=_user("audrey", (Role.AUDITOR, None, None)),
        alice=_user("alice", (Role.ADMINISTRATOR, None, None), totp=True),
        foreign=foreign,
    )


def test_a_week_of_ca_work_in_the_browser(
    server_url: str, world: World, browser: Browser, contexts: list[BrowserContext]
) -> None:
    # --- a requester submits a CSR ----------------------------------------------------------------
    rita = visitor(contexts, browser, server_url)
    sign_in(rita, "rita")
    rita.check("login-done")
    rita.go("/console/enroll/")
    rita.page.get_by_label("CSR (PEM)").fill(make_csr("ec-p256", subject="CN=Release Signing").decode())
    rita.page.get_by_label("CA").select_option("issuing")
    rita.page.get_by_label("Profile").select_option("code-signing")
    rita.page.get_by_role("button", name="Submit").click()
    rita.page.wait_for_url("**/console/requests/*/")
    rita.check()
    assert "Pending approval" in rita.page.content()
    request = CertificateRequest.objects.get(requested_by="rita")

    # --- an operator (TOTP) approves it from the queue and downloads the chain ------------------------
    oscar = visitor(contexts, browser, server_url)
    sign_in(oscar, "oscar", totp_user=world.oscar, check=True)
    oscar.go("/console/requests/")
    oscar.check("requests")
    oscar.page.get_by_role("link", name=f"#{request.pk}").click()
    oscar.page.wait_for_url(f"**/console/requests/{request.pk}/")
    oscar.check("request")
    assert "CN=Release Signing" in oscar.page.content()
    oscar.page.get_by_role("button", name="Approve and issue").click()
    oscar.page.wait_for_url("**/console/certificates/*/")
    oscar.check("certificate")
    cert = Certificate.objects.get(request=request)
    with oscar.page.expect_download() as download:
        oscar.page.get_by_test_id("download-chain").click()
    chain = x509.load_pem_x509_certificates(Path(download.value.path()).read_bytes())
    assert next(c.serial_number for c in chain) == cert.serial_int
    assert len(chain) == 3

    # --- revokes it; the next CRL lists it and the dashboard shows it ----------------------------------
    oscar.page.get_by_label("Reason").select_option("keyCompromise")
    oscar.page.get_by_role("button", name="Revoke").click()  # the confirm() dialog is accepted
    oscar.page.wait_for_load_state("load")
    assert oscar.page.get_by_test_id("cert-state").inner_text().startswith("revoked")
    issuing = cert.ca
    assert issuing is not None
    publish_crl(ca=issuing, actor="test")
    with urllib.request.urlopen(f"{server_url}/crl/issuing.crl", timeout=10) as response:
        crl = x509.load_der_x509_crl(response.read())
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_int) is not None
    health.refresh_summaries()
    oscar.go("/console/")
    oscar.check("dashboard")
    assert oscar.page.get_by_test_id("revoked-count").inner_text() == "1"
    assert oscar.page.get_by_test_id("crl-entries-issuing").inner_text() == "1"

    # --- the same operator cannot approve her own request ---------------------------------------------
    oscar.go("/console/enroll/")
    oscar.page.get_by_label("CSR (PEM)").fill(make_csr("ec-p384", subject="CN=Oscar Own").decode())
    oscar.page.get_by_label("CA").select_option("issuing")
    oscar.page.get_by_label("Profile").select_option("code-signing")
    oscar.page.get_by_role("button", name="Submit").click()
    oscar.page.wait_for_url("**/console/requests/*/")
    oscar.page.get_by_role("button", name="Approve and issue").click()
    oscar.page.wait_for_load_state("load")
    oscar.check()
    assert "another operator must approve it" in oscar.page.content()
    own = CertificateRequest.objects.get(requested_by="oscar")
    assert own.state == RequestState.PENDING

    # --- an auditor sees but cannot act -------------------------------------------------------------
    audrey = visitor(contexts, browser, server_url)
    sign_in(audrey, "audrey")
    audrey.go(f"/console/certificates/{cert.pk}/")
    assert cert.serial[:8] in audrey.page.content().replace(":", "").lower()
    assert audrey.page.get_by_role("button", name="Revoke").count() == 0
    audrey.go(f"/console/requests/{own.pk}/")
    assert audrey.page.get_by_role("button", name="Approve and issue").count() == 0
    audrey.go("/console/audit/")
    audrey.check("audit")
    assert "certificate.revoked" in audrey.page.content()

    # --- a requester sees only her own certificates -------------------------------------------------
    rita.go("/console/certificates/")
    rita.check("certificates-requester")
    content = rita.page.content()
    assert cert.serial in content
    assert world.foreign.serial not in content
    rita.page.goto(f"{server_url}/console/certificates/{world.foreign.pk}/")
    assert "Not Found" in rita.page.content() or rita.page.title() == ""

    # --- the queue on a 375-px-wide phone -----------------------------------------------------------
    phone_request = enroll(
        ca=issuing,
        profile=Profile.objects.get(name="code-signing"),
        csr=make_csr("ec-p256-b", subject="CN=Phone"),
        requester=world.rita,
        actor="rita",
    ).request
    phone = visitor(contexts, browser, server_url, width=375, height=740)
    sign_in(phone, "oscar", totp_user=world.oscar)
    phone.go("/console/requests/")
    phone.check("requests-phone")
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 375
    phone.page.get_by_label(f"Select request {phone_request.pk}").check()
    phone.page.get_by_role("button", name="Approve selected…").click()
    phone.page.wait_for_load_state("load")
    phone.check()
    phone.page.get_by_role("button", name="Yes, approve 1").click()
    phone.page.wait_for_load_state("load")
    assert Certificate.objects.filter(request=phone_request).exists()
    phone.go(f"/console/certificates/{Certificate.objects.get(request=phone_request).pk}/")
    phone.check("certificate-phone")
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 375

    # --- an administrator walks every other page ------------------------------------------------------
    # A CA she asked for waits on the CA list for another administrator (separation of duties).
    request_ca_creation(
        name="team-ca",
        parent=issuing.parent,
        subject="CN=Team CA,O=KMI",
        key_type="ec-p256",
        validity_days=365,
        requester=world.alice,
        actor="alice",
    )
    alice = visitor(contexts, browser, server_url)
    sign_in(alice, "alice", totp_user=world.alice)
    for path, shot in (
        ("/console/", ""),
        ("/console/cas/", "cas"),
        ("/console/cas/issuing/", "ca"),
        ("/console/cas/new/", ""),
        ("/console/profiles/", "profiles"),
        ("/console/profiles/code-signing/", ""),
        ("/console/profiles/code-signing/edit/", ""),
        ("/console/profiles/new/", ""),
        ("/console/keys/", "keys"),
        (f"/console/keys/{issuing.key_id}/", ""),
        ("/console/enroll/server-key/", ""),
        ("/console/access/", "access"),
        (f"/console/access/users/{world.oscar.pk}/", ""),
        ("/console/acme/", ""),
    ):
        alice.go(path)
        alice.check(shot)
    alice.go("/console/profiles/code-signing/edit/")
    alice.page.get_by_label("Validity cap (days)").fill("400")
    alice.page.get_by_role("button", name="Show the change").click()
    alice.page.wait_for_load_state("load")
    alice.check("profile-diff")
    alice.page.get_by_role("button", name="Apply the change").click()
    alice.page.wait_for_url("**/console/profiles/code-signing/")
    assert Profile.objects.get(name="code-signing").validity_days == 400
    alice.go("/console/tokens/")
    alice.page.get_by_role("button", name="Create token").click()
    alice.page.wait_for_load_state("load")
    alice.check("token-once")
    assert alice.page.get_by_test_id("new-token").inner_text().startswith("kmi_")
    alice.go("/console/acme/")
    alice.page.get_by_label("Name").fill("corp")
    alice.page.locator("#id_ca").select_option("issuing")
    alice.page.get_by_label("Profile").select_option("tls-server")
    alice.page.get_by_label("Allowed identifiers").fill("*.example.test")
    alice.page.get_by_role("button", name="Create endpoint").click()
    alice.page.wait_for_url("**/console/acme/corp/")
    alice.check("acme")

    # --- a first sign-in that enrols TOTP, and a lock-out --------------------------------------------
    _user("olga", (Role.CA_OPERATOR, issuing, None))
    olga = visitor(contexts, browser, server_url)
    olga.go("/console/login/")
    olga.check("login")
    olga.page.get_by_label("Username").fill("olga")
    olga.page.get_by_label("Password").fill(PASSWORD)
    olga.page.get_by_role("button", name="Sign in").click()
    olga.page.wait_for_url("**/console/login/totp/setup/**")
    olga.check("totp-setup")
    assert olga.page.locator(".qr svg").count() == 1
    for _ in range(5):
        olga.go("/console/login/")
        olga.page.get_by_label("Username").fill("olga")
        olga.page.get_by_label("Password").fill("wrong password")
        olga.page.get_by_role("button", name="Sign in").click()
        olga.page.wait_for_load_state("load")
    olga.check()
    assert "Too many failed sign-ins" in olga.page.content()
