"""The audit trail: list, JSON-lines export and hash-chain verification."""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.db import models
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from pki import audit
from pki.access import Action, visible_audit_events
from pki.models import AuditEvent
from web.api import serializers as s
from web.api.filters import AuditEventFilter
from web.api.pagination import IdCursorPagination
from web.api.views.base import KmiViewSet


@extend_schema_view(list=extend_schema(summary="List audit events"))
class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, KmiViewSet):
    """The audit trail (administrators and auditors)."""

    serializer_class = s.AuditEventSerializer
    pagination_class = IdCursorPagination
    filterset_class = AuditEventFilter
    filtered_actions = frozenset({"list", "export"})
    required = {
        "list": Action.VIEW_AUDIT,
        "retrieve": Action.VIEW_AUDIT,
        "export": Action.VIEW_AUDIT,
        "verify": Action.VIEW_AUDIT,
    }

    def get_queryset(self) -> models.QuerySet[AuditEvent]:
        """Visible events (the list and the export are filtered by ``AuditEventFilter``)."""
        return visible_audit_events(self.request.user)

    @extend_schema(
        summary="Export as JSON lines (streamed)",
        filters=True,
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR},
    )
    @action(detail=False, renderer_classes=[JSONRenderer])
    def export(self, request: Request) -> StreamingHttpResponse:
        """Every matching event, oldest first, one JSON object a line."""
        qs = self.filter_queryset(self.get_queryset()).order_by("id")
        fields = s.AuditEventSerializer.Meta.fields

        def lines() -> Iterator[bytes]:
            for row in qs.values_list(*fields).iterator(chunk_size=2000):
                event = dict(zip(fields, row, strict=True))
                event["timestamp"] = event["timestamp"].isoformat()
                yield json.dumps(event, separators=(",", ":"), default=str).encode() + b"\n"

        response = StreamingHttpResponse(lines(), content_type="application/x-ndjson")
        response["Content-Disposition"] = 'attachment; filename="kmi-audit.jsonl"'
        return response

    @extend_schema(summary="Verify every hash chain", responses={200: s.AuditReportSerializer})
    @action(detail=False)
    def verify(self, request: Request) -> Response:
        """``pki.audit.verify_chain``: the first broken link of each stream."""
        report = audit.verify_chain()
        body = {
            "ok": report.ok,
            "streams": report.streams,
            "events": report.events,
            "breaks": [b.__dict__ for b in report.breaks],
        }
        return Response(s.AuditReportSerializer(body).data)
