"""Celery tasks of cases: thin wrappers around disputes.services."""

from __future__ import annotations

from celery import shared_task

from .services import case_email_send, case_emails_due


@shared_task(
    name="disputes.send_case_email",
    autoretry_for=(OSError,),
    retry_backoff=60,
    retry_backoff_max=3600,
    max_retries=8,
)
def send_case_email(event_id: int) -> str:
    """Send the customer's e-mail about one case event (once; a lost task is picked up by the beat job)."""
    return case_email_send(event_id=event_id)


@shared_task(name="disputes.send_due_case_emails")
def send_due_case_emails() -> dict[str, int]:
    """Queue the case e-mails not sent ten minutes after their event (their task was lost)."""
    due = case_emails_due()
    for pk in due:
        send_case_email.delay(pk)
    return {"queued": len(due)}
