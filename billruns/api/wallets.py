"""Prepaid wallets API: an account's wallet (balance, the estimate of when it runs out, its latest ledger
rows) and top-ups.

* ``GET /api/v1/wallets/<account number>/``;
* ``POST /api/v1/wallets/<account number>/top-ups/`` ``{"amount": "20.00", "currency": "USD", ...}`` posts a
  ``wallet_topup`` ledger row through billruns.services.wallet_topup.

The wallet is the bill unit's: a non-paying child's number shows (and tops up) its paying parent's wallet,
which its subscriptions consume. Who: staff with ``billruns.view_walletestimate`` read (CSRs, supervisors,
billing admins), staff with ``billruns.topup_wallet`` top up (supervisors, billing admins); a biller API
client reads and tops up the wallets of accounts it references (another account is a 404, as if it did not
exist). A biller's top-up must carry its ``external_id``: the biller's id for the payment, which makes a
repeat answer the first row (200) instead of posting again; the row's biller is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Exists, OuterRef
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api import schema as _schema  # noqa: F401  (registers the Api-Key scheme with drf-spectacular)
from accounts.api.permissions import caller_biller, is_api_client
from accounts.models import Account, Biller, BillerReference
from accounts.selectors import paying_account
from billing_mgmt.api.idempotency import idempotent
from billing_mgmt.api.schema import IDEMPOTENCY_KEY_PARAMETER, error_responses
from billing_mgmt.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS, CurrencyError, validate_currency
from statements.api.serializers import AmountField
from statements.models import AccountBalance, BalanceType, FinancialTransaction

from ..models import WalletEstimate
from ..services import wallet_topup

TAG = "wallets"
LATEST_ROWS = 20
TOPUP_OUTCOMES = ("created", "duplicate")


class WalletApiPermission(BasePermission):
    """Biller clients (scoped to their accounts by the views); staff by model permission."""

    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        if is_api_client(user):
            return True
        if request.method in SAFE_METHODS:
            return user.has_perm("billruns.view_walletestimate")
        self.message = "Your role does not allow topping up wallets."
        return user.has_perm("billruns.topup_wallet")


def _visible_account(request, number: str) -> Account:
    """The account by number, if the caller may see it (a biller: only those it references), else 404."""
    accounts = Account.objects.select_related("billing_profile", "parent")
    biller = caller_biller(request)
    if biller is not None:
        accounts = accounts.filter(
            Exists(BillerReference.objects.filter(biller=biller, account_id=OuterRef("pk")))
        )
    return get_object_or_404(accounts, number=number)


def _shown_number(unit: Account, account: Account, biller: Biller | None) -> str | None:
    """The wallet's account number, unless it is a parent the calling biller does not reference."""
    if unit.pk == account.pk or biller is None:
        return unit.number
    return unit.number if BillerReference.objects.filter(biller=biller, account=unit).exists() else None


@dataclass
class Wallet:
    account: str
    wallet_account: str | None
    currency: str
    balance: Decimal
    estimate: WalletEstimate | None
    transactions: list[FinancialTransaction]


def _balance(unit: Account) -> tuple[Decimal, str]:
    row = AccountBalance.objects.filter(account=unit, balance_type=BalanceType.WALLET).first()
    if row is not None:
        return row.amount, row.currency
    profile = getattr(unit, "billing_profile", None)
    return Decimal(0), getattr(profile, "currency", None) or "USD"


def wallet_of(*, account: Account, biller: Biller | None) -> Wallet:
    """The wallet the account's subscriptions consume (its bill unit's), with the estimate and the latest
    rows: a fixed number of queries."""
    unit = paying_account(account=account)
    amount, currency = _balance(unit)
    rows = list(
        FinancialTransaction.objects.filter(account=unit, balance_type=BalanceType.WALLET)
        .select_related("biller")
        .order_by("-posted_at", "-id")[:LATEST_ROWS]
    )
    return Wallet(
        account=account.number,
        wallet_account=_shown_number(unit, account, biller),
        currency=currency,
        balance=amount,
        estimate=WalletEstimate.objects.filter(account=unit).select_related("run").first(),
        transactions=rows,
    )


# --- output ------------------------------------------------------------------------------------------------


class WalletTransactionSerializer(serializers.ModelSerializer):
    """One wallet ledger row: positive is money in (a top-up), negative is consumption (a prepaid run's
    debit). A biller sees another biller's code and external id as null and empty."""

    amount = AmountField()
    biller = serializers.SerializerMethodField(help_text="Where it came from (a biller code); null: here.")
    external_id = serializers.SerializerMethodField(help_text="The biller's id for it.")

    class Meta:
        model = FinancialTransaction
        fields = ["id", "kind", "amount", "currency", "effective_date", "posted_at", "description", "biller",
                  "external_id"]  # fmt: skip
        read_only_fields = fields

    def _visible(self, row: FinancialTransaction) -> bool:
        caller = self.context.get("biller")
        return (
            caller is None
            or row.biller_id is None
            or row.biller_id == caller.pk
            or (row.biller.kind == Biller.Kind.INTERNAL)
        )

    def get_biller(self, row: FinancialTransaction) -> str | None:
        return row.biller.code if row.biller_id and self._visible(row) else None

    def get_external_id(self, row: FinancialTransaction) -> str:
        return row.external_id if self._visible(row) else ""


