"""``import_ca --name N --cert FILE [--key FILE | --pkcs12 FILE | --pkcs11-label L | --pkcs11-id HEX]``:
bring an existing CA into KMI.

- ``--key`` (PEM or DER PKCS#8/traditional, encrypted or not) or ``--pkcs12``: the key is sealed by
  the ``encrypted`` backend at once; its plaintext is never written anywhere.
- ``--pkcs11-label``/``--pkcs11-id``: KMI signs with a key already in the HSM (``--backend``,
  default ``pkcs11``), after a probe signature matches the certificate.
- neither: the CA is recorded as a certificate only (a parent or trust anchor of chains).

``--chain`` gives the CA's issuers (PEM, issuer first) when KMI does not know them yet;
``--issued`` the certificates the CA signed before (PEM files or folders); ``--crl`` its last CRL:
its revocations are taken over and KMI's CRL numbering continues after it. Everything is one
transaction: a refusal leaves nothing behind.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12
from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from pki.exceptions import PolicyViolation
from pki.importing import import_ca, import_certificate, import_crl
from pki.management.base import PKICommand, certificate_files, load_certificates, load_crl


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="the CA's name in KMI (and in its URLs)")
        parser.add_argument("--cert", help="the CA certificate (PEM or DER); optional with --pkcs12")
        key = parser.add_mutually_exclusive_group()
        key.add_argument("--key", help="its private key (PEM or DER)")
        key.add_argument("--pkcs12", help="a PKCS#12 with the key and certificate")
        key.add_argument("--pkcs11-label", help="CKA_LABEL of its key in the HSM")
        key.add_argument("--pkcs11-id", help="CKA_ID (hex) of its key in the HSM")
        parser.add_argument("--password-file", help="the password of --key or --pkcs12 (else asked on a tty)")
        parser.add_argument("--backend", help="key backend (default: encrypted; pkcs11 for HSM keys)")
        parser.add_argument("--chain", help="the CA's issuers, PEM, issuer first")
        parser.add_argument(
            "--issued", nargs="+", default=[], help="certificates it signed: PEM files or folders"
        )
        parser.add_argument("--crl", help="its last CRL (PEM or DER)")

    def _password(self, opts: dict[str, Any]) -> bytes | None:
        if opts["password_file"]:
            return self.read_input(opts["password_file"], opts, what="password file").rstrip(b"\r\n")
        return None

    def _ask(self, what: str) -> bytes:
        if not sys.stdin.isatty():
            raise CommandError(f"{what} is encrypted: give --password-file")
        return getpass.getpass(f"password of {what}: ").encode()

    def _private_key(self, opts: dict[str, Any]) -> CertificateIssuerPrivateKeyTypes:
        data = self.read_input(opts["key"], opts, what="key")
        password = self._password(opts)
        pem = data.lstrip().startswith(b"-----BEGIN")
        load = serialization.load_pem_private_key if pem else serialization.load_der_private_key
        try:
            key = load(data, password)
        except TypeError:  # encrypted, and no password given
            key = load(data, self._ask(opts["key"]))
        except ValueError as exc:
            raise CommandError(f"{opts['key']}: not a private key, or a wrong password ({exc})") from None
        return cast(CertificateIssuerPrivateKeyTypes, key)

    def _from_pkcs12(
        self, opts: dict[str, Any]
    ) -> tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate, list[x509.Certificate]]:
        data = self.read_input(opts["pkcs12"], opts, what="PKCS#12")
        password = self._password(opts)
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, password)
        except ValueError:
            if password is not None:
                raise CommandError(f"{opts['pkcs12']}: not a PKCS#12, or a wrong password") from None
            try:
                key, cert, extra = pkcs12.load_key_and_certificates(data, self._ask(opts["pkcs12"]))
            except ValueError:
                raise CommandError(f"{opts['pkcs12']}: not a PKCS#12, or a wrong password") from None
        if key is None or cert is None:
            raise CommandError(f"{opts['pkcs12']} holds no key and certificate")
        return cast(CertificateIssuerPrivateKeyTypes, key), cert, list(extra)

    def _ca_inputs(
        self, opts: dict[str, Any]
    ) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes | None, list[x509.Certificate]]:
        """The CA certificate, its private key (if given as a file) and its chain."""
        private_key = None
        chain: list[x509.Certificate] = []
        certificate = None
        if opts["cert"]:
            [certificate] = load_certificates(
                self.read_input(opts["cert"], opts, what="certificate"), one=True
            )
        if opts["pkcs12"]:
            private_key, bundled, chain = self._from_pkcs12(opts)
            if certificate is not None and certificate != bundled:
                raise CommandError("--cert is not the certificate inside --pkcs12")
            certificate = bundled
        elif opts["key"]:
            private_key = self._private_key(opts)
        if certificate is None:
            raise CommandError("give the CA certificate: --cert FILE (or a --pkcs12 holding it)")
        if opts["chain"]:
            chain = load_certificates(self.read_input(opts["chain"], opts, what="chain"))
        return certificate, private_key, chain

    def handle(self, *args: Any, **opts: Any) -> None:
        certificate, private_key, chain = self._ca_inputs(opts)
        crl = load_crl(self.read_input(opts["crl"], opts, what="CRL")) if opts["crl"] else None
        issued: list[tuple[Path, x509.Certificate]] = []
        for path in certificate_files(opts["issued"]):
            try:
                issued += [(path, c) for c in x509.load_pem_x509_certificates(path.read_bytes())]
            except ValueError as exc:
                raise CommandError(f"{path}: not PEM certificates ({exc})") from None
        actor = self.actor()
        with transaction.atomic():
            ca = import_ca(
                name=opts["name"],
                certificate=certificate,
                private_key=private_key,
                hsm_label=opts["pkcs11_label"],
                hsm_id=opts["pkcs11_id"],
                backend=opts["backend"],
                chain=chain,
                actor=actor,
            )
            if issued and not ca.holds_key:
                raise CommandError(
                    "a certificate-only CA has no issued certificates to import: drop --issued"
                )
            for path, cert in issued:
                try:
                    import_certificate(ca=ca, certificate=cert, actor=actor)
                except PolicyViolation as exc:
                    raise CommandError(f"{path}: {exc}") from None
            imported = import_crl(ca=ca, crl=crl, actor=actor) if crl is not None else None
        kind = "certificate only" if not ca.holds_key else f"key {ca.key.backend} ({ca.key.key_type})"
        parent = f" under {ca.parent.name}" if ca.parent is not None else ""
        self.stdout.write(f"imported CA {ca.name}{parent}: {ca.own_certificate().subject}, {kind}")
        if issued:
            self.stdout.write(f"  {len(issued)} certificate(s) it issued recorded")
        if imported is not None:
            self.stdout.write(
                f"  CRL {imported.crl_number}: {imported.revoked} revocation(s) taken over; "
                f"KMI's next CRL of {ca.name} is number {imported.crl_number + 1}"
            )
