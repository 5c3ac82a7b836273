"""Admin for pulling from billers: where each pulled biller stands (read-only, with "Pull now" and "Reset
watermark"), and every load (PullRun) with its error and the records it refused. The schedule itself is the
django-celery-beat periodic task ``pull:<code>`` (linked from here), edited in that app's admin."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from billing_mgmt.admin import ReadOnlyAdmin
from billing_mgmt.errors import ApplicationError
from statements.models import AccountRefresh, BillerSync, PullRun
from statements.services import biller_pull_request, biller_watermark_reset


def _short(text: str, length: int = 80) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= length else text[: length - 1] + "…"


@admin.register(BillerSync)
class BillerSyncAdmin(ReadOnlyAdmin):
    list_display = (
        "biller",
        "watermark",
        "last_attempt_at",
        "last_success_at",
        "consecutive_failures",
        "error",
        "schedule",
    )
    list_select_related = ("biller", "periodic_task")
    list_filter = ("biller__pull_kind", "biller__pull_enabled")
    search_fields = ("biller__code", "biller__name")
    fields = (
        "biller",
        "watermark",
        "last_attempt_at",
        "last_success_at",
        "consecutive_failures",
        "last_error",
        "schedule",
        "recent_runs",
    )
    actions = ["pull_now", "reset_watermark"]

    def has_pull_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("statements.change_billersync")

    @admin.display(description="Last error")
    def error(self, obj: BillerSync) -> str:
        return _short(obj.last_error) or "-"

    @admin.display(description="Schedule")
    def schedule(self, obj: BillerSync) -> str:
        task = obj.periodic_task
        if task is None:
            return "-"
        url = reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])
        when = task.crontab or task.interval or task.solar or task.clocked
        state = "" if task.enabled else " (disabled)"
        return format_html('<a href="{}">{}</a>: {}{}', url, task.name, str(when or "-"), state)

    @admin.display(description="Loads")
    def recent_runs(self, obj: BillerSync) -> str:
        url = reverse("admin:statements_pullrun_changelist") + f"?biller__id__exact={obj.biller_id}"
        return format_html('<a href="{}">Loads from {}</a>', url, obj.biller)

    @admin.action(description="Pull now (queue a load of the selected billers)", permissions=["pull"])
    def pull_now(self, request: HttpRequest, queryset) -> None:
        for sync in queryset.select_related("biller"):
            try:
                biller_pull_request(biller=sync.biller, actor=request.user)
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"A load of {sync.biller} is queued.", messages.SUCCESS)

    @admin.action(
        description="Reset watermark (the next load asks for everything again)", permissions=["pull"]
    )
    def reset_watermark(self, request: HttpRequest, queryset) -> None:
        for sync in queryset.select_related("biller"):
            biller_watermark_reset(biller=sync.biller, actor=request.user)
            self.message_user(
                request,
                f"The watermark of {sync.biller} is reset: its next load is a full reload.",
                messages.SUCCESS,
            )


@admin.register(PullRun)
class PullRunAdmin(ReadOnlyAdmin):
    list_display = (
        "started_at",
        "biller",
        "account",
        "trigger",
        "status",
        "pages",
        "accepted",
        "duplicates",
        "rejected",
        "finished_at",
        "error_summary",
    )
    list_select_related = ("biller", "account")
    list_filter = ("status", "trigger", "biller")
    search_fields = ("=account__number", "biller__code", "error")
    date_hierarchy = "started_at"
    show_full_result_count = False
    fields = (
        "biller",
        "account",
        "refresh",
        "trigger",
        "status",
        "started_at",
        "finished_at",
        "watermark_before",
        "watermark_after",
        "pages",
        "accepted",
        "duplicates",
        "rejected",
        "error",
        "rejections_shown",
    )

    def lookup_allowed(self, lookup, value, request=None):
        if lookup in ("biller__id__exact", "account__id__exact", "refresh__id__exact"):
            return True
        return super().lookup_allowed(lookup, value, request)

    @admin.display(description="Error")
    def error_summary(self, obj: PullRun) -> str:
        return _short(obj.error) or "-"

    @admin.display(description="Refused records (the first 50)")
    def rejections_shown(self, obj: PullRun) -> str:
        if not obj.rejections:
            return "-"
        return format_html("<pre>{}</pre>", json.dumps(obj.rejections, indent=2, ensure_ascii=False))


@admin.register(AccountRefresh)
class AccountRefreshAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "account", "requested_by", "status", "started_at", "finished_at", "loads")
    list_select_related = ("account", "requested_by")
    list_filter = ("status",)
    search_fields = ("=account__number",)
    date_hierarchy = "created_at"

    @admin.display(description="Loads")
    def loads(self, obj: AccountRefresh) -> str:
        url = reverse("admin:statements_pullrun_changelist") + f"?refresh__id__exact={obj.pk}"
        return format_html('<a href="{}">Loads</a>', url)
