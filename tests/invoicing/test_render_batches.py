"""Rendering in batches (invoicing.services.rendering): a render batch's documents are stored in one
transaction and a fixed number of queries, its deliveries start with one call, and an invoice stored by
another renderer meanwhile keeps its own documents."""

from __future__ import annotations

import hashlib

import pytest
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing_mgmt.models import AuditRecord
from invoicing.models import Invoice, InvoiceDelivery
from invoicing.services import invoices_issue, invoices_render, rendering
from invoicing.services.delivery import deliveries_queue
from tests.concurrency import run_in_threads

from .builders import source_example_bill

pytestmark = pytest.mark.django_db

Status, Method = InvoiceDelivery.Status, InvoiceDelivery.Method


def _bills(count: int, *, start: int = 0) -> list:
    """Bills of accounts that alternate between the portal and e-mail (both delivery paths)."""
    return [
        source_example_bill(
            email=f"batch{i}@example.com", presentment="portal" if i % 2 else "email", name=f"Customer {i}"
        )
        for i in range(start, start + count)
    ]


def _render_queries(bills, capture) -> int:
    with CaptureQueriesContext(connection) as queries, capture(execute=False):
        result = invoices_render(statement_ids=[b.pk for b in bills], actor="test")
    assert sorted(result.rendered) == sorted(b.pk for b in bills) and not result.failed
    return len(queries)


def test_a_render_batch_runs_a_fixed_number_of_queries(django_capture_on_commit_callbacks):
    """Issuing, reading, storing and delivering: the same queries for 2 invoices as for 6."""
    _render_queries(_bills(1, start=90), django_capture_on_commit_callbacks)  # the default series is made
    two = _render_queries(_bills(2), django_capture_on_commit_callbacks)
    six = _render_queries(_bills(6, start=2), django_capture_on_commit_callbacks)
    assert two == six == 30  # audit records go by COPY, which the count does not see


def test_a_render_batch_stores_every_invoice_once_and_delivers_it(eager, django_capture_on_commit_callbacks):
    bills = _bills(4)
    with django_capture_on_commit_callbacks(execute=True):
        invoices_render(statement_ids=[b.pk for b in bills], actor="test")
    invoices = list(Invoice.objects.filter(statement__in=bills).order_by("pk"))
    assert {i.status for i in invoices} == {Invoice.Status.RENDERED}
    assert {i.render_attempts for i in invoices} == {1}
    for invoice in invoices:
        for extension in ("pdf", "html", "xml"):
            assert getattr(invoice, extension).name == invoice.document_path(extension)
            assert getattr(invoice, f"{extension}_sha256")
    assert [i.page_count for i in invoices] == [1] * 4
    deliveries = InvoiceDelivery.objects.filter(invoice__in=invoices)
    assert {(d.method, d.status) for d in deliveries} == {
        (Method.PORTAL, Status.SENT),
        (Method.EMAIL, Status.SENT),
    }
    assert len(mail.outbox) == 2
    assert AuditRecord.objects.filter(action="invoice_delivery.sent").count() == 4


def test_an_invoice_stored_by_another_renderer_meanwhile_keeps_its_documents(
    eager, monkeypatch, django_capture_on_commit_callbacks
):
    """While this batch draws its PDFs, another renderer stores one of its invoices: the batch stores the
    others and leaves that one (its files, attempts and deliveries) as the other renderer made it."""
    bills = _bills(3)
    invoices_issue(statement_ids=[b.pk for b in bills])
    taken = bills[1]
    real = rendering.render_document

    rivals: list[str] = []

    def with_a_rival(document):
        if document.statement_number == taken.number and not rivals:
            rivals.append(document.number)
            invoices_render(statement_ids=[taken.pk], actor="rival")
        return real(document)

    monkeypatch.setattr(rendering, "render_document", with_a_rival)
    with django_capture_on_commit_callbacks(execute=True):
        result = invoices_render(statement_ids=[b.pk for b in bills], actor="test")
    assert sorted(result.rendered) == sorted(b.pk for b in bills) and rivals
    rival = Invoice.objects.get(statement=taken)
    assert rival.render_attempts == 1
    with rival.pdf.open("rb") as stored:
        assert hashlib.sha256(stored.read()).hexdigest() == rival.pdf_sha256
    assert set(Invoice.objects.filter(statement__in=bills).values_list("status", flat=True)) == {"rendered"}
    # Each routing delivered once: the portal one of the rival's invoice and two e-mails of the others.
    assert AuditRecord.objects.filter(action="invoice_delivery.sent").count() == 3
    assert len(mail.outbox) == 2


@pytest.mark.django_db(transaction=True)
def test_two_renderers_of_the_same_bills_at_once_store_each_invoice_once():
    bills = [source_example_bill(email=f"t{i}@example.com", presentment="portal") for i in range(4)]

    def render(i: int):
        return invoices_render(statement_ids=[b.pk for b in bills], actor=f"renderer {i}")

    results, errors = run_in_threads(render, 2)
    assert errors == []
    assert all(sorted(r.rendered) == sorted(b.pk for b in bills) for r in results)
    invoices = Invoice.objects.filter(statement__in=bills)
    assert {(i.status, i.render_attempts) for i in invoices} == {(Invoice.Status.RENDERED, 1)}
    assert AuditRecord.objects.filter(action="invoice_delivery.sent").count() == 4
    assert InvoiceDelivery.objects.filter(status=Status.SENT).count() == 4


def test_deliveries_of_many_invoices_start_in_one_call(django_capture_on_commit_callbacks):
    """Portal routings are delivered and e-mails queued for all the invoices at once: as many queries for
    four invoices as for two."""
    bills = _bills(6)
    invoices = invoices_issue(statement_ids=[b.pk for b in bills])
    counts = []
    for part in (invoices[:2], invoices[2:]):
        with (
            django_capture_on_commit_callbacks(execute=False) as queued,
            CaptureQueriesContext(connection) as q,
        ):
            deliveries_queue(invoice_ids=[i.pk for i in part])
        assert len(queued) == len(part) // 2  # one e-mail task per e-mail routing
        counts.append(len(q))
    assert counts == [3, 3]  # portal routings locked and marked sent, their audit records (COPY), e-mails
    portal = InvoiceDelivery.objects.filter(invoice__in=invoices, method=Method.PORTAL)
    assert {(d.status, d.attempts) for d in portal} == {(Status.SENT, 1)} and portal.count() == 3
    assert set(
        AuditRecord.objects.filter(action="invoice_delivery.sent").values_list("object_id", flat=True)
    ) == {str(d.pk) for d in portal}
    with django_capture_on_commit_callbacks(execute=False) as again, CaptureQueriesContext(connection) as q:
        deliveries_queue(invoice_ids=[i.pk for i in invoices])  # portal: nothing left; e-mails still pending
    assert len(again) == 3 and len(q) == 2
    with CaptureQueriesContext(connection) as q:
        deliveries_queue(invoice_ids=[])
    assert len(q) == 0
