"""docs/runbooks/import-ca.md runs as written, against a CA made with ``openssl ca`` before KMI."""

from __future__ import annotations

import re

import pytest

from tests.support.docs import run_blocks, sh_blocks

pytestmark = pytest.mark.interop
PAGE = "docs/runbooks/import-ca.md"

# The old CA: a root, an issuing CA run with `openssl ca` (three certificates, one revoked, CRL
# number 41), exported as a PKCS#12 with the root; and a partner's root with a CRL of its own.
OLD_CA = r"""
set -e
quiet() { "$@" >/dev/null 2>&1; }
ec() { echo "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"; }
quiet openssl req -x509 $(ec) -keyout old-root.key -subj "/O=Corp/CN=Corp Root" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out old-root.pem
quiet openssl req -new $(ec) -keyout corp-ca.key -subj "/O=Corp/CN=Corp Issuing CA" -out corp-ca.csr
cat > ca.ext <<'EOF'
basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
quiet openssl x509 -req -in corp-ca.csr -CA old-root.pem -CAkey old-root.key -CAcreateserial -days 1825 \
    -extfile ca.ext -out corp-ca.pem
mkdir -p newcerts; touch index.txt; echo 01 > serial; echo 29 > crlnumber
cat > ca.cnf <<'EOF'
[ca]
default_ca = corp
[corp]
dir = .
database = index.txt
new_certs_dir = newcerts
serial = serial
crlnumber = crlnumber
certificate = corp-ca.pem
private_key = corp-ca.key
default_md = sha256
default_days = 365
default_crl_days = 30
policy = anything
x509_extensions = leaf
copy_extensions = copy
unique_subject = no
[anything]
commonName = supplied
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
for n in 1 2 3; do
    quiet openssl req -new $(ec) -keyout host$n.key -subj "/CN=host$n.corp.example.test" \
        -addext "subjectAltName=DNS:host$n.corp.example.test" -out host$n.csr
    quiet openssl ca -batch -config ca.cnf -in host$n.csr -out host$n.pem
done
quiet openssl ca -config ca.cnf -revoke newcerts/01.pem -crl_reason keyCompromise
quiet openssl ca -config ca.cnf -gencrl -out corp.crl
echo "correct horse battery staple" > p12.pass
quiet openssl pkcs12 -export -inkey corp-ca.key -in corp-ca.pem -certfile old-root.pem \
    -passout file:p12.pass -out corp-ca.p12
# a partner's root and its CRL
quiet openssl req -x509 $(ec) -keyout partner-root.key -subj "/O=Partner/CN=Partner Root" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out partner-root.pem
mkdir -p partner/newcerts; touch partner/index.txt; echo 07 > partner/crlnumber
sed -e 's|^dir = .|dir = partner|' -e 's|= index.txt|= partner/index.txt|' \
    -e 's|= crlnumber|= partner/crlnumber|' -e 's|= corp-ca.pem|= partner-root.pem|' \
    -e 's|= corp-ca.key|= partner-root.key|' ca.cnf > partner.cnf
quiet openssl ca -config partner.cnf -gencrl -out partner-root.crl
"""


def test_importing_a_ca_with_its_issued_certificates_and_crl_runs_as_written(checkout):
    work, env = checkout()
    headings = [
        "Before you start",
        "Import the CA and what it issued",
        "Check that it carries on",
        "A certificate only",
    ]
    blocks = [b for heading in headings for b in sh_blocks(PAGE, under=heading)]
    result = run_blocks(blocks, cwd=work, env=env, prelude=OLD_CA)
    out = result.stdout
    assert "imported CA corp under corp-root" in out
    assert "3 certificate(s) it issued recorded" in out
    assert "CRL 41: 1 revocation(s) taken over; KMI's next CRL of corp is number 42" in out
    assert "published CRL 42 of CA corp" in out
    assert "crlNumber=0x2A" in out
    assert len(re.findall(r"^\S+\.pem: OK$", out, flags=re.MULTILINE)) == 2
    assert "01 was revoked before the import, and still is" in out
    assert "imported CA partner-root: CN=Partner Root,O=Partner, certificate only" in out
    assert "served at http://127.0.0.1:8000/crl/partner-root.crl" in out


def test_importing_a_ca_whose_key_is_in_an_hsm_runs_as_written(checkout):
    work, env = checkout()
    blocks = sh_blocks(PAGE, under="Before you start") + sh_blocks(PAGE, under="With the key in an HSM")
    out = run_blocks(blocks, cwd=work, env=env, prelude=OLD_CA).stdout
    assert "imported CA corp under corp-root: CN=Corp Issuing CA,O=Corp, key pkcs11 (ec-p256)" in out
    assert "(pkcs11, active)" in out
