"""POST /api/v1/ingest/bulk/: many records of every type in one request, answered one by one."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing_mgmt.models import IdempotencyRecord
from statements.models import (
    BillerBalanceSnapshot,
    FinancialTransaction,
    Statement,
    StatementLine,
    UsageSummary,
)
from statements.records import MAX_BULK_RECORDS
from statements.selectors import ledger_mismatches
from statements.services import ingest_records
from tests.factories import statement_record

pytestmark = pytest.mark.django_db

BULK = "/api/v1/ingest/bulk/"


@pytest.fixture
def biller(biller_factory):
    return biller_factory(code="northwind")


@pytest.fixture
def account(biller, make_account):
    return make_account(biller, "NW-1")


@pytest.fixture
def client(biller, biller_client, account):
    return biller_client(biller)


def balance(**overrides) -> dict:
    return {"type": "balance", "account": "NW-1", "as_of": "2026-11-01T00:00:00Z", "amount": "40.50",
            "currency": "USD", **overrides}  # fmt: skip


def payment(**overrides) -> dict:
    return {"type": "transaction", "account": "NW-1", "external_id": "pay-1", "kind": "payment",
            "amount": "40.50", "currency": "USD", "date": "2026-11-10", "statement": "S-1",
            **overrides}  # fmt: skip


def usage(**overrides) -> dict:
    item = {"service_identifier": "+15550100", "usage_type": "sms", "quantity": "3", "unit": "msg"}
    return {"type": "usage", "statement": "S-1", "usage": [item], **overrides}


def test_every_record_type_in_one_request(client, account):
    records = [statement_record("NW-1", "S-1"), usage(), payment(), balance()]

    response = client.post(BULK, {"records": records}, format="json")

    assert response.status_code == 200, response.json()
    statement = Statement.objects.get()
    payment_row = FinancialTransaction.objects.get(kind="payment")
    snap = BillerBalanceSnapshot.objects.get()
    assert response.json() == {
        "summary": {"accepted": 4, "duplicate": 0, "rejected": 0},
        "results": [
            {"index": 0, "type": "statement", "status": "accepted", "external_id": "S-1",
             "outcome": "created", "id": statement.pk, "number": statement.number},
            {"index": 1, "type": "usage", "status": "accepted", "external_id": "S-1",
             "outcome": "updated", "id": statement.pk, "number": statement.number},
            {"index": 2, "type": "transaction", "status": "accepted", "external_id": "pay-1",
             "outcome": "posted", "id": payment_row.pk},
            {"index": 3, "type": "balance", "status": "accepted", "outcome": "recorded", "id": snap.pk},
        ],
    }  # fmt: skip
    assert UsageSummary.objects.filter(statement=statement).count() == 3
    assert (payment_row.amount, payment_row.statement) == (Decimal("-40.50"), statement)
    assert ledger_mismatches() == []


def test_the_same_batch_again_is_all_duplicates(client):
    records = [statement_record("NW-1", "S-1"), usage(), payment(), balance()]
    client.post(BULK, {"records": records}, format="json")

    again = client.post(BULK, {"records": records}, format="json")

    assert again.status_code == 200
    assert again.json()["summary"] == {"accepted": 0, "duplicate": 4, "rejected": 0}
    assert {r["status"] for r in again.json()["results"]} == {"duplicate"}
    assert (Statement.objects.count(), FinancialTransaction.objects.count()) == (1, 2)


def _statement(n: int, **overrides) -> dict:
    return statement_record("NW-1", f"S-{n}", **overrides)


def _with_line_amount(n: int, amount: str) -> dict:
    record = _statement(n)
    record["lines"][1]["amount"] = amount
    return record


BAD_STATEMENTS = [
    # (record, code, field)
    (lambda n: _statement(n, currency="EUR"), "wrong_currency", "currency"),
    (lambda n: _with_line_amount(n, "2.505"), "invalid", "lines[1].amount"),
    (lambda n: _statement(n, total_due="40.49"), "invalid", "total_due"),
    (lambda n: _statement(n, account="NOPE"), "unknown_account", "account"),
    (lambda n: _statement(n, period_start="2026-11-01"), "invalid", "period_end"),
    (lambda n: _statement(n, due_date="2026-10-01"), "invalid", "due_date"),
    (lambda n: _statement(n, lines=[{"type": "other", "amount": "0.00"}] * 5001), "invalid", "lines"),
]


def test_bad_records_are_named_by_index_and_field_and_the_good_ones_are_kept(client, account):
    records = []
    for bad, _code, _field in BAD_STATEMENTS:
        records.append(_statement(len(records), due_date="2026-11-15"))
        records.append(bad(len(records)))
    records.append(_statement(len(records)))

    response = client.post(BULK, {"records": records}, format="json")

    assert response.status_code == 200
    body = response.json()
    good = len(BAD_STATEMENTS) + 1
    assert body["summary"] == {"accepted": good, "duplicate": 0, "rejected": len(BAD_STATEMENTS)}
    rejected = [r for r in body["results"] if r["status"] == "rejected"]
    assert [r["index"] for r in rejected] == list(range(1, 2 * len(BAD_STATEMENTS), 2))
    for result, (_bad, code, field) in zip(rejected, BAD_STATEMENTS, strict=True):
        assert result["external_id"] == f"S-{result['index']}"
        assert result["error"]["code"] == code, result
        assert field in result["error"]["fields"], result
        assert "outcome" not in result
    stored = set(Statement.objects.values_list("external_id", flat=True))
    assert stored == {f"S-{i}" for i in range(0, 2 * len(BAD_STATEMENTS) + 1, 2)}
    # Nothing of a rejected statement: no lines, no usage, no ledger row.
    assert StatementLine.objects.count() == 3 * good
    assert UsageSummary.objects.count() == 2 * good
    # The ledger gets one row per statement.
    rows = FinancialTransaction.objects.filter(kind="bill")
    assert rows.count() == good
    assert sorted(rows.values_list("statement__external_id", flat=True)) == sorted(stored)
    assert ledger_mismatches() == []


def test_a_record_of_another_biller_is_rejected_in_the_bulk(client, biller_factory, make_account):
    make_account(biller_factory(code="contoso"), "CT-1")

    response = client.post(
        BULK, {"records": [statement_record("CT-1", "S-1"), statement_record("NW-1", "S-2")]}, format="json"
    )

    assert [r["status"] for r in response.json()["results"]] == ["rejected", "accepted"]
    assert response.json()["results"][0]["error"]["code"] == "unknown_account"
    assert list(Statement.objects.values_list("external_id", flat=True)) == ["S-2"]


def test_records_without_a_known_type_are_rejected_one_by_one(client):
    records = [{"account": "NW-1"}, "not an object", {"type": "invoice"}, balance()]

    response = client.post(BULK, {"records": records}, format="json")

    results = response.json()["results"]
    assert [r["status"] for r in results] == ["rejected", "rejected", "rejected", "accepted"]
    assert list(results[0]["error"]["fields"]) == ["type"]
    assert list(results[1]["error"]["fields"]) == ["non_field_errors"]
    assert list(results[2]["error"]["fields"]) == ["type"]


@pytest.mark.parametrize(
    "payload",
    [[statement_record("NW-1", "S-1")], {"records": {}}, {"records": []}, {"record": []}, {"records": "x"}],
)
def test_a_body_not_of_the_bulk_shape_is_400(client, payload):
    response = client.post(BULK, payload, format="json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["records"]
    assert not Statement.objects.exists()


def test_more_records_than_the_limit_is_413_and_stores_nothing(client):
    records = [balance(as_of=f"2026-11-01T00:00:{n % 60:02d}Z") for n in range(MAX_BULK_RECORDS + 1)]

    response = client.post(BULK, {"records": records}, format="json", HTTP_IDEMPOTENCY_KEY="many")

    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "too_many_records"
    assert error["fields"] == {
        "records": [f"{MAX_BULK_RECORDS + 1} records; the limit is {MAX_BULK_RECORDS}."]
    }
    assert not BillerBalanceSnapshot.objects.exists()
    assert not IdempotencyRecord.objects.exists()


def test_a_body_over_the_byte_limit_is_413_request_too_large(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    records = [_statement(n) for n in range(10)]

    response = client.post(BULK, {"records": records}, format="json")

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert not Statement.objects.exists()


def test_a_bulk_with_a_key_replays_and_the_same_key_with_another_body_is_409(client):
    records = [_statement(1), balance()]

    first = client.post(BULK, {"records": records}, format="json", HTTP_IDEMPOTENCY_KEY="batch-1")
    Statement.objects.update(status="paid")
    again = client.post(BULK, {"records": records}, format="json", HTTP_IDEMPOTENCY_KEY="batch-1")
    other = client.post(BULK, {"records": records[:1]}, format="json", HTTP_IDEMPOTENCY_KEY="batch-1")

    assert (first.status_code, again.status_code, other.status_code) == (200, 200, 409)
    assert again.json() == first.json()
    assert first.json()["summary"]["accepted"] == 2
    assert again["Idempotent-Replayed"] == "true"
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert Statement.objects.count() == 1


def test_the_bulk_view_adds_no_queries_per_record(client, biller):
    """Each record costs the ingest service's own queries only: the answer is built from the results, never
    by reading back what was stored."""

    def through_the_view(records: list[dict]) -> int:
        with CaptureQueriesContext(connection) as ctx:
            response = client.post(BULK, {"records": records}, format="json")
        assert response.json()["summary"]["accepted"] == len(records)
        return len(ctx.captured_queries)

    def service_alone(records: list[dict]) -> int:
        with CaptureQueriesContext(connection) as ctx:
            results = ingest_records(biller=biller, records=records)
        assert {r.status for r in results} == {"accepted"}
        return len(ctx.captured_queries)

    through_the_view([_statement(0)])  # the number series and the key's last use are written once
    overhead_one = through_the_view([_statement(1)]) - service_alone([_statement(2)])
    many_view = through_the_view([_statement(n) for n in range(10, 30)])
    many_service = service_alone([_statement(n) for n in range(30, 50)])

    assert many_view - many_service == overhead_one
    assert overhead_one <= 2  # the API key lookup
