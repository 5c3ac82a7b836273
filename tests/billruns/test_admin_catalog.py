"""Catalog admin: a billing admin enters plans, components, prices and tiers; every bad input (overlapping
prices, tier gaps and overlaps, negative amounts and quantities, settings of the wrong kind, overlapping tax
rates, discounts) is shown on the form and nothing is stored. Also the read-only segment admin, bill messages,
audit records and the changelists' query counts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from billing_mgmt.models import AuditRecord
from billruns.models import (
    BillSegment,
    CalculationLine,
    Discount,
    PlanComponent,
    Price,
    PricePlan,
    PriceTier,
    Product,
    TaxRate,
)
from invoicing.models import BillMessage
from tests.billruns import builders as b
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db
D = b.D
JAN_1 = dt.date(2026, 1, 1)


# --- posting admin pages ------------------------------------------------------------------------------------


def _value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dt.date, Decimal, int)) and not isinstance(value, bool):
        return str(value)
    return value


def page_data(response) -> dict[str, Any]:
    """The POST data of an admin add/change page as the browser would send it unchanged (the form, every
    inline formset with its management form)."""
    data: dict[str, Any] = {}

    def take(form) -> None:
        for name in form.fields:
            value = form[name].value()
            if isinstance(value, bool) or value is None and name.endswith("DELETE"):
                if value:
                    data[form.add_prefix(name)] = "on"
                continue
            data[form.add_prefix(name)] = _value(value)

    take(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        take(formset.management_form)
        for form in formset.forms:
            take(form)
    return data


def post_page(client, url: str, changes: dict[str, Any], *, rows: dict[str, int] | None = None):
    """GET the page, apply ``changes`` (``None`` removes a key), POST it. ``rows`` sets an inline's
    TOTAL_FORMS (for rows added beyond the page's extra ones)."""
    response = client.get(url)
    assert response.status_code == 200
    data = page_data(response)
    for prefix, total in (rows or {}).items():
        data[f"{prefix}-TOTAL_FORMS"] = str(total)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = _value(value)
    return client.post(url, data)


def form_errors(response) -> list[str]:
    """Every error message on the page: the form's, each inline row's and each formset's."""
    assert response.status_code == 200, "expected the form again, with errors"
    messages = [str(m) for errors in response.context["adminform"].form.errors.values() for m in errors]
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        messages.extend(str(m) for m in formset.non_form_errors())
        for form in formset.forms:
            messages.extend(str(m) for errors in form.errors.values() for m in errors)
    return messages


def counts() -> dict[str, int]:
    return {
        "plans": PricePlan.objects.count(),
        "components": PlanComponent.objects.count(),
        "prices": Price.objects.count(),
        "tiers": PriceTier.objects.count(),
        "tax_rates": TaxRate.objects.count(),
        "discounts": Discount.objects.count(),
        "audit": AuditRecord.objects.count(),
    }


def url(model, action: str, *args) -> str:
    return reverse(f"admin:billruns_{model._meta.model_name}_{action}", args=args)


# --- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture
def plan():
    return b.plan(currency="USD", name="Mobile 30")


@pytest.fixture
def fee(plan):
    """A recurring component with one open-ended monthly price from 2026-01-01."""
    return b.recurring(plan, "30.00", valid_from=JAN_1, name="Monthly fee")


@pytest.fixture
def graduated(plan):
    component = PlanComponent.objects.create(
        plan=plan,
        code="voice",
        name="Calls",
        kind="usage",
        usage_type=b.usage_type("voice"),
        rating_method="graduated",
    )
    return component


# --- prices on the component page ---------------------------------------------------------------------------


def new_price_row(index: int, **values) -> dict[str, Any]:
    return {f"prices-{index}-{k}": v for k, v in values.items()}


def test_component_page_refuses_an_overlapping_price_and_stores_nothing(admin_client, fee):
    before = counts()

    response = post_page(
        admin_client,
        url(PlanComponent, "change", fee.pk),
        new_price_row(1, frequency=b.frequency().pk, valid_from="2026-06-01", amount="35.00"),
        rows={"prices": 2},
    )

    assert form_errors(response) == [
        "Overlaps the price valid from 2026-01-01 with no end (monthly billing): end one the day before the "
        "other starts."
    ]
    assert counts() == before


def test_component_page_adds_a_price_after_closing_the_old_one(admin_client, fee):
    old = fee.prices.get()

    response = post_page(
        admin_client,
        url(PlanComponent, "change", fee.pk),
        {
            "prices-0-valid_to": "2026-05-31",
            **new_price_row(1, frequency=b.frequency().pk, valid_from="2026-06-01", amount="35.00"),
        },
        rows={"prices": 2},
    )

    assert response.status_code == 302, form_errors(response)
    assert list(fee.prices.order_by("valid_from").values_list("valid_from", "valid_to", "amount")) == [
        (JAN_1, dt.date(2026, 5, 31), D("30.00")),
        (dt.date(2026, 6, 1), None, D("35.00")),
    ]
    update = AuditRecord.objects.get(action="price.update")
    assert (update.object_id, update.before["valid_to"], update.after["valid_to"]) == (
        str(old.pk),
        None,
        "2026-05-31",
    )
    assert AuditRecord.objects.filter(action="price.create").count() == 1


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"amount": "-35.00"}, "Must not be negative."),
        ({"amount": "35.001"}, "A USD amount has at most 2 decimal places."),
        ({"frequency": "", "amount": "35.00"}, "A recurring price is for one billing frequency: choose it."),
        (
            {"amount": "35.00", "unit_price": "0.10"},
            "Only per-unit usage prices have a unit price: this one has an amount.",
        ),
        (
            {"amount": "35.00", "valid_to": "2026-05-01"},
            "The end (2026-05-01) is before the start (2027-01-01).",
        ),
    ],
    ids=["negative", "minor-units", "no-frequency", "unit-price", "dates"],
)
def test_component_page_refuses_prices_that_do_not_fit(admin_client, fee, row, message):
    before = counts()
    values = {"frequency": b.frequency().pk, "valid_from": "2027-01-01", **row}
    prices_0 = {"prices-0-valid_to": "2026-12-31"}

    response = post_page(
        admin_client,
        url(PlanComponent, "change", fee.pk),
        {**prices_0, **new_price_row(1, **values)},
        rows={"prices": 2},
    )

    assert form_errors(response) == [message]
    assert counts() == before
    assert fee.prices.get().valid_to is None


