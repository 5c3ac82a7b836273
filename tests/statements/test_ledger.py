"""The ledger: immutable rows enforced by the database, balances, idempotency, validation."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.models import AuditRecord
from statements.models import AccountBalance, BalanceType, FinancialTransaction
from statements.selectors import ledger_mismatches, ledger_sum
from statements.services import transaction_post, transaction_reverse

Kind = FinancialTransaction.Kind


@pytest.fixture
def account(account_factory):
    return account_factory(name="Ledger Test Ltd")


@pytest.fixture
def bill(account):
    row, created = transaction_post(
        account=account,
        kind=Kind.BILL,
        amount=Decimal("100.00"),
        currency="USD",
        effective_date=dt.date(2025, 3, 1),
        description="March bill",
    )
    assert created
    return row


def _balance(account) -> AccountBalance:
    return AccountBalance.objects.get(account=account, balance_type=BalanceType.RECEIVABLE)


def _assert_row_unchanged(row: FinancialTransaction) -> None:
    fresh = FinancialTransaction.objects.get(pk=row.pk)
    assert fresh.amount == Decimal("100.00")
    assert fresh.kind == Kind.BILL
    assert fresh.currency == "USD"
    assert fresh.account_id == row.account_id
    assert fresh.description == "March bill"
    assert fresh.effective_date == dt.date(2025, 3, 1)


# --- immutability, enforced by the database ----------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("amount", "999.00"),
        ("amount", "-100.00"),
        ("currency", "EUR"),
        ("kind", "payment"),
        ("description", "changed"),
        ("effective_date", "2020-01-01"),
    ],
)
def test_update_of_a_ledger_row_is_rejected_by_the_database_raw_sql(bill, column, value):
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as c:
        c.execute(
            f'UPDATE statements_financialtransaction SET "{column}" = %s WHERE id = %s', [value, bill.pk]
        )
    _assert_row_unchanged(bill)


def test_update_of_a_ledger_row_is_rejected_through_the_orm(bill):
    with pytest.raises(IntegrityError), transaction.atomic():
        FinancialTransaction.objects.filter(pk=bill.pk).update(amount=Decimal("1.00"))
    _assert_row_unchanged(bill)

    bill.amount = Decimal("50.00")
    with pytest.raises(IntegrityError), transaction.atomic():
        bill.save()
    _assert_row_unchanged(bill)


def test_delete_of_a_ledger_row_is_rejected_by_the_database_raw_sql(bill):
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as c:
        c.execute("DELETE FROM statements_financialtransaction WHERE id = %s", [bill.pk])
    _assert_row_unchanged(bill)


def test_delete_of_a_ledger_row_is_rejected_through_the_orm(bill):
    with pytest.raises(IntegrityError), transaction.atomic():
        FinancialTransaction.objects.get(pk=bill.pk).delete()
    with pytest.raises(IntegrityError), transaction.atomic():
        FinancialTransaction.objects.filter(account=bill.account).delete()
    _assert_row_unchanged(bill)
    assert FinancialTransaction.objects.count() == 1


def test_zero_amount_is_rejected_by_the_database_too(account):
    """The check constraint holds even for code that bypasses the service."""
    with pytest.raises(IntegrityError), transaction.atomic():
        FinancialTransaction.objects.create(
            account=account,
            kind=Kind.ADJUSTMENT,
            amount=Decimal("0"),
            currency="USD",
            effective_date=dt.date(2025, 1, 1),
            posted_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        )
    assert FinancialTransaction.objects.count() == 0


# --- balances -------------------------------------------------------------------------------------------


def test_balance_equals_the_sum_of_mixed_postings(account, billing_admin_user):
    post = transaction_post
    post(account=account, kind=Kind.BILL, amount=Decimal("100.00"), currency="USD")
    payment, _ = post(account=account, kind=Kind.PAYMENT, amount=Decimal("-60.00"), currency="USD")
    post(account=account, kind=Kind.ADJUSTMENT, amount=Decimal("-5.25"), currency="USD")
    post(account=account, kind=Kind.BILL, amount="20.10", currency="USD")
    reversal, created = transaction_reverse(
        original=payment, reason="  bounced cheque ", actor=billing_admin_user
    )
    post(account=account, kind=Kind.ADJUSTMENT, amount=1, currency="USD")

    assert created
    assert reversal.kind == Kind.REVERSAL
    assert reversal.amount == Decimal("60.00")
    assert reversal.corrects_id == payment.pk
    assert reversal.description == "Reversal: bounced cheque"
    assert reversal.created_by == billing_admin_user
    expected = Decimal("115.85")  # 100 - 60 - 5.25 + 20.10 + 60 + 1
    assert ledger_sum(account_id=account.pk) == expected
    balance = _balance(account)
    assert balance.amount == expected
    assert balance.transaction_count == 6
    assert balance.currency == "USD"
    assert ledger_mismatches() == []
    assert AuditRecord.objects.filter(action="ledger.post", account_id=account.pk).count() == 6


def test_wallet_and_receivable_balances_are_separate(account):
    transaction_post(account=account, kind=Kind.BILL, amount="10.00", currency="USD")
    transaction_post(
        account=account,
        kind=Kind.WALLET_TOPUP,
        amount="50.00",
        currency="USD",
        balance_type=BalanceType.WALLET,
    )
    transaction_post(
        account=account,
        kind=Kind.WALLET_DEBIT,
        amount="-7.50",
        currency="USD",
        balance_type=BalanceType.WALLET,
    )

    assert _balance(account).amount == Decimal("10.00")
    wallet = AccountBalance.objects.get(account=account, balance_type=BalanceType.WALLET)
    assert (wallet.amount, wallet.transaction_count) == (Decimal("42.50"), 2)


def test_reversing_twice_returns_the_first_reversal(bill):
    first, created = transaction_reverse(original=bill, reason="wrong rate")
    again, created_again = transaction_reverse(original=bill, reason="wrong rate")

    assert created and not created_again
    assert again.pk == first.pk
    assert FinancialTransaction.objects.filter(kind=Kind.REVERSAL).count() == 1
    assert _balance(bill.account).amount == Decimal("0.00")


def test_a_reversal_cannot_be_reversed(bill):
    reversal, _ = transaction_reverse(original=bill, reason="wrong rate")
    with pytest.raises(ApplicationError, match="cannot itself be reversed"):
        transaction_reverse(original=reversal, reason="undo")
    assert FinancialTransaction.objects.count() == 2


def test_a_reversal_needs_a_reason(bill):
    with pytest.raises(ApplicationError) as exc_info:
        transaction_reverse(original=bill, reason="   ")
    assert exc_info.value.fields == {"reason": ["This field is required."]}
    assert FinancialTransaction.objects.count() == 1


# --- idempotency ----------------------------------------------------------------------------------------


def test_same_idempotency_key_returns_the_first_row(account):
    first, created = transaction_post(
        account=account, kind=Kind.PAYMENT, amount="-25.00", currency="USD", idempotency_key="pay-1"
    )
    again, created_again = transaction_post(
        account=account, kind=Kind.PAYMENT, amount=Decimal("-25"), currency="USD", idempotency_key="pay-1"
    )

    assert created is True
    assert created_again is False
    assert again.pk == first.pk
    assert FinancialTransaction.objects.count() == 1
    assert _balance(account).amount == Decimal("-25.00")
    assert _balance(account).transaction_count == 1
    assert AuditRecord.objects.filter(action="ledger.post").count() == 1


@pytest.mark.parametrize(
    "change",
    [{"amount": "-26.00"}, {"kind": Kind.ADJUSTMENT}, {"currency": "USD", "amount": "25.00"}],
)
def test_same_idempotency_key_with_a_different_request_is_a_conflict(account, change):
    transaction_post(
        account=account, kind=Kind.PAYMENT, amount="-25.00", currency="USD", idempotency_key="pay-1"
    )
    request = {"kind": Kind.PAYMENT, "amount": "-25.00", "currency": "USD", **change}
    with pytest.raises(Conflict):
        transaction_post(account=account, idempotency_key="pay-1", **request)

    assert FinancialTransaction.objects.count() == 1
    assert _balance(account).amount == Decimal("-25.00")


def test_same_idempotency_key_on_another_account_is_a_conflict(account, account_factory):
    other = account_factory()
    transaction_post(account=account, kind=Kind.PAYMENT, amount="-25.00", currency="USD", idempotency_key="k")
    with pytest.raises(Conflict):
        transaction_post(
            account=other, kind=Kind.PAYMENT, amount="-25.00", currency="USD", idempotency_key="k"
        )
    assert not FinancialTransaction.objects.filter(account=other).exists()
    assert not AccountBalance.objects.filter(account=other).exists()


def test_external_id_is_idempotent_per_biller(account, biller_factory):
    acme, other = biller_factory(code="acme"), biller_factory(code="other")
    first, _ = transaction_post(
        account=account, kind=Kind.BILL, amount="10.00", currency="USD", biller=acme, external_id="INV-1"
    )
    again, created = transaction_post(
        account=account, kind=Kind.BILL, amount="10.00", currency="USD", biller=acme, external_id="INV-1"
    )
    elsewhere, created_elsewhere = transaction_post(
        account=account, kind=Kind.BILL, amount="10.00", currency="USD", biller=other, external_id="INV-1"
    )

    assert (again.pk, created) == (first.pk, False)
    assert created_elsewhere and elsewhere.pk != first.pk
    assert _balance(account).amount == Decimal("20.00")
    with pytest.raises(Conflict):
        transaction_post(
            account=account, kind=Kind.BILL, amount="11.00", currency="USD", biller=acme, external_id="INV-1"
        )
    assert FinancialTransaction.objects.count() == 2


# --- validation: field errors and nothing stored ----------------------------------------------------------


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"currency": "EUR"}, "currency"),  # the account bills in USD
        ({"currency": "XYZ"}, "currency"),
        ({"amount": "0"}, "amount"),
        ({"amount": "0.00"}, "amount"),
        ({"amount": "10.005"}, "amount"),  # more places than cents
        ({"kind": "gift"}, "kind"),
        ({"balance_type": "savings"}, "balance_type"),
    ],
)
def test_invalid_postings_are_rejected_with_field_errors_and_nothing_stored(account, request_fields, field):
    request = {"kind": Kind.BILL, "amount": "10.00", "currency": "USD", **request_fields}
    with pytest.raises(ApplicationError) as exc_info:
        transaction_post(account=account, **request)

    assert type(exc_info.value) is ApplicationError
    assert list(exc_info.value.fields) == [field]
    assert FinancialTransaction.objects.count() == 0
    assert AccountBalance.objects.count() == 0
    assert not AuditRecord.objects.filter(action="ledger.post").exists()


def test_jpy_account_refuses_fractional_yen(account_factory):
    account = account_factory(billing_profile__currency="JPY")
    with pytest.raises(ApplicationError) as exc_info:
        transaction_post(account=account, kind=Kind.BILL, amount="100.5", currency="JPY")
    assert exc_info.value.fields["amount"] == ["JPY amounts have at most the currency's minor units."]
    row, _ = transaction_post(account=account, kind=Kind.BILL, amount="100", currency="JPY")
    assert row.amount == Decimal("100")
    assert FinancialTransaction.objects.count() == 1


def test_kwd_account_takes_three_places(account_factory):
    account = account_factory(billing_profile__currency="KWD")
    transaction_post(account=account, kind=Kind.BILL, amount="1.005", currency="KWD")
    with pytest.raises(ApplicationError):
        transaction_post(account=account, kind=Kind.BILL, amount="1.0005", currency="KWD")
    assert _balance(account).amount == Decimal("1.005")


def test_float_amount_is_refused(account):
    with pytest.raises(TypeError):
        transaction_post(account=account, kind=Kind.BILL, amount=10.5, currency="USD")
    assert FinancialTransaction.objects.count() == 0


def test_correction_must_be_on_the_same_account(bill, account_factory):
    other = account_factory()
    with pytest.raises(ApplicationError) as exc_info:
        transaction_post(account=other, kind=Kind.ADJUSTMENT, amount="-1.00", currency="USD", corrects=bill)
    assert list(exc_info.value.fields) == ["corrects"]
    assert not FinancialTransaction.objects.filter(account=other).exists()


def test_posting_writes_an_audit_record_with_the_row(account, billing_admin_user):
    row, _ = transaction_post(
        account=account, kind=Kind.PAYMENT, amount="-5.00", currency="USD", actor=billing_admin_user
    )
    record = AuditRecord.objects.get(action="ledger.post")
    assert record.object_type == "statements.financialtransaction"
    assert record.object_id == str(row.pk)
    assert record.account_id == account.pk
    assert record.actor_user == billing_admin_user
    assert record.after["amount"] == "-5.00"
    assert record.after["kind"] == "payment"
