"""API viewsets: declarative; every state change calls a pki use case (never a model save)."""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from django.db import models
from django.db.models import F
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.urls import reverse as django_reverse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from pki import audit, tokens
from pki.access import (
    Action,
    can,
    grant_role,
    revoke_grant,
    visible_audit_events,
    visible_certificates,
    visible_grants,
    visible_keys,
    visible_requests,
)
from pki.authorities import create_intermediate_ca
from pki.clock import utcnow
from pki.enrollment import approve_and_issue, enroll
from pki.exceptions import NotFound
from pki.issuance import chain_for, latest_successor, reject_request, renew_certificate
from pki.key_controls import KeyAction, change_key_state
from pki.models import (
    ApiToken,
    AuditEvent,
    CAGeneration,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    Key,
    KeyDelivery,
    KeyRecovery,
    Profile,
    RequestState,
    Role,
    RoleGrant,
)
from pki.profile_changes import update_profile
from pki.recovery import approve_key_recovery, deliver_recovered_key, request_key_recovery
from pki.revocation import revoke_certificate
from pki.serverkeys import deliver_pkcs12, request_server_key
from pki.signing import run_signing, signs_here
from pki.x509.names import parse_subject
from web.api import fast_enroll
from web.api import serializers as s
from web.api.auth import token_actor
from web.api.pagination import IdCursorPagination
from web.api.renderers import DerRenderer, PemRenderer, Pkcs7Renderer, Pkcs12Renderer
from web.api.throttles import EnrollThrottle, TokenThrottle

PEM_CHAIN = "application/pem-certificate-chain"


def actor_of(request: Request) -> str:
    """The audit actor: the user name, and the token prefix when a token authenticated the call."""
    if isinstance(request.auth, ApiToken):
        return token_actor(request.auth)
    return request.user.get_username()


def _pem(certs: Any) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


_CHAIN_CACHE: dict[tuple[int, int | None], tuple[float, bytes]] = {}
CHAIN_CACHE_SECONDS = 60.0


def _ca_chain_pem(ca: CertificateAuthority) -> bytes:
    """The CA's chain as PEM, cached a minute per process (it changes only at CA rollover)."""
    key = (ca.pk, ca.certificate_id)
    now = time.monotonic()
    hit = _CHAIN_CACHE.get(key)
    if hit is not None and now - hit[0] < CHAIN_CACHE_SECONDS:
        return hit[1]
    pem = _pem(ca.chain())
    _CHAIN_CACHE[key] = (now, pem)
    return pem


@functools.lru_cache(maxsize=32)
def _detail_path(name: str) -> str:
    """The path of URL ``name`` with ``{pk}`` in place of its id (resolved once per process)."""
    return django_reverse(name, kwargs={"pk": 0}).replace("/0/", "/{pk}/")


def detail_url(request: Request | HttpRequest, name: str, pk: object) -> str:
    """What ``reverse(name, kwargs={"pk": pk}, request=request)`` returns, without re-resolving."""
    return request.build_absolute_uri(_detail_path(name).format(pk=pk))


