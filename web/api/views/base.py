"""What every API view shares: the base viewset, the audit actor, downloads and URLs."""

from __future__ import annotations

import functools
from typing import Any

from cryptography.hazmat.primitives import serialization
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.urls import reverse as django_reverse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers, viewsets
from rest_framework.request import Request

from pki.access import Action
from pki.clock import utcnow
from pki.models import ApiToken
from web.api.auth import token_actor

PEM_CHAIN = "application/pem-certificate-chain"


def actor_of(request: Request) -> str:
    """The audit actor: the user name, and the token prefix when a token authenticated the call."""
    if isinstance(request.auth, ApiToken):
        return token_actor(request.auth)
    return request.user.get_username()


def pem_bytes(certs: Any) -> bytes:
    """Certificates as concatenated PEM."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@functools.lru_cache(maxsize=32)
def _detail_path(name: str) -> str:
    """The path of URL ``name`` with ``{pk}`` in place of its id (resolved once per process)."""
    return django_reverse(name, kwargs={"pk": 0}).replace("/0/", "/{pk}/")


def detail_url(request: Request | HttpRequest, name: str, pk: object) -> str:
    """What ``reverse(name, kwargs={"pk": pk}, request=request)`` returns, without re-resolving."""
    return request.build_absolute_uri(_detail_path(name).format(pk=pk))


def download(body: bytes, content_type: str, filename: str) -> HttpResponse:
    """``body`` as an attachment named ``filename``."""
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def bad_param(name: str, message: str) -> serializers.ValidationError:
    """A 400 naming query parameter ``name`` (a problem document, web/api/errors.py)."""
    return serializers.ValidationError({name: [message]})


PROBLEM = OpenApiResponse(description="problem document (RFC 7807)")
DOWNLOAD = OpenApiTypes.BINARY


class KmiViewSet(viewsets.GenericViewSet):  # type: ignore[type-arg]
    """Base: ``required`` maps each action to the pki.access.Action the permission class asks about."""

    required: dict[str, Action] = {}
    # Query-string filters: each list view names its FilterSet (web/api/filters.py), which the
    # OpenAPI schema documents; they apply to the actions in ``filtered_actions`` only.
    filter_backends = [DjangoFilterBackend]
    filtered_actions: frozenset[str] = frozenset({"list"})

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Refuses NUL characters in the query string (PostgreSQL text cannot hold them)."""
        for name, values in request.query_params.lists():
            if any("\x00" in v for v in values):
                raise bad_param(name, "must not contain NUL characters")
        super().initial(request, *args, **kwargs)

    def filter_queryset(self, queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
        """The FilterSet's filters on the listing actions; a bad value is a 400 naming it."""
        if self.action not in self.filtered_actions:
            return queryset
        return super().filter_queryset(queryset)

    def get_serializer_context(self) -> dict[str, Any]:
        """Adds one ``now`` for the whole response."""
        return {**super().get_serializer_context(), "now": utcnow()}
