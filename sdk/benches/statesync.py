"""``accord bench statesync``: a joining node takes a state of N accounts by snapshot.

A source store holds ``--accounts`` token balances under a block certified by a 2-validator
genesis (written in batches of blocks; no runtime is needed to make state). Then, timed
separately: the snapshot **build** (:func:`accord.storage.snapshot.build`), the **transfer** of
its manifest and chunks between two real validator transports on loopback (authenticated
WebSockets, the catch-up request path), and **verify + install** (certificate, root, every chunk
rebuilt and checked, written into an empty store). The installed store's state root is checked
against the header's, and its entry count against the source's.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

CHAIN = "accord-bench-statesync"
BATCH = 100_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--accounts", type=int, default=1_000_000, help="state entries (token balances) to sync"
    )
    p.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="work folder (default: a temporary one, removed afterwards)",
    )


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _genesis() -> tuple[Any, list[bytes]]:
    from accord.base.crypto import bls
    from accord.base.genesis import Genesis, ValidatorInfo
    from accord.devnet import free_ports

    secrets = [bls.demo_secret(f"bench-statesync-{i}") for i in range(2)]
    ports = free_ports(2)
    vals = [
        ValidatorInfo(
            name=f"v{i}",
            bls_public_key=bls.public_key(sk).hex(),
            pop=bls.pop_prove(sk).hex(),
            host="127.0.0.1",
            port=ports[i],
        )
        for i, sk in enumerate(secrets)
    ]
    return Genesis(chain_id=CHAIN, genesis_time_ms=0, validators=vals), secrets


def _make_source(
    store: Any, accounts: int, genesis: Any, secrets: list[bytes], progress: Progress
) -> None:
    from accord.base import encoding, merkle
    from accord.base.types import ZERO_HASH, Block, Header
    from accord.benches.light import certify
    from accord.contracts.base import state_key

    task = progress.add_task("writing the source state", total=accounts)
    parent = ZERO_HASH
    height = 0
    for start in range(0, max(accounts, 1), BATCH):
        writes: dict[bytes, bytes | None] = {
            state_key("token", b"balance/" + i.to_bytes(20, "big")): encoding.encode(10**9 + i)
            for i in range(start, min(start + BATCH, accounts))
        }
        update = store.compute_state_update(writes)
        header = Header(CHAIN, height, 0, parent, merkle.EMPTY_TX_ROOT, update.root, 0, 0, height)
        cert = certify(header, secrets, [0, 1]) if height else None
        store.commit_block(Block(header, ()), cert, [], writes, update)
        parent, height = header.hash, height + 1
        progress.advance(task, len(writes))
    # A certified head without writes of its own, as a chain's usual head.
    update = store.compute_state_update({})
    header = Header(
        CHAIN, height, 0, parent, merkle.EMPTY_TX_ROOT, store.state_root(), 0, 0, height
    )
    store.commit_block(Block(header, ()), certify(header, secrets, [0, 1]), [], {}, update)


async def _transfer_and_install(
    genesis: Any, secrets: list[bytes], snaps: Path, height: int, dst: Any, progress: Progress
) -> dict[str, Any]:
    from accord.base.encoding import Value
    from accord.consensus import verify_certificate
    from accord.net.transport import NetConfig, Transport
    from accord.storage import snapshot

    async def serve(frm: int, body: Value) -> Value:
        assert isinstance(body, list)
        if body[1] == "manifest":
            return await asyncio.to_thread(snapshot.read_manifest, snaps, height)
        return await asyncio.to_thread(snapshot.read_chunk, snaps, height, int(body[3]))

    async def ignore(*_: Any) -> None:
        return None

    server = Transport(
        genesis, 0, secrets[0], config=NetConfig(), on_message=ignore, on_request=serve
    )
    client = Transport(genesis, 1, secrets[1], config=NetConfig(), on_message=ignore)
    await server.start()
    await client.start()
    keys = genesis.validator_keys()
    try:
        await client.wait_connected(timeout=30)
        transfer_s = verify_s = 0.0
        t = time.perf_counter()
        raw = await client.request(0, ["snap", "manifest", height], timeout=60)
        transfer_s += time.perf_counter() - t
        assert isinstance(raw, bytes)
        nbytes = len(raw)
        t = time.perf_counter()
        manifest = snapshot.Manifest.decode(raw)
        snapshot.verify_manifest(
            manifest, lambda c: verify_certificate(keys, CHAIN, c, genesis.quorum)
        )
        installer = snapshot.Installer(dst, manifest)
        installer.begin()
        verify_s += time.perf_counter() - t
        task = progress.add_task("state sync: fetch, verify, install", total=manifest.entries)
        for i, cell in enumerate(manifest.cells):
            t = time.perf_counter()
            chunk_raw = await client.request(0, ["snap", "chunk", height, i], timeout=60)
            transfer_s += time.perf_counter() - t
            assert isinstance(chunk_raw, bytes)
            nbytes += len(chunk_raw)
            t = time.perf_counter()
            installer.add(i, snapshot.verify_chunk(cell, chunk_raw, height))
            verify_s += time.perf_counter() - t
            progress.advance(task, cell.count)
        t = time.perf_counter()
        installer.finish()
        verify_s += time.perf_counter() - t
    finally:
        await client.stop()
        await server.stop()
    return {
        "transfer_s": round(transfer_s, 2),
        "verify_install_s": round(verify_s, 2),
        "bytes": nbytes,
        "chunks": len(manifest.cells),
        "entries": manifest.entries,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from accord.storage import Store, snapshot

    work = args.dir or Path(tempfile.mkdtemp(prefix="accord-bench-statesync-"))
    work.mkdir(parents=True, exist_ok=True)
    genesis, secrets = _genesis()
    try:
        with _progress() as progress:
            with Store(work / "src", sync=False) as src:
                t = time.perf_counter()
                _make_source(src, args.accounts, genesis, secrets, progress)
                setup_s = time.perf_counter() - t
                head = src.head()
                assert head is not None
                task = progress.add_task("building the snapshot", total=1)

                def step(done: int, total: int) -> None:
                    progress.update(task, total=total, completed=done)

                t = time.perf_counter()
                manifest = snapshot.build(src, work / "snaps", progress=step)
                build_s = time.perf_counter() - t
                source_root = src.state_root()
            with Store(work / "dst", sync=False) as dst:
                result = asyncio.run(
                    _transfer_and_install(
                        genesis, secrets, work / "snaps", manifest.height, dst, progress
                    )
                )
                assert dst.state_root() == source_root and dst.head() == head
                assert len(list(dst.iter_state())) == args.accounts
        snap_bytes = sum(
            p.stat().st_size for p in (work / "snaps" / str(manifest.height)).iterdir()
        )
        return {
            "accounts": args.accounts,
            "height": manifest.height,
            "setup_s": round(setup_s, 2),
            "build_s": round(build_s, 2),
            **result,
            "snapshot_bytes": snap_bytes,
            "root_matches": True,
        }
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
