"""Celery tasks of billing runs: thin, id-based, idempotent (billruns.services does the work).

Money tasks (``process_chunk``) are acknowledged late and rejected (so redelivered) when their worker
is lost (settings: ``CELERY_TASK_ACKS_LATE``, ``CELERY_TASK_REJECT_ON_WORKER_LOST``, prefetch 1), and
queued after commit. Celery may deliver one twice; the chunk's claim and its database constraints make
the second a no-op. The attempt counter is the chunk's own (in the database, so a crash that kills the
worker still counts), and after ``BILLRUN_CHUNK_MAX_ATTEMPTS`` the chunk is dead-lettered instead of looping.
"""

from __future__ import annotations

import logging
import socket

from celery import shared_task

from .services.run_definitions import billrun_create_recurring
from .services.run_work import DATABASE_TROUBLE, chunk_claim, chunk_process, chunk_release
from .services.runs import billrun_advance, billruns_resume_stalled, billruns_start_scheduled

logger = logging.getLogger(__name__)

MONEY_TASK = {"acks_late": True, "reject_on_worker_lost": True}


@shared_task(name="billruns.process_chunk", bind=True, max_retries=5, **MONEY_TASK)
def process_chunk(self, chunk_id: int) -> str:
    """Work one chunk of a billing run's stage (claim it, do it, mark it done)."""
    worker = f"{self.request.hostname or socket.gethostname()}:{self.request.id}"
    attempt = chunk_claim(chunk_id=chunk_id, worker=worker)
    if attempt is None:
        return "skipped"
    try:
        return chunk_process(chunk_id=chunk_id, attempt=attempt)
    except DATABASE_TROUBLE as exc:
        try:
            chunk_release(chunk_id=chunk_id, attempt=attempt, error=f"{type(exc).__name__}: {exc}")
        except DATABASE_TROUBLE:
            logger.warning("Chunk %s: could not release it; its lease will expire.", chunk_id)
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc


@shared_task(name="billruns.advance_run", bind=True, max_retries=10, acks_late=True)
def advance_run(self, run_id: int) -> str:
    """Start the run's next stage, or finish the current one when its chunks are done."""
    try:
        return billrun_advance(run_id=run_id)
    except DATABASE_TROUBLE as exc:
        raise self.retry(exc=exc, countdown=min(60, 2 ** (self.request.retries + 1))) from exc


@shared_task(name="billruns.start_scheduled_runs")
def start_scheduled_runs() -> dict[str, list[str]]:
    """Beat, every minute: start the runs scheduled for now or earlier."""
    return {"started": billruns_start_scheduled()}


@shared_task(name="billruns.resume_stalled_runs")
def resume_stalled_runs() -> dict[str, int]:
    """Beat, every few minutes: queue again the chunks of executing runs whose worker was lost."""
    return billruns_resume_stalled()


@shared_task(name="billruns.create_recurring_run", acks_late=True)
def create_recurring_run(definition_id: int) -> str | None:
    """A recurring run definition's beat task: create the next run and execute it."""
    run = billrun_create_recurring(definition_id=definition_id)
    return run.number if run else None
