"""Accounts API, mounted under /api/v1/ by billing_mgmt/urls.py."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import AccountByReferenceView, AccountViewSet

router = SimpleRouter()
router.register("accounts", AccountViewSet, basename="api-account")

urlpatterns = [
    path(
        "accounts/by-ref/<str:external_ref>/",
        AccountByReferenceView.as_view(),
        name="api-account-by-ref",
    ),
    *router.urls,
]
