"""The authorization matrix (F9, deliverable 1): every route of the URL configuration, called as every role,
answers what the table below says.

Roles (the columns of every row, in this order): ``anon`` (nobody logged in), ``cust_a`` and ``cust_b``
(portal customers of account A and of account B), ``csr``, ``sup`` (supervisor), ``admin`` (billing admin),
``biller_a`` and ``biller_b`` (the API clients of biller A, which references account A, and of biller B,
which does not). Every URL is about tenant A's rows (tests/security/authz_world.py), so that ``biller_b`` and
``cust_b`` ask for what is not theirs.

Answers: an HTTP status, or ``L`` for a redirect to a login page (/login/, /portal/login/, /admin/login/).
The rules the table follows, and that the product keeps:

* The API: anonymous callers 401; customers 403 (they use the portal); a role without the permission 403;
  another tenant's row 404, exactly like a row that does not exist (biller B asking for account A's
  statement, payment, case, wallet, export...).
* CSR pages: anonymous visitors and biller clients (an API key is no session) are sent to the login page;
  customers 403 (nothing of the page is rendered); a CSR without a supervisor's permission 403.
* The portal: anonymous visitors to the portal login; staff 403 (the portal's polite page); another
  customer's statement, invoice or case 404.
* Every 403 and 404 of a route writes one warning (logger ``billing_mgmt.security``) naming the route and
  the actor, without the path, personal data or secrets (billing_mgmt/middleware.py ``log_refusal``).

Writes are called with a harmless body (``{}`` or an empty form, or the route's ``body``) inside a rolled-back
savepoint: what is checked is who gets through, not what the write does. A method a route does not list must
answer 405 to a role that gets through. A route in the URLconf that the table does not list fails
``test_the_table_lists_every_route``; a table entry for a route that is gone fails too.

A new route: add its row (what each role gets, from the rules above); a changed permission: change the row,
and say why in the change.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import pytest
from django.contrib import admin
from django.db import transaction
from django.test import override_settings
from django.urls import reverse

from accounts.models import Account
from billing_mgmt.sections import account_sections
from billruns.models import BillingRun, Subscription, UsageRecord
from disputes.models import Case, Dispute
from payments.models import Payment
from statements.models import AccountBalance, FinancialTransaction, Statement
from tests.perf.test_query_counts import url_names
from tests.security.authz_world import ROLES, AuthzWorld, build_world, client_for, sessions

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
LOGIN_PAGES = ("/login/", "/portal/login/", "/admin/login/")
ANSWERS = re.compile(r"^(L|[1-5]\d\d)$")


@dataclass(frozen=True)
class Route:
    name: str  # the URL name, with its namespace
    url: Callable[[AuthzWorld], str]
    answers: dict[str, str]  # method -> one answer per role, in ROLES order
    label: str = ""  # tells two rows of one route apart
    body: Callable[[AuthzWorld], dict] | None = None  # instead of {} / an empty form
    through: str = ""  # the role that checks the unlisted methods answer 405 (default: see _gets_through)

    @property
    def id(self) -> str:
        return f"{self.name}[{self.label}]" if self.label else self.name

    def expected(self, method: str) -> dict[str, str]:
        return dict(zip(ROLES, self.answers[method].split(), strict=True))


def R(name: str, url, *, label: str = "", body=None, through: str = "", **answers: str) -> Route:  # noqa: N802
    return Route(name, url, answers, label, body, through)


def _acct(w: AuthzWorld) -> str:
    return w.account.number


def _line(w: AuthzWorld) -> int:
    return w.a.statement.lines.get(position=1).pk


#                                                 anon cA  cB  csr sup adm bA  bB
API_STAFF_AND_BILLERS_LIST = "401 403 403 200 200 200 200 200"  # billers see their own rows only
API_STAFF_AND_BILLER_A_ROW = "401 403 403 200 200 200 200 404"  # tenant A's row: biller B gets 404
API_STAFF_ONLY = "401 403 403 200 200 200 403 403"
API_ADMIN_ONLY = "401 403 403 403 403 200 403 403"
API_BILLERS_WRITE = "401 403 403 403 403 403 400 400"  # biller data: staff read only, never write
PAGE_STAFF = "L 403 403 200 200 200 L L"
PAGE_STAFF_POST_ONLY = "L 403 403 405 405 405 L L"  # a GET to a POST-only CSR route
PORTAL_OWN = "L 200 200 403 403 403 L L"  # the customer's own (current) account
PORTAL_A_ROW = "L 200 404 403 403 403 L L"  # account A's row: customer B gets 404
OPEN = "200 200 200 200 200 200 200 200"

ROUTES: list[Route] = [
    R("healthz", lambda w: "/healthz", GET=OPEN),
    # --- the API: accounts ---------------------------------------------------------------------------------
    R(
        "api-account-by-ref",
        lambda w: "/api/v1/accounts/by-ref/PERF-1/",
        GET="401 403 403 403 403 403 200 404",  # billers only: staff address accounts by number
        PUT="401 403 403 403 403 403 400 404",
        PATCH="401 403 403 403 403 403 200 404",
    ),  # fmt: skip
    R(
        "api-account-list",
        lambda w: "/api/v1/accounts/",
        GET=API_STAFF_AND_BILLERS_LIST,
        POST="401 403 403 403 403 400 400 400",  # billing admins and billers create
    ),  # fmt: skip
    R(
        "api-account-detail",
        lambda w: f"/api/v1/accounts/{_acct(w)}/",
        GET=API_STAFF_AND_BILLER_A_ROW,
        PUT="401 403 403 403 403 400 400 404",
        PATCH="401 403 403 403 403 200 200 404",
    ),  # fmt: skip
    # --- statements and ingest (what billers send) ----------------------------------------------------------
    R(
        "api-statement-list",
        lambda w: "/api/v1/statements/",
        GET=API_STAFF_AND_BILLERS_LIST,
        through="biller_a",
    ),  # fmt: skip
    R(
        "api-statement",
        lambda w: f"/api/v1/statements/{w.external.external_id}/?biller={w.a.biller.code}",
        GET=API_STAFF_AND_BILLER_A_ROW,
        # A biller's external ids are its own: biller B's PUT is about a statement of its own (400: empty).
        PUT=API_BILLERS_WRITE,
        through="biller_a",  # staff may not write here at all (403 to every unsafe method)
    ),  # fmt: skip
    R("api-balance", lambda w: "/api/v1/balances/", POST=API_BILLERS_WRITE),
    R("api-transaction", lambda w: "/api/v1/transactions/", POST=API_BILLERS_WRITE),
    R("api-usage", lambda w: "/api/v1/usage/", POST=API_BILLERS_WRITE),
    R("api-ingest-bulk", lambda w: "/api/v1/ingest/bulk/", POST=API_BILLERS_WRITE),
    # --- the engine: catalog, subscriptions, usage, bills, runs, wallets ------------------------------------
    R(
        "api-price-plan-list",
        lambda w: "/api/v1/catalog/price-plans/",
        GET=API_STAFF_ONLY,
        POST="401 403 403 403 403 400 403 403",
    ),  # fmt: skip
    R(
        "api-price-plan-detail",
        lambda w: f"/api/v1/catalog/price-plans/{w.a.catalog_plan.code}/",
        GET=API_STAFF_ONLY,
    ),  # fmt: skip
    R(
        "api-subscription-list",
        lambda w: "/api/v1/subscriptions/",
        GET=API_STAFF_AND_BILLERS_LIST,
        POST="401 403 403 403 403 400 400 400",
    ),  # fmt: skip
    R(
        "api-subscription-detail",
        lambda w: f"/api/v1/subscriptions/{w.a.subscription.pk}/",
        GET=API_STAFF_AND_BILLER_A_ROW,
        PATCH="401 403 403 403 403 200 403 403",  # billing admins change; billers read and create
    ),  # fmt: skip
    R(
        "api-subscription-cancel",
        lambda w: f"/api/v1/subscriptions/{w.a.subscription.pk}/cancel/",
        POST="401 403 403 403 403 400 403 403",
    ),  # fmt: skip
    R("api-usage-record-list", lambda w: "/api/v1/usage-records/", GET=API_STAFF_AND_BILLERS_LIST),
    R(
        "api-usage-record-bulk",
        lambda w: "/api/v1/usage-records/bulk/",
        POST="401 403 403 403 403 400 400 400",
    ),  # fmt: skip
    R("api-bill-create", lambda w: "/api/v1/bills/", POST="401 403 403 403 400 400 403 403"),
    R("api-bill-preview", lambda w: "/api/v1/bills/preview/", POST="401 403 403 400 400 400 403 403"),
    R(
        "api-bill-reverse",
        lambda w: f"/api/v1/bills/{w.a.statement.pk}/reverse/",
        POST="401 403 403 403 400 400 403 403",
    ),  # fmt: skip
    R(
        "api-billing-run-list",
        lambda w: "/api/v1/billing-runs/",
        GET=API_ADMIN_ONLY,
        POST="401 403 403 403 403 201 403 403",  # a run from the active definition's defaults
    ),  # fmt: skip
    R(
        "api-billing-run-detail",
        lambda w: f"/api/v1/billing-runs/{w.a.run.number}/",
        GET=API_ADMIN_ONLY,
        PATCH=API_ADMIN_ONLY,  # a Draft run is edited and deleted
        DELETE="401 403 403 403 403 204 403 403",
    ),  # fmt: skip
    R(
        "api-billing-run-execute",
        lambda w: f"/api/v1/billing-runs/{w.a.run.number}/execute/",
        POST="401 403 403 403 403 400 403 403",
    ),  # fmt: skip
    R(
        "api-billing-run-resume",
        lambda w: f"/api/v1/billing-runs/{w.a.run.number}/resume/",
        POST="401 403 403 403 403 409 403 403",  # a Draft run has nothing to resume
    ),  # fmt: skip
    R(
        "api-billing-run-unschedule",
        lambda w: f"/api/v1/billing-runs/{w.a.run.number}/unschedule/",
        POST="401 403 403 403 403 409 403 403",
    ),  # fmt: skip
    R(
        "api-billing-run-exceptions",
        lambda w: f"/api/v1/billing-runs/{w.a.run.number}/exceptions/",
        GET=API_ADMIN_ONLY,
    ),  # fmt: skip
    R("api-run-definition-list", lambda w: "/api/v1/run-definitions/", GET=API_ADMIN_ONLY),
    R("api-wallet-detail", lambda w: f"/api/v1/wallets/{_acct(w)}/", GET=API_STAFF_AND_BILLER_A_ROW),
    R(
        "api-wallet-top-up",
        lambda w: f"/api/v1/wallets/{_acct(w)}/top-ups/",
        POST="401 403 403 403 400 400 400 404",
    ),  # fmt: skip
    # --- invoices: this product's documents, never a biller's -----------------------------------------------
    R("api-invoice-list", lambda w: "/api/v1/invoices/", GET=API_STAFF_ONLY),
    R("api-invoice-pdf", lambda w: f"/api/v1/invoices/{w.invoice.number}/pdf", GET=API_STAFF_ONLY),
    R("api-invoice-html", lambda w: f"/api/v1/invoices/{w.invoice.number}/html", GET=API_STAFF_ONLY),
    R("api-invoice-xml", lambda w: f"/api/v1/invoices/{w.invoice.number}/xml", GET=API_STAFF_ONLY),
    R("api-invoice", lambda w: f"/api/v1/invoices/{w.invoice.number}/", GET=API_STAFF_ONLY),
    R(
        "api-statement-invoice",
        lambda w: f"/api/v1/statements/{w.a.statement.pk}/invoice/",
        POST="401 403 403 403 200 200 403 403",  # issued already: the same invoice again
    ),  # fmt: skip
    # --- payments, adjustments, refunds, write-offs, exports ------------------------------------------------
    R(
        "api-payment-list",
        lambda w: "/api/v1/payments/",
        GET=API_STAFF_AND_BILLERS_LIST,
        POST="401 403 403 400 400 400 400 400",
    ),  # fmt: skip
    R("api-payment", lambda w: f"/api/v1/payments/{w.payment.pk}/", GET=API_STAFF_AND_BILLER_A_ROW),
    R(
        "api-payment-reverse",
        lambda w: f"/api/v1/payments/{w.payment.pk}/reverse/",
        POST="401 403 403 400 400 400 403 403",  # staff decide reversals, billers never
    ),  # fmt: skip
    R("api-adjustment-list", lambda w: "/api/v1/adjustments/", GET=API_STAFF_AND_BILLERS_LIST),
    R("api-adjustment", lambda w: f"/api/v1/adjustments/{w.posted.pk}/", GET=API_STAFF_AND_BILLER_A_ROW),
    R(
        "api-adjustment",
        lambda w: f"/api/v1/adjustments/{w.pending.pk}/",
        label="pending",
        GET="401 403 403 200 200 200 404 404",  # billers see posted adjustments only
    ),  # fmt: skip
    R(
        "api-refund-list",
        lambda w: "/api/v1/refunds/",
        GET="401 403 403 403 200 200 200 200",
        POST="401 403 403 403 400 400 403 403",
    ),  # fmt: skip
    R(
        "api-write-off-list",
        lambda w: "/api/v1/write-offs/",
        GET="401 403 403 403 200 200 200 200",
        POST="401 403 403 403 400 400 403 403",
    ),  # fmt: skip
    R("api-export-list", lambda w: "/api/v1/exports/", GET="401 403 403 403 403 403 200 200"),
    R(
        "api-export-acknowledge",
        lambda w: f"/api/v1/exports/{w.export.export_id}/acknowledge/",
        POST="401 403 403 403 403 403 200 404",
    ),  # fmt: skip
    R(
        "api-export-confirm",
        lambda w: f"/api/v1/exports/{w.export.export_id}/confirm/",
        POST="401 403 403 403 403 403 200 404",
    ),  # fmt: skip
    R(
        "api-export-reject",
        lambda w: f"/api/v1/exports/{w.export.export_id}/reject/",
        body=lambda w: {"reason": "Unknown account here"},
        POST="401 403 403 403 403 403 200 404",
    ),  # fmt: skip
    # --- cases ----------------------------------------------------------------------------------------------
    R(
        "api-case-list",
        lambda w: "/api/v1/cases/",
        GET=API_STAFF_AND_BILLERS_LIST,
        POST="401 403 403 400 400 400 400 400",
    ),  # fmt: skip
    R("api-case", lambda w: f"/api/v1/cases/{w.a.case.number}/", GET=API_STAFF_AND_BILLER_A_ROW),
    R("api-service-process-list", lambda w: "/api/v1/service-processes/", GET=API_STAFF_AND_BILLERS_LIST),
    # The schema and its UI are public documentation (no data): docs/api.md points integrators to them.
    R("api-schema", lambda w: "/api/schema/", GET=OPEN),
    R("api-docs", lambda w: "/api/docs/", GET=OPEN),
    # --- CSR pages ----------------------------------------------------------------------------------------
    R("csr-home", lambda w: "/", GET="L 302 302 200 200 200 L L"),  # customers go to the portal
    # Django's LoginView treats PUT as POST; a logged-in user is sent on (redirect_authenticated_user).
    R(
        "login",
        lambda w: "/login/",
        GET="200 302 302 302 302 302 200 200",
        POST="200 302 302 302 302 302 200 200",
        PUT="200 302 302 302 302 302 200 200",
    ),  # fmt: skip
    R("logout", lambda w: "/logout/", POST="L L L L L L L L"),
    R("account-search", lambda w: "/search/?q=Alice", GET="L 403 403 302 302 302 L L"),  # one match: opened
    R("account-detail", lambda w: f"/accounts/{_acct(w)}/", GET=PAGE_STAFF),
    *[
        R(
            "account-section",
            lambda w, k=s.key: f"/accounts/{_acct(w)}/sections/{k}/",
            label=s.key,
            GET=PAGE_STAFF,
        )
        for s in account_sections()
    ],  # fmt: skip
    *[
        R("account-part", lambda w, p=p: f"/accounts/{_acct(w)}/parts/{p}/", label=p, GET=PAGE_STAFF)
        for p in sorted({s.lazy for s in account_sections()} - {""})
    ],
    R(
        "statement-detail",
        lambda w: f"/statements/accounts/{_acct(w)}/statements/{w.a.statement.pk}/",
        GET=PAGE_STAFF,
    ),  # fmt: skip
    R(
        "statement-detail",
        lambda w: f"/statements/accounts/{_acct(w)}/statements/{w.statement_b.pk}/",
        label="other-account",
        GET="L 403 403 404 404 404 L L",  # a statement is shown under its own account only
    ),  # fmt: skip
    R(
        "account-refresh",
        lambda w: f"/statements/accounts/{_acct(w)}/refresh/",
        POST="L 403 403 302 302 302 L L",
    ),  # fmt: skip
    R(
        "account-refresh-status",
        lambda w: f"/statements/accounts/{_acct(w)}/refresh/{w.a.refresh.pk}/",
        GET=PAGE_STAFF,
    ),  # fmt: skip
    R("bill-preview", lambda w: f"/billing/accounts/{_acct(w)}/preview/", GET=PAGE_STAFF),
    R("bill-now", lambda w: f"/billing/accounts/{_acct(w)}/bill/", POST="L 403 403 403 400 400 L L"),
    R(
        "wallet-topup",
        lambda w: f"/billing/accounts/{_acct(w)}/wallet/top-up/",
        POST="L 403 403 403 400 400 L L",
    ),  # fmt: skip
    R("invoice-download", lambda w: f"/invoices/{w.invoice.number}.pdf", GET=PAGE_STAFF),
    R(
        "payment-create",
        lambda w: f"/payments/accounts/{_acct(w)}/payments/",
        POST="L 403 403 400 400 400 L L",
    ),  # fmt: skip
    R(
        "payment-reverse",
        lambda w: f"/payments/accounts/{_acct(w)}/payments/{w.payment.pk}/reverse/",
        POST="L 403 403 400 400 400 L L",
    ),  # fmt: skip
    R(
        "payment-reverse",
        lambda w: f"/payments/accounts/{w.account_b.number}/payments/{w.payment.pk}/reverse/",
        label="other-account",
        POST="L 403 403 404 404 404 L L",  # a payment is reversed under its own account only
    ),  # fmt: skip
    R(
        "adjustment-create",
        lambda w: f"/payments/accounts/{_acct(w)}/adjustments/",
        POST="L 403 403 400 400 400 L L",
    ),  # fmt: skip
    R(
        "refund-create",
        lambda w: f"/payments/accounts/{_acct(w)}/refunds/",
        POST="L 403 403 403 400 400 L L",
    ),  # fmt: skip
    R(
        "write-off-create",
        lambda w: f"/payments/accounts/{_acct(w)}/write-offs/",
        POST="L 403 403 403 400 400 L L",
    ),  # fmt: skip
    R(
        "payment-method-add",
        lambda w: f"/payments/accounts/{_acct(w)}/methods/",
        body=lambda w: {"kind": "other"},
        POST="L 403 403 400 400 400 L L",
    ),  # fmt: skip
    R(
        "payment-method-default",
        lambda w: f"/payments/accounts/{_acct(w)}/methods/{w.a.method.pk}/default/",
        POST="L 403 403 302 302 302 L L",
    ),  # fmt: skip
    R(
        "payment-method-default",
        lambda w: f"/payments/accounts/{w.account_b.number}/methods/{w.a.method.pk}/default/",
        label="other-account",
        POST="L 403 403 404 404 404 L L",
    ),  # fmt: skip
    R(
        "payment-method-remove",
        lambda w: f"/payments/accounts/{_acct(w)}/methods/{w.a.method.pk}/remove/",
        POST="L 403 403 400 400 400 L L",
    ),  # fmt: skip
    R("adjustment-queue", lambda w: "/payments/adjustments/pending/", GET="L 403 403 403 200 200 L L"),
    R(
        "adjustment-approve",
        lambda w: f"/payments/adjustments/{w.pending.pk}/approve/",
        POST="L 403 403 403 302 302 L L",  # maker-checker: the CSR made it, a supervisor approves
    ),  # fmt: skip
    R(
        "adjustment-reject",
        lambda w: f"/payments/adjustments/{w.pending.pk}/reject/",
        POST="L 403 403 403 400 400 L L",
    ),  # fmt: skip
    # --- the portal -----------------------------------------------------------------------------------------
    R("portal:home", lambda w: "/portal/", GET=PORTAL_OWN),
    R(
        "portal:login",
        lambda w: "/portal/login/",
        GET="200 302 302 302 302 302 200 200",
        POST="200 302 302 302 302 302 200 200",
        PUT="200 302 302 302 302 302 200 200",
    ),  # fmt: skip
    R("portal:logout", lambda w: "/portal/logout/", POST="L L L L L L L L"),
    R(
        "portal:account-switch",
        lambda w: "/portal/account/",
        body=lambda w: {"account": w.account.number},
        through="cust_a",
        POST="L 302 404 403 403 403 L L",  # customer B may not switch to account A
    ),  # fmt: skip
    R("portal:statements", lambda w: "/portal/statements/", GET=PORTAL_OWN),
    R("portal:statement-detail", lambda w: f"/portal/statements/{w.a.statement.pk}/", GET=PORTAL_A_ROW),
    R(
        "portal:dispute",
        lambda w: f"/portal/statements/{w.a.statement.pk}/dispute/?line={_line(w)}",
        body=lambda w: {"line": _line(w)},
        GET=PORTAL_A_ROW,
        POST="L 400 404 403 403 403 L L",
    ),  # fmt: skip
    R("portal:invoice-download", lambda w: f"/portal/invoices/{w.invoice.number}.pdf", GET=PORTAL_A_ROW),
    R("portal:help", lambda w: "/portal/help/", GET=PORTAL_OWN),
    R(
        "portal:help-request",
        lambda w: "/portal/help/extend-due-date/",
        GET=PORTAL_OWN,
        POST="L 400 400 403 403 403 L L",
    ),  # fmt: skip
    R("portal:cases", lambda w: "/portal/cases/", GET=PORTAL_OWN),
    R("portal:case-detail", lambda w: f"/portal/cases/{w.a.case.number}/", GET=PORTAL_A_ROW),
    R(
        "portal:case-reply",
        lambda w: f"/portal/cases/{w.a.case.number}/reply/",
        POST="L 400 404 403 403 403 L L",
    ),  # fmt: skip
    # --- cases and disputes (CSR pages) -------------------------------------------------------------------
    R("case-queue", lambda w: "/cases/queue/", GET=PAGE_STAFF),
    R("case-new", lambda w: f"/cases/new/{_acct(w)}/", GET=PAGE_STAFF, POST="L 403 403 400 400 400 L L"),
    R(
        "dispute-new",
        lambda w: f"/cases/dispute/{w.a.statement.pk}/",
        GET=PAGE_STAFF,
        POST="L 403 403 400 400 400 L L",
    ),  # fmt: skip
    R(
        "billing-resume",
        lambda w: f"/cases/accounts/{_acct(w)}/resume-billing/",
        POST="L 403 403 403 409 409 L L",  # billing is not suspended
    ),  # fmt: skip
    R("case-detail", lambda w: f"/cases/{w.a.case.number}/", GET=PAGE_STAFF),
    R("case-status", lambda w: f"/cases/{w.a.case.number}/status/", POST="L 403 403 400 400 400 L L"),
    R("case-assign", lambda w: f"/cases/{w.a.case.number}/assign/", POST="L 403 403 302 302 302 L L"),
    R("case-comment", lambda w: f"/cases/{w.a.case.number}/comment/", POST="L 403 403 400 400 400 L L"),
    R(
        "dispute-resolve",
        lambda w: f"/cases/{w.dispute_case.number}/resolve-dispute/",
        POST="L 403 403 403 400 400 L L",
    ),  # fmt: skip
]


# --- the world, the calls ----------------------------------------------------------------------------------


@dataclass
class Matrix:
    world: AuthzWorld
    cookies: dict[str, dict[str, str]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def matrix(django_db_setup, django_db_blocker):
    """Both tenants and every role's session, built once for the module in one transaction rolled back at
    its end; each call runs in a savepoint of its own, rolled back too. API rate limits are off: the matrix
    sends hundreds of requests a minute per client on purpose."""
    with django_db_blocker.unblock(), override_settings(API_THROTTLE_RATES={}), transaction.atomic():
        world = build_world()
        yield Matrix(world, sessions(world))
        transaction.set_rollback(True)


def answer_code(response) -> str:
    if response.status_code in (301, 302):
        target = response["Location"].split("?")[0]
        return "L" if target in LOGIN_PAGES else str(response.status_code)
    return str(response.status_code)


def call(m: Matrix, role: str, method: str, url: str, body: dict | None = None, headers: dict | None = None):
    """One request as ``role`` with a new client (so that a logout or a new session stays in it), in a
    savepoint rolled back after it."""
    client = client_for(m.world, m.cookies, role)
    client.raise_request_exception = False
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in (headers or {}).items()}
    with transaction.atomic():
        if method == "GET":
            response = client.get(url, **extra)
        elif url.startswith("/api/"):
            response = client.generic(method, url, data=_json(body or {}), content_type="application/json",
                                      **extra)  # fmt: skip
        else:
            response = getattr(client, method.lower())(url, data=body or {}, **extra)
        transaction.set_rollback(True)
    return response


def _json(data: dict) -> str:
    import json

    return json.dumps(data)


def secrets_and_personal_data(w: AuthzWorld) -> list[str]:
    """What a log line about a refusal must never carry."""
    people = (w.a.customer, w.customer_b, w.a.csr, w.a.supervisor, w.a.admin)
    return [
        w.a.api_key, w.api_key_b, w.a.api_key.split(".")[1], w.api_key_b.split(".")[1],
        w.account.number, w.account_b.number, w.account.name, w.account_b.name, "PERF-1", "AUTHZ-B-1",
        w.a.statement.number, w.external.external_id, w.a.case.number, w.invoice.number,
        *(p.username for p in people), *(p.email for p in people),
    ]  # fmt: skip


def actor_of(w: AuthzWorld, role: str) -> str:
    """How billing_mgmt.middleware names the actor of a refusal."""
    users = {"cust_a": w.a.customer, "cust_b": w.customer_b, "csr": w.a.csr, "sup": w.a.supervisor,
             "admin": w.a.admin}  # fmt: skip
    if role in users:
        return f"by user={users[role].pk}"
    if role in ("biller_a", "biller_b"):
        biller = w.a.biller if role == "biller_a" else w.biller_b
        return f"by api-client biller={biller.code} key="
    return "by anonymous"


def refusal_problems(caplog, w: AuthzWorld, route: Route, role: str, code: str, method: str) -> list[str]:
    records = [
        r for r in caplog.records if r.name == "billing_mgmt.security" and r.levelno == logging.WARNING
    ]
    where = f"{method} as {role}"
    if len(records) != 1:
        return [f"{where}: answered {code} with {len(records)} refusal warnings (want 1)"]
    text = records[0].getMessage()
    problems = []
    if f" {route.name} " not in text or actor_of(w, role) not in text or f" {code} {method} " not in text:
        problems.append(f"{where}: the refusal warning does not name the route and actor: {text!r}")
    leaked = [s for s in secrets_and_personal_data(w) if s and s in text]
    if leaked:
        problems.append(f"{where}: the refusal warning carries {leaked}: {text!r}")
    return problems


def _a_stub_schema(monkeypatch) -> None:
    """The schema takes seconds to generate (tests/api/test_schema.py and the fuzzing test generate and check
    it); here only who may fetch it matters, which the view decides before generating: a stub answers."""
    from drf_spectacular.generators import SchemaGenerator

    stub = {"openapi": "3.0.3", "info": {"title": "stub", "version": "0"}, "paths": {}}
    monkeypatch.setattr(SchemaGenerator, "get_schema", lambda self, request=None, public=False: stub)


def _gets_through(route: Route) -> str:
    """A role that passes the route's authorization (its answer is not 401/403/404, a login or another
    redirect), to check that the methods the table does not list answer 405."""
    if route.through:
        return route.through
    for role in ("admin", "sup", "csr", "cust_a", "biller_a", "anon"):
        if any(route.expected(m)[role] not in ("401", "403", "404", "L", "302") for m in route.answers):
            return role
    return "admin"


# --- the table itself ------------------------------------------------------------------------------------


def test_the_table_lists_every_route():
    listed = {r.name for r in ROUTES}
    missing = sorted(f"{name} ({pattern})" for name, pattern in url_names() if name not in listed)
    assert not missing, (
        "Routes without a row in the authorization matrix: add each to ROUTES in "
        f"tests/security/test_authorization_matrix.py with what every role gets: {missing}"
    )


def test_the_table_names_only_routes_that_exist():
    names = {name for name, _ in url_names()}
    stale = sorted({r.name for r in ROUTES} - names)
    assert not stale, f"Rows of the authorization matrix for routes no longer in the URLconf: {stale}"
    assert len({r.id for r in ROUTES}) == len(ROUTES), "two rows with the same route and label"


def test_the_table_is_well_formed():
    bad = [
        f"{r.id} {m}: {row!r}"
        for r in ROUTES
        for m, row in r.answers.items()
        if m not in METHODS
        or len(row.split()) != len(ROLES)
        or not all(ANSWERS.match(a) for a in row.split())
    ]
    assert not bad, f"rows need one answer (a status or L) per role {ROLES}: {bad}"
    assert all(r.answers for r in ROUTES), "every row lists at least one method"


# --- the matrix ------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("route", [pytest.param(r, id=r.id) for r in ROUTES])
def test_every_role_gets_the_answer_in_the_table(matrix, route, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger="billing_mgmt.security")
    if route.name == "api-schema":
        _a_stub_schema(monkeypatch)
    w = matrix.world
    url = route.url(w)
    body = route.body(w) if route.body else None
    problems: list[str] = []
    for method in route.answers:
        for role, expected in route.expected(method).items():
            caplog.clear()
            got = answer_code(call(matrix, role, method, url, body))
            if got != expected:
                problems.append(f"{method} as {role}: {got} (the table says {expected})")
            elif got in ("403", "404"):
                problems += refusal_problems(caplog, w, route, role, got, method)
    through = _gets_through(route)
    for method in sorted(set(METHODS) - set(route.answers)):
        got = answer_code(call(matrix, through, method, url, body))
        if got != "405":
            problems.append(f"{method} (not in the table) as {through}: {got}, want 405")
    assert not problems, f"{route.id} {url}:\n  " + "\n  ".join(problems)


# --- cross-tenant writes that name the other tenant's row in the body --------------------------------------


@dataclass(frozen=True)
class BodyProbe:
    """A write by ``role`` that names tenant A's row in its body, beside the same write naming a row that
    does not exist: both must get the same refusal (no oracle), and nothing may be written."""

    id: str
    role: str
    url: Callable[[AuthzWorld], str]
    body: Callable[[AuthzWorld, str], dict]  # (world, the identifier) -> body
    theirs: Callable[[AuthzWorld], str]  # tenant A's identifier
    count: Callable[[AuthzWorld], int]  # the rows that must stay as they are
    headers: bool = False  # send an Idempotency-Key
    bulk: bool = False  # a batch: 200, with each record's outcome


def _subscription_body(w, account):
    return {"account": account, "price_plan": w.a.plan.code, "service_identifier": "+15550009999",
            "start_date": "2026-06-01"}  # fmt: skip


BODY_PROBES = [
    BodyProbe(
        "payment-for-another-billers-account",
        "biller_b",
        lambda w: "/api/v1/payments/",
        lambda w, acct: {"account": acct, "amount": "1.00", "currency": "USD"},
        lambda w: w.account.number,
        lambda w: Payment.objects.filter(account=w.account).count(),
        headers=True,
    ),  # fmt: skip
    BodyProbe(
        "case-for-another-billers-account",
        "biller_b",
        lambda w: "/api/v1/cases/",
        lambda w, acct: {"account": acct, "process": "billing-inquiry", "subject": "Why?"},
        lambda w: w.account.number,
        lambda w: Case.objects.filter(account=w.account).count(),
        headers=True,
    ),  # fmt: skip
    BodyProbe(
        "subscription-for-another-billers-account",
        "biller_b",
        lambda w: "/api/v1/subscriptions/",
        _subscription_body,
        lambda w: w.account.number,
        lambda w: Subscription.objects.filter(account=w.account).count(),
        headers=True,
    ),  # fmt: skip
    BodyProbe(
        "transaction-by-another-billers-reference",
        "biller_b",
        lambda w: "/api/v1/transactions/",
        lambda w, ref: {
            "account": ref,
            "external_id": "AUTHZ-T-1",
            "kind": "payment",
            "amount": "1.00",
            "currency": "USD",
            "date": "2026-06-01",
        },
        lambda w: "PERF-1",
        lambda w: FinancialTransaction.objects.filter(account=w.account).count(),
        headers=True,
    ),  # fmt: skip
    *[
        BodyProbe(
            f"usage-for-another-billers-subscription-by-{key}",
            "biller_b",
            lambda w: "/api/v1/usage-records/bulk/",
            lambda w, ident, key=key: {
                "records": [
                    {
                        key: int(ident) if key == "subscription_id" else ident,
                        "usage_type": "voice",
                        "quantity": "5",
                        "unit": "min",
                        "event_time": "2026-06-05T10:00:00Z",
                        "external_id": "AUTHZ-U-1",
                    }
                ]
            },
            theirs,
            lambda w: UsageRecord.objects.filter(subscription__account=w.account).count(),
            headers=True,
            bulk=True,
        )
        for key, theirs in (
            ("service_identifier", lambda w: w.a.subscription.service_identifier),
            ("subscription_id", lambda w: str(w.a.subscription.pk)),
        )
    ],  # fmt: skip
    BodyProbe(
        "dispute-of-another-customers-line",
        "cust_b",
        lambda w: f"/portal/statements/{w.statement_b.pk}/dispute/",
        lambda w, line: {"line": line, "amount": "1.00", "reason": "Not mine"},
        lambda w: str(_line(w)),
        lambda w: Dispute.objects.filter(case__account=w.account).count(),
    ),  # fmt: skip
]


def _normalised(response, identifiers: tuple[str, ...]) -> tuple[int, str]:
    text = response.content.decode(errors="replace")
    text = re.sub(r'"request_id":\s*"[^"]*"|"id":\s*\d+', "", text)
    text = re.sub(r'name="(token|csrfmiddlewaretoken)" value="[^"]*"|nonce="[^"]*"', "", text)
    # The identifier the caller sent may be echoed back: both are blanked in both answers, on their own only.
    for identifier in identifiers:
        text = re.sub(rf"(?<![\w.-]){re.escape(identifier)}(?![\w-])", "<id>", text)
    return response.status_code, text


@pytest.mark.django_db
@pytest.mark.parametrize("probe", [pytest.param(p, id=p.id) for p in BODY_PROBES])
def test_a_write_naming_another_tenants_row_is_refused_like_a_missing_one(matrix, probe, caplog):
    w = matrix.world
    before = probe.count(w)
    theirs = probe.theirs(w)
    missing = "NOSUCH-" + theirs[-4:] + "9"
    if theirs.isdigit():
        missing = str(int(theirs) + 10_000_000)
    answers = {}
    for identifier in (theirs, missing):
        caplog.clear()
        headers = {"Idempotency-Key": f"authz-{uuid.uuid4().hex}"} if probe.headers else None
        answers[identifier] = call(
            matrix, probe.role, "POST", probe.url(w), probe.body(w, identifier), headers
        )
    response = answers[theirs]
    wanted = (200,) if probe.bulk else (400, 404)
    assert response.status_code in wanted, (probe.id, response.status_code, response.content[:300])
    both = (theirs, missing)
    assert _normalised(response, both) == _normalised(answers[missing], both), (
        f"{probe.id}: tenant A's row is answered unlike a missing one (an oracle)"
    )
    assert probe.count(w) == before


# --- read-only fields: no write changes them ---------------------------------------------------------------


def send(m: Matrix, role: str, method: str, url: str, body: dict, key: str | None = None):
    """A write whose effect the test reads back (the test's own transaction rolls it back at its end)."""
    client = client_for(m.world, m.cookies, role)
    extra = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.generic(method, url, data=_json(body), content_type="application/json", **extra)


def _account_state(account: Account) -> tuple:
    account = Account.objects.select_related("billing_profile").get(pk=account.pk)
    balances = sorted(AccountBalance.objects.filter(account=account).values_list("balance_type", "amount"))
    refs = sorted(account.biller_references.values_list("biller__code", "external_ref"))
    return (
        account.number,
        account.status,
        account.created_at,
        account.billing_profile.currency,
        balances,
        refs,
    )


def _ledger(account: Account) -> list[tuple]:
    return list(
        FinancialTransaction.objects.filter(account=account)
        .order_by("pk")
        .values_list("pk", "kind", "amount", "currency", "account_id", "statement_id")
    )


FORGED_ACCOUNT_FIELDS = {
    "number": "HACKED-1",
    "balance": {"amount": "0.00", "currency": "USD"},
    "references": [{"biller": "authz-south", "external_ref": "STOLEN-1"}],
    "created_at": "2020-01-01T00:00:00Z",
    "children": ["X"],
}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "url"),
    [
        ("biller_a", lambda w: f"/api/v1/accounts/{w.account.number}/"),
        ("biller_a", lambda w: "/api/v1/accounts/by-ref/PERF-1/"),
        ("admin", lambda w: f"/api/v1/accounts/{w.account.number}/"),
    ],
    ids=["biller-by-number", "biller-by-ref", "admin-by-number"],
)
@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_an_accounts_number_balance_references_and_currency_do_not_change(matrix, role, url, method):
    w = matrix.world
    before, ledger = _account_state(w.account), _ledger(w.account)
    body = {**FORGED_ACCOUNT_FIELDS, "name": w.account.name}
    response = send(matrix, role, method, url(w), body)
    assert response.status_code in (200, 400), response.content[:300]
    if response.status_code == 200:
        assert response.json()["number"] == w.account.number
    assert _account_state(w.account) == before and _ledger(w.account) == ledger
    # The status is a billing admin's decision; a biller's is refused and nothing changes.
    if role.startswith("biller"):
        response = send(matrix, role, method, url(w), {"name": w.account.name, "status": "closed"})
        assert response.status_code == 400 and "status" in response.json()["error"]["fields"]
        assert _account_state(w.account) == before
    # The billing currency of an account whose ledger has rows in it: the rows would be in another currency.
    response = send(
        matrix, role, method, url(w), {"name": w.account.name, "billing_profile": {"currency": "EUR"}}
    )
    assert response.status_code in (400, 409), (response.status_code, response.content[:300])
    assert _account_state(w.account) == before and _ledger(w.account) == ledger


