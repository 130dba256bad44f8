"""accord.storage: the LMDB environment of a node and its authenticated state tree."""

from accord.storage.store import SCHEMA_VERSION, Snapshot, StateUpdate, Store
from accord.storage.tree import compute_update, prove

__all__ = ["SCHEMA_VERSION", "Snapshot", "StateUpdate", "Store", "compute_update", "prove"]
