"""Billing runs on real Celery workers (subprocesses, through Redis, on the test's PostgreSQL database).

* A run over 500 accounts whose worker is killed with SIGKILL in the middle of Assembling & Posting,
  then restarted and resumed, completes with exactly one bill per bill unit and the ledger totals a clean
  run gives.
* A chunk whose task kills its worker process every time ends dead-lettered after its attempts, and the
  run finishes with the other accounts billed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db.models import Count, Sum

from billing_mgmt.celery import app as celery_app
from billruns.models import BillingRun, BillSegment, RunAccount, RunChunk, RunException, Stage
from billruns.services import billrun_create, billrun_execute, billrun_resume, runs
from statements.models import FinancialTransaction, Statement
from statements.selectors import ledger_mismatches
from tests.billruns import builders as b
from tests.billruns.runs_helpers import JULY_1, JUNE_1, definition, monthly_plan
from tests.factories import AccountFactory
from tests.kernel.test_celery_worker import REDIS_URL, _database_url, _redis_or_skip

pytestmark = [pytest.mark.celery_worker, pytest.mark.django_db(transaction=True)]
WAIT_SECONDS = 120


class Workers:
    """Celery worker processes on a private queue; each in its own process group (kill -9 takes all)."""

    def __init__(self, tmp_path: Path, *, app: str = "billing_mgmt", env: dict | None = None):
        self.queue = f"test-billruns-{uuid.uuid4().hex[:12]}"
        self.tmp_path = tmp_path
        self.app = app
        self.extra_env = env or {}
        self.processes: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def start(self, concurrency: int = 2) -> None:
        log = self.tmp_path / f"worker-{len(self.logs)}.log"
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "CELERY_BROKER_URL": REDIS_URL,
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "VAR_DIR": str(self.tmp_path / "var"),
            # Invoice documents where this test process reads them (tests/conftest.py's folder).
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
                argv,
                cwd=settings.BASE_DIR,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        self.logs.append(log)

    def kill(self) -> None:
        """SIGKILL the newest worker and its pool processes: nothing is cleaned up, nothing acknowledged."""
        process = self.processes[-1]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def send(self, task, *args) -> None:
        with celery_app.connection_for_write(REDIS_URL) as conn:
            celery_app.send_task(task, args=list(args), queue=self.queue, connection=conn)

    def output(self) -> str:
        return "\n".join(log.read_text(errors="replace")[-3000:] for log in self.logs)

    def wait_for(self, condition, what: str):
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.25)
        pytest.fail(f"Timed out after {WAIT_SECONDS}s waiting for {what}. Worker logs:\n{self.output()}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"*{self.queue}*"))
        if keys:
            client.delete(*keys)


def _through_redis(monkeypatch, workers: Workers) -> None:
    """Work the test process queues (execute, resume) goes to the workers' queue through Redis."""
    monkeypatch.setattr(
        runs, "_dispatch_advance", lambda run_id: workers.send("billruns.advance_run", run_id)
    )
    monkeypatch.setattr(
        runs,
        "_dispatch_chunks",
        lambda ids, stage: [workers.send("billruns.process_chunk", chunk_id) for chunk_id in ids],
    )


@pytest.fixture
def workers(tmp_path, monkeypatch):
    _redis_or_skip()
    started = Workers(tmp_path)
    _through_redis(monkeypatch, started)
    yield started
    started.stop()


def _base(count: int) -> Decimal:
    """``count`` paying accounts (every fifth with a non-paying child), each subscription on a 30.00 plan
    with usage at 0.10 a unit; returns what a clean run bills in all (June and July fees, June usage)."""
    plan = monthly_plan()
    b.usage_component(plan, unit_price="0.10")
    expected = Decimal(0)
    for i in range(count):
        account = AccountFactory()
        sub = b.subscription(account, plan, JUNE_1)
        expected += Decimal("60.00")
        if i % 5 == 0:
            child = AccountFactory(parent=account, is_paying=False)
            b.subscription(child, plan, JUNE_1)
            expected += Decimal("60.00")
        if i % 3 == 0:
            b.usage(sub, 10 + i % 7, dt.date(2026, 6, 1 + i % 28))
            expected += Decimal("0.10") * (10 + i % 7)
    return expected


def _idle(run: BillingRun):
    run.refresh_from_db()
    return run if run.execution == BillingRun.Execution.IDLE else None


