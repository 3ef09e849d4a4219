"""Who may do what: role grants, the one decision function ``can`` and the visibility filters.

Adapters (the REST API's permission class, the UI) ask these functions; they never decide
themselves. Grants change only through ``grant_role`` / ``revoke_grant`` (audited).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import models, transaction
from django.db.models import Q

from pki import audit
from pki.clock import resolve
from pki.exceptions import InvalidState, PolicyViolation
from pki.models.access import ApiToken, Role, RoleGrant
from pki.models.acme import AcmeEndpoint, AcmeExternalAccountKey
from pki.models.audit import AuditEvent
from pki.models.authority import CertificateAuthority
from pki.models.certificate import Certificate
from pki.models.delivery import KeyDelivery
from pki.models.device import EstLabel, ScepLabel
from pki.models.key import Key
from pki.models.profile import Profile
from pki.models.request import CertificateRequest

AnyUser = AbstractBaseUser | AnonymousUser


class Action(enum.StrEnum):
    """Everything a permission is asked about."""

    VIEW_CA = "view_ca"
    CREATE_CA = "create_ca"
    MANAGE_CA = "manage_ca"  # roll over, renew (administrators)
    # suspend, reactivate, deactivate, compromised, destroy a key; disable or enable a CA (administrators)
    MANAGE_KEY = "manage_key"
    RECOVER_KEY = "recover_key"  # escrowed keys: key recovery officers only (not administrators)
    VIEW_PROFILE = "view_profile"
    EDIT_PROFILE = "edit_profile"
    SUBMIT_REQUEST = "submit_request"
    VIEW_REQUEST = "view_request"
    REVIEW_REQUEST = "review_request"  # approve or reject
    VIEW_CERTIFICATE = "view_certificate"
    RENEW_CERTIFICATE = "renew_certificate"
    REVOKE_CERTIFICATE = "revoke_certificate"
    VIEW_KEY = "view_key"
    DOWNLOAD_KEY = "download_key"  # the one PKCS#12 download of a server-generated key
    VIEW_AUDIT = "view_audit"
    VIEW_ACCESS = "view_access"  # role grants: everyone their own, auditors and administrators all
    MANAGE_ACCESS = "manage_access"  # grants and other users' tokens
    MANAGE_OWN_TOKENS = "manage_own_tokens"  # any active user, for their own API tokens
    VIEW_ACME_ENDPOINT = "view_acme_endpoint"
    MANAGE_ACME_ENDPOINT = "manage_acme_endpoint"  # create, change the policy, disable
    VIEW_EAB_KEY = "view_eab_key"  # key ids and who used them, never the HMAC key
    MANAGE_EAB_KEY = "manage_eab_key"  # mint (the HMAC key shown once) and revoke unbound keys
    VIEW_DEVICE_LABEL = "view_device_label"  # EST and SCEP labels
    MANAGE_DEVICE_LABEL = "manage_device_label"  # create, disable, enable (administrators)
    MANAGE_DEVICE_CODE = "manage_device_code"  # mint one-time EST codes and SCEP challenges (shown once)


@dataclass(frozen=True)
class Grants:
    """A user's grants, loaded once per request."""

    user_id: int | None
    administrator: bool = False
    auditor: bool = False
    recovery_officer: bool = False
    operator_cas: frozenset[int] = frozenset()
    requester_pairs: frozenset[tuple[int, int]] = frozenset()

    @property
    def any(self) -> bool:
        """True when the user holds any role at all."""
        return (
            self.administrator
            or self.auditor
            or self.recovery_officer
            or bool(self.operator_cas or self.requester_pairs)
        )

    @property
    def reads_everything(self) -> bool:
        """Administrators and auditors see every object."""
        return self.administrator or self.auditor

    @property
    def requester_cas(self) -> frozenset[int]:
        """CAs the user may submit requests to under some profile."""
        return frozenset(ca for ca, _ in self.requester_pairs)


