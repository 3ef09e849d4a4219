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

from pki.conf import parse_kek_lines


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
        if not (env.get("KMI_KEK") or env.get("KMI_KEK_FILE") or env.get("KMI_KEK_FILE".lower())):
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
        # Child processes (and this one, for bootstrap) see the same KEK.
        os.environ.update(env)
        from pki import conf

        conf.reset()
        settings.KMI["KEK_FILE"] = env.get("KMI_KEK_FILE", "")
        conf.reset()

        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        password = self._admin_password(data_dir)
        call_command("bootstrap_demo")

        base = settings.KMI["BASE_URL"]
        procs = self._start(env, opts["bind"], opts["workers"], data_dir)
        self.stdout.write(
            self.style.SUCCESS(
                f"\nKMI is running on {base}\n"
                f"  admin:      {base}/admin/  (user admin, password {password})\n"
                f"  ACME:       {base}/acme/<endpoint>/directory (after create_acme_endpoint)\n"
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
