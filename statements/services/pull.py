"""Collecting data from billers that do not push: the HTTP pull contract and the file drop
(docs/pull-contract.md), and a CSR's refresh of one account from its billers.

A load is not one transaction. Each page (or file) is stored and committed on its own, so what was loaded
before a failure stays (storing is idempotent: loading it again later counts duplicates) and a CSR watching
a refresh sees it progress. What keeps two loads of one biller apart is therefore a lease rather than a row
lock held for the whole load: starting a load locks the biller's sync row for a moment, checks that no load
of the same scope is running and records its PullRun as running; the PullRun is the lease, given back when
it finishes, or taken over once RUN_STALE_AFTER has passed (a worker that died mid-load).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import Account, Biller, BillerReference
from billing_mgmt.audit import audit_record
from billing_mgmt.errors import ApplicationError, Conflict, NotFound
from billing_mgmt.http_deadline import Deadline, DeadlineExceeded
from statements.dropfiles import DropFileInvalid, is_drop_file, read_drop_file
from statements.models import AccountRefresh, AccountSync, BillerSync, Channel, PullRun
from statements.records import MAX_BULK_RECORDS

from .ingest import ACCEPTED, DUPLICATE, IngestResult, ingest_records

logger = logging.getLogger(__name__)

PAGE_SIZE = 500  # records asked for per page (the contract allows up to MAX_BULK_RECORDS)
MAX_PAGE_BYTES = 64 * 1024 * 1024
MAX_PAGES = 100_000  # a guard against a biller whose cursors never end
WATERMARK_MAX_LENGTH = 200  # BillerSync.watermark / AccountSync.watermark / PullRun.watermark_*
REJECTIONS_KEPT = 50
RUN_STALE_AFTER = dt.timedelta(hours=1)
# A refresh still queued after this had no worker to run it; one running this long lost its worker.
REFRESH_QUEUED_STALE_AFTER = dt.timedelta(minutes=2)
REFRESH_RUNNING_STALE_AFTER = dt.timedelta(minutes=15)
USER_AGENT = "billing-mgmt-pull/1"

RUNNING, SUCCEEDED, FAILED = PullRun.Status.RUNNING, PullRun.Status.SUCCEEDED, PullRun.Status.FAILED


class PullError(Exception):
    """A load cannot go on: the biller is unreachable, answered an error, or a page is not the contract."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would send the Authorization header on to wherever a redirect points: refuse them (3xx fails).
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


@dataclass
class _Scope:
    """What one load covers: a whole biller, or one account at it (an account refresh)."""

    biller: Biller
    account: Account | None
    reference: str  # the account's external_ref at the biller ("" for the whole biller)

    @property
    def file_drop(self) -> bool:
        return self.biller.pull_kind == Biller.PullKind.FILE_DROP

    @property
    def biller_wide(self) -> bool:
        # A drop folder has no per-account query: even an account refresh loads the whole folder.
        return self.account is None or self.file_drop


def _actor(biller: Biller) -> str:
    return f"pull:{biller.code}"


# -- the load -------------------------------------------------------------------------------------------


def biller_pull(
    *, biller_id: int, trigger: str, account_id: int | None = None, refresh_id: int | None = None
) -> PullRun:
    """Load what changed at a biller since the last successful load (or, with ``account_id``, what changed
    for that one account) and store it. Returns the finished PullRun (succeeded or failed).

    Raises NotFound for an unknown biller, ApplicationError ``pull_disabled`` when the biller is not pulled,
    ``unknown_account`` when the account has no reference there, and Conflict ``pull_running`` when a load of
    the same scope is running. Not atomic on purpose (see the module docstring).
    """
    if trigger not in PullRun.Trigger.values:
        raise ApplicationError("Unknown trigger.", fields={"trigger": [f"'{trigger}' is not a trigger."]})
    run, scope = _run_start(
        biller_id=biller_id, trigger=trigger, account_id=account_id, refresh_id=refresh_id
    )
    try:
        watermark = _load_drop_folder(run, scope) if scope.file_drop else _load_http(run, scope)
    except PullError as exc:
        logger.warning("Pull from %s failed: %s", scope.biller.code, exc)
        return _run_failed(run, scope, str(exc))
    except Exception as exc:
        # A bug or a database failure: the run must not stay "running"; the worker logs the traceback.
        _run_failed(run, scope, f"Unexpected error: {exc!r}"[:2000])
        raise
    return _run_succeeded(run, scope, watermark)


