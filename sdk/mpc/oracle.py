"""The MPC oracle between contracts and the servers.

Three pieces:

* :class:`OracleHook` is what a validator gives its runtime (``Runtime(oracle=OracleHook())``):
  ``ctx.mpc.request(program, inputs, reveal_to, callback)`` in a contract becomes a call of
  the ``mpc_oracle`` contract, which records the request and emits an ``OracleRequest`` event.
  It is deterministic: every validator files the same request with the same id.
* :class:`OracleWorker` runs beside each MPC server. Fed the receipts of every committed
  block, it runs each requested program in step with the other two servers, seals its share
  pair of every output to every receiver's X25519 key, and returns the ``mpc_oracle.answer``
  transaction signed by its server's account. If the computation fails (a server died), it
  answers ``ok=False``; the request then ends without any output.
* :func:`open_result` is the receiver's side: it opens its three sealed parts and
  reconstructs the outputs (checking that the servers' overlapping shares agree).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from accord.base import encoding
from accord.base.crypto.ed25519 import AccountKey
from accord.base.encoding import Value
from accord.base.errors import AccordError, CodeMismatch, GenesisError, MpcError, ProofError
from accord.base.genesis import Genesis
from accord.base.types import Event, Receipt, Tx
from accord.mpc.channel import public_bytes
from accord.mpc.engine import decode
from accord.mpc.local import combine
from accord.mpc.malicious import MpcAbort
from accord.mpc.programs import source_hash
from accord.mpc.ring import Ring
from accord.mpc.server import MpcServer, oracle_session

log = logging.getLogger("accord.mpc.oracle")

ORACLE_CONTRACT = "mpc_oracle"


# --- the runtime hook ------------------------------------------------------------------------


class OracleHook:
    """``ctx.mpc.request`` -> ``mpc_oracle.file`` (inputs: ``{"shares": [...], "params": {...}}``)."""

    def request(
        self, ctx: Any, program: str, inputs: Value, reveal_to: list[bytes], callback: str
    ) -> Value:
        if not isinstance(inputs, dict) or set(inputs) - {"shares", "params"}:
            raise MpcError('oracle inputs are {"shares": [names], "params": {name: value}}')
        return ctx.call(
            ORACLE_CONTRACT,
            "file",
            program=program,
            shares=list(inputs.get("shares", [])),
            params=dict(inputs.get("params", {})),
            reveal_to=list(reveal_to),
            callback=callback,
        )


def oracle_from_genesis(genesis: Genesis) -> OracleHook:
    """The runtime hook a node builds when its genesis has an ``mpc`` section.

    The hook itself is stateless: the servers, programs and timeout live in the
    ``mpc_oracle`` contract's state (written at genesis), so every validator files identical
    requests. A genesis that enables ``mpc`` must register that contract.
    """
    if not any(c.name == ORACLE_CONTRACT for c in genesis.contracts):
        raise GenesisError(
            f"genesis configures mpc but does not register the {ORACLE_CONTRACT} contract"
        )
    return OracleHook()


# --- sealing to a receiver's key ---------------------------------------------------------------


def _seal_key(shared: bytes, eph: bytes, receiver: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"accord/mpc/seal" + eph + receiver).derive(
        shared
    )


def seal(receiver: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt to an X25519 public key (ephemeral-static DH, HKDF, AES-GCM): ``eph || ct``."""
    eph = X25519PrivateKey.generate()
    eph_pub = public_bytes(eph)
    shared = eph.exchange(X25519PublicKey.from_public_bytes(receiver))
    key = _seal_key(shared, eph_pub, receiver)
    return eph_pub + AESGCM(key).encrypt(bytes(12), plaintext, aad)


