"""Pages of statements, mounted at statements/ by billing_mgmt/urls.py.

The account page's sections need no URL here: the frame serves every registered section at
/accounts/<number>/sections/<key>/ (billing_mgmt.sections).
"""

from django.urls import path

from statements.views import refresh as refresh_views
from statements.views import statements as statement_views

urlpatterns: list = [
    path(
        "accounts/<str:number>/statements/<int:pk>/",
        statement_views.statement_detail,
        name="statement-detail",
    ),
    # "Refresh from billers" on the account page (POST), and its progress (the fragment polled by htmx).
    path("accounts/<str:number>/refresh/", refresh_views.account_refresh, name="account-refresh"),
    path(
        "accounts/<str:number>/refresh/<int:pk>/",
        refresh_views.account_refresh_status,
        name="account-refresh-status",
    ),
]
