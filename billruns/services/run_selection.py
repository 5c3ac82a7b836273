"""Which bill units and subscriptions a billing run bills: its type, criteria and filters (source 001).

* Criteria: billing term schemes and billing frequencies (of the subscription); AR classifications, payment
  preferences and presentment preferences (of the bill unit's billing profile). An empty criterion means all.
* Filters: accounts (their bill units), subscriptions, groups (the bill units of the groups' accounts). A
  filter that is given narrows the run; several given filters all apply.

A bill unit is a paying account, billed with its non-paying descendants' subscriptions (their charges roll
up to it). The selection is one SQL statement (a recursive walk of the hierarchy joined to the
subscriptions), so it does not load the customer base into memory.
"""

from __future__ import annotations

import calendar
import datetime as dt

from django.db import connection
from django.db.models import F, QuerySet

from accounts.models import Account, AccountGroup, BillingProfile
from accounts.selectors import bill_units_of

from ..models import BillingRun, RunType, Subscription
from ..models.runs import PROFILE_CRITERIA


def run_subscriptions(run: BillingRun) -> QuerySet[Subscription]:
    """The subscriptions the run bills (before the bill units' own criteria): its type, its term scheme
    and frequency criteria, its subscription filter, started by the bill-as-of date and not finished."""
    qs = Subscription.objects.filter(
        billing_term_scheme__kind=run.run_type, start_date__lte=run.bill_as_of_date
    )
    if run.run_type == RunType.PREPAID:
        # Debited up to its end: nothing more to rate.
        qs = qs.exclude(end_date__isnull=False, billed_through__gte=F("end_date"))
    else:
        # Billed past its end: the closing period is billed.
        qs = qs.exclude(end_date__isnull=False, billed_through__gt=F("end_date"))
    schemes = [s.pk for s in run.billing_term_schemes.all()]
    if schemes:
        qs = qs.filter(billing_term_scheme_id__in=schemes)
    frequencies = [f.pk for f in run.billing_frequencies.all()]
    if frequencies:
        qs = qs.filter(frequency_id__in=frequencies)
    chosen = [s.pk for s in run.subscriptions.all()]
    if chosen:
        qs = qs.filter(pk__in=chosen)
    return qs


def _filtered_units(run: BillingRun) -> set[int] | None:
    """The bill units the account and group filters allow (None: no such filter)."""
    allowed: set[int] | None = None
    account_ids = [a.pk for a in run.accounts.all()]
    if account_ids:
        allowed = set(bill_units_of(account_ids=account_ids).values())
    group_ids = [g.pk for g in run.groups.all()]
    if group_ids:
        members = AccountGroup.accounts.through.objects.filter(accountgroup_id__in=group_ids).values_list(
            "account_id", flat=True
        )
        units = set(bill_units_of(account_ids=set(members)).values())
        allowed = units if allowed is None else allowed & units
    return allowed


def run_bill_units(run: BillingRun) -> list[int]:
    """The ids of the bill units the run bills, ascending."""
    subscriptions_sql, subscriptions_params = (
        run_subscriptions(run).order_by().values("account_id").query.sql_with_params()
    )
    account = connection.ops.quote_name(Account._meta.db_table)
    profile = connection.ops.quote_name(BillingProfile._meta.db_table)
    conditions, params = [], []
    for name, (column, _label) in PROFILE_CRITERIA.items():
        values = list(getattr(run, name) or [])
        if values:
            conditions.append(f"p.{connection.ops.quote_name(column)} IN ({', '.join(['%s'] * len(values))})")
            params.extend(values)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    depth = Account.MAX_DEPTH + 1
    sql = f"""
        WITH RECURSIVE unit_of(id, unit_id, depth) AS (
            SELECT id, id, 0 FROM {account} WHERE is_paying OR parent_id IS NULL
            UNION ALL
            SELECT a.id, u.unit_id, u.depth + 1 FROM {account} a JOIN unit_of u ON a.parent_id = u.id
            WHERE NOT a.is_paying AND u.depth < {depth}
        )
        SELECT DISTINCT u.unit_id FROM unit_of u
        JOIN ({subscriptions_sql}) s ON s.account_id = u.id
        LEFT JOIN {profile} p ON p.account_id = u.unit_id
        {where}
        ORDER BY u.unit_id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [*subscriptions_params, *params])
        units = [row[0] for row in cursor.fetchall()]
    allowed = _filtered_units(run)
    if allowed is not None:
        units = [u for u in units if u in allowed]
    return units


def chunked(ids: list[int], size: int) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def default_bill_as_of(*, day: int | None, today: dt.date) -> dt.date:
    """The latest date on or before ``today`` whose day of the month is ``day`` (the month's last day when
    it is shorter); ``today`` when no day is set."""
    if not day:
        return today
    year, month = today.year, today.month
    if today.day < min(day, calendar.monthrange(year, month)[1]):
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return dt.date(year, month, min(day, calendar.monthrange(year, month)[1]))
