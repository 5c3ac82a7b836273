"""Kernel tables: number series and the audit trail."""

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models


class NumberSeries(models.Model):
    """A named, sequential series of human-facing numbers (accounts, statements, invoices, runs, cases).

    Gapless series (invoices, by law) hand out numbers under a row lock inside the caller's transaction, so a
    rolled-back transaction gives its number back. Other series may skip numbers on rollback in exchange for
    never blocking a concurrent transaction (a PostgreSQL sequence).
    """

    code = models.SlugField(max_length=50, unique=True, help_text="Name used by the code, e.g. 'invoice'.")
    name = models.CharField(max_length=100)
    prefix = models.CharField(
        max_length=20,
        blank=True,
        validators=[RegexValidator(r"^[A-Za-z0-9/_.-]*$", "Letters, digits, / _ . -")],
    )
    padding = models.PositiveSmallIntegerField(default=6, validators=[MinValueValidator(1)])
    next_value = models.PositiveBigIntegerField(default=1, validators=[MinValueValidator(1)])
    gapless = models.BooleanField(
        default=False, help_text="Every number is used exactly once, in order (required for invoice numbers)."
    )

    class Meta:
        verbose_name_plural = "number series"
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}{'0' * self.padding})"

    def format(self, value: int) -> str:
        return f"{self.prefix}{value:0{self.padding}d}"


class AuditRecord(models.Model):
    """Who did what, when, with the state before and after. Written by services in their transaction.

    The table is append-only: the database rejects UPDATE and DELETE (see migration 0002).
    """

    class ActorType(models.TextChoices):
        USER = "user", "User"
        API_CLIENT = "api_client", "API client"
        SYSTEM = "system", "System"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor_type = models.CharField(max_length=20, choices=ActorType.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=200, help_text="Username, API client name or task name.")
    action = models.CharField(
        max_length=100, help_text="Dotted verb, e.g. 'ledger.post' or 'account.update'."
    )
    object_type = models.CharField(max_length=100, help_text="app_label.model of the changed object.")
    object_id = models.CharField(max_length=64)
    account_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]

    def __str__(self) -> str:
        when = f"{self.created_at:%Y-%m-%d %H:%M}"
        return f"{when} {self.actor_label} {self.action} {self.object_type}#{self.object_id}"


class IdempotencyRecord(models.Model):
    """The first answer to a write sent with an ``Idempotency-Key`` header, replayed for repeats.

    One row per (client, key). The row is inserted in the same transaction as the write it guards, so a
    concurrent request with the same key waits on the unique index and then replays the committed answer;
    a failed write rolls its row back and the key can be used again. See billing_mgmt/api/idempotency.py.
    """

    client = models.CharField(max_length=100, help_text="Who sent it, e.g. 'biller:3' or 'user:12'.")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    request_hash = models.CharField(max_length=64, help_text="SHA-256 of method, path and body.")
    status_code = models.PositiveSmallIntegerField()
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "key"], name="idempotency_key_unique_per_client"),
        ]

    def __str__(self) -> str:
        return f"{self.client} {self.key} -> {self.status_code}"
