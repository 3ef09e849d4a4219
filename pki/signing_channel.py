"""The authenticated signing channel (``KMI_SIGNING=worker``): signing jobs, their MACs and the
signer's checks.

The web side commits a ``SigningJob`` row and sends ``pki.signing.run(job=<id>, mac=<hex>)``.
The signer (``handle_message``) refuses anything else, verifies the HMAC-SHA256 under
``KMI_SIGNING_SECRET``, re-reads the row, re-checks the acting user's current grants and the
objects' state against the database, runs the use case once and records the actor the row names.
Its answer carries a MAC too, so a result planted in the result store is not believed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import socket
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from pki import audit
from pki.access import Action, can
from pki.clock import resolve
from pki.conf import lifecycle_settings
from pki.exceptions import ConfigurationError, PKIError, SigningRefused
from pki.models.signing import SigningJob, SigningJobState

log = logging.getLogger("pki.signing")

REFUSED = "signing.refused"
SIGNER_ACTOR = f"signer:{socket.gethostname()}"[:150]
# Use cases that hand a private key over: run once, never replayed, their result never stored.
HAND_OVERS = frozenset({"hand_over_server_key", "hand_over_recovered_key"})
# Parameters erased from a job's row once it has run (one-time secrets).
ONE_TIME_PARAMS = frozenset({"download_secret"})
MIN_SECRET_LENGTH = 32
_JOB_DOMAIN = b"kmi signing job v1\x00"
_RESULT_DOMAIN = b"kmi signing result v1\x00"


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _secret() -> bytes:
    secret = lifecycle_settings().signing_secret
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigurationError(
            f"KMI_SIGNING_SECRET (or KMI_SIGNING_SECRET_FILE) must hold at least {MIN_SECRET_LENGTH} "
            "characters on web processes and signing workers when KMI_SIGNING=worker"
        )
    return secret


def params_digest(params: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a job's parameters in canonical JSON."""
    return hashlib.sha256(_canonical(dict(params))).hexdigest()


def job_mac(job: SigningJob) -> str:
    """HMAC-SHA256 over what the web side decided: the job id, use case, user, actor and parameters."""
    body = _canonical(
        {
            "id": str(job.pk),
            "use_case": job.use_case,
            "user": job.user_id,
            "actor": job.actor,
            "params": job.params_sha256,
        }
    )
    return hmac.new(_secret(), _JOB_DOMAIN + body, hashlib.sha256).hexdigest()


def result_mac(job_id: str, envelope: Mapping[str, Any]) -> str:
    """HMAC-SHA256 over a signer's answer to job ``job_id``."""
    body = _canonical({"job": job_id, "envelope": dict(envelope)})
    return hmac.new(_secret(), _RESULT_DOMAIN + body, hashlib.sha256).hexdigest()


def create_job(
    *, use_case: str, params: Mapping[str, Any], actor: str, user: User | None, now: dt.datetime | None = None
) -> tuple[SigningJob, str]:
    """Commit a signing job (autocommit: the caller is outside any transaction); return it and its MAC."""
    _secret()  # fail before writing anything when the secret is missing
    plain = json.loads(_canonical(dict(params)))  # JSON types only, as the row will hold them
    job = SigningJob.objects.create(
        use_case=use_case,
        params=plain,
        params_sha256=params_digest(plain),
        user=user if user is not None and user.pk is not None else None,
        actor=actor[:150],
        created_at=resolve(now),
    )
    return job, job_mac(job)


def open_answer(job: SigningJob, answer: object) -> dict[str, Any]:
    """The signer's envelope for ``job`` once its MAC verifies; ``SigningRefused`` otherwise."""
    if isinstance(answer, dict) and answer.get("code") == SigningRefused.code and "envelope" not in answer:
        # Refused before the job could be read (no such job, bad MAC): nothing to authenticate.
        raise SigningRefused(f"the signer refused job {job.pk}: {answer.get('message', '')}"[:300])
    if not isinstance(answer, dict) or not isinstance(answer.get("envelope"), dict):
        raise SigningRefused(f"the answer to signing job {job.pk} is not a signer's answer")
    envelope: dict[str, Any] = answer["envelope"]
    mac = answer.get("mac")
    if not (
        isinstance(mac, str) and hmac.compare_digest(mac.encode(), result_mac(str(job.pk), envelope).encode())
    ):
        log.error("signing job %s: the answer's MAC does not verify; ignored", job.pk)
        raise SigningRefused(f"the answer to signing job {job.pk} does not carry a valid MAC")
    return envelope


