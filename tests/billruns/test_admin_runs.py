"""Billing-run admin: run definitions (saved through run_definition_save, with their beat task), billing runs
created from the active definition's defaults and changed only while Draft (through the services; every bad
input is a form error and nothing is stored), execute / resume / unschedule from the list and from the run's
page, the results and the live progress fragment, exceptions (the first 50, the list, the streamed CSV),
chunks and wallet estimates, account groups, query counts, and who may see all this."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from typing import Any

import pytest
from django import forms
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from accounts.models import AccountGroup
from billing_mgmt.models import AuditRecord
from billruns.admin import runs as runs_admin
from billruns.models import (
    BillingRun,
    BillingTermScheme,
    RunChunk,
    RunDefinition,
    RunException,
    RunStep,
    RunType,
    Stage,
    WalletEstimate,
)
from billruns.services import billrun_create, run_defaults
from tests.billruns import builders as b
from tests.billruns.runs_helpers import JULY_1, customer, definition, monthly_plan, run_to
from tests.billruns.test_admin_catalog import form_errors, page_data
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db
# Tests that execute a run commit for real: work is queued after commit (Celery eager runs it then).
EXECUTES = pytest.mark.django_db(transaction=True)
D = b.D


def admin_url(model: str, action: str, *args) -> str:
    app = "accounts" if model == "accountgroup" else "billruns"
    return reverse(f"admin:{app}_{model}_{action}", args=args)


def run_url(run: BillingRun, action: str) -> str:
    return reverse(f"admin:billruns_billingrun_{action}", args=[run.pk])


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def post_form(client, url: str, changes: dict[str, Any]):
    """GET the page, apply ``changes`` (``None`` removes a key), POST it as the browser would."""
    response = client.get(url)
    assert response.status_code == 200
    data = page_data(response)
    for name, field in response.context["adminform"].form.fields.items():
        multiple = isinstance(field, (forms.MultipleChoiceField, forms.ModelMultipleChoiceField))
        if multiple and data.get(name) == "":
            data.pop(name)  # nothing chosen: a browser sends nothing
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value if isinstance(value, list) else str(value)
    return client.post(url, data)


def html(response) -> str:
    return response.content.decode()


# --- run definitions ----------------------------------------------------------------------------------------

DEFINITION = {
    "name": "Monthly post-paid",
    "run_type": "normal",
    "active": "on",
    "description": "",
    "bill_as_of_day": "1",
    "transaction_date_rule": "bill_as_of",
    "transaction_date_offset_days": "2",
    "due_proximity_min_days": "-5",
    "due_proximity_max_days": "10",
    "due_proximity_default_sign": "+",
    "due_proximity_default_days": "3",
    "schedule": "",
    "recurring_up_to": "formatting",
    "run_formatting": "on",
    "estimate_wallet_consumption": "on",
    "chunk_size": "500",
    "formatting_chunk_size": "100",
}


def definition_data(**changes) -> dict[str, Any]:
    data = {**DEFINITION, **changes}
    return {k: v for k, v in data.items() if v is not None}


def test_a_definition_is_added_through_the_service_with_its_default_criteria(admin_client):
    monthly = b.frequency("monthly")
    standard = b.scheme("standard")

    response = admin_client.post(
        admin_url("rundefinition", "add"),
        definition_data(
            billing_term_schemes=[standard.pk],
            billing_frequencies=[monthly.pk],
            ar_classifications=["vip", "government"],
            payment_preferences=["card"],
        ),
    )

    assert response.status_code == 302, form_errors(response)
    saved = RunDefinition.objects.get()
    assert (saved.name, saved.run_type, saved.active, saved.due_proximity_default) == (
        "Monthly post-paid",
        "normal",
        True,
        3,
    )
    assert saved.ar_classifications == ["vip", "government"]
    assert saved.payment_preferences == ["card"]
    assert saved.presentment_preferences == []
    assert list(saved.billing_term_schemes.all()) == [standard]
    assert list(saved.billing_frequencies.all()) == [monthly]
    assert AuditRecord.objects.filter(action="run_definition.create", object_id=str(saved.pk)).count() == 1
    assert saved.periodic_task is None

    page = admin_client.get(admin_url("rundefinition", "change", saved.pk))
    body = html(page)
    assert 'value="vip" checked' in body.replace("\n", " ") or re.search(r'value="vip"[^>]*checked', body)
    assert "None yet: saving an active, recurring definition with a schedule creates it." in body


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"due_proximity_default_sign": "-", "due_proximity_default_days": "6"},
            "due_proximity_default_days",
            "The default -6 days is outside the range (-5 to +10).",
        ),
        (
            {"due_proximity_min_days": "5", "due_proximity_max_days": "2"},
            "due_proximity_max_days",
            "The latest proximity must not be before the earliest.",
        ),
        ({"recurring": "on"}, "schedule", "A recurring definition needs a schedule."),
        ({"chunk_size": "0"}, "chunk_size", "Ensure this value is greater than or equal to 1."),
        (
            {"formatting_chunk_size": "5001"},
            "formatting_chunk_size",
            "Ensure this value is less than or equal to 5000.",
        ),
        ({"bill_as_of_day": "32"}, "bill_as_of_day", "Ensure this value is less than or equal to 31."),
        (
            {"billing_term_schemes": ["PREPAID"]},
            "billing_term_schemes",
            "A normal definition takes only normal billing term schemes, not Prepaid.",
        ),
    ],
)
def test_bad_definitions_are_form_errors_and_nothing_is_saved(admin_client, changes, field, message):
    if changes.get("billing_term_schemes") == ["PREPAID"]:
        changes = {"billing_term_schemes": [b.scheme("prepaid").pk]}

    response = admin_client.post(admin_url("rundefinition", "add"), definition_data(**changes))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field] == [message]
    assert not RunDefinition.objects.exists()
    assert not AuditRecord.objects.filter(action__startswith="run_definition.").exists()
    assert not PeriodicTask.objects.filter(name__startswith="billing-runs:").exists()


def test_a_second_active_definition_of_a_type_is_a_clear_form_error(admin_client):
    first = definition(name="Monthly")

    response = admin_client.post(admin_url("rundefinition", "add"), definition_data(name="Another"))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors == {"active": ["'Monthly' is the active normal definition: deactivate it first."]}
    assert "Constraint" not in html(response)
    assert list(RunDefinition.objects.all()) == [first]

    # Inactive, or of the other type, it is fine.
    assert (
        admin_client.post(
            admin_url("rundefinition", "add"), definition_data(name="Spare", active=None)
        ).status_code
        == 302
    )
    assert (
        admin_client.post(
            admin_url("rundefinition", "add"), definition_data(name="Prepaid daily", run_type="prepaid")
        ).status_code
        == 302
    )
    assert RunDefinition.objects.filter(active=True).count() == 2


def test_a_recurring_definition_gets_its_periodic_task_and_loses_it_when_deactivated(admin_client):
    nightly = CrontabSchedule.objects.create(minute="0", hour="2", day_of_month="1")

    response = admin_client.post(
        admin_url("rundefinition", "add"), definition_data(recurring="on", schedule=str(nightly.pk))
    )

    assert response.status_code == 302, form_errors(response)
    saved = RunDefinition.objects.get()
    task = PeriodicTask.objects.get(name=f"billing-runs:{saved.pk}")
    assert (task.task, task.crontab_id, task.enabled) == ("billruns.create_recurring_run", nightly.pk, True)
    assert saved.periodic_task == task
    page = html(admin_client.get(admin_url("rundefinition", "change", saved.pk)))
    assert reverse("admin:django_celery_beat_periodictask_change", args=[task.pk]) in page
    assert f"billing-runs:{saved.pk}</a> (enabled)" in page

    response = post_form(admin_client, admin_url("rundefinition", "change", saved.pk), {"active": None})

    assert response.status_code == 302, form_errors(response)
    task.refresh_from_db()
    assert task.enabled is False
    assert AuditRecord.objects.filter(action="run_definition.update", object_id=str(saved.pk)).count() == 1


def test_definitions_are_not_deleted_here(admin_client):
    saved = definition()
    assert admin_client.get(admin_url("rundefinition", "delete", saved.pk)).status_code == 403
    assert RunDefinition.objects.filter(pk=saved.pk).exists()


# --- billing runs: add and change ---------------------------------------------------------------------------


@pytest.fixture
def normal():
    d = definition(
        due_proximity_default_sign="+",
        due_proximity_default_days=3,
        ar_classifications=["vip", "standard"],
        presentment_preferences=["email"],
    )
    d.billing_frequencies.set([b.frequency("monthly")])
    d.billing_term_schemes.set([b.scheme("standard")])
    return d


def test_the_add_page_is_prefilled_from_the_active_definition(admin_client, normal):
    expected = run_defaults(run_type=RunType.NORMAL)

    response = admin_client.get(admin_url("billingrun", "add"))

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form["bill_as_of_date"].value() == expected["bill_as_of_date"]
    assert form["transaction_date"].value() == expected["transaction_date"]
    assert (form["due_date_proximity_sign"].value(), form["due_date_proximity_days"].value()) == ("+", 3)
    assert form["ar_classifications"].value() == ["vip", "standard"]
    assert form["presentment_preferences"].value() == ["email"]
    assert form["payment_preferences"].value() == []
    assert form["billing_frequencies"].value() == [b.frequency("monthly").pk]
    assert form["billing_term_schemes"].value() == [b.scheme("standard").pk]
    assert form["mode"].value() == "batch"
    # Only the run type's schemes are offered; the proximity's range is said.
    assert list(form.fields["billing_term_schemes"].queryset) == [b.scheme("standard")]
    assert "The definition allows -5 to +10 days." in form.fields["due_date_proximity_days"].help_text
    body = html(response)
    assert "Normal (post-paid: bills)" in body
    assert f'href="{admin_url("rundefinition", "change", normal.pk)}"' in body
    assert 'href="?run_type=prepaid">Create a prepaid run instead' in body


def test_the_add_page_for_prepaid_runs_uses_the_prepaid_definition(admin_client, normal):
    definition(RunType.PREPAID, name="Prepaid daily", due_proximity_min_days=0, due_proximity_max_days=0)

    response = admin_client.get(admin_url("billingrun", "add"), {"run_type": "prepaid"})

    form = response.context["adminform"].form
    assert form["bill_as_of_date"].value() == timezone.localdate()
    assert list(form.fields["billing_term_schemes"].queryset) == [b.scheme("prepaid")]
    assert "Prepaid (debits wallets)" in html(response)

    response = post_form(
        admin_client, f"{admin_url('billingrun', 'add')}?run_type=prepaid", {"_save": "Save"}
    )

    assert response.status_code == 302, form_errors(response)
    run = BillingRun.objects.get()
    assert (run.run_type, run.definition.name) == ("prepaid", "Prepaid daily")


@pytest.mark.parametrize("run_type", ["normal", "prepaid"])
def test_no_active_definition_no_add_form(admin_client, run_type):
    definition(run_type, active=False)

    response = admin_client.get(admin_url("billingrun", "add"), {"run_type": run_type}, follow=True)

    assert response.redirect_chain == [(admin_url("billingrun", "changelist"), 302)]
    assert texts(response) == [
        f"There is no active {run_type} run definition: create or activate one in Django admin first."
    ]
    assert admin_client.post(f"{admin_url('billingrun', 'add')}?run_type={run_type}", {}).status_code == 302
    assert not BillingRun.objects.exists()


def test_the_list_offers_both_run_types(admin_client, normal):
    body = html(admin_client.get(admin_url("billingrun", "changelist")))
    add = admin_url("billingrun", "add")
    assert f'href="{add}?run_type=normal" class="addlink">Add normal run' in body
    assert f'href="{add}?run_type=prepaid" class="addlink">Add prepaid run' in body


def test_a_run_is_created_through_billrun_create(admin_client, normal):
    plan = monthly_plan()
    account, subscription = customer(plan)
    group = AccountGroup.objects.create(code="north", name="North")

    response = post_form(
        admin_client,
        admin_url("billingrun", "add"),
        {
            "bill_as_of_date": "2026-07-01",
            "transaction_date": "2026-07-02",
            "due_date_proximity_sign": "-",
            "due_date_proximity_days": "4",
            "ar_classifications": ["vip"],
            "accounts": [str(account.pk)],
            "subscriptions": [str(subscription.pk)],
            "groups": [str(group.pk)],
        },
    )

    assert response.status_code == 302, form_errors(response)
    run = BillingRun.objects.get()
    assert (run.state, run.execution, run.run_type, run.definition) == ("draft", "idle", "normal", normal)
    assert (run.bill_as_of_date, run.transaction_date, run.due_date_proximity) == (
        JULY_1,
        dt.date(2026, 7, 2),
        -4,
    )
    assert run.ar_classifications == ["vip"]
    assert run.presentment_preferences == ["email"]
    assert list(run.accounts.all()) == [account]
    assert list(run.subscriptions.all()) == [subscription]
    assert list(run.groups.all()) == [group]
    assert list(run.billing_frequencies.all()) == [b.frequency("monthly")]
    assert run.created_by.username == "billing-admin"
    assert AuditRecord.objects.filter(action="billrun.create", object_id=str(run.pk)).count() == 1


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"due_date_proximity_days": "11"},
            "due_date_proximity_days",
            "The due-date proximity +11 days is outside the definition's range (-5 to +10 days).",
        ),
        (
            {"due_date_proximity_sign": "-", "due_date_proximity_days": "6"},
            "due_date_proximity_days",
            "The due-date proximity -6 days is outside the definition's range (-5 to +10 days).",
        ),
        (
            {"bill_as_of_date": "2026-07-01", "transaction_date": "2026-06-30"},
            "transaction_date",
            "The transaction date cannot be before the bill-as-of date.",
        ),
        (
            {"mode": "individual"},
            "accounts",
            "An INDIVIDUAL run bills exactly one account: name it in the accounts filter.",
        ),
        ({"bill_as_of_date": "2026-13-01"}, "bill_as_of_date", "Enter a valid date."),
    ],
)
def test_bad_run_input_is_a_form_error_and_nothing_is_stored(admin_client, normal, changes, field, message):
    audit_before = AuditRecord.objects.count()

    response = post_form(admin_client, admin_url("billingrun", "add"), changes)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field] == [message]
    assert "Constraint" not in html(response)
    assert not BillingRun.objects.exists()
    assert AuditRecord.objects.count() == audit_before


def test_a_draft_run_is_changed_through_billrun_update(admin_client, normal):
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)

    response = post_form(
        admin_client,
        admin_url("billingrun", "change", run.pk),
        {"due_date_proximity_days": "7", "billing_frequencies": []},
    )

    assert response.status_code == 302, form_errors(response)
    run.refresh_from_db()
    assert run.due_date_proximity_days == 7
    assert not run.billing_frequencies.exists()
    update = AuditRecord.objects.get(action="billrun.update", object_id=str(run.pk))
    assert (update.before["due_date_proximity_days"], update.after["due_date_proximity_days"]) == (3, 7)

    response = post_form(
        admin_client, admin_url("billingrun", "change", run.pk), {"due_date_proximity_days": "12"}
    )

    assert form_errors(response) == [
        "The due-date proximity +12 days is outside the definition's range (-5 to +10 days)."
    ]
    run.refresh_from_db()
    assert run.due_date_proximity_days == 7


@pytest.fixture
def billed(eager):
    """A normal definition and three customers on a monthly 30.00 plan."""
    definition()
    plan = monthly_plan()
    return [customer(plan)[0] for _ in range(3)]


@EXECUTES
def test_a_run_that_was_executed_is_read_only_and_not_deletable(admin_client, billed):
    run = run_to(Stage.RATING)
    draft = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    change = admin_url("billingrun", "change", run.pk)

    page = admin_client.get(change)

    assert page.status_code == 200
    assert page.context["adminform"].form.fields == {}  # every field is read-only
    assert page.context["title"] == "View billing run"
    assert 'name="_save"' not in html(page)
    assert admin_url("billingrun", "delete", run.pk) not in html(page)
    assert admin_client.post(change, {"due_date_proximity_days": "1"}).status_code == 403

    response = admin_client.post(admin_url("billingrun", "delete", run.pk), {"post": "yes"}, follow=True)

    assert response.redirect_chain == [(change, 302)]
    assert texts(response) == [
        f"Only Draft runs that are not executing can be deleted: {run.number} (Identification & Rating). "
        "Nothing was deleted."
    ]

    response = admin_client.post(
        admin_url("billingrun", "changelist"),
        {"action": "delete_selected", "_selected_action": [str(run.pk), str(draft.pk)], "post": "yes"},
        follow=True,
    )

    assert texts(response) == [
        f"Only Draft runs that are not executing can be deleted: {run.number} (Identification & Rating). "
        "Nothing was deleted."
    ]
    assert BillingRun.objects.filter(pk__in=[run.pk, draft.pk]).count() == 2
    assert not AuditRecord.objects.filter(action="billrun.delete").exists()


def test_draft_runs_are_deleted_through_billrun_delete(admin_client, normal):
    one = billrun_create()
    two = billrun_create()
    three = billrun_create()

    confirm = admin_client.post(
        admin_url("billingrun", "changelist"),
        {"action": "delete_selected", "_selected_action": [str(one.pk), str(two.pk)]},
    )
    assert confirm.status_code == 200 and "Are you sure" in html(confirm)
    response = admin_client.post(
        admin_url("billingrun", "changelist"),
        {"action": "delete_selected", "_selected_action": [str(one.pk), str(two.pk)], "post": "yes"},
        follow=True,
    )

    assert texts(response) == ["Successfully deleted 2 billing runs."]
    assert list(BillingRun.objects.all()) == [three]
    assert AuditRecord.objects.filter(action="billrun.delete").count() == 2

    response = admin_client.post(admin_url("billingrun", "delete", three.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not BillingRun.objects.exists()
    assert AuditRecord.objects.filter(action="billrun.delete").count() == 3


# --- execute, resume, unschedule ----------------------------------------------------------------------------


def _action(client, action: str, runs: list[BillingRun]):
    return client.post(
        admin_url("billingrun", "changelist"),
        {"action": action, "_selected_action": [str(r.pk) for r in runs]},
        follow=True,
    )


@EXECUTES
def test_execute_actions_report_each_run(admin_client, billed):
    normal_run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    definition(RunType.PREPAID, name="Prepaid daily", due_proximity_min_days=0, due_proximity_max_days=0)
    prepaid_run = billrun_create(run_type=RunType.PREPAID)

    response = _action(admin_client, "execute_up_to_invoicing", [normal_run, prepaid_run])

    assert texts(response) == [
        f"{normal_run.number}: executed up to Invoicing: Invoicing.",
        f"{prepaid_run.number}: A prepaid run has no stage 'invoicing': choose one of Identification & "
        "Rating, Assembling & Posting.",
    ]
    normal_run.refresh_from_db()
    prepaid_run.refresh_from_db()
    assert (normal_run.state, normal_run.execution) == ("invoicing", "idle")
    assert (prepaid_run.state, prepaid_run.execution) == ("draft", "idle")

    response = _action(admin_client, "execute_up_to_rating", [normal_run])

    assert texts(response) == [
        f"{normal_run.number}: Run {normal_run.number} is already executed up to Invoicing: choose a "
        "following stage."
    ]

    response = _action(admin_client, "execute_up_to_formatting", [normal_run])

    assert texts(response) == [f"{normal_run.number}: executed up to Formatting: Completed."]
    normal_run.refresh_from_db()
    assert (normal_run.state, normal_run.bills_generated) == ("completed", 3)


@EXECUTES
def test_the_execute_form_runs_the_run_now_and_the_page_shows_its_results(admin_client, billed):
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    page = admin_client.get(admin_url("billingrun", "change", run.pk))
    form = page.context["live"]["execute_form"]
    assert [value for value, _ in form.fields["up_to"].widget.choices] == [
        "rating",
        "invoicing",
        "posting",
        "formatting",
    ]
    assert form["up_to"].value() == "formatting"
    assert 'action="' + run_url(run, "execute") + '"' in html(page)

    response = admin_client.post(run_url(run, "execute"), {"up_to": "formatting", "when": "now"}, follow=True)

    assert texts(response) == [f"{run.number}: executed up to Formatting: Completed."]
    run.refresh_from_db()
    assert (run.state, run.execution, run.bills_generated, run.exception_count) == ("completed", "idle", 3, 0)
    body = html(response)
    assert '<span class="run-badge run-badge--completed" data-run-state>Completed</span>' in body
    assert "This run is finished" in body
    assert "hx-trigger" not in body  # idle: nothing to poll
    steps = response.context["live"]["steps"]
    assert [(row["step"].stage, row["status"], row["step"].entities) for row in steps] == [
        ("rating", "Done", 6),
        ("invoicing", "Done", 3),
        ("posting", "Done", 3),
        ("formatting", "Done", 3),  # one invoice rendered per bill
    ]
    assert steps[2]["totals"] == ["$180.00"]
    assert steps[2]["step"].transactions == 3
    assert 'aria-label="Assembling &amp; Posting: 3 of 3 accounts done"' in body
    assert len(response.context["live"]["made"]) == 3
    assert "Generated bills" in body


@EXECUTES
def test_a_run_executed_in_steps_offers_only_the_following_stages(admin_client, billed):
    run = run_to(Stage.INVOICING)

    form = admin_client.get(admin_url("billingrun", "change", run.pk)).context["live"]["execute_form"]

    assert [value for value, _ in form.fields["up_to"].widget.choices] == ["posting", "formatting"]


def _local(value: dt.datetime) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%dT%H:%M")


def test_a_scheduled_execution_then_unschedule(admin_client, normal):
    run = billrun_create()
    at = (timezone.now() + dt.timedelta(hours=3)).replace(second=0, microsecond=0)

    response = admin_client.post(
        run_url(run, "execute"), {"up_to": "posting", "when": "at", "at": _local(at)}, follow=True
    )

    run.refresh_from_db()
    assert (run.execution, run.scheduled_for, run.target_stage, run.state) == (
        "scheduled",
        at,
        "posting",
        "draft",
    )
    assert texts(response) == [
        f"{run.number}: scheduled to execute up to Assembling & Posting at "
        f"{timezone.localtime(at):%Y-%m-%d %H:%M}."
    ]
    body = html(response)
    assert 'hx-trigger="every 2s"' in body  # the page polls while the run waits
    assert run_url(run, "unschedule") in body

    response = admin_client.post(run_url(run, "unschedule"), follow=True)

    assert texts(response) == [f"{run.number}: unscheduled: it will not start by itself."]
    run.refresh_from_db()
    assert (run.execution, run.scheduled_for, run.target_stage) == ("idle", None, "")
    response = _action(admin_client, "unschedule_selected", [run])
    assert texts(response) == [f"{run.number}: Run {run.number} is not scheduled."]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"up_to": "posting", "when": "at", "at": ""},
            "Give the date and time to execute at, or choose Now.",
        ),
        ({"up_to": "printing", "when": "now"}, "Select a valid choice. printing is not one of the available"),
        ({"up_to": "posting", "when": "at", "at": "PAST"}, "The scheduled time is in the past."),
    ],
)
def test_bad_execute_input_changes_nothing(admin_client, normal, data, message):
    run = billrun_create()
    if data.get("at") == "PAST":
        data = {**data, "at": _local(timezone.now() - dt.timedelta(hours=2))}

    response = admin_client.post(run_url(run, "execute"), data, follow=True)

    assert len(texts(response)) == 1 and message in texts(response)[0]
    run.refresh_from_db()
    assert (run.execution, run.scheduled_for, run.target_stage) == ("idle", None, "")


def test_resume_on_an_idle_run_gives_its_message(admin_client, normal):
    run = billrun_create()

    response = admin_client.post(run_url(run, "resume"), follow=True)

    assert texts(response) == [
        f"{run.number}: Run {run.number} is not executing: there is nothing to resume."
    ]
    response = _action(admin_client, "resume_selected", [run])
    assert texts(response) == [
        f"{run.number}: Run {run.number} is not executing: there is nothing to resume."
    ]
    assert not AuditRecord.objects.filter(action="billrun.resume").exists()


def _executing(run: BillingRun, *, done: int, total: int) -> BillingRun:
    """The run as the coordinator leaves it while its first stage's chunks are worked (no worker here)."""
    now = timezone.now()
    BillingRun.objects.filter(pk=run.pk).update(
        execution="running", target_stage="formatting", current_stage="rating", started_at=now
    )
    RunStep.objects.create(
        run=run, stage="rating", accounts_total=total, accounts_done=done, chunks_total=2, chunks_done=1,
        started_at=now,
    )  # fmt: skip
    accounts = [AccountFactory() for _ in range(total)]
    half = total // 2
    ids = [a.pk for a in accounts]
    RunChunk.objects.create(run=run, stage="rating", index=0, status="done", account_ids=ids[:half])
    RunChunk.objects.create(
        run=run, stage="rating", index=1, status="running", attempts=1, account_ids=ids[half:],
        lease_expires_at=now + dt.timedelta(minutes=5),
    )  # fmt: skip
    run.refresh_from_db()
    return run


