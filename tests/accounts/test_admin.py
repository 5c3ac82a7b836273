"""Django admin for billers, API keys and accounts, used by a billing admin (staff, not superuser)."""

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Account, Biller, BillerApiKey, BillerReference, BillingProfile, Contact
from accounts.services import biller_api_key_create
from billing_mgmt.models import AuditRecord
from statements.models import FinancialTransaction
from statements.services import transaction_post

RAW_KEY = re.compile(r"<code>([0-9a-f]{8}\.[A-Za-z0-9_-]{20,})</code>")


def form_data(response, **overrides) -> dict:
    """The POST data a browser would send for the admin form in ``response``, with overrides."""
    data: dict = {}

    def add(form) -> None:
        for name, field in form.fields.items():
            value = form[name].value()
            if field.disabled or value is None:
                continue
            if isinstance(value, bool):
                if value:
                    data[form.add_prefix(name)] = "on"
                continue
            data[form.add_prefix(name)] = value

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        add(formset.management_form)
        for form in formset.forms:
            add(form)
    data.update(overrides)
    return data


def _changelist(model: str) -> str:
    return reverse(f"admin:accounts_{model}_changelist")


# --- access ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["biller", "billerapikey", "account"])
def test_changelists_open_for_a_billing_admin(admin_client, account_factory, biller_factory, model):
    biller = biller_factory()
    account_factory()
    biller_api_key_create(biller=biller, name="k")
    response = admin_client.get(_changelist(model))
    assert response.status_code == 200


def test_change_and_add_pages_open(admin_client, account_factory, contact_factory, biller_reference_factory):
    account = account_factory()
    contact_factory(account=account)
    reference = biller_reference_factory(account=account)
    biller_api_key_create(biller=reference.biller, name="k")
    for url in (
        reverse("admin:accounts_account_change", args=[account.pk]),
        reverse("admin:accounts_account_add"),
        reverse("admin:accounts_biller_change", args=[reference.biller.pk]),
        reverse("admin:accounts_biller_add"),
        reverse("admin:accounts_billerapikey_change", args=[BillerApiKey.objects.get().pk]),
    ):
        assert admin_client.get(url).status_code == 200, url


def test_csr_cannot_open_the_admin(client, csr_user):
    client.force_login(csr_user)
    response = client.get(_changelist("account"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_admin_site_carries_the_product_name(admin_client, settings):
    settings.PRODUCT_NAME = "Acme Billing"
    response = admin_client.get(reverse("admin:index"))
    assert "Acme Billing administration" in response.content.decode()
    assert "<title>Configuration | Acme Billing</title>" in response.content.decode()


# --- accounts list ---------------------------------------------------------------------------------------


def _make_accounts(account_factory, contact_factory, biller_reference_factory, count: int, parent) -> None:
    for i in range(count):
        account = account_factory(parent=parent, name=f"Listed {i}")
        contact_factory(account=account)
        biller_reference_factory(account=account)
        transaction_post(account=account, kind="bill", amount=Decimal("10.00"), currency="USD")


def test_account_changelist_query_count_does_not_grow_with_rows(
    admin_client, account_factory, contact_factory, biller_reference_factory
):
    parent = account_factory(name="Parent Holding")
    _make_accounts(account_factory, contact_factory, biller_reference_factory, 5, parent)
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(_changelist("account")).status_code == 200

    _make_accounts(account_factory, contact_factory, biller_reference_factory, 15, parent)
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(_changelist("account"))

    assert response.status_code == 200
    assert response.context["cl"].result_count == 21
    assert len(many) == len(few)
    assert len(many) <= 10


def test_account_changelist_shows_parent_currency_and_balance(admin_client, account_factory):
    parent = account_factory(name="Holding", billing_profile__currency="EUR")
    child = account_factory(name="Branch", parent=parent, is_paying=False, billing_profile__currency="KWD")
    transaction_post(account=child, kind="bill", amount=Decimal("1.250"), currency="KWD")
    transaction_post(account=child, kind="payment", amount=Decimal("-0.125"), currency="KWD")

    response = admin_client.get(_changelist("account"), {"q": child.number})

    rows = response.context["cl"].result_list
    assert [a.pk for a in rows] == [child.pk]
    html = response.content.decode()
    assert f"{parent.number} Holding" in html
    assert '<td class="field-currency">KWD</td>' in html
    assert '<td class="field-balance">1.125</td>' in html


@pytest.mark.parametrize("key", ["number", "name", "email", "phone", "reference"])
def test_account_changelist_search(
    admin_client, account_factory, contact_factory, biller_reference_factory, key
):
    target = account_factory(name="Needle Industries")
    contact_factory(account=target, email="needle@example.com", phone="+15550199")
    biller_reference_factory(account=target, external_ref="NEEDLE-1")
    other = account_factory(name="Haystack")
    contact_factory(account=other, email="hay@example.com", phone="+15550299")
    query = {
        "number": target.number,
        "name": "needle ind",
        "email": "needle@example.com",
        "phone": "5550199",
        "reference": "NEEDLE-1",
    }[key]

    response = admin_client.get(_changelist("account"), {"q": query})

    assert [a.pk for a in response.context["cl"].result_list] == [target.pk]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"type__exact": "business"}, ["Biz"]),
        ({"status__exact": "closed"}, ["Gone"]),
        ({"is_paying__exact": "0"}, ["Child"]),
        ({"billing_profile__currency": "JPY"}, ["Yen"]),
        ({"billing_profile__ar_classification__exact": "vip"}, ["Vip"]),
    ],
)
def test_account_changelist_filters(admin_client, account_factory, params, expected):
    top = account_factory(name="Biz", type="business")
    account_factory(name="Gone", status="closed")
    account_factory(name="Child", parent=top, is_paying=False)
    account_factory(name="Yen", billing_profile__currency="JPY")
    account_factory(name="Vip", billing_profile__ar_classification="vip")

    response = admin_client.get(_changelist("account"), params)

    assert response.status_code == 200
    assert [a.name for a in response.context["cl"].result_list] == expected


