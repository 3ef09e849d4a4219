"""A web process that loses its database: ``python -m tests.support.outage_side REQ REQ384 TOKEN``.

It pre-signs the CA's OCSP responses (into the Redis prefix of its environment) and answers one
OCSP request while PostgreSQL is reachable; then its database goes away (the connection is
closed and pointed at a port where nothing listens, as when PostgreSQL stops) and it answers
what a relying party asks for. Prints one JSON line: status, content type, Retry-After and the
body (base64) of each answer.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

DEAD_PORT = "21298"  # nothing listens there (this engineer's port range)


def main(argv: list[str]) -> int:
    """Run the scenario; 0 when it ran (the test judges the answers)."""
    import django

    django.setup()
    from django.db import connection
    from django.test import Client

    from pki.models import CertificateAuthority
    from pki.ocsp import LOCAL, presign_responses

    request_der = Path(argv[0]).read_bytes()
    unknown_der = Path(argv[1]).read_bytes()
    client = Client()
    presign_responses(ca=CertificateAuthority.objects.get(name="issuing"), actor="test")
    out: dict[str, Any] = {"warm": _post(client, request_der)}
    connection.close()
    connection.settings_dict["PORT"] = DEAD_PORT
    LOCAL.clear()  # no micro-cache: the answer must come from Redis
    out["ocsp"] = _post(client, request_der)
    out["ocsp_not_presigned"] = _post(client, unknown_der)
    for name, path in [
        ("crl", "/crl/issuing.crl"),
        ("crl_pem", "/crl/issuing.crl.pem"),
        ("ca", "/ca/issuing.cer"),
        ("ca_pem", "/ca/issuing.pem"),
        ("chain", "/ca/issuing-chain.pem"),
        ("missing", "/crl/nothing.crl"),
        ("acme", "/acme/demo/directory"),
    ]:
        out[name] = _answer(client.get(path))
    out["api"] = _answer(client.get("/api/v1/certificates/", HTTP_AUTHORIZATION=f"Bearer {argv[2]}"))
    print(json.dumps(out))
    return 0


def _post(client: Any, body: bytes) -> dict[str, Any]:
    return _answer(client.post("/ocsp/issuing", body, content_type="application/ocsp-request"))


def _answer(response: Any) -> dict[str, Any]:
    return {
        "status": response.status_code,
        "type": response.get("Content-Type", ""),
        "retry_after": response.get("Retry-After"),
        "body": base64.b64encode(response.content).decode(),
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
