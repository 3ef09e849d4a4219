"""The encrypted key backend: sealing, associated data, KEKs, re-wrapping, destruction."""

from __future__ import annotations

import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from pki.destruction import approve_key_destruction, destroy_key, request_key_destruction
from pki.enrollment import sign_csr
from pki.exceptions import ConfigurationError, InvalidState, KeyBackendError
from pki.keys import get_backend, key_type_of
from pki.keys.base import KeyBackend, generate_private_key, issuer_public_key, signature_hash
from pki.keys.encrypted import EncryptedKeyBackend
from pki.keystore import generate_key, rewrap_keys
from pki.models import AuditEvent, Key, KeyState, KeyType, SealedKey
from pki.models.authority import CAState
from pki.models.key import KeyDestruction, TwoPersonState
from tests.conftest import NOW, kek_line, load_key, make_csr

pytestmark = pytest.mark.django_db

TEST_KEK = "test-1:dGVzdC1rZWstMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY="


def fresh() -> EncryptedKeyBackend:
    """A backend with an empty key cache, as a new process would have."""
    return EncryptedKeyBackend(alias="encrypted")


def new_key(key_type: str = "ec-p256") -> Key:
    return generate_key(key_type=key_type, purpose="ca", actor="t", now=NOW)


def test_backend_satisfies_the_protocol():
    assert isinstance(get_backend(), KeyBackend)
    # One instance per alias, whichever way it is named: destroy() must empty the cache signers use.
    assert get_backend("encrypted") is get_backend()
    with pytest.raises(ConfigurationError, match="no key backend named 'hsm' is configured"):
        get_backend("hsm")


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "ed25519", "ed448"])
def test_round_trip_signs_with_the_sealed_key(key_type):
    key = new_key(key_type)
    backend = fresh()
    assert backend.public_key(key.handle) == key.public_key()
    data = b"to be signed"
    digest = signature_hash(key_type)
    signature = backend.sign_data(key.handle, data, digest)
    public = key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        assert digest is not None
        public.verify(signature, data, ec.ECDSA(digest))
    else:
        public.verify(signature, data)  # type: ignore[call-arg]
    sealed = SealedKey.objects.get(key=key)
    assert sealed.kek_id == "test-1"
    assert len(bytes(sealed.wrapped_dek)) == 12 + 32 + 16  # nonce, AES-256 DEK, GCM tag


def test_rsa_round_trip_with_an_imported_key():
    backend = fresh()
    key_id = uuid.uuid4()
    private = load_key("rsa-2048")
    Key.objects.create(
        id=key_id,
        key_type="rsa-2048",
        backend="encrypted",
        handle=str(key_id),
        created_at=NOW,
        public_key_der=b"",
    )
    handle = backend.store(key_id=key_id, private_key=private)
    signature = fresh().sign_data(handle, b"x", hashes.SHA256())
    assert isinstance(private, rsa.RSAPrivateKey)
    private.public_key().verify(signature, b"x", padding.PKCS1v15(), hashes.SHA256())


def test_key_id_is_bound_as_associated_data():
    a, b = new_key(), new_key()
    sa, sb = SealedKey.objects.get(key=a), SealedKey.objects.get(key=b)
    # Move b's sealed blobs onto a's row: same KEK, valid ciphertexts, wrong key id.
    SealedKey.objects.filter(key=a).update(wrapped_dek=sb.wrapped_dek, ciphertext=sb.ciphertext)
    with pytest.raises(KeyBackendError, match=f"key {a.handle} does not decrypt: wrong KEK or tampered data"):
        fresh().public_key(a.handle)
    # Only the ciphertext swapped (the DEK is a's own): still refused.
    SealedKey.objects.filter(key=a).update(wrapped_dek=sa.wrapped_dek, ciphertext=sb.ciphertext)
    with pytest.raises(KeyBackendError, match="does not decrypt"):
        fresh().public_key(a.handle)
    SealedKey.objects.filter(key=a).update(wrapped_dek=sa.wrapped_dek, ciphertext=sa.ciphertext)
    assert fresh().public_key(a.handle) == a.public_key()


def test_a_tampered_ciphertext_is_refused():
    key = new_key()
    blob = bytearray(SealedKey.objects.get(key=key).ciphertext)
    blob[20] ^= 1
    SealedKey.objects.filter(key=key).update(ciphertext=bytes(blob))
    with pytest.raises(KeyBackendError, match="wrong KEK or tampered data"):
        fresh().public_key(key.handle)


