"""Billing runs (source 001): run definitions, runs and their life cycle, and what a run made.

A **run definition** (one active per run type) holds the defaults a run starts from and the limits it is
validated against. A **billing run** is created from the active definition, edited and deleted only while it
is Draft, then executed *up to a stage*, now or at a scheduled time, and continued later. The work of a
stage is split into **chunks** of bill units (accounts) that Celery workers take in parallel; a
**run account** row per bill unit says where that account stands in the run (and carries the database's
promise of one bill per bill unit and run); **exceptions** keep each account's errors while the run goes on;
**steps** are the results per stage.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from accounts.models import Account, AccountGroup
from billing_mgmt.money import currency_field, money_field
from statements.models import Statement

from .catalog import BillingFrequency, BillingTermScheme
from .subscriptions import Subscription


class RunType(models.TextChoices):
    NORMAL = "normal", "Normal (post-paid: bills)"
    PREPAID = "prepaid", "Prepaid (debits wallets)"


class Stage(models.TextChoices):
    """The steps of a run, in order. A prepaid run has two: rating, then debiting wallets (posting)."""

    RATING = "rating", "Identification & Rating"
    INVOICING = "invoicing", "Invoicing"
    POSTING = "posting", "Assembling & Posting"
    FORMATTING = "formatting", "Formatting"


NORMAL_STAGES = (Stage.RATING, Stage.INVOICING, Stage.POSTING, Stage.FORMATTING)
PREPAID_STAGES = (Stage.RATING, Stage.POSTING)


def stages_of(run_type: str) -> tuple[str, ...]:
    return PREPAID_STAGES if run_type == RunType.PREPAID else NORMAL_STAGES


# Multiple-choice criteria on the billing profile, stored as JSON lists of choice values (empty: all).
PROFILE_CRITERIA = {
    "ar_classifications": ("ar_classification", "AR classifications"),
    "payment_preferences": ("payment_preference", "payment preferences"),
    "presentment_preferences": ("presentment_preference", "presentment preferences"),
}


class CriteriaMixin(models.Model):
    """Which bill units a run bills (source 001 "Criteria"). An empty criterion means "all"."""

    billing_term_schemes = models.ManyToManyField(
        BillingTermScheme,
        blank=True,
        related_name="+",
        help_text="Only subscriptions on these billing term schemes (of the run's type). Empty: all.",
    )
    billing_frequencies = models.ManyToManyField(
        BillingFrequency,
        blank=True,
        related_name="+",
        help_text="Only subscriptions billed at these frequencies. Empty: all.",
    )
    ar_classifications = models.JSONField(
        default=list, blank=True, help_text="Only bill units with these AR classifications. Empty: all."
    )
    payment_preferences = models.JSONField(
        default=list, blank=True, help_text="Only bill units with these payment preferences. Empty: all."
    )
    presentment_preferences = models.JSONField(
        default=list, blank=True, help_text="Only bill units with these presentment preferences. Empty: all."
    )

    class Meta:
        abstract = True


class RunDefinition(CriteriaMixin):
    """The settings billing runs of one type start from (source 001 "Billing Run Definitions").

    At most one definition per run type is active (a partial unique constraint); a run can only be created
    while one is. A recurring definition has a django-celery-beat schedule that creates and executes the next
    run at each tick (``billruns.create_recurring_run``).
    """

    class TransactionDateRule(models.TextChoices):
        BILL_AS_OF = "bill_as_of", "The bill-as-of date"
        RUN_DATE = "run_date", "The date the run is created"

    class Sign(models.TextChoices):
        PLUS = "+", "+ (later)"
        MINUS = "-", "- (earlier)"

    name = models.CharField(max_length=100)
    run_type = models.CharField(max_length=10, choices=RunType.choices, default=RunType.NORMAL)
    active = models.BooleanField(default=True, help_text="One active definition per run type.")
    description = models.TextField(blank=True)
    bill_as_of_day = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(31)],
        help_text=(
            "Day of the month a run bills as of: the latest such day on or before the run's date (the last "
            "day of a shorter month). Empty: the run's date (prepaid runs always use the run's date)."
        ),
    )
    transaction_date_rule = models.CharField(
        max_length=12, choices=TransactionDateRule.choices, default=TransactionDateRule.BILL_AS_OF
    )
    transaction_date_offset_days = models.SmallIntegerField(
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(60)],
        help_text="Days added to the rule's date to give the posting (transaction) date.",
    )
    due_proximity_min_days = models.SmallIntegerField(
        default=0,
        validators=[MinValueValidator(-90), MaxValueValidator(90)],
        help_text="Earliest allowed due-date proximity: signed days from the due date of the payment terms.",
    )
    due_proximity_max_days = models.SmallIntegerField(
        default=0, validators=[MinValueValidator(-90), MaxValueValidator(90)], help_text="Latest allowed."
    )
    due_proximity_default_sign = models.CharField(max_length=1, choices=Sign.choices, default=Sign.PLUS)
    due_proximity_default_days = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(90)]
    )
    recurring = models.BooleanField(
        default=False, help_text="Beat creates and executes a run at each tick of the schedule below."
    )
    schedule = models.ForeignKey(
        "django_celery_beat.CrontabSchedule",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="When recurring runs are created (a django-celery-beat crontab, in the business's zone).",
    )
    recurring_up_to = models.CharField(
        max_length=12,
        choices=Stage.choices,
        default=Stage.FORMATTING,
        help_text="How far each recurring run is executed (prepaid runs always execute every step).",
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    run_formatting = models.BooleanField(
        default=True, help_text="Normal runs: the Formatting step renders the invoice documents."
    )
    estimate_wallet_consumption = models.BooleanField(
        default=True,
        help_text="Prepaid runs: estimate the date each wallet runs out (skip it for a faster run).",
    )
    chunk_size = models.PositiveIntegerField(
        default=500,
        validators=[MinValueValidator(1), MaxValueValidator(5000)],
        help_text="Bill units per unit of work spread over the workers.",
    )
    formatting_chunk_size = models.PositiveIntegerField(
        default=100,
        validators=[MinValueValidator(1), MaxValueValidator(5000)],
        help_text="Bill units per unit of work in the Formatting step. Rendering an invoice costs far more "
        "than billing it, so smaller units spread a run's invoices over every formatting worker.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run_type", "-active", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["run_type"], condition=Q(active=True), name="run_definition_one_active_per_type"
            ),
            models.CheckConstraint(
                condition=Q(due_proximity_min_days__lte=models.F("due_proximity_max_days")),
                name="run_definition_proximity_range_in_order",
            ),
            models.CheckConstraint(
                condition=Q(recurring=False) | Q(schedule__isnull=False),
                name="run_definition_recurring_has_schedule",
            ),
        ]

    def __str__(self) -> str:
        state = "" if self.active else " (inactive)"
        return f"{self.name}{state}"

    @property
    def due_proximity_default(self) -> int:
        days = int(self.due_proximity_default_days)
        return -days if self.due_proximity_default_sign == self.Sign.MINUS else days


class BillingRun(CriteriaMixin):
    """One billing run (source 001): its dates, criteria and filters, where it is in its life cycle, and
    its results. Writes go through billruns.services.runs (create, edit, delete, execute, resume)."""

    class Mode(models.TextChoices):
        BATCH = "batch", "BATCH"
        INDIVIDUAL = "individual", "INDIVIDUAL"

    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        RATING = "rating", "Identification & Rating"
        INVOICING = "invoicing", "Invoicing"
        POSTING = "posting", "Assembling & Posting"
        FORMATTING = "formatting", "Formatting"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        COMPLETED_WITH_ERRORS = "completed_with_errors", "Completed with errors"

    TERMINAL_STATES = (State.COMPLETED, State.FAILED, State.COMPLETED_WITH_ERRORS)

    class Execution(models.TextChoices):
        IDLE = "idle", "Idle"
        SCHEDULED = "scheduled", "Scheduled"
        RUNNING = "running", "Running"

    class Scheduling(models.TextChoices):
        ONE_TIME = "one_time", "One time"
        RECURRING = "recurring", "Recurring (from the definition's schedule)"

    number = models.CharField(max_length=30, unique=True, editable=False)
    definition = models.ForeignKey(RunDefinition, on_delete=models.PROTECT, related_name="runs")
    run_type = models.CharField(max_length=10, choices=RunType.choices, editable=False)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.BATCH)
    state = models.CharField(max_length=24, choices=State.choices, default=State.DRAFT, editable=False)
    execution = models.CharField(
        max_length=10, choices=Execution.choices, default=Execution.IDLE, editable=False
    )
    target_stage = models.CharField(
        max_length=12, choices=Stage.choices, blank=True, editable=False, help_text="Executing up to."
    )
    current_stage = models.CharField(
        max_length=12, choices=Stage.choices, blank=True, editable=False, help_text="The stage in progress."
    )
    scheduled_for = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="The latest time the run is scheduled to execute."
    )
    scheduling = models.CharField(max_length=10, choices=Scheduling.choices, default=Scheduling.ONE_TIME)
    schedule_key = models.CharField(
        max_length=60,
        null=True,
        blank=True,
        unique=True,
        editable=False,
        help_text="Recurring runs: one run per definition and bill-as-of date.",
    )
    bill_as_of_date = models.DateField(help_text="Periods that have started by this date are billed.")
    transaction_date = models.DateField(help_text="The bill date and the ledger's posting date.")
    due_date_proximity_sign = models.CharField(
        max_length=1, choices=RunDefinition.Sign.choices, default=RunDefinition.Sign.PLUS
    )
    due_date_proximity_days = models.PositiveSmallIntegerField(default=0)
    # Filters (source 001): when given, only these are billed.
    accounts = models.ManyToManyField(
        Account, blank=True, related_name="+", help_text="Only these accounts (their bill units)."
    )
    subscriptions = models.ManyToManyField(
        Subscription, blank=True, related_name="+", help_text="Only these subscriptions."
    )
    groups = models.ManyToManyField(
        AccountGroup, blank=True, related_name="+", help_text="Only the accounts in these groups."
    )
    # Results.
    accounts_selected = models.PositiveIntegerField(default=0, editable=False)
    bills_generated = models.PositiveIntegerField(default=0, editable=False)
    wallet_transactions = models.PositiveIntegerField(default=0, editable=False)
    exception_count = models.PositiveIntegerField(default=0, editable=False)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(transaction_date__gte=models.F("bill_as_of_date")),
                name="run_transaction_date_not_before_bill_as_of",
            ),
            models.CheckConstraint(
                condition=~Q(execution="scheduled") | Q(scheduled_for__isnull=False),
                name="run_scheduled_has_time",
            ),
        ]
        indexes = [models.Index(fields=["execution", "scheduled_for"], name="run_execution_due")]
        permissions = [
            ("execute_billingrun", "Can execute, schedule and resume billing runs"),
        ]

    def __str__(self) -> str:
        return f"Billing run {self.number}"

    @property
    def stages(self) -> tuple[str, ...]:
        return stages_of(self.run_type)

    @property
    def is_terminal(self) -> bool:
        return self.state in self.TERMINAL_STATES

    @property
    def due_date_proximity(self) -> int:
        days = int(self.due_date_proximity_days)
        return -days if self.due_date_proximity_sign == RunDefinition.Sign.MINUS else days

    @property
    def completed_stage_index(self) -> int:
        """How many of the run's stages are done (0 for a Draft run)."""
        if self.state == self.State.DRAFT:
            return 0
        if self.state in self.TERMINAL_STATES:
            return len(self.stages)
        return self.stages.index(self.state) + 1


