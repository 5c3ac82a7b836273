"""Nightly maintenance: usage-detail retention (purge) and overdue statements."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from billing_mgmt.celery import app as celery_app
from billing_mgmt.models import AuditRecord
from statements import tasks
from statements.models import DataRetention, FinancialTransaction, Statement, StatementLine, UsageSummary
from statements.services import ingest_records, statements_mark_overdue, usage_detail_purge
from tests.factories import statement_record

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 11, 15)


@pytest.fixture
def ref(biller_reference_factory, biller_factory):
    return biller_reference_factory(biller=biller_factory(code="telco"), external_ref="T-1")


def _statement(ref, external_id: str, statement_date: str, **overrides) -> Statement:
    day = dt.date.fromisoformat(statement_date)
    record = statement_record(
        ref.external_ref,
        external_id,
        statement_date=statement_date,
        period_start=day.replace(day=1).isoformat(),
        period_end=statement_date,
        due_date=overrides.pop("due_date", (day + dt.timedelta(days=14)).isoformat()),
        **overrides,
    )
    [result] = ingest_records(biller=ref.biller, records=[record])
    assert result.status == "accepted", result.as_dict()
    return Statement.objects.get(pk=result.id)


def _lines(statement: Statement) -> list[tuple[int, str]]:
    return list(statement.lines.order_by("position").values_list("position", "line_type"))


def _header(statement: Statement) -> tuple:
    statement.refresh_from_db()
    return (statement.new_charges, statement.taxes, statement.total_due, statement.version, statement.status)


# --- usage detail purge ------------------------------------------------------------------------------------


def test_purge_does_nothing_until_retention_is_configured(ref):
    old = _statement(ref, "S-OLD", "2024-01-31")

    assert usage_detail_purge(today=TODAY) == 0
    DataRetention.objects.create(usage_detail_days=None)
    assert usage_detail_purge(today=TODAY) == 0

    assert _lines(old) == [(1, "recurring"), (2, "usage"), (3, "discount")]
    old.refresh_from_db()
    assert old.usage_detail_purged_at is None
    assert not AuditRecord.objects.filter(action="statements.usage_detail_purge").exists()


def test_purge_removes_only_the_usage_lines_of_old_statements(ref):
    retention = DataRetention.objects.create(usage_detail_days=90)  # cutoff 2026-08-17
    old = _statement(ref, "S-OLD", "2026-03-31")
    on_cutoff = _statement(ref, "S-EDGE", "2026-08-17")  # not older than 90 days: kept
    recent = _statement(ref, "S-NEW", "2026-10-31")
    headers = {s.pk: _header(s) for s in (old, on_cutoff, recent)}
    ledger = list(FinancialTransaction.objects.order_by("pk").values_list("pk", "amount"))

    removed = usage_detail_purge(today=TODAY)

    assert removed == 1
    assert _lines(old) == [(1, "recurring"), (3, "discount")]
    assert _lines(on_cutoff) == [(1, "recurring"), (2, "usage"), (3, "discount")]
    assert _lines(recent) == [(1, "recurring"), (2, "usage"), (3, "discount")]
    # Totals, usage summaries and the ledger stay as they were.
    assert {s.pk: _header(s) for s in (old, on_cutoff, recent)} == headers
    assert old.new_charges == Decimal("37.50")
    assert UsageSummary.objects.filter(statement=old).count() == 2
    assert list(FinancialTransaction.objects.order_by("pk").values_list("pk", "amount")) == ledger
    assert old.usage_detail_purged_at is not None
    assert on_cutoff.usage_detail_purged_at is None and recent.usage_detail_purged_at is None

    audit = AuditRecord.objects.get(action="statements.usage_detail_purge")
    assert audit.object_type == "statements.dataretention" and audit.object_id == str(retention.pk)
    assert audit.actor_label == "task:statements.purge_usage_detail"
    assert audit.after == {
        "usage_detail_days": 90,
        "cutoff": "2026-08-17",
        "statements": 1,
        "lines_removed": 1,
    }


def test_purge_in_batches_and_a_second_run_finds_nothing(ref):
    DataRetention.objects.create(usage_detail_days=30)
    usage = [
        {"type": "usage", "product": f"Calls {i}", "amount": "1.00", "quantity": "10", "unit": "min",
         "unit_price": "0.10", "external_id": f"u{i}"}
        for i in range(3)
    ]  # fmt: skip
    statements = [
        _statement(ref, f"S-{month}", f"2026-0{month}-28", lines=[*usage, {"type": "tax", "amount": "0.30"}])
        for month in (1, 2, 3)
    ]

    assert usage_detail_purge(today=TODAY, batch_size=2) == 9
    assert StatementLine.objects.filter(line_type="usage").count() == 0
    assert StatementLine.objects.filter(line_type="tax").count() == 3
    purged_at = {s.pk: Statement.objects.get(pk=s.pk).usage_detail_purged_at for s in statements}
    assert all(purged_at.values())

    assert usage_detail_purge(today=TODAY) == 0  # idempotent
    assert {s.pk: Statement.objects.get(pk=s.pk).usage_detail_purged_at for s in statements} == purged_at
    runs = AuditRecord.objects.filter(action="statements.usage_detail_purge").order_by("pk")
    assert [(r.after["statements"], r.after["lines_removed"]) for r in runs] == [(3, 9), (0, 0)]


def test_a_replaced_statement_gets_its_usage_detail_back_and_is_purged_again(ref):
    DataRetention.objects.create(usage_detail_days=30)
    statement = _statement(ref, "S-1", "2026-01-31")
    usage_detail_purge(today=TODAY)

    _statement(ref, "S-1", "2026-01-31", payments="0.00", previous_balance="1.00")  # a new version
    statement.refresh_from_db()
    assert statement.version == 2 and statement.usage_detail_purged_at is None
    assert _lines(statement) == [(1, "recurring"), (2, "usage"), (3, "discount")]

    assert usage_detail_purge(today=TODAY) == 1
    assert _lines(statement) == [(1, "recurring"), (3, "discount")]


def test_purge_task_uses_todays_date(ref):
    DataRetention.objects.create(usage_detail_days=365)
    _statement(ref, "S-ANCIENT", "2020-01-31")

    assert tasks.purge_usage_detail() == {"lines_removed": 1}
    assert tasks.purge_usage_detail() == {"lines_removed": 0}


# --- overdue -----------------------------------------------------------------------------------------------


def test_open_and_partially_paid_statements_past_due_become_overdue(ref):
    cases = {
        "OPEN-PAST": ("open", "2026-11-14"),
        "PART-PAST": ("partially_paid", "2026-11-01"),
        "OPEN-TODAY": ("open", "2026-11-15"),  # due today: not overdue yet
        "PAID-PAST": ("paid", "2026-11-01"),
        "OPEN-FUTURE": ("open", "2026-12-01"),
    }
    statements = {
        key: _statement(ref, key, "2026-10-31", status=status, due_date=due, number=key)
        for key, (status, due) in cases.items()
    }

    assert statements_mark_overdue(today=TODAY) == 2

    status = dict(Statement.objects.values_list("external_id", "status"))
    assert status == {
        "OPEN-PAST": "overdue",
        "PART-PAST": "overdue",
        "OPEN-TODAY": "open",
        "PAID-PAST": "paid",
        "OPEN-FUTURE": "open",
    }
    audits = AuditRecord.objects.filter(action="statement.status", actor_label="task:statements.mark_overdue")
    assert sorted(
        (a.object_id, a.before["status"], a.after["status"], a.account_id) for a in audits
    ) == sorted(
        [
            (str(statements["OPEN-PAST"].pk), "open", "overdue", ref.account_id),
            (str(statements["PART-PAST"].pk), "partially_paid", "overdue", ref.account_id),
        ]
    )

    assert statements_mark_overdue(today=TODAY) == 0  # idempotent
    assert audits.count() == 2


def test_mark_overdue_in_batches(ref):
    for i in range(5):
        _statement(ref, f"S-{i}", "2026-10-31", due_date="2026-11-01", number=f"N-{i}")

    assert statements_mark_overdue(today=TODAY, batch_size=2) == 5
    assert set(Statement.objects.values_list("status", flat=True)) == {"overdue"}


def test_mark_overdue_task(ref):
    _statement(ref, "S-OLD", "2020-01-31")
    assert tasks.mark_overdue() == {"marked_overdue": 1}
    assert tasks.mark_overdue() == {"marked_overdue": 0}


def test_nightly_jobs_are_on_the_beat_schedule():
    schedule = {entry["task"]: entry for entry in celery_app.conf.beat_schedule.values()}
    assert {"statements.mark_overdue", "statements.purge_usage_detail"} <= set(schedule)
    for name in ("statements.mark_overdue", "statements.purge_usage_detail"):
        assert name in celery_app.tasks
        crontab = schedule[name]["schedule"]
        assert len(crontab.hour) == 1 and len(crontab.minute) == 1  # once a day
