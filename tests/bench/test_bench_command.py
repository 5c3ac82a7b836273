"""The billing-run benchmark command, run for real on a tiny customer base (a smoke test, not a figure).

``manage.py bench_billing`` runs as a subprocess with this suite's DATABASE_URL, in databases of its own
with a private name (the one DATABASE_URL names is never touched), with one real Celery worker through the
local Redis. The command checks what the run made; this test checks it again with its own SQL on the
clone it keeps (--keep), then drops both databases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from decimal import Decimal

import psycopg
import pytest
from django.conf import settings

from accounts.models import Account
from billruns.models import BillSegment, Subscription
from statements.models import FinancialTransaction, Statement
from tests.kernel.test_celery_worker import REDIS_URL, _redis_or_skip

pytestmark = pytest.mark.celery_worker
ACCOUNTS = 30
TABLE_HEADER = ["accounts", "seconds", "accounts/s", "bills", "exceptions", "peak worker MB"]
RESULT_KEYS = {
    "workers", "accounts", "seconds", "accounts_per_second", "bills", "exceptions", "peak_worker_mb",
    "peak_worker_mb_total", "bill_units", "stages", "checks", "billed_total", "ledger_bill_total", "ok",
}  # fmt: skip


def _manage(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _server(dbname: str) -> psycopg.Connection:
    db = settings.DATABASES["default"]
    params = {"HOST": "host", "PORT": "port", "USER": "user", "PASSWORD": "password"}
    kwargs = {name: str(db[key]) for key, name in params.items() if db.get(key)}
    return psycopg.connect(dbname=dbname, autocommit=True, **kwargs)


def _drop(*names: str) -> None:
    with _server("postgres") as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def bench_database():
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql", (
        "The benchmark runs on PostgreSQL: set DATABASE_URL=postgres://..."
    )
    _redis_or_skip()
    name = f"bench_smoke_{uuid.uuid4().hex[:10]}"
    yield name
    _drop(name, f"{name}_w1")


def test_bench_prints_the_table_writes_the_json_and_bills_every_account_once(bench_database, tmp_path):
    report = tmp_path / "bench.json"
    done = _manage(
        "bench_billing", "--accounts", str(ACCOUNTS), "--workers", "1", "--chunk-size", "10", "--seed", "7",
        "--bill-as-of", "2026-07-01", "--database", bench_database, "--broker", REDIS_URL,
        "--json", str(report), "--keep", "--timeout", "60",
    )  # fmt: skip
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"

    header, rule, row = done.stdout.splitlines()[:3]
    assert header.split() == [word for title in TABLE_HEADER for word in title.split()]
    assert set(rule.replace(" ", "")) == {"-"}
    words = row.split()
    assert words[:2] == ["1", "worker"] and len(words) == 8
    accounts, _seconds, _rate, bills, exceptions, _mb = words[2:]
    assert (accounts, exceptions) == (str(ACCOUNTS), "0")

    data = json.loads(report.read_text())
    assert set(data) >= {"benchmark", "parameters", "machine", "build", "results", "ok", "failures"}
    assert set(data["machine"]) >= {"cpu_count", "cpu_model", "python", "postgresql"}
    assert data["machine"]["cpu_count"] == os.cpu_count()
    assert data["machine"]["postgresql"]["version"]
    assert (data["parameters"]["workers"], data["parameters"]["accounts"]) == ([1], ACCOUNTS)
    build = data["build"]
    assert (build["accounts"], build["subscriptions"], build["usage_records"]) == (ACCOUNTS, 60, 1800)
    assert build["children"] == 3 and build["bill_units"] == ACCOUNTS - 3 and build["billers"] == 3
    (result,) = data["results"]
    assert set(result) >= RESULT_KEYS
    assert (result["workers"], result["accounts"], result["exceptions"]) == (1, ACCOUNTS, 0)
    assert result["bills"] == build["bill_units"] == int(bills)
    assert result["seconds"] > 0 and result["accounts_per_second"] > 0 and result["peak_worker_mb"] > 0
    assert all(result["checks"].values()), result["checks"]
    assert result["ok"] and data["ok"] and data["failures"] == []
    assert result["billed_total"] == result["ledger_bill_total"] and Decimal(result["billed_total"]) > 0
    assert set(result["stages"]) == {"rating", "invoicing", "posting"}

    # Again, with this test's own SQL on the run's database: one bill per paying account, none for the
    # non-paying children, every account's charges on exactly one bill, the ledger carrying them.
    account, statement = Account._meta.db_table, Statement._meta.db_table
    subscription, segment = Subscription._meta.db_table, BillSegment._meta.db_table
    ledger = FinancialTransaction._meta.db_table
    with _server(result["database"]) as conn:
        per_account = conn.execute(
            f"SELECT a.is_paying, count(s.id) FROM {account} a "
            f"LEFT JOIN {statement} s ON s.account_id = a.id GROUP BY a.id"
        ).fetchall()
        assert len(per_account) == ACCOUNTS
        assert sorted(set(per_account)) == [(False, 0), (True, 1)]
        carried = conn.execute(
            "SELECT sub.account_id, count(DISTINCT seg.statement_id), count(*) - count(seg.statement_id) "
            f"FROM {subscription} sub JOIN {segment} seg ON seg.subscription_id = sub.id "
            "GROUP BY sub.account_id"
        ).fetchall()
        assert len(carried) == ACCOUNTS
        assert {(n, unbilled) for _, n, unbilled in carried} == {(1, 0)}
        billed, posted = conn.execute(
            f"SELECT (SELECT sum(new_charges + taxes) FROM {statement}), "
            f"(SELECT sum(amount) FROM {ledger} WHERE kind = 'bill')"
        ).fetchone()
        assert billed == posted == Decimal(result["billed_total"])


def test_bench_refuses_a_database_other_than_postgresql(tmp_path):
    done = _manage("bench_billing", "--accounts", "5", env={"DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    assert done.returncode != 0
    assert "PostgreSQL" in done.stderr
    assert not (tmp_path / "x.db").exists()


def test_bench_refuses_to_work_in_the_configured_database(bench_database):
    url = f"postgres://postgres@127.0.0.1:5432/{bench_database}"
    done = _manage(
        "bench_billing", "--accounts", "5", "--database", bench_database, env={"DATABASE_URL": url}
    )
    assert done.returncode != 0
    assert "DATABASE_URL names" in done.stderr
    with _server("postgres") as conn:
        assert (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [bench_database]).fetchone() is None
        )
