"""Billing runs: definitions, and a run's life cycle (source 001) — create, edit, delete, execute up to a
stage (now or at a scheduled time), continue, resume — and the coordinator that moves a run through its
stages while Celery workers do the work in chunks (billruns.services.run_work).

The source's validations and restrictions:

* create: an active run definition of the type exists (its values are the defaults; the due-date proximity
  must fall within its range);
* edit and delete: only while the run is Draft (and not executing);
* execute: up to one of the run's stages, after the one it has reached; a completed or failed run is done.

Every change is one transaction that locks the run row, re-checks its state and writes an audit record.
Work is queued after commit, so a worker never sees a run the transaction has not committed.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from accounts.models import BillingProfile
from billing_mgmt.audit import audit_record, snapshot
from billing_mgmt.errors import ApplicationError
from billing_mgmt.numbering import SeriesSpec, next_number
from statements.models import FinancialTransaction

from ..models import (
    BillingRun,
    BillSegment,
    RunAccount,
    RunChunk,
    RunDefinition,
    RunException,
    RunStep,
    RunType,
    Stage,
)
from ..models.runs import PROFILE_CRITERIA
from .run_selection import chunked, default_bill_as_of, run_bill_units

logger = logging.getLogger(__name__)

RUN_SERIES = "billing_run"
RUN_SERIES_SPEC = SeriesSpec(name="Billing runs", prefix="BR-", padding=6)

RUN_FIELDS = [
    "number", "run_type", "mode", "state", "execution", "target_stage", "current_stage", "scheduled_for",
    "bill_as_of_date", "transaction_date", "due_date_proximity_sign", "due_date_proximity_days",
    "ar_classifications", "payment_preferences", "presentment_preferences",
]  # fmt: skip
EDITABLE_FIELDS = (
    "mode", "bill_as_of_date", "transaction_date", "due_date_proximity_sign", "due_date_proximity_days",
    "ar_classifications", "payment_preferences", "presentment_preferences",
)  # fmt: skip
M2M_FIELDS = ("billing_term_schemes", "billing_frequencies", "accounts", "subscriptions", "groups")
# What the coordinator moves (billrun_advance), audited when it moves, by this system actor.
ADVANCE_FIELDS = [
    "state", "execution", "current_stage", "target_stage", "accounts_selected", "bills_generated",
    "wallet_transactions", "exception_count", "finished_at",
]  # fmt: skip
ADVANCE_ACTOR = "billing run coordinator"


class RunStateError(ApplicationError):
    """An action the run's life-cycle state does not allow (HTTP 409 in the API)."""

    status_code = 409
    code = "run_state"


def _definition(run_type: str) -> RunDefinition:
    definition = RunDefinition.objects.filter(run_type=run_type, active=True).first()
    if definition is None:
        label = RunType(run_type).label.split(" (")[0].lower()
        raise ApplicationError(
            f"There is no active {label} run definition: create or activate one in Django admin first.",
            code="no_active_definition",
            fields={"run_type": ["No active run definition of this type."]},
        )
    return definition


def run_defaults(
    *, run_type: str = RunType.NORMAL, today: dt.date | None = None, bill_as_of: dt.date | None = None
) -> dict[str, Any]:
    """What a new run of this type starts with, from the active definition (raises if there is none).
    ``bill_as_of``: a chosen bill-as-of date, from which the transaction date rule then follows."""
    definition = _definition(run_type)
    today = today or timezone.localdate()
    if bill_as_of is None and run_type == RunType.PREPAID:
        bill_as_of = today  # prepaid runs bill as of the day they run (source 001, R10)
    elif bill_as_of is None:
        bill_as_of = default_bill_as_of(day=definition.bill_as_of_day, today=today)
    base = (
        bill_as_of
        if definition.transaction_date_rule == RunDefinition.TransactionDateRule.BILL_AS_OF
        else today
    )
    transaction_date = max(bill_as_of, base + dt.timedelta(days=definition.transaction_date_offset_days))
    return {
        "definition": definition,
        "run_type": run_type,
        "bill_as_of_date": bill_as_of,
        "transaction_date": transaction_date,
        "due_date_proximity_sign": definition.due_proximity_default_sign,
        "due_date_proximity_days": definition.due_proximity_default_days,
        "ar_classifications": list(definition.ar_classifications),
        "payment_preferences": list(definition.payment_preferences),
        "presentment_preferences": list(definition.presentment_preferences),
        "billing_term_schemes": list(definition.billing_term_schemes.all()),
        "billing_frequencies": list(definition.billing_frequencies.all()),
    }


