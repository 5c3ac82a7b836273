"""A small process runner for development: the web server and a Celery worker with embedded beat.

Each child runs in its own process group. Ctrl-C is forwarded to every group, as a terminal would send it
to a foreground job; SIGTERM goes to each child alone, which stops what it started (Celery's pool and beat).
After a grace period, and once a child has ended, whatever is left in its group (runserver's autoreloader
child) is killed, so stopping the runner leaves no process behind. When one child exits on its
own (a port already in use, a crash), the others are stopped too and the runner exits non-zero.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

GRACE_SECONDS = 15.0
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Service:
    name: str
    argv: Sequence[str]


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(proc.pid, signum)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def run(
    services: Sequence[Service],
    *,
    cwd: Path,
    ready: tuple[str, int] | None = None,
    on_ready: Callable[[], None] | None = None,
    out=sys.stdout,
) -> int:
    """Start the services, wait for a signal or for one of them to end, stop them all. Returns an exit code.

    ``ready``: (host, port) that accepts connections once the system is up; ``on_ready`` is called then.
    """
    received: list[int] = []
    procs: list[tuple[Service, subprocess.Popen]] = []

    def on_signal(signum, _frame):
        received.append(signum)
        if len(received) > 1:  # a second Ctrl-C: stop waiting for a clean shutdown
            for _service, proc in procs:
                _signal_group(proc, signal.SIGKILL)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    exit_code = 0
    try:
        for service in services:
            procs.append((service, subprocess.Popen(list(service.argv), cwd=cwd, start_new_session=True)))
        announced = ready is None
        while not received:
            ended = [(s, p) for s, p in procs if p.poll() is not None]
            if ended:
                service, proc = ended[0]
                print(f"\n{service.name} exited with code {proc.returncode}; stopping the others.", file=out)
                exit_code = proc.returncode or 1
                break
            if not announced and _port_open(*ready):
                announced = True
                if on_ready:
                    on_ready()
            time.sleep(POLL_SECONDS)
        stop_with = signal.SIGINT if received and received[0] == signal.SIGINT else signal.SIGTERM
        _stop(procs, stop_with, out)
    finally:
        for proc in (p for _s, p in procs):
            # Whatever is left in a group (an orphaned grandchild) goes too.
            _signal_group(proc, signal.SIGKILL)
            if proc.poll() is None:
                proc.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return exit_code


def _stop(procs: list[tuple[Service, subprocess.Popen]], signum: int, out) -> None:
    running = [(s, p) for s, p in procs if p.poll() is None]
    if not running:
        return
    print(f"\nStopping {', '.join(s.name for s, _ in running)}...", file=out)
    for _service, proc in running:
        if signum == signal.SIGINT:
            _signal_group(proc, signum)
        else:
            proc.send_signal(signum)
    deadline = time.monotonic() + GRACE_SECONDS
    for service, proc in running:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{service.name} did not stop within {GRACE_SECONDS:.0f}s; killing it.", file=out)
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
