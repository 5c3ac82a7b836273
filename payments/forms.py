"""Forms of the payments CSR pages. They parse and check what a person typed; the rules that need the
database (limits, open statements, maker-checker) stay in payments.services, whose refusals the views put
back on these forms' fields (``apply_error``).

No form has a card number or security code field, and none shows back a value shaped like a card number:
``NoCardNumbersForm`` refuses such text in any field and blanks it before the form is shown again.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

from django import forms
from django.utils import timezone

from billing_mgmt.errors import ApplicationError
from billing_mgmt.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS, format_money, minor_units, quantize

from .models import Adjustment, PaymentMethod
from .services import CARD_NUMBER_MESSAGE, looks_like_card_number

AMOUNT_PATTERN = re.compile(r"^(\d+(\.\d*)?|\.\d+)$")
AMOUNT_LIMIT = Decimal(10) ** (AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES)
# POSTed field names that would carry a card number or security code: refused whatever their value.
SENSITIVE_NAME = re.compile(r"cvv|cvc|card_?num|cardno|security_?code|(^|[_-])pan([_-]|$)", re.IGNORECASE)
SENSITIVE_MESSAGE = (
    "Card numbers and security codes are never entered here. Card details are typed in the payment "
    "processor's page; only its token, the brand, the last four digits and the expiry come here."
)


def sensitive_fields(data) -> list[str]:
    """The names of posted fields that look meant for a card number or CVV (their values are never read)."""
    return [name for name in data if SENSITIVE_NAME.search(name)]


def parse_amount(raw: str, currency: str) -> Decimal:
    """A positive amount with at most the currency's decimals, from what was typed ("1,234.50" is fine)."""
    text = (raw or "").replace(" ", "").replace(",", "")
    example = format(quantize(20, currency), "f")
    if not AMOUNT_PATTERN.match(text):
        if text.startswith("-"):
            raise forms.ValidationError("The amount must be more than zero.", code="not_positive")
        raise forms.ValidationError(f"Enter the amount as a number, e.g. {example}.", code="invalid")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise forms.ValidationError(
            f"Enter the amount as a number, e.g. {example}.", code="invalid"
        ) from None
    if value <= 0:
        raise forms.ValidationError("The amount must be more than zero.", code="not_positive")
    places = minor_units(currency)
    if value != quantize(value, currency):
        most = f"at most {places} decimal place{'s' if places > 1 else ''}" if places else "no decimals"
        raise forms.ValidationError(f"{currency} amounts have {most}.", code="decimal_places")
    if value >= AMOUNT_LIMIT:
        raise forms.ValidationError("The amount is too large.", code="too_large")
    return quantize(value, currency)


class NoCardNumbersForm(forms.Form):
    """Refuses text shaped like a card number in any field, and never shows it back."""

    scrubbed: set[str]

    def clean(self):
        cleaned = super().clean()
        self.scrubbed = set()
        for name in self.fields:
            value = self.data.get(self.add_prefix(name), "") if self.is_bound else ""
            if isinstance(value, str) and looks_like_card_number(value):
                self.scrubbed.add(name)
                if name not in self.errors:
                    self.add_error(name, CARD_NUMBER_MESSAGE)
        if self.scrubbed:
            self.blank(*self.scrubbed)
        return cleaned

    def blank(self, *names: str) -> None:
        """Show these fields empty again (their typed values are dropped from the page)."""
        data = self.data.copy()
        for name in names:
            if self.add_prefix(name) in data:
                data[self.add_prefix(name)] = ""
        self.data = data

    def describe(self, *, focus: bool = False) -> None:
        """Wire each widget to its help and error text (aria-describedby, aria-invalid, as _field.html names
        them) and put the focus on the first field in error (or on the first field, with ``focus``)."""
        focused = False
        for name, field in self.fields.items():
            bound = self[name]
            ids = []
            if field.help_text or name == "amount":
                ids.append(f"{bound.auto_id}_helptext")
            has_error = self.is_bound and name in self.errors
            if has_error:
                ids.append(f"{bound.auto_id}_error")
            attrs = field.widget.attrs
            if ids:
                attrs["aria-describedby"] = " ".join(ids)
            if has_error:
                attrs["aria-invalid"] = "true"
            choice = getattr(field.widget, "input_type", "") in ("radio", "checkbox")
            if not focused and not choice and (has_error or (focus and not self.errors)):
                attrs["autofocus"] = True
                focused = True

    def apply_error(self, exc: ApplicationError, *, aliases: dict[str, str] | None = None) -> None:
        """Put a service's refusal on the fields it names; what names no field of this form goes on top."""
        aliases = aliases or {}
        on_top = not exc.fields
        for field, messages in exc.fields.items():
            target = aliases.get(field, field)
            if target in self.fields:
                self.add_error(target, messages)
                if exc.code == "card_number_refused":
                    self.blank(target)
            else:
                on_top = True
        if on_top:
            self.add_error(None, exc.message)


