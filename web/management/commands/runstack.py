"""``manage.py runstack``: the whole system on the embedded default (what ``make run`` starts)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from pki.acme.locations import directory_url
from pki.conf import parse_kek_lines
from pki.models import AcmeEndpoint
from web.management.commands.bootstrap_demo import DEMO_ENDPOINT

# `make run` serves on 127.0.0.1 without root: http-01 validation (on the Celery worker) goes to
# a high port where `certbot --standalone --http-01-port 8080` can listen, and the demo
# endpoint's reserved names (.test, .localhost) resolve to this machine. Set either variable to
# override; production keeps the defaults (port 80, real DNS).
ACME_DEMO_DEFAULTS = {
    "KMI_ACME_HTTP01_PORT": "8080",
    "KMI_ACME_HOSTS": ",".join(
        f"{name}=127.0.0.1" for name in ("example.test", "**.example.test", "localhost", "**.localhost")
    ),
    # What the seeded profiles certify in the demo (production: the operator's own domains).
    "KMI_ALLOWED_DOMAINS": "example.test,localhost",
}


def acme_demo_environment(env: dict[str, str]) -> list[str]:
    """Fill the ACME demo defaults into ``env`` where unset; return the names it filled."""
    filled = [name for name in ACME_DEMO_DEFAULTS if not env.get(name)]
    for name in filled:
        env[name] = ACME_DEMO_DEFAULTS[name]
    return filled


def certbot_command(directory: str, http01_port: str, state_dir: Path) -> str:
    """A certbot line that gets a certificate for www.example.test from ``directory`` (no root)."""
    certbot = Path(sys.executable).with_name("certbot")
    program = str(certbot) if certbot.exists() else "certbot"
    return (
        f"{program} certonly --standalone --http-01-port {http01_port} --http-01-address 127.0.0.1 "
        f"--server {directory} -d www.example.test --agree-tos --register-unsafely-without-email "
        f"--non-interactive --config-dir {state_dir} --work-dir {state_dir} --logs-dir {state_dir}"
    )


class Command(BaseCommand):
    """Migrate, bootstrap a demo root and issuing CA, then run web, worker and beat until Ctrl-C."""

    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000")
        parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")

    def handle(self, *args: Any, **opts: Any) -> None:
        data_dir: Path = settings.DATA_DIR
        data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if not (env.get("KMI_KEK") or env.get("KMI_KEK_FILE")):
            kek_file = data_dir / "kek"
            if not kek_file.exists():
                call_command("create_kek", out=str(kek_file))
                self.stdout.write(
                    self.style.WARNING(
                        f"No KEK was configured: created a demo KEK file at {kek_file}. "
                        "Keep it safe (it unlocks every CA key) or set KMI_KEK_FILE to your own."
                    )
                )
            else:
                parse_kek_lines(kek_file.read_text(encoding="utf-8"), source=str(kek_file))
            env["KMI_KEK_FILE"] = str(kek_file)
        filled = acme_demo_environment(env)
        # Child processes (and this one, for bootstrap) see the same KEK and ACME settings.
        os.environ.update(env)
        from pki import conf

        # Settings were read before the KEK file existed: point them at it and validate again.
        settings.KMI["KEK_FILE"] = env.get("KMI_KEK_FILE", "")
        settings.KMI["ALLOWED_DOMAINS"] = env["KMI_ALLOWED_DOMAINS"]
        conf.reset()

        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        password = self._admin_password(data_dir)
        call_command("bootstrap_demo")

        base = settings.KMI["BASE_URL"]
        procs = self._start(env, opts["bind"], opts["workers"], data_dir)
        if AcmeEndpoint.objects.filter(name=DEMO_ENDPOINT, enabled=True).exists():
            directory = directory_url(DEMO_ENDPOINT)
            acme = (
                f"  ACME:       {directory}\n"
                f"              (endpoint {DEMO_ENDPOINT}: CA issuing, profile tls-server, names "
                "*.example.test and *.localhost, no EAB)\n"
                "  certbot:    "
                f"{certbot_command(directory, env['KMI_ACME_HTTP01_PORT'], data_dir / 'certbot')}\n"
            )
        else:
            acme = f"  ACME:       {base}/acme/<endpoint>/directory (after create_acme_endpoint)\n"
        for name in filled:
            acme += f"  note:       {name} was not set: using {env[name]} for this run\n"
        self.stdout.write(
            self.style.SUCCESS(
                f"\nKMI is running on {base}\n"
                f"  admin:      {base}/admin/  (user admin, password {password})\n"
                f"  API:        {base}/api/docs/\n"
                f"{acme}"
                f"  CA cert:    {base}/ca/issuing.cer   CRL: {base}/crl/issuing.crl\n"
                f"  data:       {data_dir}\n"
                "Ctrl-C stops the web server, the Celery worker and beat.\n"
            )
        )
        self._wait(procs)

    def _admin_password(self, data_dir: Path) -> str:
        from django.contrib.auth import get_user_model

        user_model = get_user_model()
        pw_file = data_dir / "admin-password"
        if user_model.objects.filter(username="admin").exists():
            if pw_file.exists():
                return pw_file.read_text(encoding="utf-8").strip()
            return "(set earlier; reset with: python manage.py changepassword admin)"
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser("admin", "admin@example.test", password)
        pw_file.write_text(password + "\n", encoding="utf-8")
        pw_file.chmod(0o600)
        return password

    def _start(
        self, env: dict[str, str], bind: str, workers: int, data_dir: Path
    ) -> list[subprocess.Popen[bytes]]:
        py = sys.executable
        bin_dir = Path(py).parent
        commands = [
            [
                str(bin_dir / "gunicorn"),
                "web.wsgi:application",
                "--bind",
                bind,
                "--workers",
                str(workers),
                "--access-logfile",
                "-",
            ],
            [
                str(bin_dir / "celery"),
                "-A",
                "web",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "2",
                "-Q",
                "celery,signing",
                "-n",
                "kmi-worker@%h",
            ],
            [
                str(bin_dir / "celery"),
                "-A",
                "web",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                str(data_dir / "celerybeat-schedule"),
            ],
        ]
        for folder in ("queue", "processed", "control"):
            (data_dir / "broker" / folder).mkdir(parents=True, exist_ok=True)
        (data_dir / "results").mkdir(parents=True, exist_ok=True)
        return [subprocess.Popen(cmd, env=env, start_new_session=True) for cmd in commands]

    def _wait(self, procs: list[subprocess.Popen[bytes]]) -> None:
        def stop(*_: object) -> None:
            # Each leader (gunicorn master, celery worker, beat) shuts its own children down.
            for p in procs:
                if p.poll() is None:
                    p.terminate()

        signal.signal(signal.SIGTERM, stop)
        # Ctrl-C (SIGINT) stops everything even when a non-interactive parent started us with
        # SIGINT ignored (as shells do for background jobs).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            while all(p.poll() is None for p in procs):
                time.sleep(0.5)
            self.stderr.write("a KMI process exited; stopping the others")
        except KeyboardInterrupt:
            self.stdout.write("\nstopping…")
        finally:
            stop()
            deadline = time.monotonic() + 15
            for p in procs:
                try:
                    p.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
