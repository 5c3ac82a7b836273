"""Bill creation for one bill unit ("bill now", source 004's real-time billing) and its preview.

``bill_create`` rates every subscription the bill carries (each in its own transaction, so a segment in error
is kept with its error), then, in one transaction, assembles one Statement for the bill unit (the account, or
its paying parent with the non-paying children's segments on it): it sweeps the ledger rows posted since the
last bill, computes previous balance, payments, adjustments, new charges, taxes, total due and due date, posts
the bill to the ledger, freezes the segments on it and attaches the bill messages. ``bill_preview`` does the
same inside a transaction it rolls back, so it shows exactly that bill and stores nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Account, BillingSuspension
from accounts.selectors import paying_account
from billing_mgmt.errors import ApplicationError

from ..models import BillSegment, Subscription
from ..selectors import bill_unit_subscriptions
from .assembly import BillResult, SegmentError, bills_assemble, engine_biller
from .rating import subscriptions_rate

__all__ = ["BillResult", "SegmentError", "bill_create", "bill_preview", "engine_biller"]


class _Rollback(Exception):
    pass


def _errors(subscriptions: list[Subscription]) -> list[SegmentError]:
    segments = BillSegment.objects.filter(
        subscription__in=subscriptions, status=BillSegment.Status.ERROR
    ).select_related("subscription")
    return [
        SegmentError(
            s.subscription_id,
            s.subscription.service_identifier,
            s.period_start,
            s.period_end,
            s.error_code,
            s.error_message,
        )
        for s in segments.order_by("subscription__processing_sequence", "subscription_id", "period_start")
    ]


def _rate_all(subscriptions: list[Subscription], bill_as_of: dt.date, currency: str) -> list[SegmentError]:
    """Rate the subscriptions in the bill's currency (in processing-sequence order, in one set)."""
    problems = []
    ratable = []
    for subscription in subscriptions:
        if subscription.currency != currency:
            problems.append(
                SegmentError(
                    subscription.pk,
                    subscription.service_identifier,
                    subscription.start_date,
                    subscription.start_date,
                    "currency_mismatch",
                    f"The plan is in {subscription.currency}; the bill is in {currency}.",
                )
            )
            continue
        ratable.append(subscription)
    subscriptions_rate(subscriptions=ratable, bill_as_of=bill_as_of)
    return problems


def _assemble(
    *, unit: Account, bill_date: dt.date, subscriptions: list[Subscription], actor: Any, preview: bool
) -> BillResult:
    results = bills_assemble(
        subscriptions_by_unit={unit.pk: [s.pk for s in subscriptions]},
        bill_date=bill_date,
        actor=actor,
        preview=preview,
        details=True,
    )
    if unit.pk not in results:
        raise ApplicationError(
            "There is nothing to bill: no rated charges and no payments or adjustments since the last bill.",
            code="nothing_to_bill",
        )
    return results[unit.pk]


def _bill(
    *, account: Account, bill_date: dt.date | None, bill_as_of: dt.date | None, actor: Any, preview: bool
):
    bill_date = bill_date or timezone.localdate()
    bill_as_of = bill_as_of or bill_date
    unit = paying_account(account=account)
    profile = getattr(unit, "billing_profile", None)
    if profile is None:
        raise ApplicationError(f"Account {unit.number} has no billing profile.", code="no_billing_profile")
    suspension = BillingSuspension.objects.filter(account=unit, ended_at__isnull=True).first()
    if suspension is not None and not preview:
        raise ApplicationError(
            f"Billing of account {unit.number} is suspended since {suspension.started_at:%Y-%m-%d}"
            f"{f' ({suspension.reference})' if suspension.reference else ''}; resume it to bill now.",
            code="billing_suspended",
        )
    subscriptions = bill_unit_subscriptions(unit=unit)
    problems = _rate_all(subscriptions, bill_as_of, profile.currency)
    try:
        with transaction.atomic():
            result = _assemble(
                unit=unit, bill_date=bill_date, subscriptions=subscriptions, actor=actor, preview=preview
            )
            result.errors = problems + _errors(subscriptions)
    except ApplicationError as exc:
        errors = problems + _errors(subscriptions)
        if exc.code != "nothing_to_bill" or not errors:
            raise
        raise ApplicationError(
            f"There is nothing to bill: {len(errors)} subscription period(s) could not be rated.",
            code="nothing_to_bill",
            fields={
                f"subscription_{e.subscription_id}": [f"{e.period_start} – {e.period_end}: {e.message}"]
                for e in errors
            },
        ) from None
    if preview:
        raise _Rollback(result)
    return result


def bill_create(
    *,
    account: Account,
    bill_date: dt.date | None = None,
    bill_as_of: dt.date | None = None,
    actor: Any = None,
) -> BillResult:
    """Bill the account's bill unit now. Segments in error are left out (listed on the result) and billed
    once they are fixed; a second call finds nothing new to bill (``nothing_to_bill``)."""
    result = _bill(account=account, bill_date=bill_date, bill_as_of=bill_as_of, actor=actor, preview=False)
    invoice_soon(result.statement.pk)
    return result


def invoice_soon(statement_id: int) -> None:
    """Once the bill has committed, a worker issues and renders its invoice (never this web request: a
    PDF takes a tenth of a second or more). The daily catch-up does it if the queue loses the task."""

    def dispatch() -> None:
        from invoicing.tasks import render_invoices

        render_invoices.delay(statement_ids=[statement_id])

    transaction.on_commit(dispatch)


def bill_preview(
    *,
    account: Account,
    bill_date: dt.date | None = None,
    bill_as_of: dt.date | None = None,
    actor: Any = None,
) -> BillResult:
    """The bill ``bill_create`` would make now, computed the same way, with nothing stored."""
    try:
        with transaction.atomic():
            _bill(account=account, bill_date=bill_date, bill_as_of=bill_as_of, actor=actor, preview=True)
    except _Rollback as done:
        return done.args[0]
    raise AssertionError("unreachable")  # pragma: no cover
