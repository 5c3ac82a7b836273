"""Admin for the ledger: read-only. Money moves only through statements.services (and the database refuses
UPDATE and DELETE of ledger rows anyway); a correction is a new row posted by a service."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from billing_mgmt.admin import ReadOnlyAdmin
from statements.models import AccountBalance, FinancialTransaction


def _ledger_url(account_id: int, balance_type: str | None = None) -> str:
    url = reverse("admin:statements_financialtransaction_changelist") + f"?account__id__exact={account_id}"
    if balance_type:
        url += f"&balance_type__exact={balance_type}"
    return url


@admin.register(FinancialTransaction)
class FinancialTransactionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "account",
        "kind",
        "balance_type",
        "amount",
        "currency",
        "effective_date",
        "biller",
        "external_id",
        "posted_at",
        "corrects",
    )
    list_select_related = ("account", "biller", "corrects")
    list_filter = ("kind", "balance_type", "currency", "biller", "effective_date")
    search_fields = ("=account__number", "=external_id", "=idempotency_key")
    date_hierarchy = "effective_date"
    show_full_result_count = False
    raw_id_fields = ("account", "corrects", "created_by")

    def lookup_allowed(self, lookup, value, request=None):
        # Links from the balance list filter the rows by account.
        if lookup in ("account__id__exact", "account__exact"):
            return True
        return super().lookup_allowed(lookup, value, request)


@admin.register(AccountBalance)
class AccountBalanceAdmin(ReadOnlyAdmin):
    list_display = (
        "account",
        "balance_type",
        "amount",
        "currency",
        "transaction_count",
        "updated_at",
        "rows",
    )
    list_select_related = ("account",)
    list_filter = ("balance_type", "currency")
    search_fields = ("=account__number", "account__name")

    @admin.display(description="Ledger rows")
    def rows(self, obj: AccountBalance) -> str:
        return format_html(
            '<a href="{}">{} row(s)</a>', _ledger_url(obj.account_id, obj.balance_type), obj.transaction_count
        )

    def get_readonly_fields(self, request, obj=None):
        return (*super().get_readonly_fields(request, obj), "rows")
