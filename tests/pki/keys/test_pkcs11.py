"""The pkcs11 key backend against a real SoftHSM2 token: keys made and used inside the module."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from pki.authorities import create_intermediate_ca, create_root_ca
from pki.crl import publish_crl
from pki.destruction import destroy_key
from pki.enrollment import sign_csr
from pki.exceptions import ConfigurationError, KeyBackendError
from pki.keys import get_backend, signature_hash
from pki.keys.pkcs11 import Pkcs11KeyBackend
from pki.keystore import generate_key
from pki.models import AuditEvent, KeyType, SealedKey
from pki.models.key import KeyPurpose
from pki.revocation import revoke_certificate
from pki.x509.names import parse_subject
from tests.conftest import NOW, make_csr
from tests.interop.pkix import pkix_findings

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "1234"
HSM_TYPES = ["ec-p256", "ec-p384", "ec-p521", "rsa-2048", "ed25519", "ed448"]


@pytest.fixture(scope="session")
def token(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh SoftHSM2 token for this test process (SOFTHSM2_CONF is read when the module loads)."""
    if shutil.which("softhsm2-util") is None or not Path(MODULE).exists():
        pytest.fail("SoftHSM2 is not installed (Debian package softhsm2; .ci/run installs it)")
    home = tmp_path_factory.mktemp("softhsm")
    (home / "tokens").mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    label = f"kmi-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", "5678"],
        check=True,
        capture_output=True,
    )
    return label


@pytest.fixture
def hsm(token: str, kmi_settings: Callable[..., None], settings: Any) -> Pkcs11KeyBackend:
    """The pkcs11 backend configured next to the encrypted one (KMI_PKCS11_MODULE set)."""
    backends = {
        **settings.KMI["KEY_BACKENDS"],
        "pkcs11": {
            "BACKEND": "pki.keys.pkcs11.Pkcs11KeyBackend",
            "OPTIONS": {"module": MODULE, "token_label": token, "pin": PIN},
        },
    }
    kmi_settings(KEY_BACKENDS=backends)
    backend = get_backend("pkcs11")
    assert isinstance(backend, Pkcs11KeyBackend)
    return backend


def _token_objects(backend: Pkcs11KeyBackend, handle: str) -> list[Any]:
    from pkcs11 import Attribute

    with backend._lock:
        return list(backend._open().get_objects({Attribute.ID: bytes.fromhex(handle)}))


@pytest.mark.parametrize("key_type", HSM_TYPES)
def test_keys_are_made_in_the_token_and_never_leave_it(hsm, key_type):
    from pkcs11 import Attribute, ObjectClass
    from pkcs11.exceptions import AttributeSensitive

    handle, public_key = hsm.generate(key_id=uuid.uuid4(), key_type=KeyType(key_type))
    private = [o for o in _token_objects(hsm, handle) if o.object_class == ObjectClass.PRIVATE_KEY]
    assert len(private) == 1
    assert private[0][Attribute.SENSITIVE] is True
    assert private[0][Attribute.EXTRACTABLE] is False
    with pytest.raises(AttributeSensitive):
        private[0][Attribute.PRIVATE_EXPONENT if key_type.startswith("rsa") else Attribute.VALUE]
    algorithm = signature_hash(key_type)
    data = b"to be signed"
    signature = hsm.sign_data(handle, data, algorithm)
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(algorithm))
    else:
        public_key.verify(signature, data)  # type: ignore[call-arg]
    assert hsm.public_key(handle).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_post_quantum_keys_are_refused_with_a_clear_error(hsm):
    with pytest.raises(ConfigurationError, match="cannot make ml-dsa-65 keys"):
        hsm.generate(key_id=uuid.uuid4(), key_type=KeyType.ML_DSA_65)


