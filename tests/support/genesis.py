"""Demo genesis documents for tests: deterministic validators from public seeds."""

from __future__ import annotations

from accord.base.crypto import bls
from accord.base.crypto.ed25519 import AccountKey
from accord.base.genesis import ConsensusParams, Genesis, TokenGenesis, ValidatorInfo


def make_genesis(
    n: int = 4,
    *,
    chain_id: str = "accord-test",
    balances: dict[str, int] | None = None,
    contracts: list | None = None,
    **consensus: object,
) -> Genesis:
    """A genesis with ``n`` deterministic demo validators (public seeds: tests only)."""
    validators = []
    for i in range(n):
        sk = bls.demo_secret(f"v{i}")
        validators.append(
            ValidatorInfo(
                name=f"v{i}",
                bls_public_key=bls.public_key(sk).hex(),
                pop=bls.pop_prove(sk).hex(),
            )
        )
    authority = AccountKey.from_name("authority")
    return Genesis(
        chain_id=chain_id,
        genesis_time_ms=0,
        validators=validators,
        consensus=ConsensusParams(**consensus),  # type: ignore[arg-type]
        contracts=contracts or [],
        token=TokenGenesis(authority=authority.address.hex(), balances=balances or {}),
    )
