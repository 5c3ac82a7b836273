"""The web app under gunicorn for one measurement: a subprocess on a free loopback port, against one
benchmark database, production-like (``DEBUG=false``, persistent connections, no query log).

Gunicorn's access log carries each request's server time (``%(D)s``, microseconds from the request read to
the response written, queueing in the listen backlog excluded), so a load tool's latencies (what a client
waits, queueing included) and the server's own time can both be reported.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

# method path status server-microseconds
ACCESS_LOG_FORMAT = "%(m)s %(U)s %(s)s %(D)s"


class WebServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class WebServer:
    base_url: str
    access_log: Path
    error_log: Path
    process: subprocess.Popen

    def mark(self) -> int:
        """The access log's length now: ``server_times`` after a mark reads only later requests."""
        return self.access_log.stat().st_size if self.access_log.exists() else 0

    def server_times(self, *, since: int = 0, path_prefix: str = "") -> list[tuple[int, float]]:
        """(status, server ms) of each request logged after ``since`` whose path starts with the prefix."""
        found = []
        with self.access_log.open("rb") as log:
            log.seek(since)
            for line in log.read().decode(errors="replace").splitlines():
                parts = line.split()
                if len(parts) != 4 or not parts[1].startswith(path_prefix):
                    continue
                with contextlib.suppress(ValueError):
                    found.append((int(parts[2]), int(parts[3]) / 1000))
        return found

    def worker_pids(self) -> list[int]:
        """The gunicorn worker processes (the master's children) now."""
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in children.split()]

    def worker_cpu_seconds(self) -> float:
        """CPU seconds (user + system) the workers alive now have used so far: read before and after a
        measurement, the difference is what the server spent on it (wall clock is noisy on a shared box)."""
        return sum(process_cpu_seconds(pid) for pid in self.worker_pids())

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.error_log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _wait_ready(server: WebServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise WebServerError(f"gunicorn exited with {server.process.returncode}:\n{server.tail()}")
        try:
            with urllib.request.urlopen(server.base_url + "/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise WebServerError(f"gunicorn did not answer /healthz within {timeout:.0f}s:\n{server.tail()}")


@contextlib.contextmanager
def web_server(
    *,
    database_url: str,
    log_dir: Path,
    workers: int = 2,
    threads: int = 1,
    name: str = "web",
    env: dict[str, str] | None = None,
) -> Iterator[WebServer]:
    """Start gunicorn (``workers`` sync processes, or gthread with ``threads`` > 1) against the database;
    stop it on exit. ``env`` adds to (or overrides) the server's environment, e.g. ``VAR_DIR`` for pages
    that need collected static files (billing_mgmt.bench.pages)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    access_log, error_log = log_dir / f"{name}-access.log", log_dir / f"{name}-error.log"
    for path in (access_log, error_log):
        path.write_text("")
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_HSTS_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "billing_mgmt.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--backlog",
        "2048",
        "--access-logfile",
        str(access_log),
        "--access-logformat",
        ACCESS_LOG_FORMAT,
        "--error-logfile",
        str(error_log),
        "--timeout",
        "120",
    ]
    if threads > 1:
        command += ["--worker-class", "gthread", "--threads", str(threads)]
    process = subprocess.Popen(
        command, cwd=settings.BASE_DIR, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server = WebServer(
        base_url=f"http://127.0.0.1:{port}", access_log=access_log, error_log=error_log, process=process
    )
    try:
        _wait_ready(server, timeout=60)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (0 when it is gone), from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (``share`` from 0 to 1) of the values, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(share * len(ordered))))
    return ordered[rank - 1]
