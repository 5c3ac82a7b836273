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


class UsageRecordQuerySet(models.QuerySet):
    def with_status(self, status: str) -> UsageRecordQuerySet:
        """The records in this status as the API and admin name it: accepted (still waiting for rating),
        rated (linked to a segment) or rejected; each an indexed look-up, never a scan of the table."""
        if status == UsageRecord.Status.REJECTED:
            return self.filter(status=status)
        if status == UsageRecord.Status.RATED:
            return self.filter(rating__isnull=False)
        if status == UsageRecord.Status.ACCEPTED:
            return self.filter(waiting__isnull=False)
        raise ValueError(f"Unknown usage record status {status!r}.")


class UsageRecord(models.Model):
    """One usage event (a call, a data session, a meter read) from a source such as a mediation system.

    Idempotent by (source, external id). A record that matches no subscription, or is not valid for the one
    it names, is kept as REJECTED with its reason, listed in admin and reprocessed after the fix. An
    ACCEPTED record waits for rating (a ``UsageToRate`` row); rating links it to its segment (a
    ``RatedUsage`` row) and never rewrites the record itself: a record is written once, at ingest.

    ``status`` (the column) says whether the record matched: accepted or rejected. What the API and admin
    call its status adds "rated": ``rating_status``.
    """

    class Status(models.TextChoices):
        """The record's status as the API and admin show it (the column holds only the first and last)."""

        ACCEPTED = "accepted", "Accepted (waiting for rating)"
        RATED = "rated", "Rated"
        REJECTED = "rejected", "Rejected"

    MATCHING = [("accepted", "Accepted"), ("rejected", "Rejected")]

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
    status = models.CharField(max_length=10, choices=MATCHING, default=Status.ACCEPTED)
    rejection_code = models.CharField(max_length=40, blank=True)
    rejection_reason = models.CharField(max_length=300, blank=True)
    subscription_ref = models.CharField(
        max_length=40, blank=True, help_text="The subscription id as sent (kept for reprocessing)."
    )
    received_at = models.DateTimeField()

    objects = UsageRecordQuerySet.as_manager()

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
            # A subscription's records by day: the API's per-subscription lists, usage already rated in a
            # period that receives late usage.
            models.Index(fields=["subscription", "status", "event_date"], name="usage_subscription"),
            # Rejected records, newest first (admin and API status filters, reprocessing): the few that are.
            models.Index(
                fields=["status", "received_at"], name="usage_rejected_recent", condition=Q(status="rejected")
            ),
            models.Index(fields=["source", "-event_time"], name="usage_source_recent"),
            models.Index(fields=["event_date"], name="usage_event_date"),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id} {self.quantity} {self.unit}"

    @property
    def rating_status(self) -> str:
        """accepted (waiting for rating), rated or rejected (one query unless ``rating`` was selected)."""
        if self.status == self.Status.REJECTED:
            return self.Status.REJECTED
        return self.Status.RATED if self.rated_segment_id is not None else self.Status.ACCEPTED

    @property
    def rated_segment_id(self) -> int | None:
        """The bill segment that rated the record, if any."""
        try:
            return self.rating.segment_id
        except RatedUsage.DoesNotExist:
            return None


# Both tables below are written only by the usage and rating services, in the transaction that writes the
# record or the segment they name, and are read by joining those. They carry no database foreign-key
# constraint on purpose: PostgreSQL checks a foreign key with a trigger per row, and rating links millions of
# records per run (measured on 33,600 records, one rating unit of work: 59 ms without the two checks, 345 ms
# with them). Django's on_delete still protects them from the ORM's deletes.


class UsageToRate(models.Model):
    """A usage record waiting for rating, with what rating reads of it: written with the ACCEPTED record (or
    when reprocessing accepts it), deleted when a segment rates it or the record is rejected.

    Rating finds a subscription's waiting usage here instead of in the usage table, so that rating never
    rewrites a usage record (an UPDATE of a record writes a new entry in each of its indexes)."""

    usage_record = models.OneToOneField(
        UsageRecord, primary_key=True, on_delete=models.CASCADE, related_name="waiting", db_constraint=False
    )
    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    event_date = models.DateField()
    usage_type = models.ForeignKey(
        UsageType, null=True, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    quantity = quantity_field()

    class Meta:
        verbose_name = "usage record waiting for rating"
        verbose_name_plural = "usage records waiting for rating"
        indexes = [models.Index(fields=["subscription", "event_date"], name="usage_to_rate")]

    def __str__(self) -> str:
        return f"usage record {self.usage_record_id} (waiting)"


class RatedUsage(models.Model):
    """Which bill segment rated a usage record: one row per rated record, written by rating, never changed."""

    usage_record = models.OneToOneField(
        UsageRecord, primary_key=True, on_delete=models.PROTECT, related_name="rating", db_constraint=False
    )
    segment = models.ForeignKey(
        "billruns.BillSegment", on_delete=models.PROTECT, related_name="rated_usage", db_constraint=False
    )

    class Meta:
        verbose_name = "rated usage record"
        verbose_name_plural = "rated usage records"

    def __str__(self) -> str:
        return f"usage record {self.usage_record_id} on segment {self.segment_id}"