def test_changing_a_component_to_graduated_needs_tiers_on_its_prices(admin_client, plan):
    calls = b.usage_component(plan, unit_price="0.10")
    before = counts()

    response = post_page(admin_client, url(PlanComponent, "change", calls.pk), {"rating_method": "graduated"})

    assert form_errors(response) == [
        "A graduated price is priced by its tiers: leave the unit price empty.",
        "The price from 2000-01-01 with no end: A graduated price needs tiers: at least one, starting at 0.",
    ]
    assert counts() == before
    assert PlanComponent.objects.get(pk=calls.pk).rating_method == "per_unit"


def test_a_tiered_component_links_to_the_price_page_for_new_prices(admin_client, graduated):
    response = admin_client.get(url(PlanComponent, "change", graduated.pk))

    html = response.content.decode()
    assert f'href="{url(Price, "add")}?component={graduated.pk}"' in html
    assert "Add a price with tiers" in html
    prices = next(f for f in response.context["inline_admin_formsets"] if f.formset.model is Price)
    assert prices.formset.max_num == 0  # no blank price rows: tiers are entered with the price


# --- tiers on the price page --------------------------------------------------------------------------------


def tier_rows(*bands) -> dict[str, Any]:
    data = {}
    for i, (low, high, rate) in enumerate(bands):
        data.update(
            {
                f"tiers-{i}-from_quantity": low,
                f"tiers-{i}-to_quantity": "" if high is None else high,
                f"tiers-{i}-unit_price": rate,
            }
        )
    return data


