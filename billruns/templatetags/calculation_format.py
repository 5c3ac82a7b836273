"""How calculation lines read on the CSR pages: ``{% load calculation_format %}``.

A line's ``rate`` is a price (per unit or per period) or, for percentage discounts and taxes (the lines that
carry a ``base``), a percent; the proration factor is days charged / days in the period.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django import template

from billing_mgmt.money import DEFAULT_LOCALE
from statements.templatetags.statement_format import quantity, unit_price

register = template.Library()

PERCENT_KINDS = ("discount", "tax")
FACTOR_SHOWN = Decimal("0.0001")


@register.simple_tag
def calc_rate(kind: str, rate: Decimal | None, base: Decimal | None, currency: str,
              locale: str = DEFAULT_LOCALE) -> str:  # fmt: skip
    if rate is None:
        return ""
    if kind in PERCENT_KINDS and base is not None:
        return f"{quantity(rate, locale)}%"
    return unit_price(rate, currency, locale)


@register.simple_tag
def factor(value: Decimal | None, locale: str = DEFAULT_LOCALE) -> str:
    """0.7000000000 -> "0.7"; 0.3333333333 -> "0.3333" (the amount was computed from the exact days)."""
    if value is None or value == "":
        return ""
    return quantity(Decimal(value).quantize(FACTOR_SHOWN, rounding=ROUND_HALF_UP), locale)
