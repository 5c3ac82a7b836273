"""CSR pages of the billing engine, mounted under /billing/ (billruns/views.py)."""

from django.urls import path

from billruns import views as billrun_views

urlpatterns: list = [
    # The next bill's preview (GET) and "Bill now" (POST) from the account page's Subscriptions section.
    path("accounts/<str:number>/preview/", billrun_views.bill_preview_view, name="bill-preview"),
    path("accounts/<str:number>/bill/", billrun_views.bill_now, name="bill-now"),
    # A top-up (POST) from the account page's Prepaid wallet section.
    path("accounts/<str:number>/wallet/top-up/", billrun_views.wallet_topup_view, name="wallet-topup"),
]
