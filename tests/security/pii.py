"""The personal-data scans the whole suite runs (tests/conftest.py) and tests/security/test_personal_data.py
proves able to fail.

- Database: every text column (text, varchar, char, json, jsonb) of every table of the test database, for a
  full card number (13 to 19 digits passing the Luhn check: payments.services.looks_like_card_number) or a
  CVV written beside its name ("cvv": "123", cvc=123, security code 1234). Columns named like a CVV are a
  finding by themselves. After each test the tables that test wrote are scanned (inside its transaction,
  before the rollback hides them); at the end of the run, the whole database.
- Logs: every record of the run, for the same, and for secrets: the test users' passwords, the raw API keys
  made during the run, session ids handed out during the run, and Authorization headers.
"""

from __future__ import annotations

import os
import re

from django.db import connection, transaction

from payments.services import looks_like_card_number

TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb")
CVV_NAME = r"(?:cvv2?|cvc2?|csc|cid|security[ _-]?code|card[ _-]?code|card[ _-]?verification)"
CVV_VALUE = re.compile(rf"""\b{CVV_NAME}\b["']?\s*(?:[:=]|is)\s*["']?\d{{3,4}}\b""", re.I)
CVV_COLUMN = re.compile(rf"^{CVV_NAME}$|_{CVV_NAME}$|^{CVV_NAME}_", re.I)
# What the database may hold a card number or a CVV in: a run of 13+ digits, or a CVV's name.
SQL_FILTER = (
    r"CAST({col} AS TEXT) ~ '[0-9][0-9 -]{{11,}}[0-9]' "
    r"OR CAST({col} AS TEXT) ~* '(cvv|cvc|csc|cid|security.?code|card.?code|verification)'"
)

# Secrets that must never reach a log: filled during the run (tests/conftest.py).
KNOWN_PASSWORDS = {"pass-Word-123", "wrong-password"}  # tests.factories' and the lockout tests'
API_KEY_SECRETS: set[str] = set()
SESSION_KEYS: set[str] = set()
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,}")
AUTHORIZATION = re.compile(
    r"\bAuthorization\b\s*[:=]|HTTP_AUTHORIZATION|\bApi-Key\s+\w|\bBearer\s+[\w.-]{8,}", re.I
)


# Digests (hex SHA-256 content and key hashes, session hashes), UUIDs (an export's id: about 1 in 5,000 random
# ones holds 13+ dash-separated digits that pass the Luhn check) and Django password hashes hold long digit
# runs by chance; a card number is never part of one.
_DIGEST = re.compile(
    r"\b[0-9a-fA-F]{24,}\b|\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
    r"|\b[a-z0-9_]+\$[0-9]*\$?[A-Za-z0-9./+=_$-]{8,}"
)


# The test card number (4111 1111 1111 1111, with or without spaces or dashes), echoed whole or in part. A
# bare "4111" is no evidence: page URLs carry ids, and id 4111 comes up in a full run.
_TEST_CARD_ECHO = re.compile(r"4111[ -]?1111")


def echoes_test_card(text: str) -> bool:
    """True when ``text`` repeats the test card number the tests send (at least its first eight digits)."""
    return bool(_TEST_CARD_ECHO.search(text))


def card_or_cvv(text: str) -> str:
    text = _DIGEST.sub(" ", text)
    if looks_like_card_number(text):
        return "a card number"
    if CVV_VALUE.search(text):
        return "a CVV"
    return ""


def log_problem(text: str) -> str:
    """What a log line must not carry, or ''."""
    found = card_or_cvv(text)
    if found:
        return found
    if any(password in text for password in KNOWN_PASSWORDS):
        return "a password"
    if AUTHORIZATION.search(text):
        return "an Authorization header"
    for token in _TOKEN.findall(text):
        if token in API_KEY_SECRETS:
            return "an API key"
        if token in SESSION_KEYS:
            return "a session id"
    return ""


_columns: dict[str, list[str]] | None = None


def text_columns(refresh: bool = False) -> dict[str, list[str]]:
    """Every table of the current schema with its text columns."""
    global _columns
    if _columns is None or refresh:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT table_name, column_name FROM information_schema.columns c "
                "WHERE table_schema = current_schema() AND data_type = ANY(%s) AND EXISTS ("
                " SELECT 1 FROM information_schema.tables t WHERE t.table_schema = c.table_schema"
                " AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE') "
                "ORDER BY table_name, ordinal_position",
                [list(TEXT_TYPES)],
            )
            columns: dict[str, list[str]] = {}
            for table, column in cursor.fetchall():
                columns.setdefault(table, []).append(column)
        _columns = columns
    return _columns


def cvv_columns() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema()"
        )
        return [f"{t}.{c}: a column named like a CVV" for t, c in cursor.fetchall() if CVV_COLUMN.search(c)]


def scan_tables(tables: list[str] | None = None) -> list[str]:
    """Findings ('table.column (row ctid): a card number') in these tables (default: every table)."""
    columns = text_columns()
    chosen = [t for t in (tables if tables is not None else columns) if t in columns]
    if not chosen:
        return []
    qn = connection.ops.quote_name
    parts, params = [], []
    for table in chosen:
        for column in columns[table]:
            parts.append(
                f"SELECT %s, %s, ctid::text, CAST({qn(column)} AS TEXT) FROM {qn(table)} "  # noqa: S608
                f"WHERE {SQL_FILTER.format(col=qn(column))}"
            )
            params += [table, column]
    found = []
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(parts), params)
        for table, column, ctid, value in cursor.fetchall():
            what = card_or_cvv(value or "")
            if what:
                found.append(f"{table}.{column} (row {ctid}): {what}")
                if os.environ.get("PII_SHOW_VALUES"):  # for a developer chasing a finding, never in CI
                    print(f"PII finding {table}.{column}: {value[:300]}")
    return found


def tables_written_in_this_transaction() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_stat_xact_user_tables WHERE schemaname = current_schema() "
            "AND n_tup_ins + n_tup_upd > 0"
        )
        return [row[0] for row in cursor.fetchall()]


def scan_after_test() -> list[str]:
    """The rows the test just wrote: in its transaction (the usual test), only the tables it wrote; after a
    transactional test (its writes are committed, and flushed next), every table. Inside a savepoint, so that
    a failing scan never spoils the test's transaction."""
    if connection.in_atomic_block:
        with transaction.atomic():
            return scan_tables(tables_written_in_this_transaction())
    return scan_tables()
