"""Issuance profiles: read, and edited by administrators through ``update_profile``."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers

from pki.access import Action
from pki.models import Profile
from pki.profile_changes import update_profile
from web.api import serializers as s
from web.api.views.base import KmiViewSet, actor_of


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
