from django.apps import AppConfig


class BillrunsConfig(AppConfig):
    name = "billruns"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from .defaults import ensure_catalog_defaults

        post_migrate.connect(ensure_catalog_defaults, sender=self, dispatch_uid="billruns.catalog_defaults")
        # CSR pages (billruns/views.py): the account page's Subscriptions and Prepaid wallet sections and the
        # statement page's Calculation panel ("why is this charge this much?").
        from billing_mgmt.sections import MAIN, AccountSection, register_section, register_statement_panel

        register_section(
            AccountSection(
                key="subscriptions",
                title="Subscriptions",
                view="billruns.views.subscriptions_section",
                order=30,
                slot=MAIN,
                permission="billruns.view_subscription",
                lazy="usage",  # loaded right after the page (billing_mgmt.sections)
            )
        )
        register_section(
            AccountSection(
                key="wallet",
                title="Prepaid wallet",
                view="billruns.views.wallet_section",
                order=35,  # after the subscriptions that consume it, before the ledger
                slot=MAIN,
                permission="billruns.view_walletestimate",
                lazy="usage",  # loaded right after the page (billing_mgmt.sections)
                notice="billruns.wallet-notice:{number}",  # billruns.views.NOTICE_SESSION_KEY
            )
        )
        register_statement_panel(
            "calculation",
            "billruns.views.calculation_panel",
            permission="billruns.view_calculationline",
            order=10,
            title="Calculation",
        )
