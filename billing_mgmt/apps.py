from django.apps import AppConfig


class KernelConfig(AppConfig):
    """The shared kernel: money, numbering, roles and audit records. It imports no other app."""

    name = "billing_mgmt"
    verbose_name = "Kernel (numbering, audit)"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in
        from django.core import checks
        from django.db.models.signals import post_migrate

        from .middleware import mark_login
        from .roles import ensure_roles
        from .throttling import check_shared_cache

        # Groups are reference data that every environment needs: create them after every migrate.
        post_migrate.connect(ensure_roles, sender=self)
        # A staff login starts the idle-timeout clock (billing_mgmt.middleware.StaffIdleTimeoutMiddleware).
        user_logged_in.connect(mark_login, dispatch_uid="billing_mgmt.idle_timeout")
        checks.register(check_shared_cache, checks.Tags.security, deploy=True)