def test_a_run_whose_worker_is_killed_is_resumed_and_bills_each_account_once(workers, settings):
    settings.BILLRUN_CHUNK_LEASE_SECONDS = 600  # the admin's resume does not wait for leases
    definition(chunk_size=20)
    expected = _base(500)
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    workers.start(concurrency=2)
    billrun_execute(run=run, up_to=Stage.POSTING)

    def posting_in_flight():
        posting = RunChunk.objects.filter(run=run, stage=Stage.POSTING)
        return Statement.objects.count() >= 60 and posting.filter(status=RunChunk.Status.RUNNING).exists()

    workers.wait_for(posting_in_flight, "the first bills, with a chunk being posted")
    workers.kill()
    killed_at = Statement.objects.count()
    unfinished = set(
        RunChunk.objects.filter(run=run, stage=Stage.POSTING)
        .exclude(status=RunChunk.Status.DONE)
        .values_list("pk", flat=True)
    )
    assert unfinished, "the posting stage was over before the kill: kill sooner"
    run.refresh_from_db()
    assert run.execution == BillingRun.Execution.RUNNING, "the run finished before the kill: kill sooner"
    assert killed_at < 500

    workers.start(concurrency=2)
    billrun_resume(run=run)  # the admin action
    run = workers.wait_for(lambda: _idle(run), "the resumed run to finish")

    assert run.state == BillingRun.State.POSTING, run.last_error
    assert run.exception_count == 0
    assert run.bills_generated == 500
    per_account = Statement.objects.values("account_id").annotate(n=Count("id"))
    assert per_account.count() == 500 and {row["n"] for row in per_account} == {1}
    assert RunAccount.objects.filter(run=run, status=RunAccount.Status.POSTED).count() == 500
    bills = FinancialTransaction.objects.filter(kind=FinancialTransaction.Kind.BILL)
    assert bills.count() == 500
    assert bills.aggregate(total=Sum("amount"))["total"] == expected
    assert BillSegment.objects.exclude(status=BillSegment.Status.BILLED).count() == 0
    assert (
        BillSegment.objects.values("subscription_id", "period_start")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
        == 0
    )
    assert ledger_mismatches() == []
    # The chunks the kill left (being worked, or queued in the dead worker's hands) were done after it.
    left = RunChunk.objects.filter(pk__in=unfinished)
    assert set(left.values_list("status", flat=True)) == {RunChunk.Status.DONE}


def test_formatting_on_two_worker_processes_renders_each_invoice_once_with_gapless_numbers(workers):
    """Formatting in real prefork workers: WeasyPrint in forked processes, two chunks issuing from one gapless
    counter at once, the files in storage, and the run's print batch task queued by the worker itself."""
    from invoicing.models import Invoice, InvoiceDelivery, PrintBatch

    definition(chunk_size=8)
    _base(30)
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    workers.start(concurrency=2)
    billrun_execute(run=run, up_to=Stage.FORMATTING)
    run = workers.wait_for(lambda: _idle(run), "the run to finish formatting")

    assert run.state == BillingRun.State.COMPLETED, run.last_error
    assert RunAccount.objects.filter(run=run, status=RunAccount.Status.FORMATTED).count() == 30
    invoices = Invoice.objects.order_by("number")
    assert [i.status for i in invoices] == [Invoice.Status.RENDERED] * 30
    assert [i.number for i in invoices] == [f"INV-{n:08d}" for n in range(1, 31)]
    assert set(invoices.values_list("statement__run_account__run", flat=True)) == {run.pk}
    for invoice in invoices[:3]:
        with invoice.pdf.open("rb") as pdf:
            assert pdf.read(5) == b"%PDF-"
    # No contact asks for paper: every copy is in the portal, and the print batch task found nothing to print.
    assert set(InvoiceDelivery.objects.values_list("method", "status")) == {("portal", "sent")}
    workers.wait_for(
        lambda: "invoicing.build_print_batch" in workers.output() or None, "the print batch task"
    )
    assert not PrintBatch.objects.exists()


def test_a_task_that_always_crashes_its_worker_is_dead_lettered(tmp_path, monkeypatch, settings):
    _redis_or_skip()
    definition(chunk_size=2)
    plan = monthly_plan()
    accounts = sorted((AccountFactory() for _ in range(6)), key=lambda a: a.pk)
    for account in accounts:
        b.subscription(account, plan, JUNE_1)
    poison = accounts[2]
    workers = Workers(
        tmp_path,
        app="tests.billruns.crashing_worker",
        env={"BILLRUN_TEST_CRASH_ACCOUNT": str(poison.pk), "BILLRUN_CHUNK_MAX_ATTEMPTS": "3"},
    )
    _through_redis(monkeypatch, workers)
    settings.BILLRUN_CHUNK_MAX_ATTEMPTS = 3
    try:
        run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
        workers.start(concurrency=1)
        billrun_execute(run=run, up_to=Stage.POSTING)
        run = workers.wait_for(lambda: _idle(run), "the run to give up on the poison chunk and finish")
    finally:
        workers.stop()
    dead = RunChunk.objects.get(run=run, stage=Stage.RATING, status=RunChunk.Status.DEAD)
    assert dead.attempts == 3 and poison.pk in dead.account_ids
    assert "WorkerLostError" in workers.output() or "exited" in workers.output()
    dead_accounts = set(dead.account_ids)
    excepted = set(
        RunException.objects.filter(run=run, code="dead_letter").values_list("account_id", flat=True)
    )
    assert excepted == dead_accounts
    assert run.state == BillingRun.State.POSTING
    assert run.bills_generated == len(accounts) - len(dead_accounts)
    billed = set(Statement.objects.values_list("account_id", flat=True))
    assert billed == {a.pk for a in accounts} - dead_accounts