def add_tiered_price(client, component, *bands, **price):
    values = {"component": component.pk, "valid_from": "2026-01-01", **price, **tier_rows(*bands)}
    return post_page(
        client, f"{url(Price, 'add')}?component={component.pk}", values, rows={"tiers": max(3, len(bands))}
    )


def test_price_page_adds_a_tiered_price_with_its_tiers(admin_client, graduated):
    response = add_tiered_price(
        admin_client, graduated, ("0", "1000", "0.05"), ("1000", "5000", "0.04"), ("5000", None, "0.03")
    )

    assert response.status_code == 302, form_errors(response)
    price = graduated.prices.get()
    assert [(t.from_quantity, t.to_quantity, t.unit_price) for t in price.tiers.all()] == [
        (D(0), D(1000), D("0.05")),
        (D(1000), D(5000), D("0.04")),
        (D(5000), None, D("0.03")),
    ]
    assert AuditRecord.objects.filter(action="price.create", object_id=str(price.pk)).count() == 1
    assert AuditRecord.objects.filter(action="pricetier.create").count() == 3


@pytest.mark.parametrize(
    ("bands", "messages"),
    [
        (
            [("0", "1000", "0.05"), ("900", None, "0.03")],
            ["Tier 2 starts at 900 but tier 1 ends at 1000 (overlap)."],
        ),
        (
            [("0", "1000", "0.05"), ("1200", None, "0.03")],
            ["Tier 2 starts at 1200 but tier 1 ends at 1000 (gap: the units between have no price)."],
        ),
        ([("-5", "1000", "0.05"), ("1000", None, "0.03")], ["Must not be negative."]),
        ([("0", "1000", "-0.05"), ("1000", None, "0.03")], ["Must not be negative."]),
        (
            [("0", "1000", "0.05"), ("1000", "1000", "0.03")],
            ["The upper bound must be above the lower bound (1000)."],
        ),
        (
            [("0", "1000", "0.05"), ("1000", "2000", "0.03")],
            [
                "The last tier must be open-ended (leave its upper bound empty), or units above 2000 have "
                "no price."
            ],
        ),
        ([], ["A graduated price needs tiers: at least one, starting at 0."]),
    ],
    ids=["overlap", "gap", "negative-from", "negative-price", "empty-band", "closed-last", "none"],
)
def test_price_page_refuses_bad_tiers_and_stores_nothing(admin_client, graduated, bands, messages):
    before = counts()

    response = add_tiered_price(admin_client, graduated, *bands)

    assert form_errors(response) == messages
    assert counts() == before


def test_price_page_refuses_a_price_overlapping_another_of_the_component(admin_client, graduated):
    b.price(graduated, valid_from=JAN_1, valid_to=dt.date(2026, 6, 30), tiers=[(0, None, "0.05")])
    before = counts()

    response = add_tiered_price(admin_client, graduated, ("0", None, "0.04"), valid_from="2026-06-01")

    assert form_errors(response) == [
        "Overlaps the price valid from 2026-01-01 to 2026-06-30: end one the day before the other starts."
    ]
    assert counts() == before


def test_price_page_changes_tiers_and_refuses_a_gap(admin_client, graduated):
    price = b.price(graduated, valid_from=JAN_1, tiers=[(0, 1000, "0.05"), (1000, None, "0.03")])
    change = url(Price, "change", price.pk)
    before = counts()

    response = post_page(admin_client, change, {"tiers-1-from_quantity": "1500"})

    assert form_errors(response) == [
        "Tier 2 starts at 1500 but tier 1 ends at 1000 (gap: the units between have no price)."
    ]
    assert counts() == before

    response = post_page(
        admin_client, change, {"tiers-0-to_quantity": "1500", "tiers-1-from_quantity": "1500"}
    )

    assert response.status_code == 302, form_errors(response)
    assert list(price.tiers.values_list("from_quantity", "to_quantity")) == [(D(0), D(1500)), (D(1500), None)]
    assert AuditRecord.objects.filter(action="pricetier.update").count() == 2


