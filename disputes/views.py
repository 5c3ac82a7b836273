"""CSR pages of cases and disputes (source 002's service processes, 000's disputes).

* Account page sections (registered in DisputesConfig.ready()): the "Past due" header tile (past due per
  currency with disputed amounts held out, what open disputes hold, and a billing suspension with *Resume
  billing* for supervisors), "Cases" and "Disputes". They reload on ``case-changed``; a fixed number of
  queries each, whatever the number of cases.
* The statement page's "Disputes" panel: the statement's disputes, and on each charge line a *Dispute* link
  (or a *Disputed* badge linking to the open dispute's case), through ``RenderedPanel.line_actions``.
* Pages: a new case (``/cases/new/<account>/``), a dispute (``/cases/dispute/<statement>/?line=<line>``), a
  case (``/cases/<number>/``: header, dispute with the supervisor's resolve form, status buttons, take it,
  comments, the full history) and the supervisors' queue (``/cases/queue/``).

Every write goes through disputes.services. A refusal (``ApplicationError``) comes back as the form with its
messages at the fields and status 400; a clash with the current state (``Conflict``: a stale status button,
a decided dispute, a closed case) as a message with status 409; nothing typed is lost. Success redirects (the
page that shows the result) with a notice. The new case and dispute forms carry a one-time token (a uuid4
signed for the user and the form's subject) that becomes the case's idempotency key, so a double submit makes
one case.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Account
from accounts.selectors import account_detail, paying_account
from billing_mgmt import form_tokens
from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.money import format_money, quantize
from billing_mgmt.sections import LineAction, RenderedPanel, get_section, is_partial, staff_required
from statements.models import Statement, StatementLine
from statements.views.statements import account_locale

from . import selectors
from .forms import (
    STATEMENTS_LISTED,
    CaseForm,
    CommentForm,
    DisputeForm,
    QueueFilterForm,
    ResolveForm,
    ResumeForm,
    TransitionForm,
)
from .models import Case, Dispute, ServiceProcess
from .services import (
    ACTING,
    ADD_CASE,
    ADD_DISPUTE,
    CHANGE_CASE,
    DECIDE_CASE,
    RESOLVE_DISPUTE,
    VIEW_CASE,
    allowed_transitions,
    billing_resume_for,
    case_assign,
    case_comment,
    case_open,
    case_transition,
    dispute_open,
    dispute_resolve,
)

VIEW_DISPUTE = "disputes.view_dispute"
CHANGED_EVENT = "case-changed"
CASES_SHOWN = 10  # on the account page; the section's own page shows up to CASES_SHOWN_FULL
CASES_SHOWN_FULL = 200
DISPUTES_SHOWN = 10
DISPUTES_SHOWN_FULL = 200
QUEUE_LIMIT = 100
TOKEN_SALT = "disputes.form"
NOTICE_KEY = "disputes.notice:{key}"

# What each status button says (the status it moves to, from where it is).
BUTTON_LABELS = {
    Case.Status.IN_PROGRESS: "Start work",
    Case.Status.WAITING_ON_CUSTOMER: "Wait on customer",
    Case.Status.RESOLVED: "Resolve",
    Case.Status.REJECTED: "Reject",
    Case.Status.CLOSED: "Close",
}


# Shared helpers ---------------------------------------------------------------------------------------------


def _need(request: HttpRequest, permission: str, message: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied(message)


def _person(user) -> str:
    if user is None:
        return ""
    return user.get_full_name() or user.get_username()


def _notice_pop(request: HttpRequest, key: str) -> str:
    return request.session.pop(NOTICE_KEY.format(key=key), "") if hasattr(request, "session") else ""


def _notice_set(request: HttpRequest, key: str, text: str) -> None:
    request.session[NOTICE_KEY.format(key=key)] = text


def token_issue(user_pk: int, scope: str) -> str:
    """A one-time form token (billing_mgmt.form_tokens) for an account's new case or a line's dispute."""
    return form_tokens.token_issue(salt=TOKEN_SALT, user_pk=user_pk, scope=scope)


def _token_key(request: HttpRequest, scope: str) -> str:
    token = request.POST.get("token", "")
    key = form_tokens.token_key(salt=TOKEN_SALT, user_pk=request.user.pk, scope=scope, token=token)
    return f"csr-case:{key}"


def _apply(form, exc: ApplicationError, aliases: dict[str, str] | None = None) -> None:
    """A service's refusal on the form: each message at the field it names; a message about something the
    form has no field for (the line, the statement) on top, as it is (not the summary, which says less)."""
    aliases = aliases or {}
    if not exc.fields:
        form.add_error(None, exc.message)
        return
    for name, messages in exc.fields.items():
        target = aliases.get(name, name)
        form.add_error(target if target in form.fields else None, messages)
        if target in form.fields and exc.code == "card_number_refused":
            form.blank(target)


def _load_account(number: str) -> Account:
    try:
        return account_detail(number=number)
    except Account.DoesNotExist:
        raise Http404(f"No account {number}.") from None


def _load_case(number: str) -> Case:
    case = selectors.case_by_number(number=number)
    if case is None:
        raise Http404(f"No case {number}.")
    return case


def _dispute_of(case: Case) -> Dispute | None:
    return getattr(case, "dispute", None)  # loaded with the case (select_related); None for other processes


def _own_page(request: HttpRequest, key: str) -> bool:
    match = request.resolver_match
    return (
        match is not None
        and match.url_name == "account-section"
        and match.kwargs.get("key") == key
        and not is_partial(request)
    )


def _status_label(status: str) -> str:
    return Case.Status(status).label if status in Case.Status.values else status


def _case_row(case: Case, now) -> dict[str, Any]:
    return {
        "case": case,
        "overdue": selectors.is_overdue(case, now),
        "owner": _person(case.owner),
    }


# The account page: Past due tile, Cases and Disputes sections ---------------------------------------------


def _render_past_due(request: HttpRequest, account: Account, *, error: str = "", form=None) -> str:
    unit = paying_account(account=account)
    locale = account_locale(account)
    tiles = [
        {
            "currency": row.currency,
            "past_due": format_money(row.past_due, row.currency, locale),
            "disputed": format_money(row.disputed, row.currency, locale) if row.disputed else "",
            "statements": row.statements,
            "owed": row.past_due > 0,
        }
        for row in selectors.account_past_due(account=account)
    ]
    suspension = selectors.open_suspension(account=unit)
    can_resume = suspension is not None and request.user.has_perm(DECIDE_CASE)
    context = {
        "account": account,
        "unit": unit,
        "own": unit.pk == account.pk,
        "tiles": tiles,
        "suspension": suspension,
        "can_resume": can_resume,
        "resume_form": form or (ResumeForm() if can_resume else None),
        "notice": _notice_pop(request, f"resume:{account.number}"),
        "error": error,
        "inline": is_partial(request) or getattr(request.resolver_match, "url_name", "") == "account-detail",
    }
    return render_to_string("disputes/sections/past_due.html", context, request=request)


def past_due_section(request: HttpRequest, account: Account) -> str:
    """What is past due per currency, disputed amounts held out (one query), what open disputes hold, and
    an open billing suspension of the account's bill unit (one query)."""
    return _render_past_due(request, account)


