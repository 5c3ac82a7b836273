from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self) -> None:
        # CSR pages (payments/views.py): the account page's Payments & adjustments section (after Invoices)
        # and Payment methods (after the Billing profile); the supervisors' queue is at
        # /payments/adjustments/pending/.
        from billing_mgmt.sections import MAIN, SIDE, AccountSection, register_section

        register_section(
            AccountSection(
                key="payments",
                title="Payments & adjustments",
                view="payments.views.payments_section",
                order=23,  # invoices are 22, charts 25, subscriptions 30
                slot=MAIN,
                permission="payments.view_payment",
                lazy="activity",  # loaded right after the page (billing_mgmt.sections)
                notice="payments.notice:payments:{number}",  # payments.views.NOTICE_KEY
            )
        )
        register_section(
            AccountSection(
                key="payment-methods",
                title="Payment methods",
                view="payments.views.methods_section",
                order=12,  # the billing profile is 10, data from billers 15
                slot=SIDE,
                permission="payments.view_paymentmethod",
            )
        )
