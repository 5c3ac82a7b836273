"""CSR views of statements: the Statements and Account balances sections of the account page, and the page
of one statement.

Sections are registered in StatementsConfig.ready(); the statement page is at
/statements/accounts/<number>/statements/<pk>/ (statements/urls.py).
"""

from __future__ import annotations

from decimal import Decimal

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from accounts.models import Account
from billing_mgmt.money import DEFAULT_LOCALE
from billing_mgmt.sections import staff_required, statement_panels
from statements import selectors
from statements.models import Statement

STATEMENTS_PER_PAGE = 12
SECTION_KEY = "statements"
USAGE_LABELS = {"sms": "SMS", "mms": "MMS", "voice": "Voice", "data": "Data"}


def usage_label(usage_type: str) -> str:
    """A usage type slug as people say it: "sms" -> "SMS", "street-lights" -> "Street lights"."""
    return USAGE_LABELS.get(usage_type) or usage_type.replace("-", " ").replace("_", " ").capitalize()


def account_locale(account: Account) -> str:
    """The locale the account's amounts are shown in (its billing profile's)."""
    profile = getattr(account, "billing_profile", None)
    return (profile.locale if profile else "") or DEFAULT_LOCALE


def account_currency(account: Account) -> str:
    profile = getattr(account, "billing_profile", None)
    return profile.currency if profile else ""


def cached_balances(account: Account) -> list:
    """The account's cached balances (receivable, wallet), read once per request: the balance tiles and the
    Account balances section both show them (kept on the account object the frame loaded)."""
    balances = getattr(account, "_cached_balances", None)
    if balances is None:
        balances = selectors.account_balances(account_id=account.pk)
        account._cached_balances = balances
    return balances


def _section_own_request(request: HttpRequest, key: str) -> bool:
    """True when the request is for this section alone (its URL, by HTMX or as a page of its own): only then
    does its ``page`` parameter mean anything (the account page shows the first page)."""
    match = request.resolver_match
    return match is not None and match.url_name == "account-section" and match.kwargs.get("key") == key


def statements_section(request: HttpRequest, account: Account) -> str:
    """The account's statements, newest first, a page at a time: one query (the page with the count)."""
    page_number = request.GET.get("page") if _section_own_request(request, SECTION_KEY) else 1
    # A page that is not a number, or past the end, becomes a page that exists (as Paginator.get_page does).
    page = selectors.account_statements_page(
        account_id=account.pk, number=page_number, per_page=STATEMENTS_PER_PAGE
    )
    return render_to_string(
        "statements/sections/statements.html",
        {
            "account": account,
            "page": page,
            "statements": list(page.object_list),
            "locale": account_locale(account),
            "section_key": SECTION_KEY,
        },
        request=request,
    )


def balances_section(request: HttpRequest, account: Account) -> str:
    """Each biller's latest reported balance beside the ledger's, and the account's total: four queries."""
    balances = selectors.biller_balances(
        account_id=account.pk, currency=account_currency(account), balances=cached_balances(account)
    )
    return render_to_string(
        "statements/sections/balances.html",
        {"account": account, "balances": balances, "locale": account_locale(account)},
        request=request,
    )


@staff_required
@require_GET
def statement_detail(request: HttpRequest, number: str, pk: int) -> HttpResponse:
    """One statement as the customer received it: header amounts, lines by service and type, usage."""
    if not request.user.has_perm("statements.view_statement"):
        raise PermissionDenied("You may not read statements.")
    try:
        statement = selectors.statement_for_account(account_number=number, statement_id=pk)
    except Statement.DoesNotExist:
        raise Http404(f"No statement {pk} on account {number}.") from None
    lines = list(statement.lines.all())
    # Panels that apps above this one add (billing_mgmt.sections.register_statement_panel), e.g. the engine's
    # Calculation; a panel may explain lines, which then link to it ("How").
    panels = [
        (p, out) for p in statement_panels(user=request.user) if (out := p.render(request, statement, lines))
    ]
    for line in lines:
        line.explained_by = [anchor for _, out in panels for anchor in out.line_anchors.get(line.pk, ())]
        # Per-line actions of panels (e.g. the disputes panel's "Dispute" link or "Disputed" badge).
        line.actions = [action for _, out in panels for action in out.line_actions.get(line.pk, ())]
    # The bill's arithmetic, top to bottom (payments received lower what is due, so they show negative).
    summary = [
        ("Previous balance", statement.previous_balance),
        ("Payments received", -statement.payments),
        ("Adjustments", statement.adjustments),
        ("New charges", statement.new_charges),
        ("Taxes", statement.taxes),
    ]
    context = {
        "summary": summary,
        "statement": statement,
        "account": statement.account,
        "locale": account_locale(statement.account),
        "currency": statement.currency,
        "groups": selectors.statement_line_groups(lines=lines),
        "line_count": len(lines),
        "panels": [{"panel": panel, "html": out.html} for panel, out in panels],
        "lines_amount": sum((line.amount for line in lines), Decimal(0)),
        "lines_tax": sum((line.tax for line in lines), Decimal(0)),
        "usage": [
            {
                "item": item,
                "label": usage_label(item.usage_type),
                # Above the plan's allowance is what a customer usually calls about.
                "over": (
                    item.quantity - item.included_quantity
                    if item.included_quantity is not None and item.quantity > item.included_quantity
                    else None
                ),
            }
            for item in statement.usage_summaries.all()
        ],
    }
    return render(request, "statements/statement_detail.html", context)