def cases_section(request: HttpRequest, account: Account) -> str:
    """The account's cases, open first, then newest: one query whatever their number."""
    limit = CASES_SHOWN_FULL if _own_page(request, "cases") else CASES_SHOWN
    found = selectors.account_cases(account=account, limit=limit + 1)
    now = timezone.now()
    context = {
        "account": account,
        "rows": [_case_row(case, now) for case in found[:limit]],
        "more": len(found) > limit,
        "full": limit == CASES_SHOWN_FULL,
        "limit": limit,
        "can_add": request.user.has_perm(ADD_CASE),
        "can_queue": request.user.has_perm(VIEW_CASE),
    }
    return render_to_string("disputes/sections/cases.html", context, request=request)


def disputes_section(request: HttpRequest, account: Account) -> str:
    """The account's disputes, open first, then newest: one query whatever their number."""
    limit = DISPUTES_SHOWN_FULL if _own_page(request, "disputes") else DISPUTES_SHOWN
    found = selectors.account_disputes(account=account, limit=limit + 1)
    context = {
        "account": account,
        "disputes": found[:limit],
        "more": len(found) > limit,
        "full": limit == DISPUTES_SHOWN_FULL,
        "limit": limit,
        "locale": account_locale(account),
    }
    return render_to_string("disputes/sections/disputes.html", context, request=request)


