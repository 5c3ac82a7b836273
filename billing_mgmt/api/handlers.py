"""Django's 400, 404 and 500 answers for the API's paths in the API's error shape (billing_mgmt.api.errors).

A URL under /api/ that no route matches (``/api/v1/payments/abc/`` where the id is a number) never reaches
DRF, and an error outside a view's exception handling is answered by Django itself: without these, a biller's
client would get an HTML page where the schema promises ``{"error": {...}}`` JSON. Pages keep Django's
templates (templates/404.html, 500.html).
"""

from __future__ import annotations

from django.http import JsonResponse
from django.views import defaults

from billing_mgmt.api.errors import error_body

API_PREFIX = "/api/"


def _is_api(request) -> bool:
    return request.path.startswith(API_PREFIX)


def bad_request(request, exception=None):
    """Django refuses some requests before any view runs, or while DRF reads the body: a form body with more
    than DATA_UPLOAD_MAX_NUMBER_FIELDS fields, a disallowed Host (both SuspiciousOperation)."""
    if _is_api(request):
        message = "The request could not be read: it is malformed or has too many fields."
        return JsonResponse(error_body("invalid", message), status=400)
    return defaults.bad_request(request, exception)


def page_not_found(request, exception=None):
    if _is_api(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        body = error_body(
            "server_error", "The server failed to answer; the error is logged. Try again later."
        )
        return JsonResponse(body, status=500)
    return defaults.server_error(request)
