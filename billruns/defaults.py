"""The catalog rows every installation needs: the billing frequencies of the billing profile (same codes) and
the two billing term schemes. Created after every migrate (and after a test database flush), never changed
once there: admins may rename or deactivate them."""

from __future__ import annotations

FREQUENCIES = [
    ("monthly", "Monthly", 1),
    ("bimonthly", "Every two months", 2),
    ("quarterly", "Quarterly", 3),
    ("semiannual", "Semi-annual", 6),
    ("annual", "Annual", 12),
]
SCHEMES = [
    ("standard", "Standard post-paid", "normal"),
    ("prepaid", "Prepaid", "prepaid"),
]


def ensure_catalog_defaults(**kwargs) -> None:
    from .models import BillingFrequency, BillingTermScheme

    using = kwargs.get("using", "default")
    for code, name, months in FREQUENCIES:
        BillingFrequency.objects.using(using).get_or_create(
            code=code, defaults={"name": name, "months": months}
        )
    for code, name, kind in SCHEMES:
        BillingTermScheme.objects.using(using).get_or_create(code=code, defaults={"name": name, "kind": kind})
