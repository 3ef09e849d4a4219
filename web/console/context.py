"""Template context of every console page: the user's roles and what the navigation offers."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from pki.access import Action, can, grants_for


def console(request: HttpRequest) -> dict[str, Any]:
    """``console_nav`` (links the user's roles make useful) and ``console_roles``."""
    if not request.path.startswith("/console/") or not request.user.is_authenticated:
        return {}
    g = grants_for(request.user)
    nav = [("dashboard", "Dashboard")]
    if g.any:
        nav += [("requests", "Requests"), ("certificates", "Certificates")]
    if can(request.user, Action.SUBMIT_REQUEST):
        nav.append(("enroll", "Enroll"))
    if g.any:
        nav += [("cas", "CAs"), ("profiles", "Profiles"), ("keys", "Keys")]
    if can(request.user, Action.VIEW_AUDIT):
        nav.append(("audit", "Audit"))
    if can(request.user, Action.VIEW_ACME_ENDPOINT):
        nav.append(("acme", "ACME"))
    if can(request.user, Action.VIEW_DEVICE_LABEL):
        nav.append(("devices", "Devices"))
    nav.append(("access", "Access"))
    roles = [
        name
        for name, held in (
            ("administrator", g.administrator),
            ("auditor", g.auditor),
            ("CA operator", bool(g.operator_cas)),
            ("requester", bool(g.requester_pairs)),
        )
        if held
    ]
    return {"console_nav": nav, "console_roles": roles}
