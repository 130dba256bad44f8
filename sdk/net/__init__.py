"""accord.net."""
