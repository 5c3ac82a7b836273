"""What the invoicing API answers: invoices with links to their frozen documents, and their deliveries."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import Invoice, InvoiceDelivery
from .permissions import VIEW_DELIVERY

DOCUMENT_FORMATS = ("pdf", "html", "xml")
ISSUE_OUTCOMES = ["issued", "existing"]


class DocumentLinksSerializer(serializers.Serializer):
    pdf = serializers.URLField(allow_null=True, help_text="Null until the invoice is rendered.")
    html = serializers.URLField(allow_null=True)
    xml = serializers.URLField(allow_null=True)


class InvoiceSerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account.number", help_text="The (paying) account's number.")
    statement_id = serializers.IntegerField(help_text="The bill's id.")
    statement_number = serializers.CharField(source="statement.number")
    series = serializers.CharField(source="series.code", help_text="The issuing legal entity's series.")
    corrects = serializers.CharField(
        source="corrects.number",
        allow_null=True,
        default=None,
        help_text="A credit note: the number of the invoice it corrects.",
    )
    documents = serializers.SerializerMethodField()

    class Meta:
        model = Invoice
        fields = [
            "number",
            "kind",
            "status",
            "format",
            "invoice_date",
            "account",
            "statement_id",
            "statement_number",
            "series",
            "corrects",
            "currency",
            "total_due",
            "language",
            "locale",
            "page_count",
            "issued_at",
            "rendered_at",
            "documents",
        ]
        read_only_fields = fields

    @extend_schema_field(DocumentLinksSerializer)
    def get_documents(self, invoice: Invoice) -> dict[str, str | None]:
        request = self.context.get("request")
        links: dict[str, str | None] = {}
        for extension in DOCUMENT_FORMATS:
            if invoice.status != Invoice.Status.RENDERED or not getattr(invoice, extension):
                links[extension] = None
                continue
            url = reverse(f"api-invoice-{extension}", kwargs={"number": invoice.number})
            links[extension] = request.build_absolute_uri(url) if request is not None else url
        return links


class InvoiceDeliverySerializer(serializers.ModelSerializer):
    print_batch = serializers.CharField(source="print_batch.reference", allow_null=True, default=None)

    class Meta:
        model = InvoiceDelivery
        fields = [
            "method",
            "recipient",
            "status",
            "attempts",
            "sent_at",
            "next_attempt_at",
            "last_error",
            "print_batch",
        ]
        read_only_fields = fields


class InvoiceDetailSerializer(InvoiceSerializer):
    deliveries = serializers.SerializerMethodField(
        help_text="Each bill routing and how it went; null for a caller without "
        "invoicing.view_invoicedelivery."
    )

    class Meta(InvoiceSerializer.Meta):
        fields = [
            *InvoiceSerializer.Meta.fields,
            "issued_by",
            "render_attempts",
            "render_error",
            "pdf_sha256",
            "html_sha256",
            "xml_sha256",
            "deliveries",
        ]
        read_only_fields = fields

    @extend_schema_field(InvoiceDeliverySerializer(many=True, allow_null=True))
    def get_deliveries(self, invoice: Invoice) -> list[dict] | None:
        request = self.context.get("request")
        if request is not None and not request.user.has_perm(VIEW_DELIVERY):
            return None
        return InvoiceDeliverySerializer(invoice.deliveries.all(), many=True).data


class IssueAnswerSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(
        choices=ISSUE_OUTCOMES,
        help_text="issued: the invoice was made now (201); existing: the bill already had it (200).",
    )
    invoice = InvoiceDetailSerializer()
