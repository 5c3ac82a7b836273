"""Celery workers for one measurement: subprocesses on a private queue, against one benchmark database.

Each worker is its own ``celery worker --pool=prefork --concurrency=1`` process (a main process and one
pool child that runs the tasks), as ``docker compose --scale worker=N`` runs them: with the project's
``acks_late`` and prefetch multiplier 1 each worker holds one chunk at a time, and each worker's memory is
its own. They run production-like: ``DEBUG=false`` (no query log in memory, persistent connections).

Memory is the high-water mark (``VmHWM`` in /proc) of every worker process and its children, sampled while
the run goes and once more before they stop (a process's mark is gone once it exits).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings


class WorkerError(RuntimeError):
    pass


def _children_of() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    children = _children_of()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) the process has used, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)


def _stat(pid: int) -> tuple[str, int, list[int]] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text.rsplit(")", 1)[1].split()
    return comm, int(fields[1]), [int(v) for v in fields[11:15]]  # ppid; utime, stime, cutime, cstime


def postgres_server_seconds() -> float | None:
    """CPU time of the whole local PostgreSQL server so far: the postmaster and its live processes, with
    the backends that have exited (reaped by the postmaster: its cutime and cstime). None when the server
    is not on this machine. Other databases' work on the same server counts too."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    postgres = {pid for pid, (comm, _, _) in stats.items() if comm.startswith("postgres")}
    roots = [pid for pid in postgres if stats[pid][1] not in postgres]
    if not roots:
        return None
    total = 0
    for pid in postgres:
        utime, stime, cutime, cstime = stats[pid][2]
        total += utime + stime + cutime + cstime
    return total / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent not idle, all cores (from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle, iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS


def high_water_kb(pid: int) -> int | None:
    """The process's peak resident set size (VmHWM) in kB, or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _kill_if_celery(pid: int) -> None:
    try:
        if b"celery" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
    except (OSError, ProcessLookupError):
        pass


@dataclass
class Workers:
    """``count`` worker processes on ``queue`` against ``database_url``."""

    count: int
    queue: str
    database_url: str
    broker_url: str
    log_dir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    peaks_kb: dict[int, int] = field(default_factory=dict)  # pid -> VmHWM seen
    cpu: dict[int, float] = field(default_factory=dict)  # pid -> CPU seconds used
    profilers: list[subprocess.Popen] = field(default_factory=list)
    started_at: float = 0.0
    media_root: Path | None = None  # where rendered invoices go (Formatting); None: the settings' own

    def log_path(self, i: int) -> Path:
        return self.log_dir / f"{self.queue}-{i}.log"

    def start(self, *, ready_timeout: float = 60) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "DEBUG": "false",
            "SECRET_KEY": os.environ.get("SECRET_KEY") or f"bench-only-{secrets.token_hex(24)}",
            "PYTHONUNBUFFERED": "1",
            # Every task on the measurement's private queue, whatever queues this machine's settings name.
            "CELERY_BILLING_QUEUE": "",
            "CELERY_FORMATTING_QUEUE": "",
            "CELERY_INGEST_QUEUE": "",
        }
        if self.media_root is not None:
            env["MEDIA_ROOT"] = str(self.media_root)
        for i in range(1, self.count + 1):
            argv = [
                sys.executable, "-m", "celery", "-A", "billing_mgmt", "worker", "--pool=prefork",
                "--concurrency=1", "--loglevel=INFO", "--queues", self.queue,
                "--hostname", f"{self.queue}-{i}@%h", "--without-gossip", "--without-mingle",
                "--without-heartbeat",
            ]  # fmt: skip
            with self.log_path(i).open("w") as out:
                self.processes.append(
                    subprocess.Popen(
                        argv, cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT
                    )
                )
        self.started_at = time.monotonic()
        deadline = time.monotonic() + ready_timeout
        waiting = set(range(1, self.count + 1))
        while waiting:
            self.check_alive()
            waiting = {i for i in waiting if " ready." not in self.log_path(i).read_text(errors="replace")}
            if waiting and time.monotonic() > deadline:
                first = min(waiting)
                raise WorkerError(f"Worker {first} not ready after {ready_timeout:.0f}s:\n{self.tail(first)}")
            time.sleep(0.1)

    def profile(self, directory: Path) -> list[Path]:
        """Sample each worker's pool child with py-spy (``record --idle``: database waits show as such)
        until ``stop_profiles``; one flame graph per worker."""
        py_spy = shutil.which("py-spy")
        if py_spy is None:
            raise WorkerError("--py-spy needs py-spy on PATH (pip install py-spy; not a project dependency).")
        directory.mkdir(parents=True, exist_ok=True)
        outputs = []
        for i, process in enumerate(self.processes, start=1):
            for pid in process_tree(process.pid)[1:]:
                output = directory / f"{self.queue}-{i}-{pid}.svg"
                self.profilers.append(
                    subprocess.Popen(
                        [
                            py_spy,
                            "record",
                            "--idle",
                            "--rate",
                            "100",
                            "--pid",
                            str(pid),
                            "--output",
                            str(output),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
                outputs.append(output)
        return outputs

    def stop_profiles(self) -> None:
        for profiler in self.profilers:
            if profiler.poll() is None:
                profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for profiler in self.profilers:
            try:
                profiler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                profiler.kill()
                profiler.wait()
        self.profilers = []

    def tail(self, i: int, chars: int = 3000) -> str:
        try:
            return self.log_path(i).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def check_alive(self) -> None:
        for i, process in enumerate(self.processes, start=1):
            if process.poll() is not None:
                raise WorkerError(f"Worker {i} exited with {process.returncode}:\n{self.tail(i)}")

    def sample_memory(self) -> None:
        for process in self.processes:
            for pid in process_tree(process.pid):
                kb = high_water_kb(pid)
                if kb is not None:
                    self.peaks_kb[pid] = max(kb, self.peaks_kb.get(pid, 0))
                used = cpu_seconds(pid)
                if used is not None:
                    self.cpu[pid] = max(used, self.cpu.get(pid, 0.0))

    @property
    def cpu_seconds(self) -> float:
        return round(sum(self.cpu.values()), 2)

    @property
    def peak_mb(self) -> float:
        """The largest process's peak (a worker's pool child, where chunks are worked)."""
        return round(max(self.peaks_kb.values(), default=0) / 1024, 1)

    @property
    def peak_mb_total(self) -> float:
        """The sum of every worker process's peak (shared pages counted in each: an upper bound)."""
        return round(sum(self.peaks_kb.values()) / 1024, 1)

    def stop(self, *, timeout: float = 30) -> None:
        """Warm shutdown (SIGTERM: a task in hand is finished), then SIGKILL for what is left."""
        self.stop_profiles()
        trees = {p.pid: process_tree(p.pid) for p in self.processes if p.poll() is None}
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                for pid in trees.get(process.pid, [])[1:]:  # its pool child, orphaned by the kill
                    _kill_if_celery(pid)
        self.processes = []
        self.clean_broker()

    def tasks_in_flight(self) -> int:
        """Messages of the queue waiting in Redis or taken by a worker and not yet acknowledged."""
        import redis

        client = redis.Redis.from_url(self.broker_url, socket_connect_timeout=2)
        waiting = client.llen(self.queue)
        taken = 0
        for raw in client.hvals("unacked"):  # kombu's Redis transport: [message, exchange, routing key]
            try:
                _message, exchange, routing_key = json.loads(raw)
            except (ValueError, TypeError):
                continue
            taken += self.queue in (exchange, routing_key)
        return waiting + taken

    def clean_broker(self) -> None:
        """Remove the private queue and kombu's bindings for it from Redis."""
        import redis

        try:
            client = redis.Redis.from_url(self.broker_url, socket_connect_timeout=2)
            keys = list(client.scan_iter(match=f"*{self.queue}*"))
            if keys:
                client.delete(*keys)
        except redis.exceptions.RedisError:
            pass


def redis_ping(url: str) -> str | None:
    """None when Redis answers at ``url``, else why not."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except (redis.exceptions.RedisError, ValueError) as exc:
        return str(exc)
    return None


def redis_version(url: str) -> str:
    import redis

    try:
        return str(
            redis.Redis.from_url(url, socket_connect_timeout=2).info("server").get("redis_version", "")
        )
    except redis.exceptions.RedisError:
        return ""


def worker_counts(value: str) -> list[int]:
    """The worker counts of a ``--workers`` option ("1,2"); ValueError says what is wrong."""
    try:
        counts = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"a comma-separated list of worker counts, not '{value}'.") from None
    if not counts or any(n < 1 or n > 64 for n in counts):
        raise ValueError("counts from 1 to 64, e.g. 1,2.")
    return counts
