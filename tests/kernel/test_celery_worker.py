"""A real Celery worker, fed through the real Redis broker, working on the pytest database.

The worker is a subprocess (`celery -A billing_mgmt worker`) with DATABASE_URL pointing at this test's
database, so it sees the rows this transactional test commits. Each run uses its own queue, so parallel
pytest-xdist processes (and other checkouts on the same Redis) never take each other's tasks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings

from billing_mgmt.celery import app as celery_app
from billing_mgmt.middleware import reset_request_id, set_request_id
from billing_mgmt.models import AuditRecord
from statements.models import AccountBalance
from statements.selectors import ledger_mismatches
from statements.services import transaction_post
from statements.tasks import RECONCILE_ACTOR, reconcile_ledger

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
WAIT_SECONDS = 60

pytestmark = pytest.mark.celery_worker


@dataclass
class Worker:
    process: subprocess.Popen
    queue: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def send(self, task, **kwargs) -> str:
        """Publish through the Redis broker (never run in this process, whatever the eager setting)."""
        with celery_app.connection_for_write(REDIS_URL) as conn:
            result = celery_app.send_task(task.name, kwargs=kwargs, queue=self.queue, connection=conn)
        return result.id

    def wait_for(self, condition, what: str):
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"The worker exited with {self.process.returncode}:\n{self.output()}")
            value = condition()
            if value:
                return value
            time.sleep(0.2)
        pytest.fail(f"Timed out after {WAIT_SECONDS}s waiting for {what}. Worker log:\n{self.output()}")


def _database_url() -> str:
    """The URL of the database this test runs on (pytest-django's test_... database)."""
    db = settings.DATABASES["default"]
    auth = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    host = quote(db.get("HOST") or "", safe="")  # a socket folder is given percent-encoded
    port = db.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{quote(db['NAME'], safe='')}"


def _redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.RedisError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_URL} ({exc}); the real-worker test needs it.")


@pytest.fixture
def worker(transactional_db, tmp_path):
    _redis_or_skip()
    queue = f"test-worker-{uuid.uuid4().hex[:12]}"
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "VAR_DIR": str(tmp_path / "var"),
    }
    argv = [
        sys.executable, "-m", "celery", "-A", "billing_mgmt", "worker", "--pool=solo", "--loglevel=INFO",
        "--queues", queue, "--hostname", f"{queue}@%h", "--without-gossip", "--without-mingle",
        "--without-heartbeat",
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(argv, cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield Worker(process=process, queue=queue, log=log)
    finally:
        process.terminate()  # warm shutdown: finishes the task at hand
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        import redis

        # The queue and kombu's bindings for it: leave nothing behind, even if an assertion failed early.
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"*{queue}*"))
        if keys:
            client.delete(*keys)


def _account_with_wrong_cache(account_factory, cached: str):
    account = account_factory()
    transaction_post(account=account, kind="bill", amount=Decimal("100.00"), currency="USD")
    transaction_post(account=account, kind="payment", amount=Decimal("-30.00"), currency="USD")
    AccountBalance.objects.filter(account=account).update(amount=Decimal(cached), transaction_count=5)
    return account


def test_worker_repairs_a_wrong_cached_balance_through_redis(worker, account_factory):
    broken = _account_with_wrong_cache(account_factory, "999.00")
    other = _account_with_wrong_cache(account_factory, "1.00")

    # Queued while request "req-rebuild-1" runs: the task's audit record names that request.
    token = set_request_id("req-rebuild-1")
    try:
        worker.send(reconcile_ledger, account_ids=[broken.pk], repair=True)
    finally:
        reset_request_id(token)

    def repaired():
        balance = AccountBalance.objects.get(account=broken)
        return balance if balance.amount == Decimal("70.00") else None

    balance = worker.wait_for(repaired, "the worker to rebuild the cached balance")
    assert balance.transaction_count == 2
    rebuilds = AuditRecord.objects.filter(action="ledger.balance_rebuild")
    assert [(r.account_id, r.actor_label, r.request_id, r.before, r.after) for r in rebuilds] == [
        (
            broken.pk,
            RECONCILE_ACTOR,
            "req-rebuild-1",
            {"amount": "999.0000", "transaction_count": 5},
            {"amount": "70.0000", "transaction_count": 2},
        )
    ]
    # Only the account named in the task was touched.
    assert AccountBalance.objects.get(account=other).amount == Decimal("1.00")
    assert [m.account_id for m in ledger_mismatches()] == [other.pk]

    # Idempotent: the same task again finds nothing to do and changes nothing.
    from django_celery_results.models import TaskResult

    task_id = worker.send(reconcile_ledger, account_ids=[broken.pk], repair=True)
    done = worker.wait_for(
        lambda: TaskResult.objects.filter(task_id=task_id, status="SUCCESS").first(),
        "the second task's result",
    )
    assert json.loads(done.result) == {"mismatches": 0, "repaired": 0}
    assert AuditRecord.objects.filter(action="ledger.balance_rebuild").count() == 1
