"""Admin for billing admins: billers and their API keys, accounts with profile, contacts and references,
account groups (billing runs may be filtered to a group's accounts) and billing suspensions (read-only
history; resumed through the service).

Writes that mean something go through the services (API keys, resuming billing) or reproduce their rules and
write the same audit records (accounts: number from the numbering service, hierarchy checks, audit in the
admin's transaction; Django admin wraps each add/change in one transaction).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import Count, F, FilteredRelation, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from billing_mgmt.admin import ReadOnlyAdmin, ReadOnlyMixin
from billing_mgmt.audit import audit_record, snapshot
from billing_mgmt.errors import ApplicationError
from billing_mgmt.money import CurrencyError, quantize
from billing_mgmt.numbering import next_number

from .models import (
    Account,
    AccountGroup,
    Biller,
    BillerApiKey,
    BillerReference,
    BillingProfile,
    BillingSuspension,
    Contact,
)
from .services import (
    ACCOUNT_SERIES,
    biller_api_key_create,
    biller_api_key_revoke,
    billing_resume,
    check_hierarchy,
    has_money,
)

# Timestamps change on every save; leaving them out makes "nothing changed" saves write no audit record.
_VOLATILE = {"created_at", "updated_at"}


def _state(obj, exclude: set[str] = _VOLATILE) -> dict[str, Any]:
    return {k: v for k, v in snapshot(obj).items() if k not in exclude}


# --- Billers and API keys -------------------------------------------------------------------------------


class BillerApiKeyInline(ReadOnlyMixin, admin.TabularInline):
    """Keys are listed read-only: issued with the "Issue API key" button and revoked, never edited."""

    model = BillerApiKey
    fields = ("prefix", "name", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-created_at",)


class IssueApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What will use this key, e.g. 'nightly statement push'.")


def _https_urls(db_field, **kwargs):
    # Billers are reached over TLS: a URL typed without a scheme means https.
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


class BillerAdminForm(forms.ModelForm):
    class Meta:
        model = Biller
        formfield_callback = _https_urls
        fields = (
            "code",
            "name",
            "kind",
            "active",
            "contact_email",
            "pull_enabled",
            "pull_kind",
            "pull_url",
            "drop_folder",
            "pull_interval_minutes",
            "pull_auth_header",
            "export_mode",
            "export_url",
            "export_secret",
        )
        widgets = {"export_secret": forms.PasswordInput(render_value=True)}

    def clean(self):
        cleaned = super().clean()
        # The same rule as the biller_push_export_needs_url_and_secret constraint, on the missing field.
        if cleaned.get("export_mode") == Biller.ExportMode.PUSH:
            for name, what in (("export_url", "an export URL"), ("export_secret", "a signing secret")):
                if not cleaned.get(name):
                    self.add_error(name, f"Pushing exports needs {what}.")
        # The same rule as the biller_pull_needs_source constraint, said on the field that is missing.
        if cleaned.get("pull_enabled"):
            if cleaned.get("pull_kind") == Biller.PullKind.FILE_DROP:
                if not cleaned.get("drop_folder"):
                    self.add_error("drop_folder", "A drop folder is required for a file-drop pull.")
            elif not cleaned.get("pull_url"):
                self.add_error("pull_url", "A pull URL is required when pull is enabled.")
        return cleaned


def _biller_state(biller: Biller) -> dict[str, Any]:
    state = _state(biller)
    # The pull credential is a secret: the audit trail records that it changed, not its value.
    state["pull_auth_header"] = "***" if biller.pull_auth_header else ""
    state["export_secret"] = "***" if biller.export_secret else ""
    return state


@admin.register(Biller)
class BillerAdmin(admin.ModelAdmin):
    form = BillerAdminForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("code", "name", "kind", "active", "pull_enabled", "reference_count")
    list_filter = ("kind", "active", "pull_enabled")
    search_fields = ("code", "name")
    readonly_fields = ("created_at", "updated_at")
    inlines = [BillerApiKeyInline]
    actions = ["issue_api_key"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(reference_count=Count("references", distinct=True))

    @admin.display(description="References", ordering="reference_count")
    def reference_count(self, obj: Biller) -> int:
        return obj.reference_count

    def has_delete_permission(self, request, obj=None):
        # Ledger rows and references point at billers; deactivate a biller instead.
        return False

    def save_model(self, request, obj, form, change):
        before = _biller_state(Biller.objects.select_for_update().get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        after = _biller_state(obj)
        if before != after:
            audit_record(
                actor=request.user,
                action="biller.update" if change else "biller.create",
                obj=obj,
                before=before,
                after=after,
            )

    # Issuing keys: a button on the biller page (see the change_form template) and a list action.

    def has_issue_key_permission(self, request: HttpRequest, obj: Biller | None = None) -> bool:
        return request.user.has_perm("accounts.add_billerapikey")

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/issue-api-key/",
                self.admin_site.admin_view(self.issue_api_key_view),
                name="{}_{}_issue_api_key".format(*info),
            ),
            *super().get_urls(),
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["can_issue_api_key"] = obj is not None and self.has_issue_key_permission(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def issue_api_key_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        biller = self.get_object(request, unquote(object_id))
        if biller is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_issue_key_permission(request, biller):
            raise PermissionDenied
        form = IssueApiKeyForm(request.POST or None)
        issued = None
        if request.method == "POST" and form.is_valid():
            issued, raw_key = biller_api_key_create(
                biller=biller, name=form.cleaned_data["name"], actor=request.user
            )
            # Rendered in this response, not after a redirect: the raw key never sits in a message cookie
            # or the session, and it is not stored anywhere (only its hash is).
            self.message_user(
                request,
                format_html(
                    "API key issued for {}. Copy it now, it will not be shown again: <code>{}</code>",
                    biller.name,
                    raw_key,
                ),
                messages.WARNING,
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Issue an API key for {biller.name}",
            "opts": self.opts,
            "original": biller,
            "form": form,
            "issued": issued,
            "change_url": reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[biller.pk]
            ),
        }
        return TemplateResponse(request, "admin/accounts/biller/issue_api_key.html", context)

    @admin.action(description="Issue an API key for the selected biller", permissions=["issue_key"])
    def issue_api_key(self, request, queryset):
        billers = list(queryset[:2])
        if len(billers) != 1:
            self.message_user(request, "Select exactly one biller to issue a key for.", messages.ERROR)
            return None
        return HttpResponseRedirect(
            reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_issue_api_key", args=[billers[0].pk])
        )


@admin.register(BillerApiKey)
class BillerApiKeyAdmin(ReadOnlyAdmin):
    """Keys are issued from the biller page and revoked here; they are never edited or deleted."""

    list_display = ("prefix", "name", "biller", "created_at", "last_used_at", "revoked_at", "active")
    list_filter = ("biller", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("=prefix", "name", "biller__code", "biller__name")
    list_select_related = ("biller",)
    fields = ("biller", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke_keys"]

    @admin.display(boolean=True, description="Active")
    def active(self, obj: BillerApiKey) -> bool:
        return obj.is_active

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("accounts.change_billerapikey")

    @admin.action(description="Revoke the selected API keys", permissions=["revoke"])
    def revoke_keys(self, request, queryset):
        revoked = 0
        with transaction.atomic():
            for key in queryset.select_related("biller").select_for_update(of=("self",)):
                if key.revoked_at is None:
                    biller_api_key_revoke(key=key, actor=request.user)
                    revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)


# --- Accounts -------------------------------------------------------------------------------------------


class AccountAdminForm(forms.ModelForm):
    class Meta:
        model = Account
        fields = ("name", "type", "status", "parent", "is_paying")

    def clean(self):
        cleaned = super().clean()
        if "parent" in cleaned and "is_paying" in cleaned:
            probe = Account(pk=self.instance.pk, is_paying=cleaned["is_paying"])
            try:
                check_hierarchy(probe, cleaned["parent"])
            except ApplicationError as exc:
                for field, errors in exc.fields.items():
                    for error in errors:
                        self.add_error(field if field in self.fields else None, f"{exc.message} {error}")
        return cleaned


class BillingProfileInline(admin.StackedInline):
    model = BillingProfile
    can_delete = False
    max_num = 1
    extra = 1
    fieldsets = (
        (None, {"fields": ("currency", "language", "locale", "ar_classification")}),
        (
            "Billing",
            {
                "fields": (
                    "bill_cycle_day",
                    "billing_frequency",
                    "payment_terms_days",
                    "presentment_preference",
                    "payment_preference",
                    "autopay",
                )
            },
        ),
        (
            "Billing address",
            {"fields": ("address_line1", "address_line2", "city", "region", "postal_code", "country")},
        ),
    )

    def get_readonly_fields(self, request, obj=None):
        # Once money moved on the account its amounts are all in this currency (accounts.services.has_money).
        fields = tuple(super().get_readonly_fields(request, obj))
        return (*fields, "currency") if obj is not None and has_money(obj) else fields


class ContactFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        primaries = [
            form
            for form in self.forms
            if form.cleaned_data
            and not form.cleaned_data.get("DELETE")
            and form.cleaned_data.get("role") == Contact.Role.PRIMARY
        ]
        if len(primaries) > 1:
            raise forms.ValidationError("An account has at most one primary contact.")


class ContactInline(admin.TabularInline):
    model = Contact
    formset = ContactFormSet
    fields = ("name", "role", "email", "phone", "user")
    raw_id_fields = ("user",)
    extra = 0


class BillerReferenceInline(admin.TabularInline):
    model = BillerReference
    fields = ("biller", "external_ref", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("biller",)
    extra = 0


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    form = AccountAdminForm
    list_display = ("number", "name", "type", "status", "is_paying", "parent", "currency", "balance")
    list_select_related = ("parent", "billing_profile")
    list_filter = (
        "type",
        "status",
        "is_paying",
        ("billing_profile__currency", admin.AllValuesFieldListFilter),
        "billing_profile__ar_classification",
    )
    search_fields = (
        "number",
        "name",
        "=contacts__email",
        "contacts__phone",
        "=biller_references__external_ref",
    )
    autocomplete_fields = ("parent",)
    fields = ("number", "name", "type", "status", "parent", "is_paying", "created_at", "updated_at")
    readonly_fields = ("number", "created_at", "updated_at")
    inlines = [BillingProfileInline, ContactInline, BillerReferenceInline]

    def get_queryset(self, request):
        # The receivable balance comes in the same query (a LEFT JOIN on the cached balance row), so the
        # list is one query whatever its length. "balances" is the statements app's reverse relation; it is
        # reached by name so that accounts does not import the app above it.
        return (
            super()
            .get_queryset(request)
            .annotate(
                receivable=FilteredRelation("balances", condition=Q(balances__balance_type="receivable")),
                balance_amount=F("receivable__amount"),
            )
        )

    @admin.display(description="Currency", ordering="billing_profile__currency")
    def currency(self, obj: Account) -> str:
        profile = getattr(obj, "billing_profile", None)
        return profile.currency if profile else "-"

    @admin.display(description="Balance", ordering="balance_amount")
    def balance(self, obj: Account) -> str:
        amount = getattr(obj, "balance_amount", None)
        if amount is None:
            return "-"
        profile = getattr(obj, "billing_profile", None)
        try:
            return str(quantize(amount, profile.currency)) if profile else str(amount)
        except CurrencyError:
            return str(amount)

    def has_delete_permission(self, request, obj=None):
        # The ledger and the audit trail point at accounts: close an account (status) instead.
        return False

    def _full_state(self, account: Account) -> dict[str, Any]:
        profile = BillingProfile.objects.filter(account=account).first()
        return {
            **_state(account),
            "billing_profile": _state(profile) if profile else None,
            "contacts": [_state(c) for c in Contact.objects.filter(account=account).order_by("pk")],
            "biller_references": [
                _state(r) for r in BillerReference.objects.filter(account=account).order_by("pk")
            ],
        }

    def save_model(self, request, obj, form, change):
        if change:
            # Lock the row as accounts.services.account_update does, and read the state before the save.
            current = Account.objects.select_for_update().get(pk=obj.pk)
            form._audit_before = self._full_state(current)
        else:
            obj.number = next_number("account", ACCOUNT_SERIES)
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        account = form.instance
        # Every account has a billing profile (defaults when the admin left the inline empty).
        BillingProfile.objects.get_or_create(account=account)
        after = self._full_state(account)
        if not change:
            audit_record(
                actor=request.user, action="account.create", obj=account, after=after, account_id=account.pk
            )
            return
        before = getattr(form, "_audit_before", None)
        if before != after:
            audit_record(
                actor=request.user,
                action="account.update",
                obj=account,
                before=before,
                after=after,
                account_id=account.pk,
            )


# --- Account groups ---------------------------------------------------------------------------------------


def _group_state(group: AccountGroup) -> dict[str, Any]:
    return {
        **_state(group, _VOLATILE),
        "accounts": sorted(group.accounts.values_list("pk", flat=True)),
    }


@admin.register(AccountGroup)
class AccountGroupAdmin(admin.ModelAdmin):
    """Named sets of accounts (a billing run's *groups* filter bills the accounts of the groups chosen).
    Every change, members included, is in the audit trail (``account_group.create`` / ``.update``)."""

    list_display = ("code", "name", "member_count", "created_at")
    ordering = ("name",)  # explicit: a GROUP BY (the member count) drops Meta.ordering
    search_fields = ("code", "name")
    fields = ("code", "name", "description", "accounts", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("accounts",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("accounts", distinct=True))

    @admin.display(description="Members", ordering="member_count")
    def member_count(self, obj: AccountGroup) -> int:
        return obj.member_count

    def save_model(self, request, obj, form, change):
        if change:
            form._audit_before = _group_state(AccountGroup.objects.select_for_update().get(pk=obj.pk))
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        before = getattr(form, "_audit_before", None)
        after = _group_state(form.instance)
        if before != after:
            audit_record(
                actor=request.user,
                action="account_group.update" if change else "account_group.create",
                obj=form.instance,
                before=before,
                after=after,
            )

    def delete_model(self, request, obj):
        audit_record(actor=request.user, action="account_group.delete", obj=obj, before=_group_state(obj))
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for group in queryset:
            audit_record(
                actor=request.user, action="account_group.delete", obj=group, before=_group_state(group)
            )
        super().delete_queryset(request, queryset)


# --- Billing suspensions ----------------------------------------------------------------------------------


class SuspensionStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("open", "Open (billing suspended)"), ("ended", "Ended (billing resumed)"))

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(ended_at__isnull=True)
        if self.value() == "ended":
            return queryset.filter(ended_at__isnull=False)
        return queryset


@admin.register(BillingSuspension)
class BillingSuspensionAdmin(ReadOnlyAdmin):
    """Billing runs skip a suspended account (exception ``billing_suspended``) and bill now refuses it. A
    suspension starts when a supervisor approves a "suspend billing" case; it is history here (read-only),
    and the one change is **Resume billing**, through accounts.services.billing_resume (audited)."""

    list_display = (
        "account_link",
        "is_open_display",
        "reason",
        "reference",
        "started_at",
        "started_by",
        "ended_at",
        "ended_by",
    )
    list_select_related = ("account", "started_by", "ended_by")
    list_filter = (SuspensionStateFilter, "started_at")
    search_fields = ("=account__number", "=reference", "account__name")
    date_hierarchy = "started_at"
    show_full_result_count = False
    fields = (
        "account_link",
        "is_open_display",
        "reason",
        "reference",
        "started_at",
        "started_by",
        "ended_at",
        "ended_by",
        "end_note",
    )
    readonly_fields = fields
    actions = ["resume_billing"]

    @admin.display(description="Account", ordering="account__number")
    def account_link(self, obj: BillingSuspension) -> str:
        return format_html(
            '<a href="{}">{} {}</a>',
            reverse("account-detail", args=[obj.account.number]),
            obj.account.number,
            obj.account.name,
        )

    @admin.display(description="Suspended now", boolean=True)
    def is_open_display(self, obj: BillingSuspension) -> bool:
        return obj.is_open

    def has_resume_permission(self, request) -> bool:
        return request.user.has_perm("accounts.change_billingsuspension")

    @admin.action(description="Resume billing of the selected accounts", permissions=["resume"])
    def resume_billing(self, request, queryset) -> None:
        resumed = 0
        for suspension in queryset.select_related("account"):
            if not suspension.is_open:
                self.message_user(
                    request,
                    f"Account {suspension.account.number}: this suspension already ended.",
                    messages.WARNING,
                )
                continue
            try:
                billing_resume(
                    account=suspension.account, note="Resumed in Django admin.", actor=request.user
                )
            except ApplicationError as exc:
                number = suspension.account.number
                self.message_user(request, f"Account {number}: {exc.message}", messages.WARNING)
                continue
            resumed += 1
        if resumed:
            self.message_user(
                request,
                f"Billing resumed for {resumed} account(s); the next billing run bills them.",
                messages.SUCCESS,
            )
