"""accord.consensus."""