def _download(body: bytes, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _bad_param(name: str, message: str) -> serializers.ValidationError:
    return serializers.ValidationError({name: [message]})


def _datetime_param(request: Request, name: str) -> dt.datetime | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = parse_datetime(raw)
    except ValueError:
        value = None
    if value is None:
        try:
            value = dt.datetime.combine(dt.date.fromisoformat(raw), dt.time(), tzinfo=dt.UTC)
        except ValueError:
            raise _bad_param(name, "an ISO 8601 date or date-time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)  # PostgreSQL refuses offsets past ±15:59
    except OverflowError:
        raise _bad_param(name, "out of range") from None


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise _bad_param(name, "a positive integer")
    return int(raw)


PROBLEM = OpenApiResponse(description="problem document (RFC 7807)")
DOWNLOAD = OpenApiTypes.BINARY


class KmiViewSet(viewsets.GenericViewSet):  # type: ignore[type-arg]
    """Base: ``required`` maps each action to the pki.access.Action the permission class asks about."""

    required: dict[str, Action] = {}

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Refuses NUL characters in the query string (PostgreSQL text cannot hold them)."""
        for name, values in request.query_params.lists():
            if any("\x00" in v for v in values):
                raise _bad_param(name, "must not contain NUL characters")
        super().initial(request, *args, **kwargs)

    def get_serializer_context(self) -> dict[str, Any]:
        """Adds one ``now`` for the whole response."""
        return {**super().get_serializer_context(), "now": utcnow()}


# --- CAs -----------------------------------------------------------------------------------------
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
        summary="Create an intermediate CA (administrators)",
        request=s.IntermediateCASerializer,
        responses={201: s.CertificateAuthoritySerializer},
    )
    def create(self, request: Request) -> Response:
        """Create an intermediate CA under ``parent`` with ``create_intermediate_ca``."""
        data = s.IntermediateCASerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        ca = create_intermediate_ca(
            name=v["name"],
            parent=v["parent"],
            subject=parse_subject(v["subject"]),
            key_type=v["key_type"],
            validity_days=v["validity_days"],
            path_length=v.get("path_length"),
            name_constraints=v.get("name_constraints"),
            actor=actor_of(request),
        )
        ca = self.get_queryset().get(pk=ca.pk)
        body = self.get_serializer(ca).data
        location = reverse("api:ca-detail", kwargs={"name": ca.name}, request=request)
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": location})

    @extend_schema(summary="The CA's certificate (PEM)", responses={(200, PEM_CHAIN): DOWNLOAD})
    @action(detail=True, renderer_classes=[PemRenderer, JSONRenderer])
    def certificate(self, request: Request, name: str) -> HttpResponse:
        """The CA certificate as PEM."""
        ca = self.get_object()
        return _download(_pem([ca.x509_certificate()]), PEM_CHAIN, f"{ca.name}.pem")

    @extend_schema(summary="The CA's chain up to the root (PEM)", responses={(200, PEM_CHAIN): DOWNLOAD})
    @action(detail=True, renderer_classes=[PemRenderer, JSONRenderer])
    def chain(self, request: Request, name: str) -> HttpResponse:
        """The CA certificate followed by its parents'."""
        ca = self.get_object()
        return _download(_pem(ca.chain()), PEM_CHAIN, f"{ca.name}-chain.pem")

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
            validity_days=data.validated_data.get("validity_days"),
        )
        return Response(self.get_serializer(self.get_queryset().get(pk=ca.pk)).data)


# --- profiles ------------------------------------------------------------------------------------
@extend_schema_view(
    list=extend_schema(summary="List profiles"),
    retrieve=extend_schema(summary="One profile"),
    partial_update=extend_schema(summary="Edit a profile (administrators)"),
    update=extend_schema(summary="Replace a profile's editable fields (administrators)"),
)
class ProfileViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, KmiViewSet):
    """Issuance profiles."""

    queryset = Profile.objects.order_by("name")
    serializer_class = s.ProfileSerializer
    lookup_field = "name"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    pagination_class = None
    required = {
        "list": Action.VIEW_PROFILE,
        "retrieve": Action.VIEW_PROFILE,
        "update": Action.EDIT_PROFILE,
        "partial_update": Action.EDIT_PROFILE,
    }

    def perform_update(self, serializer: serializers.BaseSerializer[Profile]) -> None:
        """Apply the change through ``update_profile`` (validated and audited)."""
        assert serializer.instance is not None
        serializer.instance = update_profile(
            profile=serializer.instance,
            changes=dict(serializer.validated_data),
            actor=actor_of(self.request),
        )


# --- requests ------------------------------------------------------------------------------------
REQUEST_FILTERS = [
    OpenApiParameter("state", str, enum=RequestState.values, description="request state"),
    OpenApiParameter("ca", str, description="CA name"),
    OpenApiParameter("profile", str, description="profile name"),
]


@extend_schema_view(
    list=extend_schema(summary="List requests", parameters=REQUEST_FILTERS),
    retrieve=extend_schema(summary="One request"),
)
class CertificateRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, KmiViewSet):
    """The CSR approval workflow."""

    serializer_class = s.CertificateRequestSerializer
    pagination_class = IdCursorPagination
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
        """Visible requests, filtered by the query string."""
        qs = visible_requests(self.request.user).select_related("ca", "profile")
        qs = qs.annotate(certificate_id_value=F("certificate__id")).defer("csr_der")
        if self.action != "list":
            return qs
        params = self.request.query_params
        if params.get("state"):
            if params["state"] not in RequestState.values:
                raise _bad_param("state", f"one of {', '.join(RequestState.values)}")
            qs = qs.filter(state=params["state"])
        if params.get("ca"):
            qs = qs.filter(ca__name=params["ca"])
        if params.get("profile"):
            qs = qs.filter(profile__name=params["profile"])
        return qs

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

    @extend_schema(summary="Approve a pending request and issue its certificate", request=None)
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


