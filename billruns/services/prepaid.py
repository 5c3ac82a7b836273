"""Prepaid wallets: top-ups, and the estimate of the day a wallet runs out (prepaid runs' optional step).

A prepaid account's wallet is its ``wallet`` balance in the ledger (positive: money in the wallet). Prepaid
runs debit it (billruns.services.run_work); payments (F6) and the API top it up.

The estimate (source 001 "Wallet Consumption Estimation"): starting from the wallet balance, spend each day
the average consumption of the last ``WINDOW_DAYS`` days (every wallet debit, less the recurring and
one-time charges prepaid runs debited, with their share of discounts and taxes), and on each day a billing
period of an active prepaid subscription starts, its recurring charges (the plan's current prices, before
tax); the first day the balance falls below zero is the day it runs out. Nothing within ``HORIZON_DAYS``:
not soon.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import Account, Biller
from accounts.selectors import bill_unit_members, paying_account
from billing_mgmt.errors import ApplicationError
from billing_mgmt.money import quantize, to_decimal
from statements.models import AccountBalance, BalanceType, FinancialTransaction
from statements.services import transaction_post

from ..models import BillSegment, CalculationLine, Price, Subscription, WalletEstimate
from ..models.catalog import PlanComponent
from ..periods import periods

logger = logging.getLogger(__name__)

WINDOW_DAYS = 30
HORIZON_DAYS = 366


def _recurring_charges(unit_ids: list[int], members: dict[int, list[int]], today: dt.date):
    """Per unit: (period start day, amount) of each active prepaid subscription's next recurring charges."""
    unit_of = {account: unit for unit, accounts in members.items() for account in accounts}
    subscriptions = list(
        Subscription.objects.filter(
            account_id__in=list(unit_of), billing_term_scheme__kind="prepaid", start_date__lte=today
        )
        .exclude(end_date__lt=today)
        .select_related("frequency")
    )
    if not subscriptions:
        return {}
    prices: dict[tuple[int, int], list[Price]] = defaultdict(list)
    for price in Price.objects.filter(
        component__plan_id__in={s.price_plan_id for s in subscriptions},
        component__kind=PlanComponent.Kind.RECURRING,
    ).select_related("component"):
        prices[(price.component.plan_id, price.frequency_id)].append(price)
    cycle_days = dict(
        Account.objects.filter(pk__in=unit_ids).values_list("pk", "billing_profile__bill_cycle_day")
    )
    horizon = today + dt.timedelta(days=HORIZON_DAYS)
    charges: dict[int, list[tuple[dt.date, Decimal]]] = defaultdict(list)
    for sub in subscriptions:
        unit = unit_of[sub.account_id]
        for period in periods(sub.start_date, cycle_days.get(unit) or 1, sub.frequency.months):
            if period.start > horizon:
                break
            if period.start <= today or (sub.end_date and period.start > sub.end_date):
                continue
            current = [p for p in prices[(sub.price_plan_id, sub.frequency_id)] if p.covers(period.start)]
            amount = sum((p.amount or Decimal(0) for p in current), Decimal(0))
            if amount:
                charges[unit].append((period.start, amount))
    return charges


NOT_USAGE_KINDS = (CalculationLine.Kind.RECURRING, CalculationLine.Kind.CREDIT, CalculationLine.Kind.ONE_TIME)


def _daily_usage(members: dict[int, list[int]], today: dt.date) -> dict[int, Decimal]:
    """Per bill unit: the average consumption per day over the window: every wallet debit in it (a prepaid
    run's, or one a biller or an admin posted), less the recurring and one-time charges prepaid runs
    debited (with their share of the segment's discounts and taxes), which are projected on their own days."""
    unit_ids = list(members)
    since = today - dt.timedelta(days=WINDOW_DAYS)
    window = {"effective_date__gt": since, "effective_date__lte": today}
    debited = defaultdict(Decimal)
    for account_id, total in (
        FinancialTransaction.objects.filter(
            account_id__in=unit_ids, kind=FinancialTransaction.Kind.WALLET_DEBIT, **window
        )
        .values("account_id")
        .annotate(t=Sum("amount"))
        .values_list("account_id", "t")
        .order_by()
    ):
        debited[account_id] = -total
    segments = {
        pk: (account_id, total, charges)
        for pk, account_id, total, charges in BillSegment.objects.filter(
            wallet_transaction__account_id__in=unit_ids,
            **{f"wallet_transaction__{key}": value for key, value in window.items()},
        ).values_list("pk", "wallet_transaction__account_id", "total", "charges")
    }
    for segment_id, amount in (
        CalculationLine.objects.filter(segment_id__in=list(segments), kind__in=NOT_USAGE_KINDS)
        .values("segment_id")
        .annotate(a=Sum("amount"))
        .values_list("segment_id", "a")
        .order_by()
    ):
        unit, total, charges = segments[segment_id]
        debited[unit] -= amount * total / charges if charges else amount
    return {unit: max(Decimal(0), amount) / WINDOW_DAYS for unit, amount in debited.items()}


