"""Pages of statements, mounted at statements/ by billing_mgmt/urls.py.

The account page's Balance and Ledger sections need no URL here: the frame serves every registered section at
/accounts/<number>/sections/<key>/ (billing_mgmt.sections). Statement pages arrive with F2.
"""

urlpatterns: list = []
