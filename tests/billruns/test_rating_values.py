"""The issue's "must be right" cases, with hand-computed expected values (rounding: half up, per line)."""

from __future__ import annotations

import datetime as dt

import pytest

from billruns.models import BillSegment, CalculationLine, UsageRecord
from billruns.services import subscription_rate
from tests.billruns import builders as b
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db

JUNE_1 = dt.date(2026, 6, 1)  # June has 30 days
JULY_1 = dt.date(2026, 7, 1)
D = b.D


def account(currency="USD"):
    acc = AccountFactory()
    acc.billing_profile.currency = currency
    acc.billing_profile.save()
    return acc


def segment(sub, start):
    return BillSegment.objects.get(subscription=sub, period_start=start)


def amounts(seg, kind=None):
    lines = seg.lines.order_by("position")
    return [ln.amount for ln in lines if kind is None or ln.kind == kind]


def test_advance_charge_from_the_10th_of_a_30_day_month_is_21_of_30():
    plan = b.plan()
    b.recurring(plan, "30.00")
    sub = b.subscription(account(), plan, dt.date(2026, 6, 10))
    result = subscription_rate(subscription=sub, bill_as_of=dt.date(2026, 6, 10))
    seg = result.created[0]
    assert (seg.period_start, seg.period_end) == (JUNE_1, dt.date(2026, 6, 30))
    (line,) = seg.lines.all()
    assert line.amount == D("21.00")
    assert line.proration_factor == D("0.7")
    assert (line.period_start, line.period_end) == (dt.date(2026, 6, 10), dt.date(2026, 6, 30))
    assert seg.total == D("21.00")


def _usage_segment(method, tiers, included=0, quantity=1250):
    plan = b.plan()
    b.usage_component(plan, method=method, tiers=tiers, included=included)
    sub = b.subscription(account(), plan, JUNE_1)
    b.usage(sub, quantity - 250, dt.date(2026, 6, 5))
    b.usage(sub, 250, dt.date(2026, 6, 25))
    subscription_rate(subscription=sub, bill_as_of=JULY_1)
    return sub, segment(sub, JULY_1)


def test_graduated_tiers_with_100_free_minutes_cost_52_50_for_1250_minutes():
    sub, seg = _usage_segment("graduated", [(0, 1000, "0.05"), (1000, None, "0.03")], included=100)
    lines = list(seg.lines.order_by("position"))
    assert [(ln.kind, ln.quantity, ln.amount) for ln in lines] == [
        (CalculationLine.Kind.ALLOWANCE, D(100), D(0)),
        (CalculationLine.Kind.USAGE, D(900), D("45.00")),
        (CalculationLine.Kind.USAGE, D(250), D("7.50")),
    ]
    assert all((ln.period_start, ln.period_end) == (JUNE_1, dt.date(2026, 6, 30)) for ln in lines)
    assert seg.total == D("52.50")
    assert {r.rating_status for r in sub.usage_records.select_related("rating")} == {UsageRecord.Status.RATED}


def test_volume_tiers_price_all_1250_minutes_at_the_tier_reached():
    _, seg = _usage_segment("volume", [(0, 1000, "0.05"), (1000, None, "0.03")])
    assert amounts(seg) == [D("37.50")]
    assert seg.lines.get().quantity == D(1250)


def test_price_change_on_day_16_prorates_15_days_at_each_price():
    plan = b.plan()
    component = b.recurring(plan, "30.00", valid_to=dt.date(2026, 6, 15))
    b.price(component, amount="45.00", freq="monthly", valid_from=dt.date(2026, 6, 16))
    sub = b.subscription(account(), plan, dt.date(2026, 1, 1))
    subscription_rate(subscription=sub, bill_as_of=JUNE_1)
    seg = segment(sub, JUNE_1)
    assert amounts(seg) == [D("15.00"), D("22.50")]
    assert seg.total == D("37.50")


def test_ten_percent_discount_then_8_25_percent_tax_on_100_rounds_7_425_half_up_to_97_43():
    category, jurisdiction = b.tax("8.25")
    plan = b.plan()
    b.recurring(plan, "100.00", tax_category=category)
    b.discount(value="10", plan=plan)
    sub = b.subscription(account(), plan, JUNE_1, jurisdiction=jurisdiction)
    subscription_rate(subscription=sub, bill_as_of=JUNE_1)
    seg = segment(sub, JUNE_1)
    assert amounts(seg) == [D("100.00"), D("-10.00"), D("7.43")]
    assert (seg.charges, seg.discounts, seg.taxes, seg.total) == (
        D("100.00"),
        D("-10.00"),
        D("7.43"),
        D("97.43"),
    )
    tax_line = seg.lines.get(kind=CalculationLine.Kind.TAX)
    assert tax_line.base == D("90.00")


def test_the_source_invoice_example_gross_348_discount_25_20_tax_32_28_net_355_08():
    """Source 003: gross 348, discount (25.20), tax 32.28, net 355.08. Here: a 252.00 monthly fee with 10% off
    recurring charges, 960 minutes at 0.10 (96.00) and 10% tax on both."""
    category, jurisdiction = b.tax("10")
    plan = b.plan()
    b.recurring(plan, "252.00", tax_category=category)
    b.usage_component(plan, unit_price="0.10", tax_category=category)
    b.discount(value="10", plan=plan, applies_to="recurring")
    sub = b.subscription(account(), plan, JUNE_1, jurisdiction=jurisdiction)
    b.usage(sub, 960, dt.date(2026, 6, 12))
    subscription_rate(subscription=sub, bill_as_of=JULY_1)
    seg = segment(sub, JULY_1)
    assert (seg.charges, seg.discounts, seg.taxes, seg.total) == (
        D("348.00"),
        D("-25.20"),
        D("32.28"),
        D("355.08"),
    )


