"""Invoicing API views: list and read invoices, download their frozen documents, issue one bill's invoice.

Staff only (invoicing.api.permissions): biller API clients, customers and users without a role get 403.
The documents are the stored files written once when the invoice was rendered (never re-rendered here).
"""

from __future__ import annotations

import logging

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from billing_mgmt.api.errors import error_body
from billing_mgmt.api.schema import ErrorSerializer, error_responses
from billing_mgmt.errors import ApplicationError, NotFound
from statements.models import Statement

from ..models import Invoice
from ..selectors import invoice_by_number, invoice_of_statement, invoices_listed
from ..services import invoices_render
from ..services.issuing import invoiceable
from .filters import InvoiceFilter
from .permissions import CanIssueInvoices, CanViewInvoices
from .serializers import InvoiceDetailSerializer, InvoiceSerializer, IssueAnswerSerializer

logger = logging.getLogger(__name__)

INVOICES_TAG = "invoices"

_NUMBER_PARAMETER = OpenApiParameter(
    "number", OpenApiTypes.STR, OpenApiParameter.PATH, description="The invoice number, e.g. INV-00000001."
)


class NotRendered(ApplicationError):
    status_code = 404
    code = "not_rendered"


class NotInvoicedHere(ApplicationError):
    status_code = 404
    code = "not_invoiced_here"


class RenderFailed(ApplicationError):
    """The invoice is issued but its documents could not be rendered (the renderer or the storage failed).
    503 with Retry-After, not 500: the request's lasting effect (the issued invoice) is done, the server
    knows what failed and the client's next step is to call again later (the daily catch-up retries too);
    a 500 is left for what nobody foresaw."""

    status_code = 503
    code = "render_failed"
    retry_after_seconds = 60


@extend_schema_view(
    get=extend_schema(
        summary="List invoices",
        description="Newest first (invoice date, then issue order). Filter by account number, statement "
        "number, series, kind, status and invoice date range.",
        responses={200: InvoiceSerializer(many=True), **error_responses(400, 401, 403)},
    )
)
@extend_schema(tags=[INVOICES_TAG])
class InvoiceListView(generics.ListAPIView):
    serializer_class = InvoiceSerializer
    permission_classes = [IsAuthenticated, CanViewInvoices]
    filterset_class = InvoiceFilter
    ordering_fields = ["invoice_date", "issued_at", "number", "total_due"]
    ordering = ["-invoice_date", "-id"]

    def get_queryset(self):
        return invoices_listed()


