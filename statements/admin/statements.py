"""Admin for statements (read-only: they come from billers or the billing engine, never from admin), billers'
balance snapshots (read-only) and the data-retention setting (one row, audited).

The billing admins' reports hang off the statement admin's URLs (statements.admin.reports).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from billing_mgmt.admin import ReadOnlyAdmin, ReadOnlyMixin
from billing_mgmt.audit import audit_record, snapshot
from billing_mgmt.money import CurrencyError, quantize
from statements.models import BillerBalanceSnapshot, DataRetention, Statement, StatementLine, UsageSummary

from .reports import report_links, report_urls

# A statement may carry thousands of lines (MAX_LINES in statements.records): the detail page shows them a
# page at a time, so it stays fast and small.
LINES_PER_PAGE = 200
LINES_PAGE_PARAM = "lines_page"


def _money(amount, currency: str) -> str:
    try:
        return f"{quantize(amount, currency)} {currency}"
    except CurrencyError:
        return f"{amount} {currency}"


def _money_field(name: str, label: str):
    """Read-only display of an amount rounded to the statement's currency ("82.52", not "82.5200")."""

    @admin.display(description=label)
    def display(self, obj: Statement) -> str:
        return _money(getattr(obj, name), obj.currency)

    return display


class StatementLineInline(ReadOnlyMixin, admin.TabularInline):
    model = StatementLine
    fields = (
        "position",
        "line_type",
        "product",
        "service_identifier",
        "description",
        "quantity",
        "unit",
        "unit_price",
        "amount",
        "tax",
        "period_start",
        "period_end",
        "external_id",
    )
    readonly_fields = fields
    extra = 0
    ordering = ("position",)
    template = "admin/statements/statement/lines_tabular.html"


class UsageSummaryInline(ReadOnlyMixin, admin.TabularInline):
    model = UsageSummary
    fields = ("service_identifier", "usage_type", "quantity", "unit", "included_quantity")
    readonly_fields = fields
    extra = 0


def _lines_page(request: HttpRequest) -> int:
    try:
        return max(1, int(request.GET.get(LINES_PAGE_PARAM, "1")))
    except ValueError:
        return 1


AMOUNTS = tuple(
    f"{name}_amount"
    for name in (
        "previous_balance",
        "payments",
        "adjustments",
        "new_charges",
        "taxes",
        "total_due",
        "disputed_amount",
    )
)


@admin.register(Statement)
class StatementAdmin(ReadOnlyAdmin):
    list_display = (
        "number",
        "account",
        "biller",
        "statement_date",
        "period",
        "total_due_display",
        "status",
        "channel",
        "version",
    )
    list_select_related = ("account", "biller")
    list_filter = ("biller", "status", "channel")
    date_hierarchy = "statement_date"
    search_fields = ("=number", "=external_id", "=account__number")
    show_full_result_count = False
    inlines = [StatementLineInline, UsageSummaryInline]
    fieldsets = (
        (
            None,
            {"fields": ("number", "account_link", "biller", "external_id", "status", "channel", "version")},
        ),
        ("Dates", {"fields": ("statement_date", "period_start", "period_end", "due_date")}),
        ("Amounts", {"fields": AMOUNTS}),
        ("Received", {"fields": ("received_at", "created_at", "content_hash", "usage_detail_purged_at")}),
    )
    readonly_fields = ("account_link", *AMOUNTS)

    previous_balance_amount = _money_field("previous_balance", "Previous balance")
    payments_amount = _money_field("payments", "Payments")
    adjustments_amount = _money_field("adjustments", "Adjustments")
    new_charges_amount = _money_field("new_charges", "New charges")
    taxes_amount = _money_field("taxes", "Taxes")
    total_due_amount = _money_field("total_due", "Total due")
    disputed_amount_amount = _money_field("disputed_amount", "Disputed amount")

    @admin.display(description="Period")
    def period(self, obj: Statement) -> str:
        return f"{obj.period_start:%Y-%m-%d} – {obj.period_end:%Y-%m-%d}"

    @admin.display(description="Total due", ordering="total_due")
    def total_due_display(self, obj: Statement) -> str:
        return _money(obj.total_due, obj.currency)

    @admin.display(description="Account")
    def account_link(self, obj: Statement) -> str:
        return format_html(
            '<a href="{}">{} {}</a>',
            reverse("account-detail", args=[obj.account.number]),
            obj.account.number,
            obj.account.name,
        )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("account", "biller")

    # Lines a page at a time: the formset gets one page of them; the inline's template shows where it is.

    def get_formset_kwargs(self, request, obj, inline, prefix):
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, StatementLineInline) and obj is not None:
            start = (_lines_page(request) - 1) * LINES_PER_PAGE
            page = StatementLine.objects.filter(statement=obj).order_by("position").values("pk")
            kwargs["queryset"] = kwargs["queryset"].filter(pk__in=page[start : start + LINES_PER_PAGE])
        return kwargs

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["line_pages"] = self._line_pages(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _line_pages(self, request: HttpRequest, obj: Statement) -> dict[str, Any] | None:
        total = obj.lines.count()
        if total <= LINES_PER_PAGE:
            return None
        page = _lines_page(request)
        pages = (total + LINES_PER_PAGE - 1) // LINES_PER_PAGE

        def url(number: int) -> str:
            params = request.GET.copy()
            params[LINES_PAGE_PARAM] = str(number)
            return f"?{params.urlencode()}"

        return {
            "total": total,
            "first": min((page - 1) * LINES_PER_PAGE + 1, total),
            "last": min(page * LINES_PER_PAGE, total),
            "previous_url": url(page - 1) if page > 1 else "",
            "next_url": url(page + 1) if page < pages else "",
        }

    # The billing admins' reports (statements.admin.reports), linked from the list and the admin index.

    def get_urls(self):
        return [*report_urls(self), *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "report_links": report_links(request.user)}
        return super().changelist_view(request, extra_context)


@admin.register(BillerBalanceSnapshot)
class BillerBalanceSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("account", "biller", "as_of", "amount_display", "channel", "external_id", "received_at")
    list_select_related = ("account", "biller")
    list_filter = ("biller", "channel", "currency")
    date_hierarchy = "as_of"
    search_fields = ("=account__number", "=external_id")
    show_full_result_count = False

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, obj: BillerBalanceSnapshot) -> str:
        return _money(obj.amount, obj.currency)


