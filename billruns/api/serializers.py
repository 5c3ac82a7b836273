"""Serializers of the billing engine API: the catalog (price plans with components, prices and tiers) and
subscriptions.

Input serializers parse and check shapes and types only; the business rules (overlaps, tiers, what a price
of each kind needs, negative values, currencies) are billruns.services' and answer with the same messages as
Django admin. Codes name catalog rows (``product``, ``frequency``, ``usage_type``, ...); an account is named
by its number. Amounts and rates are decimal strings.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from accounts.api.permissions import caller_biller
from accounts.models import Account
from accounts.selectors import accounts_for_biller
from billing_mgmt.money import CurrencyError, validate_currency
from statements.models import QUANTITY_DIGITS, QUANTITY_PLACES

from ..models import (
    BillingFrequency,
    BillingTermScheme,
    PlanComponent,
    Price,
    PricePlan,
    PriceTier,
    Product,
    Subscription,
    TaxCategory,
    TaxJurisdiction,
    UsageType,
)

AMOUNT = {"max_digits": 19, "decimal_places": 4}
RATE = {"max_digits": 24, "decimal_places": 8}
QUANTITY = {"max_digits": QUANTITY_DIGITS, "decimal_places": QUANTITY_PLACES}
MAX_SEQUENCE = 2_147_483_647


def error_paths(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested errors as one field path each: ``{"components[0].prices[1].amount": [...]}``, the same
    paths the catalog rules use. DRF reports a list's items as a list or as a dict keyed by index."""
    out: dict[str, list[str]] = {}

    def add(path: str, messages: list[str]) -> None:
        out.setdefault(path or "non_field_errors", []).extend(messages)

    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):
                path = f"{prefix}[{key}]"
            elif key == "non_field_errors":
                path = prefix
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            for field, messages in error_paths(value, path).items():
                add(field, messages)
    elif isinstance(detail, list) and not all(isinstance(item, str) for item in detail):
        for index, value in enumerate(detail):
            if value:
                for field, messages in error_paths(value, f"{prefix}[{index}]").items():
                    add(field, messages)
    else:
        add(prefix, [str(item) for item in detail] if isinstance(detail, list) else [str(detail)])
    return out


def _code(model, help_text: str, **kwargs) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(
        slug_field="code", queryset=model.objects.all(), help_text=help_text, **kwargs
    )


def _optional_code(model, help_text: str) -> serializers.SlugRelatedField:
    return _code(model, help_text, required=False, allow_null=True)


# --- catalog: what the API shows ---------------------------------------------------------------------------


class PriceTierSerializer(serializers.ModelSerializer):
    class Meta:
        model = PriceTier
        fields = ["from_quantity", "to_quantity", "unit_price"]


class PriceSerializer(serializers.ModelSerializer):
    frequency = serializers.SlugRelatedField(
        slug_field="code",
        read_only=True,
        allow_null=True,
        help_text="Recurring prices: the billing frequency's code; null on usage and one-time prices.",
    )
    tiers = PriceTierSerializer(many=True, read_only=True)

    class Meta:
        model = Price
        fields = ["frequency", "valid_from", "valid_to", "amount", "unit_price", "tiers"]


class PlanComponentSerializer(serializers.ModelSerializer):
    usage_type = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    tax_category = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    prices = PriceSerializer(many=True, read_only=True)

    class Meta:
        model = PlanComponent
        fields = [
            "code",
            "name",
            "kind",
            "position",
            "timing",
            "usage_type",
            "rating_method",
            "included_quantity",
            "trigger",
            "tax_category",
            "prices",
        ]


class PricePlanSerializer(serializers.ModelSerializer):
    product = serializers.SlugRelatedField(slug_field="code", read_only=True)
    billing_term_scheme = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = PricePlan
        fields = ["code", "name", "product", "currency", "billing_term_scheme", "description", "active"]


class PricePlanDetailSerializer(PricePlanSerializer):
    components = PlanComponentSerializer(many=True, read_only=True)

    class Meta(PricePlanSerializer.Meta):
        fields = [*PricePlanSerializer.Meta.fields, "components"]


# --- catalog: creating a whole plan ------------------------------------------------------------------------


class PriceTierInSerializer(serializers.Serializer):
    from_quantity = serializers.DecimalField(**QUANTITY, help_text="The first tier starts at 0.")
    to_quantity = serializers.DecimalField(
        **QUANTITY,
        required=False,
        allow_null=True,
        default=None,
        help_text="The next tier's from_quantity; null for the last (open-ended) tier.",
    )
    unit_price = serializers.DecimalField(**RATE)


class PriceInSerializer(serializers.Serializer):
    frequency = _optional_code(BillingFrequency, "Recurring prices only: a billing frequency code.")
    valid_from = serializers.DateField()
    valid_to = serializers.DateField(
        required=False, allow_null=True, default=None, help_text="Inclusive; null: open-ended."
    )
    amount = serializers.DecimalField(
        **AMOUNT, required=False, allow_null=True, default=None, help_text="Recurring and one-time prices."
    )
    unit_price = serializers.DecimalField(
        **RATE, required=False, allow_null=True, default=None, help_text="Per-unit usage prices."
    )
    tiers = PriceTierInSerializer(
        many=True, required=False, default=list, help_text="Graduated and volume usage prices."
    )


