"""`manage.py load_demo`: the demo world `make run` starts with."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from accounts.models import Account, Biller, BillerApiKey, BillerReference, BillingProfile, Contact
from billing_mgmt import roles
from billing_mgmt.management.commands.load_demo import LATE_FEE, STATEMENT_MONTHS, DemoLoader, DemoStatements
from billing_mgmt.models import AuditRecord, NumberSeries
from billing_mgmt.references import dangling_references
from billruns.models import (
    BillingRun,
    BillSegment,
    CalculationLine,
    RunDefinition,
    UsageRecord,
    WalletEstimate,
)
from invoicing.models import Invoice
from statements.models import (
    AccountBalance,
    BillerBalanceSnapshot,
    FinancialTransaction,
    Statement,
    StatementLine,
    UsageSummary,
)
from statements.selectors import biller_balance_comparisons, ledger_mismatches, reconciliation_differences

pytestmark = pytest.mark.django_db

COUNTED = (
    Account, BillingProfile, Contact, Biller, BillerReference, BillerApiKey, FinancialTransaction,
    AccountBalance, AuditRecord, get_user_model(),
    Statement, StatementLine, UsageSummary, BillerBalanceSnapshot,
)  # fmt: skip


def _load(*args: str) -> str:
    out = StringIO()
    call_command("load_demo", "--force", *args, stdout=out)  # pytest-django runs with DEBUG off
    return out.getvalue()


def _counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in COUNTED}


def test_load_demo_builds_the_demo_world(django_capture_on_commit_callbacks, eager):
    with django_capture_on_commit_callbacks(execute=True):  # the demo's billing runs work after commit
        output = _load()

    assert Account.objects.count() == 50
    by_type = {t: Account.objects.filter(type=t).count() for t in Account.Type.values}
    assert by_type == {"billing_aggregator": 3, "billing": 6, "business": 20, "consumer": 21}
    assert Account.objects.filter(is_paying=False).count() == 10
    assert not Account.objects.filter(is_paying=False, parent__isnull=True).exists()
    # A hierarchy bills in one currency: every child has its parent's.
    for child in Account.objects.filter(parent__isnull=False).select_related("billing_profile", "parent"):
        assert child.billing_profile.currency == child.parent.billing_profile.currency
    assert set(BillingProfile.objects.values_list("currency", flat=True)) == {"USD", "EUR", "GBP"}
    assert set(BillingProfile.objects.values_list("language", flat=True)) == {"en", "de", "fr"}
    assert BillingProfile.objects.values("billing_frequency").distinct().count() > 1
    assert BillingProfile.objects.values("ar_classification").distinct().count() > 1
    # Every account has a primary and a billing-copy contact with e-mail and phone.
    for role in (Contact.Role.PRIMARY, Contact.Role.BILLING_COPY):
        assert Contact.objects.filter(role=role).exclude(email="").exclude(phone="").count() == 50

    assert sorted(Biller.objects.values_list("code", "kind")) == [
        ("acme", "internal"),
        ("contoso", "external"),  # pulled from the fake biller (statements/fake_biller.py)
        ("globex", "external"),
        ("northwind", "external"),
    ]
    assert BillerReference.objects.values("account").distinct().count() == 50
    # Six customers are billed by two billers; six more are also customers of the pulled biller Contoso.
    assert BillerReference.objects.count() == 56 + 6
    assert BillerReference.objects.filter(biller__code="contoso").count() == 6

    kinds = set(FinancialTransaction.objects.values_list("kind", flat=True))
    assert kinds == {"bill", "payment", "adjustment", "reversal", "wallet_topup", "wallet_debit"}
    # Billing runs: the two definitions, a completed prepaid run with its estimate, a Draft normal run.
    assert sorted(RunDefinition.objects.values_list("run_type", "active", "recurring")) == [
        ("normal", True, True),
        ("prepaid", True, True),
    ]
    prepaid = BillingRun.objects.get(run_type="prepaid")
    assert (prepaid.state, prepaid.wallet_transactions, prepaid.exception_count) == ("completed", 1, 0)
    assert WalletEstimate.objects.filter(run=prepaid).count() == 1
    assert BillingRun.objects.get(run_type="normal").state == "draft"
    assert not FinancialTransaction.objects.filter(account__is_paying=False).exists()
    assert ledger_mismatches() == []
    # Every bill of the engine has its invoice rendered, numbered without gaps.
    engine_bills = Statement.objects.filter(biller__kind="internal")
    invoices = Invoice.objects.filter(status=Invoice.Status.RENDERED)
    assert engine_bills.exists() and invoices.count() == engine_bills.count()
    assert sorted(invoices.values_list("number", flat=True)) == [
        f"INV-{n:08d}" for n in range(1, engine_bills.count() + 1)
    ]
    assert "Invoices:" in output
    # CSRs can try adjustments: reasons, and limits per role and currency.
    from payments.models import AdjustmentLimit, AdjustmentReason

    assert AdjustmentReason.objects.filter(active=True).count() == 5  # and the dispute credit's (disputes)
    # Cases: the customer's dispute of a line (held out of past due), an inquiry and an extension request from
    # the portal and a CSR, and a few on other accounts for the supervisors' queue (one overdue).
    from disputes.models import Case, Dispute

    customer_account = Contact.objects.get(user__username="customer").account
    assert Case.objects.filter(account=customer_account).count() == 3
    (dispute,) = Dispute.objects.all()
    assert (dispute.account, dispute.status, dispute.case.channel) == (customer_account, "open", "portal")
    assert dispute.statement.disputed_amount == dispute.amount
    assert Case.objects.count() == 6 and Case.objects.filter(status="resolved").count() == 1
    assert "Cases: 6 (1 with a dispute)" in output
    assert AdjustmentLimit.objects.filter(role__name=roles.CSR).count() == 3
    # Written through the services: numbered and audited.
    assert list(NumberSeries.objects.filter(code="account").values_list("prefix", flat=True)) == ["A"]
    assert AuditRecord.objects.filter(action="account.create").count() == 50
    assert AuditRecord.objects.filter(action="ledger.post").count() == FinancialTransaction.objects.count()

    users = {u.username: u for u in get_user_model().objects.prefetch_related("groups")}
    assert {name: [g.name for g in u.groups.all()] for name, u in users.items()} == {
        "csr": [roles.CSR],
        "supervisor": [roles.SUPERVISOR],
        "billing-admin": [roles.BILLING_ADMIN],
        "customer": [roles.CUSTOMER],
    }
    assert [name for name, u in users.items() if u.is_staff] == ["billing-admin"]
    assert not any(u.is_superuser for u in users.values())
    portal = Contact.objects.get(user=users["customer"])
    assert portal.role == Contact.Role.PORTAL_USER
    assert portal.account.type == Account.Type.CONSUMER

    key = BillerApiKey.objects.get()
    assert key.biller.code == "northwind"
    assert f"Authorization: Api-Key {key.prefix}." in output
    assert "csr            demo-pass-123" in output

    # One load serves every check (each load takes about twenty seconds).
    _assert_statements_through_ingest(output)
    _assert_engine_bills(output)
    _assert_idempotent_and_new_key()


def _assert_idempotent_and_new_key() -> None:
    """Loading again changes nothing (and prints no key); --new-api-key adds only a key."""
    before = _counts()
    output = _load()
    assert _counts() == before
    assert "Demo data already loaded: nothing to do." in output
    assert "Api-Key" not in output  # no new key unless asked for

    output = _load("--new-api-key")
    after = _counts()
    assert after.pop("BillerApiKey") == before.pop("BillerApiKey") + 1
    assert after.pop("AuditRecord") == before.pop("AuditRecord") + 1
    assert after == before
    assert "Authorization: Api-Key " in output


def test_demo_plan_is_the_same_for_the_same_seed():
    first = DemoLoader(seed=7).plan()

    assert DemoLoader(seed=7).plan() == first
    assert DemoLoader(seed=8).plan() != first
    assert len(first) == 50


def test_load_demo_refuses_with_debug_off_unless_forced(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="published password"):
        call_command("load_demo", stdout=StringIO())
    assert Account.objects.count() == 0
    assert get_user_model().objects.count() == 0


def _assert_statements_through_ingest(output: str) -> None:
    """Two years of statements from the two push billers, through the ingest services."""
    statements = Statement.objects.filter(biller__code__in=["northwind", "globex"]).select_related(
        "biller", "account"
    )
    accounts = {s.account for s in statements}
    assert len(accounts) == 3
    assert {s.biller.code for s in statements} == {"northwind", "globex"}  # the two push billers
    for account in accounts:
        assert statements.filter(account=account).count() == STATEMENT_MONTHS
        assert account.number in output
    assert set(statements.values_list("channel", flat=True)) == {"api"}
    line_types = StatementLine.objects.filter(statement__in=statements).values_list("line_type", flat=True)
    assert set(line_types) == {
        "recurring", "usage", "one_time", "discount", "tax",
    }  # fmt: skip
    usage = set(
        UsageSummary.objects.filter(statement__in=statements).values_list(
            "statement__biller__code", "usage_type", "unit"
        )
    )
    assert usage == {
        ("northwind", "voice", "min"), ("northwind", "data", "MB"), ("northwind", "sms", "msg"),
        ("globex", "electricity", "kWh"),
    }  # fmt: skip
    assert set(statements.values_list("status", flat=True)) >= {"paid", "partially_paid"}
    # Through the services: numbered, audited, and the ledger holds each bill and each payment at the biller.
    assert AuditRecord.objects.filter(action="statement.create").count() == statements.count()
    bills = FinancialTransaction.objects.filter(kind="bill", statement__in=statements)
    assert bills.count() == statements.count()
    assert FinancialTransaction.objects.filter(
        kind="payment", biller__code__in=["northwind", "globex"]
    ).exists()
    assert ledger_mismatches() == []

    # Each biller's balance equals the ledger, but for one account whose biller charged a fee it never sent.
    differences = reconciliation_differences()
    assert [(d.biller_amount - d.ledger_amount) for d in differences] == [LATE_FEE]
    for account in accounts:
        comparisons = biller_balance_comparisons(account_id=account.pk)
        assert len(comparisons) == 1
        assert comparisons[0].difference == (LATE_FEE if account.pk == differences[0].account_id else 0)
    assert BillerBalanceSnapshot.objects.count() == 3 * 4


def test_load_demo_adds_statements_to_an_older_demo_database(monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(DemoStatements, "targets", lambda self: [])  # as loaded before statements existed
        _load()
    pushed = Statement.objects.exclude(channel="engine")
    assert not pushed.exists()

    output = _load()

    assert pushed.count() == 3 * STATEMENT_MONTHS
    assert "Loaded 72 statements" in output
    before = _counts()
    assert "Demo data already loaded: nothing to do." in _load()
    assert _counts() == before


def _assert_engine_bills(output: str) -> None:
    """The internal biller's customers are billed by the engine."""
    engine_bills = Statement.objects.filter(channel="engine")
    assert engine_bills.count() >= 12 and "Billing engine:" in output
    assert set(engine_bills.values_list("biller__code", flat=True)) == {"acme"}  # the internal biller
    segments = BillSegment.objects.filter(status="billed")
    assert segments.exists() and all(s.statement_id for s in segments)
    lines = CalculationLine.objects.filter(segment__in=segments)
    kinds = set(lines.values_list("kind", flat=True))
    assert {"recurring", "usage", "allowance", "one_time", "discount", "tax", "credit"} <= kinds
    printed = set(
        StatementLine.objects.filter(statement__in=engine_bills).values_list("calculation_line_id", flat=True)
    )
    assert set(lines.values_list("pk", flat=True)) <= printed  # every calculation line printed on its bill
    assert (
        BillSegment.objects.filter(status="error", error_code="no_price").count() == 1
    )  # the withdrawn plan
    assert UsageRecord.objects.filter(rating__isnull=False).count() > 1000  # rated: linked to a segment
    assert ledger_mismatches() == []
    assert dangling_references() == []  # keys without a database constraint all name rows
