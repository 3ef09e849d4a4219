"""Every KMI setting (environment variable), declared once: name, type, default, meaning, secrecy.

``web/settings.py`` reads the environment through ``load_environment`` (every variable parsed and
validated at start-up; all problems reported at once), and ``pki/conf.py`` and its siblings
validate the values they are given (``settings.KMI`` and friends, which tests override) with
``coerce``, so each rule lives here and nowhere else. ``reference_markdown`` writes the
configuration reference of the manual (docs/reference/configuration.md) from these
declarations; a test fails when the committed page differs.

A secret may instead be read from a file named by ``NAME_FILE`` (Docker secrets); its value is
never part of an error message.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

KEK_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
KEK_BYTES = 32  # AES-256


class Invalid(ValueError):
    """A value a parser refuses; the message says why without repeating the value."""


# --- parsers: raw text (or an already typed value) -> a validated value -------------------------


@dataclass(frozen=True)
class Parser:
    """Turns the text of a variable into a value; ``kind`` describes it in the reference."""

    kind: str
    parse_text: Callable[[str], Any]
    accepts: tuple[type, ...] = ()  # typed values (from settings overrides) checked by check_value
    check_value: Callable[[Any], Any] | None = None

    def __call__(self, value: object) -> Any:
        """Parse text, or check a value that is already typed; raise ``Invalid``."""
        if isinstance(value, str):
            return self.parse_text(value)
        # A bool is an int to Python; only boolean settings take one.
        if isinstance(value, self.accepts) and isinstance(value, bool) == (bool in self.accepts):
            return self.check_value(value) if self.check_value else value
        raise Invalid(f"must be {self.kind}")


def integer(*, minimum: int | None = None, maximum: int | None = None) -> Parser:
    """A whole number within [minimum, maximum]."""

    def check(value: int) -> int:
        if minimum is not None and value < minimum:
            raise Invalid(f"is below the minimum {minimum}")
        if maximum is not None and value > maximum:
            raise Invalid(f"is above the maximum {maximum}")
        return value

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise Invalid("is not an integer") from None
        return check(value)

    return Parser(_bounded("integer", minimum, maximum), parse, (int,), check)


def number(*, minimum: float, maximum: float, exclusive: bool = False) -> Parser:
    """A decimal number within [minimum, maximum] (or strictly between them)."""

    def check(value: float) -> float:
        value = float(value)
        inside = minimum < value < maximum if exclusive else minimum <= value <= maximum
        if not inside:
            between = "strictly between" if exclusive else "from"
            raise Invalid(f"must be {between} {minimum:g} {'and' if exclusive else 'to'} {maximum:g}")
        return value

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise Invalid("is not a number") from None
        return check(value)

    limits = f"between {minimum:g} and {maximum:g}" if exclusive else f"{minimum:g} to {maximum:g}"
    return Parser(f"number, {limits}", parse, (int, float), check)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise Invalid("is not a boolean (use 1/0, true/false, yes/no, on/off)")


BOOLEAN = Parser("boolean (1/0, true/false, yes/no, on/off)", _parse_bool, (bool,))
TEXT = Parser("text", lambda text: text)


def text_without_spaces() -> Parser:
    """Non-empty text without whitespace (key prefixes)."""

    def parse(text: str) -> str:
        if not text or any(c.isspace() for c in text):
            raise Invalid("must be non-empty, without spaces")
        return text

    return Parser("text without spaces", parse)


def choice(*values: str) -> Parser:
    """One of ``values`` (case-insensitive)."""

    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in values:
            raise Invalid(f"must be one of {', '.join(values)}")
        return value

    return Parser("one of " + ", ".join(f"`{v}`" for v in values), parse)


def http_url(*, optional: bool = False) -> Parser:
    """An absolute http(s) URL without query or fragment (trailing slash removed)."""

    def parse(text: str) -> str:
        value = text.strip().rstrip("/")
        if optional and not value:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
            raise Invalid("must be an absolute http(s) URL such as http://pki.example.test")
        return value

    return Parser("http(s) URL", parse)


def comma_list() -> Parser:
    """Comma- (or newline-) separated items, blanks dropped."""

    def parse(text: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in text.replace("\n", ",").split(",") if part.strip())

    def check(value: Iterable[Any]) -> tuple[str, ...]:
        return tuple(str(v) for v in value)

    return Parser("comma-separated list", parse, (list, tuple), check)


_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _allowed_name(item: str) -> str:
    """A domain (lower-cased, no wildcard, no trailing dot) or an IP network (``127.0.0.0/8``)."""
    text = item.strip().lower()
    if any(c in text for c in "/:") or text.replace(".", "").isdigit():
        try:
            return str(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise Invalid(f"{item!r} is neither a domain nor an IP network") from None
    labels = text.rstrip(".").split(".")
    if len(text) > 253 or not all(_DOMAIN_LABEL.match(label) for label in labels):
        raise Invalid(f"{item!r} is not a domain name (letters, digits, hyphens; no wildcards)")
    return ".".join(labels)


def allowed_names() -> Parser:
    """Comma-separated domains and IP networks, each checked (``example.test,10.0.0.0/8``)."""

    def parse(text: str) -> tuple[str, ...]:
        return tuple(_allowed_name(part) for part in text.replace("\n", ",").split(",") if part.strip())

    def check(value: Iterable[Any]) -> tuple[str, ...]:
        return tuple(_allowed_name(str(v)) for v in value)

    return Parser("comma-separated domains and IP networks", parse, (list, tuple), check)


def day_thresholds() -> Parser:
    """Comma-separated whole days, each at least 1, most distant first."""

    def check(values: Iterable[Any]) -> tuple[int, ...]:
        days = sorted({int(v) for v in values}, reverse=True)
        if any(v < 1 for v in days):
            raise Invalid("every threshold must be at least 1 day")
        return tuple(days)

    def parse(text: str) -> tuple[int, ...]:
        try:
            days = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise Invalid("must be comma-separated whole days, e.g. 30,14,7,1") from None
        return check(days)

    return Parser("comma-separated whole days", parse, (list, tuple), check)


def path() -> Parser:
    """A file-system path (empty: none)."""
    return Parser("path", lambda text: text.strip())


def database_url() -> Parser:
    """``postgres://…`` or ``sqlite:///…``; parsed by dj-database-url when the site is set up."""

    def parse(text: str) -> str:
        scheme = urlsplit(text.strip()).scheme
        if scheme not in {"postgres", "postgresql", "pgsql", "sqlite"}:
            raise Invalid("must be postgres://… or sqlite:///…")
        return text.strip()

    return Parser("database URL (`postgres://…`, `sqlite:///…`)", parse)