def _validate(run: BillingRun, definition: RunDefinition, related: dict[str, list]) -> None:
    errors: dict[str, list[str]] = {}
    if run.transaction_date < run.bill_as_of_date:
        errors["transaction_date"] = ["The transaction date cannot be before the bill-as-of date."]
    proximity = run.due_date_proximity
    low, high = definition.due_proximity_min_days, definition.due_proximity_max_days
    if not low <= proximity <= high:
        errors["due_date_proximity_days"] = [
            f"The due-date proximity {proximity:+d} days is outside the definition's range "
            f"({low:+d} to {high:+d} days)."
        ]
    schemes = related.get("billing_term_schemes") or []
    wrong = [s.name for s in schemes if s.kind != run.run_type]
    if wrong:
        errors["billing_term_schemes"] = [
            f"A {run.get_run_type_display().split(' (')[0].lower()} run bills only schemes of its kind, "
            f"not {', '.join(wrong)}."
        ]
    if run.mode == BillingRun.Mode.INDIVIDUAL and len(related.get("accounts") or []) != 1:
        errors["accounts"] = ["An INDIVIDUAL run bills exactly one account: name it in the accounts filter."]
    for name, (column, label) in PROFILE_CRITERIA.items():
        allowed = {value for value, _ in BillingProfile._meta.get_field(column).choices}
        unknown = [v for v in getattr(run, name) or [] if v not in allowed]
        if unknown:
            errors[name] = [f"Unknown {label}: {', '.join(map(str, unknown))}."]
    if errors:
        raise ApplicationError("The billing run is not valid.", fields=errors)


def _set_related(run: BillingRun, related: dict[str, list]) -> None:
    for name in M2M_FIELDS:
        if name in related:
            getattr(run, name).set(related[name])


def _related_snapshot(run: BillingRun) -> dict[str, list[int]]:
    return {name: sorted(getattr(run, name).values_list("pk", flat=True)) for name in M2M_FIELDS}


@transaction.atomic
def billrun_create(*, run_type: str = RunType.NORMAL, actor: Any = None, **values: Any) -> BillingRun:
    """Create a Draft run from the active definition of its type; ``values`` override its defaults
    (fields of BillingRun and the criteria and filter lists)."""
    defaults = run_defaults(run_type=run_type, bill_as_of=values.get("bill_as_of_date"))
    definition = defaults.pop("definition")
    unknown = set(values) - set(EDITABLE_FIELDS) - set(M2M_FIELDS) - {"scheduling", "schedule_key"}
    if unknown:
        raise ApplicationError(f"Unknown billing run fields: {', '.join(sorted(unknown))}.")
    merged = {**defaults, **{k: v for k, v in values.items() if v is not None}}
    related = {name: list(merged.pop(name, []) or []) for name in M2M_FIELDS}
    run = BillingRun(definition=definition, **merged)
    _validate(run, definition, related)
    run.number = next_number(RUN_SERIES, RUN_SERIES_SPEC)
    run.created_by = (
        actor
        if getattr(actor, "is_authenticated", False) and not getattr(actor, "is_api_client", False)
        else None
    )
    run.save()
    _set_related(run, related)
    audit_record(
        actor=actor,
        action="billrun.create",
        obj=run,
        after=snapshot(run, RUN_FIELDS) | _related_snapshot(run),
    )
    return run


def _locked(run: BillingRun | int) -> BillingRun:
    # of=self: the definition is read, not locked (runs of one definition advance side by side).
    return (
        BillingRun.objects.select_for_update(of=("self",))
        .select_related("definition")
        .get(pk=getattr(run, "pk", run))
    )


