"""The customer self-service portal, at /portal/ (portal/urls.py, namespace ``portal``).

Who: a user in the Customer group (billing_mgmt.roles.CUSTOMER) linked to Contact rows; their accounts are
those contacts' accounts (``selectors.customer_accounts``). Anonymous visitors go to the portal's own login
page; staff (and users with no customer role) get a polite 403 page that points them to the CSR app.

What they see is scoped to their accounts, always: a statement, line, invoice or case of any other account is
404 (never 403), so that ids and numbers in URLs cannot be probed. With several accounts, a switcher in the
page header chooses the "current" one (kept in the session) that the home page, the lists and the Help
Center requests are about; the detail pages open for any of the customer's accounts.

Pages: home (balance, past due with disputed amounts held out, next due date, latest statement, cases),
statements (list, one statement with its lines, "Dispute this charge" on each chargeable line, invoice
downloads from the stored files), the Help Center (the service processes offered in the portal, each with its
request form) and cases (list, one case with its public history and a reply form).

Every write goes through disputes.services (``dispute_open``, ``case_open``, ``case_comment``) with channel
``portal`` and the customer as actor; their refusals come back as form errors (400, or 409 for a conflict)
with what was typed kept. The dispute and request forms carry a one-time token (a uuid4 signed for the user
and the form) that becomes the case's idempotency key, so a double submit makes one case.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import wraps

from django.contrib.auth import views as auth_views
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.forms import LoginForm
from accounts.models import Account
from billing_mgmt import form_tokens
from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.money import quantize
from billing_mgmt.roles import CUSTOMER, has_role, is_staff_member
from disputes import selectors as dispute_selectors
from disputes.models import Case, CaseEvent, ServiceProcess
from disputes.services import case_comment, case_open, dispute_open
from invoicing.models import Invoice
from invoicing.views import DOCUMENT_CSP, FORMATS
from statements.models import StatementLine
from statements.views.statements import account_locale, usage_label

from . import selectors
from .forms import CaseRequestForm, DisputeForm, PortalForm, ReplyForm

CURRENT_ACCOUNT_KEY = "portal_account"
CREATED_CASE_KEY = "portal_created_case"
TOKEN_SALT = "portal.form"
STATEMENTS_PER_PAGE = 10
CASES_PER_PAGE = 15
INQUIRY_STATEMENTS = 24  # the statements an inquiry may be about (the newest)
DOWNLOAD_FORMATS = ("pdf", "html")  # what customers download (the XML is for machines)

Action = ServiceProcess.Action


# --- who may use the portal ---------------------------------------------------------------------------------


@dataclass
class Portal:
    """The customer's accounts and the one they are looking at (``request.portal``)."""

    accounts: list[Account]
    account: Account | None

    @property
    def account_ids(self) -> list[int]:
        return [a.pk for a in self.accounts]

    @property
    def several(self) -> bool:
        return len(self.accounts) > 1

    @property
    def locale(self) -> str:
        return account_locale(self.account) if self.account is not None else "en_US"


def _portal(request: HttpRequest) -> Portal:
    accounts = selectors.customer_accounts(user=request.user)
    wanted = request.session.get(CURRENT_ACCOUNT_KEY)
    current = next((a for a in accounts if a.number == wanted), accounts[0] if accounts else None)
    return Portal(accounts=accounts, account=current)


def _forbidden(request: HttpRequest) -> HttpResponse:
    staff = is_staff_member(request.user)
    return render(request, "portal/forbidden.html", {"staff": staff, "portal": None}, status=403)


