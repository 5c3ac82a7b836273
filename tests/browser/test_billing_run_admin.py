"""A billing admin creates a billing run in Django admin, executes it up to Formatting and reads its results;
a scheduled run's page follows the run by itself (htmx polling) until it completes. Real Chromium; Celery
runs its tasks in the live server's thread (eager)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from billruns.models import BillingRun, RunException
from billruns.services import billrun_create, billrun_execute
from billruns.services.runs import billruns_start_scheduled
from tests.billruns.runs_helpers import JULY_1, customer, definition, monthly_plan, run_to

pytestmark = pytest.mark.browser
# The admin list's table is no wider than the space it has (no horizontal scrolling at desktop width).
FITS = "() => { const t = document.querySelector('#result_list'); return t.scrollWidth <= t.parentElement.clientWidth; }"  # noqa: E501


@pytest.fixture
def customers(eager, monkeypatch):
    # "Today" is July 1, 2026 for the live server too (it runs in a thread of this process): the run's
    # default bill-as-of date is that day, and three customers on a 30.00 plan since June 1 get 60.00 bills.
    monkeypatch.setattr("django.utils.timezone.localdate", lambda *args, **kwargs: JULY_1)
    definition(name="Monthly post-paid", due_proximity_default_days=3)
    plan = monthly_plan()
    return [customer(plan)[0] for _ in range(3)]


def _log_in(page, live_server) -> None:
    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_label("Username").fill("billing-admin")
    page.get_by_label("Password").fill("pass-Word-123")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Configuration")).to_be_visible()


def test_billing_admin_creates_and_executes_a_run(
    live_server, page, artifacts_dir, billing_admin_user, customers
):
    _log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/billruns/billingrun/")
    page.get_by_role("link", name="Add normal run").click()

    # The add form comes with the active definition's defaults.
    expect(page.get_by_role("heading", name="Add billing run")).to_be_visible()
    expect(page.locator(".run-add-intro")).to_contain_text("A Normal (post-paid: bills) run")
    expect(page.get_by_label("Bill as of date")).to_have_value("2026-07-01")
    expect(page.get_by_label("Transaction date")).to_have_value("2026-07-01")
    expect(page.locator("#id_due_date_proximity_days")).to_have_value("3")
    page.screenshot(path=str(artifacts_dir / "billing-run-add.png"), full_page=True)
    page.get_by_role("button", name="Save and continue editing").click()

    run = BillingRun.objects.get()
    expect(page.locator(".messagelist")).to_contain_text(f"The billing run “{run}” was added successfully.")
    actions = page.locator("#run-actions")
    expect(actions.locator("[data-run-state]")).to_have_text("Draft")
    expect(page.locator("#run-results")).to_contain_text("Not executed yet.")
    page.screenshot(path=str(artifacts_dir / "billing-run-draft.png"), full_page=True)

    # Execute up to Formatting, now.
    up_to = actions.get_by_label("Up to")
    expect(up_to.locator("option")).to_have_text(
        ["Identification & Rating", "Invoicing", "Assembling & Posting", "Formatting"]
    )
    up_to.select_option(label="Formatting")
    actions.get_by_label("Now").check()
    actions.get_by_role("button", name="Execute").click()

    expect(page.locator(".messagelist")).to_contain_text(
        f"{run.number}: executed up to Formatting: Completed."
    )
    expect(page.locator("#run-actions [data-run-state]")).to_have_text("Completed")
    results = page.locator("#run-results")
    expect(results.locator("[data-run-made]")).to_have_text("3")
    steps = results.locator("table.run-steps tbody tr[data-stage]")
    expect(steps).to_have_count(4)
    expect(steps.locator("th")).to_have_text(
        ["Identification & Rating", "Invoicing", "Assembling & Posting", "Formatting"]
    )
    for i in range(4):
        expect(steps.nth(i).locator(".step-status")).to_have_text("Done")
        expect(steps.nth(i).locator("progress")).to_have_attribute("value", "3")
    posting = steps.nth(2)
    expect(posting).to_contain_text("3 of 3")
    expect(posting).to_contain_text("3 bills posted")
    expect(posting).to_contain_text("$180.00")
    expect(results.locator("tr[data-note-for='formatting']")).to_have_count(0)  # every invoice rendered
    expect(results.locator("table.run-made tbody tr")).to_have_count(3)
    # Finished: nothing polls, no Execute form; the settings are read-only.
    expect(page.locator("[hx-trigger]")).to_have_count(0)
    expect(actions.get_by_role("button", name="Execute")).to_have_count(0)
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    page.screenshot(path=str(artifacts_dir / "billing-run-completed.png"), full_page=True)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.locator(".run-page").screenshot(path=str(artifacts_dir / "billing-run-results.png"))

    run.refresh_from_db()
    assert (run.state, run.execution, run.bills_generated) == ("completed", "idle", 3)

    # The list shows it, beside a scheduled INDIVIDUAL run, and fits a desktop screen.
    other = billrun_create(mode="individual", accounts=[customers[0]])
    billrun_execute(run=other, up_to="formatting", at=timezone.now() + dt.timedelta(hours=2))
    page.goto(f"{live_server.url}/admin/billruns/billingrun/")
    row = page.locator("#result_list tbody tr", has_text=run.number)
    expect(row.locator("td.field-state")).to_have_text("Completed")
    expect(row.locator("td.field-made")).to_have_text("3")
    assert page.evaluate(FITS), "the run list is wider than its column at desktop width"
    page.screenshot(path=str(artifacts_dir / "billing-run-list.png"), full_page=True)


def test_a_scheduled_runs_page_follows_it_until_it_completes(
    live_server, page, artifacts_dir, billing_admin_user, customers
):
    # Rated already (so its page is read-only from the start), the rest scheduled in an hour.
    run = billrun_create(bill_as_of_date=JULY_1, transaction_date=JULY_1)
    billrun_execute(run=run, up_to="rating")
    at = timezone.now() + dt.timedelta(hours=1)
    billrun_execute(run=run, up_to="formatting", at=at)
    _log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/billruns/billingrun/{run.pk}/change/")

    actions = page.locator("#run-actions")
    expect(actions.locator("[data-run-state]")).to_have_text("Identification & Rating")
    expect(actions.locator("[data-run-execution]")).to_have_text("Scheduled")
    expect(actions.get_by_role("button", name="Unschedule")).to_be_visible()
    expect(page.locator("#run-results")).to_have_attribute("aria-live", "polite")
    expect(page.locator("#run-results [hx-trigger]")).to_have_count(1)
    page.evaluate("window.__notReloaded = true")

    # Beat starts it when its time comes; the page, polling, shows the result without a reload.
    assert billruns_start_scheduled(now=at) == [run.number]
    expect(actions.locator("[data-run-state]")).to_have_text("Completed", timeout=15_000)
    expect(page.locator("#run-results table.run-steps .step-status")).to_have_text(["Done"] * 4)
    expect(page.locator("#run-results [hx-trigger]")).to_have_count(0)  # the polling stopped
    assert page.evaluate("window.__notReloaded") is True
    assert not RunException.objects.exists()
    page.screenshot(path=str(artifacts_dir / "billing-run-followed.png"), full_page=True)


def test_the_definition_form_reads_well(live_server, page, artifacts_dir, billing_admin_user, customers):
    _log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/billruns/rundefinition/")
    page.get_by_role("link", name="Monthly post-paid").click()
    expect(page.get_by_role("heading", name="Change run definition")).to_be_visible()
    expect(page.get_by_role("heading", name="Default criteria")).to_be_visible()
    page.get_by_label("Active").check()
    page.locator("#id_due_proximity_default_days").fill("20")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-due_proximity_default_days .errorlist")).to_contain_text(
        re.compile(r"The default \+20 days is outside the range \(-5 to \+10\)\.")
    )
    page.screenshot(path=str(artifacts_dir / "run-definition-error.png"), full_page=True)


def test_a_run_with_exceptions_lists_them(live_server, page, artifacts_dir, billing_admin_user, customers):
    # A fourth customer's plan is in EUR while the account bills in USD: the run bills the others.
    euro = customer(monthly_plan(currency="EUR"))[0]
    run = run_to("formatting")
    assert (run.state, run.exception_count, run.bills_generated) == ("completed_with_errors", 1, 3)
    _log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/billruns/billingrun/{run.pk}/change/")

    expect(page.locator("#run-actions [data-run-state]")).to_have_text("Completed with errors")
    section = page.locator("#run-exceptions")
    expect(section.get_by_role("heading", name="Exceptions (1)")).to_be_visible()
    row = section.locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(euro.number)
    expect(row).to_contain_text("currency_mismatch")
    expect(row).to_contain_text("the plan is in EUR; the account bills in USD")
    with page.expect_download() as download:
        section.get_by_role("link", name="Download CSV").click()
    assert download.value.suggested_filename == f"billing-run-{run.number}-exceptions.csv"
    page.locator(".run-page").screenshot(path=str(artifacts_dir / "billing-run-exceptions.png"))

    section.get_by_role("link", name="All of them in the exception list").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#changelist-filter")).to_contain_text(run.number)
    page.screenshot(path=str(artifacts_dir / "billing-run-exception-list.png"), full_page=True)
    assert page.evaluate(FITS), "the exception list is wider than its column at desktop width"

    page.goto(f"{live_server.url}/admin/billruns/runchunk/?run={run.pk}")
    # 2 chunks in each of the 3 billing stages (chunk size 2), 1 in Formatting (its own size, 100)
    expect(page.locator("#result_list tbody tr")).to_have_count(7)
    page.screenshot(path=str(artifacts_dir / "billing-run-chunk-list.png"), full_page=True)
    assert page.evaluate(FITS), "the chunk list is wider than its column at desktop width"
