"""statements.services.ingest: a batch's plain new statements are stored together (a fixed number of
queries), with the same answers and the same rows as record by record; everything else keeps its own way."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from django.db import IntegrityError

from billing_mgmt.models import AuditRecord
from billing_mgmt.numbering import next_number
from statements.models import AccountBalance, FinancialTransaction, Statement, StatementLine, UsageSummary
from statements.services import ingest, ingest_records
from tests.factories import statement_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def refs(northwind, biller_reference_factory):
    return [biller_reference_factory(biller=northwind, external_ref=f"NW-{n}") for n in range(6)]


def _batch(prefix: str, refs) -> list[dict]:
    """Two statements per account: the first brings a previous balance forward, one has no number."""
    records = []
    for n, ref in enumerate(refs):
        records.append(statement_record(ref.external_ref, f"{prefix}-{n}-a", previous_balance="25.00"))
        records.append(
            statement_record(
                ref.external_ref,
                f"{prefix}-{n}-b",
                statement_date="2026-11-30",
                period_start="2026-11-01",
                period_end="2026-11-30",
                due_date="2026-12-14",
                previous_balance="40.50",
                payments="40.50",
                number=f"{prefix.upper()}-{n}" if n % 2 else "",
            )
        )
    return records


def _stored(account_ids) -> dict:
    """What the batch left, account by account, in terms that do not depend on ids or order."""
    out = {}
    for position, account_id in enumerate(account_ids):
        statements = Statement.objects.filter(account_id=account_id).order_by("statement_date")
        ledger = FinancialTransaction.objects.filter(account_id=account_id).order_by("effective_date", "kind")
        balance = AccountBalance.objects.get(account_id=account_id)
        out[position] = {
            "statements": [
                (
                    s.statement_date,
                    s.new_charges,
                    s.taxes,
                    s.total_due,
                    s.previous_balance,
                    s.status,
                    s.version,
                )
                for s in statements
            ],
            "lines": sorted(
                StatementLine.objects.filter(statement__account_id=account_id).values_list(
                    "position", "line_type", "amount", "tax"
                )
            ),
            "usage": UsageSummary.objects.filter(statement__account_id=account_id).count(),
            "ledger": [(r.kind, r.amount, r.effective_date, r.balance_type, r.currency) for r in ledger],
            "balance": (balance.amount, balance.transaction_count),
        }
    return out


def test_new_statements_together_leave_what_record_by_record_leaves(northwind, biller_reference_factory):
    together = [biller_reference_factory(biller=northwind, external_ref=f"T-{n}") for n in range(4)]
    alone = [biller_reference_factory(biller=northwind, external_ref=f"A-{n}") for n in range(4)]

    results = ingest_records(biller=northwind, records=_batch("t", together))
    for record in _batch("a", alone):
        ingest_records(biller=northwind, records=[record])

    assert [(r.status, r.outcome, r.type) for r in results] == [("accepted", "created", "statement")] * 8
    assert [r.index for r in results] == list(range(8))
    assert [r.external_id for r in results] == [r["external_id"] for r in _batch("t", together)]
    numbers = [r.number for r in results]
    assert numbers[3] == "T-1" and numbers[2].startswith("ST-") and len(set(numbers)) == 8
    assert {r.id for r in results} == set(
        Statement.objects.filter(external_id__startswith="t-").values_list("pk", flat=True)
    )
    assert _stored([ref.account_id for ref in together]) == _stored([ref.account_id for ref in alone])
    # The ledger audited row by row and each statement's creation, as one by one.
    actions = Counter(AuditRecord.objects.values_list("action", flat=True))
    assert actions["statement.create"] == 16 and actions["ledger.post"] == 2 * 8 + 2 * 4
    # A resend changes nothing, whichever way it went in.
    again = ingest_records(biller=northwind, records=_batch("t", together))
    assert {r.status for r in again} == {"duplicate"}
    assert Statement.objects.count() == 16


def test_a_batch_of_new_statements_takes_a_fixed_number_of_queries(
    northwind, refs, django_assert_max_num_queries
):
    records = _batch("q", refs)
    next_number(ingest.STATEMENT_SERIES, ingest.STATEMENT_SERIES_SPEC)  # the series exists, as it will
    # references, stored ids, used numbers; savepoint, the number series (its row, savepoint, numbers,
    # release), statements, lines, usage, ledger history, savepoint, ledger rows, balances, their audit,
    # release, the statements' audit, release: 19 whatever the number of statements
    with django_assert_max_num_queries(19):
        results = ingest_records(biller=northwind, records=records)
    assert {r.outcome for r in results} == {"created"}


def test_records_whose_answer_depends_on_the_batch_order_keep_their_own_way(northwind, refs):
    ingest_records(biller=northwind, records=[statement_record("NW-0", "old"), statement_record("NW-5", "x")])
    records = [
        statement_record("NW-0", "old"),  # stored already: a duplicate
        {
            "type": "usage",
            "statement": "later",
            "usage": [{"usage_type": "voice", "quantity": "1", "unit": "min"}],
        },
        statement_record("NW-1", "later"),  # named by the usage record before it
        statement_record("NW-2", "twice"),
        statement_record("NW-2", "twice"),  # sent twice
        statement_record("NW-3", "n-1", number="DUP"),
        statement_record("NW-4", "n-2", number="DUP"),  # the same number
        statement_record("NW-5", "new", currency="EUR"),  # not the account's currency
        statement_record("NW-unknown", "nobody"),
        statement_record("NW-3", "plain-1"),  # NW-3 is touched by another record of the batch
        statement_record("NW-1", "plain-2"),
    ]
    answers = [(r.status, r.outcome or r.code) for r in ingest_records(biller=northwind, records=records)]
    assert answers == [
        ("duplicate", ""),
        ("rejected", "unknown_statement"),
        ("accepted", "created"),
        ("accepted", "created"),
        ("duplicate", ""),
        ("accepted", "created"),
        ("rejected", "duplicate_number"),
        ("rejected", "wrong_currency"),
        ("rejected", "unknown_account"),
        ("accepted", "created"),
        ("accepted", "created"),
    ]


def test_a_set_that_meets_a_concurrent_write_goes_record_by_record(northwind, refs, monkeypatch):
    def raced(*args, **kwargs):
        raise IntegrityError("duplicate key value violates unique constraint")

    monkeypatch.setattr(ingest, "_create_statements", raced)
    results = ingest_records(biller=northwind, records=_batch("r", refs[:2]))
    assert [r.outcome for r in results] == ["created"] * 4
    assert Statement.objects.count() == 4
    assert FinancialTransaction.objects.filter(kind="opening_balance").count() == 2
    assert sum(AccountBalance.objects.values_list("amount", flat=True)) == 2 * (
        Decimal("25.00") + Decimal("40.50") + Decimal("40.50")
    )
