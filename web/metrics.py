"""Prometheus metrics at ``/metrics``.

Two kinds of figures:

- process figures, counted where they happen: responses served per public endpoint (OCSP, CRL,
  CA certificates, ACME, API), signing latency and signing errors as seen by the caller of the
  signing seam. Under gunicorn set ``PROMETHEUS_MULTIPROC_DIR`` (an empty folder shared by
  the workers; docker/compose.yaml does) so every worker's counts are summed;
- database figures, computed at scrape time so every process reports the same truth:
  certificates issued per CA, CRL age/size/nextUpdate per CA, pre-signed OCSP responses and
  their freshness per CA, and the length of each Celery queue on Redis.

CRL and OCSP figures come from the ``pki.CertificateRevocationList`` and ``pki.OCSPResponse``
models when this build has them (``_model`` checks at scrape time); without them those families
are simply empty.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from django.apps import apps
from django.conf import settings
from django.db import models
from django.db.models import Count, Min
from django.db.models.functions import Length
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pki.clock import utcnow
from pki.conf import lifecycle_settings
from pki.keys.health import key_backend_status
from pki.locations import repository_name
from pki.models import Certificate, CertificateAuthority
from pki.signals import signing_finished
from pki.signing import signs_here

QUEUES = ("celery", "signing")
ENDPOINTS = {"ocsp": "ocsp", "crl": "crl", "ca": "ca", "acme": "acme", "api": "api"}

RESPONSES = Counter(
    "kmi_http_responses_total",
    "Responses served, by public endpoint family and status code",
    ["endpoint", "status"],
)
ISSUANCE_SECONDS = Histogram(
    "kmi_issuance_seconds",
    "Time a caller waited for a certificate through the signing seam",
    ["placement"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SIGNING_ERRORS = Counter(
    "kmi_signing_errors_total",
    "Signing-seam calls that failed, by use case and error code",
    ["use_case", "code"],
)


def _on_signing_finished(*, use_case: str, seconds: float, outcome: str, placement: str, **_: Any) -> None:
    if outcome == "ok":
        if use_case in ("issue_request", "renew_certificate"):
            ISSUANCE_SECONDS.labels(placement).observe(seconds)
    else:
        SIGNING_ERRORS.labels(use_case, outcome).inc()


signing_finished.connect(_on_signing_finished, weak=False, dispatch_uid="web.metrics")


class ResponseMetricsMiddleware:
    """Counts responses of the public endpoints (first path segment: ocsp, crl, ca, acme, api)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        family = ENDPOINTS.get(request.path.strip("/").split("/", 1)[0])
        if family is not None:
            RESPONSES.labels(family, str(response.status_code)).inc()
        return response


def _model(name: str, *fields: str) -> type[models.Model] | None:
    """The model ``pki.<name>`` if this build has it with ``fields``, else None."""
    try:
        model = apps.get_model("pki", name)
    except LookupError:
        return None
    present = {f.name for f in model._meta.get_fields()}
    return model if set(fields) <= present else None


