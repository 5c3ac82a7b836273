from unittest import mock

import pytest
from django.db import DatabaseError


@pytest.mark.django_db
def test_healthz_answers_anonymously_when_the_database_answers(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_healthz_is_503_when_the_database_fails(client):
    with mock.patch("billing_mgmt.views.connection.cursor", side_effect=DatabaseError("down")):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "error"}


@pytest.mark.django_db
def test_healthz_refuses_writes(client):
    assert client.post("/healthz").status_code == 405