# --- Data retention: one row ------------------------------------------------------------------------------


class DataRetentionForm(forms.ModelForm):
    class Meta:
        model = DataRetention
        fields = ("usage_detail_days",)

    def clean_usage_detail_days(self):
        days = self.cleaned_data["usage_detail_days"]
        if days is not None and days < 1:
            # 0 would remove the usage detail of every statement but today's: surely a slip of the keyboard.
            raise forms.ValidationError(
                "Keep usage detail at least one day, or leave empty to keep it forever."
            )
        return days

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is None:
            # Django admin validates and saves in one transaction: this lock makes a second admin adding the
            # setting at the same moment wait, then see the first one's row.
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(hashtext('statements.dataretention'))")
            if DataRetention.objects.exists():
                raise forms.ValidationError(
                    "Data retention is already configured: change the existing setting."
                )
        return cleaned


def _retention_state(obj: DataRetention) -> dict[str, Any]:
    return snapshot(obj, ["usage_detail_days"])


@admin.register(DataRetention)
class DataRetentionAdmin(admin.ModelAdmin):
    """A singleton: one row holds the setting (DataRetention.current() reads it)."""

    form = DataRetentionForm
    list_display = ("__str__", "usage_detail_days", "updated_at")
    fields = ("usage_detail_days", "updated_at")
    readonly_fields = ("updated_at",)

    # "Add" leads to the existing row when there is one. has_add_permission itself does not look: the app
    # list on every admin page asks it, and one more query on each page is not worth a hidden link.

    def add_view(self, request, form_url="", extra_context=None):
        existing = DataRetention.objects.order_by("pk").first()
        if existing is not None:
            self.message_user(request, "Data retention is configured once: change the setting here.")
            return HttpResponseRedirect(reverse("admin:statements_dataretention_change", args=[existing.pk]))
        return super().add_view(request, form_url, extra_context)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {})}
        if DataRetention.objects.exists():
            extra_context["has_add_permission"] = False
        return super().changelist_view(request, extra_context)

    def has_delete_permission(self, request, obj=None):
        # Turning retention off is emptying the field (audited), not deleting the row.
        return False

    def save_model(self, request, obj, form, change):
        before = (
            _retention_state(DataRetention.objects.select_for_update().get(pk=obj.pk)) if change else None
        )
        super().save_model(request, obj, form, change)
        after = _retention_state(obj)
        if before != after:
            audit_record(
                actor=request.user,
                action="data_retention.update" if change else "data_retention.create",
                obj=obj,
                before=before,
                after=after,
            )