@transaction.atomic
def _run_start(
    *, biller_id: int, trigger: str, account_id: int | None, refresh_id: int | None
) -> tuple[PullRun, _Scope]:
    biller = Biller.objects.filter(pk=biller_id).first()
    if biller is None:
        raise NotFound("No such biller.", fields={"biller_id": [f"No biller {biller_id}."]})
    if not (biller.active and biller.pull_enabled):
        raise ApplicationError(
            f"{biller.name} is not pulled: it is inactive or its pull is off.", code="pull_disabled"
        )
    reference = watermark = ""
    account = None
    if account_id is not None:
        ref = BillerReference.objects.select_related("account").filter(biller=biller, account_id=account_id)
        found = ref.first()
        if found is None:
            raise ApplicationError(
                f"The account has no reference at {biller.name}.",
                code="unknown_account",
                fields={"account_id": [f"Account {account_id} is not known to {biller.code}."]},
            )
        account, reference = found.account, found.external_ref
    scope = _Scope(biller=biller, account=account, reference=reference)

    # The lock that makes "is a load running?" and "record mine as running" one step.
    BillerSync.objects.get_or_create(biller=biller)
    sync = BillerSync.objects.select_for_update().get(biller=biller)
    account_sync = None
    if account is not None:
        account_sync, _ = AccountSync.objects.get_or_create(account=account, biller=biller)

    now = timezone.now()
    running = PullRun.objects.filter(biller=biller, status=RUNNING)
    if not scope.biller_wide:
        running = running.filter(account=account)
    elif not scope.file_drop:
        running = running.filter(account__isnull=True)
    running = list(running)
    busy = [r for r in running if r.started_at >= now - RUN_STALE_AFTER]
    if busy:
        raise Conflict(
            f"A load from {biller.name} is already running (since {busy[0].started_at:%Y-%m-%d %H:%M} UTC).",
            code="pull_running",
        )
    for stale in running:
        stale.status = FAILED
        stale.finished_at = now
        stale.error = "Abandoned: its worker stopped before the load finished."
        stale.save(update_fields=["status", "finished_at", "error"])

    if scope.biller_wide:
        watermark = sync.watermark
        sync.last_attempt_at = now
        sync.save(update_fields=["last_attempt_at"])
    if account_sync is not None:
        if not scope.file_drop:
            watermark = account_sync.watermark
        account_sync.last_attempt_at = now
        account_sync.save(update_fields=["last_attempt_at"])
    run = PullRun.objects.create(
        biller=biller,
        account=account,
        refresh_id=refresh_id,
        trigger=trigger,
        status=RUNNING,
        started_at=now,
        watermark_before=watermark,
    )
    return run, scope


@transaction.atomic
def _run_succeeded(run: PullRun, scope: _Scope, watermark: str) -> PullRun:
    now = timezone.now()
    run.status = SUCCEEDED
    run.finished_at = now
    run.watermark_after = watermark
    run.save(update_fields=["status", "finished_at", "watermark_after"])
    if scope.biller_wide:
        BillerSync.objects.filter(biller=scope.biller).update(
            watermark=watermark, last_success_at=now, last_error="", consecutive_failures=0
        )
    if scope.account is not None:
        fields: dict[str, Any] = {"last_success_at": now, "last_error": ""}
        if not scope.file_drop:
            fields["watermark"] = watermark
        AccountSync.objects.filter(account=scope.account, biller=scope.biller).update(**fields)
    return run


@transaction.atomic
def _run_failed(run: PullRun, scope: _Scope, message: str) -> PullRun:
    """The watermark stays where it was: the next load asks again from there."""
    run.status = FAILED
    run.finished_at = timezone.now()
    run.error = message
    run.watermark_after = run.watermark_before
    run.save(update_fields=["status", "finished_at", "error", "watermark_after"])
    if scope.biller_wide:
        BillerSync.objects.filter(biller=scope.biller).update(
            last_error=message, consecutive_failures=F("consecutive_failures") + 1
        )
    if scope.account is not None:
        AccountSync.objects.filter(account=scope.account, biller=scope.biller).update(last_error=message)
    return run


def _store(
    run: PullRun, scope: _Scope, records: list[Any], *, channel: str, where: dict[str, Any], lines=None
) -> None:
    """Store one page (or a part of one file) and count it on the run, committed together."""
    with transaction.atomic():
        results = ingest_records(
            biller=scope.biller, records=records, channel=channel, actor=_actor(scope.biller)
        )
        _count(run, results, where, lines)
        run.save(update_fields=["accepted", "duplicates", "rejected", "rejections", "pages"])


