"""A private redis-server (never the shared one on 6379) that a test may stop and start again, and Celery
worker subprocesses fed through it on a private queue, working on the test's PostgreSQL database."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.conf import settings

FIRST_PORT = 6390


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


class PrivateRedis:
    """``redis-server`` on 127.0.0.1:<6390 or the next free port>, nothing saved to disk: a restart starts
    empty, as a Redis that lost its memory does."""

    def __init__(self, tmp_path: Path) -> None:
        self.binary = shutil.which("redis-server")
        self.port = next(p for p in range(FIRST_PORT, FIRST_PORT + 20) if _port_free(p))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tmp_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        argv = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.dir), "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        import redis

        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
                return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """SIGKILL: the server goes at once, keeping nothing (no save on shutdown either)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def dbsize(self) -> int:
        import redis

        return redis.Redis.from_url(self.url).dbsize()


class Workers:
    """Celery worker processes on a private queue of the private Redis (each in its own process group)."""

    def __init__(self, tmp_path: Path, broker: PrivateRedis, *, app: str, env: dict | None = None) -> None:
        self.queue = f"test-faults-{uuid.uuid4().hex[:12]}"
        self.tmp_path = tmp_path
        self.broker = broker
        self.app = app
        self.extra_env = env or {}
        self.processes: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def start(self, database_url: str, concurrency: int = 2) -> None:
        log = self.tmp_path / f"worker-{len(self.logs)}.log"
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": self.broker.url,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "VAR_DIR": str(self.tmp_path / "var"),
            "INVOICE_STORAGE_OPTIONS": json.dumps(
                {"location": str(settings.STORAGES["invoices"]["OPTIONS"]["location"])}
            ),
            **self.extra_env,
        }
        argv = [
            sys.executable, "-m", "celery", "-A", self.app, "worker", "--pool=prefork",
            f"--concurrency={concurrency}", "--loglevel=INFO", "--queues", self.queue,
            "--hostname", f"{self.queue}-{len(self.logs)}@%h", "--without-gossip", "--without-mingle",
            "--without-heartbeat",
        ]  # fmt: skip
        with log.open("w") as out:
            process = subprocess.Popen(
                argv, cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.processes.append(process)
        self.logs.append(log)

    def send(self, task: str, *args) -> None:
        from billing_mgmt.celery import app as celery_app

        with celery_app.connection_for_write(self.broker.url) as conn:
            celery_app.send_task(task, args=list(args), queue=self.queue, connection=conn)

    def output(self) -> str:
        return "\n".join(log.read_text(errors="replace")[-4000:] for log in self.logs)

    def wait_for(self, condition, what: str, seconds: float = 60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise AssertionError(f"A worker exited ({process.returncode}):\n{self.output()}")
            value = condition()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"Timed out after {seconds}s waiting for {what}. Worker logs:\n{self.output()}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
