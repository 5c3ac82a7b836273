"""A billing run end to end (Celery eager): stages, bills, exceptions, results."""

from __future__ import annotations

import pytest

from billruns.models import BillingRun, RunStep, Stage
from statements.models import FinancialTransaction, Statement
from tests.billruns import builders as b
from tests.billruns.runs_helpers import customer, definition, monthly_plan, run_to

pytestmark = pytest.mark.django_db(transaction=True)
D = b.D


@pytest.fixture
def base(eager):
    definition()
    plan = monthly_plan()
    accounts = [customer(plan)[0] for _ in range(3)]
    return accounts


def test_a_run_up_to_formatting_bills_every_account_once(base):
    run = run_to(Stage.FORMATTING)
    assert run.state == BillingRun.State.COMPLETED
    assert run.execution == BillingRun.Execution.IDLE
    assert run.bills_generated == 3
    bills = Statement.objects.filter(run_account__run=run)
    assert sorted(bills.values_list("account_id", flat=True)) == sorted(a.pk for a in base)
    # June in advance and July in advance: 60.00 each
    assert set(bills.values_list("new_charges", flat=True)) == {D("60.00")}
    steps = {s.stage: s for s in RunStep.objects.filter(run=run)}
    assert steps[Stage.POSTING].transactions == 3
    assert steps[Stage.POSTING].totals == {"USD": "180.0000"}
    assert "No invoice documents were rendered" in steps[Stage.FORMATTING].note
    assert FinancialTransaction.objects.filter(kind="bill").count() == 3