def test_resume_queues_the_unfinished_work_of_an_executing_run(admin_client, normal):
    run = _executing(billrun_create(), done=2, total=4)
    page = html(admin_client.get(admin_url("billingrun", "change", run.pk)))
    assert run_url(run, "resume") in page and run_url(run, "execute") not in page

    response = admin_client.post(run_url(run, "resume"), follow=True)

    assert texts(response) == [f"{run.number}: resumed: 1 chunk(s) of work queued again."]
    assert AuditRecord.objects.filter(action="billrun.resume", object_id=str(run.pk)).count() == 1


def test_run_actions_need_post_and_the_execute_permission(client, user_factory, normal):
    from django.contrib.auth.models import Permission

    run = billrun_create()
    viewer = user_factory(username="viewer", role="Billing admin")
    group = viewer.groups.get()
    group.permissions.remove(Permission.objects.get(codename="execute_billingrun"))
    client.force_login(viewer)

    assert client.get(run_url(run, "execute")).status_code == 405
    for action in ("execute", "resume", "unschedule"):
        assert client.post(run_url(run, action), {"up_to": "rating", "when": "now"}).status_code == 403
    page = html(client.get(admin_url("billingrun", "change", run.pk)))
    assert "needs the permission “Can execute, schedule and resume billing runs”" in page
    actions = (
        client.get(admin_url("billingrun", "changelist")).context["action_form"].fields["action"].choices
    )
    assert not [name for name, _ in actions if name.startswith(("execute", "resume", "unschedule"))]
    run.refresh_from_db()
    assert run.execution == "idle"


