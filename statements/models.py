"""What is owed: statements (bills) and their lines and usage, the ledger (FinancialTransaction), cached
balances, billers' own balance snapshots, and the state of collecting data from billers (pull)."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.models import Account, Biller
from billing_mgmt.money import currency_field, money_field, rate_field

QUANTITY_DIGITS = 19
QUANTITY_PLACES = 6


def quantity_field(**kwargs) -> models.DecimalField:
    """Quantities of usage and of lines (minutes, MB, kWh): six places, enough for metered units."""
    return models.DecimalField(max_digits=QUANTITY_DIGITS, decimal_places=QUANTITY_PLACES, **kwargs)


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
    # Not frozen: a row is tied to the statement it appeared on (a bill's own row at once; payments and
    # adjustments when a later bill sweeps them).
    statement = models.ForeignKey(
        "Statement", null=True, blank=True, on_delete=models.PROTECT, related_name="transactions"
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
        indexes = [
            models.Index(fields=["account", "balance_type", "posted_at"]),
            models.Index(fields=["account", "biller", "effective_date"], name="ledger_account_biller_date"),
        ]

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


class Channel(models.TextChoices):
    """How a record reached this product."""

    API = "api", "Pushed by the biller (API)"
    PULL = "pull", "Pulled from the biller"
    FILE = "file", "File drop"
    ENGINE = "engine", "Billed by this product"
    ADMIN = "admin", "Entered by an admin"


class Statement(models.Model):
    """A bill as the customer sees it, from one biller: header amounts, lines and usage.

    The amounts add up as the invoice does (source 003): ``total_due = previous_balance - payments +
    adjustments + new_charges + taxes`` (checked by the ingest service, exactly: every amount is already
    rounded to the currency's minor unit); ``payments`` is what was received (a positive number),
    ``adjustments`` is signed (negative is a credit). The ledger carries ``new_charges + taxes`` once, as a
    row of kind BILL (``statements.services.statement_ingest``); payments and adjustments reach the ledger
    as their own rows.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        PARTIALLY_PAID = "partially_paid", "Partially paid"
        PAID = "paid", "Paid"
        OVERDUE = "overdue", "Overdue"

    # Statuses after which a biller may no longer replace the statement silently.
    SETTLED_STATUSES = (Status.PAID, Status.PARTIALLY_PAID)

    number = models.CharField(max_length=40, help_text="The number printed on the bill.")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="statements")
    biller = models.ForeignKey(Biller, on_delete=models.PROTECT, related_name="statements")
    external_id = models.CharField(max_length=100, help_text="The biller's id for this statement.")
    statement_date = models.DateField()
    period_start = models.DateField()
    period_end = models.DateField()
    due_date = models.DateField()
    currency = currency_field()
    previous_balance = money_field(default=Decimal(0))
    payments = money_field(default=Decimal(0), help_text="Received since the previous bill (positive).")
    adjustments = money_field(default=Decimal(0), help_text="Signed: negative is a credit.")
    new_charges = money_field(default=Decimal(0), help_text="Charges of the period before tax.")
    taxes = money_field(default=Decimal(0))
    total_due = money_field(default=Decimal(0))
    disputed_amount = money_field(
        default=Decimal(0), help_text="Held out of past due while disputes are open (F7 maintains it)."
    )
    status = models.CharField(max_length=15, choices=Status.choices, default=Status.OPEN)
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.API)
    version = models.PositiveIntegerField(default=1, help_text="1, then +1 each time the biller replaces it.")
    content_hash = models.CharField(max_length=64, editable=False)
    received_at = models.DateTimeField(help_text="When this version arrived.")
    created_at = models.DateTimeField(auto_now_add=True)
    usage_detail_purged_at = models.DateTimeField(
        null=True, blank=True, help_text="When the retention job removed its usage lines (totals kept)."
    )
    corrects = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="corrections",
        help_text="A corrective bill (reversing or adjusting): the bill it corrects.",
    )

    class Meta:
        ordering = ["-statement_date", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["biller", "external_id"], name="statement_external_id_per_biller"
            ),
            models.UniqueConstraint(fields=["biller", "number"], name="statement_number_per_biller"),
            models.CheckConstraint(
                condition=Q(period_start__lte=models.F("period_end")), name="statement_period_in_order"
            ),
            models.CheckConstraint(
                condition=Q(due_date__gte=models.F("statement_date")), name="statement_due_after_date"
            ),
        ]
        indexes = [
            models.Index(fields=["account", "-statement_date", "-id"], name="statement_account_recent"),
            models.Index(fields=["statement_date", "biller"], name="statement_date_biller"),
            models.Index(fields=["status", "due_date"], name="statement_status_due"),
        ]

    def __str__(self) -> str:
        return f"Statement {self.number}"

    @property
    def ledger_amount(self) -> Decimal:
        """What the ledger carries for this statement: its charges of the period, tax included."""
        return self.new_charges + self.taxes

    @property
    def is_settled(self) -> bool:
        return self.status in self.SETTLED_STATUSES

    @property
    def is_disputed(self) -> bool:
        return self.disputed_amount != 0


