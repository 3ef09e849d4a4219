"""Server-generated keys: KMI makes the key and certificate; the PKCS#12 downloads once."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from pki.access import Action
from pki.models import CertificateRequest, KeyDelivery, RequestState
from pki.serverkeys import deliver_pkcs12, new_download_secret
from pki.signing import run_signing
from web.api import serializers as s
from web.api.renderers import Pkcs12Renderer
from web.api.throttles import EnrollThrottle
from web.api.views.base import DOWNLOAD, KmiViewSet, actor_of, download


class ServerKeyViewSet(mixins.RetrieveModelMixin, KmiViewSet):
    """Keys KMI generates for clients; the PKCS#12 is downloadable exactly once."""

    serializer_class = s.KeyDeliverySerializer
    required = {
        "create": Action.SUBMIT_REQUEST,
        "retrieve": Action.DOWNLOAD_KEY,
        "pkcs12": Action.DOWNLOAD_KEY,
    }
    throttle_classes = [EnrollThrottle]

    def get_queryset(self) -> models.QuerySet[KeyDelivery]:
        """Only the requester's own deliveries."""
        return KeyDelivery.objects.filter(requester_id=self.request.user.pk)

    def get_throttles(self) -> list[Any]:
        """Creation and download are throttled."""
        return super().get_throttles() if self.action in ("create", "pkcs12") else []

    @extend_schema(
        summary="Generate a key and its certificate for a client",
        request=s.ServerKeyRequestSerializer,
        responses={201: s.KeyDeliverySerializer, 202: s.KeyDeliverySerializer},
    )
    def create(self, request: Request) -> Response:
        """201 when the certificate was issued, 202 while its request waits for approval."""
        data = s.ServerKeyRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        self.check_object_permissions(request, (v["ca"], v["profile"]))
        # The key is generated and sealed where the KEK is (pki.signing decides where); the
        # one-time download secret is given to the requester here, KMI keeps only its digest.
        secret, digest = new_download_secret()
        result = run_signing(
            "request_server_key",
            delivery_id=str(uuid.uuid4()),
            download_secret_sha256=digest,
            ca_id=v["ca"].pk,
            profile_id=v["profile"].pk,
            subject=v["subject"],
            sans=[str(san) for san in v["sans"]],
            key_type=str(v["key_type"]),
            validity_days=v.get("validity_days"),
            requester_id=request.user.pk,
            actor=actor_of(request),
            user=request.user,
        )
        delivery = KeyDelivery.objects.get(pk=result["delivery_id"])
        issued = CertificateRequest.objects.filter(pk=delivery.request_id, state=RequestState.ISSUED).exists()
        code = status.HTTP_201_CREATED if issued else status.HTTP_202_ACCEPTED
        location = reverse("api:server-key-detail", kwargs={"pk": delivery.pk}, request=request)
        context = {**self.get_serializer_context(), "download_secret": secret}
        body = s.CreatedKeyDeliverySerializer(delivery, context=context).data
        return Response(body, status=code, headers={"Location": location})

    @extend_schema(
        summary="Download the key and chain as PKCS#12, once (then 410 Gone)",
        request=s.Pkcs12PasswordSerializer,
        responses={(200, "application/x-pkcs12"): DOWNLOAD},
    )
    @action(detail=True, methods=["post"], renderer_classes=[Pkcs12Renderer, JSONRenderer])
    def pkcs12(self, request: Request, pk: str) -> HttpResponse:
        """``deliver_pkcs12``: AES-256 under the client's password; KMI's copy goes unless escrowed."""
        delivery = self.get_object()
        data = s.ServerKeyPkcs12Serializer(data=request.data)
        data.is_valid(raise_exception=True)
        blob = deliver_pkcs12(
            delivery=delivery,
            password=data.validated_data["password"],
            download_secret=data.validated_data["download_secret"],
            actor=actor_of(request),
            user=request.user,  # type: ignore[arg-type]
        )
        response = download(blob, "application/x-pkcs12", f"{delivery.key_id}.p12")
        response["Cache-Control"] = "no-store"
        return response
