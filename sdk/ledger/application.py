"""The line between consensus and the application, in the spirit of CometBFT's ABCI.

Consensus decides *which* block comes next; the application decides what a block *means*.
The node drives an :class:`Application` and nothing else of the ledger: it asks for a
candidate block when its core wants to propose (``build``), for a verdict on a proposal before
its core may vote (``check_time`` then ``validate``), to apply a decided block (``commit``),
for read-only answers (``query``, ``nonce_of``), and, for state sync, to export its state as a
snapshot, import a verified one and start over from genesis when an import is abandoned
(``export_snapshot``, ``import_snapshot``, ``recommit_genesis``, with ``base`` and ``prune``
for what it keeps). :class:`accord.ledger.chain.Chain` is the
implementation (tests/test_application.py holds it to this protocol); another ledger (a
different state machine behind the same consensus) implements these methods and nothing more.

Rules an implementation keeps:

* **Deterministic.** ``build``, ``validate`` and ``commit`` depend only on the head, the block
  and the arguments: the same block gives the same state root, tx root and receipts on every
  validator. The one local input is ``now_ms`` of ``check_time``/``validate``, which decides
  only this validator's vote and is never applied to a certified block.
* **No I/O of consensus.** No socket, no clock, no thread of its own: time comes in as an
  argument, so the simulator and the node can drive the same code.
* **Refusals are exceptions of one kind.** A proposal that must not get a vote raises
  ``InvalidProposal`` (a ``StateRootMismatch`` when the transactions are genuine but execute to
  another state here: damaged state or other code, which the node reports as a fault).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from accord.base.encoding import Value
from accord.base.errors import AccordError
from accord.base.types import Block, Certificate, Header, Receipt, Tx
from accord.contracts.runtime import ExecutionInterrupted
from accord.ledger.schedule import Schedule

if TYPE_CHECKING:
    from accord.storage.snapshot import Chunk, Manifest

__all__ = [
    "Application",
    "Executed",
    "ExecutionInterrupted",
    "InvalidProposal",
    "MissingContractCode",
    "SnapshotImport",
    "StateRootMismatch",
]


class InvalidProposal(AccordError):
    """A proposed block that honest validators must not vote for."""

    code = "invalid_block"


class StateRootMismatch(InvalidProposal):
    """A block whose transactions and receipts match its header's tx root but whose execution
    here gives another state root. For a certified block that means this node's state (or
    code) differs from the quorum's, not that the block is bad: whoever sent the body sent
    the genuine transactions."""


class MissingContractCode(StateRootMismatch):
    """A block at a height where governance put in force contract code this node has not
    installed. The node cannot compute that block's state, so it must not vote for it nor
    apply it: a certified one halts the node (as any block that does not apply here), with
    the message naming the contract, the code hash and how to install it."""


class Executed(Protocol):
    """What a driver may read of a validation's outcome: the gas it used (the node measures
    execution cost by it, see :class:`accord.node.worker.GasModel`)."""

    @property
    def gas_used(self) -> int: ...


class SnapshotImport(Protocol):
    """A snapshot being imported (:meth:`Application.import_snapshot`): chunks already verified
    against the manifest go in, in any order; nothing is the application's state until
    :meth:`finish`, which refuses (changing nothing) unless every chunk is in and they
    recombine to the manifest's state root. :meth:`abort` drops what went in; the application
    then has no head until :meth:`Application.recommit_genesis`."""

    def begin(self) -> None:
        """Empty the state (and the blocks) to take the snapshot; a crash from here on is
        seen at the next start, which drops the import."""
        ...

    def add(self, index: int, chunk: Chunk) -> None: ...

    def finish(self) -> None: ...

    def abort(self) -> None: ...


@runtime_checkable
class Application(Protocol):
    @property
    def chain_id(self) -> str: ...

    def head(self) -> tuple[int, bytes]:
        """Height and hash of the last committed block."""
        ...

    def head_header(self) -> Header: ...

    def build(
        self,
        txs: Sequence[Tx],
        *,
        round: int = 0,
        proposer: int = 0,
        time_ms: int,
        sortition: bytes = b"",
        verified: Container[bytes] = (),
        interrupt: Callable[[], bool] | None = None,
        gas_budget: int | None = None,
    ) -> Block:
        """A candidate block on the head from ``txs`` (those that would make it invalid are
        left out), executed as it is built; ``interrupt`` stops a build that lost its round
        (raising ``ExecutionInterrupted``; nothing is written)."""
        ...

    def executed_gas(self, block_hash: bytes) -> int | None:
        """The gas a block built or validated on the current head used; None if this
        application has not executed it (or the head has moved since)."""
        ...

    def check_time(self, header: Header, now_ms: int) -> None:
        """Refuse a proposal whose time this validator must not vote for at ``now_ms``."""
        ...

    def validate(
        self, block: Block, *, verified: Container[bytes] = (), now_ms: int | None = None
    ) -> Executed:
        """Re-execute a proposal on the head; raise ``InvalidProposal`` if it must not get a
        vote. The outcome is cached for ``commit``."""
        ...

    def commit(self, block: Block, certificate: Certificate | None) -> list[Receipt]:
        """Apply a decided block (validating it first if needed) and return its receipts."""
        ...

    def query(self, contract: str, method: str, args: dict[str, Value]) -> Value:
        """A read-only contract call on committed state, at the head's height and time."""
        ...

    def nonce_of(self, address: bytes) -> int:
        """The nonce the account's next transaction must carry (committed state)."""
        ...

    def block_and_certificate(self, height: int) -> tuple[Block, Certificate | None]: ...

    def scheduled(self, height: int) -> Schedule:
        """What governance has put in force for the block at ``height``: the validator set
        that votes on it, its consensus parameters, the contracts it runs (see
        :mod:`accord.ledger.schedule`). Final for heights up to the head + 2."""
        ...

    def take_banned(self) -> list[tuple[bytes, str]]:
        """Transactions this application will leave out of its blocks from now on, as
        ``(hash, "contract.method")``, since the last call: ones that made validators disagree
        (proposals holding them refused by f+1 proposers). The node evicts them from its
        mempool, so the chain does not stay stuck behind one transaction."""
        ...

    def mismatch_counts(self) -> dict[str, int]:
        """Proposals refused for a tx-root or state-root mismatch, by reason and by the
        contract of the transaction suspected (for metrics); safe from any thread."""
        ...

    # --- state snapshots, for state sync (accord.node.statesync) -------------------------

    def base(self) -> int:
        """The lowest height whose block and state this application keeps (0 unless pruned
        or started from a snapshot)."""
        ...

    def prune(self, keep: int) -> int:
        """Drop blocks and state below the last ``keep`` heights; return the new base."""
        ...

    def export_snapshot(
        self, out_dir: Path, *, progress: Callable[[int, int], None] | None = None
    ) -> Manifest:
        """Write a snapshot of the head's state under ``out_dir/<height>`` (complete or not
        at all), in the format :mod:`accord.storage.snapshot` defines and verifies: cells
        that recombine to the head's state root. The head must be certified. Reads one
        consistent view, so commits may go on meanwhile (it is called off the chain
        thread); ``progress(done, total)`` may raise to stop it."""
        ...

    def import_snapshot(self, manifest: Manifest) -> SnapshotImport:
        """Prepare to install a manifest the caller verified (certificate and recombined
        root); nothing changes before the import's ``begin``."""
        ...

    def recommit_genesis(self) -> None:
        """Start over at genesis after an abandoned import (its ``abort`` left no head)."""
        ...
