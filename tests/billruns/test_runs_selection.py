"""Criteria and filters choose exactly the right bill units (table-driven)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import AccountGroup
from billruns.models import BillingTermScheme, RunType
from billruns.services import billrun_create
from billruns.services.run_selection import run_bill_units, run_subscriptions
from tests.billruns import builders as b
from tests.billruns.runs_helpers import JULY_1, definition
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db
JUNE_1 = dt.date(2026, 6, 1)


@pytest.fixture
def base():
    """Named bill units with different profiles and subscriptions:

    vip      VIP, card, paper; monthly normal subscription
    gov      government, direct debit, portal; quarterly normal subscription
    std      standard, manual, e-mail; monthly normal + a prepaid subscription
    parent   standard, manual, e-mail; no subscription of its own, a non-paying child with one
    late     standard; a subscription that starts after the bill-as-of date
    prepaid  standard; only a prepaid subscription
    done     standard; a cancelled subscription billed past its end
    """
    definition()
    definition(RunType.PREPAID, name="Prepaid")
    normal = b.plan()
    b.recurring(normal, "10.00")
    b.recurring(normal, "30.00", freq="quarterly")
    prepaid_scheme = BillingTermScheme.objects.get(code="prepaid")
    prepaid_plan = b.plan()
    prepaid_plan.billing_term_scheme = prepaid_scheme
    prepaid_plan.save()

    def unit(name, ar="standard", pay="manual", pres="email", **kwargs):
        account = AccountFactory(name=name, **kwargs)
        profile = account.billing_profile
        profile.ar_classification, profile.payment_preference, profile.presentment_preference = ar, pay, pres
        profile.save()
        return account

    units = {
        "vip": unit("vip", "vip", "card", "paper"),
        "gov": unit("gov", "government", "direct_debit", "portal"),
        "std": unit("std"),
        "parent": unit("parent"),
        "late": unit("late"),
        "prepaid": unit("prepaid"),
        "done": unit("done"),
    }
    child = AccountFactory(name="child", parent=units["parent"], is_paying=False)
    subs = {
        "vip": b.subscription(units["vip"], normal, JUNE_1),
        "gov": b.subscription(units["gov"], normal, JUNE_1, freq="quarterly"),
        "std": b.subscription(units["std"], normal, JUNE_1),
        "std-prepaid": b.subscription(units["std"], prepaid_plan, JUNE_1),
        "child": b.subscription(child, normal, JUNE_1),
        "late": b.subscription(units["late"], normal, dt.date(2026, 7, 2)),
        "prepaid": b.subscription(units["prepaid"], prepaid_plan, JUNE_1),
        "done": b.subscription(units["done"], normal, dt.date(2026, 1, 1), end=dt.date(2026, 3, 31)),
    }
    for code in ("std-prepaid", "prepaid"):
        subs[code].billing_term_scheme = prepaid_scheme
        subs[code].save()
    subs["done"].billed_through = dt.date(2026, 4, 30)
    subs["done"].save()
    group = AccountGroup.objects.create(code="north", name="North")
    group.accounts.add(units["vip"], child)
    return units, subs, child


def _names(units, ids):
    by_pk = {a.pk: name for name, a in units.items()}
    return sorted(by_pk[pk] for pk in ids)


CASES = [
    ("no criteria: every normal bill unit", {}, ["gov", "parent", "std", "vip"]),
    ("AR classification", {"ar_classifications": ["vip", "government"]}, ["gov", "vip"]),
    ("payment preference", {"payment_preferences": ["manual"]}, ["parent", "std"]),
    ("presentment preference", {"presentment_preferences": ["paper", "portal"]}, ["gov", "vip"]),
    (
        "two criteria both apply",
        {"payment_preferences": ["card", "manual"], "presentment_preferences": ["email"]},
        ["parent", "std"],
    ),
    ("billing frequency", {"billing_frequencies": ["quarterly"]}, ["gov"]),
    ("billing term scheme", {"billing_term_schemes": ["standard"]}, ["gov", "parent", "std", "vip"]),
    ("account filter: a child bills its paying parent", {"accounts": ["child"]}, ["parent"]),
    ("account filter", {"accounts": ["vip", "gov"]}, ["gov", "vip"]),
    ("account filter and criteria", {"accounts": ["vip", "gov"], "ar_classifications": ["vip"]}, ["vip"]),
    ("group filter", {"groups": ["north"]}, ["parent", "vip"]),
    ("subscription filter", {"subscriptions": ["gov", "child"]}, ["gov", "parent"]),
    ("filters all apply", {"groups": ["north"], "accounts": ["vip", "std"]}, ["vip"]),
    ("an account with nothing to bill", {"accounts": ["late"]}, []),
]


@pytest.mark.parametrize(("label", "criteria", "expected"), CASES, ids=[c[0] for c in CASES])
def test_criteria_and_filters_select_exactly(base, label, criteria, expected):
    units, subs, child = base
    values = {}
    for name, value in criteria.items():
        if name == "accounts":
            values[name] = [child if v == "child" else units[v] for v in value]
        elif name == "subscriptions":
            values[name] = [subs[v] for v in value]
        elif name == "groups":
            values[name] = list(AccountGroup.objects.filter(code__in=value))
        elif name == "billing_frequencies":
            values[name] = [b.frequency(v) for v in value]
        elif name == "billing_term_schemes":
            values[name] = [b.scheme(v) for v in value]
        else:
            values[name] = value
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1, **values)
    assert _names(units, run_bill_units(run)) == expected


def test_prepaid_runs_select_prepaid_subscriptions(base):
    units, subs, _child = base
    run = billrun_create(run_type=RunType.PREPAID, bill_as_of_date=JULY_1, transaction_date=JULY_1)
    assert _names(units, run_bill_units(run)) == ["prepaid", "std"]
    assert sorted(run_subscriptions(run).values_list("pk", flat=True)) == sorted(
        [subs["std-prepaid"].pk, subs["prepaid"].pk]
    )


def test_selection_is_one_query_for_the_units(base):
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    with CaptureQueriesContext(connection) as queries:
        run_bill_units(run)
    # the run's criteria lists (schemes, frequencies, subscriptions) + the selection + the two filters
    assert len(queries) <= 6
