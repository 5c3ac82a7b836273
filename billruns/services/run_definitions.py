"""Run definitions: saving one (with its recurrence as a django-celery-beat task) and the runs its
recurrence creates.

A recurring definition has one PeriodicTask, ``billing-runs:<definition id>``, on the definition's crontab,
that calls ``billruns.create_recurring_run``. Saving the definition keeps the task in line (enabled only
while the definition is active and recurring). At each tick the task creates the next run from the
definition, as of the definition's bill-as-of day, and executes it up to the definition's stage; a second
tick for the same bill-as-of date (a redelivered task, two beats) finds that run and creates nothing.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import IntegrityError, transaction
from django_celery_beat.models import PeriodicTask

from billing_mgmt.audit import audit_record, snapshot
from billing_mgmt.errors import ApplicationError

from ..models import BillingRun, RunDefinition, RunType, stages_of
from .runs import billrun_create, billrun_execute, run_defaults

RECURRING_TASK = "billruns.create_recurring_run"
DEFINITION_FIELDS = [
    "name", "run_type", "active", "description", "bill_as_of_day", "transaction_date_rule",
    "transaction_date_offset_days",
    "due_proximity_min_days", "due_proximity_max_days", "due_proximity_default_sign",
    "due_proximity_default_days", "recurring", "schedule", "recurring_up_to", "run_formatting",
    "estimate_wallet_consumption", "chunk_size", "formatting_chunk_size", "ar_classifications",
    "payment_preferences", "presentment_preferences",
]  # fmt: skip


DEFINITION_M2M = ("billing_term_schemes", "billing_frequencies")


def _state(definition: RunDefinition) -> dict[str, Any]:
    """What the audit record keeps of a definition: its fields and its default criteria (ids)."""
    related = {n: sorted(getattr(definition, n).values_list("pk", flat=True)) for n in DEFINITION_M2M}
    return snapshot(definition, DEFINITION_FIELDS) | related


def periodic_task_name(definition: RunDefinition) -> str:
    return f"billing-runs:{definition.pk}"


def validate_definition(definition: RunDefinition) -> dict[str, list[str]]:
    """The rules a definition must meet that are not a single field's (admin forms show them)."""
    errors: dict[str, list[str]] = {}
    low, high = definition.due_proximity_min_days, definition.due_proximity_max_days
    if low is not None and high is not None:
        if low > high:
            errors["due_proximity_max_days"] = ["The latest proximity must not be before the earliest."]
        elif not low <= definition.due_proximity_default <= high:
            errors["due_proximity_default_days"] = [
                f"The default {definition.due_proximity_default:+d} days is outside the range "
                f"({low:+d} to {high:+d})."
            ]
    if definition.recurring and definition.schedule_id is None:
        errors["schedule"] = ["A recurring definition needs a schedule."]
    if definition.active:
        clash = RunDefinition.objects.filter(run_type=definition.run_type, active=True).exclude(
            pk=definition.pk
        )
        if clash.exists():
            errors["active"] = [
                f"'{clash.first().name}' is the active {definition.run_type} definition: deactivate it first."
            ]
    return errors


def _sync_task(definition: RunDefinition) -> None:
    task = definition.periodic_task
    wanted = definition.active and definition.recurring and definition.schedule_id is not None
    if task is None and not wanted:
        return
    if task is None:
        task = PeriodicTask.objects.filter(name=periodic_task_name(definition)).first() or PeriodicTask(
            name=periodic_task_name(definition)
        )
    task.name = periodic_task_name(definition)
    task.task = RECURRING_TASK
    task.kwargs = json.dumps({"definition_id": definition.pk})
    task.args = "[]"
    task.interval = task.solar = task.clocked = None
    task.crontab = definition.schedule
    task.one_off = False
    task.enabled = wanted
    task.description = f"Creates and executes the next billing run of '{definition.name}'."
    if task.crontab is None:
        task.enabled = False
        if task.pk is None:
            return
        # A PeriodicTask needs a schedule: keep the old one on the disabled task.
        task.crontab = PeriodicTask.objects.get(pk=task.pk).crontab
    task.save()
    if definition.periodic_task_id != task.pk:
        definition.periodic_task = task
        RunDefinition.objects.filter(pk=definition.pk).update(periodic_task=task)


@transaction.atomic
def run_definition_save(
    *, definition: RunDefinition, actor: Any = None, related: dict[str, list] | None = None
) -> RunDefinition:
    """Save a definition (new or changed), its default criteria, and its recurrence's beat task."""
    if definition.run_type == RunType.PREPAID and definition.recurring_up_to not in stages_of(
        RunType.PREPAID
    ):
        definition.recurring_up_to = stages_of(RunType.PREPAID)[-1]  # prepaid runs execute every step
    errors = validate_definition(definition)
    wrong = [s.name for s in (related or {}).get("billing_term_schemes", []) if s.kind != definition.run_type]
    if wrong:
        errors["billing_term_schemes"] = [
            f"A {definition.run_type} definition's runs bill only schemes of that kind, "
            f"not {', '.join(wrong)}."
        ]
    if errors:
        raise ApplicationError("The run definition is not valid.", fields=errors)
    before = None
    if definition.pk:
        before = _state(RunDefinition.objects.select_for_update().get(pk=definition.pk))
    try:
        with transaction.atomic():
            definition.save()
    except IntegrityError as exc:
        raise ApplicationError(
            "Another definition of this type is active.", fields={"active": ["Deactivate the other first."]}
        ) from exc
    for name, values in (related or {}).items():
        getattr(definition, name).set(values)
    _sync_task(definition)
    audit_record(
        actor=actor,
        action="run_definition.create" if before is None else "run_definition.update",
        obj=definition,
        before=before,
        after=_state(definition),
    )
    return definition


def billrun_create_recurring(*, definition_id: int) -> BillingRun | None:
    """The definition's beat task: create the next recurring run and execute it (idempotent per date)."""
    definition = RunDefinition.objects.filter(pk=definition_id, active=True, recurring=True).first()
    if definition is None:
        return None
    defaults = run_defaults(run_type=definition.run_type)
    key = f"{definition.pk}:{defaults['bill_as_of_date'].isoformat()}"
    existing = BillingRun.objects.filter(schedule_key=key).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            run = billrun_create(
                run_type=definition.run_type,
                actor=f"beat: {periodic_task_name(definition)}",
                scheduling=BillingRun.Scheduling.RECURRING,
                schedule_key=key,
            )
            stages = run.stages
            up_to = definition.recurring_up_to if definition.recurring_up_to in stages else stages[-1]
            billrun_execute(run=run, up_to=up_to, actor=f"beat: {periodic_task_name(definition)}")
    except IntegrityError:
        return BillingRun.objects.filter(schedule_key=key).first()  # a concurrent tick made it
    return run
