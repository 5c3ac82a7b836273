"""The rating engine beyond the hand-computed cases: arrears, one-time charges, late usage, discounts, tax
jurisdictions, concurrency, and properties that hold for any input (hypothesis)."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.db import close_old_connections, connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billruns.models import BillSegment, CalculationLine
from billruns.services import subscription_rate
from tests.billruns import builders as b
from tests.factories import AccountFactory

D = b.D
JUNE_1 = dt.date(2026, 6, 1)
JULY_1 = dt.date(2026, 7, 1)
AUG_1 = dt.date(2026, 8, 1)
HYPOTHESIS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def seg(sub, start):
    return BillSegment.objects.get(subscription=sub, period_start=start)


def line_sum(segment) -> Decimal:
    return sum((ln.amount for ln in segment.lines.all() if not ln.included), Decimal(0))


@pytest.mark.django_db
def test_arrears_charges_come_with_the_next_period():
    plan = b.plan()
    b.recurring(plan, "31.00", timing="arrears")
    sub = b.subscription(AccountFactory(), plan, dt.date(2026, 7, 11))  # July has 31 days
    subscription_rate(subscription=sub, bill_as_of=AUG_1)
    assert seg(sub, JULY_1).total == 0  # nothing in advance
    (line,) = seg(sub, AUG_1).lines.all()
    assert (line.period_start, line.period_end, line.amount) == (
        dt.date(2026, 7, 11),
        dt.date(2026, 7, 31),
        D("21.00"),
    )


@pytest.mark.django_db
def test_one_time_charges_fall_due_once_on_activation_and_termination():
    plan = b.plan()
    b.one_time(plan, "25.00")
    b.one_time(plan, "40.00", trigger="termination", name="Early termination fee")
    sub = b.subscription(AccountFactory(), plan, dt.date(2026, 6, 10))
    subscription_rate(subscription=sub, bill_as_of=JULY_1)
    assert [ln.amount for ln in seg(sub, JUNE_1).lines.all()] == [D("25.00")]
    assert not seg(sub, JULY_1).lines.exists()
    sub.end_date, sub.status = dt.date(2026, 7, 20), "cancelled"
    sub.save()
    subscription_rate(subscription=sub, bill_as_of=AUG_1)
    assert [(ln.description, ln.amount) for ln in seg(sub, AUG_1).lines.all()] == [
        ("Early termination fee", D("40.00"))
    ]


@pytest.mark.django_db
def test_late_usage_is_rated_with_the_period_it_belongs_to_and_tiers_count_each_unit_once():
    plan = b.plan()
    b.usage_component(plan, method="graduated", tiers=[(0, 1000, "0.05"), (1000, None, "0.03")])
    sub = b.subscription(AccountFactory(), plan, JUNE_1)
    b.usage(sub, 800, dt.date(2026, 6, 3))
    subscription_rate(subscription=sub, bill_as_of=JULY_1)
    assert seg(sub, JULY_1).total == D("40.00")
    b.usage(sub, 450, dt.date(2026, 6, 29))  # arrives after June was rated
    subscription_rate(subscription=sub, bill_as_of=AUG_1)
    late = seg(sub, AUG_1)
    kinds = [(ln.kind, ln.amount) for ln in late.lines.order_by("position")]
    assert kinds == [("usage", D("50.00")), ("usage", D("7.50")), ("prior", D("-40.00"))]
    assert late.total == D("17.50")  # 1250 minutes cost 57.50 in all


@pytest.mark.django_db
def test_fixed_discount_is_prorated_and_never_exceeds_the_charges():
    plan = b.plan()
    b.recurring(plan, "3.00")
    sub = b.subscription(AccountFactory(), plan, dt.date(2026, 6, 16))
    b.discount(kind="fixed", value="10.00", currency="USD", subscription=sub)
    subscription_rate(subscription=sub, bill_as_of=JULY_1)
    june, july = seg(sub, JUNE_1), seg(sub, JULY_1)
    assert (june.charges, june.discounts, june.total) == (D("1.50"), D("-1.50"), D(0))  # 5.00 wanted, capped
    assert (july.charges, july.discounts, july.total) == (D("3.00"), D("-3.00"), D(0))


@pytest.mark.django_db
def test_percentage_discount_effective_mid_period_covers_only_its_days():
    plan = b.plan()
    b.recurring(plan, "30.00")
    sub = b.subscription(AccountFactory(), plan, JUNE_1)
    b.discount(value="50", account=sub.account, valid_from=dt.date(2026, 6, 21))
    subscription_rate(subscription=sub, bill_as_of=JUNE_1)
    assert seg(sub, JUNE_1).discounts == D("-5.00")  # 50% of 10 of 30 days of 30.00


@pytest.mark.django_db
def test_tax_jurisdiction_comes_from_the_billing_address_when_the_subscription_has_none():
    category, _ = b.tax("5")
    acc = AccountFactory()
    acc.billing_profile.country, acc.billing_profile.region = "US", "TX"
    acc.billing_profile.save()
    plan = b.plan()
    b.recurring(plan, "20.00", tax_category=category)
    sub = b.subscription(acc, plan, JUNE_1)
    subscription_rate(subscription=sub, bill_as_of=JUNE_1)
    assert seg(sub, JUNE_1).taxes == D("1.00")
    other = AccountFactory()  # billing address in a country without a jurisdiction
    other.billing_profile.country = "FR"
    other.billing_profile.save()
    sub2 = b.subscription(other, plan, JUNE_1)
    result = subscription_rate(subscription=sub2, bill_as_of=JUNE_1)
    assert result.errors[0].error_code == "no_tax_jurisdiction"


@pytest.mark.django_db
def test_usage_the_plan_does_not_price_puts_the_segment_in_error():
    plan = b.plan()
    b.recurring(plan, "10.00")
    b.usage_type("sms", "msg")
    sub = b.subscription(AccountFactory(), plan, JUNE_1)
    b.usage(sub, 3, dt.date(2026, 6, 2), type_code="sms")
    result = subscription_rate(subscription=sub, bill_as_of=JULY_1)
    assert [s.period_start for s in result.created] == [JUNE_1]
    (error,) = result.errors
    assert (error.period_start, error.error_code) == (JULY_1, "usage_not_priced")
    assert sub.usage_records.get().status == "accepted"  # kept for the next attempt


@pytest.mark.django_db(transaction=True)
def test_concurrent_rating_of_one_subscription_makes_one_segment_per_period():
    plan = b.plan()
    b.recurring(plan, "30.00")
    sub = b.subscription(AccountFactory(), plan, JUNE_1)
    barrier, errors = threading.Barrier(4), []

    def rate():
        try:
            barrier.wait()
            subscription_rate(subscription=sub, bill_as_of=AUG_1)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=rate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    close_old_connections()
    assert errors == []
    assert list(BillSegment.objects.filter(subscription=sub).values_list("period_start", flat=True)) == [
        JUNE_1,
        JULY_1,
        AUG_1,
    ]


# --- properties --------------------------------------------------------------------------------------------

june_days = st.integers(min_value=1, max_value=30).map(lambda d: dt.date(2026, 6, d))
quantities = st.decimals(min_value=0, max_value=5000, places=3)


@pytest.mark.django_db
@HYPOTHESIS
@given(
    split_day=st.integers(min_value=2, max_value=30),
    first=st.decimals(min_value=0, max_value=1000, places=2),
    second=st.decimals(min_value=0, max_value=1000, places=2),
    start_day=st.integers(min_value=1, max_value=30),
)
def test_a_price_change_anywhere_in_a_period_bills_each_slice_by_its_days(
    split_day, first, second, start_day
):
    plan = b.plan()
    component = b.recurring(plan, first, valid_to=dt.date(2026, 6, split_day - 1))
    b.price(component, amount=second, freq="monthly", valid_from=dt.date(2026, 6, split_day))
    sub = b.subscription(AccountFactory(), plan, dt.date(2026, 6, start_day))
    subscription_rate(subscription=sub, bill_as_of=JUNE_1)
    segment = seg(sub, JUNE_1)
    days_first = max(0, split_day - start_day)
    days_second = 30 - max(split_day, start_day) + 1
    expected = b.D(0)
    if days_first:
        expected += (first * days_first / 30).quantize(D("0.01"), rounding="ROUND_HALF_UP")
    expected += (second * days_second / 30).quantize(D("0.01"), rounding="ROUND_HALF_UP")
    assert segment.total == line_sum(segment) == expected
    assert subscription_rate(subscription=sub, bill_as_of=JUNE_1).created == []


@pytest.mark.django_db
@HYPOTHESIS
@given(
    usage=st.lists(st.tuples(june_days, quantities), min_size=1, max_size=12),
    split=st.integers(min_value=0, max_value=12),
    method=st.sampled_from(["per_unit", "graduated", "volume"]),
    included=st.sampled_from([0, 100]),
)
def test_usage_rated_in_two_batches_costs_what_it_costs_at_once(usage, split, method, included):
    category, jurisdiction = b.tax("8.25")

    def build():
        plan = b.plan()
        b.usage_component(
            plan,
            method=method,
            unit_price="0.0125" if method == "per_unit" else None,
            tiers=[]
            if method == "per_unit"
            else [(0, 100, "0.10"), (100, 1000, "0.05"), (1000, None, "0.031")],
            included=included,
            tax_category=category,
        )
        b.discount(value="7.5", plan=plan)
        return b.subscription(AccountFactory(), plan, JUNE_1, jurisdiction=jurisdiction)

    at_once, in_two = build(), build()
    for day, quantity in usage:
        b.usage(at_once, quantity, day)
    for day, quantity in usage[:split]:
        b.usage(in_two, quantity, day)
    subscription_rate(subscription=at_once, bill_as_of=JULY_1)
    subscription_rate(subscription=in_two, bill_as_of=JULY_1)
    for day, quantity in usage[split:]:
        b.usage(in_two, quantity, day)
    subscription_rate(subscription=in_two, bill_as_of=AUG_1)

    def usage_charges(sub):
        kinds = [CalculationLine.Kind.USAGE, CalculationLine.Kind.PRIOR]
        return sum(
            CalculationLine.objects.filter(segment__subscription=sub, kind__in=kinds).values_list(
                "amount", flat=True
            ),
            Decimal(0),
        )

    assert usage_charges(in_two) == usage_charges(at_once)
    for segment in BillSegment.objects.filter(subscription__in=[at_once, in_two]):
        assert segment.total == line_sum(segment)
        assert segment.charges + segment.discounts + segment.taxes == segment.total
    assert subscription_rate(subscription=in_two, bill_as_of=AUG_1).created == []


@pytest.mark.django_db
def test_cancelling_rejects_usage_not_yet_rated_after_the_end_date():
    from billruns.services.subscriptions import subscription_cancel

    plan = b.plan()
    b.usage_component(plan, unit_price="0.10")
    sub = b.subscription(AccountFactory(), plan, JUNE_1)
    kept = b.usage(sub, 10, dt.date(2026, 6, 20))
    after = b.usage(sub, 5, dt.date(2026, 6, 25))
    subscription_cancel(subscription=sub, end_date=dt.date(2026, 6, 20), actor=None)
    kept.refresh_from_db()
    after.refresh_from_db()
    assert kept.status == "accepted"
    assert (after.status, after.rejection_code, after.subscription_id) == (
        "rejected",
        "outside_subscription_dates",
        None,
    )
    assert after.subscription_ref == str(sub.pk)
    subscription_rate(subscription=sub, bill_as_of=JULY_1)
    assert seg(sub, JULY_1).total == D("1.00")  # only the 10 minutes up to the end
