"""Query-count guards (F8): every CSR page, every portal page and every API list runs a fixed number of
queries, whatever the number of rows it shows, so an N+1 fails here even when nobody runs ``make bench``.

The routes come from the URL configuration itself: a route that is neither in GUARDS nor in EXCLUDED fails
``test_every_route_is_guarded_or_excluded``, so a new page cannot skip its guard. For each guard the module
builds one customer base (tests/perf/world.py), calls the URL once with a few rows of everything, grows every
row kind threefold, and the route's test calls it again: the count must be the same and at most the limit.

A new route: add a Guard (its URL from the world, who calls it, its limit: the count it runs now), or, when it
is no page and no list (POST only, a download), an EXCLUDED entry saying why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from billing_mgmt.sections import account_sections
from billruns.services.assembly import engine_biller
from tests.perf.world import World, build, grow

SMALL = 3  # rows of each kind at the first call; the second call sees SMALL * 3
PAGE_CONTRACT = 15  # DESIGN / F8: the account page and the statement page, at most 15 queries each


@dataclass(frozen=True)
class Guard:
    route: str  # the URL name (with its namespace)
    caller: str  # a key of CALLERS
    url: Callable[[World], str]
    limit: int  # at most this many queries, with few rows or many
    partial: bool = False  # call it as HTMX does (the fragment alone)
    label: str = ""  # tells two guards of one route apart (another caller, another section)
    grows: bool = True  # the grown world shows more rows here (False: a form or a fixed set of tiles)

    @property
    def id(self) -> str:
        return f"{self.route}[{self.label or self.caller}]"


def _acct(w: World) -> str:
    return w.account.number


# Who calls: staff by session (pages and API), the portal's customer, anonymous, the biller's API key.
CALLERS = ("anon", "csr", "supervisor", "customer", "csr-api", "supervisor-api", "admin-api", "biller-api")

GUARDS: list[Guard] = [
    # --- CSR pages ----------------------------------------------------------------------------------------
    Guard("login", "anon", lambda w: "/login/", 0, grows=False),
    Guard("csr-home", "csr", lambda w: "/", 4),
    Guard("account-search", "csr", lambda w: "/search/?q=Perfsearch", 5),
    Guard("account-detail", "csr", lambda w: f"/accounts/{_acct(w)}/", PAGE_CONTRACT),
    Guard(
        "statement-detail",
        "csr",
        lambda w: f"/statements/accounts/{_acct(w)}/statements/{w.statement.pk}/",
        PAGE_CONTRACT,
    ),  # fmt: skip
    Guard(
        "account-refresh-status",
        "csr",
        lambda w: f"/statements/accounts/{_acct(w)}/refresh/{w.refresh.pk}/",
        7,
        partial=True,
    ),  # fmt: skip
    # 56: the preview runs the engine's set statements, each planned row by row (a SET LOCAL and its reset),
    # and takes the rated usage off the waiting list by day range inside a savepoint (billruns.rating).
    Guard("bill-preview", "csr", lambda w: f"/billing/accounts/{_acct(w)}/preview/", 56, partial=True),
    Guard("adjustment-queue", "supervisor", lambda w: "/payments/adjustments/pending/", 4),
    Guard("case-queue", "csr", lambda w: "/cases/queue/", 7),
    Guard("case-new", "csr", lambda w: f"/cases/new/{_acct(w)}/", 7),
    Guard(
        "dispute-new",
        "csr",
        lambda w: f"/cases/dispute/{w.statement.pk}/?line={w.statement.lines.get(position=1).pk}",
        6,
        grows=False,
    ),  # fmt: skip
    Guard("case-detail", "csr", lambda w: f"/cases/{w.case.number}/", 7),
    # --- the customer portal -----------------------------------------------------------------------------
    Guard("portal:login", "anon", lambda w: "/portal/login/", 0, grows=False),
    Guard("portal:home", "customer", lambda w: "/portal/", 12, grows=False),
    Guard("portal:statements", "customer", lambda w: "/portal/statements/", 6),
    Guard("portal:statement-detail", "customer", lambda w: f"/portal/statements/{w.statement.pk}/", 8),
    Guard(
        "portal:dispute",
        "customer",
        lambda w: f"/portal/statements/{w.statement.pk}/dispute/?line={w.statement.lines.get(position=1).pk}",
        9,
        grows=False,
    ),  # fmt: skip
    Guard("portal:help", "customer", lambda w: "/portal/help/", 5, grows=False),
    Guard("portal:help-request", "customer", lambda w: "/portal/help/extend-due-date/", 6),
    Guard("portal:cases", "customer", lambda w: "/portal/cases/", 6),
    Guard("portal:case-detail", "customer", lambda w: f"/portal/cases/{w.case.number}/", 7),
    # --- API lists (and details that carry a list of rows) --------------------------------------------------
    Guard("api-account-list", "biller-api", lambda w: "/api/v1/accounts/", 7),
    Guard("api-account-list", "csr-api", lambda w: "/api/v1/accounts/", 9),
    Guard("api-statement-list", "biller-api", lambda w: "/api/v1/statements/", 3),
    Guard("api-statement-list", "csr-api", lambda w: "/api/v1/statements/", 5),
    Guard(
        "api-statement",
        "csr-api",
        lambda w: f"/api/v1/statements/{w.statement.external_id}/?biller={engine_biller().code}",
        6,
    ),  # fmt: skip
    Guard("api-price-plan-list", "csr-api", lambda w: "/api/v1/catalog/price-plans/", 5),
    Guard(
        "api-price-plan-detail", "csr-api", lambda w: f"/api/v1/catalog/price-plans/{w.catalog_plan.code}/", 7
    ),
    Guard("api-subscription-list", "biller-api", lambda w: "/api/v1/subscriptions/", 3),
    Guard("api-subscription-list", "csr-api", lambda w: "/api/v1/subscriptions/", 5),
    Guard("api-usage-record-list", "biller-api", lambda w: "/api/v1/usage-records/", 3),
    Guard("api-usage-record-list", "csr-api", lambda w: "/api/v1/usage-records/", 5),
    Guard("api-billing-run-list", "admin-api", lambda w: "/api/v1/billing-runs/", 6),
    Guard("api-billing-run-detail", "admin-api", lambda w: f"/api/v1/billing-runs/{w.run.number}/", 12),
    Guard(
        "api-billing-run-exceptions",
        "admin-api",
        lambda w: f"/api/v1/billing-runs/{w.run.number}/exceptions/",
        7,
    ),  # fmt: skip
    Guard("api-run-definition-list", "admin-api", lambda w: "/api/v1/run-definitions/", 8),
    Guard("api-wallet-detail", "csr-api", lambda w: f"/api/v1/wallets/{_acct(w)}/", 8),
    Guard("api-invoice-list", "csr-api", lambda w: "/api/v1/invoices/", 6),
    Guard("api-payment-list", "biller-api", lambda w: "/api/v1/payments/", 4),
    Guard("api-payment-list", "csr-api", lambda w: "/api/v1/payments/", 7),
    Guard("api-adjustment-list", "biller-api", lambda w: "/api/v1/adjustments/", 3),
    Guard("api-adjustment-list", "csr-api", lambda w: "/api/v1/adjustments/", 6),
    Guard("api-refund-list", "biller-api", lambda w: "/api/v1/refunds/", 3),
    Guard("api-refund-list", "supervisor-api", lambda w: "/api/v1/refunds/", 6),
    Guard("api-write-off-list", "biller-api", lambda w: "/api/v1/write-offs/", 3),
    Guard("api-write-off-list", "supervisor-api", lambda w: "/api/v1/write-offs/", 6),
    Guard("api-export-list", "biller-api", lambda w: "/api/v1/exports/", 3),
    Guard("api-case-list", "biller-api", lambda w: "/api/v1/cases/", 3),
    Guard("api-case-list", "csr-api", lambda w: "/api/v1/cases/", 6),
    Guard("api-case", "csr-api", lambda w: f"/api/v1/cases/{w.case.number}/", 6),
    Guard("api-service-process-list", "csr-api", lambda w: "/api/v1/service-processes/", 5, grows=False),
]

# The account page's sections, each served alone at /accounts/<number>/sections/<key>/ (HTMX refreshes one in
# place), and its lazy parts (/accounts/<number>/parts/<part>/, the sections loaded right after the page). One
# guard per registered section and part, so a new one is guarded too, within the page's budget of 15.
FIXED_SECTIONS = {"balance", "profile", "past-due", "charts"}  # tiles and charts of fixed size
FIXED_SECTIONS |= {"history"}  # the newest page (20) of the account's audit records, whatever their number


def _section_guards() -> list[Guard]:
    guards = []
    for section in account_sections():
        guards.append(
            Guard(
                "account-section",
                "csr",
                lambda w, key=section.key: f"/accounts/{_acct(w)}/sections/{key}/",
                PAGE_CONTRACT,
                partial=True,
                label=section.key,
                grows=section.key not in FIXED_SECTIONS,
            )  # fmt: skip
        )
    parts = sorted({getattr(section, "lazy", "") for section in account_sections()} - {""})
    for part in parts:
        guards.append(
            Guard(
                "account-part",
                "csr",
                lambda w, part=part: f"/accounts/{_acct(w)}/parts/{part}/",
                PAGE_CONTRACT,
                partial=True,
                label=part,
            )  # fmt: skip
        )
    return guards


ALL_GUARDS = GUARDS + _section_guards()

# Routes that are no page and no list, each with the reason.
POST_ONLY = "POST only (a form or an action), no page"
DOWNLOAD = "a download of one stored document"
ONE_ROW = "one row of fixed shape, no list"
EXCLUDED: dict[str, str] = {
    "healthz": "health check for the load balancer, reads no rows",
    "api-schema": "OpenAPI schema, reads no rows",
    "api-docs": "Swagger UI page, reads no rows",
    "logout": POST_ONLY,
    "portal:logout": POST_ONLY,
    "invoice-download": DOWNLOAD,
    "portal:invoice-download": DOWNLOAD,
    "api-invoice-pdf": DOWNLOAD,
    "api-invoice-html": DOWNLOAD,
    "api-invoice-xml": DOWNLOAD,
    "account-refresh": POST_ONLY,
    "bill-now": POST_ONLY,
    "wallet-topup": POST_ONLY,
    "payment-create": POST_ONLY,
    "payment-reverse": POST_ONLY,
    "adjustment-create": POST_ONLY,
    "refund-create": POST_ONLY,
    "write-off-create": POST_ONLY,
    "payment-method-add": POST_ONLY,
    "payment-method-default": POST_ONLY,
    "payment-method-remove": POST_ONLY,
    "adjustment-approve": POST_ONLY,
    "adjustment-reject": POST_ONLY,
    "billing-resume": POST_ONLY,
    "case-status": POST_ONLY,
    "case-assign": POST_ONLY,
    "case-comment": POST_ONLY,
    "dispute-resolve": POST_ONLY,
    "portal:account-switch": POST_ONLY,
    "portal:case-reply": POST_ONLY,
    "api-balance": POST_ONLY,
    "api-transaction": POST_ONLY,
    "api-usage": POST_ONLY,
    "api-ingest-bulk": POST_ONLY,
    "api-usage-record-bulk": POST_ONLY,
    "api-bill-create": POST_ONLY,
    "api-bill-preview": POST_ONLY,
    "api-bill-reverse": POST_ONLY,
    "api-subscription-cancel": POST_ONLY,
    "api-billing-run-execute": POST_ONLY,
    "api-billing-run-resume": POST_ONLY,
    "api-billing-run-unschedule": POST_ONLY,
    "api-wallet-top-up": POST_ONLY,
    "api-payment-reverse": POST_ONLY,
    "api-export-acknowledge": POST_ONLY,
    "api-export-confirm": POST_ONLY,
    "api-export-reject": POST_ONLY,
    "api-statement-invoice": POST_ONLY,
    "api-account-by-ref": ONE_ROW,
    "api-account-detail": ONE_ROW,
    "api-subscription-detail": ONE_ROW,
    "api-invoice": ONE_ROW,
    "api-payment": ONE_ROW,
    "api-adjustment": ONE_ROW,
}


def url_names(patterns=None, namespace: str = "") -> list[tuple[str, str]]:
    """(name, route) of every named URL outside Django admin, walking included URLconfs."""
    found: list[tuple[str, str]] = []
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            if getattr(pattern, "app_name", None) == "admin":
                continue
            inner = f"{namespace}:{pattern.namespace}" if namespace and pattern.namespace else (
                pattern.namespace or namespace
            )  # fmt: skip
            found += [
                (name, f"{pattern.pattern}{route}") for name, route in url_names(pattern.url_patterns, inner)
            ]
        elif isinstance(pattern, URLPattern) and pattern.name:
            found.append((f"{namespace}:{pattern.name}" if namespace else pattern.name, str(pattern.pattern)))
    return found


def test_every_route_is_guarded_or_excluded():
    guarded = {g.route for g in ALL_GUARDS}
    missing = [f"{name} ({route})" for name, route in url_names() if name not in guarded | set(EXCLUDED)]
    assert not missing, (
        "Routes without a query-count guard: add each to GUARDS in tests/perf/test_query_counts.py (or to "
        f"EXCLUDED with the reason it is no page and no list): {', '.join(missing)}"
    )


def test_the_tables_name_only_routes_that_exist():
    names = {name for name, _ in url_names()}
    stale = sorted(({g.route for g in ALL_GUARDS} | set(EXCLUDED)) - names)
    assert not stale, f"Guarded or excluded routes that are no longer in the URLconf: {stale}"
    both = sorted({g.route for g in ALL_GUARDS} & set(EXCLUDED))
    assert not both, f"Routes both guarded and excluded: {both}"
    assert len({g.id for g in ALL_GUARDS}) == len(ALL_GUARDS), "two guards with the same route and caller"


# --- the measurements ---------------------------------------------------------------------------------------


def _clients(w: World) -> dict[str, Client]:
    def logged_in(cls, user):
        client = cls()
        client.force_login(user)
        return client

    biller = APIClient()
    biller.credentials(HTTP_AUTHORIZATION=f"Api-Key {w.api_key}")
    clients = {
        "anon": Client(),
        "csr": logged_in(Client, w.csr),
        "supervisor": logged_in(Client, w.supervisor),
        "customer": logged_in(Client, w.customer),
        "csr-api": logged_in(APIClient, w.csr),
        "supervisor-api": logged_in(APIClient, w.supervisor),
        "admin-api": logged_in(APIClient, w.admin),
        "biller-api": biller,
    }
    assert set(clients) == set(CALLERS)
    return clients


@dataclass
class Call:
    status: int
    queries: int
    sql: list[str]
    size: int = 0


def call(clients: dict[str, Client], w: World, guard: Guard) -> Call:
    """The guard's URL once to warm caches (session, content types, the first get_or_create), then counted."""
    client = clients[guard.caller]
    url = guard.url(w)
    headers = {"HTTP_HX_REQUEST": "true"} if guard.partial else {}
    client.get(url, **headers)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, **headers)
    return Call(
        response.status_code,
        len(captured),
        [q["sql"] for q in captured.captured_queries],
        len(response.content),
    )


