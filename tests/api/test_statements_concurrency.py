"""Concurrent pushes on PostgreSQL, each request on its own connection: one Idempotency-Key makes one write,
and the same statement sent twice at once (no key) makes one statement and one ledger row."""

from __future__ import annotations

import threading
import time

import pytest
from rest_framework.test import APIClient

import statements.api.views
import statements.services.ingest
from billing_mgmt.models import IdempotencyRecord
from statements.models import BillerBalanceSnapshot, FinancialTransaction, Statement, StatementLine
from statements.services import ingest_records
from tests.concurrency import run_in_threads
from tests.factories import BillerFactory, BillerReferenceFactory, api_key_for, statement_record

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def raw_key():
    biller = BillerFactory(code="racer")
    BillerReferenceFactory(biller=biller, external_ref="R-1")
    # The statement number series exists before the race: creating it would serialize the requests early.
    ingest_records(biller=biller, records=[statement_record("R-1", "WARM-UP")])
    return api_key_for(biller)


def _client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    return client


def test_concurrent_bulk_requests_with_one_key_write_once(raw_key, monkeypatch):
    original = statements.api.views.ingest_records

    def slow_ingest(**kwargs):
        results = original(**kwargs)
        time.sleep(0.5)  # keep the first transaction open while the second request arrives
        return results

    monkeypatch.setattr("statements.api.views.ingest_records", slow_ingest)
    records = [
        statement_record("R-1", "S-1"),
        statement_record("R-1", "S-2"),
        {"type": "balance", "account": "R-1", "as_of": "2026-11-01T00:00:00Z", "amount": "81.00",
         "currency": "USD"},
    ]  # fmt: skip

    def post(_i):
        return _client(raw_key).post(
            "/api/v1/ingest/bulk/", {"records": records}, format="json", HTTP_IDEMPOTENCY_KEY="race"
        )

    responses, errors = run_in_threads(post, 2)

    assert not errors, errors
    assert sorted(r.status_code for r in responses) == [200, 200]
    assert responses[0].json() == responses[1].json()
    assert responses[0].json()["summary"] == {"accepted": 3, "duplicate": 0, "rejected": 0}
    assert sorted(r.get("Idempotent-Replayed", "-") for r in responses) == ["-", "true"]
    assert Statement.objects.filter(external_id__in=["S-1", "S-2"]).count() == 2
    assert FinancialTransaction.objects.filter(statement__external_id__in=["S-1", "S-2"]).count() == 2
    assert BillerBalanceSnapshot.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1


def test_concurrent_puts_of_one_statement_make_one_statement_and_one_ledger_row(raw_key, monkeypatch):
    """Both requests find no statement yet; the database's unique (biller, external id) decides, and the loser
    answers as the repeat it is."""
    barrier = threading.Barrier(2, timeout=10)
    original = statements.services.ingest.next_number

    def number_after_both_looked(*args, **kwargs):
        barrier.wait()  # both have checked "is there a statement S-1?" and found none
        return original(*args, **kwargs)

    monkeypatch.setattr(statements.services.ingest, "next_number", number_after_both_looked)
    body = statement_record("R-1", "S-1")
    del body["type"], body["external_id"]

    def put(_i):
        return _client(raw_key).put("/api/v1/statements/S-1/", body, format="json")

    responses, errors = run_in_threads(put, 2)

    assert not errors, errors
    assert sorted(r.status_code for r in responses) == [200, 201], [r.json() for r in responses]
    assert sorted(r.json()["status"] for r in responses) == ["accepted", "duplicate"]
    assert len({r.json()["statement"]["number"] for r in responses}) == 1
    statement = Statement.objects.get(external_id="S-1")
    assert StatementLine.objects.filter(statement=statement).count() == 3
    assert FinancialTransaction.objects.filter(statement=statement).count() == 1
