"""Billing runs from the command line (source 001), through the same services as the API and admin.

    manage.py billrun create [--type normal|prepaid] [--mode batch|individual] [--bill-as-of 2026-07-01]
                             [--transaction-date 2026-07-01] [--account A00000042 ...] [--group north ...]
    manage.py billrun execute BR-000042 --up-to posting [--at 2026-07-01T02:00:00+02:00] [--wait]
    manage.py billrun status BR-000042
    manage.py billrun resume BR-000042
    manage.py billrun unschedule BR-000042
    manage.py billrun list [--state completed] [--type prepaid] [--limit 20]

``create`` prints only the new run's number (``RUN=$(manage.py billrun create)``). ``execute --wait`` polls
the database until the run is idle again (the stage reached) or finished, printing each step's progress as
it changes, and exits non-zero when the run ends Failed. Anything the services refuse (an unknown run or
stage, an action the run's state does not allow, a date outside the definition's rules) exits non-zero
with the service's message, and nothing is changed.
"""

from __future__ import annotations

import datetime as dt
import time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from accounts.models import Account, AccountGroup
from billing_mgmt.errors import ApplicationError
from billruns.models import BillingRun, RunType, Stage
from billruns.selectors import billrun_progress
from billruns.services import (
    billrun_create,
    billrun_execute,
    billrun_resume,
    billrun_unschedule,
)

ACTOR = "command: manage.py billrun"


def _error(exc: ApplicationError) -> CommandError:
    details = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.fields.items())
    if details and details not in exc.message:
        return CommandError(f"{exc.message} ({details})")
    return CommandError(exc.message)


def _date(value: str) -> dt.date:
    try:
        parsed = parse_date(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise CommandError(f"'{value}' is not a date: use YYYY-MM-DD.")
    return parsed


def _datetime(value: str) -> dt.datetime:
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise CommandError(f"'{value}' is not a date and time: use ISO 8601, e.g. 2026-07-01T02:00:00+02:00.")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)  # in the business's zone (TIME_ZONE)
    return parsed


def _run(number: str) -> BillingRun:
    run = BillingRun.objects.filter(number=number).first()
    if run is None:
        raise CommandError(f"There is no billing run {number}.")
    return run


def _named(model, field: str, values: list[str], label: str) -> list:
    wanted = list(dict.fromkeys(values))
    found = {getattr(row, field): row for row in model.objects.filter(**{f"{field}__in": wanted})}
    unknown = [value for value in wanted if value not in found]
    if unknown:
        raise CommandError(f"Unknown {label}: {', '.join(unknown)}.")
    return [found[value] for value in wanted]


def _when(value: dt.datetime | None) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z") if value else "-"