# --- certificates --------------------------------------------------------------------------------
CERTIFICATE_FILTERS = [
    OpenApiParameter("ca", str, description="issuing CA name"),
    OpenApiParameter("profile", str, description="profile name"),
    OpenApiParameter("state", str, enum=["valid", "expired", "revoked"], description="status now"),
    OpenApiParameter("expiring_before", OpenApiTypes.DATETIME, description="valid now, notAfter before"),
    OpenApiParameter("q", str, description="search in subject and SANs"),
    OpenApiParameter("serial", str, description="serial number (hex)"),
]


@extend_schema_view(
    list=extend_schema(summary="List certificates", parameters=CERTIFICATE_FILTERS),
    retrieve=extend_schema(summary="One certificate"),
)
class CertificateViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, KmiViewSet):
    """Certificates: search, download, renew, revoke."""

    serializer_class = s.CertificateSerializer
    pagination_class = IdCursorPagination
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
        """Visible certificates, filtered by the query string."""
        qs = visible_certificates(self.request.user).select_related("ca", "profile")
        if self.action == "list":
            qs = qs.defer("der")
            qs = self._filter(qs)
        return qs

    def _filter(self, qs: models.QuerySet[Certificate]) -> models.QuerySet[Certificate]:
        params = self.request.query_params
        now = utcnow()
        # Names become ids first, so the page query filters on the indexed column alone and an
        # index on (ca_id, id) serves "ORDER BY id DESC LIMIT n" without a sort at any size.
        if params.get("ca"):
            ca_id = (
                CertificateAuthority.objects.filter(name=params["ca"]).values_list("pk", flat=True).first()
            )
            qs = qs.filter(ca_id=ca_id) if ca_id is not None else qs.none()
        if params.get("profile"):
            profile_id = Profile.objects.filter(name=params["profile"]).values_list("pk", flat=True).first()
            qs = qs.filter(profile_id=profile_id) if profile_id is not None else qs.none()
        state = params.get("state", "")
        if state not in ("", "valid", "expired", "revoked"):
            raise _bad_param("state", "one of valid, expired, revoked")
        return qs.matching(  # type: ignore[attr-defined,no-any-return]
            now=now,
            state=state,
            expiring_before=_datetime_param(self.request, "expiring_before"),
            serial=params.get("serial", ""),
            q=params.get("q", ""),
        )

    def _cert(self) -> Certificate:
        return self.get_object()  # type: ignore[no-any-return]

    @extend_schema(summary="Download as PEM", responses={(200, PEM_CHAIN): DOWNLOAD})
    @action(detail=True, renderer_classes=[PemRenderer, JSONRenderer])
    def pem(self, request: Request, pk: str) -> HttpResponse:
        """The certificate, PEM."""
        cert = self._cert()
        return _download(_pem([cert.x509()]), PEM_CHAIN, f"{cert.serial}.pem")

    @extend_schema(summary="Download as DER", responses={(200, "application/pkix-cert"): DOWNLOAD})
    @action(detail=True, renderer_classes=[DerRenderer, JSONRenderer])
    def der(self, request: Request, pk: str) -> HttpResponse:
        """The certificate, DER (RFC 2585 content type)."""
        cert = self._cert()
        return _download(bytes(cert.der), "application/pkix-cert", f"{cert.serial}.cer")

    @extend_schema(summary="Download with its chain (PEM)", responses={(200, PEM_CHAIN): DOWNLOAD})
    @action(detail=True, renderer_classes=[PemRenderer, JSONRenderer])
    def chain(self, request: Request, pk: str) -> HttpResponse:
        """The certificate followed by its issuing chain, PEM."""
        cert = self._cert()
        return _download(_pem(chain_for(cert)), PEM_CHAIN, f"{cert.serial}-chain.pem")

    @extend_schema(
        summary="Download with its chain as PKCS#7", responses={(200, "application/pkcs7-mime"): DOWNLOAD}
    )
    @action(detail=True, renderer_classes=[Pkcs7Renderer, JSONRenderer])
    def pkcs7(self, request: Request, pk: str) -> HttpResponse:
        """The certificate and its chain as a certs-only PKCS#7 (DER)."""
        cert = self._cert()
        body = pkcs7.serialize_certificates(list(chain_for(cert)), serialization.Encoding.DER)
        response = _download(body, "application/pkcs7-mime", f"{cert.serial}.p7c")
        response["Content-Type"] = "application/pkcs7-mime; smime-type=certs-only"
        return response

    @extend_schema(
        summary="Renew (same key, or a new key from a CSR)",
        request=s.RenewSerializer,
        responses={201: s.CertificateSerializer},
    )
    @action(detail=True, methods=["post"])
    def renew(self, request: Request, pk: str) -> Response:
        """``renew_certificate``; the successor is returned with its URL in Location."""
        cert = self._cert()
        data = s.RenewSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        csr = data.validated_data.get("csr")
        validity_days = data.validated_data.get("validity_days")
        if signs_here():
            new_pk = renew_certificate(
                certificate=cert, csr=csr, validity_days=validity_days, actor=actor_of(request)
            ).pk
        else:
            # KMI_SIGNING=worker: the signing worker renews (nothing is stored before it does).
            new_pk = run_signing(
                "renew_certificate",
                certificate_id=cert.pk,
                csr_pem=csr,
                validity_days=validity_days,
                actor=actor_of(request),
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
        body["pem"] = _pem(chain_for(new)).decode()
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


# --- keys ----------------------------------------------------------------------------------------
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
        response = _download(blob, "application/x-pkcs12", f"{row.key_id}.p12")
        response["Cache-Control"] = "no-store"
        return response


# --- audit ---------------------------------------------------------------------------------------
AUDIT_FILTERS = [
    OpenApiParameter("action", str, description="e.g. certificate.issued"),
    OpenApiParameter("actor", str),
    OpenApiParameter("object_type", str),
    OpenApiParameter("object_id", str),
    OpenApiParameter("since", OpenApiTypes.DATETIME),
    OpenApiParameter("until", OpenApiTypes.DATETIME),
]


@extend_schema_view(list=extend_schema(summary="List audit events", parameters=AUDIT_FILTERS))
class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, KmiViewSet):
    """The audit trail (administrators and auditors)."""

    serializer_class = s.AuditEventSerializer
    pagination_class = IdCursorPagination
    required = {
        "list": Action.VIEW_AUDIT,
        "retrieve": Action.VIEW_AUDIT,
        "export": Action.VIEW_AUDIT,
        "verify": Action.VIEW_AUDIT,
    }

    def get_queryset(self) -> models.QuerySet[AuditEvent]:
        """Visible events, filtered by the query string."""
        qs = visible_audit_events(self.request.user)
        if self.action not in ("list", "export"):
            return qs
        params = self.request.query_params
        for name in ("action", "actor", "object_type", "object_id"):
            if params.get(name):
                qs = qs.filter(**{name: params[name]})
        since = _datetime_param(self.request, "since")
        if since is not None:
            qs = qs.filter(timestamp__gte=since)
        until = _datetime_param(self.request, "until")
        if until is not None:
            qs = qs.filter(timestamp__lt=until)
        return qs

    @extend_schema(
        summary="Export as JSON lines (streamed)",
        parameters=AUDIT_FILTERS,
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR},
    )
    @action(detail=False, renderer_classes=[JSONRenderer])
    def export(self, request: Request) -> StreamingHttpResponse:
        """Every matching event, oldest first, one JSON object a line."""
        qs = self.get_queryset().order_by("id")
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


