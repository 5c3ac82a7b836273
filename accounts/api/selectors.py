"""The reads behind the accounts API, scoped to the caller: a biller sees only accounts it references."""

from __future__ import annotations

from django.db.models import BooleanField, Exists, F, OuterRef, Prefetch, QuerySet, Value

from accounts.models import Account, Biller, BillerReference


def api_accounts(*, biller: Biller | None) -> QuerySet[Account]:
    """Accounts with everything the API shows, in a fixed number of queries whatever the page size.

    ``biller`` None means a staff caller (every account, every reference). For a biller, only accounts with a
    reference at that biller, only that biller's references, only visible children, and the parent's number
    only when the parent is visible too (``parent_visible``): another tenant's numbers never leak.
    Each account carries ``parent_number``, ``visible_references`` and ``visible_children``; its
    ``balances`` (the ledger's cached balances) are prefetched.
    """
    children = Account.objects.only("id", "number", "parent_id").order_by("number")
    references = BillerReference.objects.select_related("biller").order_by("biller__code", "external_ref")
    qs = Account.objects.select_related("billing_profile").annotate(parent_number=F("parent__number"))
    if biller is None:
        qs = qs.annotate(parent_visible=Value(True, output_field=BooleanField()))
    else:
        own = BillerReference.objects.filter(biller=biller)
        qs = qs.filter(Exists(own.filter(account=OuterRef("pk")))).annotate(
            parent_visible=Exists(own.filter(account=OuterRef("parent_id")))
        )
        children = children.filter(Exists(own.filter(account=OuterRef("pk"))))
        references = references.filter(biller=biller)
    return qs.prefetch_related(
        "contacts",
        "balances",
        Prefetch("biller_references", queryset=references, to_attr="visible_references"),
        Prefetch("children", queryset=children, to_attr="visible_children"),
    )


def api_account_by_reference(*, biller: Biller, external_ref: str) -> QuerySet[Account]:
    """The (at most one) account the biller knows under ``external_ref``."""
    return api_accounts(biller=biller).filter(
        Exists(
            BillerReference.objects.filter(account=OuterRef("pk"), biller=biller, external_ref=external_ref)
        )
    )
