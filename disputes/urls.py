"""CSR pages of cases and disputes, mounted under /cases/ (disputes/views.py)."""

from django.urls import path

from disputes import views

urlpatterns: list = [
    path("queue/", views.case_queue, name="case-queue"),
    path("new/<str:number>/", views.case_new, name="case-new"),
    path("dispute/<int:statement_id>/", views.dispute_new, name="dispute-new"),
    # From the account page's Past due tile (POST, supervisors).
    path("accounts/<str:number>/resume-billing/", views.billing_resume_view, name="billing-resume"),
    # The case page and its forms (POST).
    path("<str:number>/", views.case_detail, name="case-detail"),
    path("<str:number>/status/", views.case_status_view, name="case-status"),
    path("<str:number>/assign/", views.case_assign_view, name="case-assign"),
    path("<str:number>/comment/", views.case_comment_view, name="case-comment"),
    path("<str:number>/resolve-dispute/", views.dispute_resolve_view, name="dispute-resolve"),
]