# --- the live progress fragment -----------------------------------------------------------------------------


def test_the_progress_fragment_polls_while_the_run_executes_and_stops_when_idle(admin_client, normal):
    run = _executing(billrun_create(), done=2, total=4)
    url = run_url(run, "progress")

    response = admin_client.get(url)

    assert response.status_code == 200
    body = html(response)
    assert f'hx-get="{url}" hx-trigger="every 2s" hx-target="#run-results" hx-swap="innerHTML"' in body
    assert (
        '<progress max="4" value="2" aria-label="Identification &amp; Rating: 2 of 4 accounts done">' in body
    )
    assert "2 of 4" in body and "1 of 2" in body  # accounts, chunks
    assert '<div id="run-actions" hx-swap-oob="true">' in body
    assert "Executing up to Formatting" in body and "now: Identification &amp; Rating" in body
    assert response["Cache-Control"].startswith("max-age=0")
    digest = re.search(r'"v": "([0-9a-f]+)"', body)[1]
    # Nothing changed since: no content, the page keeps what it has (and keeps polling).
    assert admin_client.get(url, {"v": digest}).status_code == 204

    RunStep.objects.filter(run=run).update(accounts_done=3)
    changed = admin_client.get(url, {"v": digest})
    assert changed.status_code == 200 and "3 of 4" in html(changed)

    BillingRun.objects.filter(pk=run.pk).update(
        execution="idle", current_stage="", target_stage="", state="rating"
    )
    final = html(admin_client.get(url, {"v": digest}))
    assert "hx-trigger" not in final  # no poller in the answer: the polling stops
    badge = '<span class="run-badge run-badge--rating" data-run-state>Identification &amp; Rating</span>'
    assert badge in final


