"""CSR pages of the payments app: the account page's "Payments & adjustments" and "Payment methods"
sections with their forms, and the supervisors' queue of adjustments waiting for approval.

* The sections are registered in PaymentsConfig.ready() (billing_mgmt.sections). A form opens in its section:
  the buttons are links to the section URL with ``?form=payment`` (``adjustment``, ``card``, ``bank_account``,
  ``other``) that htmx loads in place; without JavaScript they open the section on its own page.
* Every write goes through payments.services. htmx gets 204 with ``HX-Trigger: account-changed`` (every
  section reloads: the balance tile, the ledger, this section with a notice of what happened); a plain post is
  redirected to the account page. A refused form comes back with its messages at the fields (htmx: in place,
  200, since htmx swaps only 2xx answers; otherwise a page of its own with the error status).
* Refund credit (payments.add_refund, shown while the bill unit has a credit balance) and Write off
  (payments.write_off_balance, supervisors, shown while it owes something) open their forms the same way
  (``?form=refund``, ``?form=write-off``), the amount set to the whole credit or all that is owed.
* The new payment, new adjustment, refund and write-off forms carry a one-time token: a fresh uuid4 signed
  for the user and account when the form is shown. It becomes the entry's idempotency key, so a double
  submit makes one payment (the second lands on the first and says so).
* Card numbers and security codes are never accepted: a posted field named like one is refused without
  reading it, text shaped like a card number in any field is refused and blanked before the form is shown
  again, and neither is logged.
"""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal
from typing import Any

from django.core import signing
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.models import Account
from accounts.selectors import paying_account
from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.money import format_money
from billing_mgmt.sections import get_section, is_partial, staff_required
from statements.views.statements import account_currency, account_locale

from . import selectors
from .forms import (
    METHOD_FORMS,
    SENSITIVE_MESSAGE,
    AdjustmentForm,
    DecisionForm,
    PaymentForm,
    QueueFilterForm,
    RefundForm,
    ReverseForm,
    WriteOffForm,
    sensitive_fields,
)
from .models import Adjustment, Payment, PaymentMethod, Refund, WriteOff
from .services import (
    adjustment_approve,
    adjustment_limit,
    adjustment_reject,
    adjustment_request,
    payment_method_add,
    payment_method_remove,
    payment_method_set_default,
    payment_post,
    payment_reverse,
    refund_post,
    write_off_post,
)

logger = logging.getLogger(__name__)

SECTION_KEY = "payments"
METHODS_KEY = "payment-methods"
ENTRIES_SHOWN = 15  # on the account page; the section's own page shows up to ENTRIES_SHOWN_FULL
ENTRIES_SHOWN_FULL = 200
VIEW_PERMISSION = "payments.view_payment"
PAYMENT_PERMISSION = "payments.add_payment"
ADJUSTMENT_PERMISSION = "payments.add_adjustment"
METHOD_VIEW_PERMISSION = "payments.view_paymentmethod"
METHOD_ADD_PERMISSION = "payments.add_paymentmethod"
METHOD_CHANGE_PERMISSION = "payments.change_paymentmethod"
APPROVE_PERMISSION = "payments.approve_adjustment"
REFUND_PERMISSION = "payments.add_refund"
WRITE_OFF_PERMISSION = "payments.write_off_balance"
CHANGED_EVENT = "account-changed"
TOKEN_SALT = "payments.entry"
NOTICE_KEY = "payments.notice:{section}:{number}"
QUEUE_NOTICE_KEY = "payments.queue-notice"
STATUS_BADGES = {
    "posted": "badge--active",
    "pending": "badge--suspended",
    "rejected": "badge--closed",
    "reversed": "badge--closed",
}


# Shared helpers ---------------------------------------------------------------------------------------------


def _load_account(number: str) -> Account:
    account = (
        Account.objects.select_related(
            "billing_profile", "parent__billing_profile", "parent__parent__billing_profile"
        )
        .filter(number=number)
        .first()
    )
    if account is None:
        raise Http404(f"No account {number}.")
    return account


