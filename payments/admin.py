"""Admin for payments: the adjustment reason codes and the adjustment limits (configuration, audited), and
read-only views of payments (with their allocations), adjustments and payment methods.

Payments, adjustments and payment methods are entered by CSRs on the account page (or by other systems
through the API), always through payments.services, which post the ledger row and the audit record: the
admin never adds, changes or deletes them. A payment method shows its brand and last four digits, never the
processor's token.
"""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from billing_mgmt.admin import ReadOnlyAdmin, ReadOnlyMixin
from billing_mgmt.admin import account_link as _account_link
from billing_mgmt.admin import admin_money as _money
from billing_mgmt.audit import audit_record, snapshot
from billing_mgmt.money import CurrencyError, is_quantized

from .models import (
    Adjustment,
    AdjustmentLimit,
    AdjustmentReason,
    AutopayAttempt,
    ExportItem,
    Payment,
    PaymentAllocation,
    PaymentMethod,
)


def _audited_save(model_admin, request, obj, form, change, *, action: str, fields: list[str]) -> None:
    """Save through Django admin with an audit record of what changed (nothing when nothing did)."""
    model = type(obj)
    before = snapshot(model.objects.select_for_update().get(pk=obj.pk), fields) if change else None
    admin.ModelAdmin.save_model(model_admin, request, obj, form, change)
    after = snapshot(obj, fields)
    if before != after:
        audit_record(
            actor=request.user,
            action=f"{action}.{'update' if change else 'create'}",
            obj=obj,
            before=before,
            after=after,
        )


def _audited_delete(request, obj, *, action: str, fields: list[str]) -> None:
    audit_record(actor=request.user, action=f"{action}.delete", obj=obj, before=snapshot(obj, fields))


# --- Adjustment reasons ------------------------------------------------------------------------------------

REASON_FIELDS = ["code", "name", "direction", "active"]


class AdjustmentReasonForm(forms.ModelForm):
    class Meta:
        model = AdjustmentReason
        fields = REASON_FIELDS


@admin.register(AdjustmentReason)
class AdjustmentReasonAdmin(admin.ModelAdmin):
    """Reason codes CSRs choose from. Once an adjustment used a reason it is deactivated, never deleted (the
    adjustment keeps pointing at it), and its code is fixed."""

    form = AdjustmentReasonForm
    list_display = ("code", "name", "direction", "active", "used")
    list_filter = ("active", "direction")
    search_fields = ("code", "name")

    @admin.display(description="Adjustments")
    def used(self, obj: AdjustmentReason) -> int:
        return obj.adjustments.count()

    def _used(self, obj: AdjustmentReason | None) -> bool:
        return obj is not None and obj.pk is not None and obj.adjustments.exists()

    def get_readonly_fields(self, request, obj=None):
        return ("code",) if self._used(obj) else ()

    def has_delete_permission(self, request, obj=None):
        if self._used(obj):
            return False  # deactivate it instead: past adjustments keep their reason
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        _audited_save(self, request, obj, form, change, action="adjustment_reason", fields=REASON_FIELDS)

    def delete_model(self, request, obj):
        _audited_delete(request, obj, action="adjustment_reason", fields=REASON_FIELDS)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            _audited_delete(request, obj, action="adjustment_reason", fields=REASON_FIELDS)
        super().delete_queryset(request, queryset)


# --- Adjustment limits -------------------------------------------------------------------------------------

LIMIT_FIELDS = ["role", "user", "currency", "max_amount"]


class AdjustmentLimitForm(forms.ModelForm):
    """The model's constraints (a role or a user, not both; not negative; one limit per role or user and
    currency) as form errors in words, before the database would refuse them."""

    class Meta:
        model = AdjustmentLimit
        fields = LIMIT_FIELDS

    def clean_max_amount(self):
        amount = self.cleaned_data.get("max_amount")
        if amount is not None and amount < 0:
            raise forms.ValidationError("A limit cannot be negative (0: every adjustment needs approval).")
        return amount

    def clean(self):
        cleaned = super().clean()
        role, user = cleaned.get("role"), cleaned.get("user")
        if "role" not in self._errors and "user" not in self._errors:
            if role is None and user is None:
                self.add_error("role", "Choose a role or a user.")
            elif role is not None and user is not None:
                self.add_error(
                    "user", "Choose a role or a user, not both: a user's own limit is another row."
                )
        currency, amount = cleaned.get("currency"), cleaned.get("max_amount")
        if currency and isinstance(amount, Decimal):
            try:
                if not is_quantized(amount, currency):
                    self.add_error("max_amount", f"Too many decimals for {currency}.")
            except CurrencyError as exc:
                self.add_error("currency", str(exc))
        return cleaned


