"""Filters shared by every app's API."""

from __future__ import annotations

import datetime as dt

import django_filters
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_filters.fields import IsoDateTimeField


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, converted to UTC before it reaches a query. Python accepts UTC offsets up to
    +-23:59 and PostgreSQL only up to +-15:59, so an offset such as +19:38 sent as given would be a
    database error (a 500); in UTC it is an ordinary instant. An instant outside the years 1 to 9999 in UTC
    is invalid."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is not None and timezone.is_aware(value):
            try:
                value = value.astimezone(dt.UTC)
            except OverflowError:
                raise ValidationError("This date-time is out of range.", code="invalid") from None
        return value


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField
