"""Writes on cases and disputes. Each public function is one transaction with its history events and audit
records, and is safe to repeat where a caller may retry (idempotency keys on creation, one open dispute per
line enforced by the database, status changes that check the status they start from).

E-mails to the customer (on creation and on every status change) go out after the commit, one task per
history event (``disputes.tasks.send_case_email``); the event records when it was sent, and a beat job sends
those whose task was lost.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import Account, BillingSuspension, Contact
from accounts.selectors import paying_account
from accounts.services import billing_resume, billing_suspend
from billing_mgmt.audit import audit_record
from billing_mgmt.errors import ApplicationError, Conflict
from billing_mgmt.money import format_money, is_quantized, to_decimal
from billing_mgmt.numbering import SeriesSpec, next_number
from payments.models import AdjustmentReason, PaymentAllocation
from payments.services import adjustment_post_decided, refuse_card_numbers
from statements.models import FinancialTransaction, Statement, StatementLine

from .catalog import DISPUTE_REASON
from .models import Case, CaseEvent, Dispute, ServiceProcess

logger = logging.getLogger(__name__)

CASE_SERIES = SeriesSpec(name="Case tracking numbers", prefix="CS-", padding=7)

S = Case.Status
# The case state machine: from each status, the statuses it may move to. Anything else is refused.
CASE_TRANSITIONS: dict[str, tuple[str, ...]] = {
    S.NEW: (S.IN_PROGRESS, S.WAITING_ON_CUSTOMER, S.RESOLVED, S.REJECTED),
    S.IN_PROGRESS: (S.WAITING_ON_CUSTOMER, S.RESOLVED, S.REJECTED),
    S.WAITING_ON_CUSTOMER: (S.IN_PROGRESS, S.RESOLVED, S.REJECTED),
    S.RESOLVED: (S.IN_PROGRESS, S.CLOSED),  # reopened when the customer is not satisfied
    S.REJECTED: (S.IN_PROGRESS, S.CLOSED),
    S.CLOSED: (),
}

# Service processes whose approval acts (once) on the account.
ACTING = (ServiceProcess.Action.EXTEND_DUE_DATE, ServiceProcess.Action.SUSPEND_BILLING)

VIEW_CASE = "disputes.view_case"
ADD_CASE = "disputes.add_case"
CHANGE_CASE = "disputes.change_case"
DECIDE_CASE = "disputes.decide_case"
ADD_DISPUTE = "disputes.add_dispute"
RESOLVE_DISPUTE = "disputes.resolve_dispute"


# --- helpers ----------------------------------------------------------------------------------------------


def _person(actor: Any):
    if getattr(actor, "is_authenticated", False) and not getattr(actor, "is_api_client", False):
        return actor
    return None


def _label(actor: Any) -> str:
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor[:200]
    if getattr(actor, "is_api_client", False):
        return str(actor)[:200]
    if getattr(actor, "is_authenticated", False):
        return (actor.get_full_name() or actor.get_username())[:200]
    return "anonymous"


def _is_staff(actor: Any) -> bool:
    from billing_mgmt.roles import is_staff_member

    person = _person(actor)
    return person is not None and is_staff_member(person)


def _status_label(status: str) -> str:
    return Case.Status(status).label


def _customer_email(account: Account, actor: Any) -> str:
    """Where the customer's e-mails go: the portal user's own contact (or login e-mail) when a customer raised
    the case, else the account's primary contact, else any contact with an address."""
    person = _person(actor)
    if person is not None and not _is_staff(person):
        own = Contact.objects.filter(user=person).exclude(email="").values_list("email", flat=True).first()
        if own or person.email:
            return own or person.email
    contacts = list(account.contacts.exclude(email="").values_list("role", "email"))
    for role, email in contacts:
        if role == Contact.Role.PRIMARY:
            return email
    return contacts[0][1] if contacts else ""


