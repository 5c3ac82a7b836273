"""A billing run's life cycle and the source's validations and restrictions: each forbidden action gives its
message and changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from billing_mgmt.errors import ApplicationError
from billing_mgmt.models import AuditRecord
from billruns.models import BillingRun, RunDefinition, RunType, Stage
from billruns.services import (
    RunStateError,
    billrun_create,
    billrun_delete,
    billrun_execute,
    billrun_unschedule,
    billrun_update,
    run_defaults,
)
from billruns.services.run_definitions import validate_definition
from billruns.services.run_selection import default_bill_as_of
from billruns.services.runs import billruns_start_scheduled
from statements.models import Statement
from tests.billruns import builders as b
from tests.billruns.runs_helpers import JULY_1, customer, definition, monthly_plan, run_to

pytestmark = pytest.mark.django_db
# Tests that execute a run commit for real: work is queued after commit (Celery eager runs it then).
EXECUTES = pytest.mark.django_db(transaction=True)


def _state(run: BillingRun) -> tuple:
    run.refresh_from_db()
    return (run.state, run.execution, run.target_stage, run.scheduled_for, run.bill_as_of_date)


def test_create_needs_an_active_definition():
    with pytest.raises(ApplicationError) as exc:
        billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    assert exc.value.code == "no_active_definition"
    assert "no active normal run definition" in exc.value.message
    definition(active=False)
    with pytest.raises(ApplicationError):
        billrun_create()
    assert BillingRun.objects.count() == 0


def test_a_new_run_takes_the_definitions_defaults():
    d = definition(
        bill_as_of_day=5,
        transaction_date_offset_days=2,
        due_proximity_default_sign="-",
        due_proximity_default_days=3,
        ar_classifications=["vip"],
    )
    d.billing_frequencies.set([b.frequency("monthly")])
    defaults = run_defaults(today=dt.date(2026, 7, 3))
    assert defaults["bill_as_of_date"] == dt.date(2026, 6, 5)  # the latest 5th on or before the 3rd of July
    assert defaults["transaction_date"] == dt.date(2026, 6, 7)
    run = billrun_create()
    assert run.number.startswith("BR-")
    assert run.state == BillingRun.State.DRAFT and run.execution == BillingRun.Execution.IDLE
    assert run.definition == d and run.run_type == RunType.NORMAL
    assert (run.due_date_proximity_sign, run.due_date_proximity_days) == ("-", 3)
    assert run.ar_classifications == ["vip"]
    assert list(run.billing_frequencies.all()) == [b.frequency("monthly")]
    assert AuditRecord.objects.filter(action="billrun.create", object_id=str(run.pk)).count() == 1


@pytest.mark.parametrize(
    ("day", "today", "expected"),
    [
        (None, dt.date(2026, 7, 3), dt.date(2026, 7, 3)),
        (1, dt.date(2026, 7, 1), dt.date(2026, 7, 1)),
        (1, dt.date(2026, 7, 31), dt.date(2026, 7, 1)),
        (15, dt.date(2026, 7, 14), dt.date(2026, 6, 15)),
        (31, dt.date(2026, 6, 30), dt.date(2026, 6, 30)),  # June has 30 days
        (31, dt.date(2026, 7, 30), dt.date(2026, 6, 30)),
        (5, dt.date(2026, 1, 3), dt.date(2025, 12, 5)),
    ],
)
def test_default_bill_as_of_date(day, today, expected):
    assert default_bill_as_of(day=day, today=today) == expected


def test_prepaid_runs_bill_as_of_the_day_they_run():
    definition(RunType.PREPAID, bill_as_of_day=1)
    defaults = run_defaults(run_type=RunType.PREPAID, today=dt.date(2026, 7, 17))
    assert defaults["bill_as_of_date"] == dt.date(2026, 7, 17)


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        (
            {"due_date_proximity_days": 11},
            "due_date_proximity_days",
            "outside the definition's range (-5 to +10",
        ),
        (
            {"due_date_proximity_sign": "-", "due_date_proximity_days": 6},
            "due_date_proximity_days",
            "-6 days is outside",
        ),
        (
            {"bill_as_of_date": JULY_1, "transaction_date": dt.date(2026, 6, 30)},
            "transaction_date",
            "cannot be before the bill-as-of date",
        ),
        ({"ar_classifications": ["gold"]}, "ar_classifications", "Unknown AR classifications: gold"),
        ({"mode": BillingRun.Mode.INDIVIDUAL}, "accounts", "exactly one account"),
    ],
)
def test_invalid_runs_are_refused_and_nothing_is_stored(values, field, message):
    definition()
    with pytest.raises(ApplicationError) as exc:
        billrun_create(**values)
    assert message in exc.value.fields[field][0]
    assert BillingRun.objects.count() == 0


def test_a_normal_run_takes_only_normal_billing_term_schemes():
    definition()
    with pytest.raises(ApplicationError) as exc:
        billrun_create(billing_term_schemes=[b.scheme("prepaid")])
    assert "only schemes of its kind" in exc.value.fields["billing_term_schemes"][0]


@EXECUTES
def test_edit_and_delete_only_while_draft(eager):
    definition()
    plan = monthly_plan()
    customer(plan)
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    run = billrun_update(run=run, due_date_proximity_days=4)
    assert run.due_date_proximity_days == 4
    run_to(Stage.RATING, run=run)
    before = _state(run)
    with pytest.raises(RunStateError) as exc:
        billrun_update(run=run, due_date_proximity_days=5)
    assert exc.value.code == "run_not_draft"
    assert "Only a Draft run can be edited" in exc.value.message
    with pytest.raises(RunStateError) as exc:
        billrun_delete(run=run)
    assert "Only a Draft run can be deleted" in exc.value.message
    assert _state(run) == before
    assert BillingRun.objects.filter(pk=run.pk).exists()


def test_a_draft_run_is_deleted_with_an_audit_record():
    definition()
    run = billrun_create()
    billrun_delete(run=run)
    assert not BillingRun.objects.filter(pk=run.pk).exists()
    assert AuditRecord.objects.filter(action="billrun.delete", object_id=str(run.pk)).exists()


@EXECUTES
def test_execute_up_to_a_stage_then_continue(eager):
    definition()
    customer(monthly_plan())
    run = run_to(Stage.RATING)
    assert (run.state, run.execution) == (BillingRun.State.RATING, BillingRun.Execution.IDLE)
    assert run.segments.count() == 2  # June and July
    assert Statement.objects.count() == 0
    run = run_to(Stage.INVOICING, run=run)
    assert run.state == BillingRun.State.INVOICING
    assert Statement.objects.count() == 0
    run = run_to(Stage.POSTING, run=run)
    assert run.state == BillingRun.State.POSTING and run.bills_generated == 1
    run = run_to(Stage.FORMATTING, run=run)
    assert run.state == BillingRun.State.COMPLETED
    assert run.finished_at is not None
    assert Statement.objects.count() == 1


@EXECUTES
@pytest.mark.parametrize("stage", [Stage.RATING, Stage.INVOICING])
def test_a_stage_already_done_cannot_be_executed_again(eager, stage):
    definition()
    customer(monthly_plan())
    run = run_to(Stage.INVOICING)
    before = _state(run)
    with pytest.raises(RunStateError) as exc:
        billrun_execute(run=run, up_to=stage)
    assert exc.value.code == "stage_already_done"
    assert "choose a following stage" in exc.value.message
    assert _state(run) == before


@EXECUTES
def test_a_completed_run_cannot_be_executed(eager):
    definition()
    customer(monthly_plan())
    run = run_to(Stage.FORMATTING)
    with pytest.raises(RunStateError) as exc:
        billrun_execute(run=run, up_to=Stage.FORMATTING)
    assert exc.value.code == "run_finished"


def test_an_unknown_stage_is_refused():
    definition()
    run = billrun_create()
    with pytest.raises(ApplicationError) as exc:
        billrun_execute(run=run, up_to="printing")
    assert "up_to" in exc.value.fields
    prepaid = definition(RunType.PREPAID, name="Prepaid daily")
    assert prepaid.active
    run = billrun_create(run_type=RunType.PREPAID)
    with pytest.raises(ApplicationError) as exc:
        billrun_execute(run=run, up_to=Stage.INVOICING)  # prepaid runs have no invoicing
    assert run.execution == BillingRun.Execution.IDLE


@EXECUTES
def test_scheduled_execution_starts_when_its_time_comes(eager):
    definition()
    customer(monthly_plan())
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    at = timezone.now() + dt.timedelta(hours=2)
    billrun_execute(run=run, up_to=Stage.POSTING, at=at)
    run.refresh_from_db()
    assert (run.execution, run.scheduled_for, run.target_stage) == ("scheduled", at, "posting")
    billrun_update(run=run, due_date_proximity_days=2)  # still Draft: it may be edited until it starts
    assert billruns_start_scheduled(now=at - dt.timedelta(minutes=1)) == []
    assert billruns_start_scheduled(now=at) == [run.number]
    run.refresh_from_db()
    assert (run.state, run.execution) == (BillingRun.State.POSTING, BillingRun.Execution.IDLE)
    assert run.bills_generated == 1


def test_unschedule_and_past_times():
    definition()
    run = billrun_create()
    with pytest.raises(ApplicationError) as exc:
        billrun_execute(run=run, up_to=Stage.RATING, at=timezone.now() - dt.timedelta(hours=1))
    assert "in the past" in exc.value.message
    with pytest.raises(RunStateError):
        billrun_unschedule(run=run)
    billrun_execute(run=run, up_to=Stage.RATING, at=timezone.now() + dt.timedelta(days=1))
    billrun_unschedule(run=run)
    run.refresh_from_db()
    assert (run.execution, run.scheduled_for, run.target_stage) == ("idle", None, "")


def test_one_active_definition_per_type():
    definition()
    second = RunDefinition(name="Another", run_type=RunType.NORMAL, active=True)
    assert "deactivate it first" in validate_definition(second)["active"][0]
    second.active = False
    assert validate_definition(second) == {}
    prepaid = RunDefinition(name="Prepaid", run_type=RunType.PREPAID, active=True)
    assert validate_definition(prepaid) == {}
