"""accord.sim."""
