def test_account_factory_makes_profile(account_factory):
    account = account_factory()
    assert account.billing_profile.currency == "USD"
    assert account.number.startswith("A")
