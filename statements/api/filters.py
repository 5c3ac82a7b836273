"""Query filters of GET /api/v1/statements/."""

from __future__ import annotations

import django_filters
from django.db.models import Exists, OuterRef, QuerySet

from accounts.api.permissions import caller_biller
from accounts.models import BillerReference
from billing_mgmt.api.filters import UtcIsoDateTimeFilter
from statements.models import Statement


class StatementFilter(django_filters.FilterSet):
    account = django_filters.CharFilter(
        method="_by_reference", label="The account's reference at the statement's biller"
    )
    account_number = django_filters.CharFilter(field_name="account__number", label="Account number")
    biller = django_filters.CharFilter(field_name="biller__code", label="Biller code (staff only)")
    statement_date_from = django_filters.DateFilter(
        field_name="statement_date", lookup_expr="gte", label="Statement date on or after (YYYY-MM-DD)"
    )
    statement_date_to = django_filters.DateFilter(
        field_name="statement_date", lookup_expr="lte", label="Statement date on or before (YYYY-MM-DD)"
    )
    status = django_filters.ChoiceFilter(field_name="status", choices=Statement.Status.choices)
    received_since = UtcIsoDateTimeFilter(
        field_name="received_at", lookup_expr="gte", label="Received (this version) at or after (ISO 8601)"
    )

    class Meta:
        model = Statement
        fields: list[str] = []

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, request=request, **kwargs)
        if request is not None and caller_biller(request) is not None:
            # A biller sees only its own statements: the parameter would say nothing, so it does not exist.
            self.filters.pop("biller")

    def _by_reference(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # The reference is the biller's own name for the account, so it is matched at the statement's biller.
        references = BillerReference.objects.filter(
            account_id=OuterRef("account_id"), biller_id=OuterRef("biller_id"), external_ref=value
        )
        return queryset.filter(Exists(references))
