"""Reports for billing admins, inside Django admin: billed amounts by month, biller and charge type; and
reconciliation differences between billers' balances and the ledger. Each downloads as CSV (``?format=csv``).

Billing admins and superusers only (a CSR gets 403, even one with staff status). The URLs hang off the
statement admin (``/admin/statements/statement/reports/...``); the statement list and the admin index link
to them. The numbers come from statements.selectors.reports; these views only filter and shape them.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterable
from decimal import Decimal
from functools import update_wrapper
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from accounts.models import Biller
from billing_mgmt.money import CurrencyError, quantize
from billing_mgmt.roles import BILLING_ADMIN, has_role
from statements import selectors
from statements.models import StatementLine

# The reconciliation page lists at most this many rows; the CSV has them all.
RECONCILIATION_PAGE_ROWS = 500

REPORTS = (
    ("statements_report_billed", "Billed amounts by month, biller and charge type"),
    ("statements_report_reconciliation", "Reconciliation differences (billers' balances vs. ledger)"),
)


def can_view_reports(user) -> bool:
    return has_role(user, BILLING_ADMIN)  # superusers too


def report_links(user) -> list[dict[str, str]]:
    """The reports this user may open, for the statement list and the admin index."""
    if not can_view_reports(user):
        return []
    return [{"url": reverse(f"admin:{name}"), "title": title} for name, title in REPORTS]


def report_urls(model_admin) -> list:
    def wrap(view: Callable[..., HttpResponse]):
        def wrapper(request: HttpRequest) -> HttpResponse:
            # Not admin_site.admin_view: that sends a logged-in non-staff user to the login form; a CSR who
            # is not allowed here should be told so (403).
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path(), reverse("admin:login"))
            if not can_view_reports(request.user):
                raise PermissionDenied
            return view(model_admin, request)

        return never_cache(update_wrapper(wrapper, view))

    return [
        path("reports/billed/", wrap(billed_report), name="statements_report_billed"),
        path("reports/reconciliation/", wrap(reconciliation_report), name="statements_report_reconciliation"),
    ]


# --- shared -----------------------------------------------------------------------------------------------


def _amount(value: Decimal | None, currency: str) -> str:
    """A plain decimal string rounded to the currency's minor unit ("1234.50", "1200" for JPY)."""
    value = value if value is not None else Decimal(0)
    try:
        return format(quantize(value, currency), "f")
    except CurrencyError:  # a code Babel no longer knows: show the amount as stored
        return format(value, "f")


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def _csv_response(filename: str, header: list[str], rows: Iterable[list[Any]]) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def lines():
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _context(model_admin, request: HttpRequest, title: str, **extra) -> dict[str, Any]:
    return {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": title,
        "report_links": report_links(request.user),
        **extra,
    }


def _csv_url(filters: QueryDict) -> str:
    params = filters.copy()
    params["format"] = "csv"
    return f"?{params.urlencode()}"


def _wants_csv(request: HttpRequest) -> bool:
    return request.GET.get("format") == "csv"


# --- billed amounts ---------------------------------------------------------------------------------------


class BilledFilterForm(forms.Form):
    date_from = forms.DateField(
        label="Statement date from", widget=forms.DateInput(attrs={"type": "date"}), required=False
    )
    date_to = forms.DateField(label="to", widget=forms.DateInput(attrs={"type": "date"}), required=False)
    biller = forms.ModelChoiceField(
        queryset=Biller.objects.order_by("name"), required=False, empty_label="All"
    )

    FIELDS = ("date_from", "date_to", "biller")

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The range ends before it starts.")
        return cleaned


def _default_range(today: dt.date) -> QueryDict:
    """The last twelve months, this one included."""
    month = today.month - 11
    year = today.year + (month - 1) // 12
    month = (month - 1) % 12 + 1
    return QueryDict(urlencode({"date_from": dt.date(year, month, 1), "date_to": today}))


LINE_TYPE_LABELS = dict(StatementLine.Type.choices)


