"""Certificates: search, downloads (PEM, DER, chain, PKCS#7), renewal, successor, revocation."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from django.contrib.auth.models import User
from django.db import models
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from pki.access import Action, visible_certificates
from pki.exceptions import NotFound
from pki.issuance import chain_for, latest_successor
from pki.models import Certificate
from pki.renewal import needs_approval, submit_renewal
from pki.revocation import revoke_certificate
from pki.signing import run_signing
from web.api import serializers as s
from web.api.filters import CertificateFilter
from web.api.pagination import IdCursorPagination
from web.api.renderers import DerRenderer, PemRenderer, Pkcs7Renderer
from web.api.views.base import (
    DOWNLOAD,
    PEM_CHAIN,
    PROBLEM,
    KmiViewSet,
    actor_of,
    detail_url,
    download,
    pem_bytes,
)


@extend_schema_view(
    list=extend_schema(summary="List certificates"),
    retrieve=extend_schema(summary="One certificate"),
)
class CertificateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, KmiViewSet):
    """Certificates: search, download, renew, revoke."""

    serializer_class = s.CertificateSerializer
    pagination_class = IdCursorPagination
    filterset_class = CertificateFilter
    required = {
        "list": Action.VIEW_CERTIFICATE,
        "retrieve": Action.VIEW_CERTIFICATE,
        "pem": Action.VIEW_CERTIFICATE,
        "der": Action.VIEW_CERTIFICATE,
        "chain": Action.VIEW_CERTIFICATE,
        "pkcs7": Action.VIEW_CERTIFICATE,
        "renew": Action.RENEW_CERTIFICATE,
        "revoke": Action.REVOKE_CERTIFICATE,
        "successor": Action.VIEW_CERTIFICATE,
    }

    def get_queryset(self) -> models.QuerySet[Certificate]:
        """Visible certificates (the list, without DER, is filtered by ``CertificateFilter``)."""
        qs = visible_certificates(self.request.user).select_related("ca", "profile")
        return qs.defer("der") if self.action == "list" else qs

    def _cert(self) -> Certificate:
        return self.get_object()  # type: ignore[no-any-return]

    @extend_schema(summary="Download as PEM", responses={(200, PEM_CHAIN): DOWNLOAD})
    @action(detail=True, renderer_classes=[PemRenderer, JSONRenderer])
    def pem(self, request: Request, pk: str) -> HttpResponse:
        """The certificate, PEM."""
        cert = self._cert()
        return download(pem_bytes([cert.x509()]), PEM_CHAIN, f"{cert.serial}.pem")

    @extend_schema(summary="Download as DER", responses={(200, "application/pkix-cert"): DOWNLOAD})
    @action(detail=True, renderer_classes=[DerRenderer, JSONRenderer])
    def der(self, request: Request, pk: str) -> HttpResponse:
        """The certificate, DER (RFC 2585 content type)."""
        cert = self._cert()
        return download(bytes(cert.der), "application/pkix-cert", f"{cert.serial}.cer")

    @extend_schema(summary="Download with its chain (PEM)", responses={(200, PEM_CHAIN): DOWNLOAD})
    @action(detail=True, renderer_classes=[PemRenderer, JSONRenderer])
    def chain(self, request: Request, pk: str) -> HttpResponse:
        """The certificate followed by its issuing chain, PEM."""
        cert = self._cert()
        return download(pem_bytes(chain_for(cert)), PEM_CHAIN, f"{cert.serial}-chain.pem")

    @extend_schema(
        summary="Download with its chain as PKCS#7", responses={(200, "application/pkcs7-mime"): DOWNLOAD}
    )
    @action(detail=True, renderer_classes=[Pkcs7Renderer, JSONRenderer])
    def pkcs7(self, request: Request, pk: str) -> HttpResponse:
        """The certificate and its chain as a certs-only PKCS#7 (DER)."""
        cert = self._cert()
        body = pkcs7.serialize_certificates(list(chain_for(cert)), serialization.Encoding.DER)
        response = download(body, "application/pkcs7-mime", f"{cert.serial}.p7c")
        response["Content-Type"] = "application/pkcs7-mime; smime-type=certs-only"
        return response

    @extend_schema(
        summary="Renew (same key or a new CSR); 202 with a request when the profile needs approval",
        request=s.RenewSerializer,
        responses={201: s.CertificateSerializer, 202: s.CertificateRequestSerializer},
    )
    @action(detail=True, methods=["post"])
    def renew(self, request: Request, pk: str) -> Response:
        """``renew_certificate``; the successor is returned with its URL in Location. Renewal is
        issuance: under a profile that needs approval the renewal is a pending request (202)."""
        cert = self._cert()
        data = s.RenewSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        csr = data.validated_data.get("csr")
        validity_days = data.validated_data.get("validity_days")
        user = request.user if isinstance(request.user, User) else None
        if needs_approval(cert):
            pending = submit_renewal(
                certificate=cert, csr=csr, validity_days=validity_days, actor=actor_of(request), renewer=user
            )
            location = reverse("api:request-detail", kwargs={"pk": pending.pk}, request=request)
            body = s.CertificateRequestSerializer(pending, context=self.get_serializer_context()).data
            return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": location})
        # In process or on a signing worker (nothing is stored before it renews): pki.signing decides.
        # The renewer's current grant is checked by the renewal itself, wherever it runs.
        new_pk = run_signing(
            "renew_certificate",
            certificate_id=cert.pk,
            csr_pem=csr,
            validity_days=validity_days,
            renewer_id=user.pk if user is not None else None,
            actor=actor_of(request),
            user=request.user,
        )["certificate_id"]
        new = Certificate.objects.select_related("ca", "profile").get(pk=new_pk)
        location = reverse("api:certificate-detail", kwargs={"pk": new.pk}, request=request)
        return Response(
            self.get_serializer(new).data, status=status.HTTP_201_CREATED, headers={"Location": location}
        )

    @extend_schema(
        summary="The certificate that renewed this one (auto-renewal delivers it here too)",
        responses={200: s.SuccessorSerializer, 404: PROBLEM},
    )
    @action(detail=True)
    def successor(self, request: Request, pk: str) -> Response:
        """The newest unrevoked renewal of this certificate, with its chain as PEM; 404 until one exists."""
        cert = self._cert()
        new = latest_successor(cert)
        if new is None:
            raise NotFound(f"certificate {cert.serial} has no successor yet")
        body = dict(s.CertificateSerializer(new, context=self.get_serializer_context()).data)
        body["pem"] = pem_bytes(chain_for(new)).decode()
        location = detail_url(request, "api:certificate-detail", new.pk)
        return Response(body, headers={"Location": location})

    @extend_schema(
        summary="Revoke with a reason", request=s.RevokeSerializer, responses={200: s.CertificateSerializer}
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str) -> Response:
        """``revoke_certificate`` (durable before this returns)."""
        cert = self._cert()
        data = s.RevokeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        revoked = revoke_certificate(
            certificate=cert,
            reason=data.validated_data["reason"],
            invalidity_date=data.validated_data.get("invalidity_date"),
            actor=actor_of(request),
        )
        revoked = Certificate.objects.select_related("ca", "profile").get(pk=revoked.pk)
        return Response(self.get_serializer(revoked).data)
