"""Invoice documents (source 003): the rendering of a bill as PDF, HTML and XML, numbered from a gapless
series per legal entity, in the account's language, stored as frozen files and delivered by each bill routing
(source 004). Also bill messages, which a bill takes when it is created ("links all bill messages to the
bill"), so the invoice prints them exactly as they were."""

from __future__ import annotations

from django.core.files.storage import storages
from django.core.signals import setting_changed
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.dispatch import receiver
from django.utils.functional import LazyObject, empty

from accounts.models import Account, BillingProfile, Contact
from billing_mgmt.models import NumberSeries
from billing_mgmt.money import currency_field, money_field
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


class InvoiceSeries(models.Model):
    """A legal entity that issues invoices, with its own gapless number series (tax law: every number used
    exactly once, in order). The series for an account type, or the default one (account type empty)."""

    code = models.SlugField(max_length=30, unique=True)
    legal_name = models.CharField(max_length=200, help_text="The issuer printed on the invoice.")
    address = models.TextField(blank=True, help_text="The issuer's address, one line per line.")
    tax_id = models.CharField(max_length=40, blank=True, help_text="VAT or tax registration number.")
    account_type = models.CharField(
        max_length=20, choices=Account.Type.choices, blank=True, help_text="Empty: the default series."
    )
    number_series = models.OneToOneField(
        NumberSeries,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        help_text="The gapless counter (its prefix and padding are edited under Number series).",
    )
    active = models.BooleanField(default=True)

    class Meta:
        verbose_name_plural = "invoice series"
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(
                fields=["account_type"], condition=Q(active=True), name="invoice_series_one_active_per_type"
            )
        ]

    def __str__(self) -> str:
        return f"{self.legal_name} ({self.code})"


