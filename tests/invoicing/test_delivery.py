"""Delivering invoices (bill routing): e-mail with the PDF (retried, sent once), print batches, the portal."""

from __future__ import annotations

import datetime as dt
import io
import smtplib
import time

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.utils import timezone
from pypdf import PdfReader

from accounts.models import Contact
from billing_mgmt.errors import ApplicationError
from billing_mgmt.models import AuditRecord
from invoicing.models import Invoice, InvoiceDelivery, InvoicingSettings, PrintBatch
from invoicing.services import invoices_issue, invoices_render
from invoicing.services.delivery import (
    deliveries_retry_due,
    delivery_retry,
    delivery_send_email,
    print_batch_build,
)
from invoicing.tasks import build_print_batch, send_invoice_email
from tests import factories
from tests.concurrency import run_in_threads

from .builders import hierarchy_bill, source_example_bill

pytestmark = pytest.mark.django_db

LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
Status, Method = InvoiceDelivery.Status, InvoiceDelivery.Method


class FailingBackend(BaseEmailBackend):
    """A mail server that is down."""

    def send_messages(self, email_messages):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


class SlowBackend(LocmemBackend):
    """A mail server that takes its time (so that two senders overlap)."""

    def send_messages(self, messages):
        time.sleep(0.5)
        return super().send_messages(messages)


@pytest.fixture
def locmem(settings):
    settings.EMAIL_BACKEND = LOCMEM
    settings.PAYMENT_URL = "https://pay.example.test/"
    settings.SUPPORT_CONTACT = "help@example.test"
    mail.outbox = []


@pytest.fixture
def render(eager, django_capture_on_commit_callbacks):
    """Render bills' invoices as a Formatting step does; the queued e-mail tasks run (eagerly) after it."""

    def run(*statements):
        with django_capture_on_commit_callbacks(execute=True):
            result = invoices_render(statement_ids=[s.pk for s in statements], actor="test")
        assert not result.failed
        return [Invoice.objects.get(statement=s) for s in statements]

    return run


def pdf_bytes(invoice: Invoice) -> bytes:
    with invoice.pdf.open("rb") as f:
        return f.read()


# --- e-mail -------------------------------------------------------------------------------------------------


def test_invoice_is_emailed_with_its_stored_pdf(locmem, render):
    [invoice] = render(source_example_bill())
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ada@example.com"]
    assert invoice.number in message.subject
    assert "\n" not in message.subject
    [(name, content, mimetype)] = message.attachments
    assert (name, mimetype) == (f"{invoice.number}.pdf", "application/pdf")
    assert content == pdf_bytes(invoice)
    assert content.startswith(b"%PDF")
    assert "https://pay.example.test/" in message.body
    [(html, html_type)] = message.alternatives
    assert html_type == "text/html" and "https://pay.example.test/" in html
    delivery = InvoiceDelivery.objects.get(invoice=invoice)
    assert (delivery.method, delivery.status, delivery.attempts) == (Method.EMAIL, Status.SENT, 1)
    assert delivery.sent_at is not None and delivery.next_attempt_at is None
    assert AuditRecord.objects.filter(action="invoice_delivery.sent", object_id=str(delivery.pk)).exists()


def test_german_account_gets_a_german_email(locmem, render):
    [invoice] = render(source_example_bill(language="de", locale="de_DE", currency="EUR"))
    [message] = mail.outbox
    assert invoice.number in message.subject
    assert "Rechnung" in message.subject
    assert "Invoice" not in message.subject