def test_per_unit_prices_have_no_tiers_inline(admin_client, plan):
    calls = b.usage_component(plan, unit_price="0.10")

    response = admin_client.get(url(Price, "change", calls.prices.get().pk))

    assert response.status_code == 200
    assert response.context["inline_admin_formsets"] == []


# --- components on the plan page ----------------------------------------------------------------------------


def component_row(index: int, **values) -> dict[str, Any]:
    return {f"components-{index}-{k}": v for k, v in values.items()}


def test_plan_page_creates_a_plan_with_components(admin_client):
    product = Product.objects.create(code="mobile", name="Mobile", service_type="mobile")
    voice = b.usage_type("voice")

    response = post_page(
        admin_client,
        url(PricePlan, "add"),
        {
            "code": "m30",
            "name": "Mobile 30",
            "product": product.pk,
            "currency": "USD",
            "billing_term_scheme": b.scheme().pk,
            "active": "on",
            **component_row(
                0,
                position=1,
                code="fee",
                name="Monthly fee",
                kind="recurring",
                timing="advance",
                included_quantity="0",
            ),
            **component_row(
                1,
                position=2,
                code="voice",
                name="Calls",
                kind="usage",
                usage_type=voice.pk,
                rating_method="per_unit",
                included_quantity="100",
            ),
        },
        rows={"components": 2},
    )

    assert response.status_code == 302, form_errors(response)
    plan = PricePlan.objects.get(code="m30")
    assert list(plan.components.values_list("code", "kind", "timing", "rating_method")) == [
        ("fee", "recurring", "advance", ""),
        ("voice", "usage", "", "per_unit"),
    ]
    assert AuditRecord.objects.filter(action="priceplan.create").count() == 1
    assert AuditRecord.objects.filter(action="plancomponent.create").count() == 2


@pytest.mark.parametrize(
    ("rows", "messages"),
    [
        (
            [{"code": "fee", "name": "Fee", "kind": "recurring"}],
            ["A recurring component is charged in advance or in arrears: choose one."],
        ),
        (
            [
                {
                    "code": "fee",
                    "name": "Fee",
                    "kind": "recurring",
                    "timing": "advance",
                    "trigger": "activation",
                }
            ],
            ["Only one-time components have a trigger: leave it empty."],
        ),
        (
            [
                {
                    "code": "calls",
                    "name": "Calls",
                    "kind": "usage",
                    "usage_type": "voice",
                    "rating_method": "per_unit",
                    "included_quantity": "-10",
                }
            ],
            ["Must not be negative."],
        ),
        (
            [
                {
                    "code": "calls",
                    "name": "Calls",
                    "kind": "usage",
                    "usage_type": "voice",
                    "rating_method": "per_unit",
                },
                {
                    "code": "more",
                    "name": "More",
                    "kind": "usage",
                    "usage_type": "voice",
                    "rating_method": "volume",
                },
            ],
            [
                "Component 1 ('calls') already rates Voice (min): a plan rates each usage type in one "
                "component."
            ],
        ),
    ],
    ids=["no-timing", "trigger-on-recurring", "negative-included", "usage-type-twice"],
)
def test_plan_page_refuses_bad_components_and_stores_nothing(admin_client, rows, messages):
    product = Product.objects.create(code="mobile", name="Mobile", service_type="mobile")
    voice = b.usage_type("voice")
    data = {
        "code": "m30",
        "name": "Mobile 30",
        "product": product.pk,
        "currency": "USD",
        "billing_term_scheme": b.scheme().pk,
    }
    for i, row in enumerate(rows):
        row = {"position": i, "included_quantity": "0", **row}
        if row.get("usage_type") == "voice":
            row["usage_type"] = voice.pk
        data.update(component_row(i, **row))
    before = counts()

    response = post_page(admin_client, url(PricePlan, "add"), data, rows={"components": len(rows)})

    assert form_errors(response) == messages
    assert counts() == before


