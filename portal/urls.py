"""The customer portal, mounted at /portal/ by billing_mgmt/urls.py (names ``portal:...``)."""

from django.urls import path, re_path

from . import views

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", views.logout, name="logout"),
    path("account/", views.account_switch, name="account-switch"),
    path("statements/", views.statement_list, name="statements"),
    path("statements/<int:pk>/", views.statement_detail, name="statement-detail"),
    path("statements/<int:pk>/dispute/", views.dispute_line, name="dispute"),
    # /portal/invoices/INV-00000042.pdf (and .html): the invoice's stored documents.
    re_path(
        r"^invoices/(?P<number>[^/]+?)\.(?P<extension>pdf|html)$",
        views.invoice_download,
        name="invoice-download",
    ),  # fmt: skip
    path("help/", views.help_center, name="help"),
    path("help/<slug:code>/", views.help_request, name="help-request"),
    path("cases/", views.case_list, name="cases"),
    path("cases/<str:number>/", views.case_detail, name="case-detail"),
    path("cases/<str:number>/reply/", views.case_reply, name="case-reply"),
]
