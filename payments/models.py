"""Payments, adjustments and payment methods entered in this product (source 000: "Representatives can make
payments and adjustments ... Add payment methods"), and how a payment settles statements (allocation).

Every entry that moves money posts one ledger row (statements.FinancialTransaction) through
payments.services, in the same transaction as the entry and its audit record. A payment method holds a
processor's token and what may be shown (brand, last four digits, expiry): never a card number or CVV.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from accounts.models import Account
from billing_mgmt.money import currency_field, money_field
from statements.models import FinancialTransaction, Statement, StatementLine


class PaymentMethod(models.Model):
    """A way an account pays: a card or bank account held by a payment processor (its token), or another
    method. Removed methods stay for the history of what paid with them, and cannot be used again."""

    class Kind(models.TextChoices):
        CARD = "card", "Card"
        BANK_ACCOUNT = "bank_account", "Bank account"
        OTHER = "other", "Other"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="payment_methods")
    kind = models.CharField(max_length=15, choices=Kind.choices)
    token = models.CharField(
        max_length=200, blank=True, help_text="The payment processor's token for it (never the number)."
    )
    brand = models.CharField(max_length=30, blank=True, help_text="Card brand, e.g. Visa.")
    last4 = models.CharField(max_length=4, blank=True, help_text="Last four digits of the card or account.")
    expiry_month = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(12)]
    )
    expiry_year = models.PositiveSmallIntegerField(null=True, blank=True)
    holder = models.CharField(max_length=200, blank=True)
    bank_name = models.CharField(max_length=200, blank=True)
    description = models.CharField(max_length=200, blank=True, help_text="Other methods: what it is.")
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["account", "-is_default", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["account"],
                condition=Q(is_default=True, removed_at__isnull=True),
                name="payment_method_one_default",
            ),
            models.CheckConstraint(
                condition=~Q(kind="card") | (~Q(token="") & ~Q(last4="")),
                name="payment_method_card_has_token",
            ),
            models.CheckConstraint(
                condition=Q(removed_at__isnull=True) | Q(is_default=False),
                name="payment_method_removed_not_default",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.CARD:
            return f"{self.brand or 'Card'} •••• {self.last4}"
        if self.kind == self.Kind.BANK_ACCOUNT:
            return f"{self.bank_name or 'Bank account'} •••• {self.last4}"
        return self.description or "Other"

    @property
    def is_usable(self) -> bool:
        return self.removed_at is None


class Payment(models.Model):
    """Money received from the customer, entered by a CSR or posted by another system: one ledger row of
    kind PAYMENT, allocated to the account's open statements. A reversal (a bounced payment) posts the
    opposite row and takes its allocations back."""

    class Status(models.TextChoices):
        POSTED = "posted", "Posted"
        REVERSED = "reversed", "Reversed"

    class Channel(models.TextChoices):
        CSR = "csr", "Entered by a CSR"
        API = "api", "Posted through the API"
        AUTOPAY = "autopay", "Autopay"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="payments")
    amount = money_field(help_text="Received (positive).")
    currency = currency_field()
    payment_date = models.DateField()
    method = models.ForeignKey(
        PaymentMethod, null=True, blank=True, on_delete=models.PROTECT, related_name="payments"
    )
    reference = models.CharField(
        max_length=100, blank=True, help_text="Receipt, cheque or transfer reference."
    )
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.CSR)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.POSTED)
    transaction = models.OneToOneField(
        FinancialTransaction, on_delete=models.PROTECT, related_name="payment_entry"
    )
    reversal = models.OneToOneField(
        FinancialTransaction,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reversed_payment_entry",
    )
    reversal_reason = models.CharField(max_length=300, blank=True)
    unallocated = money_field(default=Decimal(0), help_text="What no open statement took (a credit).")
    idempotency_key = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-payment_date", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(
                condition=Q(status="reversed", reversal__isnull=False)
                | Q(status="posted", reversal__isnull=True),
                name="payment_reversed_has_reversal",
            ),
        ]
        indexes = [models.Index(fields=["account", "-payment_date", "-id"], name="payment_account_recent")]

    def __str__(self) -> str:
        return f"Payment {self.amount} {self.currency} on {self.account_id}"


class PaymentAllocation(models.Model):
    """How much of a payment settled one statement. Allocations of a reversed payment are kept, marked."""

    payment = models.ForeignKey(Payment, on_delete=models.CASCADE, related_name="allocations")
    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="allocations")
    amount = money_field()
    reversed = models.BooleanField(default=False)

    class Meta:
        ordering = ["payment", "id"]
        constraints = [
            models.UniqueConstraint(fields=["payment", "statement"], name="allocation_one_per_statement"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="allocation_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} of payment {self.payment_id} to statement {self.statement_id}"


class AdjustmentReason(models.Model):
    """Why an adjustment is made (admin-configured reason codes, source 000: "define payment and adjustment
    methods and options")."""

    class Direction(models.TextChoices):
        CREDIT = "credit", "Credit only"
        DEBIT = "debit", "Debit only"
        BOTH = "both", "Credit or debit"

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    direction = models.CharField(max_length=10, choices=Direction.choices, default=Direction.BOTH)
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AdjustmentLimit(models.Model):
    """The largest adjustment a role's members (or one user) may post without a supervisor's approval, per
    currency. A user's own limit wins over their roles'; with neither, every adjustment needs approval."""

    role = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="adjustment_limits"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="adjustment_limits",
    )
    currency = currency_field()
    max_amount = money_field(help_text="Adjustments up to this amount (either sign) post at once.")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(role__isnull=False) & Q(user__isnull=True))
                | (Q(role__isnull=True) & Q(user__isnull=False)),
                name="adjustment_limit_role_or_user",
            ),
            models.CheckConstraint(condition=Q(max_amount__gte=0), name="adjustment_limit_not_negative"),
            models.UniqueConstraint(fields=["role", "currency"], name="adjustment_limit_one_per_role"),
            models.UniqueConstraint(fields=["user", "currency"], name="adjustment_limit_one_per_user"),
        ]

    def __str__(self) -> str:
        who = self.user or self.role
        return f"{who}: up to {self.max_amount} {self.currency}"


