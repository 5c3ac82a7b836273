"""OpenAPI pieces shared by every app's API: the error shape and the Idempotency-Key header."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from billing_mgmt.api.idempotency import HEADER as IDEMPOTENCY_HEADER


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. 'invalid', 'not_found'.")
    message = serializers.CharField()
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Field errors by dotted path, e.g. 'billing_profile.currency'.",
    )
    request_id = serializers.CharField(help_text="The X-Request-ID of the request, for support.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


_ERROR_DESCRIPTIONS = {
    400: "Invalid input; `error.fields` names each bad field. Nothing was stored.",
    401: "No or invalid credentials.",
    403: "Authenticated, but not allowed.",
    404: "Not found, or not visible to the caller.",
    409: "Conflict with the current state (a reference already used, an idempotency key reused).",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorSerializer, description=_ERROR_DESCRIPTIONS[code]) for code in codes}


IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    name=IDEMPOTENCY_HEADER,
    type=OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Optional. A repeat with the same key and the same request replays the first answer (with header "
        "Idempotent-Replayed: true) and writes nothing; the same key with a different request is a 409."
    ),
)