class AmountMixin:
    currency: str

    def clean_amount(self) -> Decimal:
        return parse_amount(self.cleaned_data["amount"], self.currency)


class MethodChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: PaymentMethod) -> str:
        expiry = f", expires {obj.expiry_month:02d}/{obj.expiry_year}" if obj.expiry_month else ""
        return f"{obj}{expiry}{' (default)' if obj.is_default else ''}"


class StatementChoiceField(forms.ModelChoiceField):
    def __init__(self, *args, locale: str = "en_US", **kwargs) -> None:
        self.locale = locale
        super().__init__(*args, **kwargs)

    def label_from_instance(self, obj) -> str:
        return (
            f"{obj.number} · due {obj.due_date:%b} {obj.due_date.day}, {obj.due_date.year} · "
            f"{format_money(obj.total_due, obj.currency, self.locale)} · {obj.get_status_display()}"
        )


class PaymentForm(AmountMixin, NoCardNumbersForm):
    amount = forms.CharField(
        label="Amount",
        max_length=30,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "size": 12}),
        error_messages={"required": "Enter the amount received."},
    )
    payment_date = forms.DateField(
        label="Date received",
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"required": "Enter the date the payment was received.", "invalid": "Enter a date."},
    )
    method = MethodChoiceField(
        queryset=PaymentMethod.objects.none(),
        required=False,
        label="Method",
        empty_label="None on file",
        error_messages={
            "invalid_choice": "That method cannot be used: it was removed or is another account's."
        },
    )
    reference = forms.CharField(
        label="Reference", max_length=100, required=False, help_text="Receipt, cheque or transfer number."
    )
    statement = StatementChoiceField(
        queryset=None,
        required=False,
        label="Settle first",
        empty_label="Oldest open statements first",
        error_messages={"invalid_choice": "Choose one of this account's open statements."},
    )

    def __init__(self, *args, currency: str, methods, statements, locale: str = "en_US", **kwargs) -> None:
        initial = kwargs.setdefault("initial", {})
        methods = list(methods)
        initial.setdefault("payment_date", timezone.localdate())
        default = next((m for m in methods if m.is_default), None)
        if default is not None:
            initial.setdefault("method", default.pk)
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.example = format(quantize(20, currency), "f")
        self.fields["method"].queryset = PaymentMethod.objects.filter(pk__in=[m.pk for m in methods])
        self.fields["method"].choices = [("", "None on file")] + [
            (m.pk, self.fields["method"].label_from_instance(m)) for m in methods
        ]
        self.fields["statement"].queryset = statements
        self.fields["statement"].locale = locale

    def clean_payment_date(self) -> dt.date:
        value = self.cleaned_data["payment_date"]
        if value > timezone.localdate():
            raise forms.ValidationError("A payment cannot be dated in the future.", code="future")
        return value


class ReverseForm(NoCardNumbersForm):
    reason = forms.CharField(
        label="Reason", max_length=300, error_messages={"required": "Say why the payment is reversed."}
    )


