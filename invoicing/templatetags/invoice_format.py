"""Formatting on invoices in the invoice's locale (``doc.locale``, e.g. de_DE), through Babel.

Filters take the document as their argument so that every amount, date and quantity of an invoice is
formatted for its reader whatever the server's locale: ``{{ amount|money:doc }}`` ("$355.08", "355,08 €"),
``{{ amount|amount:doc }}`` (the same without the currency sign, for table columns headed by the currency),
``{{ day|ldate:doc }}`` / ``{{ day|ldate_long:doc }}``, ``{{ quantity|qty:doc }}``,
``{{ ratio|percent:doc }}``.
Negative amounts print in the locale's accounting style (en_US: "($25.20)"; de_DE: "-25,20 €"), the same
way everywhere on the invoice. A locale Babel does not know falls back to en_US (as billing_mgmt.money does).

Labels of line types, ledger kinds, usage types and service types: ``line_type_label``, ``kind_label``,
``usage_label``, ``service_label`` (translated in the active language: rendering overrides it with the
invoice's language).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from functools import lru_cache
from typing import Any

from babel.core import Locale
from babel.dates import format_date, format_datetime, format_interval
from babel.numbers import format_decimal, format_percent, parse_pattern
from django import template
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from billing_mgmt.money import DEFAULT_LOCALE, _known_locale, quantize

register = template.Library()

LINE_TYPE_LABELS = {
    "recurring": _("Recurring"),
    "usage": _("Usage"),
    "one_time": _("One-time"),
    "discount": _("Discount"),
    "tax": _("Tax"),
    "adjustment": _("Adjustment"),
    "other": pgettext_lazy("line type", "Other"),
}

KIND_LABELS = {
    "payment": _("Payment"),
    "adjustment": _("Adjustment"),
    "reversal": _("Reversal"),
    "refund": _("Refund"),
    "write_off": _("Write-off"),
    "dispute_credit": _("Dispute credit"),
    "wallet_topup": _("Wallet top-up"),
    "wallet_debit": _("Wallet debit"),
    "opening_balance": _("Opening balance"),
    "bill": _("Bill"),
}

USAGE_LABELS = {
    "voice": _("Voice"),
    "sms": pgettext_lazy("usage type", "SMS"),
    "mms": pgettext_lazy("usage type", "MMS"),
    "data": _("Data"),
    "roaming": _("Roaming"),
}

SERVICE_LABELS = {
    "mobile": _("Mobile"),
    "broadband": _("Broadband"),
    "fixed": _("Fixed line"),
    "landline": _("Fixed line"),
    "tv": _("Television"),
    "gsm": pgettext_lazy("service type", "GSM"),
    "adsl": pgettext_lazy("service type", "ADSL"),
    "": _("Other charges"),
}


@lru_cache(maxsize=256)
def _locale(name: str) -> Locale:
    return Locale.parse(_known_locale(name or DEFAULT_LOCALE))


def _locale_of(doc: Any) -> str:
    locale = getattr(doc, "locale", None) if doc is not None else None
    return str(_locale(locale or DEFAULT_LOCALE))


def _currency_of(doc: Any) -> str:
    return getattr(doc, "currency", None) or "USD"


@lru_cache(maxsize=256)
def _amount_pattern(locale: str):
    """The locale's accounting pattern without the currency sign: the number as the locale writes money."""
    pattern = _locale(locale).currency_formats["accounting"].pattern
    bare = pattern.replace("¤", "").replace("\xa0", " ")
    bare = ";".join(part.strip() for part in bare.split(";"))
    return parse_pattern(bare)


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


@register.filter
def money(value: Any, doc: Any) -> str:
    """The amount with its currency, rounded to the currency's minor units, in the invoice's locale."""
    number = _decimal(value)
    if number is None:
        return ""
    currency, locale = _currency_of(doc), _locale_of(doc)
    rounded = quantize(number, currency)
    return (
        _locale(locale)
        .currency_formats["accounting"]
        .apply(rounded, _locale(locale), currency=currency, currency_digits=True)
    )