@extend_schema(tags=[INVOICES_TAG], parameters=[_NUMBER_PARAMETER])
class InvoiceDetailView(APIView):
    permission_classes = [IsAuthenticated, CanViewInvoices]

    @extend_schema(
        operation_id="invoice_retrieve",
        summary="Get an invoice with its deliveries",
        responses={200: InvoiceDetailSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request, number: str):
        invoice = invoice_by_number(number=number, with_deliveries=True)
        return Response(InvoiceDetailSerializer(invoice, context={"request": request}).data)


class _AnyAccept(BaseContentNegotiation):
    """A download answers its file whatever the Accept header says (a browser or curl sending
    ``Accept: application/pdf`` must not get a 406), and errors in JSON."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class _DocumentView(APIView):
    permission_classes = [IsAuthenticated, CanViewInvoices]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _AnyAccept
    extension = ""
    content_type = ""

    def get(self, request, number: str):
        invoice = invoice_by_number(number=number)
        stored = getattr(invoice, self.extension)
        if invoice.status != Invoice.Status.RENDERED or not stored:
            raise NotRendered(
                f"Invoice {invoice.number} has no documents yet (status {invoice.status}); they are "
                "rendered by the billing run or the daily catch-up.",
            )
        response = FileResponse(
            stored.open("rb"),
            content_type=self.content_type,
            as_attachment=True,
            filename=f"{invoice.number}.{self.extension}",
        )
        digest = getattr(invoice, f"{self.extension}_sha256")
        if digest:
            response["ETag"] = f'"{digest}"'
        response["Cache-Control"] = "private, max-age=0"
        return response


def _document_schema(extension: str, media_type: str, what: str):
    return extend_schema_view(
        get=extend_schema(
            operation_id=f"invoice_{extension}",
            summary=f"Download the invoice's {what}",
            description=(
                f"The stored {what} written when the invoice was rendered (never re-rendered), as an "
                f"attachment named `<number>.{extension}`; `ETag` is its SHA-256. `404 not_rendered` until "
                "it is rendered."
            ),
            tags=[INVOICES_TAG],
            parameters=[_NUMBER_PARAMETER],
            responses={
                (200, media_type): OpenApiResponse(OpenApiTypes.BINARY, description=what),
                **{
                    (code, "application/json"): response
                    for code, response in error_responses(401, 403, 404).items()
                },
            },
        )
    )


@_document_schema("pdf", "application/pdf", "PDF")
class InvoicePdfView(_DocumentView):
    extension, content_type = "pdf", "application/pdf"


@_document_schema("html", "text/html", "HTML page")
class InvoiceHtmlView(_DocumentView):
    extension, content_type = "html", "text/html; charset=utf-8"


@_document_schema("xml", "application/xml", "XML (docs/invoice-xml.md)")
class InvoiceXmlView(_DocumentView):
    extension, content_type = "xml", "application/xml"


_STATEMENT_ID_PARAMETER = OpenApiParameter(
    "statement_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The bill's (statement's) id."
)


@extend_schema(tags=[INVOICES_TAG], parameters=[_STATEMENT_ID_PARAMETER])
class StatementInvoiceView(APIView):
    permission_classes = [IsAuthenticated, CanIssueInvoices]

    @extend_schema(
        operation_id="statement_invoice_create",
        summary="Issue and render one bill's invoice now",
        description=(
            "Issues the bill's invoice (its number from the gapless series) and renders its PDF, HTML and "
            "XML now; its e-mails go out as usual. Idempotent by nature: a bill has one invoice, so a "
            "second call answers the same invoice with `200` (and renders it if an earlier rendering "
            "failed); no Idempotency-Key is needed. `404 not_found`: no such bill; `404 "
            "not_invoiced_here`: an external biller's statement (that biller invoices it); `503 "
            "render_failed` (with `Retry-After`): the invoice is issued (its number kept) but its documents "
            "could not be rendered: call again after that many seconds, or the daily catch-up retries."
        ),
        request=None,
        responses={
            201: IssueAnswerSerializer,
            200: OpenApiResponse(IssueAnswerSerializer, description="The bill already had its invoice."),
            **error_responses(400, 401, 403, 404),
            503: OpenApiResponse(
                ErrorSerializer,
                description="`render_failed`: issued, not rendered; retry after `Retry-After` seconds.",
            ),
        },
    )
    def post(self, request, statement_id: str):
        if not statement_id.isdigit() or not 0 < int(statement_id) < 2**63:
            raise ApplicationError(
                "The statement id is a positive whole number.",
                fields={"statement_id": [f"{statement_id[:40]!r} is not a statement id."]},
            )
        statement = Statement.objects.select_related("biller").filter(pk=int(statement_id)).first()
        if statement is None:
            raise NotFound(f"No statement {statement_id}.")
        if not invoiceable(Statement.objects.filter(pk=statement.pk)).exists():
            raise NotInvoicedHere(
                f"Statement {statement.number} is biller {statement.biller.code}'s: that biller invoices "
                "it; this product invoices the bills of its own engine only."
            )
        had_invoice = Invoice.objects.filter(statement_id=statement.pk).exists()
        result = invoices_render(statement_ids=[statement.pk], actor=request.user)
        invoice = invoice_of_statement(statement_id=statement.pk)
        if statement.pk in result.failed:
            failed = RenderFailed(
                f"Invoice {invoice.number} is issued but its documents could not be rendered "
                f"({result.failed[statement.pk]}). Call again, or the daily catch-up retries it."
            )
            return Response(
                error_body(failed.code, failed.message, failed.fields),
                status=failed.status_code,
                headers={"Retry-After": str(failed.retry_after_seconds)},
            )
        body = {
            "outcome": "existing" if had_invoice else "issued",
            "invoice": InvoiceDetailSerializer(invoice, context={"request": request}).data,
        }
        return Response(body, status=status.HTTP_200_OK if had_invoice else status.HTTP_201_CREATED)
