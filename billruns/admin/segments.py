"""Admin for what the rating engine made: bill segments with their calculation lines, read-only.

Segments are written by the engine only (billruns.services.rating). The list is where a billing admin finds
what could not be rated: filter by status *Error* (and by error code) and read the code and message in the
list; fix the catalog or the subscription, and the next rating tries the segment again.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from billing_mgmt.admin import ReadOnlyAdmin, ReadOnlyMixin
from billing_mgmt.admin import admin_money as _money

from ..models import BillSegment, CalculationLine


class CalculationLineInline(ReadOnlyMixin, admin.TabularInline):
    model = CalculationLine
    fields = (
        "position",
        "kind",
        "description",
        "quantity",
        "unit",
        "rate",
        "proration_factor",
        "base",
        "amount",
        "included",
        "period_start",
        "period_end",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("position",)


@admin.register(BillSegment)
class BillSegmentAdmin(ReadOnlyAdmin):
    list_display = (
        "subscription_identifier",
        "account",
        "period",
        "status",
        "total_display",
        "error_code",
        "error_message",
        "statement_link",
    )
    list_select_related = ("subscription__account", "statement")
    list_filter = ("status", ("error_code", admin.AllValuesFieldListFilter), "currency")
    search_fields = (
        "=subscription__service_identifier",
        "=subscription__account__number",
        "=statement__number",
        "=error_code",
    )
    date_hierarchy = "period_start"
    show_full_result_count = False
    inlines = [CalculationLineInline]
    fieldsets = (
        (None, {"fields": ("subscription_link", "account", "period_start", "period_end", "status")}),
        ("Error", {"fields": ("error_code", "error_message")}),
        (
            "Amounts",
            {"fields": ("currency", "charges", "discounts", "taxes", "taxes_included", "total")},
        ),
        ("Bill", {"fields": ("statement_link", "rated_at", "frozen_at")}),
    )
    readonly_fields = ("subscription_link", "account", "statement_link")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("subscription__account", "statement")

    @admin.display(description="Service", ordering="subscription__service_identifier")
    def subscription_identifier(self, obj: BillSegment) -> str:
        return obj.subscription.service_identifier

    @admin.display(description="Subscription")
    def subscription_link(self, obj: BillSegment) -> str:
        url = reverse("admin:billruns_subscription_change", args=[obj.subscription_id])
        return format_html('<a href="{}">{}</a>', url, obj.subscription.service_identifier)

    @admin.display(description="Account", ordering="subscription__account__number")
    def account(self, obj: BillSegment) -> str:
        account = obj.subscription.account
        return f"{account.number} {account.name}"

    @admin.display(description="Period", ordering="period_start")
    def period(self, obj: BillSegment) -> str:
        return f"{obj.period_start:%Y-%m-%d} – {obj.period_end:%Y-%m-%d}"

    @admin.display(description="Total", ordering="total")
    def total_display(self, obj: BillSegment) -> str:
        return _money(obj.total, obj.currency)

    @admin.display(description="Statement", ordering="statement__number")
    def statement_link(self, obj: BillSegment) -> str:
        if obj.statement_id is None:
            return "-"
        url = reverse("admin:statements_statement_change", args=[obj.statement_id])
        return format_html('<a href="{}">{}</a>', url, obj.statement.number or obj.statement_id)
