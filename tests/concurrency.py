"""Run code in several threads at once, each with its own database connection and transaction."""

from __future__ import annotations

import threading

from django.db import connection


class Rollback(Exception):
    """Raise inside a worker's transaction to roll it back on purpose."""


def run_in_threads(worker, count: int) -> tuple[list, list[BaseException]]:
    """Run ``worker(i)`` in ``count`` threads released together; return (results, unexpected errors)."""
    barrier = threading.Barrier(count)
    results: list = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(worker(i))
        except Rollback:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return results, errors
