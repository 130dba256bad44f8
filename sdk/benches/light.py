"""``accord bench light``: the light client's checks, in memory, one core.

* ``headers_per_s``: a chain of ``--headers`` headers, each with a commit certificate signed by
  a random 2f+1..n of ``--validators`` (default 100) validators, checked the way ``sync()``
  checks them: strict decoding of the canonical bytes, chain id and height, certificate (signer
  bitmap, quorum, one fast aggregate BLS verification), parent link and time.
* ``state_proofs_per_s``: state proofs (half present values, half absent keys) over a state of
  ``--state-entries`` entries, checked against a certified header's state root, including the
  contract key mapping.
* ``tx_proofs_per_s``: transactions in blocks of ``--block-txs``: tx hash recomputed, Ed25519
  signature checked, receipt matched, Merkle inclusion of (tx hash, receipt hash) in the
  header's ``tx_root``. ``tx_inclusion_per_s`` is the Merkle part alone.

Certificates are made quickly but honestly: the aggregate of the signers' signatures on one
message equals one signature by the sum of their secret keys (BLS is linear), so each header
costs one signing; the first certificate is cross-checked against the aggregate of the
individual signatures. The verifier sees ordinary certificates either way.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from rich.progress import Progress

from accord.base import merkle
from accord.base.crypto import bls
from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import ValidationError
from accord.base.genesis import Genesis, ValidatorInfo
from accord.base.types import (
    ZERO_HASH,
    Certificate,
    Header,
    Receipt,
    Tx,
    bitmap_from,
    body_hash,
    vote_message,
)
from accord.client import InclusionProof, StateValue, TxStatus
from accord.light.store import TrustedHeader
from accord.light.verify import Checker

BLS_ORDER = 0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001
CHAIN = "accord-bench-light"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--validators", type=int, default=100)
    p.add_argument("--headers", type=int, default=500)
    p.add_argument("--state-entries", type=int, default=100_000)
    p.add_argument("--state-proofs", type=int, default=5_000)
    p.add_argument("--block-txs", type=int, default=1_000)
    p.add_argument("--tx-proofs", type=int, default=2_000)


def _secrets(n: int) -> list[bytes]:
    return [bls.demo_secret(f"bench-light-{i}") for i in range(n)]


def bench_genesis(secrets: list[bytes]) -> Genesis:
    return Genesis(
        chain_id=CHAIN,
        genesis_time_ms=0,
        validators=[
            ValidatorInfo(
                name=f"v{i}", bls_public_key=bls.public_key(sk).hex(), pop=bls.pop_prove(sk).hex()
            )
            for i, sk in enumerate(secrets)
        ],
    )


def _sum_secret(secrets: list[bytes]) -> bytes:
    return (sum(int.from_bytes(s, "big") for s in secrets) % BLS_ORDER).to_bytes(32, "big")


def certify(
    header: Header, secrets: list[bytes], signers: list[int], round: int = 0
) -> Certificate:
    """A phase-C certificate on ``header`` by ``signers`` (one signing with the summed key)."""
    msg = vote_message(header.chain_id, header.height, round, 2, header.hash)
    sig = bls.sign(_sum_secret([secrets[i] for i in signers]), msg)
    return Certificate(
        header.height, round, 2, header.hash, bitmap_from(signers, len(secrets)), sig
    )


def make_chain(
    genesis: Genesis, secrets: list[bytes], count: int, rng: random.Random, advance: Any = None
) -> list[tuple[bytes, bytes]]:
    """``count`` certified headers after a genesis header, as canonical (header, cert) bytes."""
    n, quorum = genesis.n, genesis.quorum
    parent = Header(CHAIN, 0, 0, ZERO_HASH, merkle.EMPTY_TX_ROOT, bytes(32), 0, 0, 0)
    out = []
    for h in range(1, count + 1):
        header = Header(
            CHAIN,
            h,
            h,
            parent.hash,
            merkle.EMPTY_TX_ROOT,
            rng.randbytes(32),
            0,
            rng.randrange(n),
            1000 * h,
        )
        signers = sorted(rng.sample(range(n), rng.randint(quorum, n)))
        cert = certify(header, secrets, signers)
        if h == 1:  # the summed-key shortcut gives exactly the aggregate of individual votes
            msg = vote_message(CHAIN, 1, 0, 2, header.hash)
            if bls.aggregate([bls.sign(secrets[i], msg) for i in signers]) != cert.signature:
                raise ValidationError("summed-key signature differs from the aggregate")
        out.append((header.encode(), cert.encode()))
        parent = header
        if advance:
            advance()
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from accord.contracts.base import state_key
    from accord.storage import tree

    rng = random.Random(7)
    with Progress(transient=True) as progress:
        t = progress.add_task(f"{args.validators} validator keys", total=None)
        secrets = _secrets(args.validators)
        genesis = bench_genesis(secrets)
        checker = Checker(genesis)
        progress.remove_task(t)

        t = progress.add_task("certifying headers", total=args.headers)
        chain = make_chain(genesis, secrets, args.headers, rng, lambda: progress.advance(t))
        progress.remove_task(t)

        # --- headers: what sync() does per header --------------------------------------
        prev = Header.decode(chain[0][0])
        t0 = time.perf_counter()
        for height, (hb, cb) in enumerate(chain, start=1):
            header, cert = Header.decode(hb), Certificate.decode(cb)
            checker.check_shape("bench", header, height)
            checker.check_certificate("bench", header, cert)
            if height > 1:
                checker.check_link("bench", prev, header)
            prev = header
        headers_s = time.perf_counter() - t0

        # --- state proofs --------------------------------------------------------------
        t = progress.add_task(f"state tree of {args.state_entries:,} entries", total=None)
        keys = [rng.randbytes(20) for _ in range(args.state_entries)]
        writes = {state_key("token", k): (1000 + i).to_bytes(8, "big") for i, k in enumerate(keys)}
        empty: dict[bytes, bytes] = {}
        root, nodes = tree.compute_update(empty.get, merkle.EMPTY, writes)
        header = Header(CHAIN, 1, 0, ZERO_HASH, merkle.EMPTY_TX_ROOT, root, 0, 0, 0)
        trusted = TrustedHeader(header, None)
        samples = []
        for i in range(args.state_proofs):
            k = keys[rng.randrange(len(keys))] if i % 2 == 0 else rng.randbytes(20)
            skey = state_key("token", k)
            value, proof = tree.prove(nodes.get, root, skey)
            samples.append((k, StateValue("token", skey, value, None, proof, 1, header)))
        progress.remove_task(t)
        t0 = time.perf_counter()
        present = 0
        for k, sv in samples:
            present += checker.check_state("bench", "token", k, sv, trusted).present
        state_s = time.perf_counter() - t0

        # --- tx proofs -----------------------------------------------------------------
        t = progress.add_task("signing transactions", total=args.block_txs)
        key = AccountKey.from_name("bench-light")
        txs, receipts = [], []
        for i in range(args.block_txs):
            tx = Tx.create(
                key,
                chain_id=CHAIN,
                contract="token",
                method="transfer",
                args={"to": rng.randbytes(20), "amount": i + 1},
                nonce=i,
            )
            txs.append(tx)
            receipts.append(Receipt(tx.hash, True, 4000 + i))
            progress.advance(t)
        progress.remove_task(t)
        leaves = [merkle.tx_leaf(tx.hash, r.hash) for tx, r in zip(txs, receipts, strict=True)]
        tx_root = merkle.merkle_root(leaves)
        bheader = Header(
            CHAIN, 2, 0, ZERO_HASH, tx_root, root, len(txs), 0, 0, body_hash=body_hash(txs)
        )
        btrusted = TrustedHeader(bheader, None)
        statuses = []
        for j in range(args.tx_proofs):
            i = j % len(txs)
            inclusion = InclusionProof(
                leaves[i], i, len(leaves), merkle.merkle_proof(leaves, i), tx_root
            )
            statuses.append(
                TxStatus(
                    txs[i].hash, "committed", 2, i, bheader.hash, receipts[i], inclusion, txs[i]
                )
            )
        t0 = time.perf_counter()
        for st in statuses:
            checker.check_tx("bench", st.tx_hash, st, btrusted)
        tx_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for st in statuses:
            assert st.proof is not None
            merkle.verify_merkle_proof(
                tx_root, st.proof.leaf, st.proof.index, st.proof.count, st.proof.siblings
            )
        incl_s = time.perf_counter() - t0

    return {
        "headers_per_s": round(len(chain) / headers_s, 1),
        "state_proofs_per_s": round(len(samples) / state_s),
        "tx_proofs_per_s": round(len(statuses) / tx_s),
        "tx_inclusion_per_s": round(len(statuses) / incl_s),
        "validators": args.validators,
        "quorum": genesis.quorum,
        "headers": len(chain),
        "state_entries": args.state_entries,
        "state_proofs_present": present,
        "block_txs": args.block_txs,
    }
