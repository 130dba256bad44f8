"""The MPC oracle contract: files oracle requests and delivers the servers' answers.

A contract asks with ``ctx.mpc.request(program, inputs, reveal_to, callback)`` (the runtime's
oracle hook, :class:`accord.mpc.oracle.OracleHook`, turns that into a call of :meth:`file`).
The request is an ``OracleRequest`` event in a committed block; the three MPC servers in force
at its height (genesis's, until governance's ``set_mpc_servers`` activates others; the request
and its event name their accounts) run the program on shares they hold and each answers with a transaction signed by its
own account (:meth:`answer`). Only when all three parts are in, before the deadline, does the
requesting contract's callback receive them: the outputs, encrypted by each server to each
receiver's key (the chain never holds a plaintext output or input). A server that reports a
failure ends the request with ``ok=False`` at once; a request nobody completes can be expired
by anyone after its deadline. Either way no partial result reaches the callback.

Genesis ``mpc`` (validated here at genesis):
``{"servers": [{"address": hex20, ...} x3], "programs": {name: code hash hex}, "timeout_blocks": n}``
"""

from __future__ import annotations

from accord.base import encoding
from accord.base.encoding import Value
from accord.base.errors import GenesisError
from accord.contracts.base import Context, Contract, method

MAX_SHARES = 64
MAX_RECEIVERS = 8
MAX_PARAMS = 16
MAX_NAME = 256  # an input name qualified by its owner key: 64 hex digits, "/", the name
KEY_SIZE = 32


def _request_key(request_id: bytes) -> bytes:
    return b"r" + request_id


