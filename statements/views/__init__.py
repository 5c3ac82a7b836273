"""CSR pages and account-page sections served by the statements app, one module per part of the page.

Sections are registered in StatementsConfig.ready() by dotted path (such as
``statements.views.ledger.ledger_section``); the account page (accounts) calls them without importing this
app.
"""
