"""Transfers: money moved from one wallet to another, both legs or neither."""
