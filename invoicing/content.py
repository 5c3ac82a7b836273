"""What an invoice says (source 003), read from its bill, independent of how it is drawn.

``invoice_documents(invoices)`` builds one ``InvoiceDocument`` per invoice in a fixed number of queries
whatever the number of invoices (a billing run's Formatting step builds hundreds at a time). The HTML and PDF
templates (templates/invoicing/documents/) and the XML export (invoicing.exports) all draw from it, so the
three formats always say the same thing. Amounts stay ``Decimal`` in the bill's currency; formatting for the
reader's locale happens in the templates (invoicing.templatetags.invoice_format).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from accounts.models import Account, BillingProfile
from statements.models import FinancialTransaction, Statement, StatementLine, UsageSummary

from .models import Invoice, InvoiceTemplate, InvoicingSettings, StatementMessage

ZERO = Decimal(0)

# Ledger kinds in the invoice's "payments" list; the rest of what a bill swept is adjustments or other A/R.
PAYMENT_KINDS = (FinancialTransaction.Kind.PAYMENT,)
ADJUSTMENT_KINDS = (FinancialTransaction.Kind.ADJUSTMENT,)
# Line types whose amounts are the gross charges (before discounts and taxes).
GROSS_TYPES = (
    StatementLine.Type.RECURRING,
    StatementLine.Type.USAGE,
    StatementLine.Type.ONE_TIME,
    StatementLine.Type.OTHER,
)


@dataclass
class Party:
    name: str
    address_lines: list[str] = field(default_factory=list)
    tax_id: str = ""
    number: str = ""


@dataclass
class Line:
    position: int
    line_type: str
    product: str
    service_identifier: str
    service_type: str
    description: str
    quantity: Decimal | None
    unit: str
    unit_price: Decimal | None
    amount: Decimal
    period_start: dt.date | None
    period_end: dt.date | None
    tax_included: bool = False


@dataclass
class UsageEvent:
    time: dt.datetime
    usage_type: str
    quantity: Decimal
    unit: str


@dataclass
class ServiceCharges:
    """The charges of one device or service identifier (empty: charges with no device)."""

    service_identifier: str
    products: list[str]
    lines: list[Line]
    total: Decimal
    events: list[UsageEvent] = field(default_factory=list)
    events_total: int = 0  # events of the period; more than ``events`` when the list is cut at the limit

    @property
    def events_omitted(self) -> int:
        return max(self.events_total - len(self.events), 0)


@dataclass
class ChargeSummary:
    """Gross, discounts, taxes and net of one service type, or of the whole bill (source 003's
    "Gross Charge: 348, Discount: (25.20), and Tax: 32.28" for a net of 355.08)."""

    service_type: str
    gross: Decimal = ZERO
    discounts: Decimal = ZERO
    taxes: Decimal = ZERO
    recurring: Decimal = ZERO
    one_time: Decimal = ZERO
    usage: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.gross + self.discounts + self.taxes

    @property
    def label(self) -> str:
        return self.service_type.replace("-", " ").replace("_", " ").capitalize() if self.service_type else ""


@dataclass
class UsageRow:
    service_identifier: str
    usage_type: str
    quantity: Decimal
    unit: str
    included: Decimal | None

    @property
    def remaining(self) -> Decimal | None:
        """Included units left (the non-currency balance, such as free minutes), when the plan has some."""
        if self.included is None:
            return None
        return max(self.included - self.quantity, ZERO)


@dataclass
class Activity:
    """A payment, adjustment, dispute credit, refund, write-off or reversal since the last bill."""

    date: dt.date
    kind: str
    description: str
    amount: Decimal


@dataclass
class ChildSection:
    """A non-paying child account's charges on its paying parent's consolidated invoice."""

    number: str
    name: str
    total: Decimal
    line_count: int
    summarized: bool
    services: list[ServiceCharges] = field(default_factory=list)
    products: list[tuple[str, Decimal]] = field(default_factory=list)  # when summarized


@dataclass
class InvoiceDocument:
    number: str
    kind: str
    format: str
    invoice_date: dt.date
    language: str
    locale: str
    currency: str
    issuer: Party
    customer: Party
    statement_number: str
    statement_date: dt.date
    period_start: dt.date
    period_end: dt.date
    due_date: dt.date
    previous_balance: Decimal
    payments: Decimal
    adjustments: Decimal
    new_charges: Decimal
    taxes: Decimal
    total_due: Decimal
    disputed: Decimal
    charge_summary: list[ChargeSummary]
    charge_totals: ChargeSummary
    services: list[ServiceCharges]
    children: list[ChildSection]
    usage: list[UsageRow]
    payments_list: list[Activity]
    adjustments_list: list[Activity]
    other_activity: list[Activity]
    messages: list[str]
    payment_reference: str
    payment_url: str
    support_contact: str
    support_phone: str
    corrects_number: str = ""
    corrects_date: dt.date | None = None
    template: InvoiceTemplate | None = None
    preview: bool = False

    @property
    def is_credit_note(self) -> bool:
        return self.kind == Invoice.Kind.CREDIT_NOTE

    @property
    def is_detailed(self) -> bool:
        return self.format == Invoice.Format.DETAILED

    @property
    def past_due(self) -> Decimal:
        """What was still owed from the previous bill when this one was made."""
        return max(self.previous_balance - self.payments, ZERO)

    @property
    def balances(self) -> list[UsageRow]:
        return [row for row in self.usage if row.included is not None]

    @property
    def amount_to_pay(self) -> Decimal:
        return max(self.total_due, ZERO)


def payment_reference(number: str) -> str:
    """An ISO 11649 structured creditor reference ("RF" + two check digits + the invoice number's letters
    and digits), which banks check as they do an IBAN, so a mistyped reference is caught at the bank."""
    body = "".join(ch for ch in number.upper() if ch.isalnum())[:21] or "0"
    digits = "".join(str(int(ch, 36)) for ch in body + "RF00")
    check = 98 - int(digits) % 97
    return f"RF{check:02d}{body}"


def format_for(profile: BillingProfile) -> str:
    """Detailed or summary, from the account's presentment preference."""
    summary = (BillingProfile.Presentment.EMAIL_SUMMARY, BillingProfile.Presentment.PORTAL)
    return Invoice.Format.SUMMARY if profile.presentment_preference in summary else Invoice.Format.DETAILED