@staff_required
@require_POST
def billing_resume_view(request: HttpRequest, number: str) -> HttpResponse:
    """Resume billing of the account's bill unit (supervisors: disputes.decide_case)."""
    _need(request, DECIDE_CASE, "Only a supervisor resumes billing.")
    account = _load_account(number)
    form = ResumeForm(request.POST)

    def refused(status: int, error: str = "") -> HttpResponse:
        html = _render_past_due(request, account, error=error, form=form)
        if is_partial(request):
            return HttpResponse(html)  # htmx swaps only 2xx answers: the tile shows the message in place
        context = {"account": account, "section": get_section("past-due"), "html": html}
        return render(request, "accounts/section_page.html", context, status=status)

    if not form.is_valid():
        return refused(400)
    try:
        suspension = billing_resume_for(account=account, actor=request.user, note=form.cleaned_data["note"])
    except ApplicationError as exc:
        _apply(form, exc)
        return refused(exc.status_code, error="" if exc.fields else exc.message)
    _notice_set(
        request, f"resume:{account.number}", f"Billing of account {suspension.account.number} is resumed."
    )
    if is_partial(request):
        response = HttpResponse(status=204)
        response["HX-Trigger"] = CHANGED_EVENT
        return response
    return redirect(reverse("account-detail", args=[account.number]))


# The statement page's Disputes panel ------------------------------------------------------------------------


def _line_label(line: StatementLine) -> str:
    return " · ".join(p for p in (line.product, line.description) if p) or f"line {line.position}"


def statement_disputes_panel(request: HttpRequest, statement: Statement, lines: list) -> RenderedPanel:
    """The statement's disputes (one query) and, per charge line, a *Dispute* link or, while the line has an
    open dispute, a *Disputed* badge linking to its case."""
    disputes = selectors.statement_disputes(statement=statement)
    open_by_line = {d.statement_line_id: d for d in disputes if d.is_open}
    can_dispute = request.user.has_perm(ADD_DISPUTE)
    base = reverse("dispute-new", args=[statement.pk])
    actions: dict[int, list[LineAction]] = {}
    for line in lines:
        held = open_by_line.get(line.pk)
        if held is not None:
            actions[line.pk] = [
                LineAction(
                    label="Disputed",
                    url=reverse("case-detail", args=[held.case.number]),
                    badge=True,
                    description=f"(line {line.position}, case {held.case.number})",
                )
            ]
        elif can_dispute and line.amount > 0:
            actions[line.pk] = [
                LineAction(
                    label="Dispute",
                    url=f"{base}?line={line.pk}",
                    description=f"line {line.position}: {_line_label(line)}",
                )
            ]
    whole = open_by_line.get(None)
    context = {
        "statement": statement,
        "account": statement.account,
        "disputes": disputes,
        "locale": account_locale(statement.account),
        "whole_open": whole,
        "can_dispute_whole": can_dispute and whole is None and statement.ledger_amount > 0,
        "dispute_url": base,
    }
    html = render_to_string("disputes/panels/statement_disputes.html", context, request=request)
    return RenderedPanel(html=html, line_actions=actions)


# New case ---------------------------------------------------------------------------------------------------


def _case_form(account: Account, data=None, initial=None) -> CaseForm:
    statements = Statement.objects.filter(account=account).order_by("-statement_date", "-id")[
        :STATEMENTS_LISTED
    ]
    return CaseForm(
        data,
        initial=initial,
        account=account,
        processes=selectors.staff_processes(),
        statements=statements,
        locale=account_locale(account),
    )


