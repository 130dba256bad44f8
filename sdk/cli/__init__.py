"""accord.cli."""