def _event(
    case: Case, kind: str, actor: Any, *, text: str = "", public: bool = True, from_status: str = "",
    to_status: str = "", email: bool = False,
) -> CaseEvent:  # fmt: skip
    event = CaseEvent.objects.create(
        case=case,
        kind=kind,
        text=text[:4000],
        public=public,
        from_status=from_status,
        to_status=to_status,
        actor=_person(actor),
        actor_label=_label(actor),
        email_to=case.contact_email if email and public else "",
    )
    if event.email_to:
        from .tasks import send_case_email

        transaction.on_commit(lambda pk=event.pk: send_case_email.delay(pk))
    return event


def _locked_case(case: Case) -> Case:
    return (
        Case.objects.select_for_update(of=("self",))
        .select_related("process", "account", "statement")
        .get(pk=case.pk)
    )


def _amount(value: Any, currency: str, field: str = "amount") -> Decimal:
    try:
        amount = to_decimal(value)
    except (TypeError, ValueError):
        raise ApplicationError("The amount is not a number.", fields={field: ["Not a number."]}) from None
    if amount <= 0:
        raise ApplicationError(
            "The amount must be more than zero.", fields={field: ["Must be more than zero."]}
        )
    if not is_quantized(amount, currency):
        raise ApplicationError(
            f"{amount} has more decimals than {currency} allows.",
            fields={field: [f"Too many decimals for {currency}."]},
        )
    return amount


def _money(amount: Decimal, currency: str) -> str:
    return format_money(amount, currency, "en_US")


def _refresh_disputed(statement: Statement, actor: Any = None, cause: str = "") -> Decimal:
    """Statement.disputed_amount is the sum of the statement's open disputes (called under its lock, with
    the statement as locked). A change is audited (``statement.disputed``): the bill's held amount moved."""
    held = Dispute.objects.filter(statement_id=statement.pk, status=Dispute.Status.OPEN).aggregate(
        total=Sum("amount")
    )["total"] or Decimal(0)
    was = statement.disputed_amount
    if held != was:
        Statement.objects.filter(pk=statement.pk).update(disputed_amount=held)
        statement.disputed_amount = held
        audit_record(
            actor=actor, action="statement.disputed", obj=statement, before={"disputed_amount": str(was)},
            after={"disputed_amount": str(held), "cause": cause}, account_id=statement.account_id,
        )  # fmt: skip
    return held


# --- cases ------------------------------------------------------------------------------------------------


