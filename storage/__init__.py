"""accord.storage: the LMDB environment of a node."""
