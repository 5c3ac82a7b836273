"""Subscriptions: create, change and cancel through the services and the admin form (the same checks, locks
and audit records), and two concurrent creates for one service identifier."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.db import transaction
from django.urls import reverse

from accounts.models import Account
from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.models import AuditRecord
from billruns.models import BillingTermScheme, BillSegment, Subscription
from billruns.services import (
    subscription_cancel,
    subscription_create,
    subscription_rate,
    subscription_update,
)
from tests.billruns import builders as b
from tests.billruns.test_admin_catalog import form_errors, post_page
from tests.concurrency import run_in_threads
from tests.factories import AccountFactory

D = b.D
JUNE_1 = dt.date(2026, 6, 1)
JULY_1 = dt.date(2026, 7, 1)
PHONE = "+15550102030"


def account(currency: str = "USD", frequency: str = "monthly", **fields) -> Account:
    acc = AccountFactory(**fields)
    acc.billing_profile.currency = currency
    acc.billing_profile.billing_frequency = frequency
    acc.billing_profile.save()
    return acc


def priced_plan(currency: str = "USD", *, scheme: str = "standard", freqs=("monthly", "quarterly")):
    plan = b.plan(currency=currency)
    if scheme != "standard":
        plan.billing_term_scheme = b.scheme(scheme)
        plan.save()
    component = b.recurring(plan, "30.00", freq=freqs[0])
    for code in freqs[1:]:
        b.price(component, amount="85.00", freq=code)
    return plan


def rows() -> tuple[int, int]:
    return Subscription.objects.count(), AuditRecord.objects.filter(
        action__startswith="subscription."
    ).count()


def refused(**kwargs) -> ApplicationError:
    before = rows()
    with pytest.raises(ApplicationError) as caught:
        subscription_create(**kwargs)
    assert rows() == before
    return caught.value


# --- create -------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_takes_frequency_from_the_profile_and_scheme_from_the_plan(billing_admin_user):
    acc = account(frequency="quarterly")
    plan = priced_plan()

    sub = subscription_create(
        account=acc,
        price_plan=plan,
        service_identifier=f" {PHONE} ",
        start_date=JUNE_1,
        actor=billing_admin_user,
    )

    assert (sub.service_identifier, sub.start_date, sub.end_date, sub.status) == (
        PHONE,
        JUNE_1,
        None,
        "active",
    )
    assert (sub.frequency.code, sub.billing_term_scheme.code, sub.processing_sequence) == (
        "quarterly",
        "standard",
        100,
    )
    record = AuditRecord.objects.get(action="subscription.create")
    assert (record.object_id, record.account_id, record.actor_user) == (
        str(sub.pk),
        acc.pk,
        billing_admin_user,
    )
    assert record.after["service_identifier"] == PHONE and record.after["frequency_id"] == sub.frequency_id


@pytest.mark.django_db
def test_currency_must_be_the_bill_units(billing_admin_user):
    parent = account(currency="EUR")
    child = account(
        currency="USD", parent=parent, is_paying=False
    )  # its own profile says USD; its bill is EUR
    plan = priced_plan("USD")

    error = refused(account=child, price_plan=plan, service_identifier=PHONE, start_date=JUNE_1, actor=None)

    assert error.fields == {
        "price_plan": [
            f"Price plan {plan.name} is in USD but account {child.number} (billed on account "
            f"{parent.number}) "
            "bills in EUR: choose a plan in EUR."
        ]
    }
    assert error.message == f"The subscription is not valid: {error.fields['price_plan'][0]}"
    subscription_create(
        account=child, price_plan=priced_plan("EUR"), service_identifier=PHONE, start_date=JUNE_1, actor=None
    )


@pytest.mark.django_db
def test_overlapping_service_identifier_is_refused_adjacent_is_fine():
    acc, plan = account(), priced_plan()
    first = subscription_create(
        account=acc,
        price_plan=plan,
        service_identifier=PHONE,
        start_date=JUNE_1,
        end_date=dt.date(2026, 6, 30),
        actor=None,
    )

    error = refused(
        account=account(),
        price_plan=plan,
        service_identifier=PHONE,
        start_date=dt.date(2026, 6, 30),
        actor=None,
    )

    assert error.fields == {
        "service_identifier": [
            f"{PHONE} already has subscription {first.pk} on {plan.name} from 2026-06-01 to 2026-06-30, "
            "which "
            "overlaps these dates."
        ]
    }
    # before it, open-ended: runs into it
    assert refused(
        account=acc, price_plan=plan, service_identifier=PHONE, start_date=dt.date(2026, 1, 1), actor=None
    )
    subscription_create(account=acc, price_plan=plan, service_identifier=PHONE, start_date=JULY_1, actor=None)
    assert Subscription.objects.filter(service_identifier=PHONE).count() == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("case", "fields"),
    [
        (
            "end-before-start",
            {"end_date": ["The end date (2026-05-31) is before the start date (2026-06-01)."]},
        ),
        (
            "inactive-plan",
            {"price_plan": ["Price plan Mobile 30 is inactive: it takes no new subscriptions."]},
        ),
        (
            "prepaid-scheme-on-normal-plan",
            {
                "billing_term_scheme": [
                    "Price plan Mobile 30 is normal: its subscriptions take a normal billing term scheme, "
                    "not "
                    "Prepaid."
                ]
            },
        ),
        (
            "no-price-for-frequency",
            {
                "frequency": [
                    "Price plan Mobile 30 has no annual price for Monthly fee on 2026-06-01: choose another "
                    "billing "
                    "frequency or add the price."
                ]
            },
        ),
        ("closed-account", {"account": ["Account {number} is closed: it takes no new subscriptions."]}),
        ("negative-sequence", {"processing_sequence": ["Must not be negative."]}),
        (
            "blank-identifier",
            {"service_identifier": ["Give the service identifier (a phone number, a meter, a circuit)."]},
        ),
    ],
)
def test_create_refuses(case, fields):
    acc, plan = account(), priced_plan()
    kwargs = {
        "account": acc,
        "price_plan": plan,
        "service_identifier": PHONE,
        "start_date": JUNE_1,
        "actor": None,
    }
    if case == "end-before-start":
        kwargs["end_date"] = dt.date(2026, 5, 31)
    elif case == "inactive-plan":
        plan.active = False
        plan.save()
    elif case == "prepaid-scheme-on-normal-plan":
        kwargs["billing_term_scheme"] = b.scheme("prepaid")
    elif case == "no-price-for-frequency":
        kwargs["frequency"] = b.frequency("annual")
    elif case == "closed-account":
        Account.objects.filter(pk=acc.pk).update(status="closed")
        acc.refresh_from_db()
    elif case == "negative-sequence":
        kwargs["processing_sequence"] = -1
    elif case == "blank-identifier":
        kwargs["service_identifier"] = "  "

    error = refused(**kwargs)

    assert error.fields == {k: [m.format(number=acc.number) for m in v] for k, v in fields.items()}


@pytest.mark.django_db
def test_prepaid_plans_take_prepaid_schemes_only():
    plan = priced_plan(scheme="prepaid")
    corporate = BillingTermScheme.objects.create(
        code="corporate-prepaid", name="Corporate prepaid", kind="prepaid"
    )

    error = refused(
        account=account(),
        price_plan=plan,
        service_identifier=PHONE,
        start_date=JUNE_1,
        billing_term_scheme=b.scheme("standard"),
        actor=None,
    )

    assert list(error.fields) == ["billing_term_scheme"]
    sub = subscription_create(
        account=account(),
        price_plan=plan,
        service_identifier=PHONE,
        start_date=JUNE_1,
        billing_term_scheme=corporate,
        actor=None,
    )
    assert sub.billing_term_scheme == corporate


# --- update and cancel --------------------------------------------------------------------------------------


@pytest.fixture
def sub(db):
    return subscription_create(
        account=account(), price_plan=priced_plan(), service_identifier=PHONE, start_date=JUNE_1, actor=None
    )


@pytest.mark.django_db
def test_suspend_and_resume_are_audited(sub, billing_admin_user):
    subscription_update(subscription=sub, data={"status": "suspended"}, actor=billing_admin_user)
    subscription_update(subscription=sub, data={"status": "active", "processing_sequence": 5}, actor=None)

    sub.refresh_from_db()
    assert (sub.status, sub.processing_sequence) == ("active", 5)
    records = list(
        AuditRecord.objects.filter(object_id=str(sub.pk)).order_by("pk").values_list("action", flat=True)
    )
    assert records == ["subscription.create", "subscription.suspend", "subscription.resume"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "fields"),
    [
        (
            {"status": "cancelled"},
            {"status": ["Cancel with an end date (the cancel action), not by changing the status."]},
        ),
        (
            {"end_date": dt.date(2026, 5, 1)},
            {"end_date": ["The end date (2026-05-01) is before the start date (2026-06-01)."]},
        ),
        (
            {"price_plan": None},
            {"price_plan": ["This cannot be changed: cancel the subscription and create a new one."]},
        ),
        ({"processing_sequence": -3}, {"processing_sequence": ["Must not be negative."]}),
    ],
)
def test_update_refuses(sub, data, fields):
    before = (Subscription.objects.values().get(pk=sub.pk), AuditRecord.objects.count())

    with pytest.raises(ApplicationError) as caught:
        subscription_update(subscription=sub, data=data, actor=None)

    assert caught.value.fields == fields
    assert (Subscription.objects.values().get(pk=sub.pk), AuditRecord.objects.count()) == before


@pytest.mark.django_db
def test_moving_the_start_or_the_end_into_another_subscription_is_refused(sub):
    subscription_update(subscription=sub, data={"end_date": dt.date(2026, 12, 31)}, actor=None)
    later = subscription_create(
        account=sub.account,
        price_plan=sub.price_plan,
        service_identifier=PHONE,
        start_date=dt.date(2027, 1, 1),
        actor=None,
    )

    with pytest.raises(ApplicationError) as caught:
        subscription_update(subscription=sub, data={"end_date": dt.date(2027, 1, 15)}, actor=None)

    assert list(caught.value.fields) == ["service_identifier"]
    assert f"already has subscription {later.pk}" in caught.value.fields["service_identifier"][0]
    with pytest.raises(ApplicationError):
        subscription_cancel(subscription=sub, end_date=dt.date(2027, 2, 1), actor=None)
    assert Subscription.objects.get(pk=sub.pk).end_date == dt.date(2026, 12, 31)


@pytest.mark.django_db
def test_start_date_is_fixed_once_a_period_is_rated(sub):
    subscription_rate(subscription=sub, bill_as_of=JUNE_1)

    with pytest.raises(ApplicationError) as caught:
        subscription_update(subscription=sub, data={"start_date": dt.date(2026, 6, 5)}, actor=None)

    assert list(caught.value.fields) == ["start_date"]
    assert Subscription.objects.get(pk=sub.pk).start_date == JUNE_1


@pytest.mark.django_db
def test_cancel_before_a_billed_period_is_allowed_and_the_next_rating_credits_the_days(
    sub, billing_admin_user
):
    subscription_rate(subscription=sub, bill_as_of=JUNE_1)  # June billed in advance: 30.00

    cancelled = subscription_cancel(subscription=sub, end_date=dt.date(2026, 6, 10), actor=billing_admin_user)

    assert (cancelled.status, cancelled.end_date) == ("cancelled", dt.date(2026, 6, 10))
    record = AuditRecord.objects.get(action="subscription.cancel")
    assert (record.before["status"], record.after["status"], record.after["end_date"]) == (
        "active",
        "cancelled",
        "2026-06-10",
    )
    subscription_rate(subscription=sub, bill_as_of=JULY_1)
    closing = BillSegment.objects.get(subscription=sub, period_start=JULY_1)
    assert [(ln.kind, ln.amount) for ln in closing.lines.all()] == [("credit", D("-20.00"))]  # 20 of 30 days

    with pytest.raises(Conflict) as caught:
        subscription_cancel(subscription=sub, end_date=dt.date(2026, 6, 20), actor=None)
    assert caught.value.code == "already_cancelled"
    with pytest.raises(ApplicationError) as caught:
        subscription_update(subscription=sub, data={"status": "active"}, actor=None)
    assert caught.value.fields == {
        "status": ["A cancelled subscription stays cancelled: create a new subscription."]
    }


@pytest.mark.django_db
def test_cancel_refuses_an_end_before_the_start(sub):
    with pytest.raises(ApplicationError) as caught:
        subscription_cancel(subscription=sub, end_date=dt.date(2026, 5, 31), actor=None)

    assert caught.value.fields == {
        "end_date": ["The end date (2026-05-31) is before the start date (2026-06-01)."]
    }
    assert Subscription.objects.get(pk=sub.pk).status == "active"


# --- concurrency --------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_creates_for_one_identifier_make_one_subscription():
    # Two accounts and two plans: only the service identifier is shared (nothing else to serialize on).
    accounts = [account(), account()]
    plans = [priced_plan(), priced_plan()]

    def create(i):
        with transaction.atomic():
            sub = subscription_create(
                account=accounts[i],
                price_plan=plans[i],
                service_identifier=PHONE,
                start_date=JUNE_1,
                actor=None,
            )
            time.sleep(0.3)  # hold the lock while the other one arrives
            return sub.pk

    results, errors = run_in_threads(create, 2)

    assert len(results) == 1
    assert len(errors) == 1 and isinstance(errors[0], ApplicationError)
    assert list(errors[0].fields) == ["service_identifier"]
    assert Subscription.objects.filter(service_identifier=PHONE).count() == 1


# --- admin --------------------------------------------------------------------------------------------------


def admin_url(action: str, *args) -> str:
    return reverse(f"admin:billruns_subscription_{action}", args=args)


@pytest.mark.django_db
def test_admin_adds_a_subscription_through_the_service(admin_client, billing_admin_user):
    acc, plan = account(frequency="quarterly"), priced_plan()

    response = post_page(
        admin_client,
        admin_url("add"),
        {
            "account": acc.pk,
            "price_plan": plan.pk,
            "service_identifier": PHONE,
            "start_date": "2026-06-01",
            "processing_sequence": "100",
        },
    )

    assert response.status_code == 302, form_errors(response)
    sub = Subscription.objects.get()
    assert (sub.frequency.code, sub.billing_term_scheme.code) == ("quarterly", "standard")
    record = AuditRecord.objects.get(action="subscription.create")
    assert record.actor_user == billing_admin_user and record.object_id == str(sub.pk)


@pytest.mark.django_db
@pytest.mark.parametrize("case", ["currency", "overlap"])
def test_admin_add_shows_the_services_errors_and_stores_nothing(admin_client, case):
    acc, plan = account(), priced_plan()
    if case == "currency":
        plan = priced_plan("EUR")
        expected = [
            f"Price plan {plan.name} is in EUR but account {acc.number} bills in USD: choose a plan in USD."
        ]
    else:
        other = subscription_create(
            account=account(),
            price_plan=plan,
            service_identifier=PHONE,
            start_date=dt.date(2026, 1, 1),
            actor=None,
        )
        expected = [
            f"{PHONE} already has subscription {other.pk} on {plan.name} from 2026-01-01 with no end, which "
            "overlaps these dates."
        ]
    before = rows()

    response = post_page(
        admin_client,
        admin_url("add"),
        {
            "account": acc.pk,
            "price_plan": plan.pk,
            "service_identifier": PHONE,
            "start_date": "2026-06-01",
            "processing_sequence": "100",
        },
    )

    assert form_errors(response) == expected
    assert rows() == before


@pytest.mark.django_db
def test_admin_cancels_through_the_status_and_end_date(admin_client, sub):
    change = admin_url("change", sub.pk)

    response = post_page(admin_client, change, {"status": "cancelled"})
    assert form_errors(response) == ["Give the last day of service to cancel the subscription."]

    response = post_page(admin_client, change, {"status": "cancelled", "end_date": "2026-06-15"})

    assert response.status_code == 302, form_errors(response)
    sub.refresh_from_db()
    assert (sub.status, sub.end_date) == ("cancelled", dt.date(2026, 6, 15))
    assert AuditRecord.objects.filter(action="subscription.cancel", object_id=str(sub.pk)).count() == 1

    response = post_page(admin_client, change, {"status": "active"})
    assert form_errors(response) == ["A cancelled subscription stays cancelled: create a new subscription."]


@pytest.mark.django_db
def test_admin_suspends_and_the_list_finds_it(admin_client, sub, django_assert_max_num_queries):
    response = post_page(admin_client, admin_url("change", sub.pk), {"status": "suspended"})
    assert response.status_code == 302, form_errors(response)
    assert AuditRecord.objects.filter(action="subscription.suspend").count() == 1
    for i in range(5):
        subscription_create(
            account=account(),
            price_plan=sub.price_plan,
            service_identifier=f"+1666000{i:04d}",
            start_date=JUNE_1,
            actor=None,
        )

    with django_assert_max_num_queries(12):
        listing = admin_client.get(admin_url("changelist"))

    assert listing.context["cl"].result_count == 6
    assert [
        s.pk for s in admin_client.get(admin_url("changelist"), {"q": PHONE}).context["cl"].result_list
    ] == [sub.pk]
    by_account = (
        admin_client.get(admin_url("changelist"), {"q": sub.account.number}).context["cl"].result_list
    )
    assert [s.pk for s in by_account] == [sub.pk]
    suspended = (
        admin_client.get(admin_url("changelist"), {"status__exact": "suspended"}).context["cl"].result_list
    )
    assert [s.pk for s in suspended] == [sub.pk]
    assert admin_client.get(admin_url("delete", sub.pk)).status_code == 403
