"""The work of a billing run's stages, one chunk of bill units at a time (a Celery task per chunk).

Exactly once, whatever Celery does (it delivers at least once: a retried, redelivered or resumed task runs
again):

* ``chunk_claim`` takes the chunk in a transaction of its own: status RUNNING, ``attempts`` + 1, a lease.
  A chunk that is done or dead is not taken (a claim waits for a live worker's work transaction to end).
  A chunk taken more than ``BILLRUN_CHUNK_MAX_ATTEMPTS`` times (a task that keeps crashing its worker)
  goes to the dead-letter state DEAD instead: its accounts get an exception and the run goes on.
* ``chunk_process`` does the work in one transaction that holds the chunk's row lock and marks it DONE, so
  the work commits exactly once. Each stage's processor also takes only the accounts that are at the
  stage's starting status (RunAccount), and the database's constraints back it: one segment per
  subscription and period, one run account per run and account, a statement on one run account only,
  one ledger row per idempotency key.
* When the set fails for a reason that is not the database's (one account's data breaks the code), the
  chunk is worked account by account, each in its own transaction: the account that fails gets an
  exception (``unexpected_error``) and the others are billed.

Processors read and write in sets: the number of queries per chunk does not grow with the chunk's size.
"""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import BillingProfile, BillingSuspension
from accounts.selectors import bill_unit_members
from billing_mgmt.bulk import insert_instances, set_columns
from invoicing.models import Invoice
from invoicing.services import invoices_render
from statements.models import BalanceType, FinancialTransaction
from statements.services import LedgerEntry, transactions_post_bulk

from ..models import (
    BillingRun,
    BillSegment,
    RunAccount,
    RunChunk,
    RunException,
    RunStep,
    RunType,
    Stage,
)
from .assembly import billed_through_advance, bills_assemble, engine_biller, unswept_rows
from .rating import prepaid_subscriptions_rate, subscriptions_rate
from .run_selection import run_subscriptions

logger = logging.getLogger(__name__)


def max_attempts() -> int:
    return int(getattr(settings, "BILLRUN_CHUNK_MAX_ATTEMPTS", 5))


def _lease() -> dt.timedelta:
    from .runs import lease_seconds

    return dt.timedelta(seconds=lease_seconds())


@dataclass
class Problem:
    account_id: int
    code: str
    message: str
    subscription_id: int | None = None


def _record_problems(run: BillingRun, stage: str, problems: list[Problem]) -> None:
    """Exception rows, and the accounts concerned leave the run (status EXCEPTION)."""
    if not problems:
        return
    RunException.objects.bulk_create(
        RunException(
            run=run,
            account_id=p.account_id,
            stage=stage,
            code=p.code[:40],
            message=p.message[:500],
            subscription_id=p.subscription_id,
        )
        for p in problems
    )
    accounts = sorted({p.account_id for p in problems})
    known = set(
        RunAccount.objects.filter(run=run, account_id__in=accounts).values_list("account_id", flat=True)
    )
    RunAccount.objects.filter(run=run, account_id__in=known).update(status=RunAccount.Status.EXCEPTION)
    RunAccount.objects.bulk_create(
        RunAccount(run=run, account_id=pk, status=RunAccount.Status.EXCEPTION)
        for pk in accounts
        if pk not in known
    )


def _unit_subscriptions(run: BillingRun, unit_ids: list[int]) -> tuple[dict[int, list[int]], dict[int, Any]]:
    """The run's subscriptions of each unit (its own and its non-paying descendants'), and their rows."""
    members = bill_unit_members(unit_ids=unit_ids)
    unit_of = {account: unit for unit, accounts in members.items() for account in accounts}
    rows = {
        row[0]: row
        for row in run_subscriptions(run)
        .filter(account_id__in=list(unit_of))
        .order_by("processing_sequence", "id")
        .values_list("pk", "account_id", "price_plan__currency", "service_identifier")
    }
    by_unit: dict[int, list[int]] = defaultdict(list)
    for pk, account_id, _currency, _identifier in rows.values():
        by_unit[unit_of[account_id]].append(pk)
    return by_unit, rows


# --- Identification & Rating -------------------------------------------------------------------------------


