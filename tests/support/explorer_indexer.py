"""Runs explorer index passes of a few blocks each forever (sync=True); the restart test
SIGKILLs it. Usage: python explorer_indexer.py STORE_DIR PER_PASS. After each pass it prints
the last indexed height, so the test knows the kill fell between (or inside) passes."""

from __future__ import annotations

import sys

from accord.node.explorer import ExplorerIndex, IndexLimits
from accord.storage import Store


def main() -> None:
    store = Store(sys.argv[1], sync=True)
    index = ExplorerIndex(store, IndexLimits(per_pass=int(sys.argv[2])))
    while True:
        index.catch_up()
        print(index.indexed_to, flush=True)


if __name__ == "__main__":
    main()
