"""Celery tasks of invoicing: thin and id-based (invoicing.services does the work).

Acknowledged late (settings ``CELERY_TASK_ACKS_LATE``): a task may be delivered twice; each one is
idempotent. ``send_invoice_email`` sends a routing's e-mail only while the locked routing is still pending
or retrying, and ``build_print_batch`` takes only routings no batch has taken yet.
"""

from __future__ import annotations

from celery import shared_task

from .services.delivery import deliveries_retry_due, delivery_send_email, print_batch_build


@shared_task(name="invoicing.send_invoice_email")
def send_invoice_email(delivery_id: int) -> str:
    """Send one invoice e-mail (a failure is recorded on the routing and retried by the beat job)."""
    return delivery_send_email(delivery_id=delivery_id)


@shared_task(name="invoicing.retry_due_deliveries")
def retry_due_deliveries() -> dict[str, int]:
    """Beat, every few minutes: queue the e-mails whose retry is due."""
    return {"queued": deliveries_retry_due()}


@shared_task(name="invoicing.build_print_batch")
def build_print_batch(reference: str | None = None, invoice_ids: list[int] | None = None) -> str | None:
    """Merge the invoices waiting to be printed into one PDF (a billing run passes its number and its
    invoices; the nightly beat job passes nothing: every pending print routing, under the day's date)."""
    from django.utils import timezone

    reference = reference or f"day-{timezone.localdate():%Y-%m-%d}"
    batch = print_batch_build(
        reference=reference, invoice_ids=invoice_ids, actor="task:invoicing.build_print_batch"
    )
    return batch.reference if batch else None


@shared_task(name="invoicing.render_invoices")
def render_invoices(statement_ids: list[int]) -> dict[str, int]:
    """Issue and render the invoices of these bills (bill now, a corrective bill, a catch-up batch)."""
    from .services import invoices_render

    result = invoices_render(statement_ids=statement_ids, actor="task:invoicing.render_invoices")
    return {"rendered": len(result.rendered), "failed": len(result.failed)}


@shared_task(name="invoicing.catch_up_invoices")
def catch_up_invoices() -> dict[str, int]:
    """Beat, daily: every engine bill without rendered documents, in render tasks of a few hundred bills."""
    from .services.catchup import catch_up_batches

    batches = catch_up_batches()
    for batch in batches:
        render_invoices.delay(statement_ids=batch)
    return {"bills": sum(len(b) for b in batches), "tasks": len(batches)}
