"""Smoke test of `manage.py bench` (docs/benchmarks.md): every measurement on a tiny base, the table, JSON.

The figures mean nothing at this size; what is tested is that each measurement runs, checks what it made and
lands in the table and the JSON with the fields docs/benchmarks.md describes. Needs PostgreSQL, Redis (the
billing workers) and wrk (the pages); it skips, saying why, when Redis or wrk is missing.
"""

from __future__ import annotations

import json
import shutil
import uuid

import pytest
from django.conf import settings

from tests.bench.test_bench_command import _drop, _manage
from tests.kernel.test_celery_worker import REDIS_URL, _redis_or_skip

pytestmark = pytest.mark.celery_worker

SUFFIXES = ["", "_fmt", "_pages", "_ingest", "_w1", "_w2", "_fmt_w2"]


@pytest.fixture
def bench_database():
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    _redis_or_skip()
    if not shutil.which("wrk"):
        pytest.skip("wrk is not installed (apt-get install wrk; make test installs it): the pages need it")
    name = f"bench_all_{uuid.uuid4().hex[:8]}"
    yield name
    _drop(*(name + suffix for suffix in SUFFIXES))


def test_bench_measures_everything_and_reports_each_figure_against_its_target(bench_database, tmp_path):
    report = tmp_path / "benchmarks.json"
    done = _manage(
        "bench", "--accounts", "40", "--workers", "1", "--chunk-size", "10", "--format-accounts", "12",
        "--usage-records", "3000", "--statements", "60", "--ingest-clients", "2", "--page-clients", "4",
        "--page-seconds", "2", "--invoices", "4", "--database", bench_database, "--broker", REDIS_URL,
        "--json", str(report), "--timeout", "120", "--bill-as-of", "2026-07-01",
        timeout=420,
    )  # fmt: skip
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-6000:]}"

    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["measurement", "value", "unit"]
    labels = "\n".join(lines)
    for expected in [
        "billing to Assembling & Posting, 1 worker",
        "peak worker memory",
        "billing incl. Formatting",
        "Formatting stage, 2 workers",
        "usage ingest, REST bulk",
        "statement ingest, REST bulk",
        "account page, 4 clients",
        "account page's lazy parts, 4 clients",
        "statement page, 4 clients",
        "in a run",
        "invoice rendering alone, 1 process",
        "layout, mean per invoice",
        "invoice rendering alone, 2 processes (total)",
    ]:
        assert expected in labels, f"{expected!r} missing from the table:\n{done.stdout}"

    data = json.loads(report.read_text())
    assert data["ok"] and data["failures"] == []
    assert set(data) >= {"parameters", "machine", "code", "table", "details"}
    assert data["machine"]["cpu_count"] and data["machine"]["postgresql"]["version"]
    by_label = {row["label"]: row for row in data["table"]}
    billing = by_label["billing to Assembling & Posting, 1 worker"]
    assert billing["unit"] == "accounts/s" and billing["value"] > 0
    (run,) = data["details"]["billing"]
    assert all(run["checks"].values()) and run["bills"] == data["details"]["build"]["bill_units"]

    formatting = data["details"]["formatting"]
    assert all(formatting["checks"].values()), formatting["checks"]
    assert formatting["invoices"] == formatting["bills"] > 0 and formatting["invoices_per_second"] > 0
    assert formatting["pages_per_invoice"] >= 1

    usage = by_label["usage ingest, REST bulk (1,000 a request)"]
    assert usage["value"] > 0 and usage["p95_ms"] > 0 and usage["met"] in (True, False)
    assert all(data["details"]["ingest"]["usage"]["checks"].values())
    assert all(data["details"]["ingest"]["statements"]["checks"].values())

    pages = [row for row in data["table"] if row["unit"] == "requests/s"]
    assert len(pages) == 6  # the account page, its lazy parts and the statement page, alone and during a run
    for row in pages:
        assert row["value"] > 0 and row["p95_ms"] > 0 and 0 < row["queries"] <= 15, row
    assert data["details"]["pages"]["during_run"]["share_inside_run"] > 0

    rendering = by_label["invoice rendering alone, 1 process"]
    assert rendering["value"] > 0 and rendering["p95_ms"] > 0