# --- accounts: add and change ----------------------------------------------------------------------------


def test_account_add_takes_a_number_and_writes_an_audit_record(
    admin_client, billing_admin_user, biller_factory
):
    biller = biller_factory(code="telco")
    url = reverse("admin:accounts_account_add")
    data = form_data(
        admin_client.get(url),
        name="Admin Made GmbH",
        type="business",
        **{
            "billing_profile-0-currency": "EUR",
            "billing_profile-0-locale": "de_DE",
            "contacts-TOTAL_FORMS": "1",
            "contacts-0-name": "Ida",
            "contacts-0-email": "ida@example.com",
            "contacts-0-role": "primary",
            "biller_references-TOTAL_FORMS": "1",
            "biller_references-0-biller": str(biller.pk),
            "biller_references-0-external_ref": "T-77",
        },
    )

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    account = Account.objects.get(name="Admin Made GmbH")
    assert re.fullmatch(r"A\d{8}", account.number)
    assert (account.billing_profile.currency, account.billing_profile.locale) == ("EUR", "de_DE")
    assert list(account.contacts.values_list("email", "role")) == [("ida@example.com", "primary")]
    assert list(account.biller_references.values_list("biller__code", "external_ref")) == [("telco", "T-77")]
    record = AuditRecord.objects.get(action="account.create")
    assert record.actor_user == billing_admin_user
    assert record.account_id == account.pk
    assert record.after["number"] == account.number
    assert record.after["billing_profile"]["currency"] == "EUR"
    assert record.after["contacts"][0]["email"] == "ida@example.com"


def test_account_add_without_profile_gets_the_default_profile(admin_client):
    url = reverse("admin:accounts_account_add")
    response = admin_client.post(url, form_data(admin_client.get(url), name="Bare"))
    assert response.status_code == 302
    account = Account.objects.get(name="Bare")
    assert BillingProfile.objects.get(account=account).currency == "USD"
    assert AuditRecord.objects.filter(action="account.create", account_id=account.pk).count() == 1


def test_account_change_writes_before_and_after(admin_client, account_factory):
    account = account_factory(name="Before Ltd")
    url = reverse("admin:accounts_account_change", args=[account.pk])
    data = form_data(
        admin_client.get(url), name="After Ltd", **{"billing_profile-0-payment_terms_days": "30"}
    )

    response = admin_client.post(url, data)

    assert response.status_code == 302
    account.refresh_from_db()
    assert account.name == "After Ltd"
    assert account.billing_profile.payment_terms_days == 30
    record = AuditRecord.objects.get(action="account.update")
    assert (record.before["name"], record.after["name"]) == ("Before Ltd", "After Ltd")
    assert record.before["billing_profile"]["payment_terms_days"] == 14
    assert record.after["billing_profile"]["payment_terms_days"] == 30


def test_account_save_without_changes_writes_no_audit_record(admin_client, account_factory):
    account = account_factory()
    url = reverse("admin:accounts_account_change", args=[account.pk])
    response = admin_client.post(url, form_data(admin_client.get(url)))
    assert response.status_code == 302
    assert not AuditRecord.objects.filter(action="account.update").exists()


def test_account_number_cannot_be_changed_in_admin(admin_client, account_factory):
    account = account_factory()
    url = reverse("admin:accounts_account_change", args=[account.pk])
    admin_client.post(url, form_data(admin_client.get(url), number="HACKED"))
    assert Account.objects.get(pk=account.pk).number == account.number


