"""accord.node."""
