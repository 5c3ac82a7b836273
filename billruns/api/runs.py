"""Billing runs API (source 001): create runs from the active definition, edit and delete them while Draft,
execute them up to a stage (now or at a time), resume and unschedule them, and read their results and
exceptions; read the run definitions.

* ``GET/POST /api/v1/billing-runs/``, ``GET/PATCH/DELETE .../<number>/``;
* ``POST .../<number>/execute/`` (``{"up_to": "posting", "at": null}``), ``.../resume/``,
  ``.../unschedule/``; ``GET .../<number>/exceptions/``;
* ``GET /api/v1/run-definitions/``.

Who: staff by model permission (``billruns.view_billingrun`` to read, ``add_``, ``change_``,
``delete_billingrun`` to write, ``execute_billingrun`` to execute, resume and unschedule; Billing admins
have them all). Biller API clients get 403: runs are this product's own billing. Every rule of the life
cycle is billruns.services.runs' (a 409 ``run_state`` family code when the state does not allow the action);
the views parse input, name criteria and filters by codes and numbers, and shape the answer.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response

from accounts.api import schema as _schema  # noqa: F401  (registers the Api-Key scheme with drf-spectacular)
from accounts.api.permissions import is_api_client
from accounts.models import Account, AccountGroup, BillingProfile
from billing_mgmt.api.idempotency import idempotent
from billing_mgmt.api.schema import IDEMPOTENCY_KEY_PARAMETER, ErrorSerializer, error_responses

from ..models import (
    BillingFrequency,
    BillingRun,
    BillingTermScheme,
    RunDefinition,
    RunException,
    RunType,
    Stage,
    Subscription,
)
from ..selectors import billrun_progress
from ..services import (
    billrun_create,
    billrun_delete,
    billrun_execute,
    billrun_resume,
    billrun_unschedule,
    billrun_update,
)

TAG = "billing-runs"
MAX_FILTER_ITEMS = 5000

# The permission each view action needs (app label billruns).
ACTION_PERMISSIONS = {
    "list": "view_billingrun",
    "retrieve": "view_billingrun",
    "exceptions": "view_billingrun",
    "create": "add_billingrun",
    "partial_update": "change_billingrun",
    "destroy": "delete_billingrun",
    "execute": "execute_billingrun",
    "resume": "execute_billingrun",
    "unschedule": "execute_billingrun",
    "definitions": "view_rundefinition",
}


class BillingRunApiPermission(BasePermission):
    """Staff with the action's model permission; biller API clients never (403)."""

    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        if is_api_client(user):
            self.message = "Billing runs are for staff; biller API clients have no access."
            return False
        action_name = getattr(view, "permission_action", None) or getattr(view, "action", None)
        # A method the view does not map (PUT, OPTIONS) needs reading rights, then answers 405 or metadata.
        codename = ACTION_PERMISSIONS.get(action_name, "view_billingrun")
        return user.has_perm(f"billruns.{codename}")


# --- reads -------------------------------------------------------------------------------------------------


def api_runs() -> QuerySet[BillingRun]:
    """Runs with what the list shows: one query for a page."""
    return BillingRun.objects.select_related("definition", "created_by")


def api_run_detail() -> QuerySet[BillingRun]:
    """A run with its criteria and filters (a fixed number of queries); its steps come from
    billruns.selectors.billrun_progress."""
    return api_runs().prefetch_related(
        "billing_term_schemes",
        "billing_frequencies",
        Prefetch("accounts", queryset=Account.objects.only("id", "number").order_by("number")),
        Prefetch("subscriptions", queryset=Subscription.objects.only("id").order_by("id")),
        "groups",
    )


# --- output ------------------------------------------------------------------------------------------------