class MpcOracle(Contract):
    """Requests, answers and timeouts. Events: ``OracleRequest``, ``OracleAnswered``."""

    name = "mpc_oracle"

    def genesis_state(self) -> dict[str | bytes, Value]:
        cfg = self.genesis.mpc
        if not cfg:
            return {}
        servers = cfg.get("servers")
        if not isinstance(servers, list) or len(servers) != 3:
            raise GenesisError("genesis mpc.servers must list exactly three servers")
        addresses = []
        for s in servers:
            try:
                a = bytes.fromhex(s["address"])
            except (KeyError, TypeError, ValueError):
                raise GenesisError("every MPC server needs a hex address") from None
            if len(a) != 20:
                raise GenesisError("an MPC server address has 20 bytes")
            addresses.append(a)
        if len(set(addresses)) != 3:
            raise GenesisError("MPC server addresses must differ")
        programs = cfg.get("programs", {})
        if not isinstance(programs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and len(v) == 64 for k, v in programs.items()
        ):
            raise GenesisError("genesis mpc.programs maps names to 64-hex-digit code hashes")
        timeout = cfg.get("timeout_blocks", 10)
        if type(timeout) is not int or not 1 <= timeout <= 10_000:
            raise GenesisError("genesis mpc.timeout_blocks must be an integer in [1, 10000]")
        return {"servers": addresses, "programs": dict(programs), "timeout": timeout, "count": 0}

    @method
    def file(
        self,
        ctx: Context,
        program: str,
        shares: list,
        params: dict,
        reveal_to: list,
        callback: str,
    ) -> bytes:
        """File a request for the calling contract; returns the request id."""
        ctx.require(ctx.caller is not None, "oracle requests are filed by contracts")
        programs = ctx.get("programs", {})
        ctx.require(program in programs, f"program {program!r} is not registered in genesis")
        ctx.require(
            len(shares) <= MAX_SHARES
            and all(type(s) is str and 0 < len(s) <= MAX_NAME for s in shares),
            f"shares must be at most {MAX_SHARES} names of 1..{MAX_NAME} characters",
        )
        ctx.require(
            len(params) <= MAX_PARAMS
            and all(type(v) in (int, str) and not isinstance(v, bool) for v in params.values()),
            "params are at most 16 ints or strings",
        )
        ctx.require(
            0 < len(reveal_to) <= MAX_RECEIVERS
            and all(type(k) is bytes and len(k) == KEY_SIZE for k in reveal_to)
            and len(set(reveal_to)) == len(reveal_to),
            f"reveal_to lists 1..{MAX_RECEIVERS} distinct 32-byte receiver keys",
        )
        ctx.require(0 < len(callback) <= 64, "callback must name a method")
        n = ctx.get("count", 0)
        ctx.set("count", n + 1)
        request_id = encoding.sha256(encoding.encode(["accord/mpc/request", ctx.tx_hash, n]))
        deadline = ctx.height + ctx.get("timeout", 10)
        servers = self._servers(ctx)
        assert ctx.caller is not None
        ctx.set(
            _request_key(request_id),
            {
                "contract": ctx.caller,
                "callback": callback,
                "deadline": deadline,
                "reveal_to": reveal_to,
                "parts": [None, None, None],
                "servers": servers,
            },
        )
        ctx.emit(
            "OracleRequest",
            id=request_id,
            program=program,
            shares=shares,
            params=params,
            reveal_to=reveal_to,
            contract=ctx.caller,
            deadline=deadline,
            servers=servers,
        )
        return request_id

    def _servers(self, ctx: Context) -> list[bytes]:
        """The accounts of the servers in force at this block's height: genesis's (this
        contract's state) until governance's ``set_mpc_servers`` activates others. A request
        is answered by the servers in force when it was filed, whatever changes later."""
        governed = ctx.in_force("mpc_servers")
        if governed and any(s["address"] for s in governed):
            return [bytes(s["address"]) for s in governed]
        return list(ctx.get("servers", []))

    @method
    def answer(self, ctx: Context, request_id: bytes, ok: bool, outputs: dict, error: str) -> None:
        """One server's part: ``outputs`` maps receiver key (hex) -> sealed share bytes."""
        req = ctx.get(_request_key(request_id))
        ctx.require(req is not None, "no pending oracle request with this id")
        # Requests filed before servers were recorded per request: genesis's servers.
        servers = req.get("servers") or ctx.get("servers", [])
        ctx.require(
            ctx.sender in servers,
            "only the MPC servers in force when the request was filed may answer it",
        )
        index = servers.index(ctx.sender)
        ctx.require(ctx.height <= req["deadline"], "the request has timed out")
        ctx.require(req["parts"][index] is None, "this server has already answered")
        if ok:
            want = sorted(k.hex() for k in req["reveal_to"])
            ctx.require(sorted(outputs) == want, "an answer must carry a share for every receiver")
            ctx.require(all(type(v) is bytes for v in outputs.values()), "sealed shares are bytes")
        else:
            ctx.require(not outputs, "a failure carries no outputs")
        req["parts"][index] = {"ok": ok, "outputs": outputs, "error": error[:256]}
        if not ok:
            self._finish(ctx, request_id, req, False, None, f"server {index}: {error[:256]}")
        elif all(p is not None for p in req["parts"]):
            self._finish(ctx, request_id, req, True, [p["outputs"] for p in req["parts"]], "")
        else:
            ctx.set(_request_key(request_id), req)

    @method
    def expire(self, ctx: Context, request_id: bytes) -> None:
        """End a request that was not answered by its deadline (anyone may call this)."""
        req = ctx.get(_request_key(request_id))
        ctx.require(req is not None, "no pending oracle request with this id")
        ctx.require(ctx.height > req["deadline"], "the request has not timed out yet")
        self._finish(ctx, request_id, req, False, None, "timed out")

    @method(readonly=True)
    def pending(self, ctx: Context, request_id: bytes) -> dict | None:
        return ctx.get(_request_key(request_id))

    @staticmethod
    def _finish(
        ctx: Context, request_id: bytes, req: dict, ok: bool, outputs: list | None, error: str
    ) -> None:
        ctx.delete(_request_key(request_id))
        ctx.emit("OracleAnswered", id=request_id, ok=ok, error=error)
        ctx.call(
            req["contract"],
            req["callback"],
            request_id=request_id,
            ok=ok,
            outputs=outputs,
            error=error,
        )
