"""CSR pages of the payments app, mounted under /payments/ (payments/views.py)."""

from django.urls import path

from payments import views

urlpatterns: list = [
    # From the account page's Payments & adjustments section (POST).
    path("accounts/<str:number>/payments/", views.payment_create, name="payment-create"),
    path(
        "accounts/<str:number>/payments/<int:pk>/reverse/",
        views.payment_reverse_view,
        name="payment-reverse",
    ),
    path("accounts/<str:number>/adjustments/", views.adjustment_create, name="adjustment-create"),
    path("accounts/<str:number>/refunds/", views.refund_create, name="refund-create"),
    path("accounts/<str:number>/write-offs/", views.write_off_create, name="write-off-create"),
    # From the Payment methods section (POST).
    path("accounts/<str:number>/methods/", views.method_add, name="payment-method-add"),
    path(
        "accounts/<str:number>/methods/<int:pk>/default/",
        views.method_set_default,
        name="payment-method-default",
    ),
    path("accounts/<str:number>/methods/<int:pk>/remove/", views.method_remove, name="payment-method-remove"),
    # The supervisors' queue of adjustments waiting for approval.
    path("adjustments/pending/", views.pending_adjustments_view, name="adjustment-queue"),
    path("adjustments/<int:pk>/approve/", views.adjustment_approve_view, name="adjustment-approve"),
    path("adjustments/<int:pk>/reject/", views.adjustment_reject_view, name="adjustment-reject"),
]