def test_a_draft_page_reloads_once_its_run_has_started(admin_client, normal):
    run = billrun_create()
    at = timezone.now() + dt.timedelta(hours=1)
    admin_client.post(run_url(run, "execute"), {"up_to": "rating", "when": "at", "at": _local(at)})
    page = html(admin_client.get(admin_url("billingrun", "change", run.pk)))
    assert '"editable": "1"' in page  # the page shows the settings form: it says so when it polls
    digest = re.search(r'"v": "([0-9a-f]+)"', page)[1]
    url = run_url(run, "progress")
    assert admin_client.get(url, {"v": digest, "editable": "1"}).status_code == 204

    BillingRun.objects.filter(pk=run.pk).update(execution="running", target_stage="rating")

    response = admin_client.get(url, {"v": digest, "editable": "1"})
    assert (response.status_code, response["HX-Refresh"]) == (200, "true")
    assert admin_client.get(url, {"v": digest}).status_code == 200  # a read-only page just updates


def test_the_change_page_has_the_live_region(admin_client, normal):
    run = _executing(billrun_create(), done=1, total=2)
    body = html(admin_client.get(admin_url("billingrun", "change", run.pk)))
    assert '<div id="run-results" aria-live="polite">' in body
    assert f'hx-get="{run_url(run, "progress")}"' in body
    assert "django_htmx/htmx-2.min.js" in body or "htmx" in body