@dataclass
class Base:
    world: World
    clients: dict[str, Client]
    small: dict[str, Call]


@pytest.fixture(scope="module")
def base(django_db_setup, django_db_blocker):
    """The world with SMALL rows of each kind, every guard counted on it, then grown to SMALL * 3 rows; the
    tests count again. One transaction for the module, rolled back at its end (each test in a savepoint)."""
    with django_db_blocker.unblock(), transaction.atomic():
        world = build()
        grow(world, SMALL)
        clients = _clients(world)
        small = {guard.id: call(clients, world, guard) for guard in ALL_GUARDS}
        grow(world, SMALL * 2)
        yield Base(world, clients, small)
        transaction.set_rollback(True)


def _params():
    for guard in ALL_GUARDS:
        yield pytest.param(guard, id=guard.id)


def _shape(sql: str) -> str:
    """The query without its numbers (ids, IN lists of ids), so that the same query on other rows matches."""
    return re.sub(r"\d+(\s*,\s*\d+)*", "N", sql)


def _diff(few: list[str], many: list[str]) -> str:
    """The queries of the grown call that the first one did not run (by shape): the N+1, usually."""
    extra = list(many)
    for sql in few:
        match = next((other for other in extra if _shape(other) == _shape(sql)), None)
        if match is not None:
            extra.remove(match)
    shown = "\n  ".join(sql[:300] for sql in extra[:8])
    return f"queries the grown call ran beyond the first one's ({len(many) - len(few)} more):\n  {shown}"


@pytest.mark.django_db
@pytest.mark.parametrize("guard", list(_params()))
def test_queries_do_not_grow_with_rows(base, guard, django_assert_max_num_queries):
    few = base.small[guard.id]
    assert few.status == 200, f"{guard.id}: {guard.url(base.world)} answered {few.status}"
    client = base.clients[guard.caller]
    url = guard.url(base.world)
    headers = {"HTTP_HX_REQUEST": "true"} if guard.partial else {}
    client.get(url, **headers)  # warm, as the first count was
    info = f"{guard.id} runs at most {guard.limit} queries (GUARDS in tests/perf/test_query_counts.py)"
    with django_assert_max_num_queries(guard.limit, info=info) as captured:
        response = client.get(url, **headers)
        many = [q["sql"] for q in captured.captured_queries]
        # Growth first: an N+1 is named as such, with the queries it added, before the limit is checked.
        assert len(many) == few.queries, (
            f"{guard.id}: {few.queries} queries with {SMALL} rows of each kind, {len(many)} with "
            f"{SMALL * 3}: " + _diff(few.sql, many)
        )
    assert response.status_code == 200
    if guard.grows:
        assert len(response.content) > few.size, f"{guard.id} shows no more with more rows: is it guarded?"
