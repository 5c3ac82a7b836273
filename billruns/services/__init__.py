"""Writes of the billruns app (import them from ``billruns.services``).

* rating: the rating engine (``subscription_rate``) and its read-only parts (``rate_period``);
* billing: bill creation for one account (``bill_create``) and its preview (``bill_preview``);
* catalog: validation rules shared by admin forms and the API (prices, tiers, discounts);
* subscriptions: create, change and cancel subscriptions;
* usage: usage record ingest (API, CSV import) and reprocessing of rejected records.
"""

from .billing import BillResult, bill_create, bill_preview, engine_biller
from .catalog import price_plan_create
from .rating import RatingError, RatingResult, rate_period, subscription_rate, subscriptions_rate
from .subscriptions import subscription_cancel, subscription_create, subscription_update

__all__ = [
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