def _need(request: HttpRequest, permission: str, message: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied(message)


def _inline(request: HttpRequest) -> bool:
    """Forms post with htmx on the account page (and in its htmx loads); on a section's own page they are
    plain forms that land back on the account page."""
    return is_partial(request) or getattr(request.resolver_match, "url_name", "") == "account-detail"


def _author(user) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else "Another system"


def _notice_key(section: str, account: Account) -> str:
    return NOTICE_KEY.format(section=section, number=account.number)


def _token_issue(request: HttpRequest, account: Account, form: str) -> str:
    return signing.dumps(
        {"account": account.number, "form": form, "key": uuid.uuid4().hex},
        salt=f"{TOKEN_SALT}:{request.user.pk}",
    )


def _token_key(request: HttpRequest, account: Account, form: str) -> str:
    """The idempotency key the form's token stands for (refused when forged or made for another form)."""
    try:
        payload = signing.loads(request.POST.get("token", ""), salt=f"{TOKEN_SALT}:{request.user.pk}")
    except signing.BadSignature:
        raise ApplicationError(
            "This form is not valid any more. Check the details and submit it again.", code="invalid_token"
        ) from None
    if payload.get("account") != account.number or payload.get("form") != form:
        raise ApplicationError("This form was made for another account.", code="invalid_token")
    return f"csr-{form}:{payload['key']}"


def _refuse_card_fields(request: HttpRequest) -> bool:
    """True when the post carries a field named like a card number or CVV. Only the names are logged."""
    names = sensitive_fields(request.POST)
    if names:
        logger.warning("Refused a post to %s with card data fields: %s", request.path, ", ".join(names))
    return bool(names)


def _clean_post(request: HttpRequest):
    """The post without any field named like card data (so that no form ever holds or shows its value)."""
    data = request.POST.copy()
    for name in sensitive_fields(data):
        del data[name]
    return data


def _done(request: HttpRequest, account: Account, section: str, notice: dict[str, Any]) -> HttpResponse:
    request.session[_notice_key(section, account)] = notice
    if is_partial(request):
        response = HttpResponse(status=204)
        response["HX-Trigger"] = CHANGED_EVENT
        return response
    return redirect(f"{reverse('account-detail', args=[account.number])}#section-{section}")


def _refused(request: HttpRequest, account: Account, section: str, html: str, status: int) -> HttpResponse:
    if is_partial(request):
        return HttpResponse(html)  # htmx swaps only 2xx answers: the form shows its errors in place
    context = {"account": account, "section": get_section(section), "html": html}
    return render(request, "accounts/section_page.html", context, status=status)


# The Payments & adjustments section -------------------------------------------------------------------------


def _own_page(request: HttpRequest, key: str) -> bool:
    match = request.resolver_match
    return (
        match is not None
        and match.url_name == "account-section"
        and match.kwargs.get("key") == key
        and not is_partial(request)
    )


def _payment_form(request, account, unit, data=None) -> PaymentForm:
    return PaymentForm(
        data,
        currency=account_currency(unit),
        methods=selectors.usable_methods(account=account, unit=unit),
        statements=selectors.open_statements(unit=unit),
        locale=account_locale(unit),
    )


def _adjustment_form(request, account, unit, data=None) -> AdjustmentForm:
    return AdjustmentForm(
        data,
        currency=account_currency(unit),
        reasons=selectors.active_reasons(),
        statements=selectors.adjustable_statements(unit=unit),
        locale=account_locale(unit),
    )


def _refund_form(request, account, unit, credit: Decimal, data=None) -> RefundForm:
    return RefundForm(
        data,
        currency=account_currency(unit),
        credit=credit,
        methods=selectors.usable_methods(account=account, unit=unit),
    )


def _write_off_form(request, account, unit, owed: Decimal, data=None) -> WriteOffForm:
    return WriteOffForm(data, currency=account_currency(unit), owed=owed)


def _limit_text(request: HttpRequest, currency: str, locale: str) -> str:
    limit = adjustment_limit(user=request.user, currency=currency)
    if limit is None:
        return "Every adjustment you make waits for a supervisor’s approval before it posts."
    if limit == 0:
        return "Your limit is zero: every adjustment you make waits for a supervisor’s approval."
    return f"Up to {format_money(limit, currency, locale)} posts at once; above it waits for a supervisor."


def _render_payments(
    request: HttpRequest,
    account: Account,
    *,
    open_form: str = "",
    form=None,
    token: str | None = None,
    reverse_form: tuple[int, ReverseForm] | None = None,
    notice: dict[str, Any] | None = None,
    error: str = "",
) -> str:
    user = request.user
    unit = paying_account(account=account)
    currency, locale = account_currency(unit), account_locale(unit)
    limit = ENTRIES_SHOWN_FULL if _own_page(request, SECTION_KEY) else ENTRIES_SHOWN
    entries, more = selectors.account_entries(unit=unit, limit=limit)
    can_pay = user.has_perm(PAYMENT_PERMISSION) and bool(currency)
    can_adjust = user.has_perm(ADJUSTMENT_PERMISSION) and bool(currency)
    may_refund = user.has_perm(REFUND_PERMISSION) and bool(currency)
    may_write_off = user.has_perm(WRITE_OFF_PERMISSION) and bool(currency)
    # The balance is read only for those who may refund or write off (one query).
    balance = selectors.receivable_balance(unit=unit) if may_refund or may_write_off else Decimal(0)
    credit, owed = max(-balance, Decimal(0)), max(balance, Decimal(0))
    can_refund, can_write_off = may_refund and credit > 0, may_write_off and owed > 0
    rows = []
    for entry in entries:
        reversible = (
            can_pay and entry.type == selectors.PAYMENT and entry.payment.status == Payment.Status.POSTED
        )
        bound = (
            reverse_form[1] if reverse_form and reversible and reverse_form[0] == entry.payment.pk else None
        )
        rows.append(
            {
                "entry": entry,
                "amount": format_money(entry.signed_amount, entry.currency, locale),
                "is_credit": entry.signed_amount < 0,
                "badge": STATUS_BADGES.get(entry.status, "badge--neutral"),
                "author": _author(entry.entered_by),
                "reversible": reversible,
                "reverse_form": bound or (ReverseForm() if reversible else None),
            }
        )
    context: dict[str, Any] = {
        "account": account,
        "unit": unit,
        "own": unit.pk == account.pk,
        "currency": currency,
        "rows": rows,
        "more": more,
        "full": limit == ENTRIES_SHOWN_FULL,
        "limit": limit,
        "can_pay": can_pay,
        "can_adjust": can_adjust,
        "can_approve": user.has_perm(APPROVE_PERMISSION),
        "can_refund": can_refund,
        "can_write_off": can_write_off,
        "credit": format_money(credit, currency, locale) if currency else "",
        "owed": format_money(owed, currency, locale) if currency else "",
        "section_key": SECTION_KEY,
        "inline": _inline(request),
        "notice": notice,
        "error": error,
        "open_form": open_form,
        "form": form,
    }
    if context["can_approve"]:
        context["pending_count"] = selectors.pending_count()
    if open_form == "payment" and can_pay:
        context["form"] = form or _payment_form(request, account, unit)
        context["token"] = token or _token_issue(request, account, "payment")
    elif open_form == "adjustment" and can_adjust:
        context["form"] = form or _adjustment_form(request, account, unit)
        context["token"] = token or _token_issue(request, account, "adjustment")
        context["limit_text"] = _limit_text(request, currency, locale)
    elif open_form == "refund" and may_refund and (can_refund or form is not None):
        # A refused refund stays open even when the credit is gone meanwhile (its message says so).
        context["form"] = form or _refund_form(request, account, unit, credit)
        context["token"] = token or _token_issue(request, account, "refund")
    elif open_form == "write-off" and may_write_off and (can_write_off or form is not None):
        context["form"] = form or _write_off_form(request, account, unit, owed)
        context["token"] = token or _token_issue(request, account, "write-off")
    else:
        context["open_form"] = ""
    if context["open_form"]:
        context["form"].describe(focus=True)
    return render_to_string("payments/sections/payments.html", context, request=request)


def payments_section(request: HttpRequest, account: Account) -> str:
    """The bill unit's payments, reversals, adjustments, refunds and write-offs, newest first, with their
    status and who entered them; the New payment / New adjustment / Refund credit / Write off forms
    (``?form=``) for those who may."""
    key = _notice_key(SECTION_KEY, account)
    notice = request.session.pop(key) if key in request.session else None
    open_form = request.GET.get("form", "") if request.method == "GET" else ""
    return _render_payments(request, account, open_form=open_form, notice=notice)


def _entry_text(kind: str, amount: Decimal, currency: str, locale: str) -> str:
    return f"{kind} of {format_money(amount, currency, locale)}"


@staff_required
@require_POST
def payment_create(request: HttpRequest, number: str) -> HttpResponse:
    """Post a payment taken by a CSR (payments.services.payment_post, channel csr), once per form token."""
    _need(request, PAYMENT_PERMISSION, "You may not enter payments.")
    account = _load_account(number)
    unit = paying_account(account=account)
    currency, locale = account_currency(unit), account_locale(unit)
    if not currency:
        raise Http404(f"Account {number} has no billing profile.")
    form = _payment_form(request, account, unit, _clean_post(request))
    token = request.POST.get("token", "")

    def refused(status: int) -> HttpResponse:
        html = _render_payments(request, account, open_form="payment", form=form, token=token)
        return _refused(request, account, SECTION_KEY, html, status)

    if _refuse_card_fields(request):
        form.is_valid()
        form.add_error(None, SENSITIVE_MESSAGE)
        return refused(400)
    if not form.is_valid():
        return refused(400)
    data = form.cleaned_data
    key = None
    try:
        key = _token_key(request, account, "payment")
        payment, created = payment_post(
            account=account,
            amount=data["amount"],
            currency=currency,
            idempotency_key=key,
            payment_date=data["payment_date"],
            method=data["method"],
            reference=data["reference"],
            statement=data["statement"],
            channel=Payment.Channel.CSR,
            actor=request.user,
        )
    except ApplicationError as exc:
        if isinstance(exc, Conflict):
            used = Payment.objects.filter(idempotency_key=key).first() if key else None
            done = f" for a payment of {format_money(used.amount, used.currency, locale)}" if used else ""
            form.add_error(None, f"This form was already used{done}. Nothing more was posted.")
            token = ""
        else:
            form.apply_error(exc, aliases={"currency": "amount", "payment_date": "payment_date"})
            if exc.code == "invalid_token":
                token = ""
        return refused(exc.status_code)
    what = _entry_text("Payment", payment.amount, payment.currency, locale)
    if created:
        text = f"{what} posted."
        if payment.unallocated:
            text += f" {format_money(payment.unallocated, payment.currency, locale)} is left as a credit."
    else:
        text = f"This {what[0].lower()}{what[1:]} was already recorded: nothing more was posted."
    return _done(request, account, SECTION_KEY, {"text": text, "replayed": not created})


@staff_required
@require_POST
def payment_reverse_view(request: HttpRequest, number: str, pk: int) -> HttpResponse:
    """Reverse a posted payment (it bounced, it was a mistake) with a reason."""
    _need(request, PAYMENT_PERMISSION, "You may not reverse payments.")
    account = _load_account(number)
    unit = paying_account(account=account)
    payment = Payment.objects.filter(pk=pk, account=unit).first()
    if payment is None:
        raise Http404("No such payment on this account.")
    form = ReverseForm(_clean_post(request))

    def refused(status: int, error: str = "") -> HttpResponse:
        html = _render_payments(request, account, reverse_form=(payment.pk, form), error=error)
        return _refused(request, account, SECTION_KEY, html, status)

    if _refuse_card_fields(request):
        form.is_valid()
        form.add_error(None, SENSITIVE_MESSAGE)
        return refused(400)
    if not form.is_valid():
        return refused(400)
    try:
        payment = payment_reverse(payment=payment, reason=form.cleaned_data["reason"], actor=request.user)
    except ApplicationError as exc:
        form.apply_error(exc)
        # A payment reversed meanwhile has no form any more: its message goes on top of the section.
        return refused(exc.status_code, error="" if exc.fields else exc.message)
    what = _entry_text("Payment", payment.amount, payment.currency, account_locale(unit))
    return _done(request, account, SECTION_KEY, {"text": f"{what} reversed."})


@staff_required
@require_POST
def adjustment_create(request: HttpRequest, number: str) -> HttpResponse:
    """Make an adjustment (payments.services.adjustment_request): it posts within the CSR's limit, otherwise
    it waits for a supervisor; the notice says which."""
    _need(request, ADJUSTMENT_PERMISSION, "You may not make adjustments.")
    account = _load_account(number)
    unit = paying_account(account=account)
    currency, locale = account_currency(unit), account_locale(unit)
    if not currency:
        raise Http404(f"Account {number} has no billing profile.")
    form = _adjustment_form(request, account, unit, _clean_post(request))
    token = request.POST.get("token", "")

    def refused(status: int) -> HttpResponse:
        html = _render_payments(request, account, open_form="adjustment", form=form, token=token)
        return _refused(request, account, SECTION_KEY, html, status)

    if _refuse_card_fields(request):
        form.is_valid()
        form.add_error(None, SENSITIVE_MESSAGE)
        return refused(400)
    if not form.is_valid():
        return refused(400)
    data = form.cleaned_data
    key = None
    try:
        key = _token_key(request, account, "adjustment")
        adjustment, created = adjustment_request(
            account=account,
            direction=data["direction"],
            amount=data["amount"],
            currency=currency,
            reason=data["reason"],
            idempotency_key=key,
            note=data["note"],
            statement=data["statement"],
            actor=request.user,
        )
    except ApplicationError as exc:
        if isinstance(exc, Conflict):
            form.add_error(None, "This form was already used for another adjustment. Nothing more was made.")
            token = ""
        else:
            form.apply_error(exc, aliases={"currency": "amount", "statement_line": "statement"})
            if exc.code == "invalid_token":
                token = ""
        return refused(exc.status_code)
    kind = "Credit adjustment" if adjustment.direction == Adjustment.Direction.CREDIT else "Debit adjustment"
    what = _entry_text(kind, adjustment.amount, adjustment.currency, locale)
    if not created:
        text = f"This {what[0].lower()}{what[1:]} was already recorded: nothing more was made."
    elif adjustment.status == Adjustment.Status.POSTED:
        text = f"{what} posted."
    else:
        text = f"{what} is waiting for a supervisor’s approval: it posts once approved."
    return _done(
        request,
        account,
        SECTION_KEY,
        {"text": text, "replayed": not created, "status": adjustment.status},
    )


# A refund above the credit or a write-off above what is owed: the field says how much is possible, in the
# account's money (the service's own message shows the stored four places).
_ABOVE = {
    "exceeds_credit": (
        -1,
        "At most {amount}, the account’s credit.",
        "The account has no credit left to refund.",
    ),
    "exceeds_balance": (
        1,
        "At most {amount}, what the account owes.",
        "The account owes nothing to write off.",
    ),
}


def _above_message(exc: ApplicationError, unit: Account, currency: str, locale: str) -> None:
    sign, most, nothing = _ABOVE[exc.code]
    left = max(sign * selectors.receivable_balance(unit=unit), Decimal(0))
    exc.fields = {"amount": [most.format(amount=format_money(left, currency, locale)) if left else nothing]}


def _balance_entry(
    request: HttpRequest,
    number: str,
    *,
    kind: str,
    permission: str,
    denied: str,
    make_form,
    post,
    model,
    label: str,
) -> HttpResponse:
    """Post a refund or a write-off from its form, once per form token (shared by both views)."""
    _need(request, permission, denied)
    account = _load_account(number)
    unit = paying_account(account=account)
    currency, locale = account_currency(unit), account_locale(unit)
    if not currency:
        raise Http404(f"Account {number} has no billing profile.")
    form = make_form(account, unit, _clean_post(request))
    token = request.POST.get("token", "")

    def refused(status: int) -> HttpResponse:
        html = _render_payments(request, account, open_form=kind, form=form, token=token)
        return _refused(request, account, SECTION_KEY, html, status)

    if _refuse_card_fields(request):
        form.is_valid()
        form.add_error(None, SENSITIVE_MESSAGE)
        return refused(400)
    if not form.is_valid():
        return refused(400)
    key = None
    try:
        key = _token_key(request, account, kind)
        entry, created = post(account, currency, key, form.cleaned_data)
    except ApplicationError as exc:
        if isinstance(exc, Conflict):
            used = model.objects.filter(idempotency_key=key).first() if key else None
            done = (
                f" for a {label.lower()} of {format_money(used.amount, used.currency, locale)}"
                if used
                else ""
            )
            form.add_error(None, f"This form was already used{done}. Nothing more was posted.")
            token = ""
        else:
            if exc.code in _ABOVE:
                _above_message(exc, unit, currency, locale)
            form.apply_error(exc, aliases={"currency": "amount"})
            if exc.code == "invalid_token":
                token = ""
        return refused(exc.status_code)
    what = _entry_text(label, entry.amount, entry.currency, locale)
    if created:
        text = f"{what} posted."
    else:
        text = f"This {what[0].lower()}{what[1:]} was already recorded: nothing more was posted."
    return _done(request, account, SECTION_KEY, {"text": text, "replayed": not created})


@staff_required
@require_POST
def refund_create(request: HttpRequest, number: str) -> HttpResponse:
    """Pay back (part of) the bill unit's credit balance (payments.services.refund_post)."""

    def make_form(account, unit, data):
        return _refund_form(request, account, unit, Decimal(0), data)  # bound: no default amount needed

    def post(account, currency, key, data):
        return refund_post(
            account=account,
            amount=data["amount"],
            currency=currency,
            reason=data["reason"],
            idempotency_key=key,
            method=data["method"],
            actor=request.user,
        )

    return _balance_entry(
        request,
        number,
        kind="refund",
        permission=REFUND_PERMISSION,
        denied="You may not refund credit balances.",
        make_form=make_form,
        post=post,
        model=Refund,
        label="Refund",
    )


@staff_required
@require_POST
def write_off_create(request: HttpRequest, number: str) -> HttpResponse:
    """Write off (part of) what the bill unit owes (payments.services.write_off_post; supervisors)."""

    def make_form(account, unit, data):
        return _write_off_form(request, account, unit, Decimal(0), data)  # bound: no default amount needed

    def post(account, currency, key, data):
        return write_off_post(
            account=account,
            amount=data["amount"],
            currency=currency,
            reason=data["reason"],
            idempotency_key=key,
            actor=request.user,
        )

    return _balance_entry(
        request,
        number,
        kind="write-off",
        permission=WRITE_OFF_PERMISSION,
        denied="Only supervisors write off balances.",
        make_form=make_form,
        post=post,
        model=WriteOff,
        label="Write-off",
    )


# The Payment methods section --------------------------------------------------------------------------------


def _render_methods(
    request: HttpRequest,
    account: Account,
    *,
    open_form: str = "",
    form=None,
    error: str = "",
    notice: dict[str, Any] | None = None,
) -> str:
    methods = selectors.account_methods(account=account)
    can_add = request.user.has_perm(METHOD_ADD_PERMISSION)
    if open_form not in METHOD_FORMS or not can_add:
        open_form, form = "", None
    else:
        form = form or METHOD_FORMS[open_form]()
        form.describe(focus=True)
    context = {
        "account": account,
        "methods": [m for m in methods if m.removed_at is None],
        "removed": [m for m in methods if m.removed_at is not None],
        "can_add": can_add,
        "can_change": request.user.has_perm(METHOD_CHANGE_PERMISSION),
        "open_form": open_form,
        "form": form,
        "kinds": [(kind, label) for kind, label in PaymentMethod.Kind.choices],
        "error": error,
        "notice": notice,
        "section_key": METHODS_KEY,
        "inline": _inline(request),
    }
    return render_to_string("payments/sections/methods.html", context, request=request)


def methods_section(request: HttpRequest, account: Account) -> str:
    """The account's payment methods (the default first, the removed ones apart), with forms to add a card,
    a bank account or another method, set the default, and remove one."""
    key = _notice_key(METHODS_KEY, account)
    notice = request.session.pop(key) if key in request.session else None
    open_form = request.GET.get("form", "") if request.method == "GET" else ""
    return _render_methods(request, account, open_form=open_form, notice=notice)


@staff_required
@require_POST
def method_add(request: HttpRequest, number: str) -> HttpResponse:
    """Keep a card (the processor's token, never its number), a bank account or another method on file."""
    _need(request, METHOD_ADD_PERMISSION, "You may not add payment methods.")
    account = _load_account(number)
    kind = request.POST.get("kind", "")
    if kind not in METHOD_FORMS:
        raise Http404("No such kind of payment method.")
    form = METHOD_FORMS[kind](_clean_post(request))

    def refused(status: int) -> HttpResponse:
        html = _render_methods(request, account, open_form=kind, form=form)
        return _refused(request, account, METHODS_KEY, html, status)

    if _refuse_card_fields(request):
        form.is_valid()
        form.add_error(None, SENSITIVE_MESSAGE)
        return refused(400)
    if not form.is_valid():
        return refused(400)
    data = dict(form.cleaned_data)
    make_default = data.pop("make_default", False)
    try:
        method = payment_method_add(
            account=account, kind=kind, make_default=make_default, actor=request.user, **data
        )
    except ApplicationError as exc:
        form.apply_error(exc)
        return refused(exc.status_code)
    text = f"{method} added{' as the default method' if method.is_default else ''}."
    return _done(request, account, METHODS_KEY, {"text": text})


def _method_of(account: Account, pk: int) -> PaymentMethod:
    method = PaymentMethod.objects.filter(pk=pk, account=account).first()
    if method is None:
        raise Http404("No such payment method on this account.")
    return method


@staff_required
@require_POST
def method_set_default(request: HttpRequest, number: str, pk: int) -> HttpResponse:
    _need(request, METHOD_CHANGE_PERMISSION, "You may not change payment methods.")
    account = _load_account(number)
    method = _method_of(account, pk)
    try:
        method = payment_method_set_default(method=method, actor=request.user)
    except ApplicationError as exc:
        html = _render_methods(request, account, error=exc.message)
        return _refused(request, account, METHODS_KEY, html, exc.status_code)
    return _done(request, account, METHODS_KEY, {"text": f"{method} is now the default method."})


@staff_required
@require_POST
def method_remove(request: HttpRequest, number: str, pk: int) -> HttpResponse:
    """Take a method out of use after the CSR confirmed it (it stays in the history, greyed)."""
    _need(request, METHOD_CHANGE_PERMISSION, "You may not change payment methods.")
    account = _load_account(number)
    method = _method_of(account, pk)
    if not request.POST.get("confirm"):
        html = _render_methods(request, account, error=f"Tick the confirmation to remove {method}.")
        return _refused(request, account, METHODS_KEY, html, 400)
    method = payment_method_remove(method=method, actor=request.user)
    return _done(request, account, METHODS_KEY, {"text": f"{method} removed: it can no longer be used."})


# The supervisors' queue -------------------------------------------------------------------------------------


def _queue_response(
    request: HttpRequest,
    *,
    failed: tuple[int, str, DecisionForm] | None = None,
    status: int = 200,
) -> HttpResponse:
    filters = QueueFilterForm(request.GET or None)
    kwargs: dict[str, Any] = {}
    if filters.is_bound and filters.is_valid():
        kwargs = {
            "account_number": filters.cleaned_data["account"].strip(),
            "min_amount": filters.cleaned_data["min_amount"],
            "max_amount": filters.cleaned_data["max_amount"],
        }
    rows, total = selectors.pending_adjustments(**kwargs)
    items = []
    for adjustment in rows:
        locale = account_locale(adjustment.account)
        signed = adjustment.signed_amount
        mine = failed is not None and failed[0] == adjustment.pk
        items.append(
            {
                "adjustment": adjustment,
                "amount": format_money(signed, adjustment.currency, locale),
                "is_credit": signed < 0,
                "maker": _author(adjustment.maker),
                "own": adjustment.maker_id == request.user.pk,
                "failed_action": failed[1] if mine else "",
                "approve_form": failed[2]
                if mine and failed[1] == "approve"
                else DecisionForm(prefix="approve"),
                "reject_form": failed[2] if mine and failed[1] == "reject" else DecisionForm(prefix="reject"),
            }
        )
    notice = request.session.pop(QUEUE_NOTICE_KEY, None)
    context = {
        "items": items,
        "total": total,
        "filters": filters,
        "filtered": any(v not in (None, "") for v in kwargs.values()),
        "notice": notice,
        "query": request.GET.urlencode(),
    }
    return render(request, "payments/pending_adjustments.html", context, status=status)


@staff_required
@require_GET
def pending_adjustments_view(request: HttpRequest) -> HttpResponse:
    """Adjustments above their maker's limit, oldest first, to approve or reject (supervisors)."""
    _need(request, APPROVE_PERMISSION, "Only supervisors review adjustments.")
    return _queue_response(request)


def _decide(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    _need(request, APPROVE_PERMISSION, "Only supervisors review adjustments.")
    adjustment = Adjustment.objects.select_related("account__billing_profile").filter(pk=pk).first()
    if adjustment is None:
        raise Http404("No such adjustment.")
    form = DecisionForm(_clean_post(request), prefix=action)
    if _refuse_card_fields(request):
        form.is_valid()
        form.add_error(None, SENSITIVE_MESSAGE)
        return _queue_response(request, failed=(adjustment.pk, action, form), status=400)
    if not form.is_valid():
        return _queue_response(request, failed=(adjustment.pk, action, form), status=400)
    comment = form.cleaned_data["comment"]
    try:
        if action == "approve":
            adjustment = adjustment_approve(adjustment=adjustment, actor=request.user, comment=comment)
        else:
            adjustment = adjustment_reject(adjustment=adjustment, actor=request.user, comment=comment)
    except ApplicationError as exc:
        form.apply_error(exc)
        return _queue_response(request, failed=(adjustment.pk, action, form), status=exc.status_code)
    locale = account_locale(adjustment.account)
    what = _entry_text(
        "Credit adjustment" if adjustment.direction == Adjustment.Direction.CREDIT else "Debit adjustment",
        adjustment.amount,
        adjustment.currency,
        locale,
    )
    verb = "approved and posted" if action == "approve" else "rejected"
    request.session[QUEUE_NOTICE_KEY] = {
        "text": f"{what} on {adjustment.account.name} ({adjustment.account.number}) {verb}.",
        "account": adjustment.account.number,
    }
    back = reverse("adjustment-queue")
    query = request.GET.urlencode()  # the queue's filters travel in the form's action URL
    return redirect(f"{back}?{query}" if query else back)


@staff_required
@require_POST
def adjustment_approve_view(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide(request, pk, "approve")


@staff_required
@require_POST
def adjustment_reject_view(request: HttpRequest, pk: int) -> HttpResponse:
    return _decide(request, pk, "reject")
