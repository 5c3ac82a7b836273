"""Settings, read once from the environment.

With nothing set, the product runs on embedded defaults: an SQLite file under var/, and a Celery broker on
the local filesystem (kombu's ``filesystem://`` transport), so that one command starts a working system with
no servers to install. Production sets DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY, DEBUG=false,
ALLOWED_HOSTS and the EMAIL_URL (see docs/deployment.md).
"""

from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()

DEBUG = env.bool("DEBUG", default=True)

_DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_celery_beat",
    "django_celery_results",
    "axes",
    "csp",
    "billing_mgmt",
    "accounts",
    "statements",
    "billruns",
    "payments",
    "disputes",
    "invoicing",
    "portal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "billing_mgmt.middleware.RequestIdMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "billing_mgmt.middleware.StaffIdleTimeoutMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes requires: it turns a lockout raised during authentication into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "billing_mgmt.urls"
WSGI_APPLICATION = "billing_mgmt.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "billing_mgmt.context_processors.product",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0 if DEBUG else 60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # a persistent connection that died is replaced, not used
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # The embedded database is shared by the web server, a worker and beat: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out login before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "csr-home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("fr", "Français"), ("es", "Español")]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")  # the business's zone, for billing dates
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
if DEBUG:
    # WhiteNoise serves from the finders in development but warns in each process when this is missing.
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Invoice documents (frozen once issued). Local disk by default; INVOICE_STORAGE_BACKEND and
    # INVOICE_STORAGE_OPTIONS (JSON) select another, e.g. django-storages' S3 (docs/invoicing.md).
    "invoices": {
        "BACKEND": env.str("INVOICE_STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"),
        "OPTIONS": env.json(
            "INVOICE_STORAGE_OPTIONS", default={"location": str(MEDIA_ROOT / "invoices"), "base_url": None}
        ),
    },
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# E-mail: EMAIL_URL such as smtp+tls://user:password@smtp.example.com:587; console in development.
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="billing@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Product facts printed on pages and invoices.
PRODUCT_NAME = env.str("PRODUCT_NAME", default="Billing Management")
SUPPORT_CONTACT = env.str("SUPPORT_CONTACT", default="support@example.com")
PAYMENT_URL = env.str("PAYMENT_URL", default="https://pay.example.com/")
# Where customers follow their cases (linked from case e-mails): the portal on this site.
PORTAL_URL = env.str("PORTAL_URL", default="http://127.0.0.1:8000/portal/")

# Celery: embedded filesystem broker unless CELERY_BROKER_URL is set; results in the database.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    _queue_dir = VAR_DIR / "celery" / "queue"
    _processed_dir = VAR_DIR / "celery" / "processed"
    _control_dir = VAR_DIR / "celery" / "control"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "store_processed": False,
        "control_folder": str(_control_dir),  # kombu's default is ./control in the working directory
    }
    # kombu's filesystem transport fails on a missing folder; the web process may queue before a worker runs.
    for _folder in (_queue_dir, _processed_dir, _control_dir):
        _folder.mkdir(parents=True, exist_ok=True)
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default="django-db")
CELERY_RESULT_EXTENDED = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# The queue tasks go to when none is named (one per deployment; tests give their real worker its own).
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="celery")
# Separate queues by kind of work (billing_mgmt.queues, docs/scaling.md), so that rendering invoices never
# starves billing. Unset (the default) is the default queue above: one worker does everything.
WORK_QUEUES = {
    "billing": env.str("CELERY_BILLING_QUEUE", default=""),
    "formatting": env.str("CELERY_FORMATTING_QUEUE", default=""),
    "ingest": env.str("CELERY_INGEST_QUEUE", default=""),
}