# --- exceptions -------------------------------------------------------------------------------------------


@pytest.fixture
def with_exceptions(normal):
    run = billrun_create()
    plan = monthly_plan()
    accounts = []
    for i in range(55):
        account, subscription = customer(plan)
        accounts.append(account)
        RunException.objects.create(
            run=run,
            account=account,
            stage="rating" if i % 2 else "posting",
            code="currency_mismatch" if i % 2 else "dead_letter",
            message=f'Problem {i}, with "quotes"',
            subscription=subscription if i % 2 else None,
        )
    BillingRun.objects.filter(pk=run.pk).update(state="completed_with_errors", exception_count=55)
    run.refresh_from_db()
    return run, accounts


def test_the_run_page_lists_the_first_50_exceptions_and_links_to_all(admin_client, with_exceptions):
    run, _ = with_exceptions

    response = admin_client.get(admin_url("billingrun", "change", run.pk))

    body = html(response)
    assert len(response.context["live"]["exceptions"]) == 50
    assert body.count("<td><code>") == 50
    assert "Exceptions (55)" in body
    assert "The first 50 are below." in body
    exceptions_list = f"{admin_url('runexception', 'changelist')}?run={run.pk}"
    assert f'href="{exceptions_list}"' in body
    assert f'href="{run_url(run, "exceptions_csv")}"' in body

    listed = admin_client.get(exceptions_list)
    assert listed.context["cl"].result_count == 55
    rating = admin_client.get(exceptions_list + "&stage__exact=rating&code=currency_mismatch")
    assert rating.context["cl"].result_count == 27


