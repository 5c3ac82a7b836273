"""Helpers for the API tests: billers with their accounts, and staff clients logged in by session."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from billing_mgmt import roles


@pytest.fixture
def make_account(account_factory, biller_reference_factory):
    """Create an account referenced at ``biller`` (if given) under ``ref``; extra kwargs go to the account."""

    def make(biller=None, ref=None, **fields):
        account = account_factory(**fields)
        if biller is not None:
            kwargs = {"external_ref": ref} if ref else {}
            biller_reference_factory(account=account, biller=biller, **kwargs)
        return account

    return make


@pytest.fixture
def session_client(user_factory):
    """Return a function making an APIClient logged in (session) as a new user with the given role."""

    def make(role=None, username=None):
        user = user_factory(
            username=username or f"user-{role or 'none'}".replace(" ", "-").lower(), role=role
        )
        client = APIClient()
        client.force_login(user)
        return client

    return make


@pytest.fixture
def billing_admin_client(session_client):
    return session_client(roles.BILLING_ADMIN)


@pytest.fixture
def csr_client(session_client):
    return session_client(roles.CSR)
