"""Which Celery queue each kind of work goes to (docs/scaling.md).

Three kinds have a queue of their own when the deployment names one (settings ``WORK_QUEUES``, from
``CELERY_BILLING_QUEUE``, ``CELERY_FORMATTING_QUEUE`` and ``CELERY_INGEST_QUEUE``): billing (the runs'
coordinator and the chunks of every stage but Formatting), formatting (rendering invoice documents and print
batches: the slow, CPU-heavy part) and ingest (pulling from billers). Workers then listen on the queues they
serve (``celery worker -Q billing``), so a backlog of PDFs never delays the next bill. Everything else, and
every kind whose queue is not named, goes to the default queue (``CELERY_TASK_DEFAULT_QUEUE``).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

BILLING = "billing"
FORMATTING = "formatting"
INGEST = "ingest"

# Task name -> kind of work. billruns.process_chunk is routed by its chunk's stage (chunk_queue).
TASK_KINDS = {
    "billruns.advance_run": BILLING,
    "billruns.start_scheduled_runs": BILLING,
    "billruns.resume_stalled_runs": BILLING,
    "billruns.create_recurring_run": BILLING,
    "billruns.process_chunk": BILLING,
    "invoicing.render_invoices": FORMATTING,
    "invoicing.catch_up_invoices": FORMATTING,
    "invoicing.build_print_batch": FORMATTING,
    "statements.pull_biller": INGEST,
    "statements.refresh_account": INGEST,
}


def queue_for(kind: str) -> str | None:
    """The queue of a kind of work, or None for the default queue."""
    return (getattr(settings, "WORK_QUEUES", None) or {}).get(kind) or None


def chunk_queue(stage: str) -> str | None:
    """The queue of a billing run's chunk: Formatting chunks render invoices, the others bill."""
    from billruns.models import Stage

    return queue_for(FORMATTING if stage == Stage.FORMATTING else BILLING)


def route_task(name: str, args: Any, kwargs: Any, options: dict, task: Any = None, **kw: Any) -> dict | None:
    """Celery router (``task_routes``): the queue of the task's kind; a queue given when sending wins."""
    kind = TASK_KINDS.get(name)
    queue = queue_for(kind) if kind else None
    return {"queue": queue} if queue else None
