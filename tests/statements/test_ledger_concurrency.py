"""Concurrent postings on one account, each thread in its own transaction and connection."""

import time
from decimal import Decimal

import pytest
from django.db import transaction

from statements.models import AccountBalance, BalanceType, FinancialTransaction
from statements.selectors import ledger_mismatches, ledger_sum
from statements.services import transaction_post
from tests.concurrency import Rollback, run_in_threads

Kind = FinancialTransaction.Kind


@pytest.mark.django_db(transaction=True)
def test_concurrent_postings_keep_the_balance_equal_to_the_sum(account_factory):
    account = account_factory()  # no balance row yet: the first postings also race to create it
    threads = 10
    rolled_back = {3, 8}

    def worker(i: int) -> Decimal:
        with transaction.atomic():
            total = Decimal(0)
            for n, amount in enumerate((Decimal("10.01"), Decimal("-3.50"), Decimal(i + 1))):
                transaction_post(
                    account=account,
                    kind=Kind.ADJUSTMENT,
                    amount=amount,
                    currency="USD",
                    description=f"{i}-{n}",
                )
                total += amount
                time.sleep(0.01)
            if i in rolled_back:
                raise Rollback
            return total

    totals, errors = run_in_threads(worker, threads)

    assert errors == []
    expected = sum(totals, Decimal(0))
    assert expected == sum(Decimal("6.51") + i + 1 for i in range(threads) if i not in rolled_back)
    assert ledger_sum(account_id=account.pk) == expected
    balance = AccountBalance.objects.get(account=account, balance_type=BalanceType.RECEIVABLE)
    assert balance.amount == expected
    assert balance.transaction_count == 3 * (threads - len(rolled_back))
    assert FinancialTransaction.objects.filter(account=account).count() == 3 * (threads - len(rolled_back))
    assert ledger_mismatches() == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_repeats_of_one_idempotency_key_post_once(account_factory):
    account = account_factory()
    threads = 8

    def worker(i: int) -> tuple[int, bool]:
        row, created = transaction_post(
            account=account, kind=Kind.PAYMENT, amount="-20.00", currency="USD", idempotency_key="same-key"
        )
        return row.pk, created

    results, errors = run_in_threads(worker, threads)

    assert errors == []
    assert len(results) == threads
    assert len({pk for pk, _ in results}) == 1
    assert sorted(created for _, created in results) == [False] * (threads - 1) + [True]
    assert FinancialTransaction.objects.count() == 1
    balance = AccountBalance.objects.get(account=account)
    assert (balance.amount, balance.transaction_count) == (Decimal("-20.00"), 1)
