"""The account page's "Data from billers" section: how fresh the data from each of the account's billers is,
and the CSR's "Refresh from billers" (a customer on the phone: ask the billers for their latest now).

The button posts to ``account-refresh``; the refresh runs in a worker (``statements.refresh_account``). While
it is queued or running, the section's fragment polls ``account-refresh-status`` every second; the answer
that finds it finished carries ``HX-Trigger: account-changed``, on which every section of the page reloads
(so the new statement shows). Without JavaScript the form posts and is redirected back to the account page.
"""

from __future__ import annotations

import datetime as dt

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.models import Account
from billing_mgmt.errors import ApplicationError
from billing_mgmt.sections import get_section, is_partial, staff_required
from statements import selectors
from statements.models import AccountRefresh, PullRun
from statements.services import account_refresh_request, refresh_is_stale

SECTION_KEY = "freshness"
PERMISSION = "statements.view_statement"
REFRESH_SHOWN_FOR = dt.timedelta(minutes=10)  # a finished refresh's outcome stays on the section this long
ERROR_SHOWN = 240  # characters of a load's error on the page (the whole text is in the title)
ACTIVE = (AccountRefresh.Status.QUEUED, AccountRefresh.Status.RUNNING)
FINISHED = (AccountRefresh.Status.DONE, AccountRefresh.Status.FAILED)
CHANGED_EVENT = "account-changed"


def _ago(moment: dt.datetime | None, now: dt.datetime) -> str:
    if moment is None:
        return ""
    seconds = (now - moment).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    return f"{days} day{'s' if days != 1 else ''} ago"


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ERROR_SHOWN else text[: ERROR_SHOWN - 1] + "…"


def _run_state(run: PullRun | None) -> str:
    if run is None:
        return "waiting"
    return {PullRun.Status.RUNNING: "loading"}.get(run.status, run.status)


def render_freshness(
    request: HttpRequest, account: Account, *, refresh: AccountRefresh | None = None, message: str = ""
) -> str:
    """The section's fragment for a refresh (by default the account's latest, if active or recent)."""
    now = timezone.now()
    if refresh is None:
        latest = selectors.account_refresh_latest(account_id=account.pk)
        recent = latest is not None and (
            latest.status in ACTIVE or (latest.finished_at and latest.finished_at >= now - REFRESH_SHOWN_FOR)
        )
        refresh = latest if recent else None
    stale = refresh is not None and refresh_is_stale(refresh, now=now)
    active = refresh is not None and refresh.status in ACTIVE and not stale
    rows = []
    for item in selectors.account_freshness(account_id=account.pk, refresh=refresh):
        error = item.account_error and f"Last refresh failed: {item.account_error}"
        if not error and item.biller_error:
            error = f"Scheduled load failing: {item.biller_error}"
        rows.append(
            {
                "item": item,
                "success_ago": _ago(item.last_success_at, now),
                "statement_ago": _ago(item.last_statement_at, now),
                "error": error,
                "error_short": _short(error) if error else "",
                "run_state": _run_state(item.run) if refresh is not None and item.pulled else "",
            }
        )
    pulled = [r for r in rows if r["item"].pulled]
    context = {
        "account": account,
        "rows": rows,
        "refresh": refresh,
        "active": active,
        "stale": stale,
        "finished_ago": _ago(refresh.finished_at, now) if refresh is not None else "",
        "done_count": sum(1 for r in pulled if r["run_state"] in ("succeeded", "failed")),
        "pulled_count": len(pulled),
        "new_records": sum(r["item"].run.accepted for r in pulled if r["item"].run is not None),
        "can_refresh": bool(pulled) and request.user.has_perm(PERMISSION),
        "message": message,
    }
    return render_to_string("statements/sections/freshness.html", context, request=request)


def freshness_section(request: HttpRequest, account: Account) -> str:
    return render_freshness(request, account)


def _load_account(request: HttpRequest, number: str) -> Account:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied("You may not see this account's billing data.")
    account = Account.objects.filter(number=number).first()
    if account is None:
        raise Http404(f"No account {number}.")
    return account


def _fragment_response(html: str, refresh: AccountRefresh | None) -> HttpResponse:
    response = HttpResponse(html)
    if refresh is not None and refresh.status in FINISHED:
        # The other sections listen to this event ("account-changed from:body") and reload.
        response["HX-Trigger"] = CHANGED_EVENT
    return response


def _section_page(request: HttpRequest, account: Account, html: str, status: int = 200) -> HttpResponse:
    """The fragment on a page of its own, as the frame shows a section without JavaScript."""
    context = {"account": account, "section": get_section(SECTION_KEY), "html": html}
    return render(request, "accounts/section_page.html", context, status=status)


@staff_required
@require_POST
def account_refresh(request: HttpRequest, number: str) -> HttpResponse:
    account = _load_account(request, number)
    refresh = None
    message = ""
    try:
        refresh = account_refresh_request(account=account, actor=request.user)
    except ApplicationError as exc:
        message = exc.message
    else:
        refresh.refresh_from_db()  # a worker running tasks eagerly has finished it by now
    html = render_freshness(request, account, refresh=refresh, message=message)
    if is_partial(request):
        return _fragment_response(html, refresh)
    if message:
        return _section_page(request, account, html, status=409)
    return redirect(f"{reverse('account-detail', args=[account.number])}#section-{SECTION_KEY}")


@staff_required
@require_GET
def account_refresh_status(request: HttpRequest, number: str, pk: int) -> HttpResponse:
    account = _load_account(request, number)
    refresh = selectors.account_refresh_get(account_id=account.pk, refresh_id=pk)
    if refresh is None:
        raise Http404(f"No refresh {pk} of account {number}.")
    html = render_freshness(request, account, refresh=refresh)
    if is_partial(request):
        return _fragment_response(html, refresh)
    return _section_page(request, account, html)
