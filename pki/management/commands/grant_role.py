"""``grant_role USER ROLE [--ca CA] [--profile PROFILE] [--revoke]``: give (or take) a role."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser

from pki.access import grant_role, revoke_grant
from pki.management.base import PKICommand, get_ca, get_profile
from pki.models import Role, RoleGrant


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user")
        parser.add_argument("role", choices=Role.values)
        parser.add_argument("--ca", help="CA name (CA operators and requesters)")
        parser.add_argument("--profile", help="profile name (requesters)")
        parser.add_argument("--revoke", action="store_true", help="take the role away instead")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            user = get_user_model().objects.get(username=opts["user"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user named {opts['user']!r}") from None
        ca = get_ca(opts["ca"]) if opts["ca"] else None
        profile = get_profile(opts["profile"]) if opts["profile"] else None
        if opts["revoke"]:
            grant = RoleGrant.objects.filter(user=user, role=opts["role"], ca=ca, profile=profile).first()
            if grant is None:
                raise CommandError("no such grant")
            revoke_grant(grant=grant, actor=self.actor())
            self.stdout.write(f"revoked: {grant}")
            return
        grant = grant_role(user=user, role=opts["role"], ca=ca, profile=profile, actor=self.actor())
        self.stdout.write(f"granted: {grant}")
