"""CA creations: a CA an administrator asked for, approved by other administrators before its key
is made (``pki.ca_creation``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from pki.access import Action
from pki.ca_creation import approve_ca_creation, reject_ca_creation
from pki.models import CACreation, CertificateAuthority
from pki.models.key import TwoPersonState
from web.api import serializers as s
from web.api.pagination import IdCursorPagination
from web.api.views.base import KmiViewSet, actor_of


def creation_response(request: Request, row: CACreation, context: dict[str, Any]) -> Response:
    """201 with the CA once it is made; 202 with the creation while it waits for approval."""
    if row.state == TwoPersonState.DONE and row.ca_id is not None:
        ca = CertificateAuthority.objects.select_related("parent", "certificate", "key").get(pk=row.ca_id)
        location = reverse("api:ca-detail", kwargs={"name": ca.name}, request=request)
        body = s.CertificateAuthoritySerializer(ca, context=context).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": location})
    location = reverse("api:ca-creation-detail", kwargs={"pk": row.pk}, request=request)
    body = s.CACreationSerializer(row, context=context).data
    return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": location})


@extend_schema_view(
    list=extend_schema(summary="List CA creations, newest first (administrators)"),
    retrieve=extend_schema(summary="One CA creation"),
)
class CACreationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, KmiViewSet):
    """CAs asked for: another administrator approves (the CA is made then) or rejects."""

    serializer_class = s.CACreationSerializer
    pagination_class = IdCursorPagination
    queryset = CACreation.objects.select_related("parent", "ca").order_by("-pk")
    required = {
        "list": Action.CREATE_CA,
        "retrieve": Action.CREATE_CA,
        "approve": Action.CREATE_CA,
        "reject": Action.CREATE_CA,
    }

    @extend_schema(
        summary="Approve a CA creation (an administrator other than the one who asked)",
        request=None,
        responses={201: s.CertificateAuthoritySerializer, 202: s.CACreationSerializer},
    )
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str) -> Response:
        """``approve_ca_creation``: 201 with the CA when this was the last approval needed, else 202."""
        row = approve_ca_creation(
            creation=self.get_object(),
            approver=request.user,  # type: ignore[arg-type]
            actor=actor_of(request),
        )
        return creation_response(request, row, self.get_serializer_context())

    @extend_schema(summary="Reject (or withdraw) a CA creation with a reason", request=s.RejectSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str) -> Response:
        """``reject_ca_creation``."""
        data = s.RejectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = reject_ca_creation(
            creation=self.get_object(),
            reviewer=request.user,  # type: ignore[arg-type]
            actor=actor_of(request),
            reason=data.validated_data["reason"],
        )
        return Response(self.get_serializer(row).data)