def unseal(key: X25519PrivateKey, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < 32 + 16:
        raise ProofError("sealed blob too short")
    eph_pub = blob[:32]
    shared = key.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    k = _seal_key(shared, eph_pub, public_bytes(key))
    try:
        return AESGCM(k).decrypt(bytes(12), blob[32:], aad)
    except InvalidTag:
        raise ProofError(
            "sealed share does not open with this key (tampered or not ours)"
        ) from None


def _aad(request_id: bytes, server: int) -> bytes:
    return b"accord/mpc/result" + request_id + bytes([server])


# --- the server side ----------------------------------------------------------------------------


@dataclass
class OracleRequest:
    id: bytes
    program: str
    shares: list[str]
    params: dict[str, Any]
    reveal_to: list[bytes]
    deadline: int
    servers: tuple[bytes, ...] | None = None
    """The accounts of the servers in force when it was filed (None: an event from before
    requests named them, for genesis's servers)."""


def requests_in(receipts: list[Receipt]) -> list[OracleRequest]:
    """The oracle requests filed by a committed block's successful transactions, in order."""
    return requests_from([ev for r in receipts if r.ok for ev in r.events])


def requests_from(events: list[Event]) -> list[OracleRequest]:
    """The oracle requests among committed events (events of failed transactions never exist)."""
    out = []
    for ev in events:
        if ev.contract == ORACLE_CONTRACT and ev.name == "OracleRequest":
            try:
                out.append(_parse_request(ev.data))
            except MpcError as e:
                log.warning("ignoring a malformed OracleRequest event: %s", e.message)
    return out


def _parse_request(d: Any) -> OracleRequest:
    """Check every field's type (the contract writes them, but a worker trusts no input)."""
    if not isinstance(d, dict):
        raise MpcError("request data is not a map")
    rid, program, shares = d.get("id"), d.get("program"), d.get("shares")
    params, reveal_to, deadline = d.get("params"), d.get("reveal_to"), d.get("deadline")
    if not (isinstance(rid, bytes) and len(rid) == 32):
        raise MpcError("request id must be 32 bytes")
    if not isinstance(program, str):
        raise MpcError("program must be a string")
    if not (isinstance(shares, list) and all(isinstance(n, str) for n in shares)):
        raise MpcError("shares must be a list of names")
    if not (isinstance(params, dict) and all(isinstance(k, str) for k in params)):
        raise MpcError("params must be a map with string keys")
    if not (
        isinstance(reveal_to, list)
        and all(isinstance(k, bytes) and len(k) == 32 for k in reveal_to)
    ):
        raise MpcError("reveal_to must list 32-byte keys")
    if type(deadline) is not int:
        raise MpcError("deadline must be an integer")
    servers = d.get("servers")
    if servers is not None and not (
        isinstance(servers, list)
        and len(servers) == 3
        and all(isinstance(a, bytes) and len(a) == 20 for a in servers)
    ):
        raise MpcError("servers must list three 20-byte accounts")
    return OracleRequest(
        rid,
        program,
        list(shares),
        dict(params),
        list(reveal_to),
        deadline,
        None if servers is None else tuple(servers),
    )


class OracleWorker:
    """Answers oracle requests for one MPC server (see the module docstring)."""

    def __init__(
        self,
        server: MpcServer,
        account: AccountKey,
        genesis: Genesis,
        *,
        nonce: int = 0,
        gas_limit: int = 2_000_000,
    ) -> None:
        self.server = server
        self.account = account
        self.genesis = genesis
        self.nonce = nonce
        self.gas_limit = gas_limit
        self.failures = 0  # requests answered ok=False (bad inputs, a dead server, ...)
        self.submit_errors = 0  # answers the node refused to take
        self.aborts = 0  # failures where a malicious-security check caught a lying server
        self.check_programs()

    def check_programs(self) -> None:
        """Refuse to serve if a program registered in genesis differs from the local code."""
        for name, want in self.genesis.mpc.get("programs", {}).items():
            fn = self.server.programs.get(name)  # what this server would really run
            if fn is None:
                raise CodeMismatch(f"MPC program {name!r} is registered in genesis but not here")
            if source_hash(fn).hex() != want:
                raise CodeMismatch(f"MPC program {name!r}: local code hash differs from genesis")

    def mine(self, req: OracleRequest) -> bool:
        """Whether this server is one of the servers in force when ``req`` was filed (after a
        ``set_mpc_servers`` change, requests filed from its activation height go to the new
        servers, and earlier ones stay with the old)."""
        return req.servers is None or self.account.address in req.servers

    def on_block(self, receipts: list[Receipt]) -> list[Tx]:
        """Run every request of a committed block that is this server's; returns the answer
        transactions to submit."""
        return [self.answer(req) for req in requests_in(receipts) if self.mine(req)]

    def watch(self, client: Any, *, from_height: int | None = None) -> None:
        """Follow a node's committed events (``accord.client.Client``) and answer each request.

        Starts from the account's next nonce as the node reports it. Returns when the stream
        ends (the node stopped or the connection broke), after logging why. Each request is
        answered once, in commit order; the three servers' workers see the same order, so
        they run each program in step.
        """
        self.nonce = int(client.account(self.account.address)["next_nonce"])
        try:
            for item in client.stream(
                from_height=from_height, blocks=False, events=True, contract=ORACLE_CONTRACT
            ):
                ev = getattr(item, "event", None)
                if ev is None:
                    continue
                for req in requests_from([ev]):
                    if not self.mine(req):
                        continue  # filed for the other servers in force at its height
                    tx = self.answer(req)  # never raises: a bad request gets ok=False
                    try:
                        client.submit(tx)
                    except AccordError as e:  # one refused answer must not stop the worker
                        self.submit_errors += 1
                        log.warning(
                            "server %d: answer to %s refused: %s",
                            self.server.i,
                            req.id.hex(),
                            e.message,
                        )
        except (AccordError, OSError, RuntimeError) as e:
            log.warning("server %d: stopped following the node: %s", self.server.i, e)

    def answer(self, req: OracleRequest) -> Tx:
        """Run one request and build this server's signed answer (ok, or the failure)."""
        i = self.server.i
        try:
            if req.program not in self.genesis.mpc.get("programs", {}):
                raise MpcError(f"program {req.program!r} is not registered in genesis")
            outputs, _public = self.server.run(
                oracle_session(req.id), req.program, req.shares, req.params
            )
            payload = encoding.encode(
                {
                    name: {
                        "shape": list(x.shape),
                        "frac": x.frac,
                        "a": np.ascontiguousarray(x.a).tobytes(),
                        "b": np.ascontiguousarray(x.b).tobytes(),
                    }
                    for name, x in sorted(outputs.items())
                }
            )
            sealed = {k.hex(): seal(k, payload, _aad(req.id, i)) for k in req.reveal_to}
            args: dict[str, Value] = {
                "request_id": req.id,
                "ok": True,
                "outputs": sealed,
                "error": "",
            }
        except Exception as e:  # noqa: BLE001 - any failure is this request's, never the worker's
            self.failures += 1
            if isinstance(e, MpcAbort):
                self.aborts += 1
            code, msg = (
                (e.code, e.message)
                if isinstance(e, AccordError)
                else ("mpc_error", f"{type(e).__name__}: {e}")
            )
            log.warning("server %d: request %s failed: %s: %s", i, req.id.hex(), code, msg)
            args = {
                "request_id": req.id,
                "ok": False,
                "outputs": {},
                "error": f"{code}: {msg}"[:256],
            }
        tx = Tx.create(
            self.account,
            chain_id=self.genesis.chain_id,
            contract=ORACLE_CONTRACT,
            method="answer",
            args=args,
            nonce=self.nonce,
            gas_limit=self.gas_limit,
        )
        self.nonce += 1
        return tx


# --- the receiver side ------------------------------------------------------------------------


def open_result(
    key: X25519PrivateKey, request_id: bytes, parts: list[dict[str, bytes]]
) -> dict[str, npt.NDArray[Any]]:
    """Open this receiver's sealed parts (one per server) and reconstruct every output."""
    if len(parts) != 3:
        raise MpcError("an oracle result has one part per server")
    me = public_bytes(key).hex()
    pairs: list[dict[str, Any]] = []
    for i, part in enumerate(parts):
        blob = part.get(me)
        if blob is None:
            raise MpcError(f"server {i}'s part holds nothing for this receiver")
        pairs.append(encoding.decode(unseal(key, blob, _aad(request_id, i))))
    names = sorted(pairs[0])
    out: dict[str, npt.NDArray[Any]] = {}
    for name in names:
        metas = [p.get(name) for p in pairs]
        if (
            any(m is None for m in metas)
            or len({(tuple(m["shape"]), m["frac"]) for m in metas}) != 1  # type: ignore[index]
        ):
            raise MpcError(f"servers disagree on output {name!r}")
        shape = tuple(metas[0]["shape"])  # type: ignore[index]
        shares: list[tuple[Ring, Ring] | None] = [
            (
                np.frombuffer(m["a"], dtype=np.uint64).reshape(shape),  # type: ignore[index]
                np.frombuffer(m["b"], dtype=np.uint64).reshape(shape),  # type: ignore[index]
            )
            for m in metas
        ]
        out[name] = decode(combine(shares), int(metas[0]["frac"]))  # type: ignore[index]
    return out


def new_receiver_key() -> X25519PrivateKey:
    """A receiver's X25519 key; its public half goes into ``reveal_to``."""
    return X25519PrivateKey.generate()
