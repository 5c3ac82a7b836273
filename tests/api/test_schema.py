"""The OpenAPI schema and the Swagger UI page are served locally (no CDN) and document the Api-Key scheme."""

from __future__ import annotations

import re

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_schema_endpoint_documents_the_accounts_api(api_client):
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": schema["components"]["securitySchemes"]["ApiKeyAuth"]["description"],
    }
    assert set(schema["paths"]) >= {
        "/api/v1/accounts/",
        "/api/v1/accounts/{number}/",
        "/api/v1/accounts/by-ref/{external_ref}/",
    }
    create = schema["paths"]["/api/v1/accounts/"]["post"]
    assert {p["name"] for p in create["parameters"]} == {"Idempotency-Key"}
    assert set(create["responses"]) == {"201", "400", "401", "403", "409", "429"}
    assert create["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }


def test_schema_generates_without_warnings(tmp_path):
    target = tmp_path / "schema.yml"

    call_command("spectacular", "--fail-on-warn", "--file", str(target))

    assert yaml.safe_load(target.read_text())["info"]["title"] == "Billing Management API"


def test_docs_page_uses_only_local_assets(api_client):
    response = api_client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert assets, html
    # Its start-up script comes from the page's own URL (a file, not inline: the CSP allows no inline script).
    assert all(url.startswith("/static/") or url == "/api/docs/?script=" for url in assets), assets
    assert not re.search(r"https?://", html), "the docs page must not load anything from another host"
