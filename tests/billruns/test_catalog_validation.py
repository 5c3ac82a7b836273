"""The catalog rules (billruns.services.catalog) on their own, and the API's whole-plan write
(``price_plan_create``): every bad input is refused with its field and message, and nothing is stored."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from billing_mgmt.errors import ApplicationError
from billing_mgmt.models import AuditRecord
from billruns.models import Discount, PlanComponent, Price, PricePlan, PriceTier, Product, TaxRate
from billruns.services import price_plan_create
from billruns.services.catalog import (
    validate_component,
    validate_component_set,
    validate_discount,
    validate_price,
    validate_price_overlaps,
    validate_price_set,
    validate_tax_rate,
    validate_tiers,
)
from tests.billruns import builders as b
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db
D = b.D
JAN_1 = dt.date(2026, 1, 1)
JUN_30 = dt.date(2026, 6, 30)
JUL_1 = dt.date(2026, 7, 1)


def errors_of(rule, *args, **kwargs) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as caught:
        rule(*args, **kwargs)
    return caught.value.message_dict


def tiers(*bands) -> list[PriceTier]:
    return [
        PriceTier(from_quantity=D(low), to_quantity=None if high is None else D(high), unit_price=D(rate))
        for low, high, rate in bands
    ]


# --- tiers --------------------------------------------------------------------------------------------------


def test_contiguous_tiers_from_zero_with_an_open_end_pass_in_any_order():
    validate_tiers(tiers((0, 1000, "0.05"), (1000, 5000, "0.04"), (5000, None, "0.03")))
    validate_tiers(tiers((5000, None, "0.03"), (0, 1000, "0.05"), (1000, 5000, "0.04")))


@pytest.mark.parametrize(
    ("bands", "expected"),
    [
        (
            [(0, 1000, "0.05"), (900, None, "0.03")],
            {"tiers[1].from_quantity": ["Tier 2 starts at 900 but tier 1 ends at 1000 (overlap)."]},
        ),
        (
            [(0, 1000, "0.05"), (1200, None, "0.03")],
            {
                "tiers[1].from_quantity": [
                    "Tier 2 starts at 1200 but tier 1 ends at 1000 (gap: the units between have no price)."
                ]
            },
        ),
        (
            [(100, 1000, "0.05"), (1000, None, "0.03")],
            {"tiers[0].from_quantity": ["Tier 1 is the lowest and must start at 0, not 100."]},
        ),
        (
            [(0, 1000, "0.05"), (1000, 2000, "0.03")],
            {
                "tiers[1].to_quantity": [
                    "The last tier must be open-ended (leave its upper bound empty), or units above 2000 "
                    "have "
                    "no price."
                ]
            },
        ),
        (
            [(0, None, "0.05"), (1000, None, "0.03")],
            {
                "tiers[0].to_quantity": [
                    "Only the last tier may be open-ended: tier 1 has no upper bound but tier 2 starts at "
                    "1000."
                ]
            },
        ),
        (
            [(0, 1000, "0.05"), (1000, 1000, "0.04"), (1000, None, "0.03")],
            {"tiers[1].to_quantity": ["The upper bound must be above the lower bound (1000)."]},
        ),
        (
            [(-5, 1000, "0.05"), (1000, None, "0.03")],
            {"tiers[0].from_quantity": ["Must not be negative."]},
        ),
        (
            [(0, 1000, "-0.05"), (1000, None, "0.03")],
            {"tiers[0].unit_price": ["Must not be negative."]},
        ),
    ],
    ids=[
        "overlap",
        "gap",
        "not-from-zero",
        "closed-last",
        "two-open",
        "empty-band",
        "negative-from",
        "negative-price",
    ],
)
def test_bad_tiers_are_named_by_position_and_field(bands, expected):
    assert errors_of(validate_tiers, tiers(*bands)) == expected


# --- prices -------------------------------------------------------------------------------------------------


@pytest.fixture
def plan():
    return b.plan(currency="USD")


def component(plan, kind="recurring", **settings) -> PlanComponent:
    defaults = {
        "recurring": {"timing": "advance"},
        "one_time": {"trigger": "activation"},
        "usage": {"usage_type": b.usage_type(), "rating_method": "per_unit"},
    }[kind]
    values = {"plan": plan, "code": f"c-{kind}", "name": kind.title(), "kind": kind, **defaults}
    return PlanComponent(**{**values, **settings})


def test_a_recurring_price_needs_frequency_and_amount_and_nothing_of_usage(plan):
    price = Price(valid_from=JAN_1, unit_price=D("0.10"))

    assert errors_of(
        validate_price, price, component=component(plan), currency="USD", tiers=tiers((0, None, 1))
    ) == {
        "frequency": ["A recurring price is for one billing frequency: choose it."],
        "amount": ["A recurring price needs an amount for one whole period."],
        "unit_price": ["Only per-unit usage prices have a unit price: this one has an amount."],
        "tiers": ["Only graduated and volume usage prices have tiers."],
    }


def test_a_one_time_price_has_an_amount_and_no_frequency(plan):
    price = Price(valid_from=JAN_1, frequency=b.frequency("monthly"))

    assert errors_of(validate_price, price, component=component(plan, "one_time"), currency="USD") == {
        "frequency": ["Only recurring prices have a billing frequency: leave it empty."],
        "amount": ["A one-time price needs an amount."],
    }


def test_usage_prices_per_unit_and_tiered(plan):
    per_unit = component(plan, "usage")
    graduated = component(plan, "usage", rating_method="graduated")

    assert errors_of(
        validate_price, Price(valid_from=JAN_1, amount=D(5)), component=per_unit, currency="USD"
    ) == {
        "amount": ["A usage price has no amount: per unit it has a unit price, tiered it has tiers."],
        "unit_price": ["A per-unit usage price needs a unit price."],
    }
    assert errors_of(
        validate_price,
        Price(valid_from=JAN_1, unit_price=D(1)),
        component=graduated,
        currency="USD",
        tiers=[],
    ) == {
        "unit_price": ["A graduated price is priced by its tiers: leave the unit price empty."],
        "tiers": ["A graduated price needs tiers: at least one, starting at 0."],
    }
    validate_price(Price(valid_from=JAN_1), component=graduated, currency="USD", tiers=tiers((0, None, 1)))
    validate_price(
        Price(valid_from=JAN_1, unit_price=D("0.0125")), component=per_unit, currency="USD", tiers=[]
    )


def test_negative_amounts_and_dates_out_of_order_are_refused(plan):
    price = Price(frequency=b.frequency(), valid_from=JUL_1, valid_to=JUN_30, amount=D("-1.00"))

    assert errors_of(validate_price, price, component=component(plan), currency="USD") == {
        "valid_to": ["The end (2026-06-30) is before the start (2026-07-01)."],
        "amount": ["Must not be negative."],
    }
    usage = Price(valid_from=JAN_1, unit_price=D("-0.01"))
    assert errors_of(validate_price, usage, component=component(plan, "usage"), currency="USD") == {
        "unit_price": ["Must not be negative."]
    }


def test_amounts_are_in_the_currency_minor_units(plan):
    price = Price(frequency=b.frequency(), valid_from=JAN_1, amount=D("29.999"))

    assert errors_of(validate_price, price, component=component(plan), currency="USD") == {
        "amount": ["A USD amount has at most 2 decimal places."]
    }
    assert errors_of(
        validate_price,
        Price(**{**vars_of(price), "amount": D("30.5")}),
        component=component(plan),
        currency="JPY",
    ) == {"amount": ["A JPY amount has at most 0 decimal places."]}


def vars_of(price: Price) -> dict:
    return {"frequency": price.frequency, "valid_from": price.valid_from, "valid_to": price.valid_to}


def test_overlapping_prices_name_the_other_price_and_the_field_to_fix(plan):
    monthly, annual = b.frequency("monthly"), b.frequency("annual")
    first = Price(frequency=monthly, valid_from=JAN_1, valid_to=JUN_30, amount=D(30))
    open_ended = Price(frequency=monthly, valid_from=JUL_1, amount=D(35))

    # starts inside the first: the start is wrong
    inside = Price(
        frequency=monthly, valid_from=dt.date(2026, 6, 1), valid_to=dt.date(2026, 6, 15), amount=D(1)
    )
    assert errors_of(validate_price_overlaps, inside, [first, open_ended]) == {
        "valid_from": [
            "Overlaps the price valid from 2026-01-01 to 2026-06-30 (monthly billing): end one the day "
            "before "
            "the other starts."
        ]
    }
    # starts before the open-ended one and runs into it: the end is wrong
    runs_in = Price(frequency=monthly, valid_from=dt.date(2025, 1, 1), amount=D(1))
    assert errors_of(validate_price_overlaps, runs_in, [open_ended]) == {
        "valid_to": [
            "Overlaps the price valid from 2026-07-01 with no end (monthly billing): end one the day before "
            "the "
            "other starts."
        ]
    }
    # another frequency, or the day after the end: no overlap; a price is not compared with itself
    validate_price_overlaps(Price(frequency=annual, valid_from=JAN_1, amount=D(300)), [first, open_ended])
    validate_price_overlaps(first, [first, open_ended])
    validate_price_set([first, open_ended, Price(frequency=annual, valid_from=JAN_1, amount=D(300))])


def test_a_list_of_prices_reports_the_later_one():
    monthly = b.frequency("monthly")
    prices = [
        Price(frequency=monthly, valid_from=JAN_1, amount=D(30)),
        Price(frequency=monthly, valid_from=JUL_1, amount=D(35)),
    ]
    assert errors_of(validate_price_set, prices) == {
        "prices[1].valid_from": [
            "Overlaps the price valid from 2026-01-01 with no end (monthly billing): end one the day before "
            "the "
            "other starts."
        ]
    }


# --- components ---------------------------------------------------------------------------------------------


def test_component_settings_by_kind(plan):
    assert errors_of(validate_component, component(plan, timing="")) == {
        "timing": ["A recurring component is charged in advance or in arrears: choose one."]
    }
    assert errors_of(validate_component, component(plan, "usage", usage_type=None, rating_method="")) == {
        "usage_type": ["A usage component rates one usage type: choose it."],
        "rating_method": ["A usage component needs a rating method: per unit, graduated or volume."],
    }
    assert errors_of(validate_component, component(plan, "one_time", trigger="", timing="arrears")) == {
        "timing": ["Only recurring components have a timing: leave it empty."],
        "trigger": ["A one-time component is charged on activation or on termination: choose one."],
    }
    assert errors_of(
        validate_component,
        component(plan, usage_type=b.usage_type(), included_quantity=D(10), trigger="activation"),
    ) == {
        "usage_type": ["Only usage components have a usage type: leave it empty."],
        "included_quantity": ["Only usage components have included units: leave it at 0."],
        "trigger": ["Only one-time components have a trigger: leave it empty."],
    }
    assert errors_of(validate_component, component(plan, "usage", included_quantity=D(-1))) == {
        "included_quantity": ["Must not be negative."]
    }


def test_a_plan_rates_each_usage_type_once_and_codes_differ(plan):
    voice = b.usage_type("voice")
    first = component(plan, "usage", usage_type=voice, code="voice")
    second = component(plan, "usage", usage_type=voice, code="voice")

    assert errors_of(validate_component_set, [first, second]) == {
        "components[1].code": ["Component 1 already has the code 'voice'."],
        "components[1].usage_type": [
            "Component 1 ('voice') already rates Voice (min): a plan rates each usage type in one component."
        ],
    }


# --- taxes and discounts ------------------------------------------------------------------------------------


def test_tax_rates_of_one_category_and_jurisdiction_do_not_overlap():
    category, jurisdiction = b.tax("8.25", valid_from=JAN_1)
    existing = TaxRate.objects.get()
    overlapping = TaxRate(
        name="Sales tax", category=category, jurisdiction=jurisdiction, rate=D(9), valid_from=JUL_1
    )

    assert errors_of(validate_tax_rate, overlapping, TaxRate.objects.all()) == {
        "valid_from": [
            "Overlaps the Sales tax rate of 8.25% valid from 2026-01-01 with no end: end one the day before "
            "the "
            "other starts."
        ]
    }
    existing.valid_to = JUN_30
    validate_tax_rate(overlapping, [existing])  # the day after the end: fine
    validate_tax_rate(existing, TaxRate.objects.all())  # not compared with itself
    negative = TaxRate(category=category, jurisdiction=jurisdiction, rate=D(-1), valid_from=JUL_1)
    assert errors_of(validate_tax_rate, negative) == {"rate": ["Must not be negative."]}


def test_discount_rules(plan):
    def discount(**fields) -> Discount:
        values = {"code": "d", "name": "D", "kind": "percentage", "value": D(10), "valid_from": JAN_1}
        return Discount(**{**values, **fields})

    validate_discount(discount(price_plan=plan))
    validate_discount(discount(price_plan=plan, kind="fixed", value=D("5.00"), currency="USD"))
    assert errors_of(validate_discount, discount(price_plan=plan, value=D(150))) == {
        "value": ["A percentage is above 0 and at most 100, not 150."]
    }
    assert errors_of(validate_discount, discount(price_plan=plan, value=D(-5))) == {
        "value": ["Must not be negative."]
    }
    assert errors_of(
        validate_discount, discount(price_plan=plan, kind="fixed", value=D(5), currency="EUR")
    ) == {"currency": [f"Price plan {plan.code} bills in USD: a fixed discount on it is in USD too."]}
    assert errors_of(
        validate_discount, discount(price_plan=plan, kind="fixed", value=D("5.001"), currency="USD")
    ) == {"value": ["A USD amount has at most 2 decimal places."]}
    assert errors_of(validate_discount, discount(price_plan=plan, kind="fixed", value=D(5))) == {
        "currency": [
            f"A fixed discount is an amount in one currency: give it (USD, as price plan {plan.code})."
        ]
    }
    account = AccountFactory()
    both = "A discount applies to one of a price plan, a subscription and an account: choose one."
    assert errors_of(validate_discount, discount(price_plan=plan, account=account)) == {
        "price_plan": [both],
        "account": [both],
    }
    assert errors_of(validate_discount, discount()) == {
        "price_plan": ["Choose what the discount applies to: a price plan, a subscription or an account."]
    }
    # on an account: the account's billing currency
    assert errors_of(
        validate_discount, discount(account=account, kind="fixed", value=D(5), currency="EUR")
    ) == {"currency": [f"Account {account.number} bills in USD: a fixed discount on it is in USD too."]}


# --- price_plan_create --------------------------------------------------------------------------------------


@pytest.fixture
def catalog(billing_admin_user):
    product = Product.objects.create(code="mobile", name="Mobile line", service_type="mobile")
    b.usage_type("voice", "min")
    b.usage_type("data", "MB")
    b.tax("10")
    return product


def plan_data(**overrides) -> dict:
    from billruns.models import BillingTermScheme, TaxCategory, UsageType

    data = {
        "code": "mobile-30",
        "name": "Mobile 30",
        "product": Product.objects.get(code="mobile"),
        "currency": "USD",
        "billing_term_scheme": BillingTermScheme.objects.get(code="standard"),
        "components": [
            {
                "code": "fee",
                "name": "Monthly fee",
                "kind": "recurring",
                "timing": "advance",
                "tax_category": TaxCategory.objects.get(code="telecom"),
                "prices": [
                    {
                        "frequency": b.frequency(),
                        "valid_from": JAN_1,
                        "valid_to": JUN_30,
                        "amount": D("30.00"),
                    },
                    {"frequency": b.frequency(), "valid_from": JUL_1, "amount": D("35.00")},
                ],
            },
            {
                "code": "voice",
                "name": "Calls",
                "kind": "usage",
                "usage_type": UsageType.objects.get(code="voice"),
                "rating_method": "graduated",
                "included_quantity": D(100),
                "prices": [
                    {
                        "valid_from": JAN_1,
                        "tiers": [
                            {"from_quantity": D(0), "to_quantity": D(1000), "unit_price": D("0.05")},
                            {"from_quantity": D(1000), "to_quantity": None, "unit_price": D("0.03")},
                        ],
                    }
                ],
            },
            {
                "code": "activation",
                "name": "Activation fee",
                "kind": "one_time",
                "trigger": "activation",
                "prices": [{"valid_from": JAN_1, "amount": D("15.00")}],
            },
        ],
    }
    data.update(overrides)
    return data


def counts() -> tuple[int, ...]:
    return (
        PricePlan.objects.count(),
        PlanComponent.objects.count(),
        Price.objects.count(),
        PriceTier.objects.count(),
        AuditRecord.objects.filter(action="price_plan.create").count(),
    )


def test_price_plan_create_stores_the_whole_plan_with_an_audit_record(catalog, billing_admin_user):
    plan = price_plan_create(data=plan_data(), actor=billing_admin_user)

    assert (plan.code, plan.currency, plan.product.code, plan.billing_term_scheme.code) == (
        "mobile-30",
        "USD",
        "mobile",
        "standard",
    )
    components = list(plan.components.order_by("position"))
    assert [(c.code, c.kind, c.position) for c in components] == [
        ("fee", "recurring", 0),
        ("voice", "usage", 1),
        ("activation", "one_time", 2),
    ]
    assert [(p.valid_from, p.valid_to, p.amount) for p in components[0].prices.order_by("valid_from")] == [
        (JAN_1, JUN_30, D("30.00")),
        (JUL_1, None, D("35.00")),
    ]
    voice_price = components[1].prices.get()
    assert (voice_price.amount, voice_price.unit_price, components[1].included_quantity) == (
        None,
        None,
        D(100),
    )
    assert [(t.from_quantity, t.to_quantity, t.unit_price) for t in voice_price.tiers.all()] == [
        (D(0), D(1000), D("0.05")),
        (D(1000), None, D("0.03")),
    ]
    assert components[2].timing == "" and components[2].trigger == "activation"
    record = AuditRecord.objects.get(action="price_plan.create")
    assert record.object_id == str(plan.pk) and record.actor_user == billing_admin_user
    assert [c["code"] for c in record.after["components"]] == ["fee", "voice", "activation"]
    assert record.after["components"][1]["prices"][0]["tiers"][1] == {
        "id": voice_price.tiers.order_by("from_quantity").last().pk,
        "price_id": voice_price.pk,
        "from_quantity": "1000",
        "to_quantity": None,
        "unit_price": "0.03",
    }


def _set(data: dict, path: list, value) -> dict:
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        (
            ["components", 0, "prices", 1, "valid_from"],
            dt.date(2026, 6, 1),
            "components[0].prices[1].valid_from",
            "Overlaps the price valid from 2026-01-01 to 2026-06-30 (monthly billing): end one the day "
            "before "
            "the other starts.",
        ),
        (
            ["components", 1, "prices", 0, "tiers", 1, "from_quantity"],
            D(900),
            "components[1].prices[0].tiers[1].from_quantity",
            "Tier 2 starts at 900 but tier 1 ends at 1000 (overlap).",
        ),
        (
            ["components", 1, "prices", 0, "tiers", 1, "from_quantity"],
            D(1100),
            "components[1].prices[0].tiers[1].from_quantity",
            "Tier 2 starts at 1100 but tier 1 ends at 1000 (gap: the units between have no price).",
        ),
        (
            ["components", 1, "prices", 0, "tiers", 0, "unit_price"],
            D("-0.05"),
            "components[1].prices[0].tiers[0].unit_price",
            "Must not be negative.",
        ),
        (
            ["components", 1, "included_quantity"],
            D(-100),
            "components[1].included_quantity",
            "Must not be negative.",
        ),
        (
            ["components", 2, "prices", 0, "amount"],
            D("-15.00"),
            "components[2].prices[0].amount",
            "Must not be negative.",
        ),
        (
            ["components", 0, "timing"],
            "",
            "components[0].timing",
            "A recurring component is charged in advance or in arrears: choose one.",
        ),
        (
            ["components", 2, "prices", 0, "frequency"],
            "monthly",
            "components[2].prices[0].frequency",
            "Only recurring prices have a billing frequency: leave it empty.",
        ),
        (["code"], "taken", "code", "A price plan with the code 'taken' already exists."),
        (["components"], [], "components", "A price plan needs at least one component."),
    ],
    ids=[
        "price-overlap",
        "tier-overlap",
        "tier-gap",
        "negative-tier-price",
        "negative-included",
        "negative-amount",
        "no-timing",
        "one-time-frequency",
        "duplicate-code",
        "no-components",
    ],
)
def test_price_plan_create_refuses_bad_input_and_stores_nothing(
    catalog, billing_admin_user, path, value, field, message
):
    if path == ["code"]:
        PricePlan.objects.filter(pk=b.plan().pk).update(code="taken")
    data = plan_data()
    _set(data, path, b.frequency(value) if path[-1] == "frequency" else value)
    before = counts()

    with pytest.raises(ApplicationError) as caught:
        price_plan_create(data=data, actor=billing_admin_user)

    assert caught.value.fields == {field: [message]}
    assert caught.value.message == f"The price plan is not valid: {message} Nothing was stored."
    assert counts() == before


def test_price_plan_create_reports_every_error_at_once(catalog, billing_admin_user):
    data = plan_data()
    data["components"][0]["prices"][0]["amount"] = D("-30.00")
    data["components"][1]["prices"][0]["tiers"] = []

    with pytest.raises(ApplicationError) as caught:
        price_plan_create(data=data, actor=billing_admin_user)

    assert caught.value.fields == {
        "components[0].prices[0].amount": ["Must not be negative."],
        "components[1].prices[0].tiers": ["A graduated price needs tiers: at least one, starting at 0."],
    }
    assert caught.value.message == "The price plan is not valid. Nothing was stored."
    assert PricePlan.objects.filter(code="mobile-30").count() == 0


def test_a_created_plan_rates_as_entered(catalog, billing_admin_user):
    """The stored plan is one the engine rates: 30.00 in advance, 15.00 on activation, tiered usage."""
    from billruns.services import subscription_rate

    plan = price_plan_create(data=plan_data(), actor=billing_admin_user)
    jurisdiction = TaxRate.objects.get().jurisdiction
    sub = b.subscription(AccountFactory(), plan, dt.date(2026, 6, 1), jurisdiction=jurisdiction)
    b.usage(sub, 1200, dt.date(2026, 6, 5))

    subscription_rate(subscription=sub, bill_as_of=JUL_1)

    july = sub.segments.get(period_start=JUL_1)
    # usage of June: 100 included, 900 x 0.05 = 45.00, 200 x 0.03 = 6.00; July fee 35.00; tax 10%
    assert [(ln.kind, ln.amount) for ln in july.lines.order_by("position") if ln.kind != "tax"] == [
        ("recurring", D("35.00")),
        ("allowance", D("0.00")),
        ("usage", D("45.00")),
        ("usage", D("6.00")),
    ]
    assert july.charges == Decimal("86.00")
