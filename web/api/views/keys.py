"""Keys: metadata only, state changes (administrators) and recovery requests."""

from __future__ import annotations

from django.db import models
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from pki.access import Action, visible_keys
from pki.key_controls import KeyAction, change_key_state
from pki.models import Key
from pki.recovery import request_key_recovery
from web.api import serializers as s
from web.api.pagination import IdCursorPagination
from web.api.views.base import KmiViewSet, actor_of, detail_url


@extend_schema_view(
    list=extend_schema(summary="List keys (metadata)"), retrieve=extend_schema(summary="One key")
)
class KeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, KmiViewSet):
    """Key metadata only: never a handle, never private material. Administrators change a key's
    state; key recovery officers ask for an escrowed key's recovery."""

    serializer_class = s.KeySerializer
    pagination_class = IdCursorPagination
    required = {
        "list": Action.VIEW_KEY,
        "retrieve": Action.VIEW_KEY,
        "state": Action.MANAGE_KEY,
        "recovery": Action.RECOVER_KEY,
    }

    def get_queryset(self) -> models.QuerySet[Key]:
        """Visible keys, without the handle column."""
        return visible_keys(self.request.user).defer("handle", "public_key_der")

    @extend_schema(
        summary="Suspend, reactivate, deactivate, mark compromised or destroy (administrators)",
        request=s.KeyStateSerializer,
        responses={200: s.KeySerializer, 202: s.KeyDestructionSerializer},
    )
    @action(detail=True, methods=["post"])
    def state(self, request: Request, pk: str) -> Response:
        """``change_key_state``; a CA key's destruction answers 202 until a second administrator
        makes the same call."""
        data = s.KeyStateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        outcome = change_key_state(
            key=self.get_object(),
            action=KeyAction(v["action"]),
            actor=actor_of(request),
            reason=v["reason"],
            revoke_issued=v["revoke_issued"],
            invalidity_date=v["invalidity_date"],
            user=request.user,  # type: ignore[arg-type]
        )
        if outcome.waiting is not None:
            return Response(s.KeyDestructionSerializer(outcome.waiting).data, status=status.HTTP_202_ACCEPTED)
        key = Key.objects.defer("handle", "public_key_der").get(pk=outcome.key.pk)
        return Response(self.get_serializer(key).data)

    @extend_schema(
        summary="Ask to recover an escrowed key (key recovery officers; a second one approves)",
        request=s.KeyRecoveryRequestSerializer,
        responses={201: s.KeyRecoverySerializer},
    )
    @action(detail=True, methods=["post"])
    def recovery(self, request: Request, pk: str) -> Response:
        """``request_key_recovery``."""
        data = s.KeyRecoveryRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = request_key_recovery(
            key=self.get_object(),
            requester=request.user,  # type: ignore[arg-type]
            actor=actor_of(request),
            reason=data.validated_data["reason"],
        )
        body = s.KeyRecoverySerializer(row, context=self.get_serializer_context()).data
        location = detail_url(request, "api:key-recovery-detail", row.pk)
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": location})
