"""A billing run end to end (Celery eager): stages, bills, exceptions, results."""

from __future__ import annotations

import pytest

from billruns.models import BillingRun, RunAccount, RunChunk, RunStep, Stage
from invoicing.models import Invoice
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
    # Formatting issued and rendered one invoice per bill, numbered without gaps.
    assert steps[Stage.FORMATTING].entities == 3
    invoices = Invoice.objects.filter(statement__in=bills).order_by("number")
    assert [i.status for i in invoices] == [Invoice.Status.RENDERED] * 3
    assert [i.number for i in invoices] == ["INV-00000001", "INV-00000002", "INV-00000003"]
    assert all(i.pdf.read(4) == b"%PDF" for i in invoices)
    assert set(RunAccount.objects.filter(run=run).values_list("status", flat=True)) == {"formatted"}
    assert FinancialTransaction.objects.filter(kind="bill").count() == 3


def test_formatting_has_units_of_work_of_its_own_size(eager):
    """Billing's chunks are the definition's chunk_size; Formatting re-cuts the same bill units, in the same
    order, by formatting_chunk_size (rendering costs far more per bill than billing it)."""
    definition(chunk_size=2, formatting_chunk_size=1)
    plan = monthly_plan()
    accounts = [customer(plan)[0] for _ in range(3)]
    run = run_to(Stage.FORMATTING)
    assert run.state == BillingRun.State.COMPLETED
    chunks = {
        stage: list(
            RunChunk.objects.filter(run=run, stage=stage)
            .order_by("index")
            .values_list("account_ids", flat=True)
        )
        for stage in (Stage.POSTING, Stage.FORMATTING)
    }
    assert [len(ids) for ids in chunks[Stage.POSTING]] == [2, 1]
    assert chunks[Stage.FORMATTING] == [[unit] for ids in chunks[Stage.POSTING] for unit in ids]
    assert sorted(unit for (unit,) in chunks[Stage.FORMATTING]) == sorted(a.pk for a in accounts)
    assert RunStep.objects.get(run=run, stage=Stage.FORMATTING).chunks_total == 3
    assert Invoice.objects.filter(status=Invoice.Status.RENDERED).count() == 3