def _rate(run: BillingRun, unit_ids: list[int]) -> None:
    started = set(
        RunAccount.objects.filter(run=run, account_id__in=unit_ids).values_list("account_id", flat=True)
    )
    units = [u for u in unit_ids if u not in started]
    if not units:
        return
    by_unit, rows = _unit_subscriptions(run, units)
    currencies = dict(
        BillingProfile.objects.filter(account_id__in=units).values_list("account_id", "currency")
    )
    suspended = {
        s.account_id: s for s in BillingSuspension.objects.filter(account_id__in=units, ended_at__isnull=True)
    }
    problems: list[Problem] = []
    ratable: list[int] = []
    unit_of_subscription = {}
    for unit in units:
        if unit not in currencies:
            problems.append(Problem(unit, "no_billing_profile", "The account has no billing profile."))
            continue
        if unit in suspended:
            s = suspended[unit]
            problems.append(
                Problem(
                    unit,
                    "billing_suspended",
                    f"Billing is suspended since {s.started_at:%Y-%m-%d}"
                    f"{f' ({s.reference})' if s.reference else ''}: {s.reason}",
                )
            )
            continue
        for pk in by_unit.get(unit, []):
            _, _, currency, identifier = rows[pk]
            unit_of_subscription[pk] = unit
            if currency != currencies[unit]:
                problems.append(
                    Problem(
                        unit,
                        "currency_mismatch",
                        f"{identifier}: the plan is in {currency}; the account bills in {currencies[unit]}.",
                        pk,
                    )
                )
            else:
                ratable.append(pk)
    rate = prepaid_subscriptions_rate if run.run_type == RunType.PREPAID else subscriptions_rate
    results = rate(subscriptions=ratable, bill_as_of=run.bill_as_of_date, run=run)
    segments: dict[int, int] = defaultdict(int)
    for pk, result in results.items():
        unit = unit_of_subscription[pk]
        segments[unit] += len(result.created)
        for segment in result.errors:
            problems.append(
                Problem(
                    unit,
                    segment.error_code,
                    f"{rows[pk][3]}, {segment.period_start} – {segment.period_end}: {segment.error_message}",
                    pk,
                )
            )
    failed = {p.account_id for p in problems}
    insert_instances(
        [
            RunAccount(
                run=run,
                account_id=unit,
                status=RunAccount.Status.RATED,
                currency=currencies[unit],
                segments=segments.get(unit, 0),
            )
            for unit in units
            if unit not in failed
        ]
    )
    _record_problems(run, Stage.RATING, problems)


# --- Invoicing ---------------------------------------------------------------------------------------------


def _accounts_at(run: BillingRun, unit_ids: list[int], status: str) -> dict[int, RunAccount]:
    """The run's accounts of this chunk at a stage's starting status, locked (a second worker on the same
    chunk waits here, then finds them moved on)."""
    return {
        ra.account_id: ra
        for ra in RunAccount.objects.select_for_update(of=("self",))
        .filter(run=run, account_id__in=unit_ids, status=status)
        .order_by("account_id")
    }


def _attname(name: str) -> str:
    return RunAccount._meta.get_field(name).attname  # "statement" -> "statement_id"


def _set_accounts(accounts: list[RunAccount], fields: list[str]) -> None:
    if accounts:
        set_columns(
            RunAccount,
            [ra.pk for ra in accounts],
            {
                name: [getattr(ra, RunAccount._meta.get_field(name).attname) for ra in accounts]
                for name in fields
            },
        )


