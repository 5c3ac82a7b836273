"""What gets billed and how: the catalog (products, price plans, prices, taxes, discounts), subscriptions,
usage records, and what the rating engine makes of them (bill segments and their calculation lines).

Billing runs (F4) arrive beside these; the engine itself is billruns.services.rating and .billing.
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
from .rating import BillSegment, CalculationLine
from .subscriptions import Subscription, UsageRecord

__all__ = [
    "BillSegment",
    "BillingFrequency",
    "BillingTermScheme",
    "CalculationLine",
    "Discount",
    "PlanComponent",
    "Price",
    "PricePlan",
    "PriceTier",
    "Product",
    "Subscription",
    "TaxCategory",
    "TaxJurisdiction",
    "TaxRate",
    "UsageRecord",
    "UsageType",
]
