"""Admin for cases: billing admins configure the catalog of service processes (audited), and read cases
(with their history inline) and disputes.

Cases and disputes are raised and worked on the CSR pages, in the portal and through the API, always through
disputes.services (history events, e-mails, audit records, the state machine): the admin never adds, changes
or deletes them. Each case links to its CSR page, where its status changes.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import Count, Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html

from billing_mgmt.admin import ReadOnlyAdmin, ReadOnlyMixin
from billing_mgmt.admin import account_link as _account_link
from billing_mgmt.admin import admin_money as _money
from billing_mgmt.audit import audit_record, snapshot

from .models import Case, CaseEvent, Dispute, ServiceProcess

PROCESS_FIELDS = [
    "code",
    "name",
    "description",
    "action",
    "queue",
    "service_level_hours",
    "max_extension_days",
    "portal",
    "active",
    "position",
]


def case_page_url(number: str) -> str:
    """The CSR case page, where a case's status changes (disputes.urls, mounted at /cases/)."""
    try:
        return reverse("case-detail", args=[number])
    except NoReverseMatch:  # the CSR pages are not mounted (a trimmed URLconf)
        return f"/cases/{number}/"


# --- Service processes (the catalog) ------------------------------------------------------------------------


class ServiceProcessForm(forms.ModelForm):
    class Meta:
        model = ServiceProcess
        fields = PROCESS_FIELDS

    def clean_service_level_hours(self):
        hours = self.cleaned_data.get("service_level_hours")
        if hours is not None and hours < 1:
            raise forms.ValidationError("At least one hour: a case is due some time after it is raised.")
        return hours

    def clean(self):
        cleaned = super().clean()
        action = cleaned.get("action", self.instance.action)
        days = cleaned.get("max_extension_days")
        if action == ServiceProcess.Action.EXTEND_DUE_DATE and days is not None and days < 1:
            self.add_error("max_extension_days", "A due date must be allowed to move at least one day.")
        return cleaned


@admin.register(ServiceProcess)
class ServiceProcessAdmin(admin.ModelAdmin):
    """The catalog the portal's Help Center and the CSR's new case form list. A process that has cases keeps
    its code and action (its cases were raised for what it does) and is deactivated, never deleted."""

    form = ServiceProcessForm
    list_display = (
        "name",
        "code",
        "action",
        "queue",
        "service_level_hours",
        "portal",
        "active",
        "position",
        "case_count",
    )
    list_editable = ("portal", "active", "position")
    list_filter = ("active", "portal", "action", "queue")
    search_fields = ("code", "name")
    ordering = ("position", "name")  # explicit: the case count's GROUP BY drops Meta.ordering

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(case_count=Count("cases"))

    @admin.display(description="Cases", ordering="case_count")
    def case_count(self, obj: ServiceProcess) -> int:
        return obj.case_count

    def _used(self, obj: ServiceProcess | None) -> bool:
        return obj is not None and obj.pk is not None and obj.cases.exists()

    def get_readonly_fields(self, request, obj=None):
        return ("code", "action") if self._used(obj) else ()

    def has_delete_permission(self, request, obj=None):
        if self._used(obj):
            return False  # deactivate it instead: its cases point at it
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        before = None
        if change:
            before = snapshot(ServiceProcess.objects.select_for_update().get(pk=obj.pk), PROCESS_FIELDS)
        super().save_model(request, obj, form, change)
        after = snapshot(obj, PROCESS_FIELDS)
        if before != after:
            audit_record(
                actor=request.user,
                action=f"service_process.{'update' if change else 'create'}",
                obj=obj,
                before=before,
                after=after,
            )

    def delete_model(self, request, obj):
        self._audit_delete(request, obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self._audit_delete(request, obj)
        super().delete_queryset(request, queryset)

    def _audit_delete(self, request, obj: ServiceProcess) -> None:
        audit_record(
            actor=request.user, action="service_process.delete", obj=obj, before=snapshot(obj, PROCESS_FIELDS)
        )


# --- Cases (read-only; worked on the CSR pages) -------------------------------------------------------------


class OverdueFilter(admin.SimpleListFilter):
    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return (("yes", "Overdue (open, past due)"), ("no", "On time or closed"))

    def queryset(self, request, queryset):
        overdue = Q(status__in=Case.OPEN_STATUSES, due_at__lt=timezone.now())
        if self.value() == "yes":
            return queryset.filter(overdue)
        if self.value() == "no":
            return queryset.exclude(overdue)
        return queryset


class OpenFilter(admin.SimpleListFilter):
    title = "open or decided"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("open", "Open (new, in progress, waiting)"), ("done", "Resolved, rejected or closed"))

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(status__in=Case.OPEN_STATUSES)
        if self.value() == "done":
            return queryset.exclude(status__in=Case.OPEN_STATUSES)
        return queryset