@pytest.mark.parametrize("key_type", ["ec-p384", "rsa-3072", "ed25519"])
def test_a_hierarchy_in_the_hsm_issues_certificates_and_crls_openssl_accepts(
    hsm, db, profile, tmp_path: Path, key_type
):
    root = create_root_ca(
        name="hsm-root",
        subject=parse_subject("CN=HSM Root,O=KMI"),
        key_type=key_type,
        backend="pkcs11",
        actor="t",
    )
    issuing = create_intermediate_ca(
        name="hsm-issuing",
        parent=root,
        subject=parse_subject("CN=HSM Issuing,O=KMI"),
        key_type=key_type,
        path_length=0,
        backend="pkcs11",
        actor="t",
    )
    assert {root.key.backend, issuing.key.backend} == {"pkcs11"}
    assert not SealedKey.objects.filter(key_id__in=[root.key_id, issuing.key_id]).exists()
    leaf = sign_csr(ca=issuing, profile=profile("tls-server"), csr=make_csr(), actor="t")
    for cert in (root.x509_certificate(), issuing.x509_certificate(), leaf.x509()):
        assert pkix_findings(cert) == []
    revoked = sign_csr(
        ca=issuing,
        profile=profile("tls-server"),
        csr=make_csr("ec-p256-b", sans=[x509.DNSName("gone.example.test")]),
        actor="t",
    )
    revoke_certificate(certificate=revoked, reason="keyCompromise", actor="t")
    crl = publish_crl(ca=issuing, actor="t")
    parsed = x509.load_der_x509_crl(bytes(crl.der))
    assert parsed.is_signature_valid(issuing.key.public_key())  # type: ignore[arg-type]

    pem = serialization.Encoding.PEM
    (tmp_path / "root.pem").write_bytes(root.x509_certificate().public_bytes(pem))
    (tmp_path / "issuing.pem").write_bytes(issuing.x509_certificate().public_bytes(pem))
    (tmp_path / "leaf.pem").write_bytes(leaf.x509().public_bytes(pem))
    (tmp_path / "revoked.pem").write_bytes(revoked.x509().public_bytes(pem))
    (tmp_path / "crl.pem").write_bytes(parsed.public_bytes(pem))

    def verify(name: str, *extra: str) -> subprocess.CompletedProcess[str]:
        args = ["openssl", "verify", "-x509_strict", "-CAfile", "root.pem", "-untrusted", "issuing.pem"]
        return subprocess.run(
            [*args, *extra, name], cwd=tmp_path, capture_output=True, text=True, check=False
        )

    assert verify("leaf.pem").returncode == 0
    assert verify("leaf.pem", "-crl_check", "-CRLfile", "crl.pem").returncode == 0
    refused = verify("revoked.pem", "-crl_check", "-CRLfile", "crl.pem")
    assert refused.returncode != 0
    assert "certificate revoked" in refused.stdout + refused.stderr


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048", "ed448"])
def test_certificate_and_crl_builders_signed_in_the_token_verify(hsm, key_type):
    handle, public_key = hsm.generate(key_id=uuid.uuid4(), key_type=KeyType(key_type))
    algorithm = signature_hash(key_type)
    name = x509.Name.from_rfc4514_string("CN=Builder")
    cert = hsm.sign_certificate(
        handle,
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True),
        algorithm,
    )
    cert.verify_directly_issued_by(cert)
    crl = hsm.sign_crl(
        handle,
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=1)),
        algorithm,
    )
    assert crl.is_signature_valid(public_key)  # type: ignore[arg-type]


def test_destroying_a_key_removes_it_from_the_token(hsm, db):
    key = generate_key(key_type=KeyType.EC_P256, purpose=KeyPurpose.OCSP, actor="t", backend="pkcs11")
    assert len(_token_objects(hsm, key.handle)) == 2  # private and public
    destroy_key(key=key, actor="t", reason="test")
    assert _token_objects(hsm, key.handle) == []
    with pytest.raises(KeyBackendError, match="holds no key"):
        hsm.sign_data(key.handle, b"x", hashes.SHA256())
    hsm.destroy(key.handle)  # again: nothing left to destroy, no error
    assert AuditEvent.objects.filter(action="key.destroyed", object_id=str(key.pk)).exists()


def test_threads_sharing_the_process_session_sign_safely(hsm):
    handle, public_key = hsm.generate(key_id=uuid.uuid4(), key_type=KeyType.EC_P256)
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                data = f"{n}-{i}".encode()
                public_key.verify(
                    hsm.sign_data(handle, data, hashes.SHA256()), data, ec.ECDSA(hashes.SHA256())
                )  # type: ignore[union-attr, call-arg]
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_a_wrong_pin_or_module_is_a_clear_error(token):
    # PKCS#11 logs in once per process: a wrong PIN shows in a process that has not logged in.
    code = (
        "import django\ndjango.setup()\n"
        "from pki.keys.pkcs11 import Pkcs11KeyBackend\n"
        "from pki.exceptions import KeyBackendError\n"
        f"b = Pkcs11KeyBackend(alias='w', module={MODULE!r}, token_label={token!r}, pin='0000')\n"
        "try:\n    b.public_key('00' * 16)\nexcept KeyBackendError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[3],
    ).stdout
    assert f"cannot open PKCS#11 token '{token}': PinIncorrect" in out
    with pytest.raises(ConfigurationError, match="does not exist"):
        Pkcs11KeyBackend(alias="x", module="/nowhere/libnothing.so", token_label=token, pin=PIN)
    with pytest.raises(ConfigurationError, match="user PIN"):
        Pkcs11KeyBackend(alias="x", module=MODULE, token_label=token, pin="")
    assert PIN not in repr(Pkcs11KeyBackend(alias="x", module=MODULE, token_label=token, pin=PIN))


