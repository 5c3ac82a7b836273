"""API fuzzing from the OpenAPI schema (F9, deliverable 4): every operation of the app's own schema
(drf-spectacular, served at /api/schema/) is called with data that schemathesis generates from it, valid and
invalid, in process through the WSGI application (no live server), once as a biller's API client
(``Authorization: Api-Key ...``) and once as staff (a billing admin's session, with its CSRF token on writes,
as a browser sends it). Every answer must be

* no server error (``not_a_server_error``),
* a status code the schema documents for that operation (``status_code_conformance``),
* of the documented content type (``content_type_conformance``), and
* a body matching the documented schema of that status (``response_schema_conformance``).

Data: one small world per test process (tests/perf/world.py: a biller with referenced accounts, bills,
payments, adjustments, refunds, write-offs, exports, cases, runs, plans, subscriptions, a wallet, invoices),
built in a transaction around the module and rolled back after it. Path parameters and the usual reference
fields of bodies (``account``, ``statement``, ``price_plan``, ``process``...) are replaced by real values of
that world in about half of the examples, so that ids hit real rows as well as missing ones. Each example runs
in a savepoint rolled back after its call, so examples never see each other's writes (and hypothesis sees the
same answer to the same input).

Bounds: MAX_EXAMPLES per operation and caller, derandomized (the same examples on every run, so a failure
reproduces), no shrinking (a failure shows the example as found, with its curl). Run with ``-rP`` or ``-s``
to see the printed settings.
"""

from __future__ import annotations

import datetime as dt
import traceback

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 10
PHASES = (Phase.explicit, Phase.generate)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    phases=PHASES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    # The examples share one module-scoped world and a function-scoped db fixture on purpose.
    suppress_health_check=list(HealthCheck),
)

API = "/api/v1"
APP = get_wsgi_application()
SCHEMA = schemathesis.openapi.from_wsgi("/api/schema/?format=json", APP)
# Examples from the schema and random fuzzing (valid and invalid data). Not schemathesis' "coverage" phase:
# its deterministic boundary cases number hundreds per operation (about 9,000 calls for the biller alone, a
# minute and a half), past this suite's budget.
SCHEMA_PHASES = ["examples", "fuzzing"]
SCHEMA.config.phases.update(phases=SCHEMA_PHASES)

# Real values of the world, by path template and parameter name (path parameters) or by body field name;
# filled by the ``world`` fixture before any example is generated.
REAL_PATH_VALUES: dict[str, dict[str, list]] = {}
REAL_BODY_VALUES: dict[str, list] = {}
# Calls made in this test process, by status code (printed after the module).
CALLS: dict[int, int] = {}


def _real_or_generated(generated, real: list):
    if not real:
        return st.just(generated)
    return st.one_of(st.just(generated), st.sampled_from(real))


@SCHEMA.hook
def flatmap_path_parameters(context, path_parameters):
    real = REAL_PATH_VALUES.get(context.operation.path, {})
    if not path_parameters or not real:
        return st.just(path_parameters)
    return st.fixed_dictionaries(
        {name: _real_or_generated(value, real.get(name, [])) for name, value in path_parameters.items()}
    )


@SCHEMA.hook
def flatmap_body(context, body):
    if not isinstance(body, dict) or not any(key in REAL_BODY_VALUES for key in body):
        return st.just(body)
    return st.fixed_dictionaries(
        {key: _real_or_generated(value, REAL_BODY_VALUES.get(key, [])) for key, value in body.items()}
    )


def _settings_line() -> str:
    operations = [result.ok() for result in SCHEMA.get_all_operations()]
    return (
        f"API fuzz: {len(operations)} operations x 2 callers (biller API key, billing admin session); "
        f"max_examples={MAX_EXAMPLES} per operation and caller, phases={[p.name for p in PHASES]}, "
        f"schemathesis phases={SCHEMA_PHASES}, derandomize=True, "
        f"modes={[m.value for m in SCHEMA.config.generation.modes]}, "
        f"checks={[c.__name__ for c in CHECKS]}"
    )


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """The world every example of this module's tests calls about: built once per test process inside a
    transaction that is rolled back after the module (each test adds its own savepoint inside it)."""
    from django.db import transaction

    print(_settings_line())
    with django_db_blocker.unblock(), transaction.atomic():
        w = _build_world()
        yield w
        transaction.set_rollback(True)
    print(f"\nAPI fuzz: {sum(CALLS.values())} calls here, by status: {dict(sorted(CALLS.items()))}")
    REAL_PATH_VALUES.clear()
    REAL_BODY_VALUES.clear()


