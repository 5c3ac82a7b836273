"""F9 (3): ledger invariants under random operations.

A hypothesis state machine applies random operations through the product's own services to two accounts: an
account billed by this product's engine (``bill_create``, ``bill_reverse``) and an account of an external
biller whose statements arrive through the ingest service (``ingest_records``: new statements, repeats and
replacements). On either it takes payments (with and without a chosen statement), reverses them, makes
adjustments (within the CSR's limit they post; above it a supervisor approves or rejects them), refunds up to
the credit, writes off up to what is owed, opens disputes on lines or whole statements and resolves them
(approved in full or in part, rejected). Operations that must be refused (a refund above the credit, a
write-off above the balance, a second reversal, a CSR approving, an idempotency key reused for another amount,
a replacement of a settled or disputed statement...) are rules too: each asserts the service's error and that
nothing at all changed. Repeats with the same idempotency key assert one effect.

After every step the invariants hold:

* the cached balance (AccountBalance) equals the sum of the ledger rows (``ledger_mismatches``);
* every statement adds up: total due = previous balance - payments + adjustments + new charges + taxes; its
  lines add up to its new charges and taxes; its ledger charge rows to its new charges + taxes; what is
  allocated to it never exceeds its charges; its disputed amount is the sum of its open disputes; its status
  says what is paid; every payment's allocations plus its credit are its amount;
* the engine's chain of bills adds up: each bill starts from the previous bill's total due, its payments and
  adjustments are the rows it swept, and the balance is the last total due plus the rows not billed yet;
* a reversed bill is settled (paid): it takes no payment after its reversal, autopay never lists it, and its
  reversal and approved dispute credits together never credit more than it charged;
* nothing posted changed: every ledger row, posted statement (per version), line, payment, allocation,
  adjustment, refund, write-off and dispute is compared with its snapshot from when it was first seen (the
  ledger is append-only; statuses only move forward).

Each example runs in a savepoint of the test's transaction (pytest-django ``django_db``, transaction=False)
that is rolled back at its end, so the services take their row locks and open their own atomic blocks as in
production, and every example starts from the same base data.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from accounts.models import Biller
from billing_mgmt import roles
from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.models import AuditRecord
from billruns.services import bill_create, bill_reverse, engine_biller
from disputes.models import Case, Dispute
from disputes.services import dispute_open, dispute_resolve
from payments.models import (
    Adjustment,
    AdjustmentLimit,
    AdjustmentReason,
    ExportItem,
    Payment,
    PaymentAllocation,
    Refund,
    WriteOff,
)
from payments.services import (
    adjustment_approve,
    adjustment_reject,
    adjustment_request,
    autopay_due_statements,
    payment_post,
    payment_reverse,
    refund_post,
    write_off_post,
)
from statements.models import AccountBalance, BalanceType, FinancialTransaction, Statement, StatementLine
from statements.selectors import ledger_mismatches
from statements.services import ingest_records
from tests import factories
from tests.billruns import builders as b
from tests.disputes.builders import processes

pytestmark = pytest.mark.django_db

D = Decimal
ZERO = D(0)
CSR_LIMIT = D("25.00")
EXTERNAL_REF = "SM-B-1"
Kind = FinancialTransaction.Kind
ST = Statement.Status
OPEN_STATUSES = (ST.OPEN, ST.PARTIALLY_PAID, ST.OVERDUE)

# 25 examples of 20 steps: some 500 operations in about 20 s. A deeper hunt, locally:
# LEDGER_SM_EXAMPLES=300 LEDGER_SM_STEPS=30 pytest tests/security/test_ledger_state_machine.py -s
MAX_EXAMPLES = int(os.environ.get("LEDGER_SM_EXAMPLES", "25"))
STEPS = int(os.environ.get("LEDGER_SM_STEPS", "20"))
SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)

# What the examples did, by rule and branch (printed at the end, to see what a run covered).
OUTCOMES: Counter[str] = Counter()

small_cents = st.integers(min_value=1, max_value=6_000).map(lambda c: D(c).scaleb(-2))


def _months_after(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def _q(value) -> Decimal:
    return D(value).quantize(D("0.01"))


class Base:
    """What every example starts from (created once per test, before the examples' savepoints)."""

    def __init__(self) -> None:
        processes()
        self.csr = factories.UserFactory(username="sm-csr", role=roles.CSR)
        self.supervisor = factories.UserFactory(username="sm-supervisor", role=roles.SUPERVISOR)
        self.reason = AdjustmentReason.objects.create(code="sm-goodwill", name="Goodwill", direction="both")
        AdjustmentLimit.objects.create(
            role=self.csr.groups.get(name=roles.CSR), currency="USD", max_amount=CSR_LIMIT
        )
        self.engine = engine_biller()
        self.biller = factories.BillerFactory(code="sm-external", kind=Biller.Kind.EXTERNAL)
        # A: billed by the engine (30.00 a month in advance, 10% tax); B: an external biller's customer.
        self.a = factories.AccountFactory(name="Engine customer")
        self.a.billing_profile.autopay = True
        self.a.billing_profile.save(update_fields=["autopay"])
        category, jurisdiction = b.tax("10")
        plan = b.plan()
        b.recurring(plan, "30.00", tax_category=category)
        self.today = timezone.localdate()
        b.subscription(self.a, plan, self.today.replace(day=1), jurisdiction=jurisdiction)
        self.b = factories.AccountFactory(name="External customer")
        factories.BillerReferenceFactory(account=self.b, biller=self.biller, external_ref=EXTERNAL_REF)
        self.account_ids = [self.a.pk, self.b.pk]


# --- one read of everything the invariants and the "nothing changed" checks look at -------------------------

STATEMENT_FIELDS = [
    "id", "account_id", "biller_id", "number", "external_id", "currency", "version", "statement_date",
    "period_start", "period_end", "due_date", "previous_balance", "payments", "adjustments", "new_charges",
    "taxes", "total_due", "corrects_id", "status", "disputed_amount",
]  # fmt: skip
# What a statement's version fixes (status and the disputed amount move with payments and disputes).
STATEMENT_POSTED = STATEMENT_FIELDS[:18]
LINE_FIELDS = ["id", "statement_id", "position", "line_type", "amount", "tax", "tax_included"]


class World:
    """The two accounts' ledger rows, balances, statements and lines, payments and allocations, adjustments,
    refunds, write-offs, disputes and cases, export items and the audit trail's size: a fixed handful of
    queries, whatever the number of rows."""

    def __init__(self, account_ids: list[int]) -> None:
        on = {"account_id__in": account_ids}
        self.rows = list(
            FinancialTransaction.objects.filter(**on)
            .order_by("id")
            .values(*FinancialTransaction.FROZEN_COLUMNS, "statement_id", "corrects__kind")
        )
        self.balances = sorted(
            AccountBalance.objects.filter(**on).values_list(
                "account_id", "balance_type", "currency", "amount", "transaction_count"
            )
        )
        self.statements = list(
            Statement.objects.filter(**on).order_by("statement_date", "id").values(*STATEMENT_FIELDS)
        )
        self.lines: dict[int, list[dict]] = defaultdict(list)
        for line in (
            StatementLine.objects.filter(statement__account_id__in=account_ids)
            .order_by("statement_id", "position")
            .values(*LINE_FIELDS)
        ):
            self.lines[line["statement_id"]].append(line)
        self.allocations = list(
            PaymentAllocation.objects.filter(payment__account_id__in=account_ids)
            .order_by("id")
            .values_list("id", "payment_id", "statement_id", "amount", "reversed")
        )
        self.payments = list(
            Payment.objects.filter(**on)
            .order_by("id")
            .values_list(
                "id", "account_id", "amount", "currency", "transaction_id", "idempotency_key", "unallocated",
                "status", "reversal_id", "reversal__amount", "reversal__corrects_id", "transaction__amount",
                "transaction__kind",
            )
        )  # fmt: skip
        self.adjustments = list(
            Adjustment.objects.filter(**on)
            .order_by("id")
            .values_list("id", "status", "transaction_id", "account_id", "direction", "amount",
                         "statement_id",
                         "statement_line_id", "maker_id", "transaction__amount")
        )  # fmt: skip
        self.entries = [
            (model.__name__, *row)
            for model in (Refund, WriteOff)
            for row in model.objects.filter(**on)
            .order_by("id")
            .values_list("id", "account_id", "amount", "transaction_id", "transaction__amount")
        ]
        self.disputes = list(
            Dispute.objects.filter(**on)
            .order_by("id")
            .values_list("id", "status", "amount", "approved_amount", "statement_id")
        )
        self.cases = list(Case.objects.filter(**on).order_by("id").values_list("id", "status"))
        self.exports = ExportItem.objects.filter(**on).count()
        self.audit = AuditRecord.objects.count()

    def fingerprint(self) -> dict:
        """Everything an operation may change: equal before and after a refused operation or a repeat."""
        return {
            "rows": [(r["id"], r["statement_id"]) for r in self.rows],
            "balances": self.balances,
            "statements": self.statements,
            "lines": dict(self.lines),
            "allocations": self.allocations,
            "payments": self.payments,
            "adjustments": self.adjustments,
            "entries": self.entries,
            "disputes": self.disputes,
            "cases": self.cases,
            "exports": self.exports,
            "audit": self.audit,
        }


def _frozen(row: dict) -> tuple:
    return tuple(row[c] for c in FinancialTransaction.FROZEN_COLUMNS)


def _is_charge_row(row: dict) -> bool:
    """A statement's own charge rows: its BILL rows (a replacement's difference too), or a reversing bill's
    REVERSAL of the original's BILL row."""
    return row["kind"] == Kind.BILL or (row["kind"] == Kind.REVERSAL and row["corrects__kind"] == Kind.BILL)


def _is_payment_row(row: dict) -> bool:
    return row["kind"] == Kind.PAYMENT or (
        row["kind"] == Kind.REVERSAL and row["corrects__kind"] == Kind.PAYMENT
    )


def _balance(account_id: int) -> Decimal:
    row = AccountBalance.objects.filter(account_id=account_id, balance_type=BalanceType.RECEIVABLE).first()
    return row.amount if row else ZERO


class LedgerMachine(RuleBasedStateMachine):
    base: Base  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.n = 0
        self.months = 0  # the engine's next bill-as-of month (from this month)
        self.engine_statements: list[int] = []
        self.external_statements: list[int] = []
        self.records: dict[int, dict] = {}  # statement id -> the record the biller last sent
        self.payments: list[int] = []
        self.adjustments: list[int] = []
        self.disputes: list[int] = []
        self.case_keys: list[tuple[str, int, int | None, Decimal]] = []
        # Snapshots of what was posted, taken when first seen.
        self.seen_rows: dict[int, tuple] = {}
        self.seen_row_statement: dict[int, int] = {}
        self.seen_statements: dict[int, tuple] = {}
        self.seen_payments: dict[int, tuple] = {}
        self.seen_allocations: dict[int, tuple] = {}
        self.seen_adjustments: dict[int, tuple] = {}
        self.seen_entries: dict[tuple[str, int], tuple] = {}
        self.seen_disputes: dict[int, tuple] = {}
        self.allocated_when_reversed: dict[int, set[int]] = {}
        self.reversed_bills: set[int] = set()
        self.credits: set[int] = set()  # reversing bills
        self.reversed_payments: set[int] = set()
        self.decided_adjustments: set[int] = set()
        self.decided_disputes: set[int] = set()
        self.dispute_credited: set[int] = set()  # statements an approved dispute credited

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    # --- helpers -------------------------------------------------------------------------------------------

    @property
    def ids(self) -> list[int]:
        return self.base.account_ids

    def key(self, what: str) -> str:
        self.n += 1
        return f"sm-{what}-{self.n}"

    def state(self) -> dict:
        return World(self.ids).fingerprint()

    def refused(self, call, code: str, error=ApplicationError):
        """The call is refused with ``code`` and nothing changed."""
        before = self.state()
        with pytest.raises(error) as info:
            call()
        assert info.value.code == code, (info.value.code, info.value.message, info.value.fields)
        assert self.state() == before, f"a refused operation ({code}) changed something"
        OUTCOMES[f"refused: {code}"] += 1
        return info.value

    def repeated(self, call):
        """A repeat with the same idempotency key: the first result, and nothing changed."""
        before = self.state()
        result = call()
        assert self.state() == before, "a repeat with the same idempotency key had an effect"
        OUTCOMES["repeat: one effect"] += 1
        return result

    def account(self, which: str):
        return self.base.a if which == "A" else self.base.b

    def statement_ids(self, which: str) -> list[int]:
        return self.engine_statements if which == "A" else self.external_statements

    def allocated(self, statement_id: int) -> Decimal:
        return sum(
            PaymentAllocation.objects.filter(statement_id=statement_id, reversed=False).values_list(
                "amount", flat=True
            ),
            ZERO,
        )

    # --- bills ---------------------------------------------------------------------------------------------

    @initialize(lines=st.lists(st.tuples(small_cents, st.booleans()), min_size=1, max_size=3))
    def first_bills(self, lines):
        """Every example starts with a bill on each account, so that its steps go to what happens to them."""
        self.engine_bill()
        self.push_statement(lines, None, 20)

    @precondition(lambda self: len(self.engine_statements) < 3)
    @rule()
    def engine_bill(self):
        """Bill account A now, for its next month."""
        as_of = _months_after(self.base.today, self.months)
        before = _balance(self.base.a.pk)
        result = bill_create(account=self.base.a, bill_date=self.base.today, bill_as_of=as_of)
        self.months += 1
        statement = result.statement
        assert statement.new_charges == D("30.00") and statement.taxes == D("3.00")
        assert _balance(self.base.a.pk) == before + D("33.00")
        self.engine_statements.append(statement.pk)
        OUTCOMES["engine bill"] += 1

    def _record(self, number: int, lines: list[tuple[str, Decimal, Decimal]], due_days: int) -> dict:
        statement_date = self.base.today - dt.timedelta(days=25)
        ext = f"SMX-{number}"
        return factories.statement_record(
            EXTERNAL_REF,
            ext,
            number=f"SMB-{number}",
            statement_date=statement_date.isoformat(),
            period_start=(statement_date - dt.timedelta(days=30)).isoformat(),
            period_end=(statement_date - dt.timedelta(days=1)).isoformat(),
            due_date=(statement_date + dt.timedelta(days=due_days)).isoformat(),
            lines=[
                {
                    "type": kind,
                    "product": f"Service {i}",
                    "service_identifier": f"+1555010{i}",
                    "amount": str(amount),
                    "tax": str(tax),
                    "external_id": f"{ext}-{i}",
                }
                for i, (kind, amount, tax) in enumerate(lines, start=1)
            ],  # fmt: skip
            usage=[],
        )

    @staticmethod
    def _lines(draw_lines: list[tuple[Decimal, bool]], discount: Decimal | None):
        lines = [
            ("recurring", amount, _q(amount * D("0.08") if taxed else 0)) for amount, taxed in draw_lines
        ]
        total = sum((a for _, a, _ in lines), ZERO)
        if discount is not None and total > D("0.01"):
            lines.append(("discount", -min(discount, total - D("0.01")), _q(0)))
        return lines

    @precondition(lambda self: len(self.external_statements) < 3)
    @rule(
        lines=st.lists(st.tuples(small_cents, st.booleans()), min_size=1, max_size=3),
        discount=st.none() | small_cents,
        due_days=st.integers(min_value=5, max_value=50),
    )
    def push_statement(self, lines, discount, due_days):
        """The external biller pushes a new statement of account B."""
        self.n += 1
        record = self._record(self.n, self._lines(lines, discount), due_days)
        before = _balance(self.base.b.pk)
        [result] = ingest_records(biller=self.base.biller, records=[record])
        assert (result.status, result.outcome) == ("accepted", "created"), result.as_dict()
        statement = Statement.objects.get(pk=result.id)
        assert _balance(self.base.b.pk) == before + statement.ledger_amount
        self.external_statements.append(statement.pk)
        self.records[statement.pk] = record
        OUTCOMES["statement pushed"] += 1

    @precondition(lambda self: self.external_statements)
    @rule(data=st.data())
    def push_statement_again(self, data):
        """The biller sends the same statement again: a duplicate, nothing written."""
        sid = data.draw(st.sampled_from(self.external_statements))
        statement = Statement.objects.get(pk=sid)
        record = dict(self.records[sid], status=statement.status)
        [result] = self.repeated(lambda: ingest_records(biller=self.base.biller, records=[record]))
        assert (result.status, result.id) == ("duplicate", sid), result.as_dict()

    @precondition(lambda self: self.external_statements)
    @rule(
        data=st.data(),
        lines=st.lists(st.tuples(small_cents, st.booleans()), min_size=1, max_size=3),
    )
    def replace_statement(self, data, lines):
        """The biller replaces a statement: allowed while nothing is paid, disputed or adjusted on its lines;
        the ledger gets the difference as a correction of the first row."""
        sid = data.draw(st.sampled_from(self.external_statements))
        statement = Statement.objects.get(pk=sid)
        old = self.records[sid]
        number = int(old["external_id"].removeprefix("SMX-"))
        record = self._record(number, self._lines(lines, None), 30)
        if record == old:  # the same content again is a duplicate (push_statement_again)
            return
        locked = (
            statement.status in Statement.SETTLED_STATUSES
            or statement.disputed_amount != 0
            or Adjustment.objects.filter(statement_line__statement_id=sid).exists()
        )
        if locked:
            before = self.state()
            [result] = ingest_records(biller=self.base.biller, records=[record])
            assert (result.status, result.code) == ("rejected", "statement_locked"), result.as_dict()
            assert self.state() == before
            OUTCOMES["replacement refused: statement_locked"] += 1
            return
        balance = _balance(self.base.b.pk)
        [result] = ingest_records(biller=self.base.biller, records=[record])
        assert (result.status, result.outcome) == ("accepted", "replaced"), result.as_dict()
        replaced = Statement.objects.get(pk=sid)
        assert replaced.version == statement.version + 1
        assert _balance(self.base.b.pk) == balance - statement.ledger_amount + replaced.ledger_amount
        self.records[sid] = record
        OUTCOMES["statement replaced"] += 1
        world = World(self.ids)
        [row] = [s for s in world.statements if s["id"] == sid]
        self.seen_statements[sid] = self._statement_snapshot(
            row, world.lines[sid]
        )  # the one legitimate change

    @precondition(lambda self: self.engine_statements or self.external_statements)
    @rule(data=st.data(), which=st.sampled_from(["fresh", "fresh", "any engine bill", "external"]))
    def reverse_bill(self, data, which):
        """Reverse an engine bill with a reversing bill; a second reversal, reversing a reversing bill, or an
        external biller's statement, is refused."""
        fresh = [
            pk for pk in self.engine_statements if pk not in self.reversed_bills and pk not in self.credits
        ]
        if which == "external" and self.external_statements:
            sid = data.draw(st.sampled_from(self.external_statements), label="external statement")
            self.refused(lambda: bill_reverse(statement=sid, reason="Not ours"), "not_engine_bill")
            return
        if not self.engine_statements:
            return
        sid = data.draw(st.sampled_from(fresh if which == "fresh" and fresh else self.engine_statements))
        original = Statement.objects.get(pk=sid)
        reversal = lambda: bill_reverse(statement=sid, reason="Billed by mistake")  # noqa: E731
        if original.corrects_id is not None:
            self.refused(reversal, "is_correction")
            return
        if sid in self.reversed_bills:
            self.refused(reversal, "already_reversed", Conflict)
            return
        if sid in self.dispute_credited:
            self.refused(reversal, "bill_credited", Conflict)  # a reversal would credit those charges twice
            return
        before = _balance(self.base.a.pk)
        credit = reversal()
        assert credit.corrects_id == sid
        assert (credit.new_charges, credit.taxes) == (-original.new_charges, -original.taxes)
        assert _balance(self.base.a.pk) == before - original.ledger_amount
        self.engine_statements.append(credit.pk)
        self.reversed_bills.add(sid)
        self.credits.add(credit.pk)
        OUTCOMES["bill reversed"] += 1

    # --- payments ------------------------------------------------------------------------------------------

    @rule(which=st.sampled_from(["A", "B"]), how=st.sampled_from(["part", "all", "any"]), data=st.data())
    def pay(self, which, how, data):
        """A payment (part of what is owed, all of it, or any amount), to a chosen statement or to the open
        statements oldest due first; the rest is a credit."""
        account = self.account(which)
        owed = _balance(account.pk)
        if how == "all" and owed > 0:
            amount = owed
        elif how == "part" and owed > D("0.01"):
            amount = data.draw(
                st.integers(1, int(owed * 100) - 1).map(lambda c: D(c).scaleb(-2)), label="part"
            )
        else:
            amount = data.draw(small_cents, label="amount")
        chosen = None
        if self.statement_ids(which) and data.draw(st.booleans(), label="choose a statement"):
            chosen = Statement.objects.get(pk=data.draw(st.sampled_from(self.statement_ids(which))))
        chosen_owed = ZERO
        if chosen is not None and chosen.status in OPEN_STATUSES:
            chosen_owed = max(chosen.ledger_amount - self.allocated(chosen.pk), ZERO)
        before = _balance(account.pk)
        payment, created = payment_post(
            account=account, amount=amount, currency="USD", idempotency_key=self.key("pay"),
            statement=chosen, actor=self.base.csr,
        )  # fmt: skip
        assert created and payment.amount == amount
        assert _balance(account.pk) == before - amount
        allocations = list(payment.allocations.all())
        assert sum((a.amount for a in allocations), ZERO) + payment.unallocated == amount
        assert all(a.amount > 0 for a in allocations)
        if chosen_owed:
            took = sum((a.amount for a in allocations if a.statement_id == chosen.pk), ZERO)
            assert took == min(chosen_owed, amount), "the chosen statement is settled first"
        if payment.unallocated:
            still_owed = [
                s.pk
                for s in Statement.objects.filter(account=account, status__in=OPEN_STATUSES)
                if s.ledger_amount - self.allocated(s.pk) > 0
            ]
            assert still_owed == [], "a credit was left while an open statement still owes"
        self.payments.append(payment.pk)
        OUTCOMES[
            "payment"
            + (" (chosen statement)" if chosen else "")
            + (" with credit" if payment.unallocated else "")
        ] += 1

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), how=st.sampled_from(["same", "other amount", "another account's statement"]))
    def pay_again(self, data, how):
        """The same payment submitted twice is one payment; its key with another amount, or a payment to
        another account's statement, is refused."""
        payment = Payment.objects.get(pk=data.draw(st.sampled_from(self.payments)))
        post = lambda amount, key, statement=None: payment_post(  # noqa: E731
            account=payment.account, amount=amount, currency="USD", idempotency_key=key, statement=statement,
            actor=self.base.csr,
        )  # fmt: skip
        if how == "same":
            again, created = self.repeated(lambda: post(payment.amount, payment.idempotency_key))
            assert (again.pk, created) == (payment.pk, False)
        elif how == "other amount":
            self.refused(
                lambda: post(payment.amount + D("0.01"), payment.idempotency_key),
                "idempotency_key_reused",
                Conflict,
            )
        else:
            other = (
                self.external_statements if payment.account_id == self.base.a.pk else self.engine_statements
            )
            if other:
                statement = Statement.objects.get(
                    pk=data.draw(st.sampled_from(other), label="not its statement")
                )
                self.refused(lambda: post(payment.amount, self.key("pay"), statement), "invalid")

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), again=st.booleans())
    def reverse_payment(self, data, again):
        """A payment bounces: the opposite row, its allocations taken back; a second reversal is refused."""
        posted = [pk for pk in self.payments if pk not in self.reversed_payments]
        pool = posted if posted and not (again and self.reversed_payments) else sorted(self.reversed_payments)
        payment = Payment.objects.get(pk=data.draw(st.sampled_from(pool)))
        call = lambda: payment_reverse(payment=payment, reason="Bounced", actor=self.base.csr)  # noqa: E731
        if payment.status == Payment.Status.REVERSED:
            self.refused(call, "already_reversed", Conflict)
            return
        before = _balance(payment.account_id)
        call()
        assert _balance(payment.account_id) == before + payment.amount
        assert not PaymentAllocation.objects.filter(payment=payment, reversed=False).exists()
        self.reversed_payments.add(payment.pk)
        OUTCOMES["payment reversed"] += 1

    # --- adjustments ---------------------------------------------------------------------------------------

    @rule(
        which=st.sampled_from(["A", "B"]),
        direction=st.sampled_from(["credit", "debit"]),
        amount=small_cents,
        on_line=st.booleans(),
        data=st.data(),
    )
    def adjust(self, which, direction, amount, on_line, data):
        """A CSR's adjustment (of the account, or of a statement line): within the limit it posts at once,
        above it it waits for a supervisor."""
        account = self.account(which)
        line = None
        if on_line and self.statement_ids(which):
            sid = data.draw(st.sampled_from(self.statement_ids(which)), label="statement")
            line = StatementLine.objects.filter(statement_id=sid).order_by("position").first()
        before = _balance(account.pk)
        adjustment, created = adjustment_request(
            account=account, direction=direction, amount=amount, currency="USD", reason=self.base.reason,
            idempotency_key=self.key("adj"), statement_line=line, actor=self.base.csr,
        )  # fmt: skip
        assert created
        if amount <= CSR_LIMIT:
            assert adjustment.status == Adjustment.Status.POSTED
            sign = -1 if direction == "credit" else 1
            assert _balance(account.pk) == before + sign * amount
        else:
            assert adjustment.status == Adjustment.Status.PENDING and adjustment.transaction_id is None
            assert _balance(account.pk) == before
        self.adjustments.append(adjustment.pk)
        if adjustment.status != Adjustment.Status.PENDING:
            self.decided_adjustments.add(adjustment.pk)
        OUTCOMES[f"adjustment {adjustment.status}"] += 1

    @precondition(lambda self: self.adjustments)
    @rule(data=st.data(), same=st.booleans())
    def adjust_again(self, data, same):
        """The same adjustment twice is one adjustment; its key with another amount is refused."""
        adjustment = Adjustment.objects.get(pk=data.draw(st.sampled_from(self.adjustments)))
        request = lambda amount: adjustment_request(  # noqa: E731
            account=adjustment.account, direction=adjustment.direction, amount=amount, currency="USD",
            reason=self.base.reason, idempotency_key=adjustment.idempotency_key, actor=self.base.csr,
        )  # fmt: skip
        if same:
            again, created = self.repeated(lambda: request(adjustment.amount))
            assert (again.pk, created) == (adjustment.pk, False)
        else:
            self.refused(lambda: request(adjustment.amount + 1), "idempotency_key_reused", Conflict)

    @precondition(lambda self: self.adjustments)
    @rule(data=st.data(), how=st.sampled_from(["approve", "reject", "approve", "reject", "by the CSR"]))
    def decide_adjustment(self, data, how):
        """A supervisor approves (posts) or rejects (nothing posted) a pending adjustment; a decided one is
        refused, and so is a CSR deciding."""
        pending = [pk for pk in self.adjustments if pk not in self.decided_adjustments]
        adjustment = Adjustment.objects.get(pk=data.draw(st.sampled_from(pending or self.adjustments)))
        if how == "by the CSR":
            self.refused(
                lambda: adjustment_approve(adjustment=adjustment, actor=self.base.csr), "not_a_supervisor"
            )
            return
        sup = self.base.supervisor
        if how == "approve":
            call = lambda: adjustment_approve(adjustment=adjustment, actor=sup)  # noqa: E731
        else:
            call = lambda: adjustment_reject(adjustment=adjustment, actor=sup, comment="No")  # noqa: E731
        if adjustment.status != Adjustment.Status.PENDING:
            self.refused(call, "already_decided", Conflict)
            return
        before = _balance(adjustment.account_id)
        decided = call()
        if how == "approve":
            assert decided.status == Adjustment.Status.POSTED
            assert _balance(adjustment.account_id) == before + decided.signed_amount
        else:
            assert decided.status == Adjustment.Status.REJECTED and decided.transaction_id is None
            assert _balance(adjustment.account_id) == before
        self.decided_adjustments.add(adjustment.pk)
        OUTCOMES[f"adjustment {decided.status} by a supervisor"] += 1

    # --- refunds and write-offs ----------------------------------------------------------------------------

    @rule(which=st.sampled_from(["A", "B"]), over=st.booleans(), data=st.data())
    def refund(self, which, over, data):
        """Pay back part or all of a credit; more than the credit is refused."""
        account = self.account(which)
        credit = -_balance(account.pk)
        if over or credit <= 0:
            extra = data.draw(small_cents, label="above the credit by")
            amount = max(credit, ZERO) + extra
            self.refused(
                lambda: refund_post(
                    account=account, amount=amount, currency="USD", reason="Customer asked",
                    idempotency_key=self.key("refund"), actor=self.base.csr,
                ),
                "exceeds_credit",
            )  # fmt: skip
            return
        amount = data.draw(st.integers(1, int(credit * 100)).map(lambda c: D(c).scaleb(-2)), label="refund")
        key = self.key("refund")
        refund, created = refund_post(
            account=account, amount=amount, currency="USD", reason="Customer asked", idempotency_key=key,
            actor=self.base.csr,
        )  # fmt: skip
        assert created and _balance(account.pk) == -credit + amount
        OUTCOMES["refund"] += 1
        again, created = self.repeated(
            lambda: refund_post(
                account=account, amount=amount, currency="USD", reason="Customer asked", idempotency_key=key,
                actor=self.base.csr,
            )
        )  # fmt: skip
        assert (again.pk, created) == (refund.pk, False)
        self.refused(
            lambda: refund_post(
                account=account, amount=amount + D("0.01"), currency="USD", reason="Customer asked",
                idempotency_key=key, actor=self.base.csr,
            ),
            "idempotency_key_reused",
            Conflict,
        )  # fmt: skip

    @rule(which=st.sampled_from(["A", "B"]), over=st.booleans(), data=st.data())
    def write_off(self, which, over, data):
        """A supervisor writes off part or all of what is owed; more is refused, and so is a CSR."""
        account = self.account(which)
        owed = _balance(account.pk)
        sup = self.base.supervisor
        if over or owed <= 0:
            amount = max(owed, ZERO) + data.draw(small_cents, label="above the balance by")
            self.refused(
                lambda: write_off_post(
                    account=account, amount=amount, currency="USD", reason="Uncollectable",
                    idempotency_key=self.key("wo"), actor=sup,
                ),
                "exceeds_balance",
            )  # fmt: skip
            return
        amount = data.draw(st.integers(1, int(owed * 100)).map(lambda c: D(c).scaleb(-2)), label="write-off")
        self.refused(
            lambda: write_off_post(
                account=account, amount=amount, currency="USD", reason="Uncollectable",
                idempotency_key=self.key("wo"), actor=self.base.csr,
            ),
            "not_a_supervisor",
        )  # fmt: skip
        key = self.key("wo")
        entry, created = write_off_post(
            account=account, amount=amount, currency="USD", reason="Uncollectable", idempotency_key=key,
            actor=sup,
        )  # fmt: skip
        assert created and _balance(account.pk) == owed - amount
        OUTCOMES["write-off"] += 1
        again, created = self.repeated(
            lambda: write_off_post(
                account=account, amount=amount, currency="USD", reason="Uncollectable", idempotency_key=key,
                actor=sup,
            )
        )  # fmt: skip
        assert (again.pk, created) == (entry.pk, False)
        self.refused(
            lambda: write_off_post(
                account=account, amount=amount + D("0.01"), currency="USD", reason="Uncollectable",
                idempotency_key=key, actor=sup,
            ),
            "idempotency_key_reused",
            Conflict,
        )  # fmt: skip

    # --- disputes ------------------------------------------------------------------------------------------

    @precondition(lambda self: self.engine_statements or self.external_statements)
    @rule(
        data=st.data(),
        whole=st.booleans(),
        fraction=st.sampled_from([10, 50, 100, 101]) | st.integers(min_value=1, max_value=100),
    )
    def open_dispute(self, data, whole, fraction):
        """Dispute a line (or the whole statement) for up to 120% of it: the service accepts exactly what the
        rules allow (a charge, at most the line, one open dispute per line and per whole statement, never
        more than the statement's charges not yet disputed) and refuses the rest with nothing changed."""
        sid = data.draw(st.sampled_from(self.engine_statements + self.external_statements))
        statement = Statement.objects.get(pk=sid)
        lines = list(statement.lines.order_by("position"))
        line = None if whole or not lines else data.draw(st.sampled_from(lines))
        base_amount = line.amount if line is not None else statement.ledger_amount
        amount = max(_q(abs(base_amount) * fraction / 100), D("0.01"))
        open_disputes = Dispute.objects.filter(statement=statement, status=Dispute.Status.OPEN)
        if line is not None:
            valid = (
                line.amount > 0
                and amount <= line.amount
                and not open_disputes.filter(statement_line=line).exists()
            )
        else:
            valid = (
                statement.ledger_amount > 0 and not open_disputes.filter(statement_line__isnull=True).exists()
            )
        valid = valid and amount <= statement.ledger_amount - statement.disputed_amount
        key = self.key("case")
        call = lambda: dispute_open(  # noqa: E731
            statement=statement, line=line, amount=amount, reason="Not what I ordered",
            channel=Case.Channel.CSR,
            actor=self.base.csr, idempotency_key=key,
        )  # fmt: skip
        if sid in self.reversed_bills:
            self.refused(call, "bill_reversed")  # its charges are credited already
            return
        if not valid:
            self.refused(call, "invalid")
            return
        balance = _balance(statement.account_id)
        case, created = call()
        assert created
        statement.refresh_from_db()
        assert statement.disputed_amount == sum(open_disputes.values_list("amount", flat=True), ZERO)
        assert _balance(statement.account_id) == balance  # a dispute holds the amount; it moves no money
        self.disputes.append(case.dispute.pk)
        self.case_keys.append((key, sid, line.pk if line else None, amount))
        OUTCOMES["dispute opened" + (" (whole statement)" if line is None else "")] += 1

    @precondition(lambda self: self.case_keys)
    @rule(data=st.data())
    def open_dispute_again(self, data):
        key, sid, line_id, amount = data.draw(st.sampled_from(self.case_keys))
        statement = Statement.objects.get(pk=sid)
        line = StatementLine.objects.filter(pk=line_id).first() if line_id else None
        case, created = self.repeated(
            lambda: dispute_open(
                statement=statement, line=line, amount=amount, reason="Not what I ordered",
                channel=Case.Channel.CSR, actor=self.base.csr, idempotency_key=key,
            )
        )  # fmt: skip
        assert not created and case.idempotency_key == key

    @precondition(lambda self: self.disputes)
    @rule(data=st.data(), how=st.sampled_from(["full", "part", "reject", "too_much", "csr"]))
    def resolve_dispute(self, data, how):
        """A supervisor approves a dispute in full or in part (a dispute credit) or rejects it; a decided
        dispute, a credit above the disputed amount, or a CSR deciding, is refused."""
        open_ = [pk for pk in self.disputes if pk not in self.decided_disputes]
        dispute = Dispute.objects.get(pk=data.draw(st.sampled_from(open_ or self.disputes)))
        sup = self.base.supervisor
        if how == "csr":
            self.refused(
                lambda: dispute_resolve(dispute=dispute, actor=self.base.csr, approve=True),
                "not_a_supervisor",
            )
            return
        if not dispute.is_open:
            self.refused(
                lambda: dispute_resolve(dispute=dispute, actor=sup, approve=False, note="Again"),
                "already_decided",
                Conflict,
            )
            return
        if how != "reject" and dispute.statement_id in self.reversed_bills:
            self.refused(
                lambda: dispute_resolve(dispute=dispute, actor=sup, approve=True), "bill_reversed"
            )  # the reversal credited the charges: the dispute can only be rejected
            return
        if how == "too_much":
            self.refused(
                lambda: dispute_resolve(
                    dispute=dispute, actor=sup, approve=True, amount=dispute.amount + D("0.01")
                ),
                "invalid",
            )
            return
        balance = _balance(dispute.account_id)
        if how == "reject":
            decided = dispute_resolve(dispute=dispute, actor=sup, approve=False, note="Charged as agreed")
            assert decided.status == Dispute.Status.REJECTED and decided.adjustment_id is None
            assert _balance(dispute.account_id) == balance
        else:
            credit = dispute.amount
            if how == "part" and dispute.amount > D("0.01"):
                cents_ = data.draw(st.integers(1, int(dispute.amount * 100) - 1), label="part")
                credit = D(cents_).scaleb(-2)
            decided = dispute_resolve(dispute=dispute, actor=sup, approve=True, amount=credit)
            assert decided.approved_amount == credit
            row = decided.adjustment.transaction
            assert (row.kind, row.amount) == (Kind.DISPUTE_CREDIT, -credit)
            assert _balance(dispute.account_id) == balance - credit
            self.dispute_credited.add(dispute.statement_id)
        assert Statement.objects.get(pk=dispute.statement_id).disputed_amount == sum(
            Dispute.objects.filter(statement_id=dispute.statement_id, status=Dispute.Status.OPEN).values_list(
                "amount", flat=True
            ),
            ZERO,
        )
        self.decided_disputes.add(dispute.pk)
        OUTCOMES[f"dispute resolved: {how}"] += 1

    # --- invariants ----------------------------------------------------------------------------------------

    @invariant()
    def ledger_invariants(self):
        """One read of both accounts (a dozen queries), then every check on it."""
        world = World(self.ids)
        self.check_balances(world)
        self.check_statements(world)
        self.check_payments(world)
        self.check_engine_chain(world)
        self.check_reversed_bills(world)
        self.check_nothing_posted_changed(world)

    def check_balances(self, world: World) -> None:
        """The cached balance is the sum of the rows: as the product's reconciliation sees it, and as summed
        here from the rows."""
        assert ledger_mismatches(account_ids=self.ids) == [], "cached balance != sum of ledger rows"
        sums: dict[tuple, list] = defaultdict(lambda: [ZERO, 0])
        for row in world.rows:
            total = sums[(row["account_id"], row["balance_type"])]
            total[0] += row["amount"]
            total[1] += 1
        cached = {(a, t): [amount, count] for a, t, _, amount, count in world.balances}
        assert cached == dict(sums), f"cached balances {cached} != ledger {dict(sums)}"

    def check_statements(self, world: World) -> None:
        today = timezone.localdate()
        allocated: dict[int, Decimal] = defaultdict(lambda: ZERO)
        for _, _, statement_id, amount, reversed_ in world.allocations:
            assert amount > 0, "an allocation of nothing"
            if not reversed_:
                allocated[statement_id] += amount
        held: dict[int, Decimal] = defaultdict(lambda: ZERO)
        for _, status, amount, _, statement_id in world.disputes:
            if status == Dispute.Status.OPEN:
                held[statement_id] += amount
        reversed_ids = {s["corrects_id"] for s in world.statements if s["corrects_id"]}
        charge_rows: dict[int, Decimal] = defaultdict(lambda: ZERO)
        for row in world.rows:
            if row["statement_id"] is not None and _is_charge_row(row):
                charge_rows[row["statement_id"]] += row["amount"]
        for s in world.statements:
            label, pk = f"statement {s['number']}", s["id"]
            charged = s["new_charges"] + s["taxes"]
            total = s["previous_balance"] - s["payments"] + s["adjustments"] + charged
            assert s["total_due"] == total, f"{label}: total due {s['total_due']} != {total}"
            lines = world.lines.get(pk, [])
            if lines:
                charges = sum(
                    (ln["amount"] for ln in lines if ln["line_type"] in StatementLine.CHARGE_TYPES), ZERO
                )
                taxes = sum((ln["tax"] for ln in lines), ZERO) + sum(
                    (ln["amount"] for ln in lines if ln["line_type"] == "tax" and not ln["tax_included"]),
                    ZERO,
                )
                assert (charges, taxes) == (s["new_charges"], s["taxes"]), f"{label}: its lines do not add up"
            assert charge_rows[pk] == charged, f"{label}: the ledger carries {charge_rows[pk]}, not {charged}"
            paid = allocated[pk]
            assert paid <= max(charged, ZERO), f"{label}: {paid} allocated to charges of {charged}"
            assert s["disputed_amount"] == held[pk], f"{label}: disputed {s['disputed_amount']} != {held[pk]}"
            if held[pk]:
                assert held[pk] <= charged, f"{label}: more disputed than charged"
            status = s["status"]
            if pk in reversed_ids:
                assert status == ST.PAID, f"{label} is reversed, but {status}"
            elif paid > 0:
                expected = ST.PAID if paid == charged else ST.PARTIALLY_PAID
                assert status == expected, f"{label}: {paid} of {charged} paid, but {status}"
            else:
                # An engine bill whose total due is covered by a credit is born paid.
                born_paid = (
                    status == ST.PAID and s["total_due"] <= 0 and s["biller_id"] == self.base.engine.pk
                )
                assert status in (ST.OPEN, ST.OVERDUE) or born_paid, f"{label}: nothing paid, but {status}"
            if status == ST.OVERDUE:
                assert s["due_date"] < today, f"{label} is overdue before its due date"

    def check_payments(self, world: World) -> None:
        """A payment's allocations plus its credit are its amount; a reversed one has all its allocations
        taken back and the opposite row."""
        allocations: dict[int, list[tuple]] = defaultdict(list)
        for allocation in world.allocations:
            allocations[allocation[1]].append(allocation)
        for (
            pk,
            _,
            amount,
            _,
            row_id,
            _,
            unallocated,
            status,
            reversal_id,
            back,
            corrects,
            row_amount,
            kind,
        ) in world.payments:
            mine = allocations[pk]
            assert sum((a[3] for a in mine), ZERO) + unallocated == amount, f"payment {pk} does not add up"
            assert (row_amount, kind) == (-amount, Kind.PAYMENT), (
                f"payment {pk}: its row is {kind} {row_amount}"
            )
            if status == Payment.Status.REVERSED:
                assert all(a[4] for a in mine), f"reversed payment {pk} still allocated"
                assert (back, corrects) == (amount, row_id), f"reversed payment {pk}: no opposite row"
            else:
                assert not any(a[4] for a in mine) and reversal_id is None, f"payment {pk}: half reversed"
        for pk, status, row_id, _, direction, amount, *_, row_amount in world.adjustments:
            posted = status in (Adjustment.Status.POSTED, Adjustment.Status.REVERSED)
            assert (row_id is not None) == posted, f"adjustment {pk} ({status}) and its ledger row"
            if posted:
                assert row_amount == (-amount if direction == "credit" else amount), (
                    f"adjustment {pk}: {row_amount}"
                )
        for what, pk, _, amount, _, row_amount in world.entries:
            assert row_amount == (amount if what == "Refund" else -amount), (
                f"{what} {pk}: its row is {row_amount}"
            )

    def check_engine_chain(self, world: World) -> None:
        """Account A's bills: each starts from the last one's total due and carries the rows it swept; what A
        owes is the last bill's total due plus the rows not billed yet."""
        a = self.base.a.pk
        rows = [r for r in world.rows if r["account_id"] == a]
        swept: dict[int, list[dict]] = defaultdict(list)
        for row in rows:
            if row["statement_id"] is not None and not _is_charge_row(row):
                swept[row["statement_id"]].append(row)
        previous = ZERO
        for s in (s for s in world.statements if s["account_id"] == a):
            assert s["biller_id"] == self.base.engine.pk
            assert s["previous_balance"] == previous, f"{s['number']} does not start from the last total due"
            mine = swept[s["id"]]
            payments = -sum((r["amount"] for r in mine if _is_payment_row(r)), ZERO)
            adjustments = sum((r["amount"] for r in mine if not _is_payment_row(r)), ZERO)
            assert (s["payments"], s["adjustments"]) == (payments, adjustments), (
                f"{s['number']}: not what it swept"
            )
            previous = s["total_due"]
        unbilled = sum((r["amount"] for r in rows if r["statement_id"] is None), ZERO)
        owed = sum((b[3] for b in world.balances if b[0] == a and b[1] == BalanceType.RECEIVABLE), ZERO)
        assert owed == previous + unbilled, f"A owes {owed}: last total due {previous} + unbilled {unbilled}"

    def check_reversed_bills(self, world: World) -> None:
        """A reversed bill is settled by its reversing bill: no payment is allocated to it after its reversal,
        autopay never charges it, and its reversal and dispute credits never credit more than it charged."""
        reversed_by = {s["corrects_id"]: s for s in world.statements if s["corrects_id"]}
        allocations: dict[int, set[int]] = defaultdict(set)
        for pk, _, statement_id, _, reversed_ in world.allocations:
            if not reversed_:
                allocations[statement_id].add(pk)
        for sid in reversed_by:
            before = self.allocated_when_reversed.setdefault(sid, allocations[sid])
            assert allocations[sid] <= before, f"statement {sid} took a payment after it was reversed"
        due = set(autopay_due_statements(today=self.base.today + dt.timedelta(days=400)))
        assert not due & set(reversed_by), "autopay would charge a reversed bill"
        credited: dict[int, Decimal] = defaultdict(lambda: ZERO)
        for _, status, _, approved, statement_id in world.disputes:
            if status in (Dispute.Status.APPROVED, Dispute.Status.PARTIALLY_APPROVED):
                credited[statement_id] += approved
        for sid, reversal in reversed_by.items():
            credited[sid] -= reversal["new_charges"] + reversal["taxes"]
        for s in world.statements:
            charged = s["new_charges"] + s["taxes"]
            if charged > 0:
                assert credited[s["id"]] <= charged, (
                    f"statement {s['number']}: {credited[s['id']]} credited for charges of {charged}"
                )

    def check_nothing_posted_changed(self, world: World) -> None:
        """Every posted thing as it was when first seen; statuses move forward only."""
        rows = {r["id"]: r for r in world.rows}
        for pk, frozen in self.seen_rows.items():
            assert pk in rows, f"ledger row {pk} disappeared"
            assert _frozen(rows[pk]) == frozen, f"ledger row {pk} changed"
        for pk, row in rows.items():
            self.seen_rows.setdefault(pk, _frozen(row))
            if self.seen_row_statement.get(pk) is not None:
                # A row is tied to one statement, once (its bill's own, or the bill that swept it).
                assert row["statement_id"] == self.seen_row_statement[pk], f"ledger row {pk} moved statement"
            self.seen_row_statement[pk] = row["statement_id"]
        for s in world.statements:
            snap = self._statement_snapshot(s, world.lines.get(s["id"], []))
            assert self.seen_statements.setdefault(s["id"], snap) == snap, f"statement {s['number']} changed"
        for row in world.payments:
            assert self.seen_payments.setdefault(row[0], row[:7]) == row[:7], f"payment {row[0]} changed"
        for pk, *fixed, reversed_ in world.allocations:
            first = self.seen_allocations.setdefault(pk, (tuple(fixed), reversed_))
            assert first[0] == tuple(fixed), f"allocation {pk} changed"
            assert reversed_ or not first[1], f"allocation {pk} was reversed and came back"
            self.seen_allocations[pk] = (first[0], reversed_)
        for pk, status, transaction_id, *fixed in world.adjustments:
            fixed = tuple(fixed[:-1])
            first = self.seen_adjustments.setdefault(pk, (status, transaction_id, fixed))
            assert first[2] == fixed, f"adjustment {pk} changed"
            if first[1] is not None:
                assert transaction_id == first[1], f"adjustment {pk} moved to another ledger row"
            if first[0] != Adjustment.Status.PENDING:
                assert status in (first[0], Adjustment.Status.REVERSED), (
                    f"adjustment {pk}: {first[0]}->{status}"
                )
            self.seen_adjustments[pk] = (status, transaction_id, fixed)
        for entry in world.entries:
            assert self.seen_entries.setdefault(entry[:2], entry) == entry, f"{entry[:2]} changed"
        for pk, status, amount, approved, statement_id in world.disputes:
            first = self.seen_disputes.setdefault(pk, (status, amount, approved, statement_id))
            assert (first[1], first[3]) == (amount, statement_id), f"dispute {pk} changed"
            if first[0] != Dispute.Status.OPEN:
                assert (status, approved) == (first[0], first[2]), f"decided dispute {pk} changed"
            self.seen_disputes[pk] = (status, amount, approved, statement_id)

    @staticmethod
    def _statement_snapshot(s: dict, lines: list[dict]) -> tuple:
        return (
            tuple(s[f] for f in STATEMENT_POSTED),
            tuple(
                (ln["position"], ln["line_type"], ln["amount"], ln["tax"], ln["tax_included"]) for ln in lines
            ),
        )


def test_ledger_invariants_under_random_operations():
    LedgerMachine.base = Base()
    print(
        f"\nhypothesis: max_examples={SETTINGS.max_examples} "
        f"stateful_step_count={SETTINGS.stateful_step_count} "
        f"deadline={SETTINGS.deadline}"
    )
    started = time.monotonic()
    OUTCOMES.clear()
    run_state_machine_as_test(LedgerMachine, settings=SETTINGS)
    print(f"ledger state machine: {time.monotonic() - started:.1f}s, {OUTCOMES.total()} operations:")
    for what, count in sorted(OUTCOMES.items()):
        print(f"  {count:4d}  {what}")


# --- regressions of what the machine found ----------------------------------------------------------------


def _billed_and_reversed(base: Base, *, paid: Decimal = ZERO) -> tuple[Statement, Statement]:
    bill = bill_create(account=base.a, bill_date=base.today, bill_as_of=base.today).statement
    if paid:
        payment_post(account=base.a, amount=paid, currency="USD", idempotency_key="before", actor=base.csr)
    return bill, bill_reverse(statement=bill, reason="Billed by mistake")


def test_a_reversed_bill_is_settled_by_its_reversal():
    """Found by the machine (engine bill, reverse it): the reversed bill stayed open, so the next payment was
    allocated to it and autopay would have charged it. It is paid (settled by its reversing bill), and stays
    so when a payment that was allocated to it is reversed."""
    base = Base()
    bill, _ = _billed_and_reversed(base, paid=D("5.00"))
    bill.refresh_from_db()
    assert bill.status == ST.PAID
    assert bill.pk not in autopay_due_statements(today=base.today + dt.timedelta(days=400))
    payment, _ = payment_post(account=base.a, amount=D("10.00"), currency="USD", idempotency_key="after",
                              actor=base.csr)  # fmt: skip
    assert (payment.unallocated, payment.allocations.count()) == (D("10.00"), 0)
    payment_reverse(payment=Payment.objects.get(idempotency_key="before"), reason="Bounced", actor=base.csr)
    bill.refresh_from_db()
    assert bill.status == ST.PAID
    assert ledger_mismatches(account_ids=base.account_ids) == []