NO_GRANTS = Grants(user_id=None)


def grants_for(user: AnyUser | None) -> Grants:
    """Return the user's grants (cached on the user object for the rest of the request)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return NO_GRANTS
    cached: Grants | None = getattr(user, "_kmi_grants", None)
    if cached is not None:
        return cached
    rows = RoleGrant.objects.filter(user_id=user.pk).values_list("role", "ca_id", "profile_id")
    return remember_grants(user, rows)


def remember_grants(user: AnyUser, rows: Iterable[tuple[str, int | None, int | None]]) -> Grants:
    """Build ``user``'s grants from their (role, ca_id, profile_id) rows and cache them on the user.

    For callers that loaded the rows with something else (the token lookup does, in one query).
    """
    admin = bool(getattr(user, "is_superuser", False))
    auditor = officer = False
    operator: set[int] = set()
    pairs: set[tuple[int, int]] = set()
    for role, ca_id, profile_id in rows:
        if role == Role.ADMINISTRATOR:
            admin = True
        elif role == Role.AUDITOR:
            auditor = True
        elif role == Role.KEY_RECOVERY_OFFICER:
            officer = True
        elif role == Role.CA_OPERATOR and ca_id is not None:
            operator.add(ca_id)
        elif role == Role.REQUESTER and ca_id is not None and profile_id is not None:
            pairs.add((ca_id, profile_id))
    grants = Grants(
        user_id=user.pk,
        administrator=admin,
        auditor=auditor,
        recovery_officer=officer,
        operator_cas=frozenset(operator),
        requester_pairs=frozenset(pairs),
    )
    setattr(user, "_kmi_grants", grants)  # noqa: B010 - a per-request cache on the user object
    return grants


def forget_grants(user: AnyUser) -> None:
    """Drop the grants cached on ``user`` (after a grant changed)."""
    if hasattr(user, "_kmi_grants"):
        del user._kmi_grants


def _owned(g: Grants, owner_id: int | None) -> bool:
    return owner_id is not None and owner_id == g.user_id


def _submit(g: Grants, obj: object) -> bool:
    if isinstance(obj, tuple) and len(obj) == 2:
        ca_id, profile_id = (getattr(x, "pk", x) for x in obj)
        return ca_id in g.operator_cas or (ca_id, profile_id) in g.requester_pairs
    return bool(g.operator_cas or g.requester_pairs)


def _view_request(g: Grants, obj: object) -> bool:
    if isinstance(obj, CertificateRequest):
        return obj.ca_id in g.operator_cas or _owned(g, obj.requester_id)
    return True  # lists are narrowed by visible_requests


def _review_request(g: Grants, obj: object) -> bool:
    if isinstance(obj, CertificateRequest):
        return obj.ca_id in g.operator_cas
    return bool(g.operator_cas)


def _view_or_renew_certificate(g: Grants, obj: object) -> bool:
    if isinstance(obj, Certificate):
        return obj.ca_id in g.operator_cas or _owned(g, obj.owner_id)
    return True  # lists are narrowed by visible_certificates


def _renew_certificate(g: Grants, obj: object) -> bool:
    # Renewal is issuance: the owner renews only while she may still request under the
    # certificate's CA and profile (a revoked requester grant ends it); operators of the CA may.
    if isinstance(obj, Certificate):
        if obj.ca_id in g.operator_cas:
            return True
        return _owned(g, obj.owner_id) and (obj.ca_id, obj.profile_id) in g.requester_pairs
    return True  # lists are narrowed by visible_certificates


def _revoke_certificate(g: Grants, obj: object) -> bool:
    if isinstance(obj, Certificate):
        return obj.ca_id in g.operator_cas
    return bool(g.operator_cas)


def _view_key(g: Grants, obj: object) -> bool:
    if isinstance(obj, Key):
        return _visible_keys(g, Key.objects.filter(pk=obj.pk)).exists()
    return True  # lists are narrowed by visible_keys


def _acme_endpoint_ca(g: Grants, obj: object) -> bool:
    # ACME endpoints and their EAB keys, EST and SCEP labels and their one-time codes: the
    # operators of the endpoint's (label's) CA. Minting an EAB key or an enrollment code lets a
    # machine obtain certificates from that CA under the endpoint's policy, which its operators
    # may already do themselves; the policy itself is the administrators' (like profiles).
    if isinstance(obj, AcmeEndpoint | EstLabel | ScepLabel):
        return obj.ca_id in g.operator_cas
    if isinstance(obj, AcmeExternalAccountKey):
        return obj.endpoint.ca_id in g.operator_cas
    return bool(g.operator_cas)  # lists are narrowed by visible_acme_endpoints


def _anyone_with_a_role(_g: Grants, _obj: object) -> bool:
    return True  # CA certificates and profiles are not secret to anyone with a role


def _own_grant(g: Grants, obj: object) -> bool:
    return not isinstance(obj, RoleGrant) or obj.user_id == g.user_id


def _nobody(_g: Grants, _obj: object) -> bool:
    return False  # administrators only (auditors too when it only reads)


# What a user with some role (not an administrator) may do; administrators may do everything
# except take another user's server-generated key, auditors may read everything.
_RULES: dict[Action, Callable[[Grants, object], bool]] = {
    Action.VIEW_CA: _anyone_with_a_role,
    Action.CREATE_CA: _nobody,
    Action.MANAGE_CA: _nobody,
    Action.MANAGE_KEY: _nobody,
    Action.VIEW_PROFILE: _anyone_with_a_role,
    Action.EDIT_PROFILE: _nobody,
    Action.SUBMIT_REQUEST: _submit,
    Action.VIEW_REQUEST: _view_request,
    Action.REVIEW_REQUEST: _review_request,
    Action.VIEW_CERTIFICATE: _view_or_renew_certificate,
    Action.RENEW_CERTIFICATE: _renew_certificate,
    Action.REVOKE_CERTIFICATE: _revoke_certificate,
    Action.VIEW_KEY: _view_key,
    Action.VIEW_AUDIT: _nobody,
    Action.VIEW_ACCESS: _own_grant,
    Action.MANAGE_ACCESS: _nobody,
    Action.VIEW_ACME_ENDPOINT: _acme_endpoint_ca,
    Action.MANAGE_ACME_ENDPOINT: _nobody,
    Action.VIEW_EAB_KEY: _acme_endpoint_ca,
    Action.MANAGE_EAB_KEY: _acme_endpoint_ca,
    Action.VIEW_DEVICE_LABEL: _acme_endpoint_ca,
    Action.MANAGE_DEVICE_LABEL: _nobody,
    Action.MANAGE_DEVICE_CODE: _acme_endpoint_ca,
}

_READS = frozenset(
    {
        Action.VIEW_CA,
        Action.VIEW_PROFILE,
        Action.VIEW_REQUEST,
        Action.VIEW_CERTIFICATE,
        Action.VIEW_KEY,
        Action.VIEW_AUDIT,
        Action.VIEW_ACCESS,
        Action.VIEW_ACME_ENDPOINT,
        Action.VIEW_EAB_KEY,
        Action.VIEW_DEVICE_LABEL,
    }
)


def _private_key_holder(g: Grants, action: Action, obj: object) -> bool:
    """Who may receive a private key: administrators get no exception here."""
    if action == Action.RECOVER_KEY:
        # Separation of duties: recovering someone's escrowed key is the officers' alone.
        return g.recovery_officer and (not isinstance(obj, Key) or obj.escrow)
    # A server-generated private key goes to the one who asked for it, administrators included.
    return g.any and (not isinstance(obj, KeyDelivery) or _owned(g, obj.requester_id))


def can(user: AnyUser | None, action: Action, obj: object = None) -> bool:
    """Decide whether ``user`` may perform ``action`` (on ``obj`` when the action concerns one)."""
    g = grants_for(user)
    if action == Action.MANAGE_OWN_TOKENS:
        # Any active user manages their own tokens; administrators everyone's.
        owner_ok = not isinstance(obj, ApiToken) or obj.user_id == g.user_id
        return g.user_id is not None and (g.administrator or owner_ok)
    if action in (Action.RECOVER_KEY, Action.DOWNLOAD_KEY):
        return _private_key_holder(g, action, obj)
    if g.administrator:
        return True
    if not g.any:
        return False
    if g.auditor and action in _READS:
        return True
    return _RULES[action](g, obj)


def visible_certificates(
    user: AnyUser | None, qs: models.QuerySet[Certificate] | None = None
) -> models.QuerySet[Certificate]:
    """Certificates ``user`` may see: all for administrators and auditors; their CAs' or their own."""
    qs = Certificate.objects.all() if qs is None else qs
    g = grants_for(user)
    if g.reads_everything:
        return qs
    if not g.any:
        return qs.none()
    return qs.filter(Q(ca_id__in=g.operator_cas) | Q(owner_id=g.user_id))


