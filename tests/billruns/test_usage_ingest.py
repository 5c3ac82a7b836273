"""Usage record ingest and reprocessing (billruns.services.usage): matching, rejection, idempotency, biller
isolation, and the rating engine picking up what was accepted."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from accounts.models import Biller
from billing_mgmt.models import AuditRecord
from billruns.models import CalculationLine, RatedUsage, UsageRecord, UsageToRate, UsageType
from billruns.services import engine_biller, subscription_rate
from billruns.services import usage as usage_service
from billruns.services.usage import usage_counts, usage_records_ingest, usage_records_reprocess
from tests.billruns import builders as b
from tests.concurrency import run_in_threads
from tests.factories import AccountFactory, BillerFactory, BillerReferenceFactory

pytestmark = pytest.mark.django_db
D = b.D
JUNE_1 = dt.date(2026, 6, 1)
JULY_1 = dt.date(2026, 7, 1)
PHONE = "+15550001"


def record(external_id="r1", **overrides):
    data = {
        "external_id": external_id,
        "usage_type": "voice",
        "quantity": "12.5",
        "unit": "min",
        "event_time": "2026-06-05T12:00:00+00:00",
        "service_identifier": PHONE,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def ingest(*records, source="mediation", biller=None):
    return usage_records_ingest(records=list(records), source=source, actor="test", biller=biller)


@pytest.fixture
def priced_plan():
    plan = b.plan()
    b.usage_component(plan, unit_price="0.10")  # voice, min
    return plan


@pytest.fixture
def sub(priced_plan):
    return b.subscription(AccountFactory(), priced_plan, JUNE_1, identifier=PHONE)


def stored(external_id="r1", source="mediation") -> UsageRecord:
    return UsageRecord.objects.get(source=source, external_id=external_id)


# --- accepted ----------------------------------------------------------------------------------------------


def test_a_record_matched_by_service_identifier_is_accepted_with_its_event_day(sub):
    (answer,) = ingest(record())
    row = stored()
    assert answer.as_dict() == {
        "index": 0,
        "external_id": "r1",
        "outcome": "created",
        "id": row.pk,
        "status": "accepted",
        "code": "",
        "message": "",
        "fields": {},
    }
    assert row.status == UsageRecord.Status.ACCEPTED
    assert row.subscription == sub
    assert row.usage_type == UsageType.objects.get(code="voice")
    assert (row.usage_type_code, row.quantity, row.unit) == ("voice", D("12.5"), "min")
    assert row.event_time == dt.datetime(2026, 6, 5, 12, tzinfo=dt.UTC)
    assert row.event_date == dt.date(2026, 6, 5)
    assert (row.service_identifier, row.subscription_ref) == (PHONE, "")
    assert (row.rejection_code, row.rejection_reason, row.rated_segment_id) == ("", "", None)
    assert row.rating_status == "accepted" and UsageToRate.objects.filter(usage_record=row).exists()
    assert row.received_at is not None


def test_a_record_matched_by_subscription_id_keeps_the_reference_and_gets_the_identifier(sub):
    answers = ingest(
        record("a", service_identifier=None, subscription_id=sub.pk),
        record("b", service_identifier=None, subscription_id=str(sub.pk)),
    )
    assert [a.outcome for a in answers] == ["created", "created"]
    for external_id in ("a", "b"):
        row = stored(external_id)
        assert (row.subscription, row.subscription_ref, row.service_identifier) == (sub, str(sub.pk), PHONE)


@pytest.mark.parametrize(
    ("event_time", "day"),
    [
        ("2026-06-05T23:30:00-04:00", dt.date(2026, 6, 5)),  # 03:30 UTC on the 6th: the 5th in New York
        ("2026-06-06T02:00:00Z", dt.date(2026, 6, 5)),
        ("2026-06-06T06:00:00+02:00", dt.date(2026, 6, 6)),
    ],
)
def test_the_event_day_is_the_day_in_the_business_time_zone(sub, settings, event_time, day):
    settings.TIME_ZONE = "America/New_York"
    ingest(record(event_time=event_time))
    assert stored().event_date == day


def test_the_subscription_covering_the_event_day_is_chosen_among_several_for_one_identifier(priced_plan):
    acc = AccountFactory()
    old = b.subscription(acc, priced_plan, dt.date(2026, 1, 1), end=dt.date(2026, 5, 31), identifier=PHONE)
    new = b.subscription(acc, priced_plan, JUNE_1, identifier=PHONE)
    ingest(
        record("may", event_time="2026-05-31T10:00:00+00:00"),
        record("june", event_time="2026-06-01T10:00:00Z"),
    )
    assert stored("may").subscription == old
    assert stored("june").subscription == new


@pytest.mark.parametrize(
    ("quantity", "expected"), [(0, D(0)), ("1.500000000", D("1.5")), (2.25, D("2.25")), (1250, D(1250))]
)
def test_quantities_as_numbers_or_strings_are_accepted(sub, quantity, expected):
    (answer,) = ingest(record(quantity=quantity))
    assert answer.outcome == "created" and stored().quantity == expected


# --- idempotency -------------------------------------------------------------------------------------------


def test_the_same_record_again_is_a_duplicate_and_writes_nothing(sub):
    (first,) = ingest(record())
    (again,) = ingest(record(quantity="12.500000", event_time="2026-06-05T14:00:00+02:00"))  # same values
    assert (again.outcome, again.id, again.status) == ("duplicate", first.id, "accepted")
    assert UsageRecord.objects.count() == 1


def test_the_same_external_id_twice_in_one_batch_is_stored_once(sub):
    answers = ingest(record(), record(), record(quantity="1"))
    assert [a.outcome for a in answers] == ["created", "duplicate", "conflict"]
    assert answers[1].id == answers[0].id == answers[2].id
    assert UsageRecord.objects.count() == 1 and stored().quantity == D("12.5")


def test_the_same_external_id_with_other_content_is_a_conflict_and_changes_nothing(sub):
    ingest(record())
    before = list(UsageRecord.objects.values())
    (answer,) = ingest(record(quantity="13", unit="sec"))
    assert answer.outcome == "conflict"
    assert answer.code == "external_id_conflict"
    assert answer.id == stored().pk and answer.status == "accepted"
    assert answer.fields == {
        "quantity": ["Received before with 12.5; this record says 13."],
        "unit": ["Received before with 'min'; this record says 'sec'."],
    }
    assert list(UsageRecord.objects.values()) == before


def test_an_external_id_is_unique_per_source_only(sub):
    ingest(record(), source="mediation")
    (answer,) = ingest(record(), source="switch-2")
    assert answer.outcome == "created"
    assert UsageRecord.objects.count() == 2


def test_a_duplicate_of_a_rejected_record_answers_its_rejection(sub):
    (first,) = ingest(record(unit="sec"))
    (again,) = ingest(record(unit="sec"))
    assert (first.outcome, again.outcome) == ("rejected", "duplicate")
    assert (again.status, again.code) == ("rejected", "wrong_unit")
    assert again.message == first.message


def test_a_record_stored_by_a_concurrent_request_is_answered_as_duplicate(sub, monkeypatch):
    """The bulk insert meets the unique constraint (another request stored the id after we looked): the
    batch goes one record at a time, and the others are still stored."""
    ingest(record("r1"))
    monkeypatch.setattr(usage_service, "_existing", lambda source, ids: {})  # as if we looked too early
    answers = ingest(record("r0"), record("r1"), record("r2"), record("r1", quantity="2"))
    assert [a.outcome for a in answers] == ["created", "duplicate", "created", "conflict"]
    assert sorted(UsageRecord.objects.values_list("external_id", flat=True)) == ["r0", "r1", "r2"]


# --- invalid: not stored -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"quantity": "-1"}, {"quantity": ["Must not be negative."]}),
        ({"quantity": None}, {"quantity": ["This field is required."]}),
        ({"quantity": "ten"}, {"quantity": ["A decimal number is required."]}),
        ({"quantity": "NaN"}, {"quantity": ["A decimal number is required."]}),
        ({"quantity": True}, {"quantity": ["A decimal number is required."]}),
        ({"quantity": "1.0000001"}, {"quantity": ["At most 6 decimal places."]}),
        ({"quantity": "1e13"}, {"quantity": ["At most 13 digits before the decimal point."]}),
        ({"event_time": "2026-06-05T12:00:00"}, {"event_time": [
            "Give the offset (+02:00, Z): the time is ambiguous without it."]}),
        ({"event_time": "yesterday"}, {"event_time": [
            "Not an ISO 8601 date and time, e.g. 2026-06-05T14:03:00+02:00."]}),
        ({"event_time": None}, {"event_time": ["This field is required."]}),
        ({"external_id": None}, {"external_id": ["This field is required."]}),
        ({"external_id": "x" * 101}, {"external_id": ["At most 100 characters."]}),
        ({"service_identifier": "+1\x00"}, {"service_identifier": ["Must not contain NUL characters."]}),
        ({"usage_type": "  "}, {"usage_type": ["This field may not be blank."]}),
        ({"unit": 5}, {"unit": ["Must be a string."]}),
        ({"service_identifier": None}, {"non_field_errors": [
            "Name the subscription: subscription_id or service_identifier."]}),
        ({"subscription_id": "abc"}, {"subscription_id": [
            "A subscription id (a positive whole number) is required."]}),
        ({"subscription_id": 0}, {"subscription_id": [
            "A subscription id (a positive whole number) is required."]}),
    ],
)  # fmt: skip
def test_a_malformed_record_is_invalid_and_not_stored(sub, overrides, fields):
    (answer,) = ingest(record(**overrides))
    assert answer.outcome == "invalid"
    assert (answer.id, answer.status, answer.code) == (None, None, "invalid")
    assert answer.fields == fields
    assert not UsageRecord.objects.exists()


def test_a_record_that_is_not_an_object_is_invalid_and_the_others_are_stored(sub):
    answers = ingest(record("a"), ["not", "a", "record"], record("b", quantity="-3"), record("c"))
    assert [(a.index, a.outcome) for a in answers] == [
        (0, "created"),
        (1, "invalid"),
        (2, "invalid"),
        (3, "created"),
    ]
    assert answers[1].fields == {"non_field_errors": ["Each record is an object."]}
    assert answers[2].external_id == "b"
    assert sorted(UsageRecord.objects.values_list("external_id", flat=True)) == ["a", "c"]
    assert usage_counts(answers) == {"created": 2, "duplicate": 0, "rejected": 0, "invalid": 2, "conflict": 0}


# --- rejected: stored with a reason ------------------------------------------------------------------------


def assert_rejected(answer, code, reason):
    row = UsageRecord.objects.get(pk=answer.id)
    assert (answer.outcome, answer.status, answer.code, answer.message) == (
        "rejected",
        "rejected",
        code,
        reason,
    )
    assert (row.status, row.rejection_code, row.rejection_reason) == ("rejected", code, reason)
    assert row.subscription is None
    return row


def test_a_wrong_unit_is_rejected(sub):
    (answer,) = ingest(record(unit="sec"))
    row = assert_rejected(answer, "wrong_unit", "Usage type 'voice' is measured in 'min', not 'sec'.")
    assert row.usage_type == UsageType.objects.get(code="voice")
    assert row.service_identifier == PHONE


def test_an_unknown_usage_type_is_rejected(sub):
    (answer,) = ingest(record(usage_type="sms", unit="msg"))
    row = assert_rejected(answer, "unknown_usage_type", "No usage type 'sms'.")
    assert (row.usage_type, row.usage_type_code, row.unit) == (None, "sms", "msg")


def test_no_subscription_for_the_identifier_on_that_day_is_rejected(sub):
    answers = ingest(
        record("before", event_time="2026-05-31T12:00:00+00:00"), record("other", service_identifier="+1999")
    )
    assert_rejected(answers[0], "no_subscription", "No subscription for service '+15550001' on 2026-05-31.")
    assert_rejected(answers[1], "no_subscription", "No subscription for service '+1999' on 2026-06-05.")


def test_an_event_outside_the_named_subscriptions_dates_is_rejected(priced_plan):
    sub = b.subscription(AccountFactory(), priced_plan, JUNE_1, end=dt.date(2026, 6, 30), identifier=PHONE)
    (answer,) = ingest(
        record(service_identifier=None, subscription_id=sub.pk, event_time="2026-07-01T00:00Z")
    )
    row = assert_rejected(
        answer,
        "outside_subscription_dates",
        f"The event's day 2026-07-01 is outside subscription {sub.pk} (2026-06-01 to 2026-06-30).",
    )
    assert row.subscription_ref == str(sub.pk)


def test_an_unknown_subscription_id_is_rejected(sub):
    (answer,) = ingest(record(service_identifier=None, subscription_id=sub.pk + 1000))
    assert_rejected(answer, "unknown_subscription", f"No subscription {sub.pk + 1000}.")


def test_a_usage_type_the_plan_does_not_price_is_rejected(sub):
    b.usage_type("data", "MB")
    (answer,) = ingest(record(usage_type="data", unit="MB"))
    assert_rejected(
        answer, "usage_not_priced", f"The plan of subscription {sub.pk} has no component for 'data'."
    )


def test_an_identifier_that_disagrees_with_the_subscription_id_is_rejected(sub):
    (answer,) = ingest(record(subscription_id=sub.pk, service_identifier="+1999"))
    assert_rejected(
        answer, "identifier_mismatch", f"Subscription {sub.pk} is for service '{PHONE}', not '+1999'."
    )


def test_two_subscriptions_covering_the_day_are_ambiguous(sub, priced_plan):
    other = b.subscription(AccountFactory(), priced_plan, JUNE_1, identifier=PHONE)
    (answer,) = ingest(record())
    assert_rejected(
        answer,
        "ambiguous_subscription",
        f"Subscriptions {sub.pk}, {other.pk} all cover service '{PHONE}' on 2026-06-05; "
        "send subscription_id.",
    )


def test_usage_in_a_period_already_billed_is_accepted(sub):
    subscription_rate(subscription=sub, bill_as_of=JULY_1)  # June is rated
    (answer,) = ingest(record(event_time="2026-06-20T12:00:00Z"))
    assert answer.outcome == "created"


# --- biller isolation --------------------------------------------------------------------------------------


@pytest.fixture
def two_billers(priced_plan):
    a, b_ = BillerFactory(code="alpha"), BillerFactory(code="beta")
    acc_a, acc_b = AccountFactory(), AccountFactory()
    BillerReferenceFactory(account=acc_a, biller=a)
    BillerReferenceFactory(account=acc_b, biller=b_)
    sub_a = b.subscription(acc_a, priced_plan, JUNE_1, identifier="+1000")
    sub_b = b.subscription(acc_b, priced_plan, JUNE_1, identifier="+2000")
    return a, b_, sub_a, sub_b


def test_a_biller_cannot_attach_usage_to_another_billers_subscription(two_billers):
    alpha, _beta, sub_a, sub_b = two_billers
    answers = ingest(
        record("own", service_identifier="+1000"),
        record("by-identifier", service_identifier="+2000"),
        record("by-id", service_identifier=None, subscription_id=sub_b.pk),
        source="alpha",
        biller=alpha,
    )
    assert answers[0].outcome == "created" and stored("own", "alpha").subscription == sub_a
    # Exactly what a subscription that does not exist would get: nothing about beta's data.
    assert_rejected(answers[1], "no_subscription", "No subscription for service '+2000' on 2026-06-05.")
    assert_rejected(answers[2], "unknown_subscription", f"No subscription {sub_b.pk}.")
    assert not sub_b.usage_records.exists()


def test_a_source_named_after_an_external_biller_is_bounded_by_it_whoever_sends(two_billers):
    _alpha, _beta, _sub_a, sub_b = two_billers
    (answer,) = ingest(record(service_identifier="+2000"), source="alpha")  # no biller given (staff, file)
    assert answer.code == "no_subscription"
    assert not sub_b.usage_records.exists()


def test_the_engines_own_biller_and_other_sources_reach_every_subscription(two_billers):
    _alpha, _beta, sub_a, sub_b = two_billers
    internal = engine_biller()
    assert internal.kind == Biller.Kind.INTERNAL
    answers = ingest(record("1", service_identifier="+2000"), source=internal.code, biller=internal)
    answers += ingest(record("2", service_identifier="+1000"), source="mediation")
    assert [a.outcome for a in answers] == ["created", "created"]
    assert stored("1", internal.code).subscription == sub_b
    assert stored("2").subscription == sub_a


# --- reprocessing ------------------------------------------------------------------------------------------


def test_reprocess_accepts_records_once_the_catalog_or_subscription_is_fixed(priced_plan, billing_admin_user):
    acc = AccountFactory()
    b.usage_component(priced_plan, unit_price="0.01", type_code="data", unit="MB")
    answers = ingest(
        record("unit", usage_type="data", unit="Mb"),
        record("nosub", service_identifier="+3000"),
        record("still", usage_type="sms", unit="msg"),
    )
    assert [a.code for a in answers] == ["wrong_unit", "no_subscription", "unknown_usage_type"]
    sub = b.subscription(acc, priced_plan, JUNE_1, identifier=PHONE)
    UsageType.objects.filter(code="data").update(unit="Mb")  # the admin fixes the unit
    b.subscription(acc, priced_plan, JUNE_1, identifier="+3000")  # and creates the missing subscription
    result = usage_records_reprocess(actor=billing_admin_user)
    assert result.as_dict() == {"accepted": 2, "rejected": 1, "skipped": 0}
    assert stored("unit").status == "accepted" and stored("unit").subscription == sub
    nosub = stored("nosub")
    assert (nosub.status, nosub.rejection_code, nosub.rejection_reason) == ("accepted", "", "")
    still = stored("still")
    assert (still.status, still.rejection_code) == ("rejected", "unknown_usage_type")
    audits = AuditRecord.objects.filter(action="usage_record.reprocess").order_by("object_id")
    assert [(a.object_id, a.actor_label, a.before, a.after) for a in audits] == [
        (str(stored("unit").pk), "billing-admin", {"status": "rejected", "rejection_code": "wrong_unit"},
         {"status": "accepted", "subscription_id": sub.pk}),
        (str(nosub.pk), "billing-admin", {"status": "rejected", "rejection_code": "no_subscription"},
         {"status": "accepted", "subscription_id": nosub.subscription_id}),
    ]  # fmt: skip
    assert audits[0].account_id == acc.pk


def test_reprocess_updates_the_reason_of_records_still_rejected(priced_plan):
    (answer,) = ingest(record(usage_type="sms", unit="msg"))
    b.usage_type("sms", "sms")  # now known, but in another unit
    result = usage_records_reprocess(actor="test")
    assert result.as_dict() == {"accepted": 0, "rejected": 1, "skipped": 0}
    row = stored()
    assert (row.rejection_code, row.rejection_reason) == (
        "wrong_unit",
        "Usage type 'sms' is measured in 'sms', not 'msg'.",
    )
    assert row.usage_type.code == "sms"


def test_reprocess_of_a_selection_skips_records_that_are_not_rejected(sub):
    ingest(record("ok"), record("bad", unit="sec"))
    result = usage_records_reprocess(records=UsageRecord.objects.all(), actor="test")
    assert result.as_dict() == {"accepted": 0, "rejected": 1, "skipped": 1}
    assert stored("ok").status == "accepted" and stored("bad").status == "rejected"
    assert not AuditRecord.objects.filter(action="usage_record.reprocess").exists()


def test_reprocess_keeps_biller_isolation(two_billers):
    alpha, _beta, _sub_a, sub_b = two_billers
    ingest(record(service_identifier=None, subscription_id=sub_b.pk), source="alpha", biller=alpha)
    result = usage_records_reprocess(actor="test")
    assert result.as_dict() == {"accepted": 0, "rejected": 1, "skipped": 0}
    assert not sub_b.usage_records.exists()


# --- rating ------------------------------------------------------------------------------------------------


def test_rating_bills_the_accepted_records_and_not_the_rejected(sub):
    ingest(
        record("a", quantity="100", event_time="2026-06-02T08:00:00Z"),
        record("b", quantity="20.5", event_time="2026-06-30T23:00:00Z"),
        record("c", quantity="500", unit="sec"),  # rejected
        record("d", quantity="7", event_time="2026-07-02T08:00:00Z"),  # July: billed with August
    )
    result = subscription_rate(subscription=sub, bill_as_of=JULY_1)
    july = next(s for s in result.created if s.period_start == JULY_1)
    (line,) = july.lines.filter(kind=CalculationLine.Kind.USAGE)
    assert (line.quantity, line.amount) == (D("120.5"), D("12.05"))
    assert (line.period_start, line.period_end) == (JUNE_1, dt.date(2026, 6, 30))
    statuses = {r.external_id: r.rating_status for r in UsageRecord.objects.select_related("rating")}
    assert statuses == {"a": "rated", "b": "rated", "c": "rejected", "d": "accepted"}
    assert set(RatedUsage.objects.values_list("segment", flat=True)) == {july.pk}
    # Rating never rewrites a record: the column still says accepted; only "d" still waits.
    assert set(UsageRecord.objects.values_list("status", flat=True)) == {"accepted", "rejected"}
    assert list(UsageToRate.objects.values_list("usage_record__external_id", flat=True)) == ["d"]


def test_a_reprocessed_record_is_rated_next_time(sub):
    ingest(record(unit="minutes", quantity="30"))
    UsageType.objects.filter(code="voice").update(unit="minutes")
    usage_records_reprocess(actor="test")
    subscription_rate(subscription=sub, bill_as_of=JULY_1)
    row = stored()
    assert row.rating_status == "rated"
    assert row.rating.segment.lines.get(kind=CalculationLine.Kind.USAGE).amount == D("3.00")


# --- speed -------------------------------------------------------------------------------------------------


def test_a_batch_takes_a_fixed_number_of_queries(sub, priced_plan, django_assert_num_queries):
    other = b.subscription(AccountFactory(), priced_plan, JUNE_1, identifier="+4000")
    records = [
        record(
            str(i), service_identifier=PHONE if i % 2 else None, subscription_id=None if i % 2 else other.pk
        )
        for i in range(1500)
    ]
    # savepoint, a biller lookup for the source, usage types, subscriptions (by id and by identifier in one),
    # priced usage types, ids from the sequence, savepoint, one COPY of every row (not counted: it bypasses
    # Django's cursor), savepoint release, savepoint release
    with django_assert_num_queries(9):
        answers = ingest(*records)
    assert usage_counts(answers)["created"] == 1500
    # the same, but the COPY meets a stored external id: rollback to (and release of) its savepoint, one
    # INSERT that skips the stored ones, one read of the stored records it skipped
    with django_assert_num_queries(12):
        answers = ingest(*records)
    assert usage_counts(answers)["duplicate"] == 1500


# --- concurrency -------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_with_overlapping_ids_store_each_record_once(monkeypatch):
    plan = b.plan()
    b.usage_component(plan, unit_price="0.10")
    b.subscription(AccountFactory(), plan, JUNE_1, identifier=PHONE)
    original = usage_service._match_all

    def slow_match(usages, restrict_to):
        found = original(usages, restrict_to)
        time.sleep(0.3)  # both batches have matched before either inserts
        return found

    monkeypatch.setattr(usage_service, "_match_all", slow_match)
    fallbacks = []
    one_by_one = usage_service._insert_one_by_one
    monkeypatch.setattr(
        usage_service, "_insert_one_by_one", lambda *args: fallbacks.append(1) or one_by_one(*args)
    )
    batches = [[record(f"r{n}") for n in range(0, 100)], [record(f"r{n}") for n in range(50, 150)]]

    results, errors = run_in_threads(lambda i: usage_counts(ingest(*batches[i])), 2)

    assert errors == []
    assert sorted((c["created"], c["duplicate"]) for c in results) == [(50, 50), (100, 0)]
    assert UsageRecord.objects.count() == 150
    # The second insert waited on the unique index for the first batch's commit and skipped its rows: no
    # batch had to go one record at a time.
    assert fallbacks == []
