"""/api/v1/billing-runs/ and /api/v1/run-definitions/: staff by model permission (biller clients 403), runs
created from the active definition with criteria and filters named by codes, Draft-only edit and delete,
execute up to a stage now (eager Celery) or at a time, resume, unschedule, exceptions."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AccountGroup
from billing_mgmt import roles
from billing_mgmt.models import AuditRecord
from billruns.models import BillingRun, RunException, RunType, Stage
from billruns.services import billrun_create
from statements.models import FinancialTransaction, Statement
from tests.billruns import builders as b
from tests.billruns.runs_helpers import JULY_1, customer, definition, monthly_plan

LIST = "/api/v1/billing-runs/"
DEFINITIONS = "/api/v1/run-definitions/"


def one(number: str, action: str = "") -> str:
    return f"{LIST}{number}/{action + '/' if action else ''}"


def stored() -> tuple[int, int]:
    return BillingRun.objects.count(), AuditRecord.objects.filter(action__startswith="billrun.").count()


def draft(**values) -> BillingRun:
    return billrun_create(**({"bill_as_of_date": JULY_1, "transaction_date": JULY_1} | values))


def moved_to(run: BillingRun, state: str, execution: str = BillingRun.Execution.IDLE) -> BillingRun:
    """Put a run in a state without executing it (the states' rules are the services' tests)."""
    BillingRun.objects.filter(pk=run.pk).update(state=state, execution=execution)
    run.refresh_from_db()
    return run


# --- permissions --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_anonymous_401_customers_csrs_supervisors_403_billers_403(
    api_client, session_client, biller_client, biller_factory
):
    definition()
    run = draft()
    assert api_client.get(LIST).status_code == 401
    assert api_client.post(LIST, {}, format="json").status_code == 401
    for role in (roles.CUSTOMER, roles.CSR, roles.SUPERVISOR, None):
        client = session_client(role)
        assert client.get(LIST).status_code == 403, role
        assert client.get(one(run.number)).status_code == 403, role
        assert client.post(LIST, {}, format="json").status_code == 403, role
        assert client.get(DEFINITIONS).status_code == 403, role
    biller = biller_client(biller_factory())
    for response in (
        biller.get(LIST),
        biller.post(LIST, {}, format="json"),
        biller.get(one(run.number)),
        biller.patch(one(run.number), {"mode": "batch"}, format="json"),
        biller.delete(one(run.number)),
        biller.post(one(run.number, "execute"), {"up_to": "rating"}, format="json"),
        biller.post(one(run.number, "resume"), format="json"),
        biller.post(one(run.number, "unschedule"), format="json"),
        biller.get(one(run.number, "exceptions")),
        biller.get(DEFINITIONS),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
        assert "biller API clients" in response.json()["error"]["message"]
    assert stored() == (1, 1)


@pytest.mark.django_db
def test_each_action_needs_its_model_permission(user_factory):
    from rest_framework.test import APIClient

    definition()
    run = draft()
    user = user_factory(username="reader")
    user.user_permissions.add(Permission.objects.get(codename="view_billingrun"))
    client = APIClient()
    client.force_login(user)

    assert client.get(LIST).status_code == 200
    assert client.get(one(run.number)).status_code == 200
    assert client.get(one(run.number, "exceptions")).status_code == 200
    assert client.post(LIST, {}, format="json").status_code == 403
    assert client.patch(one(run.number), {"mode": "batch"}, format="json").status_code == 403
    assert client.delete(one(run.number)).status_code == 403
    assert client.post(one(run.number, "execute"), {"up_to": "rating"}, format="json").status_code == 403
    assert client.get(DEFINITIONS).status_code == 403
    assert client.put(one(run.number), {}, format="json").status_code == 405

    user.user_permissions.add(Permission.objects.get(codename="execute_billingrun"))
    at = (timezone.now() + dt.timedelta(days=1)).isoformat()
    response = client.post(one(run.number, "execute"), {"up_to": "rating", "at": at}, format="json")
    assert response.status_code == 202
    assert client.patch(one(run.number), {"mode": "batch"}, format="json").status_code == 403


# --- create -------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_takes_the_active_definitions_defaults(billing_admin_client):
    definition(due_proximity_default_days=3, ar_classifications=["vip"])

    response = billing_admin_client.post(LIST, {}, format="json")

    assert response.status_code == 201, response.json()
    data = response.json()
    run = BillingRun.objects.get()
    assert response["Location"] == one(run.number)
    today = timezone.localdate()
    assert data["number"] == run.number and run.number.startswith("BR-")
    assert data["bill_as_of_date"] == data["transaction_date"] == today.replace(day=1).isoformat()
    assert (data["run_type"], data["mode"], data["state"], data["execution"]) == (
        "normal",
        "batch",
        "draft",
        "idle",
    )
    assert (data["due_date_proximity_sign"], data["due_date_proximity_days"], data["due_date_proximity"]) == (
        "+",
        3,
        3,
    )
    assert data["ar_classifications"] == ["vip"]
    assert data["definition"] == "Normal monthly"
    assert data["created_by"] == "user-billing-admin"
    assert (data["accounts"], data["subscriptions"], data["groups"], data["billing_term_schemes"]) == (
        [],
        [],
        [],
        [],
    )
    assert [s["stage"] for s in data["steps"]] == ["rating", "invoicing", "posting", "formatting"]
    assert {s["status"] for s in data["steps"]} == {"not_started"}
    assert (data["bills_generated"], data["exception_count"], data["started_at"], data["finished_at"]) == (
        0,
        0,
        None,
        None,
    )
    assert AuditRecord.objects.filter(action="billrun.create", object_id=str(run.pk)).count() == 1


@pytest.mark.django_db
def test_create_with_criteria_and_filters_named_by_codes(billing_admin_client):
    definition()
    plan = monthly_plan()
    account, subscription = customer(plan)
    other, _ = customer(plan)
    group = AccountGroup.objects.create(code="north", name="North")
    group.accounts.add(other)

    response = billing_admin_client.post(
        LIST,
        {
            "mode": "batch",
            "bill_as_of_date": "2026-07-01",
            "transaction_date": "2026-07-02",
            "due_date_proximity_sign": "-",
            "due_date_proximity_days": 5,
            "billing_term_schemes": ["standard"],
            "billing_frequencies": ["monthly", "quarterly"],
            "ar_classifications": ["standard", "vip"],
            "payment_preferences": ["card"],
            "presentment_preferences": ["email", "portal"],
            "accounts": [account.number, other.number],
            "subscriptions": [subscription.pk],
            "groups": ["north"],
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    data = response.json()
    assert (data["bill_as_of_date"], data["transaction_date"], data["due_date_proximity"]) == (
        "2026-07-01",
        "2026-07-02",
        -5,
    )
    assert data["billing_term_schemes"] == ["standard"]
    assert sorted(data["billing_frequencies"]) == ["monthly", "quarterly"]
    assert (data["ar_classifications"], data["payment_preferences"], data["presentment_preferences"]) == (
        ["standard", "vip"],
        ["card"],
        ["email", "portal"],
    )
    assert data["accounts"] == sorted([account.number, other.number])
    assert (data["subscriptions"], data["groups"]) == ([subscription.pk], ["north"])
    run = BillingRun.objects.get()
    assert set(run.accounts.values_list("pk", flat=True)) == {account.pk, other.pk}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"billing_term_schemes": ["standard", "gold"]},
            "billing_term_schemes",
            "Unknown billing term schemes: gold.",
        ),
        ({"billing_frequencies": ["weekly"]}, "billing_frequencies", "Unknown billing frequencies: weekly."),
        ({"accounts": ["A-NOPE", "A-GONE"]}, "accounts", "Unknown account numbers: A-NOPE, A-GONE."),
        ({"subscriptions": [999999]}, "subscriptions", "Unknown subscription ids: 999999."),
        ({"groups": ["south"]}, "groups", "Unknown account groups: south."),
        ({"ar_classifications": ["platinum"]}, "ar_classifications.0", '"platinum" is not a valid choice.'),
        ({"run_type": "weekly"}, "run_type", '"weekly" is not a valid choice.'),
        ({"bill_as_of_date": "01/07/2026"}, "bill_as_of_date", None),
        ({"due_date_proximity_days": -1}, "due_date_proximity_days", None),
        # the service's rules
        (
            {"bill_as_of_date": "2026-07-02", "transaction_date": "2026-07-01"},
            "transaction_date",
            "The transaction date cannot be before the bill-as-of date.",
        ),
        (
            {"due_date_proximity_days": 20},
            "due_date_proximity_days",
            "The due-date proximity +20 days is outside the definition's range (-5 to +10 days).",
        ),
        ({"billing_term_schemes": ["prepaid"]}, "billing_term_schemes", None),
        ({"mode": "individual"}, "accounts", None),
        ({"run_type": "prepaid"}, "run_type", "No active run definition of this type."),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(billing_admin_client, body, field, message):
    definition()
    before = stored()

    response = billing_admin_client.post(LIST, body, format="json", HTTP_IDEMPOTENCY_KEY="create-1")

    assert response.status_code == 400, response.json()
    fields = response.json()["error"]["fields"]
    assert field in fields, fields
    if message:
        assert fields[field] == [message]
    assert stored() == before


@pytest.mark.django_db
def test_a_repeated_idempotency_key_replays_the_first_run(billing_admin_client):
    definition()
    body = {"bill_as_of_date": "2026-07-01", "transaction_date": "2026-07-01"}

    first = billing_admin_client.post(LIST, body, format="json", HTTP_IDEMPOTENCY_KEY="run-july")
    again = billing_admin_client.post(LIST, body, format="json", HTTP_IDEMPOTENCY_KEY="run-july")
    other = billing_admin_client.post(
        LIST, body | {"mode": "batch"}, format="json", HTTP_IDEMPOTENCY_KEY="run-july"
    )

    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    assert BillingRun.objects.count() == 1


# --- read ---------------------------------------------------------------------------------------------------


def _list_queries(client, params=None) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(LIST, params or {})
    assert response.status_code == 200
    return len(queries)


@pytest.mark.django_db
def test_the_list_is_paginated_filtered_and_at_a_fixed_number_of_queries(billing_admin_client):
    definition()
    definition(RunType.PREPAID, name="Prepaid daily", bill_as_of_day=None)
    runs = [draft() for _ in range(2)]
    few = _list_queries(billing_admin_client)
    runs += [draft() for _ in range(5)] + [draft(run_type=RunType.PREPAID)]
    moved_to(runs[0], BillingRun.State.COMPLETED)
    moved_to(runs[1], BillingRun.State.RATING, BillingRun.Execution.RUNNING)

    assert _list_queries(billing_admin_client) == few
    response = billing_admin_client.get(LIST, {"page_size": 3})
    data = response.json()
    assert data["count"] == 8 and len(data["results"]) == 3 and data["next"]
    assert [r["number"] for r in data["results"]] == [r.number for r in reversed(runs)][:3]
    row = data["results"][0]
    assert "steps" not in row and "accounts" not in row
    assert row["run_type"] == "prepaid"

    def numbers(**params):
        return [r["number"] for r in billing_admin_client.get(LIST, params).json()["results"]]

    assert numbers(state="completed") == [runs[0].number]
    assert numbers(execution="running") == [runs[1].number]
    assert numbers(run_type="prepaid") == [runs[-1].number]
    assert len(numbers(run_type="normal", state="draft")) == 5
    bad = billing_admin_client.get(LIST, {"state": "sleeping"})
    assert bad.status_code == 400 and "state" in bad.json()["error"]["fields"]
    assert billing_admin_client.get(one("BR-999999")).status_code == 404


@pytest.mark.django_db
def test_exceptions_are_listed_page_by_page(billing_admin_client):
    definition()
    plan = monthly_plan()
    account, subscription = customer(plan)
    run = moved_to(draft(), BillingRun.State.COMPLETED_WITH_ERRORS)
    for i in range(3):
        RunException.objects.create(
            run=run,
            account=account,
            stage=Stage.RATING,
            code="currency_mismatch",
            message=f"Problem {i}",
            subscription=subscription if i == 0 else None,
        )
    RunException.objects.create(
        run=draft(), account=account, stage=Stage.RATING, code="x", message="other run"
    )

    response = billing_admin_client.get(one(run.number, "exceptions"), {"page_size": 2})

    assert response.status_code == 200
    data = response.json()
    assert data["count"] == 3 and data["next"]
    first = data["results"][0]
    assert first == {
        "account": account.number,
        "stage": "rating",
        "code": "currency_mismatch",
        "message": "Problem 0",
        "subscription": subscription.pk,
        "service_identifier": subscription.service_identifier,
        "created_at": first["created_at"],
    }
    assert data["results"][1]["subscription"] is None and data["results"][1]["service_identifier"] is None
    assert billing_admin_client.get(one(run.number, "exceptions"), {"code": "x"}).json()["count"] == 0
    assert billing_admin_client.get(one("BR-999999", "exceptions")).status_code == 404


@pytest.mark.django_db
def test_run_definitions_are_listed(billing_admin_client):
    definition(ar_classifications=["vip"])
    definition(RunType.PREPAID, name="Prepaid daily", bill_as_of_day=None, active=False)

    response = billing_admin_client.get(DEFINITIONS)

    assert response.status_code == 200
    rows = response.json()["results"]
    assert [(r["name"], r["run_type"], r["active"]) for r in rows] == [
        ("Normal monthly", "normal", True),
        ("Prepaid daily", "prepaid", False),
    ]
    assert rows[0]["ar_classifications"] == ["vip"] and rows[0]["schedule"] is None
    assert (rows[0]["due_proximity_min_days"], rows[0]["due_proximity_max_days"], rows[0]["chunk_size"]) == (
        -5,
        10,
        2,
    )
    only = billing_admin_client.get(DEFINITIONS, {"active": "true"}).json()["results"]
    assert [r["name"] for r in only] == ["Normal monthly"]
    assert billing_admin_client.post(DEFINITIONS, {}, format="json").status_code == 405


# --- edit and delete: Draft only ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_draft_run_is_changed_field_by_field(billing_admin_client):
    definition()
    plan = monthly_plan()
    account, _ = customer(plan)
    run = draft(ar_classifications=["vip"])

    response = billing_admin_client.patch(
        one(run.number),
        {"transaction_date": "2026-07-05", "accounts": [account.number], "mode": "individual"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="edit-1",
    )

    assert response.status_code == 200, response.json()
    data = response.json()
    assert (data["transaction_date"], data["accounts"], data["mode"]) == (
        "2026-07-05",
        [account.number],
        "individual",
    )
    assert data["bill_as_of_date"] == "2026-07-01" and data["ar_classifications"] == ["vip"]
    assert AuditRecord.objects.filter(action="billrun.update", object_id=str(run.pk)).count() == 1

    bad = billing_admin_client.patch(one(run.number), {"accounts": []}, format="json")
    assert bad.status_code == 400 and "accounts" in bad.json()["error"]["fields"]
    bad = billing_admin_client.patch(one(run.number), {"groups": ["nope"]}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["fields"]["groups"] == [
        "Unknown account groups: nope."
    ]
    run.refresh_from_db()
    assert list(run.accounts.all()) == [account]
    assert AuditRecord.objects.filter(action="billrun.update").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "state", [BillingRun.State.RATING, BillingRun.State.COMPLETED, BillingRun.State.FAILED]
)
def test_a_run_that_is_not_draft_cannot_be_changed_or_deleted(billing_admin_client, state):
    definition()
    run = moved_to(draft(), state)
    label = BillingRun.State(state).label
    before = stored()

    changed = billing_admin_client.patch(one(run.number), {"transaction_date": "2026-07-09"}, format="json")
    deleted = billing_admin_client.delete(one(run.number))

    assert changed.status_code == deleted.status_code == 409
    assert changed.json()["error"]["code"] == deleted.json()["error"]["code"] == "run_not_draft"
    assert (
        changed.json()["error"]["message"] == f"Only a Draft run can be edited; run {run.number} is {label}."
    )
    assert (
        deleted.json()["error"]["message"] == f"Only a Draft run can be deleted; run {run.number} is {label}."
    )
    run.refresh_from_db()
    assert run.transaction_date == JULY_1
    assert stored() == before


@pytest.mark.django_db
def test_a_draft_run_is_deleted(billing_admin_client):
    definition()
    run = draft()

    response = billing_admin_client.delete(one(run.number))

    assert response.status_code == 204
    assert not BillingRun.objects.exists()
    assert AuditRecord.objects.filter(action="billrun.delete", object_id=str(run.pk)).count() == 1
    assert billing_admin_client.delete(one(run.number)).status_code == 404


# --- execute, schedule, resume ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_scheduled_execution_and_unscheduling(billing_admin_client):
    definition()
    run = draft()
    at = timezone.now().replace(microsecond=0) + dt.timedelta(days=1)

    response = billing_admin_client.post(
        one(run.number, "execute"), {"up_to": "posting", "at": at.isoformat()}, format="json"
    )

    assert response.status_code == 202, response.json()
    data = response.json()
    assert (data["state"], data["execution"], data["target_stage"]) == ("draft", "scheduled", "posting")
    assert dt.datetime.fromisoformat(data["scheduled_for"]) == at
    again = billing_admin_client.post(one(run.number, "execute"), {"up_to": "rating"}, format="json")
    assert again.status_code == 202  # a scheduled run may be executed now instead
    assert again.json()["execution"] == "running" and again.json()["scheduled_for"] is None

    run = moved_to(run, BillingRun.State.DRAFT)
    billing_admin_client.post(
        one(run.number, "execute"), {"up_to": "posting", "at": at.isoformat()}, format="json"
    )
    response = billing_admin_client.post(one(run.number, "unschedule"), format="json")
    assert response.status_code == 200
    assert (
        response.json()["execution"],
        response.json()["scheduled_for"],
        response.json()["target_stage"],
    ) == (
        "idle",
        None,
        "",
    )
    again = billing_admin_client.post(one(run.number, "unschedule"), format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "run_not_scheduled"
    assert again.json()["error"]["message"] == f"Run {run.number} is not scheduled."


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("state", "execution", "body", "status", "code"),
    [
        ("draft", "idle", {"up_to": "billing"}, 400, "invalid"),
        ("draft", "idle", {}, 400, "invalid"),
        ("draft", "idle", {"up_to": "rating", "at": "2020-01-01T00:00:00Z"}, 400, "invalid"),
        ("draft", "idle", {"up_to": "rating", "at": "tomorrow"}, 400, "invalid"),
        ("completed", "idle", {"up_to": "formatting"}, 409, "run_finished"),
        ("invoicing", "idle", {"up_to": "rating"}, 409, "stage_already_done"),
        ("rating", "running", {"up_to": "posting"}, 409, "run_executing"),
    ],
)
def test_execute_refuses_what_the_state_does_not_allow(
    billing_admin_client, state, execution, body, status, code
):
    definition()
    run = moved_to(draft(), state, execution)

    response = billing_admin_client.post(one(run.number, "execute"), body, format="json")

    assert response.status_code == status, response.json()
    assert response.json()["error"]["code"] == code
    run.refresh_from_db()
    assert (run.state, run.execution, run.target_stage) == (state, execution, "")
    assert not AuditRecord.objects.filter(action="billrun.execute").exists()


@pytest.mark.django_db
def test_a_prepaid_run_has_no_invoicing_stage(billing_admin_client):
    definition(RunType.PREPAID, name="Prepaid daily", bill_as_of_day=None)
    run = billrun_create(run_type=RunType.PREPAID)

    response = billing_admin_client.post(one(run.number, "execute"), {"up_to": "invoicing"}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == (
        "A prepaid run has no stage 'invoicing': choose one of Identification & Rating, Assembling & Posting."
    )
    assert error["fields"] == {"up_to": ["Choose one of Identification & Rating, Assembling & Posting."]}
    assert [s["stage"] for s in billing_admin_client.get(one(run.number)).json()["steps"]] == [
        "rating",
        "posting",
    ]


@pytest.mark.django_db
def test_resume_needs_an_executing_run(billing_admin_client):
    definition()
    run = draft()

    idle = billing_admin_client.post(one(run.number, "resume"), format="json")
    assert idle.status_code == 409 and idle.json()["error"]["code"] == "run_idle"

    moved_to(run, BillingRun.State.DRAFT, BillingRun.Execution.RUNNING)
    response = billing_admin_client.post(one(run.number, "resume"), format="json")
    assert response.status_code == 202
    assert response.json()["chunks_queued"] == 0 and response.json()["number"] == run.number
    assert AuditRecord.objects.filter(action="billrun.resume").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_run_executed_stage_by_stage_bills_every_account_once(eager, session_client):
    definition()
    plan = monthly_plan()
    accounts = [customer(plan)[0] for _ in range(3)]
    euro, _ = customer(plan, currency="EUR")  # a plan in USD for an account billed in EUR: an exception
    client = session_client(roles.BILLING_ADMIN)
    created = client.post(
        LIST, {"bill_as_of_date": "2026-07-01", "transaction_date": "2026-07-01"}, format="json"
    )
    number = created.json()["number"]

    response = client.post(one(number, "execute"), {"up_to": "rating"}, format="json")

    assert response.status_code == 202, response.json()
    data = client.get(one(number)).json()
    assert (data["state"], data["execution"], data["accounts_selected"]) == ("rating", "idle", 4)
    rating = data["steps"][0]
    assert (rating["status"], rating["entities"], rating["exceptions"]) == ("done", 6, 1)
    assert data["steps"][1]["status"] == "not_started"
    assert not Statement.objects.exists()

    response = client.post(
        one(number, "execute"), {"up_to": "formatting"}, format="json", HTTP_IDEMPOTENCY_KEY="go"
    )

    assert response.status_code == 202
    data = client.get(one(number)).json()
    assert (data["state"], data["execution"], data["bills_generated"], data["exception_count"]) == (
        "completed_with_errors",
        "idle",
        3,
        1,
    )
    assert data["started_at"] and data["finished_at"]
    posting = next(s for s in data["steps"] if s["stage"] == "posting")
    assert (posting["status"], posting["entities"], posting["transactions"], posting["totals"]) == (
        "done",
        3,
        3,
        {"USD": "180.0000"},
    )
    bills = Statement.objects.filter(run_account__run__number=number)
    assert sorted(bills.values_list("account_id", flat=True)) == sorted(a.pk for a in accounts)
    assert set(bills.values_list("new_charges", flat=True)) == {b.D("60.00")}
    assert FinancialTransaction.objects.filter(kind="bill").count() == 3
    (problem,) = client.get(one(number, "exceptions")).json()["results"]
    assert (problem["account"], problem["stage"], problem["code"]) == (
        euro.number,
        "rating",
        "currency_mismatch",
    )

    again = client.post(one(number, "execute"), {"up_to": "formatting"}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "run_finished"
    assert Statement.objects.count() == 3