class Adjustment(models.Model):
    """A credit (lowers what the customer owes) or debit made by a CSR, with a reason, optionally for one
    statement line. Above the maker's limit it waits for a supervisor who is not the maker; only approved
    adjustments post (one ledger row of kind ADJUSTMENT)."""

    class Direction(models.TextChoices):
        CREDIT = "credit", "Credit"
        DEBIT = "debit", "Debit"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending approval"
        POSTED = "posted", "Posted"
        REJECTED = "rejected", "Rejected"
        REVERSED = "reversed", "Reversed (the biller rejected it)"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="adjustments")
    direction = models.CharField(max_length=10, choices=Direction.choices)
    amount = money_field(help_text="Positive; the direction gives the sign.")
    currency = currency_field()
    reason = models.ForeignKey(AdjustmentReason, on_delete=models.PROTECT, related_name="adjustments")
    note = models.CharField(max_length=300, blank=True)
    statement = models.ForeignKey(
        Statement, null=True, blank=True, on_delete=models.PROTECT, related_name="adjustment_entries"
    )
    statement_line = models.ForeignKey(
        StatementLine, null=True, blank=True, on_delete=models.PROTECT, related_name="adjustment_entries"
    )
    status = models.CharField(max_length=10, choices=Status.choices)
    transaction = models.OneToOneField(
        FinancialTransaction,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="adjustment_entry",
    )
    reversal = models.OneToOneField(
        FinancialTransaction,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reversed_adjustment_entry",
    )
    maker = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    checker = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decision_comment = models.CharField(max_length=300, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("approve_adjustment", "Can approve or reject adjustments above a CSR's limit")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="adjustment_amount_positive"),
            models.CheckConstraint(
                condition=~Q(status="posted") | Q(transaction__isnull=False), name="adjustment_posted_has_row"
            ),
            models.CheckConstraint(
                condition=Q(checker__isnull=True) | ~Q(checker=models.F("maker")),
                name="adjustment_checker_not_maker",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="adjustment_account_recent"),
            models.Index(fields=["status", "created_at"], name="adjustment_queue"),
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} {self.amount} {self.currency} on {self.account_id}"

    @property
    def signed_amount(self) -> Decimal:
        return -self.amount if self.direction == self.Direction.CREDIT else self.amount


