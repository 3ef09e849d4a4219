"""No private key (nor the data key that unlocks it) is ever stored, logged or printed in plaintext.

The test makes CA keys of several types through the real use cases, issues, renews and
re-wraps, then reads back every column of every table and every log record (SQL included, with
its parameters) and searches them for each key's material in raw, hex and base64 forms.
"""

from __future__ import annotations

import base64
import io
import logging

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from django.core.management import call_command
from django.db import connection

from pki.authorities import create_intermediate_ca, create_root_ca
from pki.enrollment import sign_csr
from pki.issuance import renew_certificate
from pki.keys import get_backend
from pki.keys.encrypted import EncryptedKeyBackend, _aad, _open
from pki.keystore import rewrap_keys
from pki.models import Key, SealedKey
from pki.x509.names import parse_subject
from tests.conftest import NOW, kek_line, make_csr

pytestmark = pytest.mark.django_db

TEST_KEK = "test-1:dGVzdC1rZWstMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY="


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def secrets_of(handle: str) -> dict[str, bytes]:
    """Every secret a key has: PKCS#8 and traditional DER, raw scalar(s), and its sealed DEK."""
    backend = EncryptedKeyBackend(alias="probe")
    private = backend._private_key(handle)
    out = {
        "pkcs8": private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    }
    if isinstance(private, rsa.RSAPrivateKey):
        numbers = private.private_numbers()
        out |= {"d": _int_bytes(numbers.d), "p": _int_bytes(numbers.p), "q": _int_bytes(numbers.q)}
    elif isinstance(private, ec.EllipticCurvePrivateKey):
        size = (private.curve.key_size + 7) // 8
        out["scalar"] = private.private_numbers().private_value.to_bytes(size, "big")
    elif isinstance(private, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        out["raw"] = private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
    if not isinstance(private, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        out["traditional"] = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    sealed = SealedKey.objects.get(key_id=handle)
    out["dek"] = _open(
        backend._kek(sealed.kek_id), bytes(sealed.wrapped_dek), _aad(handle, b"dek", sealed.kek_id)
    )
    return out


def forms(secret: bytes) -> list[bytes]:
    """The secret raw, in hex (both cases) and in base64 (standard and URL-safe) at every alignment."""
    found = [secret, secret.hex().encode(), secret.hex().upper().encode()]
    for offset in range(3):
        # Base64 of a substring depends on where it starts: drop the edge characters that also
        # depend on neighbouring bytes, so an embedded copy is found wherever it sits.
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(secret[offset:])[:-4]
            found.append(text)
    return found


def leaks(haystack: bytes, material: dict[str, dict[str, bytes]]) -> list[str]:
    """Return ``key/secret/form`` for every secret form found in ``haystack``."""
    flat = haystack.replace(b"\n", b"").replace(b"\r", b"")  # PEM-style line breaks
    hits = []
    for key, secret_map in material.items():
        for name, secret in secret_map.items():
            for i, form in enumerate(forms(secret)):
                if form in haystack or form in flat:
                    hits.append(f"{key}/{name}/form{i}")
    return hits


def dump_database() -> bytes:
    """Every column of every row of every table, raw and as PostgreSQL renders the row."""
    chunks: list[bytes] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT t::text FROM {quoted} t")
            chunks += [row[0].encode() for row in cursor.fetchall()]
            cursor.execute(f"SELECT * FROM {quoted}")
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        chunks.append(bytes(value))
                    elif value is not None:
                        chunks.append(str(value).encode())
    return b"\n".join(chunks)


def test_no_private_key_material_in_database_logs_or_output(caplog, profile, use_keks):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True  # log every SQL statement with its parameters
    output = io.StringIO()
    try:
        cas = []
        for key_type in ("ec-p256", "ec-p384", "ed25519", "ed448", "rsa-2048"):
            root = create_root_ca(
                name=f"root-{key_type}", subject=parse_subject(f"CN=Root {key_type}"), key_type=key_type,
                actor="t", now=NOW,
            )  # fmt: skip
            cas.append(root)
        issuing = create_intermediate_ca(
            name="issuing", parent=cas[0], subject=parse_subject("CN=Issuing"), key_type="ec-p521",
            path_length=0, actor="t", now=NOW,
        )  # fmt: skip
        cas.append(issuing)
        for ca in cas:
            cert = sign_csr(ca=ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
        renew_certificate(certificate=cert, actor="t", now=NOW)
        use_keks(TEST_KEK, kek_line("test-2", b"rotation"))
        rewrap_keys(actor="t", now=NOW)
        for ca in cas:  # sign after the re-wrap, through the backend's cache and a cold load
            sign_csr(ca=ca, profile=profile("tls-client"), csr=make_csr(), actor="t", now=NOW)
        call_command("show_cert", cert.serial, "--pem", stdout=output, stderr=output)
        call_command("export_ca", "issuing", "--chain", stdout=output, stderr=output)
        call_command("verify_audit", stdout=output, stderr=output)
    finally:
        connection.force_debug_cursor = False

    material = {str(k.pk): secrets_of(k.handle) for k in Key.objects.all()}
    assert len(material) == 6
    database = dump_database()
    logs = caplog.text.encode()
    # The scan sees what it should: the sealed rows and the SQL that wrote them.
    sealed = SealedKey.objects.first()
    assert sealed is not None
    assert bytes(sealed.ciphertext).hex().encode() in database
    assert b'INSERT INTO "pki_sealedkey"' in logs
    assert leaks(database, material) == []
    assert leaks(logs, material) == []
    assert leaks(output.getvalue().encode(), material) == []


def test_the_scan_finds_a_planted_key(issuing_ca):
    """Negative control: the detector is not blind (each form, embedded at an odd offset)."""
    secrets = secrets_of(issuing_ca.key.handle)
    material = {"k": secrets}
    pem = serialization.load_der_private_key(secrets["pkcs8"], None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert leaks(b"x" + pem, material)
    assert leaks(b"{'k': '" + secrets["scalar"].hex().encode() + b"'}", material)
    assert leaks(b"zz" + base64.b64encode(b"\x00" + secrets["dek"]), material)
    assert leaks(b"abc" + secrets["scalar"] + b"def", material)
    assert leaks(get_backend().public_key(issuing_ca.key.handle).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ), material) == []  # fmt: skip
