"""CSR pages of accounts, mounted at the site root by billing_mgmt/urls.py."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("", views.csr_home, name="csr-home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("search/", views.account_search, name="account-search"),
    path("accounts/<str:number>/", views.account_detail, name="account-detail"),
    path("accounts/<str:number>/sections/<slug:key>/", views.account_section, name="account-section"),
    path("accounts/<str:number>/parts/<slug:part>/", views.account_part, name="account-part"),
]
