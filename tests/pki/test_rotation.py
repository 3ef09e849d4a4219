"""CA rollover (a new key: a new generation) and renewal (the same key, a new certificate)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from pki.crl import publish_crl, publish_due_crls
from pki.enrollment import sign_csr
from pki.exceptions import CAUnavailable, InvalidState, NotFound, PolicyViolation
from pki.issuance import chain_for
from pki.locations import crl_url, parse_repository_name, repository_name
from pki.models import (
    AuditEvent,
    CAGeneration,
    Certificate,
    CertificateAuthority,
    CertificateRevocationList,
    GenerationState,
    KeyState,
)
from pki.revocation import revoke_certificate
from pki.rotation import activate_due_generations, renew_ca, retire_generations, rollover_ca
from tests.conftest import NOW, make_csr

pytestmark = pytest.mark.django_db
HOUR = dt.timedelta(hours=1)


def _leaf(ca: CertificateAuthority, profile, now: dt.datetime = NOW, name: str = "www") -> Certificate:
    sans = [x509.DNSName(f"{name}.example.test")]
    csr = make_csr(subject=f"CN={name}.example.test", sans=sans)
    return sign_csr(ca=ca, profile=profile("tls-server"), csr=csr, actor="t", now=now)


def _cdp(cert: Certificate) -> str:
    ext = cert.x509().extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    return str(ext[0].full_name[0].value)  # type: ignore[index]


def _aia(cert: Certificate) -> list[str]:
    ext = cert.x509().extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    return [str(a.access_location.value) for a in ext]


def _ski(cert: x509.Certificate) -> bytes:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def _aki(cert: x509.Certificate) -> bytes | None:
    return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier


def test_repository_names_of_generations():
    assert repository_name("issuing", 1) == "issuing"
    assert repository_name("issuing", 2) == "issuing.g2"
    assert parse_repository_name("issuing.g12") == ("issuing", 12)
    assert parse_repository_name("issuing") == ("issuing", 1)
    for bad in ("issuing.g1", "issuing.g0", "issuing.x2", "Issuing", "issuing.g2.g3", ""):
        assert parse_repository_name(bad) is None


def test_intermediate_rollover_moves_issuance_and_keeps_the_old_generation_answering(issuing_ca, profile):
    old_leaf = _leaf(issuing_ca, profile, name="old")
    old_cert, old_key_id = issuing_ca.x509_certificate(), issuing_ca.key_id
    generation = rollover_ca(ca=issuing_ca, actor="officer", now=NOW + HOUR)
    issuing_ca.refresh_from_db()
    assert (issuing_ca.generation, generation.number, generation.state) == (2, 2, GenerationState.CURRENT)
    new_cert = issuing_ca.x509_certificate()
    assert new_cert.subject == old_cert.subject
    assert _ski(new_cert) != _ski(old_cert)
    assert issuing_ca.key_id == generation.key_id != old_key_id
    # The parent issued the new certificate; the CA keeps its path length.
    assert new_cert.issuer == issuing_ca.parent.x509_certificate().subject  # type: ignore[union-attr]
    assert new_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0

    new_leaf = _leaf(issuing_ca, profile, now=NOW + 2 * HOUR, name="new")
    assert new_leaf.issuer_generation == 2
    assert old_leaf.issuer_generation == 1
    assert _aki(new_leaf.x509()) == _ski(new_cert)
    # Each generation's certificates name that generation's repository.
    assert _cdp(old_leaf) == crl_url("issuing")
    assert _cdp(new_leaf) == crl_url("issuing.g2")
    assert _aia(new_leaf) == [
        "http://pki.example.test/ocsp/issuing.g2",
        "http://pki.example.test/ca/issuing.g2.cer",
    ]
    # Chains follow the generation that signed each certificate.
    assert chain_for(old_leaf)[1] == old_cert
    assert chain_for(new_leaf)[1] == new_cert

    previous = CAGeneration.objects.get(ca=issuing_ca, number=1)
    assert previous.state == GenerationState.PREVIOUS
    assert previous.key.state == KeyState.ACTIVE  # it still signs CRLs for what it issued
    actions = list(
        AuditEvent.objects.filter(object_type="certificateauthority").values_list("action", flat=True)
    )
    assert "ca.rolled_over" in actions
    assert "ca.generation_activated" in actions


def test_each_generation_publishes_its_own_crl_with_its_own_serials(issuing_ca, profile):
    old_leaf = _leaf(issuing_ca, profile, name="old")
    rollover_ca(ca=issuing_ca, actor="t", now=NOW + HOUR)
    issuing_ca.refresh_from_db()
    new_leaf = _leaf(issuing_ca, profile, now=NOW + HOUR, name="new")
    for cert in (old_leaf, new_leaf):
        revoke_certificate(certificate=cert, reason="superseded", actor="t", now=NOW + 2 * HOUR)
    published = publish_due_crls(actor="beat", now=NOW + 3 * HOUR)
    by_scope = {(c.ca.name, c.generation) for c in published}
    assert {("issuing", 1), ("issuing", 2), ("root", 1)} <= by_scope
    old_crl = x509.load_der_x509_crl(
        bytes(CertificateRevocationList.objects.latest_for(issuing_ca.pk, 0, 1).der)
    )  # type: ignore[union-attr]
    new_crl = x509.load_der_x509_crl(
        bytes(CertificateRevocationList.objects.latest_for(issuing_ca.pk, 0, 2).der)
    )  # type: ignore[union-attr]
    assert [r.serial_number for r in old_crl] == [old_leaf.serial_int]
    assert [r.serial_number for r in new_crl] == [new_leaf.serial_int]
    old_ca = CAGeneration.objects.get(ca=issuing_ca, number=1).x509_certificate()
    assert old_crl.is_signature_valid(old_ca.public_key())  # type: ignore[arg-type]
    assert new_crl.is_signature_valid(issuing_ca.x509_certificate().public_key())  # type: ignore[arg-type]
    # The explicit publication of the previous generation works too, and numbers go on per scope.
    again = publish_crl(ca=issuing_ca, generation=1, actor="t", now=NOW + 4 * HOUR)
    assert (again.generation, again.crl_number) == (1, 2)
    with pytest.raises(NotFound):
        publish_crl(ca=issuing_ca, generation=3, actor="t", now=NOW + 4 * HOUR)


def test_root_rollover_makes_two_link_certificates(root_ca, issuing_ca):
    old = root_ca.x509_certificate()
    generation = rollover_ca(ca=root_ca, actor="t", now=NOW + HOUR)
    root_ca.refresh_from_db()
    new = root_ca.x509_certificate()
    assert new.issuer == new.subject == old.subject
    assert _ski(new) != _ski(old)
    assert generation.link_from_previous is not None
    assert generation.link_to_previous is not None
    new_with_old = generation.link_from_previous.x509()
    old_with_new = generation.link_to_previous.x509()
    # new key certified by the old one, and the reverse; both self-issued (subject = issuer).
    assert (_ski(new_with_old), _aki(new_with_old)) == (_ski(new), _ski(old))
    assert (_ski(old_with_new), _aki(old_with_new)) == (_ski(old), _ski(new))
    new_with_old.verify_directly_issued_by(old)
    old_with_new.verify_directly_issued_by(new)
    assert new_with_old.not_valid_after_utc <= old.not_valid_after_utc
    # Each link is on the CRL of the generation that signed it.
    assert generation.link_from_previous.issuer_generation == 1
    assert generation.link_to_previous.issuer_generation == 2
    assert _cdp(generation.link_from_previous) == crl_url("root")
    assert _cdp(generation.link_to_previous) == crl_url("root.g2")
    # The existing intermediate still chains to the first generation.
    assert issuing_ca.chain()[-1] == old


def test_rollover_at_a_later_time_waits_for_the_scheduler(issuing_ca, profile):
    at = NOW + 10 * HOUR
    generation = rollover_ca(ca=issuing_ca, actor="t", at=at, now=NOW)
    issuing_ca.refresh_from_db()
    assert generation.state == GenerationState.PENDING
    assert issuing_ca.generation == 1
    assert _leaf(issuing_ca, profile, now=NOW + HOUR).issuer_generation == 1
    with pytest.raises(InvalidState, match="already has generation 2 waiting"):
        rollover_ca(ca=issuing_ca, actor="t", now=NOW + HOUR)
    assert activate_due_generations(actor="beat", now=at - dt.timedelta(seconds=1)) == []
    assert activate_due_generations(actor="beat", now=at) == [("issuing", 2)]
    assert activate_due_generations(actor="beat", now=at) == []
    issuing_ca.refresh_from_db()
    assert issuing_ca.generation == 2
    assert _leaf(issuing_ca, profile, now=at + HOUR, name="later").issuer_generation == 2


def test_rollover_refuses_bad_input(issuing_ca):
    with pytest.raises(PolicyViolation, match="time zone"):
        rollover_ca(ca=issuing_ca, actor="t", at=dt.datetime(2027, 1, 1), now=NOW)
    with pytest.raises(ValueError):
        rollover_ca(ca=issuing_ca, actor="t", key_type="rsa-1024", now=NOW)
    issuing_ca.key.state = KeyState.SUSPENDED
    issuing_ca.key.save()
    with pytest.raises(CAUnavailable):
        rollover_ca(ca=issuing_ca, actor="t", now=NOW)
    assert CAGeneration.objects.filter(ca=issuing_ca).count() == 1


def test_previous_generation_retires_when_what_it_issued_has_expired(issuing_ca, profile):
    leaf = _leaf(issuing_ca, profile)
    rollover_ca(ca=issuing_ca, actor="t", now=NOW + HOUR)
    assert retire_generations(actor="beat", now=NOW + 2 * HOUR) == []
    after = leaf.not_after + dt.timedelta(seconds=1)
    assert retire_generations(actor="beat", now=after) == [("issuing", 1)]
    previous = CAGeneration.objects.get(ca=issuing_ca, number=1)
    assert previous.state == GenerationState.RETIRED
    assert previous.key.state == KeyState.DEACTIVATED
    issuing_ca.refresh_from_db()
    assert issuing_ca.state == "active"  # the CA itself goes on with its current generation
    # A retired generation publishes nothing more.
    published = publish_due_crls(actor="beat", now=after)
    assert [(c.ca_id, c.generation) for c in published if c.ca_id == issuing_ca.pk] == [(issuing_ca.pk, 2)]


def test_renew_ca_recertifies_the_same_key(root_ca, issuing_ca, profile):
    leaf = _leaf(issuing_ca, profile)
    old = issuing_ca.own_certificate()
    new = renew_ca(ca=issuing_ca, actor="t", validity_days=2000, now=NOW + HOUR)
    issuing_ca.refresh_from_db()
    assert issuing_ca.certificate_id == new.pk != old.pk
    assert issuing_ca.generation == 1
    assert new.key_fingerprint == old.key_fingerprint
    assert new.not_after > old.not_after
    assert _ski(new.x509()) == _ski(old.x509())
    leaf.x509().verify_directly_issued_by(new.x509())
    assert CAGeneration.objects.get(ca=issuing_ca, number=1).certificate_id == new.pk
    # A renewal that would not extend the validity is refused with the reason.
    with pytest.raises(PolicyViolation, match="not after the current one"):
        renew_ca(ca=issuing_ca, actor="t", validity_days=1, now=NOW + HOUR)
    root_new = renew_ca(ca=root_ca, actor="t", now=NOW + HOUR)
    assert root_new.x509().issuer == root_new.x509().subject


def test_each_generation_answers_ocsp_for_what_it_issued(issuing_ca, profile, ocsp_env):
    from cryptography.x509 import ocsp as x509_ocsp

    from pki.ocsp import answer, refresh_responses
    from tests.ocsp_support import lint_ocsp_response, request_der

    old_leaf = _leaf(issuing_ca, profile, name="old")
    old_ca = issuing_ca.x509_certificate()
    rollover_ca(ca=issuing_ca, actor="t", now=NOW + HOUR)
    issuing_ca.refresh_from_db()
    new_leaf = _leaf(issuing_ca, profile, now=NOW + HOUR, name="new")
    new_ca = issuing_ca.x509_certificate()
    revoke_certificate(certificate=old_leaf, reason="superseded", actor="t", now=NOW + HOUR)
    refresh_responses(actor="beat", now=NOW + 2 * HOUR)
    for leaf, issuer, url_name, status in (
        (old_leaf, old_ca, "issuing", x509_ocsp.OCSPCertStatus.REVOKED),
        (new_leaf, new_ca, "issuing.g2", x509_ocsp.OCSPCertStatus.GOOD),
    ):
        for nonce in (None, b"0123456789abcdef"):  # pre-signed, then signed live
            der = answer(
                request_der(leaf.x509(), issuer, nonce=nonce), ca_name=url_name, now=NOW + 2 * HOUR
            ).der
            response = x509_ocsp.load_der_ocsp_response(der)
            assert response.certificate_status == status
            # The responder certificate comes from the generation that issued the leaf.
            responder_cert = response.certificates[0]
            responder_cert.verify_directly_issued_by(issuer)
            assert lint_ocsp_response(der) == []
    # A serial of the first generation asked under the second generation's key is not known there.
    from pki.ocsp import Issuer
    from tests.ocsp_support import multi_request_der

    gen2 = Issuer.of(issuing_ca)
    der = answer(
        multi_request_der([gen2.cert_id(old_leaf.serial_int, "sha1")]),
        ca_name="issuing.g2",
        now=NOW + 2 * HOUR,
    ).der
    assert x509_ocsp.load_der_ocsp_response(der).certificate_status == x509_ocsp.OCSPCertStatus.UNKNOWN
    der = answer(request_der(old_leaf.x509(), new_ca), ca_name="issuing.g2", now=NOW + 2 * HOUR).der
    assert x509_ocsp.load_der_ocsp_response(der).certificate_status == x509_ocsp.OCSPCertStatus.UNKNOWN


def test_rollover_commands_refuse_bad_input_with_one_line(issuing_ca, tmp_path):
    import io

    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="no CA named 'nope'"):
        call_command("rollover_ca", "nope")
    with pytest.raises(CommandError, match="no time zone"):
        call_command("rollover_ca", "issuing", "--at", "2031-01-01T00:00:00")
    with pytest.raises(CommandError, match="drop --csr-out"):
        call_command("rollover_ca", "issuing", "--csr-out", str(tmp_path / "x.csr"))
    with pytest.raises(CommandError, match="not after the current one"):
        call_command("renew_ca", "issuing", "--days", "2")
    with pytest.raises(CommandError, match="no link certificates"):
        call_command("export_ca", "issuing", "--links")
    with pytest.raises(CommandError, match="no generation 5"):
        call_command("export_ca", "issuing", "--generation", "5")
    assert CAGeneration.objects.filter(ca=issuing_ca).count() == 1
    out = io.StringIO()
    call_command("rollover_ca", "issuing", "--key-type", "ec-p384", stdout=out)
    assert "CA issuing generation 2: ec-p384 key" in out.getvalue()
    call_command("show_ca", "issuing", stdout=out)
    assert "generation 1: previous" in out.getvalue()
    assert "generation 2: current" in out.getvalue()
    call_command("publish_crl", "--ca", "issuing", "--all", stdout=out)
    assert "published CRL 1 of CA issuing (" in out.getvalue()
    assert "published CRL 1 of CA issuing.g2 (" in out.getvalue()


def test_renew_ca_refuses_a_key_revoked_for_key_compromise(issuing_ca):
    from pki.blocklist import REFUSED_ACTION
    from pki.exceptions import KeyBlocked
    from pki.revocation import revoke_key

    revoke_key(spki_sha256=issuing_ca.key.spki_sha256, actor="ops", now=NOW)
    before = Certificate.objects.filter(is_ca=True).count()
    with pytest.raises(KeyBlocked):
        renew_ca(ca=issuing_ca, actor="admin", validity_days=2000, now=NOW + HOUR)
    assert Certificate.objects.filter(is_ca=True).count() == before
    refusal = AuditEvent.objects.get(action=REFUSED_ACTION)
    assert (refusal.actor, refusal.details["path"]) == ("admin", "renew_ca")
