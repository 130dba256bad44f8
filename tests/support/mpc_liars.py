"""Servers that lie in one place of the checked protocol (the malicious-security tests)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from accord.mpc.malicious import MaliciousParty


class Liar(MaliciousParty):
    """A server that changes one word it sends while in ``place``:

    * ``reshare``: a product's reshare word (a wrong share of x * y);
    * ``and``: the last AND of the first comparison (the comparison bit itself);
    * ``open``: its share of an opened value;
    * ``output``: its re-shared output word at release.
    """

    place = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phase: list[str] = []
        self.lied = False
        self.ands_seen = 0

    @contextlib.contextmanager
    def _in(self, name: str) -> Iterator[None]:
        self.phase.append(name)
        try:
            yield
        finally:
            self.phase.pop()

    def send(self, to: int, data: Any) -> None:
        if not self.lied and self.phase and self.phase[-1] == self.place and data.size:
            data = np.array(data, dtype=np.uint64).reshape(-1)
            data[0] += np.uint64(1)
            self.lied = True
        super().send(to, data)

    def _reshare(self, t: Any) -> Any:
        if self.place == "reshare" and not self.lied:  # a consistent lie: wrong t, kept
            t = t.copy()
            t.reshape(-1)[0] += np.uint64(1)
            self.lied = True
        return super()._reshare(t)

    def and_(self, *a: Any) -> Any:
        self.ands_seen += 1
        # the first comparison's root AND: 2 (carry-save, generate) + 6 levels
        with self._in("and" if self.ands_seen == 8 else "and-other"):
            return super().and_(*a)

    def _open_checked(self, *a: Any) -> Any:
        with self._in("open" if not self.phase else self.phase[-1]):
            return super()._open_checked(*a)

    def release(self, result: dict[str, Any]) -> dict[str, Any]:
        self.verify()
        with self._in("output"):
            return super().release(result)


def _party_class(liar: int, base: type, place: str) -> type:
    class One(base):  # type: ignore[misc, valid-type]
        def __init__(self, index: int, *a: Any, **kw: Any) -> None:
            super().__init__(index, *a, **kw)
            if index != liar:
                self.place = "(honest)"

    One.place = place
    return One
