"""Where CA-key operations run: in the calling process, or only on Celery workers of the ``signing`` queue.

Adapters (API views, ACME finalize, commands) never sign themselves; they call
``run_signing("issue_request", request_id=…, actor=…)``. With ``KMI_SIGNING=inprocess`` (the
default) that calls the use case here and now. With ``KMI_SIGNING=worker`` it sends the task
``pki.signing.run`` to the ``signing`` queue and waits up to ``KMI_SIGNING_TIMEOUT`` seconds for
its result, so the calling process needs no key-encryption key at all; only the workers that
consume ``signing`` hold it.

Arguments are ids and public data only (a request id, a certificate id, a CSR in PEM): never
key material. Every signing use case is idempotent on its ids (issuing a request twice returns
the first certificate), so a redelivered task or a retry after a timeout does no harm.

Domain errors raised on the worker come back as the same ``pki.exceptions`` class. When no
worker can be reached the call raises ``SigningUnavailable`` (adapters answer 503): the request
stays stored and a later call (or the worker, once it gets the message) finishes it.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from typing import Any

from django.db import transaction

from pki import exceptions
from pki.exceptions import NotFound, PKIError, SigningFailed, SigningUnavailable
from pki.lifecycle_conf import lifecycle_settings
from pki.signals import signing_finished

log = logging.getLogger(__name__)

SIGNING_QUEUE = "signing"
SIGNING_TASK = "pki.signing.run"

UseCase = Callable[..., dict[str, Any]]
_USE_CASES: dict[str, UseCase] = {}
# True while a signing use case runs here (on a signing worker, or in process): code it calls
# signs where it is instead of sending itself to the queue again.
_executing: contextvars.ContextVar[bool] = contextvars.ContextVar("kmi_signing_executing", default=False)


def signs_here() -> bool:
    """True when CA keys are used in this process now: ``KMI_SIGNING=inprocess``, or inside a use case."""
    return _executing.get() or not lifecycle_settings().signs_on_worker


def signing_use_case(name: str) -> Callable[[UseCase], UseCase]:
    """Register ``fn`` as a signing use case callable through ``run_signing(name, …)``."""

    def register(fn: UseCase) -> UseCase:
        _USE_CASES[name] = fn
        return fn

    return register


def use_case_names() -> list[str]:
    """Names of the registered signing use cases."""
    return sorted(_USE_CASES)


@signing_use_case("issue_request")
def _issue_request(*, request_id: int, actor: str) -> dict[str, Any]:
    """Issue the certificate of an approved request; a request already issued returns its certificate."""
    from pki.issuance import issue_certificate
    from pki.models.certificate import Certificate
    from pki.models.request import CertificateRequest, RequestState

    with transaction.atomic():
        try:
            request = (
                CertificateRequest.objects.select_for_update(of=("self",))
                .select_related("ca", "profile")
                .get(pk=request_id)
            )
        except CertificateRequest.DoesNotExist:
            raise NotFound(f"no certificate request {request_id}") from None
        if request.state == RequestState.ISSUED:
            cert = Certificate.objects.get(request=request)
            return {"certificate_id": cert.pk, "serial": cert.serial, "replayed": True}
        cert = issue_certificate(request=request, actor=actor)
    return {"certificate_id": cert.pk, "serial": cert.serial, "replayed": False}


@signing_use_case("renew_certificate")
def _renew_certificate(
    *, certificate_id: int, actor: str, csr_pem: str | None = None, validity_days: int | None = None
) -> dict[str, Any]:
    """Renew a certificate (same key, or the key of ``csr_pem``)."""
    from pki.issuance import renew_certificate
    from pki.models.certificate import Certificate

    try:
        cert = Certificate.objects.select_related("ca", "profile", "key").get(pk=certificate_id)
    except Certificate.DoesNotExist:
        raise NotFound(f"no certificate {certificate_id}") from None
    new = renew_certificate(certificate=cert, actor=actor, csr=csr_pem, validity_days=validity_days)
    return {"certificate_id": new.pk, "serial": new.serial, "replayed": False}


def _existing_ca(name: str, subject: str) -> dict[str, Any] | None:
    """A replayed CA creation: the CA of that name with that subject, if it exists already."""
    from pki.models.authority import CertificateAuthority
    from pki.x509.names import parse_subject

    ca = CertificateAuthority.objects.filter(name=name).select_related("certificate").first()
    if ca is None or ca.certificate is None:
        return None
    if ca.x509_certificate().subject != parse_subject(subject):
        return None  # a different CA of that name: let the use case refuse it
    return {"ca_id": ca.pk, "serial": ca.certificate.serial, "replayed": True}


@signing_use_case("create_root_ca")
def _create_root_ca(
    *,
    name: str,
    subject: str,
    actor: str,
    key_type: str = "ec-p256",
    validity_days: int = 3650,
    path_length: int | None = None,
    name_constraints: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Create a root CA (a replay of the same name and subject returns the existing one)."""
    from pki.authorities import create_root_ca
    from pki.x509.names import parse_subject

    existing = _existing_ca(name, subject)
    if existing is not None:
        return existing
    ca = create_root_ca(
        name=name,
        subject=parse_subject(subject),
        key_type=key_type,
        validity_days=validity_days,
        path_length=path_length,
        name_constraints=name_constraints,
        actor=actor,
    )
    return {"ca_id": ca.pk, "serial": ca.own_certificate().serial, "replayed": False}


