"""One customer base for the query-count guards (tests/perf/test_query_counts.py), built small and then
grown: every kind of row a CSR page, a portal page or an API list shows gets more of itself.

``build()`` makes the subjects the routes are called about (an account with its customer, biller,
statements, case, run, refresh...) and ``grow(world, count)`` adds ``count`` more of every row kind to those
same subjects, so that the same URL shows more rows. Writes go through the services where the rows have
relations (payments allocate and export, adjustments and cases audit), directly otherwise; nothing renders a
PDF.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils import timezone

from accounts.models import Account, Biller, Contact
from billing_mgmt import roles
from billruns.models import BillingRun, PricePlan, RunDefinition, RunException, RunType, Stage, Subscription
from billruns.services import billrun_create, run_definition_save, wallet_topup
from disputes.models import Case, ServiceProcess
from disputes.services import case_assign, case_comment, case_open, dispute_open
from invoicing.services import invoices_issue
from payments.models import AdjustmentLimit, AdjustmentReason, PaymentMethod
from payments.services import (
    adjustment_request,
    payment_method_add,
    payment_post,
    refund_post,
    write_off_post,
)
from statements.models import AccountRefresh, BillerBalanceSnapshot, PullRun, Statement, StatementLine
from tests import factories
from tests.billruns import builders as b
from tests.disputes.builders import billed_statement, processes
from tests.invoicing import builders as inv
from tests.statements.history import make_statement

D = Decimal
JULY_1 = dt.date(2026, 7, 1)
_seq = itertools.count(1)


@dataclass
class World:
    biller: Biller
    api_key: str
    account: Account  # the account every account-scoped page is about (alice's)
    credit_account: Account  # holds a credit, so that it can be refunded
    customer: object
    csr: object
    supervisor: object
    admin: object
    statement: Statement  # an engine bill of the account (statement page, disputes, portal)
    case: Case  # an inquiry whose history grows
    run: BillingRun  # a run whose exceptions grow
    refresh: AccountRefresh  # a refresh whose pull runs grow
    plan: PricePlan  # the subscriptions' plan
    catalog_plan: PricePlan  # a plan whose components grow (the price plan API's detail)
    subscription: Subscription
    processes: dict[str, ServiceProcess]
    reason: AdjustmentReason
    method: PaymentMethod
    grown: int = 0
    statements: list[Statement] = field(default_factory=list)


def _n() -> int:
    return next(_seq)


def build() -> World:
    biller = factories.BillerFactory(code="perf-north", name="Perf North")
    api_key = factories.api_key_for(biller)
    account = inv.account(name="Alice Perf", email="alice.perf@example.com")
    factories.BillerReferenceFactory(account=account, biller=biller, external_ref="PERF-1")
    credit_account = inv.account(name="Credit Perf", email="credit.perf@example.com")
    factories.BillerReferenceFactory(account=credit_account, biller=biller, external_ref="PERF-2")
    customer = factories.UserFactory(
        username="perf-alice", email="alice.perf@example.com", role=roles.CUSTOMER
    )
    factories.ContactFactory(account=account, name="Alice Perf", email="alice.perf@example.com",
                             role=Contact.Role.PORTAL_USER, user=customer)  # fmt: skip
    csr = factories.UserFactory(username="perf-csr", role=roles.CSR)
    supervisor = factories.UserFactory(username="perf-supervisor", role=roles.SUPERVISOR)
    admin = factories.UserFactory(username="perf-admin", role=roles.BILLING_ADMIN)
    # CSRs post small adjustments at once; larger ones wait in the supervisors' queue.
    AdjustmentLimit.objects.get_or_create(
        role=csr.groups.get(name=roles.CSR), currency="USD", defaults={"max_amount": D("5.00")}
    )
    reason = AdjustmentReason.objects.get_or_create(code="perf-goodwill", defaults={"name": "Goodwill"})[0]
    catalog = processes()
    statement = billed_statement(account, "PERF-S-1", [("Mobile plan", "40.00"), ("Roaming", "25.00")])
    case, _ = case_open(account=account, process=catalog["billing-inquiry"], subject="Why so high?",
                        channel="csr", actor=csr)  # fmt: skip
    plan = b.plan(name="Perf Mobile")
    b.recurring(plan, "30.00")
    b.usage_component(plan, unit_price="0.10")
    subscription = b.subscription(account, plan, dt.date(2026, 6, 1))
    catalog_plan = b.plan(name="Perf catalog")
    run_definition_save(
        definition=RunDefinition(name="Perf monthly", run_type=RunType.NORMAL, bill_as_of_day=1,
                                 due_proximity_min_days=-5, due_proximity_max_days=10, chunk_size=50)
    )  # fmt: skip
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    refresh = AccountRefresh.objects.create(account=account, requested_by=csr)
    method = payment_method_add(account=account, kind="other", description="Cash desk", actor=csr)
    world = World(
        biller=biller, api_key=api_key, account=account, credit_account=credit_account, customer=customer,
        csr=csr, supervisor=supervisor, admin=admin, statement=statement, case=case, run=run,
        refresh=refresh, plan=plan, catalog_plan=catalog_plan, subscription=subscription, processes=catalog,
        reason=reason, method=method,
    )  # fmt: skip
    return world


def grow(w: World, count: int) -> None:
    """``count`` more of every row kind the guarded routes show."""
    for _ in range(count):
        _grow_once(w)
    w.grown += count


def _grow_once(w: World) -> None:
    i = _n()
    now = timezone.now()
    # Accounts: a non-paying child of the account (hierarchy, search, accounts API), with a contact.
    child = factories.AccountFactory(name=f"Perfsearch Child {i}", parent=w.account, is_paying=False)
    factories.ContactFactory(account=child, role=Contact.Role.PRIMARY, email=f"child{i}@example.com")
    factories.BillerReferenceFactory(account=child, biller=w.biller, external_ref=f"PERF-C-{i}")
    factories.ContactFactory(account=w.account, role=Contact.Role.BILLING_COPY, email=f"copy{i}@example.com")
    # Statements: an engine bill with its invoice, and a bill of the external biller with lines and usage.
    engine = billed_statement(w.account, f"PERF-E-{i}", [("Mobile plan", "40.00"), ("Roaming", "5.00")])
    Statement.objects.filter(pk=engine.pk).update(statement_date=dt.date(2026, 1, 1) + dt.timedelta(days=i))
    invoices_issue(statement_ids=[engine.pk])
    external = make_statement(
        account=w.account, biller=w.biller, statement_date=dt.date(2026, 1, 1) + dt.timedelta(days=i),
        number=f"PERF-X-{i}", external_id=f"PERF-X-{i}", new_charges="30.00",
        lines=[("recurring", "25.00"), ("usage", "5.00")], usage=[("voice", "min", "100")],
    )  # fmt: skip
    w.statements += [engine, external]
    StatementLine.objects.bulk_create(
        StatementLine(statement=w.statement, position=100 + 3 * i + k, line_type="usage",
                      product=f"Call {i}-{k}", amount=D("0.50"), service_identifier=f"+1555000{k}")
        for k in range(3)
    )  # fmt: skip
    # Payments, methods, adjustments (posted and pending), refunds, write-offs; exports follow.
    method = payment_method_add(account=w.account, kind="other", description=f"Desk {i}", actor=w.csr)
    payment_post(account=w.account, amount="10.00", currency="USD", idempotency_key=f"perf-pay-{i}",
                 method=method, statement=external, actor=w.csr)  # fmt: skip
    for amount in ("1.00", "50.00"):
        adjustment_request(account=w.account, direction="credit", amount=amount, currency="USD",
                           reason=w.reason, idempotency_key=f"perf-adj-{i}-{amount}", note="Perf",
                           actor=w.csr)  # fmt: skip
    write_off_post(account=w.account, amount="1.00", currency="USD", reason="Perf",
                   idempotency_key=f"perf-wo-{i}", actor=w.supervisor)  # fmt: skip
    payment_post(account=w.credit_account, amount="20.00", currency="USD",
                 idempotency_key=f"perf-credit-{i}", actor=w.csr)  # fmt: skip
    refund_post(account=w.credit_account, amount="1.00", currency="USD", reason="Perf",
                idempotency_key=f"perf-refund-{i}", actor=w.supervisor)  # fmt: skip
    # Cases: another inquiry (assigned), a dispute on the new bill, and history on the main case.
    other, _ = case_open(account=w.account, process=w.processes["other-inquiry"], subject=f"Other {i}",
                         channel="portal", actor=w.customer)  # fmt: skip
    case_assign(case=other, owner=w.csr, actor=w.supervisor)
    dispute_open(statement=engine, line=engine.lines.get(position=1), amount="1.00", reason="Wrong",
                 channel="portal", actor=w.customer)  # fmt: skip
    case_comment(case=w.case, actor=w.csr, text=f"Note {i}")
    case_comment(case=w.case, actor=w.customer, text=f"Reply {i}")
    # The engine: a subscription, usage, a price plan with components, runs, exceptions, definitions.
    subscription = b.subscription(w.account, w.plan, dt.date(2026, 6, 1))
    b.usage(w.subscription, "10", dt.date(2026, 6, 2), source=w.biller.code)
    b.usage(subscription, "5", dt.date(2026, 6, 3), source=w.biller.code)
    b.usage_component(w.catalog_plan, unit_price="0.01", type_code=f"perf-{i}")
    plan = b.plan(name=f"Perf plan {i}")
    b.recurring(plan, "20.00")
    b.usage_component(plan, unit_price="0.05", tiers=[("0", "100", "0.05"), ("100", None, "0.03")])
    billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1, subscriptions=[subscription])
    w.run.subscriptions.add(subscription)
    w.run.accounts.add(child)
    RunException.objects.create(run=w.run, account=child, subscription=subscription, stage=Stage.RATING,
                                code="perf", message=f"Problem {i}")  # fmt: skip
    run_definition_save(
        definition=RunDefinition(name=f"Perf old {i}", run_type=RunType.NORMAL, active=False,
                                 bill_as_of_day=1, due_proximity_min_days=-5, due_proximity_max_days=10)
    )  # fmt: skip
    # The prepaid wallet.
    wallet_topup(account=w.account, amount=D("5.00"), currency="USD", idempotency_key=f"perf-top-{i}",
                 actor=w.supervisor, refresh_estimate=False)  # fmt: skip
    # Refresh from billers: one more biller the account is known at, and its pull run in the refresh.
    biller = factories.BillerFactory(code=f"perf-biller-{i}")
    factories.BillerReferenceFactory(account=w.account, biller=biller, external_ref=f"PERF-B-{i}")
    BillerBalanceSnapshot.objects.create(biller=biller, account=w.account, as_of=now, amount=D("12.00"),
                                         currency="USD", received_at=now)  # fmt: skip
    PullRun.objects.create(biller=biller, account=w.account, refresh=w.refresh,
                           trigger=PullRun.Trigger.ACCOUNT_REFRESH, started_at=now)  # fmt: skip
