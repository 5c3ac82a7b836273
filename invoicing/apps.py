from django.apps import AppConfig


class InvoicingConfig(AppConfig):
    name = "invoicing"

    def ready(self) -> None:
        # CSR pages (invoicing/views.py): the account page's Invoices section (after Statements) and the
        # statement page's Invoice panel; the downloads are at /invoices/<number>.pdf|.html|.xml.
        from billing_mgmt.sections import MAIN, AccountSection, register_section, register_statement_panel

        register_section(
            AccountSection(
                key="invoices",
                title="Invoices",
                view="invoicing.views.invoices_section",
                order=22,  # statements are 20, charts 25
                slot=MAIN,
                permission="invoicing.view_invoice",
                lazy="activity",  # loaded right after the page (billing_mgmt.sections)
            )
        )
        register_statement_panel(
            "invoice",
            "invoicing.views.invoice_panel",
            permission="invoicing.view_invoice",
            order=5,  # before the engine's Calculation (10)
            title="Invoice",
        )
