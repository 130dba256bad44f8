"""accord.mpc."""