def visible_grants(user: AnyUser | None) -> models.QuerySet[RoleGrant]:
    """Role grants ``user`` may see: all for administrators and auditors; their own otherwise."""
    qs = RoleGrant.objects.select_related("user", "ca", "profile")
    g = grants_for(user)
    if g.reads_everything:
        return qs
    if not g.any or g.user_id is None:
        return qs.none()
    return qs.filter(user_id=g.user_id)


def visible_requests(
    user: AnyUser | None, qs: models.QuerySet[CertificateRequest] | None = None
) -> models.QuerySet[CertificateRequest]:
    """Requests ``user`` may see: all for administrators and auditors; their CAs' or their own."""
    qs = CertificateRequest.objects.all() if qs is None else qs
    g = grants_for(user)
    if g.reads_everything:
        return qs
    if not g.any:
        return qs.none()
    return qs.filter(Q(ca_id__in=g.operator_cas) | Q(requester_id=g.user_id))


def _visible_keys(g: Grants, qs: models.QuerySet[Key]) -> models.QuerySet[Key]:
    if g.reads_everything:
        return qs
    if not g.any:
        return qs.none()
    escrowed = Q(escrow=True) if g.recovery_officer else Q(pk__in=[])
    ca_keys = CertificateAuthority.objects.filter(pk__in=g.operator_cas).values("key_id")
    cert_keys = Certificate.objects.filter(
        Q(ca_id__in=g.operator_cas) | Q(owner_id=g.user_id), key_id__isnull=False
    ).values("key_id")
    delivered = KeyDelivery.objects.filter(requester_id=g.user_id).values("key_id")
    return qs.filter(Q(pk__in=ca_keys) | Q(pk__in=cert_keys) | Q(pk__in=delivered) | escrowed)


