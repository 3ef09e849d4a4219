"""Keys: metadata of every key KMI knows, and the sealed material of the encrypted backend."""

from __future__ import annotations

import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from django.db import models


class KeyType(models.TextChoices):
    """Key algorithms KMI can generate and accept (the CLI's ``--key-type`` values)."""

    RSA_2048 = "rsa-2048", "RSA 2048"
    RSA_3072 = "rsa-3072", "RSA 3072"
    RSA_4096 = "rsa-4096", "RSA 4096"
    EC_P256 = "ec-p256", "ECDSA P-256"
    EC_P384 = "ec-p384", "ECDSA P-384"
    EC_P521 = "ec-p521", "ECDSA P-521"
    ED25519 = "ed25519", "Ed25519"
    ED448 = "ed448", "Ed448"
    # FIPS 204 / RFC 9881 ML-DSA (post-quantum), signed by cryptography 50's bundled OpenSSL.
    ML_DSA_44 = "ml-dsa-44", "ML-DSA-44"
    ML_DSA_65 = "ml-dsa-65", "ML-DSA-65"
    ML_DSA_87 = "ml-dsa-87", "ML-DSA-87"


class KeyState(models.TextChoices):
    """Key states of NIST SP 800-57 Part 1 §5.3."""

    PRE_ACTIVATION = "pre_activation", "Pre-activation"
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    DEACTIVATED = "deactivated", "Deactivated"
    COMPROMISED = "compromised", "Compromised"
    DESTROYED = "destroyed", "Destroyed"


class KeyPurpose(models.TextChoices):
    """What a key KMI holds is for."""

    CA = "ca", "CA signing"
    OCSP = "ocsp", "OCSP responder"
    SCEP_RA = "scep_ra", "SCEP registration authority"
    END_ENTITY = "end_entity", "End entity (server-generated)"
    EXTERNAL = "external", "External (public key only)"
    AUDIT = "audit", "Audit checkpoint signing"
    TRANSPARENCY = "transparency", "Transparency log (signs tree heads)"


class KeyQuerySet(models.QuerySet["Key"]):
    """Named filters over keys."""

    def usable(self) -> KeyQuerySet:
        """Keys that may sign now."""
        return self.filter(state=KeyState.ACTIVE)


class Key(models.Model):
    """A key pair. The private half lives only behind its backend; this row holds metadata."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key_type = models.CharField(max_length=16, choices=KeyType.choices)
    purpose = models.CharField(max_length=16, choices=KeyPurpose.choices, default=KeyPurpose.CA)
    backend = models.CharField(max_length=32, help_text="alias of the KeyBackend in settings")
    handle = models.CharField(max_length=255, blank=True, help_text="opaque, backend-specific")
    public_key_der = models.BinaryField(help_text="SubjectPublicKeyInfo, DER")
    spki_sha256 = models.CharField(max_length=64, db_index=True, help_text="SHA-256 of the SPKI")
    state = models.CharField(max_length=16, choices=KeyState.choices, default=KeyState.PRE_ACTIVATION)
    escrow = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    activated_at = models.DateTimeField(null=True, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    compromised_at = models.DateTimeField(null=True, blank=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)
    destroyed_by = models.CharField(max_length=150, blank=True)

    objects = KeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.key_type} key {self.spki_sha256[:16]} ({self.state})"

    def public_key(self) -> PublicKeyTypes:
        """Return the public key (from the stored SPKI; no backend call)."""
        return serialization.load_der_public_key(bytes(self.public_key_der))


class SealedKey(models.Model):
    """Private key material of the ``encrypted`` backend.

    The PKCS#8 DER is sealed with AES-256-GCM under a per-key data key (DEK); the DEK is itself
    sealed with AES-256-GCM under a key-encryption key (KEK) named by ``kek_id``. Both use the
    key's id as associated data, so a blob moved onto another key's row does not decrypt.
    Deleting this row destroys the key (crypto-shredding).
    """

    key = models.OneToOneField(Key, on_delete=models.CASCADE, primary_key=True, related_name="sealed")
    kek_id = models.CharField(max_length=64, db_index=True)
    wrapped_dek = models.BinaryField()
    ciphertext = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    rewrapped_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"sealed key {self.key_id} under KEK {self.kek_id}"


class TwoPersonState(models.TextChoices):
    """A key operation that needs a second person: asked, then approved (done) or withdrawn."""

    PENDING = "pending", "Waiting for a second person"
    APPROVED = "approved", "Approved"
    DONE = "done", "Done"
    CANCELLED = "cancelled", "Cancelled"


class KeyDestruction(models.Model):
    """A request to destroy a CA key: one administrator asks, a different one approves, then the
    key is destroyed (``pki.destruction``)."""

    key = models.ForeignKey(Key, on_delete=models.PROTECT, related_name="destructions")
    reason = models.TextField(blank=True)
    state = models.CharField(max_length=16, choices=TwoPersonState.choices, default=TwoPersonState.PENDING)
    requester = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_by = models.CharField(max_length=150, help_text="audit actor who asked")
    approver = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_by = models.CharField(max_length=150, blank=True, help_text="audit actor who approved")
    created_at = models.DateTimeField()
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=models.Q(state="pending"), name="pki_keydestruction_one_pending"
            )
        ]

    def __str__(self) -> str:
        return f"destruction of key {self.key_id} ({self.state})"


class KeyRecovery(models.Model):
    """Recovering an escrowed key: one key recovery officer asks, a different one approves, then the
    one who asked downloads it once as a PKCS#12 (``pki.recovery``)."""

    key = models.ForeignKey(Key, on_delete=models.PROTECT, related_name="recoveries")
    reason = models.TextField()
    state = models.CharField(max_length=16, choices=TwoPersonState.choices, default=TwoPersonState.PENDING)
    requester = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="+")
    requested_by = models.CharField(max_length=150)
    approver = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_by = models.CharField(max_length=150, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "key recoveries"

    def __str__(self) -> str:
        return f"recovery of key {self.key_id} ({self.state})"
