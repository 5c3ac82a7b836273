"""A biller endpoint that hangs: a TCP server on loopback that accepts every connection, reads what it is sent
and never answers (as a biller whose application is stuck behind a load balancer that still accepts)."""

from __future__ import annotations

import contextlib
import socket
import threading


class HangingServer:
    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = 0
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self._open.append(conn)
            threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()

    def _swallow(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        while not self._stop.is_set():
            try:
                if not conn.recv(65536):
                    return  # the client gave up and closed
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=2)
        for conn in self._open:
            conn.close()

    def __enter__(self) -> HangingServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TricklingServer(HangingServer):
    """Accepts, and answers one byte of a status line every ``interval`` seconds, forever: every read gets
    something well within any per-read timeout, and the answer never ends."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        super().__init__()

    def _swallow(self, conn: socket.socket) -> None:
        conn.settimeout(self.interval)
        with contextlib.suppress(TimeoutError, OSError):
            conn.recv(65536)  # the request
        payload = b"HTTP/1.1 200 " + b"O" * 100_000
        for byte in payload:
            if self._stop.wait(self.interval):
                return
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return  # the client gave up and closed
