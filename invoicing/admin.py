"""Admin for bill messages: what bills print, for everyone or for one account type or AR classification,
over a span of dates. A bill copies the messages valid on its date when it is created (StatementMessage), so a
later change here never alters a bill already made. Changes are audited."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.template.defaultfilters import truncatechars

from billing_mgmt.audit import audit_record, snapshot

from .models import BillMessage


class BillMessageForm(forms.ModelForm):
    class Meta:
        model = BillMessage
        fields = (
            "code",
            "text",
            "priority",
            "account_type",
            "ar_classification",
            "valid_from",
            "valid_to",
            "active",
        )

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("valid_from"), cleaned.get("valid_to")
        if start and end and end < start:
            self.add_error(
                "valid_to", f"The end ({end.isoformat()}) is before the start ({start.isoformat()})."
            )
        return cleaned


def _state(message: BillMessage) -> dict[str, Any]:
    return snapshot(message)


@admin.register(BillMessage)
class BillMessageAdmin(admin.ModelAdmin):
    form = BillMessageForm
    list_display = (
        "code",
        "excerpt",
        "priority",
        "account_type",
        "ar_classification",
        "valid_from",
        "valid_to",
        "active",
    )
    list_filter = ("active", "account_type", "ar_classification")
    search_fields = ("code", "text")
    date_hierarchy = "valid_from"

    @admin.display(description="Text")
    def excerpt(self, obj: BillMessage) -> str:
        return truncatechars(obj.text, 80)

    def save_model(self, request, obj, form, change):
        before = _state(BillMessage.objects.select_for_update().get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        after = _state(obj)
        if before != after:
            action = "bill_message.update" if change else "bill_message.create"
            audit_record(actor=request.user, action=action, obj=obj, before=before, after=after)

    def delete_model(self, request, obj):
        audit_record(actor=request.user, action="bill_message.delete", obj=obj, before=_state(obj))
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            audit_record(actor=request.user, action="bill_message.delete", obj=obj, before=_state(obj))
        super().delete_queryset(request, queryset)
