"""The "Billing & usage" section of the account page: three kinds of charts drawn by Chart.js.

The data travels in ``json_script`` blocks (amounts as exact decimal strings); the static
``statements/charts.js`` draws every chart it finds on the page from them, also after an HTMX swap. Each
chart has a visible caption, an aria-label on its canvas and a data table, so nothing is only a picture.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.dateformat import format as format_date

from accounts.models import Account
from billing_mgmt.money import format_money, quantize
from billing_mgmt.sections import is_partial
from statements import selectors
from statements.selectors.charts import BILLING_MONTHS, CHARGE_TYPE_MONTHS, USAGE_MONTHS

from .statements import account_currency, account_locale, usage_label

# Okabe-Ito: told apart with every common colour-vision deficiency, and readable on white. The account's
# billers take them in the order of their ids, so a biller keeps its colour from one visit to the next.
PALETTE = ["#0072b2", "#e69f00", "#009e73", "#d55e00", "#56b4e9", "#cc79a7", "#8c6d1f", "#7c8796"]
LINE_TYPE_COLOURS = {
    "recurring": "#0072b2",
    "usage": "#e69f00",
    "one_time": "#009e73",
    "other": "#7c8796",
    "tax": "#cc79a7",
    "adjustment": "#56b4e9",
    "discount": "#d55e00",
}
# Usage charts are not about billers: one neutral colour, so that nobody reads a biller into them.
USAGE_COLOUR = "#1f5fbf"
USAGE_CHARTS_SHOWN = 6


def biller_colours(biller_ids: Iterable[int]) -> dict[int, str]:
    """A colour per biller, in the order of their ids (beyond eight billers, colours repeat)."""
    return {biller_id: PALETTE[i % len(PALETTE)] for i, biller_id in enumerate(sorted(set(biller_ids)))}


def _js_locale(locale: str) -> str:
    return (locale or "en_US").replace("_", "-")


def _money(amount: Decimal, currency: str, locale: str) -> str:
    return format_money(amount, currency, locale) if currency else f"{amount:.2f}"


def _amount_json(amount: Decimal, currency: str) -> str:
    """An exact decimal string for the chart's data, in the currency's minor units ("46.50")."""
    return str(quantize(amount, currency)) if currency else str(amount)


def _quantity_json(quantity: Decimal | None) -> str | None:
    """A quantity without trailing zeros or an exponent ("1000", "640.25"); None for a month not reported."""
    return None if quantity is None else format(quantity.normalize(), "f")


def _first_showing(request: HttpRequest) -> bool:
    match = request.resolver_match
    return match is not None and match.url_name == "account-part"


def _billing_chart(account: Account, currency: str, locale: str) -> dict:
    data = selectors.billing_by_month(account_id=account.pk, currency=currency or None)
    labels = [format_date(month, "M Y") for month in data.months]
    colours = biller_colours(s.biller_id for s in data.series)
    totals = data.month_totals
    busiest = max(range(len(totals)), key=lambda i: totals[i]) if data.series else None
    summary = (
        f"Stacked bar chart of billing by month for the last {BILLING_MONTHS} months, by biller "
        f"({', '.join(s.biller_name for s in data.series)}): {_money(data.total, currency, locale)} in total"
        + (
            f"; highest month {labels[busiest]} with {_money(totals[busiest], currency, locale)}."
            if busiest is not None
            else "."
        )
    )
    spec = {
        "kind": "bar",
        "labels": labels,
        "currency": currency,
        "locale": _js_locale(locale),
        "datasets": [
            {
                "label": s.biller_name,
                "data": [_amount_json(v, currency) for v in s.values],
                "color": colours[s.biller_id],
            }
            for s in data.series
        ],
    }
    rows = [
        {
            "label": labels[i],
            "values": [_money(s.values[i], currency, locale) for s in data.series],
            "total": _money(totals[i], currency, locale),
        }
        for i in range(len(labels))
    ]
    return {
        "data": data,
        "spec": spec,
        "summary": summary,
        "rows": rows,
        "billers": [
            {"name": s.biller_name, "color": colours[s.biller_id], "total": _money(s.total, currency, locale)}
            for s in data.series
        ],
        "total": _money(data.total, currency, locale),
        "series_totals": [_money(s.total, currency, locale) for s in data.series],
    }


def _charge_type_chart(account: Account, currency: str, locale: str) -> dict:
    data = selectors.billing_by_charge_type(account_id=account.pk, currency=currency or None)
    drawn = data.positive
    drawn_total = sum((t.amount for t in drawn), Decimal(0))
    spec = {
        "kind": "pie",
        "labels": [t.label for t in drawn],
        "currency": currency,
        "locale": _js_locale(locale),
        "datasets": [
            {
                "label": "Billed",
                "data": [_amount_json(t.amount, currency) for t in drawn],
                "colors": [LINE_TYPE_COLOURS.get(t.line_type, "#bab0ac") for t in drawn],
            }
        ],
    }
    rows = [
        {
            "label": t.label,
            "line_type": t.line_type,
            "amount": _money(t.amount, currency, locale),
            "share": (
                f"{(t.amount / drawn_total * 100).quantize(Decimal('0.1'))}%"
                if t.amount > 0 and drawn_total
                else "—"
            ),
            "lines": t.lines,
            "color": LINE_TYPE_COLOURS.get(t.line_type, "#bab0ac"),
            "credit": t.amount < 0,
        }
        for t in data.totals
    ]
    parts = ", ".join(f"{r['label']} {r['amount']}" for r in rows if not r["credit"])
    summary = (
        f"Pie chart of billing by charge type over the last {CHARGE_TYPE_MONTHS} months: {parts}."
        if drawn
        else "No charges to draw."
    )
    return {
        "data": data,
        "spec": spec,
        "summary": summary,
        "rows": rows,
        "total": _money(data.total, currency, locale),
        "has_credits": any(r["credit"] for r in rows),
    }


def _usage_charts(account: Account, locale: str) -> dict:
    data = selectors.usage_by_month(account_id=account.pk)
    labels = [format_date(month, "M Y") for month in data.months]
    charts = []
    for index, series in enumerate(data.series[:USAGE_CHARTS_SHOWN]):
        title = f"{usage_label(series.usage_type)} ({series.unit})"
        reported = [v for v in series.values if v is not None]
        peak = max(range(len(labels)), key=lambda i: series.values[i] or Decimal(0))
        charts.append(
            {
                "key": f"usage-{index}",
                "data_id": f"chart-usage-{index}-data",
                "title": title,
                "spec": {
                    "kind": "line",
                    "labels": labels,
                    "unit": series.unit,
                    "locale": _js_locale(locale),
                    "datasets": [
                        {
                            "label": title,
                            "data": [_quantity_json(v) for v in series.values],
                            "color": USAGE_COLOUR,
                        }
                    ],
                },
                "summary": (
                    f"Line chart of {title} by month over the last {USAGE_MONTHS} months: "
                    f"{len(reported)} month{'s' if len(reported) != 1 else ''} reported, "
                    f"peak {labels[peak]}."
                ),
                "rows": [
                    {"label": labels[i], "value": series.values[i]}
                    for i in range(len(labels))
                    if series.values[i] is not None
                ],
                "total": series.total,
                "unit": series.unit,
            }
        )
    return {"charts": charts, "hidden": max(len(data.series) - USAGE_CHARTS_SHOWN, 0)}


def charts_section(request: HttpRequest, account: Account) -> str:
    """Four queries whatever the history: billing by month, by charge type (two), usage by month."""
    currency = account_currency(account)
    locale = account_locale(account)
    return render_to_string(
        "statements/sections/charts.html",
        {
            "account": account,
            "locale": locale,
            "currency": currency,
            "billing": _billing_chart(account, currency, locale),
            "charge_types": _charge_type_chart(account, currency, locale),
            "usage": _usage_charts(account, locale),
            "billing_months": BILLING_MONTHS,
            "charge_type_months": CHARGE_TYPE_MONTHS,
            "usage_months": USAGE_MONTHS,
            # The page that first shows the section loads Chart.js and the drawing script once; an HTMX
            # refresh of the section only brings new data (charts.js redraws after the swap). The account
            # page's lazy part that first brings the section (accounts.views.account_part) loads them too.
            "load_scripts": not is_partial(request) or _first_showing(request),
        },
        request=request,
    )
