"""Forms of the CSR pages."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm


class AccountSearchForm(forms.Form):
    q = forms.CharField(
        label="Search accounts",
        max_length=100,
        required=False,
        strip=True,
        help_text="Account number, name, contact e-mail or phone, or a biller's reference.",
        widget=forms.TextInput(
            attrs={
                "type": "search",
                "placeholder": "Number, name, e-mail, phone or biller reference",
                "autocomplete": "off",
                "spellcheck": "false",
            }
        ),
    )

    def query(self) -> str:
        """The cleaned query, or '' when the form is unbound or invalid (too long)."""
        if not self.is_bound or not self.is_valid():
            return ""
        return self.cleaned_data["q"]


class LoginForm(AuthenticationForm):
    """Django's login form with the labels and hints of our login page."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That username and password do not match. Both are case-sensitive.",
    }
