"""CSR pages of the billing engine: the account page's Subscriptions section, the next bill's preview, "Bill
now", and the statement page's Calculation panel ("why is this charge this much?").

* The section and the panel are registered in BillrunsConfig.ready() (billing_mgmt.sections), so neither
  ``accounts`` nor ``statements`` imports this app.
* The preview (GET, ``billruns.preview_bill``) computes the bill ``bill_create`` would make now and stores
  nothing; htmx loads it into the section, without JavaScript it is a page of its own.
* Bill now (POST, ``billruns.bill_account``) carries a one-time token issued with the preview. The token is an
  idempotency key (billing_mgmt.models.IdempotencyRecord, as the API's ``Idempotency-Key``): its row is
  inserted in the transaction that bills, so a double submit (or a retry after a lost answer) bills once and
  the second submit lands on that same bill.
"""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal
from typing import Any

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
from billing_mgmt.sections import RenderedPanel, is_partial, staff_required
from statements.models import Channel, FinancialTransaction
from statements.views.statements import account_locale

from . import selectors
from .models import CalculationLine
from .services import BillResult, bill_create, bill_preview

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


# The statement page's Calculation panel --------------------------------------------------------------------


def calculation_panel(request: HttpRequest, statement, lines: list) -> RenderedPanel | None:
    """How each line of an engine-made bill was calculated: per segment, its calculation lines. Nothing for a
    biller's statement (no query: only the engine's own bills have segments)."""
    if statement.channel != Channel.ENGINE:
        return None
    segments = selectors.statement_calculation(statement_id=statement.pk)
    if not segments:
        return None
    anchors: dict[int, list[str]] = {}
    rows = []
    for segment in segments:
        calc_lines = list(segment.lines.all())
        for line in calc_lines:
            line.anchor = f"calc-line-{line.pk}"
            line.kind_label = KIND_LABELS.get(line.kind, line.kind)
            if line.statement_line_id is not None:
                anchors.setdefault(line.statement_line_id, []).append(line.anchor)
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
    return RenderedPanel(html=html, line_anchors=anchors)
