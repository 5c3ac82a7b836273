"""A fake biller that serves the HTTP pull contract (docs/pull-contract.md), for tests and the demo.

Standard library only (no Django): a ``ThreadingHTTPServer`` over an in-memory list of biller records.

    with FakeBiller(port=0) as fake:             # port 0: any free port; fake.url is its base URL
        fake.add_records([record, ...])          # or POST /admin/records while it runs
        fake.fail_page(2, status=500)            # the next request for page 2 answers 500 (times=1)
        ...pull from fake.url...
        fake.requests                            # what was asked: [{"path", "query", "headers"}, ...]

HTTP API (JSON in and out):

``GET /changes?since=&limit=&cursor=&account=``
    The pull contract. The watermark is the sequence number of the last change seen ("" for none); a
    cursor is ``<page>.<sequence>``. ``limit`` is 1..5000 (default 100). With ``account``, only that
    account's records (its statements, their usage, its transactions and balances). A record added again
    with the same type and key (a statement's ``external_id``, ...) replaces the older one and moves to the
    end of the feed (as a changes feed does). With ``auth_header`` set, a request without exactly that
    ``Authorization`` gets 401.
``GET /admin/records``                -> ``{"records": [...], "watermark": "<head>"}``
``POST /admin/records``               body ``{"records": [...]}`` or a list
    -> ``{"added": n, "watermark": ...}``
``POST /admin/statements``            body ``{"account": "<ref>", "currency": "USD"}`` (currency optional when
    the account is known) -> ``{"record": <the next statement of that account>, "watermark": ...}``: a
    plausible new monthly statement, plus a balance record, as a biller would produce them.
``POST /admin/failures``              body ``{"page": 2, "status": 500, "times": 1}``; ``"bad_json": true``
    instead of a status answers 200 with a broken body; ``{"clear": true}`` removes them.
``POST /admin/config``                body ``{"delay_seconds": 1.5, "auth_header": "Bearer x" | null}``
``POST /admin/reset``                 forget every record, failure and request seen
``GET /health``                       ``{"ok": true}``

The admin endpoints are for tests and the demo: bind to 127.0.0.1 (the default).
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_LIMIT = 5000
DEFAULT_LIMIT = 100
CENT = Decimal("0.01")
TAX_RATES = {"USD": Decimal("0.08"), "EUR": Decimal("0.19"), "GBP": Decimal("0.20")}
DEFAULT_TAX_RATE = Decimal("0.10")

AccountsProvider = Callable[[], Iterable[tuple[str, str]]]  # -> (account reference, currency) pairs


def _key(record: dict[str, Any]) -> tuple[str, ...]:
    """What identifies a record in the feed: a newer record with the same key replaces the older one."""
    kind = str(record.get("type", ""))
    if kind == "usage":
        return (kind, str(record.get("statement", "")))
    if kind == "balance" and not record.get("external_id"):
        return (kind, str(record.get("account", "")), str(record.get("as_of", "")))
    return (kind, str(record.get("external_id", "")))


@dataclass
class _Failure:
    status: int  # 0: a broken JSON body with 200
    times: int


class FakeBiller:
    """The server and its data. Thread-safe: the test (or the admin API) adds records while it serves."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        records: Iterable[dict[str, Any]] = (),
        auth_header: str | None = None,
        accounts_provider: AccountsProvider | None = None,
        seed: int = 8100,
        months: int = 3,
    ):
        self._lock = threading.RLock()
        self._seq = 0
        self._entries: dict[tuple[str, ...], tuple[int, dict[str, Any]]] = {}
        self._failures: dict[int, _Failure] = {}
        self._accounts: dict[str, str] = {}  # reference -> currency, for generated statements
        self._rng = random.Random(seed)
        self._statements_made = 0
        self._months = months
        self.accounts_provider = accounts_provider
        self.auth_header = auth_header
        self.delay_seconds = 0.0
        self.requests: list[dict[str, Any]] = []
        self.add_records(records)
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- running ------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}/"

    def start(self) -> FakeBiller:
        # A short poll interval: stop() (shutdown) returns within it, which keeps test fixtures fast.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-biller", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeBiller:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- data -----------------------------------------------------------------------------------------------
    def add_records(self, records: Iterable[dict[str, Any]]) -> str:
        """Append records to the feed (replacing older ones with the same key). Returns the new head."""
        with self._lock:
            for record in records:
                self._seq += 1
                record = json.loads(json.dumps(record, default=str))  # a copy, JSON-ready
                self._entries.pop(_key(record), None)
                self._entries[_key(record)] = (self._seq, record)
            return str(self._seq)

    @property
    def watermark(self) -> str:
        with self._lock:
            return str(self._seq)

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [record for _seq, record in sorted(self._entries.values(), key=lambda e: e[0])]

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()
            self._failures.clear()
            self._accounts.clear()
            self.requests.clear()

    def fail_page(self, page: int, *, status: int = 500, times: int = 1) -> None:
        with self._lock:
            self._failures[page] = _Failure(status=status, times=times)

    def bad_json_page(self, page: int, *, times: int = 1) -> None:
        self.fail_page(page, status=0, times=times)

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def _take_failure(self, page: int) -> _Failure | None:
        with self._lock:
            failure = self._failures.get(page)
            if failure is None:
                return None
            failure.times -= 1
            if failure.times <= 0:
                del self._failures[page]
            return failure

    def _account_of(self, record: dict[str, Any]) -> str:
        if record.get("type") == "usage":
            entry = self._entries.get(("statement", str(record.get("statement", ""))))
            return str(entry[1].get("account", "")) if entry else ""
        return str(record.get("account", ""))

    def changes(self, *, since: str, limit: int, cursor: str | None, account: str | None) -> dict[str, Any]:
        """One page of the contract (raises ValueError for a bad since or cursor)."""
        after = int(since) if since else 0
        page = 1
        if cursor:
            page_text, _, seq_text = cursor.partition(".")
            page, after = int(page_text), int(seq_text)
        with self._lock:
            entries = sorted(
                (seq, record)
                for seq, record in self._entries.values()
                if seq > after and (not account or self._account_of(record) == account)
            )
            chosen = entries[:limit]
            if len(entries) > limit:
                last = chosen[-1][0]
                return {
                    "records": [r for _s, r in chosen],
                    "next_cursor": f"{page + 1}.{last}",
                    "watermark": str(last),
                }
            return {
                "records": [r for _s, r in chosen],
                "next_cursor": None,
                "watermark": str(max(self._seq, after)),
            }

    # -- generated data -------------------------------------------------------------------------------------
    def ensure_accounts(self, accounts: Iterable[tuple[str, str]]) -> int:
        """Give every account not seen yet a history of monthly statements (paid but the last), the payments
        and its current balance. Returns how many accounts were new."""
        new = 0
        with self._lock:
            for reference, currency in accounts:
                if reference in self._accounts:
                    continue
                self._accounts[reference] = currency
                self.add_records(self._history(reference, currency))
                new += 1
        return new

    def _sync_accounts(self) -> None:
        if self.accounts_provider is not None:
            self.ensure_accounts(self.accounts_provider())

    def new_statement(self, account: str, currency: str | None = None) -> dict[str, Any]:
        """Produce the account's next statement (and its balance), as a biller's bill run would."""
        with self._lock:
            currency = currency or self._accounts.get(account) or "USD"
            self._accounts.setdefault(account, currency)
            last = self._last_statement(account)
            today = dt.date.today()  # noqa: DTZ011 - a date for a fake bill, in the fake biller's own zone
            if last is None:
                start, end = _month_before(today)
                previous = Decimal(0)
            else:
                start = dt.date.fromisoformat(last["period_end"]) + dt.timedelta(days=1)
                end = max(start, today - dt.timedelta(days=1))
                previous = Decimal(last["total_due"])
            statement = self._statement(account, currency, start, end, max(end, today), previous, Decimal(0))
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            balance = self._balance(account, currency, Decimal(statement["total_due"]), now.isoformat())
            self.add_records([statement, balance])
            return statement

    def _last_statement(self, account: str) -> dict[str, Any] | None:
        found = [
            (record["period_end"], seq, record)
            for seq, record in self._entries.values()
            if record.get("type") == "statement" and record.get("account") == account
        ]
        return max(found, key=lambda f: (f[0], f[1]))[2] if found else None

    def _history(self, account: str, currency: str) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        today = dt.date.today()  # noqa: DTZ011 - see new_statement
        start, end = _month_before(today)
        months = []
        for _ in range(self._months):
            months.append((start, end))
            start, end = _month_before(start)
        previous = Decimal(0)
        paid = Decimal(0)
        for i, (start, end) in enumerate(reversed(months)):
            statement_date = end + dt.timedelta(days=1)
            statement = self._statement(account, currency, start, end, statement_date, previous, paid)
            total = Decimal(statement["total_due"])
            if i < len(months) - 1:  # all but the newest are paid, ten days after the bill
                records.append({**statement, "status": "paid"})
                pay_date = statement_date + dt.timedelta(days=10)
                records.append(
                    {
                        "type": "transaction",
                        "account": account,
                        "external_id": f"PAY-{statement['external_id']}",
                        "kind": "payment",
                        "amount": str(total),
                        "currency": currency,
                        "date": pay_date.isoformat(),
                        "description": "Direct debit",
                        "statement": statement["external_id"],
                    }
                )
                paid = total
            else:
                records.append(statement)
                paid = Decimal(0)
            previous = total
        as_of = f"{records[-1]['statement_date']}T12:00:00+00:00"  # noon: the same day in any zone
        records.append(self._balance(account, currency, previous, as_of))
        return records

    def _statement(
        self,
        account: str,
        currency: str,
        start: dt.date,
        end: dt.date,
        statement_date: dt.date,
        previous: Decimal,
        payments: Decimal,
    ) -> dict[str, Any]:
        rng = self._rng
        rate = TAX_RATES.get(currency, DEFAULT_TAX_RATE)
        meter = f"MTR-{zlib.crc32(account.encode()) % 10_000_000:07d}"
        days = (end - start).days + 1
        kwh = Decimal(rng.randint(180, 640))
        unit_price = Decimal(rng.choice(["0.2450", "0.2785", "0.3120"]))
        daily = Decimal("0.45")
        lines = [
            {"type": "recurring", "product": "Standing charge", "service_identifier": meter,
             "description": f"{days} days at {daily} a day", "quantity": str(days), "unit": "day",
             "unit_price": str(daily), "amount": str((daily * days).quantize(CENT, ROUND_HALF_UP))},
            {"type": "usage", "product": "Electricity", "service_identifier": meter,
             "description": "Metered consumption", "quantity": str(kwh), "unit": "kWh",
             "unit_price": str(unit_price), "amount": str((kwh * unit_price).quantize(CENT, ROUND_HALF_UP))},
        ]  # fmt: skip
        if rng.random() < 0.3:
            lines.append(
                {"type": "discount", "product": "Paperless billing discount", "service_identifier": meter,
                 "amount": "-2.00"}
            )  # fmt: skip
        for i, line in enumerate(lines, start=1):
            line["tax"] = str((Decimal(line["amount"]) * rate).quantize(CENT, ROUND_HALF_UP))
            line["period_start"], line["period_end"] = start.isoformat(), end.isoformat()
            line["external_id"] = f"L{i}"
        charges = sum((Decimal(ln["amount"]) for ln in lines), Decimal(0))
        taxes = sum((Decimal(ln["tax"]) for ln in lines), Decimal(0))
        self._statements_made += 1
        external_id = f"{account}-{end:%Y%m}"
        if ("statement", external_id) in self._entries:
            external_id = f"{external_id}-{self._statements_made}"
        return {
            "type": "statement",
            "account": account,
            "external_id": external_id,
            "number": external_id[:40],  # unique as the external id is, across restarts too
            "statement_date": statement_date.isoformat(),
            "period_start": start.isoformat(),
            "period_end": end.isoformat(),
            "due_date": (statement_date + dt.timedelta(days=14)).isoformat(),
            "currency": currency,
            "previous_balance": str(previous),
            "payments": str(payments),
            "adjustments": "0.00",
            "new_charges": str(charges),
            "taxes": str(taxes),
            "total_due": str(previous - payments + charges + taxes),
            "status": "open",
            "lines": lines,
            "usage": [
                {
                    "service_identifier": meter,
                    "usage_type": "electricity",
                    "quantity": str(kwh),
                    "unit": "kWh",
                }
            ],
        }

    def _balance(self, account: str, currency: str, amount: Decimal, as_of: str) -> dict[str, Any]:
        return {
            "type": "balance",
            "account": account,
            "as_of": as_of,
            "amount": str(amount),
            "currency": currency,
            "external_id": f"BAL-{account}-{as_of}"[:100],
        }