class DatabaseCollector(Collector):
    """Figures read from the database (and Redis) at scrape time."""

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        names = dict(CertificateAuthority.objects.values_list("pk", "name"))
        issued = CounterMetricFamily(
            "kmi_certificates_issued", "Certificates signed, by issuing CA", labels=["ca"]
        )
        for row in Certificate.objects.values("ca_id").annotate(n=Count("id")).order_by():
            issued.add_metric([names.get(row["ca_id"], "none")], row["n"])
        yield issued
        yield from self._crl(now, names)
        yield from self._key_backends()
        yield from self._ocsp(now, names)
        yield self._queues()
        yield from self._transparency_and_alerts(now)

    def _transparency_and_alerts(self, now: Any) -> Iterator[Metric]:
        """Open alerts by kind and severity (threat monitor); each log's size and STH age."""
        from pki.models import Alert, AlertKind, AlertState, PendingLeaf, SignedTreeHead, TransparencyLog

        alerts = GaugeMetricFamily(
            "kmi_alerts_open", "Alerts not yet resolved, by kind and severity", labels=["kind", "severity"]
        )
        counts = {
            (row["kind"], row["severity"]): row["n"]
            for row in Alert.objects.exclude(state=AlertState.RESOLVED)
            .values("kind", "severity")
            .annotate(n=Count("id"))
            .order_by()
        }
        for kind in AlertKind:
            for severity in ("warning", "critical"):
                alerts.add_metric([kind.value, severity], counts.get((kind.value, severity), 0))
        yield alerts
        size = GaugeMetricFamily("kmi_log_tree_size", "Leaves in the latest signed tree head", labels=["log"])
        age = GaugeMetricFamily(
            "kmi_log_sth_age_seconds", "Seconds since the latest signed tree head", labels=["log"]
        )
        for log in TransparencyLog.objects.order_by("pk"):
            sth = SignedTreeHead.objects.filter(log=log).order_by("-timestamp_ms").first()
            if sth is not None:
                size.add_metric([log.name], sth.tree_size)
                age.add_metric([log.name], now.timestamp() - sth.timestamp_ms / 1000)
        yield size
        yield age
        yield GaugeMetricFamily(
            "kmi_log_queued_certificates",
            "Certificates committed but not yet sequenced into the logs",
            value=PendingLeaf.objects.count(),
        )

    def _crl(self, now: Any, names: dict[int, str]) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            "kmi_crl_age_seconds", "Seconds since thisUpdate of the newest full CRL", labels=["ca"]
        )
        size = GaugeMetricFamily("kmi_crl_size_bytes", "DER size of the newest full CRL", labels=["ca"])
        until = GaugeMetricFamily(
            "kmi_crl_next_update_seconds", "Seconds until nextUpdate of the newest full CRL", labels=["ca"]
        )
        entries = GaugeMetricFamily("kmi_crl_entries", "Entries in the newest full CRL", labels=["ca"])
        model = _model("CertificateRevocationList", "ca", "this_update", "next_update", "der")
        if model is not None:
            shard = {"shard": 0} if _model("CertificateRevocationList", "shard") else {}
            has_entries = _model("CertificateRevocationList", "entry_count") is not None
            created = dict(
                CertificateAuthority.objects.filter(certificate__isnull=False).values_list(
                    "pk", "certificate__not_before"
                )
            )
            # One series per CA generation that publishes (its repository name: issuing, issuing.g2):
            # after a rollover the previous generation's CRL must stay fresh too.
            scopes: list[tuple[int, dict[str, int], str]] = [
                (ca_id, {}, ca_name) for ca_id, ca_name in names.items()
            ]
            if _model("CertificateRevocationList", "generation") is not None:
                pairs = set(model._default_manager.filter(**shard).values_list("ca_id", "generation"))
                published = {ca_id for ca_id, _ in pairs}
                scopes = [
                    (ca_id, {"generation": number}, repository_name(names[ca_id], number))
                    for ca_id, number in sorted(pairs)
                    if ca_id in names
                ]
                # A CA that never published keeps its series (below: as old as the CA itself).
                scopes += [(ca_id, {}, ca_name) for ca_id, ca_name in names.items() if ca_id not in published]
            for ca_id, generation, ca_name in scopes:
                newest = (
                    model._default_manager.filter(ca_id=ca_id, **shard, **generation)
                    .annotate(der_size=Length("der"))
                    .order_by("-this_update")
                    .values(
                        "this_update", "next_update", "der_size", *(["entry_count"] if has_entries else [])
                    )
                    .first()
                )
                if newest is None:
                    # Never published (e.g. its key backend is unreachable): the CRL is as old
                    # as the CA, so a CRL-age alert fires instead of the CA being left out.
                    since = created.get(ca_id)
                    if since is not None:
                        age.add_metric([ca_name], (now - since).total_seconds())
                    continue
                age.add_metric([ca_name], (now - newest["this_update"]).total_seconds())
                size.add_metric([ca_name], newest["der_size"] or 0)
                until.add_metric([ca_name], (newest["next_update"] - now).total_seconds())
                if has_entries:
                    entries.add_metric([ca_name], newest["entry_count"])
        yield from (age, size, until, entries)

    def _key_backends(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "kmi_ca_key_backend_up",
            "1 when this process can reach the CA's key backend (an HSM, or the KEK), else 0",
            labels=["ca", "backend"],
        )
        if signs_here():  # web processes of a KMI_SIGNING=worker set hold no key material
            for status in key_backend_status():
                up.add_metric([status.ca, status.backend], 1.0 if status.ok else 0.0)
        yield up

    def _ocsp(self, now: Any, names: dict[int, str]) -> Iterator[Metric]:
        stored = GaugeMetricFamily("kmi_ocsp_responses_stored", "Pre-signed OCSP responses", labels=["ca"])
        stale = GaugeMetricFamily(
            "kmi_ocsp_responses_stale", "Pre-signed OCSP responses past their nextUpdate", labels=["ca"]
        )
        oldest = GaugeMetricFamily(
            "kmi_ocsp_oldest_response_age_seconds",
            "Seconds since thisUpdate of the oldest pre-signed response (freshness)",
            labels=["ca"],
        )
        model = _model("OCSPResponse", "ca", "this_update", "next_update")
        if model is not None:
            rows = (
                model._default_manager.values("ca_id")
                .annotate(n=Count("id"), first=Min("this_update"))
                .order_by()
            )
            stale_by_ca = dict(
                model._default_manager.filter(next_update__lte=now)
                .values("ca_id")
                .annotate(n=Count("id"))
                .order_by()
                .values_list("ca_id", "n")
            )
            for row in rows:
                label = [names.get(row["ca_id"], str(row["ca_id"]))]
                stored.add_metric(label, row["n"])
                stale.add_metric(label, stale_by_ca.get(row["ca_id"], 0))
                oldest.add_metric(label, (now - row["first"]).total_seconds())
        yield from (stored, stale, oldest)

    def _queues(self) -> Metric:
        family = GaugeMetricFamily(
            "kmi_queue_length", "Messages waiting in each Celery queue", labels=["queue"]
        )
        redis_url = str(getattr(settings, "REDIS_URL", ""))
        if redis_url:
            import redis

            prefix = str(getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}).get("global_keyprefix", ""))
            client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
            try:
                for queue in QUEUES:
                    length = cast(int, client.llen(f"{prefix}{queue}"))  # the sync client's answer
                    family.add_metric([queue], float(length))
            except redis.RedisError:
                family.add_metric(["unreachable"], -1.0)
            finally:
                client.close()
        else:
            folder = Path(str(settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in", "")))
            if folder.is_dir():
                family.add_metric(["all"], float(sum(1 for _ in folder.iterdir())))
        return family


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Serve every figure in Prometheus' text format (bearer token when KMI_METRICS_TOKEN is set)."""
    token = lifecycle_settings().metrics_token
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse("metrics need Authorization: Bearer <KMI_METRICS_TOKEN>\n", status=401)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        process_registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(process_registry)  # type: ignore[no-untyped-call]
    else:
        process_registry = REGISTRY
    db_registry = CollectorRegistry(auto_describe=False)
    db_registry.register(DatabaseCollector())
    body = generate_latest(process_registry) + generate_latest(db_registry)
    response = HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