@staff_required
@require_http_methods(["GET", "POST"])
def case_new(request: HttpRequest, number: str) -> HttpResponse:
    """A new case raised by a CSR for the account (case_open, channel csr), once per form token."""
    _need(request, ADD_CASE, "You may not open cases.")
    account = _load_account(number)
    scope = f"case:{account.number}"
    if request.method == "GET":
        initial = {}
        code = request.GET.get("process", "")
        if code:
            initial["process"] = next((p.pk for p in selectors.staff_processes() if p.code == code), None)
        if request.GET.get("statement", "").isdigit():
            initial["statement"] = int(request.GET["statement"])
        form = _case_form(account, initial=initial)
        form.describe(focus=True)
        return _case_new_page(request, account, form, token_issue(request.user.pk, scope))
    form = _case_form(account, request.POST)
    token = request.POST.get("token", "")
    if not form.is_valid():
        form.describe()
        return _case_new_page(request, account, form, token, status=400)
    data = form.cleaned_data
    key = None
    try:
        key = _token_key(request, scope)
        case, created = case_open(
            account=account,
            process=data["process"],
            subject=data["subject"],
            description=data["description"],
            channel=Case.Channel.CSR,
            actor=request.user,
            statement=data["statement"],
            requested_due_date=data["requested_due_date"],
            idempotency_key=key,
        )
    except ApplicationError as exc:
        if exc.code == "idempotency_key_reused":
            form.add_error(None, "This form was already used for another case. Nothing more was made.")
            token = token_issue(request.user.pk, scope)
        else:
            _apply(form, exc, aliases={"channel": "process"})
            if exc.code == "invalid_token":
                token = token_issue(request.user.pk, scope)
        form.describe()
        return _case_new_page(request, account, form, token, status=exc.status_code)
    if created:
        _notice_set(
            request, case.number, f"Case {case.number} was opened. The customer is e-mailed its number."
        )
    else:
        _notice_set(request, case.number, f"This form was already used: case {case.number} was opened then. "
                    "Nothing more was made.")  # fmt: skip
    return redirect(reverse("case-detail", args=[case.number]))


def _case_new_page(request, account, form, token, status: int = 200) -> HttpResponse:
    processes = form.processes
    context = {
        "account": account,
        "form": form,
        "token": token,
        "processes": processes,
        "has_dispute_process": any(
            p.action == ServiceProcess.Action.CHARGE_DISPUTE for p in selectors.staff_processes()
        ),
    }
    return render(request, "disputes/case_new.html", context, status=status)


# Dispute a statement line (or a whole statement) -----------------------------------------------------------


def _dispute_target(request: HttpRequest, statement_id: int) -> tuple[Statement, StatementLine | None]:
    statement = (
        Statement.objects.select_related("account", "account__billing_profile", "biller")
        .filter(pk=statement_id)
        .first()
    )
    if statement is None:
        raise Http404("No such statement.")
    raw = request.GET.get("line", "")
    if not raw:
        return statement, None
    if not raw.isdigit():
        raise Http404("No such line.")
    line = StatementLine.objects.filter(pk=int(raw), statement=statement).first()
    if line is None:
        raise Http404("That line is not on this statement.")
    return statement, line


