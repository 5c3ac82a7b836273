from __future__ import annotations

import pytest
from django.core import mail


@pytest.fixture(autouse=True)
def locmem(settings):
    """Case e-mails go to django.core.mail.outbox (the console backend is for development)."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.PORTAL_URL = "https://portal.example.test/portal/"
    mail.outbox = []