def test_billing_copy_gets_its_own_email_and_a_contact_who_wants_none_gets_nothing(locmem, render):
    statement = source_example_bill()
    factories.ContactFactory(
        account=statement.account,
        name="Bookkeeper",
        email="books@example.com",
        role=Contact.Role.BILLING_COPY,
    )
    factories.ContactFactory(
        account=statement.account,
        name="Silent Partner",
        email="silent@example.com",
        role=Contact.Role.BILLING_COPY,
        bill_delivery=Contact.BillDelivery.NONE,
    )
    [invoice] = render(statement)
    assert sorted(m.to[0] for m in mail.outbox) == ["ada@example.com", "books@example.com"]
    assert all(m.attachments[0][0] == f"{invoice.number}.pdf" for m in mail.outbox)
    assert sorted(invoice.deliveries.values_list("recipient", "status")) == [
        ("ada@example.com", Status.SENT),
        ("books@example.com", Status.SENT),
    ]


def test_portal_presentment_is_delivered_when_rendered_and_sends_no_email(locmem, render):
    [invoice] = render(source_example_bill(presentment="portal"))
    delivery = InvoiceDelivery.objects.get(invoice=invoice)
    assert (delivery.method, delivery.status) == (Method.PORTAL, Status.SENT)
    assert delivery.sent_at is not None
    assert mail.outbox == []


def test_email_is_not_sent_before_the_invoice_is_rendered(locmem):
    [invoice] = invoices_issue(statement_ids=[source_example_bill().pk])
    delivery = invoice.deliveries.get()
    assert delivery_send_email(delivery_id=delivery.pk) == "skipped"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Status.PENDING, 0)
    assert mail.outbox == []


def test_redelivered_task_for_a_sent_delivery_sends_nothing(locmem, render):
    [invoice] = render(source_example_bill())
    delivery = invoice.deliveries.get()
    assert send_invoice_email.apply(args=(delivery.pk,)).get() == "skipped"
    assert len(mail.outbox) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Status.SENT, 1)


def test_contact_without_address_fails_at_once_with_a_message(locmem, render):
    statement = source_example_bill(email="")
    [invoice] = render(statement)
    delivery = invoice.deliveries.get()
    assert (delivery.method, delivery.status, delivery.attempts) == (Method.EMAIL, Status.FAILED, 0)
    assert "No e-mail address" in delivery.last_error and "Ada Lovelace" in delivery.last_error
    assert delivery.next_attempt_at is None
    assert mail.outbox == []
    assert deliveries_retry_due() == 0