@pytest.mark.django_db
def test_a_subscriptions_account_plan_and_billing_do_not_change(matrix):
    w = matrix.world
    sub = w.a.subscription
    fields = ("account_id", "price_plan_id", "service_identifier", "billed_through", "status")
    before = Subscription.objects.filter(pk=sub.pk).values(*fields).get()
    forged = {"account": w.account_b.number, "price_plan": w.a.catalog_plan.code, "id": 1,
              "service_identifier": "+1999", "billed_through": "2030-01-01",
              "status": "cancelled"}  # fmt: skip
    response = send(matrix, "admin", "PATCH", f"/api/v1/subscriptions/{sub.pk}/", forged)
    assert response.status_code == 400, response.content[:300]  # cancelled is POST .../cancel/, not a PATCH
    forged.pop("status")
    response = send(matrix, "admin", "PATCH", f"/api/v1/subscriptions/{sub.pk}/", forged)
    assert response.status_code in (200, 400), response.content[:300]
    assert Subscription.objects.filter(pk=sub.pk).values(*fields).get() == before


@pytest.mark.django_db
def test_a_runs_number_and_status_do_not_change(matrix):
    w = matrix.world
    run = w.a.run
    fields = ("number", "state", "current_stage", "run_type", "created_by_id")
    before = BillingRun.objects.filter(pk=run.pk).values(*fields).get()
    forged = {"number": "RUN-HACK", "state": "completed", "current_stage": "formatting",
              "run_type": "prepaid", "created_by": w.a.csr.pk}  # fmt: skip
    response = send(matrix, "admin", "PATCH", f"/api/v1/billing-runs/{run.number}/", forged)
    assert response.status_code in (200, 400), response.content[:300]
    assert BillingRun.objects.filter(pk=run.pk).values(*fields).get() == before