def test_the_exceptions_csv_has_them_all_streamed(admin_client, with_exceptions, monkeypatch):
    run, accounts = with_exceptions
    monkeypatch.setattr(runs_admin, "CSV_BATCH", 7)  # several keyset pages

    response = admin_client.get(run_url(run, "exceptions_csv"))

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        response["Content-Disposition"] == f'attachment; filename="billing-run-{run.number}-exceptions.csv"'
    )
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == [
        "account_number",
        "account_name",
        "step",
        "code",
        "message",
        "subscription_service_identifier",
        "time",
    ]
    assert len(rows) == 56
    first, second = RunException.objects.filter(run=run).order_by("pk")[:2]
    assert rows[1] == [
        accounts[0].number,
        accounts[0].name,
        "Assembling & Posting",
        "dead_letter",
        'Problem 0, with "quotes"',
        "",
        timezone.localtime(first.created_at).isoformat(timespec="seconds"),
    ]
    assert rows[2][:6] == [
        accounts[1].number,
        accounts[1].name,
        "Identification & Rating",
        "currency_mismatch",
        'Problem 1, with "quotes"',
        second.subscription.service_identifier,
    ]
    assert [r[4] for r in rows[1:]] == [f'Problem {i}, with "quotes"' for i in range(55)]


def test_exception_search_by_account_number(admin_client, with_exceptions):
    run, accounts = with_exceptions
    response = admin_client.get(admin_url("runexception", "changelist"), {"q": accounts[3].number})
    assert [e.account_id for e in response.context["cl"].result_list] == [accounts[3].pk]