def _usage_events_source():
    path = getattr(settings, "INVOICE_USAGE_EVENTS", "")
    return import_string(path) if path else None


def _line(row: dict[str, Any]) -> Line:
    return Line(
        position=row["position"],
        line_type=row["line_type"],
        product=row["product"],
        service_identifier=row["service_identifier"],
        service_type=row["service_type"],
        description=row["description"],
        quantity=row["quantity"],
        unit=row["unit"],
        unit_price=row["unit_price"],
        amount=row["amount"],
        period_start=row["period_start"],
        period_end=row["period_end"],
        tax_included=row["tax_included"],
    )


def _services(lines: list[Line], events: dict[str, tuple[list[UsageEvent], int]]) -> list[ServiceCharges]:
    by_identifier: dict[str, list[Line]] = defaultdict(list)
    for line in lines:
        by_identifier[line.service_identifier].append(line)
    # Devices first in the order their first line prints; charges with no device last.
    order = sorted(by_identifier, key=lambda ident: (ident == "", by_identifier[ident][0].position))
    out = []
    for identifier in order:
        group = by_identifier[identifier]
        products = list(dict.fromkeys(line.product for line in group if line.product))
        listed, total = events.get(identifier, ([], 0))
        out.append(
            ServiceCharges(
                service_identifier=identifier,
                products=products,
                lines=group,
                total=sum((ln.amount for ln in group if not ln.tax_included), ZERO),
                events=listed,
                events_total=total,
            )
        )
    return out


