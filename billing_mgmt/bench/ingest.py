"""Ingest through the REST bulk endpoints, measured: usage records (``/api/v1/usage-records/bulk/``) and
biller statements (``/api/v1/ingest/bulk/``), each pushed by an external biller's API client from a few
concurrent client threads against gunicorn (billing_mgmt.bench.web).

Both functions run on a benchmark database that holds the synthetic customer base
(billruns.bench.customers), with Django's default connection pointed at it (billruns.bench.databases). They
create the biller's API key there, build and serialise every request body before the clock starts (the
client then only sends bytes and reads answers), push, and check what was stored with their own queries:

* every record stored exactly once (counted by source and external-id prefix);
* a resend of batches already sent stores nothing and is answered ``duplicate``;
* the rows are there after the server stopped (durable: counted again once gunicorn has exited).

Figures: records (statements) per second over the wall clock of the push, request times p50/p95 as the
client saw them (queueing included) and as gunicorn logged them (server time), and CPU seconds of the
gunicorn workers, of PostgreSQL's backends and of the client, since wall clock is noisy on a shared machine.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import random
import secrets
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.db import connection
from django.utils import timezone

from accounts.models import Biller, BillerReference
from accounts.services import biller_api_key_create
from billruns.models import Subscription, UsageRecord
from statements.models import Statement, StatementLine

from .web import WebServer, percentile, process_cpu_seconds, web_server

USAGE_PATH = "/api/v1/usage-records/bulk/"
STATEMENT_PATH = "/api/v1/ingest/bulk/"
BILLER_CODE = "bench-northwind"  # one of the base's external billers (billruns.bench.customers)
RESEND_BATCHES = 3
VOICE_SHARE = 2 / 3  # the base's own mix: 20 calls and 10 data sessions a month
BY_ID_SHARE = 0.1  # records that name the subscription by id (the rest by service identifier)
OFFSETS = ("+00:00", "-05:00", "+02:00", "Z")

Progress = Callable[[str], None]


def _api_key(biller: Biller, name: str) -> str:
    _key, raw = biller_api_key_create(biller=biller, name=name)
    return raw


def _month_days() -> list[dt.date]:
    """The days of the current month (business time zone) on which usage is dated: up to the 28th, and
    at least a day in, so an offset never moves an event into the previous month."""
    first = timezone.localdate().replace(day=1)
    return [first + dt.timedelta(days=k) for k in range(1, 28)]


def _backend_cpu_seconds(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to the database (same host: /proc)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [database]
        )
        pids = [row[0] for row in cursor.fetchall()]
    return {pid: process_cpu_seconds(pid) for pid in pids}


def _backend_cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


class _Client:
    """One persistent HTTP connection (gunicorn's sync workers close it after each answer: http.client
    opens it again by itself)."""

    def __init__(self, base_url: str, key: str):
        parts = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
        self.headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.connection.request("POST", path, body=body, headers=self.headers)
        answer = self.connection.getresponse()
        return answer.status, answer.read()

    def close(self) -> None:
        self.connection.close()


def _push(
    base_url: str, key: str, path: str, bodies: list[bytes], clients: int, read: Callable[[int, bytes], int]
) -> dict[str, Any]:
    """Send the bodies from ``clients`` threads (each takes the next unsent body); ``read`` turns an answer
    into the number of records that went wrong in it. Returns wall seconds, client ms and errors."""
    queue = iter(range(len(bodies)))
    lock = threading.Lock()
    timings: list[float] = []
    errors: list[str] = []
    bad_records = [0]

    def work() -> None:
        client = _Client(base_url, key)
        try:
            while True:
                with lock:
                    index = next(queue, None)
                if index is None:
                    return
                started = time.perf_counter()
                try:
                    status, answer = client.post(path, bodies[index])
                except (OSError, http.client.HTTPException) as exc:
                    client.close()
                    with lock:
                        errors.append(f"batch {index}: {exc!r}")
                    continue
                elapsed = (time.perf_counter() - started) * 1000
                wrong = read(status, answer)
                with lock:
                    timings.append(elapsed)
                    bad_records[0] += wrong
                    if status != 200:
                        errors.append(f"batch {index}: HTTP {status} {answer[:300]!r}")
        finally:
            client.close()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "seconds": time.perf_counter() - started,
        "client_ms": timings,
        "errors": errors,
        "bad_records": bad_records[0],
    }


def _ms(values: list[float], share: float) -> float | None:
    found = percentile(values, share)
    return round(found, 1) if found is not None else None


def _timing_figures(pushed: dict[str, Any], server_ms: list[float]) -> dict[str, Any]:
    return {
        "p50_request_ms": _ms(pushed["client_ms"], 0.50),
        "p95_request_ms": _ms(pushed["client_ms"], 0.95),
        "p50_server_ms": _ms(server_ms, 0.50),
        "p95_server_ms": _ms(server_ms, 0.95),
    }


def _measured_push(
    server: WebServer,
    database: str,
    key: str,
    path: str,
    bodies: list[bytes],
    clients: int,
    wrong: Callable[[int, bytes], int],
) -> tuple[dict[str, Any], list[float], dict[str, float]]:
    """``_push`` the bodies to the server; with the server times of its requests and the CPU seconds the
    web workers, their PostgreSQL backends and this client used meanwhile."""
    mark = server.mark()
    workers, backends = server.worker_cpu_seconds(), _backend_cpu_seconds(database)
    client = time.process_time()
    pushed = _push(server.base_url, key, path, bodies, clients, wrong)
    cpu = {
        "web_workers": round(server.worker_cpu_seconds() - workers, 2),
        "postgres": round(_backend_cpu_spent(backends, _backend_cpu_seconds(database)), 2),
        "client": round(time.process_time() - client, 2),
    }
    server_ms = [ms for _, ms in server.server_times(since=mark, path_prefix=path)]
    return pushed, server_ms, cpu


# --- usage records -----------------------------------------------------------------------------------------


def _usage_targets(biller: Biller) -> list[tuple[int, str]]:
    """(subscription id, service identifier) of the subscriptions the biller's client may reach."""
    return list(
        Subscription.objects.filter(account__biller_references__biller=biller)
        .order_by("pk")
        .values_list("pk", "service_identifier")
    )


