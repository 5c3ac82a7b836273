"""factory_boy factories for every app. Exposed as fixtures in tests/conftest.py."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from accounts.models import Account, Biller, BillerReference, BillingProfile, Contact
from accounts.services import ACCOUNT_SERIES, biller_api_key_create
from billing_mgmt import roles
from billing_mgmt.numbering import next_number


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pass-Word-123")

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(Group.objects.get_or_create(name=extracted)[0])
            if extracted == roles.BILLING_ADMIN:
                self.is_staff = True
                self.save(update_fields=["is_staff"])


class BillerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Biller
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"biller-{n}")
    name = factory.LazyAttribute(lambda b: f"Biller {b.code}")
    kind = Biller.Kind.EXTERNAL


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account
        skip_postgeneration_save = True

    number = factory.LazyFunction(lambda: next_number("account", ACCOUNT_SERIES))
    name = factory.Faker("company")
    type = Account.Type.CONSUMER
    status = Account.Status.ACTIVE
    is_paying = True
    billing_profile = factory.RelatedFactory(
        "tests.factories.BillingProfileFactory", factory_related_name="account"
    )


class BillingProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BillingProfile
        django_get_or_create = ("account",)

    account = factory.SubFactory(AccountFactory, billing_profile=None)
    currency = "USD"
    address_line1 = factory.Faker("street_address")
    city = factory.Faker("city")
    postal_code = factory.Faker("postcode")
    country = "US"


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    account = factory.SubFactory(AccountFactory)
    name = factory.Faker("name")
    email = factory.Sequence(lambda n: f"contact{n}@example.com")
    phone = factory.Sequence(lambda n: f"+1555{n:07d}")
    role = Contact.Role.BILLING_COPY


class BillerReferenceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BillerReference

    account = factory.SubFactory(AccountFactory)
    biller = factory.SubFactory(BillerFactory)
    external_ref = factory.Sequence(lambda n: f"EXT-{n:06d}")


def api_key_for(biller: Biller, name: str = "test client") -> str:
    """Create an API key for the biller and return the raw key to send in the Authorization header."""
    _key, raw = biller_api_key_create(biller=biller, name=name)
    return raw


def statement_record(
    account_ref: str,
    external_id: str,
    *,
    statement_date: str = "2026-10-31",
    period_start: str = "2026-10-01",
    period_end: str = "2026-10-31",
    due_date: str = "2026-11-14",
    currency: str = "USD",
    previous_balance: str = "0.00",
    payments: str = "0.00",
    service: str = "+15550100",
    lines: list[dict] | None = None,
    usage: list[dict] | None = None,
    **overrides,
) -> dict:
    """A statement record (statements.records) whose amounts add up: by default a recurring charge, usage,
    a discount and tax on one phone line. Pass ``lines`` to choose them; the header totals follow."""
    if lines is None:
        lines = [
            {"type": "recurring", "product": "Unlimited Plan", "service_identifier": service,
             "description": "Monthly plan", "quantity": "1", "unit": "month", "unit_price": "40.00",
             "amount": "40.00", "tax": "3.20", "external_id": f"{external_id}-1"},
            {"type": "usage", "product": "International calls", "service_identifier": service,
             "description": "Calls to Canada", "quantity": "25", "unit": "min", "unit_price": "0.10",
             "amount": "2.50", "tax": "0.20", "external_id": f"{external_id}-2"},
            {"type": "discount", "product": "Loyalty discount", "service_identifier": service,
             "amount": "-5.00", "tax": "-0.40", "external_id": f"{external_id}-3"},
        ]  # fmt: skip
    if usage is None:
        usage = [
            {"service_identifier": service, "usage_type": "voice", "quantity": "312", "unit": "min"},
            {"service_identifier": service, "usage_type": "data", "quantity": "5120", "unit": "MB"},
        ]
    from decimal import Decimal

    charges = sum(
        (Decimal(ln["amount"]) for ln in lines if ln["type"] not in ("tax", "adjustment")), Decimal(0)
    )
    taxes = sum((Decimal(ln.get("tax", "0")) for ln in lines), Decimal(0)) + sum(
        (Decimal(ln["amount"]) for ln in lines if ln["type"] == "tax"), Decimal(0)
    )
    adjustments = sum((Decimal(ln["amount"]) for ln in lines if ln["type"] == "adjustment"), Decimal(0))
    total = Decimal(previous_balance) - Decimal(payments) + adjustments + charges + taxes
    record = {
        "type": "statement",
        "account": account_ref,
        "external_id": external_id,
        "statement_date": statement_date,
        "period_start": period_start,
        "period_end": period_end,
        "due_date": due_date,
        "currency": currency,
        "previous_balance": previous_balance,
        "payments": payments,
        "adjustments": str(adjustments),
        "new_charges": str(charges),
        "taxes": str(taxes),
        "total_due": str(total),
        "lines": lines,
        "usage": usage,
    }
    record.update(overrides)
    return record
