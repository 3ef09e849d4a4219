"""``import_certs --ca NAME FILE_OR_DIR …``: record PEM certificates a CA signed (progress bar on a tty)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO, cast

from cryptography import x509
from django.core.management.base import CommandError, CommandParser
from tqdm import tqdm

from pki.exceptions import PolicyViolation
from pki.importing import import_certificate
from pki.management.base import PKICommand, certificate_files, get_ca


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", help="PEM files (several certificates each) or folders")
        parser.add_argument("--ca", required=True, help="the CA that signed them")
        parser.add_argument("--owner-email", default="", help="who hears about their expiry")
        parser.add_argument(
            "--progress",
            choices=["auto", "always", "never"],
            default="auto",
            help="progress bar (auto: on a tty)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        ca = get_ca(opts["ca"])
        certificates: list[tuple[Path, x509.Certificate]] = []
        for path in certificate_files(opts["paths"]):
            try:
                certificates += [(path, c) for c in x509.load_pem_x509_certificates(path.read_bytes())]
            except ValueError as exc:
                raise CommandError(f"{path}: not PEM certificates ({exc})") from None
        stream = cast(
            TextIO, self.stderr._out
        )  # the raw stream: tqdm redraws with \r, OutputWrapper adds newlines
        show = {"always": True, "never": False}.get(opts["progress"], stream.isatty())
        created = existing = 0
        refused: list[str] = []
        for path, cert in tqdm(certificates, desc="importing", unit="cert", disable=not show, file=stream):
            try:
                _, new = import_certificate(
                    ca=ca, certificate=cert, actor=self.actor(), owner_email=opts["owner_email"]
                )
            except PolicyViolation as exc:
                refused.append(f"{path}: {exc}")
                continue
            created += new
            existing += not new
        for line in refused:
            self.stderr.write(line)
        self.stdout.write(
            f"imported {created}, already known {existing}, refused {len(refused)} (CA {ca.name})"
        )
        if refused:
            raise CommandError(f"{len(refused)} certificate(s) refused")