def _usage_bodies(
    targets: list[tuple[int, str]], records: int, batch: int, prefix: str, seed: int
) -> list[bytes]:
    rng = random.Random(seed)
    days = _month_days()
    bodies = []
    for start in range(0, records, batch):
        rows = []
        for n in range(start, min(start + batch, records)):
            sub_id, identifier = targets[n % len(targets)]
            day = rng.choice(days)
            second = rng.randint(0, 86399)
            when = f"{day.isoformat()}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
            when += rng.choice(OFFSETS)
            if rng.random() < VOICE_SHARE:
                kind, unit, quantity = "voice", "min", f"{rng.uniform(0.5, 40.0):.1f}"
            else:
                kind, unit, quantity = "data", "MB", f"{rng.uniform(5.0, 600.0):.2f}"
            row = {
                "external_id": f"{prefix}{n}",
                "usage_type": kind,
                "quantity": quantity,
                "unit": unit,
                "event_time": when,
            }
            if rng.random() < BY_ID_SHARE:
                row["subscription_id"] = sub_id
            else:
                row["service_identifier"] = identifier
            rows.append(row)
        bodies.append(json.dumps({"records": rows}, separators=(",", ":")).encode())
    return bodies


def _usage_wrong(status: int, answer: bytes) -> int:
    """Records of a first send that were not created (an HTTP error counts in ``errors`` instead)."""
    if status != 200:
        return 0
    counts = json.loads(answer)["counts"]
    return sum(n for outcome, n in counts.items() if outcome != "created")


def _usage_stored(source: str, prefix: str) -> int:
    return UsageRecord.objects.filter(source=source, external_id__startswith=prefix).count()


