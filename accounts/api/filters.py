"""Query filters of GET /api/v1/accounts/."""

from __future__ import annotations

import django_filters
from django.db.models import Exists, OuterRef, QuerySet

from accounts.models import Account, BillerReference
from billing_mgmt.api.filters import UtcIsoDateTimeFilter

from .permissions import caller_biller


class AccountFilter(django_filters.FilterSet):
    number = django_filters.CharFilter(field_name="number", lookup_expr="iexact", label="Account number")
    name = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")
    type = django_filters.ChoiceFilter(field_name="type", choices=Account.Type.choices)
    status = django_filters.ChoiceFilter(field_name="status", choices=Account.Status.choices)
    parent = django_filters.CharFilter(field_name="parent__number", label="Parent account number")
    currency = django_filters.CharFilter(
        field_name="billing_profile__currency", lookup_expr="iexact", label="Billing currency (ISO 4217)"
    )
    updated_since = UtcIsoDateTimeFilter(
        field_name="updated_at", lookup_expr="gte", label="Changed at or after (ISO 8601 date-time)"
    )
    # Both match one reference row together, so they are applied in filter_queryset, not one by one.
    external_ref = django_filters.CharFilter(
        method="_deferred", label="Reference at a biller (for a biller client: its own reference)"
    )
    biller = django_filters.CharFilter(method="_deferred", label="Biller code (staff only)")

    class Meta:
        model = Account
        fields: list[str] = []

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, request=request, **kwargs)
        self.biller_caller = caller_biller(request) if request is not None else None
        if self.biller_caller is not None:
            # A biller sees only its own references; filtering by another biller would leak who else
            # bills an account, so the parameter does not exist for billers.
            self.filters.pop("biller")

    def _deferred(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        external_ref = self.form.cleaned_data.get("external_ref")
        biller_code = self.form.cleaned_data.get("biller")
        if not external_ref and not biller_code:
            return queryset
        references = BillerReference.objects.filter(account=OuterRef("pk"))
        if self.biller_caller is not None:
            references = references.filter(biller=self.biller_caller)
        elif biller_code:
            references = references.filter(biller__code=biller_code)
        if external_ref:
            references = references.filter(external_ref=external_ref)
        return queryset.filter(Exists(references))
