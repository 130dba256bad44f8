"""An in-memory state for running contracts without a node: unit tests of contracts, examples,
what-if runs. It is the :class:`~accord.contracts.base.StateReader` the runtime reads, plus
``apply`` to fold a block's writes in (what the chain does through storage)."""

from __future__ import annotations

from collections.abc import Mapping


class MemoryState:
    """A dict of state keys to values; ``None`` in writes deletes a key."""

    def __init__(self, data: Mapping[bytes, bytes | None] | None = None) -> None:
        self.data: dict[bytes, bytes] = {k: v for k, v in (data or {}).items() if v is not None}

    def get_state(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def apply(self, writes: Mapping[bytes, bytes | None]) -> None:
        for k, v in writes.items():
            if v is None:
                self.data.pop(k, None)
            else:
                self.data[k] = v