class StatementLine(models.Model):
    """One charge, credit or tax on a statement, for a product or service (and a device or meter)."""

    class Type(models.TextChoices):
        RECURRING = "recurring", "Recurring"
        USAGE = "usage", "Usage"
        ONE_TIME = "one_time", "One-time"
        DISCOUNT = "discount", "Discount"
        TAX = "tax", "Tax"
        ADJUSTMENT = "adjustment", "Adjustment"
        OTHER = "other", "Other"

    # Line types whose amounts make up the statement's new charges (tax and adjustment lines add up to
    # the statement's taxes and adjustments instead).
    CHARGE_TYPES = (Type.RECURRING, Type.USAGE, Type.ONE_TIME, Type.DISCOUNT, Type.OTHER)

    # Read by statement through statement_line_position_unique (statement, position): no index of its own.
    # Lines are written in the hundreds of thousands by billing runs and bulk ingest, and every index is
    # written again for each; nothing reads lines by service or service type without their statement.
    # No database foreign-key constraints either (statement, account): the services write a statement's
    # lines in the transaction that writes the statement, and PostgreSQL checks a constraint with a query
    # per row at commit (7,800 lines of one billing chunk: 0.18 s of its 1.0 s posting). Django's on_delete
    # still applies to the ORM's deletes; tests check that no line names a missing statement or account.
    statement = models.ForeignKey(
        Statement, on_delete=models.CASCADE, related_name="lines", db_index=False, db_constraint=False
    )
    position = models.PositiveIntegerField(help_text="Order on the bill.")
    line_type = models.CharField(max_length=12, choices=Type.choices)
    product = models.CharField(max_length=200, blank=True, help_text="Product or service name.")
    service_identifier = models.CharField(
        max_length=100, blank=True, help_text="Phone number, meter, device, …"
    )
    service_type = models.SlugField(
        max_length=40,
        blank=True,
        db_index=False,
        help_text="Groups charges on the invoice, e.g. mobile, broadband.",
    )
    account = models.ForeignKey(
        Account,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,  # read by statement, never by account: an index would only slow bulk inserts
        db_constraint=False,
        help_text="In a hierarchy: the account whose service this is (a non-paying child's lines are on its "
        "paying parent's statement). Empty: the statement's own account.",
    )
    tax_included = models.BooleanField(
        default=False, help_text="A tax line for tax already contained in prices: shown, not added."
    )
    description = models.CharField(max_length=300, blank=True)
    quantity = quantity_field(null=True, blank=True)
    unit = models.CharField(max_length=20, blank=True)
    unit_price = rate_field(null=True, blank=True)
    amount = money_field()
    tax = money_field(default=Decimal(0))
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    external_id = models.CharField(max_length=100, blank=True)
    # The billing engine (billruns, an app above this one) prints each calculation line as one statement
    # line and records which here, instead of rewriting the calculation line afterwards. A plain id: this
    # app does not depend on the engine's models, and nothing looks lines up by it.
    calculation_line_id = models.BigIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text="Bills the engine made: the id of the calculation line this line prints. Empty for a "
        "biller's line.",
    )

    class Meta:
        ordering = ["statement", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["statement", "external_id"],
                condition=~Q(external_id=""),
                name="statement_line_external_id_unique",
            ),
            models.UniqueConstraint(fields=["statement", "position"], name="statement_line_position_unique"),
            models.CheckConstraint(
                condition=Q(period_start__isnull=True)
                | Q(period_end__isnull=True)
                | Q(period_start__lte=models.F("period_end")),
                name="statement_line_period_in_order",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_line_type_display()} {self.product or self.description} {self.amount}"


