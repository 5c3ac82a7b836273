from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from billing_mgmt.sections import MAIN, SIDE, AccountSection, register_section

        # The account page's own sections; other apps register theirs the same way (docs/csr-pages.md).
        register_section(
            AccountSection(
                key="profile",
                title="Billing profile",
                view="accounts.views.profile_section",
                order=10,
                slot=SIDE,
                permission="accounts.view_billingprofile",
            )
        )
        register_section(
            AccountSection(
                key="contacts",
                title="Contacts",
                view="accounts.views.contacts_section",
                order=20,
                slot=SIDE,
                permission="accounts.view_contact",
            )
        )
        register_section(
            AccountSection(
                key="references",
                title="Biller references",
                view="accounts.views.references_section",
                order=30,
                slot=SIDE,
                permission="accounts.view_billerreference",
            )
        )
        # The account's history (its audit records): with the ledger, right after the page.
        register_section(
            AccountSection(
                key="history",
                title="History",
                view="accounts.views.history_section",
                order=60,
                slot=MAIN,
                permission="billing_mgmt.view_auditrecord",
                lazy="more",  # loaded right after the page (billing_mgmt.sections)
            )
        )
