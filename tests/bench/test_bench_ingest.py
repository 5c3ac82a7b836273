"""The ingest benchmark (billing_mgmt.bench.ingest), run for real on a tiny customer base: gunicorn against a
database of its own, usage records and statements pushed through the REST bulk endpoints (a smoke test,
not a figure). The database is private to the test (the one DATABASE_URL names is never touched) and is
dropped at the end.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from accounts.models import BillerApiKey
from billing_mgmt.bench.ingest import measure_statement_ingest, measure_usage_ingest
from billruns.bench import databases
from billruns.models import UsageRecord
from statements.models import Statement
from tests.bench.bases import private_base

ACCOUNTS = 30
FIGURES = {"seconds", "p50_request_ms", "p95_request_ms", "p50_server_ms", "p95_server_ms", "cpu_seconds"}


@pytest.fixture
def bench_base(django_db_blocker):
    with private_base(django_db_blocker, prefix="bench_ingest_smoke", accounts=ACCOUNTS) as name:
        yield name


def test_usage_and_statement_ingest_are_measured_and_checked(bench_base, tmp_path):
    url = databases.database_url(bench_base)
    lines: list[str] = []
    with databases.pointed_at(bench_base):
        usage = measure_usage_ingest(
            database_url=url, log_dir=tmp_path, records=2500, batch=500, clients=2, progress=lines.append
        )
        statements = measure_statement_ingest(
            database_url=url, log_dir=tmp_path, statements=60, batch=20, clients=2, progress=lines.append
        )
        # What the checks say, seen again from here: the records sent are stored once each, accepted, in
        # this month; the statements too; one API client per measurement was made in the database.
        sent = UsageRecord.objects.exclude(source="bench-mediation")
        assert sent.count() == 2500 == sent.values("source", "external_id").distinct().count()
        assert not sent.filter(status=UsageRecord.Status.REJECTED).exists()
        assert sent.filter(event_date__gte=timezone.localdate().replace(day=1)).count() == 2500
        assert Statement.objects.count() == 60
        assert BillerApiKey.objects.count() == 2

    assert all(usage["checks"].values()), usage["checks"]
    assert (usage["records"], usage["requests"], usage["errors"]) == (2500, 5, 0)
    assert set(usage) >= FIGURES | {"records_per_second"}
    assert usage["records_per_second"] > 0 and usage["p95_request_ms"] >= usage["p50_request_ms"] > 0
    assert usage["p95_server_ms"] > 0 and usage["cpu_seconds"]["web_workers"] > 0

    assert all(statements["checks"].values()), statements["checks"]
    assert (statements["statements"], statements["requests"], statements["errors"]) == (60, 3, 0)
    assert statements["lines"] == 180
    assert set(statements) >= FIGURES | {"statements_per_second"}
    assert statements["statements_per_second"] > 0 and statements["p95_server_ms"] > 0
    assert lines and all(isinstance(line, str) for line in lines)


def test_month_days_stay_inside_the_current_month():
    from billing_mgmt.bench.ingest import _month_days

    days = _month_days()
    first = timezone.localdate().replace(day=1)
    assert all(day.month == first.month and day > first for day in days)
    assert max(days) - min(days) == dt.timedelta(days=26)
