"""``accord.Client`` and ``accord.AsyncClient``: the client API from Python.

Both speak to one node's HTTP API (:mod:`accord.node.api`). Results come back as the ledger's
own types (``Block``, ``Header``, ``Certificate``, ``Receipt``) decoded from the canonical
``raw`` bytes the server sends, never rebuilt from the JSON view: what you hold is exactly
what was hashed and signed. Proofs are returned as objects for the light client to check
(:mod:`accord.light`); this client verifies nothing and trusts the node it talks to.

Errors the server reports come back as the :class:`~accord.base.errors.AccordError` subclass with
the same ``code`` (``bad_nonce`` -> :class:`~accord.base.errors.NonceError`, ...).

The sync :class:`Client` uses the standard library (``http.client``, one keep-alive
connection per thread) so that it works inside Flask/Django workers without an event loop;
its :meth:`Client.stream` runs an :class:`AsyncClient` on a private thread. The
:class:`AsyncClient` uses aiohttp and is meant for code already running in an event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import queue
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from accord.base import encoding
from accord.base.encoding import Value
from accord.base.errors import AccordError, DecodeError, TooLarge, ValidationError, WaitTimeout
from accord.base.genesis import Genesis
from accord.base.merkle import StateProof
from accord.base.types import Block, Certificate, Event, Header, Receipt, Tx
from accord.base.wire import value_from_json

__all__ = [
    "AsyncClient",
    "BlockCommitted",
    "Client",
    "EventCommitted",
    "HeaderWithCertificate",
    "InclusionProof",
    "StateValue",
    "TxStatus",
    "error_from",
]

# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InclusionProof:
    """Arguments of ``accord.base.merkle.verify_merkle_proof(tx_root, leaf, index, count, siblings)``."""

    leaf: bytes
    index: int
    count: int
    siblings: list[bytes]
    tx_root: bytes


@dataclass(frozen=True)
class TxStatus:
    tx_hash: bytes
    status: str  # pending | committed | unknown
    height: int | None = None
    index: int | None = None
    block_hash: bytes | None = None
    receipt: Receipt | None = None
    proof: InclusionProof | None = None
    tx: Tx | None = None

    @property
    def committed(self) -> bool:
        return self.status == "committed"


@dataclass(frozen=True)
class HeaderWithCertificate:
    header: Header
    certificate: Certificate | None


@dataclass(frozen=True)
class StateValue:
    """A state value and the proof of it against ``header.state_root`` (unverified here).

    ``value`` is the stored bytes (a canonical encoding) or None when absent; ``decoded`` is
    that value decoded. Verify with
    ``accord.base.merkle.verify_state_proof(header.state_root, state_key, value, proof)``.
    """

    contract: str
    state_key: bytes
    value: bytes | None
    decoded: Value
    proof: StateProof
    height: int
    header: Header


@dataclass(frozen=True)
class BlockCommitted:
    height: int
    hash: bytes
    header: Header
    certificate: Certificate | None
    tx_hashes: list[bytes]
    receipts_ok: list[bool]


@dataclass(frozen=True)
class EventCommitted:
    height: int
    tx_hash: bytes
    index: int
    event: Event


StreamItem = BlockCommitted | EventCommitted

# --- errors ---------------------------------------------------------------------------------


def _error_classes() -> dict[str, type[AccordError]]:
    out: dict[str, type[AccordError]] = {}
    pending: list[type[AccordError]] = [AccordError]
    while pending:
        cls = pending.pop(0)
        out.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return out


def error_from(code: str, message: str) -> AccordError:
    """The AccordError subclass registered for ``code`` (or an AccordError carrying it).

    Subclasses are looked up at call time, so codes defined by modules imported later (the
    runtime's ``invalid_block``, ``bad_state_key``...) map to their classes too.
    """
    cls = _error_classes().get(code)
    if cls is None:
        err = AccordError(message)
        err.code = code
        return err
    try:
        return cls(message)
    except TypeError:  # a subclass with a different constructor
        err = AccordError(message)
        err.code = code
        return err


DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def _json_nesting(text: str) -> int:
    """The deepest nesting of lists and maps in JSON ``text`` (strings skipped), without
    recursing; malformed text gives some number and is refused by the parser after."""
    depth = deepest = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        if m.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads_json(data: bytes | str) -> Any:
    """``json.loads`` for a server's answer, with the project's nesting limit
    (``encoding.MAX_DEPTH``): a hostile body nested 100k deep is a :class:`DecodeError`, never a
    RecursionError. The stdlib parser recurses per level, so its own limit is the interpreter's
    recursion limit (which a host may raise); the depth is also checked without recursing."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes | bytearray) else data
    if (
        text.count("[") + text.count("{") > encoding.MAX_DEPTH
        and _json_nesting(text) > encoding.MAX_DEPTH
    ):
        # checked before parsing: with a raised recursion limit the C parser would recurse
        # until the thread's C stack overflows (a crash, not an exception)
        raise DecodeError(f"answer nests more than {encoding.MAX_DEPTH} levels deep")
    try:
        value = json.loads(data)
    except RecursionError:
        raise DecodeError(f"answer nests more than {encoding.MAX_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DecodeError(f"answer is not valid JSON: {str(e)[:200]}") from None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict | list):
            if depth > encoding.MAX_DEPTH:
                raise DecodeError(f"answer nests more than {encoding.MAX_DEPTH} levels deep")
            stack.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))
    return value


