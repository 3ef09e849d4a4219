"""ACME administration over the API: endpoints (policy, disable) and their EAB keys.

``/api/v1/acme/endpoints/`` and ``/api/v1/acme/endpoints/<name>/eab-keys/``. Administrators
manage endpoints; auditors read them; operators of an endpoint's CA see it and mint, list and
revoke its EAB keys (rules in pki.access). Every change calls a use case of pki.acme.endpoints.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import models
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from pki.access import Action, visible_acme_endpoints
from pki.acme.endpoints import (
    ENDPOINT_NAME,
    create_eab_key,
    create_endpoint,
    identifier_patterns,
    revoke_eab_key,
    set_endpoint_enabled,
    update_endpoint,
)
from pki.acme.locations import directory_url
from pki.exceptions import PolicyViolation
from pki.models import AcmeEndpoint, AcmeExternalAccountKey, CertificateAuthority, Profile
from pki.profiles import KEY_FAMILIES
from web.api.serializers import NameField, validity_days_field
from web.api.views.base import KmiViewSet, actor_of

NAME_REGEX = ENDPOINT_NAME.pattern.removeprefix(r"\A").removesuffix(r"\Z")
KEY_ID_REGEX = r"[A-Za-z0-9_-]{1,64}"


# --- serializers ---------------------------------------------------------------------------------
class AcmeEndpointSerializer(serializers.ModelSerializer[AcmeEndpoint]):
    """An ACME endpoint, its directory URL and its policy."""

    url = serializers.SerializerMethodField()
    directory = serializers.SerializerMethodField()
    eab_keys = serializers.SerializerMethodField()
    ca = serializers.CharField(source="ca.name", read_only=True)
    profile = serializers.CharField(source="profile.name", read_only=True)
    allowed_identifiers = serializers.ListField(child=serializers.CharField(), read_only=True)
    key_types = serializers.ListField(child=serializers.CharField(), read_only=True)
    caa_identities = serializers.ListField(child=serializers.CharField(), read_only=True)
    terms_of_service = serializers.CharField(read_only=True, help_text="a URL, or empty")
    website = serializers.CharField(read_only=True, help_text="a URL, or empty")

    class Meta:
        model = AcmeEndpoint
        fields = (
            "name",
            "url",
            "directory",
            "eab_keys",
            "ca",
            "profile",
            "allowed_identifiers",
            "eab_required",
            "validity_days",
            "key_types",
            "terms_of_service",
            "website",
            "caa_identities",
            "enabled",
            "created_at",
        )
        read_only_fields = fields

    def get_url(self, obj: AcmeEndpoint) -> str:
        """This endpoint's API URL."""
        return reverse(
            "api:acme-endpoint-detail", kwargs={"name": obj.name}, request=self.context.get("request")
        )

    def get_directory(self, obj: AcmeEndpoint) -> str:
        """The RFC 8555 directory URL to give ACME clients (``--server``)."""
        return directory_url(obj.name)

    def get_eab_keys(self, obj: AcmeEndpoint) -> str:
        """The API URL of the endpoint's external account keys."""
        return reverse(
            "api:acme-eab-key-list", kwargs={"endpoint": obj.name}, request=self.context.get("request")
        )


def _patterns(value: list[str]) -> list[str]:
    try:
        return identifier_patterns(value)
    except PolicyViolation as exc:
        raise serializers.ValidationError(str(exc)) from None


class AcmeEndpointPolicySerializer(serializers.Serializer[dict[str, Any]]):
    """An endpoint's policy: what ``update_endpoint`` changes (PATCH sends only what changes)."""

    allowed_identifiers = serializers.ListField(
        child=serializers.CharField(max_length=255),
        max_length=256,
        required=False,
        help_text='DNS globs ("*.example.test": one label, "**.example.test": one or more) or IP '
        'networks ("10.0.0.0/8"); "dns:" / "ip:" prefixes are accepted; empty: nothing is allowed',
    )
    eab_required = serializers.BooleanField(required=False, help_text="RFC 8555 §7.3.4")
    validity_days = validity_days_field(
        required=False, allow_null=True, help_text="null: the profile's default"
    )
    key_types = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(KEY_FAMILIES)),
        max_length=32,
        required=False,
        help_text="allowed certificate key types; empty: any the profile allows",
    )
    terms_of_service = serializers.URLField(required=False, allow_blank=True, max_length=200)
    website = serializers.URLField(required=False, allow_blank=True, max_length=200)
    caa_identities = serializers.ListField(
        child=serializers.CharField(max_length=253), max_length=16, required=False
    )

    def validate_allowed_identifiers(self, value: list[str]) -> list[str]:
        """Each pattern must be a DNS glob or an IP network."""
        return _patterns(value)


