"""Cases API serializers: cases with their dispute and history, the catalog of service processes (output);
an inquiry (input, shape only: the rules are disputes.services.case_open's). Amounts are decimal strings in
the currency's minor units."""

from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from statements.api.serializers import AmountField

from ..models import Case, CaseEvent, Dispute, ServiceProcess
from ..selectors import is_overdue

KEY_VALIDATOR = RegexValidator(
    r"^[\x21-\x7e]{1,255}$", "Use 1 to 255 printable ASCII characters without spaces."
)  # as billing_mgmt.api.idempotency


# --- output ------------------------------------------------------------------------------------------------


def choice_field(choices, what: str = "") -> serializers.CharField:
    """A read-only status-like field, documented as a string that lists its values. Not an enum: other apps'
    "status" and "channel" enums would collide with these names (ENUM_NAME_OVERRIDES in the settings would
    name them)."""
    values = ", ".join(f"`{value}`" for value, _ in choices)
    return serializers.CharField(read_only=True, help_text=f"{what} One of {values}.".strip())


class ServiceProcessSerializer(serializers.ModelSerializer):
    action_label = serializers.CharField(source="get_action_display", help_text="What approving it does.")
    service_level_hours = serializers.IntegerField(
        help_text="A new case is due this many hours after it is raised."
    )
    max_extension_days = serializers.SerializerMethodField(
        help_text="Extend due date only: the most days a due date may move; null for other actions."
    )
    needs_statement = serializers.BooleanField(help_text="A request names the statement it is about.")
    portal = serializers.BooleanField(help_text="Customers may request it in the portal.")
    api_requestable = serializers.SerializerMethodField(
        help_text="Raised through POST /api/v1/cases/ (inquiries only)."
    )

    class Meta:
        model = ServiceProcess
        fields = [
            "code",
            "name",
            "description",
            "action",
            "action_label",
            "queue",
            "service_level_hours",
            "max_extension_days",
            "needs_statement",
            "portal",
            "api_requestable",
        ]
        read_only_fields = fields

    def get_max_extension_days(self, process: ServiceProcess) -> int | None:
        if process.action != ServiceProcess.Action.EXTEND_DUE_DATE:
            return None
        return process.max_extension_days

    def get_api_requestable(self, process: ServiceProcess) -> bool:
        return process.action == ServiceProcess.Action.INQUIRY


class DisputeSummarySerializer(serializers.ModelSerializer):
    status = choice_field(Dispute.Status.choices, "approved: in full; partially_approved: in part.")
    statement = serializers.CharField(source="statement.number", help_text="The disputed statement's number.")
    statement_line = serializers.IntegerField(
        source="statement_line_id", allow_null=True, help_text="The line's id; null: the whole statement."
    )
    line_label = serializers.CharField(help_text="What the line said when it was disputed.")
    amount = AmountField(help_text="The disputed amount.")
    approved_amount = AmountField(
        allow_null=True, help_text="Credited when approved (in full or in part); null: not approved."
    )

    class Meta:
        model = Dispute
        fields = [
            "status",
            "statement",
            "statement_line",
            "line_label",
            "amount",
            "approved_amount",
            "currency",
            "resolved_at",
        ]
        read_only_fields = fields


class CaseEventSerializer(serializers.ModelSerializer):
    kind = choice_field(CaseEvent.Kind.choices, "What happened.")
    actor = serializers.CharField(source="actor_label", help_text="Who, as the history shows it.")
    public = serializers.BooleanField(
        help_text="The customer sees it (biller clients receive public events only; staff all)."
    )

    class Meta:
        model = CaseEvent
        fields = ["kind", "from_status", "to_status", "text", "actor", "public", "created_at"]
        read_only_fields = fields


class CaseSerializer(serializers.ModelSerializer):
    number = serializers.CharField(help_text="The tracking number, e.g. CS-0000042.")
    status = choice_field(Case.Status.choices, "Where it is (the state machine: docs/disputes.md).")
    channel = choice_field(Case.Channel.choices, "Where it was raised.")
    account = serializers.CharField(source="account.number", help_text="The account's number.")
    process = serializers.CharField(source="process.code", help_text="The service process's code.")
    process_name = serializers.CharField(source="process.name")
    statement = serializers.SerializerMethodField(
        help_text="The statement it is about (its number); null: none."
    )
    owner = serializers.SerializerMethodField(
        help_text="The staff member working it (username; staff callers only, null for billers)."
    )
    overdue = serializers.SerializerMethodField(help_text="Still open after its due date.")
    dispute = serializers.SerializerMethodField(
        help_text="A charge dispute's amount, status and approved amount; null for other cases."
    )

    class Meta:
        model = Case
        fields = [
            "number",
            "account",
            "process",
            "process_name",
            "subject",
            "description",
            "status",
            "channel",
            "queue",
            "owner",
            "statement",
            "requested_due_date",
            "resolution",
            "due_at",
            "overdue",
            "created_at",
            "updated_at",
            "decided_at",
            "actioned_at",
            "dispute",
        ]
        read_only_fields = fields

    def _staff(self) -> bool:
        return self.context.get("biller") is None

    def get_statement(self, case: Case) -> str | None:
        return case.statement.number if case.statement_id else None

    def get_owner(self, case: Case) -> str | None:
        if not self._staff() or case.owner_id is None:
            return None
        return case.owner.get_username()

    def get_overdue(self, case: Case) -> bool:
        return is_overdue(case, self.context.get("now"))

    @extend_schema_field(DisputeSummarySerializer(allow_null=True))
    def get_dispute(self, case: Case) -> dict | None:
        dispute = getattr(case, "dispute", None)
        return DisputeSummarySerializer(dispute).data if dispute is not None else None


class CaseDetailSerializer(CaseSerializer):
    history = CaseEventSerializer(
        source="shown_events", many=True, help_text="Oldest first: creation, status changes, comments."
    )

    class Meta(CaseSerializer.Meta):
        fields = [*CaseSerializer.Meta.fields, "history"]
        read_only_fields = fields


# --- input -------------------------------------------------------------------------------------------------


class InquiryCreateSerializer(serializers.Serializer):
    account = serializers.CharField(
        max_length=20,
        help_text=(
            "The account's number (e.g. A00000042). A biller client names an account it references; "
            "to start from its own reference, look the number up with GET /api/v1/accounts/by-ref/{ref}/."
        ),
    )
    process = serializers.SlugField(
        max_length=40,
        help_text="The code of an active service process whose action is `inquiry` "
        "(GET /api/v1/service-processes/, `api_requestable`).",
    )
    subject = serializers.CharField(max_length=200, help_text="What it is about, in a line.")
    description = serializers.CharField(
        max_length=4000, required=False, allow_blank=True, default="", help_text="The question in full."
    )
    idempotency_key = serializers.CharField(
        required=False,
        validators=[KEY_VALIDATOR],
        help_text="Optional, instead of the Idempotency-Key header: the same key again answers the first "
        "case (200) and raises nothing.",
    )