# --- the signer's side -------------------------------------------------------------------------


def _summary(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """What a refused message claimed, without its values (they may hold anything)."""
    claimed = args[0] if args and isinstance(args[0], str) else ""
    return {"claimed_use_case": claimed[:64], "arguments": sorted(str(k)[:40] for k in kwargs)[:20]}


def _refuse(
    reason: str, *, job: SigningJob | None = None, job_id: str = "", details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Log and audit a refusal (in its own transaction unless the caller's); return its envelope."""
    object_id = str(job.pk) if job is not None else job_id[:64]
    log.warning("signing refused (job %s): %s", object_id or "-", reason)
    with transaction.atomic():
        if job is not None and job.state == SigningJobState.PENDING:
            job.state = SigningJobState.REFUSED
            job.finished_at = resolve(None)
            job.result = {"refused": reason}
            job.save(update_fields=["state", "finished_at", "result"])
        audit.record(
            action=REFUSED,
            actor=SIGNER_ACTOR,
            object_type="signing_job",
            object_id=object_id,
            details={
                "reason": reason,
                **({"use_case": job.use_case, "actor": job.actor} if job is not None else {}),
                **(details or {}),
            },
        )
    return {"ok": False, "error": "SigningRefused", "code": SigningRefused.code, "message": reason}


def _answer(job: SigningJob, envelope: dict[str, Any]) -> dict[str, Any]:
    return {"job": str(job.pk), "envelope": envelope, "mac": result_mac(str(job.pk), envelope)}


def handle_message(  # noqa: PLR0911 - one refusal per check, in order
    args: tuple[Any, ...], kwargs: Mapping[str, Any], *, execute: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """Run the job a ``pki.signing.run`` message names with ``execute`` (``pki.signing.execute``), or
    refuse the message (logged and audited)."""
    if args or set(kwargs) != {"job", "mac"} or not all(isinstance(v, str) for v in kwargs.values()):
        return _refuse(
            "malformed message: only a job id and its MAC are accepted", details=_summary(args, kwargs)
        )
    job_id, mac = str(kwargs["job"]), str(kwargs["mac"])
    try:
        _secret()
    except ConfigurationError as exc:
        return _refuse(f"this signer cannot verify jobs: {exc}", job_id=job_id)
    try:
        pk = uuid.UUID(job_id)
    except ValueError:
        return _refuse("malformed job id", job_id=job_id)
    with transaction.atomic():
        job = SigningJob.objects.select_for_update(of=("self",)).select_related("user").filter(pk=pk).first()
        if job is None:
            return _refuse("no such signing job", job_id=job_id)
        if not hmac.compare_digest(mac.encode(), job_mac(job).encode()):
            # The job stays as it was: a forged MAC must not cancel someone's real work.
            return _refuse("bad MAC", job_id=job_id, details={"use_case": job.use_case})
        if job.state != SigningJobState.PENDING:
            if job.use_case in HAND_OVERS or job.state == SigningJobState.REFUSED:
                return _answer(job, _refuse(f"job already {job.state}: not run again", job_id=job_id))
            log.info("signing job %s replayed: returning its stored result", job.pk)
            return _answer(job, dict(job.result or {}))
        if params_digest(job.params) != job.params_sha256:
            return _answer(job, _refuse("the job's parameters changed after it was committed", job=job))
        problem = authority_problem(job)
        if problem is not None:
            return _answer(job, _refuse(problem, job=job))
        try:
            with transaction.atomic():
                result = execute(job.use_case, **job.params, actor=job.actor)
        except PKIError as exc:
            envelope: dict[str, Any] = {
                "ok": False,
                "error": type(exc).__name__,
                "code": exc.code,
                "message": str(exc),
            }
            job.state = SigningJobState.FAILED
            job.result = envelope
        else:
            envelope = {"ok": True, "result": result}
            job.state = SigningJobState.DONE
            job.result = (
                {"ok": True, "result": {"handed_over": True}} if job.use_case in HAND_OVERS else envelope
            )
        job.params = {k: v for k, v in job.params.items() if k not in ONE_TIME_PARAMS}
        job.finished_at = resolve(None)
        job.save(update_fields=["state", "result", "params", "finished_at"])
    return _answer(job, envelope)


# --- re-checking authority against the database ---------------------------------------------


def _int(params: Mapping[str, Any], name: str) -> int:
    """An id parameter; 0 (no row has it) when missing or not an integer."""
    value = params.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _check_issue_request(user: User | None, params: Mapping[str, Any]) -> str | None:
    from pki.models.request import CertificateRequest

    # The request's state (approved, or issued for a replay) is checked by the use case itself,
    # which refuses anything else with its domain error and signs nothing.
    request = CertificateRequest.objects.filter(pk=_int(params, "request_id")).first()
    if request is None or user is None:
        return None  # protocol enrollments (EST, SCEP) and KMI's own jobs: the approved row decides
    if can(user, Action.SUBMIT_REQUEST, (request.ca_id, request.profile_id)) or can(
        user, Action.REVIEW_REQUEST, request
    ):
        return None
    return f"{user.get_username()} may no longer submit to or review request {request.pk}"


def _check_renew(user: User | None, params: Mapping[str, Any]) -> str | None:
    from pki.models.certificate import Certificate

    cert = Certificate.objects.filter(pk=_int(params, "certificate_id")).first()
    if cert is None:
        return "no such certificate"
    if user is None or not can(user, Action.RENEW_CERTIFICATE, cert):
        return f"{_name(user)} may not renew certificate {cert.pk}"
    if params.get("renewer_id") not in (None, user.pk):
        return "a renewal names as renewer the user the job names"
    return None


def _check_create_ca(user: User | None, params: Mapping[str, Any]) -> str | None:
    from pki.models.authority import CACreation
    from pki.models.key import TwoPersonState

    # Separation of duties (pki.ca_creation): only a creation other administrators approved, made
    # for an administrator who approved it (or who asked, where no approval is required).
    row = CACreation.objects.filter(pk=_int(params, "creation_id")).first()
    if row is None:
        return "no such CA creation"
    if user is None or not can(user, Action.CREATE_CA):
        return f"{_name(user)} may not create CAs"
    if row.state not in (TwoPersonState.APPROVED, TwoPersonState.DONE):
        return f"CA creation {row.pk} is {row.state}: only an approved creation is made"
    asked_alone = row.approvals_required == 0 and user.pk == row.requester_id
    if not (user.pk in row.approver_ids() or asked_alone) or len(row.approvals) < row.approvals_required:
        return f"{user.get_username()} did not approve CA creation {row.pk}"
    return None


def _check_manage_ca(user: User | None, params: Mapping[str, Any]) -> str | None:
    if user is None or not can(user, Action.MANAGE_CA):
        return f"{_name(user)} may not manage CAs"
    return None


def _check_manage_device_label(user: User | None, params: Mapping[str, Any]) -> str | None:
    if user is None or not can(user, Action.MANAGE_DEVICE_LABEL):
        return f"{_name(user)} may not manage device labels"
    return None


def _check_request_server_key(user: User | None, params: Mapping[str, Any]) -> str | None:
    if user is None or _int(params, "requester_id") != user.pk:
        return "a server key is requested by the user the job names, for themselves"
    if not can(user, Action.SUBMIT_REQUEST, (_int(params, "ca_id"), _int(params, "profile_id"))):
        return f"{user.get_username()} may not submit to this CA and profile"
    return None


def _check_hand_over_server_key(user: User | None, params: Mapping[str, Any]) -> str | None:
    from django.core.exceptions import ValidationError

    from pki.models.delivery import KeyDelivery

    try:
        delivery = KeyDelivery.objects.filter(pk=str(params.get("delivery_id", ""))).first()
    except ValidationError:
        delivery = None
    if delivery is None:
        return "no such key delivery"
    if user is None or delivery.requester_id != user.pk or not can(user, Action.DOWNLOAD_KEY, delivery):
        return f"{_name(user)} did not ask for the key of delivery {delivery.pk}"
    return None


def _check_destroy_key(user: User | None, params: Mapping[str, Any]) -> str | None:
    from pki.models.key import KeyDestruction, TwoPersonState

    if user is None or not can(user, Action.MANAGE_KEY):
        return f"{_name(user)} may not destroy keys"
    if params.get("destruction_id") is not None:
        # A CA key: only the destruction two administrators approved (destroy_key checks again).
        row = KeyDestruction.objects.filter(pk=_int(params, "destruction_id")).first()
        if row is None or str(row.key_id) != str(params.get("key_id", "")):
            return "no such key destruction"
        if row.state not in (TwoPersonState.APPROVED, TwoPersonState.DONE):
            return f"the destruction request {row.pk} is {row.state}, not approved"
    return None


def _check_hand_over_recovered_key(user: User | None, params: Mapping[str, Any]) -> str | None:
    from pki.models.key import KeyRecovery

    recovery = KeyRecovery.objects.select_related("key").filter(pk=_int(params, "recovery_id")).first()
    if recovery is None:
        return "no such key recovery"
    if (
        user is None
        or _int(params, "user_id") != user.pk
        or recovery.requester_id != user.pk
        or not can(user, Action.RECOVER_KEY, recovery.key)
    ):
        return f"{_name(user)} did not ask for key recovery {recovery.pk}"
    return None


def _check_verify_eab(user: User | None, params: Mapping[str, Any]) -> str | None:
    from pki.models.acme import AcmeExternalAccountKey

    # An ACME newAccount (no user): the MAC is checked only for a key that exists and is unbound.
    if not AcmeExternalAccountKey.objects.filter(pk=_int(params, "eab_id"), bound_at__isnull=True).exists():
        return "no such unbound external account key"
    return None


def _check_scep_operation(user: User | None, params: Mapping[str, Any]) -> str | None:
    from pki.models.device import ScepLabel

    # A device's pkiMessage (no user): it proves itself to the signer (challenge or renewed
    # certificate, inside the RA envelope); the label must exist and be enabled.
    if not ScepLabel.objects.filter(pk=_int(params, "label_id"), enabled=True).exists():
        return "no such enabled SCEP label"
    return None


def _name(user: User | None) -> str:
    return user.get_username() if user is not None else "a job without a user"


_CHECKS: dict[str, Callable[[User | None, Mapping[str, Any]], str | None]] = {
    "issue_request": _check_issue_request,
    "renew_certificate": _check_renew,
    "create_ca": _check_create_ca,
    "request_server_key": _check_request_server_key,
    "hand_over_server_key": _check_hand_over_server_key,
    "destroy_key": _check_destroy_key,
    "hand_over_recovered_key": _check_hand_over_recovered_key,
    "verify_eab": _check_verify_eab,
    "scep_operation": _check_scep_operation,
    "rollover_ca": _check_manage_ca,
    "renew_ca": _check_manage_ca,
    "create_scep_label": _check_manage_device_label,
}


def authority_problem(job: SigningJob) -> str | None:
    """Why ``job`` may not run now (its user lost the grant, its object changed state), or None."""
    check = _CHECKS.get(job.use_case)
    if check is None:
        return f"unknown signing use case {job.use_case[:64]!r}"
    user = job.user
    if job.user_id is not None and (user is None or not user.is_active):
        return "the job's user is no longer active"
    if user is not None:
        from pki.access import forget_grants

        forget_grants(user)  # the grants as they are now, not as cached
    return check(user, job.params)


JOB_RETENTION_DAYS = 30


def purge_signing_jobs(*, now: dt.datetime | None = None) -> int:
    """Delete signing jobs made more than ``JOB_RETENTION_DAYS`` ago (the audit trail keeps what they
    did); a message naming one afterwards is refused as an unknown job. Returns how many."""
    cutoff = resolve(now) - dt.timedelta(days=JOB_RETENTION_DAYS)
    deleted, _ = SigningJob.objects.filter(created_at__lt=cutoff).delete()
    return deleted
