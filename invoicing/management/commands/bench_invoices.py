"""Benchmark invoice rendering (docs/benchmarks.md): N one-page invoices rendered by this process, with the
time split into template (Django), layout (WeasyPrint), PDF writing and XML.

    manage.py bench_invoices [--count 100] [--layout standard|compact] [--language en] [--json PATH]

The invoices are built in memory from a fixed, realistic one-page bill (a device with recurring and usage
charges, a discount and tax, a payment, usage with an allowance, a message): it measures rendering alone, not
reading bills from the database, and needs no database. The first few renders warm up fonts and caches and
are not counted.
"""

from __future__ import annotations

import datetime as dt
import platform
import statistics
import time
from decimal import Decimal
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from invoicing.content import (
    Activity,
    ChargeSummary,
    InvoiceDocument,
    Line,
    Party,
    ServiceCharges,
    UsageRow,
    payment_reference,
)
from invoicing.models import Invoice, InvoiceTemplate
from invoicing.services.rendering import render_document

WARM_UP = 3
D = Decimal


def sample_document(number: str, *, language: str = "en", layout: str = "standard") -> InvoiceDocument:
    period = (dt.date(2026, 10, 1), dt.date(2026, 10, 31))

    def line(pos, kind, product, ident, desc, amount, qty=None, unit="", price=None):
        return Line(pos, kind, product, ident, "mobile", desc, qty, unit, price, D(amount), *period)

    phone_a = "+44 7700 900123"
    lines_a = [
        line(1, "recurring", "Mobile 30", phone_a, "Monthly fee", "30.00", D(1), "", D("30.00")),
        line(2, "usage", "Mobile 30", phone_a, "Voice: 120 min x 0.10", "12.00", D(120), "min", D("0.10")),
        line(4, "discount", "Mobile 30", phone_a, "Loyalty 10%", "-6.25"),
        line(5, "tax", "Mobile 30", phone_a, "VAT 20%", "11.25"),
    ]
    amounts = {
        "gross": D("42.00"),
        "discounts": D("-6.25"),
        "taxes": D("11.25"),
        "recurring": D("30.00"),
        "one_time": D("0.00"),
        "usage": D("12.00"),
    }
    totals, mobile = ChargeSummary("", **amounts), ChargeSummary("mobile", **amounts)
    return InvoiceDocument(
        number=number,
        kind=Invoice.Kind.INVOICE,
        format=Invoice.Format.SUMMARY,
        invoice_date=dt.date(2026, 11, 1),
        language=language,
        locale={"de": "de_DE", "es": "es_ES"}.get(language, "en_GB"),
        currency="EUR" if language in ("de", "es") else "GBP",
        issuer=Party(
            "Example Telecom Ltd", ["1 Network Way", "London EC1A 1AA", "United Kingdom"], "GB123456789"
        ),
        customer=Party("Ada Lovelace", ["12 Analytical Row", "London NW1 2AB", "GB"], number="ACC-000123"),
        statement_number="S-000123",
        statement_date=dt.date(2026, 11, 1),
        period_start=period[0],
        period_end=period[1],
        due_date=dt.date(2026, 11, 15),
        previous_balance=D("62.10"),
        payments=D("62.10"),
        adjustments=D("0.00"),
        new_charges=D("35.75"),
        taxes=D("11.25"),
        total_due=D("47.00"),
        disputed=D("0.00"),
        charge_summary=[mobile],
        charge_totals=totals,
        services=[
            ServiceCharges(phone_a, ["Mobile 30"], lines_a, D("47.00")),
        ],
        children=[],
        usage=[
            UsageRow(phone_a, "voice", D(420), "min", D(300)),
        ],
        payments_list=[Activity(dt.date(2026, 10, 12), "payment", "Card payment", D("-62.10"))],
        adjustments_list=[],
        other_activity=[],
        messages=["Thank you for being a customer."],
        payment_reference=payment_reference(number),
        payment_url="https://pay.example.com/",
        support_contact="support@example.com",
        support_phone="0800 123 456",
        template=InvoiceTemplate(code="bench", name="Bench", layout=layout),
    )


class Command(BaseCommand):
    help = "Render N invoices in this process and print invoices per second and the time split."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--count", type=int, default=100)
        parser.add_argument("--layout", choices=InvoiceTemplate.Layout.values, default="standard")
        parser.add_argument("--language", default="en")
        parser.add_argument("--json", default="", help="Also write the figures to this JSON file.")

    def handle(self, *args, count: int, layout: str, language: str, json: str, **options) -> None:
        if count < 1:
            raise CommandError("--count must be at least 1.")
        for i in range(WARM_UP):
            render_document(sample_document(f"WARM-{i}", language=language, layout=layout))
        splits: dict[str, list[float]] = {"template": [], "layout": [], "pdf": [], "xml": []}
        pages, sizes, per_invoice = 0, 0, []
        started = time.perf_counter()
        for i in range(count):
            t0 = time.perf_counter()
            rendered = render_document(sample_document(f"INV-{i + 1:08d}", language=language, layout=layout))
            per_invoice.append(time.perf_counter() - t0)
            pages += rendered.pages
            sizes += len(rendered.pdf)
            for key, seconds in rendered.timings.items():
                splits[key].append(seconds)
        elapsed = time.perf_counter() - started
        figures = {
            "invoices": count,
            "layout": layout,
            "language": language,
            "pages_per_invoice": round(pages / count, 2),
            "invoices_per_second": round(count / elapsed, 1),
            "ms_per_invoice_p50": round(statistics.median(per_invoice) * 1000, 1),
            "ms_per_invoice_p95": round(sorted(per_invoice)[int(0.95 * (count - 1))] * 1000, 1),
            "split_ms_mean": {k: round(statistics.mean(v) * 1000, 2) for k, v in splits.items()},
            "pdf_kb_mean": round(sizes / count / 1024, 1),
            "machine": {
                "python": platform.python_version(),
                "cpu": platform.processor() or platform.machine(),
            },
        }
        self.stdout.write(f"Invoice rendering, one process, {count} invoices ({layout}, {language})")
        self.stdout.write(f"  invoices per second   {figures['invoices_per_second']}")
        p50, p95 = figures["ms_per_invoice_p50"], figures["ms_per_invoice_p95"]
        self.stdout.write(f"  per invoice           p50 {p50} ms, p95 {p95} ms")
        for key, ms in figures["split_ms_mean"].items():
            self.stdout.write(f"  {key:<21} {ms} ms")
        self.stdout.write(f"  pages per invoice     {figures['pages_per_invoice']}")
        self.stdout.write(f"  PDF size              {figures['pdf_kb_mean']} KB")
        if json:
            import json as json_module

            Path(json).parent.mkdir(parents=True, exist_ok=True)
            Path(json).write_text(json_module.dumps(figures, indent=2) + "\n")