class AdjustmentForm(AmountMixin, NoCardNumbersForm):
    direction = forms.ChoiceField(
        label="Direction",
        choices=[
            (Adjustment.Direction.CREDIT, "Credit (lowers what the customer owes)"),
            (Adjustment.Direction.DEBIT, "Debit (raises what the customer owes)"),
        ],
        widget=forms.RadioSelect,
        initial=Adjustment.Direction.CREDIT,
        error_messages={"required": "Choose credit or debit."},
    )
    amount = forms.CharField(
        label="Amount",
        max_length=30,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "size": 12}),
        error_messages={"required": "Enter the amount of the adjustment."},
    )
    reason = forms.ModelChoiceField(
        queryset=None,
        label="Reason",
        empty_label="Choose a reason",
        error_messages={
            "required": "Choose a reason.",
            "invalid_choice": "Choose one of the reasons listed.",
        },
    )
    note = forms.CharField(label="Note", max_length=300, required=False)
    statement = StatementChoiceField(
        queryset=None,
        required=False,
        label="For statement",
        empty_label="No particular statement",
        error_messages={"invalid_choice": "Choose one of this account's statements."},
    )

    def __init__(self, *args, currency: str, reasons, statements, locale: str = "en_US", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.example = format(quantize(20, currency), "f")
        self.reasons = list(reasons)
        self.fields["reason"].queryset = reasons
        self.fields["reason"].choices = [("", "Choose a reason")] + [
            (r.pk, f"{r.name}{'' if r.direction == 'both' else f' ({r.direction}s only)'}")
            for r in self.reasons
        ]
        self.fields["statement"].queryset = statements
        self.fields["statement"].locale = locale

    def clean(self):
        cleaned = super().clean()
        reason, direction = cleaned.get("reason"), cleaned.get("direction")
        if reason is not None and direction and reason.direction not in ("both", direction):
            self.add_error("reason", f"{reason.name} is for {reason.get_direction_display().lower()}.")
        return cleaned


class RefundForm(AmountMixin, NoCardNumbersForm):
    """Pay back (part of) a credit balance: the amount defaults to the whole credit."""

    amount = forms.CharField(
        label="Amount",
        max_length=30,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "size": 12}),
        error_messages={"required": "Enter the amount to pay back."},
    )
    method = MethodChoiceField(
        queryset=PaymentMethod.objects.none(),
        required=False,
        label="Paid back to",
        empty_label="Not recorded",
        error_messages={
            "invalid_choice": "That method cannot be used: it was removed or is another account's."
        },
    )
    reason = forms.CharField(
        label="Reason",
        max_length=300,
        help_text="e.g. Customer closed the account and asked for the credit.",
        error_messages={"required": "Say why the money is paid back."},
    )

    def __init__(self, *args, currency: str, credit: Decimal, methods, **kwargs) -> None:
        initial = kwargs.setdefault("initial", {})
        methods = list(methods)
        if credit > 0:
            initial.setdefault("amount", format(quantize(credit, currency), "f"))
        default = next((m for m in methods if m.is_default), None)
        if default is not None:
            initial.setdefault("method", default.pk)
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.example = format(quantize(20, currency), "f")
        self.fields["method"].queryset = PaymentMethod.objects.filter(pk__in=[m.pk for m in methods])
        self.fields["method"].choices = [("", "Not recorded")] + [
            (m.pk, self.fields["method"].label_from_instance(m)) for m in methods
        ]


class WriteOffForm(AmountMixin, NoCardNumbersForm):
    """Write off (part of) what an account owes: the amount defaults to all of it."""

    amount = forms.CharField(
        label="Amount",
        max_length=30,
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "size": 12}),
        error_messages={"required": "Enter the amount to write off."},
    )
    reason = forms.CharField(
        label="Reason",
        max_length=300,
        help_text="e.g. Uncollectable: customer bankrupt.",
        error_messages={"required": "Say why the balance is written off."},
    )

    def __init__(self, *args, currency: str, owed: Decimal, **kwargs) -> None:
        initial = kwargs.setdefault("initial", {})
        if owed > 0:
            initial.setdefault("amount", format(quantize(owed, currency), "f"))
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.example = format(quantize(20, currency), "f")


