"""The product's benchmark (docs/benchmarks.md): one synthetic base, every figure F8 asks for, one table.

    manage.py bench [--accounts 10000] [--seed 1] [--workers 1,2] [--json docs/benchmarks.json]
                    [--only billing,formatting,ingest,pages,invoices] [--database billing_bench] [--reuse]

It builds the synthetic customer base (billruns.bench.customers) and an account with five years of history
(billing_mgmt.bench.pages) in its own PostgreSQL database, then measures, each on a clone of it:

* billing: a billing run up to Assembling & Posting with 1 and 2 worker processes (accounts/s, peak memory);
* formatting: the same run including Formatting, on a base of ``--format-accounts`` (invoices/s);
* ingest: usage records and statements through the REST bulk endpoints (records/s, p95 request time);
* pages: the CSR account and statement pages of the history account at 20 concurrent clients (wrk), alone
  and while a billing run goes (p50/p95/p99 server time, queries per request);
* invoices: invoice rendering alone, in one process and in two at once (manage.py bench_invoices).

It prints one table (each figure against its target) and writes it, with every detail and the machine's
facts, as JSON. Exits non-zero when a measurement fails or a check of what it made fails; the table and the
JSON are still written. Targets are goals, not pass/fail conditions.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import BillingProfile
from billruns.bench import databases
from billruns.bench.customers import BaseSpec, BuiltBase
from billruns.bench.measure import Plan, RunTimeout, measure
from billruns.bench.template import build_template, code_facts, machine_facts
from billruns.bench.workers import WorkerError, redis_ping, worker_counts
from billruns.models import Stage

PARTS = ("billing", "formatting", "ingest", "pages", "invoices")
DEFAULT_DATABASE = "billing_bench"
DEFAULT_BROKER = "redis://127.0.0.1:6379/14"
DEFAULT_JSON = "docs/benchmarks.json"
# billing_mgmt.bench.pages' page keys, as the table names them.
PAGE_NAMES = {
    "account": "account page",
    "account-parts": "account page's lazy parts",
    "statement": "statement page",
}

# The targets of F8 (docs/benchmarks.md): goals on a 2-core machine, reported as met or not.
TARGET_ACCOUNTS_PER_SECOND = 800
TARGET_USAGE_RECORDS_PER_SECOND = 20_000
TARGET_PAGE_P95_MS = 150
TARGET_PAGE_P95_DURING_RUN_MS = 300
TARGET_PAGE_QUERIES = 15
TARGET_INVOICES_PER_SECOND = 15

COLUMNS = [  # title, width, key, align
    ("measurement", 52, "label", "<"),
    ("value", 10, "value", ">"),
    ("unit", 13, "unit", "<"),
    ("p50 ms", 7, "p50_ms", ">"),
    ("p95 ms", 7, "p95_ms", ">"),
    ("p99 ms", 7, "p99_ms", ">"),
    ("queries", 7, "queries", ">"),
    ("target", 18, "target", "<"),
    ("met", 4, "met", "<"),
]


def _parts(value: str) -> list[str]:
    parts = [part.strip() for part in value.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise CommandError(f"--only: a comma-separated list of {', '.join(PARTS)}, not '{value}'.")
    return [part for part in PARTS if part in parts]


def _number(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def format_table(rows: list[dict]) -> str:
    def cell(row: dict, key: str, width: int, align: str) -> str:
        value = row.get(key)
        text = value if isinstance(value, str) else _number(value)
        if key == "met":
            text = {True: "yes", False: "NO", None: ""}[value]
        return f"{text:{align}{width}}"[: max(width, len(text))]

    lines = ["  ".join(f"{title:{align}{width}}" for title, width, _, align in COLUMNS).rstrip()]
    lines.append("  ".join("-" * width for _, width, _, _ in COLUMNS))
    for row in rows:
        lines.append("  ".join(cell(row, key, width, align) for _, width, key, align in COLUMNS).rstrip())
    return "\n".join(lines)


def _pdf_pages(folder: Path) -> list[int]:
    """Pages of every PDF under the folder (the invoices a run rendered)."""
    from pypdf import PdfReader

    return [len(PdfReader(path).pages) for path in folder.rglob("*.pdf")]


def _row(label: str, value: Any, unit: str, **more: Any) -> dict:
    return {"label": label, "value": value, "unit": unit, **more}


class Command(BaseCommand):
    help = "Benchmark the product on a synthetic base: billing, formatting, ingest, CSR pages, invoices."

    def add_arguments(self, parser):
        parser.add_argument("--accounts", type=int, default=10000, help="Accounts in the base (10000).")
        parser.add_argument("--seed", type=int, default=1, help="Seed of the synthetic data (1).")
        parser.add_argument("--workers", default="1,2", help="Worker counts for billing (1,2).")
        parser.add_argument("--chunk-size", type=int, default=500, help="Bill units per chunk (500).")
        parser.add_argument(
            "--only", default=",".join(PARTS), help=f"Which measurements ({','.join(PARTS)})."
        )
        parser.add_argument(
            "--format-accounts",
            type=int,
            default=1000,
            help="Accounts of the base billed with Formatting (1000; rendering is ~15 invoices/s).",
        )
        parser.add_argument(
            "--format-presentment",
            default="mixed",
            choices=("mixed", *BillingProfile.Presentment.values),
            help="The presentment preference of every account of that base (mixed: a random mix, about half "
            "detailed invoices with their usage events over several pages; portal or email_summary: one-page "
            "summaries, what the one-page target is about).",
        )
        parser.add_argument("--usage-records", type=int, default=200_000, help="Usage records sent (200000).")
        parser.add_argument("--statements", type=int, default=5000, help="Statements sent (5000).")
        parser.add_argument("--ingest-clients", type=int, default=4, help="Concurrent ingest clients (4).")
        parser.add_argument("--page-clients", type=int, default=20, help="Concurrent page clients (20).")
        parser.add_argument("--page-seconds", type=float, default=15, help="Seconds of load per page (15).")
        parser.add_argument("--invoices", type=int, default=200, help="Invoices rendered alone (200).")
        parser.add_argument(
            "--bill-as-of",
            type=dt.date.fromisoformat,
            default=None,
            help="The runs' bill-as-of date, a first of the month (default: the first of this month).",
        )
        parser.add_argument("--json", default=DEFAULT_JSON, help=f"Where the JSON goes ({DEFAULT_JSON}).")
        parser.add_argument(
            "--database",
            default=DEFAULT_DATABASE,
            help=f"The benchmark's database ({DEFAULT_DATABASE}), dropped and rebuilt; clones add a suffix.",
        )
        parser.add_argument(
            "--broker",
            default=os.environ.get("BENCH_REDIS_URL", DEFAULT_BROKER),
            help=f"The workers' Redis (BENCH_REDIS_URL, default {DEFAULT_BROKER}); private queues.",
        )
        parser.add_argument("--timeout", type=float, default=3600, help="Seconds a run may take (3600).")
        parser.add_argument("--reuse", action="store_true", help="Reuse a template built from the same spec.")

    # --- the command --------------------------------------------------------------------------------------

    def handle(self, *args, **options):
        self.verbosity = options["verbosity"]
        if not databases.is_postgresql():
            raise CommandError(
                "bench measures on PostgreSQL (the production database): set DATABASE_URL=postgres://... "
                "(make bench does)."
            )
        self.options = options
        parts = _parts(options["only"])
        try:
            counts = worker_counts(options["workers"])
        except ValueError as exc:
            raise CommandError(f"--workers: {exc}") from exc
        accounts = options["accounts"]
        if accounts < 1 or options["format_accounts"] < 1:
            raise CommandError("--accounts and --format-accounts must be at least 1.")
        if not 1 <= options["chunk_size"] <= 5000:
            raise CommandError("--chunk-size must be from 1 to 5000 (the run definition's range).")
        bill_as_of = options["bill_as_of"] or timezone.localdate().replace(day=1)
        if bill_as_of.day != 1:
            raise CommandError("--bill-as-of must be the first of a month (the bill cycle day).")
        self.template = template = options["database"]
        names = [template, f"{template}_fmt", *(f"{template}{s}" for s in ("_pages", "_ingest"))]
        names += [f"{template}_w{n}" for n in {*counts, 2}] + [f"{template}_fmt_w2"]
        try:
            for name in names:
                databases.check_name(name, protected=databases.configured_name())
        except databases.BenchDatabaseError as exc:
            raise CommandError(str(exc)) from exc
        broker = options["broker"]
        if {"billing", "formatting", "pages"} & set(parts):
            problem = redis_ping(broker)
            if problem:
                raise CommandError(f"Redis is not reachable at {broker} ({problem}): the workers need it.")
        if "pages" in parts and not shutil.which("wrk"):
            raise CommandError("The pages measurement drives the pages with wrk: apt-get install wrk.")
        self.log_dir = Path(settings.VAR_DIR) / "bench" / "logs"
        self.spec = BaseSpec(accounts=accounts, seed=options["seed"], months=1, bill_as_of=bill_as_of)
        self.plan = Plan(
            template=template,
            chunk_size=options["chunk_size"],
            months=1,
            bill_as_of=bill_as_of,
            broker_url=broker,
            queue=f"bench-{uuid.uuid4().hex[:10]}",
            timeout=options["timeout"],
            log_dir=self.log_dir,
        )
        self.rows: list[dict] = []
        self.details: dict[str, Any] = {}
        self.failures: list[str] = []

        try:
            built = history = None
            if {"billing", "ingest", "pages"} & set(parts):
                built, history = self._build_main()
            if "billing" in parts:
                self._billing(built, counts)
            if "formatting" in parts:
                self._formatting()
            if "ingest" in parts:
                self._ingest(built)
            if "pages" in parts:
                self._pages(built, history)
            if "invoices" in parts:
                self._invoices()
        except databases.BenchDatabaseError as exc:
            raise CommandError(str(exc)) from exc

        report = self._report(parts, counts)
        json_path = Path(options["json"])
        if not json_path.is_absolute():
            json_path = Path(settings.BASE_DIR) / json_path
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        self.stdout.write(format_table(self.rows))
        for failure in self.failures:
            self.stdout.write(f"FAILED: {failure}")
        self.stdout.write(f"\nJSON: {json_path}")
        if self.failures:
            raise CommandError("; ".join(self.failures))

    def _say(self, line: str) -> None:
        if self.verbosity:
            self.stderr.write(line)

    def _guard(self, what: str, work: Callable[[], Any]) -> Any:
        """Run one measurement; a failure is recorded (and reported at the end) and the others go on."""
        try:
            return work()
        except (RunTimeout, WorkerError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
            if isinstance(exc, databases.BenchDatabaseError):
                raise
            self.failures.append(f"{what}: {type(exc).__name__}: {exc}")
            self._say(f"  {what} failed: {exc}")
            return None

    def _check(self, what: str, row: dict) -> None:
        failed = [name for name, ok in (row.get("checks") or {}).items() if not ok]
        if failed:
            self.failures.append(f"{what}: checks failed: {', '.join(failed)}")
        if row.get("stalls"):
            self.failures.append(f"{what}: the run stalled {len(row['stalls'])} time(s) and was resumed")

    # --- the base -----------------------------------------------------------------------------------------

    def _build_main(self) -> tuple[BuiltBase, dict]:
        from billing_mgmt.bench import pages

        seed = self.options["seed"]
        extras = {"history": (pages, lambda: pages.build_history_account(seed=seed))}
        built, made = build_template(
            self.spec, self.template, reuse=self.options["reuse"], say=self._say, extras=extras, kind="bench"
        )
        self.details["build"] = {**built.as_dict(), "history": made["history"]}
        return built, made["history"]

    # --- billing ------------------------------------------------------------------------------------------

    def _billing(self, built: BuiltBase, counts: list[int]) -> None:
        results = []
        for n in counts:
            self._say(f"Billing {built.accounts:,} accounts with {n} worker{'s' if n != 1 else ''}...")
            row = self._guard(
                f"billing, {n} worker(s)", lambda n=n: measure(plan=self.plan, workers=n, built=built)
            )
            if row is None:
                continue
            self._check(f"billing, {n} worker(s)", row)
            results.append(row)
            self._say(f"  {row['seconds']:.2f}s, {row['accounts_per_second']} accounts/s")
            two = n == 2 and (os.cpu_count() or 0) <= 2
            self.rows.append(
                _row(
                    f"billing to Assembling & Posting, {n} worker{'s' if n != 1 else ''}",
                    row["accounts_per_second"],
                    "accounts/s",
                    target=f">= {TARGET_ACCOUNTS_PER_SECOND} on 2 cores" if n == 2 else "",
                    met=row["accounts_per_second"] >= TARGET_ACCOUNTS_PER_SECOND if two else None,
                )
            )
            self.rows.append(_row(f"  peak worker memory, {n} worker(s)", row["peak_worker_mb"], "MB"))
        if len({row["billed_total"] for row in results}) > 1:
            self.failures.append("billing: the runs billed different totals from the same data")
        self.details["billing"] = results

    def _formatting(self) -> None:
        spec = BaseSpec(
            accounts=self.options["format_accounts"],
            seed=self.options["seed"],
            months=1,
            bill_as_of=self.spec.bill_as_of,
            presentment=""
            if self.options["format_presentment"] == "mixed"
            else self.options["format_presentment"],
        )
        template = f"{self.template}_fmt"
        built, _ = build_template(spec, template, reuse=self.options["reuse"], say=self._say)
        media = Path(tempfile.mkdtemp(prefix="bench-media-", dir=Path(settings.VAR_DIR)))
        # Formatting's units of work are the run definition's formatting_chunk_size (100 by default), smaller
        # than billing's, so a small base's invoices spread over both workers.
        plan = Plan(
            **{
                **self.plan.__dict__,
                "template": template,
                "up_to": Stage.FORMATTING,
                "media_root": media,
            }
        )
        self._say(f"Billing {built.accounts:,} accounts with Formatting, 2 workers...")
        try:
            row = self._guard("formatting", lambda: measure(plan=plan, workers=2, built=built))
            pages = _pdf_pages(media)
        finally:
            shutil.rmtree(media, ignore_errors=True)
        if row is None:
            return
        row["pages_per_invoice"] = round(sum(pages) / len(pages), 2) if pages else None
        self._check("formatting", row)
        stage = row["stages"].get(Stage.FORMATTING) or {}
        invoices = row.get("invoices") or 0
        per_second = round(invoices / stage["seconds"], 1) if stage.get("seconds") else None
        row["invoices_per_second"] = per_second
        self._say(f"  {invoices:,} invoices, Formatting {stage.get('seconds')}s: {per_second}/s")
        self.rows.append(
            _row(
                "billing incl. Formatting, 2 workers (run)",
                row["accounts_per_second"],
                "accounts/s",
            )
        )
        pages_per_invoice = row["pages_per_invoice"]
        row["pages_per_second"] = round(per_second * pages_per_invoice, 1) if per_second and pages else None
        one_page = pages_per_invoice == 1
        # The target is about one-page invoices: a mix with multi-page detailed invoices is shown against it
        # but not judged by it (run with --format-presentment portal for the one-page figure).
        self.rows.append(
            _row(
                f"  Formatting stage, 2 workers ({pages_per_invoice or '-'} pages each)",
                per_second,
                "invoices/s",
                target=f">= {TARGET_INVOICES_PER_SECOND}" + ("" if one_page else " (one-page)"),
                met=(per_second >= TARGET_INVOICES_PER_SECOND if per_second else False) if one_page else None,
            )
        )
        self.rows.append(_row("  Formatting stage, pages rendered", row["pages_per_second"], "pages/s"))
        self.details["formatting"] = row

    # --- ingest -------------------------------------------------------------------------------------------

    def _ingest(self, built: BuiltBase) -> None:
        from billing_mgmt.bench import ingest

        clone = f"{self.template}_ingest"
        databases.create(clone, template=self.template)
        url = databases.database_url(clone)
        try:
            with databases.pointed_at(clone):
                self._say(f"Usage ingest: {self.options['usage_records']:,} records over REST...")
                usage = self._guard(
                    "usage ingest",
                    lambda: ingest.measure_usage_ingest(
                        database_url=url,
                        log_dir=self.log_dir,
                        records=self.options["usage_records"],
                        clients=self.options["ingest_clients"],
                        progress=self._say,
                    ),
                )
                self._say(f"Statement ingest: {self.options['statements']:,} statements over REST...")
                statements = self._guard(
                    "statement ingest",
                    lambda: ingest.measure_statement_ingest(
                        database_url=url,
                        log_dir=self.log_dir,
                        statements=self.options["statements"],
                        clients=self.options["ingest_clients"],
                        progress=self._say,
                    ),
                )
        finally:
            databases.drop(clone)
        if usage:
            self._check("usage ingest", usage)
            rate = usage["records_per_second"]
            self.rows.append(
                _row(
                    "usage ingest, REST bulk (1,000 a request)",
                    rate,
                    "records/s",
                    p50_ms=usage.get("p50_request_ms"),
                    p95_ms=usage.get("p95_request_ms"),
                    target=f">= {TARGET_USAGE_RECORDS_PER_SECOND:,}",
                    met=rate >= TARGET_USAGE_RECORDS_PER_SECOND,
                )
            )
        if statements:
            self._check("statement ingest", statements)
            self.rows.append(
                _row(
                    "statement ingest, REST bulk",
                    statements["statements_per_second"],
                    "statements/s",
                    p50_ms=statements.get("p50_request_ms"),
                    p95_ms=statements.get("p95_request_ms"),
                )
            )
        self.details["ingest"] = {"usage": usage, "statements": statements}

    # --- pages --------------------------------------------------------------------------------------------

    def _pages(self, built: BuiltBase, history: dict) -> None:
        from billing_mgmt.bench import pages

        def load(clone: str, seconds: float) -> list[dict]:
            return pages.measure_pages(
                database_url=databases.database_url(clone),
                log_dir=self.log_dir,
                history=history,
                clients=self.options["page_clients"],
                seconds=seconds,
                progress=self._say,
            )

        clone = f"{self.template}_pages"
        databases.create(clone, template=self.template)
        try:
            with databases.pointed_at(clone):
                self._say(f"CSR pages at {self.options['page_clients']} clients, alone...")
                alone = self._guard("pages alone", lambda: load(clone, self.options["page_seconds"]))
        finally:
            databases.drop(clone)
        self._page_rows(alone, during_run=False)

        # While a run goes: the run's own time, from the 2-worker billing measurement if there was one, sets
        # how long each page may be loaded so that both pages fall inside the run.
        billed = {row["workers"]: row for row in self.details.get("billing", [])}
        expected = billed[2]["seconds"] if 2 in billed else None
        per_page = self.options["page_seconds"]
        if expected:  # three loads (the page, its parts, the statement page), after the server's start
            per_page = max(3.0, min(per_page, (expected - 8) / 3 - 2))
        self._say(f"CSR pages while a billing run goes (2 workers), {per_page:.0f}s a page...")
        row = self._guard(
            "pages during a run",
            lambda: measure(plan=self.plan, workers=2, built=built, during=lambda c: load(c, per_page)),
        )
        during = None
        if row is not None:
            self._check("billing while pages were loaded", row)
            during = row["during"]
            if during and during.get("error"):
                self.failures.append(f"pages during a run: {during['error']}")
            self._page_rows(
                (during or {}).get("result"), during_run=True, inside=(during or {}).get("share_inside_run")
            )
        self.details["pages"] = {"alone": alone, "during_run": during, "run": row}

    def _page_rows(
        self, results: list[dict] | None, *, during_run: bool, inside: float | None = None
    ) -> None:
        limit = TARGET_PAGE_P95_DURING_RUN_MS if during_run else TARGET_PAGE_P95_MS
        for page in results or []:
            p95 = page.get("p95_server_ms")
            queries = page.get("queries_per_request")
            name = PAGE_NAMES.get(page["page"], page["page"])
            label = f"{name}, {self.options['page_clients']} clients"
            if during_run:
                share = f" ({inside:.0%} inside)" if inside is not None and inside < 0.999 else ""
                label += f", in a run{share}"
            met = None
            if p95 is not None and queries is not None:
                met = p95 < limit and queries <= TARGET_PAGE_QUERIES
            self.rows.append(
                _row(
                    label,
                    page.get("requests_per_second"),
                    "requests/s",
                    p50_ms=page.get("p50_server_ms"),
                    p95_ms=p95,
                    p99_ms=page.get("p99_server_ms"),
                    queries=queries,
                    target=f"p95 < {limit} ms, <= {TARGET_PAGE_QUERIES} q",
                    met=met,
                )
            )
            failed = (page.get("errors") or 0) + (page.get("non_2xx") or 0)
            if failed:
                self.failures.append(f"{label}: {failed} failed request(s)")

    # --- invoices -----------------------------------------------------------------------------------------

    def _invoices(self) -> None:
        count = self.options["invoices"]
        out = Path(tempfile.mkdtemp(prefix="bench-invoices-", dir=Path(settings.VAR_DIR)))

        def render(processes: int) -> list[dict]:
            started = [
                subprocess.Popen(
                    [sys.executable, "manage.py", "bench_invoices", "--count", str(count), "--json",
                     str(out / f"{processes}-{i}.json")],
                    cwd=settings.BASE_DIR,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for i in range(processes)
            ]  # fmt: skip
            for process in started:
                _, errors = process.communicate(timeout=self.options["timeout"])
                if process.returncode:
                    raise RuntimeError(f"bench_invoices exited with {process.returncode}: {errors[-500:]}")
            return [json.loads((out / f"{processes}-{i}.json").read_text()) for i in range(processes)]

        try:
            self._say(f"Rendering {count} invoices in one process, then in two at once...")
            one = self._guard("invoices, 1 process", lambda: render(1))
            two = self._guard("invoices, 2 processes", lambda: render(2))
        finally:
            shutil.rmtree(out, ignore_errors=True)
        if one:
            figures = one[0]
            split = figures["split_ms_mean"]
            self.rows.append(
                _row(
                    "invoice rendering alone, 1 process",
                    figures["invoices_per_second"],
                    "invoices/s",
                    p50_ms=figures["ms_per_invoice_p50"],
                    p95_ms=figures["ms_per_invoice_p95"],
                )
            )
            for key, title in (("template", "template"), ("layout", "layout"), ("pdf", "PDF writing")):
                self.rows.append(_row(f"  {title}, mean per invoice", split.get(key), "ms"))
        if two:
            total = round(sum(figures["invoices_per_second"] for figures in two), 1)
            self.rows.append(
                _row(
                    "invoice rendering alone, 2 processes (total)",
                    total,
                    "invoices/s",
                    p95_ms=max(figures["ms_per_invoice_p95"] for figures in two),
                    target=f">= {TARGET_INVOICES_PER_SECOND}",
                    met=total >= TARGET_INVOICES_PER_SECOND,
                )
            )
        self.details["invoices"] = {"one_process": one, "two_processes": two}

    # --- the report ---------------------------------------------------------------------------------------

    def _report(self, parts: list[str], counts: list[int]) -> dict:
        return {
            "benchmark": "manage.py bench (docs/benchmarks.md)",
            "created_at": timezone.now().isoformat(timespec="seconds"),
            "parameters": {
                "accounts": self.spec.accounts,
                "seed": self.spec.seed,
                "bill_as_of": self.spec.bill_as_of.isoformat(),
                "chunk_size": self.plan.chunk_size,
                "workers": counts,
                "parts": parts,
                **{
                    key: self.options[key]
                    for key in (
                        "format_accounts",
                        "format_presentment",
                        "usage_records",
                        "statements",
                        "ingest_clients",
                        "page_clients",
                        "page_seconds",
                        "invoices",
                    )
                },  # fmt: skip
            },
            "machine": machine_facts(self.plan.broker_url),
            "code": code_facts(),
            "table": self.rows,
            "ok": not self.failures,
            "failures": self.failures,
            "details": self.details,
            "command": " ".join(sys.argv),
        }