class BillingRunSerializer(serializers.ModelSerializer):
    """A run as the list shows it: its dates, where it is in its life cycle, and its results."""

    definition = serializers.CharField(source="definition.name", read_only=True, help_text="Its definition.")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    due_date_proximity = serializers.IntegerField(
        read_only=True, help_text="Signed days from the payment terms' due date (sign and days together)."
    )
    # Declared (not generated from the model) so that the schema says what the API sends: "" until the run
    # is executed (target) or while no stage is in progress (current).
    target_stage = serializers.ChoiceField(
        choices=Stage.choices,
        allow_blank=True,
        read_only=True,
        help_text='Executing up to; "" until executed.',
    )
    current_stage = serializers.ChoiceField(
        choices=Stage.choices, allow_blank=True, read_only=True, help_text='The stage in progress, or "".'
    )

    class Meta:
        model = BillingRun
        fields = [
            "number",
            "run_type",
            "mode",
            "definition",
            "state",
            "execution",
            "target_stage",
            "current_stage",
            "scheduled_for",
            "scheduling",
            "bill_as_of_date",
            "transaction_date",
            "due_date_proximity_sign",
            "due_date_proximity_days",
            "due_date_proximity",
            "accounts_selected",
            "bills_generated",
            "wallet_transactions",
            "exception_count",
            "started_at",
            "finished_at",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class StepProgressSerializer(serializers.Serializer):
    """One stage of the run (billruns.selectors.StepProgress): live progress and results."""

    stage = serializers.ChoiceField(choices=Stage.choices)
    label = serializers.CharField()
    status = serializers.ChoiceField(
        choices=["not_started", "running", "done", "skipped"],
        help_text="`not_started` until the run reaches the stage.",
    )
    accounts_done = serializers.IntegerField()
    accounts_total = serializers.IntegerField()
    percent = serializers.IntegerField()
    chunks_done = serializers.IntegerField()
    chunks_total = serializers.IntegerField()
    chunks_dead = serializers.IntegerField(help_text="Chunks given up after their attempts (dead-lettered).")
    entities = serializers.IntegerField(
        help_text="What the step made: segments rated, invoices, bills, documents, wallet debits."
    )
    transactions = serializers.IntegerField(help_text="Financial transactions created.")
    exceptions = serializers.IntegerField()
    totals = serializers.DictField(
        child=serializers.CharField(), help_text="Amounts per currency, as decimal strings."
    )
    note = serializers.CharField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class BillingRunDetailSerializer(BillingRunSerializer):
    """A run with its criteria, filters, last error and results per step."""

    billing_term_schemes = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    billing_frequencies = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    ar_classifications = serializers.ListField(
        child=serializers.ChoiceField(choices=BillingProfile.ARClassification.choices), read_only=True
    )
    payment_preferences = serializers.ListField(
        child=serializers.ChoiceField(choices=BillingProfile.PaymentPreference.choices), read_only=True
    )
    presentment_preferences = serializers.ListField(
        child=serializers.ChoiceField(choices=BillingProfile.Presentment.choices), read_only=True
    )
    accounts = serializers.SlugRelatedField(
        slug_field="number", many=True, read_only=True, help_text="Account numbers."
    )
    subscriptions = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True, help_text="Subscription ids."
    )
    groups = serializers.SlugRelatedField(
        slug_field="code", many=True, read_only=True, help_text="Account group codes."
    )
    steps = serializers.SerializerMethodField()

    class Meta(BillingRunSerializer.Meta):
        fields = [
            *BillingRunSerializer.Meta.fields,
            "billing_term_schemes",
            "billing_frequencies",
            "ar_classifications",
            "payment_preferences",
            "presentment_preferences",
            "accounts",
            "subscriptions",
            "groups",
            "last_error",
            "steps",
        ]
        read_only_fields = fields

    @extend_schema_field(StepProgressSerializer(many=True))
    def get_steps(self, run: BillingRun) -> list[dict[str, Any]]:
        return StepProgressSerializer(billrun_progress(run=run), many=True).data


class BillingRunResumeSerializer(BillingRunDetailSerializer):
    chunks_queued = serializers.IntegerField(help_text="Chunks of the current stage queued again.")

    class Meta(BillingRunDetailSerializer.Meta):
        fields = [*BillingRunDetailSerializer.Meta.fields, "chunks_queued"]
        read_only_fields = fields


