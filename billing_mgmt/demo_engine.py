"""Demo data for the billing engine.

A catalog (mobile and energy plans in USD, EUR and GBP, taxes, a discount, a price change), subscriptions for
the customers of the internal biller, three months of usage through the usage ingest service and monthly bills
made with "bill now" (payments in between), so that the CSR pages show bills whose every charge is explained.
One subscription was cancelled mid-period (a credit) and one is on a plan whose price ran out (a segment in
error), as a billing team meets every month.

Catalog rows are configuration an admin enters in Django admin (there is no service for them); subscriptions,
usage, payments and bills go through the services.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils import timezone

from accounts.models import Account, Biller
from accounts.selectors import billed_accounts
from billing_mgmt.errors import ApplicationError
from billruns.models import (
    BillingFrequency,
    BillingTermScheme,
    BillSegment,
    Discount,
    PlanComponent,
    Price,
    PricePlan,
    PriceTier,
    Product,
    TaxCategory,
    TaxJurisdiction,
    TaxRate,
    UsageType,
)
from billruns.periods import add_months
from invoicing.models import BillMessage
from statements.services import transaction_post

ACTOR = "load_demo"
EPOCH = dt.date(2024, 1, 1)
D = Decimal


def engine_demo_loaded() -> bool:
    return PricePlan.objects.filter(code__startswith="demo-").exists()


@dataclass
class EngineLoad:
    plans: int = 0
    subscriptions: int = 0
    usage_records: int = 0
    bills: int = 0
    errors: int = 0
    accounts: list[Account] = field(default_factory=list)


def _catalog(today: dt.date) -> dict[str, PricePlan]:
    telecom = TaxCategory.objects.create(code="telecom", name="Telecommunication services")
    energy = TaxCategory.objects.create(code="energy", name="Energy supply")
    rates = {
        # (code, name, country, region): [(category, tax name, rate, inclusive)]
        ("us", "United States", "US", ""): [
            (telecom, "Sales tax", "6.5", False),
            (energy, "Sales tax", "0", False),
        ],
        ("us-tx", "Texas", "US", "TX"): [
            (telecom, "Sales tax", "8.25", False),
            (energy, "Sales tax", "0", False),
        ],
        ("gb", "United Kingdom", "GB", ""): [(telecom, "VAT", "20", True), (energy, "VAT", "5", True)],
        ("de", "Deutschland", "DE", ""): [(telecom, "MwSt.", "19", True), (energy, "MwSt.", "19", True)],
        ("fr", "France", "FR", ""): [(telecom, "TVA", "20", True), (energy, "TVA", "20", True)],
    }
    for (code, name, country, region), taxes in rates.items():
        jurisdiction = TaxJurisdiction.objects.create(code=code, name=name, country=country, region=region)
        for category, tax_name, rate, inclusive in taxes:
            TaxRate.objects.create(
                name=tax_name,
                category=category,
                jurisdiction=jurisdiction,
                rate=D(rate),
                inclusive=inclusive,
                valid_from=EPOCH,
            )
    voice = UsageType.objects.create(code="voice", name="Voice calls", unit="min")
    data = UsageType.objects.create(code="data", name="Mobile data", unit="MB")
    sms = UsageType.objects.create(code="sms", name="Text messages", unit="msg")
    kwh = UsageType.objects.create(code="electricity", name="Electricity", unit="kWh")
    mobile = Product.objects.create(code="mobile", name="Mobile line", service_type="mobile")
    home_energy = Product.objects.create(code="home-energy", name="Home energy", service_type="electricity")
    normal = BillingTermScheme.objects.get(code="standard")
    monthly = BillingFrequency.objects.get(code="monthly")
    others = {f.code: f for f in BillingFrequency.objects.exclude(code="monthly")}
    # The mobile fee goes up on the 16th of last month: that month's bills prorate the two prices by day.
    change = add_months(today.replace(day=16), -1)
    plans: dict[str, PricePlan] = {}
    for currency, fee, new_fee, energy_fee in (
        ("USD", "30.00", "35.00", "12.00"),
        ("EUR", "27.00", "32.00", "11.00"),
        ("GBP", "24.00", "28.00", "9.50"),
    ):
        plan = PricePlan.objects.create(
            code=f"demo-mobile-{currency.lower()}",
            name="Mobile 30",
            product=mobile,
            currency=currency,
            billing_term_scheme=normal,
            description="Monthly fee, 100 free minutes then tiered voice, 1 GB included, texts per message.",
        )
        plans[f"mobile-{currency}"] = plan
        fee_component = PlanComponent.objects.create(
            plan=plan,
            code="fee",
            name="Monthly fee",
            kind="recurring",
            timing="advance",
            tax_category=telecom,
        )
        Price.objects.create(
            component=fee_component,
            frequency=monthly,
            valid_from=EPOCH,
            valid_to=change - dt.timedelta(days=1),
            amount=D(fee),
        )
        Price.objects.create(component=fee_component, frequency=monthly, valid_from=change, amount=D(new_fee))
        for code, months in (("quarterly", 3), ("annual", 12)):
            Price.objects.create(
                component=fee_component,
                frequency=others[code],
                valid_from=EPOCH,
                amount=D(new_fee) * months * D("0.9"),
            )
        activation = PlanComponent.objects.create(
            plan=plan,
            code="activation",
            name="Activation fee",
            kind="one_time",
            trigger="activation",
            tax_category=telecom,
        )
        Price.objects.create(component=activation, valid_from=EPOCH, amount=D("15.00"))
        calls = PlanComponent.objects.create(
            plan=plan, code="voice", name="Calls", kind="usage", usage_type=voice, rating_method="graduated",
            included_quantity=D(100), tax_category=telecom, position=2,
        )  # fmt: skip
        tiered = Price.objects.create(component=calls, valid_from=EPOCH)
        PriceTier.objects.create(price=tiered, from_quantity=D(0), to_quantity=D(1000), unit_price=D("0.05"))
        PriceTier.objects.create(price=tiered, from_quantity=D(1000), unit_price=D("0.03"))
        mobile_data = PlanComponent.objects.create(
            plan=plan, code="data", name="Mobile data", kind="usage", usage_type=data,
            rating_method="per_unit", included_quantity=D(1024), tax_category=telecom, position=3,
        )  # fmt: skip
        Price.objects.create(component=mobile_data, valid_from=EPOCH, unit_price=D("0.01"))
        texts = PlanComponent.objects.create(
            plan=plan, code="sms", name="Text messages", kind="usage", usage_type=sms,
            rating_method="per_unit", tax_category=telecom, position=4,
        )  # fmt: skip
        Price.objects.create(component=texts, valid_from=EPOCH, unit_price=D("0.10"))

        energy_plan = PricePlan.objects.create(
            code=f"demo-energy-{currency.lower()}",
            name="Home Energy",
            product=home_energy,
            currency=currency,
            billing_term_scheme=normal,
            description="Standing charge and electricity in volume tiers.",
        )
        plans[f"energy-{currency}"] = energy_plan
        standing = PlanComponent.objects.create(
            plan=energy_plan,
            code="standing",
            name="Standing charge",
            kind="recurring",
            timing="arrears",
            tax_category=energy,
        )
        Price.objects.create(component=standing, frequency=monthly, valid_from=EPOCH, amount=D(energy_fee))
        electricity = PlanComponent.objects.create(
            plan=energy_plan, code="kwh", name="Electricity", kind="usage", usage_type=kwh,
            rating_method="volume", tax_category=energy, position=2,
        )  # fmt: skip
        volume = Price.objects.create(component=electricity, valid_from=EPOCH)
        PriceTier.objects.create(price=volume, from_quantity=D(0), to_quantity=D(300), unit_price=D("0.25"))
        PriceTier.objects.create(price=volume, from_quantity=D(300), unit_price=D("0.21"))
    Discount.objects.create(
        code="demo-loyalty",
        name="Loyalty discount",
        kind=Discount.Kind.PERCENTAGE,
        value=D(10),
        applies_to=Discount.AppliesTo.RECURRING,
        price_plan=plans["mobile-USD"],
        valid_from=EPOCH,
    )
    # A plan whose price ended last month: its subscriber's segment is in error until an admin adds a price.
    legacy = PricePlan.objects.create(
        code="demo-legacy-usd",
        name="Legacy Talk (withdrawn)",
        product=mobile,
        currency="USD",
        billing_term_scheme=normal,
        active=True,
    )
    plans["legacy-USD"] = legacy
    legacy_fee = PlanComponent.objects.create(
        plan=legacy, code="fee", name="Monthly fee", kind="recurring", timing="advance", tax_category=telecom
    )
    Price.objects.create(
        component=legacy_fee,
        frequency=monthly,
        valid_from=EPOCH,
        valid_to=add_months(today, -1),
        amount=D("19.00"),
    )
    BillMessage.objects.create(
        code="demo-paperless",
        text="Go paperless: switch to e-mail bills in the customer portal.",
        valid_from=EPOCH,
    )
    BillMessage.objects.create(
        code="demo-vip",
        text="Thank you for being a valued customer: your account manager is one call away.",
        ar_classification="vip",
        valid_from=EPOCH,
        priority=50,
    )
    return plans


def _cycle_dates(start: dt.date, cycle_day: int, today: dt.date) -> list[dt.date]:
    """The bill dates from the first cycle day after ``start`` up to today."""
    day = (
        start.replace(day=cycle_day)
        if start.day <= cycle_day
        else add_months(start.replace(day=cycle_day), 1)
    )
    dates = []
    while day <= today:
        dates.append(day)
        day = add_months(day, 1)
    return dates


def load_engine_demo(*, seed: int, today: dt.date | None = None, accounts_limit: int = 6) -> EngineLoad:
    from billruns.services import bill_create, engine_biller
    from billruns.services.subscriptions import subscription_cancel, subscription_create
    from billruns.services.usage import usage_records_ingest

    rng = random.Random(seed + 3)
    today = today or timezone.localdate()
    load = EngineLoad()
    plans = _catalog(today)
    load.plans = len(plans)
    biller: Biller = engine_biller()
    units = list(
        Account.objects.filter(biller_references__biller=biller, is_paying=True, parent__isnull=True)
        .select_related("billing_profile")
        .order_by("number")[:accounts_limit]
    )
    start = add_months(today.replace(day=1), -3)
    legacy_placed = False  # one customer stays on the withdrawn plan
    for index, unit in enumerate(units):
        profile = unit.billing_profile
        currency = profile.currency
        cycle = profile.bill_cycle_day
        monthly = BillingFrequency.objects.get(code="monthly")
        subscriptions = []
        for n, member in enumerate(billed_accounts(account=unit)):
            first = start + dt.timedelta(days=rng.randint(0, 20))
            subscriptions.append(
                subscription_create(
                    account=member,
                    price_plan=plans[f"mobile-{currency}"],
                    service_identifier=f"+{rng.randint(10**9, 10**10 - 1)}",
                    start_date=first,
                    frequency=monthly,
                    processing_sequence=10 + n,
                    actor=ACTOR,
                )
            )
            if n == 0 and index % 2 == 0:
                subscriptions.append(
                    subscription_create(
                        account=member,
                        price_plan=plans[f"energy-{currency}"],
                        service_identifier=f"MTR-{rng.randint(100000, 999999)}",
                        start_date=first,
                        frequency=monthly,
                        processing_sequence=20,
                        actor=ACTOR,
                    )
                )
        if currency == "USD" and not legacy_placed:
            subscriptions.append(
                subscription_create(
                    account=unit,
                    price_plan=plans["legacy-USD"],
                    service_identifier=f"+{rng.randint(10**9, 10**10 - 1)}",
                    start_date=start,
                    frequency=monthly,
                    processing_sequence=30,
                    actor=ACTOR,
                )
            )
            legacy_placed = True
        load.subscriptions += len(subscriptions)
        # Usage: a few events a day until yesterday, sent as a mediation system would (one batch per line).
        for sub in subscriptions:
            kinds = (
                [("electricity", "kWh", (5, 18))]
                if sub.price_plan.code.startswith("demo-energy")
                else [("voice", "min", (5, 60)), ("data", "MB", (20, 120)), ("sms", "msg", (0, 6))]
            )
            records = []
            day = sub.start_date
            while day < today:
                for code, unit_name, (low, high) in kinds:
                    quantity = rng.randint(low, high)
                    if quantity:
                        when = timezone.make_aware(
                            dt.datetime.combine(day, dt.time(rng.randint(7, 22), rng.randint(0, 59)))
                        )
                        records.append(
                            {
                                "external_id": f"{sub.service_identifier}-{code}-{day.isoformat()}",
                                "usage_type": code,
                                "quantity": str(quantity),
                                "unit": unit_name,
                                "event_time": when.isoformat(),
                                "service_identifier": sub.service_identifier,
                            }
                        )
                day += dt.timedelta(days=1)
            usage_records_ingest(records=records, source=biller.code, actor=ACTOR, biller=biller)
            load.usage_records += len(records)
        # Bills on each cycle day, each paid (in full, but for one customer) a week later.
        bill_dates = _cycle_dates(start, cycle, today)
        for n, bill_date in enumerate(bill_dates):
            if index == 0 and n == len(bill_dates) - 1:
                # The customer cancelled a line ten days before this bill: the period was billed in advance,
                # so this bill credits the days after the end.
                mobile = next(s for s in subscriptions if s.price_plan.code.startswith("demo-mobile"))
                subscription_cancel(
                    subscription=mobile, end_date=bill_date - dt.timedelta(days=10), actor=ACTOR
                )
            try:
                result = bill_create(account=unit, bill_date=bill_date, actor=ACTOR)
            except ApplicationError:
                continue
            load.bills += 1
            paid_on = bill_date + dt.timedelta(days=7)
            due = result.statement.total_due
            if due > 0 and paid_on < today and not (index == 2 and n > 0):
                transaction_post(
                    account=unit,
                    kind="payment",
                    amount=-due,
                    currency=currency,
                    effective_date=paid_on,
                    description=f"Payment for bill {result.statement.number}",
                    idempotency_key=f"demo-payment-{result.statement.pk}",
                    actor=ACTOR,
                )
        load.accounts.append(unit)
    load.errors = BillSegment.objects.filter(status=BillSegment.Status.ERROR).count()
    return load
