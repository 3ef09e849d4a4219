#!/usr/bin/env bash
# OCSP responder throughput (issue 3): gunicorn with 2 workers against PostgreSQL and Redis,
# wrk for 15 s with 16 connections POSTing one fixed request for a pre-signed response.
# Prints req/s, p50 and p99 and RESULT lines beside the targets (5,000 req/s, p99 < 20 ms).
#
# Environment: BENCH_OCSP_DATABASE_URL (dropped and re-created!), BENCH_REDIS_URL,
# BENCH_OCSP_PORT, BENCH_OCSP_SECONDS, BENCH_OCSP_CONNECTIONS, BENCH_OCSP_WORKERS.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
GUNICORN=${GUNICORN:-$(dirname "$PY")/gunicorn}
PORT=${BENCH_OCSP_PORT:-18300}
SECONDS_=${BENCH_OCSP_SECONDS:-15}
CONNECTIONS=${BENCH_OCSP_CONNECTIONS:-16}
WORKERS=${BENCH_OCSP_WORKERS:-2}
TARGET_RPS=5000
TARGET_P99_MS=20

export DATABASE_URL=${BENCH_OCSP_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/kmi_bench_ocsp}
export REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/0}
export KMI_OCSP_REDIS_PREFIX="kmi-bench-ocsp-$$"
export KMI_KEK="bench:$(printf 'b%.0s' {1..32} | base64 | tr '+/' '-_' | tr -d '=')"
export KMI_BASE_URL="http://127.0.0.1:${PORT}"
export KMI_LOG_LEVEL=WARNING
export KMI_CELERY_EAGER=1  # the seed's issuance pre-signs inline (no worker, no broker messages left behind)
export DJANGO_SETTINGS_MODULE=web.settings

work=$(mktemp -d)
gunicorn_pid=""
cleanup() {
  if [ -n "$gunicorn_pid" ]; then kill "$gunicorn_pid" 2>/dev/null || true; wait "$gunicorn_pid" 2>/dev/null || true; fi
  "$PY" - <<PYEOF || true
import os, redis
r = redis.Redis.from_url(os.environ["REDIS_URL"])
keys = list(r.scan_iter(os.environ["KMI_OCSP_REDIS_PREFIX"] + ":*"))
if keys:
    r.delete(*keys)
import psycopg  # leave PostgreSQL as we found it too
url = os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)
with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
    conn.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % url.rsplit("/", 1)[1])
PYEOF
  rm -rf "$work"
}
trap cleanup EXIT

"$PY" bench/ocsp_seed.py "$work"

"$GUNICORN" --workers "$WORKERS" --bind "127.0.0.1:${PORT}" --log-level warning web.wsgi:application &
gunicorn_pid=$!
url="http://127.0.0.1:${PORT}/ocsp/bench-issuing"
for _ in $(seq 50); do
  curl -sf -o /dev/null --data-binary @"$work/request.der" -H 'Content-Type: application/ocsp-request' "$url" && break
  sleep 0.2
done

# The answer must be right before it is fast: a verified "good" from the delegated responder.
openssl ocsp -issuer "$work/issuing.pem" -cert "$work/leaf.pem" -url "$url" -CAfile "$work/root.pem" \
  -verify_other "$work/issuing.pem" -no_nonce 2>&1 | tee "$work/check.txt"
grep -q ": good" "$work/check.txt"

cat > "$work/post.lua" <<LUA
local f = assert(io.open("$work/request.der", "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "application/ocsp-request"
LUA

wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_}s" --latency -s "$work/post.lua" "$url" | tee "$work/wrk.txt"

to_ms() {  # wrk prints 1.23ms, 456.00us or 1.02s
  awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
                         else if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
                         else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000 } }'
}
rps=$(awk '/^Requests\/sec:/ { printf "%d", $2 }' "$work/wrk.txt")
p50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$work/wrk.txt")")
p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$work/wrk.txt")")
errors=$(awk '/Non-2xx|Socket errors/ { print }' "$work/wrk.txt")
[ -n "$errors" ] && echo "wrk reported: $errors"

echo "ocsp: ${rps} req/s, p50 ${p50} ms, p99 ${p99} ms (${WORKERS} gunicorn workers, ${CONNECTIONS} connections, ${SECONDS_} s)"

# Context for a shared machine: the same gunicorn + wrk set-up against a WSGI app that does
# nothing, for 5 s. It is the ceiling of this set-up right now (BENCH_OCSP_BASELINE=0 skips it).
if [ "${BENCH_OCSP_BASELINE:-1}" = 1 ]; then
  kill "$gunicorn_pid"; wait "$gunicorn_pid" 2>/dev/null || true
  cat > "$work/trivial.py" <<PYEOF
def application(environ, start_response):
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/ocsp-response"), ("Content-Length", "5")])
    return [b"0\x03\n\x01\x01"]
PYEOF
  "$GUNICORN" --workers "$WORKERS" --bind "127.0.0.1:${PORT}" --log-level warning --chdir "$work" trivial:application &
  gunicorn_pid=$!
  for _ in $(seq 50); do curl -sf -o /dev/null -X POST "$url" && break; sleep 0.2; done
  wrk -t2 -c"$CONNECTIONS" -d5s --latency -s "$work/post.lua" "$url" > "$work/base.txt"
  base_rps=$(awk '/^Requests\/sec:/ { printf "%d", $2 }' "$work/base.txt")
  base_p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$work/base.txt")")
  echo "baseline (a WSGI app that does nothing, same set-up, 5 s): ${base_rps} req/s, p99 ${base_p99} ms"
fi
rps_verdict=$([ "$rps" -ge "$TARGET_RPS" ] && echo met || echo missed)
p99_verdict=$(awk -v p="$p99" -v t="$TARGET_P99_MS" 'BEGIN { print (p < t) ? "met" : "missed" }')
echo "RESULT ocsp_rps=${rps} req/s target=${TARGET_RPS} ${rps_verdict}"
echo "RESULT ocsp_p99=${p99} ms target=${TARGET_P99_MS} ${p99_verdict}"
