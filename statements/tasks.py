"""Celery tasks of the ledger: thin, id-based and idempotent (running one twice changes nothing more)."""

from __future__ import annotations

import logging

from celery import shared_task

from billing_mgmt.errors import ApplicationError

from .selectors import ledger_mismatches
from .services import balances_rebuild, statements_mark_overdue, usage_detail_purge
from .services.pull import account_refresh_run, biller_pull

logger = logging.getLogger(__name__)

RECONCILE_ACTOR = "task:statements.reconcile_ledger"


@shared_task(name="statements.reconcile_ledger")
def reconcile_ledger(*, account_ids: list[int] | None = None, repair: bool = False) -> dict[str, int]:
    """Compare cached balances with the ledger; with ``repair`` rebuild the ones that differ (audited).

    Returns counts only, so the result stored by the result backend stays small and JSON-serializable.
    """
    mismatches = ledger_mismatches(account_ids=account_ids)
    for m in mismatches:
        logger.warning(
            "Ledger mismatch: account %s %s cached %s (%s rows), ledger %s %s (%s rows)",
            m.account_id,
            m.balance_type,
            m.cached_amount,
            m.cached_count,
            m.ledger_amount,
            m.currency,
            m.ledger_count,
        )
    repaired = (
        balances_rebuild(account_ids=account_ids, actor=RECONCILE_ACTOR) if repair and mismatches else 0
    )
    return {"mismatches": len(mismatches), "repaired": repaired}


@shared_task(name="statements.purge_usage_detail")
def purge_usage_detail() -> dict[str, int]:
    """Nightly: remove usage lines older than the retention setting (nothing while it is not set)."""
    return {"lines_removed": usage_detail_purge()}


@shared_task(name="statements.mark_overdue")
def mark_overdue() -> dict[str, int]:
    """Nightly: open and partially paid statements past their due date become overdue."""
    return {"marked_overdue": statements_mark_overdue()}


# -- pull from billers (statements/services/pull.py) ------------------------------------------------------


@shared_task(name="statements.pull_biller", acks_late=True)
def pull_biller(biller_id: int, trigger: str = "schedule") -> dict:
    """Load what changed at a pulled biller (beat runs it with kwargs {"biller_id": id}; "Pull now" too).

    Idempotent: a load repeated from the same watermark stores duplicates only. While a load of the biller
    runs, or when its pull is off, the task is skipped.
    """
    try:
        run = biller_pull(biller_id=biller_id, trigger=trigger)
    except ApplicationError as exc:
        logger.info("Pull of biller %s skipped: %s", biller_id, exc.message)
        return {"status": "skipped", "reason": exc.code, "message": exc.message}
    return {
        "status": run.status,
        "pull_run": run.pk,
        "pages": run.pages,
        "accepted": run.accepted,
        "duplicates": run.duplicates,
        "rejected": run.rejected,
    }


@shared_task(name="statements.refresh_account", acks_late=True)
def refresh_account(refresh_id: int) -> dict:
    """Run a CSR's refresh of one account; a refresh already finished (a message delivered twice) is left."""
    refresh = account_refresh_run(refresh_id=refresh_id)
    return {"status": refresh.status, "refresh": refresh.pk}
