"""Balance monitors: a wallet's available balance watched against a threshold; the commit
that takes it across writes one event (`balance_monitor.triggered`), not one per
operation while it stays there."""
