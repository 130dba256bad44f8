"""accord.contracts: the contract base, runtime and built-in contracts.

``BUILTINS`` maps each built-in contract's name to its class; a node's runtime enables those
that its genesis registers (by name and code hash).
"""

from __future__ import annotations

from accord.contracts.base import (
    GAS,
    Context,
    Contract,
    GasSchedule,
    HookUnavailable,
    OracleUnavailable,
    ProofVerifierUnavailable,
    ReadOnlyViolation,
    contract_address,
    method,
    state_key,
)
from accord.contracts.governance import Governance
from accord.contracts.loans import Loans
from accord.contracts.mpc_loans import MpcLoans
from accord.contracts.mpc_oracle import MpcOracle
from accord.contracts.runtime import BlockResult, InvalidBlock, Runtime, code_hash
from accord.contracts.shielded_pool import ShieldedPool
from accord.contracts.token import Token

BUILTINS: dict[str, type[Contract]] = {
    Token.name: Token,
    MpcOracle.name: MpcOracle,
    MpcLoans.name: MpcLoans,
    ShieldedPool.name: ShieldedPool,
    Loans.name: Loans,
    Governance.name: Governance,
}

__all__ = [
    "BUILTINS",
    "GAS",
    "BlockResult",
    "Context",
    "Contract",
    "GasSchedule",
    "Governance",
    "HookUnavailable",
    "InvalidBlock",
    "OracleUnavailable",
    "ProofVerifierUnavailable",
    "ReadOnlyViolation",
    "Runtime",
    "Token",
    "code_hash",
    "contract_address",
    "method",
    "state_key",
]
