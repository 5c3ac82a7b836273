"""One measurement: a normal billing run of the whole customer base, executed up to Assembling & Posting by
Celery workers, timed from execute until the run is idle, then checked.

The clock starts just before ``billrun_execute`` (which queues the coordinator on commit) and stops when the
run row says it is idle again (polled every 0.1 s). The run's own step rows give each stage's time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db.models import Count, Exists, F, OuterRef, Q, Sum

from accounts.models import Account
from accounts.selectors import bill_units_of
from billing_mgmt.references import dangling_references
from statements.models import FinancialTransaction, Statement
from statements.selectors import ledger_mismatches

from ..models import (
    BillingRun,
    BillSegment,
    RatedUsage,
    RunAccount,
    RunChunk,
    RunDefinition,
    RunException,
    RunStep,
    RunType,
    Stage,
    Subscription,
    UsageRecord,
    UsageToRate,
)
from ..services import (
    RunStateError,
    billrun_create,
    billrun_execute,
    billrun_resume,
    engine_biller,
    run_definition_save,
)
from . import databases
from .customers import BuiltBase
from .workers import Workers, machine_busy_seconds, postgres_server_seconds

ACTOR = "bench_billing"
POLL_SECONDS = 0.1
MEMORY_EVERY_SECONDS = 0.5
PROGRESS_EVERY_SECONDS = 10


class RunTimeout(RuntimeError):
    pass


@dataclass(frozen=True)
class Plan:
    """What every measurement of one benchmark shares."""

    template: str
    chunk_size: int
    months: int
    bill_as_of: dt.date
    broker_url: str
    queue: str
    timeout: float
    log_dir: Path
    keep: bool = False
    stall_seconds: float = 2.0
    profile_dir: Path | None = None
    # How far the run goes: Assembling & Posting (the billing figure), or Formatting too (invoices rendered
    # into media_root, a folder of the benchmark's own).
    up_to: str = Stage.POSTING
    media_root: Path | None = None


def configure_celery(*, broker_url: str, queue: str) -> None:
    """This process queues the run's first task (billrun_execute, on commit): send it to the workers'
    broker and private queue. (The queue is read at each send; the broker when the pool is made.)"""
    from billing_mgmt.celery import app

    app.conf.task_default_queue = queue
    app.conf.task_always_eager = False
    if app.conf.broker_url != broker_url:
        app.conf.broker_url = broker_url
        app.conf.broker_transport_options = {}
        if getattr(app, "_pool", None) is not None:  # a pool made for another broker
            app._pool.force_close_all()
            app._pool = None
            app.amqp._producer_pool = None


def _prepare(plan: Plan) -> int:
    run_definition_save(
        definition=RunDefinition(
            name="Benchmark",
            run_type=RunType.NORMAL,
            bill_as_of_day=plan.bill_as_of.day,
            chunk_size=plan.chunk_size,
            run_formatting=plan.up_to == Stage.FORMATTING,
        ),
        actor=ACTOR,
    )
    run = billrun_create(bill_as_of_date=plan.bill_as_of, transaction_date=plan.bill_as_of, actor=ACTOR)
    return run.pk


def _progress_line(run_id: int, elapsed: float) -> str:
    steps = list(
        RunStep.objects.filter(run_id=run_id)
        .order_by("started_at", "id")
        .values_list("stage", "accounts_done", "accounts_total", "status")
    )
    if not steps:
        return f"  {elapsed:6.1f}s  starting"
    stage, done, total, status = steps[-1]
    return f"  {elapsed:6.1f}s  {Stage(stage).label}: {done}/{total} accounts ({status})"


@dataclass
class Stall:
    at_seconds: float
    stage: str
    chunks_queued: int


def _stalled(run_id: int, workers: Workers) -> str | None:
    """The stage the run is stuck in, or None: it is executing, no chunk is being worked, and no task of
    its queue is waiting or in a worker's hands (acks_late: a task's message stays unacked until it has
    returned, and the next one is queued before that, so a working run always has one in flight)."""
    run = BillingRun.objects.filter(pk=run_id).values_list("execution", "current_stage").first()
    if run is None or run[0] != BillingRun.Execution.RUNNING:
        return None
    if RunChunk.objects.filter(run_id=run_id, status=RunChunk.Status.RUNNING).exists():
        return None
    if workers.tasks_in_flight():
        return None
    return run[1] or "-"


def _wait(
    run_id: int,
    workers: Workers,
    timeout: float,
    started: float,
    progress: Callable[[str], None],
    stall_seconds: float,
) -> tuple[float, list[Stall]]:
    """Poll until the run is idle. A run that stalls (see ``_stalled``) is resumed with the product's own
    resume service, as an admin or beat would, and the stall is counted."""
    last_memory = last_progress = 0.0
    stalled_since: float | None = None
    stalls: list[Stall] = []
    while True:
        now = time.perf_counter()
        execution = BillingRun.objects.values_list("execution", flat=True).get(pk=run_id)
        if execution == BillingRun.Execution.IDLE:
            return now, stalls
        if now - last_memory >= MEMORY_EVERY_SECONDS:
            workers.check_alive()
            workers.sample_memory()
            last_memory = now
            stage = _stalled(run_id, workers)
            if stage is None:
                stalled_since = None
            elif stalled_since is None:
                stalled_since = now
            elif now - stalled_since >= stall_seconds:
                queued = RunChunk.objects.filter(
                    run_id=run_id, stage=stage, status=RunChunk.Status.QUEUED
                ).count()
                stalls.append(Stall(round(now - started, 2), stage, queued))
                progress(
                    f"  {now - started:6.1f}s  STALLED in {stage}: {queued} chunk(s) queued, no task left "
                    "for them; resuming the run (billrun_resume)"
                )
                with contextlib.suppress(RunStateError):  # it finished meanwhile
                    billrun_resume(run=run_id, actor=ACTOR)
                stalled_since = None
        if now - last_progress >= PROGRESS_EVERY_SECONDS:
            progress(_progress_line(run_id, now - started))
            last_progress = now
        if now - started > timeout:
            where = _progress_line(run_id, now - started).strip()
            raise RunTimeout(f"The run was not done after {timeout:.0f}s ({where}).")
        time.sleep(POLL_SECONDS)


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start and end else None


def _stages(run: BillingRun) -> dict[str, dict[str, Any]]:
    stages: dict[str, dict[str, Any]] = {}
    previous_end = run.started_at
    for step in RunStep.objects.filter(run=run).order_by("started_at", "id"):
        chunks = [
            (c.finished_at - c.started_at).total_seconds()
            for c in RunChunk.objects.filter(run=run, stage=step.stage)
            if c.started_at and c.finished_at
        ]
        retried = RunChunk.objects.filter(run=run, stage=step.stage, attempts__gt=1).count()
        stages[step.stage] = {
            "seconds": _seconds(step.started_at, step.finished_at),
            "wait_before_seconds": _seconds(previous_end, step.started_at),
            "accounts": step.accounts_total,
            "chunks": step.chunks_total,
            "chunk_seconds_mean": round(sum(chunks) / len(chunks), 3) if chunks else None,
            "chunk_seconds_max": round(max(chunks), 3) if chunks else None,
            "chunks_retried": retried,
            "entities": step.entities,
            "transactions": step.transactions,
            "exceptions": step.exceptions,
        }
        previous_end = step.finished_at
    return stages


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_report(
    *, workers: float, postgres: float | None, command: float, machine: float, wall: float
) -> dict[str, Any]:
    """CPU seconds by whom while the run went, and what other work on the machine took meanwhile."""
    ours = workers + command + (postgres or 0)
    other = machine - ours if postgres is not None else None
    return {
        "workers": round(workers, 2),
        "postgres": round(postgres, 2) if postgres is not None else None,
        "command": round(command, 2),
        "machine": round(machine, 2),
        "other": round(max(other, 0.0), 2) if other is not None else None,
        # Share of the machine's cores that other work took: above a few percent, the figures are skewed.
        "other_share": round(max(other, 0.0) / (wall * (os.cpu_count() or 1)), 3)
        if other is not None and wall
        else None,
    }


def _skipped_chunk_tasks() -> int:
    from django_celery_results.models import TaskResult

    return TaskResult.objects.filter(task_name="billruns.process_chunk", result=json.dumps("skipped")).count()


def check_run(run: BillingRun, built: BuiltBase, months: int, up_to: str = Stage.POSTING) -> dict[str, Any]:
    """What the run must have made: every bill unit one bill, everything rated and billed on its unit's
    bill, the ledger carrying each bill's new charges + taxes once, cached balances equal to the ledger;
    with Formatting, every bill its invoice."""
    # The bill units the engine bills: paying accounts with subscriptions of their own or non-paying children.
    # An account billed by external billers only (the CSR pages' history account, billing_mgmt.bench.pages)
    # is no bill unit of the run, as run_bill_units has it.
    own = Subscription.objects.filter(account_id=OuterRef("pk"))
    kids = Account.objects.filter(parent_id=OuterRef("pk"), is_paying=False)
    units = set(
        Account.objects.filter(is_paying=True)
        .filter(Q(Exists(own)) | Q(Exists(kids)))
        .values_list("pk", flat=True)
    )
    formatting = up_to == Stage.FORMATTING
    checks: dict[str, bool] = {}
    checks["run_reached_posting"] = (
        run.state == (BillingRun.State.COMPLETED if formatting else BillingRun.State.POSTING)
        and run.execution == BillingRun.Execution.IDLE
    )
    checks["no_exceptions"] = not RunException.objects.filter(run=run).exists()
    checks["every_unit_selected"] = run.accounts_selected == len(units) == built.bill_units
    statuses = dict(
        RunAccount.objects.filter(run=run).values("status").annotate(n=Count("id")).values_list("status", "n")
    )
    done = RunAccount.Status.FORMATTED if formatting else RunAccount.Status.POSTED
    checks["every_unit_posted"] = statuses == {done: len(units)}
    per_unit = dict(
        Statement.objects.filter(biller=engine_biller())
        .values("account_id")
        .annotate(n=Count("id"))
        .values_list("account_id", "n")
        .order_by()
    )
    from_run = set(
        Statement.objects.filter(run_account__run=run).values_list("account_id", flat=True).order_by()
    )
    checks["one_bill_per_unit"] = (
        set(per_unit) == units and set(per_unit.values()) <= {1} and from_run == units
    )
    segments = list(
        BillSegment.objects.filter(billing_run=run).values_list(
            "status", "subscription__account_id", "statement__account_id"
        )
    )
    unit_of = bill_units_of(account_ids={account for _, account, _ in segments})
    checks["every_period_billed_on_its_unit"] = (
        len(segments) == built.subscriptions * (months + 1)
        and all(status == BillSegment.Status.BILLED for status, _, _ in segments)
        and all(unit_of[account] == billed_to for _, account, billed_to in segments)
        and Subscription.objects.exclude(segments__billing_run=run).count() == 0
    )
    usage = dict(UsageRecord.objects.values("status").annotate(n=Count("id")).values_list("status", "n"))
    # Every record linked once, to a segment of this run that exists (the links carry no foreign-key
    # constraint), and none left waiting.
    linked = RatedUsage.objects.filter(
        segment__billing_run=run, usage_record__event_date__isnull=False
    ).count()
    checks["all_usage_rated"] = (
        usage == {UsageRecord.Status.ACCEPTED: built.usage_records}
        and linked == built.usage_records == RatedUsage.objects.count()
        and not UsageToRate.objects.exists()
    )
    bills = FinancialTransaction.objects.filter(
        kind=FinancialTransaction.Kind.BILL, statement__run_account__run=run
    )
    statements = Statement.objects.filter(run_account__run=run)
    billed = statements.aggregate(total=Sum(F("new_charges") + F("taxes")))["total"] or Decimal(0)
    ledger = bills.aggregate(total=Sum("amount"))["total"] or Decimal(0)
    checks["ledger_bill_rows_match_bills"] = (
        ledger == billed
        and bills.count() == statements.exclude(new_charges=-F("taxes")).count()
        and not bills.exclude(amount=F("statement__new_charges") + F("statement__taxes")).exists()
    )
    checks["bills_add_up"] = not statements.exclude(
        total_due=F("previous_balance") - F("payments") + F("adjustments") + F("new_charges") + F("taxes")
    ).exists()
    checks["balances_match_ledger"] = not ledger_mismatches(account_ids=sorted(units))
    checks["references_name_rows"] = not dangling_references()
    invoices = None
    if formatting:
        from invoicing.models import Invoice

        invoices = Invoice.objects.filter(statement__run_account__run=run).count()
        checks["every_bill_its_invoice"] = invoices == len(from_run)
    return {
        "invoices": invoices,
        "checks": checks,
        "billed_total": str(billed),
        "ledger_bill_total": str(ledger),
        "statements": len(from_run),
        "segments": len(segments),
    }


def _in_background(clone: str, work: Callable[[str], Any]) -> tuple[threading.Thread, dict]:
    """Run ``work(clone)`` in a thread with its own connection to the clone; its result or error lands in
    the returned dict."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        from django.db import connections

        try:
            with databases.pointed_at(clone):
                outcome["started"] = time.perf_counter()
                outcome["result"] = work(clone)
        except Exception as exc:  # reported by the caller with the measurement
            outcome["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            outcome["finished"] = time.perf_counter()
            connections.close_all()

    thread = threading.Thread(target=target, name="bench-background", daemon=True)
    thread.start()
    return thread, outcome


def measure(
    *,
    plan: Plan,
    workers: int,
    built: BuiltBase,
    progress: Callable[[str], None] | None = None,
    during: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Clone the template, bill it with ``workers`` workers, measure and check; drop the clone.

    ``during(clone)``, when given, is started in a thread as soon as the run is executing (a load on the
    same database while the run goes: CSR pages); its result is the row's ``during``."""
    progress = progress or (lambda line: print(line, file=sys.stderr))
    clone = f"{plan.template}_w{workers}"
    databases.create(clone, template=plan.template)
    pool = Workers(
        count=workers,
        queue=f"{plan.queue}-w{workers}",
        database_url=databases.database_url(clone),
        broker_url=plan.broker_url,
        log_dir=plan.log_dir,
        media_root=plan.media_root,
    )
    background = None
    try:
        with databases.pointed_at(clone):
            run_id = _prepare(plan)
            pool.start()
            profiles = pool.profile(plan.profile_dir) if plan.profile_dir else []
            configure_celery(broker_url=plan.broker_url, queue=pool.queue)
            load_before = os.getloadavg()[0]
            pool.sample_memory()
            worker_cpu_before = pool.cpu_seconds
            busy_before = machine_busy_seconds()
            postgres_before = postgres_server_seconds()
            own_before = _own_cpu_seconds()
            started = time.perf_counter()
            billrun_execute(run=run_id, up_to=plan.up_to, actor=ACTOR)
            if during is not None:
                background = _in_background(clone, during)
            finished, stalls = _wait(run_id, pool, plan.timeout, started, progress, plan.stall_seconds)
            seconds = finished - started
            if background is not None:
                background[0].join(timeout=plan.timeout)
            load_after = os.getloadavg()[0]
            machine_busy = machine_busy_seconds() - busy_before
            postgres_after = postgres_server_seconds()
            own = _own_cpu_seconds() - own_before
            pool.stop_profiles()
            pool.sample_memory()
            pool.stop()
            run = BillingRun.objects.get(pk=run_id)
            found = check_run(run, built, plan.months, plan.up_to)
            stages = _stages(run)
            skipped = _skipped_chunk_tasks()
            posting = RunStep.objects.filter(run=run, stage=plan.up_to).first()
            server_seconds = _seconds(run.started_at, posting.finished_at if posting else None)
    finally:
        pool.stop()
        if not plan.keep:
            databases.drop(clone)
    return {
        "workers": workers,
        "accounts": built.accounts,
        "bill_units": built.bill_units,
        "seconds": round(seconds, 2),
        "accounts_per_second": round(built.accounts / seconds, 1) if seconds else None,
        "bills": run.bills_generated,
        "exceptions": run.exception_count,
        "peak_worker_mb": pool.peak_mb,
        "peak_worker_mb_total": pool.peak_mb_total,
        "worker_processes": len(pool.peaks_kb),
        "server_seconds": server_seconds,
        # Where the CPU went while the run went: the workers' processes (their start excluded), the local
        # PostgreSQL server (None when it is on another machine), and the whole machine. What is left is
        # other work, which skews the figures (as the load average shows).
        "cpu_seconds": _cpu_report(
            workers=pool.cpu_seconds - worker_cpu_before,
            postgres=postgres_after - postgres_before
            if postgres_before is not None and postgres_after is not None
            else None,
            command=own,
            machine=machine_busy,
            wall=seconds,
        ),
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "run": run.number,
        "state": run.state,
        "chunks": sum(s["chunks"] for s in stages.values()),
        "stages": stages,
        "database": clone if plan.keep else None,
        "worker_logs": [str(pool.log_path(i)) for i in range(1, workers + 1)],
        "profiles": [str(path) for path in profiles],
        # Runs that stopped making progress and were resumed (see _wait), and the chunk tasks that found
        # their chunk taken and returned without working it.
        "stalls": [stall.__dict__ for stall in stalls],
        "chunk_tasks_skipped": skipped,
        **found,
        "during": _during_report(background, started, finished) if background else None,
        "ok": all(found["checks"].values()) and run.exception_count == 0 and not stalls,
    }


def _during_report(background: tuple[threading.Thread, dict], started: float, finished: float) -> dict:
    """What the background work returned, and how much of it fell inside the run."""
    outcome = background[1]
    begin, end = outcome.get("started"), outcome.get("finished")
    inside = None
    if begin is not None and end is not None and end > begin:
        inside = round(max(0.0, min(end, finished) - max(begin, started)) / (end - begin), 3)
    return {
        "result": outcome.get("result"),
        "error": outcome.get("error") or (None if "finished" in outcome else "still running after the run"),
        "share_inside_run": inside,
    }
