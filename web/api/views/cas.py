"""CAs: list, detail, certificate and chain downloads, generations; intermediates, rollover and renewal."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from pki.access import Action
from pki.ca_creation import request_ca_creation
from pki.models import CAGeneration, CertificateAuthority
from pki.signing import run_signing
from web.api import serializers as s
from web.api.renderers import PemRenderer
from web.api.views.base import DOWNLOAD, PEM_CHAIN, KmiViewSet, actor_of, download, pem_bytes
from web.api.views.ca_creations import creation_response


@extend_schema_view(
    list=extend_schema(summary="List CAs"),
    retrieve=extend_schema(summary="One CA"),
)
class CertificateAuthorityViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, KmiViewSet):
    """CAs: list, detail, certificate and chain; administrators create intermediates."""

    queryset = CertificateAuthority.objects.select_related("parent", "certificate", "key").order_by("name")
    serializer_class = s.CertificateAuthoritySerializer
    lookup_field = "name"
    lookup_value_regex = r"[a-z0-9][a-z0-9-]{0,62}"
    pagination_class = None
    required = {
        "list": Action.VIEW_CA,
        "retrieve": Action.VIEW_CA,
        "certificate": Action.VIEW_CA,
        "chain": Action.VIEW_CA,
        "generations": Action.VIEW_CA,
        "create": Action.CREATE_CA,
        "rollover": Action.MANAGE_CA,
        "renew": Action.MANAGE_CA,
    }

    @extend_schema(
        summary="Ask for an intermediate CA (administrators; other administrators approve)",
        request=s.IntermediateCASerializer,
        responses={201: s.CertificateAuthoritySerializer, 202: s.CACreationSerializer},
    )
    def create(self, request: Request) -> Response:
        """``request_ca_creation``: 202 with the pending creation, which other administrators
        approve at ``/ca-creations/<id>/approve/``; 201 with the CA when
        ``KMI_CA_CREATION_APPROVALS`` is 0."""
        data = s.IntermediateCASerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        row = request_ca_creation(
            name=v["name"],
            parent=v["parent"],
            subject=v["subject"],
            key_type=str(v["key_type"]),
            validity_days=v["validity_days"],
            path_length=v.get("path_length"),
            name_constraints=v.get("name_constraints"),
            requester=request.user,  # type: ignore[arg-type]
            actor=actor_of(request),
        )
        return creation_response(request, row, self.get_serializer_context())

    @extend_schema(summary="The CA's certificate (PEM)", responses={(200, PEM_CHAIN): DOWNLOAD})
    @action(detail=True, renderer_classes=[PemRenderer, JSONRenderer])
    def certificate(self, request: Request, name: str) -> HttpResponse:
        """The CA certificate as PEM."""
        ca = self.get_object()
        return download(pem_bytes([ca.x509_certificate()]), PEM_CHAIN, f"{ca.name}.pem")

    @extend_schema(summary="The CA's chain up to the root (PEM)", responses={(200, PEM_CHAIN): DOWNLOAD})
    @action(detail=True, renderer_classes=[PemRenderer, JSONRenderer])
    def chain(self, request: Request, name: str) -> HttpResponse:
        """The CA certificate followed by its parents'."""
        ca = self.get_object()
        return download(pem_bytes(ca.chain()), PEM_CHAIN, f"{ca.name}-chain.pem")

    @extend_schema(
        summary="The CA's generations (keys), oldest first",
        responses={200: s.CAGenerationSerializer(many=True)},
    )
    @action(detail=True)
    def generations(self, request: Request, name: str) -> Response:
        """Every generation with its state, certificate, link certificates and URLs."""
        ca = self.get_object()
        rows = (
            CAGeneration.objects.filter(ca=ca).select_related("ca", "key", "certificate").order_by("number")
        )
        return Response(s.CAGenerationSerializer(rows, many=True, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="Roll over: a new key and certificate (administrators)",
        request=s.RolloverSerializer,
        responses={201: s.CAGenerationSerializer},
    )
    @action(detail=True, methods=["post"])
    def rollover(self, request: Request, name: str) -> Response:
        """``rollover_ca`` where signing runs; a retried call returns the generation made the first time."""
        ca = self.get_object()
        data = s.RolloverSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        result = run_signing(
            "rollover_ca",
            ca_id=ca.pk,
            actor=actor_of(request),
            key_type=v.get("key_type"),
            backend=v.get("backend"),
            at=v["at"].isoformat() if v.get("at") else None,
            validity_days=v.get("validity_days"),
            from_generation=ca.generation,
            user=request.user,
        )
        row = CAGeneration.objects.select_related("ca", "key", "certificate").get(
            ca=ca, number=result["generation"]
        )
        body = s.CAGenerationSerializer(row, context=self.get_serializer_context()).data
        location = reverse("api:ca-generations", kwargs={"name": ca.name}, request=request)
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": location})

    @extend_schema(
        summary="Renew: the same key with a new validity (administrators)",
        request=s.RenewCASerializer,
        responses={200: s.CertificateAuthoritySerializer},
    )
    @action(detail=True, methods=["post"])
    def renew(self, request: Request, name: str) -> Response:
        """``renew_ca`` where signing runs."""
        ca = self.get_object()
        data = s.RenewCASerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run_signing(
            "renew_ca",
            ca_id=ca.pk,
            actor=actor_of(request),
            user=request.user,
            validity_days=data.validated_data.get("validity_days"),
        )
        return Response(self.get_serializer(self.get_queryset().get(pk=ca.pk)).data)