def _require_draft(run: BillingRun, action: str) -> None:
    if run.state != BillingRun.State.DRAFT:
        raise RunStateError(
            f"Only a Draft run can be {action}; run {run.number} is {run.get_state_display()}.",
            code="run_not_draft",
        )
    if run.execution == BillingRun.Execution.RUNNING:
        raise RunStateError(f"Run {run.number} is executing: it cannot be {action}.", code="run_executing")


@transaction.atomic
def billrun_update(*, run: BillingRun | int, actor: Any = None, **values: Any) -> BillingRun:
    """Change a Draft run (source 001: edit only while Draft)."""
    run = _locked(run)
    _require_draft(run, "edited")
    unknown = set(values) - set(EDITABLE_FIELDS) - set(M2M_FIELDS)
    if unknown:
        raise ApplicationError(f"These fields cannot be changed: {', '.join(sorted(unknown))}.")
    before = snapshot(run, RUN_FIELDS) | _related_snapshot(run)
    related = {name: list(values.pop(name)) for name in M2M_FIELDS if name in values}
    for name, value in values.items():
        setattr(run, name, value)
    current = {name: list(getattr(run, name).all()) for name in M2M_FIELDS}
    _validate(run, run.definition, current | related)
    run.save()
    _set_related(run, related)
    after = snapshot(run, RUN_FIELDS) | _related_snapshot(run)
    if after != before:
        audit_record(actor=actor, action="billrun.update", obj=run, before=before, after=after)
    return run


@transaction.atomic
def billrun_delete(*, run: BillingRun | int, actor: Any = None) -> None:
    """Delete a Draft run (source 001: a run that was executed stays, with its results)."""
    run = _locked(run)
    _require_draft(run, "deleted")
    before = snapshot(run, RUN_FIELDS) | _related_snapshot(run)
    audit_record(actor=actor, action="billrun.delete", obj=run, before=before)
    run.delete()


def _dispatch_advance(run_id: int) -> None:
    from ..tasks import advance_run

    advance_run.delay(run_id)


def _dispatch_chunks(chunk_ids: list[int], stage: str) -> None:
    from billing_mgmt.queues import chunk_queue

    from ..tasks import process_chunk

    queue = chunk_queue(stage)  # None: the default queue (or the task's route)
    for chunk_id in chunk_ids:
        process_chunk.apply_async((chunk_id,), queue=queue) if queue else process_chunk.delay(chunk_id)


def _dispatch_print_batch(reference: str) -> None:
    from invoicing.tasks import build_print_batch

    build_print_batch.delay(reference=reference)


@transaction.atomic
def billrun_execute(
    *, run: BillingRun | int, up_to: str, at: dt.datetime | None = None, actor: Any = None
) -> BillingRun:
    """Execute the run up to ``up_to`` (a stage after the one it has reached), now or at ``at``."""
    run = _locked(run)
    stages = run.stages
    if up_to not in stages:
        names = ", ".join(Stage(s).label for s in stages)
        raise ApplicationError(
            f"A {run.run_type} run has no stage '{up_to}': choose one of {names}.",
            fields={"up_to": [f"Choose one of {names}."]},
        )
    if run.is_terminal:
        raise RunStateError(
            f"Run {run.number} is {run.get_state_display()}: it cannot be executed again.",
            code="run_finished",
        )
    if run.execution == BillingRun.Execution.RUNNING:
        raise RunStateError(f"Run {run.number} is already executing.", code="run_executing")
    done = run.completed_stage_index
    if stages.index(up_to) < done:
        raise RunStateError(
            f"Run {run.number} is already executed up to {run.get_state_display()}: "
            "choose a following stage.",
            code="stage_already_done",
        )
    before = snapshot(run, RUN_FIELDS)
    now = timezone.now()
    if at is not None and timezone.is_naive(at):
        at = timezone.make_aware(at)  # a wall-clock time in the business's zone (TIME_ZONE)
    if at is not None and at > now + dt.timedelta(seconds=30):
        run.execution = BillingRun.Execution.SCHEDULED
        run.scheduled_for = at
    elif at is not None and at < now - dt.timedelta(minutes=5):
        raise ApplicationError(
            "The scheduled time is in the past.", fields={"at": ["Choose a time in the future, or now."]}
        )
    else:
        run.execution = BillingRun.Execution.RUNNING
        run.scheduled_for = None
        run.started_at = run.started_at or now
        run.last_error = ""
        transaction.on_commit(lambda: _dispatch_advance(run.pk))
    run.target_stage = up_to
    run.save()
    audit_record(
        actor=actor, action="billrun.execute", obj=run, before=before, after=snapshot(run, RUN_FIELDS)
    )
    return run


