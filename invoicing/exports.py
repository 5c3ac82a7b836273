"""The invoice as XML (source 003: "export the invoice as an XML ... file"), from the same InvoiceDocument
the HTML and PDF are drawn from. The schema is invoicing/schema/invoice-1.0.xsd (docs/invoice-xml.md).

Amounts are plain decimals in the invoice's currency with its minor units (``355.08``); dates are ISO 8601;
the XML carries the discount and tax break-up per service type that the PDF's usage summary leaves out.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from xml.etree import ElementTree as ET

from billing_mgmt.money import quantize

from .content import Activity, ChargeSummary, InvoiceDocument, Line, ServiceCharges

NAMESPACE = "urn:billing-mgmt:invoice:1.0"
SCHEMA_VERSION = "1.0"


def _text(value) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        # Quantities and unit prices without trailing zeros ("0.1", "300"), never in exponent form.
        return f"{value.normalize():f}"
    return str(value)


class _Writer:
    def __init__(self, currency: str) -> None:
        self.currency = currency

    def el(self, parent: ET.Element, tag: str, value=None, **attrs) -> ET.Element:
        node = ET.SubElement(
            parent, f"{{{NAMESPACE}}}{tag}", {k: _text(v) for k, v in attrs.items() if v not in (None, "")}
        )
        if value is not None:
            node.text = _text(value)
        return node

    def money(self, parent: ET.Element, tag: str, amount: Decimal) -> ET.Element:
        node = self.el(parent, tag)
        node.text = f"{quantize(amount, self.currency):f}"
        return node

    def summary(self, parent: ET.Element, tag: str, s: ChargeSummary) -> None:
        node = self.el(parent, tag, serviceType=s.service_type or None)
        for name, value in (
            ("Gross", s.gross),
            ("Recurring", s.recurring),
            ("OneTime", s.one_time),
            ("Usage", s.usage),
            ("Discounts", s.discounts),
            ("Taxes", s.taxes),
            ("Total", s.total),
        ):
            self.money(node, name, value)

    def line(self, parent: ET.Element, line: Line) -> None:
        node = self.el(
            parent,
            "Line",
            position=line.position,
            type=line.line_type,
            taxIncluded="true" if line.tax_included else None,
        )
        self.el(node, "Product", line.product)
        self.el(node, "Description", line.description)
        if line.service_type:
            self.el(node, "ServiceType", line.service_type)
        if line.period_start and line.period_end:
            self.el(node, "Period", start=line.period_start, end=line.period_end)
        if line.quantity is not None:
            self.el(node, "Quantity", line.quantity, unit=line.unit or None)
        if line.unit_price is not None:
            self.el(node, "UnitPrice", line.unit_price)
        self.money(node, "Amount", line.amount)

    def service(self, parent: ET.Element, service: ServiceCharges) -> None:
        node = self.el(parent, "Service", identifier=service.service_identifier or None)
        for product in service.products:
            self.el(node, "Product", product)
        lines = self.el(node, "Lines")
        for line in service.lines:
            self.line(lines, line)
        self.money(node, "Total", service.total)
        if service.events_total:
            events = self.el(
                node, "UsageEvents", total=service.events_total, omitted=service.events_omitted or None
            )
            for e in service.events:
                self.el(events, "Event", e.quantity, time=e.time, type=e.usage_type, unit=e.unit)

    def activity(self, parent: ET.Element, tag: str, items: list[Activity]) -> None:
        node = self.el(parent, tag)
        for item in items:
            entry = self.el(node, "Entry", date=item.date, kind=item.kind)
            self.el(entry, "Description", item.description)
            self.money(entry, "Amount", item.amount)


def invoice_xml(doc: InvoiceDocument) -> bytes:
    """The invoice as UTF-8 XML valid against invoice-1.0.xsd."""
    ET.register_namespace("", NAMESPACE)
    w = _Writer(doc.currency)
    root = ET.Element(
        f"{{{NAMESPACE}}}Invoice",
        {"version": SCHEMA_VERSION, "kind": doc.kind, "format": doc.format},
    )
    header = w.el(root, "Header")
    w.el(header, "Number", doc.number)
    w.el(header, "InvoiceDate", doc.invoice_date)
    if doc.corrects_number:
        w.el(header, "Corrects", doc.corrects_number, date=doc.corrects_date)
    w.el(header, "StatementNumber", doc.statement_number)
    w.el(header, "StatementDate", doc.statement_date)
    w.el(header, "BillPeriod", start=doc.period_start, end=doc.period_end)
    w.el(header, "DueDate", doc.due_date)
    w.el(header, "Currency", doc.currency)
    w.el(header, "Language", doc.language)
    w.el(header, "Locale", doc.locale)
    for tag, party in (("Issuer", doc.issuer), ("Customer", doc.customer)):
        node = w.el(root, tag, accountNumber=party.number or None)
        w.el(node, "Name", party.name)
        if party.tax_id:
            w.el(node, "TaxId", party.tax_id)
        address = w.el(node, "Address")
        for line in party.address_lines:
            w.el(address, "Line", line)
    amounts = w.el(root, "Amounts")
    for tag, value in (
        ("PreviousBalance", doc.previous_balance),
        ("Payments", doc.payments),
        ("Adjustments", doc.adjustments),
        ("PastDue", doc.past_due),
        ("NewCharges", doc.new_charges),
        ("Taxes", doc.taxes),
        ("TotalDue", doc.total_due),
        ("Disputed", doc.disputed),
    ):
        w.money(amounts, tag, value)
    summary = w.el(root, "ChargeSummary")
    for s in doc.charge_summary:
        w.summary(summary, "ServiceType", s)
    w.summary(summary, "Totals", doc.charge_totals)
    services = w.el(root, "Services")
    for service in doc.services:
        w.service(services, service)
    if doc.children:
        children = w.el(root, "ChildAccounts")
        for child in doc.children:
            node = w.el(
                children,
                "ChildAccount",
                number=child.number,
                lines=child.line_count,
                summarized="true" if child.summarized else "false",
            )
            w.el(node, "Name", child.name)
            for service in child.services:
                w.service(node, service)
            for product, amount in child.products:
                p = w.el(node, "ProductTotal", product=product)
                p.text = f"{quantize(amount, doc.currency):f}"
            w.money(node, "Total", child.total)
    usage = w.el(root, "UsageSummary")
    for row in doc.usage:
        node = w.el(
            usage, "Usage", service=row.service_identifier or None, type=row.usage_type, unit=row.unit
        )
        w.el(node, "Quantity", row.quantity)
        if row.included is not None:
            w.el(node, "Included", row.included)
            w.el(node, "Remaining", row.remaining)
    w.activity(root, "Payments", doc.payments_list)
    w.activity(root, "Adjustments", doc.adjustments_list)
    w.activity(root, "OtherActivity", doc.other_activity)
    messages = w.el(root, "Messages")
    for text in doc.messages:
        w.el(messages, "Message", text)
    slip = w.el(root, "PaymentSlip")
    w.el(slip, "Reference", doc.payment_reference)
    w.money(slip, "Amount", doc.amount_to_pay)
    w.el(slip, "DueDate", doc.due_date)
    w.el(slip, "PaymentUrl", doc.payment_url)
    support = w.el(root, "Support")
    w.el(support, "Contact", doc.support_contact)
    if doc.support_phone:
        w.el(support, "Phone", doc.support_phone)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
