from django.apps import AppConfig


class StatementsConfig(AppConfig):
    name = "statements"

    def ready(self) -> None:
        from billing_mgmt.sections import HEADER, MAIN, SIDE, AccountSection, register_section

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
                lazy="more",  # loaded right after the page (billing_mgmt.sections)
            )
        )
        # Freshness of the data pulled from the account's billers, and the "Refresh from billers" button.
        register_section(
            AccountSection(
                key="freshness",
                title="Data from billers",
                view="statements.views.refresh.freshness_section",
                order=15,
                slot=SIDE,
                permission="statements.view_statement",
                lazy="more",  # loaded right after the page (billing_mgmt.sections)
            )
        )
        # A biller's beat schedule follows its pull settings (why a receiver: statements/receivers.py).
        from django.db.models.signals import post_save

        from .receivers import biller_saved

        post_save.connect(
            biller_saved, sender="accounts.Biller", dispatch_uid="statements.biller_pull_schedule"
        )
        # Statements, biller balances and charts (statements/views/statements.py, charts.py).
        register_section(
            AccountSection(
                key="biller-balances",
                title="Account balances",
                view="statements.views.statements.balances_section",
                order=15,
                slot=MAIN,
                permission="statements.view_billerbalancesnapshot",
            )
        )
        register_section(
            AccountSection(
                key="statements",
                title="Statements",
                view="statements.views.statements.statements_section",
                order=20,
                slot=MAIN,
                permission="statements.view_statement",
            )
        )
        register_section(
            AccountSection(
                key="charts",
                title="Billing & usage",
                view="statements.views.charts.charts_section",
                order=25,
                slot=MAIN,
                permission="statements.view_statement",
                lazy="usage",  # loaded right after the page (billing_mgmt.sections)
            )
        )
