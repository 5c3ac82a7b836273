"""Forms of the cases and disputes CSR pages. They parse what a person typed; every rule that needs the
database (the state machine, who may decide, one open dispute per line, at most the line's amount, how far a
due date may move) stays in disputes.services, whose refusals the views put back on these forms' fields
(``apply_error``, from payments.forms.NoCardNumbersForm, which also refuses text shaped like a card
number)."""

from __future__ import annotations

from django import forms

from payments.forms import AmountMixin, NoCardNumbersForm, StatementChoiceField
from statements.models import Statement

from .models import Case, ServiceProcess

STATEMENTS_LISTED = (
    36  # the new case form lists the account's latest statements (three years of monthly bills)
)


class ProcessChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: ServiceProcess) -> str:
        return obj.name


class CaseForm(NoCardNumbersForm):
    """A new case raised by a CSR (disputes.services.case_open, channel csr). Charge disputes are raised from
    the statement's lines instead (they need the line and the amount), so their process is not offered."""

    process = ProcessChoiceField(
        queryset=ServiceProcess.objects.none(),
        label="Request type",
        empty_label="Choose what the customer asks for",
        error_messages={
            "required": "Choose the type of request.",
            "invalid_choice": "Choose one of the request types listed.",
        },
    )
    subject = forms.CharField(
        label="Subject",
        max_length=200,
        help_text="One line the customer will recognise, e.g. “Why is my bill higher this month?”",
        error_messages={"required": "Write a subject."},
    )
    description = forms.CharField(
        label="Description",
        max_length=4000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="What the customer said and what they expect. The customer sees it with the case.",
    )
    statement = StatementChoiceField(
        queryset=Statement.objects.none(),
        required=False,
        label="Statement",
        empty_label="No particular statement",
        help_text="Needed to extend a due date; for any other request it says which bill it is about.",
        error_messages={"invalid_choice": "Choose one of this account's statements."},
    )
    requested_due_date = forms.DateField(
        label="New due date",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Extend invoice due date only: the due date the customer asks for.",
        error_messages={"invalid": "Enter a date."},
    )

    def __init__(self, *args, account, processes, statements, locale: str = "en_US", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.processes = [p for p in processes if p.action != ServiceProcess.Action.CHARGE_DISPUTE]
        self.fields["process"].queryset = ServiceProcess.objects.filter(pk__in=[p.pk for p in self.processes])
        self.fields["process"].choices = [("", self.fields["process"].empty_label)] + [
            (p.pk, p.name) for p in self.processes
        ]
        statements = list(statements)
        field = self.fields["statement"]
        field.locale = locale
        field.queryset = Statement.objects.filter(account=account)
        field.choices = [("", field.empty_label)] + [(s.pk, field.label_from_instance(s)) for s in statements]


class DisputeForm(AmountMixin, NoCardNumbersForm):
    """Dispute a statement line or a whole statement (disputes.services.dispute_open, channel csr)."""

    amount = forms.CharField(
        label="Disputed amount",
        max_length=30,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "size": 12}),
        error_messages={"required": "Enter the amount the customer disputes."},
    )
    reason = forms.CharField(
        label="Reason",
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="What the customer says is wrong. The customer sees it with the case.",
        error_messages={"required": "Say why the charge is disputed."},
    )

    def __init__(self, *args, currency: str, most: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.fields["amount"].label = f"Disputed amount in {currency}"
        self.fields["amount"].help_text = most


class TransitionForm(NoCardNumbersForm):
    """A status button of the case page: the status it moves to, what the page showed, and a text that is
    the resolution (for Resolved and Rejected) or a comment (otherwise)."""

    to_status = forms.ChoiceField(
        choices=Case.Status.choices,
        error_messages={"required": "Choose a status.", "invalid_choice": "Unknown status."},
    )
    expected_status = forms.ChoiceField(choices=Case.Status.choices, required=False)
    text = forms.CharField(
        label="Comment or resolution",
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Resolved and Rejected: the outcome the customer reads (required to reject). "
        "Other statuses: a comment the customer sees in the history.",
    )


class CommentForm(NoCardNumbersForm):
    text = forms.CharField(
        label="Comment",
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 4}),
        error_messages={"required": "Write the comment."},
    )
    internal = forms.BooleanField(
        label="Internal note (the customer does not see it)",
        required=False,
        help_text="Without it, the customer reads the comment in the portal.",
    )


class ResolveForm(NoCardNumbersForm):
    """A supervisor's decision on a dispute: approve in full, approve part of it, or reject with a note."""

    APPROVE_FULL = "approve_full"
    APPROVE_PART = "approve_part"
    REJECT = "reject"

    decision = forms.ChoiceField(
        label="Decision",
        choices=[
            (APPROVE_FULL, "Approve in full"),
            (APPROVE_PART, "Approve part of it"),
            (REJECT, "Reject"),
        ],
        widget=forms.RadioSelect,
        error_messages={"required": "Choose a decision."},
    )
    amount = forms.CharField(
        label="Amount to credit",
        max_length=30,
        required=False,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "size": 12}),
    )
    note = forms.CharField(
        label="Note",
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The customer reads it. Required to reject: say why.",
    )

    def __init__(self, *args, currency: str, most: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.fields["amount"].label = f"Amount to credit in {currency}"
        self.fields["amount"].help_text = (
            f"Approve part only: at most {most}." if most else "Approve part only."
        )

    def clean(self):
        from payments.forms import parse_amount

        cleaned = super().clean()
        decision = cleaned.get("decision")
        raw = (cleaned.get("amount") or "").strip()
        cleaned["amount"] = None
        if decision == self.APPROVE_PART:
            if not raw:
                self.add_error("amount", "Enter the amount to credit.")
            else:
                try:
                    cleaned["amount"] = parse_amount(raw, self.currency)
                except forms.ValidationError as exc:
                    self.add_error("amount", exc)
        return cleaned


class ResumeForm(NoCardNumbersForm):
    note = forms.CharField(label="Note", max_length=300, required=False)


class QueueFilterForm(forms.Form):
    """The supervisors' queue filters (all optional; a bad value is shown and ignored)."""

    STATUS_CHOICES = [
        ("open", "Open (new, in progress, waiting)"),
        ("all", "All statuses"),
        *Case.Status.choices,
    ]

    process = forms.ChoiceField(label="Type", required=False)
    status = forms.ChoiceField(label="Status", required=False, choices=STATUS_CHOICES)
    queue = forms.ChoiceField(label="Queue", required=False)
    due_before = forms.DateField(
        label="Due by", required=False, widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date."},
    )  # fmt: skip
    mine = forms.BooleanField(label="Only mine", required=False)

    def __init__(self, *args, processes, queues, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["process"].choices = [("", "All types")] + [(p.code, p.name) for p in processes]
        self.fields["queue"].choices = [("", "All queues")] + [(q, q) for q in queues]
