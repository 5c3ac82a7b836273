"""CSR pages of the billing engine: the account page's Subscriptions and Prepaid wallet sections, the next
bill's preview, "Bill now", a wallet top-up, and the statement page's Calculation panel ("why is this charge
this much?").

* The section and the panel are registered in BillrunsConfig.ready() (billing_mgmt.sections), so neither
  ``accounts`` nor ``statements`` imports this app.
* The preview (GET, ``billruns.preview_bill``) computes the bill ``bill_create`` would make now and stores
  nothing; htmx loads it into the section, without JavaScript it is a page of its own.
* Bill now (POST, ``billruns.bill_account``) carries a one-time token issued with the preview. The token is an
  idempotency key (billing_mgmt.models.IdempotencyRecord, as the API's ``Idempotency-Key``): its row is
  inserted in the transaction that bills, so a double submit (or a retry after a lost answer) bills once and
  the second submit lands on that same bill.
* Top up (POST, ``billruns.topup_wallet``) carries a one-time token too; its key is the ledger row's
  idempotency key (``wallet_topup``), so a double submit adds the money once.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from decimal import Decimal
from typing import Any

from django import forms
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.models import Account
from accounts.selectors import paying_account
from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.models import IdempotencyRecord
from billing_mgmt.money import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS, format_money, minor_units, quantize
from billing_mgmt.sections import RenderedPanel, get_section, is_partial, staff_required
from statements.models import Channel, FinancialTransaction
from statements.views.statements import account_locale

from . import selectors
from .models import CalculationLine
from .services import BillResult, bill_create, bill_preview, wallet_topup

logger = logging.getLogger(__name__)

SECTION_KEY = "subscriptions"
SUBSCRIPTIONS_SHOWN = 25  # on the account page; the section's own page shows up to SUBSCRIPTIONS_SHOWN_FULL
SUBSCRIPTIONS_SHOWN_FULL = 500
PREVIEW_PERMISSION = "billruns.preview_bill"
BILL_PERMISSION = "billruns.bill_account"
CHANGED_EVENT = "account-changed"
TOKEN_SALT = "billruns.bill-now"
TOKEN_MAX_AGE = 60 * 60  # seconds: a confirmation older than this asks for a fresh preview
KIND_LABELS = dict(CalculationLine.Kind.choices)
TX_KINDS = dict(FinancialTransaction.Kind.choices)


# The Subscriptions section ---------------------------------------------------------------------------------


def _own_request(request: HttpRequest) -> bool:
    match = request.resolver_match
    return (
        match is not None and match.url_name == "account-section" and match.kwargs.get("key") == SECTION_KEY
    )


def _can_preview(user) -> bool:
    return user.has_perm(PREVIEW_PERMISSION) or user.has_perm(BILL_PERMISSION)


def subscriptions_section(request: HttpRequest, account: Account) -> str:
    """The account's subscriptions (and its non-paying children's), each with its last bill segment."""
    full = _own_request(request)
    limit = SUBSCRIPTIONS_SHOWN_FULL if full else SUBSCRIPTIONS_SHOWN
    accounts = selectors.subscription_accounts(account=account)
    subscriptions, more = selectors.account_subscriptions(accounts=accounts, limit=limit)
    unit = account if account.is_paying else paying_account(account=account)
    context = {
        "account": account,
        "unit": unit,
        "subscriptions": subscriptions,
        "more": more,
        "full": full,
        "limit": limit,
        "children_included": len(accounts) > 1,
        "can_preview": _can_preview(request.user),
        "can_bill": request.user.has_perm(BILL_PERMISSION),
        "section_key": SECTION_KEY,
    }
    return render_to_string("billruns/sections/subscriptions.html", context, request=request)


# Preview and bill now --------------------------------------------------------------------------------------


def _load_account(number: str) -> Account:
    account = (
        Account.objects.select_related("billing_profile", "parent__parent").filter(number=number).first()
    )
    if account is None:
        raise Http404(f"No account {number}.")
    return account


def _token_issue(request: HttpRequest, account: Account) -> str:
    """A one-time token for the bill-now form: a fresh key, signed for this user and account."""
    return signing.dumps(
        {"account": account.number, "key": uuid.uuid4().hex}, salt=f"{TOKEN_SALT}:{request.user.pk}"
    )


def _token_read(request: HttpRequest, account: Account) -> tuple[str, bool]:
    """The token's key and whether it is too old to bill with (it can still replay a bill it made)."""
    token = request.POST.get("token", "")
    salt = f"{TOKEN_SALT}:{request.user.pk}"
    expired = False
    try:
        payload = signing.loads(token, salt=salt, max_age=TOKEN_MAX_AGE)
    except signing.SignatureExpired:
        payload, expired = signing.loads(token, salt=salt), True
    except signing.BadSignature:
        raise ApplicationError(
            "This form is not valid any more. Preview the bill again and confirm from there.",
            code="invalid_token",
        ) from None
    if payload.get("account") != account.number:
        raise ApplicationError("This confirmation was made for another account.", code="invalid_token")
    return f"bill-now:{payload['key']}", expired