def _raise_for(status: int, body: bytes) -> None:
    try:
        doc = loads_json(body)
        e = doc["error"]
        code, message = str(e["code"]), str(e["message"])
    except (DecodeError, KeyError, TypeError):
        code, message = f"http_{status}", body[:200].decode("utf-8", "replace") or f"HTTP {status}"
    raise error_from(code, message)


# --- parsing (shared by both clients) -------------------------------------------------------


def _hex(s: str | None) -> bytes | None:
    return None if s is None else bytes.fromhex(s)


def _header(d: dict[str, Any]) -> Header:
    return Header.decode(bytes.fromhex(d["raw"]))


def _certificate(d: dict[str, Any] | None) -> Certificate | None:
    return None if d is None else Certificate.decode(bytes.fromhex(d["raw"]))


def _receipt(d: dict[str, Any] | None) -> Receipt | None:
    return None if d is None else Receipt.from_obj(encoding.decode(bytes.fromhex(d["raw"])))


def _tx_status(d: dict[str, Any]) -> TxStatus:
    p = d.get("proof")
    proof = None
    if p is not None:
        proof = InclusionProof(
            leaf=bytes.fromhex(p["leaf"]),
            index=p["index"],
            count=p["count"],
            siblings=[bytes.fromhex(x) for x in p["siblings"]],
            tx_root=bytes.fromhex(p["tx_root"]),
        )
    t = d.get("tx")
    return TxStatus(
        tx_hash=bytes.fromhex(d["tx_hash"]),
        status=d["status"],
        height=d.get("height"),
        index=d.get("index"),
        block_hash=_hex(d.get("block_hash")),
        receipt=_receipt(d.get("receipt")),
        proof=proof,
        tx=Tx.decode(bytes.fromhex(t["raw"])) if t is not None else None,
    )


def _hwc(d: dict[str, Any]) -> HeaderWithCertificate:
    return HeaderWithCertificate(_header(d["header"]), _certificate(d.get("certificate")))


def _block_receipts(d: dict[str, Any]) -> tuple[Block, list[Receipt]]:
    """A block and its receipts from their canonical bytes (the JSON's ``raw`` fields)."""
    block = Block(_header(d["header"]), tuple(Tx.decode(bytes.fromhex(t["raw"])) for t in d["txs"]))
    receipts = [
        Receipt.from_obj(encoding.decode(bytes.fromhex(r["raw"]))) for r in d.get("receipts") or []
    ]
    return block, receipts


