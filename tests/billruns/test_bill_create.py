"""Bill now: one bill per bill unit, ledger swept and posted, segments frozen; a preview stores nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from accounts.models import Account
from billing_mgmt.errors import ApplicationError
from billruns.models import BillSegment, Subscription
from billruns.services import bill_create, bill_preview, engine_biller
from invoicing.models import BillMessage
from statements.models import AccountBalance, FinancialTransaction, Statement, StatementLine
from statements.services import transaction_post
from tests.billruns import builders as b
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db
D = b.D
JUNE_1 = dt.date(2026, 6, 1)
JULY_1 = dt.date(2026, 7, 1)


@pytest.fixture
def billed_account():
    acc = AccountFactory()
    acc.billing_profile.payment_terms_days = 14
    acc.billing_profile.save()
    category, jurisdiction = b.tax("10")
    plan = b.plan()
    b.recurring(plan, "30.00", tax_category=category)
    b.one_time(plan, "15.00", tax_category=category)
    sub = b.subscription(acc, plan, dt.date(2026, 6, 10), jurisdiction=jurisdiction)
    return acc, sub


def test_bill_now_assembles_posts_and_freezes(billed_account, supervisor_user):
    acc, sub = billed_account
    BillMessage.objects.create(
        code="thanks", text="Thank you for your business.", valid_from=dt.date(2026, 1, 1)
    )
    result = bill_create(account=acc, bill_date=dt.date(2026, 6, 10), actor=supervisor_user)
    statement = result.statement
    # 21.00 (21 of 30 days) + 15.00 activation = 36.00; tax 10% = 3.60
    assert (statement.new_charges, statement.taxes, statement.total_due) == (
        D("36.00"),
        D("3.60"),
        D("39.60"),
    )
    assert statement.previous_balance == 0 and statement.payments == 0 and statement.adjustments == 0
    assert statement.due_date == dt.date(2026, 6, 24)
    assert statement.biller == engine_biller() and statement.channel == "engine"
    assert statement.status == Statement.Status.OPEN
    assert list(statement.lines.values_list("line_type", "amount")) == [
        (StatementLine.Type.ONE_TIME, D("15.00")),
        (StatementLine.Type.RECURRING, D("21.00")),
        (StatementLine.Type.TAX, D("3.60")),
    ]
    bill_row = FinancialTransaction.objects.get(statement=statement, kind="bill")
    assert bill_row.amount == D("39.60")
    assert AccountBalance.objects.get(account=acc).amount == D("39.60")
    segment = BillSegment.objects.get(subscription=sub)
    assert (
        segment.status == BillSegment.Status.BILLED and segment.statement == statement and segment.frozen_at
    )
    # Each calculation line printed once, as a line of this statement.
    printed = statement.lines.values_list("calculation_line_id", flat=True)
    assert sorted(printed) == sorted(segment.lines.values_list("pk", flat=True))
    assert Subscription.objects.get(pk=sub.pk).billed_through == dt.date(2026, 6, 30)
    assert [m.text for m in statement.messages.all()] == ["Thank you for your business."]
    with pytest.raises(ApplicationError) as exc:
        bill_create(account=acc, bill_date=dt.date(2026, 6, 10))
    assert exc.value.code == "nothing_to_bill"


def test_next_bill_sweeps_payments_and_carries_the_previous_balance(billed_account):
    acc, _ = billed_account
    first = bill_create(account=acc, bill_date=dt.date(2026, 6, 10)).statement
    transaction_post(
        account=acc, kind="payment", amount="-39.60", currency="USD", effective_date=dt.date(2026, 6, 20)
    )
    transaction_post(
        account=acc, kind="adjustment", amount="-5.00", currency="USD", effective_date=dt.date(2026, 6, 21)
    )
    second = bill_create(account=acc, bill_date=JULY_1).statement
    assert second.previous_balance == first.total_due == D("39.60")
    assert (second.payments, second.adjustments) == (D("39.60"), D("-5.00"))
    assert (second.new_charges, second.taxes) == (D("30.00"), D("3.00"))
    assert second.total_due == D("28.00")  # 39.60 - 39.60 - 5.00 + 30.00 + 3.00
    assert second.period_start == JULY_1
    assert FinancialTransaction.objects.filter(statement=second).count() == 3  # payment, adjustment, bill
    assert AccountBalance.objects.get(account=acc).amount == second.total_due


def test_preview_is_the_same_bill_and_stores_nothing(billed_account):
    acc, sub = billed_account
    counts = (Statement.objects.count(), FinancialTransaction.objects.count(), BillSegment.objects.count())
    preview = bill_preview(account=acc, bill_date=dt.date(2026, 6, 10))
    assert (
        Statement.objects.count(),
        FinancialTransaction.objects.count(),
        BillSegment.objects.count(),
    ) == counts
    assert preview.preview and preview.total_due == D("39.60")
    assert [ln["amount"] for ln in preview.segments[0]["lines"]] == [D("15.00"), D("21.00"), D("3.60")]
    real = bill_create(account=acc, bill_date=dt.date(2026, 6, 10))
    assert real.as_dict()["total_due"] == preview.as_dict()["total_due"]
    assert real.segments[0]["lines"] == preview.segments[0]["lines"]


def test_non_paying_child_is_billed_on_its_paying_parent(billed_account):
    parent, _ = billed_account
    child = AccountFactory(parent=parent, is_paying=False)
    plan = b.plan()
    b.recurring(plan, "10.00")
    child_sub = b.subscription(child, plan, JUNE_1)
    result = bill_create(account=child, bill_date=dt.date(2026, 6, 10))
    assert result.statement.account == parent
    assert result.statement.new_charges == D("46.00")  # parent's 36.00 + child's 10.00
    assert BillSegment.objects.get(subscription=child_sub).statement == result.statement
    assert not Statement.objects.filter(account=child).exists()
    assert Account.objects.get(pk=child.pk).transactions.count() == 0


def test_a_subscription_in_error_is_left_out_and_the_others_are_billed(billed_account):
    acc, _ = billed_account
    broken = b.plan()
    b.recurring(broken, "5.00", valid_from=dt.date(2026, 7, 1))  # no price in June
    bad = b.subscription(acc, broken, JUNE_1, sequence=1)
    result = bill_create(account=acc, bill_date=dt.date(2026, 6, 10))
    assert result.statement.new_charges == D("36.00")
    (error,) = result.errors
    assert (error.subscription_id, error.code) == (bad.pk, "no_price")
    assert BillSegment.objects.get(subscription=bad).status == BillSegment.Status.ERROR
