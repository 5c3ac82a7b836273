"""Shared data for the billing engine's CSR page tests (tests/billruns/test_views_*.py, tests/browser)."""

from __future__ import annotations

import datetime as dt

from billruns.models import PricePlan, Subscription
from tests.billruns import builders as b
from tests.factories import AccountFactory

BILL_DATE = dt.date(2026, 6, 10)  # "today" in these tests: bill now and the preview bill on this day


def freeze_today(monkeypatch, day: dt.date = BILL_DATE) -> None:
    """Bill now and the preview bill "today" (timezone.localdate()): fix the day so amounts are exact."""
    monkeypatch.setattr("django.utils.timezone.localdate", lambda *args, **kwargs: day)


def mobile_plan(
    name: str = "Mobile 30", fee: str = "30.00", tax_category=None, activation: str | None = "15.00"
):
    plan = b.plan(name=name)
    b.recurring(plan, fee, tax_category=tax_category)
    if activation:
        b.one_time(plan, activation, tax_category=tax_category)
    return plan


def billed_household(*, name: str = "Harper Household", locale: str = "en_US"):
    """A paying account with one subscription from June 10 on a 30.00 plan with a 15.00 activation fee and
    10% tax: billed on June 10, 21 of 30 days = 21.00 + 15.00, tax 3.60, total due 39.60."""
    account = AccountFactory(name=name)
    profile = account.billing_profile
    profile.payment_terms_days = 14
    profile.locale = locale
    profile.save()
    category, jurisdiction = b.tax("10")
    plan = mobile_plan(tax_category=category)
    subscription = b.subscription(
        account, plan, BILL_DATE, identifier="+15550100100", jurisdiction=jurisdiction
    )
    return account, subscription, plan


def add_subscriptions(
    account, plan: PricePlan, count: int, *, start: dt.date = BILL_DATE
) -> list[Subscription]:
    """``count`` more subscriptions on ``plan`` (taxed where the plan's first subscription is)."""
    jurisdiction = (
        Subscription.objects.filter(price_plan=plan).values_list("tax_jurisdiction", flat=True).first()
    )
    return [
        Subscription.objects.create(
            account=account,
            price_plan=plan,
            service_identifier=f"+1555077{i:04d}",
            start_date=start,
            billing_term_scheme=plan.billing_term_scheme,
            frequency=b.frequency(),
            tax_jurisdiction_id=jurisdiction,
        )
        for i in range(count)
    ]
