"""The write engine's shared parts: group commit across wallets."""