def _replay(record: IdempotencyRecord) -> dict[str, Any]:
    return {**record.response_body, "replayed": True}


def _bill_once(request: HttpRequest, account: Account, key: str, expired: bool) -> dict[str, Any]:
    """Bill the account at most once per key; a repeated key returns the first bill."""
    client = f"user:{request.user.pk}"
    fingerprint = hashlib.sha256(f"bill-now:{account.number}".encode()).hexdigest()
    if expired:
        existing = IdempotencyRecord.objects.filter(client=client, key=key).first()
        if existing is not None and existing.request_hash == fingerprint:
            return _replay(existing)
        raise ApplicationError(
            "This confirmation has expired. Preview the bill again: the charges may have changed.",
            code="confirmation_expired",
        )
    failure: ApplicationError | None = None
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    client=client,
                    key=key,
                    method="POST",
                    path=request.path[:500],
                    request_hash=fingerprint,
                    status_code=0,  # completed below, before commit: no other transaction sees this value
                )
        except IntegrityError:
            # The same form again: a concurrent submit waited on the unique index until the first committed.
            existing = IdempotencyRecord.objects.get(client=client, key=key)
            if existing.request_hash != fingerprint:
                raise Conflict("This confirmation was already used.", code="idempotency_key_reused") from None
            return _replay(existing)
        try:
            result = bill_create(account=account, actor=request.user)
        except ApplicationError as exc:
            # The key stays free for another try; what rating stored (a segment's error) is kept.
            record.delete()
            failure = exc
        else:
            body = {
                "statement_id": result.statement.pk,
                "number": result.statement.number,
                "account": result.account.number,
                "total_due": str(result.total_due),
                "currency": result.currency,
            }
            record.status_code = 201
            record.response_body = body
            record.save(update_fields=["status_code", "response_body"])
    if failure is not None:
        raise failure
    return body


def _segment_rows(result: BillResult) -> list[dict[str, Any]]:
    return [
        {
            **segment,
            "lines": [
                {**line, "kind_label": KIND_LABELS.get(line["kind"], line["kind"])}
                for line in segment["lines"]
            ],
        }
        for segment in result.segments
    ]


def _panel_context(
    request: HttpRequest,
    account: Account,
    *,
    result: BillResult | None = None,
    error: ApplicationError | None = None,
) -> dict[str, Any]:
    unit = result.account if result is not None else paying_account(account=account)
    can_bill = request.user.has_perm(BILL_PERMISSION)
    context: dict[str, Any] = {
        "account": account,
        "unit": unit,
        "locale": account_locale(unit),
        "result": result,
        "error": error,
        "error_details": [
            message for messages in (error.fields.values() if error else []) for message in messages
        ],
        "can_bill": can_bill,
        "section_key": SECTION_KEY,
    }
    if result is not None:
        context |= {
            "currency": result.currency,
            "summary": [
                ("Previous balance", result.previous_balance),
                ("Payments received", -result.payments),
                ("Adjustments", result.adjustments),
                ("New charges", result.new_charges),
                ("Taxes", result.taxes),
            ],
            "segments": _segment_rows(result),
            "posted": result.new_charges + result.taxes,
            "swept": [{**row, "kind_label": TX_KINDS.get(row["kind"], row["kind"])} for row in result.swept],
            "token": _token_issue(request, account) if can_bill else "",
        }
    return context


def _panel_response(request: HttpRequest, context: dict[str, Any], status: int = 200) -> HttpResponse:
    if is_partial(request):
        # htmx swaps only 2xx answers: a refusal is shown in the panel as the message it is.
        return render(request, "billruns/_bill_panel.html", context)
    return render(request, "billruns/bill_preview.html", context, status=status)


