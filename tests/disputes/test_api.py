"""/api/v1/cases/ and /api/v1/service-processes/: staff with the case permissions read every account's
cases, a biller only those of the accounts it references (another's is absent or a 404) and only their public
history; customers and users without the permission get 403, anonymous callers 401. Raising an inquiry goes
through disputes.services.case_open (channel api), replays a repeated idempotency key, and refuses bad input
with a 400 naming the field and nothing stored. A fixed number of queries per list and per case."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework.test import APIClient

from billing_mgmt import roles
from billing_mgmt.models import AuditRecord
from disputes.models import Case, CaseEvent, ServiceProcess
from disputes.services import case_assign, case_comment, case_open, dispute_open
from tests.disputes.builders import world
from tests.factories import BillerFactory, BillerReferenceFactory, UserFactory, api_key_for

pytestmark = pytest.mark.django_db
CASES = "/api/v1/cases/"
PROCESSES = "/api/v1/service-processes/"


def detail(number: str) -> str:
    return f"{CASES}{number}/"


@pytest.fixture
def w():
    data = world()
    data.alpha = BillerFactory(code="alpha")
    data.beta = BillerFactory(code="beta")
    BillerReferenceFactory(account=data.account, biller=data.alpha, external_ref="ALPHA-1")
    BillerReferenceFactory(account=data.other_account, biller=data.beta, external_ref="BETA-1")
    return data


def inquiry(w, account=None, subject="Why is my bill higher?", actor=None):
    case, _ = case_open(
        account=account or w.account, process=w.processes["billing-inquiry"], subject=subject,
        description="It went up by 10.", channel="csr", actor=actor or w.csr,
    )  # fmt: skip
    return case


@pytest.fixture
def cases(w):
    """An inquiry (worked, with an internal note) and a dispute on the first account; an inquiry on the
    other's."""
    first = inquiry(w)
    case_assign(case=first, owner=w.csr, actor=w.csr)
    case_comment(case=first, actor=w.csr, text="Internal: customer called twice.", public=False)
    case_comment(case=first, actor=w.csr, text="We are looking into it.", public=True)
    disputed, _ = dispute_open(
        statement=w.statement, line=w.line(2), amount="25.00", reason="I never roamed.", channel="portal",
        actor=w.customer,
    )  # fmt: skip
    other = inquiry(w, account=w.other_account, subject="Other's question")
    return {"first": first, "dispute": disputed, "other": other}


def session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def biller(b) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key_for(b)}")
    return client


def caller(w, who: str) -> APIClient:
    if who == "csr":
        return session(w.csr)
    if who == "supervisor":
        return session(w.supervisor)
    if who == "billing_admin":
        return session(UserFactory(username="badmin", role=roles.BILLING_ADMIN))
    if who == "alpha":
        return biller(w.alpha)
    if who == "beta":
        return biller(w.beta)
    if who == "customer":
        return session(w.customer)
    if who == "no_role":
        return session(UserFactory(username="nobody"))
    return APIClient()


def body(w, **fields):
    return {
        "account": w.account.number,
        "process": "billing-inquiry",
        "subject": "Question about my bill",
        "description": "Why was I charged twice?",
        **fields,
    }


def stored() -> tuple[int, int, int]:
    return (
        Case.objects.count(),
        CaseEvent.objects.count(),
        AuditRecord.objects.filter(action="case.open").count(),
    )


# --- the permission matrix ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "expected", "visible"),
    [
        ("csr", 200, {"first", "dispute", "other"}),
        ("supervisor", 200, {"first", "dispute", "other"}),
        ("billing_admin", 200, {"first", "dispute", "other"}),
        ("alpha", 200, {"first", "dispute"}),
        ("beta", 200, {"other"}),
        ("customer", 403, None),
        ("no_role", 403, None),
        ("anonymous", 401, None),
    ],
)
def test_who_lists_which_cases(w, cases, who, expected, visible):
    response = caller(w, who).get(CASES)

    assert response.status_code == expected, response.content
    if visible is None:
        assert (
            response.json()["error"]["code"] == {401: "not_authenticated", 403: "permission_denied"}[expected]
        )
        return
    numbers = {r["number"] for r in response.json()["results"]}
    assert numbers == {cases[name].number for name in visible}


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("csr", 200),
        ("supervisor", 200),
        ("billing_admin", 200),
        ("alpha", 200),
        ("beta", 404),  # another biller's case looks exactly like a missing one
        ("customer", 403),
        ("no_role", 403),
        ("anonymous", 401),
    ],
)
def test_who_reads_a_case(w, cases, who, expected):
    response = caller(w, who).get(detail(cases["first"].number))

    assert response.status_code == expected, response.content
    if expected == 404:
        assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("csr", 201),
        ("supervisor", 201),
        ("billing_admin", 201),
        ("alpha", 201),
        ("beta", 404),  # an account beta does not reference
        ("customer", 403),
        ("no_role", 403),
        ("anonymous", 401),
    ],
)
def test_who_raises_an_inquiry(w, who, expected):
    before = stored()

    response = caller(w, who).post(CASES, body(w), format="json")

    assert response.status_code == expected, response.content
    if expected == 201:
        assert Case.objects.get(number=response.json()["number"]).account == w.account
    else:
        assert stored() == before