def _expiry_years() -> list[tuple[str, str]]:
    year = timezone.localdate().year
    return [("", "Year")] + [(str(y), str(y)) for y in range(year, year + 16)]


class CardForm(NoCardNumbersForm):
    kind = PaymentMethod.Kind.CARD
    token = forms.CharField(
        label="Processor token",
        max_length=200,
        help_text="The token the payment processor returned for the card (e.g. tok_…).",
        error_messages={"required": "Enter the processor's token for the card."},
    )
    brand = forms.CharField(label="Brand", max_length=30, required=False, help_text="e.g. Visa")
    last4 = forms.RegexField(
        label="Last four digits",
        regex=r"^\d{4}$",
        max_length=4,
        error_messages={"required": "Enter the card's last four digits.", "invalid": "Exactly four digits."},
    )
    expiry_month = forms.TypedChoiceField(
        label="Expiry month",
        coerce=int,
        choices=[("", "Month")] + [(str(m), f"{m:02d}") for m in range(1, 13)],
        error_messages={"required": "Choose the expiry month."},
    )
    expiry_year = forms.TypedChoiceField(
        label="Expiry year", coerce=int, choices=(), error_messages={"required": "Choose the expiry year."}
    )
    holder = forms.CharField(label="Name on the card", max_length=200, required=False)
    make_default = forms.BooleanField(label="Make it the default method", required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["expiry_year"].choices = _expiry_years()

    def clean(self):
        cleaned = super().clean()
        month, year = cleaned.get("expiry_month"), cleaned.get("expiry_year")
        today = timezone.localdate()
        if month and year and (year, month) < (today.year, today.month):
            self.add_error("expiry_year", "The card has expired.")
        return cleaned


class BankAccountForm(NoCardNumbersForm):
    kind = PaymentMethod.Kind.BANK_ACCOUNT
    token = forms.CharField(
        label="Processor token", max_length=200, required=False, help_text="If the processor gave one."
    )
    last4 = forms.RegexField(
        label="Last four digits of the account",
        regex=r"^\d{4}$",
        max_length=4,
        required=False,
        error_messages={"invalid": "Exactly four digits."},
    )
    bank_name = forms.CharField(label="Bank", max_length=200, required=False)
    holder = forms.CharField(label="Account holder", max_length=200, required=False)
    make_default = forms.BooleanField(label="Make it the default method", required=False)

    def clean(self):
        cleaned = super().clean()
        if not self.errors and not (cleaned.get("token") or cleaned.get("last4")):
            self.add_error("token", "Enter the processor's token or the account's last four digits.")
        return cleaned


class OtherMethodForm(NoCardNumbersForm):
    kind = PaymentMethod.Kind.OTHER
    description = forms.CharField(
        label="What it is",
        max_length=200,
        help_text="e.g. Cheques by post, Cash at the store.",
        error_messages={"required": "Say what the method is."},
    )
    make_default = forms.BooleanField(label="Make it the default method", required=False)


METHOD_FORMS = {
    PaymentMethod.Kind.CARD: CardForm,
    PaymentMethod.Kind.BANK_ACCOUNT: BankAccountForm,
    PaymentMethod.Kind.OTHER: OtherMethodForm,
}


class DecisionForm(NoCardNumbersForm):
    comment = forms.CharField(label="Comment", max_length=300, required=False)


class QueueFilterForm(forms.Form):
    account = forms.CharField(label="Account number", max_length=30, required=False)
    min_amount = forms.DecimalField(label="Amount from", required=False, min_value=0, decimal_places=4)
    max_amount = forms.DecimalField(label="Amount to", required=False, min_value=0, decimal_places=4)

    def clean(self):
        cleaned = super().clean()
        low, high = cleaned.get("min_amount"), cleaned.get("max_amount")
        if low is not None and high is not None and low > high:
            self.add_error("max_amount", "Must not be below “Amount from”.")
        return cleaned
