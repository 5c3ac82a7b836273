"""Nightly data maintenance: removing old usage detail (retention) and marking unpaid statements overdue.

Both are safe to repeat: a second run the same day finds nothing left to do.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from billing_mgmt.audit import audit_record
from billing_mgmt.middleware import current_request_id
from billing_mgmt.models import AuditRecord
from statements.models import DataRetention, Statement, StatementLine

logger = logging.getLogger(__name__)

PURGE_ACTOR = "task:statements.purge_usage_detail"
OVERDUE_ACTOR = "task:statements.mark_overdue"
PURGE_BATCH_SIZE = 200  # statements per transaction
OVERDUE_BATCH_SIZE = 1000


def _purgeable(cutoff: dt.date):
    usage_lines = StatementLine.objects.filter(statement=OuterRef("pk"), line_type=StatementLine.Type.USAGE)
    return Statement.objects.filter(statement_date__lt=cutoff, usage_detail_purged_at__isnull=True).filter(
        Exists(usage_lines)
    )


def usage_detail_purge(
    *, today: dt.date | None = None, batch_size: int = PURGE_BATCH_SIZE, actor: str = PURGE_ACTOR
) -> int:
    """Remove the usage lines of statements dated more than ``DataRetention.usage_detail_days`` ago.

    The statements keep their header amounts (so the ledger, the bill's totals and the reports' statement
    totals do not change), their other lines and their usage summaries; ``usage_detail_purged_at`` says when
    the detail went. Nothing happens while retention is not configured. Returns the number of lines removed.

    Not one transaction on purpose: each batch of statements is its own transaction, so a purge over years of
    data never holds locks on many statements (or a huge undo log) at once; an interrupted run leaves
    consistent statements and the next run continues. One audit record per run carries the counts.
    """
    retention = DataRetention.current()
    days = retention.usage_detail_days
    if retention.pk is None or days is None:
        return 0
    today = today or timezone.localdate()
    cutoff = today - dt.timedelta(days=days)
    statements = lines = 0
    while True:
        ids = list(_purgeable(cutoff).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic():
            # Lock them: a biller replacing one of them at this moment (statements.services.statement_ingest)
            # rewrites its lines; re-check the conditions after the lock.
            locked = list(
                _purgeable(cutoff)
                .filter(pk__in=ids)
                .select_for_update(of=("self",))
                .values_list("pk", flat=True)
            )
            if not locked:
                continue
            removed, _ = StatementLine.objects.filter(
                statement_id__in=locked, line_type=StatementLine.Type.USAGE
            ).delete()
            Statement.objects.filter(pk__in=locked).update(usage_detail_purged_at=timezone.now())
        statements += len(locked)
        lines += removed
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="statements.usage_detail_purge",
            obj=retention,
            after={
                "usage_detail_days": days,
                "cutoff": cutoff.isoformat(),
                "statements": statements,
                "lines_removed": lines,
            },
        )
    logger.info("Usage detail purge before %s: %s lines of %s statements", cutoff, lines, statements)
    return lines


def statements_mark_overdue(
    *, today: dt.date | None = None, batch_size: int = OVERDUE_BATCH_SIZE, actor: str = OVERDUE_ACTOR
) -> int:
    """Open and partially paid statements whose due date has passed become overdue. Returns how many.

    A bulk update per batch; each statement's change is audited (``statement.status``, as when a biller
    changes a status), so the account's history says when and why it became overdue.
    """
    today = today or timezone.localdate()
    due = Statement.objects.filter(
        status__in=(Statement.Status.OPEN, Statement.Status.PARTIALLY_PAID), due_date__lt=today
    ).exclude(
        # Held out of collections: a statement whose open disputes hold all its charges is not overdue.
        disputed_amount__gt=0,
        disputed_amount__gte=F("new_charges") + F("taxes"),
    )
    request_id = current_request_id()
    changed = 0
    while True:
        with transaction.atomic():
            # Locked and re-read, so a status a biller sets at this moment is not overwritten by a stale one.
            batch = list(
                due.order_by("pk")
                .select_for_update(of=("self",))
                .values_list("pk", "account_id", "status")[:batch_size]
            )
            if not batch:
                break
            Statement.objects.filter(pk__in=[pk for pk, _, _ in batch]).update(
                status=Statement.Status.OVERDUE
            )
            AuditRecord.objects.bulk_create(
                [
                    AuditRecord(
                        actor_type=AuditRecord.ActorType.SYSTEM,
                        actor_label=actor[:200],
                        action="statement.status",
                        object_type=Statement._meta.label_lower,
                        object_id=str(pk),
                        account_id=account_id,
                        before={"status": status},
                        after={"status": Statement.Status.OVERDUE},
                        request_id=request_id,
                    )
                    for pk, account_id, status in batch
                ]
            )
        changed += len(batch)
    if changed:
        logger.info("Marked %s statements overdue (due before %s)", changed, today)
    return changed