@transaction.atomic
def billrun_unschedule(*, run: BillingRun | int, actor: Any = None) -> BillingRun:
    run = _locked(run)
    if run.execution != BillingRun.Execution.SCHEDULED:
        raise RunStateError(f"Run {run.number} is not scheduled.", code="run_not_scheduled")
    before = snapshot(run, RUN_FIELDS)
    run.execution = BillingRun.Execution.IDLE
    run.scheduled_for = None
    run.target_stage = ""
    run.save()
    audit_record(
        actor=actor, action="billrun.unschedule", obj=run, before=before, after=snapshot(run, RUN_FIELDS)
    )
    return run


def billruns_start_scheduled(*, now: dt.datetime | None = None) -> list[str]:
    """Start every scheduled run whose time has come (beat, every minute). Returns their numbers."""
    now = now or timezone.now()
    started = []
    due = BillingRun.objects.filter(
        execution=BillingRun.Execution.SCHEDULED, scheduled_for__lte=now
    ).values_list("pk", flat=True)
    for pk in list(due):
        with transaction.atomic():
            run = _locked(pk)
            if run.execution != BillingRun.Execution.SCHEDULED or run.scheduled_for > now:
                continue
            run.execution = BillingRun.Execution.RUNNING
            run.started_at = run.started_at or now
            run.save(update_fields=["execution", "started_at", "updated_at"])
            audit_record(
                actor="beat", action="billrun.start_scheduled", obj=run, after=snapshot(run, RUN_FIELDS)
            )
            transaction.on_commit(lambda pk=pk: _dispatch_advance(pk))
            started.append(run.number)
    return started


def lease_seconds() -> int:
    return int(getattr(settings, "BILLRUN_CHUNK_LEASE_SECONDS", 600))


@transaction.atomic
def billrun_resume(*, run: BillingRun | int, actor: Any = None, force: bool = True) -> int:
    """Queue again the work of an executing run that was lost (a worker killed, a broker restarted).

    ``force`` (the admin action): every chunk of the current stage that is not done is queued again, even
    if its lease has not expired: the admin says its worker is gone. A chunk still being worked on is
    protected anyway (its row is locked while its work commits, and its owner stops when another attempt
    takes it over). Without ``force`` (beat), only chunks whose lease expired, or that were queued longer
    than a lease ago, are queued. Returns how many chunks were queued.
    """
    run = _locked(run)
    if run.execution != BillingRun.Execution.RUNNING:
        raise RunStateError(
            f"Run {run.number} is not executing: there is nothing to resume.", code="run_idle"
        )
    now = timezone.now()
    stale = now - dt.timedelta(seconds=lease_seconds())
    chunks = RunChunk.objects.filter(run=run, stage=run.current_stage or "-").exclude(
        status__in=[RunChunk.Status.DONE, RunChunk.Status.DEAD]
    )
    if not force:
        chunks = chunks.filter(
            Q(status=RunChunk.Status.PENDING)
            | Q(status=RunChunk.Status.QUEUED, queued_at__lt=stale)
            | Q(status=RunChunk.Status.RUNNING, lease_expires_at__lt=now)
        )
    ids = list(chunks.values_list("pk", flat=True))
    RunChunk.objects.filter(pk__in=ids).exclude(status=RunChunk.Status.RUNNING).update(
        status=RunChunk.Status.QUEUED, queued_at=now
    )
    if force or ids:
        audit_record(actor=actor, action="billrun.resume", obj=run, after={"chunks_queued": len(ids)})
    stage = run.current_stage
    transaction.on_commit(lambda: _dispatch_chunks(ids, stage))
    transaction.on_commit(lambda: _dispatch_advance(run.pk))
    return len(ids)


