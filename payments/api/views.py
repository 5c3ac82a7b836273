"""Payments API views: payments (with their allocations) and adjustments of the caller's accounts, payments
received elsewhere, and reversals.

* ``GET /api/v1/payments/`` and ``/payments/{id}/``; ``POST /api/v1/payments/`` (a payment received
  elsewhere, ``channel="api"``) through payments.services.payment_post;
* ``POST /api/v1/payments/{id}/reverse/`` through payments.services.payment_reverse (staff only);
* ``GET /api/v1/adjustments/`` and ``/adjustments/{id}/``;
* ``GET /api/v1/refunds/`` and ``POST`` (staff with ``payments.add_refund``: pay back a credit balance)
  through payments.services.refund_post;
* ``GET /api/v1/write-offs/`` and ``POST`` (staff with ``payments.write_off_balance``: supervisors) through
  payments.services.write_off_post.

A biller API client sees and pays only the accounts it references (accounts.BillerReference): another
account's payment is absent from the list and a 404 on its own, as if it did not exist. Posting a payment,
a refund or a write-off requires an ``Idempotency-Key``: it becomes the entry's own idempotency key,
namespaced by the calling client, so a retry answers the first entry (200) and two clients' keys never meet.
"""

from __future__ import annotations

import hashlib
import re
from decimal import Decimal

import django_filters
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from accounts.api import schema as _schema  # noqa: F401  (registers the Api-Key scheme with drf-spectacular)
from accounts.api.permissions import caller_biller
from accounts.models import Account, Biller, BillerReference
from accounts.selectors import paying_account
from billing_mgmt.api.idempotency import HEADER as IDEMPOTENCY_HEADER
from billing_mgmt.api.idempotency import client_identity, idempotent
from billing_mgmt.api.schema import IDEMPOTENCY_KEY_PARAMETER, error_responses
from billing_mgmt.errors import ApplicationError, NotFound
from billing_mgmt.money import quantize
from statements.models import Statement

from ..models import Adjustment, Payment, PaymentAllocation, PaymentMethod, Refund, WriteOff
from ..selectors import receivable_balance
from ..services import payment_post, payment_reverse, refund_post, refuse_card_numbers, write_off_post
from .permissions import (
    AdjustmentsPermission,
    PaymentsPermission,
    RefundsPermission,
    ReversePermission,
    WriteOffsPermission,
)
from .serializers import (
    AdjustmentSerializer,
    PaymentCreateSerializer,
    PaymentReverseSerializer,
    PaymentSerializer,
    RefundCreateSerializer,
    RefundSerializer,
    WriteOffCreateSerializer,
    WriteOffSerializer,
    card_fields,
)

PAYMENTS_TAG = "payments"
ADJUSTMENTS_TAG = "adjustments"
REFUNDS_TAG = "refunds"
WRITE_OFFS_TAG = "write-offs"

_VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # as billing_mgmt.api.idempotency: printable ASCII
# Payment.idempotency_key holds 100 characters and its ledger row's key adds "payment:": keys that would not
# fit are stored as a digest (still unique per client and key).
_MAX_SERVICE_KEY = 90


def service_idempotency_key(user, key: str) -> str:
    """The payment's idempotency key for the client's ``Idempotency-Key``: namespaced by client."""
    client = client_identity(user)
    namespaced = f"api:{client}:{key}"
    if len(namespaced) <= _MAX_SERVICE_KEY:
        return namespaced
    return f"api:{client}:sha256:{hashlib.sha256(key.encode()).hexdigest()[:48]}"


# --- what the caller sees -----------------------------------------------------------------------------------


def _referenced_by(biller: Biller) -> Exists:
    return Exists(BillerReference.objects.filter(biller=biller, account_id=OuterRef("account_id")))


def payments_visible(*, biller: Biller | None) -> QuerySet[Payment]:
    """Payments with what the API shows of them in a fixed number of queries; a biller's are those of the
    accounts it references."""
    payments = Payment.objects.select_related("account", "method", "reversal").prefetch_related(
        Prefetch("allocations", queryset=PaymentAllocation.objects.select_related("statement").order_by("id"))
    )
    if biller is not None:
        payments = payments.filter(_referenced_by(biller))
    return payments


def adjustments_visible(*, biller: Biller | None) -> QuerySet[Adjustment]:
    """Adjustments for the API; a biller sees the posted ones of the accounts it references (one waiting for
    approval may still be rejected, a rejected one never touched the balance)."""
    adjustments = Adjustment.objects.select_related("account", "reason", "statement", "maker", "checker")
    if biller is not None:
        adjustments = adjustments.filter(_referenced_by(biller), status=Adjustment.Status.POSTED)
    return adjustments


