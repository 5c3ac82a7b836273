"""Billing periods: whole months from the bill unit's bill cycle day, counted in days for proration.

A subscription's first period starts on the last cycle day on or before its start date; each following
period starts ``months`` later and ends the day before the next one starts. Proration is by day: days
charged / days in the period (a 30-day month divides by 30, a 31-day month by 31).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

ONE_DAY = dt.timedelta(days=1)


@dataclass(frozen=True, order=True)
class Period:
    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def contains(self, day: dt.date) -> bool:
        return self.start <= day <= self.end

    def intersect(self, start: dt.date, end: dt.date | None) -> Period | None:
        first = max(self.start, start)
        last = self.end if end is None else min(self.end, end)
        return Period(first, last) if first <= last else None

    def __str__(self) -> str:
        return f"{self.start.isoformat()} – {self.end.isoformat()}"


def add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def first_period_start(start_date: dt.date, cycle_day: int) -> dt.date:
    if start_date.day >= cycle_day:
        return start_date.replace(day=cycle_day)
    return add_months(start_date.replace(day=1), -1).replace(day=cycle_day)


def periods(start_date: dt.date, cycle_day: int, months: int) -> Iterator[Period]:
    """The periods of a subscription starting on ``start_date``, one after the other, without end."""
    first = first_period_start(start_date, cycle_day)
    k = 0
    while True:
        start = add_months(first, k * months)
        next_start = add_months(first, (k + 1) * months)
        yield Period(start, next_start - ONE_DAY)
        k += 1


def period_containing(day: dt.date, start_date: dt.date, cycle_day: int, months: int) -> Period:
    for period in periods(start_date, cycle_day, months):
        if period.end >= day:
            return period
    raise AssertionError("unreachable")  # pragma: no cover


def proration(days: int, period: Period) -> Decimal:
    return Decimal(days) / Decimal(period.days)
