"""statements.services.ingest: statements, snapshots, biller transactions and usage, record by record."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.models import AuditRecord
from statements.models import (
    BillerBalanceSnapshot,
    FinancialTransaction,
    Statement,
    StatementLine,
    UsageSummary,
)
from statements.records import RecordInvalid, validate_record
from statements.selectors import biller_balance_comparisons, ledger_mismatches, ledger_sum
from statements.services import ingest_records, statement_ingest
from tests.factories import statement_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def biller(biller_factory):
    return biller_factory(code="northwind", name="Northwind Mobile")


@pytest.fixture
def ref(biller, biller_reference_factory):
    return biller_reference_factory(biller=biller, external_ref="NW-1")


def _one(biller, record):
    (result,) = ingest_records(biller=biller, records=[record])
    return result


def test_statement_is_stored_with_lines_usage_and_posted_once(biller, ref):
    result = _one(biller, statement_record("NW-1", "S-1"))
    assert (result.status, result.outcome) == ("accepted", "created")
    statement = Statement.objects.get(pk=result.id)
    assert statement.account == ref.account
    assert statement.number.startswith("ST-")
    assert (statement.new_charges, statement.taxes, statement.total_due) == (
        Decimal("37.50"),
        Decimal("3.00"),
        Decimal("40.50"),
    )
    assert [ln.line_type for ln in statement.lines.all()] == ["recurring", "usage", "discount"]
    assert UsageSummary.objects.filter(statement=statement).count() == 2
    (row,) = FinancialTransaction.objects.filter(statement=statement)
    assert (row.kind, row.amount, row.biller, row.effective_date.isoformat()) == (
        "bill",
        Decimal("40.50"),
        biller,
        "2026-10-31",
    )
    assert AuditRecord.objects.filter(action="statement.create", object_id=str(statement.pk)).count() == 1

    again = _one(biller, statement_record("NW-1", "S-1"))
    assert (again.status, again.id) == ("duplicate", statement.pk)
    assert FinancialTransaction.objects.filter(statement=statement).count() == 1
    assert ledger_mismatches() == []


def test_replacement_posts_the_difference_as_a_correction(biller, ref):
    first = _one(biller, statement_record("NW-1", "S-1"))
    lines = statement_record("NW-1", "S-1")["lines"][:1]
    replaced = _one(biller, statement_record("NW-1", "S-1", lines=lines))
    assert (replaced.status, replaced.outcome, replaced.id) == ("accepted", "replaced", first.id)
    statement = Statement.objects.get(pk=first.id)
    assert statement.version == 2
    assert statement.lines.count() == 1
    rows = list(FinancialTransaction.objects.filter(statement=statement).order_by("id"))
    assert [r.amount for r in rows] == [Decimal("40.50"), Decimal("2.70")]
    assert rows[1].corrects == rows[0]
    assert ledger_sum(account_id=ref.account_id) == Decimal("43.20")


def test_paid_or_disputed_statement_cannot_be_replaced_but_status_may_move(biller, ref):
    _one(biller, statement_record("NW-1", "S-1"))
    paid = _one(biller, statement_record("NW-1", "S-1", status="paid"))
    assert (paid.status, paid.outcome) == ("accepted", "status_updated")
    changed = statement_record("NW-1", "S-1", status="paid", due_date="2026-11-20")
    refused = _one(biller, changed)
    assert (refused.status, refused.code, refused.http_status) == ("rejected", "statement_locked", 409)
    assert "paid" in refused.message
    assert Statement.objects.get().due_date.isoformat() == "2026-11-14"

    assert _one(biller, statement_record("NW-1", "S-2", due_date="2026-11-20")).status == "accepted"
    Statement.objects.filter(external_id="S-2").update(disputed_amount=Decimal("2.50"))
    with pytest.raises(Conflict, match="disputed"):
        _, data = validate_record(statement_record("NW-1", "S-2", due_date="2026-12-20"))
        statement_ingest(biller=biller, account=ref.account, data=data)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"total_due": "40.49"}, "total_due"),
        ({"new_charges": "37.49", "total_due": "40.49"}, "new_charges"),
        ({"taxes": "3.01", "total_due": "40.51"}, "taxes"),
        ({"period_end": "2026-09-30"}, "period_end"),
        ({"due_date": "2026-10-30"}, "due_date"),
        ({"previous_balance": "1.005"}, "previous_balance"),
        ({"currency": "XYZ"}, "currency"),
        ({"account": ""}, "account"),
    ],
)
def test_invalid_statements_name_the_field_and_store_nothing(biller, ref, overrides, field):
    record = statement_record("NW-1", "S-1")
    record.update(overrides)
    result = _one(biller, record)
    assert result.status == "rejected"
    assert field in result.fields, result.fields
    assert not Statement.objects.exists()
    assert not FinancialTransaction.objects.exists()


def test_line_errors_are_named_by_position(biller, ref):
    record = statement_record("NW-1", "S-1")
    record["lines"][1]["amount"] = "2.555"
    with pytest.raises(RecordInvalid) as exc:
        validate_record(record)
    assert "lines[1].amount" in exc.value.fields

    record = statement_record("NW-1", "S-1")
    record["lines"][1]["unit_price"] = "0.20"  # 25 x 0.20 is 5.00, not 2.50
    result = _one(biller, record)
    assert "lines[1].amount" in result.fields


def test_wrong_currency_and_unknown_account_are_rejected(biller, ref):
    eur = statement_record("NW-1", "S-1", currency="EUR")
    unknown = statement_record("NW-404", "S-2")
    good = statement_record("NW-1", "S-3")
    results = ingest_records(biller=biller, records=[eur, unknown, good])
    assert [r.status for r in results] == ["rejected", "rejected", "accepted"]
    assert "USD" in results[0].fields["currency"][0]
    assert results[1].code == "unknown_account"
    assert list(Statement.objects.values_list("external_id", flat=True)) == ["S-3"]


def test_a_biller_reaches_only_its_own_references(biller, ref, biller_factory, biller_reference_factory):
    other = biller_factory(code="contoso")
    biller_reference_factory(biller=other, account=ref.account, external_ref="CT-1")
    assert _one(other, statement_record("NW-1", "S-1")).code == "unknown_account"
    assert _one(other, statement_record("CT-1", "S-1")).status == "accepted"
    # The same external id at two billers is two statements.
    assert _one(biller, statement_record("NW-1", "S-1")).status == "accepted"
    assert Statement.objects.count() == 2


def test_first_statement_brings_the_previous_balance_forward_once(biller, ref):
    _one(biller, statement_record("NW-1", "S-1", previous_balance="100.00", payments="60.00"))
    _one(biller, statement_record("NW-1", "S-2", due_date="2026-12-14", previous_balance="80.50"))
    kinds = sorted(FinancialTransaction.objects.values_list("kind", "amount"))
    assert kinds == [
        ("bill", Decimal("40.50")),
        ("bill", Decimal("40.50")),
        ("opening_balance", Decimal("100")),
    ]


def test_biller_transactions_become_ledger_rows_with_the_right_sign(biller, ref):
    records = [
        {"type": "transaction", "account": "NW-1", "external_id": "P-1", "kind": "payment",
         "amount": "30.00", "currency": "USD", "date": "2026-11-05"},
        {"type": "transaction", "account": "NW-1", "external_id": "A-1", "kind": "adjustment",
         "amount": "-2.00", "currency": "USD", "date": "2026-11-06", "description": "Goodwill"},
        {"type": "transaction", "account": "NW-1", "external_id": "P-2", "kind": "payment",
         "amount": "-1.00", "currency": "USD", "date": "2026-11-06"},
    ]  # fmt: skip
    results = ingest_records(biller=biller, records=records)
    assert [r.status for r in results] == ["accepted", "accepted", "rejected"]
    assert ledger_sum(account_id=ref.account_id) == Decimal("-32.00")
    again = ingest_records(biller=biller, records=records[:1])
    assert again[0].status == "duplicate"
    changed = dict(records[0], amount="31.00")
    assert ingest_records(biller=biller, records=[changed])[0].code == "conflict"
    assert FinancialTransaction.objects.count() == 2


def test_balance_snapshots_are_kept_and_compared_with_the_ledger(biller, ref):
    _one(biller, statement_record("NW-1", "S-1"))
    snap = {"type": "balance", "account": "NW-1", "as_of": "2026-11-01T00:00:00Z", "amount": "40.50",
            "currency": "USD"}  # fmt: skip
    assert _one(biller, snap).status == "accepted"
    assert _one(biller, snap).status == "duplicate"
    assert _one(biller, dict(snap, amount="41.00")).code == "snapshot_conflict"
    (comparison,) = biller_balance_comparisons(account_id=ref.account_id)
    assert comparison.is_reconciled
    later = dict(snap, as_of="2026-11-02T00:00:00Z", amount="45.00")
    assert _one(biller, later).status == "accepted"
    (comparison,) = biller_balance_comparisons(account_id=ref.account_id)
    assert comparison.difference == Decimal("4.50")
    assert BillerBalanceSnapshot.objects.count() == 2


def test_usage_can_follow_its_statement(biller, ref):
    item = {"service_identifier": "+15550100", "usage_type": "sms", "quantity": "12", "unit": "msg"}
    usage = {"type": "usage", "statement": "S-1", "usage": [item]}
    assert _one(biller, usage).code == "unknown_statement"
    _one(biller, statement_record("NW-1", "S-1"))
    assert _one(biller, usage).status == "accepted"
    assert _one(biller, usage).status == "duplicate"
    assert UsageSummary.objects.count() == 3


def test_bad_records_do_not_lose_good_ones_in_a_caller_transaction(
    biller, ref, django_assert_max_num_queries
):
    from django.db import transaction

    records = [statement_record("NW-1", f"S-{i}", statement_date=f"2026-10-{i + 1:02d}") for i in range(5)]
    records[2]["total_due"] = "0.01"
    records.insert(3, "not an object")
    with transaction.atomic():
        results = ingest_records(biller=biller, records=records)
    assert [r.status for r in results] == [
        "accepted",
        "accepted",
        "rejected",
        "rejected",
        "accepted",
        "accepted",
    ]
    assert Statement.objects.count() == 4
    assert StatementLine.objects.count() == 12


def test_application_errors_from_services_are_domain_errors(biller, ref):
    _, data = validate_record(statement_record("NW-1", "S-1", currency="EUR"))
    with pytest.raises(ApplicationError) as exc:
        statement_ingest(biller=biller, account=ref.account, data=data)
    assert exc.value.code == "wrong_currency"


def test_an_unchanged_resend_does_not_undo_overdue(biller, ref):
    first = _one(biller, statement_record("NW-1", "S-1"))
    Statement.objects.filter(pk=first.id).update(status="overdue")
    assert _one(biller, statement_record("NW-1", "S-1")).status == "duplicate"
    assert Statement.objects.get(pk=first.id).status == "overdue"
    paid = _one(biller, statement_record("NW-1", "S-1", status="paid"))
    assert (paid.outcome, Statement.objects.get(pk=first.id).status) == ("status_updated", "paid")