@staff_required
@require_http_methods(["GET", "POST"])
def dispute_new(request: HttpRequest, statement_id: int) -> HttpResponse:
    """Dispute a statement line (``?line=``) or the whole statement (dispute_open, channel csr); the case of
    the dispute opens next."""
    _need(request, ADD_DISPUTE, "You may not open disputes.")
    statement, line = _dispute_target(request, statement_id)
    scope = f"dispute:{statement.pk}:{line.pk if line else 'all'}"
    currency = statement.currency
    held = (
        Dispute.objects.filter(
            statement=statement, status=Dispute.Status.OPEN, **({"statement_line": line} if line else
                                                                {"statement_line__isnull": True})
        )
        .select_related("case")
        .first()
    )  # fmt: skip
    locale = account_locale(statement.account)
    if line is not None:
        most = line.amount
        most_text = f"At most {format_money(most, currency, locale)}, the line’s amount."
    else:
        most = max(statement.ledger_amount - statement.disputed_amount, Decimal(0))
        most_text = (
            f"At most {format_money(most, currency, locale)}, the statement’s charges not yet disputed."
        )
    if request.method == "GET":
        initial = {"amount": format(quantize(most, currency), "f")} if most > 0 else {}
        form = DisputeForm(initial=initial, currency=currency, most=most_text)
        form.describe(focus=True)
        return _dispute_page(request, statement, line, form, token_issue(request.user.pk, scope), held, most)
    form = DisputeForm(request.POST, currency=currency, most=most_text)
    token = request.POST.get("token", "")
    if not form.is_valid():
        form.describe()
        return _dispute_page(request, statement, line, form, token, held, most, status=400)
    try:
        key = _token_key(request, scope)
        case, created = dispute_open(
            statement=statement,
            line=line,
            amount=form.cleaned_data["amount"],
            reason=form.cleaned_data["reason"],
            channel=Case.Channel.CSR,
            actor=request.user,
            idempotency_key=key,
        )
    except ApplicationError as exc:
        _apply(form, exc, aliases={"currency": "amount"})
        if exc.code in ("invalid_token", "idempotency_key_reused"):
            token = token_issue(request.user.pk, scope)
        form.describe()
        return _dispute_page(request, statement, line, form, token, held, most, status=exc.status_code)
    dispute = case.dispute
    amount = format_money(dispute.amount, dispute.currency, account_locale(statement.account))
    if created:
        text = (
            f"Dispute of {amount} opened as case {case.number}. The amount is held out of what is past due."
        )
    else:
        text = f"This form was already used: case {case.number} was opened then. Nothing more was made."
    _notice_set(request, case.number, text)
    return redirect(reverse("case-detail", args=[case.number]))


def _dispute_page(request, statement, line, form, token, held, most, status: int = 200) -> HttpResponse:
    account = statement.account
    context = {
        "statement": statement,
        "account": account,
        "line": line,
        "line_label": _line_label(line) if line else "",
        "form": form,
        "token": token,
        "held": held,
        "most": most,
        "currency": statement.currency,
        "locale": account_locale(account),
        "action": request.get_full_path(),
    }
    return render(request, "disputes/dispute_new.html", context, status=status)


# The case page ----------------------------------------------------------------------------------------------


def _history(case: Case) -> list[dict[str, Any]]:
    rows = []
    for event in selectors.case_history(case=case):
        rows.append(
            {
                "event": event,
                "from_label": _status_label(event.from_status) if event.from_status else "",
                "to_label": _status_label(event.to_status) if event.to_status else "",
            }
        )
    return rows


def _decision_note(case: Case, user) -> str:
    """What the Resolve button does for a request that acts, or who decides it."""
    action = case.process.action
    if not case.is_open:
        return ""
    if action == ServiceProcess.Action.CHARGE_DISPUTE:
        dispute = _dispute_of(case)
        if dispute is not None and dispute.is_open:
            return (
                "The dispute below decides this case: approving credits the account and resolves it; "
                "rejecting rejects it."
            )
        return ""
    if action not in ACTING or case.actioned_at is not None:
        return ""
    if action == ServiceProcess.Action.EXTEND_DUE_DATE and case.statement is not None:
        what = (
            f"Resolving approves the request: the due date of statement {case.statement.number} moves from "
            f"{case.statement.due_date:%b} {case.statement.due_date.day}, {case.statement.due_date.year}"
        )
        wanted = case.requested_due_date
        what += f" to {wanted:%b} {wanted.day}, {wanted.year}." if wanted else "."
    elif action == ServiceProcess.Action.SUSPEND_BILLING:
        what = "Resolving approves the request: billing runs skip the account until billing is resumed."
    else:
        what = ""
    if not user.has_perm(DECIDE_CASE):
        return f"{what} A supervisor approves (resolves) or rejects this request.".strip()
    return what


def _resolve_form(dispute: Dispute, account: Account, data=None) -> ResolveForm:
    most = format_money(dispute.amount, dispute.currency, account_locale(account))
    return ResolveForm(data, currency=dispute.currency, most=most)