@transaction.atomic
def case_open(
    *,
    account: Account,
    process: ServiceProcess,
    subject: str,
    description: str = "",
    channel: str,
    actor: Any,
    statement: Statement | None = None,
    requested_due_date: dt.date | None = None,
    line: StatementLine | None = None,
    amount: Any = None,
    idempotency_key: str | None = None,
) -> tuple[Case, bool]:
    """Raise a case for a service process. A charge-dispute process also opens its dispute (on ``line`` of
    ``statement``, or the whole statement) with ``amount``; an extend-due-date process needs the statement and
    ``requested_due_date``. The customer is e-mailed the tracking number after the commit. Returns (case,
    created); a repeated ``idempotency_key`` returns the first case."""
    key = (idempotency_key or "").strip() or None
    if key is not None:
        existing = Case.objects.filter(idempotency_key=key).first()
        if existing is not None:
            if (existing.account_id, existing.process_id) != (account.pk, process.pk):
                raise Conflict(
                    "This idempotency key was used for a different case.", code="idempotency_key_reused"
                )
            return existing, False
    subject = (subject or "").strip()
    description = (description or "").strip()
    errors: dict[str, list[str]] = {}
    if not process.active:
        errors["process"] = ["This service process is no longer offered."]
    elif channel == Case.Channel.PORTAL and not process.portal:
        errors["process"] = ["This service process is not offered in the portal."]
    if not subject:
        errors["subject"] = ["Required."]
    elif len(subject) > 200:
        errors["subject"] = ["At most 200 characters."]
    if len(description) > 4000:
        errors["description"] = ["At most 4000 characters."]
    if channel not in Case.Channel.values:
        errors["channel"] = ["Unknown channel."]
    if statement is not None and statement.account_id != account.pk:
        errors["statement"] = ["That statement is another account's."]
    if process.needs_statement and statement is None and "process" not in errors:
        errors["statement"] = ["Choose the statement this is about."]
    if process.action == ServiceProcess.Action.EXTEND_DUE_DATE and statement is not None:
        _check_extension(process, statement, requested_due_date, errors)
    if errors:
        raise ApplicationError("The request is not valid.", fields=errors)
    refuse_card_numbers(subject=subject, description=description)
    Account.objects.select_for_update(of=("self",)).get(pk=account.pk)
    if process.action == ServiceProcess.Action.SUSPEND_BILLING:
        unit = paying_account(account=account)
        if BillingSuspension.objects.filter(account=unit, ended_at__isnull=True).exists():
            raise Conflict(
                f"Billing of account {unit.number} is already suspended.", code="already_suspended"
            )
    now = timezone.now()
    case = Case.objects.create(
        number=next_number("case", CASE_SERIES),
        account=account,
        process=process,
        subject=subject,
        description=description,
        channel=channel,
        queue=process.queue,
        due_at=now + dt.timedelta(hours=process.service_level_hours),
        statement=statement,
        requested_due_date=requested_due_date
        if process.action == ServiceProcess.Action.EXTEND_DUE_DATE
        else None,
        contact_email=_customer_email(account, actor),
        created_by=_person(actor),
        api_biller=getattr(actor, "biller", None) if getattr(actor, "is_api_client", False) else None,
        idempotency_key=key,
    )
    if process.action == ServiceProcess.Action.CHARGE_DISPUTE:
        _dispute_open(case=case, statement=statement, line=line, amount=amount, reason=description or subject,
                      actor=actor)  # fmt: skip
    _event(
        case, CaseEvent.Kind.CREATED, actor, text=description or subject, to_status=case.status, email=True
    )
    audit_record(
        actor=actor,
        action="case.open",
        obj=case,
        after={
            "number": case.number,
            "process": process.code,
            "channel": channel,
            "status": case.status,
            "statement": statement.pk if statement else None,
        },
        account_id=account.pk,
    )
    return case, True


def _check_extension(
    process: ServiceProcess, statement: Statement, wanted: dt.date | None, errors: dict[str, list[str]]
) -> None:
    if statement.status == Statement.Status.PAID:
        errors["statement"] = ["This statement is paid; its due date no longer matters."]
        return
    if wanted is None:
        errors["requested_due_date"] = ["Choose the new due date."]
        return
    latest = statement.due_date + dt.timedelta(days=process.max_extension_days)
    if wanted <= statement.due_date:
        errors["requested_due_date"] = [
            f"Must be after the present due date ({statement.due_date:%Y-%m-%d})."
        ]
    elif wanted > latest:
        errors["requested_due_date"] = [
            f"At most {process.max_extension_days} days later: {latest:%Y-%m-%d} or earlier."
        ]


def _check_transition(case: Case, to_status: str) -> None:
    if to_status not in Case.Status.values:
        raise ApplicationError(f"'{to_status}' is not a case status.", fields={"status": ["Unknown status."]})
    if to_status == case.status:
        raise Conflict(
            f"Case {case.number} is already {_status_label(to_status).lower()}.", code="same_status"
        )
    if to_status not in CASE_TRANSITIONS[case.status]:
        raise Conflict(
            f"A {_status_label(case.status).lower()} case cannot become {_status_label(to_status).lower()}.",
            code="transition_not_allowed",
        )


def allowed_transitions(*, case: Case, user: Any) -> list[str]:
    """The statuses this user may move the case to now (for the buttons of the case page)."""
    if not getattr(user, "has_perm", None) or not user.has_perm(CHANGE_CASE):
        return []
    result = []
    for status in CASE_TRANSITIONS[case.status]:
        try:
            _check_decision(case, status, user)
        except ApplicationError:
            continue
        result.append(status)
    return result


