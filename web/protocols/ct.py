"""The RFC 6962 §4 HTTP API of KMI's transparency logs, under ``KMI_BASE_URL/ct/<log-name>/``.

Read-only: KMI logs only the certificates it issues, so ``add-chain`` and ``add-pre-chain`` are
refused. ``log.json`` is the log's entry in the CT log list v3 format (with an operator wrapper),
so a monitor such as certspotter can be pointed at it with ``-logs``. Nothing here signs: tree
heads are signed by the beat job (pki.transparency.log.tick) or ``manage.py sign_tree_head``.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils.http import http_date
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from pki.clock import utcnow
from pki.conf import pki_settings
from pki.exceptions import NotFound, PolicyViolation
from pki.models import SignedTreeHead, TransparencyLog
from pki.transparency import log as ct
from pki.transparency.structures import digitally_signed

View = Callable[..., HttpResponse]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _int_param(request: HttpRequest, name: str) -> int:
    raw = request.GET.get(name, "")
    if not raw.isdigit() or len(raw) > 19:
        raise PolicyViolation(f"{name} must be a non-negative integer")
    return int(raw)


_LOG_TTL = 30.0  # seconds a process keeps a log's row (name, key, id never change)
_logs: dict[str, tuple[float, TransparencyLog]] = {}


def _cached_log(name: str) -> TransparencyLog:
    """The log named ``name``: one query per process and half-minute, not one per proof."""
    now = time.monotonic()
    hit = _logs.get(name)
    if hit is not None and now - hit[0] < _LOG_TTL:
        return hit[1]
    log = ct.get_log(name)
    if len(_logs) > 100:
        _logs.clear()
    _logs[name] = (now, log)
    return log


def log_view(view: Callable[[HttpRequest, TransparencyLog], dict[str, Any]]) -> View:
    """Look the log up, run the view, map domain errors to RFC 6962-style JSON errors."""

    @require_safe
    def wrapped(request: HttpRequest, log_name: str) -> HttpResponse:
        try:
            log = _cached_log(log_name)
            body = view(request, log)
        except NotFound as exc:
            return _error(404, str(exc))
        except PolicyViolation as exc:
            return _error(400, str(exc))
        response = JsonResponse(body)
        response["Cache-Control"] = "public, max-age=5"
        return response

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


def sth_json(sth: SignedTreeHead) -> dict[str, Any]:
    """A tree head as RFC 6962 §4.3 serves it."""
    return {
        "tree_size": sth.tree_size,
        "timestamp": sth.timestamp_ms,
        "sha256_root_hash": _b64(bytes(sth.root_hash)),
        "tree_head_signature": _b64(digitally_signed(bytes(sth.signature))),
    }


@log_view
def get_sth(request: HttpRequest, log: TransparencyLog) -> dict[str, Any]:
    """§4.3: the latest signed tree head."""
    sth = ct.latest_tree_head(log)
    if sth is None:
        raise NotFound(f"log {log.name} has signed no tree head yet")
    return sth_json(sth)


@log_view
def get_sth_consistency(request: HttpRequest, log: TransparencyLog) -> dict[str, Any]:
    """§4.4: the consistency proof between two tree sizes."""
    first, second = _int_param(request, "first"), _int_param(request, "second")
    proof = ct.consistency_proof(log=log, first=first, second=second)
    return {"consistency": [_b64(h) for h in proof]}


@log_view
def get_proof_by_hash(request: HttpRequest, log: TransparencyLog) -> dict[str, Any]:
    """§4.5: a leaf's index and audit path in the tree of ``tree_size``."""
    try:
        leaf_hash = base64.b64decode(request.GET.get("hash", ""), validate=True)
    except binascii.Error:
        raise PolicyViolation("hash must be base64") from None
    if len(leaf_hash) != 32:
        raise PolicyViolation("hash must be a base64 SHA-256 leaf hash")
    index, path_ = ct.inclusion_proof(
        log=log, leaf_hash=leaf_hash, tree_size=_int_param(request, "tree_size")
    )
    return {"leaf_index": index, "audit_path": [_b64(h) for h in path_]}


@log_view
def get_entries(request: HttpRequest, log: TransparencyLog) -> dict[str, Any]:
    """§4.6: entries ``start``..``end`` (at most 1000 a call)."""
    start, end = _int_param(request, "start"), _int_param(request, "end")
    return {
        "entries": [
            {"leaf_input": _b64(leaf), "extra_data": _b64(extra)}
            for leaf, extra in ct.entries(log=log, start=start, end=end)
        ]
    }


@log_view
def get_roots(request: HttpRequest, log: TransparencyLog) -> dict[str, Any]:
    """§4.7: the root certificates the log's entries chain to (KMI's root CAs)."""
    return {"certificates": [_b64(der) for der in ct.roots()]}


@csrf_exempt
def add_chain(request: HttpRequest, log_name: str) -> HttpResponse:
    """§4.1/§4.2 are refused: KMI logs the certificates it issues, nobody else's."""
    if request.method != "POST":
        response = _error(405, "add-chain takes POST")
        response["Allow"] = "POST"
        return response
    return _error(400, "this log accepts no submissions: KMI logs only the certificates it issues")


def log_url(log: TransparencyLog) -> str:
    """The log's base URL (what a CT log list names): ``KMI_BASE_URL/ct/<name>/``."""
    return f"{pki_settings().base_url.rstrip('/')}/ct/{log.name}/"


def log_list(log: TransparencyLog) -> dict[str, Any]:
    """The log as a CT log list v3 document with one operator (certspotter's ``-logs`` format)."""
    created = log.created_at.isoformat().replace("+00:00", "Z")
    return {
        "version": "3.0",
        "log_list_timestamp": utcnow().isoformat().replace("+00:00", "Z"),
        "operators": [
            {
                "name": "KMI",
                "email": [],
                "logs": [
                    {
                        "description": log.description,
                        "log_id": _b64(bytes(log.log_id)),
                        "key": _b64(ct.public_key_der(log)),
                        "url": log_url(log),
                        "mmd": log.mmd_seconds,
                        "state": {"usable": {"timestamp": created}},
                    }
                ],
            }
        ],
    }


@require_safe
def log_json(request: HttpRequest, log_name: str) -> HttpResponse:
    """``/ct/<name>/log.json``: the log's CT log list entry (log id, key, URL, MMD)."""
    try:
        log = ct.get_log(log_name)
    except NotFound as exc:
        return _error(404, str(exc))
    response = JsonResponse(log_list(log))
    response["Last-Modified"] = http_date(log.created_at.timestamp())
    return response


urlpatterns = [
    path("<slug:log_name>/log.json", log_json, name="ct-log-json"),
    path("<slug:log_name>/ct/v1/get-sth", get_sth, name="ct-get-sth"),
    path("<slug:log_name>/ct/v1/get-sth-consistency", get_sth_consistency, name="ct-get-sth-consistency"),
    path("<slug:log_name>/ct/v1/get-proof-by-hash", get_proof_by_hash, name="ct-get-proof-by-hash"),
    path("<slug:log_name>/ct/v1/get-entries", get_entries, name="ct-get-entries"),
    path("<slug:log_name>/ct/v1/get-roots", get_roots, name="ct-get-roots"),
    path("<slug:log_name>/ct/v1/add-chain", add_chain, name="ct-add-chain"),
    path("<slug:log_name>/ct/v1/add-pre-chain", add_chain, name="ct-add-pre-chain"),
]