def _build_world():
    from accounts.models import BillerReference
    from billruns.models import BillingRun
    from disputes.models import ServiceProcess
    from invoicing.models import Invoice
    from payments.models import Adjustment, ExportItem, Payment
    from statements.models import Statement
    from tests import factories
    from tests.perf import world as perf_world

    w = perf_world.build()
    perf_world.grow(w, 1)
    staff = factories.UserFactory(username="fuzz-admin", role="Billing admin")
    accounts = [w.account, w.credit_account]
    refs = list(BillerReference.objects.filter(biller=w.biller).values_list("external_ref", flat=True))
    statements = list(Statement.objects.filter(account__in=accounts))
    invoices = list(Invoice.objects.values_list("number", flat=True))
    runs = list(BillingRun.objects.values_list("number", flat=True))
    plans = [w.plan.code, w.catalog_plan.code]
    processes = list(ServiceProcess.objects.values_list("code", flat=True))
    payments = list(Payment.objects.values_list("pk", flat=True))
    exports = [str(x) for x in ExportItem.objects.values_list("export_id", flat=True)]
    subscriptions = [w.subscription.pk, *w.account.subscriptions.values_list("pk", flat=True)]
    numbers = [a.number for a in accounts]
    REAL_PATH_VALUES.update(
        {
            f"{API}{path}": values
            for path, values in {
                "/accounts/{number}/": {"number": numbers},
                "/accounts/by-ref/{external_ref}/": {"external_ref": refs},
                "/adjustments/{id}/": {"id": list(Adjustment.objects.values_list("pk", flat=True))},
                "/billing-runs/{number}/": {"number": runs},
                "/billing-runs/{number}/exceptions/": {"number": runs},
                "/billing-runs/{number}/execute/": {"number": runs},
                "/billing-runs/{number}/resume/": {"number": runs},
                "/billing-runs/{number}/unschedule/": {"number": runs},
                "/bills/{statement_id}/reverse/": {"statement_id": [s.pk for s in statements]},
                "/cases/{number}/": {"number": [w.case.number]},
                "/catalog/price-plans/{code}/": {"code": plans},
                "/exports/{export_id}/acknowledge/": {"export_id": exports},
                "/exports/{export_id}/confirm/": {"export_id": exports},
                "/exports/{export_id}/reject/": {"export_id": exports},
                "/invoices/{number}/": {"number": invoices},
                "/invoices/{number}/html": {"number": invoices},
                "/invoices/{number}/pdf": {"number": invoices},
                "/invoices/{number}/xml": {"number": invoices},
                "/payments/{id}/": {"id": payments},
                "/payments/{id}/reverse/": {"id": payments},
                "/statements/{external_id}/": {
                    "external_id": [s.external_id for s in statements if s.external_id]
                },
                "/statements/{statement_id}/invoice/": {"statement_id": [s.pk for s in statements]},
                "/subscriptions/{id}/": {"id": subscriptions},
                "/subscriptions/{id}/cancel/": {"id": subscriptions},
                "/wallets/{number}/": {"number": numbers},
                "/wallets/{number}/top-ups/": {"number": numbers},
            }.items()
        }
    )
    REAL_BODY_VALUES.update(
        {
            "account": numbers + refs,
            "accounts": [numbers],
            "statement": [s.number for s in statements]
            + [s.external_id for s in statements if s.external_id],
            "price_plan": plans,
            "process": processes,
            "subscriptions": [subscriptions],
            "currency": ["USD"],
            "amount": ["10.00", "0.01"],
            "bill_as_of_date": [dt.date(2026, 7, 1).isoformat()],
            "transaction_date": [dt.date(2026, 7, 1).isoformat()],
        }
    )
    w.fuzz_staff = staff
    return w


@pytest.fixture
def wsgi_in_test_transaction(world, db, settings):
    """Requests go through the real WSGI handler, whose request signals would close the test's connection
    (and with it the transaction): disconnect them, as Django's test client does. Exceptions that reach
    Django's handler are kept, so that a 500 shows its traceback."""
    from django.core.signals import got_request_exception, request_finished, request_started
    from django.db import close_old_connections

    # Hundreds of requests a minute from one caller: the rate limit (a documented 429 on every operation,
    # tested in tests/security/test_rate_limits.py) would answer most of them, so it is lifted here.
    settings.API_THROTTLE_RATES = {}
    errors: list[str] = []

    def keep(sender, request=None, **kwargs):
        errors.append(traceback.format_exc())

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    got_request_exception.connect(keep)
    try:
        yield errors
    finally:
        got_request_exception.disconnect(keep)
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


class _Rollback(Exception):
    pass


def _call_and_validate(case, errors: list[str], **kwargs) -> None:
    from django.db import transaction

    errors.clear()
    # The schema offers two schemes (API key, session cookie) and schemathesis fills in both: each caller
    # sends only its own credentials, so that the answer is about that caller.
    if case.headers:
        case.headers.pop("Authorization", None)
    response = None
    try:
        with transaction.atomic():
            response = case.call(**kwargs)
            CALLS[response.status_code] = CALLS.get(response.status_code, 0) + 1
            raise _Rollback
    except _Rollback:
        pass
    try:
        case.validate_response(response, checks=CHECKS)
    except Exception as failure:
        if errors:
            failure.add_note("Server traceback:\n" + "\n".join(errors))
        raise


@pytest.fixture
def biller_headers(world):
    return {"Authorization": f"Api-Key {world.api_key}"}


@pytest.fixture
def staff_credentials(world):
    from django.conf import settings as django_settings
    from django.middleware.csrf import _get_new_csrf_string
    from django.test import Client

    client = Client()
    client.force_login(world.fuzz_staff)
    token = _get_new_csrf_string()
    cookies = {
        django_settings.SESSION_COOKIE_NAME: client.cookies[django_settings.SESSION_COOKIE_NAME].value,
        django_settings.CSRF_COOKIE_NAME: token,
    }
    return {"cookies": cookies, "headers": {"X-CSRFToken": token}}


@SCHEMA.parametrize()
@FUZZ_SETTINGS
def test_api_as_a_biller_client(case, wsgi_in_test_transaction, biller_headers):
    _call_and_validate(case, wsgi_in_test_transaction, headers=biller_headers)


@SCHEMA.parametrize()
@FUZZ_SETTINGS
def test_api_as_staff(case, wsgi_in_test_transaction, staff_credentials):
    _call_and_validate(case, wsgi_in_test_transaction, **staff_credentials)
