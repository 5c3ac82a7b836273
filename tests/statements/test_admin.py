"""The ledger admin is read-only, for every user (even a superuser)."""

from decimal import Decimal

import pytest
from django.urls import reverse

from statements.models import AccountBalance, FinancialTransaction
from statements.services import transaction_post, transaction_reverse


@pytest.fixture
def row(account_factory, biller_factory):
    account = account_factory(name="Ledger Admin Co")
    row, _ = transaction_post(
        account=account,
        kind="bill",
        amount=Decimal("42.00"),
        currency="USD",
        biller=biller_factory(code="telco"),
        external_id="INV-9001",
    )
    transaction_post(account=account, kind="payment", amount=Decimal("-2.00"), currency="USD")
    return row


@pytest.mark.parametrize("model", ["financialtransaction", "accountbalance"])
def test_changelists_open_for_a_billing_admin(admin_client, row, model):
    response = admin_client.get(reverse(f"admin:statements_{model}_changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count >= 1


def test_ledger_row_detail_is_view_only(admin_client, row):
    response = admin_client.get(reverse("admin:statements_financialtransaction_change", args=[row.pk]))
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert "INV-9001" in response.content.decode()


@pytest.mark.parametrize("client_fixture", ["admin_client", "superuser_client"])
def test_ledger_add_change_delete_are_forbidden(request, row, client_fixture):
    client = request.getfixturevalue(client_fixture)
    add = reverse("admin:statements_financialtransaction_add")
    change = reverse("admin:statements_financialtransaction_change", args=[row.pk])
    delete = reverse("admin:statements_financialtransaction_delete", args=[row.pk])

    assert client.get(add).status_code == 403
    assert client.post(add, {"amount": "1.00"}).status_code == 403
    assert client.post(change, {"amount": "1.00", "kind": "bill"}).status_code == 403
    assert client.get(delete).status_code == 403
    assert client.post(delete, {"post": "yes"}).status_code == 403

    fresh = FinancialTransaction.objects.get(pk=row.pk)
    assert fresh.amount == Decimal("42.00")
    assert FinancialTransaction.objects.count() == 2


def test_ledger_changelist_has_no_actions(admin_client, row):
    url = reverse("admin:statements_financialtransaction_changelist")
    assert admin_client.get(url).context["action_form"] is None
    admin_client.post(url, {"action": "delete_selected", "_selected_action": [str(row.pk)], "post": "yes"})
    assert FinancialTransaction.objects.filter(pk=row.pk).exists()


@pytest.mark.parametrize("client_fixture", ["admin_client", "superuser_client"])
def test_balance_add_change_delete_are_forbidden(request, row, client_fixture):
    client = request.getfixturevalue(client_fixture)
    balance = AccountBalance.objects.get(account=row.account)
    assert client.get(reverse("admin:statements_accountbalance_add")).status_code == 403
    change = reverse("admin:statements_accountbalance_change", args=[balance.pk])
    assert client.get(change).status_code == 200
    assert client.post(change, {"amount": "0"}).status_code == 403
    delete = reverse("admin:statements_accountbalance_delete", args=[balance.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert AccountBalance.objects.get(pk=balance.pk).amount == Decimal("40.00")


@pytest.mark.parametrize("query", ["INV-9001", "account-number"])
def test_ledger_search_by_external_id_and_account_number(admin_client, row, account_factory, query):
    other = account_factory()
    transaction_post(account=other, kind="bill", amount=Decimal("1.00"), currency="USD")
    if query == "account-number":
        query = row.account.number
    response = admin_client.get(reverse("admin:statements_financialtransaction_changelist"), {"q": query})
    found = {r.account_id for r in response.context["cl"].result_list}
    assert found == {row.account_id}


def test_ledger_filters_and_date_hierarchy(admin_client, row):
    transaction_reverse(original=row, reason="wrong")
    url = reverse("admin:statements_financialtransaction_changelist")

    by_kind = admin_client.get(url, {"kind__exact": "reversal"})
    assert [r.kind for r in by_kind.context["cl"].result_list] == ["reversal"]
    by_biller = admin_client.get(url, {"biller__id__exact": str(row.biller_id)})
    assert [r.pk for r in by_biller.context["cl"].result_list] == [row.pk]
    day = row.effective_date
    by_day = admin_client.get(
        url,
        {
            "effective_date__year": day.year,
            "effective_date__month": day.month,
            "effective_date__day": day.day,
        },
    )
    assert by_day.status_code == 200
    assert by_day.context["cl"].result_count == 3


def test_balance_links_to_its_ledger_rows(admin_client, row, account_factory):
    other = account_factory()
    transaction_post(account=other, kind="bill", amount=Decimal("1.00"), currency="USD")
    response = admin_client.get(reverse("admin:statements_accountbalance_changelist"))
    link = (
        reverse("admin:statements_financialtransaction_changelist")
        + f"?account__id__exact={row.account_id}&amp;balance_type__exact=receivable"
    )
    assert f'<a href="{link}">2 row(s)</a>' in response.content.decode()

    rows = admin_client.get(link.replace("&amp;", "&"))
    assert rows.status_code == 200
    assert {r.account_id for r in rows.context["cl"].result_list} == {row.account_id}
    assert rows.context["cl"].result_count == 2


def test_ledger_changelist_query_count_is_bounded(
    admin_client, row, account_factory, django_assert_max_num_queries
):
    for _ in range(10):
        account = account_factory()
        transaction_post(account=account, kind="bill", amount=Decimal("3.00"), currency="USD")
    with django_assert_max_num_queries(10):
        response = admin_client.get(reverse("admin:statements_financialtransaction_changelist"))
    assert response.status_code == 200
