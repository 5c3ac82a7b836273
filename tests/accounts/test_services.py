"""Account services (create, update, contacts, references, API keys) and the account_search selector."""

import re

import pytest

from accounts.models import Account, BillerApiKey, BillerReference, BillingProfile, Contact
from accounts.selectors import account_search, paying_account
from accounts.services import (
    account_create,
    account_update,
    biller_api_key_create,
    biller_api_key_revoke,
    biller_reference_set,
    contact_add,
)
from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.models import AuditRecord


def _assert_nothing_stored() -> None:
    assert Account.objects.count() == 0
    assert BillingProfile.objects.count() == 0
    assert Contact.objects.count() == 0
    assert BillerReference.objects.count() == 0
    assert not AuditRecord.objects.filter(action__startswith="account.").exists()


# --- create ----------------------------------------------------------------------------------------------


def test_account_create_with_profile_contacts_and_reference(biller_factory, billing_admin_user):
    biller = biller_factory(code="telco")
    account = account_create(
        name="Müller GmbH",
        type=Account.Type.BUSINESS,
        billing_profile={"currency": "EUR", "locale": "de_DE", "language": "de", "bill_cycle_day": 15},
        contacts=[
            {
                "name": "Anna Müller",
                "email": "anna@example.com",
                "phone": "+49 30 1234567",
                "role": "primary",
            },
            {"name": "Accounts", "email": "ap@example.com", "role": "billing_copy"},
        ],
        biller=biller,
        external_ref="T-1001",
        actor=billing_admin_user,
    )

    assert re.fullmatch(r"A\d{8}", account.number)
    account = Account.objects.get(pk=account.pk)
    assert (account.name, account.type, account.status, account.is_paying) == (
        "Müller GmbH",
        "business",
        "active",
        True,
    )
    profile = account.billing_profile
    assert (profile.currency, profile.locale, profile.language, profile.bill_cycle_day) == (
        "EUR",
        "de_DE",
        "de",
        15,
    )
    assert sorted(account.contacts.values_list("email", "role")) == [
        ("anna@example.com", "primary"),
        ("ap@example.com", "billing_copy"),
    ]
    assert list(account.biller_references.values_list("biller__code", "external_ref")) == [
        ("telco", "T-1001")
    ]

    record = AuditRecord.objects.get(action="account.create")
    assert record.object_id == str(account.pk)
    assert record.account_id == account.pk
    assert record.actor_user == billing_admin_user
    assert record.after["number"] == account.number
    assert record.after["billing_profile"]["currency"] == "EUR"
    # Contacts and the reference are part of the one creation, not separate audit records.
    assert AuditRecord.objects.filter(account_id=account.pk).count() == 1


def test_account_numbers_are_sequential(db):
    first = account_create(name="One")
    second = account_create(name="Two")
    assert int(second.number[1:]) == int(first.number[1:]) + 1


def test_account_create_defaults_the_billing_profile(db):
    account = account_create(name="Plain")
    profile = BillingProfile.objects.get(account=account)
    assert (profile.currency, profile.locale, profile.bill_cycle_day) == ("USD", "en_US", 1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"type": "martian"}, "type"),
        ({"status": "gone"}, "status"),
        ({"billing_profile": {"currency": "usd"}}, "billing_profile.currency"),
        ({"billing_profile": {"currency": "XYZ"}}, "billing_profile.currency"),
        ({"billing_profile": {"locale": "xx_NOPE"}}, "billing_profile.locale"),
        ({"billing_profile": {"language": "klingon"}}, "billing_profile.language"),
        ({"billing_profile": {"bill_cycle_day": 31}}, "billing_profile.bill_cycle_day"),
        ({"billing_profile": {"payment_terms_days": 400}}, "billing_profile.payment_terms_days"),
        ({"billing_profile": {"no_such_field": 1}}, "billing_profile.no_such_field"),
        ({"contacts": [{"name": "A", "email": "not-an-email"}]}, "contacts.email"),
        ({"contacts": [{"name": "", "email": "a@example.com"}]}, "contacts.name"),
    ],
)
def test_account_create_with_invalid_input_stores_nothing(db, kwargs, field):
    with pytest.raises(ApplicationError) as exc_info:
        account_create(**{"name": "Valid name", **kwargs})
    assert field in exc_info.value.fields
    _assert_nothing_stored()


def test_two_primary_contacts_are_a_conflict_and_store_nothing(db):
    with pytest.raises(Conflict) as exc_info:
        account_create(
            name="Twice",
            contacts=[{"name": "A", "role": "primary"}, {"name": "B", "role": "primary"}],
        )
    assert exc_info.value.fields == {"contacts.role": ["Duplicate primary."]}
    _assert_nothing_stored()


def test_non_paying_account_without_parent_is_refused(db):
    with pytest.raises(ApplicationError) as exc_info:
        account_create(name="Orphan", is_paying=False)
    assert exc_info.value.message == "A non-paying account needs a paying parent."
    assert exc_info.value.fields == {"is_paying": ["A top account pays."]}
    _assert_nothing_stored()


