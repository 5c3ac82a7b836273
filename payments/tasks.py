"""Celery tasks of payments: thin and id-based (payments.services does the work).

Acknowledged late (CELERY_TASK_ACKS_LATE): a task may run twice; ``deliver_export`` sends only while the
locked export is pending and due, so a second run finds it delivered and does nothing.
"""

from __future__ import annotations

from celery import shared_task

from .services import export_deliver, exports_due


@shared_task(name="payments.deliver_export")
def deliver_export(item_pk: int) -> str:
    """POST one export to its biller (a failure is recorded on the export and retried by the beat job)."""
    return export_deliver(item_pk=item_pk)


@shared_task(name="payments.retry_exports")
def retry_exports() -> dict[str, int]:
    """Beat, every minute: queue the push exports whose retry is due."""
    due = exports_due()
    for item_pk in due:
        deliver_export.delay(item_pk)
    return {"queued": len(due)}


@shared_task(name="payments.run_autopay")
def run_autopay() -> dict[str, int]:
    """Beat, daily: charge every autopay statement that has fallen due (each statement once, ever)."""
    from .services import autopay_charge, autopay_due_statements

    counts: dict[str, int] = {}
    for statement_id in autopay_due_statements():
        outcome = autopay_charge(statement_id=statement_id)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


@shared_task(name="payments.reconcile_autopay")
def reconcile_autopay() -> dict[str, int]:
    """Beat, every 15 minutes: resolve autopay charges the gateway left unknown (by asking, never by charging
    again)."""
    from .services import autopay_reconcile

    return autopay_reconcile()
