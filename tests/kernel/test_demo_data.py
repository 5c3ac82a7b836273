"""`manage.py load_demo`: the demo world `make run` starts with."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from accounts.models import Account, Biller, BillerApiKey, BillerReference, BillingProfile, Contact
from billing_mgmt import roles
from billing_mgmt.management.commands.load_demo import DemoLoader
from billing_mgmt.models import AuditRecord, NumberSeries
from statements.models import AccountBalance, FinancialTransaction
from statements.selectors import ledger_mismatches

pytestmark = pytest.mark.django_db

COUNTED = (
    Account, BillingProfile, Contact, Biller, BillerReference, BillerApiKey, FinancialTransaction,
    AccountBalance, AuditRecord, get_user_model(),
)  # fmt: skip


def _load(*args: str) -> str:
    out = StringIO()
    call_command("load_demo", "--force", *args, stdout=out)  # pytest-django runs with DEBUG off
    return out.getvalue()


def _counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in COUNTED}


def test_load_demo_builds_the_demo_world():
    output = _load()

    assert Account.objects.count() == 50
    by_type = {t: Account.objects.filter(type=t).count() for t in Account.Type.values}
    assert by_type == {"billing_aggregator": 3, "billing": 6, "business": 20, "consumer": 21}
    assert Account.objects.filter(is_paying=False).count() == 10
    assert not Account.objects.filter(is_paying=False, parent__isnull=True).exists()
    # A hierarchy bills in one currency: every child has its parent's.
    for child in Account.objects.filter(parent__isnull=False).select_related("billing_profile", "parent"):
        assert child.billing_profile.currency == child.parent.billing_profile.currency
    assert set(BillingProfile.objects.values_list("currency", flat=True)) == {"USD", "EUR", "GBP"}
    assert set(BillingProfile.objects.values_list("language", flat=True)) == {"en", "de", "fr"}
    assert BillingProfile.objects.values("billing_frequency").distinct().count() > 1
    assert BillingProfile.objects.values("ar_classification").distinct().count() > 1
    # Every account has a primary and a billing-copy contact with e-mail and phone.
    for role in (Contact.Role.PRIMARY, Contact.Role.BILLING_COPY):
        assert Contact.objects.filter(role=role).exclude(email="").exclude(phone="").count() == 50

    assert sorted(Biller.objects.values_list("code", "kind")) == [
        ("acme", "internal"),
        ("globex", "external"),
        ("northwind", "external"),
    ]
    assert BillerReference.objects.values("account").distinct().count() == 50
    assert BillerReference.objects.count() == 56  # six customers are billed by two billers

    kinds = set(FinancialTransaction.objects.values_list("kind", flat=True))
    assert kinds == {"bill", "payment", "adjustment", "reversal"}
    assert not FinancialTransaction.objects.filter(account__is_paying=False).exists()
    assert ledger_mismatches() == []
    # Written through the services: numbered and audited.
    assert list(NumberSeries.objects.filter(code="account").values_list("prefix", flat=True)) == ["A"]
    assert AuditRecord.objects.filter(action="account.create").count() == 50
    assert AuditRecord.objects.filter(action="ledger.post").count() == FinancialTransaction.objects.count()

    users = {u.username: u for u in get_user_model().objects.prefetch_related("groups")}
    assert {name: [g.name for g in u.groups.all()] for name, u in users.items()} == {
        "csr": [roles.CSR],
        "supervisor": [roles.SUPERVISOR],
        "billing-admin": [roles.BILLING_ADMIN],
        "customer": [roles.CUSTOMER],
    }
    assert [name for name, u in users.items() if u.is_staff] == ["billing-admin"]
    assert not any(u.is_superuser for u in users.values())
    portal = Contact.objects.get(user=users["customer"])
    assert portal.role == Contact.Role.PORTAL_USER
    assert portal.account.type == Account.Type.CONSUMER

    key = BillerApiKey.objects.get()
    assert key.biller.code == "northwind"
    assert f"Authorization: Api-Key {key.prefix}." in output
    assert "csr            demo-pass-123" in output


def test_load_demo_is_idempotent():
    _load()
    before = _counts()

    output = _load()

    assert _counts() == before
    assert "Demo data already loaded: nothing to do." in output
    assert "Api-Key" not in output  # no new key unless asked for


def test_load_demo_new_api_key_adds_only_a_key():
    _load()
    before = _counts()

    output = _load("--new-api-key")

    after = _counts()
    assert after.pop("BillerApiKey") == before.pop("BillerApiKey") + 1
    assert after.pop("AuditRecord") == before.pop("AuditRecord") + 1
    assert after == before
    assert "Authorization: Api-Key " in output


def test_demo_plan_is_the_same_for_the_same_seed():
    first = DemoLoader(seed=7).plan()

    assert DemoLoader(seed=7).plan() == first
    assert DemoLoader(seed=8).plan() != first
    assert len(first) == 50


def test_load_demo_refuses_with_debug_off_unless_forced(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="published password"):
        call_command("load_demo", stdout=StringIO())
    assert Account.objects.count() == 0
    assert get_user_model().objects.count() == 0
