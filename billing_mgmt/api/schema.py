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


_COMMON_DESCRIPTIONS = {
    "404": "Not found, or not visible to the caller; on a list, a `page` past the last page (or not a page "
    "number), as for every paginated list.",
    "400": "Invalid input, such as an Idempotency-Key header that is not 1 to 255 printable ASCII characters "
    "without spaces; `error.fields` names each bad field. Nothing was stored.",
    "429": "`throttled`: the caller sent more requests than its rate allows (billing_mgmt.throttling); retry "
    "after the number of seconds in `Retry-After`.",
}
_METHODS = ("get", "put", "post", "patch", "delete")


def document_common_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook: the answers every operation can give whatever its view says, so
    that the schema lists every status the API really sends (the API fuzz test, tests/security/, holds each
    answer to the schema):

    * 429 on every operation: the rate limit (``DEFAULT_THROTTLE_CLASSES``) applies to every API view;
    * 404 on every paginated list: DRF's pagination answers 404 for a page that does not exist;
    * 400 on every operation taking the Idempotency-Key header: a malformed key is refused before the view.
    """
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}

    def response(code: str) -> dict:
        answer = {"content": error, "description": _COMMON_DESCRIPTIONS[code]}
        if code == "429":
            answer["headers"] = {
                "Retry-After": {
                    "schema": {"type": "integer"},
                    "description": "Seconds until the caller's window reopens.",
                }
            }
        return answer

    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in _METHODS:
                continue
            parameters = {(p.get("in"), p.get("name")) for p in operation.get("parameters", [])}
            responses = operation.setdefault("responses", {})
            if ("query", "page") in parameters:
                responses.setdefault("404", response("404"))
            if ("header", IDEMPOTENCY_HEADER) in parameters:
                responses.setdefault("400", response("400"))
            responses.setdefault("429", response("429"))
            operation["responses"] = dict(sorted(responses.items()))
    return result
