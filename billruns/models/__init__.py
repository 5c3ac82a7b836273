"""What gets billed and how: the catalog (products, price plans, prices, taxes, discounts), subscriptions,
usage records, and what the rating engine makes of them (bill segments and their calculation lines).

Billing runs (F4): run definitions, runs, their steps, chunks of work, run accounts and exceptions, and
prepaid wallet estimates. The engine itself is billruns.services.rating and .billing; runs are
billruns.services.runs.
"""

from .catalog import (
    BillingFrequency,
    BillingTermScheme,
    Discount,
    PlanComponent,
    Price,
    PricePlan,
    PriceTier,
    Product,
    TaxCategory,
    TaxJurisdiction,
    TaxRate,
    UsageType,
)
from .rating import BillSegment, CalculationLine, SegmentUsage
from .runs import (
    NORMAL_STAGES,
    PREPAID_STAGES,
    BillingRun,
    RunAccount,
    RunChunk,
    RunDefinition,
    RunException,
    RunStep,
    RunType,
    Stage,
    WalletEstimate,
    stages_of,
)
from .subscriptions import RatedUsage, Subscription, UsageRecord, UsageToRate

__all__ = [
    "NORMAL_STAGES",
    "PREPAID_STAGES",
    "BillingRun",
    "RunAccount",
    "RunChunk",
    "RunDefinition",
    "RunException",
    "RunStep",
    "RunType",
    "Stage",
    "WalletEstimate",
    "stages_of",
    "BillSegment",
    "BillingFrequency",
    "BillingTermScheme",
    "CalculationLine",
    "Discount",
    "PlanComponent",
    "Price",
    "PricePlan",
    "RatedUsage",
    "SegmentUsage",
    "UsageToRate",
    "PriceTier",
    "Product",
    "Subscription",
    "TaxCategory",
    "TaxJurisdiction",
    "TaxRate",
    "UsageRecord",
    "UsageType",
]
