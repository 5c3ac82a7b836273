"""Pages of statements, mounted at statements/ by billing_mgmt/urls.py.

The account page's sections need no URL here: the frame serves every registered section at
/accounts/<number>/sections/<key>/ (billing_mgmt.sections).
"""

from django.urls import path  # noqa: F401

urlpatterns: list = []
