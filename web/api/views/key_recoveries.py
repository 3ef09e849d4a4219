"""Key recoveries: a second officer approves, the first downloads the PKCS#12 once."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from pki.access import Action
from pki.models import KeyRecovery
from pki.recovery import approve_key_recovery, deliver_recovered_key
from web.api import serializers as s
from web.api.pagination import IdCursorPagination
from web.api.renderers import Pkcs12Renderer
from web.api.views.base import DOWNLOAD, KmiViewSet, actor_of, download


class KeyRecoveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, KmiViewSet):
    """Escrowed keys being recovered: a second officer approves, the first downloads once."""

    serializer_class = s.KeyRecoverySerializer
    pagination_class = IdCursorPagination
    queryset = KeyRecovery.objects.order_by("-pk")
    required = {
        "list": Action.RECOVER_KEY,
        "retrieve": Action.RECOVER_KEY,
        "approve": Action.RECOVER_KEY,
        "pkcs12": Action.RECOVER_KEY,
    }

    @extend_schema(summary="Approve a key recovery (a second key recovery officer)", request=None)
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str) -> Response:
        """``approve_key_recovery``: the officer who asked cannot approve."""
        row = approve_key_recovery(
            recovery=self.get_object(),
            approver=request.user,  # type: ignore[arg-type]
            actor=actor_of(request),
        )
        return Response(self.get_serializer(row).data)

    @extend_schema(
        summary="Download the recovered key as PKCS#12, once (the officer who asked)",
        request=s.Pkcs12PasswordSerializer,
        responses={(200, "application/x-pkcs12"): DOWNLOAD},
    )
    @action(detail=True, methods=["post"], renderer_classes=[Pkcs12Renderer, JSONRenderer])
    def pkcs12(self, request: Request, pk: str) -> HttpResponse:
        """``deliver_recovered_key``: AES-256 under the officer's password; a second try is 410."""
        row = self.get_object()
        data = s.Pkcs12PasswordSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        blob = deliver_recovered_key(
            recovery=row,
            user=request.user,  # type: ignore[arg-type]
            password=data.validated_data["password"],
            actor=actor_of(request),
        )
        response = download(blob, "application/x-pkcs12", f"{row.key_id}.p12")
        response["Cache-Control"] = "no-store"
        return response
