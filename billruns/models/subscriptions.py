"""Subscriptions (an account's contract for a price plan on a service identifier) and the usage records
rated against them."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from accounts.models import Account
from statements.models import quantity_field

from .catalog import BillingFrequency, BillingTermScheme, PricePlan, TaxJurisdiction, UsageType


class Subscription(models.Model):
    """An account's subscription to a price plan for one service (a phone number, a meter).

    Periods follow the bill unit's bill cycle day and the subscription's frequency; ``start_date`` and
    ``end_date`` are inclusive service days. ``billed_through`` is the end of the last period that a bill
    carries (for arrears and usage, the period before it). Writes go through billruns.services.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        CANCELLED = "cancelled", "Cancelled"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="subscriptions")
    price_plan = models.ForeignKey(PricePlan, on_delete=models.PROTECT, related_name="subscriptions")
    service_identifier = models.CharField(
        max_length=100, db_index=True, help_text="Phone number, meter, circuit: what usage records name."
    )
    start_date = models.DateField()
    end_date = models.DateField(null=True, blank=True, help_text="Last day of service (inclusive).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    billing_term_scheme = models.ForeignKey(
        BillingTermScheme, on_delete=models.PROTECT, related_name="subscriptions"
    )
    frequency = models.ForeignKey(BillingFrequency, on_delete=models.PROTECT, related_name="subscriptions")
    processing_sequence = models.PositiveIntegerField(
        default=100, help_text="Subscriptions of an account are rated in this order (lowest first)."
    )
    tax_jurisdiction = models.ForeignKey(
        TaxJurisdiction,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="subscriptions",
        help_text="Where the service is supplied; empty: from the billing address.",
    )
    billed_through = models.DateField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account", "processing_sequence", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(end_date__isnull=True) | Q(start_date__lte=models.F("end_date")),
                name="subscription_dates_in_order",
            ),
            models.CheckConstraint(
                condition=~Q(status="cancelled") | Q(end_date__isnull=False),
                name="subscription_cancelled_has_end",
            ),
        ]
        indexes = [models.Index(fields=["service_identifier", "start_date"], name="subscription_service")]
        permissions = [
            ("bill_account", "Can bill an account now (creates and posts a bill)"),
            ("preview_bill", "Can preview an account's next bill"),
        ]

    def __str__(self) -> str:
        return f"{self.service_identifier} on {self.price_plan.name}"

    @property
    def currency(self) -> str:
        return self.price_plan.currency

    def is_active_on(self, day) -> bool:
        return self.start_date <= day and (self.end_date is None or day <= self.end_date)


class UsageRecord(models.Model):
    """One usage event (a call, a data session, a meter read) from a source such as a mediation system.

    Idempotent by (source, external id). A record that matches no subscription, or is not valid for the one
    it names, is kept as REJECTED with its reason, listed in admin and reprocessed after the fix. An
    ACCEPTED record waits for rating; rating sets its segment and status RATED.
    """

    class Status(models.TextChoices):
        ACCEPTED = "accepted", "Accepted (waiting for rating)"
        RATED = "rated", "Rated"
        REJECTED = "rejected", "Rejected"

    source = models.CharField(max_length=60, help_text="Who sent it: a biller code, or a file for imports.")
    external_id = models.CharField(max_length=100)
    # No index of its own: the index usage_to_rate (subscription, status, event_date) starts with it, and
    # every index is written again when rating marks millions of records rated.
    subscription = models.ForeignKey(
        Subscription,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="usage_records",
        db_index=False,
    )
    service_identifier = models.CharField(max_length=100, blank=True)
    usage_type_code = models.CharField(max_length=40, help_text="As sent.")
    usage_type = models.ForeignKey(
        UsageType, null=True, blank=True, on_delete=models.PROTECT, related_name="usage_records"
    )
    quantity = quantity_field()
    unit = models.CharField(max_length=20)
    event_time = models.DateTimeField()
    event_date = models.DateField(help_text="The business day of the event (billing periods are days).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACCEPTED)
    rejection_code = models.CharField(max_length=40, blank=True)
    rejection_reason = models.CharField(max_length=300, blank=True)
    # Indexed by usage_segment, which leaves out the records not rated yet (no entry written at ingest).
    segment = models.ForeignKey(
        "billruns.BillSegment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="usage_records",
        db_index=False,
    )
    subscription_ref = models.CharField(
        max_length=40, blank=True, help_text="The subscription id as sent (kept for reprocessing)."
    )
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["-event_time", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="usage_record_unique_per_source"),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="usage_quantity_not_negative"),
            models.CheckConstraint(
                condition=Q(status="rejected") | Q(subscription__isnull=False),
                name="usage_accepted_has_subscription",
            ),
        ]
        indexes = [
            models.Index(fields=["subscription", "status", "event_date"], name="usage_to_rate"),
            # Records waiting or rejected, newest first (admin and API status filters, reprocessing). Rated
            # records are left out: rating moves a record out of this index instead of writing a new entry
            # (millions of records per run), and "rated" is most of the table, which no index narrows.
            models.Index(
                fields=["status", "received_at"], name="usage_status_recent", condition=~Q(status="rated")
            ),
            models.Index(fields=["source", "-event_time"], name="usage_source_recent"),
            models.Index(fields=["event_date"], name="usage_event_date"),
            models.Index(fields=["segment"], name="usage_segment", condition=Q(segment__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id} {self.quantity} {self.unit}"