class RunStep(models.Model):
    """The result of one stage of a run (source 001 "Results per step"): entities processed, financial
    transactions created and their totals (per currency), with live progress while it runs."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        SKIPPED = "skipped", "Skipped"

    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="steps")
    stage = models.CharField(max_length=12, choices=Stage.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    accounts_total = models.PositiveIntegerField(default=0)
    accounts_done = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    entities = models.PositiveIntegerField(
        default=0, help_text="What the step made: segments rated, invoices, bills, documents, debits."
    )
    exceptions = models.PositiveIntegerField(default=0)
    transactions = models.PositiveIntegerField(default=0, help_text="Financial transactions created.")
    totals = models.JSONField(default=dict, blank=True, help_text="Amounts per currency, as decimal strings.")
    note = models.CharField(max_length=300, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "started_at", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "stage"], name="run_step_one_per_stage")]

    def __str__(self) -> str:
        return f"{self.run} {self.get_stage_display()}"

    @property
    def percent(self) -> int:
        if not self.accounts_total:
            return 100 if self.status != self.Status.RUNNING else 0
        return int(100 * self.accounts_done / self.accounts_total)


class RunChunk(models.Model):
    """A unit of work: one stage of a run for a list of bill units, taken by one Celery task.

    The task claims the chunk in its own transaction (status RUNNING, ``attempts`` + 1, a lease), then does
    the work and marks it DONE in the work's transaction, so a chunk is done exactly once. A chunk whose
    worker died keeps RUNNING until its lease expires; resuming queues it again. After
    ``BILLRUN_CHUNK_MAX_ATTEMPTS`` attempts it is DEAD (the dead-letter state): its accounts get an
    exception and the run goes on.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        DEAD = "dead", "Dead (gave up after its attempts)"

    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="chunks")
    stage = models.CharField(max_length=12, choices=Stage.choices)
    index = models.PositiveIntegerField()
    account_ids = models.JSONField(help_text="The bill units (account ids) of this chunk, ascending.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "stage", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "stage", "index"], name="run_chunk_unique"),
        ]
        indexes = [models.Index(fields=["run", "stage", "status"], name="run_chunk_status")]

    def __str__(self) -> str:
        return f"{self.run} {self.stage} #{self.index} ({self.status})"