@admin.register(AdjustmentLimit)
class AdjustmentLimitAdmin(admin.ModelAdmin):
    """The largest adjustment a role (or one user) posts without a supervisor, per currency. A user's own
    limit wins over their roles'; with neither, every adjustment waits for approval."""

    form = AdjustmentLimitForm
    list_display = ("applies_to", "currency", "max_amount_display")
    list_filter = ("currency", "role")
    list_select_related = ("role", "user")
    search_fields = ("role__name", "user__username")

    @admin.display(description="Role or user")
    def applies_to(self, obj: AdjustmentLimit) -> str:
        return f"User {obj.user}" if obj.user_id else f"Role {obj.role}"

    @admin.display(description="Up to", ordering="max_amount")
    def max_amount_display(self, obj: AdjustmentLimit) -> str:
        return _money(obj.max_amount, obj.currency)

    def save_model(self, request, obj, form, change):
        _audited_save(self, request, obj, form, change, action="adjustment_limit", fields=LIMIT_FIELDS)

    def delete_model(self, request, obj):
        _audited_delete(request, obj, action="adjustment_limit", fields=LIMIT_FIELDS)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            _audited_delete(request, obj, action="adjustment_limit", fields=LIMIT_FIELDS)
        super().delete_queryset(request, queryset)


# --- Payments, adjustments, payment methods (read-only) ---------------------------------------------------


class PaymentAllocationInline(ReadOnlyMixin, admin.TabularInline):
    model = PaymentAllocation
    fields = ("statement_link", "amount_display", "reversed")
    readonly_fields = fields
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("statement", "payment")

    @admin.display(description="Statement")
    def statement_link(self, obj: PaymentAllocation) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:statements_statement_change", args=[obj.statement_id]),
            obj.statement.number,
        )

    @admin.display(description="Amount")
    def amount_display(self, obj: PaymentAllocation) -> str:
        return _money(obj.amount, obj.payment.currency)


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    """Entered by CSRs (account page) or other systems (API) through payments.services; read-only here."""

    list_display = (
        "id",
        "payment_date",
        "account_link",
        "amount_display",
        "method",
        "reference",
        "channel",
        "status",
        "unallocated_display",
    )
    list_select_related = ("account", "method")
    list_filter = ("status", "channel", "currency", "payment_date")
    search_fields = ("=account__number", "reference")
    date_hierarchy = "payment_date"
    show_full_result_count = False
    inlines = [PaymentAllocationInline]
    fields = (
        "account_link",
        "amount_display",
        "payment_date",
        "method",
        "reference",
        "channel",
        "status",
        "unallocated_display",
        "transaction",
        "reversal",
        "reversal_reason",
        "idempotency_key",
        "created_at",
        "created_by",
    )
    readonly_fields = fields

    @admin.display(description="Account", ordering="account__number")
    def account_link(self, obj: Payment) -> str:
        return _account_link(obj.account)

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, obj: Payment) -> str:
        return _money(obj.amount, obj.currency)

    @admin.display(description="Unallocated (credit)")
    def unallocated_display(self, obj: Payment) -> str:
        return _money(obj.unallocated, obj.currency)


@admin.register(Adjustment)
class AdjustmentAdmin(ReadOnlyAdmin):
    """Made by CSRs and approved by supervisors on the account page (payments.services); read-only here."""

    list_display = (
        "id",
        "created_at",
        "account_link",
        "direction",
        "amount_display",
        "reason",
        "status",
        "maker",
        "checker",
    )
    list_select_related = ("account", "reason", "maker", "checker")
    list_filter = ("status", "direction", "currency", "reason")
    search_fields = ("=account__number", "note", "reason__code")
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = (
        "account_link",
        "direction",
        "amount_display",
        "reason",
        "note",
        "statement",
        "statement_line",
        "status",
        "transaction",
        "maker",
        "checker",
        "decision_comment",
        "decided_at",
        "idempotency_key",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="Account", ordering="account__number")
    def account_link(self, obj: Adjustment) -> str:
        return _account_link(obj.account)

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, obj: Adjustment) -> str:
        return _money(obj.amount, obj.currency)