def test_plan_currency_is_fixed_once_subscriptions_bill_in_it(admin_client, plan, fee):
    b.subscription(AccountFactory(), plan, dt.date(2026, 6, 1))

    response = post_page(admin_client, url(PricePlan, "change", plan.pk), {"currency": "EUR"})

    assert form_errors(response) == [
        "1 subscription(s) bill in USD on this plan: it keeps its currency. Create a new plan in EUR instead."
    ]
    assert PricePlan.objects.get(pk=plan.pk).currency == "USD"


def test_plan_page_links_each_component_to_its_prices(admin_client, plan, fee):
    response = admin_client.get(url(PricePlan, "change", plan.pk))

    html = response.content.decode()
    assert f'<a href="{url(PlanComponent, "change", fee.pk)}">1 price(s): edit</a>' in html


# --- taxes and discounts ------------------------------------------------------------------------------------


def test_tax_rate_admin_refuses_an_overlapping_rate(admin_client):
    category, jurisdiction = b.tax("8.25", valid_from=JAN_1)
    before = counts()
    data = {
        "name": "Sales tax",
        "category": category.pk,
        "jurisdiction": jurisdiction.pk,
        "rate": "9",
        "valid_from": "2026-07-01",
    }

    response = post_page(admin_client, url(TaxRate, "add"), data)

    assert form_errors(response) == [
        "Overlaps the Sales tax rate of 8.25% valid from 2026-01-01 with no end: end one the day before the "
        "other "
        "starts."
    ]
    assert counts() == before

    existing = TaxRate.objects.get()
    response = post_page(admin_client, url(TaxRate, "change", existing.pk), {"valid_to": "2026-06-30"})
    assert response.status_code == 302, form_errors(response)
    response = post_page(admin_client, url(TaxRate, "add"), data)
    assert response.status_code == 302, form_errors(response)
    assert list(TaxRate.objects.order_by("valid_from").values_list("rate", "valid_to")) == [
        (D("8.25"), dt.date(2026, 6, 30)),
        (D(9), None),
    ]
    assert AuditRecord.objects.filter(action="taxrate.update").count() == 1
    assert AuditRecord.objects.filter(action="taxrate.create").count() == 1


def test_tax_rate_admin_refuses_a_negative_rate(admin_client):
    category, jurisdiction = b.tax("8.25", valid_from=JAN_1)
    before = counts()
    data = {
        "name": "Rebate",
        "category": category.pk,
        "jurisdiction": jurisdiction.pk,
        "rate": "-1",
        "valid_from": "2020-01-01",
        "valid_to": "2020-12-31",
    }

    response = post_page(admin_client, url(TaxRate, "add"), data)

    assert form_errors(response) == ["Must not be negative."]
    assert counts() == before


@pytest.mark.parametrize(
    ("values", "messages"),
    [
        ({"kind": "percentage", "value": "150"}, ["A percentage is above 0 and at most 100, not 150."]),
        ({"kind": "percentage", "value": "-10"}, ["Must not be negative."]),
        ({"kind": "fixed", "value": "-5.00", "currency": "USD"}, ["Must not be negative."]),
        (
            {"kind": "fixed", "value": "5.00", "currency": "EUR"},
            ["Price plan {plan} bills in USD: a fixed discount on it is in USD too."],
        ),
        (
            {"kind": "percentage", "value": "10", "account": "account"},
            ["A discount applies to one of a price plan, a subscription and an account: choose one."] * 2,
        ),
    ],
    ids=["over-100", "negative-percent", "negative-fixed", "currency", "two-targets"],
)
def test_discount_admin_refuses_bad_discounts(admin_client, plan, values, messages):
    account = AccountFactory()
    data = {
        "code": "promo",
        "name": "Promo",
        "applies_to": "all",
        "price_plan": plan.pk,
        "valid_from": "2026-01-01",
        "active": "on",
        **values,
    }
    if data.get("account") == "account":
        data["account"] = account.pk
    before = counts()

    response = post_page(admin_client, url(Discount, "add"), data)

    assert form_errors(response) == [m.format(plan=plan.code) for m in messages]
    assert counts() == before