def _invoice(run: BillingRun, unit_ids: list[int]) -> None:
    """Group each bill unit's rated segments into its invoices (one per subscription) and total them; a unit
    with no charges and nothing to sweep has nothing to bill."""
    accounts = _accounts_at(run, unit_ids, RunAccount.Status.RATED)
    if not accounts:
        return
    by_unit, _rows = _unit_subscriptions(run, list(accounts))
    unit_of = {sub: unit for unit, subs in by_unit.items() for sub in subs}
    sums: dict[int, list] = defaultdict(lambda: [0, set(), Decimal(0), Decimal(0), set()])
    for subscription_id, currency, charges, discounts, included, taxes in (
        BillSegment.objects.filter(
            subscription_id__in=list(unit_of),
            status=BillSegment.Status.RATED,
            statement__isnull=True,
            period_start__lte=run.bill_as_of_date,
        )
        .values_list("subscription_id", "currency", "charges", "discounts", "taxes_included", "taxes")
        .order_by()
    ):
        entry = sums[unit_of[subscription_id]]
        entry[0] += 1
        entry[1].add(subscription_id)
        entry[2] += charges + discounts - included
        entry[3] += taxes
        entry[4].add(currency)
    to_sweep = set(
        unswept_rows(unit_ids=list(accounts), biller=engine_biller(), bill_date=run.transaction_date)
        .values_list("account_id", flat=True)
        .distinct()
        .order_by()
    )
    problems = []
    for unit, ra in accounts.items():
        count, subscriptions, new_charges, taxes, currencies = sums.get(unit, [0, set(), 0, 0, set()])
        if currencies - {ra.currency}:
            problems.append(
                Problem(
                    unit,
                    "currency_mismatch",
                    f"Charges in {', '.join(sorted(currencies))}, not {ra.currency}.",
                )
            )
            continue
        ra.segments, ra.invoices, ra.new_charges, ra.taxes = count, len(subscriptions), new_charges, taxes
        ra.status = RunAccount.Status.INVOICED if count or unit in to_sweep else RunAccount.Status.NOTHING
    refused = {p.account_id for p in problems}
    _set_accounts(
        [ra for unit, ra in accounts.items() if unit not in refused],
        ["status", "segments", "invoices", "new_charges", "taxes"],
    )
    _record_problems(run, Stage.INVOICING, problems)


# --- Assembling & Posting ----------------------------------------------------------------------------------


def _post(run: BillingRun, unit_ids: list[int]) -> None:
    """One bill per invoiced unit: assembled, posted to the ledger, segments frozen (billruns.assembly)."""
    accounts = _accounts_at(run, unit_ids, RunAccount.Status.INVOICED)
    if not accounts:
        return
    by_unit, _rows = _unit_subscriptions(run, list(accounts))
    bills = bills_assemble(
        subscriptions_by_unit={unit: by_unit.get(unit, []) for unit in accounts},
        bill_date=run.transaction_date,
        bill_as_of=run.bill_as_of_date,
        due_date_offset_days=run.due_date_proximity,
        actor=f"billing run {run.number}",
    )
    for unit, ra in accounts.items():
        bill = bills.get(unit)
        if bill is None:  # billed meanwhile (bill now, an overlapping run): nothing left
            ra.status = RunAccount.Status.NOTHING
            continue
        ra.status = RunAccount.Status.POSTED
        ra.statement_id = bill.statement.pk
        ra.new_charges, ra.taxes, ra.total_due = bill.new_charges, bill.taxes, bill.total_due
        ra.segments, ra.invoices = bill.segment_count, bill.invoices
    _set_accounts(
        list(accounts.values()),
        ["status", "statement", "new_charges", "taxes", "total_due", "segments", "invoices"],
    )


def _debit(run: BillingRun, unit_ids: list[int]) -> None:
    """Prepaid: one wallet debit per rated segment, posted to the unit's wallet balance; no bills."""
    accounts = _accounts_at(run, unit_ids, RunAccount.Status.RATED)
    if not accounts:
        return
    by_unit, rows = _unit_subscriptions(run, list(accounts))
    unit_of = {sub: unit for unit, subs in by_unit.items() for sub in subs}
    segments = list(
        BillSegment.objects.select_for_update(of=("self",))
        .filter(
            subscription_id__in=list(unit_of),
            status=BillSegment.Status.RATED,
            wallet_transaction__isnull=True,
        )
        .order_by("subscription_id", "period_start")
    )
    biller = engine_biller()
    charged = [s for s in segments if s.total]
    posted = transactions_post_bulk(
        entries=[
            LedgerEntry(
                account_id=unit_of[s.subscription_id],
                kind=FinancialTransaction.Kind.WALLET_DEBIT,
                balance_type=BalanceType.WALLET,
                amount=-s.total,
                currency=s.currency,
                effective_date=run.transaction_date,
                idempotency_key=f"wallet-debit:{s.pk}",
                biller=biller,
                description=f"Prepaid {rows[s.subscription_id][3]}, {s.period_start} – {s.period_end}"[:300],
            )
            for s in charged
        ],
        actor=f"billing run {run.number}",
    )
    row_of = {s.pk: row.pk for s, row in zip(charged, posted, strict=True)}
    now = timezone.now()
    set_columns(
        BillSegment,
        [s.pk for s in segments],
        {
            "status": [BillSegment.Status.DEBITED] * len(segments),
            "wallet_transaction": [row_of.get(s.pk) for s in segments],
            "frozen_at": [now] * len(segments),
        },
    )
    billed_through_advance(segments=segments)
    per_unit: dict[int, list[BillSegment]] = defaultdict(list)
    for s in segments:
        per_unit[unit_of[s.subscription_id]].append(s)
    for unit, ra in accounts.items():
        mine = per_unit.get(unit, [])
        ra.status = RunAccount.Status.DEBITED if mine else RunAccount.Status.NOTHING
        ra.segments = len(mine)
        ra.new_charges = sum((s.total for s in mine), Decimal(0))
    _set_accounts(list(accounts.values()), ["status", "segments", "new_charges"])
    if run.definition.estimate_wallet_consumption:
        from .prepaid import wallet_estimates_refresh

        wallet_estimates_refresh(account_ids=list(accounts), today=run.bill_as_of_date, run=run)


