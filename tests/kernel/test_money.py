from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from billing_mgmt.money import (
    CurrencyError,
    Money,
    allocate,
    currency_code_validator,
    format_money,
    is_quantized,
    locale_validator,
    minor_units,
    quantize,
    to_decimal,
    validate_currency,
)


@pytest.mark.parametrize(("currency", "places"), [("JPY", 0), ("USD", 2), ("EUR", 2), ("KWD", 3), ("BHD", 3)])
def test_minor_units_follow_iso_4217(currency, places):
    assert minor_units(currency) == places


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        # JPY: no minor unit
        ("2.5", "JPY", "3"),
        ("3.5", "JPY", "4"),  # half-up, not banker's rounding (which would give 4 here and 2 above)
        ("2.4999", "JPY", "2"),
        ("-2.5", "JPY", "-3"),  # half away from zero for negatives too
        ("-2.4", "JPY", "-2"),
        ("1234", "JPY", "1234"),
        # USD: cents
        ("0.005", "USD", "0.01"),
        ("0.015", "USD", "0.02"),
        ("0.025", "USD", "0.03"),  # banker's rounding would give 0.02
        ("0.0049", "USD", "0.00"),
        ("-0.005", "USD", "-0.01"),
        ("-0.0049", "USD", "0.00"),  # not "-0.00", which would print as "-$0.00"
        ("10", "USD", "10.00"),
        ("19.999", "USD", "20.00"),
        # KWD: fils (3 places)
        ("1.0005", "KWD", "1.001"),
        ("1.00049", "KWD", "1.000"),
        ("-1.0005", "KWD", "-1.001"),
        ("2", "KWD", "2.000"),
    ],
)
def test_quantize_rounds_half_up_to_minor_units(amount, currency, expected):
    result = quantize(amount, currency)
    # Compare the string, so that the number of places (the exponent) is checked as well as the value.
    assert str(result) == expected


def test_quantize_accepts_decimal_and_int():
    assert quantize(Decimal("1.005"), "USD") == Decimal("1.01")
    assert str(quantize(7, "USD")) == "7.00"


@pytest.mark.parametrize("value", [0.1, 1.0, float("nan")])
def test_floats_are_refused(value):
    with pytest.raises(TypeError):
        to_decimal(value)
    with pytest.raises(TypeError):
        quantize(value, "USD")
    with pytest.raises(TypeError):
        Money(value, "USD")


def test_money_multiplication_refuses_float():
    with pytest.raises(TypeError):
        Money(Decimal("1.00"), "USD") * 1.5
    assert Money(Decimal("1.10"), "USD") * 3 == Money(Decimal("3.30"), "USD")


@pytest.mark.parametrize("value", ["abc", "", "1,5", "NaN", "Infinity"])
def test_non_decimal_strings_are_refused(value):
    with pytest.raises(ValueError):
        to_decimal(value)


@pytest.mark.parametrize("code", ["ABC", "usd", "US", "USDX", "", None, 840])
def test_unknown_currency_is_refused(code):
    with pytest.raises(CurrencyError):
        validate_currency(code)
    with pytest.raises(CurrencyError):
        quantize("1", code)
    with pytest.raises(CurrencyError):
        Money(Decimal("1"), code)


def test_is_quantized():
    assert is_quantized(Decimal("1.23"), "USD")
    assert is_quantized(Decimal("1.2300"), "USD")  # trailing zeros are not extra precision
    assert not is_quantized(Decimal("1.234"), "USD")
    assert not is_quantized(Decimal("1.5"), "JPY")
    assert is_quantized(Decimal("1.234"), "KWD")


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        ("1234.5", "USD", "en_US", "$1,234.50"),
        ("1234.5", "USD", "de_DE", "1.234,50\xa0$"),
        ("1234.5", "EUR", "de_DE", "1.234,50\xa0€"),
        ("-1234.5", "EUR", "en_US", "-€1,234.50"),
        ("1234.5", "JPY", "en_US", "¥1,235"),  # rounded to the yen before display
        ("0.005", "USD", "en_US", "$0.01"),
        ("-0.001", "USD", "en_US", "$0.00"),
        ("1.0005", "KWD", "en_US", "KWD1.001"),
        ("1.0005", "KWD", "de_DE", "1,001\xa0KWD"),
    ],
)
def test_format_money_by_locale(amount, currency, locale, expected):
    assert format_money(Decimal(amount), currency, locale) == expected