def test_discount_admin_adds_a_fixed_discount_in_the_plan_currency(admin_client, plan):
    data = {
        "code": "promo",
        "name": "Promo",
        "kind": "fixed",
        "value": "5.00",
        "currency": "USD",
        "applies_to": "recurring",
        "price_plan": plan.pk,
        "valid_from": "2026-01-01",
        "active": "on",
    }

    response = post_page(admin_client, url(Discount, "add"), data)

    assert response.status_code == 302, form_errors(response)
    assert Discount.objects.get().target_label == f"plan {plan}"
    assert AuditRecord.objects.filter(action="discount.create").count() == 1


# --- changelists: search, filters, bounded queries ----------------------------------------------------------


def test_catalog_changelists_run_in_a_bounded_number_of_queries(admin_client, django_assert_max_num_queries):
    category, jurisdiction = b.tax("8.25")
    for i in range(6):
        plan = b.plan(name=f"Plan {i}")
        b.recurring(plan, "30.00", tax_category=category)
        b.usage_component(plan, method="graduated", tiers=[(0, 100, "0.05"), (100, None, "0.01")])
        b.discount(value=10, plan=plan)
        b.subscription(AccountFactory(), plan, dt.date(2026, 6, 1))
    pages = {
        url(PricePlan, "changelist"): 6,
        url(PlanComponent, "changelist"): 12,
        url(Price, "changelist"): 12,
        url(Discount, "changelist"): 6,
        url(TaxRate, "changelist"): 1,
    }
    for page, rows in pages.items():
        with django_assert_max_num_queries(12):
            response = admin_client.get(page)
        assert response.status_code == 200
        assert response.context["cl"].result_count == rows

    response = admin_client.get(url(PricePlan, "changelist"))
    html = response.content.decode()
    assert '<td class="field-component_count">2</td>' in html
    assert '<td class="field-subscription_count">1</td>' in html
    response = admin_client.get(url(Price, "changelist"), {"component__kind__exact": "usage"})
    assert response.context["cl"].result_count == 6
    assert "0–100 at 0.05; 100–∞ at 0.01" in response.content.decode()


def test_changelist_search_and_filters(admin_client, plan, fee):
    other = b.plan(currency="EUR", name="Europa")
    url_list = url(PricePlan, "changelist")

    assert {p.pk for p in admin_client.get(url_list, {"q": plan.code}).context["cl"].result_list} == {plan.pk}
    assert {p.pk for p in admin_client.get(url_list, {"currency": "EUR"}).context["cl"].result_list} == {
        other.pk
    }
    PricePlan.objects.filter(pk=other.pk).update(active=False)
    assert {p.pk for p in admin_client.get(url_list, {"active__exact": "1"}).context["cl"].result_list} == {
        plan.pk
    }


def test_csr_cannot_open_the_catalog_admin(client, csr_user, plan):
    client.force_login(csr_user)

    response = client.get(url(PricePlan, "changelist"))

    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# --- bill segments (read-only) ------------------------------------------------------------------------------


@pytest.fixture
def segments(plan, fee):
    sub = b.subscription(AccountFactory(), plan, dt.date(2026, 6, 1), identifier="+15550001111")
    now = timezone.now()
    rated = BillSegment.objects.create(
        subscription=sub,
        period_start=dt.date(2026, 6, 1),
        period_end=dt.date(2026, 6, 30),
        status=BillSegment.Status.RATED,
        currency="USD",
        charges=D("30.00"),
        total=D("30.00"),
        rated_at=now,
    )
    CalculationLine.objects.create(
        segment=rated,
        position=1,
        kind="recurring",
        component=fee,
        description="Monthly fee (in advance)",
        quantity=D(1),
        rate=D("30.00"),
        amount=D("30.00"),
        period_start=dt.date(2026, 6, 1),
        period_end=dt.date(2026, 6, 30),
    )
    error = BillSegment.objects.create(
        subscription=sub,
        period_start=dt.date(2026, 7, 1),
        period_end=dt.date(2026, 7, 31),
        status=BillSegment.Status.ERROR,
        currency="USD",
        error_code="no_price",
        error_message="No price for Monthly fee for monthly billing on 2026-07-01.",
        rated_at=now,
    )
    return rated, error


