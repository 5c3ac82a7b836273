from django.apps import AppConfig


class BillrunsConfig(AppConfig):
    name = "billruns"
