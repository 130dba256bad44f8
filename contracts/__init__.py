"""accord.contracts: the contract base, runtime and built-in contracts."""