class AcmeEndpointCreateSerializer(AcmeEndpointPolicySerializer):
    """Input of ``create_endpoint``: a name, a CA and a profile, and the policy."""

    name = serializers.RegexField(
        rf"^{NAME_REGEX}$", max_length=64, help_text="the path segment of /acme/<name>/directory"
    )
    ca = NameField(slug_field="name", queryset=CertificateAuthority.objects.all())
    profile = NameField(slug_field="name", queryset=Profile.objects.all())


class EabKeySerializer(serializers.ModelSerializer[AcmeExternalAccountKey]):
    """An external account key: its id and whether an account used it (never the HMAC key)."""

    endpoint = serializers.CharField(source="endpoint.name", read_only=True)
    user = serializers.CharField(source="user.username", read_only=True, allow_null=True)

    class Meta:
        model = AcmeExternalAccountKey
        fields: tuple[str, ...] = ("key_id", "endpoint", "user", "created_by", "created_at", "bound_at")
        read_only_fields = fields


class NewEabKeySerializer(EabKeySerializer):
    """The creation response: the HMAC key, shown once."""

    hmac_key = serializers.CharField(read_only=True, help_text="base64url; shown once, store it now")
    directory = serializers.CharField(read_only=True, help_text="the endpoint's ACME directory URL")

    class Meta(EabKeySerializer.Meta):
        fields = (*EabKeySerializer.Meta.fields, "hmac_key", "directory")


class EabKeyRequestSerializer(serializers.Serializer[dict[str, Any]]):
    """Input of ``create_eab_key``: optionally the KMI user the ACME account belongs to."""

    user = serializers.CharField(max_length=150, required=False, allow_null=True, default=None)

    def validate_user(self, value: str | None) -> User | None:
        """A user name, or nothing."""
        if value is None:
            return None
        user = User.objects.filter(username=value).first()
        if user is None:
            raise serializers.ValidationError(f"no user named {value!r}")
        return user


def _name_param(name: str) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        str,
        OpenApiParameter.PATH,
        pattern=f"^{NAME_REGEX}$",
        description="ACME endpoint name",
        examples=[OpenApiExample("demo", value="demo")],
    )


NAME_PARAM = _name_param("name")
ENDPOINT_PARAM = _name_param("endpoint")


# --- viewsets ------------------------------------------------------------------------------------
def _endpoints() -> models.QuerySet[AcmeEndpoint]:
    return AcmeEndpoint.objects.select_related("ca", "profile").order_by("name")


@extend_schema_view(
    list=extend_schema(summary="List ACME endpoints"),
    retrieve=extend_schema(summary="One ACME endpoint", parameters=[NAME_PARAM]),
    partial_update=extend_schema(parameters=[NAME_PARAM]),
    disable=extend_schema(parameters=[NAME_PARAM]),
    enable=extend_schema(parameters=[NAME_PARAM]),
)
class AcmeEndpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, KmiViewSet):
    """ACME endpoints: create, change the policy, disable and enable (administrators)."""

    queryset = AcmeEndpoint.objects.none()  # the model, for the schema; get_queryset filters
    serializer_class = AcmeEndpointSerializer
    lookup_field = "name"
    lookup_value_regex = NAME_REGEX
    pagination_class = None
    required = {
        "list": Action.VIEW_ACME_ENDPOINT,
        "retrieve": Action.VIEW_ACME_ENDPOINT,
        "create": Action.MANAGE_ACME_ENDPOINT,
        "partial_update": Action.MANAGE_ACME_ENDPOINT,
        "disable": Action.MANAGE_ACME_ENDPOINT,
        "enable": Action.MANAGE_ACME_ENDPOINT,
    }

    def get_queryset(self) -> models.QuerySet[AcmeEndpoint]:
        """The endpoints the user may see."""
        return visible_acme_endpoints(self.request.user, _endpoints())

    def _respond(self, endpoint: AcmeEndpoint, code: int = status.HTTP_200_OK) -> Response:
        fresh = _endpoints().get(pk=endpoint.pk)
        return Response(self.get_serializer(fresh).data, status=code)

    @extend_schema(
        summary="Create an ACME endpoint (administrators)",
        request=AcmeEndpointCreateSerializer,
        responses={201: AcmeEndpointSerializer},
    )
    def create(self, request: Request) -> Response:
        """``create_endpoint``; 409 when the name is taken, 422 when the profile cannot serve ACME."""
        data = AcmeEndpointCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        endpoint = create_endpoint(
            name=v["name"],
            ca=v["ca"],
            profile=v["profile"],
            allowed_identifiers=v.get("allowed_identifiers", []),
            eab_required=v.get("eab_required", False),
            validity_days=v.get("validity_days"),
            key_types=v.get("key_types", []),
            terms_of_service=v.get("terms_of_service", ""),
            website=v.get("website", ""),
            caa_identities=v.get("caa_identities", []),
            actor=actor_of(request),
        )
        response = self._respond(endpoint, status.HTTP_201_CREATED)
        response["Location"] = reverse(
            "api:acme-endpoint-detail", kwargs={"name": endpoint.name}, request=request
        )
        return response

    @extend_schema(
        summary="Change an endpoint's policy (administrators)",
        request=AcmeEndpointPolicySerializer,
        responses={200: AcmeEndpointSerializer},
    )
    def partial_update(self, request: Request, name: str) -> Response:
        """``update_endpoint``: only the fields sent change; the name, CA and profile stay."""
        endpoint = self.get_object()
        data = AcmeEndpointPolicySerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        endpoint = update_endpoint(
            endpoint=endpoint, changes=dict(data.validated_data), actor=actor_of(request)
        )
        return self._respond(endpoint)

    @extend_schema(
        summary="Disable an endpoint: its directory and resources answer 404 (administrators)",
        request=None,
        responses={200: AcmeEndpointSerializer},
    )
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, name: str) -> Response:
        """``set_endpoint_enabled(enabled=False)``; accounts and keys are kept."""
        endpoint = set_endpoint_enabled(endpoint=self.get_object(), enabled=False, actor=actor_of(request))
        return self._respond(endpoint)

    @extend_schema(
        summary="Enable a disabled endpoint again (administrators)",
        request=None,
        responses={200: AcmeEndpointSerializer},
    )
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, name: str) -> Response:
        """``set_endpoint_enabled(enabled=True)``."""
        endpoint = set_endpoint_enabled(endpoint=self.get_object(), enabled=True, actor=actor_of(request))
        return self._respond(endpoint)