class PlanComponentInSerializer(serializers.Serializer):
    code = serializers.SlugField(max_length=40)
    name = serializers.CharField(max_length=200, help_text="As printed on the bill.")
    kind = serializers.ChoiceField(choices=PlanComponent.Kind.choices)
    position = serializers.IntegerField(
        min_value=0, max_value=32767, required=False, help_text="Order on the bill; default: the list order."
    )
    timing = serializers.ChoiceField(
        choices=PlanComponent.Timing.choices, required=False, allow_blank=True, help_text="Recurring only."
    )
    usage_type = _optional_code(UsageType, "Usage only: the usage type's code.")
    rating_method = serializers.ChoiceField(
        choices=PlanComponent.RatingMethod.choices, required=False, allow_blank=True, help_text="Usage only."
    )
    included_quantity = serializers.DecimalField(
        **QUANTITY, required=False, help_text="Usage only: units free in each billing period."
    )
    trigger = serializers.ChoiceField(
        choices=PlanComponent.Trigger.choices, required=False, allow_blank=True, help_text="One-time only."
    )
    tax_category = _optional_code(TaxCategory, "The tax category's code; null: not taxed.")
    prices = PriceInSerializer(many=True)


class PricePlanCreateSerializer(serializers.Serializer):
    code = serializers.SlugField(max_length=40)
    name = serializers.CharField(max_length=200)
    product = _code(Product, "The product's code.")
    currency = serializers.CharField(max_length=3, help_text="ISO 4217; every amount of the plan is in it.")
    billing_term_scheme = _code(BillingTermScheme, "The billing term scheme's code, e.g. 'standard'.")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    active = serializers.BooleanField(required=False, default=True)
    components = PlanComponentInSerializer(many=True)

    def validate_currency(self, value: str) -> str:
        try:
            return validate_currency(value)
        except CurrencyError as exc:
            raise serializers.ValidationError(str(exc)) from exc


# --- subscriptions -----------------------------------------------------------------------------------------


class SubscriptionSerializer(serializers.ModelSerializer):
    account = serializers.SlugRelatedField(slug_field="number", read_only=True, help_text="Account number.")
    price_plan = serializers.SlugRelatedField(slug_field="code", read_only=True)
    currency = serializers.CharField(source="price_plan.currency", read_only=True)
    frequency = serializers.SlugRelatedField(slug_field="code", read_only=True)
    billing_term_scheme = serializers.SlugRelatedField(slug_field="code", read_only=True)
    tax_jurisdiction = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)

    class Meta:
        model = Subscription
        fields = [
            "id",
            "account",
            "service_identifier",
            "price_plan",
            "currency",
            "status",
            "start_date",
            "end_date",
            "billed_through",
            "frequency",
            "billing_term_scheme",
            "processing_sequence",
            "tax_jurisdiction",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SubscriptionCreateSerializer(serializers.Serializer):
    account = serializers.SlugRelatedField(
        slug_field="number",
        queryset=Account.objects.all(),
        help_text="Account number; a biller client names one of the accounts it references.",
    )
    price_plan = _code(PricePlan, "The price plan's code.")
    service_identifier = serializers.CharField(max_length=100)
    start_date = serializers.DateField(help_text="First day of service.")
    end_date = serializers.DateField(
        required=False, allow_null=True, default=None, help_text="Last day of service; null: open-ended."
    )
    frequency = _optional_code(BillingFrequency, "Default: the account's billing frequency.")
    billing_term_scheme = _optional_code(BillingTermScheme, "Default: the price plan's.")
    processing_sequence = serializers.IntegerField(required=False, default=100, max_value=MAX_SEQUENCE)
    tax_jurisdiction = _optional_code(TaxJurisdiction, "Default (null): from the billing address.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        biller = caller_biller(request) if request is not None else None
        if biller is not None:
            # Another biller's account answers like an account that does not exist.
            self.fields["account"].queryset = accounts_for_biller(biller=biller)

    def service_kwargs(self) -> dict[str, Any]:
        return dict(self.validated_data)


class SubscriptionUpdateSerializer(serializers.Serializer):
    start_date = serializers.DateField(required=False, help_text="Only before any period is rated.")
    end_date = serializers.DateField(required=False, allow_null=True, help_text="null: open-ended.")
    processing_sequence = serializers.IntegerField(required=False, max_value=MAX_SEQUENCE)
    tax_jurisdiction = _optional_code(TaxJurisdiction, "null: from the billing address.")
    status = serializers.ChoiceField(
        choices=Subscription.Status.choices,
        required=False,
        help_text="'suspended' suspends, 'active' resumes; cancel with POST .../cancel/.",
    )


class SubscriptionCancelSerializer(serializers.Serializer):
    end_date = serializers.DateField(
        help_text="Last day of service. May lie before periods already billed: the next bill credits them."
    )
