"""Issuing invoices: one per bill, numbered from its legal entity's gapless series, with its bill routings.

Issuing is short on purpose: it locks the bills, takes the numbers (the series' counter row stays locked until
the transaction commits, so concurrent issuers wait for each other) and writes the invoice rows; rendering the
documents happens after it has committed (invoicing.services.rendering), so a slow PDF never holds the
counter. A number is used exactly once: a rolled-back issue gives its numbers back, and an issued invoice
whose rendering fails keeps its number and is rendered again (the daily catch-up).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import Account, Biller, BillingProfile, Contact
from billing_mgmt.audit import audit_records_bulk, snapshot
from billing_mgmt.errors import ApplicationError
from billing_mgmt.numbering import SeriesSpec, get_series, next_numbers
from statements.models import Statement

from ..content import format_for
from ..models import Invoice, InvoiceDelivery, InvoiceSeries, InvoiceTemplate

DEFAULT_SERIES_CODE = "main"


def _counter_code(code: str) -> str:
    return f"invoice-{code}"


@transaction.atomic
def invoice_series_create(
    *,
    code: str,
    legal_name: str,
    address: str = "",
    tax_id: str = "",
    account_type: str = "",
    prefix: str = "",
    padding: int = 8,
) -> InvoiceSeries:
    """A legal entity's invoice series with its own gapless counter (prefix and padding from here on are
    edited on the counter, under Number series)."""
    taken = InvoiceSeries.objects.filter(number_series__prefix=prefix).exclude(code=code).first()
    if taken is not None:
        raise ApplicationError(
            f"Invoice series {taken.code} already numbers with the prefix '{prefix}'; each legal entity "
            "needs its own prefix, so that an invoice number names one invoice.",
            code="prefix_in_use",
            fields={"prefix": [f"Used by series {taken.code}."]},
        )
    counter = get_series(
        _counter_code(code),
        SeriesSpec(name=f"Invoices of {legal_name}"[:100], prefix=prefix, padding=padding, gapless=True),
    )
    if not counter.gapless:
        raise ApplicationError(
            f"Number series {counter.code} exists and is not gapless; invoices need a gapless series.",
            code="series_not_gapless",
        )
    return InvoiceSeries.objects.create(
        code=code,
        legal_name=legal_name,
        address=address,
        tax_id=tax_id,
        account_type=account_type,
        number_series=counter,
    )


def default_series() -> InvoiceSeries:
    """The default series, created on first use from the settings (INVOICE_ISSUER_*), so a new installation
    can invoice at once; admins edit it or add series per account type."""
    series = (
        InvoiceSeries.objects.filter(active=True, account_type="").select_related("number_series").first()
    )
    if series is not None:
        return series
    try:
        # Two first issuers at once: the second waits on the unique code, fails, and takes the first's.
        with transaction.atomic():
            return invoice_series_create(
                code=DEFAULT_SERIES_CODE,
                legal_name=getattr(settings, "INVOICE_ISSUER_NAME", settings.PRODUCT_NAME),
                address=getattr(settings, "INVOICE_ISSUER_ADDRESS", ""),
                tax_id=getattr(settings, "INVOICE_ISSUER_TAX_ID", ""),
                prefix=getattr(settings, "INVOICE_NUMBER_PREFIX", "INV-"),
            )
    except IntegrityError:
        return InvoiceSeries.objects.select_related("number_series").get(code=DEFAULT_SERIES_CODE)


def series_by_type() -> dict[str, InvoiceSeries]:
    """Account type -> its series ('' is the default)."""
    default_series()
    return {
        s.account_type: s for s in InvoiceSeries.objects.filter(active=True).select_related("number_series")
    }


def templates_by_type() -> dict[str, InvoiceTemplate]:
    return {t.account_type: t for t in InvoiceTemplate.objects.filter(active=True)}


def pick(by_type: dict[str, Any], account_type: str) -> Any:
    return by_type.get(account_type) or by_type.get("")


def invoice_draft(
    *, statement: Statement, series: InvoiceSeries, template: InvoiceTemplate | None, number: str = ""
) -> Invoice:
    """An unsaved invoice for a bill, as issuing would make it (the admin's preview uses it as it is)."""
    profile = statement.account.billing_profile
    original = getattr(statement.corrects, "invoice", None) if statement.corrects_id else None
    return Invoice(
        statement=statement,
        account_id=statement.account_id,
        series=series,
        number=number,
        kind=Invoice.Kind.CREDIT_NOTE if original is not None else Invoice.Kind.INVOICE,
        corrects=original,
        format=format_for(profile),
        language=profile.language,
        locale=profile.locale,
        template=template,
        invoice_date=timezone.localdate(),
        currency=statement.currency,
        total_due=statement.total_due,
        issued_at=timezone.now(),
    )


def invoiceable(statements):
    """Bills this product invoices: those its own engine made. An external biller's statements are that
    biller's documents (it invoices them under its own legal entity)."""
    return statements.filter(biller__kind=Biller.Kind.INTERNAL)


def invoices_issue(*, statement_ids: list[int], actor: Any = None) -> list[Invoice]:
    """Issue the invoice of each of these bills that has none yet (idempotent: a bill keeps its first
    invoice). Corrective bills get a credit note that refers to the invoice of the bill they correct, which
    is issued first if it has none. Returns the invoices issued now. One transaction, in a fixed number of
    queries whatever the number of bills (the invoices are inserted together, their credit notes after
    them)."""
    with transaction.atomic():
        return _issue(statement_ids, actor)


def _issue(statement_ids: list[int], actor: Any) -> list[Invoice]:
    wanted = set(statement_ids)
    # Originals of corrective bills first, so that their credit notes can refer to their invoices.
    originals = set(
        Statement.objects.filter(pk__in=wanted, corrects__isnull=False).values_list("corrects_id", flat=True)
    )
    wanted |= originals
    # Lock the bills (in id order, so two issuers never deadlock); a concurrent issuer of the same bill waits
    # here and then finds its invoice.
    statements = list(
        invoiceable(Statement.objects.filter(pk__in=wanted))
        .select_for_update(of=("self",))
        .select_related("account__billing_profile")
        .order_by("pk")
    )
    done = set(Invoice.objects.filter(statement_id__in=wanted).values_list("statement_id", flat=True))
    todo = [s for s in statements if s.pk not in done]
    if not todo:
        return []
    todo.sort(key=lambda s: (s.corrects_id is not None, s.statement_date, s.pk))
    series_of, templates = series_by_type(), templates_by_type()
    by_series: dict[int, list[Statement]] = defaultdict(list)
    for statement in todo:
        by_series[pick(series_of, statement.account.type).pk].append(statement)
    series_rows = {s.pk: s for s in series_of.values()}
    numbers: dict[int, str] = {}
    # Counters in a fixed order (lock order), each once for all its bills.
    for series_id in sorted(by_series):
        series = series_rows[series_id]
        batch = by_series[series_id]
        for statement, number in zip(
            batch, next_numbers(series.number_series.code, count=len(batch)), strict=True
        ):
            numbers[statement.pk] = number
    now = timezone.now()
    issued_by = _actor_label(actor)
    invoices: dict[int, Invoice] = {}
    unsaved: list[Invoice] = []
    for statement in todo:
        account_type = statement.account.type
        invoice = invoice_draft(
            statement=statement,
            series=series_rows[pick(series_of, account_type).pk],
            template=pick(templates, account_type),
            number=numbers[statement.pk],
        )
        if statement.corrects_id and invoice.corrects is None:
            original = invoices.get(statement.corrects_id)
            if original is not None and original.pk is None:
                # The credit note refers to an invoice issued just now: insert those first, for their ids.
                Invoice.objects.bulk_create(unsaved)
                unsaved = []
            invoice.corrects = original
            invoice.kind = Invoice.Kind.CREDIT_NOTE if invoice.corrects else Invoice.Kind.INVOICE
        invoice.issued_at = now
        invoice.issued_by = issued_by
        unsaved.append(invoice)
        invoices[statement.pk] = invoice
    Invoice.objects.bulk_create(unsaved)
    issued = list(invoices.values())
    routings_create(invoices=issued)
    audit_records_bulk(
        actor=actor,
        action="invoice.issue",
        objects=issued,
        afters=[
            snapshot(i, ["number", "kind", "format", "invoice_date", "total_due", "currency", "corrects"])
            for i in issued
        ],
        account_ids=[i.account_id for i in issued],
    )
    return issued


def _actor_label(actor: Any) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor[:200]
    username = getattr(actor, "get_username", None)
    return (username() if username else str(actor))[:200]


# --- bill routing (source 004: "a bill routing for each person linked to the account who requires a copy")


def _method_for(contact: Contact, profile: BillingProfile) -> str | None:
    chosen = contact.bill_delivery
    if chosen == Contact.BillDelivery.NONE:
        return None
    if chosen:
        return chosen
    if contact.role == Contact.Role.PRIMARY:
        return {
            BillingProfile.Presentment.PAPER: InvoiceDelivery.Method.PRINT,
            BillingProfile.Presentment.EMAIL: InvoiceDelivery.Method.EMAIL,
            BillingProfile.Presentment.EMAIL_SUMMARY: InvoiceDelivery.Method.EMAIL,
            BillingProfile.Presentment.PORTAL: InvoiceDelivery.Method.PORTAL,
        }[profile.presentment_preference]
    if contact.role == Contact.Role.BILLING_COPY:
        return InvoiceDelivery.Method.EMAIL
    return None


def _recipient(contact: Contact, method: str, account: Account) -> str:
    if method == InvoiceDelivery.Method.EMAIL:
        return contact.email
    if method == InvoiceDelivery.Method.PRINT:
        lines = [contact.name, *account.billing_profile.address_lines]
        return ", ".join(line for line in lines if line)[:300]
    return contact.name[:300]


def routings_create(*, invoices: list[Invoice]) -> list[InvoiceDelivery]:
    """The deliveries of these invoices: one per contact of the bill's account who asks for a copy, by their
    method. An account with no such contact still gets its invoice in the portal. E-mails go out once the
    invoice is rendered (invoicing.services.delivery)."""
    accounts = {i.account_id for i in invoices}
    contacts: dict[int, list[Contact]] = defaultdict(list)
    for contact in Contact.objects.filter(account_id__in=accounts).order_by("account_id", "role", "id"):
        contacts[contact.account_id].append(contact)
    profiles = {
        p.account_id: p
        for p in BillingProfile.objects.filter(account_id__in=accounts).select_related("account")
    }
    rows = []
    for invoice in invoices:
        profile = profiles[invoice.account_id]
        made = False
        for contact in contacts[invoice.account_id]:
            method = _method_for(contact, profile)
            if method is None:
                continue
            made = True
            rows.append(
                InvoiceDelivery(
                    invoice=invoice,
                    contact=contact,
                    method=method,
                    recipient=_recipient(contact, method, profile.account),
                )
            )
        if not made:
            rows.append(
                InvoiceDelivery(
                    invoice=invoice, contact=None, method=InvoiceDelivery.Method.PORTAL, recipient="portal"
                )
            )
    return InvoiceDelivery.objects.bulk_create(rows, ignore_conflicts=True)
