"""Storage micro-benchmarks: state tree batch update, proof checks, block commit.

Run with ``python -m accord.storage.bench`` (prints one JSON line on stdout, progress on
stderr). :func:`add_arguments` / :func:`run` follow the ``accord bench`` module convention so
the ``accord bench storage`` area can include these figures.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from accord.base import merkle
from accord.base.types import ZERO_HASH, Block, Header
from accord.storage.store import Store


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accounts", type=int, default=1_000_000, help="state entries to build first")
    p.add_argument("--batch", type=int, default=10_000, help="keys per tree batch update")
    p.add_argument(
        "--block-writes", type=int, default=5_000, help="state writes per committed block"
    )
    p.add_argument("--repeat", type=int, default=5, help="runs per measured figure (median)")
    p.add_argument("--proofs", type=int, default=2_000, help="state proofs to generate and verify")
    p.add_argument("--dir", default=None, help="store directory (default: a fresh temp dir)")


def _key(i: int) -> bytes:
    return b"acct/%020d/balance" % i


def _commit(store: Store, writes: dict[bytes, bytes | None]) -> tuple[float, float]:
    """Compute and commit one block of ``writes``; return (compute s, commit s)."""
    head = store.head()
    height = 0 if head is None else head[0] + 1
    parent = ZERO_HASH if head is None else head[1]
    t0 = time.perf_counter()
    update = store.compute_state_update(writes)
    t1 = time.perf_counter()
    header = Header("bench", height, 0, parent, merkle.merkle_root([]), update.root, 0, 0, height)
    store.commit_block(Block(header, ()), None, [], writes, update)
    return t1 - t0, time.perf_counter() - t1


def run(args: argparse.Namespace) -> dict[str, Any]:
    console = Console(stderr=True)
    tmp = None
    if args.dir is None:
        tmp = tempfile.mkdtemp(prefix="accord-bench-storage-")
        path = Path(tmp)
    else:
        path = Path(args.dir)
    rng = random.Random(7)
    out: dict[str, Any] = {"accounts": args.accounts}
    try:
        store = Store(path, map_size=1 << 32, sync=False)
        chunk = 100_000
        build_compute = build_commit = 0.0
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("building state", total=args.accounts)
            for start in range(0, args.accounts, chunk):
                n = min(chunk, args.accounts - start)
                writes: dict[bytes, bytes | None] = {
                    _key(i): (1_000_000 + i).to_bytes(8, "big") for i in range(start, start + n)
                }
                c, w = _commit(store, writes)
                build_compute += c
                build_commit += w
                progress.advance(task, n)
        out["build_s"] = round(build_compute + build_commit, 2)

        # Tree batch update over the full state (computed, not written): mostly updates of
        # existing accounts plus a few new ones, as a block of transfers does.
        # CPU time is reported too: on a shared machine it is the steadier figure.
        times, cpu = [], []
        for _ in range(args.repeat):
            writes = {
                _key(rng.randrange(args.accounts)): rng.randbytes(8) for _ in range(args.batch)
            }
            t0, c0 = time.perf_counter(), time.process_time()
            update = store.compute_state_update(writes)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        out["smt_batch_keys"] = args.batch
        out["smt_batch_update_s"] = round(statistics.median(times), 4)
        out["smt_batch_update_cpu_s"] = round(statistics.median(cpu), 4)
        out["smt_batch_new_nodes"] = len(update.nodes)

        # Commit of a block with ``block_writes`` state writes, with and without fsync.
        for sync in (False, True):
            store.close()
            store = Store(path, map_size=1 << 32, sync=sync)
            comp, comm = [], []
            for _ in range(args.repeat):
                writes = {
                    _key(rng.randrange(args.accounts)): rng.randbytes(8)
                    for _ in range(args.block_writes)
                }
                c, w = _commit(store, writes)
                comp.append(c)
                comm.append(w)
            tag = "sync" if sync else "nosync"
            out[f"block_{args.block_writes}_writes_compute_s"] = round(statistics.median(comp), 4)
            out[f"block_{args.block_writes}_writes_commit_{tag}_s"] = round(
                statistics.median(comm), 4
            )

        # State proofs: generation from the store, verification by the pure verifier.
        root = store.state_root()
        keys = [_key(rng.randrange(args.accounts)) for _ in range(args.proofs // 2)]
        keys += [b"absent/%d" % i for i in range(args.proofs - len(keys))]
        t0 = time.perf_counter()
        proofs = [store.prove_state(k) for k in keys]
        t1 = time.perf_counter()
        for k, (v, p) in zip(keys, proofs, strict=True):
            merkle.verify_state_proof(root, k, v, p)
        t2 = time.perf_counter()
        out["state_proof_depth_mean"] = round(statistics.mean(len(p.levels) for _, p in proofs), 1)
        out["state_proof_bytes_mean"] = round(
            statistics.mean(len(p.encode()) for v, p in proofs if v is not None)
        )
        out["state_proofs_generated_per_s"] = round(len(keys) / (t1 - t0))
        out["state_proofs_verified_per_s"] = round(len(keys) / (t2 - t1))
        out["store_bytes"] = sum(f.stat().st_size for f in path.iterdir())
        store.close()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    add_arguments(p)
    print(json.dumps(run(p.parse_args())))


if __name__ == "__main__":
    main()
