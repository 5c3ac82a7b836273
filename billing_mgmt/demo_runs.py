"""Demo data for billing runs: the two run definitions a billing team starts from, a prepaid customer whose
wallet a prepaid run has debited (with its estimate), and a Draft normal run for the next billing day.

``load_run_definitions`` runs inside load_demo's transaction; ``run_demo_runs`` after it commits, because a
run's work is queued after commit: it runs the Celery tasks in this process (eager) so that the demo has its
results without a worker.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone
from django_celery_beat.models import CrontabSchedule

from accounts.models import Account
from billruns.models import (
    BillingFrequency,
    BillingRun,
    BillingTermScheme,
    PlanComponent,
    Price,
    PricePlan,
    Product,
    RunDefinition,
    RunType,
    Stage,
    UsageType,
)

ACTOR = "load_demo"
PREPAID_PLAN = "demo-prepaid-USD"


@dataclass
class RunsLoad:
    definitions: int = 0
    prepaid_account: Account | None = None
    prepaid_run: BillingRun | None = None
    draft_run: BillingRun | None = None


def runs_demo_loaded() -> bool:
    return RunDefinition.objects.exists()


def _crontab(**fields) -> CrontabSchedule:
    found = CrontabSchedule.objects.filter(**fields).order_by("pk").first()
    return found or CrontabSchedule.objects.create(**fields)


def load_run_definitions() -> int:
    from billruns.services import run_definition_save

    monthly = RunDefinition(
        name="Monthly billing",
        run_type=RunType.NORMAL,
        description="Bills every post-paid account on the 1st, up to Formatting.",
        bill_as_of_day=1,
        due_proximity_min_days=-5,
        due_proximity_max_days=10,
        recurring=True,
        schedule=_crontab(minute="0", hour="2", day_of_month="1", month_of_year="*", day_of_week="*"),
        recurring_up_to=Stage.FORMATTING,
        chunk_size=200,
    )
    daily = RunDefinition(
        name="Daily prepaid",
        run_type=RunType.PREPAID,
        description="Debits prepaid wallets for the day's usage and estimates when each runs out.",
        recurring=True,
        schedule=_crontab(minute="30", hour="1", day_of_month="*", month_of_year="*", day_of_week="*"),
        estimate_wallet_consumption=True,
        chunk_size=200,
    )
    for definition in (monthly, daily):
        run_definition_save(definition=definition, actor=ACTOR)
    return 2


def _prepaid_plan() -> PricePlan:
    plan = PricePlan.objects.filter(code=PREPAID_PLAN).first()
    if plan is not None:
        return plan
    product, _ = Product.objects.get_or_create(
        code="prepaid-mobile", defaults={"name": "Prepaid mobile", "service_type": "mobile"}
    )
    plan = PricePlan.objects.create(
        code=PREPAID_PLAN,
        name="Prepaid Mobile 10",
        product=product,
        currency="USD",
        billing_term_scheme=BillingTermScheme.objects.get(code="prepaid"),
        description="Pay as you go: 10.00 a month from the wallet, calls and data by use.",
    )
    monthly = BillingFrequency.objects.get(code="monthly")
    fee = PlanComponent.objects.create(
        plan=plan, code="fee", name="Monthly fee", kind=PlanComponent.Kind.RECURRING, timing="advance"
    )
    Price.objects.create(
        component=fee, frequency=monthly, valid_from=dt.date(2024, 1, 1), amount=Decimal("10.00")
    )
    for position, (code, unit_price) in enumerate((("voice", "0.05"), ("data", "0.01")), start=1):
        usage_type = UsageType.objects.get(code=code)
        component = PlanComponent.objects.create(
            plan=plan,
            code=code,
            name=usage_type.name,
            kind=PlanComponent.Kind.USAGE,
            usage_type=usage_type,
            rating_method=PlanComponent.RatingMethod.PER_UNIT,
            position=position,
        )
        Price.objects.create(
            component=component, valid_from=dt.date(2024, 1, 1), unit_price=Decimal(unit_price)
        )
    return plan


def run_demo_runs(*, seed: int, today: dt.date | None = None) -> RunsLoad:
    """A prepaid customer with 20 days of usage, a top-up and a completed prepaid run; a Draft normal run."""
    from billing_mgmt.celery import app as celery_app
    from billruns.services import billrun_create, billrun_execute, engine_biller, wallet_topup
    from billruns.services.subscriptions import subscription_create
    from billruns.services.usage import usage_records_ingest

    load = RunsLoad()
    today = today or timezone.localdate()
    rng = random.Random(seed + 11)
    biller = engine_biller()
    account = (
        Account.objects.filter(
            biller_references__biller=biller,
            is_paying=True,
            parent__isnull=True,
            type=Account.Type.CONSUMER,
            billing_profile__currency="USD",
            subscriptions__isnull=True,
        )
        .order_by("number")
        .first()
    )
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        if account is not None and UsageType.objects.filter(code="voice").exists():
            start = today - dt.timedelta(days=20)
            subscription = subscription_create(
                account=account,
                price_plan=_prepaid_plan(),
                service_identifier=f"+{rng.randint(10**9, 10**10 - 1)}",
                start_date=start,
                frequency=BillingFrequency.objects.get(code="monthly"),
                actor=ACTOR,
            )
            wallet_topup(
                account=account,
                amount=Decimal("40.00"),
                currency="USD",
                effective_date=start,
                idempotency_key=f"demo-topup-{account.pk}",
                description="Top-up at a store",
                actor=ACTOR,
            )
            records = []
            day = start
            while day < today:
                for code, unit, (low, high) in (("voice", "min", (2, 40)), ("data", "MB", (20, 300))):
                    when = timezone.make_aware(dt.datetime.combine(day, dt.time(rng.randint(7, 22), 0)))
                    records.append(
                        {
                            "external_id": f"{subscription.service_identifier}-{code}-{day.isoformat()}",
                            "usage_type": code,
                            "quantity": str(rng.randint(low, high)),
                            "unit": unit,
                            "event_time": when.isoformat(),
                            "service_identifier": subscription.service_identifier,
                        }
                    )
                day += dt.timedelta(days=1)
            usage_records_ingest(records=records, source=biller.code, actor=ACTOR, biller=biller)
            yesterday = today - dt.timedelta(days=1)
            run = billrun_create(
                run_type=RunType.PREPAID, bill_as_of_date=yesterday, transaction_date=yesterday, actor=ACTOR
            )
            billrun_execute(run=run, up_to=Stage.POSTING, actor=ACTOR)
            run.refresh_from_db()
            load.prepaid_account, load.prepaid_run = account, run
        load.draft_run = billrun_create(actor=ACTOR)
    finally:
        celery_app.conf.task_always_eager = previous
    return load
