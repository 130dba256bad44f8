"""accord.consensus: the Gosig core, sans-I/O (events in, actions out).

Stable API (for the node and other drivers)
-------------------------------------------

Construction::

    from accord.consensus import Core, Params, SafetyState, BlsCrypto, BlsSigner
    core = Core.from_genesis(genesis, BlsSigner(my_index, my_bls_secret),
                             head=(committed_height, committed_hash), head_cert=cert_or_None,
                             safety=SafetyState.decode(bytes, genesis.n) or None)
    # from_genesis calls genesis.check(): a missing or bad proof of possession raises GenesisError.

Driving it: ``actions = core.handle(event)``; perform the actions IN ORDER. Tick at least at
``core.next_wakeup_ms()`` (ticking more often, e.g. every 20-50 ms, is fine).

Events (in): ``Tick(now_ms)``, ``MessageReceived(from_index, payload: bytes)``,
``BlockBuilt(block)``, ``BlockValidated(block_hash, ok)``, ``BlockFetched(block, certificate|None)``,
``TxsPending(pending)`` (whether the mempool holds transactions; read with ``Params.skip_empty``),
``SetKnown(through, final=False)`` (the core's validator set decides every height through
``through``; a core built with ``through=`` waits above it, and with ``final`` is done after it:
see "Validator-set changes" in :mod:`accord.consensus.state`).

Actions (out):

* ``Persist(key, value)``: write durably (key is ``SAFETY_KEY``; value is the encoded
  ``SafetyState``) and complete it BEFORE performing any later action of the same batch.
* ``Broadcast(payload)``: send to every other validator. ``Send(to_index, payload)``: one peer.
  The core picks gossip peers itself (deterministic xorshift seeded by its index); with at most
  ``Params.broadcast_max`` (64) validators it only uses Broadcast for its own messages.
* ``BuildBlock(height, round, parent_hash, proposer_index, sortition)``: build a block on
  ``parent_hash`` whose header has that height, round, proposer and ``sortition`` (the ticket)
  and answer ``BlockBuilt(block)``. Blocks built too late are dropped (counted as stale).
* ``CancelBuild(height, round)``: a better ticket's proposal for a round this core asked to
  build is here; stop that build if it still runs (advisory: a block built anyway is fine).
* ``ValidateBlock(block)``: execute speculatively, answer ``BlockValidated(hash, ok)``.
* ``Commit(block, certificate)``: the block is final; store and execute it.
* ``FetchBlock(block_hash, from_index)``: ask that peer for the block and, if the peer has
  committed it, its certificate; answer ``BlockFetched(block, certificate)``. Unanswered
  fetches are retried by the core on its resend timer.

Pure helpers: ``verify_certificate(genesis | bls_keys | crypto, chain_id, cert, quorum)``
(raises ``ValidationError``/``InvalidSignature``), ``certificate_signers(cert, n)``,
``sortition_message``, ``vote_message`` (in ``accord.base.types``).

Certificates come in two forms (see :mod:`accord.consensus.aggregate`): a signer bitmap plus
one signature (what broadcast mode, n <= 64, stores), or, in gossip mode when no pure quorum
was seen, per-signer counts (``signers`` of length ``2 * n``) plus the weighted sum. Read the
signers with ``certificate_signers(cert, n)``, which understands both; ``verify_certificate``
accepts both.

Reading the core: ``core.status()`` returns a frozen :class:`Status` snapshot (height, round,
head, clock, last votes, lock, and ``stats``, a plain dict of counters for metrics: garbage,
bad_signature, bad_proposal, stale, received, abstain, repropose, unlock, dropped_votes, ...).
The core's state is private; drivers never read or write it. Three read-only queries serve
what a snapshot would copy too much of: ``block(hash)``, ``locked_block()`` and
``candidate_hashes(round)``.

The rules the core keeps, the theory of operation and the safety argument are in
:mod:`accord.consensus.state`.
"""

from accord.consensus.aggregate import (
    PHASE_C,
    PHASE_P,
    Aggregate,
    certificate_counts,
    certificate_signers,
    verify_certificate,
)
from accord.consensus.crypto import (
    BlsCrypto,
    BlsSigner,
    CostModelCrypto,
    CostModelSigner,
    Crypto,
    Signer,
    sortition_value,
)
from accord.consensus.messages import Proposal, Ticket, decode_message
from accord.consensus.sortition import sortition_message, threshold
from accord.consensus.state import (
    SAFETY_KEY,
    Action,
    BlockBuilt,
    BlockFetched,
    BlockValidated,
    Broadcast,
    BuildBlock,
    CancelBuild,
    Commit,
    Core,
    Event,
    FetchBlock,
    LockStatus,
    MessageReceived,
    Params,
    Persist,
    SafetyState,
    Send,
    SetKnown,
    Status,
    Tick,
    TxsPending,
    ValidateBlock,
)

__all__ = [
    "PHASE_C",
    "PHASE_P",
    "SAFETY_KEY",
    "Action",
    "Aggregate",
    "BlockBuilt",
    "BlockFetched",
    "BlockValidated",
    "BlsCrypto",
    "BlsSigner",
    "Broadcast",
    "BuildBlock",
    "CancelBuild",
    "Commit",
    "Core",
    "CostModelCrypto",
    "CostModelSigner",
    "Crypto",
    "Event",
    "FetchBlock",
    "LockStatus",
    "MessageReceived",
    "Params",
    "Persist",
    "Proposal",
    "SafetyState",
    "Send",
    "Signer",
    "Status",
    "Tick",
    "Ticket",
    "SetKnown",
    "TxsPending",
    "ValidateBlock",
    "certificate_counts",
    "certificate_signers",
    "decode_message",
    "sortition_message",
    "sortition_value",
    "threshold",
    "verify_certificate",
]
