"""Set-based writes of billing runs: COPY of plain rows (``insert_rows``), ids taken beforehand
(``next_ids``), and the bill's statement lines and usage summaries made in the database, which must equal
what the plain Python path (the SQLite fallback) makes from the same segments."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from billing_mgmt.bulk import insert_instances, insert_rows, next_ids, row_by_row_plans
from billing_mgmt.models import AuditRecord
from billruns.models import BillSegment, CalculationLine, RatedUsage, UsageRecord
from billruns.services import assembly, bill_create, subscriptions_rate
from statements.models import StatementLine, UsageSummary
from tests.billruns import builders as b
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db
D = b.D
JUNE_1 = dt.date(2026, 6, 1)
JULY_1 = dt.date(2026, 7, 1)


def _segment(sub, start=JUNE_1, end=dt.date(2026, 6, 30)) -> BillSegment:
    return BillSegment.objects.create(
        subscription=sub,
        period_start=start,
        period_end=end,
        status="rated",
        currency="USD",
        rated_at=timezone.now(),
    )


def test_next_ids_are_new_ascending_ids_of_the_table():
    acc = AccountFactory()
    sub = b.subscription(acc, b.plan(), JUNE_1)
    before = _segment(sub).pk
    ids = next_ids(BillSegment, 3)
    assert ids == sorted(ids) and len(set(ids)) == 3 and ids[0] > before
    assert next_ids(BillSegment, 0) == []
    after = _segment(sub, dt.date(2026, 7, 1), dt.date(2026, 7, 31)).pk
    assert after > ids[-1]  # the sequence moved on: nobody else gets them


def test_insert_rows_copies_plain_values_in_the_callers_transaction():
    acc = AccountFactory()
    sub = b.subscription(acc, b.plan(), JUNE_1)
    segment = _segment(sub)
    fields = ("segment", "position", "kind", "description", "quantity", "unit", "rate", "proration_factor",
              "base", "amount", "included", "period_start", "period_end")  # fmt: skip
    rows = [
        (segment.pk, 1, "recurring", "Fee, 20 of 30 days", D("1"), "", D("30"), D("0.6666666667"), None,
         D("20.00"), False, dt.date(2026, 6, 11), dt.date(2026, 6, 30)),
        (segment.pk, 2, "tax", "Tab\tand\nnewline \\ quote'\"", None, "", D("8.25"), None, D("20.00"),
         D("1.65"), True, JUNE_1, dt.date(2026, 6, 30)),
    ]  # fmt: skip
    assert insert_rows(CalculationLine, fields, iter(rows)) == 2
    got = list(CalculationLine.objects.filter(segment=segment).order_by("position").values_list(*fields))
    assert [tuple(r) for r in got] == [tuple(r) for r in rows]
    assert insert_rows(CalculationLine, fields, []) == 0
    # A row the database refuses aborts the whole COPY (nothing of it is kept), like any statement.
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(CalculationLine, fields, [(segment.pk, 3, *rows[0][2:]), (segment.pk, 1, *rows[0][2:])])
    assert CalculationLine.objects.filter(segment=segment).count() == 2


def test_insert_rows_rounds_decimals_like_bulk_create():
    acc = AccountFactory()
    sub = b.subscription(acc, b.plan(), JUNE_1)
    segment = _segment(sub)
    fields = ("segment", "position", "kind", "description", "unit", "amount", "included", "period_start",
              "period_end")  # fmt: skip
    insert_rows(
        CalculationLine, fields, [(segment.pk, 1, "usage", "x", "", D("1.23456"), False, JUNE_1, JUNE_1)]
    )
    CalculationLine.objects.bulk_create(
        [
            CalculationLine(
                segment=segment,
                position=2,
                kind="usage",
                description="x",
                amount=D("1.23456"),
                period_start=JUNE_1,
                period_end=JUNE_1,
            )
        ]  # fmt: skip
    )
    amounts = list(CalculationLine.objects.filter(segment=segment).values_list("amount", flat=True))
    assert amounts[0] == amounts[1]


def test_insert_instances_saves_new_instances_as_bulk_create_does():
    """Ids from the sequence (others can point at them at once), every field as the instance holds it,
    auto_now_add filled in, the instances saved; a refused row aborts them all."""
    acc = AccountFactory()
    sub = b.subscription(acc, b.plan(), JUNE_1)
    segments = [
        BillSegment(subscription=sub, period_start=start, period_end=end, status="rated", currency="USD",
                    rated_at=timezone.now(), total=D("12.34"))
        for start, end in ((JUNE_1, dt.date(2026, 6, 30)), (JULY_1, dt.date(2026, 7, 31)))
    ]  # fmt: skip
    insert_instances(segments)
    assert all(s.pk and not s._state.adding for s in segments)
    stored = {s.pk: s for s in BillSegment.objects.filter(subscription=sub)}
    assert set(stored) == {s.pk for s in segments}
    for segment in segments:
        assert (stored[segment.pk].period_start, stored[segment.pk].total) == (
            segment.period_start,
            D("12.34"),
        )
    records = [AuditRecord(actor_type="system", actor_label="t", action="x.bulk", object_type="a.b",
                           object_id="1", after={"a": "1.50"})]  # fmt: skip
    insert_instances(records)
    fresh = AuditRecord.objects.get(pk=records[0].pk)
    assert fresh.created_at is not None and fresh.created_at == records[0].created_at
    assert fresh.after == {"a": "1.50"} and fresh.before is None
    again = BillSegment(subscription=sub, period_start=JUNE_1, period_end=dt.date(2026, 6, 30),
                        status="rated", currency="USD", rated_at=timezone.now())  # fmt: skip
    with pytest.raises(IntegrityError), transaction.atomic():  # the same period twice
        insert_instances([BillSegment(subscription=sub, period_start=dt.date(2026, 8, 1),
                                      period_end=dt.date(2026, 8, 31), status="rated", currency="USD",
                                      rated_at=timezone.now()), again])  # fmt: skip
    assert BillSegment.objects.filter(subscription=sub).count() == 2
    insert_instances([])


@pytest.fixture
def family():
    """A paying parent and a non-paying child, with recurring, one-time, tiered usage with an allowance, data
    usage, a discount, and tax contained in one plan's prices and added to the other's."""
    category, jurisdiction = b.tax("8.25")
    inclusive_category, _ = b.tax("10", inclusive=True, category="inclusive")
    parent = AccountFactory()
    child = AccountFactory(parent=parent, is_paying=False)
    mobile = b.plan()
    b.recurring(mobile, "30.00", tax_category=category)
    b.one_time(mobile, "15.00", tax_category=category)
    b.usage_component(
        mobile,
        method="graduated",
        tiers=[("0", "100", "0.10"), ("100", None, "0.05")],
        included=20,
        tax_category=category,
    )
    b.usage_component(mobile, unit_price="0.01", type_code="data", unit="MB", tax_category=category)
    b.discount(value="10", plan=mobile)
    tv = b.plan(name="TV", service_type="tv")
    b.recurring(tv, "11.00", tax_category=inclusive_category)
    subs = [
        b.subscription(parent, mobile, dt.date(2026, 6, 10), jurisdiction=jurisdiction, sequence=2),
        b.subscription(child, mobile, JUNE_1, jurisdiction=jurisdiction, sequence=1),
        b.subscription(child, tv, JUNE_1, jurisdiction=jurisdiction, sequence=3),
    ]
    for sub in subs[:2]:
        for day in range(1, 28, 3):
            b.usage(sub, "17.5", dt.date(2026, 6, day))
            b.usage(sub, "250", dt.date(2026, 6, day), type_code="data")
    subscriptions_rate(subscriptions=subs, bill_as_of=JULY_1)
    return parent


def _printed(statement):
    lines = StatementLine.objects.filter(statement=statement).order_by("position")
    fields = ("position", "line_type", "product", "service_identifier", "service_type", "account_id",
              "tax_included", "description", "quantity", "unit", "unit_price", "amount", "tax",
              "period_start", "period_end", "external_id")  # fmt: skip
    printed = list(lines.values_list(*fields))
    # The calculation line each printed line names, in print order (both paths print the same ones).
    links = list(lines.values_list("calculation_line_id", flat=True))
    assert None not in links
    assert sorted(links) == sorted(
        CalculationLine.objects.filter(segment__statement=statement).values_list("pk", flat=True)
    )
    summaries = list(
        UsageSummary.objects.filter(statement=statement)
        .order_by("service_identifier", "usage_type")
        .values_list("service_identifier", "usage_type", "quantity", "unit", "included_quantity")
    )
    return printed, links, summaries


def _bill(parent, monkeypatch, *, vendor=None):
    if vendor is not None:
        monkeypatch.setattr(assembly, "connection", SimpleNamespace(vendor=vendor))
    try:
        with transaction.atomic():
            result = bill_create(account=parent, bill_date=JULY_1)
            made = _printed(result.statement), (result.statement.new_charges, result.statement.taxes)
            transaction.set_rollback(True)
    finally:
        monkeypatch.undo()
    return made


def test_statement_lines_and_usage_summaries_in_sql_equal_the_python_path(family, monkeypatch):
    (printed, links, summaries), totals = _bill(family, monkeypatch)
    (printed_py, links_py, summaries_py), totals_py = _bill(family, monkeypatch, vendor="sqlite")
    assert printed == printed_py
    assert links == links_py and None not in links and len(links) == len(printed)
    assert summaries == summaries_py
    assert totals == totals_py
    # What the family's bill shows: the child's lines first (its processing sequence), every line printed
    # once in order, tax contained in prices said so, usage summarised per service with the allowance.
    assert [p[0] for p in printed] == list(range(1, len(printed) + 1))
    assert any(p[6] and p[7].endswith(": not added, already in the prices") for p in printed)
    assert {(s[1], s[3]) for s in summaries} == {("voice", "min"), ("data", "MB")}
    voice = [s for s in summaries if s[1] == "voice"]
    assert {s[2] for s in voice} == {D("157.5")} and {s[4] for s in voice} == {D("20")}
    assert RatedUsage.objects.count() == UsageRecord.objects.count() == 36
    assert totals[0] > Decimal(0)


def test_set_statements_are_planned_row_by_row_inside_and_as_usual_after():
    """A chunk's set statements (statement lines, usage summaries) drive index lookups from the chunk's own
    ids; outside them the planner is free again, in the same transaction."""

    def planner() -> tuple[str, ...]:
        values = []
        for name in ("enable_seqscan", "enable_hashjoin", "jit"):
            cursor.execute(f"SHOW {name}")
            values.append(cursor.fetchone()[0])
        return tuple(values)

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        jit = cursor.fetchone()[0]  # the server's default (on, unless configured)
        assert planner() == ("on", "on", jit)
        with row_by_row_plans(cursor):
            # Priced-out plans have huge estimated costs, which would make the server JIT-compile them.
            assert planner() == ("off", "off", "off")
            cursor.execute(
                "EXPLAIN SELECT cl.id FROM unnest(%s::bigint[]) AS v(id) "
                "JOIN billruns_calculationline cl ON cl.segment_id = v.id",
                [[1, 2, 3]],
            )
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert "Seq Scan on billruns_calculationline" not in plan and "Hash Join" not in plan, plan
        assert planner() == ("on", "on", jit)
        with pytest.raises(ZeroDivisionError), row_by_row_plans(cursor):
            1 / 0  # noqa: B018 - an error inside: the settings are restored all the same
        assert planner() == ("on", "on", jit)
