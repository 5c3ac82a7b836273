"""Writes of the billruns app (import them from ``billruns.services``).

* rating: the rating engine (``subscription_rate``) and its read-only parts (``rate_period``);
* billing: bill creation for one account (``bill_create``) and its preview (``bill_preview``);
* correction: reversing a bill with a corrective bill (``bill_reverse``; its invoice is a credit note);
* catalog: validation rules shared by admin forms and the API (prices, tiers, discounts);
* subscriptions: create, change and cancel subscriptions;
* usage: usage record ingest (API, CSV import) and reprocessing of rejected records;
* assembly: assembling and posting bills for one bill unit or many (``bills_assemble``);
* runs: billing runs' life cycle (create, edit, delete, execute up to a stage, resume) and the coordinator;
* run_definitions: saving run definitions with their beat schedule, and recurring runs;
* run_selection: which bill units and subscriptions a run bills (criteria and filters);
* run_work: the stages' work, chunk by chunk (claim, process, dead-letter);
* prepaid: wallet top-ups and the wallet consumption estimate.
"""

from .billing import BillResult, bill_create, bill_preview, engine_biller
from .catalog import price_plan_create
from .correction import bill_reverse
from .prepaid import wallet_estimates_refresh, wallet_topup
from .rating import RatingError, RatingResult, rate_period, subscription_rate, subscriptions_rate
from .run_definitions import billrun_create_recurring, run_definition_save
from .runs import (
    RunStateError,
    billrun_advance,
    billrun_create,
    billrun_delete,
    billrun_execute,
    billrun_resume,
    billrun_unschedule,
    billrun_update,
    run_defaults,
)
from .subscriptions import subscription_cancel, subscription_create, subscription_update

__all__ = [
    "bill_reverse",
    "RunStateError",
    "billrun_advance",
    "billrun_create",
    "billrun_create_recurring",
    "billrun_delete",
    "billrun_execute",
    "billrun_resume",
    "billrun_unschedule",
    "billrun_update",
    "run_defaults",
    "run_definition_save",
    "wallet_estimates_refresh",
    "wallet_topup",
    "BillResult",
    "RatingError",
    "RatingResult",
    "bill_create",
    "bill_preview",
    "engine_biller",
    "rate_period",
    "subscription_rate",
    "subscriptions_rate",
    "price_plan_create",
    "subscription_cancel",
    "subscription_create",
    "subscription_update",
]
