"""CSR pages under load: the account page and the statement page of an account with years of history.

``build_history_account`` adds one account to the bench database: five years of monthly statements from an
external biller (twenty lines each, usage summaries), the customer's monthly payments entered in this product,
adjustments, cases and disputes, a payment method, a biller balance snapshot; and a CSR to sign in. It goes
through the product's services (the same rows a CSR and a biller would make), so it takes seconds, not
minutes.

The account has no subscriptions: the engine's billing run does not select it (``run_bill_units``), and the
run's checks (``billruns.bench.measure.check_run``) count only the bill units that hold subscriptions. Its
statements come from an external biller, never from the engine, so the engine's one-bill-per-unit check
does not see them; it has no usage records (external usage arrives as statement usage summaries). So the
billing benchmark over a base that holds it still passes.

``measure_pages`` serves the app with gunicorn (``billing_mgmt.bench.web``), signs the CSR in with a
session row, and drives each page with ``wrk`` (20 connections, 2 threads): client latency percentiles from
wrk, server time percentiles from gunicorn's access log, and the queries of one request counted in-process
with Django's test client.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from billing_mgmt import roles

from .web import percentile, web_server

HISTORY_BILLER = ("bench-history", "Northwind History Mobile")
LINES_PER_STATEMENT = 20
SERVICES = ("+1 555 0100", "+1 555 0101", "+1 555 0102")
WRK = "/usr/bin/wrk"
PASSWORD = "bench-Pass-4271"

# wrk: count non-2xx and socket errors, and print the latency percentiles (wrk's own --latency prints p50,
# p75, p90, p99; p95 needs the script) as one JSON line that the caller parses.
WRK_SCRIPT = """
wrk.method = "GET"
wrk.headers["Cookie"] = os.getenv("BENCH_COOKIE")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "non_2xx": %d, "connect": %d, ' ..
    '"read": %d, "write": %d, "timeout": %d, "p50": %d, "p90": %d, "p95": %d, "p99": %d, "max": %d, ' ..
    '"mean": %f}\\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def _months_back(today: dt.date, count: int) -> list[dt.date]:
    """The first day of the ``count`` months up to and including today's month, oldest first."""
    index = today.year * 12 + today.month - 1
    return [dt.date(i // 12, i % 12 + 1, 1) for i in range(index - count + 1, index + 1)]


def _line(n: int, kind: str, product: str, service: str, quantity: Any, unit: str, price: str, ext: str):
    amount = (Decimal(str(quantity)) * Decimal(price)).quantize(Decimal("0.01"))
    return {
        "type": kind, "product": product, "service_identifier": service, "description": f"{product} {n}",
        "quantity": str(quantity), "unit": unit, "unit_price": price, "amount": str(amount),
        "tax": str((amount * Decimal("0.08")).quantize(Decimal("0.01"))), "external_id": ext,
    }  # fmt: skip


def _statement_record(
    rng: random.Random, ref: str, prefix: str, i: int, month: dt.date, previous: Decimal, paid: Decimal,
    last: bool,
) -> dict:  # fmt: skip
    period_end = month - dt.timedelta(days=1)
    lines = []
    for n in range(LINES_PER_STATEMENT):
        service = SERVICES[n % len(SERVICES)]
        ext = f"{prefix}-{i}-{n + 1}"
        if n < 3:
            lines.append(_line(n, "recurring", "Unlimited plan", service, 1, "month", "35.00", ext))
        elif n == 3:
            lines.append(_line(n, "discount", "Loyalty discount", service, 1, "month", "-5.00", ext))
        elif n == 4 and i % 12 == 0:
            lines.append(_line(n, "one_time", "Device upgrade fee", service, 1, "each", "49.00", ext))
        elif n % 2:
            lines.append(
                _line(n, "usage", "International calls", service, rng.randint(5, 240), "min", "0.10", ext)
            )
        else:
            lines.append(_line(n, "usage", "Roaming data", service, rng.randint(10, 900), "MB", "0.02", ext))
    charges = sum((Decimal(x["amount"]) for x in lines), Decimal(0))
    taxes = sum((Decimal(x["tax"]) for x in lines), Decimal(0))
    usage = [
        {"service_identifier": service, "usage_type": kind, "quantity": str(rng.randint(low, high)),
         "unit": unit}
        for service in SERVICES
        for kind, unit, low, high in (("voice", "min", 50, 900), ("data", "MB", 500, 20000))
    ]  # fmt: skip
    return {
        "type": "statement", "account": ref, "external_id": f"{prefix}-{i}",
        "number": f"{prefix.upper()}-{month:%Y%m}", "statement_date": month.isoformat(),
        "period_start": period_end.replace(day=1).isoformat(), "period_end": period_end.isoformat(),
        "due_date": (month + dt.timedelta(days=21)).isoformat(), "currency": "USD",
        "previous_balance": str(previous), "payments": str(paid), "adjustments": "0.00",
        "new_charges": str(charges), "taxes": str(taxes), "total_due": str(previous - paid + charges + taxes),
        "lines": lines, "usage": usage, "status": "open" if last else "paid",
    }  # fmt: skip


def _user(username: str, role: str):
    user, created = get_user_model().objects.get_or_create(
        username=username, defaults={"email": f"{username}@bench.invalid"}
    )
    if created:
        user.set_password(PASSWORD)
        user.save(update_fields=["password"])
    user.groups.add(Group.objects.get(name=role))
    return user


def build_history_account(*, seed: int = 1, years: int = 5) -> dict:
    """Add one account with ``years`` years of monthly history and a CSR to the default database; returns
    its account number, its latest statement's id, the CSR's user id and what was made. Idempotent per
    seed: a second call returns the account the first one made."""
    from accounts.models import Account, Biller
    from accounts.services import account_create
    from disputes.catalog import ensure_default_processes
    from disputes.models import ServiceProcess
    from disputes.services import case_comment, case_open, dispute_open
    from payments.models import AdjustmentReason, Payment
    from payments.services import adjustment_approve, adjustment_request, payment_method_add, payment_post
    from statements.models import FinancialTransaction, Statement
    from statements.services import balance_snapshot_record, ingest_records

    started = time.perf_counter()
    ref = f"HIST-{seed:04d}"
    prefix = f"hist{seed}"
    csr = _user(f"bench-csr-{seed}", roles.CSR)
    existing = Account.objects.filter(biller_references__external_ref=ref).first()
    if existing is not None:
        latest = existing.statements.order_by("-statement_date", "-id").first()
        return _history(existing, latest, csr, started)
    rng = random.Random(seed)
    supervisor = _user(f"bench-supervisor-{seed}", roles.SUPERVISOR)
    biller = Biller.objects.get_or_create(
        code=HISTORY_BILLER[0], defaults={"name": HISTORY_BILLER[1], "kind": Biller.Kind.EXTERNAL}
    )[0]
    today = timezone.localdate()
    months = _months_back(today, years * 12)
    with transaction.atomic():
        account = account_create(
            name=f"Harriet Long-History {seed}",
            billing_profile={
                "currency": "USD", "bill_cycle_day": 1, "address_line1": "12 Archive Lane", "city": "Austin",
                "region": "TX", "postal_code": "73301", "country": "US",
            },
            contacts=[{"name": "Harriet Long", "role": "primary", "phone": "+1 555 0100"}],
            biller=biller, external_ref=ref, actor=csr,
        )  # fmt: skip
        method = payment_method_add(
            account=account, kind="card", token=f"tok_hist_{seed}", brand="Visa", last4="4242",
            expiry_month=12, expiry_year=today.year + 3, holder="Harriet Long", make_default=True, actor=csr,
        )  # fmt: skip
        records, previous, paid = [], Decimal(0), Decimal(0)
        for i, month in enumerate(months):
            record = _statement_record(rng, ref, prefix, i, month, previous, paid, i == len(months) - 1)
            records.append(record)
            previous = Decimal(record["total_due"])
            paid = previous  # paid in full before the next statement
        results = ingest_records(biller=biller, records=records)
        rejected = [r.as_dict() for r in results if r.status != "accepted"]
        if rejected:
            raise RuntimeError(f"History statements rejected: {rejected[:2]}")
        statements = list(Statement.objects.filter(account=account).order_by("statement_date"))
        # The customer paid each statement but the last (by card, entered by a CSR or autopay).
        for i, statement in enumerate(statements[:-1]):
            payment_post(
                account=account, amount=statement.total_due - statement.previous_balance + statement.payments,
                currency="USD", idempotency_key=f"{prefix}-pay-{i}",
                payment_date=statement.due_date - dt.timedelta(days=3), method=method,
                reference=f"Card payment {statement.number}", statement=statement,
                channel=Payment.Channel.AUTOPAY if i % 3 else Payment.Channel.CSR, actor=csr,
            )  # fmt: skip
        reason = AdjustmentReason.objects.filter(active=True).exclude(code="dispute").order_by("pk").first()
        if reason is None:
            reason = AdjustmentReason.objects.create(code="goodwill", name="Goodwill credit")
        for k, statement in enumerate(statements[6::6]):
            adjustment, _ = adjustment_request(
                account=account, direction="credit", amount=Decimal("5.00") + k, currency="USD",
                reason=reason, idempotency_key=f"{prefix}-adj-{k}", note=f"Goodwill for {statement.number}",
                statement=statement, actor=csr,
            )  # fmt: skip
            if adjustment.status == adjustment.Status.PENDING and k % 3:
                adjustment_approve(adjustment=adjustment, actor=supervisor, comment="Agreed")
        ensure_default_processes(ServiceProcess, AdjustmentReason)  # migrated; a test flush drops them
        inquiry = ServiceProcess.objects.get(code="billing-inquiry")
        for k, statement in enumerate(statements[-12::4]):
            case, _ = case_open(
                account=account, process=inquiry, subject=f"Question about {statement.number}",
                description="Customer asks about roaming charges.", channel="csr", actor=csr,
                idempotency_key=f"{prefix}-case-{k}",
            )  # fmt: skip
            case_comment(case=case, actor=csr, text="Explained the roaming charges.")
        for k, statement in enumerate(statements[-3:]):
            line = statement.lines.filter(line_type="usage").order_by("position").first()
            dispute_open(
                statement=statement, line=line, amount=line.amount,
                reason="Customer says these were not made.", channel="csr", actor=csr,
                idempotency_key=f"{prefix}-dispute-{k}",
            )  # fmt: skip
        # The biller agrees with the ledger's rows of that biller (the Account balances section: Reconciled).
        biller_rows = FinancialTransaction.objects.filter(account=account, biller=biller)
        balance_snapshot_record(
            biller=biller, account=account, as_of=timezone.now(),
            amount=biller_rows.aggregate(total=Sum("amount"))["total"] or Decimal(0), currency="USD",
            external_id=f"{prefix}-balance",
        )  # fmt: skip
    return _history(account, statements[-1], csr, started)


def _history(account, latest, csr, started: float) -> dict:
    from disputes.models import Case
    from payments.models import Adjustment, Payment
    from statements.models import FinancialTransaction, Statement, StatementLine, UsageSummary

    return {
        "account_number": account.number,
        "account_id": account.pk,
        "statement_id": latest.pk if latest else None,
        "user_id": csr.pk,
        "username": csr.username,
        "statements": Statement.objects.filter(account=account).count(),
        "statement_lines": StatementLine.objects.filter(statement__account=account).count(),
        "usage_summaries": UsageSummary.objects.filter(statement__account=account).count(),
        "ledger_rows": FinancialTransaction.objects.filter(account=account).count(),
        "payments": Payment.objects.filter(account=account).count(),
        "adjustments": Adjustment.objects.filter(account=account).count(),
        "cases": Case.objects.filter(account=account).count(),
        "seconds": round(time.perf_counter() - started, 2),
    }


# --- measuring -------------------------------------------------------------------------------------------

Progress = Callable[[str], None]


def page_paths(history: dict) -> dict[str, list[str]]:
    """What one visit of each measured page requests: the account page's first response; its lazy parts
    (htmx loads each right after the page; wrk requests them in turn); the latest statement's page."""
    from billing_mgmt.sections import lazy_parts

    user = get_user_model().objects.get(pk=history["user_id"])
    number = history["account_number"]
    return {
        "account": [reverse("account-detail", args=[number])],
        "account-parts": [reverse("account-part", args=[number, part]) for part in lazy_parts(user=user)],
        "statement": [reverse("statement-detail", args=[number, history["statement_id"]])],
    }


def queries_per_request(history: dict, paths: list[str], *, htmx: bool = False) -> list[int]:
    """The SQL queries of one request to each path, counted in-process (Django's test client, signed in as
    the history's CSR, against the default database), after one request that warms the session."""
    from django.conf import settings
    from django.db import connection
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext

    user = get_user_model().objects.get(pk=history["user_id"])
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    counts = []
    with override_settings(ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "testserver"], SECURE_SSL_REDIRECT=False):
        client = Client()
        client.force_login(user)
        client.get(reverse("account-detail", args=[history["account_number"]]))  # the recent accounts
        for path in paths:
            with CaptureQueriesContext(connection) as captured:
                response = client.get(path, **headers)
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code} in-process")
            counts.append(len(captured.captured_queries))
    return counts


