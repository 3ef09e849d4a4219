"""``GET /api/v1/certificates/<id>/inclusion/``: a certificate's transparency-log receipt.

An SCT-like answer a relying party can check offline: the leaf (index, timestamp, hash), the
signed tree head that covers it and the audit path from the leaf to that head's root
(RFC 6962 §2.1.1). ``?log=<name>`` picks a log; the default is the log KMI's issuance feeds.
"""

from __future__ import annotations

import base64
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from pki.access import Action, visible_certificates
from pki.exceptions import NotFound
from pki.transparency import log as ct
from web.protocols.ct import log_url, sth_json


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class InclusionView(APIView):
    """A certificate's leaf, the tree head covering it and its audit path."""

    required = {"get": Action.VIEW_CERTIFICATE}

    @extend_schema(
        summary="A certificate's transparency-log inclusion proof",
        parameters=[
            OpenApiParameter("log", OpenApiTypes.STR, description="log name (default: the issuance log)")
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request: Request, pk: int) -> Response:
        """Return the receipt; 404 for a certificate the caller cannot see, 409 while queued."""
        cert = visible_certificates(request.user).filter(pk=pk).first()
        if cert is None:
            raise NotFound(f"no certificate {pk}")
        self.check_object_permissions(request, cert)
        name = request.query_params.get("log", "")
        receipt = ct.inclusion_receipt(certificate=cert, log=ct.get_log(name) if name else None)
        body: dict[str, Any] = {
            "certificate": cert.pk,
            "serial": cert.serial,
            "log": receipt.log.name,
            "log_id": _b64(bytes(receipt.log.log_id)),
            "log_url": log_url(receipt.log),
            "leaf_index": receipt.entry.leaf_index,
            "timestamp": receipt.entry.timestamp_ms,
            "leaf_hash": _b64(bytes(receipt.entry.leaf_hash)),
            "tree_head": sth_json(receipt.tree_head),
            "audit_path": [_b64(h) for h in receipt.audit_path],
        }
        return Response(body)
