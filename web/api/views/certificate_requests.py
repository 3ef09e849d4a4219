"""Certificate requests: the CSR approval workflow (submit, approve, reject)."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import F
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from pki.access import Action, visible_requests
from pki.enrollment import approve_and_issue, enroll
from pki.issuance import reject_request
from pki.models import CertificateRequest
from web.api import serializers as s
from web.api.filters import CertificateRequestFilter
from web.api.pagination import IdCursorPagination
from web.api.throttles import EnrollThrottle
from web.api.views.base import KmiViewSet, actor_of


@extend_schema_view(
    list=extend_schema(summary="List requests"),
    retrieve=extend_schema(summary="One request"),
)
class CertificateRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, KmiViewSet):
    """The CSR approval workflow."""

    serializer_class = s.CertificateRequestSerializer
    pagination_class = IdCursorPagination
    filterset_class = CertificateRequestFilter
    throttle_classes = [EnrollThrottle]
    required = {
        "list": Action.VIEW_REQUEST,
        "retrieve": Action.VIEW_REQUEST,
        "create": Action.SUBMIT_REQUEST,
        "approve": Action.REVIEW_REQUEST,
        "reject": Action.REVIEW_REQUEST,
    }

    def get_throttles(self) -> list[Any]:
        """Only submissions are throttled."""
        return super().get_throttles() if self.action == "create" else []

    def get_queryset(self) -> models.QuerySet[CertificateRequest]:
        """Visible requests (the list is filtered by ``CertificateRequestFilter``)."""
        qs = visible_requests(self.request.user).select_related("ca", "profile").prefetch_related("approvals")
        return qs.annotate(certificate_id_value=F("certificate__id")).defer("csr_der")

    def _respond(self, request_obj: CertificateRequest, code: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=request_obj.pk)
        return Response(self.get_serializer(fresh).data, status=code)

    @extend_schema(
        summary="Submit a CSR (issued at once when the profile needs no approval)",
        request=s.SubmitSerializer,
        responses={201: s.CertificateRequestSerializer},
    )
    def create(self, request: Request) -> Response:
        """Submit with ``enroll``: the request is stored, and issued when auto-approved."""
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
        response = self._respond(result.request, status.HTTP_201_CREATED)
        response["Location"] = reverse(
            "api:request-detail", kwargs={"pk": result.request.pk}, request=request
        )
        return response

    @extend_schema(
        summary="Approve a pending request; its last required approval (distinct reviewers) issues it",
        request=None,
    )
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str) -> Response:
        """``approve_and_issue`` (CA operators of the request's CA)."""
        obj = self.get_object()
        approve_and_issue(request=obj, actor=actor_of(request), reviewer=request.user)  # type: ignore[arg-type]
        return self._respond(obj)

    @extend_schema(summary="Reject a pending request with a reason", request=s.RejectSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str) -> Response:
        """``reject_request`` (CA operators of the request's CA)."""
        obj = self.get_object()
        data = s.RejectSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        reject_request(
            request=obj,
            reason=data.validated_data["reason"],
            actor=actor_of(request),
            reviewer=request.user,  # type: ignore[arg-type]
        )
        return self._respond(obj)
