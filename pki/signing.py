"""Where CA-key operations run: in the calling process, or only on Celery workers of the ``signing`` queue.

Adapters (API views, ACME finalize, commands) never sign or decide placement themselves; they
call ``run_signing("issue_request", request_id=…, actor=…, user=…)``. With
``KMI_SIGNING=inprocess`` (the default) that calls the use case here and now: the checked use
case that decided the work runs in this process. With ``KMI_SIGNING=worker`` the caller commits a
``SigningJob`` row (the use case, its ids and public parameters, the acting user as the database
knows it) and sends the task ``pki.signing.run`` with the job's id and an HMAC-SHA256 over the
job under ``KMI_SIGNING_SECRET``, then waits up to ``KMI_SIGNING_TIMEOUT`` seconds for the
worker's answer (MAC'd the same way), so the calling process needs no key-encryption key at all.

The broker carries work, never authority. The worker (``handle_message``) verifies the MAC,
re-reads the job row, re-checks the acting user's current grants and the objects' state
(``pki.access``), runs the use case once and records the actor the row names. A message that
is malformed, names no committed job or carries a bad MAC, and a job whose authority is gone,
are refused: logged, audited as ``signing.refused``, nothing signed, delivered or destroyed. A
redelivered job returns the stored result (a key hand-over is never repeated).

Arguments are ids and public data only (a request id, a certificate id, a CSR in PEM): never
key material. Every signing use case is idempotent on its ids (issuing a request twice returns
the first certificate), so a redelivered task or a retry after a timeout does no harm.

Domain errors raised on the worker come back as the same ``pki.exceptions`` class. When no
worker can be reached the call raises ``SigningUnavailable`` (adapters answer 503): the request
stays stored and a later call (or the worker, once it gets the message) finishes it.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.db import transaction

from pki import exceptions
from pki.conf import lifecycle_settings
from pki.exceptions import NotFound, PKIError, SigningFailed, SigningUnavailable
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


def execute(use_case: str, /, **kwargs: Any) -> dict[str, Any]:
    """Run the signing use case ``use_case`` in this process (what a signing worker does)."""
    try:
        fn = _USE_CASES[use_case]
    except KeyError:
        raise NotFound(f"no signing use case {use_case!r} (known: {', '.join(use_case_names())})") from None
    with signing_in_place():
        return fn(**kwargs)


@contextlib.contextmanager
def signing_in_place() -> Iterator[None]:
    """Run the block as a signing use case runs: CA keys are used in this process (a task of
    the ``signing`` queue, which holds them, does not send itself to the queue again)."""
    token = _executing.set(True)
    try:
        yield
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


def _send_and_wait(job: Any, mac: str, timeout: float) -> dict[str, Any]:
    """Send job ``job`` (committed) with its MAC to the ``signing`` queue; wait for the signer's answer."""
    from celery import current_app
    from celery.exceptions import TimeoutError as CeleryTimeout

    # One deadline for the whole call: publishing (whose retries are bounded by the broker's
    # connect/socket timeouts, KMI_REDIS_TIMEOUT) and waiting for the result share ``timeout``.
    deadline = time.monotonic() + timeout
    try:
        async_result = current_app.send_task(
            SIGNING_TASK,
            kwargs={"job": str(job.pk), "mac": mac},
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
    from pki.signing_channel import open_answer

    return _raise_from_envelope(open_answer(job, envelope))


def run_signing(
    use_case: str, /, *, timeout: float | None = None, user: Any = None, **kwargs: Any
) -> dict[str, Any]:
    """Run a signing use case where ``KMI_SIGNING`` says: here, or on the ``signing`` queue.

    This is the one place that decides where signing runs. ``kwargs`` are ids and public data
    (JSON types) and the audit ``actor``; ``user`` is the acting user (None for protocol
    enrollments and KMI's own jobs), whose grants a signing worker checks again. Returns the use
    case's result, e.g. ``{"certificate_id": 7, "serial": "…", "replayed": False}``; raises the
    domain error the use case raised, ``SigningRefused`` when the worker refused the job, or
    ``SigningUnavailable`` when no worker could be reached in time.
    """
    conf = lifecycle_settings()
    placement = "inprocess" if signs_here() else "worker"
    started = time.monotonic()
    outcome = "ok"
    try:
        if placement == "inprocess":
            # The checked use case that decided this work runs here: no job row, no MAC.
            return execute(use_case, **kwargs)
        if transaction.get_connection().in_atomic_block:
            # The worker reads the database from another connection: it must see what we wrote.
            raise RuntimeError("run_signing in worker mode must be called after the transaction commits")
        from pki.signing_channel import create_job

        params = {k: v for k, v in kwargs.items() if k != "actor"}
        job, mac = create_job(use_case=use_case, params=params, actor=str(kwargs.get("actor", "")), user=user)
        return _send_and_wait(job, mac, float(timeout or conf.signing_timeout))
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