def billed_report(model_admin, request: HttpRequest) -> HttpResponse:
    filters = request.GET
    if not any(k in filters for k in BilledFilterForm.FIELDS):
        filters = _default_range(timezone.localdate())
    form = BilledFilterForm(filters)
    title = "Billed amounts by month, biller and charge type"
    if not form.is_valid():
        context = _context(model_admin, request, title, form=form, report=None)
        return TemplateResponse(request, "admin/statements/reports/billed.html", context, status=400)
    date_from, date_to = form.cleaned_data["date_from"], form.cleaned_data["date_to"]
    biller = form.cleaned_data["biller"]
    report = selectors.billed_amounts(
        date_from=date_from, date_to=date_to, biller_id=biller.pk if biller else None
    )
    line_types = report.line_types

    if _wants_csv(request):
        header = [
            "month", "biller_code", "biller_name", "currency", "statements", "usage_detail_purged",
            *line_types, "new_charges", "taxes", "billed",
        ]  # fmt: skip
        rows = (
            [
                f"{row.month:%Y-%m}",
                row.biller_code,
                row.biller_name,
                row.currency,
                row.statements,
                row.usage_detail_purged,
                *(_amount(row.line_amount(t), row.currency) for t in line_types),
                _amount(row.new_charges, row.currency),
                _amount(row.taxes, row.currency),
                _amount(row.billed, row.currency),
            ]
            for row in report.rows
        )
        span = f"{date_from or 'start'}-to-{date_to or 'end'}"
        suffix = f"-{biller.code}" if biller else ""
        return _csv_response(f"billed-amounts-{span}{suffix}.csv", header, rows)

    def shaped(item, **keys) -> dict[str, Any]:
        return {
            **keys,
            "currency": item.currency,
            "statements": item.statements,
            "usage_detail_purged": item.usage_detail_purged,
            "lines": [_amount(item.line_amount(t), item.currency) for t in line_types],
            "new_charges": _amount(item.new_charges, item.currency),
            "taxes": _amount(item.taxes, item.currency),
            "billed": _amount(item.billed, item.currency),
        }

    context = _context(
        model_admin,
        request,
        title,
        form=form,
        report=report,
        line_type_labels=[LINE_TYPE_LABELS[t] for t in line_types],
        rows=[shaped(row, month=row.month, biller=row.biller_name) for row in report.rows],
        totals=[shaped(total) for total in report.totals],
        purged=any(total.usage_detail_purged for total in report.totals),
        csv_url=_csv_url(filters),
    )
    return TemplateResponse(request, "admin/statements/reports/billed.html", context)


# --- reconciliation differences ---------------------------------------------------------------------------


class ReconciliationFilterForm(forms.Form):
    biller = forms.ModelChoiceField(
        queryset=Biller.objects.order_by("name"), required=False, empty_label="All"
    )


def reconciliation_report(model_admin, request: HttpRequest) -> HttpResponse:
    form = ReconciliationFilterForm(request.GET)
    title = "Reconciliation differences"
    if not form.is_valid():
        context = _context(model_admin, request, title, form=form, rows=None)
        return TemplateResponse(request, "admin/statements/reports/reconciliation.html", context, status=400)
    biller = form.cleaned_data["biller"]
    biller_id = biller.pk if biller else None

    if _wants_csv(request):
        header = [
            "account_number", "account_name", "biller_code", "biller_name", "currency", "as_of",
            "biller_balance", "ledger_balance", "difference",
        ]  # fmt: skip
        rows = (
            [
                row.account_number,
                row.account_name,
                row.biller_code,
                row.biller_name,
                row.currency,
                row.as_of.isoformat(),
                _amount(row.biller_amount, row.currency),
                _amount(row.ledger_amount, row.currency),
                _amount(row.difference, row.currency),
            ]
            for row in selectors.reconciliation_report(biller_id=biller_id)
        )
        suffix = f"-{biller.code}" if biller else ""
        return _csv_response(f"reconciliation-differences-{timezone.localdate()}{suffix}.csv", header, rows)

    found = selectors.reconciliation_report(biller_id=biller_id, limit=RECONCILIATION_PAGE_ROWS + 1)
    rows = [
        {
            "account_url": reverse("account-detail", args=[row.account_number]),
            "account_number": row.account_number,
            "account_name": row.account_name,
            "biller": row.biller_name,
            "currency": row.currency,
            "as_of": row.as_of,
            "biller_amount": _amount(row.biller_amount, row.currency),
            "ledger_amount": _amount(row.ledger_amount, row.currency),
            "difference": _amount(row.difference, row.currency),
        }
        for row in found[:RECONCILIATION_PAGE_ROWS]
    ]
    context = _context(
        model_admin,
        request,
        title,
        form=form,
        rows=rows,
        truncated=len(found) > RECONCILIATION_PAGE_ROWS,
        page_rows=RECONCILIATION_PAGE_ROWS,
        csv_url=_csv_url(request.GET),
    )
    return TemplateResponse(request, "admin/statements/reports/reconciliation.html", context)