def measure_usage_ingest(
    *,
    database_url: str,
    log_dir: Path,
    records: int = 200_000,
    batch: int = 1000,
    clients: int = 4,
    progress: Progress,
) -> dict[str, Any]:
    """Push ``records`` usage records in requests of ``batch`` from ``clients`` threads (module docstring)."""
    biller = Biller.objects.get(code=BILLER_CODE)
    key = _api_key(biller, "bench usage ingest")
    targets = _usage_targets(biller)
    if not targets:
        raise RuntimeError(f"No subscriptions at biller {BILLER_CODE}: build the customer base first.")
    prefix = f"bench-{secrets.token_hex(4)}-"
    bodies = _usage_bodies(targets, records, batch, prefix, seed=records)
    database = connection.settings_dict["NAME"]
    before = _usage_stored(biller.code, prefix)
    progress(
        f"usage ingest: {records:,} records to {len(targets):,} subscriptions in {len(bodies)} requests "
        f"of {batch}, {clients} clients"
    )
    with web_server(database_url=database_url, log_dir=log_dir, name="ingest-usage") as server:
        pushed, server_ms, cpu = _measured_push(
            server, database, key, USAGE_PATH, bodies, clients, _usage_wrong
        )
        progress(f"usage ingest: {records / pushed['seconds']:,.0f} records/s; resending {RESEND_BATCHES}")
        stored = _usage_stored(biller.code, prefix)
        resent = [_usage_resend(server.base_url, key, body) for body in bodies[:RESEND_BATCHES]]
        stored_after_resend = _usage_stored(biller.code, prefix)
    connection.close()  # a fresh connection: what a new client sees after the server is gone
    durable = _usage_stored(biller.code, prefix)
    seconds = pushed["seconds"]
    return {
        "records": records,
        "requests": len(bodies),
        "batch": batch,
        "clients": clients,
        "seconds": round(seconds, 2),
        "records_per_second": round(records / seconds, 1),
        **_timing_figures(pushed, server_ms),
        "errors": len(pushed["errors"]) + pushed["bad_records"],
        "error_samples": pushed["errors"][:5],
        "cpu_seconds": cpu,
        "checks": {
            "stored_exactly_once": stored - before == records,
            "resend_deduplicated": stored_after_resend == stored
            and all(ok for ok in resent)
            and bool(resent),
            "durable": durable == stored,
        },
    }


def _usage_resend(base_url: str, key: str, body: bytes) -> bool:
    """Send a batch again: every record must be answered duplicate."""
    client = _Client(base_url, key)
    try:
        status, answer = client.post(USAGE_PATH, body)
    finally:
        client.close()
    if status != 200:
        return False
    counts = json.loads(answer)["counts"]
    return (
        counts["duplicate"] == len(json.loads(body)["records"])
        and sum(counts.values()) == counts["duplicate"]
    )


# --- statements --------------------------------------------------------------------------------------------

# A statement as the base's plans would bill it: monthly fee, calls, data, and tax (docs/biller-records.md).
_FEES = (Decimal("15.00"), Decimal("30.00"), Decimal("55.00"))
_TAX_RATE = Decimal("0.0825")
_CENT = Decimal("0.01")


def _statement(rng: random.Random, account_ref: str, external_id: str, number: str, month: dt.date) -> dict:
    period_end = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    statement_date = period_end + dt.timedelta(days=1)
    identifier = f"+1555{rng.randint(0, 9_999_999):07d}"
    fee = rng.choice(_FEES)
    minutes = Decimal(rng.randint(0, 900))
    voice_price = Decimal("0.05")
    megabytes = Decimal(rng.randint(0, 5000))
    data_price = Decimal("0.005")
    voice, data = (minutes * voice_price).quantize(_CENT), (megabytes * data_price).quantize(_CENT)
    lines = [
        (
            "recurring", "Monthly fee", Decimal(1), "month", fee, fee,
            month.isoformat(), period_end.isoformat(), "fee",
        ),
        ("usage", "Calls", minutes, "min", voice_price, voice, None, None, "voice"),
        ("usage", "Mobile data", megabytes, "MB", data_price, data, None, None, "data"),
    ]  # fmt: skip
    line_dicts, new_charges, taxes = [], Decimal(0), Decimal(0)
    for kind, product, quantity, unit, price, amount, start, end, line_id in lines:
        tax = (amount * _TAX_RATE).quantize(_CENT)
        new_charges += amount
        taxes += tax
        line = {
            "type": kind, "product": product, "service_identifier": identifier, "quantity": str(quantity),
            "unit": unit, "unit_price": str(price), "amount": str(amount), "tax": str(tax),
            "external_id": line_id,
        }  # fmt: skip
        if start:
            line["period_start"], line["period_end"] = start, end
        line_dicts.append(line)
    previous = Decimal(rng.choice((0, 0, 25, 40))).quantize(_CENT)
    payments = previous if rng.random() < 0.8 else Decimal(0).quantize(_CENT)
    return {
        "type": "statement",
        "account": account_ref,
        "external_id": external_id,
        "number": number,
        "statement_date": statement_date.isoformat(),
        "period_start": month.isoformat(),
        "period_end": period_end.isoformat(),
        "due_date": (statement_date + dt.timedelta(days=14)).isoformat(),
        "currency": "USD",
        "previous_balance": str(previous),
        "payments": str(payments),
        "adjustments": "0.00",
        "new_charges": str(new_charges),
        "taxes": str(taxes),
        "total_due": str(previous - payments + new_charges + taxes),
        "lines": line_dicts,
        "usage": [
            {
                "service_identifier": identifier,
                "usage_type": "voice",
                "quantity": str(minutes),
                "unit": "min",
            },
            {
                "service_identifier": identifier,
                "usage_type": "data",
                "quantity": str(megabytes),
                "unit": "MB",
                "included_quantity": "10240",
            },
        ],  # fmt: skip
    }


