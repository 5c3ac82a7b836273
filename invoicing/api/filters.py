"""Query filters of GET /api/v1/invoices/."""

from __future__ import annotations

import django_filters

from ..models import Invoice


class InvoiceFilter(django_filters.FilterSet):
    account = django_filters.CharFilter(field_name="account__number", label="Account number")
    statement = django_filters.CharFilter(field_name="statement__number", label="Statement (bill) number")
    series = django_filters.CharFilter(field_name="series__code", label="Invoice series code")
    kind = django_filters.ChoiceFilter(field_name="kind", choices=Invoice.Kind.choices)
    status = django_filters.ChoiceFilter(field_name="status", choices=Invoice.Status.choices)
    invoice_date_from = django_filters.DateFilter(
        field_name="invoice_date", lookup_expr="gte", label="Invoice date on or after (YYYY-MM-DD)"
    )
    invoice_date_to = django_filters.DateFilter(
        field_name="invoice_date", lookup_expr="lte", label="Invoice date on or before (YYYY-MM-DD)"
    )

    class Meta:
        model = Invoice
        fields: list[str] = []
