"""The one write engine of every movement of money: entries (the one shape), the pure
planner, group commit across wallets, the writer and its SQL. It imports only core/."""
