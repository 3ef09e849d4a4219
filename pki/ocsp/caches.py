"""Per-process caches of the OCSP responder: the CA index (``ISSUERS``), each generation's
responder (``SIGNERS``), a micro-cache of pre-signed responses (``LOCAL``) and the misses already
reported to the signing queue (``MISSES``).

A fast path in front of the database and Redis, which may never diverge from them in what an
answer says: an unknown CA name or CertID reloads the index (at most every
``INDEX_RELOAD_SECONDS``); a responder is re-read every minute and never used past its
certificate's notAfter; ``LOCAL`` serves a response no longer than
``KMI_OCSP_LOCAL_CACHE_SECONDS`` after it was read and never past its nextUpdate. Their twin
tests: tests/pki/test_ocsp.py (``test_released_hold_is_good_again_at_once``,
``test_revocation_resigns_the_presigned_response_at_once``: the cached path answers what the
database says) and tests/web/test_ocsp.py (``test_a_new_generation_answers_at_its_own_ocsp_url``).
"""

from __future__ import annotations

import datetime as dt
import threading
import time

from pki.generations import answering_generations
from pki.models.authority import CertificateAuthority
from pki.models.key import KeyState
from pki.models.ocsp import OCSPResponder
from pki.ocsp.issuers import HASHES, Issuer
from pki.ocsp.responses import SignedResponse, Signer
from pki.ocsp.store import STORE
from pki.signals import ocsp_response_missing
from pki.x509 import ocsp_der

INDEX_RELOAD_SECONDS = 5.0  # an unknown issuer reloads the CA index at most this often
RESPONDER_RELOAD_SECONDS = 60.0  # live signing picks up a renewed responder within this
MISS_PRESIGN_INTERVAL_SECONDS = 10.0  # a process asks for a missing response at most this often


class IssuerIndex:
    """Per-process map from CA names and CertID issuer hashes to CAs, reloaded on a miss."""

    def __init__(self) -> None:
        self._by_name: dict[str, Issuer] = {}
        self._by_hash: dict[tuple[str, bytes, bytes], Issuer] = {}
        self._loaded = -INDEX_RELOAD_SECONDS
        self._lock = threading.Lock()

    def reload(self) -> None:
        """Read every generation of every CA with a certificate that still answers for what it issued."""
        issuers = [
            Issuer.of(generation)
            for ca in CertificateAuthority.objects.select_related("certificate", "key").filter(
                certificate__isnull=False
            )
            for generation in answering_generations(ca)
        ]
        with self._lock:
            self._by_name = {i.name: i for i in issuers}
            self._by_hash = {
                (alg, i.name_hashes[alg], i.key_hashes[alg]): i for i in issuers for alg in HASHES
            }
            self._loaded = time.monotonic()

    def clear(self) -> None:
        """Forget every CA (the next lookup reloads)."""
        with self._lock:
            self._by_name, self._by_hash = {}, {}
            self._loaded = -INDEX_RELOAD_SECONDS

    def _maybe_reload(self) -> bool:
        if time.monotonic() - self._loaded < INDEX_RELOAD_SECONDS:
            return False
        self.reload()
        return True

    def by_name(self, name: str) -> Issuer | None:
        """The CA named ``name`` in the URL, if KMI has it."""
        hit = self._by_name.get(name)
        if hit is None and self._maybe_reload():
            hit = self._by_name.get(name)
        return hit

    def by_cert_id(self, cert_id: ocsp_der.CertID) -> Issuer | None:
        """The CA a CertID names by its issuer name and key hashes, if KMI has it."""
        key = (cert_id.hash_algorithm, cert_id.issuer_name_hash, cert_id.issuer_key_hash)
        hit = self._by_hash.get(key)
        if hit is None and self._maybe_reload():
            hit = self._by_hash.get(key)
        return hit


class SignerCache:
    """Per-process cache of each CA generation's responder (reloaded every minute and before it
    expires)."""

    def __init__(self) -> None:
        self._signers: dict[tuple[int, int], tuple[float, Signer]] = {}

    def get(self, ca_id: int, now: dt.datetime, generation: int = 1) -> Signer | None:
        """The signer of the current responder of CA ``ca_id``'s ``generation``, or None when it
        has none (yet)."""
        hit = self._signers.get((ca_id, generation))
        fresh = hit is not None and time.monotonic() - hit[0] < RESPONDER_RELOAD_SECONDS
        if hit is not None and fresh and hit[1].not_after > now:
            return hit[1]
        responder = (
            OCSPResponder.objects.select_related("certificate", "key")
            .filter(ca_id=ca_id, generation=generation)
            .first()
        )
        if responder is None or responder.key.state != KeyState.ACTIVE:
            return None
        if responder.certificate.not_after <= now:
            return None
        signer = Signer.of(responder)
        self._signers[(ca_id, generation)] = (time.monotonic(), signer)
        return signer

    def clear(self) -> None:
        """Forget every cached responder."""
        self._signers.clear()


class LocalCache:
    """A per-process micro-cache in front of Redis: a response read less than
    ``local_cache_seconds`` ago is served again without a round trip. It bounds how stale an
    answer can be after a re-signing to that many seconds (0 turns it off)."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._entries: dict[tuple[int, str, str], tuple[float, SignedResponse]] = {}

    def get(self, key: tuple[int, str, str]) -> SignedResponse | None:
        """The response read within the last ``local_cache_seconds``, or None."""
        hit = self._entries.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, key: tuple[int, str, str], response: SignedResponse, seconds: float) -> None:
        """Remember ``response`` for ``seconds``."""
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()  # cheap and bounded; the next reads refill from Redis
        self._entries[key] = (time.monotonic() + seconds, response)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()


class MissedResponses:
    """Certificates this process asked the signing queue to pre-sign, and until when it waits
    before asking again: a burst of requests for one missing response sends one message."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._until: dict[int, float] = {}
        self._lock = threading.Lock()

    def ask(self, *, ca_id: int, certificate_id: int) -> bool:
        """Ask for the certificate's responses to be pre-signed, unless asked for recently."""
        now = time.monotonic()
        with self._lock:
            if self._until.get(certificate_id, 0.0) > now:
                return False
            if len(self._until) >= self.MAX_ENTRIES:
                self._until = {k: v for k, v in self._until.items() if v > now}
            self._until[certificate_id] = now + MISS_PRESIGN_INTERVAL_SECONDS
        # The receiver (pki.tasks) enqueues pki.ocsp_presign on the signing queue.
        ocsp_response_missing.send(sender=MissedResponses, certificate_ids=[certificate_id], ca_ids=[ca_id])
        return True

    def clear(self) -> None:
        """Forget every request."""
        with self._lock:
            self._until.clear()


ISSUERS = IssuerIndex()
SIGNERS = SignerCache()
LOCAL = LocalCache()
MISSES = MissedResponses()


def reset_caches() -> None:
    """Forget this process's CA index, responders and Redis client (tests, settings changes)."""
    ISSUERS.clear()
    SIGNERS.clear()
    LOCAL.clear()
    MISSES.clear()
    STORE.reset()
