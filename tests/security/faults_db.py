"""Killing this test's own PostgreSQL backend from a second connection, at a chosen point of a request.

The request runs on Django's ``default`` connection (the test client works in the test's thread); a second
connection made for the purpose calls ``pg_terminate_backend`` on it and waits until it is gone, so the next
statement (or the next COPY row the server reads) meets a dead connection, as after a database restart or a
network cut. What the backend was doing at that moment is returned, to prove where the cut fell.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connection, connections


def backend_pid() -> int:
    connection.ensure_connection()
    return connection.connection.info.backend_pid


def terminate_backend(pid: int) -> tuple[str, str]:
    """Terminate backend ``pid`` (waiting up to 5 s for it to exit); returns its (state, query) before."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", [pid])
            row = cursor.fetchone()
            cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
            (done,) = cursor.fetchone()
    finally:
        other.close()
    assert row is not None and done, f"backend {pid} was not found or did not exit"
    return row[0], row[1]


@dataclass
class Cut:
    """Where a connection cut fell: the backend's state and query at that moment (empty until it fired)."""

    calls: int = 0
    seen: list[tuple[str, str]] = field(default_factory=list)

    @property
    def fired(self) -> bool:
        return bool(self.seen)

    def fire(self) -> None:
        self.seen.append(terminate_backend(backend_pid()))


def cut_at_call(monkeypatch, owner, name: str, *, at: int = 1) -> Cut:
    """Replace ``owner.name`` so that its ``at``-th call first kills the connection, then runs the original
    (which then fails on the dead connection). Later calls run the original untouched."""
    original = getattr(owner, name)
    cut = Cut()

    def wrapper(*args, **kwargs):
        cut.calls += 1
        if cut.calls == at:
            cut.fire()
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return cut


def cut_mid_copy(monkeypatch, *, at_row: int) -> Cut:
    """Kill the connection while a COPY ... FROM STDIN is streaming, when its ``at_row``-th row is written
    (earlier rows have reached the server: psycopg sends its buffer as it fills)."""
    import psycopg

    original = psycopg.Copy.write_row
    cut = Cut()

    def write_row(self, row):
        cut.calls += 1
        if cut.calls == at_row:
            cut.fire()
        return original(self, row)

    monkeypatch.setattr(psycopg.Copy, "write_row", write_row)
    return cut
