"""Wallet API: a REST service for digital wallets."""

__version__ = "0.1.0"