# Billing runs (billruns.services.run_work): a chunk whose worker holds it longer than the lease without
# finishing is taken to be lost and is queued again by the resume job; after this many attempts it is
# dead-lettered (its accounts get an exception and the run goes on).
BILLRUN_CHUNK_LEASE_SECONDS = env.int("BILLRUN_CHUNK_LEASE_SECONDS", default=600)
BILLRUN_CHUNK_MAX_ATTEMPTS = env.int("BILLRUN_CHUNK_MAX_ATTEMPTS", default=5)
CELERY_TIMEZONE = TIME_ZONE

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.BillerApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "billing_mgmt.api.pagination.DefaultPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "billing_mgmt.api.errors.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_CLASSES": ["billing_mgmt.throttling.ClientRateThrottle"],
    "DEFAULT_PARSER_CLASSES": [
        "billing_mgmt.api.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
# The largest request body accepted (bytes), JSON included (DRF reads JSON through HttpRequest.body). Bulk
# ingest of up to 5,000 statements with their lines needs more than Django's 2.5 MB default; a larger body is
# a 413 request_too_large (billing_mgmt.api.errors).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("API_MAX_BODY_BYTES", default=50 * 1024 * 1024)
SPECTACULAR_SETTINGS = {
    "TITLE": "Billing Management API",
    "DESCRIPTION": "REST API for billers and scripts. Amounts are decimal strings with an ISO 4217 currency.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",  # operation ids without the version: statements_update, ...
    # Several apps have a "status" or "type" with different choices: name each set once, by what it is.
    "ENUM_NAME_OVERRIDES": {
        "AccountStatusEnum": "accounts.models.Account.Status",
        "AccountTypeEnum": "accounts.models.Account.Type",
        "StatementStatusEnum": "statements.models.Statement.Status",
        "StatementLineTypeEnum": "statements.models.StatementLine.Type",
        "IngestStatusEnum": "statements.api.serializers.INGEST_STATUSES",
        "UsageRecordStatusEnum": "billruns.models.UsageRecord.Status",
        "SubscriptionStatusEnum": "billruns.models.Subscription.Status",
        "PlanComponentKindEnum": "billruns.models.PlanComponent.Kind",
        "TransactionKindEnum": "statements.records.TransactionRecordSerializer.KINDS",
        "ArClassificationEnum": "accounts.models.BillingProfile.ARClassification",
        "PaymentPreferenceEnum": "accounts.models.BillingProfile.PaymentPreference",
        "PresentmentPreferenceEnum": "accounts.models.BillingProfile.Presentment",
        "BillingRunStateEnum": "billruns.models.BillingRun.State",
        "BillingRunExecutionEnum": "billruns.models.BillingRun.Execution",
        "RunStageEnum": "billruns.models.Stage",
        "ProximitySignEnum": "billruns.models.RunDefinition.Sign",
        # Two "outcome" sets: the ingest answers' (its existing name kept) and the wallet top-up's.
        "OutcomeEnum": "statements.api.serializers.OUTCOMES",
        "WalletTopUpOutcomeEnum": "billruns.api.wallets.TOPUP_OUTCOMES",
        "InvoiceKindEnum": "invoicing.models.Invoice.Kind",
        "InvoiceStatusEnum": "invoicing.models.Invoice.Status",
        "InvoiceFormatEnum": "invoicing.models.Invoice.Format",
        "InvoiceDeliveryMethodEnum": "invoicing.models.InvoiceDelivery.Method",
        # Two "channel" sets: how a statement arrived (its existing name kept) and how a payment was entered.
        "ChannelEnum": "statements.models.Channel",
        "PaymentChannelEnum": "payments.models.Payment.Channel",
        "InvoiceDeliveryStatusEnum": "invoicing.models.InvoiceDelivery.Status",
        "InvoiceIssueOutcomeEnum": "invoicing.api.serializers.ISSUE_OUTCOMES",
    },
    # The answers every operation can give (429 rate limit, 404 past the last page, 400 bad Idempotency-Key).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "billing_mgmt.api.schema.document_common_responses",
    ],
}

