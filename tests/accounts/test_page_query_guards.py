"""Query-count guards (F8): the CSR account page (its first response, and each lazy part htmx loads right
after it) and the statement page cost at most 15 queries per request, session, user and permissions
included, whatever the account's history: five years (60 statements of 20 lines, usage, 59 payments,
adjustments, cases, disputes) cost exactly what one year costs.

The history comes from the benchmark's own builder (billing_mgmt.bench.pages.build_history_account), so the
guard and the benchmark measure the same account.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing_mgmt.bench.pages import build_history_account
from billing_mgmt.sections import lazy_parts
from tests.pages import HTMX

LIMIT = 15


@pytest.fixture
def histories(db):
    return {
        "long": build_history_account(seed=5, years=5),
        "short": build_history_account(seed=1, years=1),
    }


def _queries(client, url: str, **headers) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, **headers)
    assert response.status_code == 200, url
    return [q["sql"] for q in captured.captured_queries]


def _counts(client, history: dict) -> dict[str, list[str]]:
    user = get_user_model().objects.get(pk=history["user_id"])
    client.force_login(user)
    number = history["account_number"]
    page = reverse("account-detail", args=[number])
    client.get(page)  # the first view of an account writes the session (the recent accounts); count the next
    found = {"page": _queries(client, page)}
    for part in lazy_parts(user=user):
        found[f"part {part}"] = _queries(client, reverse("account-part", args=[number, part]), **HTMX)
    statement = reverse("statement-detail", args=[number, history["statement_id"]])
    found["statement"] = _queries(client, statement)
    return found


def test_history_is_long(histories):
    long, short = histories["long"], histories["short"]
    assert (long["statements"], long["statement_lines"], long["payments"]) == (60, 1200, 59)
    assert long["adjustments"] >= 5 and long["cases"] >= 5
    assert short["statements"] == 12


def test_pages_stay_within_the_budget_whatever_the_history(client, histories):
    long = _counts(client, histories["long"])
    short = _counts(client, histories["short"])
    assert set(long) == {"page", "part activity", "part usage", "part more", "statement"}
    for name, queries in long.items():
        assert len(queries) <= LIMIT, f"{name}: {len(queries)} queries\n" + "\n".join(queries)
        assert len(queries) == len(short[name]), f"{name} grows with history\n" + "\n".join(queries)


def test_first_response_figures(client, histories):
    """The first response: session, user, roles and permissions (one query), the account with its contacts,
    references and children (one), the balance tiles (one), past due (two), Account balances (three),
    Statements (one: the page with its count), Payment methods (one)."""
    assert len(_counts(client, histories["long"])["page"]) == 12


def test_permissions_are_read_once(client, histories):
    queries = _counts(client, histories["long"])
    for name, found in queries.items():
        permission_reads = [q for q in found if "auth_permission" in q or "auth_group" in q]
        assert len(permission_reads) == 1, name


def test_a_supervisor_stays_within_the_budget(client, histories, supervisor_user):
    """Supervisors see more (refunds, write-offs: the receivable balance), still within the budget."""
    history = {**histories["long"], "user_id": supervisor_user.pk}
    for name, queries in _counts(client, history).items():
        assert len(queries) <= LIMIT, f"{name}: {len(queries)} queries\n" + "\n".join(queries)