# --- chunks, wallet estimates, read-only ------------------------------------------------------------------


def test_dead_chunks_are_easy_to_find(admin_client, normal):
    run = _executing(billrun_create(), done=2, total=4)
    RunChunk.objects.filter(run=run, index=1).update(
        status="dead", attempts=5, last_error="OperationalError: x"
    )
    RunStep.objects.filter(run=run).update(chunks_done=2, accounts_done=4)

    page = admin_client.get(admin_url("billingrun", "change", run.pk))
    dead_url = (
        f"{admin_url('runchunk', 'changelist')}?run={run.pk}&amp;stage__exact=rating&amp;status__exact=dead"
    )
    assert f'<a href="{dead_url}" class="run-dead">1 dead</a>' in html(page)

    listed = admin_client.get(admin_url("runchunk", "changelist"), {"status__exact": "dead"})
    assert [(c.run_id, c.index) for c in listed.context["cl"].result_list] == [(run.pk, 1)]
    assert "OperationalError: x" in html(listed)
    chunk = RunChunk.objects.get(run=run, index=1)
    detail = admin_client.get(admin_url("runchunk", "change", chunk.pk))
    assert detail.status_code == 200 and detail.context["adminform"].form.fields == {}
    assert admin_client.post(admin_url("runchunk", "delete", chunk.pk), {"post": "yes"}).status_code == 403


def test_wallet_estimates_and_exceptions_are_read_only(admin_client, with_exceptions):
    run, accounts = with_exceptions
    estimate = WalletEstimate.objects.create(
        account=accounts[0],
        currency="USD",
        balance=D("12.00"),
        daily_consumption=D("1.50"),
        runs_out_on=dt.date(2026, 7, 9),
        estimated_at=timezone.now(),
        run=run,
    )

    listed = admin_client.get(admin_url("walletestimate", "changelist"))
    assert listed.status_code == 200 and "$12.00" in html(listed) and "$1.50" in html(listed)
    assert (
        admin_client.get(admin_url("walletestimate", "change", estimate.pk)).context["adminform"].form.fields
        == {}
    )
    assert admin_client.get(admin_url("walletestimate", "add")).status_code == 403
    exc = RunException.objects.first()
    assert admin_client.post(admin_url("runexception", "change", exc.pk), {}).status_code == 403
    assert admin_client.get(admin_url("runexception", "add")).status_code == 403


# --- prepaid runs -------------------------------------------------------------------------------------------


@EXECUTES
def test_a_prepaid_run_shows_its_wallet_transactions(admin_client, eager, monkeypatch):
    monkeypatch.setattr("django.utils.timezone.localdate", lambda *args, **kwargs: dt.date(2026, 7, 15))
    definition(RunType.PREPAID, name="Prepaid daily", due_proximity_min_days=0, due_proximity_max_days=0)
    plan = b.plan(name="Prepaid 30")
    plan.billing_term_scheme = BillingTermScheme.objects.get(code="prepaid")
    plan.save()
    b.recurring(plan, "30.00")
    account = AccountFactory(name="Wallet Owner")
    b.subscription(account, plan, dt.date(2026, 7, 1))
    run = billrun_create(run_type=RunType.PREPAID)
    page = admin_client.get(admin_url("billingrun", "change", run.pk))
    choices = page.context["live"]["execute_form"].fields["up_to"].widget.choices
    assert [value for value, _ in choices] == ["rating", "posting"]

    response = admin_client.post(run_url(run, "execute"), {"up_to": "posting", "when": "now"}, follow=True)

    run.refresh_from_db()
    assert run.state == "completed", texts(response)
    body = html(response)
    assert "Wallet transactions" in body
    made = response.context["live"]["made"]
    assert [(m["account"], m["amount"]) for m in made] == [(account, "-$30.00")]
    assert run.wallet_transactions == 1
    assert [row["noun"] for row in response.context["live"]["steps"]] == ["segments rated", "wallets debited"]


# --- the list: columns, filters, search and its queries ---------------------------------------------------


@EXECUTES
def test_the_list_shows_each_runs_results(admin_client, billed):
    done = run_to(Stage.FORMATTING)
    draft = billrun_create()

    response = admin_client.get(admin_url("billingrun", "changelist"))

    rows = {r.pk: r for r in response.context["cl"].result_list}
    assert set(rows) == {done.pk, draft.pk}
    body = html(response)
    assert f">{done.number}</a>" in body
    assert '<td class="field-made">3</td>' in body
    assert '<td class="field-execution_display">Idle</td>' in body
    completed = admin_client.get(admin_url("billingrun", "changelist"), {"state__exact": "completed"})
    assert completed.context["cl"].result_count == 1
    found = admin_client.get(admin_url("billingrun", "changelist"), {"q": draft.number}).context["cl"]
    assert [r.pk for r in found.result_list] == [draft.pk]


def test_the_run_list_runs_in_a_constant_number_of_queries(admin_client, normal):
    url = admin_url("billingrun", "changelist")
    for _ in range(2):
        billrun_create()
    admin_client.get(url)  # warm caches (content types, session)

    with CaptureQueriesContext(connection) as two:
        assert admin_client.get(url).status_code == 200
    for _ in range(8):
        billrun_create()
    with CaptureQueriesContext(connection) as ten:
        response = admin_client.get(url)

    assert response.context["cl"].result_count == 10
    assert len(ten) == len(two), [q["sql"] for q in ten.captured_queries]


def test_the_exception_and_chunk_lists_run_in_a_bounded_number_of_queries(
    admin_client, with_exceptions, django_assert_max_num_queries
):
    with django_assert_max_num_queries(12):
        assert admin_client.get(admin_url("runexception", "changelist")).status_code == 200
    with django_assert_max_num_queries(12):
        assert admin_client.get(admin_url("runchunk", "changelist")).status_code == 200


# --- account groups ---------------------------------------------------------------------------------------


def test_account_groups_with_members_and_audit(admin_client, django_assert_max_num_queries):
    one, two = AccountFactory(), AccountFactory()

    response = admin_client.post(
        admin_url("accountgroup", "add"),
        {"code": "north", "name": "North", "description": "", "accounts": [str(one.pk), str(two.pk)]},
    )

    assert response.status_code == 302, form_errors(response)
    group = AccountGroup.objects.get()
    assert set(group.accounts.all()) == {one, two}
    created = AuditRecord.objects.get(action="account_group.create")
    assert created.after["accounts"] == sorted([one.pk, two.pk])
    add_page = admin_client.get(admin_url("accountgroup", "change", group.pk))
    assert "admin-autocomplete" in html(add_page)

    AccountGroup.objects.create(code="south", name="South")
    with django_assert_max_num_queries(10):
        listed = admin_client.get(admin_url("accountgroup", "changelist"))
    assert '<td class="field-member_count">2</td>' in html(listed)
    assert '<td class="field-member_count">0</td>' in html(listed)


def test_the_run_form_uses_autocomplete_for_its_filters(admin_client, normal):
    form = admin_client.get(admin_url("billingrun", "add")).context["adminform"].form
    for field in ("accounts", "subscriptions", "groups"):
        assert "admin-autocomplete" in form[field].as_widget(), field
    autocomplete = admin_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "billruns", "model_name": "billingrun", "field_name": "groups", "term": "nor"},
    )
    assert autocomplete.status_code == 200


# --- who may see this -------------------------------------------------------------------------------------


def _pages(run: BillingRun, exc: RunException) -> list[str]:
    return [
        admin_url("rundefinition", "changelist"),
        admin_url("rundefinition", "change", run.definition_id),
        admin_url("billingrun", "changelist"),
        admin_url("billingrun", "add"),
        admin_url("billingrun", "change", run.pk),
        run_url(run, "progress"),
        run_url(run, "exceptions_csv"),
        admin_url("runexception", "changelist"),
        admin_url("runexception", "change", exc.pk),
        admin_url("runchunk", "changelist"),
        admin_url("walletestimate", "changelist"),
        admin_url("accountgroup", "changelist"),
    ]


def test_billing_admins_open_every_page(admin_client, with_exceptions):
    run, _ = with_exceptions
    for url in _pages(run, RunException.objects.first()):
        assert admin_client.get(url).status_code == 200, url


def test_csrs_get_no_access(client, csr_user, with_exceptions):
    run, accounts = with_exceptions
    WalletEstimate.objects.create(
        account=accounts[0], currency="USD", balance=D(1), daily_consumption=D(1), estimated_at=timezone.now()
    )
    pages = _pages(run, RunException.objects.first())
    client.force_login(csr_user)
    for url in pages:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("admin:login")), url
    for action in ("execute", "resume", "unschedule"):
        assert client.post(run_url(run, action), {"up_to": "rating", "when": "now"}).status_code == 302

    # Even with staff status (and the CSR's view permission on wallet estimates): nothing here.
    csr_user.is_staff = True
    csr_user.save()
    for url in pages:
        assert client.get(url).status_code == 403, url
    for action in ("execute", "resume", "unschedule"):
        assert client.post(run_url(run, action), {"up_to": "rating", "when": "now"}).status_code == 403
    index = html(client.get(reverse("admin:index")))
    assert "Billing runs" not in index and "Wallet estimates" not in index
    run.refresh_from_db()
    assert run.execution == "idle"