# --- Formatting --------------------------------------------------------------------------------------------


def _format_prepare(run: BillingRun, unit_ids: list[int]) -> None:
    """Before the chunk's transaction: issue and render the invoices of the chunk's posted bills
    (invoicing.services.invoices_render works in short transactions of its own and is idempotent). Outside
    the chunk's transaction on purpose: issuing holds the gapless invoice counter until it commits, and it
    must not stay locked while a chunk's PDFs are drawn (the other workers would wait for it)."""
    statement_ids = list(
        RunAccount.objects.filter(
            run=run, account_id__in=unit_ids, status=RunAccount.Status.POSTED, statement__isnull=False
        ).values_list("statement_id", flat=True)
    )
    if not statement_ids:
        return
    result = invoices_render(statement_ids=statement_ids, actor=f"billing run {run.number}")
    if result.note:
        RunStep.objects.filter(run=run, stage=Stage.FORMATTING).update(note=result.note[:300])


def _format(run: BillingRun, unit_ids: list[int]) -> None:
    """Bills whose invoice documents are rendered are formatted; a bill whose invoice could not be rendered
    is an exception of the run (its invoice keeps its number and the daily catch-up renders it again)."""
    accounts = _accounts_at(run, unit_ids, RunAccount.Status.POSTED)
    if not accounts:
        return
    invoices = {
        statement_id: (status, error)
        for statement_id, status, error in Invoice.objects.filter(
            statement_id__in=[ra.statement_id for ra in accounts.values()]
        ).values_list("statement_id", "status", "render_error")
    }
    done, problems = [], []
    for ra in accounts.values():
        status, error = invoices.get(ra.statement_id, (None, ""))
        if status == Invoice.Status.RENDERED:
            ra.status = RunAccount.Status.FORMATTED
            done.append(ra)
        else:
            why = error or "the invoice was not issued"
            problems.append(Problem(ra.account_id, "invoice_not_rendered", f"Invoice not rendered: {why}"))
    _set_accounts(done, ["status"])
    _record_problems(run, Stage.FORMATTING, problems)


# Work done before a chunk's transaction, for stages whose work must not hold the chunk's locks.
PREPARERS: dict[tuple[str, str], Callable[[BillingRun, list[int]], None]] = {
    (RunType.NORMAL, Stage.FORMATTING): _format_prepare,
}


PROCESSORS: dict[tuple[str, str], Callable[[BillingRun, list[int]], None]] = {
    (RunType.NORMAL, Stage.RATING): _rate,
    (RunType.NORMAL, Stage.INVOICING): _invoice,
    (RunType.NORMAL, Stage.POSTING): _post,
    (RunType.NORMAL, Stage.FORMATTING): _format,
    (RunType.PREPAID, Stage.RATING): _rate,
    (RunType.PREPAID, Stage.POSTING): _debit,
}


# --- claiming and processing chunks ------------------------------------------------------------------------