def refunds_visible(*, biller: Biller | None) -> QuerySet[Refund]:
    """Refunds for the API; a biller's are those of the accounts it references."""
    refunds = Refund.objects.select_related("account", "method", "created_by")
    return refunds.filter(_referenced_by(biller)) if biller is not None else refunds


def write_offs_visible(*, biller: Biller | None) -> QuerySet[WriteOff]:
    """Write-offs for the API; a biller's are those of the accounts it references."""
    write_offs = WriteOff.objects.select_related("account", "created_by")
    return write_offs.filter(_referenced_by(biller)) if biller is not None else write_offs


def _refuse_card_data(body) -> None:
    refused = card_fields(body)
    if refused:
        raise ApplicationError(
            "Card numbers and security codes are never accepted: card details go to the payment processor.",
            code="card_data_refused",
            fields=refused,
        )


def _required_key(request, what: str) -> str:
    """The request's Idempotency-Key, which posting ``what`` requires (400 when missing or malformed)."""
    key = (request.headers.get(IDEMPOTENCY_HEADER) or "").strip()
    if not key:
        raise ApplicationError(
            f"Posting {what} needs an Idempotency-Key header: it makes a retry safe.",
            code="idempotency_key_required",
            fields={IDEMPOTENCY_HEADER: ["Required."]},
        )
    if not _VALID_KEY.match(key):
        raise ApplicationError(
            "The Idempotency-Key header is not valid.",
            fields={IDEMPOTENCY_HEADER: ["Use 1 to 255 printable ASCII characters without spaces."]},
        )
    return key


def _account_for(request, number: str) -> Account:
    accounts = Account.objects.select_related("billing_profile")
    biller = caller_biller(request)
    if biller is not None:
        accounts = accounts.filter(
            Exists(BillerReference.objects.filter(biller=biller, account_id=OuterRef("pk")))
        )
    account = accounts.filter(number=number).first()
    if account is None:
        raise NotFound(f"No account {number}.", fields={"account": ["No such account."]})
    return account


def _statement_for(request, unit: Account, number: str) -> Statement:
    """The bill unit's statement with that number (the latest version); a biller names its own statements or
    this product's (internal billers')."""
    statements = Statement.objects.filter(account=unit, number=number)
    biller = caller_biller(request)
    if biller is not None:
        statements = statements.filter(Q(biller=biller) | Q(biller__kind=Biller.Kind.INTERNAL))
    statement = statements.order_by("-statement_date", "-version", "-id").first()
    if statement is None:
        raise ApplicationError(
            f"Account {unit.number} has no statement {number}.",
            code="unknown_statement",
            fields={"statement": ["No such statement on this account."]},
        )
    return statement


# --- filters ------------------------------------------------------------------------------------------------


class PaymentFilter(django_filters.FilterSet):
    account = django_filters.CharFilter(field_name="account__number", label="Account number")
    status = django_filters.ChoiceFilter(field_name="status", choices=Payment.Status.choices)
    channel = django_filters.ChoiceFilter(field_name="channel", choices=Payment.Channel.choices)
    currency = django_filters.CharFilter(field_name="currency", label="ISO 4217 currency")
    payment_date_from = django_filters.DateFilter(
        field_name="payment_date", lookup_expr="gte", label="Received on or after (YYYY-MM-DD)"
    )
    payment_date_to = django_filters.DateFilter(
        field_name="payment_date", lookup_expr="lte", label="Received on or before (YYYY-MM-DD)"
    )

    class Meta:
        model = Payment
        fields: list[str] = []


class AdjustmentFilter(django_filters.FilterSet):
    account = django_filters.CharFilter(field_name="account__number", label="Account number")
    status = django_filters.ChoiceFilter(field_name="status", choices=Adjustment.Status.choices)
    direction = django_filters.ChoiceFilter(field_name="direction", choices=Adjustment.Direction.choices)
    currency = django_filters.CharFilter(field_name="currency", label="ISO 4217 currency")
    reason = django_filters.CharFilter(field_name="reason__code", label="Reason code")

    class Meta:
        model = Adjustment
        fields: list[str] = []


# --- payments -----------------------------------------------------------------------------------------------

REQUIRED_IDEMPOTENCY_KEY = OpenApiParameter(
    name=IDEMPOTENCY_HEADER,
    type=OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=True,
    description=(
        "Required: your key for this payment (1 to 255 printable ASCII characters). The same key again "
        "answers the first payment with 200 and posts nothing; with another account, amount or currency "
        "it is a 409 `idempotency_key_reused`. Keys are yours alone: another client's same key is another "
        "payment."
    ),
)