def _check_decision(case: Case, to_status: str, actor: Any) -> None:
    """Who may decide what: a charge dispute is decided through its dispute (``dispute_resolve``); approving
    or rejecting an extension or a suspension needs ``disputes.decide_case`` (supervisors)."""
    if to_status not in Case.DECIDED_STATUSES:
        return
    action = case.process.action
    if action == ServiceProcess.Action.CHARGE_DISPUTE:
        # The case's own relation: loaded with the case on its page, read once and cached otherwise.
        dispute = getattr(case, "dispute", None)
        if dispute is not None and dispute.is_open:
            raise ApplicationError(
                "Resolve the dispute (approve or reject it): that decides the case.", code="dispute_open"
            )
        if case.decided_at is None:
            raise ApplicationError("A charge-dispute case is decided by its dispute.", code="dispute_decides")
    if action in ACTING and case.actioned_at is None and not actor.has_perm(DECIDE_CASE):
        raise ApplicationError(
            f"Only a supervisor approves or rejects a request to {case.process.name.lower()}.",
            code="not_a_supervisor",
        )


@transaction.atomic
def case_transition(
    *, case: Case, to_status: str, actor: Any, comment: str = "", resolution: str = "",
    expected_status: str | None = None,
) -> Case:  # fmt: skip
    """Move the case to ``to_status`` if the state machine allows it and the actor may decide it. Resolving an
    extend-due-date case moves the statement's due date; resolving a suspend-billing case suspends billing of
    the account. ``expected_status`` (what the page showed) makes a stale second click a clear 409."""
    person = _person(actor)
    if person is None or not person.has_perm(CHANGE_CASE):
        raise ApplicationError("Your role does not allow changing cases.", code="permission_denied")
    comment = (comment or "").strip()
    resolution = (resolution or "").strip()
    refuse_card_numbers(comment=comment, resolution=resolution)
    case = _locked_case(case)
    if expected_status and expected_status != case.status:
        raise Conflict(
            f"Case {case.number} is now {_status_label(case.status).lower()} (changed since you looked).",
            code="stale_status",
        )
    _check_transition(case, to_status)
    _check_decision(case, to_status, person)
    if to_status == S.REJECTED and not (resolution or comment) and case.decided_at is None:
        raise ApplicationError("Say why the request is rejected.", fields={"resolution": ["Required."]})
    before = case.status
    if to_status == S.RESOLVED and case.actioned_at is None and case.process.action in ACTING:
        resolution = _act(case, person, resolution) or resolution
        case.actioned_at = timezone.now()
    if to_status in Case.DECIDED_STATUSES:
        case.decided_at = case.decided_at or timezone.now()
        case.resolution = (resolution or comment or case.resolution)[:500]
    case.status = to_status
    if to_status == S.IN_PROGRESS and case.owner_id is None and _is_staff(person):
        case.owner = person  # the one who picks it up owns it
    case.save(update_fields=["status", "decided_at", "actioned_at", "resolution", "owner", "updated_at"])
    if comment and comment != case.resolution:
        _event(case, CaseEvent.Kind.COMMENT, actor, text=comment)
    _event(
        case, CaseEvent.Kind.STATUS, actor,
        text=case.resolution if to_status in Case.DECIDED_STATUSES else "",
        from_status=before, to_status=to_status, email=True,
    )  # fmt: skip
    audit_record(
        actor=actor, action="case.status", obj=case, before={"status": before},
        after={"status": to_status, "resolution": case.resolution}, account_id=case.account_id,
    )  # fmt: skip
    return case


def _act(case: Case, actor: Any, resolution: str) -> str:
    """What approving a service request does. Returns the resolution the customer reads."""
    action = case.process.action
    if action == ServiceProcess.Action.EXTEND_DUE_DATE:
        return _extend_due_date(case, actor, resolution)
    if action == ServiceProcess.Action.SUSPEND_BILLING:
        unit = paying_account(account=case.account)
        billing_suspend(account=unit, reason=resolution or case.subject, reference=case.number, actor=actor)
        _event(case, CaseEvent.Kind.ACTION, actor, text=f"Billing of account {unit.number} is suspended.")
        return resolution or "Billing is suspended until it is resumed."
    return resolution


