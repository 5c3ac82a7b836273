"""Money: Decimal amounts with their ISO 4217 currency.

One rounding rule for the whole product: ROUND_HALF_UP ("commercial rounding", 0.005 USD -> 0.01) to the
currency's minor units as ISO 4217 defines them (JPY 0, USD 2, KWD 3), which is what invoices and tax
authorities expect. Rates and unit prices may carry more places (RATE_DECIMAL_PLACES); only amounts that
post to the ledger or print on a bill are quantized.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache

from babel.core import Locale, UnknownLocaleError
from babel.numbers import format_currency, get_currency_precision, list_currencies
from django.core.exceptions import ValidationError
from django.db import models

ROUNDING = ROUND_HALF_UP

# Database sizes for every money column: enough for 10^14 in any currency, with room for KWD/BHD (3 places)
# and one guard digit. Rates carry more places.
AMOUNT_MAX_DIGITS = 19
AMOUNT_DECIMAL_PLACES = 4
RATE_MAX_DIGITS = 24
RATE_DECIMAL_PLACES = 8


class CurrencyError(ValueError):
    pass


@lru_cache(maxsize=1)
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def validate_currency(code: str) -> str:
    """Return the code if it is an ISO 4217 currency Babel knows, else raise CurrencyError."""
    if not isinstance(code, str) or len(code) != 3 or code.upper() != code or code not in _known_currencies():
        raise CurrencyError(f"'{code}' is not an ISO 4217 currency code.")
    return code


@lru_cache(maxsize=512)
def minor_units(currency: str) -> int:
    """Number of decimal places of the currency's minor unit (JPY 0, USD 2, KWD 3)."""
    return get_currency_precision(validate_currency(currency))


def to_decimal(value: Decimal | int | str) -> Decimal:
    """Exact conversion; floats are refused because they cannot hold cents exactly."""
    if isinstance(value, float):
        raise TypeError("Money must not be a float; pass a Decimal, int or str.")
    if isinstance(value, Decimal):
        result = value
    else:
        try:
            result = Decimal(value)
        except (InvalidOperation, TypeError) as exc:
            raise ValueError(f"'{value}' is not a decimal amount.") from exc
    if not result.is_finite():
        raise ValueError(f"'{value}' is not a finite amount.")
    return result


@lru_cache(maxsize=512)
def _minor_unit(currency: str) -> Decimal:
    """The currency's minor unit as an exponent for Decimal.quantize (USD: 0.01)."""
    return Decimal(1).scaleb(-minor_units(currency))


def quantize(amount: Decimal | int | str, currency: str) -> Decimal:
    """Round an amount to the currency's minor units with the product's one rounding rule."""
    result = to_decimal(amount).quantize(_minor_unit(currency), rounding=ROUNDING)
    # -0.004 USD rounds to a negative zero, which would print as "-$0.00": drop the sign of zero.
    return result if result else abs(result)


def is_quantized(amount: Decimal, currency: str) -> bool:
    """True when the amount has no more places than the currency's minor unit allows."""
    return to_decimal(amount) == quantize(amount, currency)


DEFAULT_LOCALE = "en_US"


@lru_cache(maxsize=256)
def _known_locale(locale: str) -> str:
    try:
        Locale.parse(locale)
    except (UnknownLocaleError, ValueError, TypeError):
        return DEFAULT_LOCALE
    return locale


def format_money(amount: Decimal, currency: str, locale: str = DEFAULT_LOCALE) -> str:
    """Locale-aware display, e.g. 1234.5 USD -> '$1,234.50' (en_US) or '1.234,50 $' (de_DE).

    A locale Babel does not know (old data, a typo) falls back to en_US: an amount is always shown.
    """
    return format_currency(
        quantize(amount, currency), currency, locale=_known_locale(locale or DEFAULT_LOCALE)
    )


def currency_code_validator(value: str) -> None:
    """Django validator: an ISO 4217 code Babel knows (so its minor units are known)."""
    try:
        validate_currency(value)
    except CurrencyError as exc:
        raise ValidationError(str(exc), code="invalid_currency") from exc


def locale_validator(value: str) -> None:
    """Django validator: a locale or language Babel can format in, e.g. 'en_US', 'de_DE', 'fr'."""
    try:
        Locale.parse(value)
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise ValidationError(
            f"'{value}' is not a known locale (use e.g. 'en_US', 'de_DE').", code="locale"
        ) from exc


@dataclass(frozen=True, slots=True)
class Money:
    """An amount with its currency. Arithmetic refuses to mix currencies."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        validate_currency(self.currency)
        object.__setattr__(self, "amount", to_decimal(self.amount))

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError("Money can only be combined with Money.")
        if other.currency != self.currency:
            raise CurrencyError(f"Cannot combine {self.currency} with {other.currency}.")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        if isinstance(factor, float):
            raise TypeError("Multiply money by a Decimal or int, not a float.")
        return Money(self.amount * factor, self.currency)

    def rounded(self) -> Money:
        return Money(quantize(self.amount, self.currency), self.currency)

    def format(self, locale: str = "en_US") -> str:
        return format_money(self.amount, self.currency, locale)

    def __str__(self) -> str:
        return f"{quantize(self.amount, self.currency)} {self.currency}"


def allocate(total: Money, weights: list[Decimal | int]) -> list[Money]:
    """Split an amount into rounded parts proportional to weights, summing exactly to the rounded total.

    Remainders go to the parts with the largest fractional loss first (largest remainder method), so a
    tax or discount spread over lines never loses or invents a cent.
    """
    if not weights or any(to_decimal(w) < 0 for w in weights):
        raise ValueError("Weights must be a non-empty list of non-negative numbers.")
    currency = total.currency
    rounded_total = quantize(total.amount, currency)
    weight_sum = sum(to_decimal(w) for w in weights)
    if weight_sum == 0:
        raise ValueError("Weights must not all be zero.")
    step = Decimal(1).scaleb(-minor_units(currency))
    exact = [rounded_total * to_decimal(w) / weight_sum for w in weights]
    parts = [e.quantize(step, rounding="ROUND_DOWN") for e in exact]
    remainder = rounded_total - sum(parts)
    units = int((remainder / step).to_integral_value())
    direction = 1 if units >= 0 else -1
    order = sorted(range(len(exact)), key=lambda i: (exact[i] - parts[i]) * direction, reverse=True)
    for i in order[: abs(units)]:
        parts[i] += step * direction
    return [Money(p, currency) for p in parts]


def money_field(**kwargs) -> models.DecimalField:
    """A DecimalField sized for amounts; place it beside a 3-letter ``currency`` field."""
    return models.DecimalField(max_digits=AMOUNT_MAX_DIGITS, decimal_places=AMOUNT_DECIMAL_PLACES, **kwargs)


def rate_field(**kwargs) -> models.DecimalField:
    """A DecimalField sized for unit prices and rates, which carry more places than amounts."""
    return models.DecimalField(max_digits=RATE_MAX_DIGITS, decimal_places=RATE_DECIMAL_PLACES, **kwargs)


def currency_field(**kwargs) -> models.CharField:
    kwargs.setdefault("max_length", 3)
    kwargs.setdefault("validators", [currency_code_validator])
    return models.CharField(**kwargs)