def test_format_money_defaults_to_en_us():
    assert format_money(Decimal("5"), "USD") == "$5.00"
    assert format_money(Decimal("5"), "USD", "") == "$5.00"
    assert Money(Decimal("5"), "USD").format("de_DE") == "5,00\xa0$"


def test_money_arithmetic_in_one_currency():
    a = Money(Decimal("10.10"), "USD")
    b = Money(Decimal("0.95"), "USD")
    assert a + b == Money(Decimal("11.05"), "USD")
    assert a - b == Money(Decimal("9.15"), "USD")
    assert -a == Money(Decimal("-10.10"), "USD")
    assert Money.zero("JPY") == Money(Decimal(0), "JPY")
    assert str(Money(Decimal("0.125"), "USD")) == "0.13 USD"
    assert Money(Decimal("0.125"), "USD").rounded() == Money(Decimal("0.13"), "USD")


def test_money_refuses_mixed_currencies():
    usd = Money(Decimal("1"), "USD")
    eur = Money(Decimal("1"), "EUR")
    with pytest.raises(CurrencyError):
        usd + eur
    with pytest.raises(CurrencyError):
        usd - eur


def test_money_refuses_plain_numbers_in_addition():
    with pytest.raises(TypeError):
        Money(Decimal("1"), "USD") + Decimal("1")


def test_money_is_immutable():
    money = Money(Decimal("1"), "USD")
    with pytest.raises(AttributeError):
        money.amount = Decimal("2")


@pytest.mark.parametrize(
    ("total", "currency", "weights", "expected"),
    [
        ("100", "USD", [1, 1, 1], ["33.34", "33.33", "33.33"]),
        ("-100", "USD", [1, 1, 1], ["-33.34", "-33.33", "-33.33"]),
        ("100", "JPY", [1, 1, 1], ["34", "33", "33"]),
        ("1", "KWD", [1, 2], ["0.333", "0.667"]),
        ("0.05", "USD", [70, 30], ["0.04", "0.01"]),  # 0.035/0.015: the larger remainder gets the cent
        ("10", "USD", [0, 1], ["0.00", "10.00"]),
        ("10.005", "USD", [1, 1], ["5.01", "5.00"]),  # the total is rounded first: 10.01
    ],
)
def test_allocate_examples(total, currency, weights, expected):
    parts = allocate(Money(Decimal(total), currency), weights)
    assert [str(p.amount) for p in parts] == expected
    assert all(p.currency == currency for p in parts)


@pytest.mark.parametrize("weights", [[], [0, 0], [1, -1]])
def test_allocate_refuses_bad_weights(weights):
    with pytest.raises(ValueError):
        allocate(Money(Decimal("1"), "USD"), weights)


@given(
    amount=st.decimals(
        min_value=Decimal("-1000000"), max_value=Decimal("1000000"), places=4, allow_nan=False
    ),
    currency=st.sampled_from(["JPY", "USD", "KWD"]),
    weights=st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=12).filter(any),
)
def test_allocate_parts_always_sum_to_the_rounded_total(amount, currency, weights):
    total = Money(amount, currency)
    parts = allocate(total, weights)
    rounded = quantize(amount, currency)
    assert len(parts) == len(weights)
    assert sum(p.amount for p in parts) == rounded
    step = Decimal(1).scaleb(-minor_units(currency))
    weight_sum = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        assert is_quantized(part.amount, currency)
        # Each part is within one minor unit of its exact share.
        assert abs(part.amount - rounded * weight / weight_sum) < step
        if weight == 0:
            assert part.amount == 0


def test_format_money_falls_back_to_en_us_for_an_unknown_locale():
    assert format_money(Decimal("1234.5"), "EUR", "xx_NOPE") == "€1,234.50"


@pytest.mark.parametrize("code", ["USD", "JPY", "KWD"])
def test_currency_code_validator_accepts_iso_codes(code):
    currency_code_validator(code)


@pytest.mark.parametrize("code", ["usd", "XYZ", "US", "", "USDD"])
def test_currency_code_validator_refuses_other_codes(code):
    with pytest.raises(ValidationError):
        currency_code_validator(code)


@pytest.mark.parametrize(
    ("value", "ok"), [("en_US", True), ("de_DE", True), ("fr", True), ("xx_NOPE", False), ("", False)]
)
def test_locale_validator(value, ok):
    if ok:
        locale_validator(value)
    else:
        with pytest.raises(ValidationError):
            locale_validator(value)