def visible_keys(user: AnyUser | None, qs: models.QuerySet[Key] | None = None) -> models.QuerySet[Key]:
    """Key metadata ``user`` may see: their CAs' keys, keys of their certificates and deliveries."""
    return _visible_keys(grants_for(user), Key.objects.all() if qs is None else qs)


def visible_audit_events(
    user: AnyUser | None, qs: models.QuerySet[AuditEvent] | None = None
) -> models.QuerySet[AuditEvent]:
    """The audit trail is for administrators and auditors."""
    qs = AuditEvent.objects.all() if qs is None else qs
    return qs if grants_for(user).reads_everything else qs.none()


def visible_acme_endpoints(
    user: AnyUser | None, qs: models.QuerySet[AcmeEndpoint] | None = None
) -> models.QuerySet[AcmeEndpoint]:
    """ACME endpoints ``user`` may see: all for administrators and auditors; their CAs' for operators."""
    return _of_operated_cas(user, AcmeEndpoint.objects.all() if qs is None else qs)


_Label = TypeVar("_Label", EstLabel, ScepLabel)
_M = TypeVar("_M", bound=models.Model)


def visible_device_labels(user: AnyUser | None, qs: models.QuerySet[_Label]) -> models.QuerySet[_Label]:
    """EST or SCEP labels ``user`` may see: all for administrators and auditors; their CAs' for operators."""
    return _of_operated_cas(user, qs)