def _statement_state(statement: Statement) -> tuple:
    s = Statement.objects.get(pk=statement.pk)
    lines = sorted(s.lines.values_list("position", "amount"))
    return s.account_id, s.status, s.new_charges, s.total_due, s.previous_balance, s.payments, lines


@pytest.mark.django_db
def test_a_paid_statement_keeps_its_amounts_and_a_statement_keeps_its_account(matrix):
    from tests.factories import statement_record

    w = matrix.world
    url = f"/api/v1/statements/{w.external.external_id}/"
    before, ledger = _statement_state(w.external), _ledger(w.account)
    lines = [{"type": "recurring", "product": "Plan", "amount": "99.00", "external_id": "AUTHZ-X-1-1"}]
    record = statement_record("PERF-1", w.external.external_id, lines=lines, usage=[])
    record.pop("type", None)
    response = send(matrix, "biller_a", "PUT", url, record)
    assert response.status_code == 409 and response.json()["error"]["code"] == "statement_locked"
    assert _statement_state(w.external) == before and _ledger(w.account) == ledger
    # An open statement is the biller's to replace, but never onto another account (PERF-2: biller A's too).
    fresh = statement_record("PERF-1", "AUTHZ-OPEN-1")
    fresh.pop("type", None)
    assert send(matrix, "biller_a", "PUT", "/api/v1/statements/AUTHZ-OPEN-1/", fresh).status_code == 201
    opened = Statement.objects.get(biller=w.a.biller, external_id="AUTHZ-OPEN-1")
    moved = {**fresh, "account": "PERF-2"}
    response = send(matrix, "biller_a", "PUT", "/api/v1/statements/AUTHZ-OPEN-1/", moved)
    assert (
        response.status_code in (400, 409) and response.json()["error"]["code"] == "statement_account_changed"
    )
    assert Statement.objects.get(pk=opened.pk).account_id == w.account.pk


