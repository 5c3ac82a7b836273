"""GET/POST /api/v1/catalog/price-plans/: staff read, billing admins create whole plans; a bad plan is a 400
naming each field by path and stores nothing; biller API clients are refused."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from billing_mgmt import roles
from billing_mgmt.models import AuditRecord, IdempotencyRecord
from billruns.models import PlanComponent, Price, PricePlan, PriceTier, Product
from tests.billruns import builders as b
from tests.factories import AccountFactory

LIST = "/api/v1/catalog/price-plans/"

pytestmark = pytest.mark.django_db


def detail(code: str) -> str:
    return f"{LIST}{code}/"


@pytest.fixture
def catalog():
    Product.objects.create(code="mobile", name="Mobile line", service_type="mobile")
    b.usage_type("voice", "min")
    b.tax("10")


BODY = {
    "code": "mobile-30",
    "name": "Mobile 30",
    "product": "mobile",
    "currency": "USD",
    "billing_term_scheme": "standard",
    "components": [
        {
            "code": "fee",
            "name": "Monthly fee",
            "kind": "recurring",
            "timing": "advance",
            "tax_category": "telecom",
            "prices": [
                {
                    "frequency": "monthly",
                    "valid_from": "2026-01-01",
                    "valid_to": "2026-06-30",
                    "amount": "30.00",
                },
                {"frequency": "monthly", "valid_from": "2026-07-01", "amount": "35.00"},
                {"frequency": "annual", "valid_from": "2026-01-01", "amount": "330.00"},
            ],
        },
        {
            "code": "voice",
            "name": "Calls",
            "kind": "usage",
            "usage_type": "voice",
            "rating_method": "graduated",
            "included_quantity": "100",
            "prices": [
                {
                    "valid_from": "2026-01-01",
                    "tiers": [
                        {"from_quantity": "0", "to_quantity": "1000", "unit_price": "0.05"},
                        {"from_quantity": "1000", "to_quantity": "5000", "unit_price": "0.04"},
                        {"from_quantity": "5000", "to_quantity": None, "unit_price": "0.03"},
                    ],
                }
            ],
        },
        {
            "code": "activation",
            "name": "Activation fee",
            "kind": "one_time",
            "trigger": "activation",
            "prices": [{"valid_from": "2026-01-01", "amount": "15.00"}],
        },
    ],
}


def stored() -> tuple[int, ...]:
    return (
        PricePlan.objects.count(),
        PlanComponent.objects.count(),
        Price.objects.count(),
        PriceTier.objects.count(),
        AuditRecord.objects.count(),
        IdempotencyRecord.objects.count(),
    )


def with_change(path: list, value) -> dict:
    body = copy.deepcopy(BODY)
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


# --- create -------------------------------------------------------------------------------------------------


def test_billing_admin_creates_a_whole_plan(catalog, billing_admin_client):
    response = billing_admin_client.post(LIST, BODY, format="json", HTTP_IDEMPOTENCY_KEY="plan-1")

    assert response.status_code == 201, response.json()
    assert response["Location"] == detail("mobile-30")
    body = response.json()
    assert {k: body[k] for k in ("code", "currency", "product", "billing_term_scheme", "active")} == {
        "code": "mobile-30",
        "currency": "USD",
        "product": "mobile",
        "billing_term_scheme": "standard",
        "active": True,
    }
    fee, voice, activation = body["components"]
    assert (fee["code"], fee["timing"], fee["tax_category"], fee["position"]) == (
        "fee",
        "advance",
        "telecom",
        0,
    )
    assert [(p["frequency"], p["valid_from"], p["valid_to"], p["amount"]) for p in fee["prices"]] == [
        ("monthly", "2026-01-01", "2026-06-30", "30.0000"),
        ("monthly", "2026-07-01", None, "35.0000"),
        ("annual", "2026-01-01", None, "330.0000"),
    ]
    assert voice["prices"][0]["tiers"] == [
        {"from_quantity": "0.000000", "to_quantity": "1000.000000", "unit_price": "0.05000000"},
        {"from_quantity": "1000.000000", "to_quantity": "5000.000000", "unit_price": "0.04000000"},
        {"from_quantity": "5000.000000", "to_quantity": None, "unit_price": "0.03000000"},
    ]
    assert (activation["trigger"], activation["prices"][0]["amount"]) == ("activation", "15.0000")
    assert AuditRecord.objects.filter(action="price_plan.create").count() == 1

    again = billing_admin_client.post(LIST, BODY, format="json", HTTP_IDEMPOTENCY_KEY="plan-1")

    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert PricePlan.objects.count() == 1


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        (
            ["components", 0, "prices", 1, "valid_from"],
            "2026-06-15",
            "components[0].prices[1].valid_from",
            "Overlaps the price valid from 2026-01-01 to 2026-06-30 (monthly billing): end one the day "
            "before "
            "the other starts.",
        ),
        (
            ["components", 1, "prices", 0, "tiers", 1, "from_quantity"],
            "1200",
            "components[1].prices[0].tiers[1].from_quantity",
            "Tier 2 starts at 1200 but tier 1 ends at 1000 (gap: the units between have no price).",
        ),
        (
            ["components", 1, "prices", 0, "tiers", 2, "from_quantity"],
            "4000",
            "components[1].prices[0].tiers[2].from_quantity",
            "Tier 3 starts at 4000 but tier 2 ends at 5000 (overlap).",
        ),
        (
            ["components", 1, "prices", 0, "tiers", 0, "from_quantity"],
            "-1",
            "components[1].prices[0].tiers[0].from_quantity",
            "Must not be negative.",
        ),
        (
            ["components", 1, "prices", 0, "tiers", 2, "to_quantity"],
            "9000",
            "components[1].prices[0].tiers[2].to_quantity",
            "The last tier must be open-ended (leave its upper bound empty), or units above 9000 have no "
            "price.",
        ),
        (
            ["components", 1, "included_quantity"],
            "-100",
            "components[1].included_quantity",
            "Must not be negative.",
        ),
        (
            ["components", 0, "prices", 0, "amount"],
            "-30.00",
            "components[0].prices[0].amount",
            "Must not be negative.",
        ),
        (
            ["components", 0, "prices", 0, "amount"],
            "30.005",
            "components[0].prices[0].amount",
            "A USD amount has at most 2 decimal places.",
        ),
        (
            ["components", 0, "prices", 2, "frequency"],
            None,
            "components[0].prices[2].frequency",
            "A recurring price is for one billing frequency: choose it.",
        ),
        (
            ["components", 1, "prices", 0, "unit_price"],
            "0.10",
            "components[1].prices[0].unit_price",
            "A graduated price is priced by its tiers: leave the unit price empty.",
        ),
        (
            ["components", 2, "timing"],
            "advance",
            "components[2].timing",
            "Only recurring components have a timing: leave it empty.",
        ),
        (
            ["components", 0, "prices", 0, "amount"],
            "thirty",
            "components[0].prices[0].amount",
            "A valid number is required.",
        ),
        (["product"], "nope", "product", "Object with code=nope does not exist."),
        (["currency"], "XYZ", "currency", "'XYZ' is not an ISO 4217 currency code."),
        (["components"], [], "components", "A price plan needs at least one component."),
    ],
    ids=[
        "price-overlap",
        "tier-gap",
        "tier-overlap",
        "negative-quantity",
        "closed-last-tier",
        "negative-included",
        "negative-amount",
        "minor-units",
        "no-frequency",
        "unit-price-on-tiered",
        "timing-on-one-time",
        "not-a-number",
        "unknown-product",
        "bad-currency",
        "no-components",
    ],
)
def test_bad_input_is_a_400_with_the_field_path_and_nothing_is_stored(
    catalog, billing_admin_client, path, value, field, message
):
    before = stored()

    response = billing_admin_client.post(
        LIST, with_change(path, value), format="json", HTTP_IDEMPOTENCY_KEY="bad-plan"
    )

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["fields"] == {field: [message]}
    assert stored() == before


def test_a_duplicate_code_is_a_400(catalog, billing_admin_client):
    assert billing_admin_client.post(LIST, BODY, format="json").status_code == 201
    before = stored()

    response = billing_admin_client.post(LIST, BODY, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "code": ["A price plan with the code 'mobile-30' already exists."]
    }
    assert stored() == before


@pytest.mark.parametrize("role", [roles.CSR, roles.SUPERVISOR])
def test_only_billing_admins_create(catalog, session_client, role):
    before = stored()

    response = session_client(role).post(LIST, BODY, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert stored() == before


# --- read ---------------------------------------------------------------------------------------------------


@pytest.fixture
def plans(catalog, billing_admin_user):
    made = []
    for i in range(5):
        plan = b.plan(currency="EUR" if i == 4 else "USD", name=f"Plan {i}")
        b.recurring(plan, "30.00")
        b.usage_component(plan, method="volume", tiers=[(0, 100, "0.05"), (100, None, "0.02")])
        made.append(plan)
    PricePlan.objects.filter(pk=made[3].pk).update(active=False)
    return made


def codes(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [row["code"] for row in response.json()["results"]]


def test_staff_list_and_filter_plans(plans, session_client, django_assert_max_num_queries):
    client = session_client(roles.CSR)

    with django_assert_max_num_queries(6):
        response = client.get(LIST)

    assert sorted(codes(response)) == sorted(p.code for p in plans)
    assert response.json()["results"][0].keys() == {
        "code",
        "name",
        "product",
        "currency",
        "billing_term_scheme",
        "description",
        "active",
    }
    assert codes(client.get(LIST, {"currency": "eur"})) == [plans[4].code]
    assert codes(client.get(LIST, {"code": plans[1].code.upper()})) == [plans[1].code]
    assert plans[3].code not in codes(client.get(LIST, {"active": "true"}))
    assert codes(client.get(LIST, {"active": "false"})) == [plans[3].code]


def test_detail_shows_components_prices_and_tiers_in_a_fixed_number_of_queries(
    plans, session_client, django_assert_max_num_queries
):
    client = session_client(roles.SUPERVISOR)
    plan = plans[0]

    with django_assert_max_num_queries(8):
        response = client.get(detail(plan.code))

    assert response.status_code == 200
    body = response.json()
    assert [c["kind"] for c in body["components"]] == ["recurring", "usage"]
    usage = body["components"][1]
    assert (usage["rating_method"], usage["usage_type"]) == ("volume", "voice")
    assert [t["unit_price"] for t in usage["prices"][0]["tiers"]] == ["0.05000000", "0.02000000"]
    assert body["components"][0]["prices"] == [
        {
            "frequency": "monthly",
            "valid_from": "2000-01-01",
            "valid_to": None,
            "amount": "30.0000",
            "unit_price": None,
            "tiers": [],
        }
    ]
    assert client.get(detail("no-such-plan")).status_code == 404


def test_biller_clients_are_refused(plans, biller_factory, biller_client):
    client = biller_client(biller_factory(code="alpha"))
    before = stored()

    for response in (
        client.get(LIST),
        client.get(detail(plans[0].code)),
        client.post(LIST, BODY, format="json"),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["message"] == (
            "The catalog API is for staff; biller API clients have no access."
        )
    assert stored() == before


def test_anonymous_and_customers_are_refused(plans, api_client, session_client):
    assert api_client.get(LIST).status_code == 401
    assert session_client(roles.CUSTOMER).get(LIST).status_code == 403


def test_a_created_plan_subscribes_and_bills_as_sent(catalog, billing_admin_client):
    """End to end: the plan posted here takes a subscription through the API and rates as entered."""
    assert billing_admin_client.post(LIST, BODY, format="json").status_code == 201
    account = AccountFactory()
    response = billing_admin_client.post(
        "/api/v1/subscriptions/",
        {
            "account": account.number,
            "price_plan": "mobile-30",
            "service_identifier": "+15550001",
            "start_date": "2026-06-01",
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert (response.json()["frequency"], response.json()["currency"]) == ("monthly", "USD")
    assert dt.date.fromisoformat(response.json()["start_date"]) == dt.date(2026, 6, 1)
