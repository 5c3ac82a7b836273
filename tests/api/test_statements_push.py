"""Billers push one record at a time: PUT /api/v1/statements/{external_id}/, POST balances/, transactions/,
usage/. Status codes, answers, rejections with their fields, who may write, idempotency, body size."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from billing_mgmt import roles
from billing_mgmt.models import AuditRecord, IdempotencyRecord
from statements.models import (
    BillerBalanceSnapshot,
    FinancialTransaction,
    Statement,
    StatementLine,
    UsageSummary,
)
from statements.records import MAX_LINES
from tests.factories import statement_record

pytestmark = pytest.mark.django_db


def url(external_id: str) -> str:
    return f"/api/v1/statements/{external_id}/"


def body(external_id: str = "S-1", ref: str = "NW-1", **overrides) -> dict:
    """A statement record as the PUT takes it: no type, external_id from the URL."""
    record = statement_record(ref, external_id, **overrides)
    del record["type"], record["external_id"]
    return record


@pytest.fixture
def biller(biller_factory):
    return biller_factory(code="northwind", name="Northwind Mobile")


@pytest.fixture
def account(biller, make_account):
    return make_account(biller, "NW-1")


@pytest.fixture
def client(biller, biller_client, account):
    return biller_client(biller)


def nothing_stored() -> bool:
    return not (
        Statement.objects.exists()
        or StatementLine.objects.exists()
        or UsageSummary.objects.exists()
        or FinancialTransaction.objects.exists()
    )


# PUT a statement --------------------------------------------------------------------------------------------


def test_put_creates_the_statement_and_answers_it(client, account, biller):
    response = client.put(url("S-1"), body(), format="json")

    assert response.status_code == 201, response.json()
    assert response["Location"] == url("S-1")
    data = response.json()
    assert (data["status"], data["outcome"]) == ("accepted", "created")
    statement = Statement.objects.get()
    assert data["statement"] == {
        "external_id": "S-1",
        "number": statement.number,
        "biller": "northwind",
        "account": "NW-1",
        "account_number": account.number,
        "statement_date": "2026-10-31",
        "period_start": "2026-10-01",
        "period_end": "2026-10-31",
        "due_date": "2026-11-14",
        "currency": "USD",
        "previous_balance": "0.00",
        "payments": "0.00",
        "adjustments": "0.00",
        "new_charges": "37.50",
        "taxes": "3.00",
        "total_due": "40.50",
        "disputed_amount": "0.00",
        "status": "open",
        "version": 1,
        "channel": "api",
        "received_at": data["statement"]["received_at"],
        "created_at": data["statement"]["created_at"],
        "lines_count": 3,
        "usage_count": 2,
    }
    assert statement.number.startswith("ST-")
    assert (statement.account, statement.biller, statement.channel) == (account, biller, "api")
    (row,) = FinancialTransaction.objects.all()
    assert (row.kind, row.amount, row.statement) == ("bill", Decimal("40.50"), statement)
    audit = AuditRecord.objects.get(action="statement.create")
    assert audit.actor_label.startswith("api:northwind:")


def test_put_the_same_again_is_a_duplicate_and_writes_nothing(client):
    first = client.put(url("S-1"), body(), format="json")
    again = client.put(url("S-1"), body(), format="json")

    assert again.status_code == 200
    assert (again.json()["status"], again.json()["outcome"]) == ("duplicate", "")
    assert again.json()["statement"] == first.json()["statement"]
    assert Statement.objects.count() == 1
    assert FinancialTransaction.objects.count() == 1


def test_put_other_content_replaces_and_a_status_change_only_moves_the_status(client):
    client.put(url("S-1"), body(), format="json")
    one_line = body()["lines"][:1]

    replaced = client.put(url("S-1"), body(lines=one_line), format="json")
    moved = client.put(url("S-1"), body(lines=one_line, status="overdue"), format="json")

    assert replaced.status_code == 200
    assert (replaced.json()["status"], replaced.json()["outcome"]) == ("accepted", "replaced")
    assert replaced.json()["statement"]["version"] == 2
    assert replaced.json()["statement"]["lines_count"] == 1
    assert replaced.json()["statement"]["total_due"] == "43.20"
    assert moved.status_code == 200
    assert moved.json()["outcome"] == "status_updated"
    assert (moved.json()["statement"]["status"], moved.json()["statement"]["version"]) == ("overdue", 2)
    rows = list(FinancialTransaction.objects.order_by("id").values_list("amount", flat=True))
    assert rows == [Decimal("40.50"), Decimal("2.70")]  # the replacement's difference, never an edit


@pytest.mark.parametrize("status_name", ["paid", "partially_paid"])
def test_put_on_a_settled_statement_is_409_locked(client, status_name):
    client.put(url("S-1"), body(status=status_name), format="json")

    response = client.put(url("S-1"), body(status=status_name, due_date="2026-11-20"), format="json")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "statement_locked"
    assert "external_id" in error["fields"]
    assert error["request_id"]
    assert Statement.objects.get().due_date.isoformat() == "2026-11-14"
    assert Statement.objects.get().version == 1


def test_put_on_a_disputed_statement_is_409_locked(client):
    client.put(url("S-1"), body(), format="json")
    Statement.objects.update(disputed_amount=Decimal("2.50"))

    response = client.put(url("S-1"), body(due_date="2026-11-20"), format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "statement_locked"
    assert "disputed" in response.json()["error"]["message"]


def test_put_on_a_statement_with_a_line_adjustment_is_409_and_changes_nothing(client, account, user_factory):
    """A decided dispute (or any adjustment of one line) points at the line: replacing the statement would
    lose what it is about, so the biller is told to send an adjustment instead (nothing is half-replaced)."""
    from disputes.services import dispute_open, dispute_resolve
    from tests.disputes.builders import processes

    processes()
    client.put(url("S-1"), body(), format="json")
    statement = Statement.objects.get()
    line = statement.lines.filter(amount__gt=0).first()
    case, _ = dispute_open(statement=statement, line=line, amount=line.amount, reason="wrong", channel="csr",
                           actor=user_factory(role="CSR"))  # fmt: skip
    dispute_resolve(dispute=case.dispute, actor=user_factory(role="Supervisor"), approve=True)

    response = client.put(url("S-1"), body(due_date="2026-11-20"), format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "statement_locked"
    assert "adjustments were made on its lines" in response.json()["error"]["message"]
    statement.refresh_from_db()
    assert (statement.version, str(statement.due_date)) == (1, "2026-11-14")
    assert statement.lines.filter(pk=line.pk).exists()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"total_due": "40.49"}, "total_due"),
        ({"taxes": "3.01", "total_due": "40.51"}, "taxes"),
        ({"previous_balance": "1.005", "total_due": "41.505"}, "previous_balance"),
        ({"period_start": "2026-11-01"}, "period_end"),
        ({"due_date": "2026-10-30"}, "due_date"),
        ({"currency": "XYZ"}, "currency"),
        ({"statement_date": "31/10/2026"}, "statement_date"),
        ({"status": "settled"}, "status"),
    ],
)
def test_put_an_invalid_statement_is_400_naming_the_field(client, change, field):
    response = client.put(url("S-1"), body(**change), format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"], error["fields"]
    assert nothing_stored()


def test_put_a_line_with_more_places_than_the_currency_names_the_line(client):
    record = body()
    record["lines"][1]["amount"] = "2.505"

    response = client.put(url("S-1"), record, format="json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["lines[1].amount"]
    assert nothing_stored()


def test_put_in_another_currency_than_the_account_is_400_wrong_currency(client):
    response = client.put(url("S-1"), body(currency="EUR"), format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "wrong_currency"
    assert "bills in USD" in error["fields"]["currency"][0]
    assert nothing_stored()


def test_put_with_more_lines_than_allowed_is_400_on_lines(client):
    line = {"type": "one_time", "amount": "0.00"}
    record = body(lines=[line] * (MAX_LINES + 1))

    response = client.put(url("S-1"), record, format="json")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["lines"]
    assert nothing_stored()


def test_put_for_an_account_the_biller_has_no_reference_for_is_400_unknown_account(
    client, biller_factory, make_account
):
    make_account(biller_factory(code="contoso"), "CT-1")  # another biller's reference

    for ref in ("CT-1", "NOPE"):
        response = client.put(url("S-1"), body(ref=ref), format="json")

        assert response.status_code == 400
        assert response.json()["error"]["code"] == "unknown_account"
        assert list(response.json()["error"]["fields"]) == ["account"]
    assert nothing_stored()


def test_put_cannot_touch_another_billers_statement(client, biller_factory, biller_client, make_account):
    contoso = biller_factory(code="contoso")
    make_account(contoso, "CT-1")
    biller_client(contoso).put(url("S-1"), body(ref="CT-1"), format="json")

    # Same external id, but at this biller it is a new statement of its own account.
    response = client.put(url("S-1"), body(), format="json")

    assert response.status_code == 201
    assert Statement.objects.count() == 2
    theirs = Statement.objects.get(biller=contoso)
    assert (theirs.version, theirs.account.biller_references.get().external_ref) == (1, "CT-1")


def test_put_body_external_id_must_match_the_url(client):
    mismatch = client.put(url("S-1"), {**body(), "external_id": "S-2"}, format="json")
    same = client.put(url("S-1"), {**body(), "external_id": "S-1"}, format="json")

    assert mismatch.status_code == 400
    assert list(mismatch.json()["error"]["fields"]) == ["external_id"]
    assert same.status_code == 201
    assert list(Statement.objects.values_list("external_id", flat=True)) == ["S-1"]


def test_put_body_of_another_type_or_not_an_object_is_400(client):
    other_type = client.put(url("S-1"), {**body(), "type": "balance"}, format="json")
    a_list = client.put(url("S-1"), [body()], format="json")
    typed = client.put(url("S-1"), {**body(), "type": "statement"}, format="json")

    assert other_type.status_code == 400
    assert list(other_type.json()["error"]["fields"]) == ["type"]
    assert a_list.status_code == 400
    assert typed.status_code == 201


def test_put_a_form_body_is_415(client):
    response = client.put(url("S-1"), "account=NW-1", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


# Who may write ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [roles.CSR, roles.SUPERVISOR, roles.BILLING_ADMIN, roles.CUSTOMER, None])
def test_people_cannot_write(session_client, account, role):
    client = session_client(role)
    requests = [
        client.put(url("S-1"), body(), format="json"),
        client.post("/api/v1/balances/", {"account": "NW-1"}, format="json"),
        client.post("/api/v1/transactions/", {"account": "NW-1"}, format="json"),
        client.post("/api/v1/usage/", {"statement": "S-1"}, format="json"),
        client.post("/api/v1/ingest/bulk/", {"records": []}, format="json"),
    ]

    assert [r.status_code for r in requests] == [403] * 5
    assert {r.json()["error"]["code"] for r in requests} == {"permission_denied"}
    assert nothing_stored()


def test_anonymous_and_bad_keys_are_401(api_client, account):
    anonymous = api_client.put(url("S-1"), body(), format="json")
    api_client.credentials(HTTP_AUTHORIZATION="Api-Key nope.nope")
    bad_key = api_client.put(url("S-1"), body(), format="json")

    assert (anonymous.status_code, bad_key.status_code) == (401, 401)
    assert anonymous["WWW-Authenticate"] == "Api-Key"
    assert nothing_stored()


# Idempotency-Key --------------------------------------------------------------------------------------------


def test_put_with_a_key_replays_and_another_body_with_it_is_409(client):
    first = client.put(url("S-1"), body(), format="json", HTTP_IDEMPOTENCY_KEY="put-1")
    Statement.objects.update(status="overdue")  # changed since: a replay must not look
    again = client.put(url("S-1"), body(), format="json", HTTP_IDEMPOTENCY_KEY="put-1")
    other = client.put(url("S-1"), body(status="paid"), format="json", HTTP_IDEMPOTENCY_KEY="put-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert Statement.objects.get().status == "overdue"
    assert IdempotencyRecord.objects.count() == 1


def test_a_rejected_put_keeps_the_key_free(client):
    bad = client.put(url("S-1"), body(total_due="1.00"), format="json", HTTP_IDEMPOTENCY_KEY="k")
    good = client.put(url("S-1"), body(), format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert (bad.status_code, good.status_code) == (400, 201)
    assert IdempotencyRecord.objects.get().status_code == 201


# Body size --------------------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_and_stores_nothing(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    record = body()
    assert len(json.dumps(record)) > 1000

    for headers in ({}, {"HTTP_IDEMPOTENCY_KEY": "big"}):
        response = client.put(url("S-1"), record, format="json", **headers)

        assert response.status_code == 413
        error = response.json()["error"]
        assert error["code"] == "request_too_large"
        assert "1000 bytes" in error["message"]
    assert nothing_stored()
    assert not IdempotencyRecord.objects.exists()
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 50_000
    assert client.put(url("S-1"), record, format="json").status_code == 201


# Balances -------------------------------------------------------------------------------------------------


BALANCE = {"account": "NW-1", "as_of": "2026-11-01T00:00:00Z", "amount": "40.50", "currency": "USD",
           "external_id": "bal-1"}  # fmt: skip


def test_balance_is_recorded_once(client, account):
    first = client.post("/api/v1/balances/", BALANCE, format="json")
    again = client.post("/api/v1/balances/", {**BALANCE, "type": "balance"}, format="json")
    changed = client.post("/api/v1/balances/", {**BALANCE, "amount": "41.00"}, format="json")

    assert first.status_code == 201, first.json()
    snap = BillerBalanceSnapshot.objects.get()
    assert first.json() == {
        "status": "accepted",
        "outcome": "recorded",
        "balance": {
            "id": snap.pk,
            "account": "NW-1",
            "as_of": "2026-11-01T00:00:00Z",
            "amount": "40.50",
            "currency": "USD",
            "external_id": "bal-1",
            "received_at": first.json()["balance"]["received_at"],
        },
    }
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    assert again.json()["balance"] == first.json()["balance"]
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "snapshot_conflict"
    assert BillerBalanceSnapshot.objects.count() == 1
    assert snap.account == account


@pytest.mark.parametrize(
    ("change", "status_code", "field"),
    [
        ({"amount": "40.505"}, 400, "amount"),
        ({"currency": "EUR"}, 400, "currency"),  # not the account's currency
        ({"account": "NOPE"}, 400, "account"),
        ({"as_of": "yesterday"}, 400, "as_of"),
        ({"type": "statement"}, 400, "type"),
    ],
)
def test_bad_balances_are_rejected_with_the_field(client, change, status_code, field):
    response = client.post("/api/v1/balances/", {**BALANCE, **change}, format="json")

    assert response.status_code == status_code
    assert field in response.json()["error"]["fields"], response.json()
    assert not BillerBalanceSnapshot.objects.exists()


# Transactions ---------------------------------------------------------------------------------------------


PAYMENT = {"account": "NW-1", "external_id": "pay-1", "kind": "payment", "amount": "30.00", "currency": "USD",
           "date": "2026-11-05", "description": "Card payment"}  # fmt: skip


def test_a_payment_becomes_one_ledger_row_with_the_ledger_sign(client, account):
    client.put(url("S-1"), body(), format="json")

    payment = {**PAYMENT, "statement": "S-1"}
    first = client.post("/api/v1/transactions/", payment, format="json")
    again = client.post("/api/v1/transactions/", payment, format="json")
    changed = client.post("/api/v1/transactions/", {**payment, "amount": "31.00"}, format="json")

    assert first.status_code == 201, first.json()
    row = FinancialTransaction.objects.get(kind="payment")
    assert first.json() == {
        "status": "accepted",
        "outcome": "posted",
        "transaction": {
            "id": row.pk,
            "account": "NW-1",
            "external_id": "pay-1",
            "kind": "payment",
            "amount": "30.00",
            "ledger_amount": "-30.00",
            "currency": "USD",
            "date": "2026-11-05",
            "description": "Card payment",
            "statement": "S-1",
            "posted_at": first.json()["transaction"]["posted_at"],
        },
    }
    assert (row.amount, row.account, row.statement.external_id) == (Decimal("-30.00"), account, "S-1")
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    assert changed.status_code == 409
    assert FinancialTransaction.objects.filter(kind="payment").count() == 1


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"amount": "-30.00"}, "invalid", "amount"),
        ({"amount": "0"}, "invalid", "amount"),
        ({"amount": "1.001"}, "invalid", "amount"),
        ({"kind": "gift"}, "invalid", "kind"),
        ({"statement": "S-404"}, "unknown_statement", "statement"),
        ({"account": "NOPE"}, "unknown_account", "account"),
        ({"currency": "EUR"}, "wrong_currency", "currency"),
    ],
)
def test_bad_transactions_are_400_with_the_field(client, change, code, field):
    response = client.post("/api/v1/transactions/", {**PAYMENT, **change}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert field in response.json()["error"]["fields"]
    assert not FinancialTransaction.objects.exists()


def test_adjustments_are_signed(client):
    credit = {**PAYMENT, "external_id": "adj-1", "kind": "adjustment", "amount": "-2.00"}

    response = client.post("/api/v1/transactions/", credit, format="json")

    assert response.status_code == 201
    assert (response.json()["transaction"]["amount"], response.json()["transaction"]["statement"]) == (
        "-2.00",
        None,
    )
    assert FinancialTransaction.objects.get().amount == Decimal("-2.00")


# Usage ----------------------------------------------------------------------------------------------------


def test_usage_is_set_on_the_statement(client):
    client.put(url("S-1"), body(), format="json")
    usage = {"statement": "S-1", "usage": [
        {"service_identifier": "+15550100", "usage_type": "sms", "quantity": "12", "unit": "msg"},
        {"service_identifier": "+15550100", "usage_type": "voice", "quantity": "320", "unit": "min"},
    ]}  # fmt: skip

    first = client.post("/api/v1/usage/", usage, format="json")
    again = client.post("/api/v1/usage/", usage, format="json")

    assert first.status_code == 201, first.json()
    assert (first.json()["status"], first.json()["outcome"]) == ("accepted", "updated")
    assert first.json()["statement"]["external_id"] == "S-1"
    assert [(u["usage_type"], u["quantity"]) for u in first.json()["statement"]["usage"]] == [
        ("data", "5120.000000"),
        ("sms", "12.000000"),
        ("voice", "320.000000"),
    ]
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    assert UsageSummary.objects.count() == 3


def test_usage_for_an_unknown_or_another_billers_statement_is_400(
    client, biller_factory, biller_client, make_account
):
    contoso = biller_factory(code="contoso")
    make_account(contoso, "CT-1")
    biller_client(contoso).put(url("S-9"), body(ref="CT-1"), format="json")
    usage = {"statement": "S-9", "usage": [{"usage_type": "sms", "quantity": "1", "unit": "msg"}]}

    response = client.post("/api/v1/usage/", usage, format="json")
    empty = client.post("/api/v1/usage/", {"statement": "S-9", "usage": []}, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_statement"
    assert empty.status_code == 400
    assert list(empty.json()["error"]["fields"]) == ["usage"]
    assert UsageSummary.objects.filter(usage_type="sms").count() == 0


def test_single_record_writes_replay_with_a_key(client, account):
    first = client.post("/api/v1/balances/", BALANCE, format="json", HTTP_IDEMPOTENCY_KEY="b-1")
    again = client.post("/api/v1/balances/", BALANCE, format="json", HTTP_IDEMPOTENCY_KEY="b-1")
    elsewhere = client.post("/api/v1/transactions/", PAYMENT, format="json", HTTP_IDEMPOTENCY_KEY="b-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true"
    assert elsewhere.status_code == 409
    assert BillerBalanceSnapshot.objects.count() == 1
