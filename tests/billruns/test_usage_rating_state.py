"""Rating records what it rated without rewriting a usage record: a record waits on rating's list
(UsageToRate) and, once rated, is linked to its segment (RatedUsage). The migration that introduced this
turns the old "rated" status and segment column into links, and back."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext

from billruns.models import BillSegment, RatedUsage, SegmentUsage, UsageRecord, UsageToRate
from billruns.services import rating, rating_context, subscription_rate
from tests.billruns import builders as b
from tests.factories import AccountFactory

D = b.D
JUNE_1 = dt.date(2026, 6, 1)
JULY_1 = dt.date(2026, 7, 1)


@pytest.fixture
def sub(db):
    plan = b.plan()
    b.usage_component(plan, unit_price="0.10")
    return b.subscription(AccountFactory(), plan, JUNE_1)


@pytest.mark.django_db
def test_rating_links_the_records_and_writes_none_of_them(sub):
    records = [b.usage(sub, 10, dt.date(2026, 6, day)) for day in (3, 9, 27)]
    july = b.usage(sub, 4, dt.date(2026, 7, 2))  # next period's: rated with August

    with CaptureQueriesContext(connection) as queries:
        result = subscription_rate(subscription=sub, bill_as_of=JULY_1)

    written = [
        q["sql"] for q in queries if re.match(r'\s*(UPDATE|DELETE FROM) "billruns_usagerecord"', q["sql"])
    ]
    assert written == []
    (segment,) = [s for s in result.created if s.period_start == JULY_1]
    assert dict(RatedUsage.objects.values_list("usage_record", "segment")) == {
        r.pk: segment.pk for r in records
    }
    assert list(UsageToRate.objects.values_list("usage_record", flat=True)) == [july.pk]
    assert segment.total == D("3.00")
    # And the segment's total per usage type, which the bill's usage summary reads.
    assert list(SegmentUsage.objects.values_list("segment", "usage_type", "quantity", "unit")) == [
        (segment.pk, records[0].usage_type_id, D(30), records[0].unit)
    ]
    # Rating again finds nothing new to rate: the links are not written twice.
    subscription_rate(subscription=sub, bill_as_of=JULY_1)
    assert RatedUsage.objects.count() == 3


@pytest.mark.django_db
def test_a_record_taken_off_the_list_while_it_is_rated_rolls_the_rating_back(sub, monkeypatch):
    """Another transaction took a record the rating read (cancellation rejected it, or another worker rated
    it): nothing of this rating is kept, and it is rated again from what is there now."""
    kept = b.usage(sub, 10, dt.date(2026, 6, 3))
    gone = b.usage(sub, 5, dt.date(2026, 6, 4))
    read = rating_context.rating_contexts

    def read_then_lose_one(**kwargs):
        contexts = read(**kwargs)
        UsageToRate.objects.filter(usage_record=gone).delete()  # as the other transaction did
        return contexts

    monkeypatch.setattr(rating, "rating_contexts", read_then_lose_one)
    with pytest.raises(rating.UsageChanged):
        subscription_rate(subscription=sub, bill_as_of=JULY_1)
    assert not BillSegment.objects.exists() and not RatedUsage.objects.exists()
    assert UsageToRate.objects.filter(usage_record=kept).exists()  # rolled back with the rest

    monkeypatch.setattr(rating, "rating_contexts", read)
    UsageToRate.objects.filter(usage_record=gone).delete()
    subscription_rate(subscription=sub, bill_as_of=JULY_1)
    assert list(RatedUsage.objects.values_list("usage_record", flat=True)) == [kept.pk]


def _deletes(queries) -> list[str]:
    return [
        "range" if "USING unnest" in q["sql"] else "ids"
        for q in queries
        if q["sql"].startswith('DELETE FROM "billruns_usagetorate"')
    ]


@pytest.mark.django_db
def test_rating_takes_the_waiting_rows_by_day_range(sub):
    records = [b.usage(sub, 10, dt.date(2026, 6, day)) for day in (3, 3, 9, 30)]
    later = b.usage(sub, 1, dt.date(2026, 7, 1))  # not before the bill-as-of date: it waits
    with CaptureQueriesContext(connection) as queries:
        subscription_rate(subscription=sub, bill_as_of=JULY_1)
    assert _deletes(queries.captured_queries) == ["range"]
    assert sorted(RatedUsage.objects.values_list("usage_record", flat=True)) == sorted(r.pk for r in records)
    assert list(UsageToRate.objects.values_list("usage_record", flat=True)) == [later.pk]


@pytest.mark.django_db
def test_a_record_that_arrives_in_the_range_while_rating_stays_waiting(sub, monkeypatch):
    """A record dated inside the rated days, queued after rating read the list: the range DELETE would take it
    unrated, so it is undone and the rated ids are taken one by one; the newcomer waits for the next run."""
    rated = [b.usage(sub, 10, dt.date(2026, 6, day)) for day in (3, 20)]
    read = rating_context.rating_contexts
    arrived = []

    def read_then_one_arrives(**kwargs):
        contexts = read(**kwargs)
        arrived.append(b.usage(sub, 7, dt.date(2026, 6, 10)))  # as ingest did, meanwhile
        return contexts

    monkeypatch.setattr(rating, "rating_contexts", read_then_one_arrives)
    with CaptureQueriesContext(connection) as queries:
        (segment,) = [
            s for s in subscription_rate(subscription=sub, bill_as_of=JULY_1).created if s.lines.exists()
        ]
    assert _deletes(queries.captured_queries) == ["range", "ids"]
    assert dict(RatedUsage.objects.values_list("usage_record", "segment")) == {
        r.pk: segment.pk for r in rated
    }
    assert list(UsageToRate.objects.values_list("usage_record", flat=True)) == [arrived[0].pk]
    assert SegmentUsage.objects.get(segment=segment).quantity == D(20)


MIGRATION_BEFORE = ("billruns", "0007_formatting_chunk_size")
MIGRATION = ("billruns", "0008_usage_rating_tables")


@pytest.mark.django_db(transaction=True)
def test_the_migration_turns_links_into_the_old_columns_and_back(sub):
    """Backwards, a rated record gets status "rated" and its segment back; forwards again, the links and the
    waiting list are rebuilt from them, so a database can be migrated either way without re-rating."""
    rated = [b.usage(sub, 10, dt.date(2026, 6, day)) for day in (3, 9)]
    waiting = b.usage(sub, 4, dt.date(2026, 7, 2))
    (segment,) = [
        s for s in subscription_rate(subscription=sub, bill_as_of=JULY_1).created if s.lines.exists()
    ]
    first = rated[0]
    rejected = UsageRecord.objects.create(
        source="m", external_id="x", usage_type_code="voice", quantity=D(1), unit="min", status="rejected",
        event_time=first.event_time, event_date=JUNE_1, received_at=first.received_at,
    )  # fmt: skip
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([MIGRATION_BEFORE])
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, status, segment_id FROM billruns_usagerecord ORDER BY id")
            before = {pk: (status, segment_id) for pk, status, segment_id in cursor.fetchall()}
        assert before == {
            rated[0].pk: ("rated", segment.pk),
            rated[1].pk: ("rated", segment.pk),
            waiting.pk: ("accepted", None),
            rejected.pk: ("rejected", None),
        }

        executor = MigrationExecutor(connection)
        executor.migrate([MIGRATION])
        assert dict(RatedUsage.objects.values_list("usage_record", "segment")) == {
            r.pk: segment.pk for r in rated
        }
        assert list(
            UsageToRate.objects.values_list("usage_record", "subscription", "event_date", "quantity")
        ) == [(waiting.pk, sub.pk, dt.date(2026, 7, 2), D(4))]
        statuses = {r.pk: r.rating_status for r in UsageRecord.objects.select_related("rating")}
        assert statuses == {
            rated[0].pk: "rated", rated[1].pk: "rated", waiting.pk: "accepted", rejected.pk: "rejected"
        }  # fmt: skip
        assert set(UsageRecord.objects.values_list("status", flat=True)) == {"accepted", "rejected"}

        # The next migration totals each rated segment's usage from its links (SegmentUsage).
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
        assert list(SegmentUsage.objects.values_list("segment", "usage_type", "quantity", "unit")) == [
            (segment.pk, first.usage_type_id, D(20), first.unit)
        ]
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