def redis_url() -> Parser:
    """``redis://``, ``rediss://`` or ``unix://`` (empty: no Redis)."""

    def parse(text: str) -> str:
        value = text.strip()
        if value and urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise Invalid("must start with redis://, rediss:// or unix://")
        return value

    return Parser("Redis URL (`redis://…`, `rediss://…`, `unix://…`)", parse)


RATE_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(text: str) -> tuple[int, int]:
    """``"600/minute"`` -> (600, 60): requests per period in seconds."""
    count, sep, period = text.partition("/")
    unit = period.strip()[:1].lower()
    if not sep or unit not in RATE_PERIODS or not period.strip().isalpha():
        raise Invalid("must look like 600/minute (per second, minute, hour or day)")
    try:
        number_of = int(count)
    except ValueError:
        raise Invalid("must look like 600/minute (per second, minute, hour or day)") from None
    if number_of < 1:
        raise Invalid("must allow at least 1 request")
    return number_of, RATE_PERIODS[unit]


def rate() -> Parser:
    """``N/second|minute|hour|day``; the text is kept (DRF's throttle settings take it)."""

    def parse(text: str) -> str:
        parse_rate(text)
        return text.strip()

    return Parser("rate `N/second`, `N/minute`, `N/hour` or `N/day`", parse)


def parse_kek_lines(text: str) -> dict[str, bytes]:
    """``id:base64url`` KEK entries (one per line or comma-separated, ``#`` comments); last = current.

    Errors name the entry by position and id only: a KEK's bytes never reach a message.
    """
    keks: dict[str, bytes] = {}
    entries = [
        part.strip()
        for line in text.splitlines()
        if not line.strip().startswith("#")
        for part in line.split(",")
    ]
    for number_of, entry in enumerate((e for e in entries if e), start=1):
        kek_id, sep, b64 = entry.partition(":")
        kek_id = kek_id.strip()
        if not sep or not KEK_ID_RE.match(kek_id):
            raise Invalid(f"entry {number_of}: KEK entries look like 'id:base64key'")
        try:
            key = base64.urlsafe_b64decode(b64.strip() + "=" * (-len(b64.strip()) % 4))
        except (binascii.Error, ValueError):
            raise Invalid(f"KEK {kek_id!r} is not valid base64") from None
        if len(key) != KEK_BYTES:
            raise Invalid(f"KEK {kek_id!r} is {len(key)} bytes; a KEK is {KEK_BYTES} bytes (AES-256)")
        keks.pop(kek_id, None)  # re-listing an id moves it to the end (makes it current)
        keks[kek_id] = key
    return keks


def kek_lines() -> Parser:
    """KEK entries, checked; the text is kept (pki.conf reads it together with KMI_KEK_FILE)."""

    def parse(text: str) -> str:
        parse_kek_lines(text)
        return text

    return Parser("KEK entries `id:base64url`, comma- or newline-separated", parse)