class Refund(models.Model):
    """Money paid back to the customer out of a credit balance (one ledger row of kind REFUND, positive:
    the credit shrinks)."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="refunds")
    amount = money_field(help_text="Paid back (positive).")
    currency = currency_field()
    method = models.ForeignKey(
        PaymentMethod, null=True, blank=True, on_delete=models.PROTECT, related_name="refunds"
    )
    reason = models.CharField(max_length=300)
    transaction = models.OneToOneField(
        FinancialTransaction, on_delete=models.PROTECT, related_name="refund_entry"
    )
    idempotency_key = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive")]

    def __str__(self) -> str:
        return f"Refund {self.amount} {self.currency} to {self.account_id}"


class WriteOff(models.Model):
    """An uncollectable balance taken off the account (a supervisor's decision; one ledger row of kind
    WRITE_OFF, negative: what is owed shrinks)."""

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="write_offs")
    amount = money_field(help_text="Written off (positive).")
    currency = currency_field()
    reason = models.CharField(max_length=300)
    transaction = models.OneToOneField(
        FinancialTransaction, on_delete=models.PROTECT, related_name="write_off_entry"
    )
    idempotency_key = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("write_off_balance", "Can write off an uncollectable balance")]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="write_off_amount_positive")]

    def __str__(self) -> str:
        return f"Write-off {self.amount} {self.currency} on {self.account_id}"


class ExportItem(models.Model):
    """A payment, payment reversal or adjustment to send to the external biller of the account (an outbox
    row written in the entry's own transaction). Pushed to the biller's endpoint by a Celery task, or read
    by the biller from the API; the biller confirms or rejects it. ``export_id`` is stable: a biller that
    receives an export twice recognises the second."""

    class Kind(models.TextChoices):
        PAYMENT = "payment", "Payment"
        PAYMENT_REVERSAL = "payment_reversal", "Payment reversal"
        ADJUSTMENT = "adjustment", "Adjustment"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered (awaiting the biller's answer)"
        CONFIRMED = "confirmed", "Confirmed by the biller"
        REJECTED = "rejected", "Rejected by the biller"
        DEAD = "dead", "Failed (gave up; retry from admin)"

    export_id = models.UUIDField(unique=True, editable=False)
    biller = models.ForeignKey("accounts.Biller", on_delete=models.PROTECT, related_name="exports")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="exports")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    payment = models.ForeignKey(
        Payment, null=True, blank=True, on_delete=models.PROTECT, related_name="exports"
    )
    adjustment = models.ForeignKey(
        Adjustment, null=True, blank=True, on_delete=models.PROTECT, related_name="exports"
    )
    payload = models.JSONField(help_text="What is sent, frozen when the entry was made.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    rejection_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["payment", "kind"],
                condition=Q(payment__isnull=False),
                name="export_one_per_payment_kind",
            ),
            models.UniqueConstraint(
                fields=["adjustment"], condition=Q(adjustment__isnull=False), name="export_one_per_adjustment"
            ),
            models.CheckConstraint(
                condition=Q(payment__isnull=False) | Q(adjustment__isnull=False), name="export_has_an_entry"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="export_due"),
            models.Index(fields=["biller", "status", "created_at"], name="export_biller_queue"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} export {self.export_id} to {self.biller_id} ({self.status})"


class AutopayAttempt(models.Model):
    """One autopay charge of one statement that fell due: at most one per statement (a unique constraint),
    so a statement is never charged twice, whatever the beat job or a retried task does."""

    class Status(models.TextChoices):
        PENDING = "pending", "Being charged"
        SUCCEEDED = "succeeded", "Paid"
        DECLINED = "declined", "Declined"
        UNKNOWN = "unknown", "Unknown (the gateway did not answer; reconciled later)"
        NO_METHOD = "no_method", "No usable payment method"

    statement = models.OneToOneField(Statement, on_delete=models.PROTECT, related_name="autopay_attempt")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="autopay_attempts")
    method = models.ForeignKey(
        PaymentMethod, null=True, blank=True, on_delete=models.PROTECT, related_name="autopay_attempts"
    )
    amount = money_field()
    currency = currency_field()
    idempotency_key = models.CharField(max_length=100, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    payment = models.OneToOneField(
        Payment, null=True, blank=True, on_delete=models.PROTECT, related_name="autopay_attempt"
    )
    processor_reference = models.CharField(max_length=200, blank=True)
    message = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"], name="autopay_status")]

    def __str__(self) -> str:
        return f"Autopay of {self.statement_id}: {self.status}"
