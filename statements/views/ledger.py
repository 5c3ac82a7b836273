"""CSR sections of the account page served by statements: the balance tiles and the ledger.

Registered in StatementsConfig.ready(); the account page (accounts) calls them without importing this app.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.template.loader import render_to_string

from accounts.models import Account
from billing_mgmt.money import format_money
from billing_mgmt.sections import is_partial
from statements import selectors
from statements.models import BalanceType

from .statements import cached_balances

LEDGER_ROWS = 20
LEDGER_ROWS_FULL = 200  # on the section's own page (/accounts/<number>/sections/ledger/)


def _locale(account: Account) -> str:
    profile = getattr(account, "billing_profile", None)
    return (profile.locale if profile else "") or "en_US"


def balance_section(request: HttpRequest, account: Account) -> str:
    locale = _locale(account)
    tiles = []
    for balance in cached_balances(account):
        if balance.transaction_count == 0 and balance.amount == 0:
            continue
        receivable = balance.balance_type == BalanceType.RECEIVABLE
        if receivable:
            state = "owed" if balance.amount > 0 else "credit" if balance.amount < 0 else "settled"
        else:
            state = "wallet"
        tiles.append(
            {
                "label": "Balance" if receivable else balance.get_balance_type_display(),
                "amount": format_money(balance.amount, balance.currency, locale),
                "state": state,
                "count": balance.transaction_count,
            }
        )
    return render_to_string(
        "statements/sections/balance.html", {"account": account, "tiles": tiles}, request=request
    )


def ledger_section(request: HttpRequest, account: Account) -> str:
    locale = _locale(account)
    # On the section's own page (not the account page, not an HTMX refresh) the list is longer.
    match = request.resolver_match
    full = match is not None and match.url_name == "account-section" and not is_partial(request)
    limit = LEDGER_ROWS_FULL if full else LEDGER_ROWS
    rows = list(selectors.account_transactions(account_id=account.pk, limit=limit + 1))
    entries = [
        {
            "tx": tx,
            "amount": format_money(tx.amount, tx.currency, locale),
            "is_credit": tx.amount < 0,
            "source": tx.biller.name if tx.biller_id else "This system",
        }
        for tx in rows[:limit]
    ]
    return render_to_string(
        "statements/sections/ledger.html",
        {"account": account, "entries": entries, "more": len(rows) > limit, "limit": limit, "full": full},
        request=request,
    )
