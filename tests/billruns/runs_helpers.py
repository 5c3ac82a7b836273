"""Helpers for billing-run tests: a definition, a small customer base, and running a run to a stage."""

from __future__ import annotations

import datetime as dt

from billruns.models import BillingRun, RunDefinition, RunType
from billruns.services import billrun_create, billrun_execute, run_definition_save
from tests.billruns import builders as b
from tests.factories import AccountFactory

JUNE_1 = dt.date(2026, 6, 1)
JULY_1 = dt.date(2026, 7, 1)


def definition(run_type: str = RunType.NORMAL, **values) -> RunDefinition:
    fields = {
        "name": f"{run_type.title()} monthly",
        "run_type": run_type,
        "bill_as_of_day": 1,
        "due_proximity_min_days": -5,
        "due_proximity_max_days": 10,
        "chunk_size": 2,
    } | values
    return run_definition_save(definition=RunDefinition(**fields))


def customer(plan, start=JUNE_1, *, parent=None, paying=True, **profile):
    """An account with one subscription on the plan (and the profile values given)."""
    account = AccountFactory(parent=parent, is_paying=paying)
    for name, value in profile.items():
        setattr(account.billing_profile, name, value)
    account.billing_profile.save()
    return account, b.subscription(account, plan, start)


def monthly_plan(amount="30.00", currency="USD"):
    plan = b.plan(currency=currency)
    b.recurring(plan, amount)
    return plan


def run_to(stage: str, *, run: BillingRun | None = None, **values) -> BillingRun:
    """Create (unless given) and execute a run up to ``stage`` with eager Celery; return it reloaded."""
    values = {"bill_as_of_date": JULY_1, "transaction_date": JULY_1} | values
    run = run or billrun_create(**values)
    billrun_execute(run=run, up_to=stage)
    run.refresh_from_db()
    return run
