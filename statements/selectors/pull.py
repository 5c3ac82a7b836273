"""Reads about pulling from billers: how fresh an account's data from each of its billers is; its refresh."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import OuterRef, Subquery

from accounts.models import Biller, BillerReference
from statements.models import AccountRefresh, AccountSync, PullRun, Statement


@dataclass
class BillerFreshness:
    """One biller of an account: how fresh what this product holds from it is."""

    biller: Biller
    reference: str
    pulled: bool  # the biller is active and pulled (a refresh asks it); otherwise it pushes, or is off
    account_success_at: dt.datetime | None  # the last successful refresh of this account from it
    biller_success_at: dt.datetime | None  # the last successful scheduled load of the whole biller
    last_statement_at: dt.datetime | None  # when the newest statement of the account from it arrived
    account_error: str  # the last refresh of this account from it failed with this (cleared on success)
    biller_error: str  # the biller's last scheduled load failed with this
    run: PullRun | None = None  # this biller's load in the refresh being shown

    @property
    def last_success_at(self) -> dt.datetime | None:
        moments = [m for m in (self.account_success_at, self.biller_success_at) if m is not None]
        return max(moments) if moments else None


def account_freshness(*, account_id: int, refresh: AccountRefresh | None = None) -> list[BillerFreshness]:
    """Every biller the account has a reference at, by name, with its freshness: one query (two with a
    refresh, whose runs come in a second)."""
    account_sync = AccountSync.objects.filter(
        account_id=OuterRef("account_id"), biller_id=OuterRef("biller_id")
    )
    newest_statement = Statement.objects.filter(
        account_id=OuterRef("account_id"), biller_id=OuterRef("biller_id")
    ).order_by("-received_at")
    references = (
        BillerReference.objects.filter(account_id=account_id)
        .select_related("biller", "biller__sync")
        .annotate(
            account_success_at=Subquery(account_sync.values("last_success_at")[:1]),
            account_error=Subquery(account_sync.values("last_error")[:1]),
            last_statement_at=Subquery(newest_statement.values("received_at")[:1]),
        )
        .order_by("biller__name", "biller_id")
    )
    runs: dict[int, PullRun] = {}
    if refresh is not None:
        for run in PullRun.objects.filter(refresh=refresh).order_by("started_at", "id"):
            runs[run.biller_id] = run  # the latest run per biller
    rows = []
    for ref in references:
        biller = ref.biller
        biller_sync = getattr(biller, "sync", None)
        rows.append(
            BillerFreshness(
                biller=biller,
                reference=ref.external_ref,
                pulled=biller.active and biller.pull_enabled,
                account_success_at=ref.account_success_at,
                biller_success_at=biller_sync.last_success_at if biller_sync else None,
                last_statement_at=ref.last_statement_at,
                account_error=ref.account_error or "",
                biller_error=biller_sync.last_error if biller_sync else "",
                run=runs.get(biller.pk),
            )
        )
    return rows


def account_refresh_latest(*, account_id: int) -> AccountRefresh | None:
    return (
        AccountRefresh.objects.filter(account_id=account_id)
        .select_related("requested_by")
        .order_by("-created_at", "-id")
        .first()
    )


def account_refresh_get(*, account_id: int, refresh_id: int) -> AccountRefresh | None:
    return (
        AccountRefresh.objects.filter(account_id=account_id, pk=refresh_id)
        .select_related("requested_by")
        .first()
    )
