"""Device enrollment administration over the API: EST and SCEP labels and their one-time secrets.

``/api/v1/est/labels/`` (``…/<name>/codes/`` mints one-time enrollment codes) and
``/api/v1/scep/labels/`` (``…/<name>/challenges/`` mints a one-time challenge password).
Administrators create, disable and enable labels; auditors read them; operators of a label's CA
see it and mint its codes and challenges (rules in pki.access, as for ACME endpoints and their
EAB keys). Every change calls the use case the CLI commands call (pki.est.labels,
pki.scep.labels); a code or challenge is in the creation response only, never stored in clear.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from pki.access import Action, visible_device_labels
from pki.est.labels import (
    LABEL_NAME,
    MAX_EXPIRES_DAYS,
    create_enrollment_codes,
    create_est_label,
    set_label_enabled,
)
from pki.models import CertificateAuthority, EstLabel, Profile, ScepLabel
from pki.scep.labels import MAX_CHALLENGE_DAYS, create_scep_challenge, request_scep_label
from web.api.serializers import NameField
from web.api.views.base import KmiViewSet, actor_of

NAME_REGEX = LABEL_NAME.pattern.removeprefix(r"\A").removesuffix(r"\Z")
MAX_API_CODES = 1000  # one response; the CLI mints larger provisioning lists


def _base() -> str:
    return str(settings.KMI.get("BASE_URL", "")).rstrip("/")


# --- serializers ---------------------------------------------------------------------------------
class EstLabelSerializer(serializers.ModelSerializer[EstLabel]):
    """An EST label: where devices enroll, with which CA and profile, and how they authenticate."""

    url = serializers.SerializerMethodField()
    est_url = serializers.SerializerMethodField(help_text="the label's EST base URL (RFC 7030 §3.2.2)")
    ca = serializers.CharField(source="ca.name", read_only=True)
    profile = serializers.CharField(source="profile.name", read_only=True)
    client_cas: serializers.SlugRelatedField[CertificateAuthority] = serializers.SlugRelatedField(
        slug_field="name", many=True, read_only=True
    )

    class Meta:
        model = EstLabel
        fields = (
            "name",
            "url",
            "est_url",
            "ca",
            "profile",
            "client_cas",
            "serverkeygen",
            "is_default",
            "enabled",
            "created_at",
        )
        read_only_fields = fields

    def get_url(self, obj: EstLabel) -> str:
        """This label's API URL."""
        return reverse("api:est-label-detail", kwargs={"name": obj.name}, request=self.context.get("request"))

    def get_est_url(self, obj: EstLabel) -> str:
        """``<base>/.well-known/est/<name>/``."""
        return f"{_base()}/.well-known/est/{obj.name}/"


class ScepLabelSerializer(serializers.ModelSerializer[ScepLabel]):
    """A SCEP label: its URL, CA, profile and RA certificate (never its challenge)."""

    url = serializers.SerializerMethodField()
    scep_url = serializers.SerializerMethodField(help_text="the URL SCEP clients are given")
    ca = serializers.CharField(source="ca.name", read_only=True)
    profile = serializers.CharField(source="profile.name", read_only=True)
    ra_certificate = serializers.CharField(source="ra_certificate.serial", read_only=True)
    static_challenge = serializers.SerializerMethodField(help_text="whether a static challenge is set")

    class Meta:
        model = ScepLabel
        fields = (
            "name",
            "url",
            "scep_url",
            "ca",
            "profile",
            "ra_certificate",
            "static_challenge",
            "enabled",
            "created_at",
        )
        read_only_fields = fields

    def get_url(self, obj: ScepLabel) -> str:
        """This label's API URL."""
        return reverse(
            "api:scep-label-detail", kwargs={"name": obj.name}, request=self.context.get("request")
        )

    def get_scep_url(self, obj: ScepLabel) -> str:
        """``<base>/scep/<name>``."""
        return f"{_base()}/scep/{obj.name}"

    def get_static_challenge(self, obj: ScepLabel) -> bool:
        """True when the label takes a static challenge password."""
        return bool(obj.static_challenge)


class _LabelCreateSerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.RegexField(rf"^{NAME_REGEX}$", max_length=64, help_text="one URL path segment")
    ca = NameField(slug_field="name", queryset=CertificateAuthority.objects.all())
    profile = NameField(slug_field="name", queryset=Profile.objects.all())


