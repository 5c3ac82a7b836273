"""Payments, allocation, reversals, adjustments with limits and maker-checker, payment methods."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db.models import Sum

from accounts.models import Account
from billing_mgmt import roles
from billing_mgmt.errors import ApplicationError, Conflict
from payments.models import Adjustment, AdjustmentLimit, AdjustmentReason, Payment, PaymentMethod
from payments.services import (
    adjustment_approve,
    adjustment_reject,
    adjustment_request,
    allocation_plan,
    looks_like_card_number,
    payment_method_add,
    payment_method_remove,
    payment_method_set_default,
    payment_post,
    payment_reverse,
)
from statements.models import AccountBalance, FinancialTransaction, Statement
from statements.selectors import ledger_mismatches
from statements.services import transaction_post
from tests.factories import AccountFactory, UserFactory
from tests.invoicing.builders import _statement

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def account():
    return AccountFactory()


def bill(account, number, charges, *, due=dt.date(2026, 11, 15)):
    statement = _statement(account, number=number, new_charges=D(charges), taxes=D(0))
    Statement.objects.filter(pk=statement.pk).update(due_date=due)
    statement.refresh_from_db()
    if D(charges):
        transaction_post(
            account=account,
            kind="bill",
            amount=D(charges),
            currency="USD",
            effective_date=statement.statement_date,
            statement=statement,
            idempotency_key=f"bill:{statement.pk}",
        )
    return statement


def statuses(*statements):
    return [Statement.objects.get(pk=s.pk).status for s in statements]


# --- allocation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("owed", "already", "amount", "expected"),
    [
        (["50.00", "30.00"], {}, "20.00", ["20.00"]),  # the oldest takes it all
        (["50.00", "30.00"], {}, "50.00", ["50.00"]),  # exactly the oldest
        (["50.00", "30.00"], {}, "60.00", ["50.00", "10.00"]),  # spills to the next
        (["50.00", "30.00"], {}, "100.00", ["50.00", "30.00"]),  # more than owed: the rest is a credit
        (["50.00", "30.00"], {0: "50.00"}, "10.00", ["10.00"]),  # a paid one is skipped
        (["50.00", "30.00"], {0: "45.00"}, "10.00", ["5.00", "5.00"]),  # the remainder of a partly paid one
        (["0.00", "30.00"], {}, "10.00", ["10.00"]),  # nothing owed on a zero bill
    ],
)
def test_allocation_plan(account, owed, already, amount, expected):
    statements = [bill(account, f"S-{i}", charges) for i, charges in enumerate(owed)]
    allocated = {statements[i].pk: D(v) for i, v in already.items()}
    plan = allocation_plan(statements=statements, allocated=allocated, amount=D(amount))
    assert [take for _, take in plan] == [D(v) for v in expected]


def test_a_payment_settles_the_oldest_statements_first(account, csr_user):
    older = bill(account, "S-1", "50.00", due=dt.date(2026, 11, 5))
    newer = bill(account, "S-2", "30.00", due=dt.date(2026, 11, 15))
    payment, created = payment_post(
        account=account,
        amount="60.00",
        currency="USD",
        idempotency_key="k1",
        reference="Cheque 12",
        actor=csr_user,
    )
    assert created and payment.unallocated == D(0)
    assert statuses(older, newer) == ["paid", "partially_paid"]
    assert payment.transaction.amount == D("-60.00") and payment.transaction.kind == "payment"
    assert AccountBalance.objects.get(account=account).amount == D("20.00")
    assert ledger_mismatches() == []


def test_a_chosen_statement_is_settled_first_and_the_rest_is_a_credit(account, csr_user):
    older = bill(account, "S-1", "50.00", due=dt.date(2026, 11, 5))
    newer = bill(account, "S-2", "30.00", due=dt.date(2026, 11, 15))
    payment, _ = payment_post(
        account=account,
        amount="100.00",
        currency="USD",
        idempotency_key="k1",
        statement=newer,
        actor=csr_user,
    )
    assert statuses(older, newer) == ["paid", "paid"]
    assert payment.unallocated == D("20.00")
    assert [(a.statement.number, a.amount) for a in payment.allocations.order_by("id")] == [
        ("S-2", D("30.00")),
        ("S-1", D("50.00")),
    ]


def test_the_same_idempotency_key_makes_one_payment(account, csr_user):
    bill(account, "S-1", "50.00")
    first, created = payment_post(
        account=account, amount="10.00", currency="USD", idempotency_key="same", actor=csr_user
    )
    again, created_again = payment_post(
        account=account, amount="10.00", currency="USD", idempotency_key="same", actor=csr_user
    )
    assert created and not created_again and again == first
    assert Payment.objects.count() == 1 and FinancialTransaction.objects.filter(kind="payment").count() == 1
    with pytest.raises(Conflict):
        payment_post(account=account, amount="11.00", currency="USD", idempotency_key="same", actor=csr_user)


@pytest.mark.parametrize(
    ("amount", "currency", "field"),
    [
        ("0", "USD", "amount"),
        ("-5.00", "USD", "amount"),
        ("1.234", "USD", "amount"),
        ("abc", "USD", "amount"),
        ("10.00", "EUR", "currency"),
    ],
)
def test_bad_payments_are_refused_and_post_nothing(account, csr_user, amount, currency, field):
    with pytest.raises(ApplicationError) as refused:
        payment_post(account=account, amount=amount, currency=currency, idempotency_key="k", actor=csr_user)
    assert field in refused.value.fields
    assert not Payment.objects.exists() and not FinancialTransaction.objects.exists()


def test_a_payment_to_a_closed_account_or_with_a_card_number_is_refused(account, csr_user):
    with pytest.raises(ApplicationError) as card:
        payment_post(
            account=account,
            amount="5.00",
            currency="USD",
            idempotency_key="k",
            reference="4111 1111 1111 1111",
            actor=csr_user,
        )
    assert card.value.code == "card_number_refused" and "reference" in card.value.fields
    Account.objects.filter(pk=account.pk).update(status=Account.Status.CLOSED)
    with pytest.raises(ApplicationError) as closed:
        payment_post(account=account, amount="5.00", currency="USD", idempotency_key="k2", actor=csr_user)
    assert closed.value.code == "account_closed"
    assert not FinancialTransaction.objects.exists()


def test_a_reversed_payment_reopens_its_statements_and_is_reversed_once(account, csr_user):
    older = bill(account, "S-1", "50.00", due=dt.date(2099, 1, 1))
    payment, _ = payment_post(
        account=account, amount="50.00", currency="USD", idempotency_key="k", actor=csr_user
    )
    assert statuses(older) == ["paid"]
    payment_reverse(payment=payment, reason="Cheque bounced", actor=csr_user)
    payment.refresh_from_db()
    assert payment.status == Payment.Status.REVERSED and payment.reversal.amount == D("50.00")
    assert payment.reversal.corrects_id == payment.transaction_id
    assert statuses(older) == ["open"]
    assert AccountBalance.objects.get(account=account).amount == D("50.00")
    with pytest.raises(Conflict) as twice:
        payment_reverse(payment=payment, reason="again", actor=csr_user)
    assert twice.value.code == "already_reversed"
    with pytest.raises(ApplicationError):
        payment_reverse(payment=payment, reason=" ", actor=csr_user)
    assert FinancialTransaction.objects.filter(kind="reversal").count() == 1


@pytest.mark.django_db(transaction=True)
def test_twenty_payments_at_once_lose_no_update():
    from tests.concurrency import run_in_threads

    account = AccountFactory()
    user = UserFactory(username="csr-threads", role=roles.CSR)
    bill(account, "S-1", "500.00")

    def pay(i: int):
        return payment_post(
            account=account, amount="7.00", currency="USD", idempotency_key=f"t{i}", actor=user
        )

    results, errors = run_in_threads(pay, 20)
    assert errors == [] and len(results) == 20
    assert AccountBalance.objects.get(account=account).amount == D("500.00") - 20 * D("7.00")
    total = FinancialTransaction.objects.filter(account=account).aggregate(s=Sum("amount"))["s"]
    assert total == D("360.00") and ledger_mismatches() == []
    assert Statement.objects.get(number="S-1").status == "partially_paid"
    assert sum(p.allocations.get().amount for p in Payment.objects.all()) == D("140.00")


# --- adjustments -----------------------------------------------------------------------------------------


@pytest.fixture
def reason():
    return AdjustmentReason.objects.create(code="goodwill", name="Goodwill credit", direction="credit")


@pytest.fixture
def limit():
    return AdjustmentLimit.objects.create(
        role=Group.objects.get(name=roles.CSR), currency="USD", max_amount=D("25.00")
    )


def test_within_the_limit_an_adjustment_posts_at_once(account, csr_user, reason, limit):
    adjustment, created = adjustment_request(
        account=account,
        direction="credit",
        amount="25.00",
        currency="USD",
        reason=reason,
        idempotency_key="a1",
        actor=csr_user,
    )
    assert created and adjustment.status == Adjustment.Status.POSTED
    assert adjustment.transaction.amount == D("-25.00") and adjustment.transaction.kind == "adjustment"


def test_above_the_limit_it_waits_for_a_supervisor_who_is_not_the_maker(
    account, csr_user, supervisor_user, reason, limit
):
    adjustment, _ = adjustment_request(
        account=account,
        direction="credit",
        amount="80.00",
        currency="USD",
        reason=reason,
        idempotency_key="a1",
        actor=csr_user,
    )
    assert adjustment.status == Adjustment.Status.PENDING and adjustment.transaction is None
    assert not FinancialTransaction.objects.exists()
    with pytest.raises(ApplicationError) as csr_may_not:
        adjustment_approve(adjustment=adjustment, actor=csr_user)
    assert csr_may_not.value.code == "not_a_supervisor"
    approved = adjustment_approve(adjustment=adjustment, actor=supervisor_user, comment="Fine")
    assert approved.status == Adjustment.Status.POSTED and approved.checker == supervisor_user
    assert FinancialTransaction.objects.get(kind="adjustment").amount == D("-80.00")
    with pytest.raises(Conflict):
        adjustment_approve(adjustment=adjustment, actor=supervisor_user)


def test_a_supervisor_cannot_approve_their_own(account, supervisor_user, reason):
    adjustment, _ = adjustment_request(
        account=account,
        direction="credit",
        amount="80.00",
        currency="USD",
        reason=reason,
        idempotency_key="a1",
        actor=supervisor_user,
    )
    assert adjustment.status == Adjustment.Status.PENDING  # no limit for supervisors: everything is checked
    with pytest.raises(ApplicationError) as own:
        adjustment_approve(adjustment=adjustment, actor=supervisor_user)
    assert own.value.code == "maker_cannot_check"
    assert not FinancialTransaction.objects.exists()


def test_a_rejection_needs_a_comment_and_posts_nothing(account, csr_user, supervisor_user, reason):
    adjustment, _ = adjustment_request(
        account=account,
        direction="credit",
        amount="5.00",
        currency="USD",
        reason=reason,
        idempotency_key="a1",
        actor=csr_user,
    )
    with pytest.raises(ApplicationError):
        adjustment_reject(adjustment=adjustment, actor=supervisor_user, comment="")
    rejected = adjustment_reject(adjustment=adjustment, actor=supervisor_user, comment="Not eligible")
    assert rejected.status == Adjustment.Status.REJECTED and not FinancialTransaction.objects.exists()


def test_a_user_limit_wins_over_the_role_and_bad_adjustments_are_refused(account, csr_user, reason, limit):
    AdjustmentLimit.objects.create(user=csr_user, currency="USD", max_amount=D("100.00"))
    adjustment, _ = adjustment_request(
        account=account,
        direction="credit",
        amount="90.00",
        currency="USD",
        reason=reason,
        idempotency_key="a1",
        actor=csr_user,
    )
    assert adjustment.status == Adjustment.Status.POSTED
    with pytest.raises(ApplicationError) as wrong_way:
        adjustment_request(
            account=account,
            direction="debit",
            amount="5.00",
            currency="USD",
            reason=reason,
            idempotency_key="a2",
            actor=csr_user,
        )
    assert "reason" in wrong_way.value.fields
    with pytest.raises(ApplicationError):
        adjustment_request(
            account=account,
            direction="credit",
            amount="0",
            currency="USD",
            reason=reason,
            idempotency_key="a3",
            actor=csr_user,
        )
    assert Adjustment.objects.count() == 1


# --- payment methods -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pan"),
    [
        ("4111111111111111", True),
        ("4111 1111 1111 1111", True),
        ("5500-0000-0000-0004", True),
        ("4111111111111112", False),
        ("1234", False),
        ("Invoice 2026-11-0001", False),
        ("", False),
    ],
)
def test_card_numbers_are_recognised(text, pan):
    assert looks_like_card_number(text) is pan


def test_payment_methods_add_default_remove(account, csr_user):
    card = payment_method_add(
        account=account,
        kind="card",
        token="tok_visa_1",
        brand="Visa",
        last4="4242",
        expiry_month=12,
        expiry_year=2030,
        holder="Ada",
        actor=csr_user,
    )
    assert card.is_default  # the first method is the default
    bank = payment_method_add(
        account=account, kind="bank_account", token="ba_1", bank_name="Bank", last4="6789", actor=csr_user
    )
    payment_method_set_default(method=bank, actor=csr_user)
    card.refresh_from_db()
    assert not card.is_default
    payment_method_remove(method=bank, actor=csr_user)
    bank.refresh_from_db()
    assert bank.removed_at is not None and not bank.is_default
    with pytest.raises(ApplicationError) as removed:
        payment_post(
            account=account, amount="1.00", currency="USD", idempotency_key="k", method=bank, actor=csr_user
        )
    assert removed.value.code == "method_removed"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"token": "4111111111111111", "last4": "1111", "expiry_month": 1, "expiry_year": 2031}, "token"),
        (
            {
                "token": "tok",
                "holder": "4111 1111 1111 1111",
                "last4": "1111",
                "expiry_month": 1,
                "expiry_year": 2031,
            },
            "holder",
        ),
        ({"token": "tok", "last4": "11a1", "expiry_month": 1, "expiry_year": 2031}, "last4"),
        ({"token": "tok", "last4": "1111", "expiry_month": 1, "expiry_year": 2020}, "expiry_year"),
        ({"token": "", "last4": "1111", "expiry_month": 1, "expiry_year": 2031}, "token"),
    ],
)
def test_bad_cards_are_refused(account, csr_user, values, field):
    with pytest.raises(ApplicationError) as refused:
        payment_method_add(account=account, kind="card", actor=csr_user, **values)
    assert field in refused.value.fields
    assert not PaymentMethod.objects.exists()


# --- refunds and write-offs ------------------------------------------------------------------------------


def test_a_credit_balance_is_refunded_up_to_the_credit(account, csr_user):
    from payments.services import refund_post

    payment_post(account=account, amount="30.00", currency="USD", idempotency_key="k", actor=csr_user)
    assert AccountBalance.objects.get(account=account).amount == D("-30.00")  # nothing owed: a credit
    with pytest.raises(ApplicationError) as too_much:
        refund_post(
            account=account,
            amount="30.01",
            currency="USD",
            reason="Overpaid",
            idempotency_key="r1",
            actor=csr_user,
        )
    assert too_much.value.code == "exceeds_credit"
    refund, created = refund_post(
        account=account,
        amount="30.00",
        currency="USD",
        reason="Overpaid",
        idempotency_key="r1",
        actor=csr_user,
    )
    again, created_again = refund_post(
        account=account,
        amount="30.00",
        currency="USD",
        reason="Overpaid",
        idempotency_key="r1",
        actor=csr_user,
    )
    assert created and not created_again and again == refund
    assert refund.transaction.kind == "refund" and refund.transaction.amount == D("30.00")
    assert AccountBalance.objects.get(account=account).amount == D("0.00")


def test_only_a_supervisor_writes_off_and_not_more_than_is_owed(account, csr_user, supervisor_user):
    from payments.services import write_off_post

    bill(account, "S-1", "40.00")
    with pytest.raises(ApplicationError) as csr:
        write_off_post(
            account=account,
            amount="10.00",
            currency="USD",
            reason="Gone",
            idempotency_key="w",
            actor=csr_user,
        )
    assert csr.value.code == "not_a_supervisor"
    with pytest.raises(ApplicationError) as too_much:
        write_off_post(
            account=account,
            amount="40.01",
            currency="USD",
            reason="Gone",
            idempotency_key="w",
            actor=supervisor_user,
        )
    assert too_much.value.code == "exceeds_balance"
    write_off, _ = write_off_post(
        account=account,
        amount="40.00",
        currency="USD",
        reason="Uncollectable",
        idempotency_key="w",
        actor=supervisor_user,
    )
    assert write_off.transaction.kind == "write_off" and write_off.transaction.amount == D("-40.00")
    assert AccountBalance.objects.get(account=account).amount == D("0.00")
    assert ledger_mismatches() == []


def test_a_payment_to_a_prepaid_account_tops_up_its_wallet(csr_user):
    from billruns.models import BillingTermScheme
    from tests.billruns import builders as b

    account = AccountFactory()
    plan = b.plan()
    b.recurring(plan, "10.00")
    sub = b.subscription(account, plan, dt.date(2026, 11, 1))
    sub.billing_term_scheme = BillingTermScheme.objects.get(kind=BillingTermScheme.Kind.PREPAID)
    sub.save(update_fields=["billing_term_scheme"])
    payment, _ = payment_post(
        account=account, amount="25.00", currency="USD", idempotency_key="w1", actor=csr_user
    )
    row = payment.transaction
    assert (row.kind, row.balance_type, row.amount) == ("wallet_topup", "wallet", D("25.00"))
    assert not payment.allocations.exists()
    assert AccountBalance.objects.get(account=account, balance_type="wallet").amount == D("25.00")
    payment_reverse(payment=payment, reason="Card charged back", actor=csr_user)
    assert AccountBalance.objects.get(account=account, balance_type="wallet").amount == D("0.00")
