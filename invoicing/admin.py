"""Admin for invoicing.

Bill messages: what bills print, for everyone or for one account type or AR classification, over a span of
dates. A bill copies the messages valid on its date when it is created (StatementMessage), so a later change
here never alters a bill already made. Changes are audited.

Below them: invoice series (legal entities with their gapless counters), invoice
templates with their preview, the invoicing settings (one row), and the read-only invoices, deliveries and
print batches, with the "Preview invoice" page for any bill of this product's engine.
"""

from __future__ import annotations

from functools import update_wrapper
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import truncatechars
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.cache import never_cache

from billing_mgmt.admin import ReadOnlyAdmin, ReadOnlyMixin
from billing_mgmt.admin import admin_money as _money
from billing_mgmt.audit import audit_record, snapshot
from billing_mgmt.errors import ApplicationError
from billing_mgmt.numbering import peek_next
from statements.models import Statement

from .models import (
    BillMessage,
    Invoice,
    InvoiceDelivery,
    InvoiceSeries,
    InvoiceTemplate,
    InvoicingSettings,
    PrintBatch,
)


class BillMessageForm(forms.ModelForm):
    class Meta:
        model = BillMessage
        fields = (
            "code",
            "text",
            "priority",
            "account_type",
            "ar_classification",
            "valid_from",
            "valid_to",
            "active",
        )

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("valid_from"), cleaned.get("valid_to")
        if start and end and end < start:
            self.add_error(
                "valid_to", f"The end ({end.isoformat()}) is before the start ({start.isoformat()})."
            )
        return cleaned


def _state(message: BillMessage) -> dict[str, Any]:
    return snapshot(message)