def _month_before(day: dt.date) -> tuple[dt.date, dt.date]:
    """The whole calendar month before the one ``day`` is in."""
    end = day.replace(day=1) - dt.timedelta(days=1)
    return end.replace(day=1), end.replace(day=calendar.monthrange(end.year, end.month)[1])


def _handler_for(fake: FakeBiller) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeBiller/1"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # quiet: tests and the dev server's console stay readable

        def _send(self, status: int, payload: Any = None, *, raw: bytes | None = None) -> None:
            body = raw if raw is not None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self._send(status, {"error": message})

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"null") if length else None

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            if parts.path == "/health":
                return self._send(200, {"ok": True})
            if parts.path == "/admin/records":
                return self._send(200, {"records": fake.records(), "watermark": fake.watermark})
            if parts.path.rstrip("/") != "/changes":
                return self._error(404, f"No such path: {parts.path}")
            with fake._lock:
                fake.requests.append(
                    {"path": parts.path, "query": query, "headers": dict(self.headers.items())}
                )
            if fake.auth_header is not None and self.headers.get("Authorization") != fake.auth_header:
                return self._error(401, "Missing or wrong Authorization header.")
            try:
                limit = int(query.get("limit") or DEFAULT_LIMIT)
                if not 1 <= limit <= MAX_LIMIT:
                    raise ValueError(f"limit must be 1..{MAX_LIMIT}")
                cursor = query.get("cursor") or None
                page_number = int(cursor.partition(".")[0]) if cursor else 1
            except ValueError as exc:
                return self._error(400, f"Bad parameters: {exc}")
            if fake.delay_seconds:
                time.sleep(fake.delay_seconds)
            failure = fake._take_failure(page_number)
            if failure is not None:
                if failure.status == 0:
                    return self._send(200, raw=b'{"records": [{"type": "statement", ')
                return self._error(failure.status, f"Injected failure on page {page_number}.")
            fake._sync_accounts()
            try:
                page = fake.changes(
                    since=query.get("since", ""),
                    limit=limit,
                    cursor=cursor,
                    account=query.get("account") or None,
                )
            except ValueError as exc:
                return self._error(400, f"Bad since or cursor: {exc}")
            return self._send(200, page)

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            path = urlsplit(self.path).path.rstrip("/")
            try:
                body = self._body()
            except ValueError as exc:
                return self._error(400, f"The body is not JSON: {exc}")
            if path == "/admin/records":
                records = body.get("records") if isinstance(body, dict) else body
                if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                    return self._error(400, 'Send {"records": [...]} or a list of records.')
                watermark = fake.add_records(records)
                return self._send(200, {"added": len(records), "watermark": watermark})
            if path == "/admin/statements":
                if not isinstance(body, dict) or not body.get("account"):
                    return self._error(400, 'Send {"account": "<reference>", "currency": "USD"}.')
                fake._sync_accounts()
                record = fake.new_statement(str(body["account"]), body.get("currency"))
                return self._send(200, {"record": record, "watermark": fake.watermark})
            if path == "/admin/failures":
                if isinstance(body, dict) and body.get("clear"):
                    fake.clear_failures()
                    return self._send(200, {"cleared": True})
                if not isinstance(body, dict) or not isinstance(body.get("page"), int):
                    return self._error(400, 'Send {"page": 2, "status": 500, "times": 1} or {"clear": true}.')
                status = 0 if body.get("bad_json") else int(body.get("status", 500))
                fake.fail_page(body["page"], status=status, times=int(body.get("times", 1)))
                return self._send(200, {"page": body["page"], "status": status})
            if path == "/admin/config":
                if not isinstance(body, dict):
                    return self._error(400, "Send a JSON object.")
                if "delay_seconds" in body:
                    fake.delay_seconds = float(body["delay_seconds"] or 0)
                if "auth_header" in body:
                    fake.auth_header = body["auth_header"]
                return self._send(200, {"delay_seconds": fake.delay_seconds, "auth_header": fake.auth_header})
            if path == "/admin/reset":
                fake.reset()
                return self._send(200, {"reset": True})
            return self._error(HTTPStatus.NOT_FOUND, f"No such path: {path}")

    return Handler
