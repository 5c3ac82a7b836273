"""The daily invoicing catch-up (source 003: "If you miss any billing days, the pin_inv_accts utility still
generates invoices for accounts whose billing day was missed").

Every bill of this product's engine that has no rendered invoice gets one: bills made by "bill now", by a run
executed only up to Assembling & Posting, on days the job did not run, and invoices whose rendering failed
(they keep their number). The job finds them in one query and hands them to render tasks in batches; it never
renders in the web process.
"""

from __future__ import annotations

from django.db.models import Q

from statements.models import Statement

from ..models import Invoice
from .issuing import invoiceable

# Bills per render task: large enough that per-task overhead is small, small enough to spread over workers.
CATCH_UP_BATCH = 200


def bills_without_documents(*, limit: int | None = None) -> list[int]:
    """Ids of engine bills whose invoice is missing or not rendered, oldest first."""
    rows = (
        invoiceable(Statement.objects.all())
        .filter(Q(invoice__isnull=True) | ~Q(invoice__status=Invoice.Status.RENDERED))
        .order_by("statement_date", "pk")
        .values_list("pk", flat=True)
    )
    return list(rows[:limit] if limit else rows)


def catch_up_batches(*, limit: int | None = None) -> list[list[int]]:
    """The bills to invoice, cut into render batches (each becomes one ``invoicing.render_invoices`` task)."""
    ids = bills_without_documents(limit=limit)
    return [ids[i : i + CATCH_UP_BATCH] for i in range(0, len(ids), CATCH_UP_BATCH)]