# --- enroll --------------------------------------------------------------------------------------
class EnrollView(APIView):
    """``POST /api/v1/enroll``: 201 with the chain (PEM) when issued, 202 with Location when pending."""

    required = {"post": Action.SUBMIT_REQUEST}
    throttle_classes = [EnrollThrottle]
    renderer_classes = [JSONRenderer, PemRenderer]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        """The common case (a token, a plainly valid body, an auto-approving profile, signing in
        process) is served by web/api/fast_enroll.py with the same domain calls; everything
        else, every error included, by DRF as below."""
        response = fast_enroll.serve(request, self)
        if response is not None:
            return response
        return super().dispatch(request, *args, **kwargs)

    def issued_response(
        self, request: HttpRequest, ca: CertificateAuthority, cert: Certificate
    ) -> HttpResponse:
        """201: the certificate and its chain in PEM, Location naming the certificate."""
        chain_pem = _pem([cert.x509()]) + _ca_chain_pem(ca)
        response = HttpResponse(chain_pem, status=status.HTTP_201_CREATED, content_type=PEM_CHAIN)
        response["Location"] = detail_url(request, "api:certificate-detail", cert.pk)
        return response

    @extend_schema(
        summary="Enroll: CSR in, certificate chain out",
        request=s.SubmitSerializer,
        responses={
            (201, PEM_CHAIN): OpenApiResponse(DOWNLOAD, description="issued: certificate then its chain"),
            202: OpenApiResponse(s.CertificateRequestSerializer, description="waiting for approval"),
        },
    )
    def post(self, request: Request) -> HttpResponse | Response:
        """Submit and, when the profile auto-approves, issue in the same transaction."""
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
        if result.certificate is None:
            obj = CertificateRequest.objects.select_related("ca", "profile").get(pk=result.request.pk)
            location = reverse("api:request-detail", kwargs={"pk": obj.pk}, request=request)
            body = s.CertificateRequestSerializer(obj, context={"request": request}).data
            return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": location})
        return self.issued_response(request, v["ca"], result.certificate)