def _render_case(
    request: HttpRequest,
    case: Case,
    *,
    status: int = 200,
    transition_form: TransitionForm | None = None,
    comment_form: CommentForm | None = None,
    resolve_form: ResolveForm | None = None,
    error: str = "",
    error_at: str = "",
) -> HttpResponse:
    user = request.user
    dispute = _dispute_of(case)
    locale = account_locale(case.account)
    can_change = user.has_perm(CHANGE_CASE)
    transitions = [
        {
            "status": s,
            "label": ("Reopen" if not case.is_open and s == Case.Status.IN_PROGRESS else BUTTON_LABELS[s]),
            "primary": s == Case.Status.RESOLVED,
        }
        for s in allowed_transitions(case=case, user=user)
    ]
    can_resolve = (
        dispute is not None
        and dispute.is_open
        and case.status != Case.Status.CLOSED
        and user.has_perm(RESOLVE_DISPUTE)
    )
    if resolve_form is None and can_resolve:
        resolve_form = _resolve_form(dispute, case.account)
    context = {
        "case": case,
        "account": case.account,
        "dispute": dispute if user.has_perm(VIEW_DISPUTE) else None,
        "locale": locale,
        "overdue": selectors.is_overdue(case),
        "owner": _person(case.owner),
        "created_by": _person(case.created_by) or (f"API ({case.api_biller})" if case.api_biller_id else ""),
        "history": _history(case),
        "transitions": transitions,
        "transition_form": transition_form or TransitionForm(),
        "comment_form": comment_form or CommentForm(),
        "resolve_form": resolve_form if can_resolve else None,
        "can_change": can_change,
        "can_comment": can_change and case.status != Case.Status.CLOSED,
        "can_take": can_change and case.status != Case.Status.CLOSED and case.owner_id != user.pk,
        "decision_note": _decision_note(case, user),
        "notice": _notice_pop(request, case.number),
        "error": error,
        "error_at": error_at,
    }
    for form in (context["transition_form"], context["comment_form"], context["resolve_form"]):
        if form is not None:
            form.describe()
    return render(request, "disputes/case_detail.html", context, status=status)


@staff_required
@require_GET
def case_detail(request: HttpRequest, number: str) -> HttpResponse:
    """One case: what it is about, its dispute, the actions the user may take, and its whole history."""
    _need(request, VIEW_CASE, "You may not read cases.")
    return _render_case(request, _load_case(number))


def _done(request: HttpRequest, case: Case, text: str) -> HttpResponse:
    _notice_set(request, case.number, text)
    response = redirect(reverse("case-detail", args=[case.number]))
    response["HX-Trigger"] = CHANGED_EVENT
    return response


@staff_required
@require_POST
def case_status_view(request: HttpRequest, number: str) -> HttpResponse:
    """A status button: case_transition with the status the page showed (a stale click is a 409)."""
    _need(request, CHANGE_CASE, "You may not change cases.")
    case = _load_case(number)
    form = TransitionForm(request.POST)
    if not form.is_valid():
        return _render_case(request, case, status=400, transition_form=form, error_at="status")
    data = form.cleaned_data
    decided = data["to_status"] in Case.DECIDED_STATUSES
    try:
        case = case_transition(
            case=case,
            to_status=data["to_status"],
            actor=request.user,
            comment="" if decided else data["text"],
            resolution=data["text"] if decided else "",
            expected_status=data["expected_status"] or None,
        )
    except Conflict as exc:
        return _render_case(
            request,
            _load_case(number),
            status=409,
            transition_form=form,
            error=exc.message,
            error_at="status",
        )
    except ApplicationError as exc:
        _apply(form, exc, aliases={"resolution": "text", "comment": "text"})
        return _render_case(request, case, status=400, transition_form=form, error_at="status")
    return _done(request, case, f"Case {case.number} is now {case.get_status_display().lower()}.")


@staff_required
@require_POST
def case_assign_view(request: HttpRequest, number: str) -> HttpResponse:
    """Take it: the case is the user's."""
    _need(request, CHANGE_CASE, "You may not change cases.")
    case = _load_case(number)
    try:
        case = case_assign(case=case, owner=request.user, actor=request.user)
    except ApplicationError as exc:
        status = exc.status_code
        return _render_case(request, case, status=status, error=exc.message, error_at="assign")
    return _done(request, case, f"Case {case.number} is yours now.")