def billruns_resume_stalled() -> dict[str, int]:
    """Beat: resume every executing run with lost work (chunks whose lease expired)."""
    resumed = {}
    for pk, number in BillingRun.objects.filter(execution=BillingRun.Execution.RUNNING).values_list(
        "pk", "number"
    ):
        try:
            queued = billrun_resume(run=pk, actor="beat", force=False)
        except RunStateError:
            continue
        if queued:
            resumed[number] = queued
    return resumed


# --- the coordinator ----------------------------------------------------------------------------------------


def _stage_after(run: BillingRun) -> str | None:
    stages = run.stages
    done = run.completed_stage_index
    return stages[done] if done < len(stages) else None


def _formatting_skip_reason(run: BillingRun) -> str:
    if not run.definition.run_formatting:
        return "Skipped: formatting is off in the run definition (processing settings)."
    return ""


def _start_stage(run: BillingRun, stage: str) -> list[int]:
    """Make the stage's step and chunks; returns the chunk ids to queue (none: the stage has no work)."""
    now = timezone.now()
    step, _ = RunStep.objects.get_or_create(run=run, stage=stage, defaults={"started_at": now})
    run.current_stage = stage
    existing = list(RunChunk.objects.filter(run=run, stage=stage).values_list("pk", "status"))
    if existing:  # a coordinator that died after making them: queue what is not done
        return [pk for pk, status in existing if status not in (RunChunk.Status.DONE, RunChunk.Status.DEAD)]
    if stage == Stage.FORMATTING:
        reason = _formatting_skip_reason(run)
        if reason:
            step.status = RunStep.Status.SKIPPED
            step.note = reason[:300]
            step.finished_at = now
            step.save()
            return []
    if stage == Stage.RATING:
        units = run_bill_units(run)
        partitions = chunked(units, run.definition.chunk_size)
        run.accounts_selected = len(units)
    else:
        previous = run.stages[run.stages.index(stage) - 1]
        partitions = [
            ids
            for ids in RunChunk.objects.filter(run=run, stage=previous)
            .order_by("index")
            .values_list("account_ids", flat=True)
        ]
        if stage == Stage.FORMATTING:  # rendering costs more per bill unit: units of work of their own size
            units = [unit for ids in partitions for unit in ids]
            partitions = chunked(units, run.definition.formatting_chunk_size)
    chunks = RunChunk.objects.bulk_create(
        [
            RunChunk(
                run=run, stage=stage, index=i, account_ids=ids, status=RunChunk.Status.QUEUED, queued_at=now
            )
            for i, ids in enumerate(partitions)
        ]
    )
    step.accounts_total = sum(len(ids) for ids in partitions)
    step.chunks_total = len(chunks)
    step.save()
    return [c.pk for c in chunks]


def _totals(rows, expression) -> dict[str, str]:
    """Amounts per currency of a queryset with a ``currency`` column, as decimal strings."""
    grouped = rows.values("currency").annotate(total=expression).values_list("currency", "total").order_by()
    return {currency: str(amount) for currency, amount in grouped if amount is not None}


