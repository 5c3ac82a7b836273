from django.apps import AppConfig


class StatementsConfig(AppConfig):
    name = "statements"

    def ready(self) -> None:
        from billing_mgmt.sections import HEADER, MAIN, AccountSection, register_section

        register_section(
            AccountSection(
                key="balance",
                title="Balance",
                view="statements.views.ledger.balance_section",
                order=10,
                slot=HEADER,
                permission="statements.view_accountbalance",
            )
        )
        register_section(
            AccountSection(
                key="ledger",
                title="Ledger",
                view="statements.views.ledger.ledger_section",
                order=50,
                slot=MAIN,
                permission="statements.view_financialtransaction",
            )
        )
