"""One error shape for every API error:

{"error": {"code": "invalid", "message": "...", "fields": {"field": ["message", ...]}, "request_id": "..."}}
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from billing_mgmt.errors import ApplicationError
from billing_mgmt.middleware import current_request_id

logger = logging.getLogger("billing_mgmt.api")

_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "throttled",
}


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF nests errors for nested serializers and lists; flatten to dotted field paths."""
    fields: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            for k, v in _flatten(value, path).items():
                fields.setdefault(k, []).extend(v)
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            fields[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                for k, v in _flatten(item, f"{prefix}.{index}" if prefix else str(index)).items():
                    fields.setdefault(k, []).extend(v)
    else:
        fields[prefix or "non_field_errors"] = [str(detail)]
    return fields


def error_body(code: str, message: str, fields: dict[str, list[str]] | None = None) -> dict:
    if fields and "__all__" in fields:  # Django's key for whole-object errors; DRF's name is clearer
        fields = {("non_field_errors" if k == "__all__" else k): v for k, v in fields.items()}
    return {
        "error": {
            "code": code,
            "message": message,
            "fields": fields or {},
            "request_id": current_request_id(),
        }
    }


def exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return Response(error_body("invalid", "The request is not valid.", fields), status=400)
    if isinstance(exc, RequestDataTooBig):
        # Django would answer a bare 400 (it is a SuspiciousOperation); the client needs to know it may retry
        # with smaller requests.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            error_body("request_too_large", f"The request body is larger than the limit of {limit} bytes."),
            status=413,
        )
    if isinstance(exc, DataError) and "NUL" in str(exc):
        # PostgreSQL text cannot hold NUL (0x00) characters and the driver refuses them before the query is
        # sent. DRF's CharField refuses them as field errors; lookups by a client's value (a slug field, an
        # id in the path) reach the driver with them. Such a path names nothing; such a value is invalid.
        request = context.get("request")
        if request is not None and "\x00" in request.path:
            return Response(error_body("not_found", "Not found."), status=404)
        return Response(error_body("invalid", "Text may not contain NUL (0x00) characters."), status=400)
    if isinstance(exc, IntegrityError):
        # A database constraint refused a write that the checks before it let through: almost always two
        # concurrent requests racing for one unique value. The transaction is rolled back; tell the client.
        logger.warning("API integrity error: %s", exc)
        return Response(
            error_body("conflict", "The request conflicts with the current state. Reload and try again."),
            status=409,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real server error: let Django log it and answer 500
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        message = "The request is not valid."
        if list(fields) == ["non_field_errors"]:
            message = fields["non_field_errors"][0]
        response.data = error_body("invalid", message, fields)
    else:
        detail = getattr(exc, "detail", "")
        code = getattr(detail, "code", None) or _CODES.get(response.status_code, "error")
        if response.status_code in (401, 403, 404):
            code = _CODES[response.status_code]
        response.data = error_body(code, str(detail) if detail else "Error.")
    if response.status_code == status.HTTP_404_NOT_FOUND:
        request = context.get("request")
        logger.info("API 404 for %s %s", getattr(request, "method", "?"), getattr(request, "path", "?"))
    return response
