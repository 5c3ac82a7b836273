"""Executing billing runs (Celery eager): errors stay with their account, nothing is billed twice, chunks
are claimed once, crash and dead-letter paths, hierarchies, due dates, query counts per chunk."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billruns.models import BillingRun, BillSegment, RunAccount, RunChunk, RunException, RunStep, Stage
from billruns.services import (
    bill_create,
    billrun_create,
    billrun_execute,
    billrun_resume,
    run_work,
)
from billruns.services.run_work import chunk_claim
from statements.models import FinancialTransaction, Statement
from statements.selectors import ledger_mismatches
from tests.billruns import builders as b
from tests.billruns.runs_helpers import JULY_1, JUNE_1, customer, definition, monthly_plan, run_to
from tests.concurrency import run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)
D = b.D


@pytest.fixture
def plan(eager):
    definition()
    return monthly_plan()


def test_a_rating_error_is_an_exception_and_the_others_are_billed(plan):
    good = [customer(plan)[0] for _ in range(3)]
    broken_plan = b.plan(name="No price")
    b.usage_component(broken_plan, unit_price="0.10")
    b.usage_type("data", "MB")
    bad, sub = customer(broken_plan)
    b.usage(sub, 10, dt.date(2026, 6, 5), type_code="data")  # data is not priced: usage_not_priced
    run = run_to(Stage.FORMATTING)
    assert run.state == BillingRun.State.COMPLETED_WITH_ERRORS
    assert run.bills_generated == 3 and run.exception_count == 1
    (problem,) = RunException.objects.filter(run=run)
    assert (problem.account, problem.stage, problem.code, problem.subscription) == (
        bad,
        Stage.RATING,
        "usage_not_priced",
        sub,
    )
    assert sub.service_identifier in problem.message
    assert sorted(Statement.objects.values_list("account_id", flat=True)) == sorted(a.pk for a in good)
    assert RunAccount.objects.get(run=run, account=bad).status == RunAccount.Status.EXCEPTION
    assert RunStep.objects.get(run=run, stage=Stage.RATING).exceptions == 1


def test_every_account_failing_is_a_failed_run_with_nothing_billed(eager):
    definition()
    broken_plan = b.plan(name="No price")
    component = b.recurring(broken_plan, "10.00")
    component.prices.all().delete()
    for _ in range(2):
        customer(broken_plan)
    run = run_to(Stage.FORMATTING)
    assert run.state == BillingRun.State.FAILED
    assert run.bills_generated == 0 and run.exception_count == 2
    assert set(RunException.objects.values_list("code", flat=True)) == {"no_price"}
    assert Statement.objects.count() == 0 and FinancialTransaction.objects.count() == 0


def test_a_non_paying_childs_charges_are_on_its_paying_parents_bill(plan):
    parent, _ = customer(plan)
    child, _ = customer(plan, parent=parent, paying=False)
    run = run_to(Stage.POSTING)
    (bill,) = Statement.objects.all()
    assert bill.account == parent
    assert bill.new_charges == D("120.00")  # two subscriptions, June and July
    assert RunAccount.objects.get(run=run).account == parent
    assert bill.lines.filter(service_identifier=child.subscriptions.get().service_identifier).exists()


def test_the_due_date_follows_the_payment_terms_and_the_proximity(plan):
    account, _ = customer(plan, payment_terms_days=14)
    run_to(Stage.POSTING, due_date_proximity_sign="-", due_date_proximity_days=4)
    bill = Statement.objects.get(account=account)
    assert bill.statement_date == JULY_1
    assert bill.due_date == JULY_1 + dt.timedelta(days=10)


def test_a_second_run_over_the_same_accounts_bills_nothing_again(plan):
    accounts = [customer(plan)[0] for _ in range(3)]
    first = run_to(Stage.FORMATTING)
    second = run_to(Stage.FORMATTING)
    assert first.bills_generated == 3
    assert second.state == BillingRun.State.COMPLETED and second.bills_generated == 0
    assert set(RunAccount.objects.filter(run=second).values_list("status", flat=True)) == {"nothing"}
    assert Statement.objects.count() == len(accounts)
    assert FinancialTransaction.objects.filter(kind="bill").count() == len(accounts)


def test_bill_now_between_invoicing_and_posting_leaves_the_run_nothing_to_bill(plan, supervisor_user):
    account, _ = customer(plan)
    run = run_to(Stage.INVOICING)
    bill_create(account=account, bill_date=JULY_1, actor=supervisor_user)
    run = run_to(Stage.POSTING, run=run)
    assert run.bills_generated == 0
    assert RunAccount.objects.get(run=run).status == RunAccount.Status.NOTHING
    assert Statement.objects.count() == 1


def test_two_runs_executed_at_once_bill_each_period_once(plan):
    """Two overlapping runs rate and post in parallel threads: each subscription period is billed once."""
    accounts = [customer(plan)[0] for _ in range(6)]
    runs = [billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1) for _ in range(2)]

    def execute(i):
        billrun_execute(run=runs[i], up_to=Stage.POSTING)

    _, errors = run_in_threads(execute, 2)
    assert errors == []
    for run in runs:
        run.refresh_from_db()
        assert run.state == BillingRun.State.POSTING
    assert sum(run.bills_generated for run in runs) == len(accounts)
    assert Statement.objects.count() == len(accounts)
    assert BillSegment.objects.count() == 2 * len(accounts)  # June and July, once each
    assert BillSegment.objects.filter(status="billed").count() == 2 * len(accounts)
    assert FinancialTransaction.objects.filter(kind="bill").count() == len(accounts)
    assert ledger_mismatches() == []


def test_a_chunk_is_claimed_once_and_a_done_chunk_is_not_worked_again(plan):
    for _ in range(2):
        customer(plan)
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    billrun_execute(run=run, up_to=Stage.RATING)
    (chunk,) = RunChunk.objects.filter(run=run)
    assert chunk.status == RunChunk.Status.DONE and chunk.attempts == 1
    assert chunk_claim(chunk_id=chunk.pk) is None  # redelivered: nothing to do
    chunk.refresh_from_db()
    assert chunk.attempts == 1


def test_a_crashed_chunk_is_resumed_and_completes_once(plan, settings, monkeypatch):
    """A worker dies after claiming a chunk (its work never commits): resume queues it again."""
    settings.BILLRUN_CHUNK_LEASE_SECONDS = 60
    accounts = [customer(plan)[0] for _ in range(4)]  # chunk size 2: two chunks
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    original = run_work.chunk_process
    crashed = []

    def crash_once(*, chunk_id, attempt):
        if not crashed:
            crashed.append(chunk_id)
            return "crashed"  # as if the worker was killed: claimed, nothing committed
        return original(chunk_id=chunk_id, attempt=attempt)

    from billruns import tasks

    monkeypatch.setattr(tasks, "chunk_process", crash_once)
    billrun_execute(run=run, up_to=Stage.POSTING)
    run.refresh_from_db()
    assert run.execution == BillingRun.Execution.RUNNING and run.state == BillingRun.State.DRAFT
    stuck = RunChunk.objects.get(pk=crashed[0])
    assert (stuck.status, stuck.attempts) == (RunChunk.Status.RUNNING, 1)
    # Its lease has not expired: the automatic resume leaves it; the admin's resume queues it again.
    monkeypatch.setattr(tasks, "chunk_process", original)
    assert billrun_resume(run=run, force=False) == 0
    assert billrun_resume(run=run) == 1
    run.refresh_from_db()
    assert (run.state, run.execution) == (BillingRun.State.POSTING, BillingRun.Execution.IDLE)
    assert run.bills_generated == len(accounts)
    stuck.refresh_from_db()
    assert stuck.attempts == 2
    assert Statement.objects.count() == len(accounts)


def test_a_chunk_that_keeps_crashing_is_dead_lettered_and_the_run_goes_on(plan, settings, monkeypatch):
    settings.BILLRUN_CHUNK_MAX_ATTEMPTS = 3
    settings.BILLRUN_CHUNK_LEASE_SECONDS = 0  # every claim's lease is over at once
    accounts = [customer(plan)[0] for _ in range(4)]
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    poison = set()
    original = run_work.chunk_process

    def crash_on_first_chunk(*, chunk_id, attempt):
        chunk = RunChunk.objects.get(pk=chunk_id)
        if chunk.index == 0 and chunk.stage == Stage.RATING:
            poison.add(chunk_id)
            return "crashed"
        return original(chunk_id=chunk_id, attempt=attempt)

    from billruns import tasks

    monkeypatch.setattr(tasks, "chunk_process", crash_on_first_chunk)
    billrun_execute(run=run, up_to=Stage.POSTING)
    for _ in range(5):  # the resume job, again and again: it must end, not loop
        run.refresh_from_db()
        if run.execution == BillingRun.Execution.RUNNING:
            billrun_resume(run=run, force=False)
    run.refresh_from_db()
    (dead_id,) = poison
    dead = RunChunk.objects.get(pk=dead_id)
    assert (dead.status, dead.attempts) == (RunChunk.Status.DEAD, 3)
    assert (run.state, run.execution) == (BillingRun.State.POSTING, BillingRun.Execution.IDLE)
    first_two = sorted(a.pk for a in accounts)[:2]
    dead_letters = RunException.objects.filter(code="dead_letter", stage=Stage.RATING)
    assert sorted(dead_letters.values_list("account_id", flat=True)) == first_two
    assert "Gave up after 3 attempts" in dead_letters.first().message
    assert run.bills_generated == 2
    assert Statement.objects.count() == 2
    run = run_to(Stage.FORMATTING, run=run)
    assert run.state == BillingRun.State.COMPLETED_WITH_ERRORS


def test_one_bad_account_in_a_chunk_is_an_exception_and_its_chunk_mates_are_billed(plan, monkeypatch):
    accounts = sorted((customer(plan)[0] for _ in range(2)), key=lambda a: a.pk)
    bad = accounts[0]
    original = run_work.PROCESSORS[("normal", Stage.POSTING)]

    def breaks_on_bad(run, unit_ids):
        if bad.pk in unit_ids:
            raise ValueError(f"cannot post account {bad.pk}")
        return original(run, unit_ids)

    monkeypatch.setitem(run_work.PROCESSORS, ("normal", Stage.POSTING), breaks_on_bad)
    run = run_to(Stage.POSTING)
    (problem,) = RunException.objects.filter(run=run)
    assert (problem.account, problem.stage, problem.code) == (bad, Stage.POSTING, "unexpected_error")
    assert "ValueError: cannot post account" in problem.message
    assert list(Statement.objects.values_list("account_id", flat=True)) == [accounts[1].pk]
    chunk = RunChunk.objects.get(run=run, stage=Stage.POSTING)
    assert chunk.status == RunChunk.Status.DONE and "ValueError" in chunk.last_error


def _queries_per_chunk(plan, units: int, monkeypatch) -> dict[str, int]:
    """Queries each stage's (single) chunk makes for ``units`` bill units, each with two subscriptions and
    usage on both."""
    for _ in range(units):
        account, sub = customer(plan)
        second = b.subscription(account, plan, JUNE_1)
        for day in (3, 9, 27):
            b.usage(sub, 7, dt.date(2026, 6, day))
            b.usage(second, 5, dt.date(2026, 6, day))
    counts: dict[str, int] = {}
    original = run_work.chunk_process

    def counted(*, chunk_id, attempt):
        stage = RunChunk.objects.get(pk=chunk_id).stage
        with CaptureQueriesContext(connection) as queries:
            result = original(chunk_id=chunk_id, attempt=attempt)
        counts[stage] = len(queries)
        return result

    from billruns import tasks
    from billruns.services import runs

    # The coordinator is driven here, so that each chunk's count is its own (eager tasks queued after a
    # chunk's commit would run inside it).
    advances: list[int] = []
    monkeypatch.setattr(tasks, "chunk_process", counted)
    monkeypatch.setattr(runs, "_dispatch_advance", advances.append)
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    billrun_execute(run=run, up_to=Stage.POSTING)
    while advances:
        runs.billrun_advance(run_id=advances.pop())
    run.refresh_from_db()
    assert run.state == BillingRun.State.POSTING
    assert RunAccount.objects.filter(run=run, status="posted").count() == units
    return counts


def test_queries_per_chunk_do_not_grow_with_its_size(eager, monkeypatch):
    definition(chunk_size=1000)
    plan = monthly_plan()
    b.usage_component(plan, unit_price="0.10")
    _queries_per_chunk(plan, 1, monkeypatch)  # first use makes the number series and the engine biller
    small = _queries_per_chunk(plan, 2, monkeypatch)
    # (the first accounts stay: billed, they have nothing new in the second run)
    large = _queries_per_chunk(plan, 12, monkeypatch)
    assert large == small
    # Posting: 45 with the bills' usage summaries (two aggregate reads and one insert per chunk).
    assert small[Stage.RATING] <= 40 and small[Stage.POSTING] <= 45, small


def test_ledger_totals_and_results_per_step(plan):
    accounts = [customer(plan)[0] for _ in range(3)]
    run = run_to(Stage.FORMATTING)
    steps = {s.stage: s for s in run.steps.all()}
    assert steps[Stage.RATING].entities == 6  # segments
    assert steps[Stage.RATING].totals == {"USD": "180.0000"}
    assert steps[Stage.INVOICING].entities == 3  # one invoice per subscription
    assert steps[Stage.POSTING].entities == 3 and steps[Stage.POSTING].transactions == 3
    assert all(s.accounts_done == s.accounts_total == len(accounts) for s in steps.values())
    assert all(s.finished_at and s.started_at <= s.finished_at for s in steps.values())
    total = sum(FinancialTransaction.objects.filter(kind="bill").values_list("amount", flat=True), Decimal(0))
    assert total == D("180.00")
    assert run.started_at <= run.finished_at <= timezone.now()
