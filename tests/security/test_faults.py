"""F9 faults: what happens when the database, the broker or a biller fails in the middle of the work.

1. The database connection is cut in the middle of a bulk ingest (usage: during the COPY; statements: between
   writing the statements and posting them to the ledger, and between two records of a batch that commits
   record by record). The request fails with a 5xx, nothing is half-written, and the retry (same body, same
   Idempotency-Key) completes the batch exactly once.
2. Redis is stopped while a billing run's chunks are being posted (a real Celery worker, on a private
   redis-server started by the test). The run waits (no half-posted bill, the ledger balanced); Redis comes
   back empty, the beat job that resumes stalled runs queues the lost chunks again, and the run completes
   with each account billed once. And the chunk that ends a stage while the broker is down is reported done
   (not worked again), and the same beat job queues the coordinator it could not.
3. A biller endpoint that accepts connections and never answers, and one that trickles a byte at a time (each
   read within the timeout, the answer never ending): the export push and the pull end within their settings,
   the export waits for its retry (backoff, then dead-lettered), the pull run fails with its error, and the
   task functions return within a bound instead of blocking their worker.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest
from django.db.models import Count, Sum
from rest_framework.test import APIClient

from billing_mgmt.api.idempotency import REPLAYED_HEADER
from billing_mgmt.models import IdempotencyRecord
from billruns.models import BillingRun, RunAccount, RunChunk, RunException, Stage, UsageRecord
from statements.models import (
    BillerBalanceSnapshot,
    FinancialTransaction,
    Statement,
    StatementLine,
    UsageSummary,
)
from statements.selectors import ledger_mismatches
from tests import factories
from tests.billruns import builders as b
from tests.factories import AccountFactory, BillerFactory, BillerReferenceFactory, statement_record

from .faults_db import cut_at_call, cut_mid_copy

USAGE_BULK = "/api/v1/usage-records/bulk/"
INGEST_BULK = "/api/v1/ingest/bulk/"
JUNE_1 = dt.date(2026, 6, 1)


def _biller_client(biller) -> APIClient:
    client = APIClient(raise_request_exception=False)  # a server error is answered 500, as in production
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {factories.api_key_for(biller)}")
    return client


# --- 1. the database connection cut in the middle of a bulk ingest ------------------------------------------


def _usage_batch(count: int) -> tuple[object, list[dict]]:
    biller = BillerFactory(code="mediation-co")
    plan = b.plan()
    b.usage_component(plan, unit_price="0.10")
    identifiers = []
    for i in range(20):
        account = AccountFactory()
        BillerReferenceFactory(account=account, biller=biller, external_ref=f"MC-{i}")
        identifiers.append(
            b.subscription(account, plan, JUNE_1, identifier=f"+1999000{i:04d}").service_identifier
        )
    records = [
        {
            "external_id": f"cdr-{i:05d}",
            "usage_type": "voice",
            "quantity": f"{1 + i % 90}.5",
            "unit": "min",
            "event_time": f"2026-06-{1 + i % 28:02d}T{i % 24:02d}:15:00Z",
            "service_identifier": identifiers[i % len(identifiers)],
        }
        for i in range(count)
    ]
    return biller, records


@pytest.mark.django_db(transaction=True)
def test_usage_bulk_ingest_cut_mid_copy_stores_nothing_and_the_retry_stores_each_record_once(monkeypatch):
    biller, records = _usage_batch(1000)
    client = _biller_client(biller)
    key = {"HTTP_IDEMPOTENCY_KEY": "usage-batch-1"}

    cut = cut_mid_copy(monkeypatch, at_row=600)
    response = client.post(USAGE_BULK, {"records": records}, format="json", **key)
    monkeypatch.undo()

    assert cut.fired
    [(state, query)] = cut.seen
    assert state == "active" and query.startswith("COPY "), (state, query)  # the cut fell inside the COPY
    assert response.status_code == 500
    assert UsageRecord.objects.count() == 0  # the 599 rows streamed before the cut were not kept
    assert not IdempotencyRecord.objects.exists()  # the key is free for the retry

    retry = client.post(USAGE_BULK, {"records": records}, format="json", **key)

    assert retry.status_code == 200, retry.content[:500]
    assert retry.json()["counts"] == {
        "created": 1000,
        "duplicate": 0,
        "rejected": 0,
        "invalid": 0,
        "conflict": 0,
    }
    stored = UsageRecord.objects.filter(source=biller.code)
    assert stored.count() == 1000
    assert stored.values("external_id").distinct().count() == 1000
    assert stored.aggregate(total=Sum("quantity"))["total"] == sum(Decimal(r["quantity"]) for r in records)

    again = client.post(USAGE_BULK, {"records": records}, format="json", **key)
    assert again.status_code == 200 and again[REPLAYED_HEADER] == "true"
    without_key = client.post(USAGE_BULK, {"records": records}, format="json")
    assert without_key.json()["counts"]["duplicate"] == 1000
    assert UsageRecord.objects.count() == 1000


def _statement_world(accounts: int):
    biller = BillerFactory(code="northwind")
    for i in range(accounts):
        BillerReferenceFactory(account=AccountFactory(), biller=biller, external_ref=f"NW-{i}")
    return biller


def _ledger_rows():
    return FinancialTransaction.objects.filter(kind=FinancialTransaction.Kind.BILL)


def _assert_whole_statements(count: int) -> None:
    """``count`` statements, each with all its lines, usage and its one ledger row: none half-written."""
    statements = Statement.objects.annotate(n_lines=Count("lines", distinct=True))
    assert statements.count() == count
    assert {s.n_lines for s in statements} <= {3}
    assert StatementLine.objects.count() == 3 * count
    assert UsageSummary.objects.count() == 2 * count
    per_statement = _ledger_rows().values("statement_id").annotate(n=Count("id"))
    assert per_statement.count() == count and {row["n"] for row in per_statement} <= {1}
    assert ledger_mismatches() == []


@pytest.mark.django_db(transaction=True)
def test_statement_bulk_ingest_cut_before_the_ledger_posting_stores_nothing_and_the_retry_completes(
    monkeypatch,
):
    from statements.services import ingest

    biller = _statement_world(50)
    records = [statement_record(f"NW-{i % 50}", f"S-{i}") for i in range(100)]
    client = _biller_client(biller)
    key = {"HTTP_IDEMPOTENCY_KEY": "statements-1"}

    # The batch's new statements go in together: statements, lines and usage are written, then the ledger.
    cut = cut_at_call(monkeypatch, ingest, "transactions_post_bulk")
    response = client.post(INGEST_BULK, {"records": records}, format="json", **key)
    monkeypatch.undo()

    assert cut.fired and response.status_code == 500
    assert (
        Statement.objects.count(),
        StatementLine.objects.count(),
        FinancialTransaction.objects.count(),
    ) == (
        0,
        0,
        0,
    )
    assert not IdempotencyRecord.objects.exists()

    retry = client.post(INGEST_BULK, {"records": records}, format="json", **key)

    assert retry.status_code == 200, retry.content[:500]
    assert retry.json()["summary"] == {"accepted": 100, "duplicate": 0, "rejected": 0}
    _assert_whole_statements(100)
    replay = client.post(INGEST_BULK, {"records": records}, format="json", **key)
    assert replay[REPLAYED_HEADER] == "true" and Statement.objects.count() == 100


@pytest.mark.django_db(transaction=True)
def test_statement_bulk_ingest_without_a_key_cut_between_records_keeps_whole_records_and_the_retry_completes(
    monkeypatch,
):
    """Without an Idempotency-Key each record commits on its own (docs/api.md): a cut keeps the records
    before it, whole; the one being stored when the cut fell is not half-written; the same batch again stores
    the rest and answers the others duplicate."""
    from statements.services import ingest

    biller = _statement_world(30)
    records = []
    for i in range(30):  # a balance beside each statement: the batch is stored record by record
        records.append(statement_record(f"NW-{i}", f"S-{i}"))
        records.append({"type": "balance", "account": f"NW-{i}", "as_of": "2026-11-01T00:00:00Z",
                        "amount": "40.50", "currency": "USD"})  # fmt: skip
    client = _biller_client(biller)

    cut = cut_at_call(monkeypatch, ingest, "_store", at=25)  # record 24: the statement of NW-12
    response = client.post(INGEST_BULK, {"records": records}, format="json")
    monkeypatch.undo()

    assert cut.fired and response.status_code == 500
    _assert_whole_statements(12)
    assert BillerBalanceSnapshot.objects.count() == 12
    assert not Statement.objects.filter(external_id="S-12").exists()

    retry = client.post(INGEST_BULK, {"records": records}, format="json")

    assert retry.status_code == 200, retry.content[:500]
    assert retry.json()["summary"] == {"accepted": 36, "duplicate": 24, "rejected": 0}
    _assert_whole_statements(30)
    assert BillerBalanceSnapshot.objects.count() == 30


# --- 2. Redis stopped during a billing run ------------------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path):
    from .faults_redis import PrivateRedis

    server = PrivateRedis(tmp_path)
    if server.binary is None:
        print("SKIP reason: redis-server is not installed; the Redis-down test starts a private one.")
        pytest.skip("redis-server is not installed (the test starts a private one, never the shared Redis)")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def run_workers(tmp_path, private_redis, monkeypatch):
    """Workers of tests.security.faults_worker (slow posting chunks) on the private Redis; what this process
    queues (execute, resume) goes to them through the same Redis."""
    from billruns.services import runs

    from .faults_redis import Workers

    workers = Workers(
        tmp_path,
        private_redis,
        app="tests.security.faults_worker",
        # A short lease: beat takes a chunk queued 2 s ago and not taken as lost (600 s in production).
        env={"FAULTS_POSTING_DELAY": "0.4", "BILLRUN_CHUNK_LEASE_SECONDS": "2"},
    )
    monkeypatch.setattr(
        runs, "_dispatch_advance", lambda run_id: workers.send("billruns.advance_run", run_id)
    )
    monkeypatch.setattr(
        runs,
        "_dispatch_chunks",
        lambda ids, stage: [workers.send("billruns.process_chunk", chunk_id) for chunk_id in ids],
    )
    yield workers
    workers.stop()


def _posting(run):
    return RunChunk.objects.filter(run=run, stage=Stage.POSTING)


def _bills_of(run):
    return FinancialTransaction.objects.filter(
        kind=FinancialTransaction.Kind.BILL, statement__run_account__run=run
    )


def _assert_no_half_posted_bill(run) -> int:
    """Every bill of the run is whole: its statement, its one ledger row, its run account POSTED, and its
    chunk DONE (a chunk's accounts commit with it). Returns how many bills there are."""
    statements = Statement.objects.filter(run_account__run=run)
    bills = _bills_of(run)
    posted = RunAccount.objects.filter(run=run, status=RunAccount.Status.POSTED)
    assert statements.count() == bills.count() == posted.count()
    assert set(bills.values_list("statement_id", flat=True)) == set(statements.values_list("pk", flat=True))
    done_accounts = {
        pk for ids in _posting(run).filter(status=RunChunk.Status.DONE).values_list("account_ids", flat=True)
        for pk in ids
    }  # fmt: skip
    assert set(posted.values_list("account_id", flat=True)) == done_accounts
    assert ledger_mismatches() == []
    return statements.count()


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_redis_stopped_during_a_billing_run_the_run_waits_then_resumes_and_bills_each_account_once(
    private_redis, run_workers
):
    from billruns.services import billrun_create, billrun_execute
    from tests.billruns.runs_helpers import JULY_1, definition, monthly_plan
    from tests.kernel.test_celery_worker import _database_url

    definition(chunk_size=3)
    plan = monthly_plan()
    b.usage_component(plan, unit_price="0.10")
    accounts = [AccountFactory() for _ in range(36)]
    expected = Decimal(0)
    for i, account in enumerate(accounts):
        sub = b.subscription(account, plan, JUNE_1)
        expected += Decimal("60.00")  # June and July fees
        if i % 3 == 0:
            b.usage(sub, 10 + i, dt.date(2026, 6, 1 + i % 28))
            expected += Decimal("0.10") * (10 + i)
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    run_workers.start(_database_url(), concurrency=2)
    billrun_execute(run=run, up_to=Stage.POSTING)

    # Posting is under way (a chunk or two posted, others in flight or queued): stop Redis.
    run_workers.wait_for(
        lambda: _posting(run).filter(status=RunChunk.Status.DONE).count() >= 2, "the first chunks posted", 60
    )
    private_redis.stop()
    stopped_at = time.monotonic()

    # The run waits: the chunks in flight finish (their work commits whole), nothing else is taken, nothing
    # is half-posted, the run is still executing.
    def settled():
        before = Statement.objects.count()
        time.sleep(1.0)
        running = _posting(run).filter(status=RunChunk.Status.RUNNING).exists()
        return not running and Statement.objects.count() == before

    run_workers.wait_for(settled, "the chunks in flight to finish while Redis is down", 30)
    posted_during_outage = _assert_no_half_posted_bill(run)
    run.refresh_from_db()
    assert run.execution == BillingRun.Execution.RUNNING and run.current_stage == Stage.POSTING
    left = _posting(run).exclude(status=RunChunk.Status.DONE)
    assert left.exists(), "every chunk was posted before Redis stopped: stop it sooner"
    assert set(left.values_list("status", flat=True)) == {RunChunk.Status.QUEUED}
    assert 0 < posted_during_outage < len(accounts)
    assert RunException.objects.filter(run=run).count() == 0  # an outage is not an account's error

    # Redis comes back, empty (its queued messages are lost). The beat job that resumes stalled runs (every
    # two minutes in production) finds the chunks queued longer than a lease and not taken, and queues them.
    private_redis.start()
    assert private_redis.dbsize() == 0
    outage = time.monotonic() - stopped_at
    time.sleep(max(0.0, 2.5 - outage))  # the lease (2 s) since the lost chunks were queued
    run_workers.send("billruns.resume_stalled_runs")

    def finished():
        run.refresh_from_db()
        return run if run.execution == BillingRun.Execution.IDLE else None

    run = run_workers.wait_for(finished, "the resumed run to finish", 60)
    assert run.state == BillingRun.State.POSTING, run.last_error
    assert run.exception_count == 0 and run.bills_generated == len(accounts)
    assert _assert_no_half_posted_bill(run) == len(accounts)
    per_account = Statement.objects.values("account_id").annotate(n=Count("id"))
    assert {row["account_id"] for row in per_account} == {a.pk for a in accounts}
    assert {row["n"] for row in per_account} == {1}
    assert _bills_of(run).count() == len(accounts)
    assert _bills_of(run).aggregate(total=Sum("amount"))["total"] == expected
    assert set(_posting(run).values_list("status", flat=True)) == {RunChunk.Status.DONE}


@pytest.mark.django_db(transaction=True)
def test_the_last_chunk_done_while_the_broker_is_down_is_reported_done_and_beat_queues_the_coordinator(
    monkeypatch, caplog
):
    """The chunk whose commit ends its stage queues the coordinator after the commit. With the broker down
    that publish fails: the chunk's work is committed and must be reported done (not worked again account by
    account), and the stalled-run job queues the coordinator once the broker is back."""
    import kombu.exceptions

    from billruns.services import billrun_advance, billrun_create, billrun_execute, runs
    from billruns.tasks import process_chunk
    from tests.billruns.runs_helpers import JULY_1, definition, monthly_plan

    definition(chunk_size=2)
    plan = monthly_plan()
    for _ in range(4):
        b.subscription(AccountFactory(), plan, JUNE_1)
    queued: dict[str, list] = {"advance": [], "chunks": []}
    monkeypatch.setattr(runs, "_dispatch_advance", lambda run_id: queued["advance"].append(run_id))
    monkeypatch.setattr(runs, "_dispatch_chunks", lambda ids, stage: queued["chunks"].extend(ids))
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    billrun_execute(run=run, up_to=Stage.RATING)
    billrun_advance(run_id=run.pk)  # the coordinator: Identification & Rating, two chunks
    first, last = queued["chunks"]
    assert process_chunk(first) == "done"

    def broker_down(run_id):
        raise kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    monkeypatch.setattr(runs, "_dispatch_advance", broker_down)
    with caplog.at_level("WARNING"):
        outcome = process_chunk(last)

    assert outcome == "done"
    assert not [r for r in caplog.records if "account by account" in r.getMessage()]
    assert RunChunk.objects.get(pk=last).status == RunChunk.Status.DONE
    assert RunChunk.objects.get(pk=last).attempts == 1
    run.refresh_from_db()
    assert run.execution == BillingRun.Execution.RUNNING and run.current_stage == Stage.RATING

    monkeypatch.setattr(runs, "_dispatch_advance", lambda run_id: queued["advance"].append(run_id))
    queued["advance"].clear()
    assert runs.billruns_resume_stalled() == {}  # no chunk to queue again ...
    assert queued["advance"] == [run.pk]  # ... but the coordinator is queued
    billrun_advance(run_id=run.pk)
    run.refresh_from_db()
    assert (run.state, run.execution) == (BillingRun.State.RATING, BillingRun.Execution.IDLE)
    assert RunException.objects.filter(run=run).count() == 0


# --- 3. a biller endpoint that hangs ------------------------------------------------------------------------


@pytest.fixture
def hanging():
    from .faults_net import HangingServer

    with HangingServer() as server:
        yield server


@pytest.fixture
def trickling():
    from .faults_net import TricklingServer

    with TricklingServer(interval=0.2) as server:
        yield server


def _push_export(url: str, csr_user):
    from payments.models import ExportItem
    from payments.services import payment_post

    biller = BillerFactory(code="hangs", export_mode="push", export_url=f"{url}/exports", export_secret="s3")
    account = AccountFactory()
    BillerReferenceFactory(account=account, biller=biller, external_ref="H-1")
    payment, _ = payment_post(account=account, amount="20.00", currency="USD", idempotency_key="p1",
                              reference="Cheque 9", actor=csr_user)  # fmt: skip
    return ExportItem.objects.get(payment=payment)


@pytest.mark.django_db
@pytest.mark.parametrize("server", ["hanging", "trickling"])
def test_an_export_push_to_a_hanging_biller_times_out_and_waits_for_its_retry(
    request, server, settings, csr_user
):
    """The delivery task, called as the worker calls it, comes back within the timeout (plus a margin): the
    export stays pending with its error and a backoff, then is dead-lettered; it is never stuck."""
    from payments.models import ExportItem
    from payments.services import exports_due
    from payments.tasks import deliver_export

    from .faults_clock import bounded

    endpoint = request.getfixturevalue(server)
    settings.PAYMENTS_EXPORT_TIMEOUT_SECONDS = 1
    settings.PAYMENTS_EXPORT_MAX_ATTEMPTS = 2
    item = _push_export(endpoint.url, csr_user)

    with bounded(5, "the export push") as clock:
        outcome = deliver_export(item.pk)

    assert outcome == "retrying"
    assert 0.9 <= clock["elapsed"] < 3, clock
    assert endpoint.accepted == 1  # it was sent, and the biller never answered
    item.refresh_from_db()
    assert (item.status, item.attempts) == (ExportItem.Status.PENDING, 1)
    # A read's timeout or the exchange's deadline (both 1 s here), whichever comes first.
    assert item.last_error in (
        "TimeoutError: timed out",
        "DeadlineExceeded: timed out (no complete answer within 1 s)",
    )
    wait = item.next_attempt_at - dt.datetime.now(dt.UTC)
    assert dt.timedelta(seconds=50) < wait <= dt.timedelta(minutes=1)  # the first backoff: one minute
    assert item.pk not in exports_due() and deliver_export(item.pk) == "not due"

    ExportItem.objects.filter(pk=item.pk).update(next_attempt_at=item.created_at)  # the minute has passed
    assert item.pk in exports_due()
    with bounded(5, "the second export push") as clock:
        assert deliver_export(item.pk) == "dead"  # the last attempt: dead-lettered, retried from admin
    assert clock["elapsed"] < 3
    item.refresh_from_db()
    assert (item.status, item.attempts, item.next_attempt_at) == (ExportItem.Status.DEAD, 2, None)


@pytest.mark.django_db
@pytest.mark.parametrize("server", ["hanging", "trickling"])
def test_a_pull_from_a_hanging_biller_fails_cleanly_within_the_timeout(request, server, settings, csr_user):
    """The scheduled pull and a CSR's account refresh, called as the worker calls them: each ends failed with
    its error within a bound; the watermark stays; nothing is left running."""
    from statements.models import AccountRefresh, BillerSync, PullRun
    from statements.services import account_refresh_request
    from statements.tasks import pull_biller, refresh_account

    from .faults_clock import bounded

    endpoint = request.getfixturevalue(server)
    settings.STATEMENTS_PULL_TIMEOUT_SECONDS = 0.5  # each read
    settings.STATEMENTS_PULL_PAGE_DEADLINE_SECONDS = 1  # the page: a trickling biller is cut off here
    biller = BillerFactory(code="stuck", name="Stuck Telecom", pull_enabled=True, pull_url=endpoint.url)
    account = AccountFactory()
    BillerReferenceFactory(account=account, biller=biller, external_ref="ST-1")

    with bounded(10, "the scheduled pull") as clock:
        answer = pull_biller(biller_id=biller.pk)

    assert answer["status"] == "failed" and clock["elapsed"] < 3, (answer, clock)
    run = PullRun.objects.get(pk=answer["pull_run"])
    said = {"hanging": "no answer", "trickling": "no complete answer"}[server]
    assert run.error.startswith(f"Page 1: {said} from {endpoint.url}/changes within "), run.error
    assert (run.pages, run.accepted, run.watermark_after, run.finished_at is not None) == (0, 0, "", True)
    sync = BillerSync.objects.get(biller=biller)
    assert (sync.watermark, sync.consecutive_failures, sync.last_error) == ("", 1, run.error)

    refresh = account_refresh_request(account=account, actor=csr_user)
    with bounded(10, "the account refresh") as clock:
        assert refresh_account(refresh.pk)["status"] == AccountRefresh.Status.FAILED
    assert clock["elapsed"] < 3
    refresh.refresh_from_db()
    assert refresh.error.startswith(f"Stuck Telecom: Page 1: {said} from"), refresh.error
    assert not PullRun.objects.filter(status=PullRun.Status.RUNNING).exists()
    assert not Statement.objects.exists()
