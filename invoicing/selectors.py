"""Reads of the invoicing app for the CSR pages (the account page's Invoices section, the statement page's
Invoice panel), the downloads and the API."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from accounts.models import Account
from billing_mgmt.errors import NotFound
from statements.models import Statement

from .models import Invoice, InvoiceDelivery

# The account page lists this many invoices (the newest); the statements section pages through the rest.
ACCOUNT_INVOICES_LIMIT = 24

_DELIVERY_FIELDS = ("id", "invoice_id", "method", "recipient", "status", "sent_at", "print_batch_id")


def _with_deliveries(invoices: QuerySet[Invoice], *, full: bool = False) -> QuerySet[Invoice]:
    """Prefetch the deliveries: the fields the pages show, or every field with its print batch (API)."""
    deliveries = (
        InvoiceDelivery.objects.select_related("print_batch")
        if full
        else InvoiceDelivery.objects.only(*_DELIVERY_FIELDS)
    )
    return invoices.prefetch_related(Prefetch("deliveries", queryset=deliveries.order_by("id")))


def account_invoices(*, account: Account | int, limit: int = ACCOUNT_INVOICES_LIMIT) -> list[Invoice]:
    """The account's invoices, newest first, each with its statement (number, id) and its deliveries: two
    queries whatever their number (one when there are none)."""
    account_id = account if isinstance(account, int) else account.pk
    invoices = (
        Invoice.objects.filter(account_id=account_id)
        .select_related("statement", "corrects")
        .only(
            "id",
            "number",
            "kind",
            "invoice_date",
            "currency",
            "total_due",
            "status",
            "format",
            "language",
            "pdf",
            "html",
            "xml",
            "account_id",
            "statement__id",
            "statement__number",
            "statement__account_id",
            "corrects__id",
            "corrects__number",
        )  # fmt: skip
        .order_by("-invoice_date", "-id")
    )
    return list(_with_deliveries(invoices)[:limit])


def statement_invoice(*, statement: Statement | int) -> Invoice | None:
    """The invoice of one bill with its deliveries (two queries), or None while it has none."""
    statement_id = statement if isinstance(statement, int) else statement.pk
    return _with_deliveries(
        Invoice.objects.filter(statement_id=statement_id).select_related("corrects")
    ).first()


def invoices_listed() -> QuerySet[Invoice]:
    """Invoices newest first, with what lists show of their account, bill, series and original (the API's
    list: a fixed number of queries whatever the page size)."""
    return Invoice.objects.select_related("account", "statement", "series", "corrects").order_by(
        "-invoice_date", "-id"
    )


def invoice_by_number(*, number: str, with_deliveries: bool = False) -> Invoice:
    """The invoice with this number (numbers are unique across series). Raises NotFound."""
    invoices = invoices_listed().filter(number=number)
    if with_deliveries:
        invoices = _with_deliveries(invoices, full=True)
    invoice = invoices.first()
    if invoice is None:
        raise NotFound(f"No invoice {number}.", code="not_found")
    return invoice


def invoice_of_statement(*, statement_id: int) -> Invoice:
    """The invoice of this bill with its deliveries (the bill must have one)."""
    return _with_deliveries(invoices_listed(), full=True).get(statement_id=statement_id)
