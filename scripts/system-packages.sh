#!/usr/bin/env bash
# The Debian packages the test suite drives, checked by the command each one provides.
# Used by `make test` and by .ci/run (through make test), so a fresh Debian machine needs nothing
# else: as root it installs what is missing; otherwise it prints the one command that does, and
# fails (the suite never skips a test because a program is missing).
set -euo pipefail

# command:package — the test that needs it
PAIRS=(
  openssl:openssl                 # interop: openssl verify / ocsp / req
  chromium:chromium               # interop: TLS in a browser (Playwright, executable_path)
  certutil:libnss3-tools          # Chromium's NSS trust store
  softhsm2-util:softhsm2          # pkcs11 key backend
  docker-compose:docker-compose   # docker/compose.yaml check
  wrk:wrk                         # benchmarks
  hyperfine:hyperfine             # benchmarks
  node:nodejs                     # the npm acme-client interop test
  npm:npm
  scepclient:scep                 # SCEP interop
  getcert:certmonger              # SCEP interop (certmonger's helper)
  certspotter:certspotter         # transparency log interop
  promtool:prometheus             # alerting rules check
  redis-server:redis-server       # private Redis copies for the outage tests
  pg_ctlcluster:postgresql        # the suite's database (and private copies)
)

missing=()
for pair in "${PAIRS[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

install=(apt-get install -y --no-install-recommends "${missing[@]}")
if [ "${EUID}" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}" >&2
  echo "install them with:  sudo apt-get update && sudo ${install[*]}" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${install[@]}" -qq >/dev/null
