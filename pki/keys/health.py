"""Can this process reach the key of every CA it signs for? (``/healthz?detail=1``, the metric
``kmi_ca_key_backend_up`` and the start-up log.)

A CA whose key lives in an HSM this process has no settings for (or cannot open), or in the
``encrypted`` backend without a KEK, cannot sign its CRLs and OCSP responders: that must show
as a failed check and a metric an alert can watch, not only as a 503 on its CRL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pki.exceptions import PKIError
from pki.keys.registry import get_backend
from pki.models.authority import CAState, CertificateAuthority
from pki.models.key import KeyState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendStatus:
    """One CA's key backend as this process sees it."""

    ca: str
    backend: str
    ok: bool
    problem: str = ""


def key_backend_status() -> list[BackendStatus]:
    """The key backend of every CA that signs (enabled, active key): reachable from here or why not."""
    statuses = []
    cas = (
        CertificateAuthority.objects.select_related("key")
        .exclude(state=CAState.DISABLED)
        .filter(key__state=KeyState.ACTIVE, certificate__isnull=False)
        .order_by("name")
    )
    for ca in cas:
        alias = ca.key.backend
        try:
            backend = get_backend(alias)
            check = getattr(backend, "check", None)
            if callable(check):
                check()
        except PKIError as exc:
            statuses.append(BackendStatus(ca.name, alias, False, str(exc)))
        else:
            statuses.append(BackendStatus(ca.name, alias, True))
    return statuses


def log_unreachable_backends() -> list[BackendStatus]:
    """Log (as errors) every CA whose key backend this process cannot reach; return them."""
    failed = [s for s in key_backend_status() if not s.ok]
    for status in failed:
        log.error(
            "CA %s cannot sign here: its key backend %r is unreachable (%s); its CRL and OCSP "
            "responder will not be renewed by this process",
            status.ca,
            status.backend,
            status.problem,
        )
    return failed
