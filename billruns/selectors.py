"""Reads of the billing engine for the CSR pages: an account's subscriptions with their last bill segment, a
statement's calculation (its segments and their calculation lines), a bill unit's prepaid wallet, and a
billing run's progress per step."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    Count,
    IntegerField,
    OuterRef,
    Prefetch,
    Subquery,
    Value,
    When,
)
from django.db.models.expressions import RawSQL

from accounts.models import Account
from accounts.selectors import billed_accounts, paying_account
from statements.models import AccountBalance, BalanceType, FinancialTransaction

from .models import (
    BillingRun,
    BillingTermScheme,
    BillSegment,
    CalculationLine,
    RunChunk,
    RunStep,
    Stage,
    Subscription,
    UsageRecord,
    WalletEstimate,
)


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


@dataclass
class Wallet:
    """A bill unit's prepaid wallet as the account page shows it: the cached ledger balance (positive is money
    in the wallet), the last estimate of when it runs out, and its latest ledger rows."""

    unit: Account
    currency: str
    balance: Decimal
    transaction_count: int
    has_prepaid: bool
    estimate: WalletEstimate | None
    transactions: list[FinancialTransaction]


def _has_prepaid_subscriptions(unit_id: int) -> RawSQL:
    """Whether the bill unit or a non-paying account billed with it (at any depth) has a prepaid
    subscription: one EXISTS over a recursive walk down the hierarchy (PostgreSQL and SQLite alike)."""
    quote = connection.ops.quote_name
    account = quote(Account._meta.db_table)
    subscription = quote(Subscription._meta.db_table)
    scheme = quote(BillingTermScheme._meta.db_table)
    sql = f"""
        EXISTS (
            WITH RECURSIVE members(id, depth) AS (
                SELECT id, 0 FROM {account} WHERE id = %s
                UNION ALL
                SELECT a.id, m.depth + 1 FROM {account} a JOIN members m ON a.parent_id = m.id
                WHERE NOT a.is_paying AND m.depth < %s
            )
            SELECT 1 FROM {subscription} s JOIN {scheme} t ON t.id = s.billing_term_scheme_id
            WHERE s.account_id IN (SELECT id FROM members) AND t.kind = %s
        )
    """
    return RawSQL(sql, (unit_id, Account.MAX_DEPTH + 1, BillingTermScheme.Kind.PREPAID), BooleanField())


def account_wallet(*, account: Account, limit: int = 10) -> Wallet | None:
    """The prepaid wallet of the account's bill unit (its paying account), or None when the unit has none:
    no wallet balance, no estimate and no prepaid subscription of its own or of the accounts billed with it.

    One query for the unit, its wallet balance, its estimate (with the run that made it) and whether it is
    prepaid; one more for its last ``limit`` wallet rows. Nothing grows with the history."""
    unit_id = paying_account(account=account).pk
    balances = AccountBalance.objects.filter(account=OuterRef("pk"), balance_type=BalanceType.WALLET)
    unit = (
        Account.objects.select_related("billing_profile", "wallet_estimate__run")
        .annotate(
            wallet_currency=Subquery(balances.values("currency")[:1]),
            wallet_amount=Subquery(balances.values("amount")[:1]),
            wallet_count=Subquery(balances.values("transaction_count")[:1]),
            has_prepaid=_has_prepaid_subscriptions(unit_id),
        )
        .get(pk=unit_id)
    )
    try:
        estimate = unit.wallet_estimate
    except WalletEstimate.DoesNotExist:
        estimate = None
    if unit.wallet_currency is None and estimate is None and not unit.has_prepaid:
        return None
    profile = getattr(unit, "billing_profile", None)
    # The account bills in its profile's currency (the ledger refuses another); the wallet's rows agree.
    currency = getattr(profile, "currency", "") or unit.wallet_currency or getattr(estimate, "currency", "")
    transactions = list(
        FinancialTransaction.objects.filter(account_id=unit_id, balance_type=BalanceType.WALLET)
        .select_related("created_by")
        .order_by("-posted_at", "-id")[:limit]
    )
    return Wallet(
        unit=unit,
        currency=currency,
        balance=unit.wallet_amount if unit.wallet_amount is not None else Decimal(0),
        transaction_count=unit.wallet_count or 0,
        has_prepaid=unit.has_prepaid,
        estimate=estimate,
        transactions=transactions,
    )


# Billing runs: live progress and results per step (the admin run page, the API, manage.py billrun).


@dataclass
class StepProgress:
    stage: str
    label: str
    status: str
    accounts_done: int
    accounts_total: int
    percent: int
    chunks_done: int
    chunks_total: int
    chunks_dead: int
    entities: int
    transactions: int
    exceptions: int
    totals: dict[str, str]
    note: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


def billrun_progress(*, run: BillingRun) -> list[StepProgress]:
    """Each stage of the run with its live progress (chunks and accounts done) and its results."""
    steps = {s.stage: s for s in RunStep.objects.filter(run=run)}
    counts: dict[tuple[str, str], int] = {
        (stage, status): n
        for stage, status, n in RunChunk.objects.filter(run=run)
        .values("stage", "status")
        .annotate(n=Count("id"))
        .values_list("stage", "status", "n")
        .order_by()
    }
    result = []
    for stage in run.stages:
        step = steps.get(stage)
        done = counts.get((stage, RunChunk.Status.DONE), 0)
        dead = counts.get((stage, RunChunk.Status.DEAD), 0)
        result.append(
            StepProgress(
                stage=stage,
                label=Stage(stage).label,
                status=step.status if step else "not_started",
                accounts_done=step.accounts_done if step else 0,
                accounts_total=step.accounts_total if step else 0,
                percent=step.percent if step else 0,
                chunks_done=done,
                chunks_total=step.chunks_total if step else 0,
                chunks_dead=dead,
                entities=step.entities if step else 0,
                transactions=step.transactions if step else 0,
                exceptions=step.exceptions if step else 0,
                totals={k: str(Decimal(v)) for k, v in (step.totals if step else {}).items()},
                note=step.note if step else "",
                started_at=step.started_at if step else None,
                finished_at=step.finished_at if step else None,
            )
        )
    return result


def invoice_usage_events(*, statement_ids: list[int], limit: int) -> dict[int, dict[str, tuple[list, int]]]:
    """The usage events (rated usage records) of each bill, per service identifier, for detailed invoices
    (source 003): statement id -> identifier -> (the first ``limit`` events in time order, how many there
    are). One query whatever the number of bills (settings.INVOICE_USAGE_EVENTS names this function)."""
    from django.db.models import F, Window
    from django.db.models.functions import RowNumber

    from invoicing.content import UsageEvent

    if not statement_ids:
        return {}
    partition = [F("rating__segment__statement_id"), F("subscription__service_identifier")]
    rows = (
        UsageRecord.objects.filter(rating__segment__statement_id__in=statement_ids)
        .annotate(
            row=Window(RowNumber(), partition_by=partition, order_by=[F("event_time"), F("id")]),
            of=Window(Count("id"), partition_by=partition),
        )
        .filter(row__lte=limit)
        .order_by()
        .values_list(
            "rating__segment__statement_id",
            "subscription__service_identifier",
            "event_time",
            "usage_type__name",
            "usage_type_code",
            "quantity",
            "unit",
            "row",
            "of",
        )
    )
    out: dict[int, dict[str, tuple[list, int]]] = {}
    for statement_id, identifier, time, type_name, code, quantity, unit, _row, count in sorted(
        rows, key=lambda r: (r[0], r[1], r[7])
    ):
        per = out.setdefault(statement_id, {})
        events, _ = per.get(identifier, ([], count))
        events.append(UsageEvent(time=time, usage_type=type_name or code, quantity=quantity, unit=unit))
        per[identifier] = (events, count)
    return out


def is_prepaid_account(*, account: Account) -> bool:
    """Whether the account's bill unit pays in advance from a wallet (it or an account billed with it has a
    prepaid subscription). Payments (settings.PAYMENTS_PREPAID_CHECK) send such an account's payments to its
    wallet. One query."""
    unit_id = paying_account(account=account).pk
    return bool(
        Account.objects.filter(pk=unit_id)
        .annotate(has_prepaid=_has_prepaid_subscriptions(unit_id))
        .values_list("has_prepaid", flat=True)
        .first()
    )