def test_failing_mail_server_is_retried_with_backoff_then_failed(
    settings, render, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "tests.invoicing.test_delivery.FailingBackend"
    InvoicingSettings.objects.create(email_max_attempts=3, email_retry_minutes=10)
    started = timezone.now()
    [invoice] = render(source_example_bill())
    delivery = invoice.deliveries.get()
    assert (delivery.status, delivery.attempts) == (Status.RETRYING, 1)
    assert "SMTPServerDisconnected" in delivery.last_error
    wait = delivery.next_attempt_at - started
    assert dt.timedelta(minutes=10) <= wait < dt.timedelta(minutes=10, seconds=30)

    # Not due yet: neither the beat job nor a stray task tries it.
    assert deliveries_retry_due() == 0
    assert delivery_send_email(delivery_id=delivery.pk) == "skipped"
    delivery.refresh_from_db()
    assert delivery.attempts == 1

    def when_due() -> dt.datetime:
        InvoiceDelivery.objects.filter(pk=delivery.pk).update(
            next_attempt_at=timezone.now() - dt.timedelta(seconds=1)
        )
        with django_capture_on_commit_callbacks(execute=True):
            assert deliveries_retry_due() == 1
        delivery.refresh_from_db()
        return timezone.now()

    second = when_due()
    assert (delivery.status, delivery.attempts) == (Status.RETRYING, 2)
    wait = delivery.next_attempt_at - second
    assert dt.timedelta(minutes=19, seconds=30) <= wait <= dt.timedelta(minutes=20)  # doubled

    when_due()
    assert (delivery.status, delivery.attempts) == (Status.FAILED, 3)
    assert delivery.next_attempt_at is None and "Connection unexpectedly closed" in delivery.last_error
    assert deliveries_retry_due() == 0
    outcomes = AuditRecord.objects.filter(object_id=str(delivery.pk), object_type="invoicing.invoicedelivery")
    assert sorted(outcomes.values_list("action", flat=True)) == [
        "invoice_delivery.failed",
        "invoice_delivery.retrying",
        "invoice_delivery.retrying",
    ]


def test_beat_job_requeues_an_email_whose_task_was_lost(locmem, eager, django_capture_on_commit_callbacks):
    statement = source_example_bill()
    with django_capture_on_commit_callbacks(execute=False):  # the queued task never arrives
        invoices_render(statement_ids=[statement.pk])
    delivery = InvoiceDelivery.objects.get(invoice__statement=statement)
    assert delivery.status == Status.PENDING
    assert deliveries_retry_due() == 0  # just rendered: its task may still be in the queue
    Invoice.objects.filter(pk=delivery.invoice_id).update(rendered_at=timezone.now() - dt.timedelta(hours=2))
    with django_capture_on_commit_callbacks(execute=True):
        assert deliveries_retry_due() == 1
    delivery.refresh_from_db()
    assert delivery.status == Status.SENT
    assert len(mail.outbox) == 1


# --- retry now ----------------------------------------------------------------------------------------------


def test_retry_now_refuses_a_sent_delivery(locmem, render, billing_admin_user):
    [invoice] = render(source_example_bill())
    delivery = invoice.deliveries.get()
    with pytest.raises(ApplicationError) as refused:
        delivery_retry(delivery_id=delivery.pk, actor=billing_admin_user)
    assert refused.value.code == "already_sent"
    assert len(mail.outbox) == 1
    assert not AuditRecord.objects.filter(action="invoice_delivery.retry").exists()


def test_retry_now_refuses_pending_print_and_unknown_deliveries(locmem, billing_admin_user):
    statement = source_example_bill(presentment="paper")
    [invoice] = invoices_issue(statement_ids=[statement.pk])
    delivery = invoice.deliveries.get()
    with pytest.raises(ApplicationError) as refused:
        delivery_retry(delivery_id=delivery.pk, actor=billing_admin_user)
    assert refused.value.code == "not_email"
    with pytest.raises(ApplicationError) as missing:
        delivery_retry(delivery_id=delivery.pk + 1000, actor=billing_admin_user)
    assert missing.value.code == "not_found"


def test_retry_now_refuses_an_email_still_queued(locmem, billing_admin_user):
    [invoice] = invoices_issue(statement_ids=[source_example_bill().pk])
    with pytest.raises(ApplicationError) as refused:
        delivery_retry(delivery_id=invoice.deliveries.get().pk, actor=billing_admin_user)
    assert refused.value.code == "not_failed"


def test_retry_now_after_the_address_is_fixed_sends_it(
    locmem, render, billing_admin_user, django_capture_on_commit_callbacks
):
    statement = source_example_bill(email="")
    [invoice] = render(statement)
    delivery = invoice.deliveries.get()
    assert delivery.status == Status.FAILED
    Contact.objects.filter(pk=delivery.contact_id).update(email="ada.new@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        delivery_retry(delivery_id=delivery.pk, actor=billing_admin_user)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.recipient) == (Status.SENT, "ada.new@example.com")
    assert [m.to for m in mail.outbox] == [["ada.new@example.com"]]
    record = AuditRecord.objects.get(action="invoice_delivery.retry", object_id=str(delivery.pk))
    assert record.actor_user == billing_admin_user
    assert record.before["status"] == Status.FAILED and record.after["status"] == Status.RETRYING


# --- print batches ------------------------------------------------------------------------------------------


def _paper_bills():
    first = source_example_bill(presentment="paper")
    second = hierarchy_bill()
    profile = second.account.billing_profile
    profile.presentment_preference = "paper"
    profile.save()
    return first, second


def test_paper_invoices_are_merged_into_one_print_batch(locmem, render, billing_admin_user):
    invoices = render(*_paper_bills())
    assert mail.outbox == []
    deliveries = InvoiceDelivery.objects.filter(invoice__in=invoices)
    assert {(d.method, d.status) for d in deliveries} == {(Method.PRINT, Status.PENDING)}
    assert "12 Analytical Row" in deliveries[0].recipient

    batch = print_batch_build(reference="RUN-000001", actor=billing_admin_user)
    assert batch.reference == "RUN-000001"
    assert batch.file.name == "print-batches/RUN-000001.pdf"
    pages = [len(PdfReader(io.BytesIO(pdf_bytes(i))).pages) for i in invoices]
    assert pages == [i.page_count for i in invoices]
    with batch.file.open("rb") as f:
        merged = PdfReader(io.BytesIO(f.read()))
    assert len(merged.pages) == sum(pages) == batch.page_count
    assert batch.invoice_count == 2
    # In order of invoice number: each invoice's first page where it starts.
    ordered = sorted(invoices, key=lambda i: i.number)
    assert ordered[0].number in merged.pages[0].extract_text()
    assert ordered[1].number in merged.pages[pages[invoices.index(ordered[0])]].extract_text()
    for delivery in InvoiceDelivery.objects.filter(invoice__in=invoices):
        assert (delivery.status, delivery.print_batch_id) == (Status.SENT, batch.pk)
        assert delivery.sent_at is not None
    record = AuditRecord.objects.get(action="print_batch.build", object_id=str(batch.pk))
    assert record.after["invoices"] == [i.number for i in ordered]


def test_print_batch_is_idempotent_per_reference(locmem, render):
    first, second = _paper_bills()
    [one] = render(first)
    batch = build_print_batch.apply(args=("RUN-7",)).get()
    assert batch == "RUN-7"
    assert build_print_batch.apply(args=("RUN-7",)).get() is None  # nothing pending: no new batch
    [two] = render(second)
    assert print_batch_build(reference="RUN-7").reference == "RUN-7-2"
    assert PrintBatch.objects.get(reference="RUN-7-2").deliveries.get().invoice == two
    assert PrintBatch.objects.get(reference="RUN-7").deliveries.get().invoice == one
    assert print_batch_build(reference="RUN-7") is None
    assert PrintBatch.objects.count() == 2


def test_print_batch_takes_only_the_given_rendered_invoices(locmem, render):
    first, second = _paper_bills()
    [one] = render(first)
    [unrendered] = invoices_issue(statement_ids=[second.pk])
    assert print_batch_build(reference="R", invoice_ids=[unrendered.pk]) is None  # not rendered yet
    assert print_batch_build(reference="R", invoice_ids=[one.pk + 1000]) is None
    batch = print_batch_build(reference="R", invoice_ids=[one.pk, unrendered.pk])
    assert [d.invoice_id for d in batch.deliveries.all()] == [one.pk]
    assert unrendered.deliveries.get().status == Status.PENDING


def test_print_batch_reference_is_required(locmem):
    with pytest.raises(ApplicationError) as refused:
        print_batch_build(reference="")
    assert refused.value.code == "invalid_reference"


# --- exactly once under concurrency -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_tasks_at_once_send_one_email(settings, monkeypatch):
    settings.EMAIL_BACKEND = "tests.invoicing.test_delivery.SlowBackend"
    mail.outbox = []
    monkeypatch.setattr("invoicing.services.delivery._queue_email", lambda ids: None)  # run by hand below
    statement = source_example_bill()
    invoices_render(statement_ids=[statement.pk])
    delivery = InvoiceDelivery.objects.get(invoice__statement=statement)
    results, errors = run_in_threads(lambda i: delivery_send_email(delivery_id=delivery.pk), 2)
    assert errors == []
    assert sorted(results) == ["sent", "skipped"]
    assert len(mail.outbox) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (Status.SENT, 1)
