"""Wallets: create one, read its balance, deposit and withdraw."""