@staff_required
@require_GET
def bill_preview_view(request: HttpRequest, number: str) -> HttpResponse:
    """The account's next bill as "Bill now" would make it, stored nowhere."""
    if not _can_preview(request.user):
        raise PermissionDenied("You may not preview bills.")
    account = _load_account(number)
    try:
        result = bill_preview(account=account, actor=request.user)
    except ApplicationError as exc:
        return _panel_response(request, _panel_context(request, account, error=exc))
    return _panel_response(request, _panel_context(request, account, result=result))


@staff_required
@require_POST
def bill_now(request: HttpRequest, number: str) -> HttpResponse:
    """Create and post the account's bill now, once per confirmation; then show the statement."""
    if not request.user.has_perm(BILL_PERMISSION):
        raise PermissionDenied("You may not bill accounts.")
    account = _load_account(number)
    try:
        key, expired = _token_read(request, account)
        if not request.POST.get("confirm"):
            raise ApplicationError(
                "Tick the confirmation to create and post the bill.",
                code="not_confirmed",
                fields={"confirm": ["Confirm that the bill should be posted."]},
            )
        outcome = _bill_once(request, account, key, expired)
    except ApplicationError as exc:
        return _panel_response(request, _panel_context(request, account, error=exc), status=exc.status_code)
    url = reverse("statement-detail", args=[outcome["account"], outcome["statement_id"]])
    if is_partial(request):
        response = HttpResponse(status=200)
        response["HX-Trigger"] = CHANGED_EVENT  # the account page's sections reload (balance, ledger, ...)
        response["HX-Redirect"] = url
        return response
    return redirect(url)


# The Prepaid wallet section and its top-up -----------------------------------------------------------------

WALLET_KEY = "wallet"
WALLET_ROWS = 10
TOPUP_PERMISSION = "billruns.topup_wallet"
LEDGER_PERMISSION = "statements.view_financialtransaction"
TOPUP_SALT = "billruns.wallet-topup"
NOTICE_SESSION_KEY = "billruns.wallet-notice:{number}"
AMOUNT_PATTERN = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
AMOUNT_LIMIT = Decimal(10) ** (AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES)