def test_staff_who_may_read_but_not_raise_cases_get_403_on_post(w):
    reader = UserFactory(username="reader")
    reader.user_permissions.add(
        Permission.objects.get(codename="view_case", content_type__app_label="disputes")
    )
    client = session(reader)

    assert client.get(CASES).status_code == 200
    response = client.post(CASES, body(w), format="json")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "Your role does not allow raising cases."
    assert not Case.objects.exists()


# --- what each caller sees ----------------------------------------------------------------------------------


def test_a_case_in_full_for_staff_with_its_whole_history(w, cases):
    case = cases["first"]

    response = session(w.supervisor).get(detail(case.number))

    assert response.status_code == 200
    shown = response.json()
    assert {k: v for k, v in shown.items() if k not in ("history", "due_at", "created_at", "updated_at")} == {
        "number": case.number,
        "account": w.account.number,
        "process": "billing-inquiry",
        "process_name": "Billing inquiry",
        "subject": "Why is my bill higher?",
        "description": "It went up by 10.",
        "status": "new",
        "channel": "csr",
        "queue": "Billing",
        "owner": "csr1",
        "statement": None,
        "requested_due_date": None,
        "resolution": "",
        "overdue": False,
        "decided_at": None,
        "actioned_at": None,
        "dispute": None,
    }
    assert [(e["kind"], e["text"], e["public"], e["actor"]) for e in shown["history"]] == [
        ("created", "It went up by 10.", True, "Casey Rep"),
        ("assigned", "Assigned to Casey Rep.", False, "Casey Rep"),
        ("comment", "Internal: customer called twice.", False, "Casey Rep"),
        ("comment", "We are looking into it.", True, "Casey Rep"),
    ]
    assert shown["history"][0]["to_status"] == "new"


def test_a_biller_reads_the_public_history_only_and_not_who_owns_it(w, cases):
    response = biller(w.alpha).get(detail(cases["first"].number))

    assert response.status_code == 200
    shown = response.json()
    assert shown["owner"] is None
    assert [(e["kind"], e["text"]) for e in shown["history"]] == [
        ("created", "It went up by 10."),
        ("comment", "We are looking into it."),
    ]
    assert all(e["public"] for e in shown["history"])


def test_a_dispute_case_shows_its_dispute(w, cases):
    case = cases["dispute"]

    shown = biller(w.alpha).get(detail(case.number)).json()

    assert shown["process"] == "charge-dispute"
    assert shown["channel"] == "portal"
    assert shown["statement"] == "INV-A-1"
    assert shown["dispute"] == {
        "status": "open",
        "statement": "INV-A-1",
        "statement_line": w.line(2).pk,
        "line_label": "Roaming · Roaming monthly",
        "amount": "25.00",
        "approved_amount": None,
        "currency": "USD",
        "resolved_at": None,
    }


def test_an_overdue_case_says_so(w, cases):
    Case.objects.filter(pk=cases["first"].pk).update(due_at=timezone.now() - dt.timedelta(hours=1))

    assert session(w.csr).get(detail(cases["first"].number)).json()["overdue"] is True


def test_an_unknown_case_is_404(w, cases):
    response = session(w.csr).get(detail("CS-9999999"))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- filters ------------------------------------------------------------------------------------------------


def test_filters_by_status_process_account_and_updated_since(w, cases):
    client = session(w.csr)

    def numbers(query: str) -> set[str]:
        response = client.get(f"{CASES}?{query}")
        assert response.status_code == 200, response.content
        return {r["number"] for r in response.json()["results"]}

    first, disputed, other = cases["first"].number, cases["dispute"].number, cases["other"].number
    assert numbers("process=charge-dispute") == {disputed}
    assert numbers(f"account={w.other_account.number}") == {other}
    assert numbers("channel=portal") == {disputed}
    Case.objects.filter(number=first).update(status="in_progress")
    assert numbers("status=in_progress") == {first}
    Case.objects.filter(number=other).update(updated_at=timezone.now() - dt.timedelta(days=3))
    since = (timezone.now() - dt.timedelta(days=1)).isoformat()
    assert numbers(f"updated_since={since.replace('+', '%2B')}") == {first, disputed}