def test_unknown_kek_is_named(use_keks):
    key = new_key()
    use_keks(kek_line("test-2", b"other"))
    with pytest.raises(KeyBackendError, match=r"KEK 'test-1' is not configured \(known: test-2\)"):
        get_backend().public_key(key.handle)


def test_wrong_kek_under_the_same_id_fails_clearly(use_keks):
    key = new_key()
    use_keks(kek_line("test-1", b"an impostor"))
    with pytest.raises(KeyBackendError, match="does not decrypt: wrong KEK or tampered data"):
        get_backend().public_key(key.handle)


def test_no_kek_at_all_is_a_configuration_error(use_keks):
    key = new_key()
    use_keks()
    with pytest.raises(ConfigurationError, match="no key-encryption key: set KMI_KEK_FILE or KMI_KEK"):
        get_backend().public_key(key.handle)
    with pytest.raises(ConfigurationError):
        new_key()


def test_rewrap_then_old_kek_removed_still_signs(issuing_ca, profile, use_keks):
    new = kek_line("test-2", b"rotation")
    use_keks(TEST_KEK, new)
    progress: list[tuple[int, int]] = []
    assert rewrap_keys(actor="t", now=NOW, progress=lambda done, total: progress.append((done, total))) == 2
    assert progress == [(1, 2), (2, 2)]
    assert set(SealedKey.objects.values_list("kek_id", flat=True)) == {"test-2"}
    assert AuditEvent.objects.filter(action="key.rewrapped").count() == 2
    assert rewrap_keys(actor="t", now=NOW) == 0  # idempotent
    use_keks(new)  # the old KEK is gone
    cert = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    cert.x509().verify_directly_issued_by(issuing_ca.x509_certificate())


def test_rewrap_with_a_missing_old_kek_fails_clearly(use_keks):
    new_key()
    use_keks(kek_line("test-2", b"rotation"))
    with pytest.raises(KeyBackendError, match="KEK 'test-1' is not configured"):
        rewrap_keys(actor="t", now=NOW)


def test_destroy_erases_the_material_and_keeps_the_record(issuing_ca):
    key = issuing_ca.key
    with pytest.raises(InvalidState, match="belongs to a CA that is not disabled"):
        destroy_key(key=key, actor="t", now=NOW)
    issuing_ca.state = CAState.DISABLED
    issuing_ca.save()
    handle = key.handle
    get_backend().public_key(handle)  # warm the cache: destruction must empty it too
    # A CA key: one administrator asks, a second one approves (pki.destruction).
    asked = request_key_destruction(key=key, actor="admin", reason="retired", now=NOW)
    destroyed = approve_key_destruction(destruction=asked, actor="officer", now=NOW)
    assert (destroyed.state, destroyed.destroyed_by, destroyed.handle) == (
        KeyState.DESTROYED,
        "admin + officer",
        "",
    )
    assert destroyed.destroyed_at is not None  # when it was erased, where signing runs (its own clock)
    assert KeyDestruction.objects.get(pk=asked.pk).state == TwoPersonState.DONE
    assert not SealedKey.objects.filter(key_id=key.pk).exists()
    with pytest.raises(KeyBackendError, match="has no sealed material"):
        get_backend().public_key(handle)
    assert destroy_key(key=key, actor="officer", now=NOW).state == KeyState.DESTROYED  # idempotent
    assert AuditEvent.objects.filter(action="key.destroyed", object_id=str(key.pk)).count() == 1


def test_key_cache_can_be_turned_off(settings):
    from pki import conf

    key = new_key()
    settings.KMI = {**settings.KMI, "KEY_CACHE_SECONDS": 0}
    conf.reset()
    try:
        backend = fresh()
        backend.public_key(key.handle)
        assert backend._cache == {}
    finally:
        conf.reset()


def test_crls_are_signed_by_the_backend(issuing_ca):
    import datetime as dt

    backend, key = get_backend(), issuing_ca.key
    ca_cert = issuing_ca.x509_certificate()
    crl = backend.sign_crl(
        key.handle,
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=1)),
        hashes.SHA256(),
    )
    assert crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "key_type"),
    [("rsa-3072", KeyType.RSA_3072), ("ec-p521", KeyType.EC_P521), ("ed448", KeyType.ED448)],
)
def test_key_types_are_classified(name, key_type):
    assert key_type_of(load_key(name).public_key()) == key_type


def test_generated_key_types_match():
    for kt in ("ec-p256", "ec-p384", "ec-p521", "ed25519", "ed448"):
        assert key_type_of(generate_private_key(kt).public_key()) == kt
    assert isinstance(issuer_public_key(load_key("ed25519").public_key()), ed25519.Ed25519PublicKey)
    assert signature_hash("ec-p521") == hashes.SHA512() or isinstance(
        signature_hash("ec-p521"), hashes.SHA512
    )