def test_a_reversed_bill_is_not_credited_again_by_a_dispute():
    """Found by the machine: a dispute on a bill that was then reversed could still be approved, crediting
    the customer a second time for charges the reversal had already taken back; and a reversed bill could be
    disputed. Both are refused with nothing changed; the open dispute can still be rejected."""
    base = Base()
    bill = bill_create(account=base.a, bill_date=base.today, bill_as_of=base.today).statement
    line = bill.lines.filter(line_type=StatementLine.Type.RECURRING).get()
    case, _ = dispute_open(statement=bill, line=line, amount=D("30.00"), reason="Never ordered",
                           channel=Case.Channel.CSR, actor=base.csr)  # fmt: skip
    bill_reverse(statement=bill, reason="Billed by mistake")
    before = World(base.account_ids).fingerprint()
    with pytest.raises(ApplicationError) as approved:
        dispute_resolve(dispute=case.dispute, actor=base.supervisor, approve=True)
    assert approved.value.code == "bill_reversed"
    with pytest.raises(ApplicationError) as disputed:
        dispute_open(statement=bill, line=None, amount=D("1.00"), reason="Again", channel=Case.Channel.CSR,
                     actor=base.csr)  # fmt: skip
    assert disputed.value.code == "bill_reversed"
    assert World(base.account_ids).fingerprint() == before
    rejected = dispute_resolve(dispute=case.dispute, actor=base.supervisor, approve=False, note="Reversed")
    assert rejected.status == Dispute.Status.REJECTED
    assert _balance(base.a.pk) == ZERO


def test_a_bill_credited_by_a_dispute_is_not_reversed():
    """Found by the machine (dispute a line, approve it, reverse the bill): the reversal credited the whole
    bill again, the disputed part twice (36.00 credited for charges of 33.00). Refused, nothing changed."""
    base = Base()
    bill = bill_create(account=base.a, bill_date=base.today, bill_as_of=base.today).statement
    line = bill.lines.filter(line_type=StatementLine.Type.RECURRING).get()
    case, _ = dispute_open(statement=bill, line=line, amount=D("3.00"), reason="Roaming never used",
                           channel=Case.Channel.CSR, actor=base.csr)  # fmt: skip
    dispute_resolve(dispute=case.dispute, actor=base.supervisor, approve=True)
    before = World(base.account_ids).fingerprint()
    with pytest.raises(Conflict) as refused:
        bill_reverse(statement=bill, reason="Billed by mistake")
    assert refused.value.code == "bill_credited"
    assert World(base.account_ids).fingerprint() == before
    assert _balance(base.a.pk) == D("30.00")
