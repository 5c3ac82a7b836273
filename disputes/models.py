"""Cases, the service processes they are raised for, and disputes on statements (sources 002 and 000).

A **case** is a request a customer or a CSR raises (a billing inquiry, a charge dispute, a due-date extension,
a billing suspension), tracked by a number from the numbering kernel, with a status that moves through a state
machine (``disputes.services.CASE_TRANSITIONS``), an owner and a queue, a due date from its service process's
service level, and a history (``CaseEvent``, append-only in the database) of every status change and comment.

A **dispute** holds a disputed amount of one statement line (or a whole statement) out of past due, autopay
and collections while it is open (``Statement.disputed_amount`` is the sum of its open disputes); a supervisor
approves it in full or in part (a credit adjustment through payments, exported to the biller like any other)
or rejects it. Every charge dispute belongs to a case of a "charge dispute" service process.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.models import Account, Biller
from billing_mgmt.money import currency_field, money_field
from statements.models import Statement, StatementLine


class ServiceProcess(models.Model):
    """An entry of the catalog of service processes (the portal's Help Center lists the active ones):
    what a request is for, what approving it does, and how soon it must be answered."""

    class Action(models.TextChoices):
        INQUIRY = "inquiry", "Inquiry (answered, nothing changes by itself)"
        CHARGE_DISPUTE = "charge_dispute", "Charge dispute (a dispute record; approval credits)"
        EXTEND_DUE_DATE = "extend_due_date", "Extend invoice due date (approval moves the due date)"
        SUSPEND_BILLING = "suspend_billing", "Suspend billing (approval stops billing runs for the account)"

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, help_text="Shown to customers in the Help Center.")
    action = models.CharField(max_length=20, choices=Action.choices, default=Action.INQUIRY)
    queue = models.CharField(max_length=40, default="Billing", help_text="The team that works these cases.")
    service_level_hours = models.PositiveIntegerField(
        default=72, help_text="A new case is due this many hours after it is raised."
    )
    max_extension_days = models.PositiveSmallIntegerField(
        default=30, help_text="Extend due date only: the most days a due date may move."
    )
    portal = models.BooleanField(default=True, help_text="Customers may request it in the portal.")
    active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=100, help_text="Order in the Help Center.")

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def needs_statement(self) -> bool:
        return self.action in (self.Action.CHARGE_DISPUTE, self.Action.EXTEND_DUE_DATE)


class Case(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "New"
        IN_PROGRESS = "in_progress", "In progress"
        WAITING_ON_CUSTOMER = "waiting_on_customer", "Waiting on customer"
        RESOLVED = "resolved", "Resolved"
        REJECTED = "rejected", "Rejected"
        CLOSED = "closed", "Closed"

    # Statuses in which a case is still being worked (counts for the service level and the queue).
    OPEN_STATUSES = (Status.NEW, Status.IN_PROGRESS, Status.WAITING_ON_CUSTOMER)
    DECIDED_STATUSES = (Status.RESOLVED, Status.REJECTED)

    class Channel(models.TextChoices):
        CSR = "csr", "CSR"
        PORTAL = "portal", "Customer portal"
        API = "api", "API"

    number = models.CharField(max_length=20, unique=True, help_text="The tracking number.")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="cases")
    process = models.ForeignKey(ServiceProcess, on_delete=models.PROTECT, related_name="cases")
    subject = models.CharField(max_length=200)
    description = models.TextField(max_length=4000, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.NEW)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    queue = models.CharField(max_length=40)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="owned_cases"
    )
    due_at = models.DateTimeField(help_text="When the service level says it must be answered.")
    statement = models.ForeignKey(
        Statement, null=True, blank=True, on_delete=models.PROTECT, related_name="cases"
    )
    requested_due_date = models.DateField(
        null=True, blank=True, help_text="Extend due date: the due date asked for."
    )
    contact_email = models.EmailField(blank=True, help_text="Where the customer's e-mails go.")
    resolution = models.CharField(
        max_length=500, blank=True, help_text="The outcome, as the customer reads it."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    api_biller = models.ForeignKey(
        Biller, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The biller whose API client raised it.",
    )  # fmt: skip
    idempotency_key = models.CharField(max_length=100, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    actioned_at = models.DateTimeField(
        null=True, blank=True, help_text="When approving it acted (due date moved, billing suspended)."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("decide_case", "Can approve or reject service requests (due-date extensions, suspensions)"),
        ]
        indexes = [
            models.Index(fields=["account", "-created_at"], name="case_account_recent"),
            models.Index(fields=["status", "due_at"], name="case_status_due"),
        ]

    def __str__(self) -> str:
        return f"Case {self.number}"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


class CaseEvent(models.Model):
    """One line of a case's history: its creation, a status change, a comment, an assignment or a decision.
    Append-only (the database refuses updates of what happened and deletes); ``public`` events are the ones
    the customer sees in the portal and is e-mailed about."""

    class Kind(models.TextChoices):
        CREATED = "created", "Created"
        STATUS = "status", "Status changed"
        COMMENT = "comment", "Comment"
        ASSIGNED = "assigned", "Assigned"
        DISPUTE = "dispute", "Dispute decided"
        ACTION = "action", "Action taken"

    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    text = models.TextField(max_length=4000, blank=True)
    public = models.BooleanField(default=True, help_text="The customer sees it (internal notes are not).")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=200, help_text="Who, as shown in the history.")
    email_sent_at = models.DateTimeField(null=True, blank=True)
    email_to = models.EmailField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # Columns the database refuses to change once written (migration 0002); the e-mail columns are set later.
    FROZEN_COLUMNS = [
        "id", "case_id", "kind", "from_status", "to_status", "text", "public", "actor_id", "actor_label",
        "created_at",
    ]  # fmt: skip

    class Meta:
        ordering = ["case", "created_at", "id"]

    def __str__(self) -> str:
        return f"{self.case_id} {self.kind} {self.created_at:%Y-%m-%d %H:%M}"


class Dispute(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Open"
        APPROVED = "approved", "Approved in full"
        PARTIALLY_APPROVED = "partially_approved", "Approved in part"
        REJECTED = "rejected", "Rejected"

    case = models.OneToOneField(Case, on_delete=models.PROTECT, related_name="dispute")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="disputes")
    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="disputes")
    statement_line = models.ForeignKey(
        StatementLine,
        null=True,
        blank=True,
        # A biller may replace a statement once its disputes are decided; the dispute keeps what it was about.
        on_delete=models.SET_NULL,
        related_name="disputes",
        help_text="Empty: the whole statement is disputed.",
    )
    line_label = models.CharField(max_length=300, blank=True, help_text="What the line said, kept as raised.")
    line_amount = money_field(null=True, blank=True, help_text="The line's amount when it was disputed.")
    amount = money_field(help_text="The disputed amount (at most the line's).")
    currency = currency_field()
    reason = models.CharField(max_length=500)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    approved_amount = money_field(null=True, blank=True)
    adjustment = models.OneToOneField(
        "payments.Adjustment", null=True, blank=True, on_delete=models.PROTECT, related_name="dispute"
    )
    raised_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolution_note = models.CharField(max_length=500, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("resolve_dispute", "Can approve (credit) or reject disputes")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="dispute_amount_positive"),
            models.UniqueConstraint(
                fields=["statement_line"],
                condition=Q(status="open", statement_line__isnull=False),
                name="dispute_one_open_per_line",
            ),
            models.UniqueConstraint(
                fields=["statement"],
                condition=Q(status="open", statement_line__isnull=True),
                name="dispute_one_open_whole_statement",
            ),
            models.CheckConstraint(
                condition=Q(approved_amount__isnull=True)
                | (Q(approved_amount__gt=0) & Q(approved_amount__lte=models.F("amount"))),
                name="dispute_approved_within_amount",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["approved", "partially_approved"]) | Q(adjustment__isnull=False),
                name="dispute_approved_has_credit",
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="dispute_status_recent")]

    def __str__(self) -> str:
        return f"Dispute of {self.amount} {self.currency} on {self.statement_id}"

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN
