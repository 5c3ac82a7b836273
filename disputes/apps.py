from django.apps import AppConfig


class DisputesConfig(AppConfig):
    name = "disputes"

    def ready(self) -> None:
        # CSR pages (disputes/views.py): the account page's Cases and Disputes sections (after Payments) and
        # a header tile with what is past due (disputed amounts held out) and a billing suspension; the
        # statement page's Disputes panel; the supervisors' queue at /cases/queue/.
        from billing_mgmt.sections import (
            HEADER,
            MAIN,
            AccountSection,
            register_section,
            register_statement_panel,
        )

        register_section(
            AccountSection(
                key="past-due",
                title="Past due",
                view="disputes.views.past_due_section",
                order=20,  # after the balance tiles (10)
                slot=HEADER,
                permission="statements.view_statement",
                refresh_on=("account-changed", "case-changed"),
            )
        )
        register_section(
            AccountSection(
                key="cases",
                title="Cases",
                view="disputes.views.cases_section",
                order=24,  # payments are 23, charts 25
                slot=MAIN,
                permission="disputes.view_case",
                refresh_on=("account-changed", "case-changed"),
                lazy="activity",  # loaded right after the page (billing_mgmt.sections)
            )
        )
        register_section(
            AccountSection(
                key="disputes",
                title="Disputes",
                view="disputes.views.disputes_section",
                order=24,
                slot=MAIN,
                permission="disputes.view_dispute",
                refresh_on=("account-changed", "case-changed"),
                lazy="activity",  # loaded right after the page (billing_mgmt.sections)
            )
        )
        register_statement_panel(
            "disputes", "disputes.views.statement_disputes_panel", permission="disputes.view_dispute",
            order=30, title="Disputes",
        )  # fmt: skip
