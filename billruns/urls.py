"""CSR pages of the billing engine, mounted under /billing/ (billruns/views.py)."""

urlpatterns: list = []