def dns_resolvers() -> Parser:
    """``ip``, ``ip:port`` or ``[v6]:port``, comma-separated."""

    def parse(text: str) -> tuple[tuple[str, int], ...]:
        out = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            if item.startswith("["):  # [v6]:port
                host, _, port = item[1:].partition("]:")
            elif item.count(":") == 1:
                host, _, port = item.partition(":")
            else:
                host, port = item, "53"
            try:
                out.append((host, int(port or 53)))
            except ValueError:
                raise Invalid(f"bad entry {item!r} (use ip or ip:port)") from None
        return tuple(out)

    return Parser("comma-separated `ip`, `ip:port` or `[v6]:port`", parse, (tuple,))


def pinned_hosts() -> Parser:
    """``name-or-glob=ip`` pairs, comma-separated."""

    def parse(text: str) -> tuple[tuple[str, str], ...]:
        out = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            pattern, sep, address = item.partition("=")
            try:
                ip = ipaddress.ip_address(address.strip())
            except ValueError:
                ip = None
            if not sep or not pattern.strip() or ip is None:
                raise Invalid(f"bad entry {item!r} (use name-or-glob=ip, e.g. **.example.test=127.0.0.1)")
            out.append((pattern.strip().lower(), str(ip)))
        return tuple(out)

    return Parser("comma-separated `name-or-glob=ip`", parse, (tuple,))


