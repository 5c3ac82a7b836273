"""A bound on how long a call may block the test's (main) thread: past it, SIGALRM interrupts the call and
the test fails saying so, instead of hanging the suite (the call runs in this thread, on the test's own
database connection and transaction)."""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager


class Blocked(Exception):
    pass


@contextmanager
def bounded(seconds: float, what: str):
    """Yields a dict that holds ``elapsed`` (seconds) once the block is over."""

    def interrupt(signum, frame):
        raise Blocked(f"{what} was still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    measured: dict[str, float] = {}
    start = time.monotonic()
    try:
        yield measured
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        measured["elapsed"] = time.monotonic() - start
