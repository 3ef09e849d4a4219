"""``import_crl --ca NAME FILE``: take in a CRL the CA signed outside KMI.

For a CA KMI signs for (imported with its key), the CRL's revocations are recorded and KMI's
CRL numbering continues after it. For a certificate-only CA (an offline root), KMI serves the
CRL at the CA's CRL URL until a newer one is imported.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from pki.importing import import_crl
from pki.locations import crl_url, repository_name
from pki.management.base import PKICommand, get_ca, load_crl


class Command(PKICommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="the CRL, PEM or DER ('-': standard input)")
        parser.add_argument("--ca", required=True, help="the CA that signed it")

    def handle(self, *args: Any, **opts: Any) -> None:
        ca = get_ca(opts["ca"])
        done = import_crl(
            ca=ca, crl=load_crl(self.read_input(opts["path"], opts, what="CRL")), actor=self.actor()
        )
        if done.stored:
            where = crl_url(repository_name(ca.name, done.generation))
            self.stdout.write(f"CRL {done.crl_number} of CA {ca.name} imported: served at {where}")
        else:
            self.stdout.write(
                f"CRL {done.crl_number} of CA {ca.name} imported: {done.revoked} revocation(s) taken over, "
                f"KMI's next CRL is number {done.crl_number + 1}"
            )
