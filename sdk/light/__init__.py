"""accord.light: a light client that follows the chain and verifies everything it is told.

``LightClient`` (blocking) and ``AsyncLightClient`` start from genesis (or genesis and a
trusted checkpoint header), sync headers by checking their commit certificates against the
validator set, and verify transactions (inclusion of tx + receipt), state values and absences
(state proofs) and shielded-pool Groth16 proofs (pure Python) served by untrusted nodes. See
:mod:`accord.light.client` for the trust model, :mod:`accord.light.verify` for each check.
"""

from accord.base.errors import ForkDetected, LightClientError, NodeLied
from accord.light.client import AsyncLightClient, LightClient, SyncReport
from accord.light.store import TrustedHeader, TrustStore
from accord.light.verify import (
    Checker,
    VerifiedBlock,
    VerifiedShieldedTransfer,
    VerifiedState,
    VerifiedTx,
    shielded_transfer,
)

__all__ = [
    "AsyncLightClient",
    "Checker",
    "ForkDetected",
    "LightClient",
    "LightClientError",
    "NodeLied",
    "SyncReport",
    "TrustStore",
    "TrustedHeader",
    "VerifiedBlock",
    "VerifiedShieldedTransfer",
    "VerifiedState",
    "VerifiedTx",
    "shielded_transfer",
]
