"""OCSP responder (RFC 6960, RFC 5019): delegated responders, pre-signed and live responses.

Each CA has a delegated responder: a key KMI generates for the purpose and a short-lived
certificate from the CA under the ``ocsp-signing`` profile (id-kp-OCSPSigning,
id-pkix-ocsp-nocheck). Responses are signed with the responder key only, so a CA key never
signs OCSP and web processes never need one.

Celery pre-signs a response for every unexpired certificate and both CertID hashes (SHA-1,
SHA-256), keeps it in Redis (when ``REDIS_URL`` is set) and in the ``OCSPResponse`` table, and
re-signs at half-life and right after a revocation. ``answer`` serves a plain request from
Redis with no database query, falls back to the table, and signs live (with the responder
key) for a nonce, several requests in one, or a miss.

A process that cannot sign (``KMI_SIGNING=worker``, or no KEK to unseal the responder key)
never tries to: it answers a nonce request with the pre-signed response (RFC 8954 §2.1 lets a
responder leave the nonce out), a miss with ``tryLater`` while it asks the signing queue to
pre-sign that certificate, and what only a live signature could answer with ``tryLater``.

The package, by part: ``responders`` (responder certificates), ``responses`` (signing a
response), ``issuers`` (CAs as CertIDs name them), ``store`` (Redis and the table), ``caches``
(per-process caches), ``presign`` (the beat and signal-driven pre-signing) and ``answers``
(answering a request). What other modules use is imported here.
"""

from pki.ocsp.answers import INTERNAL_ERROR, MALFORMED, TRY_LATER, UNAUTHORIZED, Answer, answer, signs_live
from pki.ocsp.caches import ISSUERS, LOCAL, MISSES, SIGNERS, reset_caches
from pki.ocsp.issuers import Issuer
from pki.ocsp.presign import presign_responses, refresh_responses
from pki.ocsp.responders import RESPONDER_PROFILE, ensure_ocsp_responder, responder_subject
from pki.ocsp.responses import SignedResponse, Signer, build_response, single_status
from pki.ocsp.store import PRESIGNED_HASHES, STORE

__all__ = [
    "INTERNAL_ERROR",
    "ISSUERS",
    "LOCAL",
    "MALFORMED",
    "MISSES",
    "PRESIGNED_HASHES",
    "RESPONDER_PROFILE",
    "SIGNERS",
    "STORE",
    "TRY_LATER",
    "UNAUTHORIZED",
    "Answer",
    "Issuer",
    "SignedResponse",
    "Signer",
    "answer",
    "build_response",
    "ensure_ocsp_responder",
    "presign_responses",
    "refresh_responses",
    "reset_caches",
    "responder_subject",
    "signs_live",
    "single_status",
]