def test_a_biller_filtering_by_another_account_sees_nothing(w, cases):
    response = biller(w.alpha).get(f"{CASES}?account={w.other_account.number}")

    assert response.status_code == 200
    assert response.json()["results"] == []


def test_a_bad_filter_is_a_400_naming_it(w, cases):
    response = session(w.csr).get(f"{CASES}?status=lost")

    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"status"}


# --- raising an inquiry -------------------------------------------------------------------------------------


def test_a_biller_raises_an_inquiry_through_the_service(w):
    response = biller(w.alpha).post(CASES, body(w), format="json")

    assert response.status_code == 201, response.content
    shown = response.json()
    case = Case.objects.get(number=shown["number"])
    assert response["Location"] == detail(case.number)
    assert (case.account, case.process.code, case.channel, case.status) == (
        w.account,
        "billing-inquiry",
        "api",
        "new",
    )
    assert (case.api_biller, case.created_by, case.contact_email) == (w.alpha, None, "alice@example.com")
    assert case.due_at > timezone.now() + dt.timedelta(hours=47)
    assert (shown["subject"], shown["description"], shown["channel"]) == (
        "Question about my bill",
        "Why was I charged twice?",
        "api",
    )
    assert [(e["kind"], e["actor"]) for e in shown["history"]] == [
        ("created", str(shown["history"][0]["actor"]))
    ]
    assert shown["history"][0]["actor"].startswith("api:alpha:")
    record = AuditRecord.objects.get(action="case.open")
    assert (record.actor_type, record.account_id, record.after["channel"]) == (
        "api_client",
        w.account.pk,
        "api",
    )


def test_staff_raise_an_inquiry_for_any_account(w):
    response = session(w.csr).post(CASES, body(w, account=w.other_account.number), format="json")

    assert response.status_code == 201
    case = Case.objects.get(number=response.json()["number"])
    assert (case.account, case.created_by, case.api_biller, case.channel) == (
        w.other_account,
        w.csr,
        None,
        "api",
    )


def test_a_repeated_idempotency_key_header_replays_the_first_case(w):
    client = biller(w.alpha)

    first = client.post(CASES, body(w), format="json", HTTP_IDEMPOTENCY_KEY="inq-1")
    again = client.post(CASES, body(w), format="json", HTTP_IDEMPOTENCY_KEY="inq-1")

    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["number"] == first.json()["number"]
    assert stored() == (1, 1, 1)
    assert Case.objects.get().idempotency_key == f"api:biller:{w.alpha.pk}:inq-1"

    changed = client.post(CASES, body(w, subject="Another"), format="json", HTTP_IDEMPOTENCY_KEY="inq-1")
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "idempotency_key_reused"
    assert stored() == (1, 1, 1)


