"""Issuing invoices: one per bill, gapless numbers per legal entity's series, routings, credit notes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from invoicing.content import invoice_documents, payment_reference
from invoicing.models import Invoice, InvoiceDelivery
from invoicing.services import invoices_issue

from .builders import hierarchy_bill, source_example_bill

pytestmark = pytest.mark.django_db


def test_issue_numbers_one_invoice_per_bill_and_is_idempotent():
    statement = source_example_bill()
    [invoice] = invoices_issue(statement_ids=[statement.pk], actor="test")
    assert invoice.number == "INV-00000001"
    assert invoice.format == Invoice.Format.DETAILED
    assert invoices_issue(statement_ids=[statement.pk]) == []
    assert Invoice.objects.count() == 1
    delivery = InvoiceDelivery.objects.get(invoice=invoice)
    assert (delivery.method, delivery.recipient) == ("email", "ada@example.com")


def test_issuing_takes_a_fixed_number_of_queries():
    """The invoices of a set of bills are inserted together: as many queries for five bills as for one."""
    invoices_issue(statement_ids=[source_example_bill(email="first@example.com").pk])  # makes the series
    counts = []
    for size in (1, 5):
        bills = [source_example_bill(email=f"q{size}-{i}@example.com").pk for i in range(size)]
        with CaptureQueriesContext(connection) as queries:
            assert len(invoices_issue(statement_ids=bills)) == size
        counts.append(len(queries))
    assert counts[0] == counts[1]
    assert Invoice.objects.filter(number__in=[f"INV-{n:08d}" for n in range(1, 8)]).count() == 7


def test_document_of_the_source_example():
    statement = source_example_bill()
    [invoice] = invoices_issue(statement_ids=[statement.pk])
    doc = invoice_documents([invoice])[statement.pk]
    totals = doc.charge_totals
    assert (totals.gross, totals.discounts, totals.taxes, totals.total) == (
        Decimal("348.00"),
        Decimal("-25.20"),
        Decimal("32.28"),
        Decimal("355.08"),
    )
    assert doc.total_due == Decimal("355.08")
    assert [a.amount for a in doc.payments_list] == [Decimal("-100.00")]
    assert doc.balances[0].remaining == Decimal(220)
    assert doc.messages == ["Thank you for being a customer."]
    assert doc.payment_reference == payment_reference(invoice.number)


def test_consolidated_document_has_a_section_per_child():
    statement = hierarchy_bill()
    [invoice] = invoices_issue(statement_ids=[statement.pk])
    doc = invoice_documents([invoice])[statement.pk]
    assert [c.summarized for c in doc.children] == [False, False, True]
    assert [c.total for c in doc.children] == [Decimal("20.00"), Decimal("20.00"), Decimal("600.00")]
    assert len(doc.services) == 1


def test_a_series_per_account_type_numbers_on_its_own_counter():
    from accounts.models import Account
    from invoicing.services import invoice_series_create

    invoice_series_create(code="biz", legal_name="Acme Business Ltd", account_type="business", prefix="B-")
    consumer = source_example_bill()
    business = source_example_bill(name="Firm", type=Account.Type.BUSINESS, email="firm@example.com")
    issued = {i.statement_id: i for i in invoices_issue(statement_ids=[consumer.pk, business.pk])}
    assert issued[consumer.pk].number == "INV-00000001"
    assert issued[business.pk].number == "B-00000001"
    assert issued[business.pk].series.legal_name == "Acme Business Ltd"


def test_a_rolled_back_issue_gives_its_number_back():
    from django.db import transaction

    first, second = source_example_bill(), source_example_bill(email="b@example.com")
    with pytest.raises(RuntimeError), transaction.atomic():
        invoices_issue(statement_ids=[first.pk])
        raise RuntimeError("the caller failed after issuing")
    assert not Invoice.objects.exists()
    [invoice] = invoices_issue(statement_ids=[second.pk])
    assert invoice.number == "INV-00000001"


def test_external_billers_statements_are_not_invoiced(biller_factory):
    statement = source_example_bill()
    statement.biller = biller_factory(code="telco")
    statement.save(update_fields=["biller"])
    assert invoices_issue(statement_ids=[statement.pk]) == []


@pytest.mark.django_db(transaction=True)
def test_numbering_is_gapless_under_concurrent_issuing():
    """Eight issuers at once, each for its own three bills, one of them rolling back: every committed invoice
    has a number, the numbers are 1..N without a gap or a repeat."""
    from django.db import transaction

    from tests.concurrency import Rollback, run_in_threads

    bills = [[source_example_bill(email=f"c{i}-{j}@example.com").pk for j in range(3)] for i in range(8)]

    def issue(i: int):
        with transaction.atomic():
            made = invoices_issue(statement_ids=bills[i])
            if i == 3:
                raise Rollback
            return [inv.number for inv in made]

    results, errors = run_in_threads(issue, 8)
    assert errors == []
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert len(numbers) == 21
    assert numbers == [f"INV-{n:08d}" for n in range(1, 22)]
    assert sorted(n for r in results for n in r) == numbers


def test_a_reversed_bill_gets_a_credit_note_that_refers_to_the_original(django_capture_on_commit_callbacks):
    from billruns.services import bill_reverse
    from statements.models import FinancialTransaction

    original = source_example_bill()
    [invoice] = invoices_issue(statement_ids=[original.pk])
    with django_capture_on_commit_callbacks(execute=False):
        reversal = bill_reverse(statement=original, reason="Billed twice by mistake", actor="test")
    assert (reversal.new_charges, reversal.taxes) == (Decimal("-322.80"), Decimal("-32.28"))
    assert reversal.previous_balance == Decimal("355.08")
    assert reversal.total_due == Decimal("0.00")
    row = FinancialTransaction.objects.get(kind="reversal", statement=reversal)
    assert row.amount == Decimal("-355.08")
    assert row.corrects.kind == "bill" and row.corrects.statement_id == original.pk
    [note] = invoices_issue(statement_ids=[reversal.pk])
    assert note.kind == Invoice.Kind.CREDIT_NOTE
    assert note.corrects == invoice
    doc = invoice_documents([note])[reversal.pk]
    assert doc.is_credit_note and doc.corrects_number == invoice.number
    assert doc.charge_totals.total == Decimal("-355.08")


def test_a_credit_note_issues_the_original_invoice_first(django_capture_on_commit_callbacks):
    from billruns.services import bill_reverse

    original = source_example_bill()
    with django_capture_on_commit_callbacks(execute=False):
        reversal = bill_reverse(statement=original, reason="Wrong plan")
    made = {i.statement_id: i for i in invoices_issue(statement_ids=[reversal.pk])}
    assert made[original.pk].number == "INV-00000001"
    assert made[reversal.pk].number == "INV-00000002"
    assert made[reversal.pk].corrects == made[original.pk]


def test_reversal_refusals_change_nothing(biller_factory, django_capture_on_commit_callbacks):
    from billing_mgmt.errors import ApplicationError, Conflict
    from billruns.services import bill_reverse
    from statements.models import Statement

    original = source_example_bill()
    with pytest.raises(ApplicationError) as no_reason:
        bill_reverse(statement=original, reason="  ")
    assert no_reason.value.code == "reason_required"
    with django_capture_on_commit_callbacks(execute=False):
        reversal = bill_reverse(statement=original, reason="Wrong plan")
    with pytest.raises(Conflict) as twice:
        bill_reverse(statement=original, reason="again")
    assert twice.value.code == "already_reversed"
    with pytest.raises(ApplicationError) as of_correction:
        bill_reverse(statement=reversal, reason="undo")
    assert of_correction.value.code == "is_correction"
    external = source_example_bill(email="x@example.com")
    external.biller = biller_factory(code="other")
    external.save(update_fields=["biller"])
    with pytest.raises(ApplicationError) as not_ours:
        bill_reverse(statement=external, reason="no")
    assert not_ours.value.code == "not_engine_bill"
    assert Statement.objects.filter(corrects__isnull=False).count() == 1


def test_catch_up_finds_bills_without_rendered_documents():
    from invoicing.services.catchup import bills_without_documents, catch_up_batches

    never, failed, done = (
        source_example_bill(),
        source_example_bill(email="f@x.com"),
        source_example_bill(email="d@x.com"),
    )
    issued = {i.statement_id: i for i in invoices_issue(statement_ids=[failed.pk, done.pk])}
    Invoice.objects.filter(pk=issued[failed.pk].pk).update(status=Invoice.Status.FAILED, render_error="boom")
    Invoice.objects.filter(pk=issued[done.pk].pk).update(
        status=Invoice.Status.RENDERED, pdf="x.pdf", html="x.html", xml="x.xml"
    )
    assert bills_without_documents() == sorted([never.pk, failed.pk])
    assert catch_up_batches() == [sorted([never.pk, failed.pk])]


def test_a_second_series_may_not_reuse_a_prefix():
    from billing_mgmt.errors import ApplicationError
    from invoicing.services import default_series, invoice_series_create

    default_series()  # INV-
    with pytest.raises(ApplicationError) as refused:
        invoice_series_create(code="sub", legal_name="Subsidiary", account_type="business", prefix="INV-")
    assert refused.value.code == "prefix_in_use" and "prefix" in refused.value.fields
