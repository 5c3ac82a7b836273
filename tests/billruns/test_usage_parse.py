"""billruns.services.usage: the quick parse of a plain usage record gives what the full parse gives, and
leaves every other record (and so every field error) to it."""

from __future__ import annotations

import pytest
from django.utils import timezone

from billruns.services.usage import _parse, _parse_plain, _Usage

BASE = {
    "external_id": "cdr-1",
    "usage_type": "voice",
    "quantity": "12.5",
    "unit": "min",
    "event_time": "2026-06-05T23:30:00-04:00",
    "service_identifier": "+15550100",
}


def _record(**changes):
    record = dict(BASE)
    for key, value in changes.items():
        if value is KeyError:
            record.pop(key)
        else:
            record[key] = value
    return record


PLAIN = [
    _record(),
    _record(quantity="0"),
    _record(quantity="1234567890123.123456"),
    _record(quantity="5."),
    _record(event_time="2026-06-05T14:03:00Z"),
    _record(subscription_id=42),
    _record(subscription_id=42, service_identifier=KeyError),
    _record(service_identifier="", subscription_id=7),
]

OTHERS = [
    _record(external_id=12),  # a number is taken as its text, by _parse
    _record(external_id=" cdr-1 "),
    _record(quantity=12.5),
    _record(quantity="-1"),
    _record(quantity="1e3"),
    _record(quantity="1.0000001"),
    _record(quantity="12345678901234"),
    _record(quantity=" 1"),
    _record(event_time="2026-06-05T14:03:00"),
    _record(event_time="yesterday"),
    _record(subscription_id="42"),
    _record(subscription_id=True),
    _record(subscription_id=0),
    _record(service_identifier=KeyError),
    _record(service_identifier="   "),
    _record(unit="m\x00in"),
    _record(usage_type="x" * 41),
    _record(usage_type=KeyError),
    "not an object",
]


@pytest.mark.parametrize("raw", PLAIN)
def test_a_plain_record_parses_as_the_full_parse_does(raw):
    tz = timezone.get_default_timezone()
    quick = _parse_plain(raw, tz)
    assert isinstance(quick, _Usage)
    assert quick == _parse(raw, tz)


@pytest.mark.parametrize("raw", OTHERS)
def test_any_other_record_is_left_to_the_full_parse(raw):
    assert _parse_plain(raw, timezone.get_default_timezone()) is None
