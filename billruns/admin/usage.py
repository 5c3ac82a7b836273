"""Admin: usage records. Read-only (they are data from sources, never edited here); rejected records are found
with the status and rejection filters and matched again, after the fix, with the reprocess action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from billing_mgmt.admin import ReadOnlyAdmin
from billruns.models import UsageRecord
from billruns.services.usage import REJECTION_CODES, usage_records_reprocess


class RejectionCodeFilter(admin.SimpleListFilter):
    """The known codes, without a scan of the table for its distinct values."""

    title = "rejection"
    parameter_name = "rejection_code"

    def lookups(self, request, model_admin):
        return list(REJECTION_CODES.items())

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(rejection_code=value) if value else queryset


class RatingStatusFilter(admin.SimpleListFilter):
    """Accepted (waiting for rating), rated or rejected (``UsageRecordQuerySet.with_status``)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return UsageRecord.Status.choices

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.with_status(value) if value in UsageRecord.Status.values else queryset


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "event_time",
        "source",
        "external_id",
        "service_identifier",
        "subscription_link",
        "usage_type_code",
        "quantity",
        "unit",
        "rating_status",
        "rejection_code",
        "rejection_reason",
        "received_at",
    )
    list_select_related = ("subscription__account", "rating")
    list_filter = (RatingStatusFilter, RejectionCodeFilter, "usage_type")
    search_fields = ("=source", "=external_id", "=service_identifier")
    date_hierarchy = "event_date"
    show_full_result_count = False
    actions = ["reprocess"]
    fieldsets = (
        (None, {"fields": ("source", "external_id", "rating_status", "rejection_code", "rejection_reason")}),
        (
            "Usage",
            {"fields": ("usage_type_code", "usage_type", "quantity", "unit", "event_time", "event_date")},
        ),
        (
            "Subscription",
            {"fields": ("service_identifier", "subscription_ref", "subscription_link", "rated_segment")},
        ),
        ("Received", {"fields": ("received_at",)}),
    )
    readonly_fields = ("subscription_link", "rating_status", "rated_segment")

    @admin.display(description="Status")
    def rating_status(self, obj: UsageRecord) -> str:
        return UsageRecord.Status(obj.rating_status).label

    @admin.display(description="Rated on segment")
    def rated_segment(self, obj: UsageRecord) -> str:
        return str(obj.rated_segment_id) if obj.rated_segment_id is not None else "-"

    @admin.display(description="Subscription", ordering="subscription_id")
    def subscription_link(self, obj: UsageRecord) -> str:
        sub = obj.subscription
        if sub is None:
            return "-"
        label = f"{sub.pk} ({sub.account.number})"
        try:
            url = reverse("admin:billruns_subscription_change", args=[sub.pk])
        except NoReverseMatch:  # the subscription admin is not registered
            return label
        return format_html('<a href="{}">{}</a>', url, label)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("subscription__account", "rating")

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billruns.change_usagerecord")

    @admin.action(description="Reprocess selected rejected records", permissions=["reprocess"])
    def reprocess(self, request: HttpRequest, queryset: QuerySet[UsageRecord]) -> None:
        result = usage_records_reprocess(records=queryset, actor=request.user)
        level = messages.WARNING if result.rejected else messages.SUCCESS
        self.message_user(request, f"Reprocessed: {result}.", level=level)