_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The payment's id.")
_ADJUSTMENT_ID = OpenApiParameter(
    "id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The adjustment's id."
)


def _payment_answer(payment: Payment, code: int) -> Response:
    shown = payments_visible(biller=None).get(pk=payment.pk)
    return Response(PaymentSerializer(shown).data, status=code)


@extend_schema_view(
    get=extend_schema(
        summary="List payments",
        description=(
            "Newest first (payment date, then id), each with its allocations to statements. Staff with "
            "`payments.view_payment` see every account's (filter `?account=<number>`); a biller client "
            "sees the payments of the accounts it references only."
        ),
        responses={200: PaymentSerializer(many=True), **error_responses(400, 401, 403)},
    ),
    post=extend_schema(
        summary="Post a payment received elsewhere",
        description=(
            "A payment received by another system (a bank, a shop, the biller), posted to the account's "
            "bill unit with `channel` `api` and allocated as a CSR's would be: to `statement` (a statement "
            "number) first when given, then to the open statements oldest due first; what is left is a "
            "credit. Biller clients for the accounts they reference (another account is a 404); staff "
            "with `payments.add_payment`. `201` with the payment; `200` with the first payment when the "
            "`Idempotency-Key` was used before (nothing new). `400` (nothing stored): no Idempotency-Key, "
            "an amount not more than zero or with more places than the currency's minor units, a currency "
            "that is not the account's, a closed account, an unknown statement, a payment date in the "
            "future, a card number or any field named like card data (`cvv`, `card_number`, `pan`)."
        ),
        request=PaymentCreateSerializer,
        parameters=[REQUIRED_IDEMPOTENCY_KEY],
        responses={
            201: PaymentSerializer,
            200: OpenApiResponse(
                PaymentSerializer, description="The key was used before: the first payment."
            ),
            **error_responses(400, 401, 403, 404, 409),
        },
    ),
)
@extend_schema(tags=[PAYMENTS_TAG])
class PaymentListView(generics.ListAPIView):
    serializer_class = PaymentSerializer
    permission_classes = [IsAuthenticated, PaymentsPermission]
    filterset_class = PaymentFilter
    ordering_fields = ["payment_date", "created_at", "amount"]
    ordering = ["-payment_date", "-id"]

    def get_queryset(self):
        return payments_visible(biller=caller_biller(self.request))

    def post(self, request):
        _refuse_card_data(request.data)
        key = _required_key(request, "a payment")
        data = PaymentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        account = _account_for(request, values["account"])
        statement = None
        if values.get("statement"):
            statement = _statement_for(request, paying_account(account=account), values["statement"])
        try:
            payment, created = payment_post(
                account=account,
                amount=values["amount"],
                currency=values["currency"],
                idempotency_key=service_idempotency_key(request.user, key),
                payment_date=values.get("payment_date"),
                reference=values["reference"],
                statement=statement,
                channel=Payment.Channel.API,
                actor=request.user,
            )
        except ApplicationError as exc:
            if exc.code == "account_closed" and not exc.fields:
                exc.fields = {"account": [exc.message]}
            raise
        return _payment_answer(payment, status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@extend_schema_view(
    get=extend_schema(
        summary="Get a payment with its allocations",
        description="Staff with `payments.view_payment`; a biller client for the accounts it references "
        "(another account's payment is a 404).",
        responses={200: PaymentSerializer, **error_responses(401, 403, 404)},
    )
)
@extend_schema(tags=[PAYMENTS_TAG], parameters=[_ID])
class PaymentDetailView(generics.RetrieveAPIView):
    serializer_class = PaymentSerializer
    permission_classes = [IsAuthenticated, PaymentsPermission]
    filter_backends: list = []

    def get_queryset(self):
        return payments_visible(biller=caller_biller(self.request))


@extend_schema(tags=[PAYMENTS_TAG], parameters=[_ID])
class PaymentReverseView(generics.GenericAPIView):
    permission_classes = [IsAuthenticated, ReversePermission]
    serializer_class = PaymentReverseSerializer
    filter_backends: list = []
    pagination_class = None

    @extend_schema(
        operation_id="payments_reverse",
        summary="Reverse a payment",
        description=(
            "A bounced or mistaken payment: posts the opposite ledger row, takes its allocations back and "
            "reopens the statements it settled. Staff with `payments.add_payment` only (biller clients: "
            "403). `409 already_reversed`: a payment is reversed once. `400`: no reason."
        ),
        request=PaymentReverseSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={200: PaymentSerializer, **error_responses(400, 401, 403, 404, 409)},
    )
    @idempotent
    def post(self, request, pk: int):
        payment = get_object_or_404(Payment.objects.select_related("account"), pk=pk)
        data = PaymentReverseSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        payment = payment_reverse(payment=payment, reason=data.validated_data["reason"], actor=request.user)
        return _payment_answer(payment, status.HTTP_200_OK)


# --- adjustments --------------------------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(
        summary="List adjustments",
        description=(
            "Newest first. Staff with `payments.view_adjustment` see every account's, in every status "
            "(pending approval, posted, rejected); a biller client sees the posted adjustments of the "
            "accounts it references, without who made or checked them."
        ),
        responses={200: AdjustmentSerializer(many=True), **error_responses(400, 401, 403)},
    )
)
@extend_schema(tags=[ADJUSTMENTS_TAG])
class AdjustmentListView(generics.ListAPIView):
    serializer_class = AdjustmentSerializer
    permission_classes = [IsAuthenticated, AdjustmentsPermission]
    filterset_class = AdjustmentFilter
    ordering_fields = ["created_at", "amount"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):
        return adjustments_visible(biller=caller_biller(self.request))

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "biller": caller_biller(self.request)}


