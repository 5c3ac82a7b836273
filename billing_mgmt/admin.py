"""Admin for the kernel: number series and the audit trail; the admin site's title."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.urls import reverse
from django.utils.functional import lazy
from django.utils.html import format_html

from .models import AuditRecord, NumberSeries
from .money import CurrencyError, quantize
from .numbering import peek_next


def _product_name() -> str:
    return settings.PRODUCT_NAME


# Lazy, so that importing the admin does not read settings before they are final.
product_name = lazy(_product_name, str)()
admin.site.site_header = lazy(lambda: f"{_product_name()} administration", str)()
admin.site.site_title = product_name
admin.site.index_title = "Configuration"


class ReadOnlyMixin:
    """For records that only services write: the ledger, balances, audit records, API keys."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    pass


def admin_money(amount, currency: str) -> str:
    """An amount as admin lists show it: rounded to the currency's minor unit, with its code ("—" if none)."""
    if amount is None:
        return "—"
    try:
        return f"{quantize(amount, currency)} {currency}"
    except CurrencyError:
        return f"{amount} {currency}"


def account_link(account) -> str:
    """A link from an admin page to the account's CSR page."""
    return format_html(
        '<a href="{}">{} {}</a>',
        reverse("account-detail", args=[account.number]),
        account.number,
        account.name,
    )


@admin.register(NumberSeries)
class NumberSeriesAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "prefix", "padding", "gapless", "next_number")
    list_filter = ("gapless",)
    search_fields = ("code", "name")

    @admin.display(description="Next number")
    def next_number(self, obj: NumberSeries) -> str:
        if obj.pk is None:
            return "-"
        return obj.format(peek_next(obj))

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # Once numbers have been handed out, the code is referenced by the code base, a gapless series must
        # stay gapless (tax law) and the counter belongs to the numbering service (a PostgreSQL sequence for
        # ordinary series, a locked row for gapless ones): editing it here would cause duplicates or gaps.
        return ("code", "gapless", "next_value", "next_number")

    def has_delete_permission(self, request, obj=None):
        # Deleting a series would restart its numbers and clash with numbers already issued.
        return False


@admin.register(AuditRecord)
class AuditRecordAdmin(ReadOnlyAdmin):
    """Read-only: the database itself refuses UPDATE and DELETE on this table."""

    list_display = (
        "created_at",
        "actor_type",
        "actor_label",
        "action",
        "object_type",
        "object_id",
        "account_id",
        "request_id",
    )
    list_filter = ("action", "actor_type", "object_type")
    search_fields = ("=object_id", "=request_id", "actor_label")
    date_hierarchy = "created_at"
    show_full_result_count = False