def session_cookie(history: dict, *, secret_key: str, database_url: str) -> str:
    """Sign the CSR in: a session row in the benchmark database, signed with the web server's secret key (as
    the login form would make it); returns the Cookie header value for the load tool."""
    from importlib import import_module
    from urllib.parse import urlsplit

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.db import connection
    from django.test import override_settings

    if connection.settings_dict["NAME"] != urlsplit(database_url).path.lstrip("/"):
        raise RuntimeError("Point Django's default connection at the pages' database (databases.pointed_at).")
    user = get_user_model().objects.get(pk=history["user_id"])
    with override_settings(SECRET_KEY=secret_key):
        store = import_module(settings.SESSION_ENGINE).SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.save()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


def _check_signed_in(base_url: str, path: str, cookie: str) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(base_url + path, headers={"Cookie": cookie})

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=60) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    if status != 200:
        raise RuntimeError(f"{path} answered {status} to the signed-in CSR (expected 200).")


def _lua(paths: list[str], htmx: bool) -> str:
    """wrk's script: the paths in turn (one request each), the session cookie, the percentiles at the end."""
    listed = ", ".join(json.dumps(path) for path in paths)
    header = 'wrk.headers["HX-Request"] = "true"\n' if htmx else ""
    return (
        f"local paths = {{{listed}}}\nlocal n = 0\n{header}"
        "request = function()\n  n = n % #paths + 1\n  return wrk.format(nil, paths[n])\nend\n" + WRK_SCRIPT
    )