def _of_operated_cas(user: AnyUser | None, qs: models.QuerySet[_M]) -> models.QuerySet[_M]:
    g = grants_for(user)
    if g.reads_everything:
        return qs
    return qs.filter(ca_id__in=g.operator_cas) if g.operator_cas else qs.none()


def grant_role(
    *,
    user: User,
    role: Role | str,
    actor: str,
    ca: CertificateAuthority | None = None,
    profile: Profile | None = None,
    now: dt.datetime | None = None,
) -> RoleGrant:
    """Give ``user`` a role (operators need a CA; requesters a CA and a profile); audited."""
    now = resolve(now)
    value = Role(role)
    if value == Role.CA_OPERATOR and (ca is None or profile is not None):
        raise PolicyViolation("a CA operator grant names a CA and no profile")
    if value == Role.REQUESTER and (ca is None or profile is None):
        raise PolicyViolation("a requester grant names a CA and a profile")
    if value in (Role.ADMINISTRATOR, Role.AUDITOR, Role.KEY_RECOVERY_OFFICER) and (
        ca is not None or profile is not None
    ):
        raise PolicyViolation(f"the {value} role is global: it names no CA or profile")
    with transaction.atomic():
        grant, created = RoleGrant.objects.get_or_create(
            user=user,
            role=value,
            ca=ca,
            profile=profile,
            defaults={"granted_by": actor, "created_at": now},
        )
        if created:
            audit.record(
                action="access.granted",
                actor=actor,
                obj=grant,
                details={
                    "user": user.get_username(),
                    "role": value.value,
                    "ca": ca.name if ca else None,
                    "profile": profile.name if profile else None,
                },
                now=now,
            )
    forget_grants(user)
    return grant


def _administrators_without(grant: RoleGrant) -> set[int]:
    """Active administrators that remain once ``grant`` is gone (grants and active superusers)."""
    from django.contrib.auth import get_user_model

    remaining = set(
        RoleGrant.objects.filter(role=Role.ADMINISTRATOR, user__is_active=True)
        .exclude(pk=grant.pk)
        .values_list("user_id", flat=True)
    )
    users = get_user_model().objects.filter(is_superuser=True, is_active=True)
    return remaining | set(users.values_list("pk", flat=True))


def revoke_grant(*, grant: RoleGrant, actor: str, now: dt.datetime | None = None) -> None:
    """Take a role away; audited. The last active administrator's grant is never revoked:
    nobody could grant roles afterwards."""
    now = resolve(now)
    with transaction.atomic():
        row = (
            RoleGrant.objects.select_for_update(of=("self",))
            .select_related("user", "ca", "profile")
            .get(pk=grant.pk)
        )
        if row.role == Role.ADMINISTRATOR:
            # Every administrator grant is locked, so two revocations cannot each leave the other.
            list(RoleGrant.objects.select_for_update().filter(role=Role.ADMINISTRATOR).values_list("pk"))
            if not _administrators_without(row):
                raise InvalidState(
                    f"{row.user.get_username()} holds the last administrator grant: grant the role "
                    "to someone else first"
                )
        audit.record(
            action="access.revoked",
            actor=actor,
            obj=row,
            details={
                "user": row.user.get_username(),
                "role": row.role,
                "ca": row.ca.name if row.ca else None,
                "profile": row.profile.name if row.profile else None,
            },
            now=now,
        )
        row.delete()