class CaseEventInline(ReadOnlyMixin, admin.TabularInline):
    """The history, append-only (the database refuses changes and deletes)."""

    model = CaseEvent
    fields = ("created_at", "kind", "status_change", "text", "public", "actor_label", "email")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("created_at", "id")
    verbose_name = "history event"
    verbose_name_plural = "History"

    @admin.display(description="Status")
    def status_change(self, obj: CaseEvent) -> str:
        labels = dict(Case.Status.choices)
        after = labels.get(obj.to_status, obj.to_status)
        if obj.from_status and obj.to_status:
            return f"{labels.get(obj.from_status, obj.from_status)} → {after}"
        return after or "—"

    @admin.display(description="E-mail")
    def email(self, obj: CaseEvent) -> str:
        if not obj.email_to:
            return "—"
        if obj.email_sent_at is None:
            return f"to {obj.email_to}, not sent yet"
        return f"sent to {obj.email_to} at {timezone.localtime(obj.email_sent_at):%Y-%m-%d %H:%M}"


@admin.register(Case)
class CaseAdmin(ReadOnlyAdmin):
    """Read-only: cases change status, owner and history on the CSR case page (disputes.services), which the
    detail links to."""

    list_display = (
        "number",
        "account_link",
        "process",
        "status",
        "owner",
        "due_at",
        "overdue",
        "channel",
        "queue",
        "created_at",
    )
    list_select_related = ("account", "process", "owner")
    list_filter = ("status", OpenFilter, OverdueFilter, "process", "channel", "queue")
    search_fields = ("=number", "=account__number", "subject")
    date_hierarchy = "created_at"
    show_full_result_count = False
    inlines = [CaseEventInline]
    fields = (
        "number",
        "csr_page",
        "account_link",
        "process",
        "subject",
        "description",
        "status",
        "channel",
        "queue",
        "owner",
        "due_at",
        "overdue",
        "statement",
        "requested_due_date",
        "contact_email",
        "resolution",
        "dispute_link",
        "created_by",
        "api_biller",
        "created_at",
        "updated_at",
        "decided_at",
        "actioned_at",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        # The changelist applies list_select_related only to a queryset without select_related: name all.
        return super().get_queryset(request).select_related(*self.list_select_related, "dispute")

    @admin.display(description="Account", ordering="account__number")
    def account_link(self, obj: Case) -> str:
        return _account_link(obj.account)

    @admin.display(description="Overdue", boolean=True)
    def overdue(self, obj: Case) -> bool:
        return obj.is_open and obj.due_at < timezone.now()

    @admin.display(description="Work it")
    def csr_page(self, obj: Case) -> str:
        return format_html(
            '<a href="{}">Open case {} on the CSR pages</a> (status changes, comments, decisions)',
            case_page_url(obj.number),
            obj.number,
        )

    @admin.display(description="Dispute")
    def dispute_link(self, obj: Case) -> str:
        dispute = getattr(obj, "dispute", None)
        if dispute is None:
            return "—"
        return format_html(
            '<a href="{}">{} ({})</a>',
            reverse("admin:disputes_dispute_change", args=[dispute.pk]),
            _money(dispute.amount, dispute.currency),
            dispute.get_status_display(),
        )


# --- Disputes (read-only; resolved by supervisors on the CSR pages) -----------------------------------------


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = (
        "case_link",
        "created_at",
        "account_link",
        "statement",
        "line_label",
        "amount_display",
        "status",
        "approved_display",
        "resolved_by",
    )
    list_select_related = ("case", "account", "statement", "resolved_by")
    list_filter = ("status", "currency")
    search_fields = ("=case__number", "=account__number", "=statement__number")
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = (
        "case_link",
        "account_link",
        "statement",
        "statement_line",
        "line_label",
        "line_amount_display",
        "amount_display",
        "reason",
        "status",
        "approved_display",
        "adjustment",
        "raised_by",
        "resolved_by",
        "resolution_note",
        "resolved_at",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="Case", ordering="case__number")
    def case_link(self, obj: Dispute) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:disputes_case_change", args=[obj.case_id]), obj.case.number
        )

    @admin.display(description="Account", ordering="account__number")
    def account_link(self, obj: Dispute) -> str:
        return _account_link(obj.account)

    @admin.display(description="Disputed", ordering="amount")
    def amount_display(self, obj: Dispute) -> str:
        return _money(obj.amount, obj.currency)

    @admin.display(description="Line amount")
    def line_amount_display(self, obj: Dispute) -> str:
        return _money(obj.line_amount, obj.currency)

    @admin.display(description="Approved")
    def approved_display(self, obj: Dispute) -> str:
        return _money(obj.approved_amount, obj.currency)
