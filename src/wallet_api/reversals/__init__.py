"""Reversals: a ledger entry corrected by a compensating entry, never by an edit."""