def test_non_paying_child_is_billed_on_its_parent(account_factory):
    parent = account_factory()
    child = account_create(name="Branch", parent=parent, is_paying=False)
    grandchild = account_create(name="Desk", parent=child, is_paying=False)
    assert child.parent == parent
    assert paying_account(account=grandchild) == parent


def test_duplicate_reference_at_the_same_biller_is_a_conflict(biller_factory, biller_reference_factory):
    biller = biller_factory()
    biller_reference_factory(biller=biller, external_ref="R-1")
    accounts_before = Account.objects.count()

    with pytest.raises(Conflict) as exc_info:
        account_create(name="Copycat", biller=biller, external_ref="R-1")

    assert exc_info.value.fields == {"external_ref": ["Already used at this biller."]}
    assert Account.objects.count() == accounts_before
    assert not AuditRecord.objects.filter(action="account.create").exists()


def test_same_reference_at_another_biller_is_fine(biller_factory, biller_reference_factory):
    biller_reference_factory(biller=biller_factory(code="a"), external_ref="R-1")
    account = account_create(name="Other biller", biller=biller_factory(code="b"), external_ref="R-1")
    assert account.biller_references.get().external_ref == "R-1"


# --- update ----------------------------------------------------------------------------------------------


def test_account_update_changes_fields_and_profile_and_audits(account_factory, billing_admin_user):
    account = account_factory(name="Old name")
    number = account.number

    account_update(
        account=account,
        data={"name": "New name", "status": "suspended"},
        billing_profile={"currency": "EUR"},
        actor=billing_admin_user,
    )

    account.refresh_from_db()
    assert (account.name, account.status, account.number) == ("New name", "suspended", number)
    assert account.billing_profile.currency == "EUR"
    record = AuditRecord.objects.get(action="account.update")
    assert record.before["name"] == "Old name"
    assert record.after["name"] == "New name"
    assert record.before["billing_profile"]["currency"] == "USD"
    assert record.after["billing_profile"]["currency"] == "EUR"


def test_account_number_cannot_be_changed(account_factory):
    account = account_factory()
    with pytest.raises(ApplicationError) as exc_info:
        account_update(account=account, data={"number": "X1"})
    assert exc_info.value.fields == {"number": ["Read-only."]}
    assert Account.objects.get(pk=account.pk).number == account.number
    assert not AuditRecord.objects.exists()


def test_hierarchy_loop_is_refused(account_factory):
    top = account_factory(name="Top")
    middle = account_create(name="Middle", parent=top)
    bottom = account_create(name="Bottom", parent=middle)

    with pytest.raises(ApplicationError) as exc_info:
        account_update(account=top, data={"parent": bottom})

    assert exc_info.value.fields == {"parent": ["Loop in the hierarchy."]}
    assert Account.objects.get(pk=top.pk).parent_id is None
    assert not AuditRecord.objects.filter(action="account.update").exists()


def test_account_cannot_be_its_own_parent(account_factory):
    account = account_factory()
    with pytest.raises(ApplicationError):
        account_update(account=account, data={"parent": account})
    assert Account.objects.get(pk=account.pk).parent_id is None


def test_making_a_top_account_non_paying_is_refused(account_factory):
    account = account_factory()
    with pytest.raises(ApplicationError) as exc_info:
        account_update(account=account, data={"is_paying": False})
    assert "is_paying" in exc_info.value.fields
    assert Account.objects.get(pk=account.pk).is_paying is True


def test_hierarchy_depth_is_limited(account_factory):
    """An account has at most MAX_DEPTH ancestors (the selectors walk that far)."""
    node = account_factory()
    for level in range(Account.MAX_DEPTH - 1):
        node = account_create(name=f"Level {level}", parent=node)
    deepest = account_create(name="Deepest", parent=node)  # MAX_DEPTH ancestors
    with pytest.raises(ApplicationError, match="at most") as exc_info:
        account_create(name="Too deep", parent=deepest)
    assert exc_info.value.fields == {"parent": ["Too deep."]}
    assert not Account.objects.filter(name="Too deep").exists()


def test_update_without_change_writes_no_audit_record(account_factory):
    account = account_factory(name="Same")
    account_update(account=account, data={"name": "Same"})
    assert not AuditRecord.objects.filter(action="account.update").exists()


# --- contacts, references, API keys ---------------------------------------------------------------------


def test_contact_add_audits(account_factory):
    account = account_factory()
    contact = contact_add(account=account, name="Bea", email="bea@example.com", role="billing_copy")
    record = AuditRecord.objects.get(action="contact.create")
    assert record.object_id == str(contact.pk)
    assert record.account_id == account.pk