class UsageSummary(models.Model):
    """How much of one kind of usage a service used in a statement's period (voice minutes, data MB, kWh)."""

    # No database foreign-key constraint, as for the statement's lines (StatementLine.statement).
    statement = models.ForeignKey(
        Statement, on_delete=models.CASCADE, related_name="usage_summaries", db_constraint=False
    )
    service_identifier = models.CharField(max_length=100, blank=True)
    usage_type = models.SlugField(max_length=40, help_text="e.g. voice, data, sms, electricity.")
    quantity = quantity_field()
    unit = models.CharField(max_length=20, help_text="e.g. min, MB, msg, kWh.")
    included_quantity = quantity_field(
        null=True, blank=True, help_text="Allowance included in the plan, when the biller reports it."
    )

    class Meta:
        verbose_name_plural = "usage summaries"
        ordering = ["statement", "service_identifier", "usage_type"]
        constraints = [
            models.UniqueConstraint(
                fields=["statement", "service_identifier", "usage_type"], name="usage_summary_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service_identifier} {self.usage_type}: {self.quantity} {self.unit}"


class BillerBalanceSnapshot(models.Model):
    """A biller's own statement of what an account owes it at a moment. Kept, compared, never overwritten."""

    biller = models.ForeignKey(Biller, on_delete=models.PROTECT, related_name="balance_snapshots")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="biller_balance_snapshots")
    as_of = models.DateTimeField()
    amount = money_field(help_text="Positive: the customer owes the biller.")
    currency = currency_field()
    external_id = models.CharField(max_length=100, blank=True)
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.API)
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["-as_of", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["biller", "account", "as_of"], name="snapshot_one_per_moment"),
            models.UniqueConstraint(
                fields=["biller", "external_id"],
                condition=~Q(external_id=""),
                name="snapshot_external_id_per_biller",
            ),
        ]
        indexes = [models.Index(fields=["account", "biller", "-as_of"], name="snapshot_latest")]

    def __str__(self) -> str:
        return f"{self.biller_id}: {self.account_id} owes {self.amount} {self.currency} at {self.as_of}"


class BillerSync(models.Model):
    """Where collecting data from one pull biller stands: the watermark of the last successful load.

    A failed load keeps the watermark and records its error here (visible in admin); the next load starts
    again from the last good watermark. The schedule is a django-celery-beat PeriodicTask an admin can edit.
    """

    biller = models.OneToOneField(Biller, on_delete=models.CASCADE, related_name="sync")
    watermark = models.CharField(max_length=200, blank=True, help_text="Opaque 'changes since' token.")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The beat schedule that runs this pull.",
    )

    class Meta:
        verbose_name = "biller sync"

    def __str__(self) -> str:
        return f"Sync of {self.biller}"


class AccountSync(models.Model):
    """How fresh one account's data from one pull biller is (an account refresh keeps its own watermark)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="biller_syncs")
    biller = models.ForeignKey(Biller, on_delete=models.CASCADE, related_name="account_syncs")
    watermark = models.CharField(max_length=200, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "biller"], name="account_sync_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} from {self.biller_id}"


class PullRun(models.Model):
    """One load from one biller: scheduled, started by an admin, or an account refresh."""

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Started by an admin"
        ACCOUNT_REFRESH = "account_refresh", "Account refresh"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    biller = models.ForeignKey(Biller, on_delete=models.CASCADE, related_name="pull_runs")
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.CASCADE, related_name="pull_runs"
    )
    refresh = models.ForeignKey(
        "AccountRefresh", null=True, blank=True, on_delete=models.CASCADE, related_name="pull_runs"
    )
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    watermark_before = models.CharField(max_length=200, blank=True)
    watermark_after = models.CharField(max_length=200, blank=True)
    pages = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    rejections = models.JSONField(default=list, blank=True, help_text="The first rejected records and why.")

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["biller", "-started_at"], name="pull_run_recent")]

    def __str__(self) -> str:
        return f"Pull from {self.biller_id} at {self.started_at:%Y-%m-%d %H:%M} ({self.status})"


class AccountRefresh(models.Model):
    """A CSR's "Refresh from billers" for one account: queued, running, then done or failed."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="refreshes")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Refresh of {self.account_id} ({self.status})"


class DataRetention(models.Model):
    """Retention settings (one row, edited in admin). Off by default: nothing is removed until set."""

    usage_detail_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Remove usage lines of statements older than this many days (totals stay). Empty: keep.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "data retention"
        verbose_name_plural = "data retention"

    def __str__(self) -> str:
        days = self.usage_detail_days
        return f"Usage detail kept {days} days" if days else "Usage detail kept forever"

    @classmethod
    def current(cls) -> DataRetention:
        return cls.objects.order_by("pk").first() or cls()