@register.filter
def amount(value: Any, doc: Any) -> str:
    """The amount without the currency sign (table columns headed with the currency)."""
    number = _decimal(value)
    if number is None:
        return ""
    currency, locale = _currency_of(doc), _locale_of(doc)
    return _amount_pattern(locale).apply(
        quantize(number, currency), _locale(locale), currency=currency, currency_digits=True
    )


@register.filter
def price(value: Any, doc: Any) -> str:
    """A unit price: the currency's minor units at least, more places when the rate has them."""
    number = _decimal(value)
    if number is None:
        return ""
    from billing_mgmt.money import minor_units

    places = max(minor_units(_currency_of(doc)), -number.normalize().as_tuple().exponent)
    pattern = "#,##0" + ("." + "0" * places if places > 0 else "")
    return format_decimal(number, format=pattern, locale=_locale(_locale_of(doc)))


@register.filter
def qty(value: Any, doc: Any) -> str:
    """A quantity without trailing zeros (780.000 -> "780", 1.5 -> "1.5" / "1,5")."""
    number = _decimal(value)
    if number is None:
        return ""
    return format_decimal(number.normalize(), format="#,##0.###", locale=_locale(_locale_of(doc)))


@register.filter
def percent(value: Any, doc: Any) -> str:
    """A ratio as a percentage (0.0724 -> "7.24%" / "7,24 %")."""
    number = _decimal(value)
    if number is None:
        return ""
    return format_percent(number, format="#,##0.##%", locale=_locale(_locale_of(doc)))


@register.filter
def ldate(value: dt.date | None, doc: Any) -> str:
    """A date in the locale's medium form (en_US "Nov 1, 2026", de_DE "01.11.2026")."""
    if not value:
        return ""
    return format_date(value, "medium", locale=_locale(_locale_of(doc)))


@register.simple_tag
def lperiod(start: dt.date | None, end: dt.date | None, doc: Any) -> str:
    """A period as short as the locale writes it (en_US "Nov 1 – 30, 2026", de_DE "1.–30. Nov. 2026"):
    a charge line's period fits beside its description on one line."""
    if not start or not end:
        return ldate(start or end, doc)
    return format_interval(start, end, "yMMMd", locale=_locale(_locale_of(doc)))


@register.filter
def ldate_long(value: dt.date | None, doc: Any) -> str:
    """A date in the locale's long form (en_US "November 1, 2026", de_DE "1. November 2026")."""
    if not value:
        return ""
    return format_date(value, "long", locale=_locale(_locale_of(doc)))


@register.filter
def ldatetime(value: dt.datetime | None, doc: Any) -> str:
    """A usage event's time, short (en_US "11/1/26, 9:05 AM", de_DE "01.11.26, 09:05")."""
    if not value:
        return ""
    return format_datetime(value, "short", locale=_locale(_locale_of(doc)))


@register.filter
def line_type_label(value: str) -> str:
    return str(LINE_TYPE_LABELS.get(value, value.replace("_", " ").capitalize()))


@register.filter
def kind_label(value: str) -> str:
    return str(KIND_LABELS.get(value, value.replace("_", " ").capitalize()))


@register.filter
def usage_label(value: str) -> str:
    return str(USAGE_LABELS.get((value or "").lower(), (value or "").replace("_", " ").capitalize()))


@register.filter
def service_label(value: str) -> str:
    key = (value or "").lower()
    if key in SERVICE_LABELS:
        return str(SERVICE_LABELS[key])
    return key.replace("-", " ").replace("_", " ").capitalize()


@register.filter
def is_negative(value: Any) -> bool:
    number = _decimal(value)
    return number is not None and number < 0


@register.filter
def negate(value: Any) -> Decimal | None:
    """Payments are kept positive on the bill and print as credits (source 003: "(15)")."""
    number = _decimal(value)
    return None if number is None else -number


@register.filter
def css(value: str) -> str:
    """An admin's extra CSS inside <style>: as written (quotes and ">" selectors intact) but never closing
    the style element. External url()s in it are harmless: rendering fetches nothing."""
    from django.utils.safestring import mark_safe

    return mark_safe((value or "").replace("<", ""))  # noqa: S308 - "<" removed: cannot end <style>