@staff_required
@require_POST
def case_comment_view(request: HttpRequest, number: str) -> HttpResponse:
    """A comment to the case's history; an internal note is for staff only."""
    _need(request, CHANGE_CASE, "You may not change cases.")
    case = _load_case(number)
    form = CommentForm(request.POST)
    if not form.is_valid():
        return _render_case(request, case, status=400, comment_form=form, error_at="comment")
    internal = form.cleaned_data["internal"]
    try:
        case_comment(case=case, actor=request.user, text=form.cleaned_data["text"], public=not internal)
    except Conflict as exc:
        return _render_case(
            request, case, status=409, comment_form=form, error=exc.message, error_at="comment"
        )
    except ApplicationError as exc:
        _apply(form, exc)
        return _render_case(request, case, status=400, comment_form=form, error_at="comment")
    return _done(
        request, case, "Internal note added." if internal else "Comment added; the customer sees it."
    )


@staff_required
@require_POST
def dispute_resolve_view(request: HttpRequest, number: str) -> HttpResponse:
    """A supervisor approves the case's dispute in full or in part (a credit adjustment) or rejects it."""
    _need(request, RESOLVE_DISPUTE, "Only a supervisor resolves disputes.")
    case = _load_case(number)
    dispute = _dispute_of(case)
    if dispute is None:
        raise Http404(f"Case {number} has no dispute.")
    form = _resolve_form(dispute, case.account, request.POST)
    if not form.is_valid():
        return _render_case(request, case, status=400, resolve_form=form, error_at="resolve")
    data = form.cleaned_data
    approve = data["decision"] != ResolveForm.REJECT
    try:
        dispute = dispute_resolve(
            dispute=dispute,
            actor=request.user,
            approve=approve,
            amount=data["amount"] if data["decision"] == ResolveForm.APPROVE_PART else None,
            note=data["note"],
        )
    except Conflict as exc:
        fresh = _load_case(number)
        return _render_case(request, fresh, status=409, error=exc.message, error_at="resolve")
    except ApplicationError as exc:
        _apply(form, exc)
        return _render_case(request, case, status=400, resolve_form=form, error_at="resolve")
    locale = account_locale(case.account)
    if approve:
        credited = format_money(dispute.approved_amount, dispute.currency, locale)
        status = dispute.get_status_display()
        text = f"{status}: {credited} credited to the account. Case {case.number} is resolved."
    else:
        text = f"Dispute rejected. Case {case.number} is rejected."
    return _done(request, case, text)


# The supervisors' queue -------------------------------------------------------------------------------------


@staff_required
@require_GET
def case_queue(request: HttpRequest) -> HttpResponse:
    """Cases across accounts, overdue first, then by due date; filtered by type, status, queue, due date and
    owner. A fixed number of queries (processes, queues, count, the page of cases)."""
    _need(request, VIEW_CASE, "You may not read cases.")
    processes = list(ServiceProcess.objects.order_by("position", "name"))
    form = QueueFilterForm(request.GET or None, processes=processes, queues=selectors.queues())
    values = {"process": "", "status": "open", "queue": "", "due_before": None, "mine": False}
    if form.is_bound:
        form.is_valid()
        for name in values:
            if name not in form.errors and form.cleaned_data.get(name) not in (None, ""):
                values[name] = form.cleaned_data[name]
    filters = selectors.QueueFilter(
        process=values["process"],
        status=values["status"],
        due_before=values["due_before"],
        queue=values["queue"],
        mine_user_id=request.user.pk if values["mine"] else None,
    )
    found, total = selectors.queue_cases(filters=filters, limit=QUEUE_LIMIT)
    now = timezone.now()
    filtered = (
        any(values[k] for k in ("process", "queue", "due_before", "mine")) or values["status"] != "open"
    )
    context = {
        "form": form,
        "rows": [_case_row(case, now) for case in found],
        "total": total,
        "shown": len(found),
        "filtered": filtered,
        "showing": (
            "Open cases (new, in progress, waiting on customer)"
            if values["status"] == "open"
            else "Cases of every status"
            if values["status"] == "all"
            else f"{_status_label(values['status'])} cases"
        ),
    }
    return render(request, "disputes/queue.html", context)