def _estimate(balance: Decimal, daily: Decimal, charges: list[tuple[dt.date, Decimal]], today: dt.date):
    if balance <= 0:
        return today
    due = defaultdict(Decimal)
    for day, amount in charges:
        due[day] += amount
    for offset in range(1, HORIZON_DAYS + 1):
        day = today + dt.timedelta(days=offset)
        balance -= daily + due.get(day, Decimal(0))
        if balance < 0:
            return day
    return None


def wallet_estimates_refresh(
    *, account_ids: list[int], today: dt.date | None = None, run: Any = None
) -> list[WalletEstimate]:
    """Estimate when each of these bill units' wallets runs out, in a fixed number of queries."""
    if not account_ids:
        return []
    today = today or timezone.localdate()
    members = bill_unit_members(unit_ids=account_ids)
    balances = {
        row[0]: row[1:]
        for row in AccountBalance.objects.filter(
            account_id__in=account_ids, balance_type=BalanceType.WALLET
        ).values_list("account_id", "amount", "currency")
    }
    currencies = dict(
        Account.objects.filter(pk__in=account_ids).values_list("pk", "billing_profile__currency")
    )
    daily_usage = _daily_usage(members, today)
    charges = _recurring_charges(account_ids, members, today)
    now = timezone.now()
    estimates = []
    for pk in account_ids:
        amount, currency = balances.get(pk, (Decimal(0), currencies.get(pk)))
        if not currency:
            continue  # no wallet and no billing profile: nothing to estimate in

        daily = daily_usage.get(pk, Decimal(0))
        unit_charges = sorted(charges.get(pk, []))
        next_day = unit_charges[0][0] if unit_charges else None
        estimates.append(
            WalletEstimate(
                account_id=pk,
                currency=currency,
                balance=amount,
                daily_consumption=quantize(daily, currency),
                recurring_per_period=sum((a for d, a in unit_charges if d == next_day), Decimal(0)),
                next_charge_on=next_day,
                window_days=WINDOW_DAYS,
                runs_out_on=_estimate(amount, daily, unit_charges, today),
                estimated_at=now,
                run=run,
            )
        )
    WalletEstimate.objects.bulk_create(
        estimates,
        update_conflicts=True,
        unique_fields=["account"],
        update_fields=[
            "currency", "balance", "daily_consumption", "recurring_per_period", "next_charge_on",
            "window_days", "runs_out_on", "estimated_at", "run",
        ],
    )  # fmt: skip
    return estimates


@transaction.atomic
def wallet_topup(
    *,
    account: Account,
    amount: Decimal,
    currency: str,
    effective_date: dt.date | None = None,
    biller: Biller | None = None,
    external_id: str = "",
    idempotency_key: str | None = None,
    description: str = "",
    actor: Any = None,
    refresh_estimate: bool = True,
) -> tuple[FinancialTransaction, bool]:
    """Money into a prepaid wallet (the bill unit's). Idempotent by the biller's external id or the key.
    The wallet's estimate is made again with the new balance (whoever tops up: the API, a CSR, payments)."""
    unit = paying_account(account=account)
    try:
        value = to_decimal(amount)
    except (TypeError, ValueError) as exc:
        raise ApplicationError("The amount is not valid.", fields={"amount": [str(exc)]}) from None
    if value <= 0:
        raise ApplicationError(
            "A top-up is a positive amount.", fields={"amount": ["Must be more than zero."]}
        )
    row, created = transaction_post(
        account=unit,
        kind=FinancialTransaction.Kind.WALLET_TOPUP,
        amount=value,
        currency=currency,
        effective_date=effective_date,
        balance_type=BalanceType.WALLET,
        biller=biller,
        external_id=external_id,
        idempotency_key=idempotency_key,
        description=description or "Wallet top-up",
        actor=actor,
    )
    if created and refresh_estimate:
        # The money is in whatever happens here: a failed estimate is logged, and the older one stays.
        try:
            with transaction.atomic():
                wallet_estimates_refresh(account_ids=[unit.pk])
        except Exception:
            logger.exception("Wallet estimate after a top-up failed for account %s", unit.pk)
    return row, created
