"""The Celery application. Configuration comes from Django settings (CELERY_* names)."""

import gc
import os

from celery import Celery
from celery.schedules import crontab
from celery.signals import before_task_publish, task_postrun, task_prerun, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_mgmt.settings")

app = Celery("billing_mgmt")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Billing, formatting and ingest on queues of their own when the deployment names them (docs/scaling.md).
app.conf.task_routes = ("billing_mgmt.queues.route_task",)

# Python's cyclic garbage collector in a worker process. A billing chunk allocates hundreds of thousands of
# short-lived objects (rows, Decimals, model instances, lines) that reference counting frees, yet the
# default thresholds (700, 10, 10) start a collection every 700 net allocations and a full one that walks
# every object of the process (Django, the app, the chunk) every 100 of those: 0.16 s of a 1.1 s rating
# chunk of 500 bill units (docs/benchmarks.md). So each pool process freezes what it imported (never
# garbage: it is no longer walked) and collects less often; memory held by cycles waits a little longer.
WORKER_GC_THRESHOLDS = (50_000, 20, 100)


@worker_process_init.connect
def _tune_gc(**kwargs) -> None:
    gc.freeze()
    gc.set_threshold(*WORKER_GC_THRESHOLDS)


# Request ids cross into tasks: a task queued while a request (or another task) runs carries its id in a
# message header, and the worker sets it while the task runs, so the audit records and log lines a task
# writes name the request that caused them. A task queued by beat gets "task-<its id>".
REQUEST_ID_HEADER = "billing_request_id"
_task_tokens: dict[str, object] = {}


@before_task_publish.connect
def _send_request_id(headers=None, **kwargs) -> None:
    from billing_mgmt.middleware import current_request_id

    request_id = current_request_id()
    if headers is not None and request_id != "-":
        headers.setdefault(REQUEST_ID_HEADER, request_id)


@task_prerun.connect
def _take_request_id(task_id=None, task=None, **kwargs) -> None:
    from billing_mgmt.middleware import set_request_id

    if task is None or task.request.is_eager:  # eager: it runs inside the caller, which has its id
        return
    request_id = getattr(task.request, REQUEST_ID_HEADER, None) or f"task-{task_id}"
    _task_tokens[task_id] = set_request_id(str(request_id)[:64])


@task_postrun.connect
def _drop_request_id(task_id=None, **kwargs) -> None:
    from billing_mgmt.middleware import reset_request_id

    token = _task_tokens.pop(task_id, None)
    if token is not None:
        reset_request_id(token)


# Periodic tasks defined in code. Beat's DatabaseScheduler writes them into django_celery_beat's tables at
# every start (their schedule and arguments come from here); billing admins may disable one in Django admin
# and add their own periodic tasks there.
app.conf.beat_schedule = {
    "reconcile-ledger-nightly": {
        # Report only: a difference is logged for a person to look at, never silently overwritten.
        "task": "statements.reconcile_ledger",
        "schedule": crontab(hour=2, minute=30),
        "kwargs": {"repair": False},
    },
    "mark-overdue-statements-nightly": {
        # Just after midnight in the business's zone (CELERY_TIMEZONE), so "past due" means the day is over.
        "task": "statements.mark_overdue",
        "schedule": crontab(hour=0, minute=20),
    },
    "start-scheduled-billing-runs": {
        # Runs scheduled "at a date and time" start within a minute of it.
        "task": "billruns.start_scheduled_runs",
        "schedule": crontab(minute="*"),
    },
    "resume-stalled-billing-runs": {
        # Chunks whose worker died (their lease expired) are queued again; see BILLRUN_CHUNK_LEASE_SECONDS.
        "task": "billruns.resume_stalled_runs",
        "schedule": crontab(minute="*/2"),
    },
    "purge-usage-detail-nightly": {
        # Does nothing until a billing admin sets a retention period (Data retention in Django admin).
        "task": "statements.purge_usage_detail",
        "schedule": crontab(hour=3, minute=15),
    },
    "catch-up-invoices-daily": {
        # Every engine bill without rendered invoice documents (bill now, runs stopped before Formatting,
        # missed days, failed renders) gets them (source 003: invoicing catches up missed billing days).
        "task": "invoicing.catch_up_invoices",
        "schedule": crontab(hour=1, minute=30),
    },
    "retry-invoice-emails": {
        # E-mails whose retry wait is over, and pending ones whose task was lost (an hour old).
        "task": "invoicing.retry_due_deliveries",
        "schedule": crontab(minute="*/5"),
    },
    "send-due-case-emails": {
        # Case e-mails whose task was lost (not sent ten minutes after the event).
        "task": "disputes.send_due_case_emails",
        "schedule": crontab(minute="*/10"),
    },
    "print-batch-nightly": {
        # Paper invoices not taken by a billing run's batch: one merged PDF per day ("day-YYYY-MM-DD").
        "task": "invoicing.build_print_batch",
        "schedule": crontab(hour=4, minute=0),
    },
    "retry-payment-exports": {
        # Payments and adjustments for external billers whose (next) delivery attempt is due.
        "task": "payments.retry_exports",
        "schedule": crontab(minute="*"),
    },
    "autopay-daily": {
        # Statements of autopay accounts that fell due are charged through the payment gateway, once each.
        "task": "payments.run_autopay",
        "schedule": crontab(hour=6, minute=0),
    },
    "reconcile-autopay": {
        # Charges the gateway did not answer in time are resolved by asking it, never by charging again.
        "task": "payments.reconcile_autopay",
        "schedule": crontab(minute="*/15"),
    },
}