def _dead_letter(chunk: RunChunk) -> None:
    """Give up on a chunk: the accounts it had not finished get an exception, and it counts as done."""
    run = BillingRun.objects.get(pk=chunk.run_id)
    # Each account's work commits whole, so the chunk's accounts are either through or still at the
    # stage's starting status.
    start_status = {
        Stage.RATING: None,
        Stage.INVOICING: RunAccount.Status.RATED,
        Stage.POSTING: RunAccount.Status.INVOICED
        if run.run_type == RunType.NORMAL
        else RunAccount.Status.RATED,
        Stage.FORMATTING: RunAccount.Status.POSTED,
    }[chunk.stage]
    if start_status is None:
        done = set(
            RunAccount.objects.filter(run=run, account_id__in=chunk.account_ids).values_list(
                "account_id", flat=True
            )
        )
        waiting = [pk for pk in chunk.account_ids if pk not in done]
    else:
        waiting = list(
            RunAccount.objects.filter(
                run=run, account_id__in=chunk.account_ids, status=start_status
            ).values_list("account_id", flat=True)
        )
    message = (
        f"Gave up after {chunk.attempts} attempts: processing this group of accounts kept failing "
        f"({chunk.last_error[:200] or 'its worker stopped'})."
    )
    _record_problems(run, chunk.stage, [Problem(pk, "dead_letter", message) for pk in waiting])
    chunk.status = RunChunk.Status.DEAD
    chunk.finished_at = timezone.now()
    chunk.save(update_fields=["status", "finished_at"])
    _count_done(chunk)


def _count_done(chunk: RunChunk) -> None:
    RunStep.objects.filter(run_id=chunk.run_id, stage=chunk.stage).update(
        accounts_done=F("accounts_done") + len(chunk.account_ids), chunks_done=F("chunks_done") + 1
    )


def _after_chunk(chunk: RunChunk) -> None:
    """Once this chunk's transaction has committed, queue the coordinator if no chunk of the stage is left
    open. The check runs after the commit: two chunks finishing together each see the other's commit or
    the other sees theirs, so the last one never misses it (both may queue it: the coordinator is
    idempotent)."""
    run_id, stage = chunk.run_id, chunk.stage

    def queue_if_last() -> None:
        left = (
            RunChunk.objects.filter(run_id=run_id, stage=stage)
            .exclude(status__in=[RunChunk.Status.DONE, RunChunk.Status.DEAD])
            .exists()
        )
        if not left:
            from .runs import _dispatch_advance

            try:
                _dispatch_advance(run_id)
            except Exception as exc:  # noqa: BLE001 - the broker is down; the chunk's work is committed
                # Raising here would reach the caller as the chunk's own failure (chunk_process would work
                # the done chunk again account by account). The stalled-run beat job queues the coordinator
                # of every executing run, so the run moves on once the broker is back.
                logger.warning(
                    "Billing run %s: could not queue its coordinator after chunk %s (%s); the stalled-run "
                    "job will.",
                    run_id,
                    chunk.pk,
                    exc,
                )

    transaction.on_commit(queue_if_last)


def chunk_claim(*, chunk_id: int, worker: str = "") -> int | None:
    """Take the chunk for a new attempt; returns the attempt number, or None when it is not to be worked.

    Not worked: done or dead (a claim waits while a live worker's transaction holds the chunk, and then
    finds it done). A chunk that is RUNNING but not locked is taken over: its last attempt's worker died
    (a redelivered message after a crash), or it is between two accounts of its one-by-one path, where it
    checks before each account that it still owns the chunk and stops when it does not. Each claim counts
    an attempt; a chunk already tried ``BILLRUN_CHUNK_MAX_ATTEMPTS`` times is dead-lettered instead.
    """
    with transaction.atomic():
        # Waits while another attempt's work transaction holds the chunk, then sees it done.
        # of=self and no ordering: the model's ordering would join the run and lock its row too.
        chunk = RunChunk.objects.select_for_update(of=("self",)).filter(pk=chunk_id).order_by().first()
        if chunk is None or chunk.status in (RunChunk.Status.DONE, RunChunk.Status.DEAD):
            return None
        if chunk.attempts >= max_attempts():
            _dead_letter(chunk)
            _after_chunk(chunk)
            return None
        now = timezone.now()
        chunk.status = RunChunk.Status.RUNNING
        chunk.attempts += 1
        chunk.started_at = now
        chunk.lease_expires_at = now + _lease()
        chunk.worker = worker[:200]
        chunk.save(update_fields=["status", "attempts", "started_at", "lease_expires_at", "worker"])
        return chunk.attempts


