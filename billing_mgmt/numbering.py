"""Numbering: human-facing numbers from named series.

``next_number("invoice")`` returns the next formatted number of a series. Two kinds of series:

* gapless (invoices): the counter row is locked (SELECT ... FOR UPDATE) and advanced inside the caller's
  transaction. If that transaction rolls back, so does the counter, so numbers are used exactly once and in
  order. Concurrent callers wait for each other; call it as late as possible in the posting transaction.
* sequential (accounts, statements, runs, cases): on PostgreSQL a database sequence per series hands out
  numbers without blocking concurrent transactions (a rolled-back transaction leaves a gap). On SQLite,
  which serializes writers anyway, the counter row is used.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import DatabaseError, connection, transaction
from django.db.models import F

from .models import NumberSeries


class NumberingError(RuntimeError):
    pass


@dataclass(frozen=True)
class SeriesSpec:
    """Defaults used to create a series the first time it is asked for; admins may change them later."""

    name: str
    prefix: str = ""
    padding: int = 6
    gapless: bool = False


def _sequence_name(series: NumberSeries) -> str:
    return f"number_series_{series.pk}"


def get_series(code: str, spec: SeriesSpec | None = None) -> NumberSeries:
    if spec is None:
        try:
            return NumberSeries.objects.get(code=code)
        except NumberSeries.DoesNotExist as exc:
            raise NumberingError(f"No number series '{code}'.") from exc
    series, _ = NumberSeries.objects.get_or_create(
        code=code,
        defaults={"name": spec.name, "prefix": spec.prefix, "padding": spec.padding, "gapless": spec.gapless},
    )
    return series


def next_value(code: str, spec: SeriesSpec | None = None) -> tuple[NumberSeries, int]:
    series = get_series(code, spec)
    if series.gapless:
        if not connection.in_atomic_block:
            raise NumberingError(
                f"Series '{code}' is gapless: take its number inside the transaction that uses it."
            )
        return series, _next_locked(series)
    if connection.vendor == "postgresql":
        return series, _next_from_sequence(series)
    with transaction.atomic():
        return series, _next_locked(series)


def next_number(code: str, spec: SeriesSpec | None = None) -> str:
    series, value = next_value(code, spec)
    return series.format(value)


def next_numbers(code: str, spec: SeriesSpec | None = None, *, count: int) -> list[str]:
    """``count`` numbers of a series at once, in order (one query on PostgreSQL, whatever the count): for
    work done in sets, such as a billing run's bills."""
    if count <= 0:
        return []
    series = get_series(code, spec)
    if series.gapless:
        if not connection.in_atomic_block:
            raise NumberingError(
                f"Series '{code}' is gapless: take its numbers inside the transaction that uses them."
            )
        first = _next_locked(series, count)
    elif connection.vendor == "postgresql":
        values = _next_from_sequence(series, count)
        return [series.format(value) for value in ([values] if count == 1 else values)]
    else:
        with transaction.atomic():
            first = _next_locked(series, count)
    return [series.format(value) for value in range(first, first + count)]


def _next_locked(series: NumberSeries, count: int = 1) -> int:
    locked = NumberSeries.objects.select_for_update().only("next_value").get(pk=series.pk)
    value = locked.next_value
    NumberSeries.objects.filter(pk=series.pk).update(next_value=F("next_value") + count)
    return value


def _fetch_from_sequence(name: str, count: int):
    with transaction.atomic(), connection.cursor() as cursor:
        if count == 1:
            cursor.execute("SELECT nextval(%s)", [name])
            return cursor.fetchone()[0]
        cursor.execute("SELECT nextval(%s) FROM generate_series(1, %s) ORDER BY 1", [name, count])
        return [row[0] for row in cursor.fetchall()]


def _next_from_sequence(series: NumberSeries, count: int = 1):
    """One value (count 1) or a list of ``count`` values from the series' PostgreSQL sequence."""
    name = _sequence_name(series)
    try:
        return _fetch_from_sequence(name, count)
    except DatabaseError:
        pass
    # First use of this series on this database: create its sequence, starting where the counter row is.
    # CREATE SEQUENCE IF NOT EXISTS can still collide with a concurrent creator; then the sequence exists.
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            start = NumberSeries.objects.values_list("next_value", flat=True).get(pk=series.pk)
            cursor.execute(f'CREATE SEQUENCE IF NOT EXISTS "{name}" START WITH {int(start)}')
    except DatabaseError:
        pass
    return _fetch_from_sequence(name, count)


def peek_next(series: NumberSeries) -> int:
    """The number the series will hand out next (for admin display)."""
    if series.gapless or connection.vendor != "postgresql":
        return NumberSeries.objects.values_list("next_value", flat=True).get(pk=series.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_class WHERE relkind = 'S' AND relname = %s", [_sequence_name(series)]
        )
        if cursor.fetchone() is None:
            return series.next_value
        cursor.execute(f'SELECT last_value, is_called FROM "{_sequence_name(series)}"')
        last_value, is_called = cursor.fetchone()
        return last_value + 1 if is_called else last_value