class WalletTopupForm(forms.Form):
    """A top-up's amount, in the wallet's currency (fixed: an account bills in one currency). The one-time
    token travels beside it (``_topup_key``)."""

    amount = forms.CharField(
        label="Amount", max_length=30, error_messages={"required": "Enter the amount to add to the wallet."}
    )

    def __init__(self, *args, currency: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.currency = currency
        self.example = format(quantize(20, currency), "f")  # "20.00", "20" for JPY, "20.000" for KWD

    def clean_amount(self) -> Decimal:
        raw = self.cleaned_data["amount"].replace(" ", "")
        if not AMOUNT_PATTERN.match(raw):
            raise forms.ValidationError(f"Enter the amount as a number, e.g. {self.example}.", code="invalid")
        value = Decimal(raw)
        if value <= 0:
            raise forms.ValidationError("The amount must be more than zero.", code="not_positive")
        places = minor_units(self.currency)
        if value != quantize(value, self.currency):
            most = f"at most {places} decimal place{'s' if places > 1 else ''}" if places else "no decimals"
            raise forms.ValidationError(f"{self.currency} amounts have {most}.", code="decimal_places")
        if value >= AMOUNT_LIMIT:
            raise forms.ValidationError("The amount is too large.", code="too_large")
        return quantize(value, self.currency)


def _notice_key(account: Account) -> str:
    return NOTICE_SESSION_KEY.format(number=account.number)


def _topup_token_issue(request: HttpRequest, account: Account) -> str:
    """A one-time token for the top-up form: a fresh key, signed for this user and account. It does not
    expire: an old form posted again (the back button) can only replay the top-up it made."""
    return signing.dumps(
        {"account": account.number, "key": uuid.uuid4().hex}, salt=f"{TOPUP_SALT}:{request.user.pk}"
    )


def _topup_key(request: HttpRequest, account: Account) -> str:
    """The form's idempotency key (the ledger row's ``idempotency_key``)."""
    try:
        payload = signing.loads(request.POST.get("token", ""), salt=f"{TOPUP_SALT}:{request.user.pk}")
    except signing.BadSignature:
        raise ApplicationError(
            "This form is not valid any more. Enter the amount again.", code="invalid_token"
        ) from None
    if payload.get("account") != account.number:
        raise ApplicationError("This form was made for another account.", code="invalid_token")
    return f"wallet-topup:{payload['key']}"


def _author(user) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else ""


def _wallet_context(
    request: HttpRequest,
    account: Account,
    wallet: selectors.Wallet | None,
    *,
    form: WalletTopupForm | None = None,
    token: str | None = None,
    notice: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if wallet is None:
        return {"account": account, "wallet": None}
    unit, currency, estimate = wallet.unit, wallet.currency, wallet.estimate
    locale = account_locale(unit)
    can_topup = request.user.has_perm(TOPUP_PERMISSION) and bool(currency)
    if can_topup and form is None:
        form = WalletTopupForm(currency=currency)
    context: dict[str, Any] = {
        "account": account,
        "unit": unit,
        "own": unit.pk == account.pk,
        "wallet": wallet,
        "currency": currency,
        "balance": format_money(wallet.balance, currency, locale),
        "estimate": estimate,
        "rows": [
            {
                "tx": tx,
                "kind": TX_KINDS.get(tx.kind, tx.kind),
                # "Wallet top-up" twice says nothing: a description that only repeats the kind is left out.
                "description": "" if tx.description == TX_KINDS.get(tx.kind) else tx.description,
                "author": _author(tx.created_by),
                "amount": format_money(tx.amount, tx.currency, locale),
                "is_topup": tx.amount > 0,
            }
            for tx in wallet.transactions
        ],
        "more": wallet.transaction_count > len(wallet.transactions),
        "can_see_ledger": request.user.has_perm(LEDGER_PERMISSION),
        "can_topup": can_topup,
        "form": form,
        "token": (token or _topup_token_issue(request, account)) if can_topup else "",
        "notice": notice,
        "section_key": WALLET_KEY,
        "limit": WALLET_ROWS,
        # On the account page (and in its htmx refreshes) the form posts with htmx; on the section's own
        # page it is a plain form that lands back on the account page.
        "inline": is_partial(request) or getattr(request.resolver_match, "url_name", "") == "account-detail",
    }
    if estimate is not None:
        context |= {
            "estimate_balance": format_money(estimate.balance, estimate.currency, locale),
            # A debit or top-up since the estimate (without a refresh) makes the date less certain: say so.
            "estimate_stale": estimate.balance != wallet.balance,
            "daily": format_money(estimate.daily_consumption, estimate.currency, locale),
            "recurring": format_money(estimate.recurring_per_period, estimate.currency, locale),
        }
    if notice is not None:
        context["notice_amount"] = format_money(Decimal(notice["amount"]), notice["currency"], locale)
    return context


def _render_wallet(request: HttpRequest, account: Account, wallet, **kwargs) -> str:
    context = _wallet_context(request, account, wallet, **kwargs)
    return render_to_string("billruns/sections/wallet.html", context, request=request)


def wallet_section(request: HttpRequest, account: Account) -> str:
    """The prepaid wallet of the account's bill unit: balance, when it runs out, the last wallet rows, and a
    top-up form for those who may. An account without one is told so (the frame shows every section)."""
    wallet = selectors.account_wallet(account=account, limit=WALLET_ROWS)
    key = _notice_key(account)
    # What the last top-up did, kept for the section's reload that follows it (htmx or a redirect).
    notice = request.session.pop(key) if wallet is not None and key in request.session else None
    return _render_wallet(request, account, wallet, notice=notice)


def _topup_refused(
    request: HttpRequest, account: Account, wallet, form: WalletTopupForm, token: str | None, status: int
) -> HttpResponse:
    html = _render_wallet(request, account, wallet, form=form, token=token)
    if is_partial(request):
        return HttpResponse(html)  # htmx swaps only 2xx answers: the form shows its errors in place
    context = {"account": account, "section": get_section(WALLET_KEY), "html": html}
    return render(request, "accounts/section_page.html", context, status=status)


def _topup_error(form: WalletTopupForm, exc: ApplicationError, key: str | None, locale: str) -> bool:
    """Put a refusal on the form; True when the form needs a fresh token (its own is used or broken)."""
    if isinstance(exc, Conflict):
        used = FinancialTransaction.objects.filter(idempotency_key=key).first() if key else None
        done = f" to add {format_money(used.amount, used.currency, locale)}" if used else ""
        message = f"This form was already used{done}. Nothing more was added: enter the amount again."
        form.add_error(None, message)
        return True
    for field, messages in exc.fields.items():
        form.add_error("amount" if field in ("amount", "currency") else None, messages)
    if not exc.fields:
        form.add_error(None, exc.message)
    return exc.code == "invalid_token"


@staff_required
@require_POST
def wallet_topup_view(request: HttpRequest, number: str) -> HttpResponse:
    """Add money to the wallet of the account's bill unit, once per form (its token is the idempotency
    key); the service estimates the wallet again."""
    if not request.user.has_perm(TOPUP_PERMISSION):
        raise PermissionDenied("You may not top up prepaid wallets.")
    account = _load_account(number)
    wallet = selectors.account_wallet(account=account, limit=WALLET_ROWS)
    if wallet is None or not wallet.currency:
        raise Http404(f"Account {number} has no prepaid wallet.")
    form = WalletTopupForm(request.POST, currency=wallet.currency)
    token = request.POST.get("token", "")
    if not form.is_valid():
        return _topup_refused(request, account, wallet, form, token, status=400)
    key = None
    try:
        key = _topup_key(request, account)
        row, created = wallet_topup(
            account=wallet.unit,
            amount=form.cleaned_data["amount"],
            currency=wallet.currency,
            idempotency_key=key,
            actor=request.user,
        )
    except ApplicationError as exc:
        if _topup_error(form, exc, key, account_locale(wallet.unit)):
            token = None  # used or broken: the form gets a fresh one
        return _topup_refused(request, account, wallet, form, token, status=exc.status_code)
    notice = {"amount": str(row.amount), "currency": row.currency, "replayed": not created}
    request.session[_notice_key(account)] = notice
    if is_partial(request):
        response = HttpResponse(status=204)
        # Every section reloads in place (balance, ledger, this one with its notice and a fresh form).
        response["HX-Trigger"] = CHANGED_EVENT
        return response
    return redirect(f"{reverse('account-detail', args=[account.number])}#section-{WALLET_KEY}")


# The statement page's Calculation panel --------------------------------------------------------------------


def calculation_panel(request: HttpRequest, statement, lines: list) -> RenderedPanel | None:
    """How each line of an engine-made bill was calculated: per segment, its calculation lines. Nothing for a
    biller's statement (no query: only the engine's own bills have segments)."""
    if statement.channel != Channel.ENGINE:
        return None
    segments = selectors.statement_calculation(statement_id=statement.pk)
    if not segments:
        return None
    shown: set[int] = set()
    rows = []
    for segment in segments:
        calc_lines = list(segment.lines.all())
        for line in calc_lines:
            line.anchor = f"calc-line-{line.pk}"
            line.kind_label = KIND_LABELS.get(line.kind, line.kind)
            shown.add(line.pk)
        subscription = segment.subscription
        rows.append(
            {
                "id": segment.pk,
                "service_identifier": subscription.service_identifier,
                "price_plan": subscription.price_plan.name,
                "product": subscription.price_plan.product.name,
                # A non-paying child's charges on its paying parent's bill: say whose they are.
                "account_label": (
                    f"{subscription.account.name} {subscription.account.number}"
                    if subscription.account_id != statement.account_id
                    else ""
                ),
                "period_start": segment.period_start,
                "period_end": segment.period_end,
                "charges": segment.charges,
                "discounts": segment.discounts,
                "taxes": segment.taxes,
                "taxes_included": segment.taxes_included,
                "total": segment.total,
                "lines": calc_lines,
            }
        )
    context = {
        "statement": statement,
        "segments": rows,
        "locale": account_locale(statement.account),
        "currency": statement.currency,
        "line_count": sum(len(row["lines"]) for row in rows),
        "total": sum((segment.total for segment in segments), Decimal(0)),
    }
    html = render_to_string("billruns/panels/calculation.html", context, request=request)
    # Each printed line links to the calculation line it prints (StatementLine.calculation_line_id).
    anchors = {
        line.pk: [f"calc-line-{line.calculation_line_id}"]
        for line in lines
        if line.calculation_line_id in shown
    }
    return RenderedPanel(html=html, line_anchors=anchors)