def _extend_due_date(case: Case, actor: Any, resolution: str) -> str:
    statement = Statement.objects.select_for_update(of=("self",)).get(pk=case.statement_id)
    wanted = case.requested_due_date
    errors: dict[str, list[str]] = {}
    _check_extension(case.process, statement, wanted, errors)
    if errors:
        raise ApplicationError("The due date cannot move any more.", fields=errors)
    before = {"due_date": statement.due_date.isoformat(), "status": statement.status}
    statement.due_date = wanted
    if statement.status == Statement.Status.OVERDUE and wanted >= timezone.localdate():
        paid = (
            PaymentAllocation.objects.filter(statement=statement, reversed=False).aggregate(t=Sum("amount"))[
                "t"
            ]
            or 0
        )
        statement.status = Statement.Status.PARTIALLY_PAID if paid else Statement.Status.OPEN
    statement.save(update_fields=["due_date", "status"])
    audit_record(
        actor=actor, action="statement.due_date", obj=statement, before=before,
        after={"due_date": wanted.isoformat(), "status": statement.status, "case": case.number},
        account_id=statement.account_id,
    )  # fmt: skip
    text = (
        f"The due date of statement {statement.number} moved from {before['due_date']} to {wanted:%Y-%m-%d}."
    )
    _event(case, CaseEvent.Kind.ACTION, actor, text=text)
    return resolution or text


@transaction.atomic
def case_comment(*, case: Case, actor: Any, text: str, public: bool = True) -> CaseEvent:
    """Add a comment to the case's history. Staff may write internal notes (``public=False``); a customer's
    reply to a case waiting on them moves it back to in progress."""
    text = (text or "").strip()
    if not text:
        raise ApplicationError("Write the comment.", fields={"text": ["Required."]})
    if len(text) > 4000:
        raise ApplicationError("The comment is too long.", fields={"text": ["At most 4000 characters."]})
    refuse_card_numbers(text=text)
    staff = _is_staff(actor)
    if staff and not actor.has_perm(CHANGE_CASE):
        raise ApplicationError("Your role does not allow changing cases.", code="permission_denied")
    case = _locked_case(case)
    if case.status == S.CLOSED:
        raise Conflict(f"Case {case.number} is closed.", code="case_closed")
    event = _event(case, CaseEvent.Kind.COMMENT, actor, text=text, public=public or not staff)
    status_before = case.status
    if not staff and case.status == S.WAITING_ON_CUSTOMER:
        case.status = S.IN_PROGRESS
        case.save(update_fields=["status", "updated_at"])
        _event(case, CaseEvent.Kind.STATUS, actor, from_status=S.WAITING_ON_CUSTOMER, to_status=S.IN_PROGRESS,
               email=True)  # fmt: skip
    else:
        case.save(update_fields=["updated_at"])
    audit_record(
        actor=actor, action="case.comment", obj=case, before={"status": status_before},
        after={"status": case.status, "public": event.public, "event": event.pk}, account_id=case.account_id,
    )  # fmt: skip
    return event


@transaction.atomic
def case_assign(*, case: Case, owner: Any, actor: Any) -> Case:
    """Give the case to a staff member (``owner`` None: back to the queue)."""
    person = _person(actor)
    if person is None or not person.has_perm(CHANGE_CASE):
        raise ApplicationError("Your role does not allow changing cases.", code="permission_denied")
    if owner is not None and not _is_staff(owner):
        raise ApplicationError("Cases are owned by staff.", fields={"owner": ["Not a staff member."]})
    case = _locked_case(case)
    if case.status == S.CLOSED:
        raise Conflict(f"Case {case.number} is closed.", code="case_closed")
    before = case.owner_id
    if before == (owner.pk if owner else None):
        return case
    case.owner = owner
    case.save(update_fields=["owner", "updated_at"])
    text = f"Assigned to {_label(owner)}." if owner else "Returned to the queue."
    _event(case, CaseEvent.Kind.ASSIGNED, actor, text=text, public=False)
    audit_record(
        actor=actor, action="case.assign", obj=case, before={"owner": before},
        after={"owner": owner.pk if owner else None}, account_id=case.account_id,
    )  # fmt: skip
    return case


# --- disputes ---------------------------------------------------------------------------------------------