@extend_schema_view(
    get=extend_schema(
        summary="Get an adjustment",
        description="As the list: another account's adjustment (or, for a biller, one not posted) is a 404.",
        responses={200: AdjustmentSerializer, **error_responses(401, 403, 404)},
    )
)
@extend_schema(tags=[ADJUSTMENTS_TAG], parameters=[_ADJUSTMENT_ID])
class AdjustmentDetailView(generics.RetrieveAPIView):
    serializer_class = AdjustmentSerializer
    permission_classes = [IsAuthenticated, AdjustmentsPermission]
    filter_backends: list = []

    def get_queryset(self):
        return adjustments_visible(biller=caller_biller(self.request))

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "biller": caller_biller(self.request)}


# --- refunds and write-offs ---------------------------------------------------------------------------------


class RefundFilter(django_filters.FilterSet):
    account = django_filters.CharFilter(field_name="account__number", label="Account number")
    currency = django_filters.CharFilter(field_name="currency", label="ISO 4217 currency")

    class Meta:
        model = Refund
        fields: list[str] = []


class WriteOffFilter(django_filters.FilterSet):
    account = django_filters.CharFilter(field_name="account__number", label="Account number")
    currency = django_filters.CharFilter(field_name="currency", label="ISO 4217 currency")

    class Meta:
        model = WriteOff
        fields: list[str] = []


def _entry_key_parameter(what: str) -> OpenApiParameter:
    return OpenApiParameter(
        name=IDEMPOTENCY_HEADER,
        type=OpenApiTypes.STR,
        location=OpenApiParameter.HEADER,
        required=True,
        description=(
            f"Required: your key for this {what} (1 to 255 printable ASCII characters). The same key again "
            f"answers the first {what} with 200 and posts nothing; with another account or amount it is a "
            "409 `idempotency_key_reused`."
        ),
    )


def _stated_in_minor_units(exc: ApplicationError, account: Account, currency: str) -> None:
    """A refund above the credit or a write-off above what is owed: say the most possible in the currency's
    minor units (the service's message shows the balance's four stored places)."""
    balance = receivable_balance(unit=paying_account(account=account))
    if exc.code == "exceeds_credit":
        left = str(quantize(max(-balance, Decimal(0)), currency))
        exc.message = f"The account's credit is {left} {currency}: a refund cannot be more."
    else:
        left = str(quantize(max(balance, Decimal(0)), currency))
        exc.message = f"The account owes {left} {currency}: a write-off cannot be more."
    exc.fields = {"amount": [f"At most {left}."]}


def _method_for(method_id: int | None) -> PaymentMethod | None:
    if method_id is None:
        return None
    method = PaymentMethod.objects.filter(pk=method_id).first()
    if method is None:
        raise ApplicationError(
            "That payment method cannot be used.", fields={"method": ["Unknown or removed."]}
        )
    return method  # the service refuses another account's or a removed one