class WalletEstimateSerializer(serializers.ModelSerializer):
    balance = AmountField(help_text="The wallet balance when estimated.")
    daily_consumption = AmountField(help_text="Average usage debited per day over the window.")
    recurring_per_period = AmountField(help_text="Next recurring charges, before tax (next_charge_on).")
    run = serializers.SlugRelatedField(
        slug_field="number", read_only=True, allow_null=True, help_text="The run that estimated it."
    )

    class Meta:
        model = WalletEstimate
        fields = ["runs_out_on", "daily_consumption", "recurring_per_period", "next_charge_on", "balance",
                  "currency", "window_days", "estimated_at", "run"]  # fmt: skip
        read_only_fields = fields


class WalletSerializer(serializers.Serializer):
    account = serializers.CharField(help_text="The account number asked for.")
    wallet_account = serializers.CharField(
        allow_null=True,
        help_text="The account whose wallet it is (the bill unit: a non-paying child's paying parent); null "
        "for a biller that does not reference that parent.",
    )
    currency = serializers.CharField()
    balance = AmountField(help_text="Money in the wallet (decimal string in the currency's minor units).")
    estimate = WalletEstimateSerializer(
        allow_null=True,
        help_text="When the wallet runs out (prepaid runs' estimation step); null: never estimated.",
    )
    transactions = WalletTransactionSerializer(
        many=True, help_text=f"The latest {LATEST_ROWS} wallet ledger rows, newest first."
    )


@dataclass
class TopUpAnswer:
    outcome: str
    transaction: FinancialTransaction
    wallet_account: str | None
    currency: str
    balance: Decimal


class WalletTopUpAnswerSerializer(serializers.Serializer):
    outcome = serializers.ChoiceField(
        choices=TOPUP_OUTCOMES,
        help_text="`duplicate`: this external id was posted before; the first row is answered, nothing new.",
    )
    transaction = WalletTransactionSerializer()
    wallet_account = serializers.CharField(allow_null=True)
    currency = serializers.CharField()
    balance = AmountField(help_text="The wallet balance after the top-up.")


# --- input -------------------------------------------------------------------------------------------------


class WalletTopUpSerializer(serializers.Serializer):
    amount = serializers.DecimalField(
        max_digits=AMOUNT_MAX_DIGITS,
        decimal_places=AMOUNT_DECIMAL_PLACES,
        help_text='More than zero, in the currency\'s minor units at most, as a string: "20.00".',
    )
    currency = serializers.CharField(max_length=3, help_text="ISO 4217; the account's billing currency.")
    effective_date = serializers.DateField(required=False, help_text="The payment's date; default today.")
    external_id = serializers.CharField(
        max_length=100,
        required=False,
        allow_blank=True,
        default="",
        help_text="Your id for the top-up (required for biller clients): a repeat answers the first row.",
    )
    description = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")

    def validate_currency(self, value: str) -> str:
        try:
            return validate_currency(value)
        except CurrencyError as exc:
            raise serializers.ValidationError(str(exc)) from exc


# --- views -------------------------------------------------------------------------------------------------


_NUMBER = OpenApiParameter(
    "number", OpenApiTypes.STR, OpenApiParameter.PATH, description="The account number."
)


@extend_schema(tags=[TAG], parameters=[_NUMBER])
class WalletView(APIView):
    permission_classes = [IsAuthenticated, WalletApiPermission]

    @extend_schema(
        operation_id="wallets_retrieve",
        summary="Get an account's prepaid wallet",
        description=(
            "The wallet balance, the latest estimate of the day it runs out, and its latest ledger rows "
            "(newest first). Staff with `billruns.view_walletestimate`; a biller client for accounts it "
            "references (another account is a 404)."
        ),
        responses={200: WalletSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request, number: str):
        biller = caller_biller(request)
        wallet = wallet_of(account=_visible_account(request, number), biller=biller)
        return Response(WalletSerializer(wallet, context={"biller": biller}).data)


@extend_schema(tags=[TAG], parameters=[_NUMBER])
class WalletTopUpView(APIView):
    permission_classes = [IsAuthenticated, WalletApiPermission]

    @extend_schema(
        operation_id="wallets_top_up",
        summary="Top up an account's prepaid wallet",
        description=(
            "Posts a `wallet_topup` ledger row to the wallet of the account's bill unit. `201` with the new "
            "row; `200` with `outcome` `duplicate` when the `external_id` was posted before (same amount "
            "and currency: nothing new; different: `409`). Biller clients must send `external_id`; staff "
            "need `billruns.topup_wallet`. 400 (nothing stored): an amount that is not more than zero or has "
            "more places than the currency's minor units, a currency that is not ISO 4217 or not the "
            "account's billing currency."
        ),
        request=WalletTopUpSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={
            201: WalletTopUpAnswerSerializer,
            200: WalletTopUpAnswerSerializer,
            **error_responses(400, 401, 403, 404, 409),
        },
    )
    @idempotent
    def post(self, request, number: str):
        biller = caller_biller(request)
        account = _visible_account(request, number)
        data = WalletTopUpSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if biller is not None and not values["external_id"].strip():
            raise ValidationError(
                {"external_id": ["Biller clients send their id for the top-up: it makes a retry safe."]}
            )
        row, created = wallet_topup(
            account=account,
            amount=values["amount"],
            currency=values["currency"],
            effective_date=values.get("effective_date"),
            biller=biller,
            external_id=values["external_id"].strip(),
            description=values["description"],
            actor=request.user,
        )
        unit = paying_account(account=account)
        balance, currency = _balance(unit)
        answer = TopUpAnswer(
            outcome="created" if created else "duplicate",
            transaction=row,
            wallet_account=_shown_number(unit, account, biller),
            currency=currency,
            balance=balance,
        )
        return Response(
            WalletTopUpAnswerSerializer(answer, context={"biller": biller}).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