@signing_use_case("create_intermediate_ca")
def _create_intermediate_ca(
    *,
    name: str,
    parent_id: int,
    subject: str,
    actor: str,
    key_type: str = "ec-p256",
    validity_days: int = 1825,
    path_length: int | None = None,
    name_constraints: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Create an intermediate CA under ``parent_id`` (a replay returns the existing one)."""
    from pki.authorities import create_intermediate_ca
    from pki.models.authority import CertificateAuthority
    from pki.x509.names import parse_subject

    existing = _existing_ca(name, subject)
    if existing is not None:
        return existing
    try:
        parent = CertificateAuthority.objects.select_related("key", "certificate").get(pk=parent_id)
    except CertificateAuthority.DoesNotExist:
        raise NotFound(f"no CA {parent_id}") from None
    ca = create_intermediate_ca(
        name=name,
        parent=parent,
        subject=parse_subject(subject),
        key_type=key_type,
        validity_days=validity_days,
        path_length=path_length,
        name_constraints=name_constraints,
        actor=actor,
    )
    return {"ca_id": ca.pk, "serial": ca.own_certificate().serial, "replayed": False}


@signing_use_case("request_server_key")
def _request_server_key(
    *,
    delivery_id: str,
    ca_id: int,
    profile_id: int,
    subject: str,
    sans: list[str],
    key_type: str,
    actor: str,
    requester_id: int | None = None,
    validity_days: int | None = None,
) -> dict[str, Any]:
    """Generate a client's key where the KEK is, request and (when auto-approved) issue its certificate.

    ``delivery_id`` is chosen by the caller: a replay returns the delivery made the first time.
    """
    from cryptography import x509
    from django.contrib.auth.models import User

    from pki.models.authority import CertificateAuthority
    from pki.models.delivery import KeyDelivery
    from pki.models.profile import Profile
    from pki.models.request import RequestState
    from pki.serverkeys import request_server_key
    from pki.x509.names import parse_san, parse_subject

    existing = KeyDelivery.objects.filter(pk=delivery_id).select_related("request").first()
    if existing is None:
        try:
            ca = CertificateAuthority.objects.select_related("certificate", "key").get(pk=ca_id)
            profile = Profile.objects.get(pk=profile_id)
        except (CertificateAuthority.DoesNotExist, Profile.DoesNotExist):
            raise NotFound(f"no CA {ca_id} or profile {profile_id}") from None
        requester = User.objects.filter(pk=requester_id).first() if requester_id is not None else None
        existing = request_server_key(
            ca=ca,
            profile=profile,
            subject=parse_subject(subject) if subject else x509.Name([]),
            sans=[parse_san(text) for text in sans],
            key_type=key_type,
            actor=actor,
            requester=requester,
            validity_days=validity_days,
            delivery_id=delivery_id,
        )
    return {
        "delivery_id": str(existing.pk),
        "request_id": existing.request_id,
        "issued": existing.request.state == RequestState.ISSUED,
    }


@signing_use_case("hand_over_server_key")
def _hand_over_server_key(*, delivery_id: str, actor: str, recipient: str) -> dict[str, Any]:
    """Take a server-generated key's one delivery; return it sealed to the caller's X25519 key."""
    from pki.serverkeys import hand_over_sealed

    return hand_over_sealed(delivery_id=delivery_id, actor=actor, recipient=recipient)


@signing_use_case("destroy_key")
def _destroy_key(*, key_id: str, actor: str, reason: str = "") -> dict[str, Any]:
    """Destroy a key where its material lives (idempotent)."""
    from django.core.exceptions import ValidationError

    from pki.destruction import destroy_key
    from pki.models.key import Key

    try:
        key = Key.objects.get(pk=key_id)
    except (Key.DoesNotExist, ValidationError):
        raise NotFound(f"no key {key_id}") from None
    key = destroy_key(key=key, actor=actor, reason=reason)
    return {"key_id": str(key.pk), "state": key.state}


@signing_use_case("hand_over_recovered_key")
def _hand_over_recovered_key(*, recovery_id: int, actor: str, user_id: int, recipient: str) -> dict[str, Any]:
    """Take an approved key recovery's one download; return the key sealed to the caller's X25519 key."""
    from pki.recovery import hand_over_recovered_key

    return hand_over_recovered_key(recovery_id=recovery_id, actor=actor, user_id=user_id, recipient=recipient)


def _ca_by_id(ca_id: int) -> Any:
    from pki.models.authority import CertificateAuthority

    try:
        return CertificateAuthority.objects.select_related("key", "certificate", "parent").get(pk=ca_id)
    except CertificateAuthority.DoesNotExist:
        raise NotFound(f"no CA {ca_id}") from None


@signing_use_case("rollover_ca")
def _rollover_ca(
    *,
    ca_id: int,
    actor: str,
    key_type: str | None = None,
    backend: str | None = None,
    at: str | None = None,
    validity_days: int | None = None,
    from_generation: int | None = None,
) -> dict[str, Any]:
    """Give a CA a new key and certificate (``at``: ISO 8601 time issuance moves to it); a replay
    with the same ``from_generation`` returns the generation made the first time."""
    import datetime as dt

    from pki.rotation import rollover_ca

    generation = rollover_ca(
        ca=_ca_by_id(ca_id),
        actor=actor,
        key_type=key_type,
        backend=backend,
        at=dt.datetime.fromisoformat(at) if at else None,
        validity_days=validity_days,
        from_generation=from_generation,
    )
    return {"ca_id": ca_id, "generation": generation.number, "certificate_id": generation.certificate_id}


@signing_use_case("renew_ca")
def _renew_ca(*, ca_id: int, actor: str, validity_days: int | None = None) -> dict[str, Any]:
    """Re-certify a CA's current key with a new validity."""
    from pki.rotation import renew_ca

    cert = renew_ca(ca=_ca_by_id(ca_id), actor=actor, validity_days=validity_days)
    return {"ca_id": ca_id, "certificate_id": cert.pk, "serial": cert.serial}


def execute(use_case: str, /, **kwargs: Any) -> dict[str, Any]:
    """Run the signing use case ``use_case`` in this process (what a signing worker does)."""
    try:
        fn = _USE_CASES[use_case]
    except KeyError:
        raise NotFound(f"no signing use case {use_case!r} (known: {', '.join(use_case_names())})") from None
    token = _executing.set(True)
    try:
        return fn(**kwargs)
    finally:
        _executing.reset(token)


def execute_enveloped(use_case: str, /, **kwargs: Any) -> dict[str, Any]:
    """Run ``execute`` and wrap the outcome so domain errors travel back as data, not tracebacks."""
    try:
        return {"ok": True, "result": execute(use_case, **kwargs)}
    except PKIError as exc:
        return {"ok": False, "error": type(exc).__name__, "code": exc.code, "message": str(exc)}


def _raise_from_envelope(envelope: dict[str, Any]) -> dict[str, Any]:
    if envelope.get("ok"):
        result: dict[str, Any] = envelope["result"]
        return result
    cls = getattr(exceptions, str(envelope.get("error")), None)
    if not (isinstance(cls, type) and issubclass(cls, PKIError)):
        cls = SigningFailed
    raise cls(str(envelope.get("message", "signing failed")))


def _send_and_wait(use_case: str, kwargs: dict[str, Any], timeout: float) -> dict[str, Any]:
    from celery import current_app
    from celery.exceptions import TimeoutError as CeleryTimeout

    # One deadline for the whole call: publishing (whose retries are bounded by the broker's
    # connect/socket timeouts, KMI_REDIS_TIMEOUT) and waiting for the result share ``timeout``.
    deadline = time.monotonic() + timeout
    try:
        async_result = current_app.send_task(
            SIGNING_TASK,
            args=[use_case],
            kwargs=kwargs,
            queue=SIGNING_QUEUE,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1},
        )
    except Exception as exc:  # noqa: BLE001 - kombu/redis raise many types when the broker is down
        log.warning("signing queue unreachable: %s", exc)
        reason = " ".join(str(exc).split())[:160]
        raise SigningUnavailable(
            f"the signing queue is unreachable (is Redis up? {type(exc).__name__}: {reason}); "
            "nothing was signed, try again when the broker is back"
        ) from None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise SigningUnavailable(
            f"the signing queue took more than {timeout:g} s to take the job (is Redis slow?); "
            "the job stays queued and finishes when a worker takes it"
        )
    try:
        envelope = async_result.get(timeout=remaining, propagate=True, disable_sync_subtasks=False)
    except CeleryTimeout:
        raise SigningUnavailable(
            f"no signing worker answered within {timeout:g} s (is a worker consuming the "
            f"'{SIGNING_QUEUE}' queue?); the job stays queued and finishes when a worker takes it"
        ) from None
    except (OSError, ConnectionError) as exc:
        raise SigningUnavailable(f"lost the result backend while waiting for the signer: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the worker's unexpected failure, re-raised by Celery
        import redis.exceptions

        if isinstance(exc, redis.exceptions.RedisError):
            raise SigningUnavailable(f"lost Redis while waiting for the signer: {exc}") from None
        raise SigningFailed(f"the signing worker failed: {type(exc).__name__}: {exc}") from None
    try:
        async_result.forget()  # the result key has served its purpose
    except Exception:  # noqa: BLE001 - best effort; it expires with CELERY_RESULT_EXPIRES anyway
        log.debug("could not forget result %s", async_result.id)
    if not isinstance(envelope, dict):
        raise SigningFailed(f"the signing worker returned {type(envelope).__name__}, not a result")
    return _raise_from_envelope(envelope)


def run_signing(use_case: str, /, *, timeout: float | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run a signing use case where ``KMI_SIGNING`` says: here, or on the ``signing`` queue.

    ``kwargs`` are ids and public data (JSON types). Returns the use case's result, e.g.
    ``{"certificate_id": 7, "serial": "…", "replayed": False}``; raises the domain error the
    use case raised, or ``SigningUnavailable`` when no worker could be reached in time.
    """
    conf = lifecycle_settings()
    placement = "worker" if conf.signs_on_worker else "inprocess"
    started = time.monotonic()
    outcome = "ok"
    try:
        if placement == "inprocess":
            return execute(use_case, **kwargs)
        if transaction.get_connection().in_atomic_block:
            # The worker reads the database from another connection: it must see what we wrote.
            raise RuntimeError("run_signing in worker mode must be called after the transaction commits")
        return _send_and_wait(use_case, kwargs, float(timeout or conf.signing_timeout))
    except PKIError as exc:
        outcome = exc.code
        raise
    finally:
        signing_finished.send(
            sender=run_signing,
            use_case=use_case,
            seconds=time.monotonic() - started,
            outcome=outcome,
            placement=placement,
        )
