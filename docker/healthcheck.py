"""Container health check of the KMI image by role (KMI_ROLE): web answers /healthz, workers a ping."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request


def main() -> int:
    """Exit 0 when this container's process is healthy."""
    role = os.environ.get("KMI_ROLE", "web")
    if role == "web":
        try:
            with urllib.request.urlopen("http://127.0.0.1:8000/healthz", timeout=5) as response:
                return 0 if response.status == 200 else 1
        except OSError:
            return 1
    if role in ("worker", "signer"):
        node = f"{role}@{socket.gethostname()}"
        done = subprocess.run(
            ["celery", "-A", "web", "inspect", "ping", "--destination", node, "--timeout", "5"],
            capture_output=True,
            check=False,
        )
        return done.returncode
    return 0  # beat and one-shot roles: the process running is the health


if __name__ == "__main__":
    sys.exit(main())
