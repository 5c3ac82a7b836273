"""Scan the database (every text column of every table) and log files for anything shaped like a full card
number (13 to 19 digits passing the Luhn check). This product never stores one; the scan proves it.

    manage.py scan_card_data [--log FILE ...] [--limit 20]

Exits 1 and lists where (table, column, row id; or file and line) when it finds one; exits 0 otherwise.
"""

from __future__ import annotations

from pathlib import Path

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, models

from payments.services import looks_like_card_number

TEXT_FIELDS = (models.CharField, models.TextField, models.JSONField)


def scan_database(limit: int) -> list[str]:
    found: list[str] = []
    for model in apps.get_models():
        columns = [f for f in model._meta.concrete_fields if isinstance(f, TEXT_FIELDS) and not f.choices]
        if not columns or model._meta.proxy:
            continue
        table = connection.ops.quote_name(model._meta.db_table)
        pk = connection.ops.quote_name(model._meta.pk.column)
        names = ", ".join(connection.ops.quote_name(f.column) for f in columns)
        with connection.cursor() as cursor:
            # Only rows with a run of 13+ digits can hold a card number: let the database skip the rest.
            digit_runs = " OR ".join(
                f"CAST({connection.ops.quote_name(f.column)} AS TEXT) ~ '[0-9][0-9 -]{{11,}}[0-9]'"
                if connection.vendor == "postgresql"
                else f"CAST({connection.ops.quote_name(f.column)} AS TEXT) GLOB '*[0-9]*'"
                for f in columns
            )
            cursor.execute(f"SELECT {pk}, {names} FROM {table} WHERE {digit_runs}")  # noqa: S608
            for row in cursor.fetchall():
                for field, value in zip(columns, row[1:], strict=True):
                    if value is not None and looks_like_card_number(str(value)):
                        found.append(f"{model._meta.db_table}.{field.column} row {row[0]}")
                        if len(found) >= limit:
                            return found
    return found


def scan_logs(paths: list[str], limit: int) -> list[str]:
    found: list[str] = []
    for path in paths:
        file = Path(path)
        if not file.exists():
            raise CommandError(f"No such log file: {path}")
        with file.open(errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                if looks_like_card_number(line):
                    found.append(f"{path}:{number}")
                    if len(found) >= limit:
                        return found
    return found


class Command(BaseCommand):
    help = "Look for full card numbers in the database and in log files (there must be none)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--log", action="append", default=[], help="A log file to scan (repeatable).")
        parser.add_argument("--limit", type=int, default=20, help="Stop after this many findings.")

    def handle(self, *args, log: list[str], limit: int, **options) -> None:
        found = scan_database(limit) + scan_logs(log, limit)
        if found:
            for place in found[:limit]:
                self.stderr.write(f"Card number shaped data in {place}")
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS("No card numbers in the database or the logs scanned."))