class Command(BaseCommand):
    help = "Create, execute, follow, resume and list billing runs (docs/api.md, 'Billing runs')."

    def add_arguments(self, parser):
        commands = parser.add_subparsers(dest="subcommand", required=True, metavar="subcommand")

        create = commands.add_parser("create", help="Create a Draft run from the active definition.")
        create.add_argument("--type", dest="run_type", choices=RunType.values, default=RunType.NORMAL)
        create.add_argument("--mode", choices=BillingRun.Mode.values, help="batch (default) or individual.")
        create.add_argument("--bill-as-of", dest="bill_as_of_date", type=str, help="YYYY-MM-DD.")
        create.add_argument("--transaction-date", dest="transaction_date", type=str, help="YYYY-MM-DD.")
        create.add_argument(
            "--account", dest="accounts", action="extend", nargs="+", default=[], metavar="NUMBER",
            help="Only these accounts (their bill units); repeat or list several.",
        )  # fmt: skip
        create.add_argument(
            "--group", dest="groups", action="extend", nargs="+", default=[], metavar="CODE",
            help="Only the accounts of these groups; repeat or list several.",
        )  # fmt: skip

        execute = commands.add_parser("execute", help="Execute a run up to a stage, now or at a time.")
        execute.add_argument("number")
        execute.add_argument("--up-to", dest="up_to", required=True, metavar="STAGE", help=self._stages())
        execute.add_argument("--at", help="Start at this ISO 8601 date-time instead of now (schedules it).")
        execute.add_argument(
            "--wait", action="store_true", help="Wait until the run is idle or finished, printing progress."
        )
        execute.add_argument(
            "--poll", type=float, default=2.0, help="Seconds between progress reads with --wait (2)."
        )
        execute.add_argument(
            "--timeout", type=float, default=0, help="Give up waiting after this many seconds (0: never)."
        )

        status = commands.add_parser("status", help="A run's state, results per step and exceptions.")
        status.add_argument("number")

        resume = commands.add_parser("resume", help="Queue again the lost work of an executing run.")
        resume.add_argument("number")

        unschedule = commands.add_parser("unschedule", help="Cancel a run's scheduled execution.")
        unschedule.add_argument("number")

        listing = commands.add_parser("list", help="The latest runs, newest first.")
        listing.add_argument("--state", choices=BillingRun.State.values)
        listing.add_argument("--type", dest="run_type", choices=RunType.values)
        listing.add_argument("--limit", type=int, default=20)

    @staticmethod
    def _stages() -> str:
        names = ", ".join(f"{value} ({label})" for value, label in Stage.choices)
        return f"One of {names}; prepaid runs have rating and posting."

    def handle(self, *args, subcommand: str, **options):
        try:
            getattr(self, f"do_{subcommand}")(**options)
        except ApplicationError as exc:
            raise _error(exc) from None

    # --- subcommands ---------------------------------------------------------------------------------------

    def do_create(self, *, run_type, mode, bill_as_of_date, transaction_date, accounts, groups, **_):
        values: dict = {}
        if mode:
            values["mode"] = mode
        if bill_as_of_date:
            values["bill_as_of_date"] = _date(bill_as_of_date)
        if transaction_date:
            values["transaction_date"] = _date(transaction_date)
        if accounts:
            values["accounts"] = _named(Account, "number", accounts, "account numbers")
        if groups:
            values["groups"] = _named(AccountGroup, "code", groups, "account groups")
        run = billrun_create(run_type=run_type, actor=ACTOR, **values)
        self.stdout.write(run.number)

    def do_execute(self, *, number, up_to, at, wait, poll, timeout, **_):
        run = _run(number)
        when = _datetime(at) if at else None
        run = billrun_execute(run=run, up_to=up_to, at=when, actor=ACTOR)
        if run.execution == BillingRun.Execution.SCHEDULED:
            self.stdout.write(
                f"Run {run.number} is scheduled to execute up to {Stage(up_to).label} at "
                f"{_when(run.scheduled_for)}."
            )
        else:
            self.stdout.write(f"Run {run.number} is executing up to {Stage(up_to).label}.")
        if wait:
            self._wait(run, poll=max(poll, 0.05), timeout=timeout)

    def do_status(self, *, number, **_):
        run = _run(number)
        self._status(run)

    def do_resume(self, *, number, **_):
        queued = billrun_resume(run=_run(number), actor=ACTOR, force=True)
        self.stdout.write(f"Run {number}: {queued} chunk(s) queued again.")

    def do_unschedule(self, *, number, **_):
        run = billrun_unschedule(run=_run(number), actor=ACTOR)
        self.stdout.write(f"Run {run.number} is no longer scheduled; it stays {run.get_state_display()}.")

    def do_list(self, *, state, run_type, limit, **_):
        runs = BillingRun.objects.order_by("-created_at", "-id")
        if state:
            runs = runs.filter(state=state)
        if run_type:
            runs = runs.filter(run_type=run_type)
        rows = list(runs[: max(limit, 1)])
        if not rows:
            self.stdout.write("No billing runs.")
            return
        self.stdout.write(
            f"{'number':<12} {'type':<8} {'state':<24} {'execution':<10} {'bill as of':<10} "
            f"{'bills':>6} {'wallet tx':>9} {'exceptions':>10}"
        )
        for run in rows:
            self.stdout.write(
                f"{run.number:<12} {run.run_type:<8} {run.get_state_display():<24} {run.execution:<10} "
                f"{run.bill_as_of_date.isoformat():<10} {run.bills_generated:>6} "
                f"{run.wallet_transactions:>9} {run.exception_count:>10}"
            )

    # --- output --------------------------------------------------------------------------------------------

    def _step_lines(self, run: BillingRun) -> list[str]:
        lines = []
        for step in billrun_progress(run=run):
            totals = ", ".join(f"{amount} {currency}" for currency, amount in sorted(step.totals.items()))
            line = (
                f"  {step.label:<24} {step.status:<11} accounts {step.accounts_done}/{step.accounts_total} "
                f"({step.percent}%), chunks {step.chunks_done}/{step.chunks_total}"
            )
            if step.chunks_dead:
                line += f" ({step.chunks_dead} dead)"
            line += f", made {step.entities}, transactions {step.transactions}, exceptions {step.exceptions}"
            if totals:
                line += f", totals {totals}"
            if step.note:
                line += f" - {step.note}"
            lines.append(line)
        return lines

    def _status(self, run: BillingRun) -> None:
        target = f" up to {Stage(run.target_stage).label}" if run.target_stage else ""
        self.stdout.write(f"Run {run.number} ({run.get_run_type_display()}, {run.get_mode_display()})")
        execution = run.get_execution_display()
        self.stdout.write(f"  state: {run.get_state_display()}; execution: {execution}{target}")
        if run.scheduled_for:
            self.stdout.write(f"  scheduled for: {_when(run.scheduled_for)}")
        self.stdout.write(
            f"  bill as of: {run.bill_as_of_date}; transaction date: {run.transaction_date}; "
            f"due-date proximity: {run.due_date_proximity:+d} days"
        )
        self.stdout.write(f"  started: {_when(run.started_at)}; finished: {_when(run.finished_at)}")
        made = (
            f"wallet transactions: {run.wallet_transactions}"
            if run.run_type == RunType.PREPAID
            else f"bills generated: {run.bills_generated}"
        )
        self.stdout.write(
            f"  accounts selected: {run.accounts_selected}; {made}; exceptions: {run.exception_count}"
        )
        if run.last_error:
            self.stdout.write(f"  last error: {run.last_error}")
        self.stdout.write("  results per step:")
        for line in self._step_lines(run):
            self.stdout.write(f"  {line}")

    def _wait(self, run: BillingRun, *, poll: float, timeout: float) -> None:
        started = time.monotonic()
        shown: list[str] = []
        while True:
            run.refresh_from_db()
            if run.execution == BillingRun.Execution.IDLE or run.is_terminal:
                break  # the status below shows the final results
            lines = self._step_lines(run)
            if lines != shown:
                self.stdout.write(f"{_when(timezone.now())}: {run.get_state_display()}, {run.execution}")
                for line in lines:
                    self.stdout.write(line)
                shown = lines
            if timeout and time.monotonic() - started > timeout:
                raise CommandError(
                    f"Run {run.number} is still {run.execution} after {timeout:g} s; follow it with "
                    f"`manage.py billrun status {run.number}`."
                )
            time.sleep(poll)
        self._status(run)
        if run.state == BillingRun.State.FAILED:
            raise CommandError(
                f"Run {run.number} failed: {run.exception_count} exception(s), nothing billed."
            )