class RemovedFilter(admin.SimpleListFilter):
    title = "removed"
    parameter_name = "removed"

    def lookups(self, request, model_admin):
        return (("no", "In use"), ("yes", "Removed"))

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(removed_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(removed_at__isnull=False)
        return queryset


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ReadOnlyAdmin):
    """Kept on the account page (payments.services). Shown as brand •••• last four: the processor's token
    is not shown anywhere in the admin (only whether there is one)."""

    list_display = ("masked", "kind", "account_link", "expiry", "holder", "is_default", "removed_at")
    list_select_related = ("account",)
    list_filter = ("kind", "is_default", RemovedFilter)
    search_fields = ("=account__number", "=last4")
    show_full_result_count = False
    fields = (
        "masked",
        "kind",
        "account_link",
        "has_token",
        "expiry",
        "holder",
        "bank_name",
        "description",
        "is_default",
        "created_at",
        "created_by",
        "removed_at",
    )
    readonly_fields = fields

    @admin.display(description="Method")
    def masked(self, obj: PaymentMethod) -> str:
        return str(obj)

    @admin.display(description="Account", ordering="account__number")
    def account_link(self, obj: PaymentMethod) -> str:
        return _account_link(obj.account)

    @admin.display(description="Expiry")
    def expiry(self, obj: PaymentMethod) -> str:
        if obj.expiry_month and obj.expiry_year:
            return f"{obj.expiry_month:02d}/{obj.expiry_year}"
        return "—"

    @admin.display(description="Processor token on file", boolean=True)
    def has_token(self, obj: PaymentMethod) -> bool:
        return bool(obj.token)


# --- Exports to billers and autopay ------------------------------------------------------------------------


@admin.register(ExportItem)
class ExportItemAdmin(ReadOnlyAdmin):
    """The outbox of entries for external billers (payments.services); read-only but for retrying the dead."""

    list_display = (
        "export_id",
        "created_at",
        "biller",
        "account_link",
        "kind",
        "status",
        "attempts",
        "last_error",
    )
    list_select_related = ("biller", "account")
    list_filter = ("status", "kind", "biller")
    search_fields = ("=export_id", "=account__number")
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["retry"]
    fields = (
        "export_id",
        "biller",
        "account_link",
        "kind",
        "payment",
        "adjustment",
        "status",
        "attempts",
        "next_attempt_at",
        "last_error",
        "delivered_at",
        "answered_at",
        "rejection_reason",
        "payload",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="Account", ordering="account__number")
    def account_link(self, obj: ExportItem) -> str:
        return _account_link(obj.account)

    def has_retry_permission(self, request) -> bool:
        # The dead letter's way back: the one change an admin makes here (through export_retry).
        return request.user.has_perm("payments.change_exportitem")

    @admin.action(description="Retry the selected failed exports now", permissions=["retry"])
    def retry(self, request, queryset) -> None:
        from billing_mgmt.errors import ApplicationError

        from .services import export_retry

        done = 0
        for item in queryset:
            try:
                export_retry(item_pk=item.pk, actor=request.user)
                done += 1
            except ApplicationError as exc:
                self.message_user(request, f"{item.export_id}: {exc.message}", level=messages.WARNING)
        if done:
            self.message_user(request, f"{done} export(s) queued again.", level=messages.SUCCESS)


@admin.register(AutopayAttempt)
class AutopayAttemptAdmin(ReadOnlyAdmin):
    """Each due statement's one autopay charge and how it ended (payments.services, autopay)."""

    list_display = ("created_at", "statement", "account_link", "amount_display", "status", "message")
    list_select_related = ("statement", "account")
    list_filter = ("status", "currency")
    search_fields = ("=account__number", "=statement__number", "processor_reference")
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = (
        "statement",
        "account_link",
        "method",
        "amount_display",
        "status",
        "payment",
        "processor_reference",
        "message",
        "idempotency_key",
        "created_at",
        "resolved_at",
    )
    readonly_fields = fields

    @admin.display(description="Account", ordering="account__number")
    def account_link(self, obj: AutopayAttempt) -> str:
        return _account_link(obj.account)

    @admin.display(description="Amount", ordering="amount")
    def amount_display(self, obj: AutopayAttempt) -> str:
        return _money(obj.amount, obj.currency)