class EstLabelCreateSerializer(_LabelCreateSerializer):
    """Input of ``create_est_label``."""

    client_cas = serializers.ListField(
        child=NameField(slug_field="name", queryset=CertificateAuthority.objects.all()),
        max_length=16,
        required=False,
        default=list,
        help_text="CAs whose certificates authenticate devices by TLS client certificate",
    )
    serverkeygen = serializers.BooleanField(required=False, default=False)
    is_default = serializers.BooleanField(required=False, default=False, help_text="also /.well-known/est/")


class ScepLabelCreateSerializer(_LabelCreateSerializer):
    """Input of ``create_scep_label``."""

    challenge = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=128,
        trim_whitespace=False,
        write_only=True,
        help_text="an optional static challenge password (12-128 characters); only its hash is kept",
    )


class CodesRequestSerializer(serializers.Serializer[dict[str, Any]]):
    """Input of ``create_enrollment_codes``."""

    count = serializers.IntegerField(min_value=1, max_value=MAX_API_CODES, default=1)
    expires_days = serializers.IntegerField(min_value=1, max_value=MAX_EXPIRES_DAYS, default=7)


class CodeSerializer(serializers.Serializer[dict[str, Any]]):
    """One enrollment code: HTTP Basic user and password of one device."""

    code_id = serializers.CharField(help_text="the HTTP Basic user")
    secret = serializers.CharField(help_text="the HTTP Basic password; shown once")


NEW_CODES = inline_serializer(
    "NewEnrollmentCodes",
    {
        "label": serializers.CharField(),
        "est_url": serializers.CharField(),
        "not_after": serializers.DateTimeField(),
        "codes": CodeSerializer(many=True),
    },
)


class ChallengeRequestSerializer(serializers.Serializer[dict[str, Any]]):
    """Input of ``create_scep_challenge``."""

    expires_days = serializers.IntegerField(min_value=1, max_value=MAX_CHALLENGE_DAYS, default=7)


NEW_CHALLENGE = inline_serializer(
    "NewScepChallenge",
    {
        "label": serializers.CharField(),
        "scep_url": serializers.CharField(),
        "challenge": serializers.CharField(help_text="the challengePassword of one PKCSReq; shown once"),
    },
)


NAME_PARAM = OpenApiParameter(
    "name",
    str,
    OpenApiParameter.PATH,
    pattern=f"^{NAME_REGEX}$",
    description="label name",
    examples=[OpenApiExample("demo", value="demo")],
)


# --- viewsets ------------------------------------------------------------------------------------
class _LabelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, KmiViewSet):
    lookup_field = "name"
    lookup_value_regex = NAME_REGEX
    pagination_class = None
    model: type[EstLabel] | type[ScepLabel]
    related: tuple[str, ...] = ("ca", "profile")

    def get_queryset(self) -> models.QuerySet[Any]:
        """The labels the user may see."""
        qs = self.model.objects.select_related(*self.related).order_by("name")
        return visible_device_labels(self.request.user, qs)

    def _respond(self, label: EstLabel | ScepLabel, code: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=label.pk)
        response = Response(self.get_serializer(fresh).data, status=code)
        if code == status.HTTP_201_CREATED:
            response["Location"] = self.get_serializer(fresh).data["url"]
        return response

    def _set_enabled(self, request: Request, enabled: bool) -> Response:
        label = set_label_enabled(label=self.get_object(), enabled=enabled, actor=actor_of(request))
        return self._respond(label)


_LABEL_ACTIONS = {
    "list": Action.VIEW_DEVICE_LABEL,
    "retrieve": Action.VIEW_DEVICE_LABEL,
    "create": Action.MANAGE_DEVICE_LABEL,
    "disable": Action.MANAGE_DEVICE_LABEL,
    "enable": Action.MANAGE_DEVICE_LABEL,
}