def _summaries(lines: list[Line]) -> tuple[list[ChargeSummary], ChargeSummary]:
    by_type: dict[str, ChargeSummary] = {}
    totals = ChargeSummary(service_type="")
    for line in lines:
        summary = by_type.setdefault(line.service_type, ChargeSummary(service_type=line.service_type))
        for target in (summary, totals):
            if line.line_type in GROSS_TYPES:
                target.gross += line.amount
                if line.line_type == StatementLine.Type.RECURRING:
                    target.recurring += line.amount
                elif line.line_type == StatementLine.Type.ONE_TIME:
                    target.one_time += line.amount
                elif line.line_type == StatementLine.Type.USAGE:
                    target.usage += line.amount
            elif line.line_type == StatementLine.Type.DISCOUNT:
                target.discounts += line.amount
            elif line.line_type == StatementLine.Type.TAX:
                target.taxes += line.amount
                if line.tax_included:
                    # The tax is inside the prices of the charges above: the gross excludes it, so that
                    # gross + discounts + taxes is still what is owed.
                    target.gross -= line.amount
            elif line.line_type == StatementLine.Type.ADJUSTMENT:
                target.gross += line.amount
    return sorted(by_type.values(), key=lambda s: (s.service_type == "", s.service_type)), totals


def _activity(rows: list[FinancialTransaction]) -> tuple[list[Activity], list[Activity], list[Activity]]:
    payments, adjustments, other = [], [], []
    for row in rows:
        item = Activity(
            date=row.effective_date, kind=row.kind, description=row.description, amount=row.amount
        )
        is_payment = row.kind in PAYMENT_KINDS or (
            row.kind == FinancialTransaction.Kind.REVERSAL
            and row.corrects is not None
            and row.corrects.kind in PAYMENT_KINDS
        )
        if is_payment:
            payments.append(item)
        elif row.kind in ADJUSTMENT_KINDS:
            adjustments.append(item)
        else:
            other.append(item)
    return payments, adjustments, other


def _issuer(invoice: Invoice) -> Party:
    series = invoice.series
    return Party(
        name=series.legal_name,
        address_lines=[ln.strip() for ln in series.address.splitlines() if ln.strip()],
        tax_id=series.tax_id,
    )