@pytest.mark.django_db
def test_a_posted_transaction_or_balance_is_never_rewritten(matrix):
    w = matrix.world
    row = {"account": "PERF-1", "external_id": "AUTHZ-T-9", "kind": "payment", "amount": "4.00",
           "currency": "USD", "date": "2026-06-01"}  # fmt: skip
    assert send(matrix, "biller_a", "POST", "/api/v1/transactions/", row).status_code == 201
    ledger = _ledger(w.account)
    for change in ({"amount": "400.00"}, {"account": "PERF-2"}, {"kind": "refund"}, {"currency": "EUR"}):
        response = send(matrix, "biller_a", "POST", "/api/v1/transactions/", {**row, **change})
        assert response.status_code in (400, 409), (change, response.status_code, response.content[:300])
        assert _ledger(w.account) == ledger, change
    snap = {"account": "PERF-1", "as_of": "2026-06-01T00:00:00Z", "amount": "12.00", "currency": "USD"}
    assert send(matrix, "biller_a", "POST", "/api/v1/balances/", snap).status_code == 201
    response = send(matrix, "biller_a", "POST", "/api/v1/balances/", {**snap, "amount": "0.00"})
    assert response.status_code == 409 and response.json()["error"]["code"] == "snapshot_conflict"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["csr", "biller_a"])