def customer_required(view):
    """Portal pages: anonymous visitors are sent to the portal login (``next`` kept); staff and users without
    the Customer role get the 403 page; a customer whose login is linked to no account gets a page that says
    so. Sets ``request.portal``."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path(), login_url=reverse("portal:login"))
        if is_staff_member(user) or not has_role(user, CUSTOMER):
            return _forbidden(request)
        request.portal = _portal(request)
        if request.portal.account is None:
            return _render(request, "portal/no_account.html")
        try:
            return view(request, *args, **kwargs)
        except Http404:
            # The portal's own page (the site's 404 page is the CSR app's): same answer for "does not
            # exist" and "is another customer's".
            return _render(request, "portal/not_found.html", status=404)

    return wrapped


def _render(request: HttpRequest, template: str, context: dict | None = None, *, status: int = 200,
            tab: str = "") -> HttpResponse:  # fmt: skip
    portal = getattr(request, "portal", None)
    base = {
        "portal": portal, "tab": tab, "locale": portal.locale if portal else "en_US",
        "today": timezone.localdate(),
    }  # fmt: skip
    return render(request, template, {**base, **(context or {})}, status=status)


class LoginView(auth_views.LoginView):
    """The portal's own login page. Customers land on the portal home, staff on the CSR home, unless ``next``
    names a page of this site."""

    template_name = "portal/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True

    def get_default_redirect_url(self) -> str:
        if is_staff_member(self.request.user):
            return resolve_url("csr-home")
        return reverse("portal:home")


logout = auth_views.LogoutView.as_view(next_page="portal:login")


# --- one-time form tokens -----------------------------------------------------------------------------------


def _token_issue(request: HttpRequest, form: str) -> str:
    return form_tokens.token_issue(salt=TOKEN_SALT, user_pk=request.user.pk, scope=form)


def _token_key(request: HttpRequest, form: str) -> str:
    """The idempotency key the posted token stands for (refused when forged or made for another form)."""
    token = request.POST.get("token", "")
    key = form_tokens.token_key(salt=TOKEN_SALT, user_pk=request.user.pk, scope=form, token=token)
    return f"portal-{form}:{key}"


def _refusal(form: PortalForm, exc: ApplicationError) -> None:
    """Put a service's refusal on the form: messages at the fields it has, the others (and the message, when
    no field is named) on top."""
    top = []
    for field, messages in exc.fields.items():
        if field in form.fields:
            form.add_error(field, messages)
            if exc.code == "card_number_refused":
                form.blank(field)
        else:
            top.extend(messages)
    if not exc.fields:
        top.append(exc.message)
    for message in top:
        form.add_error(None, message)


def _safe_next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target.startswith("/portal/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def _int(value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise Http404("Not found.") from None
    if number <= 0:
        raise Http404("Not found.")
    return number


def _created(request: HttpRequest, case: Case, created: bool) -> HttpResponse:
    request.session[CREATED_CASE_KEY] = {"number": case.number, "created": created}
    return redirect("portal:case-detail", number=case.number)


# --- home and the account switcher --------------------------------------------------------------------------


@customer_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    portal = request.portal
    summary = selectors.account_summary(account=portal.account)
    processes = dispute_selectors.portal_processes()
    return _render(
        request,
        "portal/home.html",
        {
            "summary": summary,
            "latest_formats": _formats(summary.latest),
            "processes": [_process_row(p) for p in processes][:4],
            "first_name": request.user.first_name or _first_word(portal.account.name),
        },
        tab="home",
    )


def _first_word(name: str) -> str:
    return (name or "").split(" ")[0]


@customer_required
@require_POST
def account_switch(request: HttpRequest) -> HttpResponse:
    number = request.POST.get("account", "")
    account = next((a for a in request.portal.accounts if a.number == number), None)
    if account is None:
        raise Http404("No such account.")
    request.session[CURRENT_ACCOUNT_KEY] = account.number
    return redirect(_safe_next(request, reverse("portal:home")))


# --- statements and invoices --------------------------------------------------------------------------------


def _invoice_of(statement) -> Invoice | None:
    return getattr(statement, "invoice", None) if statement is not None else None


def _formats(statement) -> list[dict]:
    """The invoice downloads of a statement: its rendered documents (none while it is being rendered)."""
    invoice = _invoice_of(statement)
    if invoice is None or invoice.status != Invoice.Status.RENDERED:
        return []
    return [
        {
            "extension": ext,
            "label": FORMATS[ext].label,
            "url": reverse("portal:invoice-download", args=[invoice.number, ext]),
            "number": invoice.number,
        }
        for ext in DOWNLOAD_FORMATS
        if getattr(invoice, ext)
    ]


@customer_required
@require_GET
def statement_list(request: HttpRequest) -> HttpResponse:
    """The current account's statements, newest first, a page at a time (two queries: count, page)."""
    portal = request.portal
    paginator = Paginator(selectors.statements(account_ids=[portal.account.pk]), STATEMENTS_PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    rows = [{"statement": s, "formats": _formats(s)} for s in page.object_list]
    return _render(request, "portal/statements.html", {"page": page, "rows": rows}, tab="statements")


def _statement_or_404(request: HttpRequest, pk: int):
    statement = selectors.statement(statement_id=pk, account_ids=request.portal.account_ids)
    if statement is None:
        raise Http404("No such statement.")
    return statement


def _line_groups(lines, disputes) -> list[dict]:
    """Lines by service (in the order the bill first lists them; account-level lines last), each with its
    open dispute and whether it may be disputed (a charge without an open dispute)."""
    labels = dict(StatementLine.Type.choices)
    groups: dict[str, dict] = {}
    for line in lines:
        group = groups.setdefault(
            line.service_identifier,
            {"service": line.service_identifier, "service_type": line.service_type, "rows": [],
             "amount": Decimal(0)},
        )  # fmt: skip
        dispute = disputes.get(line.pk)
        group["rows"].append(
            {
                "line": line,
                "type_label": labels.get(line.line_type, line.line_type),
                "dispute": dispute,
                "disputable": line.amount > 0 and dispute is None,
            }
        )
        group["amount"] += line.amount
    return sorted(groups.values(), key=lambda g: g["service"] == "")


@customer_required
@require_GET
def statement_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One statement: header amounts, lines with their dispute actions, usage and the invoice downloads."""
    statement = _statement_or_404(request, pk)
    lines = list(statement.lines.all())
    disputes = selectors.open_disputes_by_line(statement=statement)
    summary = [
        ("Previous balance", statement.previous_balance),
        ("Payments received", -statement.payments),
        ("Adjustments", statement.adjustments),
        ("New charges", statement.new_charges),
        ("Taxes", statement.taxes),
    ]
    usage = [
        {"item": item, "label": usage_label(item.usage_type)} for item in statement.usage_summaries.all()
    ]
    return _render(
        request,
        "portal/statement_detail.html",
        {
            "statement": statement,
            "currency": statement.currency,
            "locale": account_locale(statement.account),
            "summary": summary,
            "groups": _line_groups(lines, disputes),
            "line_count": len(lines),
            "usage": usage,
            "formats": _formats(statement),
        },
        tab="statements",
    )


@customer_required
@require_http_methods(["GET", "POST"])
def dispute_line(request: HttpRequest, pk: int) -> HttpResponse:
    """Dispute one charge of a statement (``?line=<id>``): the amount (at most the line's, the whole line by
    default) and the reason. The dispute is a case of the charge-dispute process (disputes.services)."""
    statement = _statement_or_404(request, pk)
    line = selectors.statement_line(
        line_id=_int(request.POST.get("line") if request.method == "POST" else request.GET.get("line")),
        account_ids=request.portal.account_ids,
    )
    if line is None or (request.method == "GET" and line.statement_id != statement.pk):
        raise Http404("No such charge on this statement.")
    currency, locale = statement.currency, account_locale(statement.account)
    form_name = f"dispute-{statement.pk}"
    open_dispute = selectors.open_disputes_by_line(statement=statement).get(line.pk)

    def page(form: DisputeForm | None, token: str, status: int = 200) -> HttpResponse:
        if form is not None:
            form.describe()
        return _render(
            request,
            "portal/dispute_form.html",
            {
                "statement": statement,
                "line": line,
                "form": form,
                "token": token or _token_issue(request, form_name),
                "open_dispute": open_dispute,
                "currency": currency,
                "locale": locale,
            },
            status=status,
            tab="statements",
        )

    kwargs = {"currency": currency, "line_amount": line.amount, "locale": locale}
    if request.method == "GET":
        if open_dispute is not None or line.amount <= 0:
            return page(None, "")
        return page(
            DisputeForm(initial={"amount": format(quantize(line.amount, currency), "f")}, **kwargs), ""
        )
    form = DisputeForm(request.POST, **kwargs)
    token = request.POST.get("token", "")
    if not form.is_valid():
        return page(form, token, 400)
    try:
        case, created = dispute_open(
            statement=statement,
            line=line,
            subject=f"Disputed charge: {_line_name(line)} ({line.statement.number})",
            amount=form.cleaned_data["amount"],
            reason=form.cleaned_data["reason"],
            channel=Case.Channel.PORTAL,
            actor=request.user,
            idempotency_key=_token_key(request, form_name),
        )
    except ApplicationError as exc:
        _refusal(form, exc)
        if exc.code in ("invalid_token", "idempotency_key_reused"):
            token = ""
        return page(form, token, exc.status_code)
    return _created(request, case, created)


def _line_name(line: StatementLine) -> str:
    return line.product or line.description or line.get_line_type_display()


@customer_required
@require_GET
def invoice_download(request: HttpRequest, number: str, extension: str) -> FileResponse:
    """One stored document of one of the customer's invoices: the PDF as an attachment (``?inline=1`` opens
    it in the browser), the HTML inline under the same locked-down Content-Security-Policy as for staff."""
    if extension not in DOWNLOAD_FORMATS:
        raise Http404("No such document.")
    fmt = FORMATS[extension]
    invoice = selectors.invoice(number=number, account_ids=request.portal.account_ids)
    stored = getattr(invoice, fmt.extension) if invoice is not None else None
    if invoice is None or invoice.status != Invoice.Status.RENDERED or not stored:
        raise Http404("No such document.")
    try:
        handle = stored.open("rb")
    except FileNotFoundError:
        raise Http404("No such document.") from None
    as_attachment = fmt.as_attachment and request.GET.get("inline") != "1"
    response = FileResponse(
        handle, as_attachment=as_attachment, filename=f"{invoice.number}.{fmt.extension}",
        content_type=fmt.content_type,
    )  # fmt: skip
    if fmt.extension == "html":
        response["Content-Security-Policy"] = DOCUMENT_CSP
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


# --- the Help Center ----------------------------------------------------------------------------------------


def service_level_text(hours: int) -> str:
    """A service level as a customer reads it: 48 -> "within 2 days", 6 -> "within 6 hours"."""
    if hours >= 24 and hours % 24 == 0:
        days = hours // 24
        return f"within {days} day{'s' if days != 1 else ''}"
    return f"within {hours} hour{'s' if hours != 1 else ''}"


PROCESS_ICONS = {
    Action.INQUIRY: "question",
    Action.CHARGE_DISPUTE: "flag",
    Action.EXTEND_DUE_DATE: "calendar",
    Action.SUSPEND_BILLING: "pause",
}


def _process_row(process: ServiceProcess) -> dict:
    return {
        "process": process,
        "service_level": service_level_text(process.service_level_hours),
        "icon": PROCESS_ICONS.get(process.action, "question"),
    }


@customer_required
@require_GET
def help_center(request: HttpRequest) -> HttpResponse:
    rows = [_process_row(p) for p in dispute_selectors.portal_processes()]
    return _render(request, "portal/help.html", {"rows": rows}, tab="help")


def _process_or_404(code: str) -> tuple[ServiceProcess, list[ServiceProcess]]:
    processes = dispute_selectors.portal_processes()
    process = next((p for p in processes if p.code == code), None)
    if process is None:
        raise Http404("No such request.")
    return process, processes


def _request_statements(portal: Portal, process: ServiceProcess):
    account_ids = [portal.account.pk]
    if process.action == Action.EXTEND_DUE_DATE:
        return selectors.unpaid_statements(account_ids=account_ids)
    newest = list(
        selectors.statements(account_ids=account_ids).values_list("pk", flat=True)[:INQUIRY_STATEMENTS]
    )
    return selectors.statements(account_ids=account_ids).filter(pk__in=newest)


@customer_required
@require_http_methods(["GET", "POST"])
def help_request(request: HttpRequest, code: str) -> HttpResponse:
    """The request form of one service process. A charge dispute starts from the charge itself (the
    statement page's "Dispute this charge"), so its page lists the statements to choose from."""
    portal = request.portal
    process, processes = _process_or_404(code)
    row = _process_row(process)
    if process.action == Action.CHARGE_DISPUTE:
        if request.method == "POST":
            return HttpResponse(status=405, headers={"Allow": "GET"})
        recent = list(selectors.statements(account_ids=[portal.account.pk])[:6])
        inquiry = next((p for p in processes if p.action == Action.INQUIRY), None)
        return _render(
            request, "portal/help_dispute.html",
            {"row": row, "process": process, "statements": recent, "inquiry": inquiry}, tab="help",
        )  # fmt: skip
    form_name = f"case-{process.code}"
    with_statement = process.action in (Action.INQUIRY, Action.EXTEND_DUE_DATE)
    kwargs = {
        "statements": _request_statements(portal, process),
        "with_statement": with_statement,
        "statement_required": process.action == Action.EXTEND_DUE_DATE,
        "with_due_date": process.action == Action.EXTEND_DUE_DATE,
        "locale": portal.locale,
        "max_extension_days": process.max_extension_days,
    }

    def page(form: CaseRequestForm, token: str, status: int = 200) -> HttpResponse:
        form.describe()
        token = token or _token_issue(request, form_name)
        return _render(
            request, "portal/help_request.html",
            {"row": row, "process": process, "form": form, "token": token},
            status=status, tab="help",
        )  # fmt: skip

    if request.method == "GET":
        initial = {"subject": process.name}
        wanted = request.GET.get("statement")
        if with_statement and wanted and wanted.isdigit():
            initial["statement"] = int(wanted)
        return page(CaseRequestForm(initial=initial, **kwargs), "")
    form = CaseRequestForm(request.POST, **kwargs)
    token = request.POST.get("token", "")
    if not form.is_valid():
        return page(form, token, 400)
    data = form.cleaned_data
    try:
        case, created = case_open(
            account=portal.account,
            process=process,
            subject=data["subject"],
            description=data["description"],
            channel=Case.Channel.PORTAL,
            actor=request.user,
            statement=data.get("statement"),
            requested_due_date=data.get("requested_due_date"),
            idempotency_key=_token_key(request, form_name),
        )
    except ApplicationError as exc:
        _refusal(form, exc)
        if exc.code in ("invalid_token", "idempotency_key_reused"):
            token = ""
        return page(form, token, exc.status_code)
    return _created(request, case, created)


# --- cases --------------------------------------------------------------------------------------------------


@customer_required
@require_GET
def case_list(request: HttpRequest) -> HttpResponse:
    """The current account's cases, open ones first, then newest (two queries: count, page)."""
    paginator = Paginator(selectors.portal_cases(account_ids=[request.portal.account.pk]), CASES_PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    return _render(request, "portal/cases.html", {"page": page, "cases": list(page.object_list)}, tab="cases")


STAFF_NAME = "Customer service"  # how the history names staff (never a colleague's own name)
EVENT_TITLES = {
    CaseEvent.Kind.CREATED: "Request received",
    CaseEvent.Kind.DISPUTE: "Dispute decided",
    CaseEvent.Kind.ACTION: "Done on your account",
    CaseEvent.Kind.ASSIGNED: "Assigned",
}


def _history(request: HttpRequest, case: Case) -> list[dict]:
    """The case's public history as the customer reads it: who ("You", "Customer service"), what, when."""
    events = dispute_selectors.case_history(case=case, public_only=True)
    staff = selectors.staff_actor_ids(events=events)
    rows = []
    for event in events:
        if event.actor_id is not None and event.actor_id == request.user.pk:
            who, mine = "You", True
        elif event.actor_id in staff:
            who, mine = STAFF_NAME, False
        elif event.actor_id is None:
            who, mine = ("Automatic update" if event.actor_label == "system" else STAFF_NAME), False
        else:
            who, mine = event.actor_label, False
        if event.kind == CaseEvent.Kind.STATUS:
            title = f"Status: {Case.Status(event.to_status).label}" if event.to_status else "Status changed"
        elif event.kind == CaseEvent.Kind.COMMENT:
            title = "Your reply" if mine else "Reply"
        else:
            title = EVENT_TITLES.get(event.kind, event.get_kind_display())
        rows.append({"event": event, "who": who, "mine": mine, "title": title, "kind": event.kind})
    rows.reverse()  # newest first
    return rows


def _case_page(request: HttpRequest, case: Case, form: ReplyForm | None = None, status: int = 200):
    created = request.session.pop(CREATED_CASE_KEY, None)
    if not (isinstance(created, dict) and created.get("number") == case.number):
        created = None
    if form is None and case.status != Case.Status.CLOSED:
        form = ReplyForm()
    if form is not None:
        form.describe()
    dispute = getattr(case, "dispute", None)
    return _render(
        request,
        "portal/case_detail.html",
        {
            "case": case,
            "dispute": dispute,
            "history": _history(request, case),
            "form": form,
            "confirmation": created,
            "overdue": dispute_selectors.is_overdue(case),
            "locale": _locale_of(request, case.account_id),
        },
        status=status,
        tab="cases",
    )


def _locale_of(request: HttpRequest, account_id: int) -> str:
    """The locale of one of the customer's accounts (their billing profiles are loaded already)."""
    account = next((a for a in request.portal.accounts if a.pk == account_id), None)
    return account_locale(account) if account is not None else request.portal.locale


def _case_or_404(request: HttpRequest, number: str) -> Case:
    case = selectors.case(number=number, account_ids=request.portal.account_ids)
    if case is None:
        raise Http404("No such case.")
    return case


@customer_required
@require_GET
def case_detail(request: HttpRequest, number: str) -> HttpResponse:
    return _case_page(request, _case_or_404(request, number))


@customer_required
@require_POST
def case_reply(request: HttpRequest, number: str) -> HttpResponse:
    """The customer's reply, added to the case's history (a case waiting on them goes back in progress)."""
    case = _case_or_404(request, number)
    form = ReplyForm(request.POST)
    if not form.is_valid():
        return _case_page(request, case, form, 400)
    try:
        case_comment(case=case, actor=request.user, text=form.cleaned_data["text"])
    except ApplicationError as exc:
        _refusal(form, exc)
        if isinstance(exc, Conflict):
            case.refresh_from_db(fields=["status"])
        return _case_page(request, case, form, exc.status_code)
    return redirect(reverse("portal:case-detail", args=[case.number]) + "#history")
