"""Benchmark billing runs: a synthetic customer base billed by 1, 2, ... Celery workers (docs/benchmarks.md).

    manage.py bench_billing --accounts 10000 [--seed 1] [--workers 1,2] [--chunk-size 500] [--months 1]
                            [--json var/bench/billing.json] [--database billing_bench]

It works only in its own PostgreSQL databases on the server DATABASE_URL points at, never in the database
DATABASE_URL names: it drops and recreates ``--database`` (default ``billing_bench``), migrates and fills it,
then for each worker count clones it (``CREATE DATABASE ... TEMPLATE``), starts the workers against the
clone and a private Redis queue, runs a normal billing run up to Assembling & Posting, measures, checks
what the run made, stops the workers and drops the clone. It prints one table and writes it as JSON with
the machine's facts.

Exits non-zero when the database is not PostgreSQL, Redis is not reachable, a run fails or times out, or
a check of what a run made fails (the table and the JSON are still written).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import uuid
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billruns.bench import databases
from billruns.bench.customers import BaseSpec, BuiltBase
from billruns.bench.measure import Plan, RunTimeout, measure
from billruns.bench.template import build_template, code_facts, machine_facts
from billruns.bench.workers import WorkerError, redis_ping, worker_counts

DEFAULT_DATABASE = "billing_bench"
DEFAULT_BROKER = "redis://127.0.0.1:6379/14"
OTHER_WORK_WARNING = 0.10
COLUMNS = [
    ("", 10, "label"),
    ("accounts", 9, "accounts"),
    ("seconds", 9, "seconds"),
    ("accounts/s", 11, "accounts_per_second"),
    ("bills", 8, "bills"),
    ("exceptions", 11, "exceptions"),
    ("peak worker MB", 15, "peak_worker_mb"),
]


def _cell(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    if key == "seconds":
        return f"{value:.2f}"
    if key in ("accounts_per_second", "peak_worker_mb"):
        return f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_table(rows: list[dict]) -> str:
    lines = ["  ".join(title.rjust(width) if title else " " * width for title, width, _ in COLUMNS)]
    lines.append("  ".join("-" * width for _, width, _ in COLUMNS))
    for row in rows:
        label = f"{row['workers']} worker{'s' if row['workers'] != 1 else ''}"
        cells = [label.ljust(COLUMNS[0][1])]
        cells += [_cell(row, key).rjust(width) for _, width, key in COLUMNS[1:]]
        lines.append("  ".join(cells))
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Benchmark billing runs on a synthetic customer base with 1, 2, ... Celery workers (PostgreSQL)."

    def add_arguments(self, parser):
        parser.add_argument("--accounts", type=int, default=10000, help="Accounts to bill (10000).")
        parser.add_argument("--seed", type=int, default=1, help="Seed of the synthetic data (1).")
        parser.add_argument("--workers", default="1,2", help="Worker counts to measure, e.g. 1,2 (1,2).")
        parser.add_argument("--chunk-size", type=int, default=500, help="Bill units per chunk (500).")
        parser.add_argument("--months", type=int, default=1, help="Months of usage before the bill (1).")
        parser.add_argument(
            "--bill-as-of",
            type=dt.date.fromisoformat,
            default=None,
            help="The run's bill-as-of date, a first of the month (default: the first of this month).",
        )
        parser.add_argument(
            "--json",
            default=None,
            help="Where the results go as JSON (default $VAR_DIR/bench/billing.json).",
        )
        parser.add_argument(
            "--database",
            default=DEFAULT_DATABASE,
            help=f"The benchmark's database, dropped and recreated ({DEFAULT_DATABASE}); its clones add "
            "_w<workers>. Never the database DATABASE_URL names.",
        )
        parser.add_argument(
            "--broker",
            default=os.environ.get("BENCH_REDIS_URL", DEFAULT_BROKER),
            help=f"The Redis broker the workers use (BENCH_REDIS_URL, default {DEFAULT_BROKER}); each "
            "measurement has its own queue.",
        )
        parser.add_argument(
            "--timeout", type=float, default=1800, help="Seconds one run may take before it fails (1800)."
        )
        parser.add_argument(
            "--stall-seconds",
            type=float,
            default=2.0,
            help="A run with no chunk being worked and no task in flight for this long is stalled: it is "
            "resumed (billrun_resume) and the stall reported (2).",
        )
        parser.add_argument(
            "--reuse",
            action="store_true",
            help="Keep the built database if it was built with the same accounts, seed, months and date "
            "(and the same code and migrations), instead of building it again.",
        )
        parser.add_argument(
            "--py-spy",
            metavar="DIR",
            default=None,
            help="Sample each worker with py-spy (on PATH; not a project dependency) during the run and "
            "write a flame graph per worker into DIR.",
        )
        parser.add_argument(
            "--keep",
            action="store_true",
            help="Keep each measurement's clone (<database>_w<workers>) for inspection; drop it yourself.",
        )

    def handle(self, *args, **options):
        self.verbosity = options["verbosity"]
        if not databases.is_postgresql():
            raise CommandError(
                "bench_billing measures billing runs on PostgreSQL (the production database): set "
                "DATABASE_URL=postgres://... (make bench does)."
            )
        accounts, months, chunk_size = options["accounts"], options["months"], options["chunk_size"]
        if accounts < 1:
            raise CommandError("--accounts must be at least 1.")
        if not 1 <= months <= 12:
            raise CommandError("--months must be from 1 to 12.")
        if not 1 <= chunk_size <= 5000:
            raise CommandError("--chunk-size must be from 1 to 5000 (the run definition's range).")
        try:
            counts = worker_counts(options["workers"])
        except ValueError as exc:
            raise CommandError(f"--workers: {exc}") from exc
        bill_as_of = options["bill_as_of"] or timezone.localdate().replace(day=1)
        if bill_as_of.day != 1:
            raise CommandError("--bill-as-of must be the first of a month (the bill cycle day).")
        template = options["database"]
        try:
            for name in [template, *(f"{template}_w{n}" for n in counts)]:
                databases.check_name(name, protected=databases.configured_name())
        except databases.BenchDatabaseError as exc:
            raise CommandError(str(exc)) from exc
        broker = options["broker"]
        problem = redis_ping(broker)
        if problem:
            raise CommandError(f"Redis is not reachable at {broker} ({problem}): the workers need it.")
        json_path = (
            Path(options["json"]) if options["json"] else Path(settings.VAR_DIR) / "bench" / "billing.json"
        )
        spec = BaseSpec(accounts=accounts, seed=options["seed"], months=months, bill_as_of=bill_as_of)

        try:
            built = self._build(spec, template, reuse=options["reuse"])
            plan = Plan(
                template=template,
                chunk_size=chunk_size,
                months=months,
                bill_as_of=bill_as_of,
                broker_url=broker,
                queue=f"bench-{uuid.uuid4().hex[:10]}",
                timeout=options["timeout"],
                log_dir=Path(settings.VAR_DIR) / "bench" / "logs",
                keep=options["keep"],
                stall_seconds=options["stall_seconds"],
                profile_dir=Path(options["py_spy"]) if options["py_spy"] else None,
            )
            rows, failures = [], []
            for n in counts:
                self._say(f"Billing {accounts:,} accounts with {n} worker{'s' if n != 1 else ''}...")
                try:
                    row = measure(plan=plan, workers=n, built=built, progress=self._say)
                except (RunTimeout, WorkerError) as exc:
                    failures.append(f"{n} worker(s): {exc}")
                    self._say(f"  failed: {exc}")
                    continue
                rows.append(row)
                failed = [name for name, ok in row["checks"].items() if not ok]
                if failed or row["exceptions"]:
                    failures.append(f"{n} worker(s): checks failed: {', '.join(failed) or 'exceptions'}")
                if row["stalls"]:
                    failures.append(
                        f"{n} worker(s): the run stalled {len(row['stalls'])} time(s) and was resumed: "
                        f"{row['chunk_tasks_skipped']} chunk task(s) returned 'skipped' without working "
                        "their chunk (the seconds include the stalls)"
                    )
                self._say(
                    f"  {row['seconds']:.2f}s, {row['accounts_per_second']} accounts/s, "
                    f"checks {'ok' if not failed else 'FAILED: ' + ', '.join(failed)}"
                    + (f", {len(row['stalls'])} stall(s)" if row["stalls"] else "")
                )
            if len({row["billed_total"] for row in rows}) > 1:
                failures.append("the runs billed different totals from the same data")
        except databases.BenchDatabaseError as exc:
            raise CommandError(str(exc)) from exc

        report = self._report(spec, built, plan, counts, rows, failures)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        self.stdout.write(format_table(rows))
        for failure in failures:
            self.stdout.write(f"FAILED: {failure}")
        for row in rows:
            share = row["cpu_seconds"]["other_share"]
            if share is not None and share > OTHER_WORK_WARNING:
                self.stdout.write(
                    f"WARNING: {row['workers']} worker(s): other work on this machine took {share:.0%} of "
                    f"its CPU during the run ({row['cpu_seconds']['other']:.1f} CPU-s): figures are skewed."
                )
        self.stdout.write(f"\nJSON: {json_path}")
        if failures:
            raise CommandError("; ".join(failures))

    def _say(self, line: str) -> None:
        if self.verbosity:
            self.stderr.write(line)

    def _build(self, spec: BaseSpec, template: str, *, reuse: bool) -> BuiltBase:
        built, _ = build_template(spec, template, reuse=reuse, say=self._say)
        return built

    def _report(
        self, spec: BaseSpec, built: BuiltBase, plan: Plan, counts: list[int], rows: list, failures: list
    ) -> dict:
        return {
            "benchmark": "billing run up to Assembling & Posting",
            "created_at": timezone.now().isoformat(timespec="seconds"),
            "parameters": {
                "accounts": spec.accounts,
                "seed": spec.seed,
                "months": spec.months,
                "bill_as_of": spec.bill_as_of.isoformat(),
                "chunk_size": plan.chunk_size,
                "workers": counts,
                "worker_mode": "N separate `celery worker --pool=prefork --concurrency=1` processes",
                "database": plan.template,
            },
            "machine": machine_facts(plan.broker_url),
            "code": code_facts(),
            "build": built.as_dict(),
            "columns": [key for _, _, key in COLUMNS[1:]],
            "results": rows,
            "ok": not failures and bool(rows),
            "failures": failures,
            "command": " ".join(sys.argv),
        }