@admin.register(BillMessage)
class BillMessageAdmin(admin.ModelAdmin):
    form = BillMessageForm
    list_display = (
        "code",
        "excerpt",
        "priority",
        "account_type",
        "ar_classification",
        "valid_from",
        "valid_to",
        "active",
    )
    list_filter = ("active", "account_type", "ar_classification")
    search_fields = ("code", "text")
    date_hierarchy = "valid_from"

    @admin.display(description="Text")
    def excerpt(self, obj: BillMessage) -> str:
        return truncatechars(obj.text, 80)

    def save_model(self, request, obj, form, change):
        before = _state(BillMessage.objects.select_for_update().get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        after = _state(obj)
        if before != after:
            action = "bill_message.update" if change else "bill_message.create"
            audit_record(actor=request.user, action=action, obj=obj, before=before, after=after)

    def delete_model(self, request, obj):
        audit_record(actor=request.user, action="bill_message.delete", obj=obj, before=_state(obj))
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            audit_record(actor=request.user, action="bill_message.delete", obj=obj, before=_state(obj))
        super().delete_queryset(request, queryset)


def _audited_save(model_admin, request, obj, form, change, *, action: str, fields: list[str] | None = None):
    """Save through Django admin with an audit record of what changed (nothing when nothing did)."""
    model = type(obj)
    before = snapshot(model.objects.select_for_update().get(pk=obj.pk), fields) if change else None
    admin.ModelAdmin.save_model(model_admin, request, obj, form, change)
    after = snapshot(obj, fields)
    if before != after:
        audit_record(
            actor=request.user, action=f"{action}.{'update' if change else 'create'}", obj=obj,
            before=before, after=after,
        )  # fmt: skip


# --- Invoice series: legal entities and their gapless counters ------------------------------------------

SERIES_FIELDS = ["code", "legal_name", "address", "tax_id", "account_type", "active"]


class InvoiceSeriesAddForm(forms.ModelForm):
    """A new series also gets its gapless counter (invoice_series_create): its prefix and padding are asked
    here once, then edited on the counter under Number series."""

    prefix = forms.RegexField(
        regex=r"^[A-Za-z0-9/_.-]*$",
        max_length=20,
        required=False,
        initial="INV-",
        help_text="Printed before the number, e.g. INV- (letters, digits, / _ . -).",
        error_messages={"invalid": "Letters, digits, / _ . - only."},
    )
    padding = forms.IntegerField(min_value=1, max_value=20, initial=8, help_text="Digits in the number.")

    class Meta:
        model = InvoiceSeries
        fields = SERIES_FIELDS

    def clean_prefix(self):
        prefix = self.cleaned_data.get("prefix") or ""
        taken = InvoiceSeries.objects.filter(number_series__prefix=prefix).first()
        if taken is not None:
            raise forms.ValidationError(
                f"Series {taken.code} already uses this prefix: each legal entity needs its own, so that an "
                "invoice number names one invoice."
            )
        return prefix

    def clean_code(self):
        from billing_mgmt.models import NumberSeries

        from .services.issuing import _counter_code

        code = self.cleaned_data["code"]
        existing = NumberSeries.objects.filter(code=_counter_code(code)).first()
        if existing is not None and not existing.gapless:
            raise forms.ValidationError(
                f"Number series {existing.code} exists and is not gapless; choose another code."
            )
        return code


class InvoiceSeriesChangeForm(forms.ModelForm):
    class Meta:
        model = InvoiceSeries
        fields = SERIES_FIELDS


@admin.register(InvoiceSeries)
class InvoiceSeriesAdmin(admin.ModelAdmin):
    list_display = ("code", "legal_name", "account_type_display", "tax_id", "counter", "active")
    list_filter = ("active", "account_type")
    search_fields = ("code", "legal_name", "tax_id")
    list_select_related = ("number_series",)

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = InvoiceSeriesChangeForm if obj is not None else InvoiceSeriesAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["code", "legal_name", "address", "tax_id", "account_type", "active", "prefix", "padding"]
        return [
            "code",
            "legal_name",
            "address",
            "tax_id",
            "account_type",
            "active",
            "counter",
            "counter_next",
        ]

    def get_readonly_fields(self, request, obj=None):
        # The code names the counter (invoice-<code>) and is printed nowhere else: fixed once created.
        return ("code", "counter", "counter_next") if obj is not None else ()

    @admin.display(description="Account type", ordering="account_type")
    def account_type_display(self, obj: InvoiceSeries) -> str:
        return obj.get_account_type_display() or "Default (every other type)"

    @admin.display(description="Number series")
    def counter(self, obj: InvoiceSeries) -> str:
        series = obj.number_series
        return format_html(
            '<a href="{}">{}</a> · prefix <code>{}</code>, {} digits',
            reverse("admin:billing_mgmt_numberseries_change", args=[series.pk]),
            series.code,
            series.prefix or "(none)",
            series.padding,
        )

    @admin.display(description="Next number")
    def counter_next(self, obj: InvoiceSeries) -> str:
        series = obj.number_series
        return f"{series.format(peek_next(series))} (gapless: each number is used exactly once, in order)"

    def save_model(self, request, obj, form, change):
        if change:
            _audited_save(self, request, obj, form, change, action="invoice_series")
            return
        from .services import invoice_series_create

        data = form.cleaned_data
        try:
            created = invoice_series_create(
                code=data["code"],
                legal_name=data["legal_name"],
                address=data.get("address", ""),
                tax_id=data.get("tax_id", ""),
                account_type=data.get("account_type", ""),
                prefix=data.get("prefix") or "",
                padding=data["padding"],
            )
        except ApplicationError:
            raise  # clean_code and clean_prefix checked the service's refusals; anything else is a bug
        if not data.get("active", True):
            created.active = False
            created.save(update_fields=["active"])
        # Django admin goes on with ``obj`` (the change message, the redirect): make it the created row.
        obj.pk, obj.number_series, obj.active = created.pk, created.number_series, created.active
        audit_record(actor=request.user, action="invoice_series.create", obj=created, after=snapshot(created))

    def has_delete_permission(self, request, obj=None):
        # Invoices refer to their series; a series that issued nothing yet is deactivated, not deleted
        # either (its counter stays, so its code cannot be reused with a fresh counter by mistake).
        return False


# --- Invoice templates and their preview -----------------------------------------------------------------


class PreviewForm(forms.Form):
    statement = forms.CharField(
        label="Bill (statement id or number)",
        max_length=60,
        required=False,
        help_text="Empty: the newest bill of this product's billing engine.",
    )


def _invoiceable():
    from .services.issuing import invoiceable

    return invoiceable(Statement.objects.all())


def _find_bill(value: str) -> Statement | None:
    """A bill this product invoices, by id or number; the newest such bill when ``value`` is empty."""
    bills = _invoiceable().select_related("account")
    value = value.strip()
    if not value:
        return bills.order_by("-statement_date", "-id").first()
    if value.isdigit():
        found = bills.filter(pk=int(value)).first()
        if found is not None:
            return found
    return bills.filter(number=value).order_by("-version", "-id").first()


def _preview_document(statement: Statement, template: InvoiceTemplate | None) -> str:
    from .services.rendering import document_html, invoice_preview

    return document_html(invoice_preview(statement_id=statement.pk, template=template))


def _preview_response(
    model_admin, request: HttpRequest, *, statement: Statement, template: InvoiceTemplate | None,
    context: dict[str, Any],
) -> HttpResponse:  # fmt: skip
    """The preview of one bill's invoice: ``?format=pdf`` the PDF, ``?format=html`` the bare HTML document,
    otherwise the admin page with the HTML in a sandboxed iframe. Nothing is written."""
    from .services.rendering import document_pdf

    fmt = request.GET.get("format", "")
    if fmt not in ("", "page", "html", "pdf"):
        raise Http404(f"No preview format {fmt}.")
    html = _preview_document(statement, template)
    filename = f"invoice-preview-{statement.number}"
    if fmt == "pdf":
        pdf, _pages, _layout, _write = document_pdf(html)
        response = HttpResponse(pdf, content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="{filename}.pdf"'
        return response
    if fmt == "html":
        response = HttpResponse(html, content_type="text/html; charset=utf-8")
        from .views import DOCUMENT_CSP

        response["Content-Security-Policy"] = DOCUMENT_CSP
        response["Content-Disposition"] = f'inline; filename="{filename}.html"'
        return response
    params = request.GET.copy()
    params["format"] = "pdf"
    html_params = request.GET.copy()
    html_params["format"] = "html"
    return TemplateResponse(
        request,
        "admin/invoicing/preview.html",
        {
            **model_admin.admin_site.each_context(request),
            "opts": model_admin.opts,
            "statement": statement,
            "template": template,
            "document_html": html,
            "pdf_url": f"?{params.urlencode()}",
            "html_url": f"?{html_params.urlencode()}",
            "invoice": getattr(statement, "invoice", None) if _has_invoice(statement) else None,
            **context,
        },
    )


def _has_invoice(statement: Statement) -> bool:
    return Invoice.objects.filter(statement=statement).exists()


def _admin_page(model_admin, view, *, permission: str):
    """An extra admin page: logged-in staff only (admin_view), and 403 without ``permission``."""

    def wrapper(request, *args, **kwargs):
        if not request.user.has_perm(permission):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return model_admin.admin_site.admin_view(never_cache(update_wrapper(wrapper, view)))


class InvoiceTemplateForm(forms.ModelForm):
    class Meta:
        model = InvoiceTemplate
        fields = (
            "code", "name", "layout", "account_type", "active", "accent_color", "header_text",
            "footer_text", "support_phone", "extra_css",
        )  # fmt: skip


TEMPLATE_AUDIT_FIELDS = list(InvoiceTemplateForm.Meta.fields)


@admin.register(InvoiceTemplate)
class InvoiceTemplateAdmin(admin.ModelAdmin):
    form = InvoiceTemplateForm
    list_display = ("code", "name", "account_type_display", "layout", "active", "updated_at", "preview_link")
    list_filter = ("account_type", "layout", "active")
    search_fields = ("code", "name")
    readonly_fields = ("updated_at",)

    @admin.display(description="Account type", ordering="account_type")
    def account_type_display(self, obj: InvoiceTemplate) -> str:
        return obj.get_account_type_display() or "Default (every other type)"

    @admin.display(description="Preview")
    def preview_link(self, obj: InvoiceTemplate) -> str:
        return format_html(
            '<a href="{}">Preview<span class="visually-hidden"> {}</span></a>',
            reverse("admin:invoicing_invoicetemplate_preview", args=[obj.pk]),
            obj.name,
        )

    def get_urls(self):
        return [
            path(
                "<int:pk>/preview/",
                _admin_page(self, self.preview_view, permission="invoicing.view_invoicetemplate"),
                name="invoicing_invoicetemplate_preview",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """A bill's invoice as this template would render it now (saved changes included; nothing is
        written, issued invoices are untouched)."""
        template = InvoiceTemplate.objects.filter(pk=pk).first()
        if template is None:
            raise Http404("No such invoice template.")
        form = PreviewForm(request.GET or None)
        value = form.data.get("statement", "") if form.is_bound else ""
        statement = _find_bill(value)
        context = {
            "title": f"Preview of template {template.name}",
            "form": form,
            "back_url": reverse("admin:invoicing_invoicetemplate_change", args=[template.pk]),
            "back_label": template.name,
        }
        if statement is None:
            context["not_found"] = (
                f"No bill of this product's billing engine with the id or number {value!r}."
                if value.strip()
                else "There is no bill of this product's billing engine to preview yet."
            )
            return TemplateResponse(
                request,
                "admin/invoicing/preview.html",
                {**self.admin_site.each_context(request), "opts": self.opts, **context},
                status=404 if value.strip() else 200,
            )
        if form.is_bound and form.is_valid() is False:  # pragma: no cover - one optional CharField
            pass
        return _preview_response(self, request, statement=statement, template=template, context=context)

    def save_model(self, request, obj, form, change):
        _audited_save(
            self, request, obj, form, change, action="invoice_template", fields=TEMPLATE_AUDIT_FIELDS
        )

    def delete_model(self, request, obj):
        audit_record(actor=request.user, action="invoice_template.delete", obj=obj, before=snapshot(obj))
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            audit_record(actor=request.user, action="invoice_template.delete", obj=obj, before=snapshot(obj))
        super().delete_queryset(request, queryset)


# --- Invoicing settings: one row ---------------------------------------------------------------------------

SETTINGS_FIELDS = ["child_line_threshold", "usage_event_limit", "email_max_attempts", "email_retry_minutes"]


class InvoicingSettingsForm(forms.ModelForm):
    class Meta:
        model = InvoicingSettings
        fields = SETTINGS_FIELDS

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk is None:
            # As for Data retention: a second admin adding the row at the same moment waits, then sees it.
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_xact_lock(hashtext('invoicing.invoicingsettings'))")
            if InvoicingSettings.objects.exists():
                raise forms.ValidationError("Invoicing settings exist already: change them instead.")
        return cleaned


@admin.register(InvoicingSettings)
class InvoicingSettingsAdmin(admin.ModelAdmin):
    """A singleton (InvoicingSettings.current() reads the first row; without one the defaults apply)."""

    form = InvoicingSettingsForm
    list_display = ("__str__", *SETTINGS_FIELDS, "updated_at")
    readonly_fields = ("updated_at",)

    def add_view(self, request, form_url="", extra_context=None):
        existing = InvoicingSettings.objects.order_by("pk").first()
        if existing is not None:
            self.message_user(request, "Invoicing settings are kept once: change them here.")
            return HttpResponseRedirect(
                reverse("admin:invoicing_invoicingsettings_change", args=[existing.pk])
            )
        return super().add_view(request, form_url, extra_context)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {})}
        if InvoicingSettings.objects.exists():
            extra_context["has_add_permission"] = False
        return super().changelist_view(request, extra_context)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        _audited_save(self, request, obj, form, change, action="invoicing_settings", fields=SETTINGS_FIELDS)


# --- Invoices (frozen), their deliveries and print batches (read-only) ----------------------------------


def _download_links(invoice: Invoice) -> str:
    if invoice.status != Invoice.Status.RENDERED:
        return "—"
    return format_html_join(
        " · ",
        '<a href="{}" aria-label="Download invoice {} as {}">{}</a>',
        (
            (reverse("invoice-download", args=[invoice.number, ext]), invoice.number, label, label)
            for ext, label in (("pdf", "PDF"), ("html", "HTML"), ("xml", "XML"))
            if getattr(invoice, ext)
        ),
    )


class InvoiceDeliveryInline(ReadOnlyMixin, admin.TabularInline):
    model = InvoiceDelivery
    fields = (
        "method", "recipient", "contact", "status", "attempts", "last_error", "next_attempt_at", "sent_at",
        "print_batch",
    )  # fmt: skip
    readonly_fields = fields
    extra = 0
    show_change_link = True


class PreviewPickForm(forms.Form):
    statement = forms.CharField(label="Preview the invoice of bill", max_length=60, required=False,
                                help_text="Statement id or number; empty: the newest bill.")  # fmt: skip


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    """Issued invoices are frozen: their fields and stored files never change (rendering writes them once)."""

    list_display = (
        "number", "kind", "account_link", "statement_link", "invoice_date", "total_display", "status",
        "format", "language", "downloads",
    )  # fmt: skip
    list_select_related = ("account", "statement")
    list_filter = ("status", "kind", "format", "language", "series")
    date_hierarchy = "invoice_date"
    search_fields = ("=number", "=account__number")
    show_full_result_count = False
    inlines = [InvoiceDeliveryInline]
    fieldsets = (
        (None, {"fields": ("number", "kind", "corrects", "series", "account_link", "statement_link")}),
        (
            "Document",
            {
                "fields": (
                    "format",
                    "language",
                    "locale",
                    "template",
                    "invoice_date",
                    "total_display",
                    "page_count",
                )
            },
        ),  # fmt: skip
        (
            "Files",
            {
                "fields": (
                    "status",
                    "downloads",
                    "pdf_sha256",
                    "html_sha256",
                    "xml_sha256",
                    "render_attempts",
                    "render_error",
                )
            },
        ),  # fmt: skip
        ("Issued", {"fields": ("issued_at", "issued_by", "rendered_at")}),
    )
    readonly_fields = ("account_link", "statement_link", "total_display", "downloads")

    @admin.display(description="Account", ordering="account__number")
    def account_link(self, obj: Invoice) -> str:
        return format_html(
            '<a href="{}">{} {}</a>',
            reverse("account-detail", args=[obj.account.number]),
            obj.account.number,
            obj.account.name,
        )

    @admin.display(description="Bill", ordering="statement__number")
    def statement_link(self, obj: Invoice) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:statements_statement_change", args=[obj.statement_id]),
            obj.statement.number,
        )  # fmt: skip

    @admin.display(description="Total due", ordering="total_due")
    def total_display(self, obj: Invoice) -> str:
        return _money(obj.total_due, obj.currency)

    @admin.display(description="Download")
    def downloads(self, obj: Invoice) -> str:
        return _download_links(obj)

    def get_urls(self):
        view = "invoicing.view_invoice"
        return [
            path(
                "preview/",
                _admin_page(self, self.preview_pick_view, permission=view),
                name="invoicing_invoice_preview_pick",
            ),  # fmt: skip
            path(
                "preview/<int:statement_id>/",
                _admin_page(self, self.preview_view, permission=view),
                name="invoicing_invoice_preview",
            ),  # fmt: skip
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "preview_form": PreviewPickForm(),
            "preview_url": reverse("admin:invoicing_invoice_preview_pick"),
        }
        return super().changelist_view(request, extra_context)

    def preview_pick_view(self, request: HttpRequest) -> HttpResponse:
        """The changelist's small form: find the bill, then go to its preview."""
        value = request.GET.get("statement", "")
        statement = _find_bill(value)
        if statement is None:
            self.message_user(
                request,
                f"No bill of this product's billing engine with the id or number {value.strip()!r}."
                if value.strip()
                else "There is no bill of this product's billing engine to preview yet.",
                messages.ERROR,
            )
            return HttpResponseRedirect(reverse("admin:invoicing_invoice_changelist"))
        return HttpResponseRedirect(reverse("admin:invoicing_invoice_preview", args=[statement.pk]))

    def preview_view(self, request: HttpRequest, statement_id: int) -> HttpResponse:
        """Any bill's invoice before it is issued (or as it would look now): the active template of the
        account's type, or ``?template=<id>``. 404 for an external biller's statement."""
        statement = _invoiceable().select_related("account").filter(pk=statement_id).first()
        if statement is None:
            raise Http404("No bill of this product's billing engine with that id.")
        template = None
        if request.GET.get("template"):
            template = InvoiceTemplate.objects.filter(pk=request.GET["template"]).first() if (
                request.GET["template"].isdigit()) else None  # fmt: skip
            if template is None:
                raise Http404("No such invoice template.")
        context = {
            "title": f"Preview of the invoice of bill {statement.number}",
            "form": PreviewPickForm(initial={"statement": statement.number}),
            "form_action": reverse("admin:invoicing_invoice_preview_pick"),
            "back_url": reverse("admin:invoicing_invoice_changelist"),
            "back_label": "Invoices",
            "templates": InvoiceTemplate.objects.filter(active=True),
        }
        return _preview_response(self, request, statement=statement, template=template, context=context)


@admin.register(InvoiceDelivery)
class InvoiceDeliveryAdmin(ReadOnlyAdmin):
    """Each copy of each invoice and how it went; *Retry now* sends failed or waiting e-mails again."""

    list_display = (
        "invoice", "method", "recipient", "status", "attempts", "last_error_excerpt", "next_attempt_at",
        "sent_at",
    )  # fmt: skip
    list_select_related = ("invoice",)
    list_filter = ("status", "method")
    search_fields = ("=invoice__number", "recipient")
    show_full_result_count = False
    actions = ["retry_now"]

    @admin.display(description="Last error")
    def last_error_excerpt(self, obj: InvoiceDelivery) -> str:
        return truncatechars(obj.last_error, 80)

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("invoicing.change_invoicedelivery")

    @admin.action(description="Retry now", permissions=["retry"])
    def retry_now(self, request, queryset):
        try:
            from .services.delivery import delivery_retry
        except ImportError:
            self.message_user(request, "Deliveries cannot be retried: the delivery service is missing.",
                              messages.ERROR)  # fmt: skip
            return
        done = 0
        for delivery in queryset.select_related("invoice").order_by("pk"):
            try:
                delivery_retry(delivery_id=delivery.pk, actor=request.user)
            except ApplicationError as exc:
                self.message_user(request, f"{delivery.invoice.number} to {delivery.recipient}: {exc}",
                                  messages.ERROR)  # fmt: skip
                continue
            done += 1
        if done:
            self.message_user(
                request, f"{done} deliver{'y' if done == 1 else 'ies'} retried.", messages.SUCCESS
            )


@admin.register(PrintBatch)
class PrintBatchAdmin(ReadOnlyAdmin):
    list_display = ("reference", "invoice_count", "page_count", "created_at", "download")
    search_fields = ("=reference",)
    date_hierarchy = "created_at"
    readonly_fields = ("download",)
    fields = ("reference", "invoice_count", "page_count", "created_at", "download")

    @admin.display(description="Merged PDF")
    def download(self, obj: PrintBatch) -> str:
        if not obj.file:
            return "—"
        return format_html(
            '<a href="{}" aria-label="Download print batch {} as PDF">PDF</a>',
            reverse("admin:invoicing_printbatch_download", args=[obj.pk]),
            obj.reference,
        )

    def get_urls(self):
        return [
            path(
                "<int:pk>/download/",
                _admin_page(self, self.download_view, permission="invoicing.view_printbatch"),
                name="invoicing_printbatch_download",
            ),  # fmt: skip
            *super().get_urls(),
        ]

    def download_view(self, request: HttpRequest, pk: int) -> FileResponse:
        batch = PrintBatch.objects.filter(pk=pk).first()
        if batch is None or not batch.file:
            raise Http404("No such print batch, or it has no file yet.")
        try:
            handle = batch.file.open("rb")
        except FileNotFoundError:
            raise Http404("The print batch's file is missing from storage.") from None
        return FileResponse(handle, as_attachment=True, filename=f"print-batch-{batch.reference}.pdf",
                            content_type="application/pdf")  # fmt: skip