def _dispute_open(
    *, case: Case, statement: Statement, line: StatementLine | None, amount: Any, reason: str, actor: Any
) -> Dispute:
    """The dispute record of a charge-dispute case (in the case's transaction)."""
    statement = Statement.objects.select_for_update(of=("self",)).get(pk=statement.pk)
    value = _amount(amount, statement.currency)
    _refuse_reversed(statement)
    errors: dict[str, list[str]] = {}
    if line is not None:
        if line.statement_id != statement.pk:
            errors["line"] = ["The line is not on that statement."]
        elif line.amount <= 0:
            errors["line"] = ["Only a charge can be disputed (this line is a credit)."]
        elif value > line.amount:
            errors["amount"] = [f"At most the line's amount ({_money(line.amount, statement.currency)})."]
        elif Dispute.objects.filter(statement_line=line, status=Dispute.Status.OPEN).exists():
            errors["line"] = ["This line already has an open dispute."]
    else:
        if statement.ledger_amount <= 0:
            errors["statement"] = ["This statement has no charges to dispute."]
        elif Dispute.objects.filter(
            statement=statement, statement_line__isnull=True, status=Dispute.Status.OPEN
        ).exists():
            errors["statement"] = ["This statement already has an open dispute."]
    if not errors:
        held = statement.disputed_amount
        room = statement.ledger_amount - held
        if value > room:
            errors["amount"] = [
                f"At most {_money(max(room, Decimal(0)), statement.currency)}: the statement's charges "
                f"are {_money(statement.ledger_amount, statement.currency)} and "
                f"{_money(held, statement.currency)} is already disputed."
            ]
    if errors:
        raise ApplicationError("The dispute is not valid.", fields=errors)
    label = ""
    if line is not None:
        label = " · ".join(p for p in (line.product, line.description, line.service_identifier) if p)[:300]
    try:
        with transaction.atomic():
            dispute = Dispute.objects.create(
                case=case,
                account=statement.account,
                statement=statement,
                statement_line=line,
                line_label=label,
                line_amount=line.amount if line is not None else None,
                amount=value,
                currency=statement.currency,
                reason=reason[:500],
                raised_by=_person(actor),
            )
    except IntegrityError:
        raise ApplicationError(
            "The dispute is not valid.", fields={"line": ["This line already has an open dispute."]}
        ) from None
    _refresh_disputed(statement, actor, f"dispute {dispute.pk} opened")
    audit_record(
        actor=actor, action="dispute.open", obj=dispute,
        after={"amount": str(value), "currency": dispute.currency, "statement": statement.pk,
               "line": line.pk if line else None, "case": case.number},
        account_id=statement.account_id,
    )  # fmt: skip
    return dispute


def _refuse_reversed(statement: Statement) -> None:
    """A bill reversed by a corrective bill has had all its charges credited: disputing it, or approving a
    dispute of it, would credit them a second time (a dispute open when it was reversed is rejected)."""
    reversal = Statement.objects.filter(corrects=statement).values_list("number", flat=True).first()
    if reversal is not None:
        raise ApplicationError(
            f"Bill {statement.number} was reversed by {reversal}: its charges are already credited.",
            code="bill_reversed",
            fields={"statement": [f"Reversed by {reversal}."]},
        )


def dispute_process() -> ServiceProcess:
    process = ServiceProcess.objects.filter(action=ServiceProcess.Action.CHARGE_DISPUTE, active=True).first()
    if process is None:
        raise ApplicationError("No charge-dispute service process is set up.", code="no_dispute_process")
    return process


def dispute_open(
    *, statement: Statement, line: StatementLine | None, amount: Any, reason: str, channel: str, actor: Any,
    idempotency_key: str | None = None, subject: str = "",
) -> tuple[Case, bool]:  # fmt: skip
    """Dispute a statement line (or the whole statement): a case of the charge-dispute service process with
    its dispute record. The disputed amount is held out of past due, autopay and collections while open."""
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("Say why the charge is disputed.", fields={"reason": ["Required."]})
    what = (
        f"line {line.position} of statement {statement.number}" if line else f"statement {statement.number}"
    )
    return case_open(
        account=statement.account,
        process=dispute_process(),
        subject=(subject or f"Dispute of {what}")[:200],
        description=reason,
        channel=channel,
        actor=actor,
        statement=statement,
        line=line,
        amount=amount,
        idempotency_key=idempotency_key,
    )