def _state(d: dict[str, Any]) -> StateValue:
    value = _hex(d.get("value"))
    return StateValue(
        contract=d["contract"],
        state_key=bytes.fromhex(d["state_key"]),
        value=value,
        decoded=encoding.decode(value) if value is not None else None,
        proof=StateProof.decode(bytes.fromhex(d["proof_raw"])),
        height=d["height"],
        header=_header(d["header"]),
    )


def _stream_item(d: dict[str, Any]) -> StreamItem | None:
    t = d.get("type")
    if t == "block":
        return BlockCommitted(
            height=d["height"],
            hash=bytes.fromhex(d["hash"]),
            header=_header(d["header"]),
            certificate=_certificate(d.get("certificate")),
            tx_hashes=[bytes.fromhex(x) for x in d["tx_hashes"]],
            receipts_ok=list(d["receipts_ok"]),
        )
    if t == "event":
        e = d["event"]
        return EventCommitted(
            height=d["height"],
            tx_hash=bytes.fromhex(d["tx_hash"]),
            index=d["index"],
            event=Event(e["contract"], e["name"], value_from_json(e["data"])),
        )
    if t == "lagged":
        raise error_from("unavailable", d.get("message", "stream lagged"))
    return None  # hello and future message types


async def _stream_items(ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[StreamItem]:
    """The items of an open stream until it ends (then the socket is closed)."""
    async with ws:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break  # the node sends text only: an error or a close ends the stream
            item = _stream_item(json.loads(msg.data))
            if item is not None:
                yield item


def _tx_bytes(tx: Tx | bytes) -> bytes:
    return tx.encode() if isinstance(tx, Tx) else bytes(tx)


def _batch_results(d: dict[str, Any]) -> list[bytes | AccordError]:
    out: list[bytes | AccordError] = []
    for item in d["results"]:
        if item.get("tx_hash") is not None:
            out.append(bytes.fromhex(item["tx_hash"]))
        else:
            e = item.get("error") or {}
            out.append(error_from(str(e.get("code", "accord_error")), str(e.get("message", ""))))
    return out


def _key_path(key: bytes | str) -> tuple[str, dict[str, str]]:
    if isinstance(key, bytes):
        return key.hex(), {}
    return urllib.parse.quote(key, safe=""), {"key_type": "str"}


def _height_path(height: int | str) -> str:
    if height == "latest":
        return "latest"
    if not isinstance(height, int) or isinstance(height, bool) or height < 0:
        raise DecodeError("height must be a non-negative integer or 'latest'")
    return str(height)


def _stream_query(
    from_height: int | None, blocks: bool, events: bool, contract: str | None
) -> dict[str, str]:
    q = {"blocks": str(blocks).lower(), "events": str(events).lower()}
    if from_height is not None:
        q["from"] = str(from_height)
    if contract is not None:
        q["contract"] = contract
    return q


_RETRYABLE = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    http.client.BadStatusLine,
)

# --- TLS ---------------------------------------------------------------------------------------


