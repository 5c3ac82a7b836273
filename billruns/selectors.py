"""Reads of the billing engine for the CSR pages: an account's subscriptions with their last bill segment, and
a statement's calculation (its segments and their calculation lines)."""

from __future__ import annotations

from django.db.models import Case, IntegerField, OuterRef, Prefetch, Subquery, Value, When

from accounts.models import Account
from accounts.selectors import billed_accounts

from .models import BillSegment, CalculationLine, Subscription


def subscription_accounts(*, account: Account) -> list[Account]:
    """Whose subscriptions the account's page lists: a paying account's own and its non-paying descendants'
    (they are billed on its bill); a non-paying account's own. One query per hierarchy level (bounded)."""
    return billed_accounts(account=account) if account.is_paying else [account]


def account_subscriptions(*, accounts: list[Account], limit: int) -> tuple[list[Subscription], bool]:
    """Up to ``limit`` subscriptions of these accounts (the first account's own first), each with
    ``last_segment`` (its latest bill segment, or None), and whether there were more. Two queries, whatever
    the number of subscriptions."""
    first = accounts[0].pk
    rows = list(
        Subscription.objects.filter(account__in=accounts)
        .select_related("price_plan__product", "frequency", "account")
        .annotate(
            own=Case(When(account_id=first, then=Value(0)), default=Value(1), output_field=IntegerField())
        )
        .order_by("own", "account__number", "processing_sequence", "id")[: limit + 1]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    # The newest segment of each subscription in one query (a correlated subquery: it runs on SQLite, the
    # embedded default, as well as on PostgreSQL, which has no portable DISTINCT ON).
    newest = BillSegment.objects.filter(subscription=OuterRef("subscription")).order_by("-period_start")
    latest = {
        segment.subscription_id: segment
        for segment in BillSegment.objects.filter(
            subscription__in=rows, pk=Subquery(newest.values("pk")[:1])
        ).select_related("statement__account")
    }
    for subscription in rows:
        subscription.last_segment = latest.get(subscription.pk)
    return rows, more


def statement_calculation(*, statement_id: int) -> list[BillSegment]:
    """The segments a statement carries, in the order the bill lists them, each with its subscription (plan,
    product, account) and its calculation lines by position. Two queries, whatever the number of lines."""
    return list(
        BillSegment.objects.filter(statement_id=statement_id)
        .select_related("subscription__price_plan__product", "subscription__account")
        .prefetch_related(Prefetch("lines", queryset=CalculationLine.objects.order_by("position", "id")))
        .order_by("subscription__processing_sequence", "subscription_id", "period_start")
    )


def bill_unit_subscriptions(*, unit: Account) -> list[Subscription]:
    """The subscriptions one bill carries: the bill unit's and its non-paying descendants', in processing
    sequence order. Prepaid subscriptions are billed by prepaid runs against the wallet, not on bills."""
    ids = [a.pk for a in billed_accounts(account=unit)]
    return list(
        Subscription.objects.filter(account_id__in=ids, billing_term_scheme__kind="normal")
        .select_related("price_plan", "account")
        .order_by("processing_sequence", "id")
    )
