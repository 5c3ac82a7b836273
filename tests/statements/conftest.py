"""Billers shared by the statements tests."""

import pytest


@pytest.fixture
def northwind(biller_factory):
    return biller_factory(code="northwind", name="Northwind Mobile")


@pytest.fixture
def citypower(biller_factory):
    return biller_factory(code="citypower", name="City Power")
