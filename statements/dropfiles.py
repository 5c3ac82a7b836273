"""Reading the files a biller drops into its folder (docs/pull-contract.md, "File drop") into biller records.

Pure functions, no database: a file becomes a list of records (statements.records) for ``ingest_records``,
plus the problems of single rows. A file that cannot be read at all raises ``DropFileInvalid`` and goes to
the folder's ``failed/``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

DROP_SUFFIXES = (".json", ".csv")
MAX_FILE_BYTES = 256 * 1024 * 1024

# The columns of each CSV row type. A row uses only the columns of its type; ``line_type`` is a line's
# ``type`` in the record (the CSV's own ``type`` column names the row type).
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "balance": ("account", "as_of", "amount", "currency", "external_id"),
    "transaction": (
        "account", "external_id", "kind", "amount", "currency", "date", "description", "statement",
    ),
    "statement": (
        "account", "external_id", "number", "statement_date", "period_start", "period_end", "due_date",
        "currency", "previous_balance", "payments", "adjustments", "new_charges", "taxes", "total_due",
        "status",
    ),
    "line": (
        "statement", "line_type", "product", "service_identifier", "description", "quantity", "unit",
        "unit_price", "amount", "tax", "period_start", "period_end", "external_id",
    ),
    "usage": ("statement", "service_identifier", "usage_type", "quantity", "unit", "included_quantity"),
}  # fmt: skip
CSV_ALL_COLUMNS = frozenset({"type"}.union(*CSV_COLUMNS.values()))


class DropFileInvalid(Exception):
    """The file as a whole cannot be read; the message says why (it is written beside the failed file)."""


@dataclass
class DropFile:
    """What a file holds: its records in order, the CSV line of each (None for JSON), and rows refused."""

    records: list[Any]
    lines: list[int | None]
    row_errors: list[tuple[int, str]] = field(default_factory=list)  # (CSV line, message)


def is_drop_file(path: Path) -> bool:
    """Files a load takes: visible, ending in .json or .csv. Others (``.x.part`` being written) wait."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in DROP_SUFFIXES


def read_drop_file(path: Path) -> DropFile:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DropFileInvalid(f"The file has {size} bytes; at most {MAX_FILE_BYTES} are read.")
        raw = path.read_bytes()
    except OSError as exc:
        raise DropFileInvalid(f"The file cannot be read: {exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DropFileInvalid(f"The file is not UTF-8 text: {exc}") from None
    if path.suffix.lower() == ".json":
        return parse_json(text)
    return parse_csv(text)


def parse_json(text: str) -> DropFile:
    try:
        # Decimal, not float: amounts written as JSON numbers keep every digit the biller sent.
        data = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise DropFileInvalid(f"The file is not valid JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("records"), list):
        records = data["records"]
    elif isinstance(data, list):
        records = data
    else:
        raise DropFileInvalid('A JSON drop file holds {"records": [...]} or a list of records.')
    return DropFile(records=records, lines=[None] * len(records))


def parse_csv(text: str) -> DropFile:
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, dict[str, str]]] = []
    errors: list[tuple[int, str]] = []
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise DropFileInvalid("The CSV file is empty: it needs a header row.")
        header = [h.strip() for h in header]
        _check_header(header)
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header):
                errors.append((line, f"The row has {len(row)} cells; the header has {len(header)} columns."))
                continue
            values = {name: cell.strip() for name, cell in zip(header, row, strict=False) if cell.strip()}
            row_type = values.pop("type", "")
            if row_type not in CSV_COLUMNS:
                errors.append((line, f"Unknown row type '{row_type}': one of {', '.join(CSV_COLUMNS)}."))
                continue
            foreign = sorted(set(values) - set(CSV_COLUMNS[row_type]))
            if foreign:
                errors.append((line, f"A {row_type} row does not use the column(s) {', '.join(foreign)}."))
                continue
            values["type"] = row_type
            rows.append((line, values))
    except csv.Error as exc:
        raise DropFileInvalid(f"Line {reader.line_num}: the CSV cannot be read: {exc}") from None
    return _csv_records(rows, errors)


def _check_header(header: list[str]) -> None:
    if "type" not in header:
        raise DropFileInvalid("The CSV header has no 'type' column (it names each row's record type).")
    unknown = [name for name in header if name not in CSV_ALL_COLUMNS]
    if unknown:
        raise DropFileInvalid(f"Unknown CSV column(s): {', '.join(unknown)}.")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DropFileInvalid(f"Repeated CSV column(s): {', '.join(repeated)}.")


def _csv_records(rows: list[tuple[int, dict[str, str]]], errors: list[tuple[int, str]]) -> DropFile:
    """Rows to records: statements gather their line and usage rows (wherever they are in the file)."""
    statements: dict[str, dict[str, Any]] = {}
    for line, values in rows:
        if values["type"] == "statement" and values.get("external_id"):
            if values["external_id"] in statements:
                errors.append((line, f"Statement {values['external_id']} appears twice in the file."))
                values["type"] = "_repeated"
                continue
            statements[values["external_id"]] = {**values, "lines": [], "usage": []}

    records: list[Any] = []
    lines: list[int | None] = []
    later_usage: dict[str, dict[str, Any]] = {}
    for line, values in rows:
        row_type = values.pop("type")
        if row_type == "_repeated":
            continue
        if row_type == "statement":
            # The same object the line and usage rows are gathered into, before or after this row.
            record = statements.get(values.get("external_id", ""))
            records.append(record or {"type": "statement", **values, "lines": [], "usage": []})
            lines.append(line)
        elif row_type == "line":
            statement = statements.get(values.pop("statement", ""))
            if statement is None:
                errors.append((line, "A line row names no statement of this file in its 'statement' column."))
                continue
            if "line_type" in values:
                values["type"] = values.pop("line_type")
            statement["lines"].append(values)
        elif row_type == "usage":
            statement_id = values.pop("statement", "")
            if statement_id in statements:
                statements[statement_id]["usage"].append(values)
            elif not statement_id:
                errors.append((line, "A usage row names its statement in the 'statement' column."))
            elif statement_id in later_usage:
                later_usage[statement_id]["usage"].append(values)
            else:
                # Usage of a statement stored earlier: one usage record for all its rows.
                later_usage[statement_id] = {"type": "usage", "statement": statement_id, "usage": [values]}
                records.append(later_usage[statement_id])
                lines.append(line)
        else:
            records.append({"type": row_type, **values})
            lines.append(line)
    errors.sort()
    return DropFile(records=records, lines=lines, row_errors=errors)
