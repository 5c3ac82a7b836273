"""Small builders for catalog, subscriptions and usage in tests (explicit values, no randomness)."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

from django.utils import timezone

from billruns.models import (
    BillingFrequency,
    BillingTermScheme,
    Discount,
    PlanComponent,
    Price,
    PricePlan,
    PriceTier,
    Product,
    Subscription,
    TaxCategory,
    TaxJurisdiction,
    TaxRate,
    UsageRecord,
    UsageToRate,
    UsageType,
)

EPOCH = dt.date(2000, 1, 1)
_seq = itertools.count(1)


def D(value) -> Decimal:
    return Decimal(str(value))


def frequency(code: str = "monthly") -> BillingFrequency:
    return BillingFrequency.objects.get(code=code)


def scheme(code: str = "standard") -> BillingTermScheme:
    return BillingTermScheme.objects.get(code=code)


def plan(currency: str = "USD", name: str = "Mobile 30", service_type: str = "mobile") -> PricePlan:
    n = next(_seq)
    product = Product.objects.create(code=f"product-{n}", name=f"{name} product", service_type=service_type)
    return PricePlan.objects.create(
        code=f"plan-{n}", name=name, product=product, currency=currency, billing_term_scheme=scheme()
    )


def recurring(
    plan: PricePlan,
    amount,
    *,
    timing: str = "advance",
    freq: str = "monthly",
    valid_from: dt.date = EPOCH,
    valid_to: dt.date | None = None,
    tax_category: TaxCategory | None = None,
    name: str = "Monthly fee",
) -> PlanComponent:
    component = PlanComponent.objects.create(
        plan=plan,
        code=f"rc-{next(_seq)}",
        name=name,
        kind=PlanComponent.Kind.RECURRING,
        timing=timing,
        tax_category=tax_category,
    )
    price(component, amount=amount, freq=freq, valid_from=valid_from, valid_to=valid_to)
    return component


def price(component, *, amount=None, unit_price=None, freq=None, valid_from=EPOCH, valid_to=None, tiers=()):
    row = Price.objects.create(
        component=component,
        frequency=frequency(freq) if freq else None,
        valid_from=valid_from,
        valid_to=valid_to,
        amount=D(amount) if amount is not None else None,
        unit_price=D(unit_price) if unit_price is not None else None,
    )
    for low, high, rate in tiers:
        PriceTier.objects.create(
            price=row,
            from_quantity=D(low),
            to_quantity=D(high) if high is not None else None,
            unit_price=D(rate),
        )
    return row


def usage_type(code: str = "voice", unit: str = "min") -> UsageType:
    return UsageType.objects.get_or_create(code=code, defaults={"name": code.title(), "unit": unit})[0]


def usage_component(
    plan: PricePlan,
    *,
    method: str = "per_unit",
    unit_price=None,
    tiers=(),
    included=0,
    type_code: str = "voice",
    unit: str = "min",
    tax_category: TaxCategory | None = None,
    valid_from: dt.date = EPOCH,
) -> PlanComponent:
    component = PlanComponent.objects.create(
        plan=plan,
        code=f"usage-{next(_seq)}",
        name=f"{type_code.title()} usage",
        kind=PlanComponent.Kind.USAGE,
        usage_type=usage_type(type_code, unit),
        rating_method=method,
        included_quantity=D(included),
        tax_category=tax_category,
    )
    price(component, unit_price=unit_price, tiers=tiers, valid_from=valid_from)
    return component


def one_time(
    plan: PricePlan, amount, *, trigger: str = "activation", name: str = "Activation fee", tax_category=None
):
    component = PlanComponent.objects.create(
        plan=plan,
        code=f"otc-{next(_seq)}",
        name=name,
        kind=PlanComponent.Kind.ONE_TIME,
        trigger=trigger,
        tax_category=tax_category,
    )
    price(component, amount=amount)
    return component


def tax(
    rate, *, inclusive: bool = False, category: str = "telecom", name: str = "Sales tax", valid_from=EPOCH
):
    cat = TaxCategory.objects.get_or_create(code=category, defaults={"name": category.title()})[0]
    jurisdiction = TaxJurisdiction.objects.get_or_create(
        code="us-tx", defaults={"name": "Texas", "country": "US", "region": "TX"}
    )[0]
    TaxRate.objects.get_or_create(
        category=cat,
        jurisdiction=jurisdiction,
        valid_from=valid_from,
        defaults={"name": name, "rate": D(rate), "inclusive": inclusive},
    )
    return cat, jurisdiction


def discount(*, kind="percentage", value, plan=None, subscription=None, account=None, applies_to="all",
             currency="", valid_from=EPOCH, valid_to=None, name="Loyalty discount") -> Discount:  # fmt: skip
    return Discount.objects.create(
        code=f"discount-{next(_seq)}",
        name=name,
        kind=kind,
        value=D(value),
        currency=currency,
        applies_to=applies_to,
        price_plan=plan,
        subscription=subscription,
        account=account,
        valid_from=valid_from,
        valid_to=valid_to,
    )


def subscription(account, plan, start: dt.date, *, end: dt.date | None = None, identifier: str | None = None,
                 freq: str = "monthly", sequence: int = 100, jurisdiction=None) -> Subscription:  # fmt: skip
    return Subscription.objects.create(
        account=account,
        price_plan=plan,
        service_identifier=identifier or f"+1555{next(_seq):07d}",
        start_date=start,
        end_date=end,
        status=Subscription.Status.CANCELLED if end else Subscription.Status.ACTIVE,
        billing_term_scheme=plan.billing_term_scheme,
        frequency=frequency(freq),
        processing_sequence=sequence,
        tax_jurisdiction=jurisdiction,
    )


def usage(sub: Subscription, quantity, day: dt.date, *, type_code: str = "voice", source: str = "test"):
    ut = UsageType.objects.get(code=type_code)
    when = timezone.make_aware(dt.datetime.combine(day, dt.time(12)))
    record = UsageRecord.objects.create(
        source=source,
        external_id=f"u-{next(_seq)}",
        subscription=sub,
        service_identifier=sub.service_identifier,
        usage_type_code=ut.code,
        usage_type=ut,
        quantity=D(quantity),
        unit=ut.unit,
        event_time=when,
        event_date=day,
        received_at=timezone.now(),
    )
    # As ingest does: an accepted record waits for rating.
    UsageToRate.objects.create(
        usage_record=record, subscription=sub, event_date=day, usage_type=ut, quantity=record.quantity
    )
    return record