class RunAccount(models.Model):
    """One bill unit in one run: where it stands, and the bill (statement) the run made for it.

    Unique per run and account, and a statement belongs to at most one of them: one bill per bill unit and
    run, whatever retries and resumes happen.
    """

    class Status(models.TextChoices):
        RATED = "rated", "Rated"
        EXCEPTION = "exception", "Exception (not billed)"
        INVOICED = "invoiced", "Invoiced"
        NOTHING = "nothing", "Nothing to bill"
        POSTED = "posted", "Posted"
        FORMATTED = "formatted", "Formatted"
        DEBITED = "debited", "Wallet debited"

    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="run_accounts")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices)
    currency = currency_field(blank=True)
    segments = models.PositiveIntegerField(default=0)
    invoices = models.PositiveIntegerField(default=0, help_text="Subscriptions with charges on the bill.")
    new_charges = money_field(default=Decimal(0))
    taxes = money_field(default=Decimal(0))
    total_due = money_field(default=Decimal(0))
    statement = models.OneToOneField(
        Statement, null=True, blank=True, on_delete=models.PROTECT, related_name="run_account"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run", "account"]
        constraints = [
            models.UniqueConstraint(fields=["run", "account"], name="run_account_one_per_run"),
            models.CheckConstraint(
                condition=~Q(status__in=["posted", "formatted"]) | Q(statement__isnull=False),
                name="run_account_posted_has_statement",
            ),
        ]
        indexes = [models.Index(fields=["run", "status"], name="run_account_status")]

    def __str__(self) -> str:
        return f"{self.run} {self.account_id} ({self.status})"


class RunException(models.Model):
    """An account the run could not bill (or not fully), with the step, a code and a message (source 001
    "Exceptions"). The run goes on with the other accounts."""

    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="exceptions")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="+")
    stage = models.CharField(max_length=12, choices=Stage.choices)
    code = models.CharField(max_length=40)
    message = models.CharField(max_length=500)
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "account", "id"]
        indexes = [models.Index(fields=["run", "code"], name="run_exception_code")]

    def __str__(self) -> str:
        return f"{self.run} {self.account_id}: {self.code}"


class WalletEstimate(models.Model):
    """When an account's prepaid wallet is expected to run out (prepaid runs' optional estimation step):
    from the wallet balance, the recent daily usage consumption and the recurring charges to come."""

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="wallet_estimate")
    currency = currency_field()
    balance = money_field(help_text="The wallet balance when estimated.")
    daily_consumption = money_field(help_text="Average usage debited per day over the window.")
    recurring_per_period = money_field(
        default=Decimal(0), help_text="The next recurring charges (before tax), due on next_charge_on."
    )
    next_charge_on = models.DateField(
        null=True, blank=True, help_text="When the next recurring charges fall."
    )
    window_days = models.PositiveSmallIntegerField(default=30)
    runs_out_on = models.DateField(
        null=True, blank=True, help_text="Empty: not within the horizon at the present consumption."
    )
    estimated_at = models.DateTimeField()
    run = models.ForeignKey(BillingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["account"]
        permissions = [("topup_wallet", "Can top up a prepaid wallet")]

    def __str__(self) -> str:
        return f"Wallet of {self.account_id} runs out on {self.runs_out_on or 'not soon'}"