def _owned(chunk_id: int, attempt: int) -> RunChunk | None:
    """Lock the chunk if this attempt still owns it (another attempt may have taken it over)."""
    chunk = RunChunk.objects.select_for_update(of=("self",)).get(pk=chunk_id)
    if chunk.status != RunChunk.Status.RUNNING or chunk.attempts != attempt:
        return None
    return chunk


def _finish(chunk: RunChunk) -> None:
    chunk.status = RunChunk.Status.DONE
    chunk.finished_at = timezone.now()
    chunk.save(update_fields=["status", "finished_at"])
    _count_done(chunk)
    _after_chunk(chunk)


DATABASE_TROUBLE = (OperationalError, InterfaceError)


def chunk_process(*, chunk_id: int, attempt: int) -> str:
    """Do the chunk's work for this attempt (see the module docstring). Returns what happened."""
    _prepare(chunk_id, attempt)
    try:
        with transaction.atomic():
            chunk = _owned(chunk_id, attempt)
            if chunk is None:
                return "taken over"
            run = BillingRun.objects.select_related("definition").get(pk=chunk.run_id)
            PROCESSORS[(run.run_type, chunk.stage)](run, list(chunk.account_ids))
            _finish(chunk)
            return "done"
    except DATABASE_TROUBLE:
        raise  # the database is the problem, not the data: the task retries the whole chunk
    except Exception as exc:  # noqa: BLE001 - one account's data must not stop the chunk's others
        logger.warning("Chunk %s failed as a set (%s); working it account by account.", chunk_id, exc)
        error = f"{type(exc).__name__}: {exc}"
    return _process_one_by_one(chunk_id, attempt, error)


def _prepare(chunk_id: int, attempt: int) -> None:
    """Run the stage's preparer (PREPARERS) if this attempt still owns the chunk. A preparer is idempotent;
    its failure (other than the database's) is left for the processor to find and record per account."""
    chunk = RunChunk.objects.filter(pk=chunk_id, status=RunChunk.Status.RUNNING, attempts=attempt).first()
    if chunk is None:
        return
    run = BillingRun.objects.select_related("definition").get(pk=chunk.run_id)
    prepare = PREPARERS.get((run.run_type, chunk.stage))
    if prepare is None:
        return
    try:
        prepare(run, list(chunk.account_ids))
    except DATABASE_TROUBLE:
        raise
    except Exception:  # noqa: BLE001
        logger.exception("Billing run %s: preparing chunk %s failed", run.number, chunk_id)


def _process_one_by_one(chunk_id: int, attempt: int, error: str) -> str:
    with transaction.atomic():
        chunk = _owned(chunk_id, attempt)
        if chunk is None:
            return "taken over"
        chunk.last_error = error[:2000]
        chunk.save(update_fields=["last_error"])
    account_ids = list(chunk.account_ids)
    run = BillingRun.objects.select_related("definition").get(pk=chunk.run_id)
    process = PROCESSORS[(run.run_type, chunk.stage)]
    for account_id in account_ids:
        with transaction.atomic():
            chunk = _owned(chunk_id, attempt)
            if chunk is None:
                return "taken over"
            RunChunk.objects.filter(pk=chunk_id).update(lease_expires_at=timezone.now() + _lease())
            try:
                with transaction.atomic():
                    process(run, [account_id])
            except DATABASE_TROUBLE:
                raise
            except Exception as exc:  # noqa: BLE001
                logger.exception(
                    "Billing run %s: account %s failed in %s", run.number, account_id, chunk.stage
                )
                detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
                _record_problems(run, chunk.stage, [Problem(account_id, "unexpected_error", detail)])
    with transaction.atomic():
        chunk = _owned(chunk_id, attempt)
        if chunk is None:
            return "taken over"
        _finish(chunk)
    return "done one by one"


def chunk_release(*, chunk_id: int, attempt: int, error: str) -> None:
    """After a failed attempt (the database went away): let the next attempt take the chunk at once."""
    RunChunk.objects.filter(pk=chunk_id, status=RunChunk.Status.RUNNING, attempts=attempt).update(
        status=RunChunk.Status.QUEUED,
        lease_expires_at=None,
        last_error=error[:2000],
        queued_at=timezone.now(),
    )
