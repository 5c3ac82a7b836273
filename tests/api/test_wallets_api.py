"""/api/v1/wallets/<number>/ and .../top-ups/: the wallet of the account's bill unit with its estimate and
latest rows; top-ups by supervisors, billing admins and the billers that reference the account (with their
external id), idempotent; bad amounts and currencies are a 400 naming the field, with nothing stored."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from billing_mgmt import roles
from billing_mgmt.models import AuditRecord
from billruns.models import BillingRun, RunType, Stage, WalletEstimate
from billruns.services import billrun_create, billrun_execute, wallet_topup
from statements.models import AccountBalance, BalanceType, FinancialTransaction
from tests.billruns import builders as b
from tests.billruns.runs_helpers import definition
from tests.factories import AccountFactory

D = b.D
TOPUP = FinancialTransaction.Kind.WALLET_TOPUP


def wallet(number: str) -> str:
    return f"/api/v1/wallets/{number}/"


def top_ups(number: str) -> str:
    return f"/api/v1/wallets/{number}/top-ups/"


def stored() -> tuple[int, int, int]:
    return (
        FinancialTransaction.objects.count(),
        AccountBalance.objects.filter(balance_type=BalanceType.WALLET).count(),
        AuditRecord.objects.filter(action="ledger.post").count(),
    )


@pytest.fixture
def alpha(biller_factory):
    return biller_factory(code="alpha")


@pytest.fixture
def beta(biller_factory):
    return biller_factory(code="beta")


@pytest.fixture
def account(make_account, alpha):
    return make_account(alpha, "A-1")


# --- reading ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_empty_wallet(account, session_client):
    response = session_client(roles.CSR).get(wallet(account.number))

    assert response.status_code == 200
    assert response.json() == {
        "account": account.number,
        "wallet_account": account.number,
        "currency": "USD",
        "balance": "0.00",
        "estimate": None,
        "transactions": [],
    }


@pytest.mark.django_db
def test_the_wallet_shows_balance_estimate_and_the_latest_20_rows(
    account, session_client, django_assert_max_num_queries
):
    for i in range(22):
        wallet_topup(account=account, amount=D(i + 1), currency="USD", description=f"Top-up {i + 1}")
    WalletEstimate.objects.update_or_create(
        account=account,
        defaults={
            "currency": "USD",
            "balance": D("253.00"),
            "daily_consumption": D("1.2500"),
            "recurring_per_period": D("10"),
            "next_charge_on": dt.date(2027, 1, 1),
            "runs_out_on": dt.date(2027, 3, 1),
            "estimated_at": timezone.now(),
        },
    )
    client = session_client(roles.CSR)

    with django_assert_max_num_queries(8):
        response = client.get(wallet(account.number))

    data = response.json()
    assert (data["balance"], data["currency"]) == ("253.00", "USD")
    assert data["estimate"] == {
        "runs_out_on": "2027-03-01",
        "daily_consumption": "1.25",
        "recurring_per_period": "10.00",
        "next_charge_on": "2027-01-01",
        "balance": "253.00",
        "currency": "USD",
        "window_days": 30,
        "estimated_at": data["estimate"]["estimated_at"],
        "run": None,
    }
    rows = data["transactions"]
    assert len(rows) == 20
    assert [r["amount"] for r in rows[:2]] == ["22.00", "21.00"] and rows[-1]["amount"] == "3.00"
    assert rows[0] == {
        "id": rows[0]["id"],
        "kind": "wallet_topup",
        "amount": "22.00",
        "currency": "USD",
        "effective_date": timezone.localdate().isoformat(),
        "posted_at": rows[0]["posted_at"],
        "description": "Top-up 22",
        "biller": None,
        "external_id": "",
    }


@pytest.mark.django_db
def test_who_may_read_a_wallet(account, alpha, beta, api_client, session_client, biller_client, user_factory):
    assert api_client.get(wallet(account.number)).status_code == 401
    for role in (roles.CSR, roles.SUPERVISOR, roles.BILLING_ADMIN):
        assert session_client(role).get(wallet(account.number)).status_code == 200, role
    for role in (roles.CUSTOMER, None):
        assert session_client(role).get(wallet(account.number)).status_code == 403, role
    assert biller_client(alpha).get(wallet(account.number)).status_code == 200
    other = biller_client(beta).get(wallet(account.number))
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    assert session_client(roles.CSR).get(wallet("A-NOPE")).status_code == 404


@pytest.mark.django_db
def test_a_biller_does_not_see_other_billers_ids_on_the_rows(
    account, alpha, beta, make_account, biller_client
):
    make_account(beta, "B-1")  # beta exists as a biller, with another customer
    wallet_topup(account=account, amount=D(5), currency="USD", biller=alpha, external_id="alpha-1")
    wallet_topup(account=account, amount=D(7), currency="USD", biller=beta, external_id="beta-1")

    rows = biller_client(alpha).get(wallet(account.number)).json()["transactions"]

    assert [(r["amount"], r["biller"], r["external_id"]) for r in rows] == [
        ("7.00", None, ""),
        ("5.00", "alpha", "alpha-1"),
    ]


# --- topping up ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", [roles.SUPERVISOR, roles.BILLING_ADMIN])
def test_staff_with_the_permission_top_up(account, session_client, role):
    response = session_client(role).post(
        top_ups(account.number),
        {"amount": "20.00", "currency": "USD", "effective_date": "2026-11-30", "description": "Shop payment"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    data = response.json()
    row = FinancialTransaction.objects.get()
    assert (row.kind, row.balance_type, row.amount, row.currency, row.biller, row.external_id) == (
        TOPUP,
        BalanceType.WALLET,
        D("20.00"),
        "USD",
        None,
        "",
    )
    assert (row.effective_date, row.description) == (dt.date(2026, 11, 30), "Shop payment")
    assert data["outcome"] == "created"
    assert data["transaction"]["id"] == row.pk and data["transaction"]["amount"] == "20.00"
    assert (data["wallet_account"], data["balance"], data["currency"]) == (account.number, "20.00", "USD")
    assert row.created_by.username.startswith("user-")


@pytest.mark.django_db
def test_csrs_customers_and_anonymous_callers_may_not_top_up(account, api_client, session_client):
    body = {"amount": "20.00", "currency": "USD"}

    assert api_client.post(top_ups(account.number), body, format="json").status_code == 401
    for role in (roles.CSR, roles.CUSTOMER, None):
        response = session_client(role).post(top_ups(account.number), body, format="json")
        assert response.status_code == 403, role
    assert stored() == (0, 0, 0)


@pytest.mark.django_db
def test_a_biller_tops_up_by_its_external_id_once(account, alpha, beta, biller_client):
    client = biller_client(alpha)
    body = {"amount": "15.00", "currency": "USD", "external_id": "PAY-1"}

    missing = client.post(top_ups(account.number), {"amount": "15.00", "currency": "USD"}, format="json")
    first = client.post(top_ups(account.number), body, format="json")
    repeat = client.post(top_ups(account.number), body, format="json")
    changed = client.post(top_ups(account.number), body | {"amount": "16.00"}, format="json")
    other = biller_client(beta).post(top_ups(account.number), body, format="json")

    assert missing.status_code == 400 and "external_id" in missing.json()["error"]["fields"]
    assert first.status_code == 201 and first.json()["outcome"] == "created"
    assert repeat.status_code == 200 and repeat.json()["outcome"] == "duplicate"
    assert repeat.json()["transaction"] == first.json()["transaction"]
    assert first.json()["transaction"]["biller"] == "alpha"
    assert changed.status_code == 409 and changed.json()["error"]["code"] == "conflict"
    assert other.status_code == 404
    row = FinancialTransaction.objects.get()
    assert (row.biller, row.external_id, row.amount, row.created_by) == (alpha, "PAY-1", D("15.00"), None)
    assert AccountBalance.objects.get(account=account, balance_type=BalanceType.WALLET).amount == D("15.00")


@pytest.mark.django_db
def test_the_same_idempotency_key_twice_posts_one_row(account, session_client):
    client = session_client(roles.SUPERVISOR)
    body = {"amount": "12.50", "currency": "USD"}

    first = client.post(top_ups(account.number), body, format="json", HTTP_IDEMPOTENCY_KEY="topup-1")
    again = client.post(top_ups(account.number), body, format="json", HTTP_IDEMPOTENCY_KEY="topup-1")
    reused = client.post(
        top_ups(account.number), body | {"amount": "13.00"}, format="json", HTTP_IDEMPOTENCY_KEY="topup-1"
    )

    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "idempotency_key_reused"
    assert FinancialTransaction.objects.filter(kind=TOPUP).count() == 1
    assert AccountBalance.objects.get(account=account, balance_type=BalanceType.WALLET).amount == D("12.50")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"amount": "0", "currency": "USD"}, "amount", "Must be more than zero."),
        ({"amount": "-5.00", "currency": "USD"}, "amount", "Must be more than zero."),
        ({"amount": "abc", "currency": "USD"}, "amount", "A valid number is required."),
        (
            {"amount": "10.001", "currency": "USD"},
            "amount",
            "USD amounts have at most the currency's minor units.",
        ),
        ({"amount": "1.00001", "currency": "USD"}, "amount", None),
        ({"currency": "USD"}, "amount", "This field is required."),
        ({"amount": "10.00", "currency": "XYZ"}, "currency", "'XYZ' is not an ISO 4217 currency code."),
        ({"amount": "10.00", "currency": "usd"}, "currency", "'usd' is not an ISO 4217 currency code."),
        ({"amount": "10.00", "currency": "EUR"}, "currency", "The account bills in USD, not EUR."),
        ({"amount": "10.00"}, "currency", "This field is required."),
        ({"amount": "10.00", "currency": "USD", "effective_date": "30.11.2026"}, "effective_date", None),
    ],
)
def test_bad_amounts_and_currencies_are_a_400_and_store_nothing(
    account, session_client, body, field, message
):
    response = session_client(roles.SUPERVISOR).post(
        top_ups(account.number), body, format="json", HTTP_IDEMPOTENCY_KEY="bad-1"
    )

    assert response.status_code == 400, response.json()
    fields = response.json()["error"]["fields"]
    assert field in fields, fields
    if message:
        assert fields[field] == [message]
    assert stored() == (0, 0, 0)


@pytest.mark.django_db
def test_a_non_paying_childs_top_up_goes_to_its_payers_wallet(
    alpha, make_account, biller_client, session_client
):
    parent = AccountFactory()
    child = make_account(alpha, "CHILD-1", parent=parent, is_paying=False)
    client = biller_client(alpha)

    response = client.post(
        top_ups(child.number), {"amount": "30.00", "currency": "USD", "external_id": "P-9"}, format="json"
    )

    assert response.status_code == 201, response.json()
    assert response.json()["wallet_account"] is None  # alpha does not reference the parent
    assert FinancialTransaction.objects.get().account == parent
    seen = client.get(wallet(child.number)).json()
    assert (seen["account"], seen["wallet_account"], seen["balance"]) == (child.number, None, "30.00")
    staff = session_client(roles.CSR).get(wallet(child.number)).json()
    assert (staff["wallet_account"], staff["balance"]) == (parent.number, "30.00")
    assert client.get(wallet(parent.number)).status_code == 404


# --- a prepaid run debits the wallet and estimates when it runs out -----------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_prepaid_run_debits_the_wallet_and_estimates_it(eager, account, session_client):
    today = timezone.localdate()
    definition(RunType.PREPAID, name="Prepaid daily", bill_as_of_day=None)
    plan = b.plan()
    plan.billing_term_scheme = b.scheme("prepaid")
    plan.save()
    b.usage_component(plan, unit_price="0.10")
    subscription = b.subscription(account, plan, today - dt.timedelta(days=20))
    b.usage(subscription, 100, today - dt.timedelta(days=10))
    client = session_client(roles.SUPERVISOR)
    assert client.post(top_ups(account.number), {"amount": "50.00", "currency": "USD"}).status_code == 201

    run = billrun_create(run_type=RunType.PREPAID)
    billrun_execute(run=run, up_to=Stage.POSTING)
    run.refresh_from_db()

    assert (run.state, run.wallet_transactions) == (BillingRun.State.COMPLETED, 1)
    data = client.get(wallet(account.number)).json()
    assert data["balance"] == "40.00"
    assert [(r["kind"], r["amount"]) for r in data["transactions"]] == [
        ("wallet_debit", "-10.00"),
        ("wallet_topup", "50.00"),
    ]
    estimate = data["estimate"]
    assert (estimate["balance"], estimate["daily_consumption"], estimate["run"]) == (
        "40.00",
        "0.33",
        run.number,
    )
    assert estimate["runs_out_on"] == (today + dt.timedelta(days=121)).isoformat()
