"""GET /api/v1/statements/ and /api/v1/statements/{external_id}/: who sees what, filters, the detail's lines
and usage, a bounded number of queries, and the OpenAPI description of the statements and ingest endpoints."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing_mgmt import roles
from statements.services import ingest_records
from tests.factories import BillerReferenceFactory, statement_record

pytestmark = pytest.mark.django_db

LIST = "/api/v1/statements/"


def detail(external_id: str) -> str:
    return f"{LIST}{external_id}/"


@pytest.fixture
def northwind(biller_factory):
    return biller_factory(code="northwind")


@pytest.fixture
def contoso(biller_factory):
    return biller_factory(code="contoso")


def push(biller, *records) -> None:
    results = ingest_records(biller=biller, records=list(records))
    assert {r.status for r in results} == {"accepted"}, [r.as_dict() for r in results]


@pytest.fixture
def data(northwind, contoso, make_account):
    """Northwind: two accounts, three statements; Contoso: one statement of a shared account."""
    shared = make_account(northwind, "NW-1")
    other = make_account(northwind, "NW-2")
    make_account(None)
    BillerReferenceFactory(account=shared, biller=contoso, external_ref="CT-1")
    push(
        northwind,
        statement_record("NW-1", "S-OCT"),
        statement_record(
            "NW-1", "S-NOV", statement_date="2026-11-30", period_start="2026-11-01", period_end="2026-11-30",
            due_date="2026-12-14", status="paid",
        ),
        statement_record("NW-2", "S-OTHER", statement_date="2026-09-30", due_date="2026-10-14",
                         period_start="2026-09-01", period_end="2026-09-30"),
    )  # fmt: skip
    push(contoso, statement_record("CT-1", "S-OCT", statement_date="2026-10-15", due_date="2026-10-29"))
    return {"shared": shared, "other": other}


def ids(response) -> list[tuple[str, str]]:
    assert response.status_code == 200, response.json()
    return [(row["biller"], row["external_id"]) for row in response.json()["results"]]


def test_a_biller_lists_only_its_own_statements_newest_first(data, northwind, biller_client):
    response = biller_client(northwind).get(LIST)

    assert ids(response) == [("northwind", "S-NOV"), ("northwind", "S-OCT"), ("northwind", "S-OTHER")]
    assert response.json()["count"] == 3
    first = response.json()["results"][0]
    assert (first["account"], first["account_number"], first["lines_count"], first["usage_count"]) == (
        "NW-1",
        data["shared"].number,
        3,
        2,
    )
    assert (first["total_due"], first["status"]) == ("40.50", "paid")
    assert "lines" not in first


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("account=NW-1", ["S-NOV", "S-OCT"]),
        ("account=NW-2", ["S-OTHER"]),
        ("account=CT-1", []),  # Contoso's reference of the same account: not this biller's name for it
        ("statement_date_from=2026-10-01", ["S-NOV", "S-OCT"]),
        ("statement_date_to=2026-10-31", ["S-OCT", "S-OTHER"]),
        ("statement_date_from=2026-10-01&statement_date_to=2026-10-31", ["S-OCT"]),
        ("status=paid", ["S-NOV"]),
        ("status=open&account=NW-1", ["S-OCT"]),
        ("biller=contoso", ["S-NOV", "S-OCT", "S-OTHER"]),  # not a filter for billers: ignored
        ("ordering=statement_date", ["S-OTHER", "S-OCT", "S-NOV"]),
    ],
)
def test_biller_filters(data, northwind, biller_client, query, expected):
    response = biller_client(northwind).get(f"{LIST}?{query}")

    assert [external_id for _biller, external_id in ids(response)] == expected


@pytest.mark.parametrize("query", ["status=settled", "statement_date_from=yesterday"])
def test_a_bad_filter_is_400(data, northwind, biller_client, query):
    response = biller_client(northwind).get(f"{LIST}?{query}")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


@pytest.mark.parametrize("role", [roles.CSR, roles.SUPERVISOR, roles.BILLING_ADMIN])
def test_staff_list_every_billers_statements(data, session_client, role):
    client = session_client(role)

    everything = client.get(f"{LIST}?ordering=external_id,biller")
    contoso_only = client.get(f"{LIST}?biller=contoso")
    by_reference = client.get(f"{LIST}?account=CT-1")

    assert sorted(ids(everything)) == [
        ("contoso", "S-OCT"),
        ("northwind", "S-NOV"),
        ("northwind", "S-OCT"),
        ("northwind", "S-OTHER"),
    ]
    assert ids(contoso_only) == [("contoso", "S-OCT")]
    assert ids(by_reference) == [("contoso", "S-OCT")]
    assert contoso_only.json()["results"][0]["account"] == "CT-1"


def test_the_detail_has_lines_and_usage(data, northwind, biller_client):
    response = biller_client(northwind).get(detail("S-OCT"))

    assert response.status_code == 200
    statement = response.json()
    assert (statement["biller"], statement["account"], statement["new_charges"]) == (
        "northwind",
        "NW-1",
        "37.50",
    )
    assert [line["type"] for line in statement["lines"]] == ["recurring", "usage", "discount"]
    assert statement["lines"][0] == {
        "position": 1,
        "type": "recurring",
        "product": "Unlimited Plan",
        "service_identifier": "+15550100",
        "description": "Monthly plan",
        "quantity": "1.000000",
        "unit": "month",
        "unit_price": "40.00000000",
        "amount": "40.00",
        "tax": "3.20",
        "period_start": None,
        "period_end": None,
        "external_id": "S-OCT-1",
    }
    assert statement["lines"][2]["amount"] == "-5.00"
    assert [(u["usage_type"], u["quantity"], u["unit"]) for u in statement["usage"]] == [
        ("data", "5120.000000", "MB"),
        ("voice", "312.000000", "min"),
    ]


def test_amounts_follow_the_currency_minor_units(northwind, make_account, biller_client):
    account = make_account(northwind, "JP-1")
    account.billing_profile.currency = "JPY"
    account.billing_profile.save()
    lines = [{"type": "recurring", "amount": "1200", "tax": "120"}]
    push(northwind, statement_record("JP-1", "S-JP", currency="JPY", lines=lines, usage=[]))

    statement = biller_client(northwind).get(detail("S-JP")).json()

    assert (statement["new_charges"], statement["taxes"], statement["total_due"]) == ("1200", "120", "1320")
    assert statement["lines"][0]["amount"] == "1200"


def test_a_biller_cannot_read_another_billers_statement(data, contoso, biller_client, biller_factory):
    contoso_client = biller_client(contoso)

    own = contoso_client.get(detail("S-OCT"))
    theirs = contoso_client.get(detail("S-NOV"))  # Northwind's only
    nobody = biller_client(biller_factory(code="empty")).get(detail("S-OCT"))

    assert own.status_code == 200
    assert (own.json()["biller"], own.json()["statement_date"]) == ("contoso", "2026-10-15")
    assert theirs.status_code == 404
    assert theirs.json()["error"]["code"] == "not_found"
    assert nobody.status_code == 404
    assert ids(biller_client(biller_factory(code="empty")).get(LIST)) == []


def test_staff_read_by_external_id_with_the_biller(data, csr_client):
    with_biller = csr_client.get(f"{detail('S-OCT')}?biller=contoso")
    without = csr_client.get(detail("S-OCT"))
    wrong_biller = csr_client.get(f"{detail('S-NOV')}?biller=contoso")

    assert with_biller.status_code == 200
    assert (with_biller.json()["biller"], with_biller.json()["account"]) == ("contoso", "CT-1")
    assert without.status_code == 400
    assert list(without.json()["error"]["fields"]) == ["biller"]
    assert wrong_biller.status_code == 404


@pytest.mark.parametrize("role", [roles.CUSTOMER, None])
def test_customers_and_users_without_a_role_are_403(data, session_client, role):
    client = session_client(role)

    responses = [client.get(LIST), client.get(f"{detail('S-OCT')}?biller=northwind")]

    assert [r.status_code for r in responses] == [403, 403]
    assert responses[0].json()["error"]["code"] == "permission_denied"


def test_anonymous_is_401(data, api_client):
    responses = [api_client.get(LIST), api_client.get(detail("S-OCT"))]

    assert [r.status_code for r in responses] == [401, 401]
    assert responses[0].json()["error"]["code"] == "not_authenticated"


# Queries ------------------------------------------------------------------------------------------------


def _statements(biller, account_ref: str, count: int, lines_each: int) -> None:
    lines = [{"type": "one_time", "product": f"Item {i}", "amount": "1.00"} for i in range(lines_each)]
    push(biller, *[statement_record(account_ref, f"Q-{n}", lines=lines) for n in range(count)])


def _queries(client, path: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_list_queries_do_not_grow_with_statements(
    northwind, make_account, biller_client, django_assert_max_num_queries
):
    make_account(northwind, "NW-1")
    client = biller_client(northwind)
    _statements(northwind, "NW-1", 2, 2)
    client.get(LIST)  # the key's last_used_at is written on first use only
    few = _queries(client, f"{LIST}?page_size=100")

    push(
        northwind,
        *[
            statement_record("NW-1", f"M-{n}", lines=[{"type": "other", "amount": "2.00"}] * 4)
            for n in range(30)
        ],
    )
    with django_assert_max_num_queries(few):
        response = client.get(f"{LIST}?page_size=100")
    assert response.json()["count"] == 32
    assert {row["lines_count"] for row in response.json()["results"]} == {2, 4}


def test_staff_list_queries_are_bounded(
    northwind, contoso, make_account, csr_client, django_assert_max_num_queries
):
    make_account(northwind, "NW-1")
    make_account(contoso, "CT-1")
    _statements(northwind, "NW-1", 20, 3)
    push(contoso, *[statement_record("CT-1", f"C-{n}") for n in range(20)])

    with django_assert_max_num_queries(6):  # session, user, groups, count, page
        response = csr_client.get(f"{LIST}?page_size=100")
    assert response.json()["count"] == 40


def test_detail_queries_do_not_grow_with_lines(
    northwind, make_account, biller_client, django_assert_max_num_queries
):
    make_account(northwind, "NW-1")
    client = biller_client(northwind)
    small = [{"type": "other", "amount": "1.00"}]
    big = [{"type": "other", "product": f"P{i}", "amount": "1.00"} for i in range(300)]
    usage = [{"usage_type": f"u{i}", "quantity": "1", "unit": "x"} for i in range(50)]
    push(northwind, statement_record("NW-1", "SMALL", lines=small, usage=[]))
    push(northwind, statement_record("NW-1", "BIG", lines=big, usage=usage))
    client.get(LIST)
    few = _queries(client, detail("SMALL"))

    with django_assert_max_num_queries(few):
        response = client.get(detail("BIG"))
    assert (len(response.json()["lines"]), len(response.json()["usage"])) == (300, 50)
    assert response.json()["lines_count"] == 300
    assert few <= 4  # key, statement, lines, usage


# OpenAPI --------------------------------------------------------------------------------------------------


def test_the_schema_documents_the_statements_and_ingest_endpoints(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]

    put = paths["/api/v1/statements/{external_id}/"]["put"]
    bulk = paths["/api/v1/ingest/bulk/"]["post"]
    assert set(put["tags"]) == {"statements", "ingest"}
    assert set(put["responses"]) == {"200", "201", "400", "401", "403", "409", "413", "429"}
    assert {p["name"] for p in put["parameters"]} == {"Idempotency-Key", "external_id"}
    assert put["responses"]["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert bulk["tags"] == ["ingest"]
    assert set(bulk["responses"]) == {"200", "400", "401", "403", "409", "413", "429"}
    for path in ("/api/v1/balances/", "/api/v1/transactions/", "/api/v1/usage/"):
        operation = paths[path]["post"]
        assert operation["tags"] == ["ingest"]
        assert {"201", "200", "400", "409", "413"} <= set(operation["responses"])
        assert "Idempotency-Key" in {p["name"] for p in operation["parameters"]}
    listing = paths["/api/v1/statements/"]["get"]
    assert {"account", "biller", "statement_date_from", "statement_date_to", "status", "page"} <= {
        p["name"] for p in listing["parameters"]
    }
    records = schema["components"]["schemas"]["BulkRecordRequest"]
    assert set(records["discriminator"]["mapping"]) == {"statement", "balance", "transaction", "usage"}