class InvoiceTemplate(models.Model):
    """How invoices look for an account type (the default: account type empty). A template's changes apply
    to invoices rendered after them; issued invoices are stored files and never change."""

    class Layout(models.TextChoices):
        STANDARD = "standard", "Standard (summary page, then details)"
        COMPACT = "compact", "Compact (one column, smaller type)"

    code = models.SlugField(max_length=30, unique=True)
    name = models.CharField(max_length=100)
    layout = models.CharField(max_length=20, choices=Layout.choices, default=Layout.STANDARD)
    account_type = models.CharField(
        max_length=20, choices=Account.Type.choices, blank=True, help_text="Empty: the default template."
    )
    accent_color = models.CharField(
        max_length=7,
        default="#1f4e79",
        validators=[RegexValidator(r"^#[0-9a-fA-F]{6}$", "A colour such as #1f4e79.")],
    )
    header_text = models.CharField(max_length=200, blank=True, help_text="Printed under the issuer's name.")
    footer_text = models.TextField(blank=True, help_text="Printed at the foot of every page.")
    support_phone = models.CharField(
        max_length=40, blank=True, help_text="Empty: SUPPORT_CONTACT from the settings."
    )
    extra_css = models.TextField(
        blank=True,
        help_text="Print CSS added after the layout's own (no external URLs: they are not fetched).",
    )
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(
                fields=["account_type"], condition=Q(active=True), name="invoice_template_one_active_per_type"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def template_name(self) -> str:
        return f"invoicing/documents/{self.layout}.html"


class InvoicingSettings(models.Model):
    """Invoicing thresholds and delivery retries (one row, edited in admin)."""

    child_line_threshold = models.PositiveIntegerField(
        default=50,
        help_text="Consolidated invoices: a non-paying child with more lines than this is summarized "
        "(one line per product) instead of itemized.",
    )
    usage_event_limit = models.PositiveIntegerField(
        default=200,
        help_text="Detailed invoices: at most this many usage events are itemized per service.",
    )
    email_max_attempts = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(1)], help_text="E-mail deliveries give up after this many."
    )
    email_retry_minutes = models.PositiveIntegerField(
        default=15,
        validators=[MinValueValidator(1)],
        help_text="First wait before a failed e-mail is retried (doubled after each failure).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "invoicing settings"
        verbose_name_plural = "invoicing settings"

    def __str__(self) -> str:
        return "Invoicing settings"

    @classmethod
    def current(cls) -> InvoicingSettings:
        return cls.objects.order_by("pk").first() or cls()


class _InvoiceStorage(LazyObject):
    """Where invoice documents are kept: the ``invoices`` storage of settings.STORAGES (local disk by
    default, object storage through django-storages in production; docs/invoicing.md). Resolved on first
    use and again after a settings change (tests point it at a temporary folder), as Django's
    default_storage is."""

    def _setup(self) -> None:
        self._wrapped = storages["invoices"]


_invoice_storage = _InvoiceStorage()


def invoice_storage() -> _InvoiceStorage:
    return _invoice_storage


@receiver(setting_changed)
def _storages_changed(*, setting: str, **kwargs) -> None:
    if setting == "STORAGES":
        _invoice_storage._wrapped = empty


def _document_path(invoice: Invoice, extension: str) -> str:
    day = invoice.invoice_date
    return f"{invoice.series.code}/{day:%Y}/{day:%m}/{invoice.number}.{extension}"


class Invoice(models.Model):
    """The invoice document of one bill. The number is taken (gapless) when the invoice is issued; its
    files are rendered once and kept: an issued invoice is never rendered again."""

    class Kind(models.TextChoices):
        INVOICE = "invoice", "Invoice"
        CREDIT_NOTE = "credit_note", "Credit note (corrective invoice)"

    class Format(models.TextChoices):
        DETAILED = "detailed", "Detailed (items and usage events)"
        SUMMARY = "summary", "Summary (items only)"

    class Status(models.TextChoices):
        ISSUED = "issued", "Issued (documents being rendered)"
        RENDERED = "rendered", "Rendered"
        FAILED = "failed", "Rendering failed (retried)"

    statement = models.OneToOneField(Statement, on_delete=models.PROTECT, related_name="invoice")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="invoices")
    series = models.ForeignKey(InvoiceSeries, on_delete=models.PROTECT, related_name="invoices")
    # Unique across series: each series (legal entity) has its own prefix (invoice_series_create refuses a
    # prefix another series uses), so a number names one invoice wherever it is quoted.
    number = models.CharField(max_length=40, unique=True)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.INVOICE)
    corrects = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="corrections",
        help_text="A credit note: the invoice it corrects.",
    )
    format = models.CharField(max_length=10, choices=Format.choices)
    language = models.CharField(max_length=10)
    locale = models.CharField(max_length=20)
    template = models.ForeignKey(
        InvoiceTemplate, null=True, blank=True, on_delete=models.SET_NULL, related_name="invoices"
    )
    invoice_date = models.DateField()
    currency = currency_field()
    total_due = money_field()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ISSUED)
    pdf = models.FileField(max_length=300, blank=True, storage=invoice_storage)
    html = models.FileField(max_length=300, blank=True, storage=invoice_storage)
    xml = models.FileField(max_length=300, blank=True, storage=invoice_storage)
    pdf_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    html_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    xml_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    page_count = models.PositiveSmallIntegerField(null=True, blank=True)
    render_attempts = models.PositiveSmallIntegerField(default=0)
    render_error = models.TextField(blank=True)
    issued_at = models.DateTimeField()
    rendered_at = models.DateTimeField(null=True, blank=True)
    issued_by = models.CharField(max_length=200, blank=True, help_text="Who or what issued it.")

    class Meta:
        ordering = ["-invoice_date", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="invoice", corrects__isnull=True)
                | Q(kind="credit_note", corrects__isnull=False),
                name="invoice_credit_note_corrects_one",
            ),
            models.CheckConstraint(
                condition=~Q(status="rendered") | (~Q(pdf="") & ~Q(html="") & ~Q(xml="")),
                name="invoice_rendered_has_files",
            ),
        ]
        indexes = [
            models.Index(fields=["account", "-invoice_date", "-id"], name="invoice_account_recent"),
            models.Index(fields=["status", "issued_at"], name="invoice_status"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.number}"

    def document_path(self, extension: str) -> str:
        return _document_path(self, extension)


class PrintBatch(models.Model):
    """One merged PDF of the invoices to print and post, per billing run (or per day for invoices issued
    outside a run), for the print shop."""

    reference = models.CharField(max_length=60, unique=True, help_text="The billing run's number, or a day.")
    file = models.FileField(max_length=300, blank=True, storage=invoice_storage)
    invoice_count = models.PositiveIntegerField(default=0)
    page_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "print batches"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Print batch {self.reference} ({self.invoice_count} invoices)"


class InvoiceDelivery(models.Model):
    """A bill routing: one person's copy of one invoice, by their method, with its delivery status."""

    class Method(models.TextChoices):
        EMAIL = "email", "E-mail with the PDF"
        PRINT = "print", "Print batch"
        PORTAL = "portal", "Customer portal"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        RETRYING = "retrying", "Failed, will retry"
        FAILED = "failed", "Failed (gave up)"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="deliveries")
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="invoice_deliveries"
    )
    method = models.CharField(max_length=10, choices=Method.choices)
    recipient = models.CharField(
        max_length=300, help_text="The e-mail address or name it went to, as it was."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    print_batch = models.ForeignKey(
        PrintBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "invoice deliveries"
        ordering = ["invoice", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["invoice", "contact", "method"], name="invoice_delivery_one_per_contact_method"
            )
        ]
        indexes = [models.Index(fields=["method", "status", "next_attempt_at"], name="delivery_due")]

    def __str__(self) -> str:
        return f"{self.get_method_display()} to {self.recipient} ({self.status})"
