"""The reads behind the statements API, scoped to the caller: a biller sees only its own statements.

Every queryset here runs a fixed number of queries whatever the page size or the number of lines: the
account's reference at the statement's biller, the account number, the biller code and the counts of lines
and usage items are annotations, and a detail's lines and usage are prefetched.
"""

from __future__ import annotations

from django.db.models import Count, F, IntegerField, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce

from accounts.models import Biller, BillerReference
from statements.models import (
    BillerBalanceSnapshot,
    FinancialTransaction,
    Statement,
    StatementLine,
    UsageSummary,
)


def _reference_at_biller(account: str = "account_id", biller: str = "biller_id") -> Subquery:
    """The account's reference at the row's biller (at most one: one reference per account and biller)."""
    return Subquery(
        BillerReference.objects.filter(account_id=OuterRef(account), biller_id=OuterRef(biller)).values(
            "external_ref"
        )[:1]
    )


def _count_of(model: type[StatementLine] | type[UsageSummary]) -> Coalesce:
    counts = (
        model.objects.filter(statement_id=OuterRef("pk"))
        .order_by()
        .values("statement_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), 0)


def api_statements(*, biller: Biller | None) -> QuerySet[Statement]:
    """Statements as the API lists them. ``biller`` None means a staff caller (every biller's statements).

    Each row carries ``account_ref``, ``account_number``, ``biller_code``, ``lines_count`` and
    ``usage_count``: one query per page.
    """
    qs = Statement.objects.annotate(
        account_ref=_reference_at_biller(),
        account_number=F("account__number"),
        biller_code=F("biller__code"),
        lines_count=_count_of(StatementLine),
        usage_count=_count_of(UsageSummary),
    )
    if biller is not None:
        qs = qs.filter(biller=biller)
    return qs


def api_statement_detail(*, biller: Biller | None) -> QuerySet[Statement]:
    """Statements with their lines (in bill order) and usage summaries: three queries for one statement."""
    return api_statements(biller=biller).prefetch_related(
        Prefetch("lines", queryset=StatementLine.objects.order_by("position", "id")),
        Prefetch(
            "usage_summaries",
            queryset=UsageSummary.objects.order_by("service_identifier", "usage_type", "id"),
        ),
    )


def api_balance_snapshot(*, biller: Biller, snapshot_id: int) -> BillerBalanceSnapshot:
    return BillerBalanceSnapshot.objects.annotate(account_ref=_reference_at_biller()).get(
        biller=biller, pk=snapshot_id
    )


def api_biller_transaction(*, biller: Biller, transaction_id: int) -> FinancialTransaction:
    return FinancialTransaction.objects.annotate(
        account_ref=_reference_at_biller(), statement_external_id=F("statement__external_id")
    ).get(biller=biller, pk=transaction_id)


def api_statement_usage(*, biller: Biller, statement_id: int) -> Statement:
    return (
        Statement.objects.filter(biller=biller)
        .only("id", "external_id", "number")
        .prefetch_related(
            Prefetch(
                "usage_summaries",
                queryset=UsageSummary.objects.order_by("service_identifier", "usage_type", "id"),
            )
        )
        .get(pk=statement_id)
    )
