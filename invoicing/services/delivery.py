"""Delivering invoices (bill routing, source 004): each routing (InvoiceDelivery, made when the invoice is
issued) is delivered by its method once the invoice's documents are rendered.

* portal: the invoice is in the customer portal as soon as it is rendered; the routing is marked sent then;
* e-mail: one Celery task per routing (``invoicing.send_invoice_email``), queued after the rendering commits,
  sends the PDF as an attachment. A failed send is retried with a doubling wait (InvoicingSettings:
  ``email_retry_minutes``, ``email_max_attempts``) by the beat job ``invoicing.retry_due_deliveries``; after
  the last attempt the routing is failed and an admin may "retry now";
* print: the routing waits for a print batch (``print_batch_build``: one merged PDF per billing run or day,
  for the print shop), which marks it sent.

E-mail is sent at most once per routing as far as a database can promise it: the task locks the routing
row and sends only while it is pending or retrying, so a task delivered twice (acks_late, a redelivery
after a lost worker, a second "retry now") finds it sent and does nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone, translation

from billing_mgmt.audit import audit_record, audit_records_bulk, snapshot
from billing_mgmt.errors import ApplicationError, Conflict, NotFound

from ..models import Invoice, InvoiceDelivery, InvoicingSettings, PrintBatch, invoice_storage

logger = logging.getLogger(__name__)

SEND_ACTOR = "task:invoicing.send_invoice_email"
# A pending e-mail routing of a rendered invoice that is still pending this long after the rendering lost
# its queued task (the broker was down when it was queued, or the task failed on the database): the beat
# job queues it again. A task still waiting in a long queue is queued twice, which is harmless (the second
# finds the routing sent).
STALE_PENDING = dt.timedelta(hours=1)

SUBJECT_TEMPLATE = "invoicing/email/invoice_subject.txt"
TEXT_TEMPLATE = "invoicing/email/invoice_body.txt"
HTML_TEMPLATE = "invoicing/email/invoice_body.html"

DELIVERY_FIELDS = [
    "status",
    "attempts",
    "next_attempt_at",
    "sent_at",
    "recipient",
    "last_error",
    "print_batch",
]


def _queue_email(delivery_ids: list[int]) -> None:
    """Queue the e-mail task of each routing once the current transaction commits (at once outside one)."""
    from ..tasks import send_invoice_email  # the tasks import the services: import at call time

    for delivery_id in delivery_ids:
        transaction.on_commit(lambda pk=delivery_id: send_invoice_email.delay(pk))


def deliveries_queue(*, invoice_ids: list[int]) -> None:
    """These invoices have just been rendered (called inside the transaction that marks them so): portal
    routings are delivered now, e-mails are queued for after the commit, print routings wait for a print
    batch. A fixed number of queries whatever the number of invoices (a render batch calls it once)."""
    if not invoice_ids:
        return
    portal = list(
        InvoiceDelivery.objects.select_for_update(of=("self",))
        .filter(
            invoice_id__in=invoice_ids,
            method=InvoiceDelivery.Method.PORTAL,
            status=InvoiceDelivery.Status.PENDING,
        )
        .select_related("invoice")
        .order_by("pk")
    )
    if portal:
        now = timezone.now()
        for delivery in portal:
            delivery.status, delivery.sent_at, delivery.attempts = InvoiceDelivery.Status.SENT, now, 1
        InvoiceDelivery.objects.filter(pk__in=[d.pk for d in portal]).update(
            status=InvoiceDelivery.Status.SENT, sent_at=now, attempts=1
        )
        audit_records_bulk(
            actor="system",
            action="invoice_delivery.sent",
            objects=portal,
            afters=[snapshot(d, DELIVERY_FIELDS) for d in portal],
            account_ids=[d.invoice.account_id for d in portal],
        )
    _queue_email(
        list(
            InvoiceDelivery.objects.filter(
                invoice_id__in=invoice_ids,
                method=InvoiceDelivery.Method.EMAIL,
                status__in=[InvoiceDelivery.Status.PENDING, InvoiceDelivery.Status.RETRYING],
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    )


# --- e-mail -------------------------------------------------------------------------------------------------


def invoice_email(*, invoice: Invoice, address: str, recipient_name: str) -> EmailMultiAlternatives:
    """The e-mail of an invoice to one person, in the invoice's language, with its stored PDF attached."""
    context = {
        "invoice": invoice,
        "recipient_name": recipient_name,
        "payment_url": settings.PAYMENT_URL,
        "support_contact": settings.SUPPORT_CONTACT,
    }
    with translation.override(invoice.language):
        subject = " ".join(render_to_string(SUBJECT_TEMPLATE, context).split())
        text = render_to_string(TEXT_TEMPLATE, context)
        html = render_to_string(HTML_TEMPLATE, context)
    message = EmailMultiAlternatives(
        subject=subject, body=text, from_email=settings.DEFAULT_FROM_EMAIL, to=[address]
    )
    message.attach_alternative(html, "text/html")
    with invoice.pdf.open("rb") as pdf:
        message.attach(f"{invoice.number}.pdf", pdf.read(), "application/pdf")
    return message


