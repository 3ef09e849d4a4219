"""Shared behaviour of KMI's management commands: one-line errors, the CLI actor, lookups."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pki.exceptions import NotFound, PKIError
from pki.models import CertificateAuthority, Profile


class PKICommand(BaseCommand):
    """A command whose domain errors become ``CommandError`` (exit 1, one line on stderr)."""

    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except PKIError as exc:
            raise CommandError(str(exc)) from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

    def run(self, **options: Any) -> None:
        """Do the command's work (subclasses implement)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def handle(self, *args: Any, **options: Any) -> None:
        self.run(**options)

    @staticmethod
    def actor() -> str:
        """The audit actor for commands: the operating-system user."""
        try:
            return f"cli:{getpass.getuser()}"
        except (KeyError, OSError):
            return "cli:unknown"


def get_ca(name: str) -> CertificateAuthority:
    """Return the CA called ``name`` or raise NotFound."""
    try:
        return CertificateAuthority.objects.select_related("key", "certificate", "parent").get(name=name)
    except CertificateAuthority.DoesNotExist:
        known = ", ".join(CertificateAuthority.objects.values_list("name", flat=True)) or "none"
        raise NotFound(f"no CA named {name!r} (known: {known})") from None


def get_profile(name: str) -> Profile:
    """Return the profile called ``name`` or raise NotFound."""
    try:
        return Profile.objects.get(name=name)
    except Profile.DoesNotExist:
        known = ", ".join(Profile.objects.values_list("name", flat=True))
        raise NotFound(f"no profile named {name!r} (known: {known})") from None