def test_a_payments_amount_and_account_do_not_change_on_a_repeated_key(matrix, role):
    w = matrix.world
    body = {"account": w.account.number, "amount": "3.00", "currency": "USD"}
    first = send(matrix, role, "POST", "/api/v1/payments/", body, key="authz-repeat-1")
    assert first.status_code == 201, first.content[:300]
    payment = Payment.objects.get(pk=first.json()["id"])
    ledger = _ledger(w.account)
    for change in ({"amount": "300.00"}, {"account": w.a.credit_account.number}):
        response = send(matrix, role, "POST", "/api/v1/payments/", {**body, **change}, key="authz-repeat-1")
        assert response.status_code in (400, 409, 422), (change, response.status_code, response.content[:300])
    fresh = Payment.objects.get(pk=payment.pk)
    assert (fresh.amount, fresh.account_id) == (Decimal("3.00"), w.account.pk)
    assert _ledger(w.account) == ledger
    # There is no write of a posted payment or adjustment at all: their details are read-only (405).
    for url in (f"/api/v1/payments/{payment.pk}/", f"/api/v1/adjustments/{w.posted.pk}/"):
        for method in ("PUT", "PATCH", "DELETE"):
            assert send(matrix, role, method, url, {"amount": "0.01"}).status_code == 405, (url, method)