@extend_schema_view(
    list=extend_schema(
        summary="List an endpoint's EAB keys (never the HMAC key)", parameters=[ENDPOINT_PARAM]
    ),
    retrieve=extend_schema(summary="One EAB key", parameters=[ENDPOINT_PARAM]),
    destroy=extend_schema(summary="Revoke an EAB key no account has used", parameters=[ENDPOINT_PARAM]),
)
class EabKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, KmiViewSet):
    """External account binding keys of one endpoint (RFC 8555 §7.3.4)."""

    queryset = AcmeExternalAccountKey.objects.none()  # the model, for the schema; get_queryset filters
    serializer_class = EabKeySerializer
    lookup_field = "key_id"
    lookup_value_regex = KEY_ID_REGEX
    required = {
        "list": Action.VIEW_EAB_KEY,
        "retrieve": Action.VIEW_EAB_KEY,
        "create": Action.MANAGE_EAB_KEY,
        "destroy": Action.MANAGE_EAB_KEY,
    }

    def endpoint(self) -> AcmeEndpoint:
        """The endpoint in the URL, when the user may see it (else 404), checked for the action."""
        cached: AcmeEndpoint | None = getattr(self, "_endpoint", None)
        if cached is None:
            found = visible_acme_endpoints(self.request.user).filter(name=self.kwargs["endpoint"]).first()
            if found is None:
                raise exceptions.NotFound(f"no ACME endpoint named {self.kwargs['endpoint']!r}")
            cached = found
            self.check_object_permissions(self.request, cached)
            self._endpoint = cached
        return cached

    def get_queryset(self) -> models.QuerySet[AcmeExternalAccountKey]:
        """The endpoint's keys, newest first, without the HMAC key column."""
        return (
            AcmeExternalAccountKey.objects.filter(endpoint=self.endpoint())
            .select_related("endpoint", "user")
            .defer("sealed_hmac_key")
        )

    @extend_schema(
        summary="Mint an EAB key: the key id and the HMAC key, shown once",
        parameters=[ENDPOINT_PARAM],
        request=EabKeyRequestSerializer,
        responses={201: NewEabKeySerializer},
    )
    def create(self, request: Request, endpoint: str) -> Response:
        """``create_eab_key``; the response holds the HMAC key (base64url) and is not cached."""
        target = self.endpoint()
        data = EabKeyRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row, hmac_key = create_eab_key(
            endpoint=target, user=data.validated_data["user"], actor=actor_of(request)
        )
        row = self.get_queryset().get(pk=row.pk)
        body = dict(NewEabKeySerializer(row).data)
        body["hmac_key"] = hmac_key
        body["directory"] = directory_url(target.name)
        location = reverse(
            "api:acme-eab-key-detail", kwargs={"endpoint": target.name, "key_id": row.key_id}, request=request
        )
        return Response(
            body, status=status.HTTP_201_CREATED, headers={"Location": location, "Cache-Control": "no-store"}
        )

    def destroy(self, request: Request, endpoint: str, key_id: str) -> Response:
        """``revoke_eab_key``: 204, or 409 when an account already uses the key."""
        revoke_eab_key(key=self.get_object(), actor=actor_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