def test_a_repeated_idempotency_key_in_the_body_answers_the_first_case(w):
    client = biller(w.alpha)

    first = client.post(CASES, body(w, idempotency_key="inq-2"), format="json")
    again = client.post(CASES, body(w, idempotency_key="inq-2", subject="Retry"), format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["number"] == first.json()["number"]
    assert again.json()["subject"] == "Question about my bill"
    assert stored() == (1, 1, 1)


def test_two_clients_keys_never_meet(w):
    BillerReferenceFactory(account=w.account, biller=w.beta, external_ref="BETA-2")

    one = biller(w.alpha).post(CASES, body(w, idempotency_key="same"), format="json")
    two = biller(w.beta).post(CASES, body(w, idempotency_key="same"), format="json")

    assert (one.status_code, two.status_code) == (201, 201)
    assert one.json()["number"] != two.json()["number"]


@pytest.mark.parametrize(
    ("fields", "status", "field", "message"),
    [
        ({"subject": None}, 400, "subject", "This field is required."),
        ({"subject": "   "}, 400, "subject", "This field may not be blank."),
        ({"subject": "x" * 201}, 400, "subject", "Ensure this field has no more than 200 characters."),
        ({"process": "charge-dispute"}, 400, "process", "Only inquiries are raised through the API"),
        ({"process": "extend-due-date"}, 400, "process", "Only inquiries are raised through the API"),
        ({"process": "no-such-process"}, 400, "process", "No such service process."),
        ({"process": None}, 400, "process", "This field is required."),
        ({"account": "A99999999"}, 404, "account", "No such account."),
        ({"account": None}, 400, "account", "This field is required."),
        ({"idempotency_key": "has spaces"}, 400, "idempotency_key", "printable ASCII"),
        ({"description": "Card 4111 1111 1111 1111"}, 400, "description", "full card number"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(w, fields, status, field, message):
    payload = {k: v for k, v in body(w, **fields).items() if v is not None}
    before = stored()

    response = biller(w.alpha).post(CASES, payload, format="json")

    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error["fields"]) == {field}
    assert message in error["fields"][field][0]
    assert stored() == before


def test_another_billers_account_is_404_and_nothing_is_stored(w):
    response = biller(w.alpha).post(CASES, body(w, account=w.other_account.number), format="json")

    assert response.status_code == 404
    assert response.json()["error"]["fields"] == {"account": ["No such account."]}
    assert stored() == (0, 0, 0)


def test_an_inactive_inquiry_process_is_refused_by_the_service(w):
    ServiceProcess.objects.filter(code="billing-inquiry").update(active=False)

    response = session(w.csr).post(CASES, body(w), format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"process": ["This service process is no longer offered."]}
    assert stored() == (0, 0, 0)


def test_a_failed_request_leaves_its_key_free(w):
    client = biller(w.alpha)
    bad = client.post(CASES, body(w, subject=""), format="json", HTTP_IDEMPOTENCY_KEY="k-fix")
    good = client.post(CASES, body(w), format="json", HTTP_IDEMPOTENCY_KEY="k-fix")

    assert (bad.status_code, good.status_code) == (400, 201)
    assert stored() == (1, 1, 1)


# --- the catalog --------------------------------------------------------------------------------------------


def test_the_catalog_lists_the_active_processes_in_order(w):
    ServiceProcess.objects.filter(code="other-inquiry").update(active=False)

    response = biller(w.alpha).get(PROCESSES)

    assert response.status_code == 200
    rows = response.json()
    assert [r["code"] for r in rows] == [
        "billing-inquiry",
        "charge-dispute",
        "extend-due-date",
        "suspend-billing",
    ]
    assert rows[0] == {
        "code": "billing-inquiry",
        "name": "Billing inquiry",
        "description": "A question about a bill, a charge, a payment or your balance.",
        "action": "inquiry",
        "action_label": "Inquiry (answered, nothing changes by itself)",
        "queue": "Billing",
        "service_level_hours": 48,
        "max_extension_days": None,
        "needs_statement": False,
        "portal": True,
        "api_requestable": True,
    }
    assert rows[2]["max_extension_days"] == 30 and rows[2]["needs_statement"] is True
    assert [r["api_requestable"] for r in rows[1:]] == [False, False, False]


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("csr", 200),
        ("billing_admin", 200),
        ("alpha", 200),
        ("customer", 403),
        ("no_role", 403),
        ("anonymous", 401),
    ],
)
def test_who_reads_the_catalog(w, who, expected):
    assert caller(w, who).get(PROCESSES).status_code == expected


# --- a fixed number of queries ------------------------------------------------------------------------------


def _many(w, n: int) -> None:
    for i in range(n):
        case = inquiry(w, subject=f"Question {i}")
        case_comment(case=case, actor=w.csr, text=f"Note {i}", public=False)


@pytest.mark.parametrize("who", ["csr", "alpha"])
def test_the_list_takes_a_fixed_number_of_queries(w, cases, who, django_assert_max_num_queries):
    client = caller(w, who)
    client.get(CASES)  # a first request (sessions, key's last use)
    with django_assert_max_num_queries(8) as few:
        assert client.get(CASES).status_code == 200
    _many(w, 12)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(CASES)
    assert response.json()["count"] >= 12


@pytest.mark.parametrize("who", ["csr", "alpha"])
def test_a_case_takes_a_fixed_number_of_queries(w, cases, who, django_assert_max_num_queries):
    client = caller(w, who)
    case = cases["first"]
    client.get(detail(case.number))
    with django_assert_max_num_queries(8) as few:
        assert client.get(detail(case.number)).status_code == 200
    for i in range(15):
        case_comment(case=case, actor=w.csr, text=f"More {i}", public=i % 2 == 0)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(detail(case.number))
    assert len(response.json()["history"]) >= 10


# --- the schema ---------------------------------------------------------------------------------------------


def test_the_schema_documents_the_cases_api(w):
    response = session(w.csr).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/cases/", "/api/v1/cases/{number}/", "/api/v1/service-processes/"} <= set(paths)
    create = paths["/api/v1/cases/"]["post"]
    assert set(create["responses"]) == {"200", "201", "400", "401", "403", "404", "409", "429"}
    assert {p["name"] for p in create["parameters"]} == {"Idempotency-Key"}
    assert {p["name"] for p in paths["/api/v1/cases/"]["get"]["parameters"]} >= {
        "status",
        "process",
        "account",
        "updated_since",
        "page",
    }