def _count(run: PullRun, results: list[IngestResult], where: dict[str, Any], lines=None) -> None:
    for result in results:
        if result.status == ACCEPTED:
            run.accepted += 1
        elif result.status == DUPLICATE:
            run.duplicates += 1
        else:
            entry = {**where, **result.as_dict()}
            if lines is not None and lines[result.index] is not None:
                entry["line"] = lines[result.index]
            _reject(run, entry)


def _reject(run: PullRun, entry: dict[str, Any]) -> None:
    run.rejected += 1
    if len(run.rejections) < REJECTIONS_KEPT:
        run.rejections.append(entry)


# -- HTTP -----------------------------------------------------------------------------------------------


def _load_http(run: PullRun, scope: _Scope) -> str:
    since = run.watermark_before
    cursor: str | None = None
    seen: set[str] = set()
    for number in range(1, MAX_PAGES + 1):
        page = _fetch_page(scope, since=since, cursor=cursor, number=number)
        records, next_cursor, watermark = _page_parts(page, number)
        run.pages += 1
        _store(run, scope, records, channel=Channel.PULL, where={"page": number})
        if next_cursor is None:
            return watermark
        if next_cursor in seen:
            raise PullError(
                f"Page {number} repeats an earlier cursor ({next_cursor[:100]!r}): the paging loops."
            )
        seen.add(next_cursor)
        cursor = next_cursor
    raise PullError(f"The biller sent more than {MAX_PAGES} pages in one load.")


def _changes_url(biller: Biller, params: dict[str, str]) -> str:
    return f"{biller.pull_url.rstrip('/')}/changes?{urllib.parse.urlencode(params)}"


def _where(url: str) -> str:
    """The URL for an error message: no query, and never credentials written into the URL."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def _timeout() -> float:
    """Seconds a connect, and each read, may wait for the biller (a hung biller fails the load, and frees the
    worker, after this)."""
    return float(settings.STATEMENTS_PULL_TIMEOUT_SECONDS)


def _page_deadline() -> float:
    """Seconds one page's whole exchange may take (a biller that trickles its answer, every read within the
    timeout, fails the load after this instead of holding the worker for hours)."""
    return float(settings.STATEMENTS_PULL_PAGE_DEADLINE_SECONDS)


def _fetch_page(scope: _Scope, *, since: str, cursor: str | None, number: int) -> Any:
    params = {"since": since, "limit": str(PAGE_SIZE)}
    if cursor:
        params["cursor"] = cursor
    if scope.reference:
        params["account"] = scope.reference
    url = _changes_url(scope.biller, params)
    where = _where(url)
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": USER_AGENT})
    if scope.biller.pull_auth_header:
        request.add_header("Authorization", scope.biller.pull_auth_header)
    timeout = _timeout()
    try:
        with (
            Deadline(_page_deadline()) as deadline,
            deadline.opener(_NoRedirects).open(request, timeout=timeout) as response,
        ):
            body = response.read(MAX_PAGE_BYTES + 1)
    except DeadlineExceeded as exc:
        raise PullError(f"Page {number}: no complete answer from {where} within {exc.seconds:g} s.") from None
    except urllib.error.HTTPError as exc:
        raise PullError(f"Page {number}: HTTP {exc.code} {exc.reason} from {where}{_excerpt(exc)}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise PullError(f"Page {number}: no answer from {where} within {timeout:g} s.") from None
        raise PullError(f"Page {number}: cannot reach {where}: {exc.reason}") from None
    except TimeoutError:
        raise PullError(f"Page {number}: no answer from {where} within {timeout:g} s.") from None
    except (http.client.HTTPException, OSError) as exc:
        raise PullError(f"Page {number}: the connection to {where} failed: {exc!r}") from None
    if len(body) > MAX_PAGE_BYTES:
        raise PullError(f"Page {number} from {where} is larger than {MAX_PAGE_BYTES} bytes.")
    try:
        return json.loads(body, parse_float=Decimal)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise PullError(f"Page {number} from {where} is not valid JSON: {exc}") from None


def _excerpt(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(300).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException):
        text = ""
    return f": {' '.join(text.split())[:200]}" if text else "."


def _page_parts(page: Any, number: int) -> tuple[list[Any], str | None, str]:
    """Check a page's shape before anything of it is stored."""
    if not isinstance(page, dict):
        raise PullError(f"Page {number} is not a JSON object.")
    records = page.get("records")
    if not isinstance(records, list):
        raise PullError(f"Page {number} has no 'records' list.")
    if len(records) > MAX_BULK_RECORDS:
        raise PullError(f"Page {number} has {len(records)} records; a page holds at most {MAX_BULK_RECORDS}.")
    next_cursor = page.get("next_cursor")
    if next_cursor is not None and (not isinstance(next_cursor, str) or not next_cursor):
        raise PullError(f"Page {number}: 'next_cursor' must be a non-empty string or null.")
    watermark = page.get("watermark")
    if next_cursor is None:
        if not isinstance(watermark, str):
            raise PullError(f"Page {number}, the last one, has no 'watermark' string.")
        if len(watermark) > WATERMARK_MAX_LENGTH:
            raise PullError(f"Page {number}: the watermark is longer than {WATERMARK_MAX_LENGTH} characters.")
    return records, next_cursor, watermark or ""