# Security: strict when DEBUG is off (manage.py check --deploy passes with production variables).
# docs/deployment.md ("Security settings") says why each is what it is; tests/security/ proves them.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
# Lax, not Strict: a customer following the portal link in a case e-mail arrives from another site, and
# Strict would not send their session cookie on that first request. Every write is a POST, which Lax
# never sends cross-site, and CSRF tokens guard them anyway.
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Staff (CSR, supervisor, billing admin, superuser) are logged out after this many seconds without a
# request (billing_mgmt.middleware.StaffIdleTimeoutMiddleware); customers keep SESSION_COOKIE_AGE.
STAFF_IDLE_TIMEOUT = env.int("STAFF_IDLE_TIMEOUT", default=30 * 60)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Content-Security-Policy of every page (django-csp). Scripts only from this site, never inline or eval:
# htmx, Chart.js and the pages' own scripts are static files. Inline styles are allowed: templates set
# style attributes (chart swatches, admin reports), htmx injects its indicator style, and the sandboxed
# invoice preview (srcdoc) inherits this policy. Invoice documents keep their own, stricter policy
# (invoicing.views.DOCUMENT_CSP): the middleware never replaces a policy a view set.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
# The cache: throttling counters (API rate limits) live here, so production needs one shared by every
# process (CACHE_URL=redis://redis:6379/1); the per-process default is for development and tests.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}
# Login throttling (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one username from one address
# (that answer already says so), every login of that pair answers 429 for the cool-off, even with the right
# password; other users and addresses are not affected, and a successful login resets the count.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_MINUTES", default=15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Behind TRUSTED_PROXY_COUNT proxies, the client address comes from X-Forwarded-For (billing_mgmt.throttling).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "billing_mgmt.throttling.client_ip"
# API rate limits per client (billing_mgmt.throttling.ClientRateThrottle): a biller's API key, a logged-in
# user, an anonymous address. Far above what the bulk ingest benchmark sends (20 requests of 1,000
# records a second from one key), so that only a runaway client is refused (429 with Retry-After).
API_THROTTLE_RATES = {
    "biller": env.str("API_RATE_BILLER", default="6000/min"),
    "user": env.str("API_RATE_USER", default="1200/min"),
    "anon": env.str("API_RATE_ANON", default="120/min"),
}
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # probes from inside the network speak plain http
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "billing_mgmt.middleware.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # WeasyPrint logs each rendering step at INFO: thousands of lines per billing run.
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
    },
}

# Invoicing: the issuer of the default invoice series, created on first use (admins edit it and add series
# per account type in Django admin), and the prefix of its numbers.
INVOICE_ISSUER_NAME = env.str("INVOICE_ISSUER_NAME", default=PRODUCT_NAME)
INVOICE_ISSUER_ADDRESS = env.str("INVOICE_ISSUER_ADDRESS", default="")
INVOICE_ISSUER_TAX_ID = env.str("INVOICE_ISSUER_TAX_ID", default="")
INVOICE_NUMBER_PREFIX = env.str("INVOICE_NUMBER_PREFIX", default="INV-")
# Invoicing (invoicing.content): the function that lists a bill's usage events for detailed invoices. The
# billing engine has them; invoicing, below it, learns of them through this setting.
INVOICE_USAGE_EVENTS = "billruns.selectors.invoice_usage_events"

# Payments export to external billers (payments.services): attempts before an export is dead-lettered (the
# wait doubles from one minute, at most four hours), and the HTTP timeout of each POST to a biller (the whole
# exchange: connect, send, answer).
PAYMENTS_EXPORT_MAX_ATTEMPTS = env.int("PAYMENTS_EXPORT_MAX_ATTEMPTS", default=8)
PAYMENTS_EXPORT_TIMEOUT_SECONDS = env.float("PAYMENTS_EXPORT_TIMEOUT_SECONDS", default=10)
# Pulls from billers (statements.services.pull): seconds a connect, and each read, waits for the biller; and
# seconds one page's whole exchange may take (a biller trickling its answer is cut off then).
STATEMENTS_PULL_TIMEOUT_SECONDS = env.float("STATEMENTS_PULL_TIMEOUT_SECONDS", default=30)
STATEMENTS_PULL_PAGE_DEADLINE_SECONDS = env.float("STATEMENTS_PULL_PAGE_DEADLINE_SECONDS", default=300)
# Autopay charges through this payment gateway (payments.gateway: the interface and the fake one, whose
# outcome the card token chooses; a real processor's adapter goes here in production).
PAYMENT_GATEWAY = env.str("PAYMENT_GATEWAY", default="payments.gateway.FakeGateway")
# A payment to a prepaid account tops up its wallet: payments (below billruns) learns which accounts are
# prepaid and how to top up through these two functions of the billing engine.
PAYMENTS_PREPAID_CHECK = "billruns.selectors.is_prepaid_account"
PAYMENTS_WALLET_TOPUP = "billruns.services.wallet_topup"
