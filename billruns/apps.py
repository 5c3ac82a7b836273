from django.apps import AppConfig


class BillrunsConfig(AppConfig):
    name = "billruns"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from .defaults import ensure_catalog_defaults

        post_migrate.connect(ensure_catalog_defaults, sender=self, dispatch_uid="billruns.catalog_defaults")
