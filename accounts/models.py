"""Customers and the billers that bill them."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from billing_mgmt.money import currency_field, locale_validator


class Biller(models.Model):
    """A billing system whose data this product holds: this product's own engine or an external one."""

    class Kind(models.TextChoices):
        INTERNAL = "internal", "Internal (this product bills)"
        EXTERNAL = "external", "External billing system"

    code = models.SlugField(max_length=30, unique=True)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.EXTERNAL)
    active = models.BooleanField(default=True)

    class PullKind(models.TextChoices):
        HTTP = "http", "HTTP pull contract (JSON, paged, changes since a watermark)"
        FILE_DROP = "file_drop", "File drop (JSON or CSV files in a folder)"

    # Pull: the product collects data from the biller on a schedule and on demand (docs/pull-contract.md).
    pull_enabled = models.BooleanField(default=False)
    pull_kind = models.CharField(max_length=10, choices=PullKind.choices, default=PullKind.HTTP)
    pull_url = models.URLField(blank=True, help_text="Base URL of the biller's export API.")
    drop_folder = models.CharField(
        max_length=500, blank=True, help_text="Folder the biller drops JSON or CSV files into (file drop)."
    )
    pull_interval_minutes = models.PositiveIntegerField(
        default=1440, validators=[MinValueValidator(5)], help_text="How often a scheduled pull runs."
    )
    pull_auth_header = models.CharField(
        max_length=500, blank=True, help_text="Authorization header value sent to the biller when pulling."
    )
    contact_email = models.EmailField(blank=True)

    class ExportMode(models.TextChoices):
        POLL = "poll", "The biller reads pending exports from the API"
        PUSH = "push", "This product POSTs each export to the biller's endpoint"

    # Export: the payments and adjustments CSRs enter for the biller's accounts (docs/payments.md).
    export_mode = models.CharField(max_length=10, choices=ExportMode.choices, default=ExportMode.POLL)
    export_url = models.URLField(blank=True, help_text="Push: where each export is POSTed (signed JSON).")
    export_secret = models.CharField(
        max_length=200, blank=True, help_text="Push: the shared secret of the HMAC-SHA256 signature."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(pull_enabled=False)
                | (Q(pull_kind="http") & ~Q(pull_url=""))
                | (Q(pull_kind="file_drop") & ~Q(drop_folder="")),
                name="biller_pull_needs_source",
            ),
            models.CheckConstraint(
                condition=~Q(export_mode="push") | (~Q(export_url="") & ~Q(export_secret="")),
                name="biller_push_export_needs_url_and_secret",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class BillerApiKey(models.Model):
    """A credential for a biller's API client. Only a hash is stored; the key is shown once when created."""

    PREFIX_LENGTH = 8

    biller = models.ForeignKey(Biller, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="What uses this key, e.g. 'nightly statement push'.")
    prefix = models.CharField(max_length=PREFIX_LENGTH, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "biller API key"

    def __str__(self) -> str:
        return f"{self.biller.code}:{self.name} ({self.prefix}…)"

    @staticmethod
    def hash_key(raw_key: str) -> str:
        # Keys are 40 random bytes: a fast hash is enough (no dictionary to attack), and it keeps auth cheap.
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def generate(cls) -> tuple[str, str]:
        """Return (prefix, raw_key). The raw key is '<prefix>.<secret>'."""
        prefix = secrets.token_hex(cls.PREFIX_LENGTH // 2)
        return prefix, f"{prefix}.{secrets.token_urlsafe(40)}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.biller.active


class Account(models.Model):
    """A customer account. Accounts form hierarchies; a non-paying child's bills go to its paying parent."""

    class Type(models.TextChoices):
        BILLING_AGGREGATOR = "billing_aggregator", "Billing aggregator"
        BILLING = "billing", "Billing"
        BUSINESS = "business", "Business"
        CONSUMER = "consumer", "Consumer"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        CLOSED = "closed", "Closed"

    number = models.CharField(max_length=30, unique=True)
    name = models.CharField(max_length=200, db_index=True)
    type = models.CharField(max_length=20, choices=Type.choices, default=Type.CONSUMER)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    is_paying = models.BooleanField(
        default=True,
        help_text="Paying accounts get their own bills; a non-paying child is billed on its paying parent.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    MAX_DEPTH = 10

    class Meta:
        ordering = ["number"]
        constraints = [
            models.CheckConstraint(
                condition=Q(is_paying=True) | Q(parent__isnull=False), name="account_nonpaying_has_parent"
            ),
            models.CheckConstraint(condition=~Q(parent=models.F("id")), name="account_not_own_parent"),
        ]
        indexes = [models.Index(fields=["type", "status"])]

    def __str__(self) -> str:
        return f"{self.number} {self.name}"


class Contact(models.Model):
    class Role(models.TextChoices):
        PRIMARY = "primary", "Primary"
        BILLING_COPY = "billing_copy", "Billing copy"
        PORTAL_USER = "portal_user", "Portal user"

    class BillDelivery(models.TextChoices):
        """How a person gets a copy of each bill (a bill routing, source 004)."""

        NONE = "none", "No copy"
        EMAIL = "email", "E-mail with the PDF"
        PRINT = "print", "Printed and posted"
        PORTAL = "portal", "Customer portal"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="contacts")
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True, db_index=True)
    phone = models.CharField(max_length=40, blank=True, db_index=True)
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.PRIMARY)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="contacts",
        help_text="The portal login of this contact (customers see only this account).",
    )
    bill_delivery = models.CharField(
        max_length=10,
        choices=BillDelivery.choices,
        blank=True,
        help_text="How this person gets each bill. Empty: the primary contact as the billing profile's "
        "presentment preference says, billing copies by e-mail, portal users in the portal only.",
    )

    class Meta:
        ordering = ["account", "role", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["account"], condition=Q(role="primary"), name="contact_one_primary_per_account"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_role_display()})"


