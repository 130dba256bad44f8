"""``accord bench zk``: constraints, proving and verification per circuit.

One JSON line per circuit (the last one through the ``accord bench`` runner), each with
``circuit``, ``constraints``, ``prove_s`` (witness + proof in the long-lived snarkjs worker),
``verify_fast_ms`` (Python checks + snarkjs worker), ``verify_py_ms`` (pure Python, py_ecc),
``proof_bytes`` (compressed), ``proving_key_bytes``. Medians over ``--repeat`` runs.

Keys come from a ceremony (built, cached and resumable like ``accord zk ceremony``): by default
production sizes (depth-32 tree, 6 lenders) in a 2^15 ceremony -- the first run prepares phase 2
for ~13+ minutes; ``--quick`` uses the test suite's 2^13 ceremony and small circuits instead.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--circuit", default="all", help="shielded_transfer, anti_stacking or all")
    p.add_argument("--depth", type=int, default=None, help="tree depth (default 32)")
    p.add_argument("--lenders", type=int, default=None, help="anti-stacking slots (default 6)")
    p.add_argument("--power", type=int, default=15)
    p.add_argument("--members", default="member-1,member-2,member-3")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="small circuits, the tests' ceremony")


def _median_time(fn: Any, n: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def _transfer_input(depth: int) -> dict[str, Any]:
    from accord.zk import notes as zk

    rng = random.Random(7)
    key = zk.SpendingKey.from_seed(b"bench-sender")
    bob = zk.SpendingKey.from_seed(b"bench-bob").address
    reg = zk.RegulatorKey.from_seed(b"bench-regulator")
    tree = zk.MerkleTree(depth)
    note = zk.Note(1000, key.owner, rng.randrange(zk.FIELD), rng.randrange(zk.FIELD))
    for i in range(3):  # a few other leaves, so the path is not all zeros
        tree.append(zk.poseidon(i + 1))
    idx = tree.append(note.commitment)
    plan = zk.plan_transfer(
        key,
        [zk.SpendInput(note, idx)],
        [(bob, 600), (key.address, 400)],
        tree,
        reg.public,
        rng=rng,
        chain_id="bench",
    )
    return plan.circuit_input


def _anti_stacking_input(slots: int) -> dict[str, Any]:
    from accord.zk import babyjub
    from accord.zk import notes as zk

    borrower, epoch = 424242, 7
    secrets_ = [bytes([i + 1]) * 32 for i in range(slots)]
    keys = [babyjub.eddsa_public_key(s) for s in secrets_]
    atts = [
        (100 * (i + 1), zk.attest(s, borrower, 100 * (i + 1), epoch))
        for i, s in enumerate(secrets_)
    ]
    bind = zk.loan_bind("bench", bytes(20), borrower, 1_000, epoch)
    inp, _ = zk.plan_anti_stacking(
        keys, atts, borrower=borrower, epoch=epoch, limit=10**6, slots=slots, bind=bind
    )
    return inp


def run(args: argparse.Namespace) -> dict[str, Any]:
    from accord.cli.bench import machine
    from accord.zk import artifacts, groth16
    from accord.zk import build as zb
    from accord.zk.ceremony import CeremonyParams, RichProgress
    from accord.zk.verifier import FastProofVerifier, PyProofVerifier

    if args.quick:
        params = artifacts.test_ceremony()
        depth = args.depth or artifacts.TEST_DEPTH
        lenders = args.lenders or artifacts.TEST_LENDERS
    else:
        params = CeremonyParams(power=args.power, members=tuple(args.members.split(",")))
        depth = args.depth or zb.TRANSFER_DEPTH
        lenders = args.lenders or zb.ANTI_STACKING_LENDERS
    names = (
        ["shielded_transfer", "anti_stacking"] if args.circuit == "all" else args.circuit.split(",")
    )
    results: list[dict[str, Any]] = []
    for name in names:
        if name == "shielded_transfer":
            spec, inputs = zb.transfer_spec(depth), _transfer_input(depth)
        elif name == "anti_stacking":
            spec, inputs = zb.anti_stacking_spec(lenders), _anti_stacking_input(lenders)
        else:
            raise SystemExit(f"unknown circuit {name}")
        with RichProgress() as progress:
            keys = artifacts.setup_circuit(spec, params, progress=progress)
        keys.prove(inputs)  # warm the worker (reads the proving key once)
        prove_s, (proof, public) = _median_time(lambda k=keys, i=inputs: k.prove(i), args.repeat)
        fast = FastProofVerifier({name: keys.vk})
        py = PyProofVerifier({name: keys.vk})
        assert fast.verify(name, proof, public) and py.verify(name, proof, public)
        fast_s, _ = _median_time(
            lambda f=fast, p=proof, q=public, n=name: f.verify(n, p, q), max(args.repeat, 10)
        )
        py_s, _ = _median_time(
            lambda v=py, p=proof, q=public, n=name: v.verify(n, p, q), args.repeat
        )
        compressed = groth16.compress_proof(proof)
        results.append(
            {
                "circuit": name,
                "params": spec.extra,
                "constraints": keys.constraints,
                "public_inputs": len(public),
                "ceremony_power": params.power,
                "prove_s": round(prove_s, 3),
                "verify_fast_ms": round(fast_s * 1000, 2),
                "verify_py_ms": round(py_s * 1000, 1),
                "proof_bytes": len(compressed),
                "proof_json_bytes": len(json.dumps(proof)),
                "proving_key_bytes": keys.zkey.stat().st_size,
                "verification_key_bytes": len(json.dumps(keys.vk)),
            }
        )
        if name != names[-1]:  # the runner prints the last line; earlier ones go out now
            print(json.dumps({"bench": "zk", **results[-1], "machine": machine()}), flush=True)
    sys.stdout.flush()
    return results[-1]
