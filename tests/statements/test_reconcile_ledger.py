"""reconcile_ledger proves every cached balance equal to the sum of its rows."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import F

from billing_mgmt.models import AuditRecord
from statements.models import AccountBalance, BalanceType, FinancialTransaction
from statements.selectors import ledger_mismatches
from statements.services import transaction_post

Kind = FinancialTransaction.Kind


@pytest.fixture
def accounts(account_factory):
    first, second = account_factory(), account_factory()
    transaction_post(account=first, kind=Kind.BILL, amount="100.00", currency="USD")
    transaction_post(account=first, kind=Kind.PAYMENT, amount="-40.00", currency="USD")
    transaction_post(account=second, kind=Kind.BILL, amount="12.34", currency="USD")
    return first, second


def _run(*args) -> str:
    out = StringIO()
    call_command("reconcile_ledger", *args, stdout=out)
    return out.getvalue()


def test_consistent_ledger_passes(accounts):
    assert "Ledger reconciled" in _run()


def test_empty_ledger_passes(db):
    assert "Ledger reconciled" in _run()


def test_tampered_balance_fails_and_names_the_account(accounts):
    first, second = accounts
    AccountBalance.objects.filter(account=first).update(amount=F("amount") + Decimal("0.01"))
    out = StringIO()

    with pytest.raises(CommandError, match="1 cached balance"):
        call_command("reconcile_ledger", stdout=out)

    assert (
        f"account {first.pk} receivable: cached 60.0100 (2 rows), ledger 60.0000 USD (2 rows)"
        in out.getvalue()
    )
    assert f"account {second.pk}" not in out.getvalue()
    # Checking only the other account passes.
    assert "Ledger reconciled" in _run("--account", str(second.pk))


def test_tampered_count_or_missing_balance_row_fails(accounts):
    first, second = accounts
    AccountBalance.objects.filter(account=first).update(transaction_count=1)
    AccountBalance.objects.filter(account=second).delete()
    with pytest.raises(CommandError, match="2 cached balance"):
        _run()


def test_repair_rebuilds_from_the_ledger_and_audits(accounts):
    first, second = accounts
    AccountBalance.objects.filter(account=first).update(amount=Decimal("999.00"), transaction_count=7)
    AccountBalance.objects.filter(account=second).delete()

    out = _run("--repair")

    assert "Rebuilt 2 cached balance(s)" in out
    assert ledger_mismatches() == []
    assert "Ledger reconciled" in _run()
    balance = AccountBalance.objects.get(account=first, balance_type=BalanceType.RECEIVABLE)
    assert (balance.amount, balance.transaction_count) == (Decimal("60.00"), 2)
    recreated = AccountBalance.objects.get(account=second, balance_type=BalanceType.RECEIVABLE)
    assert (recreated.amount, recreated.transaction_count, recreated.currency) == (Decimal("12.34"), 1, "USD")

    record = AuditRecord.objects.get(action="ledger.balance_rebuild", account_id=first.pk)
    assert record.actor_label == "reconcile_ledger"
    assert record.before == {"amount": "999.0000", "transaction_count": 7}
    assert record.after == {"amount": "60.0000", "transaction_count": 2}
    assert AuditRecord.objects.filter(action="ledger.balance_rebuild").count() == 2


def test_repair_of_a_consistent_ledger_changes_nothing(accounts):
    assert "Ledger reconciled" in _run("--repair")
    assert not AuditRecord.objects.filter(action="ledger.balance_rebuild").exists()