def test_second_primary_contact_is_a_conflict(contact_factory):
    first = contact_factory(role="primary")
    with pytest.raises(Conflict):
        contact_add(account=first.account, name="Second", role="primary")
    assert first.account.contacts.count() == 1


def test_reference_set_changes_the_accounts_reference(account_factory, biller_factory):
    account, biller = account_factory(), biller_factory()
    biller_reference_set(account=account, biller=biller, external_ref=" R-1 ")
    biller_reference_set(account=account, biller=biller, external_ref="R-2")
    assert list(BillerReference.objects.values_list("external_ref", flat=True)) == ["R-2"]
    assert AuditRecord.objects.filter(action="biller_reference.set").count() == 2


def test_reference_of_another_account_is_a_conflict(biller_reference_factory, account_factory):
    taken = biller_reference_factory(external_ref="R-1")
    other = account_factory()
    with pytest.raises(Conflict):
        biller_reference_set(account=other, biller=taken.biller, external_ref="R-1")
    assert not BillerReference.objects.filter(account=other).exists()


def test_empty_reference_is_refused(account_factory, biller_factory):
    with pytest.raises(ApplicationError) as exc_info:
        biller_reference_set(account=account_factory(), biller=biller_factory(), external_ref="  ")
    assert exc_info.value.fields == {"external_ref": ["This field is required."]}
    assert not BillerReference.objects.exists()


def test_api_key_is_stored_only_as_a_hash(biller_factory):
    biller = biller_factory()
    key, raw = biller_api_key_create(biller=biller, name="push")
    prefix, _, secret = raw.partition(".")
    assert key.prefix == prefix
    assert len(secret) >= 40
    stored = BillerApiKey.objects.get(pk=key.pk)
    assert stored.key_hash == BillerApiKey.hash_key(raw)
    assert raw not in stored.key_hash
    assert all(raw not in str(v) for v in AuditRecord.objects.values_list("after", flat=True))


def test_api_key_revoke_is_idempotent_and_audited(biller_factory):
    key, _ = biller_api_key_create(biller=biller_factory(), name="push")
    biller_api_key_revoke(key=key)
    revoked_at = BillerApiKey.objects.get(pk=key.pk).revoked_at
    biller_api_key_revoke(key=key)
    assert revoked_at is not None
    assert BillerApiKey.objects.get(pk=key.pk).revoked_at == revoked_at
    assert AuditRecord.objects.filter(action="biller_api_key.revoke").count() == 1


# --- account_search ----------------------------------------------------------------------------------------


@pytest.fixture
def searchable(account_factory, contact_factory, biller_reference_factory, biller_factory):
    target = account_factory(name="Zephyr Widgets")
    contact_factory(account=target, email="Ops@Zephyr.example", phone="+1 (555) 010-7788")
    biller_reference_factory(account=target, biller=biller_factory(code="telco"), external_ref="TEL-42")
    other = account_factory(name="Acme Anvils")
    contact_factory(account=other, email="ops@acme.example", phone="+1 555 999 0000")
    return target, other


def _found(query: str) -> list[str]:
    return [a.name for a in account_search(query=query)]


def test_search_by_number(searchable):
    target, _ = searchable
    assert _found(target.number) == ["Zephyr Widgets"]
    assert _found(target.number.lower()) == ["Zephyr Widgets"]


def test_search_by_partial_number(searchable):
    target, other = searchable
    assert _found(target.number[:4]) == ["Acme Anvils", "Zephyr Widgets"]
    assert _found(target.number[1:]) == ["Zephyr Widgets"]


def test_search_by_name(searchable):
    assert _found("zephyr") == ["Zephyr Widgets"]
    assert _found("ANVIL") == ["Acme Anvils"]


def test_search_by_contact_email_is_exact_and_case_insensitive(searchable):
    assert _found("ops@zephyr.example") == ["Zephyr Widgets"]
    assert _found("ops@") == []


def test_search_by_contact_phone_digits(searchable):
    assert _found("0107788") == ["Zephyr Widgets"]
    assert _found("+1 (555) 010-7788") == ["Zephyr Widgets"]  # as stored, with its formatting
    assert _found("555.010.7788") == ["Zephyr Widgets"]
    assert _found("999") == []  # fewer than four digits are not a phone search


def test_search_by_biller_reference(searchable):
    assert _found("TEL-42") == ["Zephyr Widgets"]
    assert _found("tel-42") == ["Zephyr Widgets"]


def test_search_returns_each_account_once_and_nothing_for_blank(searchable, contact_factory):
    target, _ = searchable
    contact_factory(account=target, email="second@zephyr.example")
    assert _found("Zephyr") == ["Zephyr Widgets"]
    assert _found("   ") == []
    assert _found("no such thing") == []


def test_search_limit(account_factory):
    for i in range(5):
        account_factory(name=f"Limit {i}")
    assert _found("Limit") == [f"Limit {i}" for i in range(5)]
    assert len(account_search(query="Limit", limit=3)) == 3
