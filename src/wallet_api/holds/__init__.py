"""Holds: money set aside on a wallet, then captured, voided or expired."""
