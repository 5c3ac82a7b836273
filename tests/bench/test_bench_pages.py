"""The CSR pages benchmark (billing_mgmt.bench.pages), run for real on a tiny customer base: one account with
five years of history added to it, gunicorn against a database of its own, wrk driving the account page (its
first response and its lazy parts) and the statement page (a smoke test, not a figure). The database is
private to the test (the one DATABASE_URL names is never touched) and is dropped at the end.
"""

from __future__ import annotations

import os

import pytest

from accounts.models import Account
from billing_mgmt.bench.pages import WRK, build_history_account, measure_pages
from billruns.bench import databases
from billruns.models import Subscription, UsageRecord
from statements.models import Statement
from tests.bench.bases import private_base

ACCOUNTS = 20
FIGURES = {
    "page", "requests", "requests_per_second", "errors", "non_2xx", "p50_ms", "p95_ms", "p99_ms",
    "p50_server_ms", "p95_server_ms", "p99_server_ms", "queries_per_request", "web_cpu_seconds",
}  # fmt: skip


@pytest.fixture
def bench_base(django_db_blocker):
    with private_base(django_db_blocker, prefix="bench_pages_smoke", accounts=ACCOUNTS) as name:
        yield name


def test_history_account_leaves_the_billing_run_alone(bench_base, django_db_blocker):
    """The history account is a paying account without subscriptions or usage records (the engine's run does
    not select it), billed by an external biller only; building it twice gives the same account."""
    with django_db_blocker.unblock(), databases.pointed_at(bench_base):
        usage_before = UsageRecord.objects.count()
        history = build_history_account(seed=3, years=5)
        again = build_history_account(seed=3, years=5)
        account = Account.objects.get(number=history["account_number"])
        assert again["account_number"] == history["account_number"]
        assert history["statements"] == 60 and history["statement_lines"] == 1200
        assert history["payments"] == 59 and history["cases"] >= 5
        assert account.is_paying and not Subscription.objects.filter(account=account).exists()
        assert UsageRecord.objects.count() == usage_before
        assert not Statement.objects.filter(account=account, biller__kind="internal").exists()


def test_pages_are_measured(bench_base, django_db_blocker, tmp_path):
    if not os.path.exists(WRK):
        reason = f"{WRK} is missing: install Debian's wrk package to run the pages benchmark."
        print(reason)
        pytest.skip(reason)
    lines: list[str] = []
    with django_db_blocker.unblock(), databases.pointed_at(bench_base):
        history = build_history_account(seed=1, years=5)
        results = measure_pages(
            database_url=databases.database_url(bench_base), log_dir=tmp_path, history=history, clients=4,
            seconds=2, progress=lines.append,
        )  # fmt: skip
    assert [r["page"] for r in results] == ["account", "account-parts", "statement"]
    for result in results:
        assert set(result) >= FIGURES, result["page"]
        assert result["requests"] > 0 and result["errors"] == 0 and result["non_2xx"] == 0, result
        assert result["logged_non_2xx"] == 0 and result["server_requests"] >= result["requests"] - 4
        assert result["p99_ms"] >= result["p95_ms"] >= result["p50_ms"] > 0
        assert result["p95_server_ms"] > 0
        assert result["queries_per_request"] <= 15
    assert results[0]["queries_per_request"] == 12
    assert len(results[1]["paths"]) == 3
    assert len(lines) == 3
