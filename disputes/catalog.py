"""The service processes the catalog starts with (source 002's Help Center), used by the migration that
seeds them and by ``ensure_default_processes`` (demo data, tests after a flush). Plain data: the migration
imports it without importing the models."""

from __future__ import annotations

DEFAULT_PROCESSES = [
    # code, name, action, queue, service-level hours, position, description
    ("billing-inquiry", "Billing inquiry", "inquiry", "Billing", 48, 10,
     "A question about a bill, a charge, a payment or your balance."),
    ("charge-dispute", "Dispute a charge", "charge_dispute", "Disputes", 120, 20,
     "A charge on a statement is wrong. The disputed amount is held out of what is past due while we look "
     "into it; if we agree, the account is credited."),
    ("extend-due-date", "Extend invoice due date", "extend_due_date", "Billing", 48, 30,
     "More time to pay a statement, up to 30 days after its due date."),
    ("suspend-billing", "Suspend billing", "suspend_billing", "Billing", 72, 40,
     "Stop billing the account for a while (a move, a long absence). Billing resumes when you ask."),
    ("other-inquiry", "Other billing inquiries or disputes", "inquiry", "Billing", 72, 90,
     "Anything else about your bills that the requests above do not cover."),
]  # fmt: skip

DISPUTE_REASON = {"code": "dispute", "name": "Dispute credit", "direction": "credit"}


def ensure_default_processes(service_process_model, reason_model) -> None:
    """Create the default service processes and the dispute adjustment reason where missing (idempotent)."""
    for code, name, action, queue, hours, position, description in DEFAULT_PROCESSES:
        service_process_model.objects.get_or_create(
            code=code,
            defaults={
                "name": name, "action": action, "queue": queue, "service_level_hours": hours,
                "position": position, "description": description,
            },
        )  # fmt: skip
    reason_model.objects.get_or_create(
        code=DISPUTE_REASON["code"],
        defaults={"name": DISPUTE_REASON["name"], "direction": DISPUTE_REASON["direction"]},
    )
