"""Forms of the customer portal. They parse what a customer typed; every rule that needs the database (the
line's amount, one open dispute per line, how far a due date may move) stays in disputes.services, whose
refusals the views put back on these forms' fields (``apply_error``). Like the CSR forms, none accepts or
shows back text shaped like a card number (payments.forms.NoCardNumbersForm).
"""

from __future__ import annotations

from django import forms

from billing_mgmt.money import format_money
from payments.forms import NoCardNumbersForm, parse_amount
from statements.models import Statement


class PortalForm(NoCardNumbersForm):
    """Every widget gets the portal's input class; ``describe()`` (inherited) wires help and errors."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            css = field.widget.attrs.get("class", "")
            field.widget.attrs["class"] = f"{css} input".strip()


class DisputeForm(PortalForm):
    amount = forms.CharField(
        label="Amount you dispute",
        max_length=30,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
        error_messages={"required": "Enter the amount you dispute."},
    )
    reason = forms.CharField(
        label="What is wrong with this charge?",
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="For example: “I cancelled this service in September” or “I was charged twice”.",
        error_messages={"required": "Tell us what is wrong with the charge."},
    )

    def __init__(self, *args, currency: str, line_amount, locale: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency
        amount = self.fields["amount"]
        amount.help_text = (
            f"Up to the whole charge of {format_money(line_amount, currency, locale)}. If only part of it is "
            "wrong, enter that part."
        )
        amount.label = f"Amount you dispute ({currency})"

    def clean_amount(self):
        return parse_amount(self.cleaned_data["amount"], self.currency)


class StatementChoiceField(forms.ModelChoiceField):
    def __init__(self, *args, locale: str = "en_US", **kwargs) -> None:
        self.locale = locale
        super().__init__(*args, **kwargs)

    def label_from_instance(self, obj: Statement) -> str:
        due = f"{obj.due_date:%b} {obj.due_date.day}, {obj.due_date.year}"
        return f"{obj.number} · {format_money(obj.total_due, obj.currency, self.locale)} · due {due}"


class CaseRequestForm(PortalForm):
    """A Help Center request. The statement and new due date fields are there only for the processes that
    need them (``with_statement``, ``with_due_date``)."""

    subject = forms.CharField(
        label="Subject",
        max_length=200,
        error_messages={"required": "Give your request a short subject."},
    )
    statement = StatementChoiceField(
        queryset=Statement.objects.none(),
        required=False,
        label="Statement",
        empty_label="Choose a statement",
        error_messages={"invalid_choice": "Choose one of your statements."},
    )
    requested_due_date = forms.DateField(
        label="New due date",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter a date, e.g. 2026-12-01."},
    )
    description = forms.CharField(
        label="Tell us more",
        max_length=4000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="What happened, and what you would like us to do.",
    )

    def __init__(
        self, *args, statements, with_statement: bool, statement_required: bool, with_due_date: bool,
        locale: str = "en_US", max_extension_days: int = 30, **kwargs,
    ) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self.order_fields(["statement", "requested_due_date", "subject", "description"])
        if with_statement:
            field = self.fields["statement"]
            field.queryset = statements
            field.locale = locale
            field.required = statement_required
            if statement_required:
                field.error_messages["required"] = "Choose the statement this is about."
                field.empty_label = "Choose a statement"
            else:
                field.empty_label = "Not about one statement"
        else:
            del self.fields["statement"]
        if with_due_date:
            field = self.fields["requested_due_date"]
            field.required = True
            field.error_messages["required"] = "Choose the new due date."
            field.help_text = f"Up to {max_extension_days} days after the statement’s present due date."
        else:
            del self.fields["requested_due_date"]


class ReplyForm(PortalForm):
    text = forms.CharField(
        label="Your reply",
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 4}),
        error_messages={"required": "Write your reply."},
    )