def dispute_reason() -> AdjustmentReason:
    return AdjustmentReason.objects.get_or_create(
        code=DISPUTE_REASON["code"], defaults={"name": DISPUTE_REASON["name"], "direction": "credit"}
    )[0]


@transaction.atomic
def dispute_resolve(
    *, dispute: Dispute, actor: Any, approve: bool, amount: Any = None, note: str = ""
) -> Dispute:
    """A supervisor decides a dispute: approve in full or in part (``amount``, default the whole disputed
    amount), which posts a credit adjustment through payments (exported to the biller like any adjustment),
    or reject with a reason. The held amount is released either way and the case is resolved or rejected."""
    person = _person(actor)
    if person is None or not person.has_perm(RESOLVE_DISPUTE):
        raise ApplicationError("Only a supervisor resolves disputes.", code="not_a_supervisor")
    note = (note or "").strip()
    refuse_card_numbers(note=note)
    # Locks in the order every writer of an account takes them: the account, then the statement.
    Account.objects.select_for_update(of=("self",)).get(pk=dispute.account_id)
    statement = Statement.objects.select_for_update(of=("self",)).get(pk=dispute.statement_id)
    dispute = (
        Dispute.objects.select_for_update(of=("self",))
        .select_related("case", "statement_line")
        .get(pk=dispute.pk)
    )
    if not dispute.is_open:
        raise Conflict(
            f"This dispute is already {dispute.get_status_display().lower()}.", code="already_decided"
        )
    if dispute.raised_by_id is not None and dispute.raised_by_id == person.pk:
        raise ApplicationError("You cannot resolve a dispute you raised.", code="maker_cannot_check")
    case = _locked_case(dispute.case)
    if case.status == S.CLOSED:
        raise Conflict(f"Case {case.number} is closed.", code="case_closed")
    currency = dispute.currency
    if approve:
        _refuse_reversed(statement)
        value = dispute.amount if amount in (None, "") else _amount(amount, currency)
        if value > dispute.amount:
            raise ApplicationError(
                "The credit is more than was disputed.",
                fields={"amount": [f"At most the disputed {_money(dispute.amount, currency)}."]},
            )
        adjustment, _ = adjustment_post_decided(
            account=statement.account,
            amount=value,
            currency=currency,
            reason=dispute_reason(),
            idempotency_key=f"dispute:{dispute.pk}",
            maker=dispute.raised_by,
            checker=person,
            note=f"{case.number}: {note or dispute.reason}"[:300],
            statement=statement,
            statement_line=dispute.statement_line,
            kind=FinancialTransaction.Kind.DISPUTE_CREDIT,
        )
        dispute.adjustment = adjustment
        dispute.approved_amount = value
        full = value == dispute.amount
        dispute.status = Dispute.Status.APPROVED if full else Dispute.Status.PARTIALLY_APPROVED
        outcome = (
            f"Approved{'' if full else ' in part'}: {_money(value, currency)} of "
            f"{_money(dispute.amount, currency)} credited to the account.{f' {note}' if note else ''}"
        )
        to_status = S.RESOLVED
    else:
        if not note:
            raise ApplicationError("Say why the dispute is rejected.", fields={"note": ["Required."]})
        dispute.status = Dispute.Status.REJECTED
        outcome = f"Rejected: {note}"
        to_status = S.REJECTED
    dispute.resolved_by = person
    dispute.resolved_at = timezone.now()
    dispute.resolution_note = note[:500]
    dispute.save(
        update_fields=[
            "status",
            "approved_amount",
            "adjustment",
            "resolved_by",
            "resolved_at",
            "resolution_note",
        ]
    )
    _refresh_disputed(statement, actor, f"dispute {dispute.pk} {dispute.status}")
    before = case.status
    case.status = to_status
    case.decided_at = dispute.resolved_at
    case.resolution = outcome[:500]
    case.save(update_fields=["status", "decided_at", "resolution", "updated_at"])
    _event(case, CaseEvent.Kind.DISPUTE, actor, text=outcome)
    _event(
        case, CaseEvent.Kind.STATUS, actor, from_status=before, to_status=to_status, text=outcome, email=True
    )
    audit_record(
        actor=actor, action="dispute.resolve", obj=dispute, before={"status": Dispute.Status.OPEN},
        after={"status": dispute.status, "approved_amount": str(dispute.approved_amount or ""),
               "adjustment": dispute.adjustment_id, "note": note},
        account_id=dispute.account_id,
    )  # fmt: skip
    # The case changed too (its dispute decided it): its own record, as case_transition writes one.
    audit_record(
        actor=actor, action="case.status", obj=case, before={"status": before},
        after={"status": to_status, "resolution": case.resolution}, account_id=case.account_id,
    )  # fmt: skip
    return dispute


