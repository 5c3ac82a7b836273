"""Invoice documents arrive with F5. For now: bill messages, which a bill takes when it is created (source
004: "links all bill messages to the bill"), so the invoice can print them later exactly as they were."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from accounts.models import Account, BillingProfile
from statements.models import Statement


class BillMessage(models.Model):
    """A message printed on bills: for everyone, or for one account type or AR classification, over a span."""

    code = models.SlugField(max_length=40, unique=True)
    text = models.TextField()
    priority = models.PositiveSmallIntegerField(default=100, help_text="Lower prints first.")
    account_type = models.CharField(
        max_length=20, choices=Account.Type.choices, blank=True, help_text="Empty: every account type."
    )
    ar_classification = models.CharField(
        max_length=15,
        choices=BillingProfile.ARClassification.choices,
        blank=True,
        help_text="Empty: every classification.",
    )
    valid_from = models.DateField()
    valid_to = models.DateField(null=True, blank=True, help_text="Inclusive; empty: open-ended.")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["priority", "code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_from__lte=models.F("valid_to")),
                name="bill_message_dates_in_order",
            )
        ]

    def __str__(self) -> str:
        return self.code


class StatementMessage(models.Model):
    """A bill message as it was attached to one bill (the text is copied: later edits do not change it)."""

    statement = models.ForeignKey(Statement, on_delete=models.CASCADE, related_name="messages")
    message = models.ForeignKey(
        BillMessage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    position = models.PositiveSmallIntegerField()
    text = models.TextField()

    class Meta:
        ordering = ["statement", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["statement", "position"], name="statement_message_position_unique"
            )
        ]

    def __str__(self) -> str:
        return self.text[:60]
