"""A gunicorn worker for KMI terminating TLS itself (``--certfile``/``--keyfile``/``--cert-reqs``):
it hands the verified client certificate and the tls-unique channel binding to the request.

``gunicorn --worker-class web.tls_worker.ClientCertWorker --cert-reqs 1 --ca-certs CLIENT-CAS``:
the WSGI environ then carries ``kmi.tls_client_cert`` (DER) and, on TLS 1.2, ``kmi.tls_unique``
(RFC 5929), which EST reads (web.protocols.devices). Behind a proxy (docker/'s nginx) use the
default worker and ``KMI_EST_PROXY_SECRET`` instead.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.workers.sync import SyncWorker  # type: ignore[import-untyped]

from web.protocols.devices import ENVIRON_CLIENT_CERT, ENVIRON_TLS_UNIQUE

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ClientCertWorker(SyncWorker):  # type: ignore[misc]
    """gunicorn's sync worker, adding the TLS peer certificate and tls-unique to each request."""

    def handle_request(self, listener: Any, req: Any, client: Any, addr: Any) -> Any:
        """Serve one request with the connection's TLS facts in its environ (one request at a
        time per sync worker, so wrapping the app for the call is safe)."""
        peer: bytes | None = None
        binding: bytes | None = None
        if isinstance(client, ssl.SSLSocket):
            peer = client.getpeercert(binary_form=True)
            binding = client.get_channel_binding("tls-unique") if client.version() != "TLSv1.3" else None
        app: WSGIApp = getattr(self, "wsgi")  # noqa: B009 - set by gunicorn's Worker.load_wsgi

        def with_tls(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if peer:
                environ[ENVIRON_CLIENT_CERT] = peer
            if binding:
                environ[ENVIRON_TLS_UNIQUE] = binding
            return app(environ, start_response)

        setattr(self, "wsgi", with_tls)  # noqa: B010 - see above
        try:
            return super().handle_request(listener, req, client, addr)
        finally:
            setattr(self, "wsgi", app)  # noqa: B010