# --- billing suspensions through cases ----------------------------------------------------------------------


@transaction.atomic
def billing_resume_for(*, account: Account, actor: Any, note: str = "") -> BillingSuspension:
    """Resume billing of a suspended account (supervisors): the suspension ends and, when a case suspended
    it, the case's history says so."""
    person = _person(actor)
    if person is None or not person.has_perm(DECIDE_CASE):
        raise ApplicationError("Only a supervisor resumes billing.", code="not_a_supervisor")
    unit = paying_account(account=account)
    suspension = billing_resume(account=unit, note=note, actor=actor)
    case = Case.objects.filter(number=suspension.reference).first() if suspension.reference else None
    if case is not None:
        _event(case, CaseEvent.Kind.ACTION, actor, text=f"Billing of account {unit.number} is resumed."
               f"{f' {suspension.end_note}' if suspension.end_note else ''}")  # fmt: skip
    return suspension


def case_email(*, event: CaseEvent) -> EmailMultiAlternatives:
    """The customer's e-mail about one event of their case (creation or a status change), from templates."""
    case = event.case
    context = {
        "case": case,
        "event": event,
        "status": case.get_status_display()
        if event.kind == CaseEvent.Kind.CREATED
        else _status_label(event.to_status or case.status),
        "created": event.kind == CaseEvent.Kind.CREATED,
        "portal_url": settings.PORTAL_URL,
        "support_contact": settings.SUPPORT_CONTACT,
        "product_name": settings.PRODUCT_NAME,
    }
    subject = " ".join(render_to_string("disputes/email/case_subject.txt", context).split())
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("disputes/email/case_body.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[event.email_to],
    )
    message.attach_alternative(render_to_string("disputes/email/case_body.html", context), "text/html")
    return message


def case_email_send(*, event_id: int) -> str:
    """Send the e-mail of one history event, once: under the event's row lock, marked sent in the same
    transaction. Returns ``sent`` or ``skipped`` (already sent, or nothing to send); a failure raises (the
    task retries, and the beat job picks up what is left)."""
    with transaction.atomic():
        event = (
            CaseEvent.objects.select_for_update(of=("self",))
            .select_related("case", "case__process", "case__account")
            .filter(pk=event_id)
            .first()
        )
        if event is None or not event.email_to or event.email_sent_at is not None:
            return "skipped"
        case_email(event=event).send()
        CaseEvent.objects.filter(pk=event.pk).update(email_sent_at=timezone.now())
    logger.info("Case %s: e-mail about %s sent", event.case.number, event.kind)
    return "sent"


def case_emails_due(*, older_than: dt.timedelta = dt.timedelta(minutes=10)) -> list[int]:
    """E-mails whose task was lost (not sent some minutes after the event): the beat job sends them."""
    cutoff = timezone.now() - older_than
    return list(
        CaseEvent.objects.filter(email_sent_at__isnull=True, created_at__lt=cutoff)
        .exclude(email_to="")
        .order_by("id")
        .values_list("pk", flat=True)[:500]
    )
