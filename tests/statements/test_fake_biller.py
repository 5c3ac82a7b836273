"""The fake biller (statements/fake_biller.py): the pull contract over real HTTP, its admin API, and data it
generates that this product stores without a rejection and reconciles."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from decimal import Decimal

import pytest

from statements.models import BillerBalanceSnapshot, Statement
from statements.records import validate_record
from statements.selectors import biller_balance_comparisons
from statements.services import ingest_records
from tests.factories import statement_record


def _get(url: str, headers: dict | None = None) -> tuple[int, dict | bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def _post(url: str, payload) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _records(n: int, account: str = "CE-1") -> list[dict]:
    return [statement_record(account, f"S-{i}", number=f"N-{i}") for i in range(1, n + 1)]


def test_pages_follow_cursors_and_the_last_page_gives_the_head_as_watermark(fake):
    fake.add_records(_records(5))
    status, first = _get(f"{fake.url}changes?since=&limit=2")
    assert status == 200
    assert [r["external_id"] for r in first["records"]] == ["S-1", "S-2"]
    assert (first["next_cursor"], first["watermark"]) == ("2.2", "2")
    _, second = _get(f"{fake.url}changes?since=&limit=2&cursor={first['next_cursor']}")
    _, third = _get(f"{fake.url}changes?since=&limit=2&cursor={second['next_cursor']}")
    assert [r["external_id"] for r in second["records"] + third["records"]] == ["S-3", "S-4", "S-5"]
    assert (third["next_cursor"], third["watermark"]) == (None, "5")
    _, nothing_new = _get(f"{fake.url}changes?since=5&limit=2")
    assert nothing_new == {"records": [], "next_cursor": None, "watermark": "5"}


def test_since_account_filter_and_replacement_moving_to_the_end(fake):
    fake.add_records(_records(2, "CE-1") + [statement_record("CE-2", "T-1", number="T-1")])
    fake.add_records(
        [
            {
                "type": "usage",
                "statement": "T-1",
                "usage": [{"usage_type": "data", "quantity": "1", "unit": "MB"}],
            }
        ]
    )
    page = fake.changes(since="", limit=10, cursor=None, account="CE-2")
    assert [(r["type"], r.get("external_id", r.get("statement"))) for r in page["records"]] == [
        ("statement", "T-1"),
        ("usage", "T-1"),
    ]
    assert page["watermark"] == "4"
    # S-1 sent again (another status): the older entry goes, the new one is the latest change.
    fake.add_records([{**_records(1)[0], "status": "paid"}])
    page = fake.changes(since="4", limit=10, cursor=None, account=None)
    assert [(r["external_id"], r["status"]) for r in page["records"]] == [("S-1", "paid")]
    assert len(fake.records()) == 4


def test_auth_header_is_required_when_set(fake):
    fake.auth_header = "Bearer s3cret"
    status, body = _get(f"{fake.url}changes?since=")
    assert status == 401
    status, body = _get(f"{fake.url}changes?since=", {"Authorization": "Bearer s3cret"})
    assert status == 200
    assert fake.requests[-1]["headers"]["Authorization"] == "Bearer s3cret"


def test_injected_failures_happen_the_given_number_of_times(fake):
    fake.add_records(_records(3))
    fake.fail_page(2, status=503, times=1)
    fake.bad_json_page(1, times=1)
    status, body = _get(f"{fake.url}changes?since=&limit=2")
    assert status == 200 and isinstance(body, bytes)  # broken JSON
    status, first = _get(f"{fake.url}changes?since=&limit=2")
    assert status == 200
    assert _get(f"{fake.url}changes?since=&limit=2&cursor={first['next_cursor']}")[0] == 503
    assert _get(f"{fake.url}changes?since=&limit=2&cursor={first['next_cursor']}")[0] == 200


def test_bad_parameters_and_unknown_paths(fake):
    assert _get(f"{fake.url}changes?since=abc")[0] == 400
    assert _get(f"{fake.url}changes?limit=0")[0] == 400
    assert _get(f"{fake.url}changes?cursor=x.y")[0] == 400
    assert _get(f"{fake.url}nowhere")[0] == 404
    assert _get(f"{fake.url}health") == (200, {"ok": True})


def test_admin_api_adds_records_injects_failures_configures_and_resets(fake):
    status, body = _post(f"{fake.url}admin/records", {"records": _records(2)})
    assert (status, body) == (200, {"added": 2, "watermark": "2"})
    assert _post(f"{fake.url}admin/records", {"records": "nope"})[0] == 400
    assert _get(f"{fake.url}admin/records")[1]["watermark"] == "2"
    assert _post(f"{fake.url}admin/failures", {"page": 1, "status": 500})[0] == 200
    assert _get(f"{fake.url}changes?since=")[0] == 500
    assert _post(f"{fake.url}admin/failures", {"page": 1, "bad_json": True})[0] == 200
    assert _post(f"{fake.url}admin/failures", {"clear": True})[0] == 200
    assert _get(f"{fake.url}changes?since=")[0] == 200
    assert _post(f"{fake.url}admin/config", {"auth_header": "Token t", "delay_seconds": 0})[1] == {
        "delay_seconds": 0.0,
        "auth_header": "Token t",
    }
    assert _get(f"{fake.url}changes?since=")[0] == 401
    assert _post(f"{fake.url}admin/reset", {})[0] == 200
    assert fake.records() == [] and fake.requests == []


def test_generated_statements_are_valid_records(fake):
    fake.ensure_accounts([("CE-7", "EUR"), ("CE-8", "GBP")])
    assert fake.ensure_accounts([("CE-7", "EUR")]) == 0  # known accounts keep their history
    status, body = _post(f"{fake.url}admin/statements", {"account": "CE-7"})
    assert status == 200
    assert body["record"]["currency"] == "EUR"
    assert _post(f"{fake.url}admin/statements", {})[0] == 400
    records = fake.records()
    assert {r["type"] for r in records} == {"statement", "transaction", "balance"}
    for record in records:
        validate_record(record)  # raises RecordInvalid on a record this product would refuse


@pytest.mark.django_db
def test_generated_history_is_stored_without_rejections_and_reconciles(
    fake, biller_factory, account_factory, biller_reference_factory
):
    biller = biller_factory(code="contoso", name="Contoso Energy")
    account = account_factory(billing_profile__currency="GBP")
    biller_reference_factory(biller=biller, account=account, external_ref="CE-000101")
    fake.ensure_accounts([("CE-000101", "GBP")])
    fake.new_statement("CE-000101")

    results = ingest_records(biller=biller, records=fake.records(), channel="pull")

    assert [r.as_dict() for r in results if r.status != "accepted"] == []
    statements = list(Statement.objects.filter(account=account).order_by("statement_date", "id"))
    assert len(statements) == 4
    assert [s.status for s in statements] == ["paid", "paid", "open", "open"]
    latest = statements[-1]
    assert latest.previous_balance == statements[-2].total_due
    assert BillerBalanceSnapshot.objects.filter(account=account).latest("as_of").amount == latest.total_due
    (comparison,) = biller_balance_comparisons(account_id=account.pk)
    assert comparison.is_reconciled, comparison
    assert comparison.ledger_amount == latest.total_due > Decimal(0)
