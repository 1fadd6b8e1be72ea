"""Webhooks: an owner's endpoints, the deliveries of its events to them (signed, retried,
each attempt recorded), made by their own process (`wallet-api deliver`)."""
