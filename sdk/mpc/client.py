"""The data owner's and requester's side: share inputs, run programs, reconstruct outputs.

``share(array, servers)`` runs on the owner's machine: the array is split locally and each
server receives only its own share pair, over a channel that authenticates the server's key.
``Cluster.run`` asks all three servers to run a program and reconstructs the outputs from
their share pairs; if any server fails, it raises and returns nothing (never a partial result).

Several owners compute together: each stores its own inputs (namespaced by its key; every
store carries a fresh random store id, the same to all three servers, so the servers can tell
versions apart), then ``grant(name, program, receiver, params=..., inputs=[...])`` allows one
exact run: that program, run by that receiver, with those params, on those inputs as they are
now; a receiver names another owner's input with :func:`ref`. The servers serve registered
keys only: a key the cluster does not list is refused when the client connects.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base.errors import MpcError, PeerGone
from accord.mpc.channel import Channel, public_bytes
from accord.mpc.engine import decode
from accord.mpc.local import combine, split
from accord.mpc.ring import Ring
from accord.mpc.server import ServerInfo, pack, payload_arrays, qualify, unpack
from accord.mpc.sharestore import SALT_BYTES, component_commitment, store_id


class Cluster:
    """Connections from one client to the three servers."""

    def __init__(
        self, servers: list[ServerInfo], key: X25519PrivateKey | None = None, timeout: float = 120.0
    ) -> None:
        if len(servers) != 3:
            raise MpcError("a cluster has exactly three servers")
        self.servers = servers
        self.key = key or X25519PrivateKey.generate()
        self.timeout = timeout
        self.channels: list[Channel] = []
        self.identity = ""  # the name the cluster registered this key under
        try:
            for i in range(3):
                self.channels.append(self._connect(i))
        except BaseException:
            self.close()
            raise

    def _connect(self, i: int) -> Channel:
        info = self.servers[i]
        sock = socket.create_connection((info.host, info.port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(b"C")
            ch, _ = Channel.handshake(sock, self.key, info.public_key, True, prologue=b"C")
        except BaseException:
            sock.close()
            raise
        try:
            # the server's first word: welcome (registered, within quota) or why not
            header, _ = unpack(ch.recv())
            if header.get("t") != "welcome":
                raise MpcError(
                    f"server {i} refused this client: {header.get('code')}: {header.get('message')}"
                )
        except BaseException:
            ch.close()
            raise
        self.identity = str(header.get("identity", ""))
        return ch

    @property
    def public_key(self) -> bytes:
        """This client's key: what owners name as a receiver in their grants."""
        return public_bytes(self.key)

    def qualified(self, name: str) -> str:
        """The server-wide name of this client's input ``name`` (what oracle requests use)."""
        return qualify(public_bytes(self.key), name)

    def close(self) -> None:
        for ch in self.channels:
            ch.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _all(
        self, frames: list[bytes] | list[bytearray]
    ) -> list[tuple[dict[str, Any], memoryview]]:
        """Send one frame to each server and wait for every reply (in parallel)."""
        replies: list[Any] = [None, None, None]

        def one(i: int) -> None:
            try:
                if self.channels[i].closed:
                    # that server went away (restarted, or the link broke): one new
                    # connection per request; the request fails if it is not back yet
                    self.channels[i] = self._connect(i)
                self.channels[i].send(frames[i])
                replies[i] = unpack(self.channels[i].recv())
            except Exception as e:  # noqa: BLE001 - reported below with the server's index
                replies[i] = e

        threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.timeout)
        errors = []
        for i, r in enumerate(replies):
            if r is None:
                errors.append(f"server {i}: no reply in {self.timeout} s")
            elif isinstance(r, BaseException):
                errors.append(f"server {i}: {r}")
            elif r[0].get("t") == "error":
                errors.append(f"server {i}: {r[0].get('code')}: {r[0].get('message')}")
        if errors:
            gone = any(
                "gone" in e or "disconnect" in e or "no reply" in e or "closed" in e for e in errors
            )
            cls = PeerGone if gone else MpcError
            raise cls("; ".join(errors))
        return replies

    def store_shares(self, name: str, triple: list[tuple[Ring, Ring]], frac: int) -> bytes:
        """Store one share pair on each server; returns the store id (the version).

        The id is bound to the shares (:func:`~accord.mpc.sharestore.store_id`): every server
        derives it from its pair, and a store that reached only some servers, or a pair that
        does not fit the others, gives ids that differ, so runs are refused instead of
        computing on a mix. Storing again (fresh salts, a new id) repairs it.
        """
        frames, sid = store_frames(name, triple, frac)
        replies = self._all(frames)
        for i, (h, _) in enumerate(replies):
            if h.get("id") != sid:
                raise MpcError(
                    f"server {i} derived another store id for {name!r} (its pair was altered "
                    "on the way, or the server is faulty): runs on it will be refused; store "
                    "it again"
                )
        return sid

    def delete(self, name: str) -> None:
        """Free an input of this client's on every server (its bytes leave the quotas)."""
        self._all([pack({"t": "delete", "name": name})] * 3)

    def grant(
        self,
        name: str,
        program: str,
        receiver: bytes,
        *,
        params: dict[str, Any] | None = None,
        ranges: dict[str, tuple[int, int]] | None = None,
        inputs: Sequence[dict[str, Any]],
    ) -> None:
        """Allow one computation on this client's input ``name``: ``program``, run by
        ``receiver``, with exactly ``params``, on exactly ``inputs``.

        ``ranges`` (``{"iters": (1, 20)}``) lets the receiver choose those integer params
        within the bounds (inclusive), each of them in every run; a run outside them is
        refused, naming the param and its range. A param is either in ``params`` or in
        ``ranges``, not both.

        ``inputs`` is the run's whole input list as the receiver will send it, every item a
        :func:`ref` (this input among them, under the name the program sees). Each server
        records every input's current version with the grant: if anyone (the receiver too)
        replaces one of them afterwards, the run is refused, as is a run with other params,
        another program name for an input, or one input more or less. Replacing or deleting
        ``name`` drops its grants.
        """
        header = self._grant_header("grant", name, program, receiver, params, inputs, ranges)
        self._all([pack(header)] * 3)

    def revoke(
        self,
        name: str,
        program: str,
        receiver: bytes,
        *,
        params: dict[str, Any] | None = None,
        ranges: dict[str, tuple[int, int]] | None = None,
        inputs: Sequence[dict[str, Any]],
    ) -> None:
        """Take back the grants of that computation (whatever input versions they recorded;
        a grant with ranges is revoked by naming the same ranges)."""
        header = self._grant_header("revoke", name, program, receiver, params, inputs, ranges)
        self._all([pack(header)] * 3)

    @staticmethod
    def _grant_header(
        t: str,
        name: str,
        program: str,
        receiver: bytes,
        params: dict[str, Any] | None,
        inputs: Sequence[dict[str, Any]],
        ranges: dict[str, tuple[int, int]] | None = None,
    ) -> dict[str, Any]:
        if not all(isinstance(it, dict) for it in inputs):
            raise MpcError("a grant names every input with ref(owner, name, as)")
        extra = {"ranges": {k: list(v) for k, v in ranges.items()}} if ranges else {}
        return {
            **extra,
            "t": t,
            "name": name,
            "program": program,
            "receiver": bytes(receiver),
            "params": dict(params or {}),
            "inputs": [dict(it) for it in inputs],
        }

    def share(self, name: str, values: npt.ArrayLike, frac: int = 16) -> bytes:
        """Split ``values`` here and send each server only its share pair; returns the store id."""
        return self.store_shares(name, split(values, frac), frac)

    def run(
        self,
        program: str,
        inputs: Sequence[str | dict[str, Any]],
        params: dict[str, Any] | None = None,
    ) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
        """Run ``program``; returns (outputs reconstructed here, public results of server 0).

        ``inputs`` are names of this client's inputs, or :func:`ref` to another owner's.
        """
        session = os.urandom(8).hex()
        header = {
            "t": "run",
            "s": session,
            "program": program,
            "inputs": inputs,
            "params": params or {},
        }
        replies = self._all([pack(header)] * 3)
        meta = replies[0][0].get("outputs", {})
        out: dict[str, npt.NDArray[Any]] = {}
        per_server = []
        for h, payload in replies:
            if h.get("outputs") != meta:
                raise MpcError("servers disagree on the outputs")
            specs = [(tuple(meta[n]["shape"]), 0) for n in sorted(meta) for _ in (0, 1)]
            per_server.append(payload_arrays(payload, specs))
        for k, name in enumerate(sorted(meta)):
            raw = combine([(s[2 * k], s[2 * k + 1]) for s in per_server])
            out[name] = decode(raw, int(meta[name]["frac"]))
        return out, dict(replies[0][0].get("public", {}))


