"""Locust load tests of the wallet API: one hot wallet, and many wallets."""
