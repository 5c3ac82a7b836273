"""The composition root: every app's pages and API are mounted here."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

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
    # The split view serves its start-up script as a file: the CSP allows no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("accounts.urls")),
    path("statements/", include("statements.urls")),
    path("billing/", include("billruns.urls")),
    path("invoices/", include("invoicing.urls")),
    path("payments/", include("payments.urls")),
    path("portal/", include("portal.urls")),
    path("cases/", include("disputes.urls")),
]

# Django's own 400, 404 and 500 answers, in the API's error shape on its paths (billing_mgmt.api.handlers).
handler400 = "billing_mgmt.api.handlers.bad_request"
handler404 = "billing_mgmt.api.handlers.page_not_found"
handler500 = "billing_mgmt.api.handlers.server_error"