def _backoff(attempts: int, config: InvoicingSettings) -> dt.timedelta:
    return dt.timedelta(minutes=config.email_retry_minutes * 2 ** (attempts - 1))


def delivery_send_email(*, delivery_id: int) -> str:
    """Send one e-mail routing if it is still to be sent and due. Returns what happened: ``sent``,
    ``retrying``, ``failed`` or ``skipped`` (already sent or failed, not due yet, not an e-mail routing, or
    its invoice not rendered yet: the rendering queues it again)."""
    with transaction.atomic():
        delivery = (
            InvoiceDelivery.objects.select_for_update(of=("self",))
            .select_related("invoice", "invoice__account", "contact")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.method != InvoiceDelivery.Method.EMAIL:
            return "skipped"
        if delivery.status not in (InvoiceDelivery.Status.PENDING, InvoiceDelivery.Status.RETRYING):
            return "skipped"
        now = timezone.now()
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > now:
            return "skipped"
        invoice = delivery.invoice
        if invoice.status != Invoice.Status.RENDERED:
            return "skipped"
        before = snapshot(delivery, DELIVERY_FIELDS)
        address = delivery.recipient.strip()
        if not address:
            # Nothing a retry could change: it waits for a person to add the address and press "retry now".
            delivery.status = InvoiceDelivery.Status.FAILED
            delivery.next_attempt_at = None
            who = f"contact {delivery.contact.name!r}" if delivery.contact else "this routing"
            delivery.last_error = (
                f"No e-mail address: {who} has none. Add one to the contact and retry the delivery."
            )
            return _finish(delivery, before, "failed")
        recipient_name = delivery.contact.name if delivery.contact else invoice.account.name
        config = InvoicingSettings.current()
        # The send happens inside the transaction that holds the routing's row lock, so that a second task
        # for the same routing (a redelivery) waits for this one and then finds it sent: it never sends in
        # parallel. The trade-off: the lock is held while the mail server answers (seconds, one row), and a
        # crash after the server accepted the message but before the commit leaves the routing pending, so
        # its redelivered task sends it again. That is the at-least-once edge of e-mail (no mail server
        # takes part in a database transaction); every other path sends once.
        try:
            invoice_email(invoice=invoice, address=address, recipient_name=recipient_name).send()
        except Exception as exc:  # noqa: BLE001 - SMTP errors, timeouts, a missing file: all retried
            logger.warning("E-mail of invoice %s to %s failed: %s", invoice.number, address, exc)
            delivery.attempts += 1
            delivery.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            if delivery.attempts >= config.email_max_attempts:
                delivery.status, delivery.next_attempt_at = InvoiceDelivery.Status.FAILED, None
                return _finish(delivery, before, "failed")
            delivery.status = InvoiceDelivery.Status.RETRYING
            delivery.next_attempt_at = now + _backoff(delivery.attempts, config)
            return _finish(delivery, before, "retrying")
        delivery.attempts += 1
        delivery.status, delivery.sent_at = InvoiceDelivery.Status.SENT, timezone.now()
        delivery.next_attempt_at, delivery.last_error = None, ""
        return _finish(delivery, before, "sent")


def _finish(delivery: InvoiceDelivery, before: dict[str, Any], outcome: str) -> str:
    delivery.save(update_fields=["status", "attempts", "next_attempt_at", "sent_at", "last_error"])
    audit_record(
        actor=SEND_ACTOR,
        action=f"invoice_delivery.{outcome}",
        obj=delivery,
        before=before,
        after=snapshot(delivery, DELIVERY_FIELDS),
        account_id=delivery.invoice.account_id,
    )
    return outcome


def deliveries_retry_due() -> int:
    """Beat job: queue every retrying e-mail routing whose wait is over, and every pending one of a rendered
    invoice left pending for long (its task was lost). Returns how many were queued."""
    now = timezone.now()
    Status = InvoiceDelivery.Status
    ids = list(
        InvoiceDelivery.objects.filter(method=InvoiceDelivery.Method.EMAIL)
        .filter(
            Q(status=Status.RETRYING, next_attempt_at__lte=now)
            | Q(
                status=Status.PENDING,
                invoice__status=Invoice.Status.RENDERED,
                invoice__rendered_at__lte=now - STALE_PENDING,
            )
        )
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)
    )
    _queue_email(ids)
    return len(ids)


