"""Celery tasks of the ledger: thin, id-based and idempotent (running one twice changes nothing more)."""

from __future__ import annotations

import logging

from celery import shared_task

from .selectors import ledger_mismatches
from .services import balances_rebuild

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
