"""manage.py import_usage FILE.csv --source NAME."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from billruns.models import UsageRecord
from tests.billruns import builders as b
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db

HEADER = "external_id,usage_type,quantity,unit,event_time,service_identifier,subscription_id"


@pytest.fixture
def sub():
    plan = b.plan()
    b.usage_component(plan, unit_price="0.10")
    return b.subscription(AccountFactory(), plan, dt.date(2026, 6, 1), identifier="+1000")


def write(tmp_path, *lines, name="usage.csv", header=HEADER):
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return str(path)


def run(path, source="mediation", **options):
    out = StringIO()
    call_command("import_usage", path, source=source, stdout=out, **options)
    return out.getvalue()


def test_a_good_file_is_imported_and_a_rerun_creates_nothing_new(tmp_path, sub):
    path = write(
        tmp_path,
        "c-1,voice,10,min,2026-06-05T12:00:00Z,+1000,",
        f"c-2,voice,2.5,min,2026-06-06T12:00:00+02:00,,{sub.pk}",
        "c-3,voice,1,sec,2026-06-07T12:00:00Z,+1000,",
        "c-4,voice,4,min,2026-06-08T12:00:00Z,+9999,",
        "c-5,voice,5,min,2026-06-09T12:00:00Z,+1000,",
    )

    out = run(path, chunk_size=2)  # three chunks

    assert out.splitlines()[0] == (
        f"5 row(s) from {path} (source mediation): 3 created, 0 duplicate, 2 rejected, 0 invalid, 0 conflict."
    )
    assert "Import finished." in out
    rows = {r.external_id: r for r in UsageRecord.objects.all()}
    assert set(rows) == {"c-1", "c-2", "c-3", "c-4", "c-5"}
    assert {r.source for r in rows.values()} == {"mediation"}
    assert (rows["c-2"].subscription, rows["c-2"].subscription_ref, rows["c-2"].quantity) == (
        sub,
        str(sub.pk),
        b.D("2.5"),
    )
    assert (rows["c-3"].status, rows["c-3"].rejection_code) == ("rejected", "wrong_unit")
    assert (rows["c-4"].status, rows["c-4"].rejection_code) == ("rejected", "no_subscription")

    again = run(path)

    assert again.splitlines()[0] == (
        f"5 row(s) from {path} (source mediation): 0 created, 5 duplicate, 0 rejected, 0 invalid, 0 conflict."
    )
    assert UsageRecord.objects.count() == 5


def test_the_optional_column_may_be_left_out_and_columns_come_in_any_order(tmp_path, sub):
    path = write(
        tmp_path,
        "+1000,c-1,10,voice,min,2026-06-05T12:00:00Z",
        header="service_identifier,external_id,quantity,usage_type,unit,event_time",
    )

    out = run(path)

    assert "1 created" in out
    assert UsageRecord.objects.get().subscription == sub


def test_invalid_rows_are_listed_with_their_line_and_fail_the_command(tmp_path, sub):
    path = write(
        tmp_path,
        "c-1,voice,10,min,2026-06-05T12:00:00Z,+1000,",
        "c-2,voice,-3,min,2026-06-05T12:00:00Z,+1000,",
        "c-3,voice,1,min,2026-06-05 12:00,+1000,",
        "c-4,voice,1,min,2026-06-05T12:00:00Z,+1000,,surplus",
        "c-5,voice,,min,2026-06-05T12:00:00Z,,",
    )
    out = StringIO()

    with pytest.raises(CommandError) as exc:
        call_command("import_usage", path, source="mediation", stdout=out)

    assert (
        str(exc.value)
        == "4 invalid and 0 conflicting row(s) were not stored; fix them and run the file again."
    )
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("1 created, 0 duplicate, 0 rejected, 4 invalid, 0 conflict.")
    assert lines[1:] == [
        "  line 3: invalid: quantity: Must not be negative.",
        "  line 4: invalid: event_time: Give the offset (+02:00, Z): the time is ambiguous without it.",
        "  line 5: invalid: more cells than the header has columns.",
        "  line 6: invalid: quantity: This field is required. "
        "Name the subscription: subscription_id or service_identifier.",
    ]
    assert list(UsageRecord.objects.values_list("external_id", flat=True)) == ["c-1"]  # the valid row


def test_a_changed_row_under_a_known_id_is_a_conflict_and_fails(tmp_path, sub):
    run(write(tmp_path, "c-1,voice,10,min,2026-06-05T12:00:00Z,+1000,"))
    path = write(tmp_path, "c-1,voice,11,min,2026-06-05T12:00:00Z,+1000,", name="fixed.csv")

    with pytest.raises(CommandError, match="0 invalid and 1 conflicting"):
        run(path)

    assert UsageRecord.objects.get().quantity == 10


def test_a_missing_file_fails(tmp_path):
    with pytest.raises(CommandError, match="No such file: .*nope.csv"):
        run(str(tmp_path / "nope.csv"))


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("external_id,usage_type,quantity,unit,event_time",
         "missing column(s): service_identifier"),
        ("external_id,usage_type,quantity,unit,event_time,service_identifier,account",
         "unknown column(s): 'account'"),
        ("external_id,usage_type,quantity,unit,event_time,service_identifier,unit",
         "repeated column(s): unit"),
    ],
)  # fmt: skip
def test_a_wrong_header_fails_before_anything_is_stored(tmp_path, sub, header, problem):
    path = write(tmp_path, "c-1,voice,10,min,2026-06-05T12:00:00Z,+1000", header=header)

    with pytest.raises(CommandError) as exc:
        run(path)

    assert str(exc.value) == (
        f"Wrong header ({problem}). Expected: "
        "external_id,usage_type,quantity,unit,event_time,service_identifier[,subscription_id]"
    )
    assert not UsageRecord.objects.exists()


def test_an_empty_file_and_a_file_that_is_not_text_fail(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage")

    with pytest.raises(CommandError, match="The file is empty"):
        run(str(empty))
    with pytest.raises(CommandError, match="is not UTF-8 text"):
        run(str(binary))


def test_a_header_with_a_byte_order_mark_is_read(tmp_path, sub):
    path = tmp_path / "excel.csv"
    path.write_text(HEADER + "\nc-1,voice,10,min,2026-06-05T12:00:00Z,+1000,\n", encoding="utf-8-sig")

    assert "1 created" in run(str(path))


def test_only_the_first_errors_are_listed(tmp_path, sub):
    path = write(tmp_path, *[f"c-{n},voice,-1,min,2026-06-05T12:00:00Z,+1000," for n in range(25)])
    out = StringIO()

    with pytest.raises(CommandError, match="25 invalid"):
        call_command("import_usage", path, source="mediation", stdout=out)

    lines = out.getvalue().splitlines()
    assert len(lines) == 1 + 20 + 1
    assert lines[20] == "  line 21: invalid: quantity: Must not be negative."
    assert lines[-1] == "  ... and 5 more."
