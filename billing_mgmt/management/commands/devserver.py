"""Run the development system: web server, Celery worker and beat, stopped together by Ctrl-C."""

from __future__ import annotations

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from billing_mgmt import devserver

FAKE_BILLER_PORT = 8100  # the pull URL load_demo gives Contoso Energy


class Command(BaseCommand):
    help = "Start runserver and a Celery worker with embedded beat; Ctrl-C stops all of them."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--noreload", action="store_true", help="Do not restart the web server on edits.")
        parser.add_argument("--no-worker", action="store_true", help="Start the web server only.")
        parser.add_argument(
            "--no-fake-biller",
            action="store_true",
            help=f"Do not start the fake biller Contoso Energy is pulled from (port {FAKE_BILLER_PORT}).",
        )

    def handle(
        self, *args, host: str, port: int, noreload: bool, no_worker: bool, no_fake_biller: bool, **options
    ):
        python = sys.executable
        web = [python, "manage.py", "runserver", f"{host}:{port}"]
        if noreload:
            web.append("--noreload")
        services = [devserver.Service("web", web)]
        if not no_worker:
            # -B embeds beat in the worker (one process tree); beat uses the DatabaseScheduler from settings.
            # --quiet drops Celery's start-up banner, which would bury the one printed below.
            worker = [python, "-m", "celery", "-A", "billing_mgmt", "--quiet", "worker", "-B", "-l", "INFO"]
            services.append(devserver.Service("worker", worker))
        if not no_fake_biller:
            # The demo's pulled biller (load_demo: Contoso Energy); --seed gives its accounts statements.
            # Loopback only: its admin endpoints have no authentication.
            fake = [python, "manage.py", "fake_biller", "--port", str(FAKE_BILLER_PORT), "--seed"]
            services.append(devserver.Service("fake-biller", fake))

        base = f"http://{host}:{port}"
        broker = settings.CELERY_BROKER_URL.split("@")[-1]  # never print a password from the URL

        def banner() -> None:
            lines = [
                "",
                f"  {settings.PRODUCT_NAME} is running at {base}/",
                f"    Django admin: {base}/admin/    API docs: {base}/api/docs/",
                f"    database: {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}"
                f"    Celery broker: {broker}" + ("" if not no_worker else " (no worker started)"),
                *(
                    []
                    if no_fake_biller
                    else [
                        f"    fake biller (Contoso Energy, pulled): http://127.0.0.1:{FAKE_BILLER_PORT}/changes"
                    ]
                ),
                "  Press Ctrl-C to stop the web server, the worker and beat.",
                "",
            ]
            self.stdout.write(self.style.SUCCESS("\n".join(lines)))
            self.stdout.flush()

        code = devserver.run(services, cwd=settings.BASE_DIR, ready=(host, port), on_ready=banner)
        if code:
            sys.exit(code)
