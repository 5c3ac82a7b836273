"""Two tenants and every role, for the authorization matrix (tests/security/test_authorization_matrix.py).

Tenant A is tests/perf/world.py's customer base (biller ``perf-north``, alice's account with a statement, a
case, a run, a refresh, a subscription, a payment method...) plus what the matrix addresses that it lacks: a
statement of biller A, a payment exported to biller A, an adjustment waiting for a supervisor, a dispute, a
rendered invoice. Tenant B is a second biller with its own account, customer and statement. Every URL of the
matrix is about tenant A's rows, so that biller B's client and customer B ask for what is not theirs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.core.files.base import ContentFile
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import Account, Biller, Contact
from billing_mgmt import roles
from billruns.services import wallet_topup
from disputes.models import Case
from disputes.services import dispute_open
from invoicing.models import Invoice
from invoicing.services import invoices_issue
from payments.models import Adjustment, ExportItem, Payment
from payments.services import adjustment_request, payment_post
from statements.models import Statement
from tests import factories
from tests.disputes.builders import billed_statement
from tests.invoicing import builders as inv
from tests.perf.world import World, build
from tests.statements.history import make_statement

# The roles of the matrix, in the order of every row of its table.
ROLES = ("anon", "cust_a", "cust_b", "csr", "sup", "admin", "biller_a", "biller_b")
PEOPLE = ("cust_a", "cust_b", "csr", "sup", "admin")
BILLERS = ("biller_a", "biller_b")


@dataclass
class AuthzWorld:
    a: World  # tenant A and the staff (csr, supervisor, admin)
    biller_b: Biller
    api_key_b: str
    account_b: Account
    customer_b: object
    statement_b: Statement
    external: Statement  # biller A's statement of account A (the statements API addresses it)
    payment: Payment  # posted on account A against ``external``: exported to biller A
    export: ExportItem
    pending: Adjustment  # above the CSR's limit: waits for a supervisor
    posted: Adjustment  # within it: posted (billers see posted adjustments only)
    dispute_case: Case  # a charge dispute on ``a.statement``
    invoice: Invoice  # the invoice of ``a.statement``, "rendered" (small stored files, no WeasyPrint)

    @property
    def account(self) -> Account:
        return self.a.account


def build_world() -> AuthzWorld:
    a = build()
    biller_b = factories.BillerFactory(code="authz-south", name="Authz South")
    api_key_b = factories.api_key_for(biller_b)
    account_b = inv.account(name="Bob Authz", email="bob.authz@example.com")
    factories.BillerReferenceFactory(account=account_b, biller=biller_b, external_ref="AUTHZ-B-1")
    customer_b = factories.UserFactory(
        username="authz-bob", email="bob.authz@example.com", role=roles.CUSTOMER
    )
    factories.ContactFactory(
        account=account_b, name="Bob Authz", email="bob.authz@example.com", role=Contact.Role.PORTAL_USER,
        user=customer_b,
    )  # fmt: skip
    statement_b = billed_statement(account_b, "AUTHZ-S-B", [("Broadband", "30.00")])
    external = make_statement(
        account=a.account, biller=a.biller, statement_date=dt.date(2026, 5, 1), number="AUTHZ-X-1",
        external_id="AUTHZ-X-1", new_charges="30.00", lines=[("recurring", "30.00")],
    )  # fmt: skip
    payment, _ = payment_post(
        account=a.account, amount="10.00", currency="USD", idempotency_key="authz-pay-1", method=a.method,
        statement=external, actor=a.csr,
    )  # fmt: skip
    export = ExportItem.objects.get(payment=payment, kind=ExportItem.Kind.PAYMENT)
    pending, _ = adjustment_request(
        account=a.account, direction="credit", amount="50.00", currency="USD", reason=a.reason,
        idempotency_key="authz-adj-1", note="Goodwill", actor=a.csr,
    )  # fmt: skip
    posted, _ = adjustment_request(
        account=a.account, direction="credit", amount="1.00", currency="USD", reason=a.reason,
        idempotency_key="authz-adj-2", note="Goodwill", actor=a.csr,
    )  # fmt: skip
    assert (pending.status, posted.status) == (Adjustment.Status.PENDING, Adjustment.Status.POSTED)
    wallet_topup(account=a.account, amount=Decimal("5.00"), currency="USD", idempotency_key="authz-top-1",
                 actor=a.supervisor, refresh_estimate=False)  # fmt: skip
    dispute_case, _ = dispute_open(
        statement=a.statement, line=a.statement.lines.get(position=2), amount="5.00", reason="Not abroad",
        channel="portal", actor=a.customer,
    )  # fmt: skip
    (invoice,) = invoices_issue(statement_ids=[a.statement.pk])
    for extension, content in (("pdf", b"%PDF-1.7 authz"), ("html", b"<p>authz</p>"), ("xml", b"<i/>")):
        getattr(invoice, extension).save(
            f"authz/{invoice.number}.{extension}", ContentFile(content), save=False
        )
    invoice.status = Invoice.Status.RENDERED
    invoice.save(update_fields=["status", "pdf", "html", "xml"])
    return AuthzWorld(
        a=a, biller_b=biller_b, api_key_b=api_key_b, account_b=account_b, customer_b=customer_b,
        statement_b=statement_b, external=external, payment=payment, export=export, pending=pending,
        posted=posted, dispute_case=dispute_case, invoice=invoice,
    )  # fmt: skip


def sessions(w: AuthzWorld) -> dict[str, dict[str, str]]:
    """Each role's cookies (a session made once), so that every call can use a new client: a logout or a
    session rotation in one call never reaches the next."""
    users = {"cust_a": w.a.customer, "cust_b": w.customer_b, "csr": w.a.csr, "sup": w.a.supervisor,
             "admin": w.a.admin}  # fmt: skip
    cookies = {"anon": {}, "biller_a": {}, "biller_b": {}}
    for role, user in users.items():
        client = Client()
        client.force_login(user)
        cookies[role] = {name: morsel.value for name, morsel in client.cookies.items()}
    return cookies


def client_for(w: AuthzWorld, cookies: dict[str, dict[str, str]], role: str) -> APIClient:
    client = APIClient(enforce_csrf_checks=False)
    for name, value in cookies[role].items():
        client.cookies[name] = value
    if role == "biller_a":
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {w.a.api_key}")
    elif role == "biller_b":
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {w.api_key_b}")
    return client