class RunExceptionSerializer(serializers.ModelSerializer):
    account = serializers.SlugRelatedField(slug_field="number", read_only=True, help_text="Account number.")
    subscription = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="The subscription's id, when one caused it."
    )
    service_identifier = serializers.CharField(
        source="subscription.service_identifier", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = RunException
        fields = ["account", "stage", "code", "message", "subscription", "service_identifier", "created_at"]
        read_only_fields = fields


class RunDefinitionSerializer(serializers.ModelSerializer):
    billing_term_schemes = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    billing_frequencies = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    ar_classifications = serializers.ListField(child=serializers.CharField(), read_only=True)
    payment_preferences = serializers.ListField(child=serializers.CharField(), read_only=True)
    presentment_preferences = serializers.ListField(child=serializers.CharField(), read_only=True)
    schedule = serializers.SerializerMethodField(help_text="The crontab of a recurring definition.")

    class Meta:
        model = RunDefinition
        fields = [
            "id",
            "name",
            "run_type",
            "active",
            "description",
            "bill_as_of_day",
            "transaction_date_rule",
            "transaction_date_offset_days",
            "due_proximity_min_days",
            "due_proximity_max_days",
            "due_proximity_default_sign",
            "due_proximity_default_days",
            "recurring",
            "schedule",
            "recurring_up_to",
            "run_formatting",
            "estimate_wallet_consumption",
            "chunk_size",
            "formatting_chunk_size",
            "billing_term_schemes",
            "billing_frequencies",
            "ar_classifications",
            "payment_preferences",
            "presentment_preferences",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_schedule(self, definition: RunDefinition) -> str | None:
        crontab = definition.schedule
        if crontab is None:
            return None
        return " ".join(
            [
                crontab.minute,
                crontab.hour,
                crontab.day_of_month,
                crontab.month_of_year,
                crontab.day_of_week,
            ]
        ) + (f" ({crontab.timezone})" if crontab.timezone else "")


# --- input -------------------------------------------------------------------------------------------------


def _resolve(model, field: str, values: list, label: str) -> list:
    """The rows named by ``values`` (codes, numbers, ids) in one query; every unknown one is named."""
    wanted = list(dict.fromkeys(values))
    found = {getattr(row, field): row for row in model.objects.filter(**{f"{field}__in": wanted})}
    unknown = [value for value in wanted if value not in found]
    if unknown:
        shown = ", ".join(str(value) for value in unknown[:20])
        more = f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""
        raise serializers.ValidationError(f"Unknown {label}: {shown}{more}.")
    return [found[value] for value in wanted]


def _codes(help_text: str) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        max_length=MAX_FILTER_ITEMS,
        help_text=help_text,
    )


def _choices(choices, help_text: str) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.ChoiceField(choices=choices), required=False, help_text=help_text
    )


class BillingRunWriteSerializer(serializers.Serializer):
    """What a Draft run may be given (all optional). Criteria: an empty list means "all"; left out on
    create, the definition's default. Filters: an empty list means no such filter."""

    mode = serializers.ChoiceField(choices=BillingRun.Mode.choices, required=False)
    bill_as_of_date = serializers.DateField(required=False)
    transaction_date = serializers.DateField(required=False)
    due_date_proximity_sign = serializers.ChoiceField(choices=RunDefinition.Sign.choices, required=False)
    due_date_proximity_days = serializers.IntegerField(min_value=0, max_value=90, required=False)
    billing_term_schemes = _codes("Billing term scheme codes (of the run's type).")
    billing_frequencies = _codes("Billing frequency codes (monthly, quarterly, ...).")
    ar_classifications = _choices(BillingProfile.ARClassification.choices, "AR classifications.")
    payment_preferences = _choices(BillingProfile.PaymentPreference.choices, "Payment preferences.")
    presentment_preferences = _choices(BillingProfile.Presentment.choices, "Presentment preferences.")
    accounts = _codes("Account numbers: only their bill units are billed.")
    subscriptions = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        max_length=MAX_FILTER_ITEMS,
        help_text="Subscription ids: only these are billed.",
    )
    groups = _codes("Account group codes: only the bill units of their accounts are billed.")

    def validate_billing_term_schemes(self, value):
        return _resolve(BillingTermScheme, "code", value, "billing term schemes")

    def validate_billing_frequencies(self, value):
        return _resolve(BillingFrequency, "code", value, "billing frequencies")

    def validate_accounts(self, value):
        return _resolve(Account, "number", value, "account numbers")

    def validate_subscriptions(self, value):
        return _resolve(Subscription, "pk", value, "subscription ids")

    def validate_groups(self, value):
        return _resolve(AccountGroup, "code", value, "account groups")

    def validate(self, attrs):
        for name in ("ar_classifications", "payment_preferences", "presentment_preferences"):
            if name in attrs:
                attrs[name] = list(dict.fromkeys(attrs[name]))
        return attrs


class BillingRunCreateSerializer(BillingRunWriteSerializer):
    run_type = serializers.ChoiceField(
        choices=RunType.choices, default=RunType.NORMAL, help_text="Default `normal`."
    )


class BillingRunExecuteSerializer(serializers.Serializer):
    up_to = serializers.ChoiceField(
        choices=Stage.choices,
        help_text="The last stage to execute: one after the stage the run has reached (prepaid runs have "
        "`rating` and `posting`).",
    )
    at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="When to start (ISO 8601). Left out, null or now: at once; later: the run is scheduled.",
    )


# --- views -------------------------------------------------------------------------------------------------


class BillingRunFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(field_name="state", choices=BillingRun.State.choices)
    run_type = django_filters.ChoiceFilter(field_name="run_type", choices=RunType.choices)
    execution = django_filters.ChoiceFilter(field_name="execution", choices=BillingRun.Execution.choices)

    class Meta:
        model = BillingRun
        fields: list[str] = []


_NUMBER = OpenApiParameter(
    "number", OpenApiTypes.STR, OpenApiParameter.PATH, description="The run's number, e.g. BR-000042."
)
_STATE_409 = OpenApiResponse(
    ErrorSerializer,
    description="The run's state does not allow this (`run_not_draft`, `run_executing`, `run_finished`, "
    "`stage_already_done`, `run_not_scheduled`, `run_idle`), or an idempotency key reused.",
)


@extend_schema_view(
    list=extend_schema(
        summary="List billing runs",
        description="Newest first. Filters: `state`, `run_type`, `execution`.",
        responses={200: BillingRunSerializer(many=True), **error_responses(400, 401, 403)},
    ),
    retrieve=extend_schema(
        summary="Get a billing run with its criteria, filters and results per step",
        parameters=[_NUMBER],
        responses={200: BillingRunDetailSerializer, **error_responses(401, 403, 404)},
    ),
    destroy=extend_schema(
        summary="Delete a Draft billing run",
        description="An executed run stays, with its results: `409 run_not_draft`.",
        parameters=[_NUMBER],
        responses={204: None, **error_responses(401, 403, 404), 409: _STATE_409},
    ),
)
@extend_schema(tags=[TAG])
class BillingRunViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    serializer_class = BillingRunSerializer
    permission_classes = [IsAuthenticated, BillingRunApiPermission]
    lookup_field = "number"
    lookup_value_regex = "[^/]+"
    filterset_class = BillingRunFilter
    ordering_fields = ["created_at", "number", "bill_as_of_date", "started_at", "finished_at"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):
        return api_runs() if self.action == "list" else api_run_detail()

    def get_serializer_class(self):
        return BillingRunSerializer if self.action == "list" else BillingRunDetailSerializer

    def answer(self, run: BillingRun, status_code: int = status.HTTP_200_OK, headers=None, **extra):
        fresh = api_run_detail().get(pk=run.pk)
        for name, value in extra.items():
            setattr(fresh, name, value)
        serializer = BillingRunResumeSerializer if extra else BillingRunDetailSerializer
        return Response(serializer(fresh).data, status=status_code, headers=headers)

    @extend_schema(
        summary="Create a billing run",
        description=(
            "A Draft run from the active definition of `run_type`: its defaults (bill-as-of date, "
            "transaction date, due-date proximity, criteria) apply to what is left out. Criteria and filters "
            "are named by codes (schemes, frequencies, groups), account numbers and subscription ids; an "
            "unknown one is a 400 naming it. Also 400: no active definition (`no_active_definition`), a "
            "transaction date before the bill-as-of date, a proximity outside the definition's range, a "
            "scheme of the other run type, an INDIVIDUAL run without exactly one account."
        ),
        request=BillingRunCreateSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={201: BillingRunDetailSerializer, **error_responses(400, 401, 403, 409)},
    )
    @idempotent
    def create(self, request, *args, **kwargs):
        data = BillingRunCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = billrun_create(actor=request.user, **data.validated_data)
        location = reverse("api-billing-run-detail", kwargs={"number": run.number})
        return self.answer(run, status.HTTP_201_CREATED, headers={"Location": location})

    @extend_schema(
        summary="Change a Draft billing run",
        description=(
            "Only the fields sent change (the same fields and rules as create, without `run_type`). A run "
            "that is no longer Draft: `409 run_not_draft`."
        ),
        parameters=[_NUMBER, IDEMPOTENCY_KEY_PARAMETER],
        request=BillingRunWriteSerializer,
        responses={200: BillingRunDetailSerializer, **error_responses(400, 401, 403, 404), 409: _STATE_409},
    )
    @idempotent
    def partial_update(self, request, *args, **kwargs):
        run = self.get_object()
        data = BillingRunWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        billrun_update(run=run, actor=request.user, **data.validated_data)
        return self.answer(run)

    def destroy(self, request, *args, **kwargs):
        billrun_delete(run=self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        operation_id="billing_runs_execute",
        summary="Execute a billing run up to a stage, now or at a time",
        description=(
            "Accepted (202): the work is queued for the workers; follow it with `GET .../{number}/` "
            "(`execution` `running`, then `idle` with `state` the stage reached, or a final state). With "
            "`at` later than now the run is `scheduled` (`scheduled_for`) and starts then. 400: a stage the "
            "run type does not have, a time in the past; 409: a finished or executing run, a stage already "
            "done."
        ),
        parameters=[_NUMBER, IDEMPOTENCY_KEY_PARAMETER],
        request=BillingRunExecuteSerializer,
        responses={202: BillingRunDetailSerializer, **error_responses(400, 401, 403, 404), 409: _STATE_409},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def execute(self, request, *args, **kwargs):
        run = self.get_object()
        data = BillingRunExecuteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        billrun_execute(
            run=run, up_to=data.validated_data["up_to"], at=data.validated_data.get("at"), actor=request.user
        )
        return self.answer(run, status.HTTP_202_ACCEPTED)

    @extend_schema(
        operation_id="billing_runs_resume",
        summary="Resume an executing run whose work was lost",
        description=(
            "Queues again every chunk of the current stage that is not done (a worker killed, a broker "
            "restarted); work already done is never done twice. `409 run_idle` for a run that is not "
            "executing."
        ),
        parameters=[_NUMBER, IDEMPOTENCY_KEY_PARAMETER],
        request=None,
        responses={202: BillingRunResumeSerializer, **error_responses(401, 403, 404), 409: _STATE_409},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def resume(self, request, *args, **kwargs):
        run = self.get_object()
        queued = billrun_resume(run=run, actor=request.user, force=True)
        return self.answer(run, status.HTTP_202_ACCEPTED, chunks_queued=queued)

    @extend_schema(
        operation_id="billing_runs_unschedule",
        summary="Cancel a scheduled execution",
        description="The run stays where it is, idle. `409 run_not_scheduled` when it is not scheduled.",
        parameters=[_NUMBER, IDEMPOTENCY_KEY_PARAMETER],
        request=None,
        responses={200: BillingRunDetailSerializer, **error_responses(401, 403, 404), 409: _STATE_409},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def unschedule(self, request, *args, **kwargs):
        run = self.get_object()
        billrun_unschedule(run=run, actor=request.user)
        return self.answer(run)


class RunExceptionFilter(django_filters.FilterSet):
    stage = django_filters.ChoiceFilter(field_name="stage", choices=Stage.choices)
    code = django_filters.CharFilter(field_name="code")
    account = django_filters.CharFilter(field_name="account__number", label="Account number")

    class Meta:
        model = RunException
        fields: list[str] = []


@extend_schema_view(
    get=extend_schema(
        summary="List a billing run's exceptions",
        description=(
            "The accounts the run could not bill (or not fully), with the stage, a code and a message; the "
            "run went on with the others. Filters: `stage`, `code`, `account`."
        ),
        parameters=[_NUMBER],
        responses={200: RunExceptionSerializer(many=True), **error_responses(400, 401, 403, 404)},
    )
)
@extend_schema(tags=[TAG])
class BillingRunExceptionListView(generics.ListAPIView):
    serializer_class = RunExceptionSerializer
    permission_classes = [IsAuthenticated, BillingRunApiPermission]
    permission_action = "exceptions"
    filterset_class = RunExceptionFilter
    ordering_fields = ["id", "created_at", "code", "stage"]
    ordering = ["id"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return RunException.objects.none()
        run = get_object_or_404(BillingRun.objects.only("id"), number=self.kwargs["number"])
        return RunException.objects.filter(run=run).select_related("account", "subscription")


class RunDefinitionFilter(django_filters.FilterSet):
    run_type = django_filters.ChoiceFilter(field_name="run_type", choices=RunType.choices)
    active = django_filters.BooleanFilter(field_name="active")

    class Meta:
        model = RunDefinition
        fields: list[str] = []


@extend_schema_view(
    get=extend_schema(
        summary="List run definitions",
        description=(
            "The settings runs start from (one active per run type); changed in Django admin. Filters: "
            "`run_type`, `active`."
        ),
        responses={200: RunDefinitionSerializer(many=True), **error_responses(400, 401, 403)},
    )
)
@extend_schema(tags=[TAG])
class RunDefinitionListView(generics.ListAPIView):
    serializer_class = RunDefinitionSerializer
    permission_classes = [IsAuthenticated, BillingRunApiPermission]
    permission_action = "definitions"
    filterset_class = RunDefinitionFilter
    ordering_fields = ["name", "run_type", "created_at"]
    ordering = ["run_type", "-active", "name"]

    def get_queryset(self):
        return RunDefinition.objects.select_related("schedule").prefetch_related(
            "billing_term_schemes", "billing_frequencies"
        )
