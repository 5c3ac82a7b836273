"""Template formatting of statement figures in the account's locale: ``{% load statement_format %}``.

Amounts go through billing_mgmt.money.format_money (rounded to the currency's minor unit); unit prices keep
the places the biller sent (a rate of 0.0125 per minute is not a cent); quantities drop trailing zeros.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from babel.core import Locale, UnknownLocaleError
from babel.numbers import format_currency, format_decimal
from django import template

from billing_mgmt.money import DEFAULT_LOCALE, format_money

register = template.Library()


@lru_cache(maxsize=64)
def _locale(locale: str) -> str:
    # format_money falls back to en_US on a locale Babel does not know; the other formats do the same.
    try:
        Locale.parse(locale or DEFAULT_LOCALE)
    except (UnknownLocaleError, ValueError, TypeError):
        return DEFAULT_LOCALE
    return locale or DEFAULT_LOCALE


def _plain(value: Decimal) -> Decimal:
    """Without trailing zeros, and without the exponent normalize() gives round numbers (1000 -> 1E+3)."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


@register.simple_tag
def money(amount: Decimal | None, currency: str, locale: str = DEFAULT_LOCALE) -> str:
    if amount is None or amount == "":
        return ""
    return format_money(amount, currency, locale)


@register.simple_tag
def unit_price(amount: Decimal | None, currency: str, locale: str = DEFAULT_LOCALE) -> str:
    if amount is None or amount == "":
        return ""
    return format_currency(
        _plain(Decimal(amount)), currency, locale=_locale(locale), decimal_quantization=False
    )


@register.simple_tag
def quantity(value: Decimal | None, locale: str = DEFAULT_LOCALE) -> str:
    if value is None or value == "":
        return ""
    return format_decimal(_plain(Decimal(value)), locale=_locale(locale), decimal_quantization=False)
