"""What the rating engine makes: a bill segment per subscription and period, with its calculation lines."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import Q

from billing_mgmt.money import currency_field, money_field, rate_field
from statements.models import FinancialTransaction, Statement, quantity_field

from .catalog import Discount, PlanComponent, TaxRate, UsageType
from .subscriptions import Subscription


class BillSegment(models.Model):
    """The charges of one subscription for one billing period.

    One per subscription and period (a unique constraint), so rating again or a redelivered task never bills
    a period twice. A segment carries the period's advance recurring charges, the previous period's arrears
    charges and usage, one-time charges that fell due, and credits for days billed in advance after a
    cancellation; every line says which days it is for. A segment that could not be rated is saved with its
    error (status ERROR, no lines) and rated again next time; a billed segment is frozen on its statement.
    """

    class Status(models.TextChoices):
        RATED = "rated", "Rated"
        ERROR = "error", "Error"
        BILLED = "billed", "Billed (frozen)"
        DEBITED = "debited", "Debited from the prepaid wallet"

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="segments")
    period_start = models.DateField()
    period_end = models.DateField()
    status = models.CharField(max_length=10, choices=Status.choices)
    currency = currency_field()
    charges = money_field(default=Decimal(0), help_text="Recurring, usage and one-time lines and credits.")
    discounts = money_field(default=Decimal(0), help_text="Negative.")
    taxes = money_field(default=Decimal(0), help_text="Added taxes and taxes contained in prices.")
    taxes_included = money_field(default=Decimal(0), help_text="The part of taxes already in the prices.")
    total = money_field(default=Decimal(0), help_text="charges + discounts + taxes - taxes_included.")
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    statement = models.ForeignKey(
        Statement, null=True, blank=True, on_delete=models.PROTECT, related_name="segments"
    )
    wallet_transaction = models.OneToOneField(
        FinancialTransaction,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="prepaid_segment",
        help_text="Prepaid subscriptions: the wallet debit that charged this segment (none for 0.00).",
    )
    billing_run = models.ForeignKey(
        "billruns.BillingRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="segments",
        help_text="The run that rated it (empty: bill now or a preview).",
    )
    rated_at = models.DateTimeField()
    frozen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["subscription", "period_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "period_start"], name="segment_one_per_subscription_period"
            ),
            models.CheckConstraint(
                condition=Q(period_start__lte=models.F("period_end")), name="segment_period_in_order"
            ),
            models.CheckConstraint(
                condition=~Q(status="billed") | Q(statement__isnull=False),
                name="segment_billed_has_statement",
            ),
            models.CheckConstraint(
                condition=~Q(status="error") | ~Q(error_code=""), name="segment_error_has_code"
            ),
            models.CheckConstraint(
                condition=~Q(status="debited") | Q(wallet_transaction__isnull=False) | Q(total=0),
                name="segment_debited_has_wallet_transaction",
            ),
        ]
        indexes = [models.Index(fields=["status", "subscription"], name="segment_status")]

    def __str__(self) -> str:
        return f"{self.subscription} {self.period_start}–{self.period_end} ({self.status})"

    @property
    def new_charges(self) -> Decimal:
        """What the bill shows as new charges (before added tax; prices that contain tax lose it here)."""
        return self.charges + self.discounts - self.taxes_included


class CalculationLine(models.Model):
    """One step of a segment's calculation: quantity x rate x proration factor = amount, for a period.

    ``amount`` is rounded to the currency's minor units (ROUND_HALF_UP) when the line is made; a segment's
    totals are sums of its lines. A tax line marked ``included`` shows tax already contained in prices and
    does not add to the total.
    """

    class Kind(models.TextChoices):
        RECURRING = "recurring", "Recurring"
        USAGE = "usage", "Usage"
        ONE_TIME = "one_time", "One-time"
        CREDIT = "credit", "Credit (days billed in advance after the end)"
        PRIOR = "prior", "Already billed for this period"
        ALLOWANCE = "allowance", "Included units"
        DISCOUNT = "discount", "Discount"
        TAX = "tax", "Tax"

    # Kinds whose amounts are the segment's charges (discounts and taxes are their own totals).
    CHARGE_KINDS = (Kind.RECURRING, Kind.USAGE, Kind.ONE_TIME, Kind.CREDIT, Kind.PRIOR, Kind.ALLOWANCE)

    # The foreign keys' indexes are the ones in Meta: a run writes tens of thousands of lines per chunk and
    # every index entry costs (the segment's is the unique (segment, position) index; the others leave out
    # the lines without the key). No database foreign-key constraints: rating writes a segment's lines in
    # the transaction that writes the segment, from catalog rows it has just read, and PostgreSQL checks a
    # constraint with a query per row at commit (7,800 lines of one chunk, two keys each: 0.17 s of its
    # 1.9 s rating). PROTECT and CASCADE still apply to the ORM's deletes, the database refuses to delete a
    # line at all (migration 0002), and tests check that no line names a missing row.
    segment = models.ForeignKey(
        BillSegment, on_delete=models.CASCADE, related_name="lines", db_index=False, db_constraint=False
    )
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    component = models.ForeignKey(
        PlanComponent,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    discount = models.ForeignKey(
        Discount,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    tax_rate = models.ForeignKey(
        TaxRate,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    description = models.CharField(max_length=300)
    quantity = quantity_field(null=True, blank=True)
    unit = models.CharField(max_length=20, blank=True)
    rate = rate_field(null=True, blank=True, help_text="Price per unit or per period, or a percent.")
    proration_factor = models.DecimalField(
        max_digits=12, decimal_places=10, null=True, blank=True, help_text="Days charged / days in period."
    )
    base = money_field(null=True, blank=True, help_text="Discounts and taxes: the amount they apply to.")
    amount = money_field()
    included = models.BooleanField(default=False, help_text="Tax contained in prices (not added).")
    period_start = models.DateField()
    period_end = models.DateField()

    class Meta:
        ordering = ["segment", "position"]
        constraints = [
            models.UniqueConstraint(fields=["segment", "position"], name="calc_line_position_unique"),
            models.CheckConstraint(
                condition=Q(period_start__lte=models.F("period_end")), name="calc_line_period_in_order"
            ),
        ]
        indexes = [
            models.Index(fields=[name], name=f"calc_line_{name}", condition=Q(**{f"{name}__isnull": False}))
            for name in ("component", "discount", "tax_rate")
        ]

    def __str__(self) -> str:
        return f"{self.description}: {self.amount}"


class SegmentUsage(models.Model):
    """The units of one usage type a segment rated: the sum of the usage records linked to it (RatedUsage),
    written by rating with the segment, so that the bill's usage summary reads a row per segment and usage
    type instead of every record (33,600 records per chunk of 500 bill units). No database foreign-key
    constraints, as for the links (billruns.models.subscriptions)."""

    segment = models.ForeignKey(
        BillSegment,
        on_delete=models.CASCADE,
        related_name="usage_totals",
        db_index=False,
        db_constraint=False,
    )
    usage_type = models.ForeignKey(
        UsageType, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    quantity = quantity_field()
    unit = models.CharField(max_length=20)

    class Meta:
        verbose_name = "usage rated on a segment"
        verbose_name_plural = "usage rated on segments"
        constraints = [models.UniqueConstraint(fields=["segment", "usage_type"], name="segment_usage_unique")]

    def __str__(self) -> str:
        return f"segment {self.segment_id}: {self.quantity} {self.unit}"
