"""Import usage records from a CSV file (a mediation system's export, a meter read file).

    manage.py import_usage usage-2026-06.csv --source mediation

Columns (a header row, in any order): external_id, usage_type, quantity, unit, event_time,
service_identifier, and optionally subscription_id. The file is read in chunks, so its size does not matter;
each chunk is stored in one transaction by billruns.services.usage (the same rules as the API). Safe to run
again: records already received are duplicates, so a re-run creates nothing new, and a file fixed after an
error creates only the rows that were invalid.

Exits non-zero when the file is missing or unreadable, its header is wrong, or any row is invalid (the other
rows are stored; fix the listed rows and run the file again).
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from billruns.services.usage import (
    CONFLICT,
    INVALID,
    MAX_SOURCE_LENGTH,
    OUTCOMES,
    REJECTED,
    usage_records_ingest,
)

REQUIRED_COLUMNS = ("external_id", "usage_type", "quantity", "unit", "event_time", "service_identifier")
OPTIONAL_COLUMNS = ("subscription_id",)
DEFAULT_CHUNK = 5000
SHOWN_ERRORS = 20


class Command(BaseCommand):
    help = "Import usage records from a CSV file (docs/usage.md). Safe to run again on the same file."

    def add_arguments(self, parser):
        parser.add_argument("file", help="The CSV file (UTF-8, comma-separated, with a header row).")
        parser.add_argument(
            "--source",
            required=True,
            help="Who the records come from (e.g. 'mediation'): with each external_id, what makes a record "
            "unique. Use the same source when running a file again.",
        )
        parser.add_argument(
            "--chunk-size", type=int, default=DEFAULT_CHUNK, help=f"Rows per transaction ({DEFAULT_CHUNK})."
        )

    def handle(self, *args, file: str, source: str, chunk_size: int, **options):
        source = source.strip()
        if not source or len(source) > MAX_SOURCE_LENGTH:
            raise CommandError(f"--source must be 1 to {MAX_SOURCE_LENGTH} characters.")
        if chunk_size < 1:
            raise CommandError("--chunk-size must be at least 1.")
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"No such file: {file}")
        counts: Counter[str] = Counter()
        errors: list[str] = []
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                self._check_header(reader.fieldnames)
                chunk: list[tuple[int, dict | None]] = []
                for row in reader:
                    chunk.append((reader.line_num, self._record(row)))
                    if len(chunk) >= chunk_size:
                        self._import(chunk, source, counts, errors)
                        chunk = []
                if chunk:
                    self._import(chunk, source, counts, errors)
        except UnicodeDecodeError as exc:
            raise CommandError(f"{file} is not UTF-8 text: {exc}") from None
        except csv.Error as exc:
            raise CommandError(f"{file} is not a valid CSV file: {exc}") from None

        total = sum(counts.values())
        summary = ", ".join(f"{counts.get(outcome, 0)} {outcome}" for outcome in OUTCOMES)
        self.stdout.write(f"{total} row(s) from {file} (source {source}): {summary}.")
        failed = counts[INVALID] + counts[CONFLICT]
        for line in errors:
            self.stdout.write(f"  {line}")
        if failed > len(errors):
            self.stdout.write(f"  ... and {failed - len(errors)} more.")
        if counts[REJECTED]:
            self.stdout.write(
                "Rejected rows are stored: fix the catalog or subscriptions, then reprocess them in admin "
                "(Usage records, action 'Reprocess selected rejected records')."
            )
        if failed:
            raise CommandError(
                f"{counts[INVALID]} invalid and {counts[CONFLICT]} conflicting row(s) were not stored; "
                "fix them and run the file again."
            )
        self.stdout.write(self.style.SUCCESS("Import finished."))

    @staticmethod
    def _check_header(fieldnames: list[str] | None) -> None:
        if not fieldnames:
            raise CommandError("The file is empty: the first line must be the header.")
        names = [name.strip() for name in fieldnames]
        problems = []
        missing = [name for name in REQUIRED_COLUMNS if name not in names]
        if missing:
            problems.append(f"missing column(s): {', '.join(missing)}")
        unknown = [name for name in names if name not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
        if unknown:
            problems.append(f"unknown column(s): {', '.join(repr(name) for name in unknown)}")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            problems.append(f"repeated column(s): {', '.join(repeated)}")
        if problems:
            expected = ",".join(REQUIRED_COLUMNS) + "[,subscription_id]"
            raise CommandError(f"Wrong header ({'; '.join(problems)}). Expected: {expected}")

    @staticmethod
    def _record(row: dict) -> dict | None:
        """A CSV row as a usage record (empty cells left out); None for a row with more cells than columns."""
        if None in row:
            return None
        record = {key.strip(): (value or "").strip() for key, value in row.items()}
        return {key: value for key, value in record.items() if value != ""}

    def _import(
        self, chunk: list[tuple[int, dict | None]], source: str, counts: Counter, errors: list[str]
    ) -> None:
        records = [record for _, record in chunk if record is not None]
        answers = iter(
            usage_records_ingest(records=records, source=source, actor="import_usage") if records else []
        )
        for line, record in chunk:
            if record is None:
                counts[INVALID] += 1
                self._error(errors, f"line {line}: {INVALID}: more cells than the header has columns.")
                continue
            answer = next(answers)
            counts[answer.outcome] += 1
            if answer.outcome in (INVALID, CONFLICT):
                details = " ".join(
                    message if name == "non_field_errors" else f"{name}: {message}"
                    for name, messages in answer.fields.items()
                    for message in messages
                )
                self._error(errors, f"line {line}: {answer.outcome}: {details or answer.message}")

    @staticmethod
    def _error(errors: list[str], line: str) -> None:
        if len(errors) < SHOWN_ERRORS:  # the first ones only: a bad file may have millions
            errors.append(line)
