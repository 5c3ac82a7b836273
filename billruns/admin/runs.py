"""Admin for billing runs (source 001): run definitions, billing runs with their execution and results, the
runs' exceptions and chunks, and wallet estimates.

Every write goes through billruns.services, so the rules, locks and audit records are those of the API and
of beat:

* a definition is saved by ``run_definition_save`` (its beat task with it); a run is created, changed and
  deleted by ``billrun_create`` / ``billrun_update`` / ``billrun_delete`` and executed, unscheduled and
  resumed by ``billrun_execute`` / ``billrun_unschedule`` / ``billrun_resume``;
* the forms call the service while they validate (``_post_clean``), inside the transaction Django admin
  opens for the page: a service's ``ApplicationError`` becomes the form's errors (on the fields it names),
  and the service's savepoint is rolled back, so nothing is stored. The model's constraints are not checked
  by the form: the service checks the same rules with clear messages, and the database enforces them;
* a run is changed and deleted only while it is Draft and not executing; otherwise its page is read-only.

The run's page shows what it did: its state and execution with the Execute form (or Resume and Unschedule),
the results per step, the bills or wallet debits it made and its first exceptions (all of them in the
exception list and as CSV). While the run executes or waits for its scheduled time, that part of the page is
fetched again every two seconds (``<run>/progress/``, htmx); the server answers 204 while nothing changed,
and the polling stops once the run is idle.

These pages are the billing admins' (and superusers'): they need the permission to view billing runs, which
CSRs do not have, so a CSR gets no page here even with staff status (CSRs may view wallet estimates on the
account page, not here).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from functools import update_wrapper
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.forms.models import construct_instance
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django_htmx.http import HttpResponseClientRefresh

from accounts.models import BillingProfile
from billing_mgmt.admin import ReadOnlyAdmin
from billing_mgmt.errors import ApplicationError
from billing_mgmt.money import CurrencyError, format_money
from statements.models import FinancialTransaction

from ..models import (
    BillingRun,
    BillingTermScheme,
    RunAccount,
    RunChunk,
    RunDefinition,
    RunException,
    RunType,
    Stage,
    WalletEstimate,
)
from ..models.runs import NORMAL_STAGES, PREPAID_STAGES, PROFILE_CRITERIA
from ..selectors import billrun_progress
from ..services import (
    billrun_create,
    billrun_delete,
    billrun_execute,
    billrun_resume,
    billrun_unschedule,
    billrun_update,
    run_defaults,
    run_definition_save,
)
from ..services.runs import EDITABLE_FIELDS, M2M_FIELDS

# The run's page lists this many exceptions and bills (or wallet debits); the exception list and its CSV have
# them all.
PAGE_EXCEPTIONS = 50
PAGE_BILLS = 20
POLL_SECONDS = 2
CSV_BATCH = 2000

ENTITY_NOUNS = {
    (RunType.NORMAL, Stage.RATING): "segments rated",
    (RunType.NORMAL, Stage.INVOICING): "invoices",
    (RunType.NORMAL, Stage.POSTING): "bills posted",
    (RunType.NORMAL, Stage.FORMATTING): "bills formatted",
    (RunType.PREPAID, Stage.RATING): "segments rated",
    (RunType.PREPAID, Stage.POSTING): "wallets debited",
}
STEP_STATUS = {"not_started": "Not started", "running": "Running", "done": "Done", "skipped": "Skipped"}


# --- access ------------------------------------------------------------------------------------------------


def may_see_billing_runs(user) -> bool:
    """Billing admins (every billruns permission, through their group) and superusers. A CSR may view wallet
    estimates (on the account page) but not billing runs: none of these pages, even with staff status. From
    the permissions Django admin has loaded anyway (no query of its own on every admin page)."""
    return user.has_perm("billruns.view_billingrun") or user.has_perm("billruns.change_billingrun")


class BillingAdminOnly:
    """The model permissions, and the right to see billing runs on top (``may_see_billing_runs``)."""

    def has_module_permission(self, request):
        return may_see_billing_runs(request.user) and super().has_module_permission(request)

    def has_view_permission(self, request, obj=None):
        return may_see_billing_runs(request.user) and super().has_view_permission(request, obj)

    def has_add_permission(self, request, *args):
        return may_see_billing_runs(request.user) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return may_see_billing_runs(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return may_see_billing_runs(request.user) and super().has_delete_permission(request, obj)


# --- shared form pieces ------------------------------------------------------------------------------------


def _criteria_field(name: str) -> forms.MultipleChoiceField:
    """A billing-profile criterion (a JSON list of choice values on the model) as checkboxes."""
    column, label = PROFILE_CRITERIA[name]
    return forms.MultipleChoiceField(
        choices=BillingProfile._meta.get_field(column).choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label=label[:1].upper() + label[1:],
        help_text=f"Only bill units with these {label}. None ticked: all.",
    )


def _criteria_labels(name: str, values: list[str]) -> str:
    column, _label = PROFILE_CRITERIA[name]
    labels = dict(BillingProfile._meta.get_field(column).choices)
    return ", ".join(str(labels.get(v, v)) for v in values) if values else "All"


class ServiceForm(forms.ModelForm):
    """A model form whose save is a service call made while the form validates (see the module docstring).
    The admin sets ``actor`` on the form class per request (``get_form``)."""

    actor: Any = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Declared fields stay on a model form whatever the admin leaves out (read-only pages): drop them.
        fields, exclude = self._meta.fields, self._meta.exclude or ()
        for name in list(self.fields):
            if name in exclude or (fields is not None and name not in fields):
                del self.fields[name]

    def _post_clean(self):
        # ModelForm._post_clean without the model's constraints: the service checks the same rules with
        # messages on the fields they are about, and the database enforces them (Django would only say
        # 'Constraint "..." is violated.' at the top of the form).
        exclude = self._get_validation_exclusions()
        try:
            self.instance = construct_instance(self, self.instance, self._meta.fields, self._meta.exclude)
        except ValidationError as exc:
            self._update_errors(exc)
        try:
            self.instance.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            self._update_errors(exc)
        if self._validate_unique:
            self.validate_unique()
        if self.errors:
            return
        try:
            self.instance = self.save_through_service()
        except ApplicationError as exc:
            self.add_service_errors(exc)

    def add_service_errors(self, exc: ApplicationError) -> None:
        """Each field's messages on that field; the service's message at the top when it names no field of
        the form (a run state, a definition that was deactivated meanwhile)."""
        if not exc.fields or any(name not in self.fields for name in exc.fields):
            self.add_error(None, exc.message)
        for name, errors in exc.fields.items():
            if name in self.fields:
                for error in errors:
                    self.add_error(name, error)

    def save_through_service(self):
        raise NotImplementedError


class ServiceSavedAdmin(admin.ModelAdmin):
    """The form has saved the object through its service: the admin only logs and redirects."""

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        # Criteria and filters choose among what exists; schemes and accounts are added on their own pages.
        if (
            db_field.many_to_many
            and field is not None
            and isinstance(field.widget, RelatedFieldWidgetWrapper)
        ):
            field.widget.can_add_related = False
        return field

    def save_form(self, request, form, change):
        return form.instance

    def save_model(self, request, obj, form, change):
        pass

    def save_related(self, request, form, formsets, change):
        pass


def _link(urlname: str, pk: Any, text: Any) -> str:
    return format_html('<a href="{}">{}</a>', reverse(urlname, args=[pk]), text)


def _money(amount: Any, currency: str) -> str:
    try:
        return format_money(amount, currency)
    except (CurrencyError, ValueError):
        return f"{amount} {currency}"


def _time_span(start, end, day=None) -> str:
    """'02:00:04 – 02:03:10' on ``day`` (the run's start date, shown above the table), else with dates."""
    if start is None:
        return "—"
    start, end = timezone.localtime(start), timezone.localtime(end) if end is not None else None

    def fmt(moment) -> str:
        return f"{moment:%H:%M:%S}" if moment.date() == day else f"{moment:%Y-%m-%d %H:%M:%S}"

    return f"{fmt(start)} – {fmt(end)}" if end is not None else f"{fmt(start)} –"


def _stage_label(stage: str) -> str:
    return Stage(stage).label if stage else ""


# --- run definitions ---------------------------------------------------------------------------------------


class RunDefinitionForm(ServiceForm):
    ar_classifications = _criteria_field("ar_classifications")
    payment_preferences = _criteria_field("payment_preferences")
    presentment_preferences = _criteria_field("presentment_preferences")

    class Meta:
        model = RunDefinition
        fields = (
            "name", "run_type", "active", "description",
            "bill_as_of_day", "transaction_date_rule", "transaction_date_offset_days",
            "due_proximity_min_days", "due_proximity_max_days", "due_proximity_default_sign",
            "due_proximity_default_days",
            "recurring", "schedule", "recurring_up_to",
            "run_formatting", "estimate_wallet_consumption", "chunk_size", "formatting_chunk_size",
            "billing_term_schemes", "billing_frequencies",
            "ar_classifications", "payment_preferences", "presentment_preferences",
        )  # fmt: skip
        widgets = {
            "billing_term_schemes": forms.CheckboxSelectMultiple,
            "billing_frequencies": forms.CheckboxSelectMultiple,
        }
        labels = {
            "due_proximity_min_days": "Earliest (days)",
            "due_proximity_max_days": "Latest (days)",
            "due_proximity_default_sign": "Default sign",
            "due_proximity_default_days": "Default days",
        }

    def clean(self):
        cleaned = super().clean()
        run_type, schemes = cleaned.get("run_type"), cleaned.get("billing_term_schemes")
        if run_type and schemes:
            wrong = [s.name for s in schemes if s.kind != run_type]
            if wrong:
                # Every run created from the definition would be refused for it (billrun_create).
                self.add_error(
                    "billing_term_schemes",
                    f"A {run_type} definition takes only {run_type} billing term schemes, not "
                    f"{', '.join(wrong)}.",
                )
        return cleaned

    def save_through_service(self) -> RunDefinition:
        names = ("billing_term_schemes", "billing_frequencies")
        related = {name: list(self.cleaned_data[name]) for name in names}
        return run_definition_save(definition=self.instance, actor=self.actor, related=related)


@admin.register(RunDefinition)
class RunDefinitionAdmin(BillingAdminOnly, ServiceSavedAdmin):
    form = RunDefinitionForm
    list_display = (
        "name",
        "run_type",
        "active",
        "bill_as_of_day",
        "proximity_range",
        "recurrence",
        "chunk_size",
        "updated_at",
    )
    list_filter = ("run_type", "active", "recurring")
    list_select_related = ("schedule",)
    search_fields = ("name",)
    readonly_fields = ("periodic_task_link",)
    fieldsets = (
        ("Main", {"fields": ("name", "run_type", "active", "description")}),
        ("Dates", {"fields": ("bill_as_of_day", "transaction_date_rule", "transaction_date_offset_days")}),
        (
            "Due-date proximity",
            {
                "description": "Signed days added to the due date of the payment terms: the range a run may "
                "choose from, and the value a new run starts with.",
                "fields": (
                    "due_proximity_min_days",
                    "due_proximity_max_days",
                    "due_proximity_default_sign",
                    "due_proximity_default_days",
                ),
            },
        ),
        ("Recurrence", {"fields": ("recurring", "schedule", "recurring_up_to", "periodic_task_link")}),
        (
            "Processing settings",
            {
                "fields": (
                    "run_formatting",
                    "estimate_wallet_consumption",
                    "chunk_size",
                    "formatting_chunk_size",
                )
            },
        ),
        (
            "Default criteria",
            {
                "description": "A new run starts with these; empty means all.",
                "fields": (
                    "billing_term_schemes",
                    "billing_frequencies",
                    "ar_classifications",
                    "payment_preferences",
                    "presentment_preferences",
                ),
            },
        ),
    )

    def has_delete_permission(self, request, obj=None):
        # Runs point at their definition, and its beat task would outlive it: deactivate a definition instead.
        return False

    @admin.display(description="Due-date proximity")
    def proximity_range(self, obj: RunDefinition) -> str:
        return (
            f"{obj.due_proximity_min_days:+d} to {obj.due_proximity_max_days:+d} days "
            f"(default {obj.due_proximity_default:+d})"
        )

    @admin.display(description="Recurrence")
    def recurrence(self, obj: RunDefinition) -> str:
        if not obj.recurring:
            return "One time"
        return f"{obj.schedule}, up to {_stage_label(obj.recurring_up_to)}"

    @admin.display(description="Beat task")
    def periodic_task_link(self, obj: RunDefinition) -> str:
        if obj is None or obj.periodic_task_id is None:
            return "None yet: saving an active, recurring definition with a schedule creates it."
        task = obj.periodic_task
        state = "enabled" if task.enabled else "disabled (the definition is inactive or not recurring)"
        return format_html(
            '<a href="{}">{}</a> ({})',
            reverse("admin:django_celery_beat_periodictask_change", args=[task.pk]),
            task.name,
            state,
        )


# --- billing runs: forms ------------------------------------------------------------------------------------


def _is_editable(run: BillingRun) -> bool:
    return run.state == BillingRun.State.DRAFT and run.execution != BillingRun.Execution.RUNNING


class BillingRunForm(ServiceForm):
    """Add (from the active definition of ``run_type``) and change a Draft run."""

    run_type: str = RunType.NORMAL
    definition: RunDefinition | None = None

    ar_classifications = _criteria_field("ar_classifications")
    payment_preferences = _criteria_field("payment_preferences")
    presentment_preferences = _criteria_field("presentment_preferences")

    class Meta:
        model = BillingRun
        fields = (*EDITABLE_FIELDS, *M2M_FIELDS)
        widgets = {
            "billing_term_schemes": forms.CheckboxSelectMultiple,
            "billing_frequencies": forms.CheckboxSelectMultiple,
            "due_date_proximity_sign": forms.RadioSelect,
            "mode": forms.RadioSelect,
        }
        labels = {"due_date_proximity_sign": "Sign", "due_date_proximity_days": "Days"}
        help_texts = {
            "mode": "BATCH bills every bill unit the criteria and filters choose; INDIVIDUAL bills the one "
            "account named in the accounts filter.",
            "billing_term_schemes": "Only subscriptions on these billing term schemes. None ticked: all.",
            "billing_frequencies": "Only subscriptions billed at these frequencies. None ticked: all.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk is None:
            # What the add page's read-only fields show (run type, definition).
            self.instance.run_type = self.run_type
            self.instance.definition = self.definition
        run_type = self.instance.run_type
        if "billing_term_schemes" in self.fields:
            self.fields["billing_term_schemes"].queryset = BillingTermScheme.objects.filter(kind=run_type)
        definition = self.definition if self.instance.pk is None else self.instance.definition
        if definition is not None and "due_date_proximity_days" in self.fields:
            low, high = definition.due_proximity_min_days, definition.due_proximity_max_days
            self.fields["due_date_proximity_days"].help_text = (
                f"Days before (−) or after (+) the due date of the payment terms. The definition allows "
                f"{low:+d} to {high:+d} days."
            )

    def save_through_service(self) -> BillingRun:
        data = self.cleaned_data
        values = {name: data[name] for name in EDITABLE_FIELDS if name in data}
        values |= {name: list(data[name]) for name in M2M_FIELDS if name in data}
        if self.instance.pk is None:
            return billrun_create(run_type=self.run_type, actor=self.actor, **values)
        changed = {name: value for name, value in values.items() if name in self.changed_data}
        if not changed:
            return BillingRun.objects.get(pk=self.instance.pk)
        return billrun_update(run=self.instance.pk, actor=self.actor, **changed)


class ExecuteForm(forms.Form):
    """Execute up to a stage, now or at a date and time (the run's page)."""

    up_to = forms.ChoiceField(label="Execute up to")
    when = forms.ChoiceField(
        choices=[("now", "Now"), ("at", "At")], initial="now", widget=forms.RadioSelect, label="When"
    )
    at = forms.DateTimeField(
        required=False,
        label="Date and time",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
    )

    def __init__(self, run: BillingRun, *args, **kwargs):
        kwargs.setdefault("auto_id", "execute_%s")
        super().__init__(*args, **kwargs)
        # Any stage of the run is accepted (the service says why one already done cannot be chosen); the
        # list offers the following ones, the last first chosen.
        following = run.stages[run.completed_stage_index :]
        self.fields["up_to"].choices = [(s, Stage(s).label) for s in run.stages]
        self.fields["up_to"].widget.choices = [(s, Stage(s).label) for s in following]
        self.fields["up_to"].initial = following[-1] if following else None
        self.fields["at"].help_text = f"In {settings.TIME_ZONE} time."

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("when") == "at" and not cleaned.get("at"):
            self.add_error("at", "Give the date and time to execute at, or choose Now.")
        return cleaned


def _form_problems(form: forms.Form) -> str:
    problems = []
    for name, errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else ""
        problems.append(f"{label}: {' '.join(errors)}" if label else " ".join(errors))
    return " ".join(problems)


# --- billing runs: list filters -----------------------------------------------------------------------------


class RunListFilter(admin.SimpleListFilter):
    """The recent runs (a run's page links here with ``?run=<id>``), not every run ever made."""

    title = "billing run"
    parameter_name = "run"
    recent = 30
    only_with_exceptions = False

    def lookups(self, request, model_admin):
        runs = BillingRun.objects.order_by("-created_at", "-id")
        if self.only_with_exceptions:
            runs = runs.filter(exception_count__gt=0)
        choices = list(runs.values_list("pk", "number")[: self.recent])
        chosen = self.value()
        if chosen and chosen.isdigit() and int(chosen) not in {pk for pk, _ in choices}:
            choices += list(BillingRun.objects.filter(pk=int(chosen)).values_list("pk", "number"))
        return [(str(pk), number) for pk, number in choices]

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(run_id=int(value))
        return queryset


class RunWithExceptionsFilter(RunListFilter):
    only_with_exceptions = True


# --- billing runs: the admin --------------------------------------------------------------------------------


def _execute_action(stage: str):
    def action(modeladmin: BillingRunAdmin, request: HttpRequest, queryset: QuerySet):
        modeladmin.execute_selected(request, queryset, stage)

    action.__name__ = f"execute_up_to_{stage}"
    only_normal = "" if stage in PREPAID_STAGES else " (normal runs)"
    return admin.action(
        description=f"Execute up to {Stage(stage).label} now{only_normal}", permissions=["execute"]
    )(action)


@admin.register(BillingRun)
class BillingRunAdmin(BillingAdminOnly, ServiceSavedAdmin):
    form = BillingRunForm
    list_display = (
        "number",
        "type_and_mode",
        "state",
        "execution_display",
        "bill_as_of",
        "transaction",
        "made",
        "exceptions",
        "started_finished",
    )
    list_filter = ("run_type", "state", "execution", "mode", "scheduling")
    search_fields = ("number",)
    date_hierarchy = "bill_as_of_date"
    show_full_result_count = False
    autocomplete_fields = ("accounts", "subscriptions", "groups")
    actions = [
        *(_execute_action(stage) for stage in NORMAL_STAGES),
        "resume_selected",
        "unschedule_selected",
        "delete_selected",
    ]

    _MAIN = ("number", "run_type_display", "definition_link", "mode", "scheduling_display", "created")
    _MAIN_READ_ONLY = ("number", "run_type_display", "definition_link", "scheduling_display", "created")
    _CRITERIA_DISPLAY = (
        "billing_term_schemes_display",
        "billing_frequencies_display",
        "ar_classifications_display",
        "payment_preferences_display",
        "presentment_preferences_display",
    )
    _FILTERS_DISPLAY = ("accounts_display", "subscriptions_display", "groups_display")

    # --- permissions

    def has_execute_permission(self, request: HttpRequest, obj: BillingRun | None = None) -> bool:
        return may_see_billing_runs(request.user) and request.user.has_perm("billruns.execute_billingrun")

    def has_change_permission(self, request, obj=None):
        if obj is not None and not _is_editable(obj):
            return False  # the page is read-only
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and not _is_editable(obj):
            return False
        return super().has_delete_permission(request, obj)

    # --- the form's layout

    def get_fieldsets(self, request, obj=None):
        main = ("run_type_display", "definition_link", "mode") if obj is None else self._MAIN
        if obj is not None and not _is_editable(obj):
            criteria, filters, proximity = self._CRITERIA_DISPLAY, self._FILTERS_DISPLAY, ("proximity",)
        else:
            criteria = (
                "billing_term_schemes",
                "billing_frequencies",
                "ar_classifications",
                "payment_preferences",
                "presentment_preferences",
            )
            filters = ("accounts", "subscriptions", "groups")
            proximity = ("due_date_proximity_sign", "due_date_proximity_days")
        return (
            ("Main", {"fields": main}),
            ("Dates", {"fields": ("bill_as_of_date", "transaction_date")}),
            ("Due-date proximity", {"fields": proximity}),
            (
                "Criteria",
                {
                    "description": "Which subscriptions and bill units are billed. Empty: all.",
                    "fields": criteria,
                },
            ),
            (
                "Filters",
                {
                    "description": "When given, only these are billed (every given filter applies).",
                    "fields": filters,
                },
            ),
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ("run_type_display", "definition_link")
        if not _is_editable(obj):
            return (
                *self._MAIN,
                "bill_as_of_date",
                "transaction_date",
                "proximity",
                *self._CRITERIA_DISPLAY,
                *self._FILTERS_DISPLAY,
            )
        return self._MAIN_READ_ONLY

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("definition", "created_by")

    # --- list columns and read-only fields

    @admin.display(description="Type / mode", ordering="run_type")
    def type_and_mode(self, obj: BillingRun) -> str:
        kind = RunType(obj.run_type).label.split(" (")[0] if obj.run_type else "-"
        return format_html('{}<br><span class="quiet">{}</span>', kind, obj.get_mode_display().capitalize())

    @admin.display(description="Run type")
    def run_type_display(self, obj: BillingRun) -> str:
        return RunType(obj.run_type).label if obj.run_type else "-"

    @admin.display(description="Execution", ordering="execution")
    def execution_display(self, obj: BillingRun) -> str:
        if obj.execution == BillingRun.Execution.RUNNING:
            detail = format_html("up to {}", _stage_label(obj.target_stage))
        elif obj.execution == BillingRun.Execution.SCHEDULED:
            when = timezone.localtime(obj.scheduled_for)
            # The date and the time each keep together (a date breaks at its hyphens otherwise).
            detail = format_html('<span class="nowrap">{}</span> {}', f"{when:%Y-%m-%d}", f"{when:%H:%M}")
        else:
            return obj.get_execution_display()
        return format_html('{}<br><span class="quiet">{}</span>', obj.get_execution_display(), detail)

    @admin.display(description="Bills / debits")
    def made(self, obj: BillingRun) -> int:
        return obj.wallet_transactions if obj.run_type == RunType.PREPAID else obj.bills_generated

    @admin.display(description="Bill as of", ordering="bill_as_of_date")
    def bill_as_of(self, obj: BillingRun) -> str:
        return f"{obj.bill_as_of_date:%Y-%m-%d}"

    # Soft hyphens: the list's headers may break inside these long words (the list fits a desktop screen).
    @admin.display(description="Trans\u00adaction date", ordering="transaction_date")
    def transaction(self, obj: BillingRun) -> str:
        return f"{obj.transaction_date:%Y-%m-%d}"

    @admin.display(description="Excep\u00adtions", ordering="exception_count")
    def exceptions(self, obj: BillingRun) -> int:
        return obj.exception_count

    @admin.display(description="Started / finished", ordering="started_at")
    def started_finished(self, obj: BillingRun) -> str:
        def moment(value) -> str:
            return f"{timezone.localtime(value):%Y-%m-%d %H:%M}" if value else "-"

        if obj.started_at is None:
            return "-"
        return format_html(
            '{}<br><span class="quiet">{}</span>', moment(obj.started_at), moment(obj.finished_at)
        )

    @admin.display(description="Definition")
    def definition_link(self, obj: BillingRun) -> str:
        definition = obj.definition if obj.definition_id else None
        if definition is None:
            return "-"
        return _link("admin:billruns_rundefinition_change", definition.pk, definition)

    @admin.display(description="Scheduling")
    def scheduling_display(self, obj: BillingRun) -> str:
        return obj.get_scheduling_display()

    @admin.display(description="Created")
    def created(self, obj: BillingRun) -> str:
        when = f"{timezone.localtime(obj.created_at):%Y-%m-%d %H:%M}" if obj.created_at else "-"
        return f"{when} by {obj.created_by.get_username()}" if obj.created_by_id else when

    @admin.display(description="Due-date proximity")
    def proximity(self, obj: BillingRun) -> str:
        return f"{obj.due_date_proximity:+d} days from the due date of the payment terms"

    @admin.display(description="Billing term schemes")
    def billing_term_schemes_display(self, obj: BillingRun) -> str:
        return ", ".join(str(s) for s in obj.billing_term_schemes.all()) or "All"

    @admin.display(description="Billing frequencies")
    def billing_frequencies_display(self, obj: BillingRun) -> str:
        return ", ".join(str(f) for f in obj.billing_frequencies.all()) or "All"

    @admin.display(description="AR classifications")
    def ar_classifications_display(self, obj: BillingRun) -> str:
        return _criteria_labels("ar_classifications", obj.ar_classifications)

    @admin.display(description="Payment preferences")
    def payment_preferences_display(self, obj: BillingRun) -> str:
        return _criteria_labels("payment_preferences", obj.payment_preferences)

    @admin.display(description="Presentment preferences")
    def presentment_preferences_display(self, obj: BillingRun) -> str:
        return _criteria_labels("presentment_preferences", obj.presentment_preferences)

    @admin.display(description="Accounts")
    def accounts_display(self, obj: BillingRun) -> str:
        return ", ".join(str(a) for a in obj.accounts.all()) or "No filter"

    @admin.display(description="Subscriptions")
    def subscriptions_display(self, obj: BillingRun) -> str:
        return ", ".join(s.service_identifier for s in obj.subscriptions.all()) or "No filter"

    @admin.display(description="Groups")
    def groups_display(self, obj: BillingRun) -> str:
        return ", ".join(str(g) for g in obj.groups.all()) or "No filter"

    # --- add: from the active definition of the chosen run type

    def _requested_run_type(self, request: HttpRequest) -> str:
        value = request.GET.get("run_type", RunType.NORMAL)
        return value if value in RunType.values else RunType.NORMAL

    def _defaults(self, request: HttpRequest) -> dict[str, Any]:
        if not hasattr(request, "_billrun_defaults"):
            request._billrun_defaults = run_defaults(run_type=self._requested_run_type(request))
        return request._billrun_defaults

    def add_view(self, request, form_url="", extra_context=None):
        run_type = self._requested_run_type(request)
        try:
            defaults = self._defaults(request)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(reverse("admin:billruns_billingrun_changelist"))
        others = [
            {"value": value, "label": label.split(" (")[0], "url": f"?run_type={value}"}
            for value, label in RunType.choices
            if value != run_type
        ]
        context = {
            **(extra_context or {}),
            "run_type_label": RunType(run_type).label,
            "run_definition": defaults["definition"],
            "other_run_types": others,
        }
        return super().add_view(request, form_url, context)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None:
            form.run_type = self._requested_run_type(request)
            form.definition = self._defaults(request)["definition"]
        return form

    def get_changeform_initial_data(self, request):
        defaults = self._defaults(request)
        initial = {name: defaults[name] for name in EDITABLE_FIELDS if name in defaults}
        initial["mode"] = BillingRun.Mode.BATCH
        for name in ("billing_term_schemes", "billing_frequencies"):
            initial[name] = [obj.pk for obj in defaults[name]]
        return initial

    # --- delete: Draft runs only, through billrun_delete

    def delete_view(self, request, object_id, extra_context=None):
        run = self.get_object(request, unquote(object_id))
        if run is not None and not _is_editable(run) and self.has_view_permission(request, run):
            self.message_user(request, self._not_deletable([run]), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:billruns_billingrun_change", args=[run.pk]))
        try:
            return super().delete_view(request, object_id, extra_context)
        except ApplicationError as exc:  # it started executing meanwhile
            self.message_user(request, f"{exc.message} Nothing was deleted.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:billruns_billingrun_change", args=[run.pk]))

    def delete_model(self, request, obj):
        billrun_delete(run=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for run in queryset.order_by("pk"):
            billrun_delete(run=run, actor=request.user)

    @staticmethod
    def _not_deletable(runs: list[BillingRun]) -> str:
        def where(run: BillingRun) -> str:
            return "executing" if run.execution == BillingRun.Execution.RUNNING else run.get_state_display()

        names = ", ".join(f"{run.number} ({where(run)})" for run in runs)
        return f"Only Draft runs that are not executing can be deleted: {names}. Nothing was deleted."

    @admin.action(description="Delete selected Draft runs", permissions=["delete"])
    def delete_selected(self, request, queryset):
        kept = [run for run in queryset.order_by("number") if not _is_editable(run)]
        if kept:
            self.message_user(request, self._not_deletable(kept), messages.ERROR)
            return None
        try:
            with transaction.atomic():
                return django_delete_selected(self, request, queryset)
        except ApplicationError as exc:
            self.message_user(request, f"{exc.message} Nothing was deleted.", messages.ERROR)
            return None

    # --- execute, resume, unschedule: list actions

    def _report(self, request: HttpRequest, run: BillingRun, call) -> None:
        try:
            text = call(run)
        except ApplicationError as exc:
            self.message_user(request, f"{run.number}: {exc.message}", messages.ERROR)
        else:
            self.message_user(request, f"{run.number}: {text}", messages.SUCCESS)

    def execute_selected(self, request: HttpRequest, queryset: QuerySet, stage: str) -> None:
        def call(run: BillingRun) -> str:
            billrun_execute(run=run, up_to=stage, actor=request.user)
            return self._execution_news(run, stage)

        for run in queryset.order_by("number"):
            self._report(request, run, call)

    @staticmethod
    def _execution_news(run: BillingRun, stage: str) -> str:
        run.refresh_from_db()
        if run.execution == BillingRun.Execution.RUNNING:
            return f"executing up to {Stage(stage).label}."
        if run.execution == BillingRun.Execution.SCHEDULED:
            when = timezone.localtime(run.scheduled_for)
            return f"scheduled to execute up to {Stage(stage).label} at {when:%Y-%m-%d %H:%M}."
        return f"executed up to {Stage(stage).label}: {run.get_state_display()}."

    @admin.action(description="Resume (queue lost work again)", permissions=["execute"])
    def resume_selected(self, request, queryset):
        def call(run: BillingRun) -> str:
            queued = billrun_resume(run=run, actor=request.user, force=True)
            return f"resumed: {queued} chunk(s) of work queued again."

        for run in queryset.order_by("number"):
            self._report(request, run, call)

    @admin.action(description="Unschedule", permissions=["execute"])
    def unschedule_selected(self, request, queryset):
        def call(run: BillingRun) -> str:
            billrun_unschedule(run=run, actor=request.user)
            return "unscheduled: it will not start by itself."

        for run in queryset.order_by("number"):
            self._report(request, run, call)

    # --- the run's page: its own URLs

    def get_urls(self):
        def wrap(view):
            def wrapper(request, *args, **kwargs):
                return self.admin_site.admin_view(view)(request, *args, **kwargs)

            return update_wrapper(wrapper, view)

        return [
            path("<path:object_id>/execute/", wrap(self.execute_view), name="billruns_billingrun_execute"),
            path("<path:object_id>/resume/", wrap(self.resume_view), name="billruns_billingrun_resume"),
            path(
                "<path:object_id>/unschedule/",
                wrap(self.unschedule_view),
                name="billruns_billingrun_unschedule",
            ),
            path(
                "<path:object_id>/progress/",
                wrap(self.progress_view),  # admin_view: never cached
                name="billruns_billingrun_progress",
            ),
            path(
                "<path:object_id>/exceptions.csv",
                wrap(self.exceptions_csv_view),
                name="billruns_billingrun_exceptions_csv",
            ),
            *super().get_urls(),
        ]

    def _run(self, request: HttpRequest, object_id: str) -> BillingRun:
        run = self.get_object(request, unquote(object_id))
        if run is None:
            raise Http404("No such billing run.")
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        return run

    def _change_url(self, run: BillingRun) -> str:
        return reverse("admin:billruns_billingrun_change", args=[run.pk])

    def _post_action(self, request: HttpRequest, object_id: str) -> BillingRun | HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        run = self._run(request, object_id)
        if not self.has_execute_permission(request, run):
            raise PermissionDenied
        return run

    def execute_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        run = self._post_action(request, object_id)
        if isinstance(run, HttpResponse):
            return run
        form = ExecuteForm(run, request.POST)
        if not form.is_valid():
            problems = _form_problems(form)
            self.message_user(request, f"{run.number} was not executed. {problems}", messages.ERROR)
            return HttpResponseRedirect(self._change_url(run))
        stage = form.cleaned_data["up_to"]
        at = form.cleaned_data["at"] if form.cleaned_data["when"] == "at" else None

        def call(run: BillingRun) -> str:
            billrun_execute(run=run, up_to=stage, at=at, actor=request.user)
            return self._execution_news(run, stage)

        self._report(request, run, call)
        return HttpResponseRedirect(self._change_url(run))

    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        run = self._post_action(request, object_id)
        if isinstance(run, HttpResponse):
            return run
        self.resume_selected(request, BillingRun.objects.filter(pk=run.pk))
        return HttpResponseRedirect(self._change_url(run))

    def unschedule_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        run = self._post_action(request, object_id)
        if isinstance(run, HttpResponse):
            return run
        self.unschedule_selected(request, BillingRun.objects.filter(pk=run.pk))
        return HttpResponseRedirect(self._change_url(run))

    # --- the run's page: execution, results and exceptions

    def _step_rows(self, run: BillingRun) -> list[dict[str, Any]]:
        day = timezone.localtime(run.started_at).date() if run.started_at else None
        rows = []
        for step in billrun_progress(run=run):
            rows.append(
                {
                    "step": step,
                    "status": STEP_STATUS.get(step.status, step.status),
                    "noun": ENTITY_NOUNS.get((run.run_type, step.stage), ""),
                    "totals": [_money(amount, currency) for currency, amount in sorted(step.totals.items())],
                    "time": _time_span(step.started_at, step.finished_at, day),
                    "dead_url": (
                        f"{reverse('admin:billruns_runchunk_changelist')}?run={run.pk}"
                        f"&stage__exact={step.stage}&status__exact={RunChunk.Status.DEAD}"
                    )
                    if step.chunks_dead
                    else "",
                }
            )
        return rows

    def _made(self, run: BillingRun) -> list[dict[str, Any]]:
        """The first bills (normal) or wallet debits (prepaid) the run made."""
        if run.run_type == RunType.PREPAID:
            debits = (
                FinancialTransaction.objects.filter(
                    kind=FinancialTransaction.Kind.WALLET_DEBIT, prepaid_segment__billing_run=run
                )
                .select_related("account")
                .order_by("account__number", "pk")[:PAGE_BILLS]
            )
            return [
                {
                    "account": ft.account,
                    "account_url": reverse("account-detail", args=[ft.account.number]),
                    "amount": _money(ft.amount, ft.currency),
                    "date": ft.effective_date,
                    "description": ft.description,
                }
                for ft in debits
            ]
        bills = (
            RunAccount.objects.filter(run=run, statement__isnull=False)
            .select_related("account", "statement")
            .order_by("account__number")[:PAGE_BILLS]
        )
        return [
            {
                "account": ra.account,
                "account_url": reverse("account-detail", args=[ra.account.number]),
                "statement": ra.statement,
                "statement_url": reverse("admin:statements_statement_change", args=[ra.statement_id]),
                "new_charges": _money(ra.statement.new_charges, ra.statement.currency),
                "total_due": _money(ra.statement.total_due, ra.statement.currency),
                "due_date": ra.statement.due_date,
            }
            for ra in bills
        ]

    def _live_parts(self, request: HttpRequest, run: BillingRun, *, page_editable: bool) -> dict[str, Any]:
        """The parts of the run's page that change while it executes, rendered, and their digest.
        ``page_editable``: the page shows the run's settings as a form (it was Draft and not executing)."""
        made_total = run.wallet_transactions if run.run_type == RunType.PREPAID else run.bills_generated
        exceptions = list(
            RunException.objects.filter(run=run)
            .select_related("account", "subscription")
            .order_by("pk")[:PAGE_EXCEPTIONS]
        )
        can_execute = self.has_execute_permission(request, run)
        context = {
            "run": run,
            "opts": self.opts,
            "prepaid": run.run_type == RunType.PREPAID,
            "active": run.execution != BillingRun.Execution.IDLE,
            "steps": self._step_rows(run),
            "made": self._made(run),
            "made_total": made_total,
            "made_more": max(0, made_total - PAGE_BILLS),
            "exceptions": exceptions,
            "exceptions_more": max(0, run.exception_count - len(exceptions)),
            "exceptions_url": f"{reverse('admin:billruns_runexception_changelist')}?run={run.pk}",
            "exceptions_csv_url": reverse("admin:billruns_billingrun_exceptions_csv", args=[run.pk]),
            "can_execute": can_execute,
            "execute_form": ExecuteForm(run) if can_execute else None,
            "execute_url": reverse("admin:billruns_billingrun_execute", args=[run.pk]),
            "resume_url": reverse("admin:billruns_billingrun_resume", args=[run.pk]),
            "unschedule_url": reverse("admin:billruns_billingrun_unschedule", args=[run.pk]),
            "progress_url": reverse("admin:billruns_billingrun_progress", args=[run.pk]),
            "target_label": _stage_label(run.target_stage),
            "current_label": _stage_label(run.current_stage),
            "poll_seconds": POLL_SECONDS,
            "page_editable": page_editable,
            "time_zone": settings.TIME_ZONE,
        }
        parts = {
            name: render_to_string(f"admin/billruns/billingrun/_{name}.html", context, request=request)
            for name in ("actions", "results", "exceptions")
        }
        # The digest leaves out the actions (their forms' CSRF tokens differ at every rendering): the run's
        # state stands for them.
        state = (run.state, run.execution, run.target_stage, run.current_stage, run.scheduled_for)
        stable = parts["results"] + parts["exceptions"] + str(state)
        digest = hashlib.sha256(stable.encode()).hexdigest()[:16]
        # Safe: each part is one of our templates, rendered with autoescaping.
        rendered = {f"{name}_html": mark_safe(html) for name, html in parts.items()}
        return {**context, **rendered, "digest": digest}

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # "Save and add another" would lose the run type the add page was opened for: add from the list.
        context["show_save_and_add_another"] = False
        if obj is not None:
            context["run_editable"] = editable = _is_editable(obj) and self.has_change_permission(
                request, obj
            )
            context["live"] = self._live_parts(request, obj, page_editable=editable)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def progress_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The live part of the run's page (htmx): results per step, with the actions and exceptions swapped
        out of band; 204 while nothing changed since the version the page has (``v``); a full reload when
        the page shows an editable form and the run has started (``editable``)."""
        run = self._run(request, object_id)
        page_editable = request.GET.get("editable") == "1"
        if page_editable and not _is_editable(run):
            # The run started: its page's settings form is stale (read-only now). Reload the whole page.
            return HttpResponseClientRefresh()
        live = self._live_parts(request, run, page_editable=page_editable)
        if request.GET.get("v") == live["digest"]:
            return HttpResponse(status=204)
        html = render_to_string("admin/billruns/billingrun/_live.html", {"live": live}, request=request)
        return HttpResponse(html)

    # --- exceptions as CSV, streamed

    def exceptions_csv_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        run = self._run(request, object_id)
        if not request.user.has_perm("billruns.view_runexception"):
            raise PermissionDenied
        header = [
            "account_number",
            "account_name",
            "step",
            "code",
            "message",
            "subscription_service_identifier",
            "time",
        ]
        stages = dict(Stage.choices)

        def rows() -> Iterator[list[Any]]:
            # Keyset pages: a run with many exceptions is never loaded at once.
            last = 0
            while True:
                batch = list(
                    RunException.objects.filter(run_id=run.pk, pk__gt=last)
                    .order_by("pk")
                    .values_list(
                        "pk",
                        "account__number",
                        "account__name",
                        "stage",
                        "code",
                        "message",
                        "subscription__service_identifier",
                        "created_at",
                    )[:CSV_BATCH]
                )
                for _pk, number, name, stage, code, message, identifier, created in batch:
                    when = timezone.localtime(created).isoformat(timespec="seconds")
                    yield [number, name, stages.get(stage, stage), code, message, identifier or "", when]
                if len(batch) < CSV_BATCH:
                    return
                last = batch[-1][0]

        return _csv_response(f"billing-run-{run.number}-exceptions.csv", header, rows())

    # --- the list's add buttons (one per run type)

    def changelist_view(self, request, extra_context=None):
        add_url = reverse("admin:billruns_billingrun_add")
        extra_context = {
            **(extra_context or {}),
            "add_run_links": [
                {"url": f"{add_url}?run_type={value}", "label": f"Add {label.split(' (')[0].lower()} run"}
                for value, label in RunType.choices
            ],
        }
        return super().changelist_view(request, extra_context)


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a streaming response."""

    def write(self, value: str) -> str:
        return value


def _csv_response(filename: str, header: list[str], rows: Iterator[list[Any]]) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- what runs made: exceptions, chunks, wallet estimates (read-only) --------------------------------------


def _when(value) -> str:
    """A date and a time that each keep together on a narrow column (a date breaks at its hyphens)."""
    if value is None:
        return "-"
    value = timezone.localtime(value)
    return format_html(
        '<span class="nowrap">{}</span> <span class="nowrap">{}</span>',
        f"{value:%Y-%m-%d}",
        f"{value:%H:%M:%S}",
    )


def _run_link(run: BillingRun) -> str:
    url = reverse("admin:billruns_billingrun_change", args=[run.pk])
    return format_html('<a class="nowrap" href="{}">{}</a>', url, run.number)


@admin.register(RunException)
class RunExceptionAdmin(BillingAdminOnly, ReadOnlyAdmin):
    list_display = (
        "code",
        "run_number",
        "account_display",
        "stage",
        "message",
        "subscription_display",
        "time",
    )
    list_select_related = ("run", "account", "subscription")
    list_filter = (RunWithExceptionsFilter, "stage", ("code", admin.AllValuesFieldListFilter))
    search_fields = ("=account__number",)
    search_help_text = "Account number (exact)."
    show_full_result_count = False
    fields = ("run_number", "account_display", "stage", "code", "message", "subscription_display", "time")
    readonly_fields = fields

    @admin.display(description="Run", ordering="run__number")
    def run_number(self, obj: RunException) -> str:
        return _run_link(obj.run)

    @admin.display(description="Account", ordering="account__number")
    def account_display(self, obj: RunException) -> str:
        return f"{obj.account.number} {obj.account.name}"

    @admin.display(description="Subscription")
    def subscription_display(self, obj: RunException) -> str:
        return obj.subscription.service_identifier if obj.subscription_id else "-"

    @admin.display(description="Time", ordering="created_at")
    def time(self, obj: RunException) -> str:
        return _when(obj.created_at)


@admin.register(RunChunk)
class RunChunkAdmin(BillingAdminOnly, ReadOnlyAdmin):
    list_display = (
        "chunk",
        "run_number",
        "stage",
        "status",
        "attempts",
        "account_count",
        "started_finished",
        "lease_expires",
        "error_excerpt",
    )
    list_select_related = ("run",)
    list_filter = ("status", "stage", RunListFilter)
    ordering = ("-run_id", "pk")  # the newest run first, its stages in the order they ran
    search_fields = ("=run__number",)
    search_help_text = "Billing run number (exact)."
    show_full_result_count = False
    fields = (
        "run_number",
        "stage",
        "index",
        "status",
        "attempts",
        "account_ids",
        "worker",
        "queued_at",
        "started_at",
        "lease_expires_at",
        "finished_at",
        "last_error",
    )
    readonly_fields = fields

    @admin.display(description="Chunk", ordering="index")
    def chunk(self, obj: RunChunk) -> str:
        return f"#{obj.index}"

    @admin.display(description="Run", ordering="run__number")
    def run_number(self, obj: RunChunk) -> str:
        return _run_link(obj.run)

    @admin.display(description="Accounts")
    def account_count(self, obj: RunChunk) -> int:
        return len(obj.account_ids or [])

    @admin.display(description="Started – finished", ordering="started_at")
    def started_finished(self, obj: RunChunk) -> str:
        if obj.started_at is None:
            return "-"
        start = timezone.localtime(obj.started_at)
        return format_html(
            '<span class="nowrap">{}</span><br><span class="nowrap">{}</span>',
            f"{start:%Y-%m-%d}",
            _time_span(obj.started_at, obj.finished_at, start.date()),
        )

    @admin.display(description="Lease until", ordering="lease_expires_at")
    def lease_expires(self, obj: RunChunk) -> str:
        # Only a chunk being worked has a lease that means something (its worker holds it until then).
        return _when(obj.lease_expires_at) if obj.status == RunChunk.Status.RUNNING else "-"

    @admin.display(description="Error")
    def error_excerpt(self, obj: RunChunk) -> str:
        return (obj.last_error[:120] + "…") if len(obj.last_error) > 120 else obj.last_error or "-"


@admin.register(WalletEstimate)
class WalletEstimateAdmin(BillingAdminOnly, ReadOnlyAdmin):
    list_display = (
        "account",
        "balance_display",
        "daily_display",
        "recurring_display",
        "window_days",
        "runs_out_on",
        "estimated_at",
        "run",
    )
    list_select_related = ("account", "run")
    list_filter = ("currency", ("runs_out_on", admin.EmptyFieldListFilter))
    search_fields = ("=account__number",)
    search_help_text = "Account number (exact)."
    date_hierarchy = "runs_out_on"
    show_full_result_count = False
    fields = (
        "account",
        "currency",
        "balance",
        "daily_consumption",
        "recurring_per_period",
        "window_days",
        "runs_out_on",
        "estimated_at",
        "run",
    )
    readonly_fields = fields

    @admin.display(description="Balance", ordering="balance")
    def balance_display(self, obj: WalletEstimate) -> str:
        return _money(obj.balance, obj.currency)

    @admin.display(description="Daily consumption", ordering="daily_consumption")
    def daily_display(self, obj: WalletEstimate) -> str:
        return _money(obj.daily_consumption, obj.currency)

    @admin.display(description="Recurring per period")
    def recurring_display(self, obj: WalletEstimate) -> str:
        return _money(obj.recurring_per_period, obj.currency)
