"""Accounts API: one output serializer, input serializers that only parse and validate for the services.

Field rules (docs/api.md):
* read-only: number, children, references, balance, created_at, updated_at;
* ``status`` is changed only by Billing admins; a biller may send it unchanged (a PUT of what it read);
* ``parent`` is an account number the caller can see;
* ``external_ref`` (create only) binds the new account to the calling biller's reference;
  staff send ``biller`` with it.
* ``contacts`` are given on create only.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import Account, Biller, BillerReference, BillingProfile, Contact
from billing_mgmt.money import CurrencyError, quantize, validate_currency

from .permissions import caller_biller, may_write_any_account

RECEIVABLE = "receivable"  # statements.models.BalanceType.RECEIVABLE; accounts does not import statements

PROFILE_FIELDS = [
    "currency",
    "language",
    "locale",
    "bill_cycle_day",
    "billing_frequency",
    "presentment_preference",
    "payment_preference",
    "ar_classification",
    "autopay",
    "payment_terms_days",
    "address_line1",
    "address_line2",
    "city",
    "region",
    "postal_code",
    "country",
]


class BillingProfileSerializer(serializers.ModelSerializer):
    class Meta:
        model = BillingProfile
        fields = PROFILE_FIELDS

    def validate_currency(self, value: str) -> str:
        try:
            return validate_currency(value)
        except CurrencyError as exc:
            raise serializers.ValidationError(str(exc)) from exc


class ContactSerializer(serializers.ModelSerializer):
    class Meta:
        model = Contact
        fields = ["name", "email", "phone", "role"]


class ReferenceSerializer(serializers.Serializer):
    biller = serializers.CharField(source="biller.code", help_text="The biller's code.")
    external_ref = serializers.CharField(help_text="The account's identifier at that biller.")


class BalanceSerializer(serializers.Serializer):
    amount = serializers.CharField(
        help_text="Decimal string in the currency's minor units; positive is owed."
    )
    currency = serializers.CharField()


class AccountSerializer(serializers.ModelSerializer):
    """An account as the API shows it. Expects a row from accounts.api.selectors.api_accounts."""

    parent = serializers.SerializerMethodField(
        help_text="Parent account number (null if none or not visible)."
    )
    children = serializers.SerializerMethodField(
        help_text="Numbers of the child accounts visible to the caller."
    )
    billing_profile = BillingProfileSerializer(read_only=True, allow_null=True)
    contacts = ContactSerializer(many=True, read_only=True)
    references = ReferenceSerializer(
        source="visible_references",
        many=True,
        read_only=True,
        help_text="References at billers; a biller client sees only its own.",
    )
    balance = serializers.SerializerMethodField(help_text="Receivable balance from the ledger.")

    class Meta:
        model = Account
        fields = [
            "number",
            "name",
            "type",
            "status",
            "is_paying",
            "parent",
            "children",
            "billing_profile",
            "contacts",
            "references",
            "balance",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_parent(self, account: Account) -> str | None:
        return account.parent_number if account.parent_visible else None

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_children(self, account: Account) -> list[str]:
        return [child.number for child in account.visible_children]

    @extend_schema_field(BalanceSerializer(allow_null=True))
    def get_balance(self, account: Account) -> dict[str, str] | None:
        row = next((b for b in account.balances.all() if b.balance_type == RECEIVABLE), None)
        if row is not None:
            return {"amount": str(quantize(row.amount, row.currency)), "currency": row.currency}
        profile = getattr(account, "billing_profile", None)
        if profile is None:
            return None
        return {"amount": str(quantize(Decimal(0), profile.currency)), "currency": profile.currency}


class _AccountWriteSerializer(serializers.Serializer):
    """Fields shared by create and update; the instance (on update) is the account being changed."""

    name = serializers.CharField(max_length=200)
    type = serializers.ChoiceField(choices=Account.Type.choices, required=False)
    status = serializers.ChoiceField(
        choices=Account.Status.choices,
        required=False,
        help_text="Billing admins only; a biller client may send the current value unchanged.",
    )
    is_paying = serializers.BooleanField(required=False)
    parent = serializers.SlugRelatedField(
        slug_field="number",
        queryset=Account.objects.none(),
        required=False,
        allow_null=True,
        help_text="Parent account number; the parent must be visible to the caller.",
    )
    billing_profile = BillingProfileSerializer(required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        biller = caller_biller(request) if request is not None else None
        parents = Account.objects.all()
        if biller is not None:
            parents = parents.filter(biller_references__biller=biller)
        self.fields["parent"].queryset = parents

    def validate_status(self, value: str) -> str:
        request = self.context["request"]
        if may_write_any_account(request.user):
            return value
        current = self.instance.status if self.instance is not None else Account.Status.ACTIVE
        if value != current:
            raise serializers.ValidationError("Only a billing admin can change the status.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance = self.instance
        biller = caller_biller(self.context["request"])
        if (
            biller is not None
            and instance is not None
            and attrs.get("parent", False) is None
            and instance.parent_id is not None
            and not BillerReference.objects.filter(biller=biller, account_id=instance.parent_id).exists()
        ):
            # The biller was shown "parent": null because it cannot see the parent; a PUT of what it read
            # must not cut the account out of a hierarchy it does not know about.
            del attrs["parent"]
        # The database refuses this too (account_nonpaying_has_parent); say it in the client's terms.
        is_paying = attrs.get("is_paying", instance.is_paying if instance is not None else True)
        parent = attrs.get("parent", instance.parent if instance is not None else None)
        if not is_paying and parent is None:
            raise serializers.ValidationError({"is_paying": ["A non-paying account needs a paying parent."]})
        return attrs

    def account_fields(self) -> dict[str, Any]:
        data = self.validated_data
        return {key: data[key] for key in ("name", "type", "status", "is_paying", "parent") if key in data}

    def profile_fields(self) -> dict[str, Any] | None:
        profile = self.validated_data.get("billing_profile")
        return dict(profile) if profile is not None else None


class AccountCreateSerializer(_AccountWriteSerializer):
    external_ref = serializers.CharField(
        max_length=100,
        required=False,
        help_text="The caller's identifier of this account. Required for biller clients, whose new account "
        "is bound to this reference at their biller.",
    )
    biller = serializers.SlugRelatedField(
        slug_field="code",
        queryset=Biller.objects.all(),
        required=False,
        help_text="Staff only: the biller whose external_ref this is.",
    )
    contacts = ContactSerializer(many=True, required=False)

    def validate_contacts(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if sum(1 for c in value if c.get("role", Contact.Role.PRIMARY) == Contact.Role.PRIMARY) > 1:
            raise serializers.ValidationError("At most one contact can be primary.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        biller = caller_biller(self.context["request"])
        if biller is not None:
            if "biller" in attrs:
                raise serializers.ValidationError(
                    {"biller": ["A biller client creates accounts at its own biller; leave this out."]}
                )
            if not attrs.get("external_ref", "").strip():
                raise serializers.ValidationError(
                    {"external_ref": ["Required: your reference for this account."]}
                )
            attrs["biller"] = biller
        elif bool(attrs.get("biller")) != bool(attrs.get("external_ref", "").strip()):
            missing = "biller" if attrs.get("external_ref") else "external_ref"
            raise serializers.ValidationError({missing: ["Give biller and external_ref together."]})
        if "external_ref" in attrs:
            attrs["external_ref"] = attrs["external_ref"].strip()
        return attrs

    def service_kwargs(self) -> dict[str, Any]:
        data = self.validated_data
        return {
            **self.account_fields(),
            "billing_profile": self.profile_fields(),
            "contacts": [dict(c) for c in data.get("contacts", [])],
            "biller": data.get("biller"),
            "external_ref": data.get("external_ref") or None,
        }


class AccountUpdateSerializer(_AccountWriteSerializer):
    """PUT needs ``name``; fields left out keep their values (PATCH needs none). Contacts are not changed."""