@extend_schema_view(
    get=extend_schema(
        summary="List refunds",
        description=(
            "Money paid back out of credit balances, newest first. Staff with `payments.view_refund` see "
            "every account's (filter `?account=<number>`), with who entered each; a biller client sees the "
            "refunds of the accounts it references only (`created_by` null)."
        ),
        responses={200: RefundSerializer(many=True), **error_responses(400, 401, 403)},
    ),
    post=extend_schema(
        summary="Refund a credit balance",
        description=(
            "Pays back part or all of the account's credit (its receivable balance below zero): one ledger "
            "row of kind `refund` on the bill unit. Staff with `payments.add_refund` only (supervisors, "
            "billing admins; biller clients and CSRs: 403). `201` with the refund; `200` with the first "
            "refund when the `Idempotency-Key` was used before. `400` (nothing posted): no "
            "Idempotency-Key, an amount above the credit (`exceeds_credit`), not more than zero or with "
            "too many decimals, a currency that is not the account's, no reason, an unknown or removed "
            "`method`, a card number in the reason or any field named like card data."
        ),
        request=RefundCreateSerializer,
        parameters=[_entry_key_parameter("refund")],
        responses={
            201: RefundSerializer,
            200: OpenApiResponse(RefundSerializer, description="The key was used before: the first refund."),
            **error_responses(400, 401, 403, 404, 409),
        },
    ),
)
@extend_schema(tags=[REFUNDS_TAG])
class RefundListView(generics.ListAPIView):
    serializer_class = RefundSerializer
    permission_classes = [IsAuthenticated, RefundsPermission]
    filterset_class = RefundFilter
    ordering_fields = ["created_at", "amount"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):
        return refunds_visible(biller=caller_biller(self.request))

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "biller": caller_biller(self.request)}

    def post(self, request):
        _refuse_card_data(request.data)
        key = _required_key(request, "a refund")
        data = RefundCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        refuse_card_numbers(reason=values["reason"])
        account = _account_for(request, values["account"])
        try:
            refund, created = refund_post(
                account=account,
                amount=values["amount"],
                currency=values["currency"],
                reason=values["reason"],
                idempotency_key=service_idempotency_key(request.user, key),
                method=_method_for(values["method"]),
                actor=request.user,
            )
        except ApplicationError as exc:
            if exc.code == "exceeds_credit":
                _stated_in_minor_units(exc, account, values["currency"])
            raise
        shown = refunds_visible(biller=None).get(pk=refund.pk)
        return Response(
            RefundSerializer(shown, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


@extend_schema_view(
    get=extend_schema(
        summary="List write-offs",
        description=(
            "Uncollectable balances taken off accounts, newest first. Staff with `payments.view_writeoff` "
            "see every account's (filter `?account=<number>`), with the supervisor who wrote each off; a "
            "biller client sees the write-offs of the accounts it references only (`created_by` null)."
        ),
        responses={200: WriteOffSerializer(many=True), **error_responses(400, 401, 403)},
    ),
    post=extend_schema(
        summary="Write off a balance",
        description=(
            "Takes part or all of what the account owes off it: one ledger row of kind `write_off` on the "
            "bill unit; the statements keep their status. Staff with `payments.write_off_balance` only "
            "(supervisors, billing admins; CSRs and biller clients: 403). `201` with the write-off; `200` "
            "with the first one when the `Idempotency-Key` was used before. `400` (nothing posted): no "
            "Idempotency-Key, an amount above what is owed (`exceeds_balance`), not more than zero or with "
            "too many decimals, a currency that is not the account's, no reason, a card number in the "
            "reason or any field named like card data."
        ),
        request=WriteOffCreateSerializer,
        parameters=[_entry_key_parameter("write-off")],
        responses={
            201: WriteOffSerializer,
            200: OpenApiResponse(
                WriteOffSerializer, description="The key was used before: the first write-off."
            ),
            **error_responses(400, 401, 403, 404, 409),
        },
    ),
)
@extend_schema(tags=[WRITE_OFFS_TAG])
class WriteOffListView(generics.ListAPIView):
    serializer_class = WriteOffSerializer
    permission_classes = [IsAuthenticated, WriteOffsPermission]
    filterset_class = WriteOffFilter
    ordering_fields = ["created_at", "amount"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):
        return write_offs_visible(biller=caller_biller(self.request))

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "biller": caller_biller(self.request)}

    def post(self, request):
        _refuse_card_data(request.data)
        key = _required_key(request, "a write-off")
        data = WriteOffCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        refuse_card_numbers(reason=values["reason"])
        account = _account_for(request, values["account"])
        try:
            write_off, created = write_off_post(
                account=account,
                amount=values["amount"],
                currency=values["currency"],
                reason=values["reason"],
                idempotency_key=service_idempotency_key(request.user, key),
                actor=request.user,
            )
        except ApplicationError as exc:
            if exc.code == "exceeds_balance":
                _stated_in_minor_units(exc, account, values["currency"])
            raise
        shown = write_offs_visible(biller=None).get(pk=write_off.pk)
        return Response(
            WriteOffSerializer(shown, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
