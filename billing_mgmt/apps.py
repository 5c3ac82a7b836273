from django.apps import AppConfig


class KernelConfig(AppConfig):
    """The shared kernel: money, numbering, roles and audit records. It imports no other app."""

    name = "billing_mgmt"
    verbose_name = "Kernel (numbering, audit)"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from .roles import ensure_roles

        # Groups are reference data that every environment needs: create them after every migrate.
        post_migrate.connect(ensure_roles, sender=self)