@transaction.atomic
def delivery_retry(*, delivery_id: int, actor: Any) -> InvoiceDelivery:
    """An admin's "retry now" on a failed or retrying e-mail routing: it is due at once and queued. The
    address is taken again from the contact (a failed address may have been corrected since). This is one
    more attempt: if it fails and the routing has used its attempts, it is failed again at once."""
    delivery = (
        InvoiceDelivery.objects.select_for_update(of=("self",))
        .select_related("invoice", "contact")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None:
        raise NotFound(f"Invoice delivery {delivery_id} does not exist.")
    if delivery.status == InvoiceDelivery.Status.SENT:
        raise Conflict(
            f"This copy of invoice {delivery.invoice.number} was already sent "
            f"({timezone.localtime(delivery.sent_at):%Y-%m-%d %H:%M}).",
            code="already_sent",
        )
    if delivery.method != InvoiceDelivery.Method.EMAIL:
        raise Conflict(
            f"Only e-mail deliveries are retried; this one is {delivery.method}.", code="not_email"
        )
    if delivery.status not in (InvoiceDelivery.Status.FAILED, InvoiceDelivery.Status.RETRYING):
        raise Conflict("This delivery is still queued; there is nothing to retry.", code="not_failed")
    before = snapshot(delivery, DELIVERY_FIELDS)
    if delivery.contact is not None and delivery.contact.email:
        delivery.recipient = delivery.contact.email
    delivery.status = InvoiceDelivery.Status.RETRYING
    delivery.next_attempt_at = timezone.now()
    delivery.save(update_fields=["status", "next_attempt_at", "recipient"])
    audit_record(
        actor=actor,
        action="invoice_delivery.retry",
        obj=delivery,
        before=before,
        after=snapshot(delivery, DELIVERY_FIELDS),
        account_id=delivery.invoice.account_id,
    )
    _queue_email([delivery.pk])
    return delivery


# --- print batches ------------------------------------------------------------------------------------------


def _free_reference(reference: str) -> str:
    """The reference itself, or "<reference>-2", "-3"... when batches of that reference exist already."""
    taken = set(
        PrintBatch.objects.filter(
            Q(reference=reference) | Q(reference__startswith=f"{reference}-")
        ).values_list("reference", flat=True)
    )
    if reference not in taken:
        return reference
    n = 2
    while f"{reference}-{n}" in taken:
        n += 1
    return f"{reference}-{n}"


def print_batch_build(
    *, reference: str, invoice_ids: list[int] | None = None, actor: Any = None
) -> PrintBatch | None:
    """One merged PDF of the rendered invoices waiting to be printed (of these invoices, or all when None),
    in order of invoice number, one copy per print routing; the routings are marked sent with the batch.

    Idempotent per reference: what is in a batch is never printed again. Called again with the same
    reference, it returns None when nothing is pending, and otherwise puts the routings pending since (a
    late invoice of the run) into a new batch "<reference>-2" (then "-3"...). Two builders at once never
    take the same routing (the second skips the rows the first has locked)."""
    from pypdf import PdfReader, PdfWriter

    if not reference or len(reference) > 50:
        raise ApplicationError(
            "A print batch needs a reference of 1 to 50 characters.",
            code="invalid_reference",
            fields={"reference": ["1 to 50 characters."]},
        )
    with transaction.atomic():
        deliveries = InvoiceDelivery.objects.filter(
            method=InvoiceDelivery.Method.PRINT,
            status=InvoiceDelivery.Status.PENDING,
            invoice__status=Invoice.Status.RENDERED,
        )
        if invoice_ids is not None:
            deliveries = deliveries.filter(invoice_id__in=invoice_ids)
        deliveries = list(
            deliveries.select_for_update(of=("self",), skip_locked=True)
            .select_related("invoice")
            .order_by("invoice__number", "invoice_id", "pk")
        )
        if not deliveries:
            return None
        batch = PrintBatch.objects.create(reference=_free_reference(reference))
        writer = PdfWriter()
        # One invoice's file is open at a time: its pages are copied into the writer, then it is closed.
        # The merged PDF is written to a temporary file, not to memory, and the storage reads it from there.
        for delivery in deliveries:
            with delivery.invoice.pdf.open("rb") as source:
                reader = PdfReader(source)
                for page in reader.pages:
                    writer.add_page(page)
        page_count = len(writer.pages)
        name = f"print-batches/{batch.reference}.pdf"
        storage = invoice_storage()
        if storage.exists(name):  # left by a build whose transaction rolled back
            storage.delete(name)
        with tempfile.TemporaryFile(suffix=".pdf") as merged:
            writer.write(merged)
            writer.close()
            merged.seek(0)
            batch.file.save(name, File(merged, name=name), save=False)
        batch.invoice_count, batch.page_count = len(deliveries), page_count
        batch.save(update_fields=["file", "invoice_count", "page_count"])
        now = timezone.now()
        for delivery in deliveries:
            delivery.status, delivery.sent_at, delivery.print_batch = InvoiceDelivery.Status.SENT, now, batch
            delivery.attempts += 1
        InvoiceDelivery.objects.bulk_update(deliveries, ["status", "sent_at", "print_batch", "attempts"])
        audit_record(
            actor=actor,
            action="print_batch.build",
            obj=batch,
            after={
                **snapshot(batch, ["reference", "invoice_count", "page_count"]),
                "file": batch.file.name,
                "invoices": [d.invoice.number for d in deliveries],
            },
        )
        return batch
