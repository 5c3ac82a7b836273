"""Smoke test of the invoice rendering benchmark: it renders, prints its table and writes its JSON."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command


def test_bench_invoices_prints_and_writes_figures(tmp_path):
    out = StringIO()
    target = tmp_path / "invoices.json"
    call_command("bench_invoices", "--count", "2", "--json", str(target), stdout=out)
    text = out.getvalue()
    assert "invoices per second" in text and "layout" in text
    figures = json.loads(target.read_text())
    assert figures["invoices"] == 2 and figures["pages_per_invoice"] == 1.0
    assert figures["invoices_per_second"] > 0
    assert set(figures["split_ms_mean"]) == {"template", "layout", "pdf", "xml"}


def test_bench_invoices_refuses_a_count_below_one():
    with pytest.raises(CommandError, match="at least 1"):
        call_command("bench_invoices", "--count", "0")