class BillingProfile(models.Model):
    """How an account is billed, presented and pays."""

    class Frequency(models.TextChoices):
        MONTHLY = "monthly", "Monthly"
        BIMONTHLY = "bimonthly", "Every two months"
        QUARTERLY = "quarterly", "Quarterly"
        SEMIANNUAL = "semiannual", "Semi-annual"
        ANNUAL = "annual", "Annual"

    class Presentment(models.TextChoices):
        PAPER = "paper", "Paper (detailed)"
        EMAIL = "email", "E-mail (detailed)"
        EMAIL_SUMMARY = "email_summary", "E-mail (summary)"
        PORTAL = "portal", "Portal only (summary)"

    class PaymentPreference(models.TextChoices):
        MANUAL = "manual", "Manual payment"
        CARD = "card", "Card"
        DIRECT_DEBIT = "direct_debit", "Direct debit"
        BANK_TRANSFER = "bank_transfer", "Bank transfer"

    class ARClassification(models.TextChoices):
        STANDARD = "standard", "Standard"
        VIP = "vip", "VIP"
        GOVERNMENT = "government", "Government"
        EMPLOYEE = "employee", "Employee"
        HIGH_RISK = "high_risk", "High risk"

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="billing_profile")
    currency = currency_field(default="USD")
    language = models.CharField(
        max_length=10, default="en", validators=[locale_validator], help_text="Language of bills, e.g. 'en'."
    )
    locale = models.CharField(
        max_length=20,
        default="en_US",
        validators=[locale_validator],
        help_text="Number format, e.g. 'de_DE'.",
    )
    bill_cycle_day = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(28)]
    )
    billing_frequency = models.CharField(max_length=12, choices=Frequency.choices, default=Frequency.MONTHLY)
    presentment_preference = models.CharField(
        max_length=15, choices=Presentment.choices, default=Presentment.EMAIL
    )
    payment_preference = models.CharField(
        max_length=15, choices=PaymentPreference.choices, default=PaymentPreference.MANUAL
    )
    ar_classification = models.CharField(
        max_length=15, choices=ARClassification.choices, default=ARClassification.STANDARD
    )
    autopay = models.BooleanField(default=False)
    payment_terms_days = models.PositiveSmallIntegerField(
        default=14, validators=[MaxValueValidator(365)], help_text="Days from bill date to due date."
    )
    address_line1 = models.CharField(max_length=200, blank=True)
    address_line2 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    region = models.CharField(max_length=100, blank=True)
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(bill_cycle_day__gte=1, bill_cycle_day__lte=28),
                name="profile_bill_cycle_day_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Billing profile of {self.account}"

    @property
    def address_lines(self) -> list[str]:
        city_line = " ".join(p for p in (self.postal_code, self.city) if p)
        if self.region:
            city_line = f"{city_line}, {self.region}" if city_line else self.region
        return [line for line in (self.address_line1, self.address_line2, city_line, self.country) if line]


class BillerReference(models.Model):
    """The account's identifier at a biller. A biller reaches an account only through its own reference."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="biller_references")
    biller = models.ForeignKey(Biller, on_delete=models.PROTECT, related_name="references")
    external_ref = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["biller", "external_ref"]
        constraints = [
            models.UniqueConstraint(fields=["biller", "external_ref"], name="reference_unique_per_biller"),
            models.UniqueConstraint(
                fields=["biller", "account"], name="reference_one_per_account_and_biller"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.biller.code}:{self.external_ref}"


class AccountGroup(models.Model):
    """A named set of accounts that billing admins bill or report on together (a region, a segment, a
    reseller's customers): billing runs may be filtered to the accounts of some groups (source 001)."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    accounts = models.ManyToManyField(Account, blank=True, related_name="groups")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BillingSuspension(models.Model):
    """Billing of an account is suspended (source 002's "Suspend Billing" service process, once approved):
    billing runs skip the account with the exception ``billing_suspended`` until someone resumes it. At most
    one suspension is open per account; a resumed one stays as history."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="billing_suspensions")
    reason = models.CharField(max_length=300)
    reference = models.CharField(
        max_length=60, blank=True, help_text="What decided it, e.g. the tracking number of the case."
    )
    started_at = models.DateTimeField()
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    end_note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["account", "-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account"], condition=Q(ended_at__isnull=True), name="one_open_billing_suspension"
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gte=models.F("started_at")),
                name="billing_suspension_ends_after_start",
            ),
        ]

    def __str__(self) -> str:
        state = "open" if self.ended_at is None else "ended"
        return f"Billing suspension of {self.account_id} ({state})"

    @property
    def is_open(self) -> bool:
        return self.ended_at is None
