"""HTTP calls to billers with a deadline for the whole exchange, not only for each read.

urllib's ``timeout`` bounds each connect and each socket read. A biller that answers a byte every few
seconds (a stuck proxy, a slow-loris) never trips it: the status line alone may be 64 KiB long, so the
caller (a Celery worker, and the database transaction it may hold) waits for hours. A ``Deadline`` gives the
exchange so many seconds from the moment the connection is made; then it shuts the socket down, which ends
any read at once, and the exchange fails with ``DeadlineExceeded``, a ``TimeoutError`` (which callers treat
as "no answer in time")::

    with Deadline(10) as deadline, deadline.opener().open(request, timeout=10) as response:
        body = response.read()
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.request
from typing import Any


class DeadlineExceeded(TimeoutError):
    """The exchange did not end within its deadline (``seconds``)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"timed out (no complete answer within {seconds:g} s)")
        self.seconds = seconds


class _Watched:
    """A mixin for urllib's handlers: each connection they make is watched by the deadline."""

    deadline: Deadline

    def do_open(self, http_class, req, **kwargs):  # urllib's hook: the connection class for this request
        deadline = self.deadline

        class WatchedConnection(http_class):
            def connect(self) -> None:
                super().connect()
                deadline.watch(self.sock)

        return super().do_open(WatchedConnection, req, **kwargs)


class _HTTPHandler(_Watched, urllib.request.HTTPHandler):
    pass


class _HTTPSHandler(_Watched, urllib.request.HTTPSHandler):
    pass


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._timers: list[threading.Timer] = []

    def opener(self, *handlers: Any) -> urllib.request.OpenerDirector:
        """urllib's opener with ``handlers`` (e.g. one refusing redirects), its connections watched."""
        http_handler, https_handler = _HTTPHandler(), _HTTPSHandler()
        http_handler.deadline = https_handler.deadline = self
        return urllib.request.build_opener(*handlers, http_handler, https_handler)

    def watch(self, sock: socket.socket) -> None:
        timer = threading.Timer(self.seconds, self._expire, (sock,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _expire(self, sock: socket.socket) -> None:
        self.expired = True
        with contextlib.suppress(OSError):  # closed already
            sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Deadline:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for timer in self._timers:
            timer.cancel()
        if self.expired:
            # Whatever the cut socket made of the exchange (an error, or a body cut short that would otherwise
            # pass for a whole one), it did not end in time.
            raise DeadlineExceeded(self.seconds) from exc