def _finish_step(run: BillingRun, stage: str) -> RunStep:
    """Count what the stage made, set-based, from what is stored (so a resumed stage counts exactly)."""
    step = RunStep.objects.select_for_update(of=("self",)).get(run=run, stage=stage)
    if step.status == RunStep.Status.SKIPPED:
        return step
    accounts = RunAccount.objects.filter(run=run)
    if stage == Stage.RATING:
        segments = BillSegment.objects.filter(billing_run=run).exclude(status=BillSegment.Status.ERROR)
        step.entities = segments.count()
        step.totals = _totals(segments, Sum("total"))
    elif stage == Stage.INVOICING:
        invoiced = accounts.filter(status=RunAccount.Status.INVOICED)
        step.entities = invoiced.aggregate(n=Sum("invoices"))["n"] or 0
        step.totals = _totals(invoiced, Sum("new_charges") + Sum("taxes"))
    elif stage == Stage.POSTING and run.run_type == RunType.PREPAID:
        debits = FinancialTransaction.objects.filter(
            kind=FinancialTransaction.Kind.WALLET_DEBIT, prepaid_segment__billing_run=run
        )
        step.entities = accounts.filter(status=RunAccount.Status.DEBITED).count()
        step.transactions = debits.count()
        step.totals = _totals(debits, Sum("amount"))
        run.wallet_transactions = step.transactions
    elif stage == Stage.POSTING:
        bills = FinancialTransaction.objects.filter(
            kind=FinancialTransaction.Kind.BILL, statement__run_account__run=run
        )
        step.entities = accounts.filter(
            status__in=[RunAccount.Status.POSTED, RunAccount.Status.FORMATTED]
        ).count()
        step.transactions = bills.count()
        step.totals = _totals(bills, Sum("amount"))
        run.bills_generated = step.entities
    elif stage == Stage.FORMATTING:
        step.entities = accounts.filter(status=RunAccount.Status.FORMATTED).count()
        # The run's invoices to print and post, merged into one PDF for the print shop (invoicing).
        reference = run.number
        transaction.on_commit(lambda: _dispatch_print_batch(reference))
    step.exceptions = RunException.objects.filter(run=run, stage=stage).count()
    step.status = RunStep.Status.DONE
    step.finished_at = timezone.now()
    step.save()
    return step


def _end_state(run: BillingRun) -> str:
    made = run.wallet_transactions if run.run_type == RunType.PREPAID else run.bills_generated
    if run.exception_count and not made:
        return BillingRun.State.FAILED
    return BillingRun.State.COMPLETED_WITH_ERRORS if run.exception_count else BillingRun.State.COMPLETED


@transaction.atomic
def billrun_advance(*, run_id: int) -> str:
    """Move an executing run on: start its next stage, or finish the stage whose chunks are all done.

    Called after each chunk's last one finishes, after execute and resume; idempotent (the run row is locked
    and the stored state decides what is left to do). Returns what it did, for the task's result.
    """
    run = _locked(run_id)
    if run.execution != BillingRun.Execution.RUNNING:
        return "idle"
    before = snapshot(run, ADVANCE_FIELDS)
    to_queue: list[int] = []
    while True:
        if run.current_stage:
            left = (
                RunChunk.objects.filter(run=run, stage=run.current_stage)
                .exclude(status__in=[RunChunk.Status.DONE, RunChunk.Status.DEAD])
                .exists()
            )
            if left:
                break
            stage = run.current_stage
            _finish_step(run, stage)
            run.exception_count = RunException.objects.filter(run=run).count()
            run.current_stage = ""
            run.state = stage
            everyone_failed = (
                run.accounts_selected
                and not RunAccount.objects.filter(run=run)
                .exclude(status=RunAccount.Status.EXCEPTION)
                .exists()
            )
            if stage == run.stages[-1] or everyone_failed:
                run.state = _end_state(run)
            if run.is_terminal or stage == run.target_stage:
                run.execution = BillingRun.Execution.IDLE
                run.target_stage = ""
                if run.is_terminal:
                    run.finished_at = timezone.now()
                break
            continue
        stage = _stage_after(run)
        if stage is None:
            run.execution = BillingRun.Execution.IDLE
            break
        to_queue = _start_stage(run, stage)
        if to_queue:
            break
        # No work in this stage (nothing selected, or skipped): finish it at once and go on.
    run.save()
    after = snapshot(run, ADVANCE_FIELDS)
    if after != before:  # a stage started or finished, the run stopped or ended: the history says when
        audit_record(actor=ADVANCE_ACTOR, action="billrun.advance", obj=run, before=before, after=after)
    if to_queue:
        transaction.on_commit(lambda ids=to_queue, started=stage: _dispatch_chunks(ids, started))
    return f"{run.state}/{run.execution}"


__all__ = [
    "RUN_SERIES",
    "RunStateError",
    "billrun_advance",
    "billrun_create",
    "billrun_delete",
    "billrun_execute",
    "billrun_resume",
    "billrun_unschedule",
    "billrun_update",
    "billruns_resume_stalled",
    "billruns_start_scheduled",
    "run_defaults",
]
