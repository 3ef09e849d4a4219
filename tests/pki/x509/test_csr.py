"""pki/x509/csr.py: every malformed or out-of-bounds CSR is a domain error, never a crash.

The corpus in tests/support/hostile_csr.py is refused by the parser itself and on every path
that takes a CSR: the CLI, the REST API (its fast path and the DRF view) and ACME finalize.
"""

from __future__ import annotations

import contextlib
import re

import pytest
from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pki.exceptions import InvalidCSR, PKIError
from pki.issuance import parse_csr
from pki.models import AuditEvent, Certificate, CertificateRequest
from pki.x509.csr import check_csr, load_csr
from pki.x509.names import check_subject, parse_subject
from tests.support import hostile_csr
from tests.support.hostile_csr import CORPUS, attribute, good_der

CASES = sorted(CORPUS)


@pytest.mark.parametrize("case", CASES)
def test_hostile_csr_is_invalid_csr_with_a_reason(case):
    build, reason = CORPUS[case]
    with pytest.raises(InvalidCSR, match=re.escape(reason)):
        check_csr(load_csr(build(), max_bytes=65536))


def test_a_good_csr_with_every_checked_attribute_passes():
    attrs = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Berlin"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Berlin"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ex Ämple GmbH"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Web"),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, "42"),
        x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example"),
        x509.NameAttribute(NameOID.COMMON_NAME, "c" * 64),
    ]
    checked = check_csr(load_csr(good_der(attrs, sans=hostile_csr.WWW), max_bytes=65536))
    assert checked.common_name == "c" * 64


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("CN=" + "a" * 65, "but it was 65"),
        ("C=Germany", "but it was 7"),
        ("C=de", "ISO 3166"),
        ("CN=a\\00b", "control character U+0000"),
    ],
)
def test_admin_subjects_are_checked_like_csr_subjects(text, reason):
    with pytest.raises(PKIError, match=re.escape(reason)):
        parse_subject(text)


def test_printable_string_outside_its_alphabet_is_refused():
    name = x509.Name([attribute(NameOID.COMMON_NAME, "a@b", _ASN1Type.PrintableString)])
    with pytest.raises(PKIError, match="PrintableString cannot hold"):
        check_subject(name)


def test_control_characters_are_refused_in_every_attribute():
    for oid in (NameOID.ORGANIZATION_NAME, NameOID.LOCALITY_NAME, NameOID.COMMON_NAME):
        name = x509.Name([attribute(oid, "a\x1bb")])
        with pytest.raises(PKIError, match="control character U\\+001B"):
            check_subject(name)


# --- fuzzing: any bytes are a CheckedCSR or a domain error ---------------------------------------

GOOD = good_der(sans=hostile_csr.WWW)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_flipped_bytes_give_a_domain_error_or_a_checked_csr(flips):
    data = bytearray(GOOD)
    for pos, value in flips:
        data[pos] = value
    with contextlib.suppress(PKIError):
        parse_csr(bytes(data))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(0, len(GOOD)))
def test_spliced_bytes_give_a_domain_error_or_a_checked_csr(junk, at):
    with contextlib.suppress(PKIError):
        parse_csr(GOOD[:at] + junk + GOOD[at:])


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(
        [NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.COUNTRY_NAME, NameOID.EMAIL_ADDRESS]
    ),
    st.text(max_size=80),
)
def test_any_subject_value_is_checked_or_refused(oid, value):
    try:
        der = good_der([attribute(oid, value)], sans=hostile_csr.WWW)
    except ValueError:
        return  # cryptography cannot even write it (a PrintableString outside its alphabet)
    try:
        checked = parse_csr(der)
    except PKIError:
        return
    # What passes is within its X.520 bound and free of control characters.
    (attr,) = list(checked.subject)
    assert 1 <= len(str(attr.value)) <= 255
    assert all(ord(c) >= 0x20 for c in str(attr.value))


# --- every path ---------------------------------------------------------------------------------


def _rows() -> tuple[int, int, int]:
    return Certificate.objects.count(), CertificateRequest.objects.count(), AuditEvent.objects.count()


@pytest.mark.parametrize("case", CASES)
def test_cli_prints_one_line_for_a_hostile_csr(issuing_ca, case, tmp_path):
    build, reason = CORPUS[case]
    path = tmp_path / "req.der"
    path.write_bytes(build())
    before = _rows()
    with pytest.raises(CommandError, match=re.escape(reason)):
        call_command("sign_csr", "--ca=issuing", "--profile=tls-server", f"--csr={path}")
    assert _rows() == before
