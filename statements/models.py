"""What is owed: the ledger (FinancialTransaction) and cached balances. Statements arrive with F2."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.models import Account, Biller
from billing_mgmt.money import currency_field, money_field


class BalanceType(models.TextChoices):
    RECEIVABLE = "receivable", "Receivable"
    WALLET = "wallet", "Prepaid wallet"


class FinancialTransaction(models.Model):
    """One immutable movement of money on an account.

    Sign convention: a positive amount increases what the customer owes (charges, debit adjustments,
    refunds paid out, reversals of payments); a negative amount decreases it (payments, credits, write-offs).
    For the wallet balance, positive is money in the wallet (top-ups) and negative is consumption.
    Rows are never updated in their amounts and never deleted (the database enforces it, migration 0002);
    a correction is a new row whose ``corrects`` points at the row it corrects.
    """

    class Kind(models.TextChoices):
        BILL = "bill", "Bill (new charges)"
        PAYMENT = "payment", "Payment"
        ADJUSTMENT = "adjustment", "Adjustment"
        REVERSAL = "reversal", "Reversal"
        REFUND = "refund", "Refund"
        WRITE_OFF = "write_off", "Write-off"
        DISPUTE_CREDIT = "dispute_credit", "Dispute credit"
        WALLET_TOPUP = "wallet_topup", "Wallet top-up"
        WALLET_DEBIT = "wallet_debit", "Wallet debit"
        OPENING_BALANCE = "opening_balance", "Opening balance"

    # Columns the database refuses to change once written (see migration 0002 and billing_mgmt.dbguards).
    FROZEN_COLUMNS = [
        "id", "account_id", "kind", "balance_type", "amount", "currency", "effective_date", "posted_at",
        "biller_id", "external_id", "idempotency_key", "corrects_id", "description", "created_by_id",
    ]  # fmt: skip

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="transactions")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    balance_type = models.CharField(
        max_length=10, choices=BalanceType.choices, default=BalanceType.RECEIVABLE
    )
    amount = money_field()
    currency = currency_field()
    effective_date = models.DateField(
        help_text="The business date of the movement (payment date, bill date)."
    )
    posted_at = models.DateTimeField(help_text="When it reached this ledger.")
    biller = models.ForeignKey(
        Biller,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="transactions",
        help_text="Where it came from; empty when entered in this product.",
    )
    external_id = models.CharField(max_length=100, blank=True, help_text="The biller's id for it.")
    idempotency_key = models.CharField(max_length=100, null=True, blank=True, unique=True)
    corrects = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="corrections"
    )
    description = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["-posted_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["biller", "external_id"],
                condition=~Q(external_id=""),
                name="ledger_external_id_unique_per_biller",
            ),
            models.CheckConstraint(condition=~Q(amount=Decimal(0)), name="ledger_amount_not_zero"),
            models.CheckConstraint(condition=~Q(corrects=models.F("id")), name="ledger_not_self_correcting"),
        ]
        indexes = [models.Index(fields=["account", "balance_type", "posted_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount} {self.currency} on {self.account_id}"


class AccountBalance(models.Model):
    """The cached sum of an account's ledger rows per balance type, updated in the posting transaction.

    ``reconcile_ledger`` proves it equal to the sum of rows; the ledger is the truth.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="balances")
    balance_type = models.CharField(
        max_length=10, choices=BalanceType.choices, default=BalanceType.RECEIVABLE
    )
    currency = currency_field()
    amount = money_field(default=Decimal(0))
    transaction_count = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "balance_type"], name="balance_one_per_account_and_type"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.balance_type}: {self.amount} {self.currency}"
