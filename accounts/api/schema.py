"""OpenAPI description of the biller API key scheme (loaded by accounts.api.views)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BillerApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.api.authentication.BillerApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "A biller's API key: `Authorization: Api-Key <prefix>.<secret>`. Billing admins issue keys "
                "(accounts.services.biller_api_key_create); the key is shown once."
            ),
        }
