"""``LightClient`` / ``AsyncLightClient``: follow the chain trusting no node.

The trust root is the genesis document (chain id, the validators' BLS keys with proofs of
possession, the quorum, the ZK verification keys), or genesis plus a header the operator
trusts (a checkpoint). Full nodes are *untrusted*: everything they serve over the HTTP API is
checked here (:mod:`accord.light.verify`) and a node that serves something false is reported
(:class:`~accord.base.errors.NodeLied`, naming the node and the check) and not believed; the client
asks the next node.

Header sync
-----------
``sync()`` walks the headers after the trusted head, node by node. Each header's commit
certificate is checked against the genesis validator set (phase C, at least 2f+1 distinct
signers, one aggregate BLS signature), each parent hash against the header below, each height
and time. A header without a certificate (the genesis block's, or one a node stored without
one) is held back until a certified descendant links to it by parent hashes. Before walking,
the client asks each node for its header at the trusted head: a different header there that
carries a valid certificate is a fork.

Each certificate is checked against the validator set of its height. On a chain with the
governance contract the set changes by vote, and the set of height h is fixed by the state
after block h - 2: the client proves the changes (:mod:`accord.ledger.validatorsets`) against its newest
trusted header as it walks, one state proof every two headers (more when a change is new),
and never checks a header whose set nothing trusted fixes yet. Skipping ahead
(``sync(skip=True)``, and ``header(h)`` for a height not yet synced) checks one later header's
certificate directly, without the headers between: only on a chain whose set cannot change
(no governance contract); on a governed chain ``skip`` walks, and ``header(h)`` beyond the
proved sets asks the caller to sync first.

Forks
-----
Two different headers at one height, both with valid certificates (or a certified header whose
parent is not the trusted header below it) mean more than f validators signed conflicting
blocks. The client then records the evidence in its store, raises
:class:`~accord.base.errors.ForkDetected`, and refuses every later call, also after a restart.

The trusted state (verified headers, head, fork evidence) is kept in a JSON file
(:mod:`accord.light.store`), so a restart resumes from the stored head.

The sync :class:`LightClient` runs an :class:`AsyncLightClient` on a private event-loop
thread, so both have exactly the same behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from accord.base.encoding import Value
from accord.base.errors import (
    AccordError,
    DecodeError,
    ForkDetected,
    LightClientError,
    NodeLied,
    NotFound,
)
from accord.base.genesis import Genesis
from accord.base.types import Header
from accord.client import AsyncClient, HeaderWithCertificate, StateValue
from accord.ledger.validatorsets import COUNT_KEY, ValidatorSets, entry_key, entry_keys
from accord.light.store import TrustedHeader, TrustStore
from accord.light.verify import (
    Checker,
    VerifiedBlock,
    VerifiedShieldedTransfer,
    VerifiedState,
    VerifiedTx,
    lie,
)

__all__ = ["AsyncLightClient", "LightClient", "SyncReport"]

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_UNCERTIFIED = 64
"""Headers without a certificate held back at once, waiting for a certified descendant."""


class _Unreachable(Exception):
    """A node that did not answer (connection refused, timeout, HTTP error of its own)."""


@dataclass
class SyncReport:
    """What one ``sync()`` verified."""

    from_height: int | None
    to_height: int | None
    headers_verified: int = 0
    certificates_checked: int = 0
    skipped: bool = False
    nodes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "from_height": self.from_height,
            "to_height": self.to_height,
            "headers_verified": self.headers_verified,
            "certificates_checked": self.certificates_checked,
            "skipped": self.skipped,
            "nodes": dict(self.nodes),
        }


def _load_genesis(genesis: Genesis | str | Path) -> Genesis:
    return genesis if isinstance(genesis, Genesis) else Genesis.load(genesis)


class AsyncLightClient:
    """Light client for code running in an event loop; ``async with AsyncLightClient(...)``.

    ``genesis``: a :class:`Genesis` or the path of a genesis file. ``nodes``: API URLs of
    untrusted full nodes, asked in order. ``store``: the JSON file of the trusted state (None:
    memory only). ``trusted_header``: a checkpoint header to start from instead of height 0
    (used only when the store has no head yet; the caller vouches for it). ``ca_file`` /
    ``cert_sha256``: how https node URLs are checked (see :class:`accord.Client`); a node whose
    certificate does not pass is unreachable, like one that is down.
    """

    def __init__(
        self,
        genesis: Genesis | str | Path,
        nodes: Sequence[str],
        *,
        store: str | Path | None = None,
        trusted_header: Header | None = None,
        batch: int = 100,
        timeout: float = 10.0,
        keep: int = 1024,
        ca_file: str | Path | None = None,
        cert_sha256: str | None = None,
        verification_keys: Sequence[Any] = (),
    ) -> None:
        """``verification_keys``: snarkjs vk JSON of circuits governance registered or
        upgraded after genesis, for :meth:`verify_shielded` (genesis's are built in)."""
        if not nodes:
            raise LightClientError("a light client needs at least one node URL")
        if ca_file is not None and cert_sha256 is not None:
            raise LightClientError(
                "give ca_file or cert_sha256, not both (a pin replaces the CA check)"
            )
        self.genesis = _load_genesis(genesis)
        self.checker = Checker(self.genesis, verification_keys)
        self.store = TrustStore(self.genesis.chain_id, self.genesis.hash, store, keep=keep)
        self.sets = ValidatorSets(self.genesis)
        """The validator set of each height, as proved so far (accord.ledger.validatorsets)."""
        try:
            self.sets.load_json(self.store.validator_sets)
        except DecodeError as e:
            raise LightClientError(f"the stored validator sets do not load: {e.message}") from None
        self.nodes = list(dict.fromkeys(n.rstrip("/") for n in nodes))
        self.batch = max(1, min(batch, 1000))
        self.timeout = timeout
        self.ca_file = ca_file
        self.cert_sha256 = cert_sha256
        """TLS for https node URLs, as :class:`accord.Client` takes them (a CA file, or a pin)."""
        self.faults: list[NodeLied] = []
        self.certificates_checked = 0
        self._clients: dict[str, AsyncClient] = {}
        self._lock: asyncio.Lock | None = None
        self._held_back = 0
        head = self.store.head
        if head is not None and head.certificate is not None:
            # A corrupted or edited store must not smuggle in a head: re-check it (one pairing).
            try:
                self.checker.check_certificate(
                    "store", head.header, head.certificate, self.sets.keys_at(head.height)
                )
            except NodeLied as e:
                raise LightClientError(f"the stored head does not verify: {e.message}") from None
        if trusted_header is not None and head is None:
            if trusted_header.chain_id != self.genesis.chain_id:
                raise LightClientError(
                    f"the trusted header is for chain {trusted_header.chain_id!r}"
                )
            self.store.add([TrustedHeader(trusted_header, None)])

    # --- plumbing ---------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncLightClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for c in self._clients.values():
            await c.close()
        self._clients.clear()

    @property
    def head(self) -> TrustedHeader | None:
        """The highest verified header."""
        return self.store.head

    def _client(self, node: str) -> AsyncClient:
        c = self._clients.get(node)
        if c is None:
            tls: dict[str, Any] = {}
            if node.startswith("https:"):
                tls = {"ca_file": self.ca_file, "cert_sha256": self.cert_sha256}
            c = self._clients[node] = AsyncClient(node, timeout=self.timeout, **tls)
        return c

    def _guard(self) -> asyncio.Lock:
        if self.store.fork is not None:
            raise ForkDetected(
                f"the light client stopped: fork evidence at height {self.store.fork.get('height')} "
                f"({self.store.path or 'memory'})",
                self.store.fork,
            )
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def _ask(self, node: str, fn: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """One request to ``node``: its malformed replies are lies, its silence is not."""
        try:
            return await fn(self._client(node))
        except (NodeLied, NotFound):
            raise
        except DecodeError as e:
            raise lie(node, "response", f"malformed reply: {e.message}") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            # before ValueError: a certificate that fails the check is an ssl.CertificateError,
            # a ValueError, and says nothing about what the node serves (not a lie)
            raise _Unreachable(f"{node}: unreachable: {type(e).__name__}: {e}") from None
        except (KeyError, ValueError, TypeError) as e:
            raise lie(node, "response", f"malformed reply: {type(e).__name__}: {e}") from None
        except AccordError as e:
            raise _Unreachable(f"{node}: refused: {e.code}: {e.message}") from None

    def _fault(self, e: NodeLied) -> None:
        log.warning("light client: %s", e.message)
        self.faults.append(e)

    def _fork(
        self,
        height: int,
        a: TrustedHeader,
        a_node: str,
        b: HeaderWithCertificate,
        b_node: str,
        reason: str,
    ) -> ForkDetected:
        assert b.certificate is not None
        evidence: dict[str, Any] = {
            "height": height,
            "reason": reason,
            "a": {
                "node": a_node,
                "header": a.header.encode().hex(),
                "certificate": a.certificate.encode().hex() if a.certificate is not None else None,
            },
            "b": {
                "node": b_node,
                "header": b.header.encode().hex(),
                "certificate": b.certificate.encode().hex(),
            },
        }
        self.store.set_fork(evidence)
        log.error("light client: fork at height %d: %s", height, reason)
        return ForkDetected(
            f"conflicting certified headers at height {height}: {reason}; more than f validators "
            "misbehaved, the light client stopped",
            evidence,
        )

    def _check(self, node: str, header: Header, cert: Any, height: int) -> TrustedHeader:
        self.checker.check_shape(node, header, height)
        keys = self.sets.keys_at(height)
        if keys is None:
            raise LightClientError(
                f"header {height} is beyond the heights whose validator set this client has "
                f"proved (through {self.sets.known_through}): sync up to it first"
            )
        self.checker.check_certificate(node, header, cert, keys)
        self.certificates_checked += 1
        return TrustedHeader(header, cert)

    def _failed(self, what: str, failures: list[NodeLied | str]) -> LightClientError:
        lies = [f for f in failures if isinstance(f, NodeLied)]
        if lies:
            return lies[0]  # names the node and the check; the rest are in self.faults
        return LightClientError(f"no node served {what}: " + "; ".join(str(f) for f in failures))

    # --- header sync ------------------------------------------------------------------------

    async def sync(self, *, skip: bool = False) -> SyncReport:
        """Verify every header after the trusted head (``skip``: only the newest one)."""
        async with self._guard():
            head = self.store.head
            report = SyncReport(
                from_height=head.height if head else None,
                to_height=head.height if head else None,
                skipped=skip,
            )
            before = self.certificates_checked
            failures: list[NodeLied | str] = []
            for node in self.nodes:
                try:
                    self._held_back = 0
                    n = await (self._skip_from(node) if skip else self._sync_from(node))
                    report.headers_verified += n
                    report.nodes[node] = (
                        "ok"
                        if not self._held_back
                        else (
                            f"ok; its {self._held_back} newest header(s) have no certificate yet: not trusted"
                        )
                    )
                except NodeLied as e:
                    self._fault(e)
                    failures.append(e)
                    report.nodes[node] = f"lied: {e.check}"
                except (_Unreachable, NotFound) as e:
                    failures.append(str(e))
                    report.nodes[node] = str(e)
            report.certificates_checked = self.certificates_checked - before
            head = self.store.head
            report.to_height = head.height if head else None
            if len(failures) == len(self.nodes):
                raise self._failed("verified headers", failures)
            return report

    async def _cross_check(self, node: str) -> None:
        """Compare ``node``'s header at our head with ours (a valid different one is a fork)."""
        head = self.store.head
        if head is None:
            return
        try:
            hc = await self._ask(node, lambda c: c.header(head.height))
        except NotFound:
            return  # the node is behind us: nothing to compare
        if hc.header.hash == head.hash:
            return
        self._check(node, hc.header, hc.certificate, head.height)
        raise self._fork(
            head.height, head, "trusted", hc, node, "two certified headers at one height"
        )

    async def _sync_from(self, node: str) -> int:
        await self._cross_check(node)
        head = self.store.head
        prev: TrustedHeader | None = head
        prev_trusted = True
        pending: list[TrustedHeader] = []  # chained, not yet certified (or linked to certified)
        start = head.height + 1 if head else 0
        added = 0
        while True:
            try:
                frm = start

                async def fetch(c: AsyncClient, frm: int = frm) -> list[HeaderWithCertificate]:
                    return await c.headers(frm, self.batch)

                batch = await self._ask(node, fetch)
            except NotFound:
                batch = []
            if not batch:
                break
            verified: list[TrustedHeader] = []
            stalled = False
            for i, hc in enumerate(batch):
                height = start + i
                header, cert = hc.header, hc.certificate
                self.checker.check_shape(node, header, height)
                if cert is not None and self.sets.keys_at(height) is None:
                    # Its set is fixed by the state two heights below: prove the changes up
                    # to the newest trusted header first (accord.ledger.validatorsets).
                    if verified:
                        self.store.add(verified)
                        added += len(verified)
                        verified = []
                    if self.store.head is not None:
                        await self._learn_sets(node, self.store.head)
                    if self.sets.keys_at(height) is None:
                        stalled = True  # nothing trusted fixes this height's set yet
                        break
                if cert is not None:
                    self._check(node, header, cert, height)
                if prev is not None:
                    try:
                        self.checker.check_link(node, prev.header, header)
                    except NodeLied as e:
                        if cert is not None and prev_trusted:
                            # Both ends verify on their own: the validators certified two chains.
                            raise self._fork(
                                height - 1, prev, "trusted", hc, node, e.message
                            ) from None
                        raise
                t = TrustedHeader(header, cert)
                if cert is not None:
                    # The certificate authenticates this header, and parent hashes every
                    # uncertified header held back below it.
                    verified.extend(pending)
                    verified.append(t)
                    pending = []
                    prev_trusted = True
                else:
                    pending.append(t)
                    prev_trusted = False
                    if len(pending) > MAX_UNCERTIFIED:
                        raise lie(
                            node,
                            "certificate",
                            f"more than {MAX_UNCERTIFIED} headers in a row without a certificate",
                        )
                prev = t
            if verified:
                self.store.add(verified)
                added += len(verified)
            if stalled:
                break
            start += len(batch)
        # Headers still held back have no certified descendant: they are simply not trusted
        # (a node's newest block may be stored before its certificate is attached).
        self._held_back = len(pending)
        return added

    async def _learn_sets(self, node: str, trusted: TrustedHeader) -> None:
        """The validator-set changes up to ``trusted``, proved against its state root."""
        if not self.sets.governed:
            return
        known = self.sets.known_through
        if known is not None and known >= trusted.height + 2:
            return
        count_sv = await self._ask(
            node, lambda c: c.state("governance", COUNT_KEY, height=trusted.height)
        )
        proved = self.checker.check_state(node, "governance", COUNT_KEY, count_sv, trusted).decoded
        count = 0 if proved is None else proved
        if type(count) is not int or count < len(self.sets.entries):
            raise lie(node, "state_proof", "the validator-set change count went down")
        new = []
        for k in range(len(self.sets.entries), count):
            key = entry_key(k)

            async def read(c: AsyncClient, key: str = key) -> StateValue:
                return await c.state("governance", key, height=trusted.height)

            sv = await self._ask(node, read)
            value = self.checker.check_state(node, "governance", key, sv, trusted).decoded
            try:
                new.append(entry_keys(value))
            except DecodeError as e:
                raise lie(node, "state_proof", f"validator-set change {k}: {e.message}") from None
        self.sets.learn(trusted.height, count, new)
        self.store.validator_sets = self.sets.to_json()
        self.store.save()

    async def _skip_from(self, node: str) -> int:
        if self.sets.governed:
            # Each set is fixed by the headers before it: no header can be checked alone.
            return await self._sync_from(node)
        await self._cross_check(node)

        async def head_height(c: AsyncClient) -> int:
            return int((await c.status())["height"])

        height = await self._ask(node, head_height)
        head = self.store.head
        if height < 0 or (head is not None and height <= head.height):
            return 0
        hc = await self._ask(node, lambda c: c.header(height))
        self._check(node, hc.header, hc.certificate, height)
        self.store.add([TrustedHeader(hc.header, hc.certificate)])
        return 1

    # --- single headers ---------------------------------------------------------------------

    async def header(self, height: int) -> TrustedHeader:
        """The verified header at ``height`` (stored, or fetched and its certificate checked)."""
        async with self._guard():
            return await self._header(height)

    async def _first_verified(
        self, what: str, nodes: Sequence[str], attempt: Callable[[str], Awaitable[T]]
    ) -> T:
        """Ask ``nodes`` in turn until one answers with something that verifies. A lying node
        is recorded as a fault; an unreachable one, or one that says it does not know, is
        passed over; if every node fails, the error lists them all."""
        failures: list[NodeLied | str] = []
        for node in nodes:
            try:
                return await attempt(node)
            except NodeLied as e:
                self._fault(e)
                failures.append(e)
            except _Unreachable as e:
                failures.append(str(e))
            except NotFound as e:
                failures.append(f"{node}: {e.message}")
        raise self._failed(what, failures)

    async def _header(self, height: int, prefer: str | None = None) -> TrustedHeader:
        t = self.store.get(height)
        if t is not None:
            return t
        order = ([prefer] if prefer else []) + [n for n in self.nodes if n != prefer]
        if self.sets.keys_at(height) is None:
            # A governed chain: the set of ``height`` is fixed only by the headers below it,
            # so the client walks there first (accord.ledger.validatorsets).
            for node in order:
                try:
                    await self._sync_from(node)
                except NodeLied as e:
                    self._fault(e)
                except (_Unreachable, NotFound):
                    pass
                if self.sets.keys_at(height) is not None:
                    break
            t = self.store.get(height)
            if t is not None:
                return t
        return await self._first_verified(
            f"a verified header at height {height}",
            order,
            lambda node: self._fetch_header(node, height),
        )

    async def _fetch_header(self, node: str, height: int) -> TrustedHeader:
        """Header ``height`` from ``node``: certified directly, or (no certificate, e.g. the
        genesis block) linked by parent hashes to the first certified header above it."""
        batch = await self._ask(node, lambda c: c.headers(height, 16))
        if not batch:
            raise NotFound(f"node {node} has no header at height {height}")
        chain: list[HeaderWithCertificate] = []
        for i, hc in enumerate(batch):
            self.checker.check_shape(node, hc.header, height + i)
            if chain:
                self.checker.check_link(node, chain[-1].header, hc.header)
            chain.append(hc)
            if hc.certificate is not None:
                self._check(node, hc.header, hc.certificate, height + i)
                break
        else:
            if len(batch) < 16:
                # The node's newest headers may still wait for their certificate: not a lie,
                # but nothing to believe either.
                raise NotFound(f"node {node}: no certified header at or above height {height} yet")
            raise lie(
                node, "certificate", f"no certified header within {len(batch)} of height {height}"
            )
        found = [TrustedHeader(x.header, x.certificate) for x in chain]
        for t, hc in zip(found, chain, strict=True):
            mine = self.store.get(t.height)
            if mine is not None and mine.hash != t.hash:
                raise self._fork(
                    t.height,
                    mine,
                    "trusted",
                    hc if hc.certificate else chain[-1],
                    node,
                    "a node served a certified header that conflicts with a trusted one",
                )
        self.store.add(found)
        return found[0]

    # --- proofs -----------------------------------------------------------------------------

    async def verify_tx(self, tx_hash: bytes) -> VerifiedTx:
        """A committed transaction and its receipt, proved against a certified header."""
        async with self._guard():
            return await self._verify_tx(tx_hash)

    async def _verify_tx(self, tx_hash: bytes) -> VerifiedTx:
        async def attempt(node: str) -> VerifiedTx:
            st = await self._ask(node, lambda c: c.tx(tx_hash, proof=True, include_tx=True))
            if st.status != "committed":
                raise NotFound(f"transaction is {st.status}")
            if st.height is None or st.height < 1:
                raise lie(node, "response", "a committed transaction needs a height")
            trusted = await self._header(st.height, prefer=node)
            return self.checker.check_tx(node, tx_hash, st, trusted)

        return await self._first_verified(
            f"a verified transaction {tx_hash.hex()[:16]}", self.nodes, attempt
        )

    async def verify_block(self, height: int) -> VerifiedBlock:
        """A whole committed block with its receipts, checked against the certified header
        (for readers of every transaction, e.g. the regulator's audit)."""

        async def attempt(node: str) -> VerifiedBlock:
            block, receipts = await self._ask(node, lambda c: c.block_receipts(height))
            if block.height != height:
                raise lie(node, "block_header", f"asked for block {height}, got {block.height}")
            trusted = await self._header(height, prefer=node)
            return self.checker.check_block(node, block, receipts, trusted)

        async with self._guard():
            return await self._first_verified(f"a verified block {height}", self.nodes, attempt)

    async def verify_state(self, contract: str, key: bytes | str) -> VerifiedState:
        """A contract's state value, or its absence, proved against a certified header."""

        async def attempt(node: str) -> VerifiedState:
            sv = await self._ask(node, lambda c: c.state(contract, key))
            if sv.height < 0:
                raise lie(node, "response", "negative height")
            trusted = await self._header(sv.height, prefer=node)
            return self.checker.check_state(node, contract, key, sv, trusted)

        async with self._guard():
            return await self._first_verified(
                f"a verified value of {contract}/{key!r}", self.nodes, attempt
            )

    async def verify_shielded(self, tx_hash: bytes) -> VerifiedShieldedTransfer:
        """A committed shielded-pool transaction, and its Groth16 proof re-verified here in
        pure Python (no Node.js) against the verification key in force at its height, and its
        regulator key against the one in force there (genesis's, or on a governed chain what
        governance put in force, proved against the block's certified header)."""
        async with self._guard():
            vt = await self._verify_tx(tx_hash)
            in_force = None
            if self.sets.governed:
                in_force = {
                    kind: await self._in_force(kind, vt.height)
                    for kind in ("circuits", "regulator")
                }
        # About a second of pure-Python pairings: keep the event loop responsive meanwhile.
        return await asyncio.to_thread(self.checker.check_shielded, vt, in_force)

    async def _in_force(self, kind: str, height: int) -> Value:
        """What governance had in force for ``kind`` at ``height``, read as the contract reads
        it from the state after block ``height`` (proved against its certified header): its
        entries are never rewritten, and one that passed after block ``height - 2`` activates
        after ``height``, so that state decides it exactly."""
        from accord.contracts.governance import genesis_schedule

        async def attempt(node: str) -> Value:
            trusted = await self._header(height, prefer=node)

            async def read(key: str) -> Value:
                sv = await self._ask(node, lambda c: c.state("governance", key, height=height))
                return self.checker.check_state(node, "governance", key, sv, trusted).decoded

            count = await read(f"s/{kind}/n")
            k = 0 if count is None else count
            if type(k) is not int or k < 0:
                raise lie(node, "state_proof", f"governance's {kind} count is not a count")
            while k > 0:
                k -= 1
                entry = await read(f"s/{kind}/{k}")
                if type(entry) is not list or len(entry) != 3 or type(entry[0]) is not int:
                    raise lie(node, "state_proof", f"governance's {kind} entry {k} is malformed")
                if entry[0] <= height:
                    return entry[1]
            return genesis_schedule(self.genesis)[kind]

        return await self._first_verified(
            f"governance's {kind} at height {height}", self.nodes, attempt
        )


def _shutdown(
    loop: asyncio.AbstractEventLoop, thread: threading.Thread, inner: list[AsyncLightClient]
) -> None:
    """Close a blocking light client's async client and stop its loop thread."""
    if loop.is_closed():
        return
    if inner and thread.is_alive():
        with contextlib.suppress(Exception):  # best effort: the sessions die with the loop anyway
            asyncio.run_coroutine_threadsafe(inner[0].close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


class LightClient:
    """The blocking light client: an :class:`AsyncLightClient` on a private event-loop thread.

    Same arguments and methods as :class:`AsyncLightClient`, without ``await``::

        with LightClient("genesis.json", ["http://127.0.0.1:8650"], store="light.json") as lc:
            lc.sync()
            lc.verify_tx(tx_hash)
    """

    def __init__(self, genesis: Genesis | str | Path, nodes: Sequence[str], **kw: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="accord-light", daemon=True
        )
        self._thread.start()
        inner: list[AsyncLightClient] = []
        # Runs once: on close(), or when a client nobody closed is collected (or at exit), so
        # a forgotten client does not leave its thread, loop and HTTP sessions behind.
        self._finalizer = weakref.finalize(self, _shutdown, self._loop, self._thread, inner)
        try:
            self._inner = self._run(self._make(genesis, nodes, kw))
        except BaseException:
            self._finalizer()
            raise
        inner.append(self._inner)

    @staticmethod
    async def _make(
        genesis: Genesis | str | Path, nodes: Sequence[str], kw: dict[str, Any]
    ) -> AsyncLightClient:
        return AsyncLightClient(genesis, nodes, **kw)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> LightClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def inner(self) -> AsyncLightClient:
        return self._inner

    @property
    def head(self) -> TrustedHeader | None:
        return self._inner.head

    @property
    def faults(self) -> list[NodeLied]:
        return self._inner.faults

    @property
    def store(self) -> TrustStore:
        return self._inner.store

    def sync(self, *, skip: bool = False) -> SyncReport:
        return self._run(self._inner.sync(skip=skip))

    def header(self, height: int) -> TrustedHeader:
        return self._run(self._inner.header(height))

    def verify_tx(self, tx_hash: bytes) -> VerifiedTx:
        return self._run(self._inner.verify_tx(tx_hash))

    def verify_state(self, contract: str, key: bytes | str) -> VerifiedState:
        return self._run(self._inner.verify_state(contract, key))

    def verify_shielded(self, tx_hash: bytes) -> VerifiedShieldedTransfer:
        return self._run(self._inner.verify_shielded(tx_hash))

    def verify_block(self, height: int) -> VerifiedBlock:
        return self._run(self._inner.verify_block(height))