def _run_wrk(
    base_url: str, paths: list[str], *, cookie: str, htmx: bool, clients: int, threads: int, seconds: float
) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua(paths, htmx))
    try:
        done = subprocess.run(
            [WRK, f"-t{threads}", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
             "--latency", "-s", script.name, base_url + paths[0]],
            env={**os.environ, "BENCH_COOKIE": cookie}, capture_output=True, text=True, timeout=seconds + 60,
        )  # fmt: skip
    finally:
        os.unlink(script.name)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]} {done.stdout[-2000:]}")
    return json.loads(line.removeprefix("BENCH_JSON "))


def _server_times(server, since: int, paths: set[str]) -> list[tuple[int, float]]:
    """(status, server ms) of the requests to exactly these paths in gunicorn's access log after ``since``."""
    found = []
    with server.access_log.open("rb") as log:
        log.seek(since)
        for line in log.read().decode(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[1] in paths:
                try:
                    found.append((int(parts[2]), int(parts[3]) / 1000))
                except ValueError:
                    continue
    return found


def _collect_static(log_dir: Path, database_url: str) -> str:
    """The pages render ``{% static %}`` with the production storage (a manifest of hashed names): collect
    the static files once into a directory of the benchmark's own (``VAR_DIR`` of the web server), never into
    the project's var/."""
    from django.conf import settings

    var_dir = (log_dir / "pages-var").resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=600,
        env={**os.environ, "VAR_DIR": str(var_dir), "DEBUG": "false", "DATABASE_URL": database_url,
             "SECRET_KEY": "collectstatic-only"},
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"collectstatic failed: {done.stderr[-2000:]}")
    return str(var_dir)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def measure_pages(
    *,
    database_url: str,
    log_dir: Path,
    history: dict,
    clients: int = 20,
    seconds: float = 15,
    progress: Progress | None = None,
    threads: int = 2,
    workers: int = 2,
) -> list[dict]:
    """Serve the app with gunicorn on ``database_url`` (the database Django's default connection points at,
    holding ``history``), sign the CSR in, and drive each page with wrk (``clients`` connections, ``threads``
    threads, ``seconds`` each, after a short warm-up). One measurement per page: the account page's first
    response, its lazy parts (in turn) and the statement page. Reads only (a session row is all it
    writes), so it may run while a billing run goes on. Returns one dict per page."""
    progress = progress or (lambda line: None)
    if not os.path.exists(WRK):
        raise RuntimeError(f"{WRK} is missing: install Debian's wrk package.")
    paths = page_paths(history)
    queries = {
        "account": queries_per_request(history, paths["account"]),
        "account-parts": queries_per_request(history, paths["account-parts"], htmx=True),
        "statement": queries_per_request(history, paths["statement"]),
    }
    results = []
    var_dir = _collect_static(log_dir, database_url)
    secret_key = secrets.token_urlsafe(40)
    cookie = session_cookie(history, secret_key=secret_key, database_url=database_url)
    environment = {"VAR_DIR": var_dir, "SECRET_KEY": secret_key}
    with web_server(
        database_url=database_url, log_dir=log_dir, workers=workers, name="pages", env=environment
    ) as server:
        _check_signed_in(server.base_url, paths["account"][0], cookie)
        for page, page_urls in paths.items():
            htmx = page == "account-parts"
            _run_wrk(server.base_url, page_urls, cookie=cookie, htmx=htmx, clients=clients, threads=threads,
                     seconds=1)  # warm-up: templates compiled, connections open  # fmt: skip
            mark = server.mark()
            cpu_before = server.worker_cpu_seconds()
            figures = _run_wrk(
                server.base_url, page_urls, cookie=cookie, htmx=htmx, clients=clients, threads=threads,
                seconds=seconds,
            )  # fmt: skip
            cpu = server.worker_cpu_seconds() - cpu_before
            times = _server_times(server, mark, set(page_urls))
            server_ms = [ms for _status, ms in times]
            duration = figures["duration_us"] / 1e6
            errors = figures["connect"] + figures["read"] + figures["write"] + figures["timeout"]
            result = {
                "page": page,
                "paths": page_urls,
                "clients": clients,
                "threads": threads,
                "gunicorn_workers": workers,
                "seconds": round(duration, 2),
                "requests": figures["requests"],
                "requests_per_second": round(figures["requests"] / duration, 1) if duration else None,
                "errors": errors,
                "non_2xx": figures["non_2xx"],
                "logged_non_2xx": sum(1 for status, _ms in times if not 200 <= status < 300),
                "p50_ms": _ms(figures["p50"] / 1000),
                "p90_ms": _ms(figures["p90"] / 1000),
                "p95_ms": _ms(figures["p95"] / 1000),
                "p99_ms": _ms(figures["p99"] / 1000),
                "max_ms": _ms(figures["max"] / 1000),
                "p50_server_ms": _ms(percentile(server_ms, 0.50)),
                "p95_server_ms": _ms(percentile(server_ms, 0.95)),
                "p99_server_ms": _ms(percentile(server_ms, 0.99)),
                "server_requests": len(server_ms),
                "queries_per_request": max(queries[page]),
                "queries": queries[page],
                "web_cpu_seconds": round(cpu, 2),
                "web_cpu_ms_per_request": (
                    round(cpu * 1000 / figures["requests"], 2) if figures["requests"] else None
                ),
            }  # fmt: skip
            results.append(result)
            progress(
                f"  {page:<14} {result['requests_per_second']:>7} req/s  p50/p95/p99 "
                f"{result['p50_ms']}/{result['p95_ms']}/{result['p99_ms']} ms (server "
                f"{result['p50_server_ms']}/{result['p95_server_ms']}/{result['p99_server_ms']} ms), "
                f"{result['queries_per_request']} queries, {errors + figures['non_2xx']} errors"
            )
    return results