def _statement_bodies(refs: list[str], statements: int, batch: int, prefix: str, seed: int) -> list[bytes]:
    """Statements for the biller's accounts, one per account and month going back from last month."""
    rng = random.Random(seed)
    this_month = timezone.localdate().replace(day=1)
    bodies = []
    for start in range(0, statements, batch):
        rows = []
        for n in range(start, min(start + batch, statements)):
            ref = refs[n % len(refs)]
            back = n // len(refs) + 1
            month = this_month
            for _ in range(back):
                month = (month - dt.timedelta(days=1)).replace(day=1)
            rows.append(_statement(rng, ref, f"{prefix}{n}", f"{prefix.upper()}{n:07d}", month))
        bodies.append(json.dumps({"records": rows}, separators=(",", ":")).encode())
    return bodies


def _statement_wrong(status: int, answer: bytes) -> int:
    if status != 200:
        return 0
    summary = json.loads(answer)["summary"]
    return summary["duplicate"] + summary["rejected"]


def _statements_stored(biller: Biller, prefix: str) -> tuple[int, int]:
    statements = Statement.objects.filter(biller=biller, external_id__startswith=prefix)
    lines = StatementLine.objects.filter(statement__in=statements)
    return statements.count(), lines.count()


def _statement_resend(base_url: str, key: str, body: bytes) -> bool:
    client = _Client(base_url, key)
    try:
        status, answer = client.post(STATEMENT_PATH, body)
    finally:
        client.close()
    if status != 200:
        return False
    summary = json.loads(answer)["summary"]
    return summary["duplicate"] == len(json.loads(body)["records"])


def measure_statement_ingest(
    *,
    database_url: str,
    log_dir: Path,
    statements: int = 5000,
    batch: int = 100,
    clients: int = 4,
    progress: Progress,
) -> dict[str, Any]:
    """Push ``statements`` statements (three lines, two usage items each) in requests of ``batch`` from
    ``clients`` threads (module docstring)."""
    biller = Biller.objects.get(code=BILLER_CODE)
    key = _api_key(biller, "bench statement ingest")
    refs = list(
        BillerReference.objects.filter(biller=biller)
        .order_by("external_ref")
        .values_list("external_ref", flat=True)
    )
    if not refs:
        raise RuntimeError(f"No accounts at biller {BILLER_CODE}: build the customer base first.")
    prefix = f"bench-{secrets.token_hex(4)}-"
    bodies = _statement_bodies(refs, statements, batch, prefix, seed=statements)
    lines_per_statement = 3
    database = connection.settings_dict["NAME"]
    progress(
        f"statement ingest: {statements:,} statements for {len(refs):,} accounts in {len(bodies)} requests "
        f"of {batch}, {clients} clients"
    )
    with web_server(database_url=database_url, log_dir=log_dir, name="ingest-statements") as server:
        pushed, server_ms, cpu = _measured_push(
            server, database, key, STATEMENT_PATH, bodies, clients, _statement_wrong
        )
        progress(f"statement ingest: {statements / pushed['seconds']:,.0f} statements/s; resending")
        stored, lines = _statements_stored(biller, prefix)
        resent = [_statement_resend(server.base_url, key, body) for body in bodies[:RESEND_BATCHES]]
        stored_after_resend = _statements_stored(biller, prefix)
    connection.close()
    durable = _statements_stored(biller, prefix)
    seconds = pushed["seconds"]
    return {
        "statements": statements,
        "lines": lines,
        "requests": len(bodies),
        "batch": batch,
        "clients": clients,
        "seconds": round(seconds, 2),
        "statements_per_second": round(statements / seconds, 1),
        **_timing_figures(pushed, server_ms),
        "errors": len(pushed["errors"]) + pushed["bad_records"],
        "error_samples": pushed["errors"][:5],
        "cpu_seconds": cpu,
        "checks": {
            "stored_exactly_once": stored == statements and lines == statements * lines_per_statement,
            "resend_deduplicated": stored_after_resend == (stored, lines)
            and all(ok for ok in resent)
            and bool(resent),
            "durable": durable == (stored, lines),
        },
    }
