"""``manage.py billrun``: create, execute (now, scheduled, --wait), status, resume, unschedule, list; bad
input exits non-zero with the service's message and changes nothing."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import ManagementUtility, call_command
from django.core.management.base import CommandError
from django.utils import timezone

from accounts.models import AccountGroup
from billing_mgmt.models import AuditRecord
from billruns.models import BillingRun, RunType
from billruns.services import billrun_create
from statements.models import Statement
from tests.billruns.runs_helpers import JULY_1, customer, definition, monthly_plan


def billrun(*args: str) -> str:
    out = StringIO()
    call_command("billrun", *args, stdout=out)
    return out.getvalue()


def refused(*args: str) -> str:
    with pytest.raises(CommandError) as error:
        billrun(*args)
    return str(error.value)


def audit_count() -> int:
    return AuditRecord.objects.filter(action__startswith="billrun.").count()


def draft(**values) -> BillingRun:
    return billrun_create(**({"bill_as_of_date": JULY_1, "transaction_date": JULY_1} | values))


@pytest.mark.django_db
def test_create_prints_the_number_of_a_run_with_the_filters_given():
    definition()
    plan = monthly_plan()
    first, _ = customer(plan)
    second, _ = customer(plan)
    AccountGroup.objects.create(code="north", name="North").accounts.add(second)

    output = billrun(
        "create", "--bill-as-of", "2026-07-01", "--transaction-date", "2026-07-03",
        "--account", first.number, "--account", second.number, "--group", "north",
    )  # fmt: skip

    run = BillingRun.objects.get()
    assert output == f"{run.number}\n"
    assert (run.run_type, run.state, run.bill_as_of_date, run.transaction_date) == (
        "normal",
        "draft",
        JULY_1,
        dt.date(2026, 7, 3),
    )
    assert set(run.accounts.all()) == {first, second}
    assert [g.code for g in run.groups.all()] == ["north"]
    record = AuditRecord.objects.get(action="billrun.create")
    assert record.actor_label == "command: manage.py billrun"


@pytest.mark.django_db
def test_create_a_prepaid_run():
    definition(RunType.PREPAID, name="Prepaid daily", bill_as_of_day=None)

    number = billrun("create", "--type", "prepaid").strip()

    run = BillingRun.objects.get(number=number)
    assert (run.run_type, run.bill_as_of_date) == ("prepaid", timezone.localdate())


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--type", "prepaid"],
            "There is no active prepaid run definition: create or activate one in Django admin",
        ),
        (["--account", "A-NOPE", "A-GONE"], "Unknown account numbers: A-NOPE, A-GONE."),
        (["--group", "south"], "Unknown account groups: south."),
        (["--bill-as-of", "01/07/2026"], "'01/07/2026' is not a date: use YYYY-MM-DD."),
        (["--bill-as-of", "2026-02-30"], "'2026-02-30' is not a date: use YYYY-MM-DD."),
        (
            ["--bill-as-of", "2026-07-02", "--transaction-date", "2026-07-01"],
            "The billing run is not valid. (transaction_date: The transaction date cannot be before the "
            "bill-as-of date.)",
        ),
        (["--mode", "individual"], "INDIVIDUAL run bills exactly one account"),
        (["--type", "weekly"], "invalid choice: 'weekly'"),
    ],
)
def test_create_refuses_bad_input_and_stores_nothing(args, message):
    definition()

    assert message in refused("create", *args)
    assert not BillingRun.objects.exists() and audit_count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("state", "execution", "args", "message"),
    [
        ("draft", "idle", ["BR-999999", "--up-to", "rating"], "There is no billing run BR-999999."),
        (
            "draft",
            "idle",
            ["{number}", "--up-to", "billing"],
            "A normal run has no stage 'billing': choose one of Identification & Rating, Invoicing, "
            "Assembling & Posting, Formatting.",
        ),
        ("draft", "idle", ["{number}"], "the following arguments are required: --up-to"),
        ("draft", "idle", ["{number}", "--up-to", "rating", "--at", "soon"], "'soon' is not a date and time"),
        (
            "draft",
            "idle",
            ["{number}", "--up-to", "rating", "--at", "2020-01-01T00:00:00Z"],
            "The scheduled time is in the past.",
        ),
        (
            "completed",
            "idle",
            ["{number}", "--up-to", "formatting"],
            "Run {number} is Completed: it cannot be executed again.",
        ),
        (
            "invoicing",
            "idle",
            ["{number}", "--up-to", "rating"],
            "Run {number} is already executed up to Invoicing: choose a following stage.",
        ),
        ("rating", "running", ["{number}", "--up-to", "posting"], "Run {number} is already executing."),
    ],
)
def test_execute_refuses_with_the_services_message_and_changes_nothing(state, execution, args, message):
    definition()
    run = draft()
    BillingRun.objects.filter(pk=run.pk).update(state=state, execution=execution)
    before = audit_count()

    error = refused("execute", *[a.format(number=run.number) for a in args])

    assert message.format(number=run.number) in error
    run.refresh_from_db()
    assert (run.state, run.execution, run.target_stage, run.scheduled_for) == (state, execution, "", None)
    assert audit_count() == before


@pytest.mark.django_db
def test_scheduled_execution_and_unschedule():
    definition()
    run = draft()
    at = (timezone.now() + dt.timedelta(days=2)).replace(microsecond=0)

    output = billrun("execute", run.number, "--up-to", "posting", "--at", at.isoformat())

    run.refresh_from_db()
    assert (run.execution, run.target_stage, run.scheduled_for) == ("scheduled", "posting", at)
    assert f"Run {run.number} is scheduled to execute up to Assembling & Posting at" in output
    status = billrun("status", run.number)
    assert "execution: Scheduled up to Assembling & Posting" in status and "scheduled for:" in status

    assert billrun("unschedule", run.number) == f"Run {run.number} is no longer scheduled; it stays Draft.\n"
    run.refresh_from_db()
    assert (run.execution, run.scheduled_for, run.target_stage) == ("idle", None, "")
    assert refused("unschedule", run.number) == f"Run {run.number} is not scheduled."
    assert refused("unschedule", "BR-999999") == "There is no billing run BR-999999."


@pytest.mark.django_db
def test_resume_needs_an_executing_run():
    definition()
    run = draft()

    assert refused("resume", run.number) == f"Run {run.number} is not executing: there is nothing to resume."
    BillingRun.objects.filter(pk=run.pk).update(execution=BillingRun.Execution.RUNNING)
    assert billrun("resume", run.number) == f"Run {run.number}: 0 chunk(s) queued again.\n"
    assert AuditRecord.objects.filter(action="billrun.resume").count() == 1


@pytest.mark.django_db
def test_status_and_list():
    definition()
    definition(RunType.PREPAID, name="Prepaid daily", bill_as_of_day=None)
    normal = draft()
    prepaid = draft(run_type=RunType.PREPAID)
    BillingRun.objects.filter(pk=normal.pk).update(
        state=BillingRun.State.COMPLETED_WITH_ERRORS, bills_generated=7, exception_count=2
    )

    status = billrun("status", normal.number)

    assert f"Run {normal.number} (Normal (post-paid: bills), BATCH)" in status
    assert "state: Completed with errors; execution: Idle" in status
    assert "bills generated: 7; exceptions: 2" in status
    assert "bill as of: 2026-07-01; transaction date: 2026-07-01; due-date proximity: +0 days" in status
    for label in ("Identification & Rating", "Invoicing", "Assembling & Posting", "Formatting"):
        assert f"{label:<24} not_started" in status
    assert "wallet transactions: 0" in billrun("status", prepaid.number)
    assert "Invoicing" not in billrun("status", prepaid.number)

    listing = billrun("list").splitlines()
    assert listing[0].split()[:3] == ["number", "type", "state"]
    assert [line.split()[0] for line in listing[1:]] == [prepaid.number, normal.number]
    assert [line.split()[0] for line in billrun("list", "--type", "normal").splitlines()[1:]] == [
        normal.number
    ]
    assert billrun("list", "--state", "failed") == "No billing runs.\n"
    assert refused("status", "BR-999999") == "There is no billing run BR-999999."


@pytest.mark.django_db
def test_a_refusal_exits_with_a_non_zero_status(capsys):
    definition()

    with pytest.raises(SystemExit) as exit_:
        ManagementUtility(["manage.py", "billrun", "status", "BR-999999"]).execute()

    assert exit_.value.code == 1
    assert "There is no billing run BR-999999." in capsys.readouterr().err


@pytest.mark.django_db(transaction=True)
def test_execute_and_wait_prints_progress_until_the_run_is_done(eager):
    definition()
    plan = monthly_plan()
    for _ in range(3):
        customer(plan)
    number = billrun("create", "--bill-as-of", "2026-07-01").strip()

    output = billrun("execute", number, "--up-to", "rating", "--wait", "--poll", "0.1")

    assert f"Run {number} is executing up to Identification & Rating." in output
    assert "state: Identification & Rating; execution: Idle" in output
    assert "Identification & Rating  done        accounts 3/3 (100%), chunks 2/2, made 6" in output

    output = billrun("execute", number, "--up-to", "formatting", "--wait", "--timeout", "30")

    assert "state: Completed; execution: Idle" in output
    assert "bills generated: 3; exceptions: 0" in output
    assert (
        "Assembling & Posting     done        accounts 3/3 (100%), chunks 2/2, made 3, transactions 3"
        in output
    )
    assert "totals 180.0000 USD" in output
    assert Statement.objects.filter(run_account__run__number=number).count() == 3
    assert "cannot be executed again" in refused("execute", number, "--up-to", "formatting")


@pytest.mark.django_db
def test_wait_polls_until_the_run_is_idle_and_gives_up_after_the_timeout(monkeypatch):
    from billruns.management.commands import billrun as command

    definition()
    run = draft()
    sleeps = []

    def worker_finishes(seconds):  # the workers (not running in this test) finish the stage meanwhile
        sleeps.append(seconds)
        BillingRun.objects.filter(pk=run.pk).update(
            state=BillingRun.State.RATING, execution=BillingRun.Execution.IDLE, target_stage=""
        )

    monkeypatch.setattr(command.time, "sleep", worker_finishes)

    output = billrun("execute", run.number, "--up-to", "rating", "--wait", "--poll", "0.5")

    assert sleeps == [0.5]
    assert ": Draft, running\n  Identification & Rating  not_started accounts 0/0 (0%)" in output
    last = "Formatting               not_started accounts 0/0 (0%), chunks 0/0, made 0, "
    last += "transactions 0, exceptions 0"
    assert output.rstrip().endswith(last)
    assert "state: Identification & Rating; execution: Idle" in output

    monkeypatch.setattr(command.time, "sleep", lambda seconds: None)
    BillingRun.objects.filter(pk=run.pk).update(execution=BillingRun.Execution.RUNNING)
    message = refused("execute", run.number, "--up-to", "posting", "--wait", "--timeout", "0.001")
    assert message == f"Run {run.number} is already executing."
    BillingRun.objects.filter(pk=run.pk).update(execution=BillingRun.Execution.IDLE)
    monkeypatch.setattr(command.time, "monotonic", iter(range(0, 1000, 10)).__next__)
    message = refused("execute", run.number, "--up-to", "posting", "--wait", "--timeout", "5")
    assert message == (
        f"Run {run.number} is still running after 5 s; "
        f"follow it with `manage.py billrun status {run.number}`."
    )
