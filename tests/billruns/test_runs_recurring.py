"""Run definitions' recurrence: a django-celery-beat task per recurring definition, and the run it makes at
each tick (once per bill-as-of date)."""

from __future__ import annotations

import json

import pytest
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from billing_mgmt.errors import ApplicationError
from billruns.models import BillingRun, RunDefinition, RunType, Stage
from billruns.services import billrun_create_recurring, run_definition_save
from billruns.services.run_definitions import periodic_task_name
from billruns.tasks import create_recurring_run, resume_stalled_runs, start_scheduled_runs
from statements.models import Statement
from tests.billruns.runs_helpers import customer, definition, monthly_plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def monthly():
    return CrontabSchedule.objects.create(minute="30", hour="1", day_of_month="1")


def test_a_recurring_definition_gets_its_beat_task(monthly):
    d = definition(recurring=True, schedule=monthly, recurring_up_to=Stage.POSTING)
    task = PeriodicTask.objects.get(name=periodic_task_name(d))
    assert (task.task, task.crontab, task.enabled) == ("billruns.create_recurring_run", monthly, True)
    assert json.loads(task.kwargs) == {"definition_id": d.pk}
    d.refresh_from_db()
    assert d.periodic_task == task
    d.active = False
    run_definition_save(definition=d)
    task.refresh_from_db()
    assert task.enabled is False
    d.active, d.recurring = True, False
    run_definition_save(definition=d)
    task.refresh_from_db()
    assert task.enabled is False
    assert PeriodicTask.objects.filter(task="billruns.create_recurring_run").count() == 1


def test_a_one_time_definition_has_no_beat_task():
    definition()
    assert not PeriodicTask.objects.filter(task="billruns.create_recurring_run").exists()


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"recurring": True}, "schedule"),
        ({"due_proximity_min_days": 5, "due_proximity_max_days": 1}, "due_proximity_max_days"),
        ({"due_proximity_default_days": 20}, "due_proximity_default_days"),
    ],
)
def test_invalid_definitions_are_refused(values, field):
    with pytest.raises(ApplicationError) as exc:
        definition(**values)
    assert field in exc.value.fields
    assert RunDefinition.objects.count() == 0


def test_default_schemes_must_be_of_the_definitions_kind():
    from billruns.models import BillingTermScheme

    with pytest.raises(ApplicationError) as exc:
        run_definition_save(
            definition=RunDefinition(name="Monthly", run_type=RunType.NORMAL),
            related={"billing_term_schemes": [BillingTermScheme.objects.get(code="prepaid")]},
        )
    assert "only schemes of that kind" in exc.value.fields["billing_term_schemes"][0]
    assert RunDefinition.objects.count() == 0


def test_a_second_active_definition_of_a_type_is_refused():
    definition()
    with pytest.raises(ApplicationError) as exc:
        definition(name="Another")
    assert "deactivate it first" in exc.value.fields["active"][0]
    definition(RunType.PREPAID, name="Prepaid")  # another type: fine
    assert RunDefinition.objects.filter(active=True).count() == 2


@pytest.mark.django_db(transaction=True)
def test_each_tick_creates_and_executes_the_next_run_once(monthly, eager):
    d = definition(recurring=True, schedule=monthly, recurring_up_to=Stage.POSTING, bill_as_of_day=None)
    customer(monthly_plan())
    number = create_recurring_run(d.pk)
    run = BillingRun.objects.get(number=number)
    assert run.scheduling == BillingRun.Scheduling.RECURRING
    assert (run.state, run.execution) == (BillingRun.State.POSTING, BillingRun.Execution.IDLE)
    assert Statement.objects.count() == 1
    # a redelivered tick, or a second beat: the same run, nothing new
    assert billrun_create_recurring(definition_id=d.pk) == run
    assert BillingRun.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_inactive_definitions_tick_does_nothing(monthly, eager):
    d = definition(recurring=True, schedule=monthly)
    d.active = False
    run_definition_save(definition=d)
    assert create_recurring_run(d.pk) is None
    assert BillingRun.objects.count() == 0


def test_the_beat_tasks_are_scheduled_and_answer_with_what_they_did():
    from billing_mgmt.celery import app

    tasks = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert {"billruns.start_scheduled_runs", "billruns.resume_stalled_runs"} <= tasks
    assert start_scheduled_runs() == {"started": []}
    assert resume_stalled_runs() == {}
