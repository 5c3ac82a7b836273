"""Writes of the invoicing app.

``invoices_render`` is the one service a billing run's Formatting step calls (billruns.services.run_work):
it renders the invoice documents of a set of bills. Invoice documents (templates, PDF/HTML/XML, numbering,
storage, delivery) are F5; until that lands this service renders nothing and says so, and the Formatting
step records what it says in its result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NOT_AVAILABLE = (
    "No invoice documents were rendered: invoice rendering (templates, PDF, HTML and XML documents) is not "
    "part of this version yet. The bills are posted and complete."
)


@dataclass
class RenderResult:
    """Which bills got their documents, and a note for the run's step result."""

    rendered: list[int] = field(default_factory=list)  # statement ids
    note: str = ""


def invoices_render(*, statement_ids: list[int], actor: object = None) -> RenderResult:
    """Render the invoice documents of these bills (statements). Idempotent: a bill whose documents exist
    is not rendered again (issued documents are frozen files)."""
    return RenderResult(rendered=[], note=NOT_AVAILABLE)
