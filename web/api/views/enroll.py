"""``POST /api/v1/enroll``: CSR in, certificate chain out (the fast path is web/api/fast_enroll.py)."""

from __future__ import annotations

import time
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from pki.access import Action
from pki.enrollment import enroll
from pki.models import Certificate, CertificateAuthority, CertificateRequest
from web.api import fast_enroll
from web.api import serializers as s
from web.api.renderers import PemRenderer
from web.api.throttles import EnrollThrottle
from web.api.views.base import DOWNLOAD, PEM_CHAIN, actor_of, detail_url, pem_bytes

_CHAIN_CACHE: dict[tuple[int, int | None], tuple[float, bytes]] = {}
CHAIN_CACHE_SECONDS = 60.0


def _ca_chain_pem(ca: CertificateAuthority) -> bytes:
    """The CA's chain as PEM, cached a minute per process (it changes only at CA rollover)."""
    key = (ca.pk, ca.certificate_id)
    now = time.monotonic()
    hit = _CHAIN_CACHE.get(key)
    if hit is not None and now - hit[0] < CHAIN_CACHE_SECONDS:
        return hit[1]
    pem = pem_bytes(ca.chain())
    _CHAIN_CACHE[key] = (now, pem)
    return pem


class EnrollView(APIView):
    """``POST /api/v1/enroll``: 201 with the chain (PEM) when issued, 202 with Location when pending."""

    required = {"post": Action.SUBMIT_REQUEST}
    throttle_classes = [EnrollThrottle]
    renderer_classes = [JSONRenderer, PemRenderer]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """The common case (a token, a plainly valid body, an auto-approving profile, signing in
        process) is served by web/api/fast_enroll.py with the same domain calls; everything
        else, every error included, by DRF as below."""
        response = fast_enroll.serve(request, self)
        if response is not None:
            return response
        return super().dispatch(request, *args, **kwargs)

    def issued_response(
        self, request: HttpRequest, ca: CertificateAuthority, cert: Certificate
    ) -> HttpResponse:
        """201: the certificate and its chain in PEM, Location naming the certificate."""
        chain_pem = pem_bytes([cert.x509()]) + _ca_chain_pem(ca)
        response = HttpResponse(chain_pem, status=status.HTTP_201_CREATED, content_type=PEM_CHAIN)
        response["Location"] = detail_url(request, "api:certificate-detail", cert.pk)
        return response

    @extend_schema(
        summary="Enroll: CSR in, certificate chain out",
        request=s.SubmitSerializer,
        responses={
            (201, PEM_CHAIN): OpenApiResponse(DOWNLOAD, description="issued: certificate then its chain"),
            202: OpenApiResponse(s.CertificateRequestSerializer, description="waiting for approval"),
        },
    )
    def post(self, request: Request) -> HttpResponse | Response:
        """Submit and, when the profile auto-approves, issue in the same transaction."""
        data = s.SubmitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        self.check_object_permissions(request, (v["ca"], v["profile"]))
        result = enroll(
            ca=v["ca"],
            profile=v["profile"],
            csr=v["csr"],
            validity_days=v.get("validity_days"),
            options=data.options(),
            requester=request.user,  # type: ignore[arg-type]
            actor=actor_of(request),
        )
        if result.certificate is None:
            obj = CertificateRequest.objects.select_related("ca", "profile").get(pk=result.request.pk)
            location = reverse("api:request-detail", kwargs={"pk": obj.pk}, request=request)
            body = s.CertificateRequestSerializer(obj, context={"request": request}).data
            return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": location})
        return self.issued_response(request, v["ca"], result.certificate)
