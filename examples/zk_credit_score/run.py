"""End to end with a circuit and a contract of your own: build, ceremony, genesis, prove, verify
on chain. Run from the project root:

    .venv/bin/python examples/zk_credit_score/run.py [--power 13] [--seed demo]

The ceremony here uses deterministic entropy (``--seed``) so that the demo is repeatable and
shares the cache with the test suite; a real consortium runs ``accord zk ceremony init |
contribute | beacon | verify``, each member on its own machine (see ``accord.zk.transcript``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from contract import EPOCH_MS, CreditGate, public_inputs, score_message  # noqa: E402

from accord.base.crypto import bls  # noqa: E402
from accord.base.crypto.ed25519 import AccountKey  # noqa: E402
from accord.base.genesis import ContractEntry, Genesis, TokenGenesis, ValidatorInfo  # noqa: E402
from accord.base.types import Receipt, Tx  # noqa: E402
from accord.contracts import BUILTINS, Runtime  # noqa: E402
from accord.contracts.memory import MemoryState  # noqa: E402
from accord.contracts.runtime import code_hash  # noqa: E402
from accord.node.config import builtin_contract_entries  # noqa: E402
from accord.zk import artifacts, babyjub, build, groth16  # noqa: E402
from accord.zk.ceremony import CeremonyParams, RichProgress  # noqa: E402
from accord.zk.verifier import PyProofVerifier  # noqa: E402

MemState = MemoryState
BUREAU_SECRET = b"credit-demo-bureau-secret-000000"  # demo only: a bureau keeps its own


def setup(
    power: int = artifacts.TEST_POWER, seed: str = "accord-tests"
) -> tuple[artifacts.CircuitKeys, Genesis, Runtime, MemoryState]:
    """Build + ceremony (cached), a genesis with the contract, the key and the bureau."""
    spec = build.file_spec(HERE / "credit_score.circom", "credit_score")
    params = CeremonyParams(power=power, members=artifacts.TEST_MEMBERS, seed=seed)
    with RichProgress() as progress:
        keys = artifacts.setup_circuit(spec, params, progress=progress)
    sk = bls.demo_secret("credit-demo")
    bureau = babyjub.eddsa_public_key(BUREAU_SECRET)
    genesis = Genesis(
        chain_id="credit-demo",
        genesis_time_ms=0,
        validators=[
            ValidatorInfo(
                name="v0", bls_public_key=bls.public_key(sk).hex(), pop=bls.pop_prove(sk).hex()
            )
        ],
        contracts=[
            *builtin_contract_entries(),
            ContractEntry(name="credit_gate", code_hash=code_hash(CreditGate).hex()),
        ],
        token=TokenGenesis(authority=AccountKey.from_name("authority").address.hex()),
        zk_circuits={"credit_score": keys.vk},
        zk_params={"credit_gate": {"bureau": [str(bureau[0]), str(bureau[1])]}},
    )
    rt = Runtime(
        genesis,
        {**BUILTINS, "credit_gate": CreditGate},
        proof_verifier=PyProofVerifier.from_genesis(genesis),
    )
    return keys, genesis, rt, MemState(rt.genesis_writes())


def prove(
    keys: artifacts.CircuitKeys,
    subject: bytes,
    score: int,
    epoch: int,
    chain_id: str,
    bureau_secret: bytes = BUREAU_SECRET,
) -> bytes:
    """The borrower's proof from the bureau's signature on (subject, score, epoch)."""
    sig = babyjub.eddsa_sign(bureau_secret, score_message(subject, score, epoch))
    pub = public_inputs(babyjub.eddsa_public_key(BUREAU_SECRET), subject, epoch, chain_id)
    inputs = {
        "bureau": pub[:2],
        "threshold": pub[2],
        "subject": pub[3],
        "epoch": pub[4],
        "bind": pub[5],
        "score": score,
        "sigS": sig.s,
        "sigR8": list(sig.r8),
    }
    proof, public = keys.prove(inputs)
    assert public == pub
    return groth16.compress_proof(proof)


def epoch_time(epoch: int) -> int:
    """A block time inside ``epoch`` (the contract's epochs: ``time_ms // EPOCH_MS``)."""
    return epoch * EPOCH_MS + 1


def register(
    rt: Runtime,
    state: MemoryState,
    genesis: Genesis,
    who: AccountKey,
    epoch: int,
    proof: bytes,
    nonce: int = 0,
    time_ms: int | None = None,
) -> Receipt:
    """Send the registration in a block at ``time_ms`` (default: a time in ``epoch``)."""
    tx = Tx.create(
        who,
        chain_id=genesis.chain_id,
        contract="credit_gate",
        method="register",
        args={"epoch": epoch, "proof": proof},
        nonce=nonce,
        gas_limit=2_000_000,
    )
    result = rt.execute_block(
        state, [tx], height=1, time_ms=epoch_time(epoch) if time_ms is None else time_ms
    )
    state.apply(result.writes)
    return result.receipts[0]


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--power", type=int, default=artifacts.TEST_POWER)
    ap.add_argument("--seed", default="accord-tests")
    ap.add_argument("--score", type=int, default=742)
    args = ap.parse_args(argv)

    # 1. build + ceremony (cached, resumable); 2. genesis with the contract, key and bureau
    keys, genesis, rt, state = setup(args.power, args.seed)
    # 3. the bureau signs the borrower's score; the borrower proves it is above the threshold
    borrower = AccountKey.from_name("credit-demo-borrower")
    proof = prove(keys, borrower.address, args.score, 7, genesis.chain_id)
    # 4. and registers on chain; the contract verifies the proof against the sender
    receipt = register(rt, state, genesis, borrower, 7, proof)
    out = {
        "circuit": "credit_score",
        "constraints": keys.constraints,
        "ok": receipt.ok,
        "error": receipt.error,
        "qualified": rt.query(
            state, "credit_gate", "qualified", {"borrower": borrower.address}, time_ms=epoch_time(7)
        ),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
