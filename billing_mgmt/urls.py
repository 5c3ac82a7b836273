"""The composition root: every app's pages and API are mounted here."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing_mgmt.views import healthz

api_v1 = [
    path("", include("accounts.api.urls")),
    path("", include("statements.api.urls")),
    path("", include("billruns.api.urls")),
    path("", include("invoicing.api.urls")),
    path("", include("payments.api.urls")),
    path("", include("disputes.api.urls")),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("accounts.urls")),
    path("statements/", include("statements.urls")),
    path("billing/", include("billruns.urls")),
    path("invoices/", include("invoicing.urls")),
    path("payments/", include("payments.urls")),
    path("portal/", include("portal.urls")),
    path("cases/", include("disputes.urls")),
]