def store_frames(
    name: str, triple: list[tuple[Ring, Ring]], frac: int
) -> tuple[list[bytearray], bytes]:
    """The three store requests of one input, and the store id the servers will derive.

    Server ``i`` gets its pair ``(x_i, x_{i+1})``, the salts of those two components, and the
    commitment to ``x_{i+2}`` (hiding: it never sees that salt).
    """
    salts = [os.urandom(SALT_BYTES) for _ in range(3)]
    comps = [component_commitment(j, frac, salts[j], triple[j][0]) for j in range(3)]
    shape = list(triple[0][0].shape)
    frames = [
        pack(
            {
                "t": "store",
                "name": name,
                "shape": shape,
                "frac": frac,
                "salts": [salts[i], salts[(i + 1) % 3]],
                "commit": comps[(i + 2) % 3],
            },
            np.ascontiguousarray(a).tobytes() + np.ascontiguousarray(b).tobytes(),
        )
        for i, (a, b) in enumerate(triple)
    ]
    return frames, store_id(comps)


def ref(owner: bytes, name: str, as_: str | None = None) -> dict[str, Any]:
    """Another owner's input ``name`` in a run request, seen by the program as ``as_``."""
    return {"owner": bytes(owner), "name": name, "as": as_ or name}


def share(values: npt.ArrayLike, servers: Cluster, name: str | None = None, frac: int = 16) -> str:
    """``share(array, servers)``: what a data owner calls on its own machine.

    The array is split here; each server receives only its share pair. Returns the input's
    name (a fresh random one unless given), which programs and oracle requests refer to.
    """
    name = name or "input/" + os.urandom(12).hex()
    servers.share(name, np.asarray(values), frac)
    return name