def test_non_paying_account_without_parent_is_a_form_error(admin_client):
    url = reverse("admin:accounts_account_add")
    data = form_data(admin_client.get(url), name="Orphan")
    data.pop("is_paying", None)  # unchecked box

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "is_paying": ["A non-paying account needs a paying parent. A top account pays."]
    }
    assert not Account.objects.exists()
    assert not AuditRecord.objects.exists()


def test_hierarchy_loop_is_a_form_error(admin_client, account_factory):
    top = account_factory(name="Top")
    child = account_factory(name="Child", parent=top)
    url = reverse("admin:accounts_account_change", args=[top.pk])

    response = admin_client.post(url, form_data(admin_client.get(url), parent=str(child.pk)))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "parent": ["The parent would make a loop. Loop in the hierarchy."]
    }
    assert Account.objects.get(pk=top.pk).parent_id is None
    assert not AuditRecord.objects.exists()


def test_two_primary_contacts_are_a_form_error(admin_client):
    url = reverse("admin:accounts_account_add")
    data = form_data(
        admin_client.get(url),
        name="Two primaries",
        **{
            "contacts-TOTAL_FORMS": "2",
            "contacts-0-name": "A",
            "contacts-0-role": "primary",
            "contacts-1-name": "B",
            "contacts-1-role": "primary",
        },
    )
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert not Account.objects.exists()
    assert not Contact.objects.exists()


def test_duplicate_reference_is_a_form_error(admin_client, account_factory, biller_reference_factory):
    taken = biller_reference_factory(external_ref="DUP-1")
    account = account_factory()
    url = reverse("admin:accounts_account_change", args=[account.pk])
    data = form_data(
        admin_client.get(url),
        **{
            "biller_references-TOTAL_FORMS": "1",
            "biller_references-0-biller": str(taken.biller.pk),
            "biller_references-0-external_ref": "DUP-1",
        },
    )
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert BillerReference.objects.count() == 1
    assert not AuditRecord.objects.exists()


def test_accounts_cannot_be_deleted(admin_client, account_factory):
    account = account_factory()
    response = admin_client.post(reverse("admin:accounts_account_delete", args=[account.pk]), {"post": "yes"})
    assert response.status_code == 403
    assert Account.objects.filter(pk=account.pk).exists()


def test_parent_autocomplete(admin_client, account_factory):
    target = account_factory(name="Autocomplete Target")
    account_factory(name="Someone Else")
    response = admin_client.get(
        reverse("admin:autocomplete"),
        {"term": "autocomplete", "app_label": "accounts", "model_name": "account", "field_name": "parent"},
    )
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [str(target.pk)]


# --- billers and API keys --------------------------------------------------------------------------------


def test_biller_changelist_counts_references(admin_client, biller_factory, biller_reference_factory):
    busy, idle = biller_factory(code="busy"), biller_factory(code="idle")
    biller_reference_factory(biller=busy)
    biller_reference_factory(biller=busy)

    response = admin_client.get(_changelist("biller"))

    counts = {b.code: b.reference_count for b in response.context["cl"].result_list}
    assert counts == {"busy": 2, "idle": 0}
    assert idle.pk


def test_issuing_an_api_key_shows_it_once_and_stores_only_the_hash(
    admin_client, biller_factory, billing_admin_user
):
    biller = biller_factory(code="telco")
    url = reverse("admin:accounts_biller_issue_api_key", args=[biller.pk])
    assert admin_client.get(url).status_code == 200

    response = admin_client.post(url, {"name": "nightly push"})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    keys = RAW_KEY.findall(html)
    assert len(keys) == 1
    raw = keys[0]
    key = BillerApiKey.objects.get()
    assert (key.biller, key.name, key.prefix) == (biller, "nightly push", raw.split(".")[0])
    assert key.key_hash == BillerApiKey.hash_key(raw)
    assert key.key_hash != raw
    record = AuditRecord.objects.get(action="biller_api_key.create")
    assert record.actor_user == billing_admin_user
    assert raw not in str(record.after)

    # Never shown again: not on the biller page, not in a later message.
    page = admin_client.get(reverse("admin:accounts_biller_change", args=[biller.pk])).content.decode()
    assert raw not in page
    assert raw.split(".")[1] not in page
    assert key.prefix in page  # the inline lists the key by its prefix
    assert "Issue API key" in page


def test_issuing_an_api_key_needs_a_name(admin_client, biller_factory):
    biller = biller_factory()
    response = admin_client.post(
        reverse("admin:accounts_biller_issue_api_key", args=[biller.pk]), {"name": ""}
    )
    assert response.status_code == 200
    assert response.context["form"].errors == {"name": ["This field is required."]}
    assert not BillerApiKey.objects.exists()


