"""The API's one permission class: it maps each view action to a pki.access.Action and asks ``can``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import permissions
from rest_framework.request import Request

if TYPE_CHECKING:  # importing rest_framework.views here would be circular (DRF loads this class)
    from rest_framework.views import APIView

from pki.access import Action, can


def action_of(request: Request, view: APIView) -> Action | None:
    """Return the pki Action a view's current action needs (viewsets map it in ``required``)."""
    required: dict[str, Action] = getattr(view, "required", {})
    name = getattr(view, "action", None) or request.method.lower()  # type: ignore[union-attr]
    return required.get(name)


class KmiPermission(permissions.BasePermission):
    """Denies what ``pki.access.can`` denies; an action without a mapping is denied too."""

    message = "your roles do not allow this"

    def has_permission(self, request: Request, view: APIView) -> bool:
        """Check the action without an object (is the user allowed this kind of act at all)."""
        if not request.user or not request.user.is_authenticated:
            return False
        action = action_of(request, view)
        return action is not None and can(request.user, action)

    def has_object_permission(self, request: Request, view: APIView, obj: Any) -> bool:
        """Check the action on one object (a model, or a (ca, profile) pair for submissions)."""
        action = action_of(request, view)
        return action is not None and can(request.user, action, obj)