# --- server-generated keys -----------------------------------------------------------------------
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
        if signs_here():
            delivery = request_server_key(
                ca=v["ca"],
                profile=v["profile"],
                subject=parse_subject(v["subject"]) if v["subject"] else x509.Name([]),
                sans=v["sans"],
                key_type=v["key_type"],
                validity_days=v.get("validity_days"),
                requester=request.user,  # type: ignore[arg-type]
                actor=actor_of(request),
            )
        else:
            # KMI_SIGNING=worker: the key is generated and sealed where the KEK is.
            result = run_signing(
                "request_server_key",
                delivery_id=str(uuid.uuid4()),
                ca_id=v["ca"].pk,
                profile_id=v["profile"].pk,
                subject=v["subject"],
                sans=[str(san) for san in v["sans"]],
                key_type=str(v["key_type"]),
                validity_days=v.get("validity_days"),
                requester_id=request.user.pk,
                actor=actor_of(request),
            )
            delivery = KeyDelivery.objects.get(pk=result["delivery_id"])
        issued = CertificateRequest.objects.filter(pk=delivery.request_id, state=RequestState.ISSUED).exists()
        code = status.HTTP_201_CREATED if issued else status.HTTP_202_ACCEPTED
        location = reverse("api:server-key-detail", kwargs={"pk": delivery.pk}, request=request)
        return Response(self.get_serializer(delivery).data, status=code, headers={"Location": location})

    @extend_schema(
        summary="Download the key and chain as PKCS#12, once (then 410 Gone)",
        request=s.Pkcs12PasswordSerializer,
        responses={(200, "application/x-pkcs12"): DOWNLOAD},
    )
    @action(detail=True, methods=["post"], renderer_classes=[Pkcs12Renderer, JSONRenderer])
    def pkcs12(self, request: Request, pk: str) -> HttpResponse:
        """``deliver_pkcs12``: AES-256 under the client's password; KMI's copy goes unless escrowed."""
        delivery = self.get_object()
        data = s.Pkcs12PasswordSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        blob = deliver_pkcs12(
            delivery=delivery, password=data.validated_data["password"], actor=actor_of(request)
        )
        response = _download(blob, "application/x-pkcs12", f"{delivery.key_id}.p12")
        response["Cache-Control"] = "no-store"
        return response


# --- tokens --------------------------------------------------------------------------------------
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


# --- role grants ---------------------------------------------------------------------------------
@extend_schema_view(
    list=extend_schema(
        summary="List role grants",
        parameters=[
            OpenApiParameter("user", str, description="user name"),
            OpenApiParameter("role", str, enum=[r.value for r in Role], description="role"),
            OpenApiParameter("ca", str, description="CA name"),
        ],
    ),
    retrieve=extend_schema(summary="One role grant"),
)
class RoleGrantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, KmiViewSet):
    """Who may do what: administrators grant and revoke roles; auditors read every grant; everyone
    else sees their own."""

    serializer_class = s.RoleGrantSerializer
    pagination_class = IdCursorPagination
    required = {
        "list": Action.VIEW_ACCESS,
        "retrieve": Action.VIEW_ACCESS,
        "create": Action.MANAGE_ACCESS,
        "destroy": Action.MANAGE_ACCESS,
    }

    def get_queryset(self) -> models.QuerySet[RoleGrant]:
        """Visible grants, filtered by the query string."""
        qs = visible_grants(self.request.user)
        params = self.request.query_params
        if params.get("user"):
            qs = qs.filter(user__username=params["user"])
        if params.get("role"):
            if params["role"] not in Role.values:
                raise _bad_param("role", f"one of {', '.join(Role.values)}")
            qs = qs.filter(role=params["role"])
        if params.get("ca"):
            qs = qs.filter(ca__name=params["ca"])
        return qs

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
