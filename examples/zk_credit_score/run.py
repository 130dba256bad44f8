"""End to end with a circuit and a contract of your own: build, ceremony, genesis, prove, verify
on chain. Run from the project root:

    .venv/bin/python examples/zk_credit_score/run.py [--power 13] [--seed demo]

The ceremony here uses deterministic entropy (``--seed``) so that the demo is repeatable and
shares the cache with the test suite; a real consortium runs ``accord zk ceremony`` with its
members and random entropy.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from contract import THRESHOLD, CreditGate  # noqa: E402

from accord.config import builtin_contract_entries  # noqa: E402
from accord.contracts import BUILTINS, Runtime  # noqa: E402
from accord.contracts.memory import MemoryState  # noqa: E402
from accord.contracts.runtime import code_hash  # noqa: E402
from accord.crypto import bls  # noqa: E402
from accord.crypto.ed25519 import AccountKey  # noqa: E402
from accord.genesis import ContractEntry, Genesis, TokenGenesis, ValidatorInfo  # noqa: E402
from accord.types import Tx  # noqa: E402
from accord.zk import artifacts, build, groth16  # noqa: E402
from accord.zk.ceremony import CeremonyParams, RichProgress  # noqa: E402
from accord.zk.poseidon import poseidon  # noqa: E402
from accord.zk.verifier import PyProofVerifier  # noqa: E402

MemState = MemoryState


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--power", type=int, default=artifacts.TEST_POWER)
    ap.add_argument("--seed", default="accord-tests")
    ap.add_argument("--score", type=int, default=742)
    args = ap.parse_args(argv)

    # 1. build + ceremony (cached, resumable), exactly as `accord zk ceremony --file ...`
    spec = build.file_spec(HERE / "credit_score.circom", "credit_score")
    params = CeremonyParams(power=args.power, members=artifacts.TEST_MEMBERS, seed=args.seed)
    with RichProgress() as progress:
        keys = artifacts.setup_circuit(spec, params, progress=progress)

    # 2. genesis registers the contract (by code hash) and the circuit's verification key
    sk = bls.demo_secret("credit-demo")
    genesis = Genesis(
        chain_id="credit-demo", genesis_time_ms=0,
        validators=[ValidatorInfo(name="v0", bls_public_key=bls.public_key(sk).hex(),
                                  pop=bls.pop_prove(sk).hex())],
        contracts=[*builtin_contract_entries(),
                   ContractEntry(name="credit_gate", code_hash=code_hash(CreditGate).hex())],
        token=TokenGenesis(authority=AccountKey.from_name("authority").address.hex()),
        zk_circuits={"credit_score": keys.vk},
    )
    rt = Runtime(genesis, {**BUILTINS, "credit_gate": CreditGate},
                 proof_verifier=PyProofVerifier.from_genesis(genesis))
    state = MemState(rt.genesis_writes())

    # 3. the borrower proves their committed score is above the threshold
    salt = secrets.randbelow(2**128)
    commitment = poseidon(args.score, salt)
    inputs = {"commitment": commitment, "threshold": THRESHOLD, "score": args.score, "salt": salt}
    proof, public = keys.prove(inputs)

    # 4. and registers on chain; the contract verifies the proof
    borrower = AccountKey.from_name("credit-demo-borrower")
    tx = Tx.create(borrower, chain_id=genesis.chain_id, contract="credit_gate", method="register",
                   args={"commitment": commitment.to_bytes(32, "big"),
                         "proof": groth16.compress_proof(proof)}, nonce=0, gas_limit=2_000_000)
    result = rt.execute_block(state, [tx], height=1, time_ms=1)
    state.apply(result.writes)
    receipt = result.receipts[0]
    out = {"circuit": "credit_score", "constraints": keys.constraints, "public": public,
           "ok": receipt.ok, "error": receipt.error,
           "qualified": rt.query(state, "credit_gate", "qualified",
                                 {"commitment": commitment.to_bytes(32, "big")})}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
