"""A web-side process calling the signing seam: ``python -m tests.support.web_side issue REQUEST_ID``.

Run with ``DJANGO_SETTINGS_MODULE=web.settings`` and no KEK, as a web process in production.
Prints one JSON line: the use case's result, or ``{"error": class, "code": …, "message": …}``.

``python -m tests.support.web_side api TOKEN METHOD PATH [BODY_FILE]`` makes one REST API call
through Django's test client in that process and prints ``{"status", "headers", "body",
"body_b64", "web_has_kek"}`` (the body as text, and as base64).

``python -m tests.support.web_side acme-eab ENDPOINT KEY_ID HMAC_KEY KEY_NAME`` registers an ACME
account for the fixture key ``KEY_NAME`` with an external account binding and prints
``{"status", "problem", "web_has_kek"}``.

``python -m tests.support.web_side http REQUEST_FILE`` makes one plain HTTP call (EST, SCEP) the
same way: the file holds ``{"method", "path", "content_type", "body_b64", "headers",
"environ_b64"}`` (``environ_b64``: WSGI environ bytes values, e.g. a TLS client certificate).
"""

from __future__ import annotations

import base64
import json
import sys


def main(argv: list[str]) -> int:
    """Issue the request ``argv[1]`` through ``run_signing``; 0 on success, 3 on a domain error."""
    import django

    django.setup()
    from pki.conf import pki_settings
    from pki.exceptions import PKIError
    from pki.signing import run_signing

    if argv[0] == "api":
        return _api(*argv[1:])
    if argv[0] == "acme-eab":
        return _acme_eab(*argv[1:])
    if argv[0] == "http":
        return _http(argv[1])
    if argv[0] != "issue":
        print(f"unknown command {argv[0]!r}", file=sys.stderr)
        return 2
    try:
        result = run_signing("issue_request", request_id=int(argv[1]), actor="api:test")
    except PKIError as exc:
        print(json.dumps({"error": type(exc).__name__, "code": exc.code, "message": str(exc)}))
        return 3
    result["web_has_kek"] = bool(pki_settings().keks)
    print(json.dumps(result))
    return 0


def _api(token: str, method: str, path: str, body_file: str = "") -> int:
    """One API call with ``token``; the response as a JSON line."""
    from pathlib import Path

    from django.test import Client

    from pki.conf import pki_settings

    body = Path(body_file).read_text() if body_file else "{}"
    response = Client().generic(
        method, path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    out = {
        "status": response.status_code,
        "headers": dict(response.items()),
        "body": response.content.decode(errors="replace"),
        "body_b64": base64.b64encode(response.content).decode(),
        "web_has_kek": bool(pki_settings().keks),
    }
    print(json.dumps(out))
    return 0


def _acme_eab(endpoint: str, key_id: str, hmac_key: str, key_name: str) -> int:
    """newAccount with an external account binding, through Django's test client in this process."""
    from django.test import Client

    from pki.acme.locations import directory_url
    from pki.conf import pki_settings
    from tests.acme_support import AcmeTestClient
    from tests.conftest import load_key

    client = AcmeTestClient(Client(), directory_url(endpoint), load_key(key_name))
    response = client.register(externalAccountBinding=client.eab(key_id, hmac_key))
    problem = response.problem_type if response.status >= 400 else None
    print(
        json.dumps({"status": response.status, "problem": problem, "web_has_kek": bool(pki_settings().keks)})
    )
    return 0


def _http(request_file: str) -> int:
    """One plain HTTP call described by ``request_file``; the response as a JSON line."""
    from pathlib import Path

    from django.test import Client

    from pki.conf import pki_settings

    spec = json.loads(Path(request_file).read_text())
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in spec.get("headers", {}).items()}
    extra.update({k: base64.b64decode(v) for k, v in spec.get("environ_b64", {}).items()})
    response = Client().generic(
        spec["method"],
        spec["path"],
        base64.b64decode(spec.get("body_b64", "")),
        content_type=spec.get("content_type", "application/octet-stream"),
        **extra,
    )
    out = {
        "status": response.status_code,
        "headers": dict(response.items()),
        "body_b64": base64.b64encode(response.content).decode(),
        "web_has_kek": bool(pki_settings().keks),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
