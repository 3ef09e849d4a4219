"""Role grants: who may do what."""

from __future__ import annotations

from django.db import models
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.request import Request
from rest_framework.response import Response

from pki.access import Action, grant_role, revoke_grant, visible_grants
from pki.clock import utcnow
from pki.models import RoleGrant
from web.api import serializers as s
from web.api.filters import RoleGrantFilter
from web.api.pagination import IdCursorPagination
from web.api.views.base import KmiViewSet, actor_of, detail_url


@extend_schema_view(
    list=extend_schema(summary="List role grants"),
    retrieve=extend_schema(summary="One role grant"),
)
class RoleGrantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, KmiViewSet):
    """Who may do what: administrators grant and revoke roles; auditors read every grant; everyone
    else sees their own."""

    serializer_class = s.RoleGrantSerializer
    pagination_class = IdCursorPagination
    filterset_class = RoleGrantFilter
    required = {
        "list": Action.VIEW_ACCESS,
        "retrieve": Action.VIEW_ACCESS,
        "create": Action.MANAGE_ACCESS,
        "destroy": Action.MANAGE_ACCESS,
    }

    def get_queryset(self) -> models.QuerySet[RoleGrant]:
        """Visible grants (the list is filtered by ``RoleGrantFilter``)."""
        return visible_grants(self.request.user)

    @extend_schema(
        summary="Grant a role",
        responses={201: s.RoleGrantSerializer, 200: s.RoleGrantSerializer},
    )
    def create(self, request: Request) -> Response:
        """``pki.access.grant_role`` (audited); 200 with the existing grant when it was held already."""
        data = s.RoleGrantSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        now = utcnow()
        grant = grant_role(
            user=v["user"],
            role=v["role"],
            ca=v.get("ca"),
            profile=v.get("profile"),
            actor=actor_of(request),
            now=now,
        )
        body = s.RoleGrantSerializer(grant, context=self.get_serializer_context()).data
        # A grant made by this call carries this call's time; one held already, an earlier one.
        code = status.HTTP_201_CREATED if grant.created_at == now else status.HTTP_200_OK
        location = detail_url(request, "api:grant-detail", grant.pk)
        return Response(body, status=code, headers={"Location": location})

    @extend_schema(summary="Revoke a role grant")
    def destroy(self, request: Request, pk: str) -> Response:
        """``pki.access.revoke_grant`` (audited)."""
        revoke_grant(grant=self.get_object(), actor=actor_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
