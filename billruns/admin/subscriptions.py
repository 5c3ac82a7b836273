"""Admin for subscriptions: the add and change forms check through billruns.services.subscriptions (currency
of the bill unit, overlapping service identifier, the plan's billing term scheme, ...) and save through them,
so the locks, rules and audit records are those of the API.

Add: account, plan, service identifier, dates; billing frequency and billing term scheme may be left empty
(the account's billing frequency and the plan's scheme). Change: the dates, processing sequence, tax
jurisdiction and status (active, suspended; cancelled needs an end date and cancels the subscription). A
subscription is never deleted here: cancel it (its segments and usage records point at it).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin

from billing_mgmt.errors import ApplicationError

from ..models import Subscription
from ..services.subscriptions import (
    UPDATABLE,
    check_new_subscription,
    check_subscription_change,
    subscription_cancel,
    subscription_create,
    subscription_update,
)


def add_application_errors(form: forms.BaseForm, exc: ApplicationError) -> None:
    """A service's field errors on the form's fields (the others at the top of the form)."""
    if not exc.fields:
        form.add_error(None, exc.message)
        return
    for field, messages in exc.fields.items():
        for message in messages:
            form.add_error(field if field in form.fields else None, message)


def _copy_state(source: Subscription, target: Subscription) -> None:
    """Make the admin's object the one the service saved (the admin logs and redirects with it)."""
    for field in Subscription._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
    target._state.adding = False
    target._state.db = source._state.db


class SubscriptionAddForm(forms.ModelForm):
    class Meta:
        model = Subscription
        fields = (
            "account",
            "price_plan",
            "service_identifier",
            "start_date",
            "end_date",
            "frequency",
            "billing_term_scheme",
            "processing_sequence",
            "tax_jurisdiction",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "frequency" in self.fields:
            self.fields["frequency"].required = False
            self.fields[
                "frequency"
            ].help_text = "Empty: the billing frequency of the account's billing profile."
        if "billing_term_scheme" in self.fields:
            self.fields["billing_term_scheme"].required = False
            self.fields["billing_term_scheme"].help_text = "Empty: the price plan's billing term scheme."

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            terms = check_new_subscription(
                account=cleaned["account"],
                price_plan=cleaned["price_plan"],
                service_identifier=cleaned["service_identifier"],
                start_date=cleaned["start_date"],
                end_date=cleaned.get("end_date"),
                frequency=cleaned.get("frequency"),
                billing_term_scheme=cleaned.get("billing_term_scheme"),
                processing_sequence=cleaned.get("processing_sequence", 100),
            )
        except ApplicationError as exc:
            add_application_errors(self, exc)
        else:
            cleaned["frequency"] = terms.frequency
            cleaned["billing_term_scheme"] = terms.billing_term_scheme
        return cleaned


class SubscriptionChangeForm(forms.ModelForm):
    class Meta:
        model = Subscription
        fields = ("start_date", "end_date", "status", "processing_sequence", "tax_jurisdiction")

    def clean(self):
        cleaned = super().clean()
        self.changes: dict = {}
        self.cancel_on = None
        if self.errors:
            return cleaned
        current = self.instance  # not changed yet: the form's values are applied after clean()
        data = {name: cleaned[name] for name in self.changed_data if name in UPDATABLE}
        cancelling = (
            data.get("status") == Subscription.Status.CANCELLED
            and current.status != Subscription.Status.CANCELLED
        )
        if cancelling:
            data.pop("status")
            end = data.pop("end_date", current.end_date)
            if end is None:
                self.add_error("end_date", "Give the last day of service to cancel the subscription.")
                return cleaned
            self.cancel_on = end
        try:
            check_subscription_change(
                subscription=current, data={**data, "end_date": self.cancel_on} if cancelling else data
            )
        except ApplicationError as exc:
            add_application_errors(self, exc)
        self.changes = data
        return cleaned


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = (
        "service_identifier",
        "account",
        "price_plan",
        "start_date",
        "end_date",
        "status",
        "billed_through",
        "frequency",
    )
    list_select_related = ("account", "price_plan", "frequency")
    list_filter = ("status", "billing_term_scheme", "frequency", "price_plan")
    search_fields = ("service_identifier", "=account__number")
    date_hierarchy = "start_date"
    autocomplete_fields = ("account", "price_plan", "tax_jurisdiction")
    show_full_result_count = False

    _READ_ONLY_ON_CHANGE = (
        "account",
        "price_plan",
        "service_identifier",
        "frequency",
        "billing_term_scheme",
        "billed_through",
        "created_at",
        "updated_at",
    )

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = SubscriptionChangeForm if obj is not None else SubscriptionAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return SubscriptionAddForm.Meta.fields
        return (
            "account",
            "price_plan",
            "service_identifier",
            "frequency",
            "billing_term_scheme",
            "start_date",
            "end_date",
            "status",
            "processing_sequence",
            "tax_jurisdiction",
            "billed_through",
            "created_at",
            "updated_at",
        )

    def get_readonly_fields(self, request, obj=None):
        return self._READ_ONLY_ON_CHANGE if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        # Segments, usage records and the audit trail point at subscriptions: cancel instead.
        return False

    def save_model(self, request, obj, form, change):
        if not change:
            data = form.cleaned_data
            saved = subscription_create(
                account=data["account"],
                price_plan=data["price_plan"],
                service_identifier=data["service_identifier"],
                start_date=data["start_date"],
                end_date=data.get("end_date"),
                frequency=data.get("frequency"),
                billing_term_scheme=data.get("billing_term_scheme"),
                processing_sequence=data.get("processing_sequence", 100),
                tax_jurisdiction=data.get("tax_jurisdiction"),
                actor=request.user,
            )
        else:
            saved = Subscription.objects.get(pk=obj.pk)
            if form.changes:
                saved = subscription_update(subscription=saved, data=form.changes, actor=request.user)
            if form.cancel_on is not None:
                saved = subscription_cancel(subscription=saved, end_date=form.cancel_on, actor=request.user)
        _copy_state(saved, obj)
