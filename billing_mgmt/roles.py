"""Roles: who may see and do what.

People are Django users in groups: CSR, Supervisor (a CSR who also approves), Billing admin (configures the
product in Django admin) and Customer (portal users, bound to an account through a Contact). External
billers are not users: they call the API with a key bound to their Biller (accounts.BillerApiKey).
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group, Permission

CSR = "CSR"
SUPERVISOR = "Supervisor"
BILLING_ADMIN = "Billing admin"
CUSTOMER = "Customer"
STAFF_ROLES = (CSR, SUPERVISOR, BILLING_ADMIN)
ALL_ROLES = (*STAFF_ROLES, CUSTOMER)

# Model permissions per role, as "app_label.codename" or "app_label.*" (every permission of that app).
# Later features add their own codenames here.
PROJECT_APPS = ("billing_mgmt", "accounts", "statements", "billruns", "payments", "disputes", "invoicing")
ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    CSR: (
        "accounts.view_account",
        "accounts.view_contact",
        "accounts.view_billingprofile",
        "accounts.view_biller",
        "accounts.view_billerreference",
        "statements.view_financialtransaction",
        "statements.view_accountbalance",
        "statements.view_statement",
        "statements.view_statementline",
        "statements.view_usagesummary",
        "statements.view_billerbalancesnapshot",
        # The billing engine: what a subscription is on, and how each charge was calculated.
        "billruns.view_subscription",
        "billruns.view_billsegment",
        "billruns.view_calculationline",
        "billruns.view_priceplan",
        "billruns.view_plancomponent",
        "billruns.view_price",
        "billruns.view_pricetier",
        "billruns.view_product",
        "billruns.view_discount",
        "billruns.view_usagerecord",
        "billruns.preview_bill",
        # Prepaid wallets: the estimate of when a wallet runs out (the account page shows it).
        "billruns.view_walletestimate",
        # Invoices: the documents of bills and how each copy was delivered (download PDF, HTML, XML).
        "invoicing.view_invoice",
        "invoicing.view_invoicedelivery",
        # Payments, adjustments and payment methods: CSRs read them and enter them (payments.services).
        "payments.view_payment",
        "payments.add_payment",
        "payments.view_paymentallocation",
        "payments.view_adjustment",
        "payments.add_adjustment",
        "payments.view_adjustmentreason",
        "payments.view_paymentmethod",
        "payments.add_paymentmethod",
        "payments.change_paymentmethod",
        # Cases and disputes (disputes.services): CSRs raise and work them; supervisors decide.
        "disputes.view_serviceprocess",
        "disputes.view_case",
        "disputes.add_case",
        "disputes.change_case",
        "disputes.view_caseevent",
        "disputes.view_dispute",
        "disputes.add_dispute",
        "accounts.view_billingsuspension",
        # The account's history on its page (the audit trail: who changed what, when, before and after).
        "billing_mgmt.view_auditrecord",
    ),
    # Everything a CSR has, plus approvals added by later features and billing an account now.
    SUPERVISOR: (
        "billruns.bill_account",
        "billruns.topup_wallet",
        "invoicing.add_invoice",
        # Adjustments above a CSR's limit wait for a supervisor (maker-checker).
        "payments.approve_adjustment",
        "payments.write_off_balance",
        "payments.add_refund",
        "payments.view_refund",
        "payments.view_writeoff",
        # Approving or rejecting due-date extensions and billing suspensions (and resuming billing), and
        # resolving disputes (a credit in full or in part, or a rejection).
        "disputes.decide_case",
        "disputes.resolve_dispute",
    ),
    BILLING_ADMIN: (*(f"{app}.*" for app in PROJECT_APPS), "django_celery_beat.*", "django_celery_results.*"),
    CUSTOMER: (),
}
INHERITS = {SUPERVISOR: (CSR,)}


def _permissions_for(role: str) -> set[tuple[str, str]]:
    specs = list(ROLE_PERMISSIONS[role])
    for parent in INHERITS.get(role, ()):
        specs.extend(ROLE_PERMISSIONS[parent])
    return {tuple(spec.split(".", 1)) for spec in specs}  # type: ignore[misc]


def ensure_roles(**kwargs) -> None:
    """Create the role groups and give them their permissions. Idempotent; runs after every migrate."""
    using = kwargs.get("using", "default")
    # post_migrate reaches this app before the apps listed after it in INSTALLED_APPS have their permissions
    # (on a fresh database, and after every test flush): create them all first, or CSRs would get none.
    from django.apps import apps
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using)
    for role in ALL_ROLES:
        group, _ = Group.objects.using(using).get_or_create(name=role)
        wanted = _permissions_for(role)
        perms = Permission.objects.using(using).select_related("content_type")
        whole_apps = {app for app, codename in wanted if codename == "*"}
        exact = {(app, codename) for app, codename in wanted if codename != "*"}
        ids = [
            p.pk
            for p in perms
            if p.content_type.app_label in whole_apps or (p.content_type.app_label, p.codename) in exact
        ]
        group.permissions.add(*ids)


def role_names(user: AbstractBaseUser | AnonymousUser) -> set[str] | frozenset[str]:
    """The user's group names, read once per request (cached on the user object)."""
    if not user.is_authenticated:
        return frozenset()
    names = getattr(user, "_role_names", None)
    if names is None:
        names = set(user.groups.values_list("name", flat=True))
        user._role_names = names
    return names


def has_role(user: AbstractBaseUser | AnonymousUser, *roles: str) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return bool(role_names(user).intersection(roles))


def is_staff_member(user) -> bool:
    """CSR pages are for CSRs, supervisors and billing admins."""
    return has_role(user, *STAFF_ROLES)


def is_supervisor(user) -> bool:
    return has_role(user, SUPERVISOR, BILLING_ADMIN)