# -- file drop ------------------------------------------------------------------------------------------


def _load_drop_folder(run: PullRun, scope: _Scope) -> str:
    folder = Path(scope.biller.drop_folder)
    if not folder.is_dir():
        raise PullError(f"The drop folder {folder} does not exist or is not a folder.")
    try:
        paths = sorted((p for p in folder.iterdir() if is_drop_file(p)), key=lambda p: p.name)
    except OSError as exc:
        raise PullError(f"The drop folder {folder} cannot be read: {exc}") from None
    watermark = run.watermark_before
    for path in paths:
        if not path.exists():
            continue  # gone since the folder was listed
        run.pages += 1
        try:
            content = read_drop_file(path)
        except DropFileInvalid as exc:
            _move(path, folder / "failed", error=str(exc))
            _reject(
                run, {"file": path.name, "error": {"code": "bad_file", "message": str(exc), "fields": {}}}
            )
            run.save(update_fields=["rejected", "rejections", "pages"])
            continue
        for line, message in content.row_errors:
            _reject(
                run,
                {
                    "file": path.name,
                    "line": line,
                    "error": {"code": "invalid", "message": message, "fields": {}},
                },
            )
        if not content.records:
            run.save(update_fields=["rejected", "rejections", "pages"])
        for start in range(0, len(content.records), MAX_BULK_RECORDS):
            _store(
                run,
                scope,
                content.records[start : start + MAX_BULK_RECORDS],
                channel=Channel.FILE,
                where={"file": path.name},
                lines=content.lines[start : start + MAX_BULK_RECORDS],
            )
        _move(path, folder / "processed")
        watermark = path.name
    return watermark


def _move(path: Path, target_dir: Path, *, error: str | None = None) -> Path:
    try:
        target_dir.mkdir(exist_ok=True)
        target = target_dir / path.name
        if target.exists():
            target = target_dir / f"{path.stem}.{timezone.now():%Y%m%dT%H%M%S%f}{path.suffix}"
        path.replace(target)
        if error is not None:
            target.with_name(f"{target.name}.error.txt").write_text(error + "\n", encoding="utf-8")
    except OSError as exc:
        # The file's records are stored; it stays in the folder and the next load counts them as duplicates.
        raise PullError(f"{path.name} could not be moved to {target_dir}: {exc}") from None
    return target


# -- admin operations -------------------------------------------------------------------------------------


@transaction.atomic
def biller_pull_request(*, biller: Biller, actor: Any) -> None:
    """Queue a load of the biller now ("Pull now" in admin); the task skips it when one is running."""
    if not (biller.active and biller.pull_enabled):
        raise ApplicationError(
            f"{biller.name} is not pulled: it is inactive or its pull is off.", code="pull_disabled"
        )
    from statements.tasks import pull_biller  # tasks import the services: import at call time

    audit_record(actor=actor, action="biller.pull_now", obj=biller)
    biller_id = biller.pk
    transaction.on_commit(lambda: pull_biller.delay(biller_id=biller_id, trigger=PullRun.Trigger.MANUAL))


@transaction.atomic
def biller_watermark_reset(*, biller: Biller, actor: Any) -> BillerSync:
    """Forget the biller's watermark: the next load asks for everything (a full reload; what is already
    stored comes back as duplicates). Account watermarks at the biller are reset too."""
    BillerSync.objects.get_or_create(biller=biller)
    sync = BillerSync.objects.select_for_update().get(biller=biller)
    before = {"watermark": sync.watermark}
    sync.watermark = ""
    sync.save(update_fields=["watermark"])
    AccountSync.objects.filter(biller=biller).update(watermark="")
    audit_record(
        actor=actor, action="biller_sync.watermark_reset", obj=sync, before=before, after={"watermark": ""}
    )
    return sync


# -- account refresh ------------------------------------------------------------------------------------


def account_pull_billers(*, account: Account) -> list[Biller]:
    """The billers a refresh of the account asks: active, pulled, and holding a reference of the account."""
    return list(
        Biller.objects.filter(references__account=account, active=True, pull_enabled=True).order_by(
            "name", "pk"
        )
    )