def _bounded(kind: str, minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{kind}, {minimum} to {maximum}"
    if minimum is not None:
        return f"{kind} ≥ {minimum}"
    return kind


# --- declarations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One environment variable KMI reads."""

    name: str
    parser: Parser
    default: str | None  # the text a missing variable stands for; None: computed (default_doc says how)
    meaning: str
    group: str
    secret: bool = False  # never echoed; NAME_FILE may hold it instead
    default_doc: str | None = None
    file_variant: bool = True  # secrets only: whether NAME_FILE is read

    @property
    def reads_file(self) -> bool:
        """True when ``NAME_FILE`` is read for this secret."""
        return self.secret and self.file_variant


# The reference's sections, in order, each with the page that explains what its settings control.
GROUPS = {
    "Site": "Where KMI runs: [Installation](../guide/installation.md), "
    "[Production deployment](../guide/deployment.md).",
    "Database, Redis and Celery": "PostgreSQL and Redis in production; without `REDIS_URL` an embedded "
    "broker under `KMI_DATA_DIR/broker` ([Scheduled lifecycle](../guide/lifecycle.md)).",
    "Keys": "How keys are sealed, and kept in an HSM: [Keys](../guide/keys.md).",
    "Issuance": "Limits and defaults of every issuance path.",
    "Revocation and CRLs": "[Revocation and CRLs](../guide/revocation.md), "
    "[HTTP repository](../api/repository.md).",
    "OCSP": "The responder, pre-signing and serving: [OCSP](../api/ocsp.md).",
    "REST API": "[Throttling](../api/rest.md#throttling).",
    "ACME": "[ACME](../api/acme.md).",
    "Device enrollment": "[EST](../guide/est.md) and [SCEP](../guide/scep.md).",
    "Signing and lifecycle": "[Signing only on workers](../guide/deployment.md#signing-only-on-workers), "
    "[Scheduled lifecycle](../guide/lifecycle.md).",
    "Notifications": "[Who is told](../guide/lifecycle.md#who-is-told).",
    "Operator console": "[Operator console](../guide/console.md).",
}

_SETTINGS: list[Setting] = []


def declare(
    name: str,
    parser: Parser,
    default: str | None,
    meaning: str,
    *,
    group: str,
    secret: bool = False,
    default_doc: str | None = None,
    file_variant: bool = True,
) -> Setting:
    """Declare a setting (once: a second declaration of a name is a programming error)."""
    if any(s.name == name for s in _SETTINGS):
        raise ValueError(f"{name} is declared twice")
    if group not in GROUPS:
        raise ValueError(f"{name}: unknown group {group!r}")
    setting = Setting(name, parser, default, meaning, group, secret, default_doc, file_variant)
    _SETTINGS.append(setting)
    return setting


_G = "Site"
declare(
    "KMI_BASE_URL",
    http_url(),
    "http://127.0.0.1:8000",
    "Public http URL written into every certificate's CRL Distribution Point and AIA.",
    group=_G,
)
declare(
    "KMI_DATA_DIR",
    path(),
    None,
    "Folder of the SQLite database, the embedded broker, the beat schedule and `make run`'s files.",
    group=_G,
    default_doc="`var/` in the source tree; `./var` when KMI is installed as a package",
)
declare(
    "DJANGO_SECRET_KEY",
    TEXT,
    "",
    "Django's secret (sessions, CSRF). Empty: a development key, refused when "
    "`KMI_REQUIRE_SECRET_KEY` is on.",
    group=_G,
    secret=True,
    default_doc="a development key",
)
declare("KMI_SECRET_KEY", TEXT, "", "Read when `DJANGO_SECRET_KEY` is not set.", group=_G, secret=True)
declare(
    "KMI_REQUIRE_SECRET_KEY",
    BOOLEAN,
    "false",
    "Refuse to start without a secret key (outside `KMI_DEBUG`).",
    group=_G,
)
declare("KMI_DEBUG", BOOLEAN, "false", "Django's debug mode; never in production.", group=_G)
declare(
    "KMI_ALLOWED_HOSTS",
    comma_list(),
    "*",
    "Host names the site answers (Django's ALLOWED_HOSTS; the raw OCSP path checks them too).",
    group=_G,
)
declare(
    "KMI_BEHIND_TLS_PROXY",
    BOOLEAN,
    "false",
    "A proxy terminates TLS and sets `X-Forwarded-Proto`; cookies become secure-only.",
    group=_G,
)
declare(
    "KMI_CSRF_TRUSTED_ORIGINS",
    comma_list(),
    "",
    "Origins trusted for unsafe requests (Django's CSRF_TRUSTED_ORIGINS).",
    group=_G,
)
declare(
    "KMI_LOG_LEVEL",
    choice("debug", "info", "warning", "error", "critical"),
    "info",
    "Level of the root logger.",
    group=_G,
)

_G = "Database, Redis and Celery"
declare(
    "DATABASE_URL",
    database_url(),
    None,
    "`postgres://…` in production.",
    group=_G,
    secret=True,
    default_doc="`sqlite:///` + `KMI_DATA_DIR/kmi.sqlite3`",
)
declare(
    "KMI_DB_CONN_MAX_AGE",
    integer(minimum=0),
    "60",
    "Seconds a PostgreSQL connection is kept for reuse.",
    group=_G,
)
declare(
    "REDIS_URL",
    redis_url(),
    "",
    "Celery broker and results, cache, ACME nonces, pre-signed OCSP responses; "
    "empty: an embedded filesystem broker and a per-process cache.",
    group=_G,
    secret=True,
)
declare(
    "KMI_CACHE_PREFIX",
    text_without_spaces(),
    "kmi",
    "Prefix of the cache's keys (and of ACME nonces).",
    group=_G,
)
declare(
    "KMI_REDIS_KEY_PREFIX",
    TEXT,
    "",
    "Prefix of the broker's and result store's keys: several KMI sets on one Redis database.",
    group=_G,
)
declare(
    "KMI_BROKER_VISIBILITY_TIMEOUT",
    integer(minimum=1),
    "3600",
    "Seconds after which a job a vanished worker held is given to another one.",
    group=_G,
)
declare("KMI_CELERY_EAGER", BOOLEAN, "false", "Run Celery tasks in the calling process.", group=_G)
declare(
    "KMI_REDIS_TIMEOUT",
    integer(minimum=1),
    "2",
    "Connect and socket timeout (s) of every Redis client: cache, throttles, broker, results, nonces.",
    group=_G,
)
declare("KMI_DB_CONNECT_TIMEOUT", integer(minimum=1), "5", "PostgreSQL connect timeout (s).", group=_G)

_G = "Keys"
declare(
    "KMI_KEK",
    kek_lines(),
    "",
    "Key-encryption keys, `id:base64url` comma- or newline-separated (the last is current); "
    "read together with `KMI_KEK_FILE`.",
    group=_G,
    secret=True,
    file_variant=False,
)
declare(
    "KMI_KEK_FILE",
    path(),
    "",
    "File of KEK entries, one per line (`manage.py create_kek --out FILE` makes or extends it).",
    group=_G,
)
declare(
    "KMI_DEFAULT_KEY_BACKEND",
    Parser("backend alias (`encrypted`, `pkcs11`)", str.strip),
    "encrypted",
    "Backend of new CA and responder keys (`pkcs11` needs `KMI_PKCS11_MODULE`).",
    group=_G,
)
declare("KMI_PKCS11_MODULE", path(), "", "PKCS#11 library of the HSM; empty: no `pkcs11` backend.", group=_G)
declare("KMI_PKCS11_TOKEN", TEXT, "kmi", "Label of the HSM token.", group=_G)
declare("KMI_PKCS11_PIN", TEXT, "", "User PIN of the HSM token.", group=_G, secret=True)
declare(
    "KMI_KEY_CACHE_SECONDS",
    integer(minimum=0),
    "300",
    "Seconds a process keeps an unsealed CA key in memory (0: unseal on every use).",
    group=_G,
)

_G = "Issuance"
declare("KMI_MAX_CSR_BYTES", integer(minimum=256), "16384", "Largest CSR accepted.", group=_G)
declare(
    "KMI_BACKDATE_SECONDS",
    integer(minimum=0),
    "60",
    "notBefore is set this far in the past (clock skew of relying parties).",
    group=_G,
)
declare(
    "KMI_AUDIT_LANES",
    integer(minimum=1),
    "8",
    "Hash chains of the audit trail written side by side (concurrent writers).",
    group=_G,
)
declare(
    "KMI_AUDIT_CHECKPOINT_PATH",
    path(),
    None,
    "Append-only file each signed audit checkpoint is written to (fsync) as it is made: keep it "
    "(or a copy) where a database writer cannot reach, and check it with "
    "`verify_audit --checkpoints FILE` ([Security model](../guide/security-model.md)).",
    group=_G,
    default_doc="`KMI_DATA_DIR/audit-checkpoints.jsonl`",
)
declare(
    "KMI_AUDIT_CHECKPOINT_WEBHOOK_URL",
    http_url(optional=True),
    "",
    "Webhook each audit checkpoint is also posted to once it is stored (event `audit.checkpoint`, "
    "signed like every KMI webhook); a failed post is logged, the file stays the record.",
    group=_G,
)
declare(
    "KMI_AUDIT_CHECKPOINT_SECONDS",
    integer(minimum=10),
    "300",
    "A signed audit checkpoint is made this often (a worker of the `signing` queue).",
    group=_G,
)

declare(
    "KMI_ALLOWED_DOMAINS",
    allowed_names(),
    "",
    "Names the seeded profiles (`tls-server`, `tls-client`, `tls-server-client`) certify: each "
    "domain allows itself and its subdomains, each IP network its addresses "
    "(`example.test,10.0.0.0/8`). Unset: only special-use names (`.test`, `.internal`, `.local`, "
    "`.home.arpa`, `localhost`) and private IP ranges, until an operator edits the profiles.",
    group=_G,
)

declare(
    "KMI_CA_CREATION_APPROVALS",
    integer(minimum=0, maximum=9),
    "1",
    "Administrators other than the one who asked who must approve a new CA (API and console) before "
    "its key is made; `0` creates it at once (a single-operator install). The command line "
    "(`init_ca`, the shell holding the KEK) creates directly, audited.",
    group=_G,
)

_G = "Revocation and CRLs"
declare(
    "KMI_CRL_NEXT_UPDATE_SECONDS",
    integer(minimum=60),
    "86400",
    "nextUpdate - thisUpdate; CRLs are re-published at half of it.",
    group=_G,
)
declare(
    "KMI_CRL_REVOCATION_DELAY",
    integer(minimum=2),
    "60",
    "Bound on the time from a revocation to its CRL (seconds).",
    group=_G,
)
declare(
    "KMI_CRL_KEEP_EXPIRED_DAYS",
    integer(minimum=0),
    "0",
    "Keep revoked certificates on the CRL this long after they expire.",
    group=_G,
)
declare("KMI_CRL_HISTORY", integer(minimum=1), "3", "CRLs kept in the database per CA partition.", group=_G)
declare("KMI_CRL_CACHE_SECONDS", integer(minimum=0), "300", "`max-age` cap of CRL responses.", group=_G)
declare(
    "KMI_CRL_DIR",
    path(),
    "",
    "Also write each CRL, the CA certificate and its chain to this directory (temporary file + rename);"
    " served from there while the database is down. Empty: only the database.",
    group=_G,
)

_G = "OCSP"
declare(
    "KMI_OCSP_RESPONSE_VALIDITY_SECONDS",
    integer(minimum=60),
    "3600",
    "nextUpdate - thisUpdate; re-signed at half of it.",
    group=_G,
)
declare(
    "KMI_OCSP_RESPONDER_VALIDITY_DAYS",
    integer(minimum=1, maximum=30),
    "7",
    "Responder certificate validity (the seeded `ocsp-signing` profile caps it at 30 days).",
    group=_G,
)
declare(
    "KMI_OCSP_RESPONDER_RENEW_FRACTION",
    number(minimum=0, maximum=1, exclusive=True),
    "0.5",
    "Renew the responder when less than this fraction of its validity is left.",
    group=_G,
)
declare(
    "KMI_OCSP_RESPONDER_KEY_TYPE",
    Parser("key type (`ec-p256`, `rsa-3072`, …: see [Keys](../guide/keys.md))", str.strip),
    "ec-p256",
    "Key type of new responder keys.",
    group=_G,
)
declare(
    "KMI_OCSP_REDIS_PREFIX",
    text_without_spaces(),
    "kmi:ocsp",
    "Redis key prefix of pre-signed responses.",
    group=_G,
)
declare(
    "KMI_OCSP_MAX_REQUEST_BYTES", integer(minimum=256), "4096", "Largest OCSP request accepted.", group=_G
)
declare(
    "KMI_OCSP_LOCAL_CACHE_SECONDS",
    number(minimum=0, maximum=60),
    "1",
    "Per-process cache in front of Redis (0 = off); bounds extra staleness.",
    group=_G,
)
declare(
    "KMI_OCSP_PRESIGN_DELAY_SECONDS",
    number(minimum=0, maximum=60),
    "2",
    "New certificates: one pre-signing task per CA per this window (0 = one per certificate).",
    group=_G,
)

_G = "REST API"
declare(
    "KMI_API_ENROLL_RATE",
    rate(),
    "6000/minute",
    "Per-user throttle of enroll, request submission and server-generated keys.",
    group=_G,
)
declare(
    "KMI_API_TOKEN_RATE", rate(), "30/minute", "Per-user throttle of token creation and revocation.", group=_G
)

_G = "ACME"
declare(
    "KMI_ACME_HTTP01_PORT",
    integer(minimum=1, maximum=65535),
    "80",
    "Port KMI connects to for http-01 (redirects only to it or to https:443).",
    group=_G,
)
declare(
    "KMI_ACME_TLS_ALPN01_PORT", integer(minimum=1, maximum=65535), "443", "Port for tls-alpn-01.", group=_G
)
declare(
    "KMI_ACME_DNS_RESOLVERS",
    dns_resolvers(),
    "",
    "Resolvers for dns-01 TXT and for A/AAAA lookups of the other challenges.",
    group=_G,
    default_doc="the system's",
)
declare(
    "KMI_ACME_HOSTS",
    pinned_hosts(),
    "",
    "Answers before DNS for http-01 and tls-alpn-01 (`make run`: the demo names → 127.0.0.1).",
    group=_G,
)
declare(
    "KMI_ACME_VALIDATE_INLINE",
    BOOLEAN,
    "false",
    "Validate in the web process instead of on Celery.",
    group=_G,
)
declare("KMI_ACME_VALIDATION_TIMEOUT", integer(minimum=1), "10", "Seconds per network check.", group=_G)
declare("KMI_ACME_NONCE_TTL", integer(minimum=30), "3600", "Seconds a nonce stays usable.", group=_G)
declare(
    "KMI_ACME_ORDER_LIFETIME",
    integer(minimum=60),
    "604800",
    "Seconds until an unfinished order expires.",
    group=_G,
)
declare(
    "KMI_ACME_MAX_BODY_BYTES",
    integer(minimum=4096),
    "65536",
    "Larger requests get `malformed` (413).",
    group=_G,
)
declare(
    "KMI_ACME_RETRY_AFTER",
    integer(minimum=1),
    "1",
    "`Retry-After` seconds on pending and processing resources.",
    group=_G,
)
declare(
    "KMI_ACME_REUSE_AUTHORIZATIONS",
    BOOLEAN,
    "true",
    "An account's valid authorization (until its order's expiry) counts again for its next order.",
    group=_G,
)

_G = "Device enrollment"
declare(
    "KMI_EST_PROXY_SECRET",
    TEXT,
    "",
    "Shared with the TLS proxy (docker/'s nginx), which sends it in `X-KMI-Proxy-Secret` with the "
    "verified client certificate in `X-KMI-Client-Cert`; without it that header is never trusted.",
    group=_G,
    secret=True,
    default_doc="none: no proxy-passed client certificates",
)
declare(
    "KMI_DEVICE_RETRY_AFTER",
    integer(minimum=1, maximum=86400),
    "300",
    "Seconds an EST device (202) or SCEP client (PENDING) is told to wait for an approval.",
    group=_G,
)

_G = "Signing and lifecycle"
declare(
    "KMI_SIGNING",
    choice("inprocess", "worker"),
    "inprocess",
    "`worker`: CA keys are used only on Celery workers of the `signing` queue, so web processes need no KEK.",
    group=_G,
)
declare(
    "KMI_SIGNING_SECRET",
    TEXT,
    "",
    "Key (at least 32 characters) of the HMAC-SHA256 over every signing job and its result, "
    "held by web processes and signing workers only; required with `KMI_SIGNING=worker`.",
    group=_G,
    secret=True,
)
declare(
    "KMI_SIGNING_TIMEOUT",
    integer(minimum=1),
    "30",
    "Seconds a caller waits for a signing worker before `signing_unavailable`.",
    group=_G,
)
declare("KMI_LIFECYCLE_SCAN_SECONDS", integer(minimum=1), "3600", "Period of the expiry scan.", group=_G)
declare(
    "KMI_RECONCILE_AFTER_SECONDS",
    integer(minimum=1),
    "300",
    "Seconds after which an approved request nobody issued is issued by the reconciler job.",
    group=_G,
)
declare(
    "KMI_APPROVED_MAX_AGE_SECONDS",
    integer(minimum=60),
    "86400",
    "Age at which an approved request nobody issued is given up (state failed).",
    group=_G,
)
declare(
    "KMI_EXPIRY_THRESHOLDS",
    day_thresholds(),
    "30,14,7,1",
    "Days before notAfter at which owners are told.",
    group=_G,
)
declare(
    "KMI_CA_EXPIRY_THRESHOLDS",
    day_thresholds(),
    "180,90,30,7",
    "Days before a CA's notAfter at which its contacts are told.",
    group=_G,
)
declare(
    "KMI_AUTO_RENEW_DAYS",
    integer(minimum=1),
    "30",
    "`auto_renew` certificates are renewed this many days before notAfter.",
    group=_G,
)
declare(
    "KMI_AUTO_RENEW_NEW_KEY",
    BOOLEAN,
    "false",
    "Auto-renewal makes a new key instead of reusing it.",
    group=_G,
)
declare(
    "KMI_KEY_RETENTION_DAYS",
    integer(minimum=0),
    "365",
    "Deactivated or compromised keys older than this are crypto-shredded (0 = never).",
    group=_G,
)
declare(
    "KMI_SERVICE_CERT_NAMES",
    comma_list(),
    "",
    "DNS names of KMI's own TLS certificate (renewed by `pki.signing.renew_service_certificates`).",
    group=_G,
)
declare("KMI_SERVICE_CERT_DIR", path(), "", "Where KMI's own TLS certificate and key are written.", group=_G)
declare("KMI_SERVICE_CA", TEXT, "issuing", "CA that issues KMI's own TLS certificate.", group=_G)
declare("KMI_SERVICE_PROFILE", TEXT, "tls-server", "Profile of KMI's own TLS certificate.", group=_G)
declare(
    "KMI_SERVICE_RENEW_DAYS",
    integer(minimum=1),
    "30",
    "KMI's own TLS certificate is re-issued this many days before it expires.",
    group=_G,
)
declare(
    "KMI_METRICS_TOKEN",
    TEXT,
    "",
    "Bearer token `/metrics` asks for; empty: `/metrics` is open.",
    group=_G,
    secret=True,
)

_G = "Notifications"
declare("KMI_ALERT_EMAILS", comma_list(), "", "Addresses told about every CA alert.", group=_G)
# The threat monitor (pki/transparency/monitor.py): its alerts go to the two channels above.
declare(
    "KMI_MONITOR_SPIKE_FACTOR",
    number(minimum=1, maximum=1000),
    "5",
    "Issuance in the last hour alerts above this many times its baseline (same hour, last 7 days).",
    group=_G,
)
declare(
    "KMI_MONITOR_SPIKE_FLOOR",
    integer(minimum=1),
    "20",
    "Fewer certificates than this in an hour never count as a spike (a new, quiet account).",
    group=_G,
)
declare(
    "KMI_MONITOR_BURST",
    integer(minimum=1),
    "10",
    "Failed ACME challenges, failed console logins or API 4xx per subject in 10 minutes that alert.",
    group=_G,
)
declare(
    "KMI_MONITOR_CA_EXPIRY_DAYS",
    integer(minimum=1),
    "30",
    "A CA certificate this close to its notAfter raises an alert.",
    group=_G,
)
declare("KMI_ALERT_WEBHOOK_URL", http_url(optional=True), "", "Webhook told about every CA alert.", group=_G)
declare(
    "KMI_WEBHOOK_SECRET",
    TEXT,
    "",
    "Key of the `X-KMI-Signature` HMAC-SHA256 over `timestamp.body` of every webhook.",
    group=_G,
    secret=True,
)
declare("KMI_WEBHOOK_TIMEOUT", integer(minimum=1), "10", "Seconds a webhook call may take.", group=_G)
declare("KMI_NOTIFY_MAX_ATTEMPTS", integer(minimum=1), "5", "Attempts per notice.", group=_G)
declare(
    "KMI_NOTIFY_RETRY_SECONDS",
    integer(minimum=1),
    "300",
    "First retry delay of a failed notice (doubling after each attempt).",
    group=_G,
)
declare(
    "KMI_NOTIFY_CLAIM_LEASE_SECONDS",
    integer(minimum=1),
    "900",
    "A notice claimed by a worker that died is sent again after this long.",
    group=_G,
)
declare(
    "KMI_EMAIL_BACKEND",
    TEXT,
    "django.core.mail.backends.smtp.EmailBackend",
    "Django e-mail backend.",
    group=_G,
)
declare("KMI_EMAIL_HOST", TEXT, "localhost", "SMTP server.", group=_G)
declare("KMI_EMAIL_PORT", integer(minimum=1, maximum=65535), "25", "SMTP port.", group=_G)
declare("KMI_EMAIL_USER", TEXT, "", "SMTP user name.", group=_G)
declare("KMI_EMAIL_PASSWORD", TEXT, "", "SMTP password.", group=_G, secret=True)
declare("KMI_EMAIL_STARTTLS", BOOLEAN, "false", "Use STARTTLS.", group=_G)
declare("KMI_EMAIL_TIMEOUT", integer(minimum=1), "10", "Seconds an SMTP exchange may take.", group=_G)
declare(
    "KMI_EMAIL_FILE_PATH",
    path(),
    None,
    "Folder of the file-based e-mail backend.",
    group=_G,
    default_doc="`KMI_DATA_DIR/mail`",
)
declare("KMI_EMAIL_FROM", TEXT, "kmi@localhost", "Sender address.", group=_G)

_G = "Operator console"
declare(
    "KMI_CONSOLE_TOTP_FOR_ALL",
    BOOLEAN,
    "false",
    "Every console user gives a TOTP code at sign-in, not only administrators and CA operators.",
    group=_G,
)
declare("KMI_CONSOLE_TOTP_ISSUER", TEXT, "KMI", "The name authenticator apps show for KMI.", group=_G)
declare(
    "KMI_CONSOLE_SUMMARY_SECONDS",
    integer(minimum=10),
    "300",
    "How often a worker recounts the dashboard's per-CA certificate figures.",
    group=_G,
)
declare(
    "KMI_LOGIN_FAILURE_LIMIT",
    integer(minimum=1),
    "5",
    "Wrong passwords or codes before a user name is locked out from that address.",
    group=_G,
)
declare("KMI_LOGIN_COOLOFF_MINUTES", integer(minimum=1), "15", "How long a lock-out lasts.", group=_G)
declare("KMI_SESSION_SECONDS", integer(minimum=300), "28800", "A console session's longest life.", group=_G)
del _G

SETTINGS: Mapping[str, Setting] = {s.name: s for s in _SETTINGS}


# --- reading -----------------------------------------------------------------------------------


def _problem(setting: Setting, shown: str | None, why: str, *, source: str | None = None) -> str:
    """``NAME='value' why``; a secret's value (or one from a file) is never shown."""
    if setting.secret or shown is None or source is not None:
        return f"{source or setting.name} {why}"
    return f"{setting.name}={shown} {why}"


def coerce(name: str, value: object) -> Any:
    """Validate ``value`` (text or typed; None means the default) as setting ``name`` requires."""
    setting = SETTINGS[name]
    if value is None:
        if setting.default is None:
            return None
        value = setting.default
    try:
        return setting.parser(value)
    except Invalid as exc:
        raise ImproperlyConfigured(_problem(setting, repr(value), str(exc))) from None


def _raw(setting: Setting, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The variable's text (or its ``_FILE``'s) and where it came from; (None, None) when unset."""
    value = environ.get(setting.name)
    if not setting.reads_file:
        return value, None
    file_name = f"{setting.name}_FILE"
    file_path = environ.get(file_name)
    if value and file_path:
        raise ImproperlyConfigured(f"set {setting.name} or {file_name}, not both")
    if file_path:
        try:
            return Path(file_path).read_text(encoding="utf-8").strip(), f"{file_name}={file_path}"
        except OSError as exc:
            raise ImproperlyConfigured(f"{file_name}={file_path!r} cannot be read: {exc.strerror}") from None
    return value, None


def read(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """The parsed value of one variable (its default when unset)."""
    setting = SETTINGS[name]
    raw, source = _raw(setting, os.environ if environ is None else environ)
    if raw is None or not raw.strip():  # KMI_X= (as compose files pass unset values) means unset
        return coerce(name, None)
    try:
        return setting.parser(raw)
    except Invalid as exc:
        raise ImproperlyConfigured(_problem(setting, repr(raw), str(exc), source=source)) from None


def load_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every declared setting, parsed; one ImproperlyConfigured naming every bad variable."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name in SETTINGS:
        try:
            values[name] = read(name, environ)
        except ImproperlyConfigured as exc:
            problems.append(str(exc))
    if problems:
        raise ImproperlyConfigured("; ".join(problems))
    return values


# --- the manual's reference page ---------------------------------------------------------------


def _anchor(group: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", group.lower()).strip("-")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def reference_markdown() -> str:
    """docs/reference/configuration.md: every setting, by group."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated from pki/settings_registry.py by `make docs`; edit the declarations there. -->",
        "",
        "KMI reads its settings from environment variables, each declared once in",
        "`pki/settings_registry.py`. Every variable is parsed and checked when a process starts",
        "(web, worker, beat, a command): a bad value stops it with one message that names each bad",
        "variable, and never shows a secret's value. A variable set to nothing (`KMI_X=`) counts as",
        "unset: it has its default.",
        "",
        "A secret can instead be read from a file named by the variable with `_FILE` appended",
        "(`DJANGO_SECRET_KEY_FILE=/run/secrets/django_secret_key`); setting both is an error.",
        "",
        "Groups: " + ", ".join(f"[{g}](#{_anchor(g)})" for g in GROUPS) + ".",
        "",
    ]
    for group, intro in GROUPS.items():
        lines += [
            f"## {group}",
            "",
            intro,
            "",
            "| variable | type | default | meaning |",
            "| --- | --- | --- | --- |",
        ]
        for s in _SETTINGS:
            if s.group != group:
                continue
            name = f"`{s.name}`"
            if s.reads_file:
                name += f" (or `{s.name}_FILE`)"
            if s.secret:
                name += " — secret"
            if s.default_doc is not None:
                default = s.default_doc
            elif s.default:
                default = f"`{s.default}`"
            else:
                default = "empty"
            lines.append(f"| {name} | {_cell(s.parser.kind)} | {_cell(default)} | {_cell(s.meaning)} |")
        lines.append("")
    return "\n".join(lines)
