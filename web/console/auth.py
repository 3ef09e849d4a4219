"""Signing in to the console: password, then a TOTP code where the user's roles require one.

The session is authenticated (``django.contrib.auth.login``) only once every factor the user
needs has been given: after the password alone the session holds just the pending user's id, so
no page and no API call (session authentication) sees a half-signed-in user. Every console page
and the API's session authentication also re-check, per request, that a user whose roles now
need a second factor has given one in this session (a role granted mid-session, or a session
opened elsewhere).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import segno
from axes.backends import AxesStandaloneBackend
from django import forms
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.models import User
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request

from pki import users
from pki.exceptions import PKIError

PENDING = "kmi_console_pending"
PENDING_SECONDS = 300  # the TOTP step must follow the password within five minutes


def client_address(request: HttpRequest) -> str:
    """The address the request came from (the proxy's view of it when KMI is behind one)."""
    from axes.helpers import get_client_ip_address

    return str(get_client_ip_address(request) or "")


def fully_signed_in(request: HttpRequest) -> bool:
    """True when the session's user gave every factor their roles require."""
    user = request.user
    if not user.is_authenticated or not user.is_active:
        return False
    return not users.second_factor_required(user) or bool(getattr(user, "is_verified", lambda: False)())


def console_view(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Pages of the console: a fully signed-in user, or the sign-in page (``next`` kept)."""

    @functools.wraps(view)
    @never_cache
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not fully_signed_in(request):
            if request.user.is_authenticated:
                logout(request)  # a session short of a factor starts over
            return redirect(f"{reverse('console:login')}?next={request.get_full_path()}")
        return view(request, *args, **kwargs)

    return wrapper


class VerifiedSessionAuthentication(SessionAuthentication):
    """DRF session authentication for the browser, refusing sessions short of a second factor."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        """The session's user, unless their roles need a TOTP code this session has not seen."""
        result = super().authenticate(request)
        if result is None:
            return None
        user = result[0]
        if users.second_factor_required(user) and not user.is_verified():
            return None
        return result


# --- forms ---------------------------------------------------------------------------------------
class PasswordForm(forms.Form):
    """The first step: user name and password (the contract outside tests script against)."""

    username = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autocomplete": "username"}))
    password = forms.CharField(
        max_length=1024, strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )


class CodeForm(forms.Form):
    """A six-digit TOTP code."""

    code = forms.RegexField(
        regex=r"^\s*\d{6}\s*$",
        error_messages={"invalid": "Enter the six digits your authenticator shows."},
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": r"\d{6}", "size": 8}
        ),
    )


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("console:dashboard")


def _pending_user(request: HttpRequest) -> User | None:
    pending = request.session.get(PENDING)
    if not isinstance(pending, dict) or time.time() - float(pending.get("at", 0)) > PENDING_SECONDS:
        return None
    user_id = pending.get("user")
    if not isinstance(user_id, int):
        return None
    return User.objects.filter(pk=user_id, is_active=True).first()


def _complete(request: HttpRequest, user: User, *, device: Any = None) -> HttpResponse:
    """Authenticate the session (all factors given), audit the sign-in, go on."""
    target = _next_url(request)
    request.session.pop(PENDING, None)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    if device is not None:
        otp_login(request, device)
    users.record_sign_in(
        user=user, address=client_address(request), second_factor="totp" if device else "none"
    )
    return HttpResponseRedirect(target)


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    """``/console/login/``: user name and password; then the TOTP step where roles require it."""
    if fully_signed_in(request) and request.method == "GET":
        return redirect(_next_url(request))
    form = PasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = authenticate(
            request, username=form.cleaned_data["username"], password=form.cleaned_data["password"]
        )
        if getattr(request, "axes_locked_out", False):
            return render(request, "console/locked_out.html", status=429)
        if user is None or not isinstance(user, User):
            form.add_error(None, "The user name or password is not right.")
        else:
            request.session.cycle_key()  # a new session id before anything is kept in it
            if not users.second_factor_required(user):
                return _complete(request, user)
            request.session[PENDING] = {"user": user.pk, "at": time.time()}
            step = "console:totp" if users.totp_device(user) else "console:totp_setup"
            return redirect(f"{reverse(step)}?next={_next_url(request)}")
    return render(request, "console/login.html", {"form": form, "next": _next_url(request)})


def _code_failed(request: HttpRequest, user: User) -> None:
    # A wrong code counts against the user name and address like a wrong password (django-axes).
    user_login_failed.send(sender=__name__, credentials={"username": user.get_username()}, request=request)


@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def totp_view(request: HttpRequest) -> HttpResponse:
    """``/console/login/totp/``: the second step for a user with a confirmed TOTP device."""
    user = _pending_user(request)
    if user is None:
        return redirect("console:login")
    device = users.totp_device(user)
    if device is None:
        return redirect("console:totp_setup")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        code = form.cleaned_data["code"].strip()
        if device.verify_token(code):
            return _complete(request, user, device=device)
        _code_failed(request, user)
        if getattr(request, "axes_locked_out", False):
            return render(request, "console/locked_out.html", status=429)
        form.add_error("code", "That code is not valid (or came too soon after a wrong one).")
    return render(
        request, "console/totp.html", {"form": form, "user_name": user.username, "next": _next_url(request)}
    )


@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def totp_setup_view(request: HttpRequest) -> HttpResponse:
    """``/console/login/totp/setup/``: the first sign-in of a user who needs TOTP and has no device."""
    user = _pending_user(request)
    if user is None:
        return redirect("console:login")
    if users.totp_device(user) is not None:
        return redirect("console:totp")
    device = users.pending_totp_device(user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            confirmed = users.confirm_totp_device(
                device=device, token=form.cleaned_data["code"].strip(), address=client_address(request)
            )
        except PKIError as exc:
            _code_failed(request, user)
            form.add_error("code", str(exc))
        else:
            return _complete(request, user, device=confirmed)
    url = device.config_url  # otpauth://totp/…?secret=…&issuer=KMI_CONSOLE_TOTP_ISSUER
    qr = segno.make(url, error="m").svg_inline(
        scale=4, dark="#111", light="#fff", title="TOTP secret as a QR code"
    )
    secret = url.split("secret=", 1)[1].split("&", 1)[0]
    context = {
        "form": form,
        "qr": qr,
        "secret": secret,
        "user_name": user.username,
        "next": _next_url(request),
    }
    return render(request, "console/totp_setup.html", context)


@require_POST
@csrf_protect
def logout_view(request: HttpRequest) -> HttpResponse:
    """``/console/logout/`` (POST): end the session; audited."""
    if request.user.is_authenticated and isinstance(request.user, User):
        users.record_sign_out(user=request.user, address=client_address(request))
    logout(request)
    return redirect("console:login")


class LoginThrottleBackend(AxesStandaloneBackend):  # type: ignore[misc]
    """django-axes' lock-out check for every sign-in that comes with a request (the console's,
    the admin's); an ``authenticate()`` call without one (a management command, a test client's
    ``login``) has no address to count against and is left to the model backend."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Refuse (PermissionDenied) a locked-out user name and address; else let the next backend decide."""
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)  # type: ignore[no-any-return]
