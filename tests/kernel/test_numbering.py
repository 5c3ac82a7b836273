"""Numbering on PostgreSQL, with real concurrent transactions (one connection per thread)."""

import time

import pytest
from django.db import connection, transaction

from billing_mgmt.models import AuditRecord, NumberSeries
from billing_mgmt.numbering import NumberingError, SeriesSpec, get_series, next_number, next_value, peek_next
from tests.concurrency import Rollback, run_in_threads

GAPLESS = SeriesSpec(name="Test invoices", prefix="INV-", padding=5, gapless=True)
SEQUENTIAL = SeriesSpec(name="Test cases", prefix="C", padding=4)


def _take_and_record(code: str, spec: SeriesSpec, i: int, roll_back: bool, hold: float = 0.05) -> None:
    """Take a number and use it in the same transaction (an audit row stands for the invoice).

    ``hold`` keeps the transaction open after taking the number, as a real posting does, so that the other
    threads ask for their numbers while this one has not committed yet.
    """
    with transaction.atomic():
        number = next_number(code, spec)
        time.sleep(hold)
        AuditRecord.objects.create(
            actor_type=AuditRecord.ActorType.SYSTEM,
            actor_label=f"thread-{i}",
            action="test.number",
            object_type="test.invoice",
            object_id=number,
        )
        if roll_back:
            raise Rollback


def _committed(code_prefix: str) -> list[str]:
    return list(
        AuditRecord.objects.filter(action="test.number", object_id__startswith=code_prefix).values_list(
            "object_id", flat=True
        )
    )


@pytest.mark.django_db(transaction=True)
def test_gapless_series_has_no_gaps_or_duplicates_under_concurrency():
    get_series("test-invoice", GAPLESS)  # committed before the threads start
    threads = 12
    rolled_back = {2, 5, 6, 11}

    _, errors = run_in_threads(
        lambda i: _take_and_record("test-invoice", GAPLESS, i, i in rolled_back), threads
    )

    assert errors == []
    committed = _committed("INV-")
    kept = threads - len(rolled_back)
    assert sorted(committed) == [f"INV-{n:05d}" for n in range(1, kept + 1)]
    assert NumberSeries.objects.get(code="test-invoice").next_value == kept + 1
    assert peek_next(NumberSeries.objects.get(code="test-invoice")) == kept + 1


@pytest.mark.django_db(transaction=True)
def test_gapless_series_created_by_the_first_concurrent_callers():
    """Nobody created the series beforehand: the first callers race to create its row."""
    threads = 6
    _, errors = run_in_threads(lambda i: _take_and_record("test-invoice-2", GAPLESS, i, i == 0), threads)

    assert errors == []
    assert sorted(_committed("INV-")) == [f"INV-{n:05d}" for n in range(1, threads)]


@pytest.mark.django_db(transaction=True)
def test_gapless_series_refuses_to_run_outside_a_transaction():
    get_series("test-invoice", GAPLESS)
    assert not connection.in_atomic_block

    with pytest.raises(NumberingError, match="gapless"):
        next_number("test-invoice", GAPLESS)

    assert NumberSeries.objects.get(code="test-invoice").next_value == 1


@pytest.mark.django_db(transaction=True)
def test_sequential_series_is_unique_under_concurrency():
    """Sequence-backed series never block and never repeat; a rollback may leave a gap."""
    threads = 12
    rolled_back = {0, 7}
    # No series and no sequence yet: the first callers also race to create them.
    _, errors = run_in_threads(
        lambda i: _take_and_record("test-case", SEQUENTIAL, i, i in rolled_back), threads
    )

    assert errors == []
    committed = _committed("C")
    assert len(committed) == threads - len(rolled_back)
    assert len(set(committed)) == len(committed)
    assert all(len(n) == 5 and n.startswith("C") for n in committed)
    # Every number lies in 1..threads: the sequence advanced at most once per call. (A rolled-back caller
    # that created the sequence takes its creation with it, so fewer advances are possible.)
    values = sorted(int(n[1:]) for n in committed)
    assert values[0] >= 1 and values[-1] <= threads
    assert values[-1] < peek_next(NumberSeries.objects.get(code="test-case")) <= threads + 1


@pytest.mark.django_db(transaction=True)
def test_sequential_series_first_use_of_its_sequence_under_concurrency():
    """The series row exists but its database sequence does not: the first callers race to create it."""
    get_series("test-case", SEQUENTIAL)
    threads = 8
    _, errors = run_in_threads(lambda i: _take_and_record("test-case", SEQUENTIAL, i, i == 3), threads)

    assert errors == []
    committed = _committed("C")
    assert len(committed) == threads - 1
    assert len(set(committed)) == len(committed)


@pytest.mark.django_db(transaction=True)
def test_sequential_series_works_outside_a_transaction_and_skips_rolled_back_numbers():
    assert next_number("test-case", SEQUENTIAL) == "C0001"
    with pytest.raises(Rollback), transaction.atomic():
        assert next_number("test-case", SEQUENTIAL) == "C0002"
        raise Rollback
    # The sequence does not roll back: a gap, never a duplicate.
    assert next_number("test-case", SEQUENTIAL) == "C0003"


@pytest.mark.django_db
def test_sequential_series_starts_at_the_series_next_value():
    NumberSeries.objects.create(code="test-start", name="Start", prefix="S-", padding=3, next_value=500)
    series = NumberSeries.objects.get(code="test-start")
    assert peek_next(series) == 500
    assert next_number("test-start") == "S-500"
    assert next_value("test-start") == (series, 501)
    assert peek_next(series) == 502


@pytest.mark.django_db
def test_gapless_number_is_given_back_when_the_transaction_rolls_back():
    with pytest.raises(Rollback), transaction.atomic():
        assert next_number("test-invoice", GAPLESS) == "INV-00001"
        raise Rollback
    with transaction.atomic():
        assert next_number("test-invoice", GAPLESS) == "INV-00001"
        assert next_number("test-invoice", GAPLESS) == "INV-00002"


@pytest.mark.django_db
def test_unknown_series_without_spec_is_refused():
    with pytest.raises(NumberingError, match="No number series"):
        next_number("no-such-series")
    assert not NumberSeries.objects.filter(code="no-such-series").exists()


def test_series_format():
    assert NumberSeries(prefix="A", padding=8).format(42) == "A00000042"
    assert NumberSeries(prefix="", padding=2).format(1234) == "1234"
