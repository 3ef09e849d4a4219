"""``POST /api/v1/enroll`` for the common case, without DRF's per-request machinery.

Machines enrolling with an API token are the API's heaviest traffic, and DRF's request wrapping,
content negotiation, authentication and throttle loops and serializer plumbing cost a quarter of
an enrollment's CPU. ``EnrollView.dispatch`` first offers the Django request to ``serve`` here,
which handles exactly the plain case with the same domain calls the DRF view makes:

- a JSON body holding only ``csr`` (ASCII text), ``ca`` and ``profile`` (names) and optionally
  ``validity_days`` (an integer in range), and an Accept header the view can answer;
- a bearer token that ``pki.tokens.authenticate`` accepts, and a CA and profile that exist
  (``pki.enrollment.load_targets``), read by one query (``pki.enrollment.token_and_targets``),
  that ``pki.access.can`` lets this user submit to; a profile that needs no approval; signing in
  this process;
- a throttle (``EnrollThrottle``) that still has room.

Anything else returns None *before anything is written*, and the DRF view serves the request as
it always did: errors, their problem documents, the 202 of a request that waits for approval,
worker signing and the OpenAPI description all come from one place. When ``enroll`` itself
refuses the request (a bad CSR, a policy violation: nothing is written then either), the DRF
view runs it again to produce its problem document; the throttle count taken here is handed
over, so the request is counted once. It may never diverge from the DRF view in the response
(status, body, headers), the rows and audit events written, or the throttle count;
tests/web/api/test_fast_enroll.py compares the two paths response for response.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.exceptions import AuthenticationFailed

from pki.access import Action, can
from pki.enrollment import enroll, token_and_targets
from pki.exceptions import KeyBlocked, PKIError
from pki.models import ApiToken, CertificateAuthority, Profile
from pki.signing import signs_here
from web.api.auth import offered_token, token_actor
from web.api.errors import PROBLEM_JSON, problem
from web.api.renderers import PemRenderer
from web.api.serializers import MAX_CSR_CHARS, MAX_VALIDITY_DAYS, SLUG_RE
from web.api.throttles import EnrollThrottle

if TYPE_CHECKING:
    from web.api.views.enroll import EnrollView

REQUIRED = frozenset({"csr", "ca", "profile"})
FIELDS = REQUIRED | {"validity_days"}
JSON_TYPES = ("application/json", "application/json; charset=utf-8", "application/json;charset=utf-8")
# Media types one of the view's renderers (JSON, PEM chain) answers: DRF negotiates the rest.
ACCEPTED = frozenset({"*/*", "application/*", "application/json", PemRenderer.media_type})
MAX_BODY = 2 * MAX_CSR_CHARS
VALIDITY_RANGE = range(1, MAX_VALIDITY_DAYS + 1)  # as SubmitSerializer.validity_days


@dataclass(frozen=True)
class _Plain:
    """What a plain enrollment needs, checked without writing anything."""

    token: ApiToken
    fields: dict[str, Any]
    ca: CertificateAuthority
    profile: Profile


def serve(request: HttpRequest, view: EnrollView) -> HttpResponse | None:
    """The 201 response for a plain enrollment, or None to let the DRF view serve ``request``."""
    plain = _plain(request)
    if plain is None:
        return None
    user = plain.token.user
    if not EnrollThrottle().consume(request, user.pk):
        return None  # the view answers 429, reusing this count
    try:
        result = enroll(
            ca=plain.ca,
            profile=plain.profile,
            csr=plain.fields["csr"],
            validity_days=plain.fields.get("validity_days"),
            requester=user,
            actor=token_actor(plain.token),
        )
    except KeyBlocked as exc:
        # Answered here: running it again would audit the refused attempt twice.
        body = problem(422, "Policy violation", str(exc), exc.code)
        return JsonResponse(body, status=422, content_type=PROBLEM_JSON)
    except PKIError:
        return None  # nothing was written: the view runs it again and explains the refusal
    if result.certificate is None:  # pragma: no cover - the profile was checked to auto-approve
        raise RuntimeError("an auto-approving profile left a request pending")
    response = view.issued_response(request, plain.ca, result.certificate)
    view.headers = view.default_response_headers  # Allow and Vary, as DRF's finalize_response sets
    return view.finalize_response(request, response)  # type: ignore[arg-type]


def _plain(request: HttpRequest) -> _Plain | None:
    if request.method != "POST" or not signs_here() or not _acceptable(request.META.get("HTTP_ACCEPT", "")):
        return None
    text = _token_text(request)
    fields = _fields(request) if text is not None else None
    if text is None or fields is None:
        return None
    # The token and the CA and profile the body names: one round trip.
    token, ca, profile = token_and_targets(text, ca_name=fields["ca"], profile_name=fields["profile"])
    if token is None or ca is None or profile is None or profile.policy().requires_approval:
        return None
    user = token.user
    if not (can(user, Action.SUBMIT_REQUEST) and can(user, Action.SUBMIT_REQUEST, (ca, profile))):
        return None
    return _Plain(token, fields, ca, profile)


def _token_text(request: HttpRequest) -> str | None:
    try:
        return offered_token(request.META.get("HTTP_AUTHORIZATION", ""))
    except AuthenticationFailed:
        return None


def _acceptable(accept: str) -> bool:
    if not accept:
        return True
    return any(item.split(";", 1)[0].strip().lower() in ACCEPTED for item in accept.split(","))


def _fields(request: HttpRequest) -> dict[str, Any] | None:
    """The body's fields when they are plainly valid (DRF would accept them unchanged), else None."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if request.META.get("CONTENT_TYPE", "").lower() not in JSON_TYPES or not length.isdigit():
        return None
    if not 0 < int(length) <= MAX_BODY:
        return None
    try:
        # UTF-8 only, as DRF's JSONParser reads it (json.loads would also take UTF-16 and a BOM).
        data = json.loads(request.body.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError included; RecursionError: deep nesting
        return None
    plain = (
        isinstance(data, dict)
        and REQUIRED <= data.keys() <= FIELDS
        and _plain_csr(data["csr"])
        and all(isinstance(data[name], str) and SLUG_RE.fullmatch(data[name]) for name in ("ca", "profile"))
        and (data.get("validity_days") is None or _plain_days(data["validity_days"]))
    )
    return data if plain else None


def _plain_csr(csr: object) -> bool:
    return isinstance(csr, str) and csr.isascii() and "\x00" not in csr and len(csr) <= MAX_CSR_CHARS


def _plain_days(days: object) -> bool:
    return type(days) is int and days in VALIDITY_RANGE
