"""Settings for the test suite: web.settings on the test PostgreSQL and Redis, a fixed KEK."""

import os

os.environ.setdefault(
    "DATABASE_URL", os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
)
os.environ.setdefault("REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
# A fixed test KEK (never used outside tests): 32 bytes, base64url.
os.environ.setdefault("KMI_KEK", "test-1:dGVzdC1rZWstMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY=")
os.environ.setdefault("KMI_BASE_URL", "http://pki.example.test")
# A fixed test key of the signing channel's MAC (KMI_SIGNING=worker), never used outside tests.
os.environ.setdefault("KMI_SIGNING_SECRET", "test-signing-secret-0123456789abcdef-not-for-production")
# One cache prefix per test process: xdist workers inherit the controller's environment, so an
# inherited prefix is replaced unless it is this worker's (processes a test starts keep it).
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
_prefix = os.environ.get("KMI_CACHE_PREFIX", "")
if not _prefix or (_worker and not _prefix.endswith(f"-{_worker}")):
    os.environ["KMI_CACHE_PREFIX"] = f"kmi-test-{os.getpid()}-{_worker or 'main'}"

# Exported audit checkpoints go to a file of this test process, never the source tree's var/.
os.environ.setdefault(
    "KMI_AUDIT_CHECKPOINT_PATH", f"/tmp/kmi-test-checkpoints-{os.getpid()}-{_worker or 'main'}.jsonl"
)

from web.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users only