def test_with_the_hsm_as_default_new_ca_keys_go_to_it_and_server_keys_stay_sealed(
    hsm, kmi_settings, issuing_ca, profile
):
    from cryptography.hazmat.primitives.serialization import pkcs12

    from pki.serverkeys import deliver_pkcs12, new_download_secret, request_server_key
    from pki.x509.names import parse_san

    secret, digest = new_download_secret()

    kmi_settings(DEFAULT_KEY_BACKEND="pkcs11")
    sub = create_intermediate_ca(
        name="hsm-sub", parent=issuing_ca.parent, subject=parse_subject("CN=HSM Sub"), actor="t"
    )
    assert sub.key.backend == "pkcs11"
    delivery = request_server_key(
        ca=issuing_ca,
        profile=profile("tls-client"),
        subject=parse_subject("CN=device"),
        sans=[parse_san("dns:device.example.test")],
        key_type="ec-p256",
        actor="t",
        download_secret_sha256=digest,
    )
    assert delivery.key.backend == "encrypted"  # an HSM key could never be handed over
    bundle = pkcs12.load_pkcs12(
        deliver_pkcs12(delivery=delivery, password="long enough password", download_secret=secret, actor="t"),
        b"long enough password",
    )
    assert bundle.key is not None
    assert bundle.cert is not None


def test_an_existing_ca_key_in_the_hsm_is_imported_by_label(hsm, token, db, profile):
    """A CA whose key was put on the token outside KMI (softhsm2-util --import): KMI finds it by
    label, proves it matches the certificate, and signs with it in the token."""
    from pki.importing import import_ca
    from tests.conftest import FIXTURES

    chain = FIXTURES / "chain"
    label, key_id = f"corp-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    subprocess.run(
        ["softhsm2-util", "--import", str(chain / "intermediate.key.pem"), "--token", token,
         "--label", label, "--id", key_id, "--pin", PIN],
        check=True, capture_output=True,
    )  # fmt: skip
    certificate = x509.load_pem_x509_certificate((chain / "intermediate.pem").read_bytes())
    root = x509.load_pem_x509_certificate((chain / "root.pem").read_bytes())
    with pytest.raises(KeyBackendError, match="no private key with label"):
        import_ca(
            name="corp-hsm", certificate=certificate, hsm_label="nope", chain=[root], actor="t", now=NOW
        )
    ca = import_ca(
        name="corp-hsm", certificate=certificate, hsm_label=label, chain=[root], actor="t", now=NOW
    )
    assert (ca.key.backend, ca.key.handle) == ("pkcs11", key_id)
    assert hsm.find(key_id=key_id)[0] == key_id  # the same key by its CKA_ID
    with pytest.raises(KeyBackendError, match="not hex"):
        hsm.find(key_id="zz")
    assert not SealedKey.objects.filter(key=ca.key).exists()
    leaf = sign_csr(ca=ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    leaf.x509().verify_directly_issued_by(certificate)
    crl = publish_crl(ca=ca, actor="t", now=NOW)
    assert x509.load_der_x509_crl(bytes(crl.der)).is_signature_valid(certificate.public_key())  # type: ignore[arg-type]


def test_an_hsm_key_that_is_not_the_certificates_is_refused(hsm, token, db):
    from pki.exceptions import PolicyViolation
    from pki.importing import import_ca
    from pki.models import CertificateAuthority
    from tests.conftest import FIXTURES

    chain = FIXTURES / "chain"
    label = f"other-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        ["softhsm2-util", "--import", str(FIXTURES / "keys" / "ec-p256.pem"), "--token", token,
         "--label", label, "--id", uuid.uuid4().hex, "--pin", PIN],
        check=True, capture_output=True,
    )  # fmt: skip
    certificate = x509.load_pem_x509_certificate((chain / "intermediate.pem").read_bytes())
    root = x509.load_pem_x509_certificate((chain / "root.pem").read_bytes())
    with pytest.raises(PolicyViolation, match="does not match the certificate"):
        import_ca(name="corp-hsm", certificate=certificate, hsm_label=label, chain=[root], actor="t", now=NOW)
    assert not CertificateAuthority.objects.filter(name="corp-hsm").exists()


def test_with_the_hsm_as_default_scep_ra_keys_stay_sealed_and_hsm_keys_never_decrypt(
    hsm, kmi_settings, issuing_ca, profile
):
    from pki.exceptions import KeyBackendError
    from pki.scep.labels import create_scep_label

    kmi_settings(DEFAULT_KEY_BACKEND="pkcs11")
    label = create_scep_label(name="mdm", ca=issuing_ca, profile=profile("tls-client"), actor="t")
    assert label.ra_key.backend == "encrypted"  # the RA decrypts: not a job for signing-only keys
    handle, _ = hsm.generate(key_id=uuid.uuid4(), key_type=KeyType.RSA_2048)
    with pytest.raises(KeyBackendError, match="does not decrypt"):
        hsm.decrypt(handle, b"\x00" * 256)
    hsm.destroy(handle)
