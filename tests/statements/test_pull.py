"""statements.services.biller_pull: the HTTP pull contract against the fake biller over real HTTP, and the
file drop (JSON and CSV)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.models import AuditRecord
from statements.fake_biller import FakeBiller
from statements.models import (
    AccountSync,
    BillerBalanceSnapshot,
    BillerSync,
    FinancialTransaction,
    PullRun,
    Statement,
)
from statements.services import biller_pull, biller_watermark_reset
from statements.services import pull as pull_service
from statements.tasks import pull_biller
from tests.concurrency import run_in_threads
from tests.factories import statement_record

pytestmark = pytest.mark.django_db

SCHEDULE = PullRun.Trigger.SCHEDULE


@pytest.fixture
def small_pages(monkeypatch):
    monkeypatch.setattr(pull_service, "PAGE_SIZE", 2)


@pytest.fixture
def biller(biller_factory, fake):
    return biller_factory(code="contoso", name="Contoso Energy", pull_enabled=True, pull_url=fake.url)


@pytest.fixture
def refs(biller, biller_reference_factory):
    return [
        biller_reference_factory(biller=biller, external_ref="CE-1"),
        biller_reference_factory(biller=biller, external_ref="CE-2"),
    ]


def _statements(n: int, account: str = "CE-1", start: int = 1) -> list[dict]:
    return [statement_record(account, f"S-{i}", number=f"N-{i}") for i in range(start, start + n)]


def _pull(biller, **kwargs) -> PullRun:
    return biller_pull(biller_id=biller.pk, trigger=kwargs.pop("trigger", SCHEDULE), **kwargs)


def test_pages_are_loaded_and_the_watermark_advances(fake, biller, refs, small_pages):
    fake.add_records(_statements(3, "CE-1") + _statements(2, "CE-2", start=4))

    run = _pull(biller)

    assert (run.status, run.pages, run.accepted, run.duplicates, run.rejected) == ("succeeded", 3, 5, 0, 0)
    assert (run.watermark_before, run.watermark_after, run.error) == ("", "5", "")
    sync = BillerSync.objects.get(biller=biller)
    assert (sync.watermark, sync.last_error, sync.consecutive_failures) == ("5", "", 0)
    assert sync.last_success_at == run.finished_at and sync.last_attempt_at == run.started_at
    assert Statement.objects.filter(biller=biller, channel="pull").count() == 5
    assert Statement.objects.filter(account=refs[1].account).count() == 2
    queries = [r["query"] for r in fake.requests]
    assert queries[0] == {"since": "", "limit": "2"}
    assert [q.get("cursor") for q in queries] == [None, "2.2", "3.4"]
    assert all(r["headers"].get("Authorization") is None for r in fake.requests)
    # Stored records are audited as the pull's doing.
    assert AuditRecord.objects.filter(action="statement.create", actor_label="pull:contoso").count() == 5

    again = _pull(biller)
    assert (again.status, again.pages, again.accepted, again.watermark_before) == ("succeeded", 1, 0, "5")
    assert fake.requests[-1]["query"]["since"] == "5"

    fake.add_records(_statements(1, "CE-2", start=9))
    third = _pull(biller)
    assert (third.accepted, third.watermark_after) == (1, "6")
    assert BillerSync.objects.get(biller=biller).watermark == "6"


def test_a_reload_from_an_old_watermark_counts_duplicates(fake, biller, refs):
    fake.add_records(_statements(3))
    _pull(biller)
    biller_watermark_reset(biller=biller, actor="test")
    assert BillerSync.objects.get(biller=biller).watermark == ""
    assert AuditRecord.objects.filter(action="biller_sync.watermark_reset").count() == 1

    run = _pull(biller)

    assert (run.status, run.accepted, run.duplicates) == ("succeeded", 0, 3)
    assert Statement.objects.count() == 3
    assert FinancialTransaction.objects.filter(kind="bill").count() == 3


def test_a_failure_in_the_middle_keeps_the_watermark_and_the_next_run_completes(
    fake, biller, refs, small_pages
):
    fake.add_records(_statements(5))
    fake.fail_page(2, status=500)

    failed = _pull(biller)

    assert (failed.status, failed.pages, failed.accepted) == ("failed", 1, 2)
    assert failed.error.startswith("Page 2: HTTP 500")
    assert "Injected failure on page 2" in failed.error  # the biller's own message, for the admin
    assert failed.watermark_after == failed.watermark_before == ""
    sync = BillerSync.objects.get(biller=biller)
    assert (sync.watermark, sync.consecutive_failures, sync.last_success_at) == ("", 1, None)
    assert sync.last_error == failed.error
    assert Statement.objects.count() == 2  # page 1 stays stored

    fake.fail_page(1, status=502)
    assert _pull(biller).status == "failed"
    assert BillerSync.objects.get(biller=biller).consecutive_failures == 2

    done = _pull(biller)

    assert (done.status, done.accepted, done.duplicates, done.watermark_after) == ("succeeded", 3, 2, "5")
    sync.refresh_from_db()
    assert (sync.watermark, sync.consecutive_failures, sync.last_error) == ("5", 0, "")
    assert Statement.objects.count() == 5


def test_bad_json_fails_the_run(fake, biller, refs):
    fake.add_records(_statements(1))
    fake.bad_json_page(1)
    run = _pull(biller)
    assert run.status == "failed"
    assert re.match(r"Page 1 from http://127\.0\.0\.1:\d+/changes is not valid JSON", run.error)
    assert Statement.objects.count() == 0


@pytest.mark.parametrize(
    ("page", "message"),
    [
        ([1, 2], "Page 1 is not a JSON object."),
        ({"items": []}, "Page 1 has no 'records' list."),
        ({"records": [], "next_cursor": None}, "Page 1, the last one, has no 'watermark' string."),
        ({"records": [], "next_cursor": 7, "watermark": "1"}, "'next_cursor' must be a non-empty string"),
        ({"records": [], "next_cursor": None, "watermark": "x" * 201}, "longer than 200 characters"),
        ({"records": [{}] * 5001, "watermark": "1"}, "a page holds at most 5000"),
    ],
)
def test_a_page_of_the_wrong_shape_fails_the_run_before_storing(
    fake, biller, refs, monkeypatch, page, message
):
    monkeypatch.setattr(fake, "changes", lambda **kwargs: page)
    run = _pull(biller)
    assert run.status == "failed"
    assert message in run.error
    assert (run.accepted, run.rejected) == (0, 0)
    assert BillerSync.objects.get(biller=biller).watermark == ""


def test_a_cursor_that_repeats_fails_instead_of_looping(fake, biller, refs, monkeypatch):
    monkeypatch.setattr(fake, "changes", lambda **kwargs: {"records": [], "next_cursor": "2.0"})
    run = _pull(biller)
    assert run.status == "failed"
    assert "Page 2 repeats an earlier cursor" in run.error
    assert run.pages == 2


def test_the_auth_header_is_sent_and_a_refusal_fails_the_run(fake, biller, refs):
    fake.add_records(_statements(1))
    fake.auth_header = "Bearer s3cret"
    refused = _pull(biller)
    assert refused.status == "failed" and "HTTP 401" in refused.error

    biller.pull_auth_header = "Bearer s3cret"
    biller.save()
    run = _pull(biller)

    assert run.status == "succeeded" and run.accepted == 1
    assert fake.requests[-1]["headers"]["Authorization"] == "Bearer s3cret"
    assert "s3cret" not in refused.error


def test_an_unreachable_biller_and_a_slow_one_fail_with_clear_errors(fake, biller, refs, settings):
    port = fake.port
    fake.stop()
    run = _pull(biller)
    assert run.status == "failed"
    assert run.error.startswith(f"Page 1: cannot reach http://127.0.0.1:{port}/changes")

    with FakeBiller(port=0) as slow:
        slow.delay_seconds = 1
        biller.pull_url = slow.url
        biller.save()
        settings.STATEMENTS_PULL_TIMEOUT_SECONDS = 0.2
        run = _pull(biller)
    assert run.status == "failed"
    assert "no answer from" in run.error and "within 0.2 s" in run.error


def test_rejected_records_do_not_fail_the_run_and_the_first_fifty_are_kept(fake, biller, refs):
    bad = [statement_record("NOBODY", f"X-{i}", number=f"X-{i}") for i in range(60)]
    fake.add_records([*_statements(1), *bad, {"type": "statement", "account": "CE-1"}])

    run = _pull(biller)

    assert (run.status, run.accepted, run.rejected) == ("succeeded", 1, 61)
    assert len(run.rejections) == 50
    first = run.rejections[0]
    assert (first["page"], first["external_id"], first["error"]["code"]) == (1, "X-0", "unknown_account")
    assert BillerSync.objects.get(biller=biller).watermark == "62"


def test_a_disabled_biller_is_not_pulled_and_the_task_says_skipped(biller):
    biller.pull_enabled = False
    biller.save()
    with pytest.raises(ApplicationError) as exc:
        _pull(biller)
    assert exc.value.code == "pull_disabled"
    assert pull_biller(biller_id=biller.pk)["status"] == "skipped"
    assert PullRun.objects.count() == 0


def test_a_second_load_while_one_runs_is_skipped_and_an_abandoned_one_is_taken_over(fake, biller, refs):
    running = PullRun.objects.create(biller=biller, trigger=SCHEDULE, started_at=timezone.now())
    with pytest.raises(Conflict) as exc:
        _pull(biller)
    assert exc.value.code == "pull_running"
    assert pull_biller(biller_id=biller.pk) == {
        "status": "skipped",
        "reason": "pull_running",
        "message": exc.value.message,
    }
    # An account refresh is another scope: it is not blocked by the biller-wide load.
    assert _pull(biller, account_id=refs[0].account_id, trigger="account_refresh").status == "succeeded"

    PullRun.objects.filter(pk=running.pk).update(started_at=timezone.now() - dt.timedelta(hours=2))
    result = pull_biller(biller_id=biller.pk)

    assert result["status"] == "succeeded"
    running.refresh_from_db()
    assert running.status == "failed" and running.error.startswith("Abandoned")


@pytest.mark.django_db(transaction=True)
def test_two_loads_started_at_once_run_one_at_a_time(biller_factory, biller_reference_factory):
    with FakeBiller(port=0) as fake:
        biller = biller_factory(code="busy", pull_enabled=True, pull_url=fake.url)
        biller_reference_factory(biller=biller, external_ref="CE-1")
        fake.add_records(_statements(2))
        fake.delay_seconds = 0.5

        results, errors = run_in_threads(lambda i: pull_biller(biller_id=biller.pk), 2)

    assert errors == []
    assert sorted(r["status"] for r in results) == ["skipped", "succeeded"]
    assert PullRun.objects.filter(biller=biller).count() == 1
    assert Statement.objects.filter(biller=biller).count() == 2


def test_an_account_pull_asks_for_that_account_and_keeps_its_own_watermark(fake, biller, refs):
    fake.add_records(_statements(2, "CE-1") + _statements(1, "CE-2", start=3))
    account = refs[1].account

    run = _pull(biller, account_id=account.pk, trigger="account_refresh")

    assert (run.status, run.accepted, run.account_id) == ("succeeded", 1, account.pk)
    assert fake.requests[-1]["query"] == {"since": "", "limit": "500", "account": "CE-2"}
    account_sync = AccountSync.objects.get(account=account, biller=biller)
    assert (account_sync.watermark, account_sync.last_error) == ("3", "")
    assert account_sync.last_success_at == run.finished_at
    assert BillerSync.objects.get(biller=biller).watermark == ""  # the biller-wide load is still to come

    fake.fail_page(1)
    failed = _pull(biller, account_id=account.pk, trigger="account_refresh")
    assert failed.status == "failed" and failed.watermark_before == "3"
    account_sync.refresh_from_db()
    assert account_sync.last_error == failed.error and account_sync.watermark == "3"
    assert BillerSync.objects.get(biller=biller).consecutive_failures == 0


def test_an_account_without_a_reference_at_the_biller_is_refused(biller, account_factory):
    with pytest.raises(ApplicationError) as exc:
        _pull(biller, account_id=account_factory().pk, trigger="account_refresh")
    assert exc.value.code == "unknown_account"


def test_redirects_are_not_followed(biller, refs, monkeypatch):
    """The credential must not follow a redirect to another host: a 3xx fails the load."""
    import http.server
    import threading

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(302)
            self.send_header("Location", "http://example.invalid/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        biller.pull_url = f"http://127.0.0.1:{server.server_address[1]}/"
        biller.pull_auth_header = "Bearer s3cret"
        biller.save()
        run = _pull(biller)
    finally:
        server.shutdown()
        server.server_close()
    assert run.status == "failed" and "HTTP 302" in run.error


# -- file drop ------------------------------------------------------------------------------------------


@pytest.fixture
def drop(tmp_path, biller_factory, biller_reference_factory):
    biller = biller_factory(
        code="dropper", pull_enabled=True, pull_kind="file_drop", drop_folder=str(tmp_path)
    )
    biller_reference_factory(biller=biller, external_ref="CE-1")
    return biller


def _write(folder: Path, name: str, content) -> Path:
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def test_json_files_are_loaded_in_name_order_and_moved_to_processed(drop, tmp_path):
    _write(tmp_path, "002.json", _statements(1, start=2))
    _write(tmp_path, "001.json", {"records": _statements(1)})
    _write(tmp_path, ".003.json.part", _statements(1, start=3))  # still being written
    _write(tmp_path, "notes.txt", "not a drop file")

    run = _pull(drop)

    assert (run.status, run.pages, run.accepted, run.watermark_after) == ("succeeded", 2, 2, "002.json")
    assert sorted(p.name for p in (tmp_path / "processed").iterdir()) == ["001.json", "002.json"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == [".003.json.part", "notes.txt"]
    assert set(Statement.objects.values_list("external_id", "channel")) == {("S-1", "file"), ("S-2", "file")}
    assert BillerSync.objects.get(biller=drop).watermark == "002.json"
    assert [s.number for s in Statement.objects.order_by("external_id")] == ["N-1", "N-2"]

    _write(tmp_path, "001.json", {"records": _statements(1)})  # the same name again
    again = _pull(drop)
    assert (again.duplicates, again.watermark_after) == (1, "001.json")
    assert len(list((tmp_path / "processed").iterdir())) == 3


CSV_ROWS = [
    {"type": "line", "statement": "S-1", "line_type": "recurring", "product": "Standing charge",
     "quantity": "30", "unit": "day", "unit_price": "0.45", "amount": "13.50", "tax": "1.08"},
    {"type": "statement", "account": "CE-1", "external_id": "S-1", "statement_date": "2026-10-31",
     "period_start": "2026-10-01", "period_end": "2026-10-31", "due_date": "2026-11-14", "currency": "USD",
     "new_charges": "73.50", "taxes": "5.88", "total_due": "79.38"},
    {"type": "line", "statement": "S-1", "line_type": "usage", "product": "Electricity", "quantity": "240",
     "unit": "kWh", "unit_price": "0.25", "amount": "60.00", "tax": "4.80"},
    {"type": "usage", "statement": "S-1", "usage_type": "electricity", "quantity": "240", "unit": "kWh"},
    {"type": "transaction", "account": "CE-1", "external_id": "PAY-1", "kind": "payment", "amount": "79.38",
     "currency": "USD", "date": "2026-11-10", "statement": "S-1"},
    {"type": "balance", "account": "CE-1", "external_id": "BAL-1", "amount": "0.00", "currency": "USD",
     "as_of": "2026-11-11T12:00:00Z"},
    {"type": "usage", "statement": "S-0", "usage_type": "sms", "quantity": "12", "unit": "msg"},  # line 8
    {"type": "line", "statement": "S-9", "line_type": "other", "amount": "1.00"},  # line 9
    {"type": "widget"},  # line 10
]  # fmt: skip


def _csv(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(name for row in rows for name in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def test_a_csv_file_with_statement_lines_usage_transaction_and_balance(drop, tmp_path):
    _write(tmp_path, "2026-11-11.csv", "\ufeff" + _csv(CSV_ROWS))  # a byte-order mark is allowed

    run = _pull(drop)

    assert run.status == "succeeded"
    statement = Statement.objects.get(external_id="S-1")
    assert (statement.new_charges, statement.taxes, statement.total_due) == (
        Decimal("73.50"),
        Decimal("5.88"),
        Decimal("79.38"),
    )
    assert [(ln.line_type, ln.amount) for ln in statement.lines.all()] == [
        ("recurring", Decimal("13.50")),
        ("usage", Decimal("60.00")),
    ]
    assert list(statement.usage_summaries.values_list("usage_type", "quantity")) == [("electricity", 240)]
    assert FinancialTransaction.objects.get(external_id="PAY-1").amount == Decimal("-79.38")
    assert BillerBalanceSnapshot.objects.get(external_id="BAL-1").amount == 0
    # Stored: statement, payment, balance. Refused: usage of an unknown statement S-0 (by the ingest),
    # a line of a statement not in the file and an unknown row type (by the CSV reader), with their lines.
    assert (run.accepted, run.rejected) == (3, 3)
    by_line = {r["line"]: r["error"] for r in run.rejections}
    assert set(by_line) == {8, 9, 10}
    assert by_line[8]["code"] == "unknown_statement"
    assert "names no statement of this file" in by_line[9]["message"]
    assert "Unknown row type 'widget'" in by_line[10]["message"]
    assert all(r["file"] == "2026-11-11.csv" for r in run.rejections)
    assert (tmp_path / "processed" / "2026-11-11.csv").exists()


def test_the_csv_example_in_the_contract_loads(drop, tmp_path, biller_reference_factory):
    biller_reference_factory(biller=drop, external_ref="CE-000108")
    doc = (Path(__file__).resolve().parents[2] / "docs" / "pull-contract.md").read_text(encoding="utf-8")
    example = re.search(r"```csv\n(.*?)```", doc, re.S).group(1)
    _write(tmp_path, "example.csv", example)

    run = _pull(drop)

    assert (run.status, run.accepted, run.rejected) == ("succeeded", 3, 0), run.rejections
    assert Statement.objects.get(external_id="CE-2026-10-108").lines.count() == 1


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("bad.json", "{not json", "not valid JSON"),
        ("shape.json", '{"items": []}', 'holds {"records": [...]} or a list'),
        ("cols.csv", "type,acount\nbalance,CE-1\n", "Unknown CSV column(s): acount."),
        ("notype.csv", "account,amount\nCE-1,1.00\n", "no 'type' column"),
        ("empty.csv", "", "needs a header row"),
        ("latin1.csv", "type,description\ntransaction,Caf\xe9\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_a_file_that_cannot_be_read_goes_to_failed_with_the_reason(drop, tmp_path, name, content, why):
    if isinstance(content, bytes):
        (tmp_path / name).write_bytes(content)
    else:
        _write(tmp_path, name, content)
    _write(tmp_path, "zz-good.json", _statements(1))

    run = _pull(drop)

    assert (run.status, run.accepted, run.rejected, run.pages) == ("succeeded", 1, 1, 2)
    assert run.rejections[0]["file"] == name and why in run.rejections[0]["error"]["message"]
    assert (tmp_path / "failed" / name).exists()
    assert why in (tmp_path / "failed" / f"{name}.error.txt").read_text()
    assert (tmp_path / "processed" / "zz-good.json").exists()
    assert run.watermark_after == "zz-good.json"


def test_a_missing_drop_folder_fails_the_run(drop, tmp_path):
    drop.drop_folder = str(tmp_path / "nowhere")
    drop.save()
    run = _pull(drop)
    assert run.status == "failed"
    assert "does not exist" in run.error
    assert BillerSync.objects.get(biller=drop).consecutive_failures == 1


# -- admin ----------------------------------------------------------------------------------------------


def test_admin_pull_now_queues_a_load_and_reset_watermark_is_audited(
    admin_client, fake, biller, refs, django_capture_on_commit_callbacks
):
    fake.add_records(_statements(2))
    sync = BillerSync.objects.get(biller=biller)
    changelist = reverse("admin:statements_billersync_changelist")
    page = admin_client.get(changelist)
    assert page.status_code == 200 and "pull:contoso" in page.content.decode()

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(changelist, {"action": "pull_now", "_selected_action": [sync.pk]})
    assert response.status_code == 302
    assert len(callbacks) == 1
    assert AuditRecord.objects.filter(action="biller.pull_now", object_id=str(biller.pk)).count() == 1
    _pull(biller)  # what the queued task runs
    assert BillerSync.objects.get(pk=sync.pk).watermark == "2"

    admin_client.post(changelist, {"action": "reset_watermark", "_selected_action": [sync.pk]})
    assert BillerSync.objects.get(pk=sync.pk).watermark == ""
    record = AuditRecord.objects.get(action="biller_sync.watermark_reset")
    assert (record.before, record.after, record.actor_label) == (
        {"watermark": "2"},
        {"watermark": ""},
        "billing-admin",
    )


def test_admin_shows_a_failed_run_with_its_error_and_rejections(admin_client, fake, biller, refs):
    fake.add_records([statement_record("NOBODY", "X-1")])
    run = _pull(biller)
    fake.fail_page(1)
    failed = _pull(biller)

    listing = admin_client.get(reverse("admin:statements_pullrun_changelist") + "?status__exact=failed")
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 1
    assert "Page 1: HTTP 500" in listing.content.decode()
    detail = admin_client.get(reverse("admin:statements_pullrun_change", args=[run.pk])).content.decode()
    assert "unknown_account" in detail and "X-1" in detail
    assert admin_client.get(reverse("admin:statements_pullrun_change", args=[failed.pk])).status_code == 200
    assert admin_client.get(reverse("admin:statements_accountrefresh_changelist")).status_code == 200


def test_admin_actions_are_not_for_a_csr(client, csr_user, biller):
    client.force_login(csr_user)
    assert client.get(reverse("admin:statements_billersync_changelist")).status_code == 302  # not staff
