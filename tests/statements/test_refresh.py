"""A CSR's "Refresh from billers": the services, the task, the account page's "Data from billers" section and
its views (POST to start, a polled fragment while it runs, HX-Trigger when it is done)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse
from django.utils import timezone

from billing_mgmt import roles
from billing_mgmt.errors import ApplicationError
from statements.models import AccountRefresh, AccountSync, BillerSync, PullRun, Statement
from statements.selectors import account_freshness
from statements.services import account_refresh_request, account_refresh_run
from statements.tasks import refresh_account
from tests.factories import statement_record
from tests.pages import whole_page

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def account(account_factory):
    return account_factory(name="Ada Lovelace")


@pytest.fixture
def contoso(biller_factory, biller_reference_factory, account, fake):
    biller = biller_factory(code="contoso", name="Contoso Energy", pull_enabled=True, pull_url=fake.url)
    biller_reference_factory(biller=biller, account=account, external_ref="CE-1")
    return biller


@pytest.fixture
def pusher(biller_factory, biller_reference_factory, account):
    biller = biller_factory(code="northwind", name="Northwind Telecom")
    biller_reference_factory(biller=biller, account=account, external_ref="NW-1")
    return biller


def _refresh_url(account) -> str:
    return reverse("account-refresh", args=[account.number])


def _status_url(account, refresh) -> str:
    return reverse("account-refresh-status", args=[account.number, refresh.pk])


# -- services and task -----------------------------------------------------------------------------------


def test_a_request_queues_one_refresh_and_a_second_click_gets_the_same(
    account, contoso, csr_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        first = account_refresh_request(account=account, actor=csr_user)
        second = account_refresh_request(account=account, actor=csr_user)

    assert second == first
    assert (first.status, first.requested_by) == ("queued", csr_user)
    assert len(callbacks) == 1
    assert AccountRefresh.objects.count() == 1


def test_a_refresh_no_worker_took_is_replaced(account, contoso, csr_user):
    old = account_refresh_request(account=account, actor=csr_user)
    AccountRefresh.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(minutes=5))

    new = account_refresh_request(account=account, actor=csr_user)

    assert new != old
    old.refresh_from_db()
    assert old.status == "failed" and old.error.startswith("Abandoned")


def test_an_account_without_pulled_billers_cannot_be_refreshed(account, pusher, csr_user):
    with pytest.raises(ApplicationError) as exc:
        account_refresh_request(account=account, actor=csr_user)
    assert exc.value.code == "nothing_to_refresh"
    assert AccountRefresh.objects.count() == 0


def test_a_run_pulls_the_account_from_each_pulled_biller(
    account, contoso, pusher, fake, biller_factory, biller_reference_factory, tmp_path
):
    dropper = biller_factory(
        code="dropper", name="Dropper", pull_enabled=True, pull_kind="file_drop", drop_folder=str(tmp_path)
    )
    biller_reference_factory(biller=dropper, account=account, external_ref="DR-1")
    fake.add_records([statement_record("CE-1", "S-1", number="N-1"), statement_record("CE-9", "S-9")])
    refresh = AccountRefresh.objects.create(account=account)

    result = refresh_account(refresh_id=refresh.pk)

    assert result == {"status": "done", "refresh": refresh.pk}
    refresh.refresh_from_db()
    assert refresh.started_at <= refresh.finished_at
    runs = {run.biller.code: run for run in PullRun.objects.filter(refresh=refresh)}
    assert set(runs) == {"contoso", "dropper"}  # northwind pushes: it is not asked
    assert all(r.trigger == "account_refresh" and r.account == account for r in runs.values())
    assert (runs["contoso"].status, runs["contoso"].accepted) == ("succeeded", 1)
    assert fake.requests[-1]["query"]["account"] == "CE-1"
    assert Statement.objects.get(external_id="S-1").account == account
    assert (
        AccountSync.objects.get(account=account, biller=contoso).last_success_at
        == runs["contoso"].finished_at
    )
    assert AccountSync.objects.get(account=account, biller=dropper).last_success_at is not None
    # A drop folder has no per-account query: the whole folder was loaded, so the biller's state moved too.
    assert BillerSync.objects.get(biller=dropper).last_success_at is not None

    # Run again (a message delivered twice): nothing more happens.
    assert account_refresh_run(refresh_id=refresh.pk).status == "done"
    assert PullRun.objects.filter(refresh=refresh).count() == 2


def test_a_failing_biller_fails_the_refresh_and_says_which(account, contoso, fake):
    fake.fail_page(1, status=503)
    refresh = AccountRefresh.objects.create(account=account)

    refresh = account_refresh_run(refresh_id=refresh.pk)

    assert refresh.status == "failed"
    assert refresh.error.startswith("Contoso Energy: Page 1: HTTP 503")
    assert AccountSync.objects.get(account=account, biller=contoso).last_error.startswith("Page 1: HTTP 503")


def test_a_busy_drop_folder_gets_a_failed_run_in_the_refresh(
    account, biller_factory, biller_reference_factory
):
    dropper = biller_factory(code="dropper", pull_enabled=True, pull_kind="file_drop", drop_folder="/tmp")
    biller_reference_factory(biller=dropper, account=account, external_ref="DR-1")
    PullRun.objects.create(biller=dropper, trigger="schedule", started_at=timezone.now())
    refresh = AccountRefresh.objects.create(account=account)

    refresh = account_refresh_run(refresh_id=refresh.pk)

    assert refresh.status == "failed"
    run = PullRun.objects.get(refresh=refresh)
    assert run.status == "failed" and "already running" in run.error


# -- the views -------------------------------------------------------------------------------------------


def test_a_csr_starts_a_refresh_and_the_section_polls_until_it_is_done(
    csr_client, account, contoso, fake, eager, django_capture_on_commit_callbacks
):
    fake.add_records([statement_record("CE-1", "S-1", number="N-1")])

    with django_capture_on_commit_callbacks(execute=True):
        response = csr_client.post(_refresh_url(account), **HTMX)

    assert response.status_code == 200
    refresh = AccountRefresh.objects.get()
    body = response.content.decode()
    # Rendered before the commit ran the (eager) task: queued, polling its status every second.
    assert 'data-refresh-status="queued"' in body
    assert f'hx-get="{_status_url(account, refresh)}" hx-trigger="every 1s"' in body
    assert "HX-Trigger" not in response.headers

    status = csr_client.get(_status_url(account, refresh), **HTMX)

    assert status.status_code == 200
    assert status.headers["HX-Trigger"] == "account-changed"
    body = status.content.decode()
    assert 'data-refresh-status="done"' in body
    assert "every 1s" not in body
    assert 'data-run="succeeded"' in body
    assert "1 new or changed, 0 unchanged" in body
    assert Statement.objects.filter(account=account).count() == 1


def test_while_running_the_section_shows_progress_and_a_second_click_reuses_the_refresh(
    csr_client, account, contoso, biller_factory, biller_reference_factory, django_capture_on_commit_callbacks
):
    other = biller_factory(
        code="globex", name="Globex Utilities", pull_enabled=True, pull_url="http://x.invalid/"
    )
    biller_reference_factory(biller=other, account=account, external_ref="GX-1")
    with django_capture_on_commit_callbacks(execute=False):
        csr_client.post(_refresh_url(account), **HTMX)
    refresh = AccountRefresh.objects.get()
    now = timezone.now()
    AccountRefresh.objects.filter(pk=refresh.pk).update(status="running", started_at=now)
    PullRun.objects.create(
        biller=contoso, account=account, refresh=refresh, trigger="account_refresh", status="succeeded",
        started_at=now, finished_at=now,
    )  # fmt: skip

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = csr_client.post(_refresh_url(account), **HTMX)

    assert callbacks == []
    assert AccountRefresh.objects.count() == 1
    body = response.content.decode()
    assert "Asking billers… 1 of 2 done." in body
    assert 'data-run="succeeded"' in body and 'data-run="waiting"' in body
    assert 'hx-trigger="every 1s"' in body
    assert "Refresh from billers" not in body  # no button while it runs


def test_without_javascript_the_post_redirects_to_the_account_page(
    csr_client, account, contoso, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        response = csr_client.post(_refresh_url(account))
    assert response.status_code == 302
    assert response.url == reverse("account-detail", args=[account.number]) + "#section-freshness"
    refresh = AccountRefresh.objects.get()
    page = csr_client.get(_status_url(account, refresh))
    assert page.status_code == 200
    assert "Data from billers" in page.content.decode() and "Refresh queued" in page.content.decode()


def test_a_refresh_that_cannot_start_says_why(csr_client, account, pusher):
    response = csr_client.post(_refresh_url(account), **HTMX)
    assert response.status_code == 200
    assert "None of this account&#x27;s billers can be asked" in response.content.decode()
    assert csr_client.post(_refresh_url(account)).status_code == 409


def test_access_rules(client, account, contoso, user_factory, csr_user):
    url = _refresh_url(account)
    anonymous = client.post(url)
    assert anonymous.status_code == 302 and anonymous.url.startswith("/login/?next=")

    client.force_login(user_factory(username="customer", role=roles.CUSTOMER))
    assert client.post(url).status_code == 403

    Group.objects.get(name=roles.CSR).permissions.remove(
        Permission.objects.get(content_type__app_label="statements", codename="view_statement")
    )
    client.force_login(csr_user)
    assert client.post(url).status_code == 403
    assert AccountRefresh.objects.count() == 0


def test_wrong_method_unknown_account_and_another_accounts_refresh(
    csr_client, account, contoso, account_factory
):
    assert csr_client.get(_refresh_url(account)).status_code == 405
    assert csr_client.post(reverse("account-refresh", args=["NOPE"])).status_code == 404
    other = account_factory()
    refresh = AccountRefresh.objects.create(account=other)
    assert csr_client.get(_status_url(account, refresh), **HTMX).status_code == 404


def test_the_section_shows_each_billers_freshness(csr_client, account, contoso, pusher, fake):
    page = whole_page(csr_client, reverse("account-detail", args=[account.number]))  # the section is lazy
    assert 'id="section-freshness"' in page and "Data from billers" in page
    assert 'data-refresh-status="none"' in page
    assert page.count("Never pulled") == 1  # contoso; northwind sends its data
    assert "Sends data" in page and "NW-1" in page and "CE-1" in page
    assert 'data-action="refresh-from-billers"' in page

    fake.add_records([statement_record("CE-1", "S-1", number="N-1")])
    account_refresh_run(refresh_id=AccountRefresh.objects.create(account=account).pk)
    section_url = reverse("account-section", args=[account.number, "freshness"])
    body = csr_client.get(section_url, **HTMX).content.decode()
    assert "Never pulled" not in body
    assert "received <time" in body and "just now" in body
    assert "Refreshed just now: 1 new or changed record." in body

    AccountSync.objects.filter(biller=contoso).update(last_error="Page 1: HTTP 500 Internal Server Error")
    BillerSync.objects.filter(biller=contoso).update(last_error="")
    AccountRefresh.objects.update(finished_at=timezone.now() - dt.timedelta(hours=1))
    body = csr_client.get(section_url, **HTMX).content.decode()
    assert "Last refresh failed: Page 1: HTTP 500 Internal Server Error" in body
    assert "Failing" in body
    assert "Refreshed" not in body  # an hour-old refresh is no longer news


def test_an_account_with_no_billers_shows_an_empty_state(csr_client, account):
    body = csr_client.get(
        reverse("account-section", args=[account.number, "freshness"]), **HTMX
    ).content.decode()
    assert "No external billers." in body
    assert "Refresh from billers" not in body


def test_freshness_is_read_in_one_query_and_a_refresh_in_one_more(
    account, contoso, pusher, fake, django_assert_num_queries
):
    fake.add_records([statement_record("CE-1", "S-1", number="N-1")])
    refresh = AccountRefresh.objects.create(account=account)
    account_refresh_run(refresh_id=refresh.pk)

    with django_assert_num_queries(1):
        rows = account_freshness(account_id=account.pk)
    assert [(r.biller.code, r.pulled, r.last_statement_at is not None) for r in rows] == [
        ("contoso", True, True),
        ("northwind", False, False),
    ]
    assert rows[0].account_success_at is not None and rows[0].biller_success_at is None
    with django_assert_num_queries(2):
        rows = account_freshness(account_id=account.pk, refresh=refresh)
    assert rows[0].run.status == "succeeded" and rows[1].run is None