def test_issuing_an_api_key_needs_the_permission(client, user_factory, biller_factory):
    viewer = user_factory(username="viewer")
    viewer.is_staff = True
    viewer.save()
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_biller"))
    client.force_login(viewer)
    biller = biller_factory()
    response = client.post(reverse("admin:accounts_biller_issue_api_key", args=[biller.pk]), {"name": "x"})
    assert response.status_code == 403
    assert not BillerApiKey.objects.exists()


def test_issue_key_action_redirects_for_one_biller(admin_client, biller_factory):
    one, two = biller_factory(), biller_factory()
    response = admin_client.post(
        _changelist("biller"), {"action": "issue_api_key", "_selected_action": [str(one.pk)]}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:accounts_biller_issue_api_key", args=[one.pk])

    response = admin_client.post(
        _changelist("biller"),
        {"action": "issue_api_key", "_selected_action": [str(one.pk), str(two.pk)]},
        follow=True,
    )
    assert "Select exactly one biller" in response.content.decode()
    assert not BillerApiKey.objects.exists()


def test_api_key_inline_is_read_only(admin_client, biller_factory):
    biller = biller_factory()
    key, _ = biller_api_key_create(biller=biller, name="push")
    url = reverse("admin:accounts_biller_change", args=[biller.pk])
    response = admin_client.get(url)
    inline = response.context["inline_admin_formsets"][0]
    assert inline.formset.model is BillerApiKey
    assert not inline.has_add_permission and not inline.has_change_permission
    assert not inline.has_delete_permission
    # A crafted POST cannot change or revoke the key through the inline.
    data = form_data(response, **{"api_keys-0-name": "renamed", "api_keys-0-revoked_at": "2020-01-01"})
    admin_client.post(url, data)
    key.refresh_from_db()
    assert (key.name, key.revoked_at) == ("push", None)


def test_revoke_action(admin_client, biller_factory, billing_admin_user):
    biller = biller_factory()
    first, _ = biller_api_key_create(biller=biller, name="one")
    second, _ = biller_api_key_create(biller=biller, name="two")

    response = admin_client.post(
        _changelist("billerapikey"),
        {"action": "revoke_keys", "_selected_action": [str(first.pk)]},
        follow=True,
    )

    assert "Revoked 1 API key(s)." in response.content.decode()
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.revoked_at is not None
    assert second.revoked_at is None
    record = AuditRecord.objects.get(action="biller_api_key.revoke")
    assert (record.object_id, record.actor_user) == (str(first.pk), billing_admin_user)


def test_api_keys_cannot_be_added_changed_or_deleted_directly(admin_client, biller_factory):
    key, _ = biller_api_key_create(biller=biller_factory(), name="push")
    assert admin_client.get(reverse("admin:accounts_billerapikey_add")).status_code == 403
    change = reverse("admin:accounts_billerapikey_change", args=[key.pk])
    assert admin_client.post(change, {"name": "x"}).status_code == 403
    delete = reverse("admin:accounts_billerapikey_delete", args=[key.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert BillerApiKey.objects.get(pk=key.pk).name == "push"


def test_biller_change_is_audited_without_the_secret(admin_client, biller_factory):
    biller = biller_factory(code="puller")
    url = reverse("admin:accounts_biller_change", args=[biller.pk])
    data = form_data(
        admin_client.get(url),
        pull_enabled="on",
        pull_url="https://biller.example/export",
        pull_auth_header="Bearer s3cret",
    )

    response = admin_client.post(url, data)

    assert response.status_code == 302
    record = AuditRecord.objects.get(action="biller.update")
    assert record.before["pull_enabled"] is False
    assert record.after["pull_enabled"] is True
    assert record.after["pull_auth_header"] == "***"
    assert "s3cret" not in str(record.before) + str(record.after)


def test_pull_without_url_is_a_form_error(admin_client, biller_factory):
    biller = biller_factory()
    url = reverse("admin:accounts_biller_change", args=[biller.pk])
    response = admin_client.post(url, form_data(admin_client.get(url), pull_enabled="on", pull_url=""))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "pull_url": ["A pull URL is required when pull is enabled."]
    }
    assert Biller.objects.get(pk=biller.pk).pull_enabled is False
    assert not AuditRecord.objects.exists()


def test_billers_cannot_be_deleted(admin_client, biller_factory):
    biller = biller_factory()
    response = admin_client.post(reverse("admin:accounts_biller_delete", args=[biller.pk]), {"post": "yes"})
    assert response.status_code == 403


def test_ledger_rows_are_not_editable_from_the_account_page(admin_client, account_factory):
    """The account admin has no ledger inline: the ledger is read in its own read-only admin."""
    account = account_factory()
    transaction_post(account=account, kind="bill", amount="5.00", currency="USD")
    response = admin_client.get(reverse("admin:accounts_account_change", args=[account.pk]))
    models = [inline.formset.model for inline in response.context["inline_admin_formsets"]]
    assert FinancialTransaction not in models
