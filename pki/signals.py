"""Domain signals, sent after the change they announce has committed (or, for a request to the
workers, outside any transaction).

Receivers (Celery adapters that refresh OCSP responses or schedule a CRL) connect in
``pki.tasks``; the use cases never know who listens.
"""

from __future__ import annotations

from django.dispatch import Signal

# Sent after commit with ``certificate_ids: list[int]`` and ``ca_ids: list[int]`` whenever a
# certificate's revocation status changes (revoked, put on hold, released from hold).
certificate_status_changed = Signal()

# Sent after commit with ``certificate_id: int`` and ``ca_id: int`` when a certificate is issued.
certificate_issued = Signal()

# Sent after commit with ``record_id: int``, ``channel: str`` and ``kind: str`` when a notice was
# delivered and recorded as sent.
notification_sent = Signal()

# Sent by the signing seam (pki.signing.run_signing) with ``use_case: str``, ``seconds: float``,
# ``outcome: str`` ("ok" or a domain error code) and ``placement: str`` ("inprocess"/"worker").
signing_finished = Signal()

# Sent outside any transaction with ``certificate_ids: list[int]`` and ``ca_ids: list[int]`` by an
# OCSP responder that cannot sign (KMI_SIGNING=worker, no KEK) when it was asked about an unexpired
# certificate that has no pre-signed response: the receiver enqueues its pre-signing.
ocsp_response_missing = Signal()

# Sent after commit with ``challenge_id: int`` when an ACME client said a challenge is ready and it
# is not validated in process (KMI_ACME_VALIDATE_INLINE off): the receiver enqueues its validation.
acme_challenge_ready = Signal()

# Sent after commit with ``order_id: int`` and ``actor: str`` when an ACME order waits for a signing
# worker (KMI_SIGNING=worker): the receiver hands it over (a beat sweep catches a lost hand-over).
acme_order_processing = Signal()

# Sent after commit (no arguments) when notices were planned that should go out now rather than
# at the next expiry scan (a renewal's successor, an alert): the receiver enqueues delivery.
notices_planned = Signal()

# Sent after commit with ``checkpoint_id: int`` when a signed audit checkpoint was stored and
# exported (pki.audit_checkpoints.make_checkpoint): a receiver may anchor it elsewhere (the
# transparency log).
checkpoint_made = Signal()
