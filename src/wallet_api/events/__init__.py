"""Events: every committed change, as one row written by the statement that made it; the
feed that reads them in an order that never skips one (GET /api/v1/events)."""
