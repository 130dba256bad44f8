"""accord.light."""