@extend_schema_view(
    list=extend_schema(summary="List EST labels"),
    retrieve=extend_schema(summary="One EST label", parameters=[NAME_PARAM]),
)
class EstLabelViewSet(_LabelViewSet):
    """EST labels (RFC 7030 §3.2.2): create, disable and enable (administrators); mint codes."""

    queryset = EstLabel.objects.none()  # the model, for the schema; get_queryset filters
    serializer_class = EstLabelSerializer
    model = EstLabel
    required = {**_LABEL_ACTIONS, "codes": Action.MANAGE_DEVICE_CODE}

    def get_queryset(self) -> models.QuerySet[Any]:
        """The labels the user may see, with their client CAs."""
        return super().get_queryset().prefetch_related("client_cas")

    @extend_schema(
        summary="Create an EST label (administrators)",
        request=EstLabelCreateSerializer,
        responses={201: EstLabelSerializer},
    )
    def create(self, request: Request) -> Response:
        """``create_est_label``; 409 when the name (or the default label) is taken, 422 when the
        name is no label or the profile issues CA certificates."""
        data = EstLabelCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        label = create_est_label(
            name=v["name"],
            ca=v["ca"],
            profile=v["profile"],
            client_cas=v["client_cas"],
            serverkeygen=v["serverkeygen"],
            is_default=v["is_default"],
            actor=actor_of(request),
        )
        return self._respond(label, status.HTTP_201_CREATED)

    @extend_schema(summary="Disable an EST label: its URLs answer 404", request=None, parameters=[NAME_PARAM])
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, name: str) -> Response:
        """``set_label_enabled(enabled=False)``; codes and certificates are kept."""
        return self._set_enabled(request, False)

    @extend_schema(summary="Enable a disabled EST label again", request=None, parameters=[NAME_PARAM])
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, name: str) -> Response:
        """``set_label_enabled(enabled=True)``."""
        return self._set_enabled(request, True)

    @extend_schema(
        summary="Mint one-time enrollment codes (HTTP Basic user and password), shown once",
        parameters=[NAME_PARAM],
        request=CodesRequestSerializer,
        responses={201: NEW_CODES},
    )
    @action(detail=True, methods=["post"])
    def codes(self, request: Request, name: str) -> Response:
        """``create_enrollment_codes``; the response holds the codes and is not cached."""
        label = self.get_object()
        data = CodesRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = create_enrollment_codes(
            label=label,
            count=data.validated_data["count"],
            expires_days=data.validated_data["expires_days"],
            actor=actor_of(request),
        )
        body = {
            "label": label.name,
            "est_url": f"{_base()}/.well-known/est/{label.name}/",
            "not_after": serializers.DateTimeField().to_representation(issued[0].not_after),
            "codes": [{"code_id": c.code_id, "secret": c.secret} for c in issued],
        }
        return Response(
            body,
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


@extend_schema_view(
    list=extend_schema(summary="List SCEP labels"),
    retrieve=extend_schema(summary="One SCEP label", parameters=[NAME_PARAM]),
)
class ScepLabelViewSet(_LabelViewSet):
    """SCEP labels (RFC 8894): create, disable and enable (administrators); mint challenges."""

    queryset = ScepLabel.objects.none()  # the model, for the schema; get_queryset filters
    serializer_class = ScepLabelSerializer
    model = ScepLabel
    related = ("ca", "profile", "ra_certificate")
    required = {**_LABEL_ACTIONS, "challenges": Action.MANAGE_DEVICE_CODE}

    @extend_schema(
        summary="Create a SCEP label and its RA key and certificate (administrators)",
        request=ScepLabelCreateSerializer,
        responses={201: ScepLabelSerializer},
    )
    def create(self, request: Request) -> Response:
        """``create_scep_label``; 409 when the name is taken, 422 for a bad name, a profile that
        issues CA certificates or a static challenge of the wrong length."""
        data = ScepLabelCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        # Its RA key is generated and certified where signing runs (the web may hold no KEK).
        label = request_scep_label(
            name=v["name"],
            ca=v["ca"],
            profile=v["profile"],
            challenge=v["challenge"],
            actor=actor_of(request),
            user=request.user,
        )
        return self._respond(label, status.HTTP_201_CREATED)

    @extend_schema(summary="Disable a SCEP label: its URL answers 404", request=None, parameters=[NAME_PARAM])
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, name: str) -> Response:
        """``set_label_enabled(enabled=False)``; challenges and certificates are kept."""
        return self._set_enabled(request, False)

    @extend_schema(summary="Enable a disabled SCEP label again", request=None, parameters=[NAME_PARAM])
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, name: str) -> Response:
        """``set_label_enabled(enabled=True)``."""
        return self._set_enabled(request, True)

    @extend_schema(
        summary="Mint a one-time challenge password, shown once",
        parameters=[NAME_PARAM],
        request=ChallengeRequestSerializer,
        responses={201: NEW_CHALLENGE},
    )
    @action(detail=True, methods=["post"])
    def challenges(self, request: Request, name: str) -> Response:
        """``create_scep_challenge``; the response holds the challenge and is not cached."""
        label = self.get_object()
        data = ChallengeRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        secret = create_scep_challenge(
            label=label, expires_days=data.validated_data["expires_days"], actor=actor_of(request)
        )
        body = {"label": label.name, "scep_url": f"{_base()}/scep/{label.name}", "challenge": secret}
        return Response(
            body,
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )
