"""Prepaid runs: usage and recurring charges debit the wallet, exactly once per usage record; no bills;
tiers count a period's units once across daily runs; the wallet estimate; top-ups."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from billing_mgmt.errors import ApplicationError
from billruns.models import (
    BillingRun,
    BillingTermScheme,
    BillSegment,
    RunAccount,
    RunType,
    Stage,
    UsageRecord,
    WalletEstimate,
)
from billruns.services import billrun_create, billrun_execute, wallet_topup
from billruns.services.prepaid import wallet_estimates_refresh
from statements.models import AccountBalance, FinancialTransaction, Statement
from statements.selectors import ledger_mismatches
from tests.billruns import builders as b
from tests.billruns.runs_helpers import customer, definition
from tests.concurrency import run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)
D = b.D
JUNE_1 = dt.date(2026, 6, 1)


def prepaid_plan(*, fee=None, tiers=None, unit_price="0.10", included=0):
    plan = b.plan(name="Prepaid mobile")
    plan.billing_term_scheme = BillingTermScheme.objects.get(code="prepaid")
    plan.save()
    if fee is not None:
        b.recurring(plan, fee)
    if tiers:
        b.usage_component(plan, method="graduated", tiers=tiers, included=included)
    else:
        b.usage_component(plan, unit_price=unit_price, included=included)
    return plan


def prepaid_customer(plan, start=JUNE_1):
    account, sub = customer(plan, start)
    sub.billing_term_scheme = plan.billing_term_scheme
    sub.save()
    return account, sub


def run_prepaid(day: dt.date) -> BillingRun:
    run = billrun_create(run_type=RunType.PREPAID, bill_as_of_date=day, transaction_date=day)
    billrun_execute(run=run, up_to=Stage.POSTING)
    run.refresh_from_db()
    return run


def wallet(account) -> Decimal:
    row = AccountBalance.objects.filter(account=account, balance_type="wallet").first()
    return row.amount if row else Decimal(0)


@pytest.fixture
def prepaid(eager):
    return definition(RunType.PREPAID, name="Prepaid daily")


def test_a_prepaid_run_debits_the_wallet_and_makes_no_bill(prepaid):
    account, sub = prepaid_customer(prepaid_plan())
    wallet_topup(account=account, amount=D("20.00"), currency="USD", idempotency_key="top-1")
    for day in (1, 2, 3):
        b.usage(sub, 10, dt.date(2026, 6, day))
    run = run_prepaid(dt.date(2026, 6, 3))
    assert run.state == BillingRun.State.COMPLETED
    assert run.wallet_transactions == 1 and run.bills_generated == 0
    assert Statement.objects.count() == 0
    (debit,) = FinancialTransaction.objects.filter(kind="wallet_debit")
    assert (debit.amount, debit.balance_type, debit.account) == (D("-3.00"), "wallet", account)
    assert wallet(account) == D("17.00")
    segment = BillSegment.objects.get()
    assert segment.status == BillSegment.Status.DEBITED and segment.wallet_transaction == debit
    assert (segment.period_start, segment.period_end) == (JUNE_1, dt.date(2026, 6, 3))
    assert {r.rating_status for r in UsageRecord.objects.select_related("rating")} == {"rated"}
    assert RunAccount.objects.get(run=run).status == RunAccount.Status.DEBITED
    step = run.steps.get(stage=Stage.POSTING)
    assert (step.transactions, step.totals) == (1, {"USD": "-3.0000"})


def test_daily_runs_debit_each_usage_record_exactly_once(prepaid):
    account, sub = prepaid_customer(prepaid_plan())
    records = []
    for day in range(1, 6):
        date = dt.date(2026, 6, day)
        records.append(b.usage(sub, 5, date))
        run_prepaid(date)
        run_prepaid(date)  # a second run the same day: nothing new
    late = b.usage(sub, 7, dt.date(2026, 6, 2))  # arrives late, for a day already debited
    run_prepaid(dt.date(2026, 6, 6))
    debits = FinancialTransaction.objects.filter(kind="wallet_debit")
    assert debits.count() == 6
    assert sum(debits.values_list("amount", flat=True), Decimal(0)) == D("-3.20")  # 32 units x 0.10
    for record in [*records, late]:
        record.refresh_from_db()
        assert record.rating_status == "rated" and record.rating.segment.status == BillSegment.Status.DEBITED
    assert wallet(account) == D("-3.20")
    assert ledger_mismatches() == []


def test_graduated_tiers_count_the_period_once_across_runs(prepaid):
    plan = prepaid_plan(tiers=[(0, 100, "0.10"), (100, None, "0.05")], included=20)
    account, sub = prepaid_customer(plan)
    b.usage(sub, 80, dt.date(2026, 6, 1))  # 20 free, 60 x 0.10 = 6.00
    run_prepaid(dt.date(2026, 6, 1))
    b.usage(sub, 70, dt.date(2026, 6, 2))  # units 81-150: 20 x 0.10 + 50 x 0.05 = 4.50
    run_prepaid(dt.date(2026, 6, 2))
    amounts = list(
        FinancialTransaction.objects.filter(kind="wallet_debit")
        .order_by("id")
        .values_list("amount", flat=True)
    )
    assert amounts == [D("-6.00"), D("-4.50")]
    # the same 150 units at once cost the same: 130 chargeable = 80 x 0.10 + 50 x 0.05 = 10.50
    assert -sum(amounts) == D("10.50")


def test_recurring_charges_are_debited_when_the_period_starts(prepaid):
    account, _sub = prepaid_customer(prepaid_plan(fee="15.00"), start=dt.date(2026, 6, 16))
    run_prepaid(dt.date(2026, 6, 20))  # June 16-30 of a 30-day month: 15 x 15.00 / 30 = 7.50
    run_prepaid(dt.date(2026, 6, 25))  # nothing new
    run_prepaid(dt.date(2026, 7, 1))  # July in full
    amounts = list(
        FinancialTransaction.objects.filter(kind="wallet_debit")
        .order_by("id")
        .values_list("amount", flat=True)
    )
    assert amounts == [D("-7.50"), D("-15.00")]
    assert BillSegment.objects.count() == 2  # the quiet day made no segment


def test_two_prepaid_runs_at_once_debit_once(prepaid):
    account, sub = prepaid_customer(prepaid_plan())
    for day in (1, 2):
        b.usage(sub, 10, dt.date(2026, 6, day))
    runs = [
        billrun_create(
            run_type=RunType.PREPAID,
            bill_as_of_date=dt.date(2026, 6, 2),
            transaction_date=dt.date(2026, 6, 2),
        )
        for _ in range(2)
    ]
    _, errors = run_in_threads(lambda i: billrun_execute(run=runs[i], up_to=Stage.POSTING), 2)
    assert errors == []
    assert FinancialTransaction.objects.filter(kind="wallet_debit").count() == 1
    assert wallet(account) == D("-2.00")


def test_normal_runs_leave_prepaid_subscriptions_alone(prepaid):
    definition()
    account, sub = prepaid_customer(prepaid_plan(fee="10.00"))
    run = billrun_create(bill_as_of_date=dt.date(2026, 7, 1), transaction_date=dt.date(2026, 7, 1))
    billrun_execute(run=run, up_to=Stage.FORMATTING)
    run.refresh_from_db()
    assert run.accounts_selected == 0 and run.state == BillingRun.State.COMPLETED
    assert BillSegment.objects.count() == 0


def test_the_wallet_estimate_from_consumption_and_recurring_charges(prepaid):
    prepaid.estimate_wallet_consumption = True
    prepaid.save()
    account, sub = prepaid_customer(prepaid_plan(fee="9.00", unit_price="1.00"))
    wallet_topup(account=account, amount=D("60.00"), currency="USD", idempotency_key="top")
    for day in range(1, 11):
        b.usage(sub, 3, dt.date(2026, 6, day))  # 3.00 a day
    run = run_prepaid(dt.date(2026, 6, 10))
    estimate = WalletEstimate.objects.get(account=account)
    # 60.00 - 9.00 (June fee) - 30.00 (10 days of usage) = 21.00 left
    assert estimate.balance == D("21.00")
    # usage over the last 30 days: 30.00 / 30 = 1.00 a day; July's fee on the 1st
    assert estimate.daily_consumption == D("1.00")
    assert estimate.recurring_per_period == D("9.00")
    # 21.00 - 1.00 a day: 11.00 left on June 20; July 1st takes 1.00 + 9.00 -> below zero on 1 July
    assert estimate.runs_out_on == dt.date(2026, 7, 1)
    assert estimate.run == run


def test_an_empty_wallet_runs_out_today(prepaid):
    account, _sub = prepaid_customer(prepaid_plan())
    (estimate,) = wallet_estimates_refresh(account_ids=[account.pk], today=dt.date(2026, 6, 5))
    assert estimate.runs_out_on == dt.date(2026, 6, 5)


def test_top_ups_are_idempotent_and_refuse_bad_amounts(prepaid):
    account, _ = prepaid_customer(prepaid_plan())
    first, created = wallet_topup(account=account, amount=D("10.00"), currency="USD", idempotency_key="k")
    again, created_again = wallet_topup(
        account=account, amount=D("10.00"), currency="USD", idempotency_key="k"
    )
    assert created and not created_again and first == again
    for amount in (D("0"), D("-5.00")):
        with pytest.raises(ApplicationError):
            wallet_topup(account=account, amount=amount, currency="USD")
    with pytest.raises(ApplicationError):
        wallet_topup(account=account, amount=D("1.005"), currency="USD")
    assert wallet(account) == D("10.00")
    assert FinancialTransaction.objects.filter(kind="wallet_topup").count() == 1


def test_the_next_recurring_charges_of_every_subscription_are_summed(prepaid):
    account, _ = prepaid_customer(prepaid_plan(fee="9.00"))
    second = b.subscription(account, prepaid_plan(fee="5.00"), JUNE_1)
    second.billing_term_scheme = BillingTermScheme.objects.get(code="prepaid")
    second.save()
    wallet_topup(account=account, amount=D("100.00"), currency="USD", idempotency_key="t")
    (estimate,) = wallet_estimates_refresh(account_ids=[account.pk], today=dt.date(2026, 6, 10))
    assert (estimate.recurring_per_period, estimate.next_charge_on) == (D("14.00"), dt.date(2026, 7, 1))
    # no usage: 100.00 less 14.00 on the first of each month from July: 2.00 left after Jan 1, 2027
    assert estimate.runs_out_on == dt.date(2027, 2, 1)


def test_a_top_up_refreshes_the_estimate(prepaid):
    account, _ = prepaid_customer(prepaid_plan(fee="9.00"))
    wallet_topup(account=account, amount=D("30.00"), currency="USD", idempotency_key="first")
    assert WalletEstimate.objects.get(account=account).balance == D("30.00")
    wallet_topup(account=account, amount=D("20.00"), currency="USD", idempotency_key="second")
    assert WalletEstimate.objects.get(account=account).balance == D("50.00")
