"""Reads of cases and disputes for the CSR pages, the portal and the API (a fixed number of queries each)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Case as Rank
from django.db.models import DecimalField, IntegerField, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Account, BillingSuspension
from statements.models import AccountBalance, BalanceType, Statement

from .models import Case, CaseEvent, Dispute, ServiceProcess


def cases(*, account_ids: list[int] | None = None) -> QuerySet[Case]:
    qs = Case.objects.select_related("process", "account", "owner", "statement")
    if account_ids is not None:
        qs = qs.filter(account_id__in=account_ids)
    return qs


def account_cases(*, account: Account, limit: int | None = None) -> list[Case]:
    """The account's cases, open ones first, then newest (with their dispute, if any)."""
    qs = (
        cases(account_ids=[account.pk])
        .select_related("dispute")
        .annotate(
            closed_rank=Rank(
                When(status__in=Case.OPEN_STATUSES, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            )
        )
        .order_by("closed_rank", "-created_at", "-id")
    )
    return list(qs[:limit] if limit else qs)


def case_by_number(*, number: str, account_ids: list[int] | None = None) -> Case | None:
    """One case with what its page shows; ``account_ids`` scopes it (another account's case is None)."""
    qs = cases(account_ids=account_ids).select_related(
        "dispute", "dispute__statement_line", "dispute__adjustment"
    )
    return qs.filter(number=number).first()


def case_history(*, case: Case, public_only: bool = False) -> list[CaseEvent]:
    qs = CaseEvent.objects.filter(case=case).select_related("actor").order_by("created_at", "id")
    if public_only:
        qs = qs.filter(public=True)
    return list(qs)


def account_disputes(*, account: Account, limit: int | None = None) -> list[Dispute]:
    qs = (
        Dispute.objects.filter(account=account)
        .select_related("case", "statement", "statement_line", "resolved_by")
        .annotate(
            closed_rank=Rank(
                When(status=Dispute.Status.OPEN, then=Value(0)), default=Value(1), output_field=IntegerField()
            )
        )
        .order_by("closed_rank", "-created_at", "-id")
    )
    return list(qs[:limit] if limit else qs)


def open_line_disputes(*, statement: Statement) -> dict[int | None, Dispute]:
    """The statement's open disputes by line id (None: the whole statement), for the dispute actions."""
    return {
        d.statement_line_id: d
        for d in Dispute.objects.filter(statement=statement, status=Dispute.Status.OPEN).select_related(
            "case"
        )
    }


def statement_disputes(*, statement: Statement) -> list[Dispute]:
    return list(
        Dispute.objects.filter(statement=statement)
        .select_related("case", "statement_line")
        .order_by("-created_at")
    )


def portal_processes() -> list[ServiceProcess]:
    return list(ServiceProcess.objects.filter(active=True, portal=True).order_by("position", "name"))


def staff_processes() -> list[ServiceProcess]:
    return list(ServiceProcess.objects.filter(active=True).order_by("position", "name"))


@dataclass(frozen=True)
class QueueFilter:
    process: str = ""  # a process code
    status: str = ""  # a status, "open" (every open status) or "" (every status)
    due_before: dt.date | None = None
    queue: str = ""
    mine_user_id: int | None = None


def queue_cases(*, filters: QueueFilter, limit: int = 200) -> tuple[list[Case], int]:
    """The supervisors' queue: overdue open cases first, then by due date. Returns (cases, total)."""
    now = timezone.now()
    qs = cases()
    if filters.status == "open" or not filters.status:
        qs = qs.filter(status__in=Case.OPEN_STATUSES)
    elif filters.status != "all":
        qs = qs.filter(status=filters.status)
    if filters.process:
        qs = qs.filter(process__code=filters.process)
    if filters.queue:
        qs = qs.filter(queue=filters.queue)
    if filters.due_before:
        qs = qs.filter(due_at__date__lte=filters.due_before)
    if filters.mine_user_id:
        qs = qs.filter(owner_id=filters.mine_user_id)
    qs = qs.select_related("dispute").annotate(
        overdue_rank=Rank(
            When(Q(status__in=Case.OPEN_STATUSES, due_at__lt=now), then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        )
    )
    total = qs.count()
    return list(qs.order_by("overdue_rank", "due_at", "id")[:limit]), total


def queues() -> list[str]:
    return sorted(set(ServiceProcess.objects.values_list("queue", flat=True)))


def is_overdue(case: Case, now: dt.datetime | None = None) -> bool:
    return case.is_open and case.due_at < (now or timezone.now())


@dataclass(frozen=True)
class PastDue:
    currency: str
    past_due: Decimal  # owed on statements past their due date, disputed amounts held out
    disputed: Decimal  # held by open disputes (on every statement)
    statements: int  # how many statements are past due


def account_past_due(*, account: Account, today: dt.date | None = None) -> list[PastDue]:
    """What the account owes on statements past their due date, less what their open disputes hold, per
    currency (at most two queries). Paid statements owe nothing; a partly paid one owes its charges less what
    was allocated to it; and past due is never more than the account's balance less what disputes hold (a
    credit not allocated to any statement, such as an approved dispute's, lowers it too)."""
    today = today or timezone.localdate()
    money = DecimalField(max_digits=18, decimal_places=4)
    rows = (
        Statement.objects.filter(account=account)
        .exclude(status=Statement.Status.PAID)
        .filter(Q(due_date__lt=today) | Q(disputed_amount__gt=0))
        .annotate(
            allocated=Coalesce(
                Sum("allocations__amount", filter=Q(allocations__reversed=False)), Value(Decimal(0)),
                output_field=money,
            )
        )
        .values_list("currency", "due_date", "new_charges", "taxes", "disputed_amount", "allocated")
    )  # fmt: skip
    totals: dict[str, list] = {}
    for currency, due_date, charges, taxes, disputed, allocated in rows:
        entry = totals.setdefault(currency, [Decimal(0), Decimal(0), 0])
        entry[1] += disputed
        if due_date < today:
            owed = charges + taxes - allocated - disputed
            if owed > 0:
                entry[0] += owed
                entry[2] += 1
    if any(v[0] for v in totals.values()):
        balances = dict(
            AccountBalance.objects.filter(account=account, balance_type=BalanceType.RECEIVABLE).values_list(
                "currency", "amount"
            )
        )
        for currency, entry in totals.items():
            ceiling = max(balances.get(currency, Decimal(0)) - entry[1], Decimal(0))
            entry[0] = min(entry[0], ceiling)
    return [PastDue(c, v[0], v[1], v[2]) for c, v in sorted(totals.items()) if v[0] or v[1]]


def open_suspension(*, account: Account) -> BillingSuspension | None:
    return BillingSuspension.objects.filter(account=account, ended_at__isnull=True).first()