def invoice_documents(invoices: list[Invoice], *, preview: bool = False) -> dict[int, InvoiceDocument]:
    """The document of each invoice, keyed by its statement id. The invoices may be unsaved (an admin's
    preview of a bill not invoiced yet); each must have its statement, series and template set."""
    if not invoices:
        return {}
    config = InvoicingSettings.current()
    statement_ids = [inv.statement_id for inv in invoices]
    statements = {
        s.pk: s
        for s in Statement.objects.filter(pk__in=statement_ids).select_related(
            "account__billing_profile", "corrects"
        )
    }
    lines: dict[int, list[Line]] = defaultdict(list)
    line_accounts: dict[int, list[int | None]] = defaultdict(list)
    for row in (
        StatementLine.objects.filter(statement_id__in=statement_ids)
        .order_by("statement_id", "position")
        .values(
            "statement_id",
            "position",
            "line_type",
            "product",
            "service_identifier",
            "service_type",
            "description",
            "quantity",
            "unit",
            "unit_price",
            "amount",
            "period_start",
            "period_end",
            "tax_included",
            "account_id",
        )  # fmt: skip
    ):
        lines[row["statement_id"]].append(_line(row))
        line_accounts[row["statement_id"]].append(row["account_id"])
    usage: dict[int, list[UsageRow]] = defaultdict(list)
    for u in UsageSummary.objects.filter(statement_id__in=statement_ids).order_by(
        "statement_id", "service_identifier", "usage_type"
    ):
        usage[u.statement_id].append(
            UsageRow(u.service_identifier, u.usage_type, u.quantity, u.unit, u.included_quantity)
        )
    swept: dict[int, list[FinancialTransaction]] = defaultdict(list)
    for row in (
        FinancialTransaction.objects.filter(statement_id__in=statement_ids)
        .exclude(kind=FinancialTransaction.Kind.BILL)
        .select_related("corrects")
        .order_by("effective_date", "id")
    ):
        swept[row.statement_id].append(row)
    messages: dict[int, list[str]] = defaultdict(list)
    for statement_id, text in (
        StatementMessage.objects.filter(statement_id__in=statement_ids)
        .order_by("statement_id", "position")
        .values_list("statement_id", "text")
    ):
        messages[statement_id].append(text)
    child_ids = {
        account_id
        for sid, accounts in line_accounts.items()
        for account_id in accounts
        if account_id is not None and account_id != statements[sid].account_id
    }
    children = {a.pk: a for a in Account.objects.filter(pk__in=child_ids).only("pk", "number", "name")}
    detailed = [inv.statement_id for inv in invoices if inv.format == Invoice.Format.DETAILED]
    source = _usage_events_source()
    events: dict[int, dict[str, tuple[list[UsageEvent], int]]] = (
        source(statement_ids=detailed, limit=config.usage_event_limit) if source and detailed else {}
    )
    originals = {
        inv.pk: inv
        for inv in Invoice.objects.filter(pk__in=[i.corrects_id for i in invoices if i.corrects_id]).only(
            "pk", "number", "invoice_date"
        )
    }
    documents: dict[int, InvoiceDocument] = {}
    for invoice in invoices:
        statement = statements[invoice.statement_id]
        account = statement.account
        profile = account.billing_profile
        own, by_child = [], defaultdict(list)
        for line, account_id in zip(lines[statement.pk], line_accounts[statement.pk], strict=True):
            if account_id is None or account_id == account.pk:
                own.append(line)
            else:
                by_child[account_id].append(line)
        statement_events = events.get(statement.pk, {})
        child_sections = []
        for child_id in sorted(by_child, key=lambda pk: children[pk].number):
            child_lines = by_child[child_id]
            summarized = len(child_lines) > config.child_line_threshold
            products: dict[str, Decimal] = defaultdict(Decimal)
            for line in child_lines:
                if not line.tax_included:
                    products[line.product or line.description] += line.amount
            child_sections.append(
                ChildSection(
                    number=children[child_id].number,
                    name=children[child_id].name,
                    total=sum(products.values(), ZERO),
                    line_count=len(child_lines),
                    summarized=summarized,
                    services=[] if summarized else _services(child_lines, statement_events),
                    products=sorted(products.items()) if summarized else [],
                )
            )
        summary, totals = _summaries(lines[statement.pk])
        payments_list, adjustments_list, other_activity = _activity(swept[statement.pk])
        template = invoice.template
        original = originals.get(invoice.corrects_id) if invoice.corrects_id else None
        documents[statement.pk] = InvoiceDocument(
            number=invoice.number,
            kind=invoice.kind,
            format=invoice.format,
            invoice_date=invoice.invoice_date,
            language=invoice.language,
            locale=invoice.locale,
            currency=statement.currency,
            issuer=_issuer(invoice),
            customer=Party(name=account.name, address_lines=profile.address_lines, number=account.number),
            statement_number=statement.number,
            statement_date=statement.statement_date,
            period_start=statement.period_start,
            period_end=statement.period_end,
            due_date=statement.due_date,
            previous_balance=statement.previous_balance,
            payments=statement.payments,
            adjustments=statement.adjustments,
            new_charges=statement.new_charges,
            taxes=statement.taxes,
            total_due=statement.total_due,
            disputed=statement.disputed_amount,
            charge_summary=summary,
            charge_totals=totals,
            services=_services(own, statement_events),
            children=child_sections,
            usage=usage[statement.pk],
            payments_list=payments_list,
            adjustments_list=adjustments_list,
            other_activity=other_activity,
            messages=messages[statement.pk],
            payment_reference=payment_reference(invoice.number),
            payment_url=settings.PAYMENT_URL,
            support_contact=settings.SUPPORT_CONTACT,
            support_phone=(template.support_phone if template else "") or "",
            corrects_number=original.number if original else "",
            corrects_date=original.invoice_date if original else None,
            template=template,
            preview=preview,
        )
    return documents