@pytest.mark.parametrize(
    ("currency", "fee", "expected_fee", "expected_tax"),
    [
        ("JPY", "999", D("699"), D("58")),  # 999 x 21/30 = 699.3 -> 699; 699 x 8.25% = 57.6675 -> 58
        ("KWD", "9.999", D("6.999"), D("0.577")),  # 6.9993 -> 6.999; 6.999 x 8.25% = 0.5774175 -> 0.577
        ("USD", "9.99", D("6.99"), D("0.58")),  # 6.993 -> 6.99; 0.576675 -> 0.58
    ],
)
def test_amounts_round_to_the_currency_minor_units(currency, fee, expected_fee, expected_tax):
    category, jurisdiction = b.tax("8.25")
    plan = b.plan(currency=currency)
    b.recurring(plan, fee, tax_category=category)
    sub = b.subscription(account(currency), plan, dt.date(2026, 6, 10), jurisdiction=jurisdiction)
    subscription_rate(subscription=sub, bill_as_of=JUNE_1)
    seg = segment(sub, JUNE_1)
    assert amounts(seg) == [expected_fee, expected_tax]
    assert seg.total == expected_fee + expected_tax


def test_cancellation_on_day_20_credits_the_10_unused_days_billed_in_advance():
    plan = b.plan()
    b.recurring(plan, "30.00")
    sub = b.subscription(account(), plan, JUNE_1)
    subscription_rate(subscription=sub, bill_as_of=JUNE_1)
    assert segment(sub, JUNE_1).total == D("30.00")
    sub.end_date = dt.date(2026, 6, 20)
    sub.status = sub.Status.CANCELLED
    sub.save()
    subscription_rate(subscription=sub, bill_as_of=JULY_1)
    closing = segment(sub, JULY_1)
    (credit,) = closing.lines.all()
    assert credit.kind == CalculationLine.Kind.CREDIT
    assert credit.amount == D("-10.00")
    assert (credit.period_start, credit.period_end) == (dt.date(2026, 6, 21), dt.date(2026, 6, 30))
    # The closing period is the last: nothing more to rate, ever.
    assert subscription_rate(subscription=sub, bill_as_of=dt.date(2027, 1, 1)).created == []


def test_inclusive_tax_is_shown_but_not_added():
    category, jurisdiction = b.tax("20", inclusive=True, name="VAT")
    plan = b.plan()
    b.recurring(plan, "12.00", tax_category=category)
    sub = b.subscription(account(), plan, JUNE_1, jurisdiction=jurisdiction)
    subscription_rate(subscription=sub, bill_as_of=JUNE_1)
    seg = segment(sub, JUNE_1)
    assert (seg.charges, seg.taxes, seg.taxes_included, seg.total) == (
        D("12.00"),
        D("2.00"),
        D("2.00"),
        D("12.00"),
    )
    assert seg.new_charges == D("10.00")


def test_rating_twice_creates_nothing_new():
    plan = b.plan()
    b.recurring(plan, "30.00")
    sub = b.subscription(account(), plan, JUNE_1)
    first = subscription_rate(subscription=sub, bill_as_of=dt.date(2026, 8, 1))
    assert [s.period_start for s in first.created] == [JUNE_1, JULY_1, dt.date(2026, 8, 1)]
    again = subscription_rate(subscription=sub, bill_as_of=dt.date(2026, 8, 1))
    assert again.created == [] and again.errors == []
    assert BillSegment.objects.filter(subscription=sub).count() == 3


def test_a_period_without_a_price_is_saved_with_its_error_and_rated_again_once_fixed():
    plan = b.plan()
    component = b.recurring(plan, "30.00", valid_to=dt.date(2026, 6, 15))
    sub = b.subscription(account(), plan, JUNE_1)
    result = subscription_rate(subscription=sub, bill_as_of=JUNE_1)
    (seg,) = result.errors
    assert seg.status == BillSegment.Status.ERROR and seg.error_code == "no_price"
    assert "2026-06-16" in seg.error_message
    assert not seg.lines.exists()
    b.price(component, amount="30.00", freq="monthly", valid_from=dt.date(2026, 6, 16))
    result = subscription_rate(subscription=sub, bill_as_of=JUNE_1)
    (seg,) = result.created
    assert seg.status == BillSegment.Status.RATED and seg.total == D("30.00") and seg.error_code == ""


def test_calculation_lines_cannot_be_changed_or_deleted_in_the_database():
    from django.db import IntegrityError, transaction

    plan = b.plan()
    b.recurring(plan, "30.00")
    sub = b.subscription(account(), plan, JUNE_1)
    subscription_rate(subscription=sub, bill_as_of=JUNE_1)
    line = CalculationLine.objects.get(segment__subscription=sub)
    with pytest.raises(IntegrityError), transaction.atomic():
        CalculationLine.objects.filter(pk=line.pk).update(amount=D("1.00"))
    with pytest.raises(IntegrityError), transaction.atomic():
        CalculationLine.objects.filter(pk=line.pk).delete()
    assert CalculationLine.objects.get(pk=line.pk).amount == D("30.00")