def refresh_is_stale(refresh: AccountRefresh, *, now: dt.datetime | None = None) -> bool:
    now = now or timezone.now()
    if refresh.status == AccountRefresh.Status.QUEUED:
        return refresh.created_at < now - REFRESH_QUEUED_STALE_AFTER
    if refresh.status == AccountRefresh.Status.RUNNING:
        return (refresh.started_at or refresh.created_at) < now - REFRESH_RUNNING_STALE_AFTER
    return False


@transaction.atomic
def account_refresh_request(*, account: Account, actor: Any) -> AccountRefresh:
    """Ask every pulled biller of the account for its latest data (a CSR on the phone with the customer).

    Queues ``statements.refresh_account`` once the transaction commits. While a refresh of the account is
    queued or running, that refresh is returned instead of a second one.
    """
    Account.objects.select_for_update().filter(pk=account.pk).first()  # two clicks at once: one refresh
    active = (
        AccountRefresh.objects.filter(
            account=account, status__in=(AccountRefresh.Status.QUEUED, AccountRefresh.Status.RUNNING)
        )
        .order_by("-created_at", "-id")
        .first()
    )
    if active is not None and not refresh_is_stale(active):
        return active
    if not account_pull_billers(account=account):
        raise ApplicationError(
            "None of this account's billers can be asked for data: they push it, or their pull is off.",
            code="nothing_to_refresh",
        )
    if active is not None:
        _refresh_finish(active, AccountRefresh.Status.FAILED, "Abandoned: no worker finished it in time.")
    user = actor if getattr(actor, "is_authenticated", False) else None
    refresh = AccountRefresh.objects.create(account=account, requested_by=user)
    audit_record(actor=actor, action="account.refresh", obj=refresh, account_id=account.pk)
    from statements.tasks import refresh_account  # tasks import the services: import at call time

    refresh_id = refresh.pk
    transaction.on_commit(lambda: refresh_account.delay(refresh_id=refresh_id))
    return refresh


def account_refresh_run(*, refresh_id: int) -> AccountRefresh:
    """Pull the refresh's account from each of its pulled billers, one PullRun each; then done, or failed
    naming the billers that failed. Running it again for a finished refresh changes nothing.

    Not atomic: each biller's load commits as it goes, so the CSR's page shows which billers are done.
    """
    with transaction.atomic():
        refresh = (
            AccountRefresh.objects.select_for_update().select_related("account").filter(pk=refresh_id).first()
        )
        if refresh is None:
            raise NotFound("No such refresh.", fields={"refresh_id": [f"No refresh {refresh_id}."]})
        if refresh.status in (AccountRefresh.Status.DONE, AccountRefresh.Status.FAILED):
            return refresh
        if refresh.status == AccountRefresh.Status.RUNNING and not refresh_is_stale(refresh):
            return refresh  # another worker has it (a message delivered twice)
        refresh.status = AccountRefresh.Status.RUNNING
        refresh.started_at = timezone.now()
        refresh.save(update_fields=["status", "started_at"])

    errors: list[str] = []
    try:
        for biller in account_pull_billers(account=refresh.account):
            run = _refresh_pull_one(refresh, biller)
            if run.status == FAILED:
                errors.append(f"{biller.name}: {run.error}")
    except Exception as exc:
        _refresh_finish(refresh, AccountRefresh.Status.FAILED, f"Unexpected error: {exc!r}"[:2000])
        raise
    if errors:
        return _refresh_finish(refresh, AccountRefresh.Status.FAILED, "\n".join(errors))
    return _refresh_finish(refresh, AccountRefresh.Status.DONE, "")


def _refresh_pull_one(refresh: AccountRefresh, biller: Biller) -> PullRun:
    try:
        return biller_pull(
            biller_id=biller.pk,
            trigger=PullRun.Trigger.ACCOUNT_REFRESH,
            account_id=refresh.account_id,
            refresh_id=refresh.pk,
        )
    except ApplicationError as exc:
        # Busy (a folder being loaded), or switched off since the refresh was asked for: a run says so, so
        # that the CSR sees an answer for every biller.
        now = timezone.now()
        return PullRun.objects.create(
            biller=biller,
            account=refresh.account,
            refresh=refresh,
            trigger=PullRun.Trigger.ACCOUNT_REFRESH,
            status=FAILED,
            started_at=now,
            finished_at=now,
            error=exc.message,
        )


@transaction.atomic
def _refresh_finish(refresh: AccountRefresh, status: str, error: str) -> AccountRefresh:
    refresh.status = status
    refresh.error = error
    refresh.finished_at = timezone.now()
    refresh.save(update_fields=["status", "error", "finished_at"])
    return refresh
