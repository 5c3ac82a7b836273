"""Invoicing inside billing runs and the daily catch-up: every bill ends with rendered documents."""

from __future__ import annotations

import pytest

from billruns.models import BillingRun, RunAccount, RunException, RunStep, Stage
from invoicing.models import Invoice
from invoicing.services import invoices_render
from statements.models import Statement
from tests.billruns.runs_helpers import customer, definition, monthly_plan, run_to

from .builders import source_example_bill

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_render_failure_is_an_exception_of_the_run_and_the_catch_up_renders_it(eager, monkeypatch):
    from invoicing.services import rendering
    from invoicing.tasks import catch_up_invoices

    definition()
    plan = monthly_plan()
    accounts = [customer(plan)[0] for _ in range(3)]
    broken = accounts[1]
    real = rendering.render_document

    def flaky(document):
        if document.customer.number == broken.number:
            raise RuntimeError("font cache is gone")
        return real(document)

    monkeypatch.setattr(rendering, "render_document", flaky)
    run = run_to(Stage.FORMATTING)
    assert run.state == BillingRun.State.COMPLETED_WITH_ERRORS
    [problem] = RunException.objects.filter(run=run)
    assert (problem.account_id, problem.stage, problem.code) == (
        broken.pk,
        Stage.FORMATTING,
        "invoice_not_rendered",
    )
    assert "font cache is gone" in problem.message
    assert RunStep.objects.get(run=run, stage=Stage.FORMATTING).entities == 2
    failed = Invoice.objects.get(account=broken)
    assert failed.status == Invoice.Status.FAILED and failed.number  # it keeps its number
    # The bill is posted whatever its invoice: only the document is missing.
    assert RunAccount.objects.get(run=run, account=broken).statement_id == failed.statement_id

    monkeypatch.setattr(rendering, "render_document", real)
    assert catch_up_invoices() == {"bills": 1, "tasks": 1}
    failed.refresh_from_db()
    assert failed.status == Invoice.Status.RENDERED and failed.render_attempts == 2
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == ["INV-00000001", "INV-00000002", "INV-00000003"]


def test_catch_up_invoices_bills_made_outside_runs(eager):
    from invoicing.tasks import catch_up_invoices

    bills = [source_example_bill(email=f"c{i}@example.com") for i in range(3)]
    assert catch_up_invoices() == {"bills": 3, "tasks": 1}
    assert Invoice.objects.filter(status=Invoice.Status.RENDERED).count() == 3
    assert catch_up_invoices() == {"bills": 0, "tasks": 0}
    assert {i.statement_id for i in Invoice.objects.all()} == {b.pk for b in bills}


def test_an_issued_invoice_never_changes_rendering_again_or_after_a_template_change():
    from invoicing.models import InvoiceTemplate

    template = InvoiceTemplate.objects.create(code="std", name="Standard", footer_text="Old footer")
    statement = source_example_bill()
    invoices_render(statement_ids=[statement.pk])
    invoice = Invoice.objects.get(statement=statement)
    assert invoice.template == template
    first = (invoice.pdf.name, invoice.pdf_sha256, invoice.rendered_at)
    stored = invoice.pdf.read()
    template.footer_text, template.accent_color = "New footer", "#aa0000"
    template.save()
    invoices_render(statement_ids=[statement.pk])
    invoice.refresh_from_db()
    assert (invoice.pdf.name, invoice.pdf_sha256, invoice.rendered_at) == first
    invoice.pdf.open("rb")
    assert invoice.pdf.read() == stored
    assert Statement.objects.count() == 1


def test_the_database_refuses_to_change_or_delete_an_issued_invoice():
    from django.db import DatabaseError, transaction

    statement = source_example_bill()
    invoices_render(statement_ids=[statement.pk])
    invoice = Invoice.objects.get(statement=statement)
    changes = [
        {"number": "INV-99999999"},
        {"total_due": "1.00"},
        {"invoice_date": "2020-01-01"},
        {"pdf": "other.pdf"},
        {"pdf_sha256": "0" * 64},
        {"status": Invoice.Status.FAILED},
    ]
    for change in changes:
        with pytest.raises(DatabaseError), transaction.atomic():
            Invoice.objects.filter(pk=invoice.pk).update(**change)
    with pytest.raises(DatabaseError), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).delete()
    # What may still change: the rendering bookkeeping.
    assert Invoice.objects.filter(pk=invoice.pk).update(render_error="") == 1
    invoice.refresh_from_db()
    assert invoice.number == "INV-00000001" and invoice.status == Invoice.Status.RENDERED