# --- Django admin -------------------------------------------------------------------------------------------

# Billing admins configure the product: every model of these apps opens for them (roles.ROLE_PERMISSIONS).
ADMIN_APPS_OF_BILLING_ADMINS = {
    "accounts", "billing_mgmt", "billruns", "disputes", "invoicing", "payments", "statements",
    "django_celery_beat", "django_celery_results",
}  # fmt: skip
# Users, groups and login throttling are a superuser's: a billing admin cannot grant themselves more.
ADMIN_APPS_OF_SUPERUSERS = {"auth", "axes"}
#                       anon cA cB csr sup adm bA bB  (CSRs and supervisors are no Django staff)
ADMIN_OPEN = "L L L L L 200 L L"
ADMIN_CLOSED = "L L L L L 403 L L"


def _admin_models() -> list:
    return sorted(admin.site._registry, key=lambda model: model._meta.label)


def test_every_admin_model_is_classified():
    apps = {model._meta.app_label for model in _admin_models()}
    unknown = apps - ADMIN_APPS_OF_BILLING_ADMINS - ADMIN_APPS_OF_SUPERUSERS
    assert not unknown, (
        f"admin apps in neither ADMIN_APPS_OF_BILLING_ADMINS nor ADMIN_APPS_OF_SUPERUSERS: {unknown}"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("model", [pytest.param(m, id=m._meta.label) for m in _admin_models()])
def test_admin_changelists_open_for_billing_admins_only(matrix, model):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    row = ADMIN_OPEN if model._meta.app_label in ADMIN_APPS_OF_BILLING_ADMINS else ADMIN_CLOSED
    got = {role: answer_code(call(matrix, role, "GET", url)) for role in ROLES}
    assert got == dict(zip(ROLES, row.split(), strict=True))
    if got["admin"] == "L":  # the login redirect must be the admin's own (next= keeps the page)
        raise AssertionError(url)


@pytest.mark.django_db
def test_the_admin_index_opens_for_billing_admins_only(matrix):
    got = {role: answer_code(call(matrix, role, "GET", "/admin/")) for role in ROLES}
    assert got == dict(zip(ROLES, ADMIN_OPEN.split(), strict=True))


@pytest.mark.django_db
def test_the_currency_of_an_account_without_money_may_still_change(matrix):
    created = send(matrix, "admin", "POST", "/api/v1/accounts/", {"name": "New Authz"}, key="authz-new-1")
    assert created.status_code == 201, created.content[:300]
    number = created.json()["number"]
    body = {"billing_profile": {"currency": "EUR"}}
    assert send(matrix, "admin", "PATCH", f"/api/v1/accounts/{number}/", body).status_code == 200
    assert Account.objects.get(number=number).billing_profile.currency == "EUR"


@pytest.mark.django_db
def test_admin_shows_the_currency_of_an_account_with_money_read_only(matrix):
    w = matrix.world
    page = call(matrix, "admin", "GET", reverse("admin:accounts_account_change", args=[w.account.pk]))
    assert page.status_code == 200
    assert b'name="billing_profile-0-currency"' not in page.content
    assert b'name="billing_profile-0-language"' in page.content
