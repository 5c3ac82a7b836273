"""Autopay: due statements charged once each through the gateway, whatever its answer."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from payments.gateway import FakeGateway
from payments.models import AutopayAttempt, Payment
from payments.services import autopay_charge, autopay_due_statements, autopay_reconcile, payment_method_add
from payments.tasks import reconcile_autopay, run_autopay
from statements.models import Statement
from tests.factories import AccountFactory
from tests.payments.test_services import bill

pytestmark = pytest.mark.django_db
D = Decimal
TODAY = dt.date(2026, 12, 1)


@pytest.fixture(autouse=True)
def _fresh_gateway():
    FakeGateway.forget()
    yield
    FakeGateway.forget()


def autopay_account(token="tok_visa"):
    account = AccountFactory()
    account.billing_profile.autopay = True
    account.billing_profile.save()
    payment_method_add(
        account=account,
        kind="card",
        token=token,
        brand="Visa",
        last4="4242",
        expiry_month=12,
        expiry_year=2030,
    )
    return account


def test_a_due_statement_is_charged_once(csr_user):
    account = autopay_account()
    due = bill(account, "S-1", "40.00", due=dt.date(2026, 11, 20))
    bill(account, "S-2", "10.00", due=dt.date(2099, 1, 1))  # not due yet
    assert autopay_due_statements(today=TODAY) == [due.pk]
    assert autopay_charge(statement_id=due.pk) == "succeeded"
    assert autopay_charge(statement_id=due.pk) == "skipped"  # never twice
    attempt = AutopayAttempt.objects.get(statement=due)
    assert attempt.payment.channel == Payment.Channel.AUTOPAY and attempt.payment.amount == D("40.00")
    assert Statement.objects.get(pk=due.pk).status == "paid"
    assert len(FakeGateway.charges_made()) == 1
    assert autopay_due_statements(today=TODAY) == []


def test_a_declined_charge_posts_nothing_and_is_not_retried():
    account = autopay_account(token="tok_decline")
    due = bill(account, "S-1", "40.00", due=dt.date(2026, 11, 20))
    assert autopay_charge(statement_id=due.pk) == "declined"
    attempt = AutopayAttempt.objects.get(statement=due)
    assert attempt.message == "Insufficient funds" and attempt.payment is None
    assert not Payment.objects.exists()


def test_a_timeout_is_unknown_until_reconciled_and_never_charged_twice():
    account = autopay_account(token="tok_timeout")
    due = bill(account, "S-1", "40.00", due=dt.date(2026, 11, 20))
    assert autopay_charge(statement_id=due.pk) == "unknown"
    assert not Payment.objects.exists()
    assert autopay_reconcile(older_than=dt.timedelta(0)) == {"succeeded": 1}
    attempt = AutopayAttempt.objects.get(statement=due)
    assert attempt.status == "succeeded" and attempt.payment.amount == D("40.00")
    assert autopay_reconcile(older_than=dt.timedelta(0)) == {}
    assert len(FakeGateway.charges_made()) == 1 and Payment.objects.count() == 1


def test_a_lost_charge_is_reconciled_as_declined():
    account = autopay_account(token="tok_lost")
    due = bill(account, "S-1", "40.00", due=dt.date(2026, 11, 20))
    assert autopay_charge(statement_id=due.pk) == "unknown"
    assert autopay_reconcile(older_than=dt.timedelta(0)) == {"declined": 1}
    assert not Payment.objects.exists()


def test_disputed_amounts_are_not_charged_and_no_method_is_recorded():
    account = autopay_account()
    due = bill(account, "S-1", "40.00", due=dt.date(2026, 11, 20))
    Statement.objects.filter(pk=due.pk).update(disputed_amount=D("15.00"))
    assert autopay_charge(statement_id=due.pk) == "succeeded"
    assert AutopayAttempt.objects.get(statement=due).amount == D("25.00")
    bare = AccountFactory()
    bare.billing_profile.autopay = True
    bare.billing_profile.save()
    other = bill(bare, "S-9", "10.00", due=dt.date(2026, 11, 20))
    assert autopay_charge(statement_id=other.pk) == "no_method"


def test_the_beat_tasks(monkeypatch):
    account = autopay_account()
    due = bill(account, "S-1", "40.00", due=dt.date(2026, 11, 20))
    monkeypatch.setattr("payments.services.timezone.localdate", lambda: TODAY)
    assert run_autopay() == {"succeeded": 1}
    assert run_autopay() == {}
    assert reconcile_autopay() == {}
    assert Statement.objects.get(pk=due.pk).status == "paid"
