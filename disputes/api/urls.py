"""Cases API, mounted under /api/v1/ by billing_mgmt/urls.py."""

from django.urls import path

from .views import CaseDetailView, CaseListView, ServiceProcessListView

urlpatterns = [
    path("cases/", CaseListView.as_view(), name="api-case-list"),
    path("cases/<str:number>/", CaseDetailView.as_view(), name="api-case"),
    path("service-processes/", ServiceProcessListView.as_view(), name="api-service-process-list"),
]
