"""Reads of the customer portal. Everything a customer sees is scoped to the accounts of their own contacts
(``customer_accounts``); each function takes those account ids and returns nothing of any other account, so
that a changed id in a URL finds nothing (the views answer 404). A fixed number of queries each.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db.models import Case as Rank
from django.db.models import IntegerField, Prefetch, Q, QuerySet, Value, When
from django.utils import timezone

from accounts.models import Account
from billing_mgmt.roles import STAFF_ROLES
from disputes import selectors as dispute_selectors
from disputes.models import Case, CaseEvent, Dispute
from invoicing.models import Invoice
from statements.models import Statement, StatementLine, UsageSummary
from statements.selectors.ledger import account_receivable

UNPAID = (Statement.Status.OPEN, Statement.Status.PARTIALLY_PAID, Statement.Status.OVERDUE)


def customer_accounts(*, user) -> list[Account]:
    """The accounts of the user's contacts (one query), by name. A customer sees these and nothing else."""
    if not getattr(user, "is_authenticated", False):
        return []
    return list(
        Account.objects.filter(contacts__user=user)
        .select_related("billing_profile")
        .distinct()
        .order_by("name", "number")
    )


# --- statements ---------------------------------------------------------------------------------------------


def statements(*, account_ids: list[int]) -> QuerySet[Statement]:
    """Statements of these accounts, newest first, with their invoice (to link the downloads)."""
    return (
        Statement.objects.filter(account_id__in=account_ids)
        .select_related("account", "invoice")
        .order_by("-statement_date", "-id")
    )


def statement(*, statement_id: int, account_ids: list[int]) -> Statement | None:
    """One statement of these accounts with its lines (by position), usage and invoice: three queries; None
    when it is not one of theirs."""
    return (
        Statement.objects.filter(pk=statement_id, account_id__in=account_ids)
        .select_related("biller", "account", "account__billing_profile", "invoice")
        .prefetch_related(
            Prefetch("lines", queryset=StatementLine.objects.order_by("position", "id")),
            Prefetch(
                "usage_summaries",
                queryset=UsageSummary.objects.order_by("service_identifier", "usage_type", "id"),
            ),
        )
        .first()
    )


def statement_line(*, line_id: int, account_ids: list[int]) -> StatementLine | None:
    """A line of one of these accounts' statements (of any of them), or None."""
    return (
        StatementLine.objects.filter(pk=line_id, statement__account_id__in=account_ids)
        .select_related("statement")
        .first()
    )


def unpaid_statements(*, account_ids: list[int]) -> QuerySet[Statement]:
    """What a customer may ask more time for: statements not yet paid, newest first."""
    return statements(account_ids=account_ids).filter(status__in=UNPAID)


def invoice(*, number: str, account_ids: list[int]) -> Invoice | None:
    return Invoice.objects.filter(number=number, account_id__in=account_ids).first()


# --- the home page ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountSummary:
    account: Account
    currency: str
    balance: Decimal
    past_due: Decimal
    disputed: Decimal
    past_due_statements: int
    next_due: Statement | None  # the unpaid statement due next (or the oldest overdue one)
    latest: Statement | None
    open_cases: int
    recent_cases: list[Case]


def account_summary(
    *, account: Account, today: dt.date | None = None, cases_shown: int = 3
) -> AccountSummary:
    """What the home page shows of one account: a fixed number of queries (seven at most) whatever its
    history."""
    today = today or timezone.localdate()
    profile = getattr(account, "billing_profile", None)
    currency = profile.currency if profile else ""
    receivable = account_receivable(account_id=account.pk)
    balance = receivable.amount if receivable is not None else Decimal(0)
    if receivable is not None:
        currency = receivable.currency or currency
    past_due = disputed = Decimal(0)
    overdue_count = 0
    for row in dispute_selectors.account_past_due(account=account, today=today):
        if not currency or row.currency == currency:
            currency = row.currency
            past_due, disputed, overdue_count = row.past_due, row.disputed, row.statements
    unpaid = Statement.objects.filter(account=account, status__in=UNPAID)
    next_due = (
        unpaid.annotate(
            overdue_rank=Rank(
                When(due_date__lt=today, then=Value(1)), default=Value(0), output_field=IntegerField()
            )
        )  # fmt: skip
        .order_by("overdue_rank", "due_date", "id")
        .first()
    )
    latest = statements(account_ids=[account.pk]).first()
    recent = list(portal_cases(account_ids=[account.pk])[: cases_shown + 1])
    open_cases = Case.objects.filter(account=account, status__in=Case.OPEN_STATUSES).count()
    return AccountSummary(
        account=account,
        currency=currency,
        balance=balance,
        past_due=past_due,
        disputed=disputed,
        past_due_statements=overdue_count,
        next_due=next_due,
        latest=latest,
        open_cases=open_cases,
        recent_cases=recent[:cases_shown],
    )


# --- cases --------------------------------------------------------------------------------------------------


def portal_cases(*, account_ids: list[int]) -> QuerySet[Case]:
    """These accounts' cases, open ones first, then newest, with their process and dispute."""
    return (
        dispute_selectors.cases(account_ids=account_ids)
        .select_related("dispute")
        .annotate(
            closed_rank=Rank(
                When(status__in=Case.OPEN_STATUSES, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            )
        )  # fmt: skip
        .order_by("closed_rank", "-created_at", "-id")
    )


def case(*, number: str, account_ids: list[int]) -> Case | None:
    return dispute_selectors.case_by_number(number=number, account_ids=account_ids)


def open_disputes_by_line(*, statement: Statement) -> dict[int | None, Dispute]:
    return dispute_selectors.open_line_disputes(statement=statement)


def staff_actor_ids(*, events: list[CaseEvent]) -> set[int]:
    """Which of the events' authors are staff (one query at most): the history names them "Customer
    service", never a colleague's own name."""
    ids = {e.actor_id for e in events if e.actor_id is not None}
    if not ids:
        return set()
    users = get_user_model().objects.filter(pk__in=ids)
    return set(
        users.filter(Q(is_superuser=True) | Q(groups__name__in=STAFF_ROLES)).values_list("pk", flat=True)
    )