@pytest.mark.parametrize("key_type", ["ml-dsa-44", "ml-dsa-65", "ml-dsa-87"])
def test_ml_dsa_ca_signs_certificates_that_verify(db, key_type, profile):
    from pki.authorities import create_intermediate_ca, create_root_ca
    from pki.enrollment import sign_csr
    from pki.x509.names import parse_subject
    from tests.conftest import NOW, make_csr

    root = create_root_ca(
        name="pq-root",
        subject=parse_subject(f"CN=PQ Root {key_type}"),
        key_type=key_type,
        actor="test",
        now=NOW,
    )
    issuing = create_intermediate_ca(
        name="pq-issuing",
        parent=root,
        subject=parse_subject("CN=PQ Issuing"),
        key_type=key_type,
        path_length=0,
        actor="test",
        now=NOW,
    )
    leaf = sign_csr(
        ca=issuing,
        profile=profile("tls-client"),
        csr=make_csr("ec-p256", subject="CN=device-1"),
        actor="test",
        now=NOW,
    )
    issuing.x509_certificate().verify_directly_issued_by(root.x509_certificate())
    leaf.x509().verify_directly_issued_by(issuing.x509_certificate())
    assert leaf.x509().signature_algorithm_oid._name == key_type.upper()
    ku = root.x509_certificate().extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign
    assert not ku.key_encipherment


def test_a_running_process_reads_a_rotated_kek_file_without_a_restart(
    issuing_ca, profile, settings, tmp_path, caplog
):
    """create_kek + rewrap_keys in another process (here: the file and the rows change under
    this one): this process keeps signing, sealing new keys under the new current KEK."""
    from pki import conf
    from pki.keys import registry

    kek_file = tmp_path / "kek"
    kek_file.write_text(TEST_KEK + "\n")
    settings.KMI = {**settings.KMI, "KEK": "", "KEK_FILE": str(kek_file)}
    conf.reset()
    registry.reset()
    try:
        sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
        # The rotation, as another process does it: a new current KEK appended, keys rewrapped.
        new = kek_line("test-2", b"rotation")
        kek_file.write_text(f"{TEST_KEK}\n{new}\n")
        assert conf.pki_settings().current_kek_id == "test-1"  # this process has not looked yet
        assert conf.current_pki_settings(force=True).current_kek_id == "test-2"
        assert rewrap_keys(actor="t", now=NOW) >= 1
        kek_file.write_text(new + "\n")  # the old KEK removed from the file
        conf._kek_file_checked[0] = 0.0  # the next use may look (it does at most once a second)
        registry.reset()  # unsealed keys are cached per process: make this one unseal again
        cert = sign_csr(
            ca=issuing_ca, profile=profile("tls-server"), csr=make_csr("ec-p256-b"), actor="t", now=NOW
        )
        cert.x509().verify_directly_issued_by(issuing_ca.x509_certificate())
        key = generate_key(purpose="ocsp", key_type=KeyType.EC_P256, actor="t", now=NOW)
        assert SealedKey.objects.get(key_id=key.pk).kek_id == "test-2"  # the new current KEK
        assert "KMI_KEK_FILE changed" in caplog.text
        # A file that does not parse (a half-written edit) keeps the KEKs read before.
        kek_file.write_text("not a kek line\n")
        assert conf.current_pki_settings(force=True).current_kek_id == "test-2"
    finally:
        conf.reset()
        registry.reset()


def test_rewrap_reseals_acme_eab_keys_under_the_new_kek(issuing_ca, profile, use_keks):
    from pki.acme.endpoints import create_eab_key, create_endpoint
    from pki.keystore import rewrap_secrets
    from pki.models import AcmeExternalAccountKey

    endpoint = create_endpoint(name="e", ca=issuing_ca, profile=profile("tls-server"), actor="t")
    row, _ = create_eab_key(endpoint=endpoint, actor="t")
    before = row.hmac_key()
    new = kek_line("test-2", b"rotation")
    use_keks(TEST_KEK, new)
    assert rewrap_secrets(actor="t", now=NOW) == 1
    assert rewrap_secrets(actor="t", now=NOW) == 0  # idempotent
    use_keks(new)  # the old KEK is gone
    fresh = AcmeExternalAccountKey.objects.get(pk=row.pk)
    assert (fresh.kek_id, fresh.hmac_key()) == ("test-2", before)
    assert AuditEvent.objects.filter(action="acme.eab_key.rewrapped").count() == 1
