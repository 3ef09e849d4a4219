"""API tokens: create (shown once), list and revoke."""

from __future__ import annotations

from typing import Any

from django.db import models
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.request import Request
from rest_framework.response import Response

from pki import tokens
from pki.access import Action, can
from pki.models import ApiToken
from web.api import serializers as s
from web.api.pagination import IdCursorPagination
from web.api.throttles import TokenThrottle
from web.api.views.base import KmiViewSet, actor_of


@extend_schema_view(list=extend_schema(summary="Your API tokens (all tokens for administrators)"))
class ApiTokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, KmiViewSet):
    """Create (shown once), list and revoke API tokens."""

    serializer_class = s.ApiTokenSerializer
    pagination_class = IdCursorPagination
    throttle_classes = [TokenThrottle]
    required = {
        "list": Action.MANAGE_OWN_TOKENS,
        "retrieve": Action.MANAGE_OWN_TOKENS,
        "create": Action.MANAGE_OWN_TOKENS,
        "destroy": Action.MANAGE_OWN_TOKENS,
    }

    def get_queryset(self) -> models.QuerySet[ApiToken]:
        """Own tokens; administrators see everyone's."""
        qs = ApiToken.objects.select_related("user")
        if can(self.request.user, Action.MANAGE_ACCESS):
            return qs
        user = self.request.user
        if not user.is_authenticated:  # KmiPermission lets no anonymous caller this far
            return qs.none()
        return qs.filter(user=user)

    def get_throttles(self) -> list[Any]:
        """Creation and revocation are throttled."""
        return super().get_throttles() if self.action in ("create", "destroy") else []

    @extend_schema(summary="Create a token for yourself", responses={201: s.NewApiTokenSerializer})
    def create(self, request: Request) -> Response:
        """``pki.tokens.create_token``; the response holds the token text, shown once."""
        data = s.ApiTokenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = tokens.create_token(
            user=request.user,  # type: ignore[arg-type]
            name=data.validated_data.get("name", ""),
            expires_at=data.expiry(),
            # A token never makes a token that outlives it (or acts for someone else).
            parent=request.auth if isinstance(request.auth, ApiToken) else None,
            actor=actor_of(request),
        )
        body = s.NewApiTokenSerializer(issued.token).data
        body["token"] = issued.text
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    @extend_schema(summary="Revoke a token")
    def destroy(self, request: Request, pk: str) -> Response:
        """``pki.tokens.revoke_token``."""
        token = self.get_object()
        tokens.revoke_token(token=token, actor=actor_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
