"""The XML export validates against invoicing/schema/invoice-1.0.xsd and says what the bill says."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from lxml import etree

from invoicing.content import UsageEvent, invoice_documents
from invoicing.exports import NAMESPACE, invoice_xml
from invoicing.models import Invoice
from invoicing.services import invoices_issue
from statements.models import FinancialTransaction, StatementLine

from . import builders
from .builders import hierarchy_bill, source_example_bill

pytestmark = pytest.mark.django_db

XSD_PATH = Path(settings.BASE_DIR) / "invoicing" / "schema" / "invoice-1.0.xsd"
NS = {"i": NAMESPACE}
XS = {"xs": "http://www.w3.org/2001/XMLSchema"}


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(XSD_PATH)))


def document(statement):
    invoices_issue(statement_ids=[statement.pk], actor="test")
    invoice = Invoice.objects.select_related("series", "template").get(statement=statement)
    return invoice, invoice_documents([invoice])[statement.pk]


def valid_tree(schema: etree.XMLSchema, xml: bytes) -> etree._Element:
    root = etree.fromstring(xml)
    assert schema.validate(root), "\n".join(str(e) for e in schema.error_log)
    return root


def text(root, path: str) -> str:
    found = root.findall(path, NS)
    assert len(found) == 1, f"{path}: {len(found)} elements"
    return found[0].text or ""


def summary(node) -> dict[str, Decimal]:
    return {child.tag.split("}")[1]: Decimal(child.text) for child in node}


def test_source_example_validates_and_carries_the_amounts(schema):
    invoice, doc = document(source_example_bill())
    root = valid_tree(schema, invoice_xml(doc))

    assert root.tag == f"{{{NAMESPACE}}}Invoice"
    assert (root.get("version"), root.get("kind"), root.get("format")) == ("1.0", "invoice", "detailed")
    assert text(root, "i:Header/i:Number") == invoice.number
    assert text(root, "i:Header/i:StatementNumber") == "S-000348"
    assert text(root, "i:Header/i:Currency") == "USD"
    assert root.find("i:Header/i:Corrects", NS) is None
    assert root.find("i:Header/i:BillPeriod", NS).attrib == {"start": "2026-10-01", "end": "2026-10-31"}
    assert text(root, "i:Customer/i:Name") == "Ada Lovelace"
    assert root.find("i:Customer", NS).get("accountNumber") == invoice.account.number
    assert text(root, "i:Amounts/i:TotalDue") == "355.08"
    assert text(root, "i:Amounts/i:PreviousBalance") == "100.00"
    assert summary(root.find("i:ChargeSummary/i:Totals", NS)) == {
        "Gross": Decimal("348.00"),
        "Recurring": Decimal("300.00"),
        "OneTime": Decimal("0"),
        "Usage": Decimal("48.00"),
        "Discounts": Decimal("-25.20"),
        "Taxes": Decimal("32.28"),
        "Total": Decimal("355.08"),
    }
    totals_text = [e.text for e in root.find("i:ChargeSummary/i:Totals", NS)]
    assert totals_text == ["348.00", "300.00", "0.00", "48.00", "-25.20", "32.28", "355.08"]
    assert root.find("i:ChargeSummary/i:ServiceType", NS).get("serviceType") == "mobile"
    lines = root.findall("i:Services/i:Service/i:Lines/i:Line", NS)
    assert [(ln.get("type"), text(ln, "i:Amount")) for ln in lines] == [
        ("recurring", "300.00"),
        ("usage", "48.00"),
        ("discount", "-25.20"),
        ("tax", "32.28"),
    ]
    assert text(lines[1], "i:Quantity") == "480" and lines[1].find("i:Quantity", NS).get("unit") == "min"
    assert text(lines[1], "i:UnitPrice") == "0.1"
    usage = root.find("i:UsageSummary/i:Usage", NS)
    assert (text(usage, "i:Quantity"), text(usage, "i:Included"), text(usage, "i:Remaining")) == (
        "780",
        "1000",
        "220",
    )
    [payment] = root.findall("i:Payments/i:Entry", NS)
    assert (payment.get("kind"), payment.get("date"), text(payment, "i:Amount")) == (
        "payment",
        "2026-10-20",
        "-100.00",
    )
    assert [m.text for m in root.findall("i:Messages/i:Message", NS)] == ["Thank you for being a customer."]
    assert text(root, "i:PaymentSlip/i:Reference") == doc.payment_reference
    assert text(root, "i:PaymentSlip/i:Amount") == "355.08"
    assert root.find("i:ChildAccounts", NS) is None


def test_consolidated_invoice_has_each_child_account(schema):
    _, doc = document(hierarchy_bill())
    root = valid_tree(schema, invoice_xml(doc))

    children = root.findall("i:ChildAccounts/i:ChildAccount", NS)
    assert [(c.get("lines"), c.get("summarized")) for c in children] == [
        ("2", "false"),
        ("2", "false"),
        ("60", "true"),
    ]
    assert [text(c, "i:Name") for c in children] == ["Acme Branch 1", "Acme Branch 2", "Acme Branch 3"]
    assert [text(c, "i:Total") for c in children] == ["20.00", "20.00", "600.00"]
    # Itemized children list their services; the summarized one a total per product instead.
    assert len(children[0].findall("i:Service/i:Lines/i:Line", NS)) == 2
    assert children[2].findall("i:Service", NS) == []
    assert [(p.get("product"), p.text) for p in children[2].findall("i:ProductTotal", NS)] == [
        ("Line 0", "200.00"),
        ("Line 1", "200.00"),
        ("Line 2", "200.00"),
    ]
    # The parent's own service only in Services.
    assert [s.get("identifier") for s in root.findall("i:Services/i:Service", NS)] == ["HQ-1"]
    assert text(root, "i:Amounts/i:TotalDue") == "650.00"


def test_german_summary_invoice_keeps_iso_amounts_and_dates(schema):
    statement = source_example_bill(
        name="Grete Müller", language="de", locale="de_DE", currency="EUR", presentment="email_summary"
    )
    _, doc = document(statement)
    root = valid_tree(schema, invoice_xml(doc))

    assert root.get("format") == "summary"
    assert (text(root, "i:Header/i:Language"), text(root, "i:Header/i:Locale")) == ("de", "de_DE")
    assert text(root, "i:Header/i:Currency") == "EUR"
    assert text(root, "i:Customer/i:Name") == "Grete Müller"
    # Locale formatting is for the PDF and HTML: the XML stays machine-readable.
    assert text(root, "i:Amounts/i:TotalDue") == "355.08"
    assert text(root, "i:Header/i:DueDate") == "2026-11-15"


def test_credit_note_references_the_invoice_it_corrects(schema):
    original_statement = source_example_bill()
    original, _ = document(original_statement)
    credit = builders._statement(
        original_statement.account,
        number="S-000349",
        new_charges=Decimal("-300.00"),
        taxes=Decimal("-30.00"),
        corrects=original_statement,
    )
    builders._line(credit, 1, StatementLine.Type.ADJUSTMENT, "-300.00", description="Monthly fee refunded")
    builders._line(credit, 2, StatementLine.Type.TAX, "-30.00", description="VAT 10%")
    FinancialTransaction.objects.create(
        account=credit.account,
        kind=FinancialTransaction.Kind.REFUND,
        amount=Decimal("25.00"),
        currency="USD",
        effective_date=dt.date(2026, 10, 25),
        posted_at=dt.datetime(2026, 10, 25, 12, tzinfo=dt.UTC),
        description="Refund to card",
        statement=credit,
    )
    note, doc = document(credit)
    assert note.kind == Invoice.Kind.CREDIT_NOTE
    root = valid_tree(schema, invoice_xml(doc))

    assert root.get("kind") == "credit_note"
    corrects = root.find("i:Header/i:Corrects", NS)
    assert corrects.text == original.number
    assert corrects.get("date") == original.invoice_date.isoformat()
    assert text(root, "i:Amounts/i:TotalDue") == "-330.00"
    assert text(root, "i:PaymentSlip/i:Amount") == "0.00"  # nothing to pay on a credit note
    [refund] = root.findall("i:OtherActivity/i:Entry", NS)
    assert (refund.get("kind"), text(refund, "i:Amount")) == ("refund", "25.00")


def _events(*, statement_ids, limit):
    when = dt.datetime(2026, 10, 3, 9, 30, tzinfo=dt.UTC)
    events = [UsageEvent(time=when, usage_type="voice", quantity=Decimal("12.5"), unit="min")]
    return {sid: {"+44 7700 900123": (events, 3)} for sid in statement_ids}


@override_settings(INVOICE_USAGE_EVENTS=f"{__name__}._events")
def test_usage_events_and_tax_included_lines_validate(schema):
    statement = source_example_bill()
    builders._line(statement, 5, StatementLine.Type.TAX, "2.00", description="Levy", tax_included=True)
    _, doc = document(statement)
    root = valid_tree(schema, invoice_xml(doc))

    events = root.find("i:Services/i:Service/i:UsageEvents", NS)
    assert (events.get("total"), events.get("omitted")) == ("3", "2")
    [event] = events.findall("i:Event", NS)
    assert (event.text, event.get("time"), event.get("unit")) == ("12.5", "2026-10-03T09:30:00+00:00", "min")
    levy = root.findall("i:Services/i:Service/i:Lines/i:Line", NS)[-1]
    assert levy.get("taxIncluded") == "true"


# The schema is strict ---------------------------------------------------------------------------------


@pytest.fixture
def source_root():
    _, doc = document(source_example_bill())
    return etree.fromstring(invoice_xml(doc))


def _errors(schema, root) -> str:
    assert not schema.validate(root), "the schema accepted an invalid document"
    return "\n".join(str(e) for e in schema.error_log)


def test_schema_rejects_a_document_without_a_number(schema, source_root):
    number = source_root.find("i:Header/i:Number", NS)
    number.getparent().remove(number)
    assert "InvoiceDate" in _errors(schema, source_root)


def test_schema_rejects_an_empty_number(schema, source_root):
    source_root.find("i:Header/i:Number", NS).text = ""
    assert "Number" in _errors(schema, source_root)


@pytest.mark.parametrize("currency", ["usd", "US", "USDX", "U$D"])
def test_schema_rejects_a_bad_currency(schema, source_root, currency):
    source_root.find("i:Header/i:Currency", NS).text = currency
    assert "Currency" in _errors(schema, source_root)


@pytest.mark.parametrize(
    ("path", "attribute", "value"),
    [
        (".", "kind", "receipt"),
        (".", "format", "long"),
        (".", "version", "2.0"),
        ("i:Services/i:Service/i:Lines/i:Line", "type", "surcharge"),
        ("i:Payments/i:Entry", "kind", "gift"),
        ("i:Payments/i:Entry", "date", "20/10/2026"),
    ],
)
def test_schema_rejects_values_outside_its_types(schema, source_root, path, attribute, value):
    source_root.find(path, NS).set(attribute, value)
    _errors(schema, source_root)


def test_schema_rejects_a_non_decimal_amount_and_an_unknown_element(schema, source_root):
    source_root.find("i:Amounts/i:TotalDue", NS).text = "355,08"
    assert "TotalDue" in _errors(schema, source_root)
    source_root.find("i:Amounts/i:TotalDue", NS).text = "355.08"
    assert schema.validate(source_root)
    etree.SubElement(source_root.find("i:Header", NS), f"{{{NAMESPACE}}}Surprise").text = "x"
    assert "Surprise" in _errors(schema, source_root)


def test_schema_enumerations_are_the_models_choices():
    """A new line type or ledger kind must be added to the schema (an additive change: version 1.0)."""
    xsd = etree.parse(str(XSD_PATH))

    def values(name: str) -> set[str]:
        return set(xsd.xpath(f"//xs:simpleType[@name='{name}']//xs:enumeration/@value", namespaces=XS))

    assert values("LineType") == set(StatementLine.Type.values)
    assert values("LedgerKind") == set(FinancialTransaction.Kind.values)
    assert values("InvoiceKind") == set(Invoice.Kind.values)
    assert values("InvoiceFormat") == set(Invoice.Format.values)