def test_segment_list_shows_errors_with_code_and_message(
    admin_client, segments, django_assert_max_num_queries
):
    changelist = reverse("admin:billruns_billsegment_changelist")

    with django_assert_max_num_queries(11):
        response = admin_client.get(changelist, {"status__exact": "error"})

    assert [s.pk for s in response.context["cl"].result_list] == [segments[1].pk]
    html = response.content.decode()
    assert "no_price" in html and "No price for Monthly fee for monthly billing on 2026-07-01." in html
    assert admin_client.get(changelist, {"error_code": "no_price"}).context["cl"].result_count == 1
    assert admin_client.get(changelist, {"q": "+15550001111"}).context["cl"].result_count == 2


def test_segment_page_is_read_only_with_its_lines(admin_client, segments):
    rated, _ = segments
    change = reverse("admin:billruns_billsegment_change", args=[rated.pk])

    response = admin_client.get(change)

    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    html = response.content.decode()
    assert "Monthly fee (in advance)" in html and "+15550001111" in html
    assert admin_client.get(reverse("admin:billruns_billsegment_add")).status_code == 403
    assert admin_client.post(change, {"status": "billed"}).status_code == 403
    assert BillSegment.objects.get(pk=rated.pk).status == "rated"


# --- bill messages ------------------------------------------------------------------------------------------


def test_bill_message_admin_adds_lists_and_refuses_dates_out_of_order(admin_client):
    add = reverse("admin:invoicing_billmessage_add")
    data = {
        "code": "holidays",
        "text": "Our offices close on 24 December.",
        "priority": "10",
        "valid_from": "2026-12-01",
        "valid_to": "2026-11-30",
        "active": "on",
    }

    response = admin_client.post(add, data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "valid_to": ["The end (2026-11-30) is before the start (2026-12-01)."]
    }
    assert BillMessage.objects.count() == 0

    response = admin_client.post(add, {**data, "valid_to": "2026-12-31"})

    assert response.status_code == 302
    assert AuditRecord.objects.filter(action="bill_message.create").count() == 1
    listing = admin_client.get(reverse("admin:invoicing_billmessage_changelist"), {"q": "offices"})
    assert listing.context["cl"].result_count == 1


# --- reference data -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        "billingfrequency",
        "billingtermscheme",
        "usagetype",
        "product",
        "taxcategory",
        "taxjurisdiction",
        "taxrate",
    ],
)
def test_reference_pages_open(admin_client, model):
    b.tax("8.25")
    b.usage_type("voice")
    Product.objects.create(code="mobile", name="Mobile", service_type="mobile")

    assert admin_client.get(reverse(f"admin:billruns_{model}_add")).status_code == 200
    listing = admin_client.get(reverse(f"admin:billruns_{model}_changelist"))
    assert listing.status_code == 200 and listing.context["cl"].result_count >= 1


def test_a_frequency_in_use_keeps_its_code_and_months(admin_client, plan, fee):
    monthly = b.frequency("monthly")
    quarterly = b.frequency("quarterly")
    b.subscription(AccountFactory(), plan, dt.date(2026, 6, 1))

    used = admin_client.get(reverse("admin:billruns_billingfrequency_change", args=[monthly.pk]))
    unused = admin_client.get(reverse("admin:billruns_billingfrequency_change", args=[quarterly.pk]))

    assert set(used.context["adminform"].form.fields) == {"name"}
    assert set(unused.context["adminform"].form.fields) == {"name", "months"}


def test_product_admin_adds_with_an_audit_record(admin_client):
    response = admin_client.post(
        reverse("admin:billruns_product_add"),
        {"code": "fibre", "name": "Fibre 1G", "service_type": "broadband", "active": "on"},
    )

    assert response.status_code == 302
    record = AuditRecord.objects.get(action="product.create")
    assert record.after["code"] == "fibre"