def _tls_options(
    scheme: str,
    ca_file: str | Path | None,
    cert_sha256: str | None,
) -> tuple[ssl.SSLContext | None, bytes | None]:
    """The TLS context and pin for a client URL (clear errors for options that cannot apply)."""
    if scheme != "https":
        if ca_file is not None or cert_sha256 is not None:
            raise ValidationError("ca_file and cert_sha256 apply to https URLs only")
        return None, None
    if ca_file is not None and cert_sha256 is not None:
        raise ValidationError("give ca_file or cert_sha256, not both (a pin replaces the CA check)")
    from accord.net.tls import client_context, normalize_pin

    pin = normalize_pin(cert_sha256) if cert_sha256 is not None else None
    return client_context(ca_file, cert_sha256), pin


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection that also requires the server's certificate to match a pin."""

    def __init__(self, *args: Any, pin: bytes | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._pin = pin

    def connect(self) -> None:
        super().connect()
        if self._pin is not None:
            from accord.net.tls import check_pin

            try:
                check_pin(self.sock.getpeercert(binary_form=True), self._pin)
            except ssl.SSLError:
                self.close()
                raise


# --- sync client ----------------------------------------------------------------------------


class Client:
    """Blocking client of one node's API (thread-safe: one connection per thread).

    >>> c = Client("http://127.0.0.1:8650")
    >>> h = c.submit(tx); receipt = c.wait(h)

    For an https URL the server's certificate is checked against ``ca_file`` (a CA bundle, or
    the server's own self-signed certificate), or, with ``cert_sha256`` instead, must be the
    certificate with that SHA-256 (a pin; no CA involved); neither: the system's CAs. A
    certificate that does not pass raises ``ssl.SSLError`` before any request is sent.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        ca_file: str | Path | None = None,
        cert_sha256: str | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        whole_request_timeout: bool = False,
    ) -> None:
        """``max_response_bytes`` bounds the body of one answer (a bigger one is
        :class:`TooLarge`, read no further); with ``whole_request_timeout`` the ``timeout``
        bounds the whole exchange, not each socket read, so a node that drips one byte a
        second cannot hold the caller (a ``TimeoutError`` once it is spent)."""
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise DecodeError(f"not an http(s) URL: {url!r}")
        self._ssl, self._pin = _tls_options(u.scheme, ca_file, cert_sha256)
        self.url = url.rstrip("/")
        self._scheme = u.scheme
        self._host = u.hostname
        self._port = u.port or (443 if u.scheme == "https" else 80)
        self._prefix = u.path.rstrip("/")
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.whole_request_timeout = whole_request_timeout
        self._local = threading.local()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._scheme == "https":
                conn = _PinnedHTTPSConnection(
                    self._host, self._port, timeout=self.timeout, context=self._ssl, pin=self._pin
                )
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        json_body: Any = None,
        raw_body: bytes | None = None,
    ) -> tuple[int, str, bytes]:
        """One HTTP exchange; returns (status, content type, body). Raises for 4xx/5xx."""
        target = self._prefix + path + ("?" + urllib.parse.urlencode(query) if query else "")
        headers = {"Accept": "application/json"}
        body: bytes | None = None
        if raw_body is not None:
            body, headers["Content-Type"] = raw_body, "application/octet-stream"
        elif json_body is not None:
            body, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        expired = threading.Event()
        current: list[
            http.client.HTTPConnection
        ] = []  # the timer runs in another thread: no self._local
        timer: threading.Timer | None = None
        if self.whole_request_timeout:
            # http.client's timeout is per socket read; past the deadline the socket is shut
            # down under the reader, which then fails at once.
            timer = threading.Timer(self.timeout, self._abort, args=(expired, current))
            timer.daemon = True
            timer.start()
        try:
            return self._exchange(method, target, body, headers, expired, current)
        finally:
            if timer is not None:
                timer.cancel()

    @staticmethod
    def _abort(expired: threading.Event, current: list[http.client.HTTPConnection]) -> None:
        expired.set()
        sock = current[-1].sock if current else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _read_body(self, resp: http.client.HTTPResponse) -> bytes:
        limit = self.max_response_bytes
        length = resp.getheader("Content-Length", "")
        if length.isdigit() and int(length) > limit:
            raise TooLarge(f"answer of {int(length)} bytes exceeds the limit of {limit}")
        parts: list[bytes] = []
        got = 0
        while True:
            chunk = resp.read(min(1 << 16, limit + 1 - got))
            if not chunk:
                if length.isdigit() and got != int(length):
                    # http.client's read(n) ends quietly where the server hung up: an
                    # answer cut short must not pass for a whole one.
                    raise ConnectionError(f"answer cut short: {got} of {int(length)} bytes")
                return b"".join(parts)
            got += len(chunk)
            if got > limit:
                raise TooLarge(f"answer exceeds the limit of {limit} bytes")
            parts.append(chunk)

    def _exchange(
        self,
        method: str,
        target: str,
        body: bytes | None,
        headers: dict[str, str],
        expired: threading.Event,
        current: list[http.client.HTTPConnection],
    ) -> tuple[int, str, bytes]:
        for attempt in (0, 1):
            conn = self._conn()
            current.append(conn)
            reused = conn.sock is not None
            try:
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
                data = self._read_body(resp)
            except _RETRYABLE:
                # A keep-alive connection the server closed while idle: the request never
                # reached a handler, so sending it again on a fresh connection is safe.
                self.close()
                if expired.is_set():
                    raise TimeoutError(f"no complete answer within {self.timeout:g} s") from None
                if attempt == 0 and reused:
                    continue
                raise
            except (OSError, http.client.HTTPException):
                self.close()
                if expired.is_set():
                    raise TimeoutError(f"no complete answer within {self.timeout:g} s") from None
                raise
            except TooLarge:
                self.close()  # the rest of the body is never read: the connection is unusable
                raise
            if expired.is_set():
                self.close()
                raise TimeoutError(f"no complete answer within {self.timeout:g} s")
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            if resp.status >= 400:
                _raise_for(resp.status, data)
            return resp.status, resp.getheader("Content-Type", ""), data
        raise AssertionError("unreachable")

    def _get(self, path: str, query: dict[str, str] | None = None) -> Any:
        return loads_json(self.request("GET", path, query=query)[2])

    # --- transactions ------------------------------------------------------------------

    def submit(self, tx: Tx | bytes) -> bytes:
        """Submit a signed transaction; its hash (raises e.g. NonceError, InvalidSignature)."""
        _, _, data = self.request("POST", "/v1/txs", raw_body=_tx_bytes(tx))
        return bytes.fromhex(loads_json(data)["tx_hash"])

    def submit_many(self, txs: list[Tx] | list[bytes]) -> list[bytes | AccordError]:
        """Submit a batch; per transaction its hash or the error that rejected it."""
        body = encoding.encode([_tx_bytes(t) for t in txs])
        _, _, data = self.request("POST", "/v1/txs/batch", raw_body=body)
        return _batch_results(loads_json(data))

    def tx(self, tx_hash: bytes, *, proof: bool = True, include_tx: bool = False) -> TxStatus:
        q = {"proof": str(proof).lower(), "tx": str(include_tx).lower()}
        return _tx_status(self._get(f"/v1/txs/{tx_hash.hex()}", q))

    def wait(self, tx_hash: bytes, timeout: float = 30.0, *, poll: float = 0.05) -> Receipt:
        """Block until the transaction is committed; its receipt (WaitTimeout otherwise)."""
        deadline = time.monotonic() + timeout
        delay = poll
        while True:
            st = self.tx(tx_hash, proof=False)
            if st.committed and st.receipt is not None:
                return st.receipt
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(
                    f"transaction {tx_hash.hex()[:16]} not committed after {timeout:g} s ({st.status})"
                )
            time.sleep(min(delay, left))
            delay = min(delay * 1.5, 0.5)

    # --- blocks, headers, state ------------------------------------------------------------

    def block(self, height: int | str = "latest") -> Block:
        _, _, data = self.request(
            "GET", f"/v1/blocks/{_height_path(height)}", query={"format": "raw"}
        )
        return Block.decode(data)

    def block_by_hash(self, block_hash: bytes) -> Block:
        _, _, data = self.request(
            "GET", f"/v1/blocks/hash/{block_hash.hex()}", query={"format": "raw"}
        )
        return Block.decode(data)

    def block_receipts(self, height: int | str = "latest") -> tuple[Block, list[Receipt]]:
        """A committed block and its receipts (decoded from their canonical bytes)."""
        return _block_receipts(
            self._get(f"/v1/blocks/{_height_path(height)}", {"receipts": "true"})
        )

    def block_json(self, height: int | str = "latest", *, receipts: bool = False) -> dict[str, Any]:
        """The block's JSON view (with receipts if asked), as the server sends it."""
        return self._get(f"/v1/blocks/{_height_path(height)}", {"receipts": str(receipts).lower()})

    def header(self, height: int) -> HeaderWithCertificate:
        return _hwc(self._get(f"/v1/headers/{_height_path(height)}"))

    def headers(self, from_height: int, limit: int = 100) -> list[HeaderWithCertificate]:
        d = self._get("/v1/headers", {"from": str(from_height), "limit": str(limit)})
        return [_hwc(x) for x in d["headers"]]

    def state(self, contract: str, key: bytes | str, height: int | None = None) -> StateValue:
        """``height``: prove against that height's state root (default: the head's)."""
        path, q = _key_path(key)
        if height is not None:
            q["height"] = str(int(height))
        return _state(self._get(f"/v1/state/{urllib.parse.quote(contract, safe='')}/{path}", q))

    def query(self, contract: str, method: str, **args: Value) -> Value:
        _, _, data = self.request(
            "POST", f"/v1/query/{contract}/{method}", raw_body=encoding.encode(args)
        )
        return encoding.decode(bytes.fromhex(loads_json(data)["raw"]))

    # --- node --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._get("/v1/status")

    def account(self, address: bytes) -> dict[str, Any]:
        """``{"address", "nonce", "next_nonce"}``: sign the next transaction with next_nonce."""
        return self._get(f"/v1/accounts/{address.hex()}")

    def validators(self) -> list[dict[str, Any]]:
        return self._get("/v1/validators")["validators"]

    def genesis(self) -> Genesis:
        return Genesis.model_validate(self._get("/v1/genesis")["genesis"])

    def metrics(self) -> str:
        return self.request("GET", "/metrics")[2].decode()

    def openapi(self) -> dict[str, Any]:
        return self._get("/openapi.json")

    def stream(
        self,
        *,
        from_height: int | None = None,
        blocks: bool = True,
        events: bool = True,
        contract: str | None = None,
        max_queue: int = 1024,
    ) -> Iterator[StreamItem]:
        """Committed blocks and events as they come (a blocking generator).

        An :class:`AsyncClient` runs on a private thread and hands items over through a
        bounded queue; closing the generator stops the thread.
        """
        q: queue.Queue[StreamItem | BaseException | None] = queue.Queue(maxsize=max_queue)
        stop = threading.Event()
        loop_box: list[asyncio.AbstractEventLoop] = []
        task_box: list[asyncio.Task[None]] = []

        async def run() -> None:
            try:
                async with AsyncClient(self.url, timeout=self.timeout) as ac:
                    async for item in ac.stream(
                        from_height=from_height, blocks=blocks, events=events, contract=contract
                    ):
                        while not stop.is_set():
                            try:
                                q.put(item, timeout=0.1)
                                break
                            except queue.Full:
                                await asyncio.sleep(0)
                        if stop.is_set():
                            return
                end: StreamItem | BaseException | None = None
            except asyncio.CancelledError:
                return
            except BaseException as e:  # handed to the consumer
                end = e
            while not stop.is_set():  # the consumer may be gone: never block forever
                try:
                    q.put(end, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def thread_main() -> None:
            loop = asyncio.new_event_loop()
            loop_box.append(loop)
            task = loop.create_task(run())
            task_box.append(task)
            try:
                loop.run_until_complete(task)
            finally:
                loop.close()

        t = threading.Thread(target=thread_main, name="accord-client-stream", daemon=True)
        t.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            if loop_box and task_box and t.is_alive():
                # The stream may end (and its loop close) between the check and the call: a
                # closed loop has nothing left to cancel.
                with contextlib.suppress(RuntimeError):
                    loop_box[0].call_soon_threadsafe(task_box[0].cancel)
            t.join(timeout=5)


# --- async client ---------------------------------------------------------------------------


class AsyncClient:
    """aiohttp client of one node's API; use as ``async with AsyncClient(url) as c``."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        ca_file: str | Path | None = None,
        cert_sha256: str | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        """``max_response_bytes`` bounds one answer's body, as for :class:`Client`: a hostile
        node cannot make this client allocate without bound, and no answer is parsed past
        the project's nesting limit."""
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise DecodeError(f"not an http(s) URL: {url!r}")
        ctx, pin = _tls_options(u.scheme, ca_file, cert_sha256)
        # aiohttp checks a pin itself (Fingerprint: SHA-256 of the DER certificate)
        self._ssl: ssl.SSLContext | aiohttp.Fingerprint | bool = (
            aiohttp.Fingerprint(pin) if pin is not None else ctx if ctx is not None else True
        )
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
            self._own_session = True
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        json_body: Any = None,
        raw_body: bytes | None = None,
    ) -> tuple[int, str, bytes]:
        kw: dict[str, Any] = {"params": query or None}
        if raw_body is not None:
            kw["data"] = raw_body
            kw["headers"] = {"Content-Type": "application/octet-stream"}
        elif json_body is not None:
            kw["json"] = json_body
        try:
            async with self._sess().request(method, self.url + path, ssl=self._ssl, **kw) as resp:
                data = await self._read_body(resp)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as e:
            # A server that closed the connection before or during its answer (aiohttp's own
            # exception types, not OSError): raised as the ConnectionError the sync Client
            # raises for it, so a caller handles a lost server one way with either client.
            # Only these two: a certificate or pin mismatch keeps its own type (it is no
            # lost server, and a caller must not retry past it).
            raise ConnectionError(f"{self.url}: {e}") from None
        if resp.status >= 400:
            _raise_for(resp.status, data)
        return resp.status, resp.headers.get("Content-Type", ""), data

    async def _read_body(self, resp: aiohttp.ClientResponse) -> bytes:
        limit = self.max_response_bytes
        if resp.content_length is not None and resp.content_length > limit:
            raise TooLarge(f"answer of {resp.content_length} bytes exceeds the limit of {limit}")
        parts: list[bytes] = []
        got = 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            got += len(chunk)
            if got > limit:
                raise TooLarge(f"answer exceeds the limit of {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def _get(self, path: str, query: dict[str, str] | None = None) -> Any:
        return loads_json((await self.request("GET", path, query=query))[2])

    async def submit(self, tx: Tx | bytes) -> bytes:
        _, _, data = await self.request("POST", "/v1/txs", raw_body=_tx_bytes(tx))
        return bytes.fromhex(loads_json(data)["tx_hash"])

    async def submit_many(self, txs: list[Tx] | list[bytes]) -> list[bytes | AccordError]:
        body = encoding.encode([_tx_bytes(t) for t in txs])
        _, _, data = await self.request("POST", "/v1/txs/batch", raw_body=body)
        return _batch_results(loads_json(data))

    async def tx(self, tx_hash: bytes, *, proof: bool = True, include_tx: bool = False) -> TxStatus:
        q = {"proof": str(proof).lower(), "tx": str(include_tx).lower()}
        return _tx_status(await self._get(f"/v1/txs/{tx_hash.hex()}", q))

    async def wait(self, tx_hash: bytes, timeout: float = 30.0, *, poll: float = 0.05) -> Receipt:
        deadline = time.monotonic() + timeout
        delay = poll
        while True:
            st = await self.tx(tx_hash, proof=False)
            if st.committed and st.receipt is not None:
                return st.receipt
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(
                    f"transaction {tx_hash.hex()[:16]} not committed after {timeout:g} s ({st.status})"
                )
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 1.5, 0.5)

    async def block(self, height: int | str = "latest") -> Block:
        _, _, data = await self.request(
            "GET", f"/v1/blocks/{_height_path(height)}", query={"format": "raw"}
        )
        return Block.decode(data)

    async def block_by_hash(self, block_hash: bytes) -> Block:
        _, _, data = await self.request(
            "GET", f"/v1/blocks/hash/{block_hash.hex()}", query={"format": "raw"}
        )
        return Block.decode(data)

    async def block_receipts(self, height: int | str = "latest") -> tuple[Block, list[Receipt]]:
        """A committed block and its receipts (decoded from their canonical bytes)."""
        return _block_receipts(
            await self._get(f"/v1/blocks/{_height_path(height)}", {"receipts": "true"})
        )

    async def header(self, height: int) -> HeaderWithCertificate:
        return _hwc(await self._get(f"/v1/headers/{_height_path(height)}"))

    async def headers(self, from_height: int, limit: int = 100) -> list[HeaderWithCertificate]:
        d = await self._get("/v1/headers", {"from": str(from_height), "limit": str(limit)})
        return [_hwc(x) for x in d["headers"]]

    async def state(self, contract: str, key: bytes | str, height: int | None = None) -> StateValue:
        path, q = _key_path(key)
        if height is not None:
            q["height"] = str(int(height))
        return _state(
            await self._get(f"/v1/state/{urllib.parse.quote(contract, safe='')}/{path}", q)
        )

    async def query(self, contract: str, method: str, **args: Value) -> Value:
        _, _, data = await self.request(
            "POST", f"/v1/query/{contract}/{method}", raw_body=encoding.encode(args)
        )
        return encoding.decode(bytes.fromhex(loads_json(data)["raw"]))

    async def status(self) -> dict[str, Any]:
        return await self._get("/v1/status")

    async def account(self, address: bytes) -> dict[str, Any]:
        """``{"address", "nonce", "next_nonce"}``: sign the next transaction with next_nonce."""
        return await self._get(f"/v1/accounts/{address.hex()}")

    async def validators(self) -> list[dict[str, Any]]:
        return (await self._get("/v1/validators"))["validators"]

    async def genesis(self) -> Genesis:
        return Genesis.model_validate((await self._get("/v1/genesis"))["genesis"])

    async def metrics(self) -> str:
        return (await self.request("GET", "/metrics"))[2].decode()

    async def stream(
        self,
        *,
        from_height: int | None = None,
        blocks: bool = True,
        events: bool = True,
        contract: str | None = None,
    ) -> AsyncIterator[StreamItem]:
        """Committed blocks and events, in height order, until the node closes the stream.

        With ``from_height`` the node first replays stored blocks from that height, so a
        client that reconnects with ``from_height = last seen + 1`` misses nothing.
        """
        ws = await self._connect_stream(from_height, blocks, events, contract)
        async for item in _stream_items(ws):
            yield item

    async def _connect_stream(
        self, from_height: int | None, blocks: bool, events: bool, contract: str | None
    ) -> aiohttp.ClientWebSocketResponse:
        q = _stream_query(from_height, blocks, events, contract)
        try:
            return await self._sess().ws_connect(
                self.url + "/v1/stream", params=q, heartbeat=30.0, ssl=self._ssl
            )
        except aiohttp.WSServerHandshakeError as e:
            raise error_from(
                "unavailable" if e.status == 503 else f"http_{e.status}", e.message
            ) from None

    async def stream_ready(
        self,
        *,
        from_height: int | None = None,
        blocks: bool = True,
        events: bool = True,
        contract: str | None = None,
    ) -> tuple[int, AsyncIterator[StreamItem]]:
        """Like :meth:`stream`, but returns once the subscription is live: (head height at
        subscription, iterator). Blocks committed after this returns are delivered."""
        ws = await self._connect_stream(from_height, blocks, events, contract)
        first = await ws.receive()
        if first.type != aiohttp.WSMsgType.TEXT:
            await ws.close()
            raise error_from("unavailable", "stream closed before the subscription was live")
        hello = loads_json(first.data)
        if hello.get("type") != "subscribed":
            await ws.close()
            raise DecodeError(f"unexpected first stream message {hello.get('type')!r}")
        return int(hello["height"]), _stream_items(ws)
