"""Domain errors raised by services. The API and the pages turn them into clear messages."""

from __future__ import annotations


class ApplicationError(Exception):
    """A business rule refused the operation.

    ``code`` is stable for clients; ``fields`` maps a field name to its messages.
    """

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields or {}


class NotFound(ApplicationError):
    status_code = 404
    code = "not_found"


class Conflict(ApplicationError):
    """The request is valid but clashes with the current state (already paid, idempotency key reused...)."""

    status_code = 409
    code = "conflict"
