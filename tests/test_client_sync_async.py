"""``accord.Client`` (blocking) and ``accord.AsyncClient`` against a real served ledger."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import accord
from accord.base import merkle
from accord.base.errors import (
    AccordError,
    DecodeError,
    InvalidSignature,
    NonceError,
    NotFound,
    UnknownContract,
    WaitTimeout,
)
from accord.base.wire import value_from_json, value_to_json
from accord.client import AsyncClient, BlockCommitted, Client, EventCommitted, error_from
from accord.node.api import ApiConfig

from .support.api import ALICE, BOB, ServedNode, transfer

DAVE = bytes([7] * 20)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    sn = ServedNode(Path(tmp_path_factory.mktemp("client")), ApiConfig())
    try:
        yield sn
    finally:
        sn.close()


def next_nonce(sn: ServedNode, key: accord.AccountKey) -> int:
    return sn.call(lambda: sn.node.mempool.next_nonce(key.address))


def commit_soon(sn: ServedNode, delay: float = 0.2) -> threading.Timer:
    t = threading.Timer(delay, sn.commit)
    t.start()
    return t


def test_top_level_exports() -> None:
    assert accord.Client is Client and accord.AsyncClient is AsyncClient
    with pytest.raises(AttributeError):
        _ = accord.NoSuchThing


def test_sync_submit_wait_and_read_back(served: ServedNode) -> None:
    with Client(served.url) as c:
        tx = transfer(ALICE, next_nonce(served, ALICE), DAVE, 11)
        h = c.submit(tx)
        assert h == tx.hash and c.tx(h).status == "pending"
        timer = commit_soon(served)
        receipt = c.wait(h, timeout=10)
        timer.join()
        assert receipt.ok and receipt.tx_hash == h
        assert [e.name for e in receipt.events] == ["Transfer"]
        st = c.tx(h)
        assert st.height is not None and st.proof is not None
        merkle.verify_merkle_proof(
            st.proof.tx_root, st.proof.leaf, st.proof.index, st.proof.count, st.proof.siblings
        )
        block = c.block(st.height)
        assert block.txs[st.index or 0].hash == h
        assert c.header(st.height).header == block.header
        assert c.state("token", DAVE).decoded == c.query("token", "balance_of", account=DAVE) == 11


def test_sync_submit_many_mixed(served: ServedNode) -> None:
    with Client(served.url) as c:
        n = next_nonce(served, BOB)
        txs = [
            transfer(BOB, n, DAVE, 1),
            transfer(BOB, n + 1, DAVE, 1),
            transfer(BOB, n + 7, DAVE, 1),
        ]
        out = c.submit_many([t.encode() for t in txs])
        assert out[:2] == [txs[0].hash, txs[1].hash]
        assert isinstance(out[2], NonceError)
        served.commit()
        assert all(c.tx(t.hash).committed for t in txs[:2])


def test_sync_wait_times_out_for_unknown_tx(served: ServedNode) -> None:
    with Client(served.url) as c, pytest.raises(WaitTimeout) as e:
        c.wait(bytes(32), timeout=0.3)
    assert e.value.code == "timeout"


def test_sync_errors_are_typed(served: ServedNode) -> None:
    with Client(served.url) as c:
        good = transfer(ALICE, next_nonce(served, ALICE), DAVE, 1)
        forged = accord.Tx(*good.to_obj()[:7], signature=bytes(64))
        with pytest.raises(InvalidSignature):
            c.submit(forged)
        with pytest.raises(DecodeError):
            c.submit(b"\x00garbage")
        with pytest.raises(NotFound):
            c.header(10**9)
        with pytest.raises(UnknownContract):
            c.state("nope", b"\x00")
        with pytest.raises(DecodeError):
            c.block(-1)
    with pytest.raises(DecodeError):
        Client("ftp://example")


def test_sync_client_survives_server_closing_idle_connections(tmp_path: Path) -> None:
    sn = ServedNode(tmp_path)
    try:
        c = Client(sn.url)
        assert c.status()["height"] == 0
        # Restart the server on the same port: the client's keep-alive connection is dead.
        port = sn.server.port
        sn.run(sn.server.stop())
        from accord.node.api import ApiServer

        sn.server = ApiServer(sn.node, port=port)
        sn.run(sn.server.start())
        assert c.status()["height"] == 0  # reconnected transparently
        c.close()
    finally:
        sn.close()


def test_sync_stream_from_height(served: ServedNode) -> None:
    with Client(served.url) as c:
        start = served.head()[0]
        served.submit_direct(transfer(ALICE, next_nonce(served, ALICE), DAVE, 2))
        timer = commit_soon(served)
        got: list[object] = []
        gen = c.stream(from_height=start)
        for item in gen:
            got.append(item)
            if isinstance(item, EventCommitted) and item.height == start + 1:
                break
        gen.close()
        timer.join()
    assert isinstance(got[0], BlockCommitted) and got[0].height == start
    blocks = [x for x in got if isinstance(x, BlockCommitted)]
    assert [b.height for b in blocks] == [start, start + 1]
    ev = got[-1]
    assert isinstance(ev, EventCommitted) and ev.height == start + 1 and ev.event.data["to"] == DAVE


def test_async_client_end_to_end(served: ServedNode) -> None:
    async def scenario() -> None:
        async with AsyncClient(served.url) as ac:
            status = await ac.status()
            assert status["height"] == served.head()[0]
            assert [v["name"] for v in await ac.validators()] == ["v0"]
            assert (await ac.genesis()).hash == served.node.genesis.hash
            height, items = await ac.stream_ready(events=False)
            tx = transfer(ALICE, next_nonce(served, ALICE), DAVE, 3)
            h = await ac.submit(tx)
            loop = asyncio.get_running_loop()
            commit = loop.run_in_executor(None, served.commit)
            receipt = await ac.wait(h, timeout=10)
            await commit
            assert receipt.ok
            item = await asyncio.wait_for(items.__anext__(), 10)
            assert (
                isinstance(item, BlockCommitted)
                and item.height == height + 1
                and h in item.tx_hashes
            )
            await items.aclose()
            st = await ac.tx(h, include_tx=True)
            assert st.tx == tx and st.receipt == receipt
            blk = await ac.block("latest")
            assert await ac.block_by_hash(blk.hash) == blk
            hdrs = await ac.headers(0, 500)
            assert hdrs[-1].header == blk.header and hdrs[0].header.height == 0
            assert (await ac.header(blk.height)).certificate is not None
            sv = await ac.state("token", DAVE)
            merkle.verify_state_proof(sv.header.state_root, sv.state_key, sv.value, sv.proof)
            assert sv.decoded == await ac.query("token", "balance_of", account=DAVE)
            many = await ac.submit_many([tx])
            assert isinstance(many[0], AccordError) and many[0].code == "bad_nonce"
            with pytest.raises(NotFound):
                await ac.block(10**9)
            with pytest.raises(WaitTimeout):
                await ac.wait(bytes(32), timeout=0.2)
            assert "accord_api_requests_total" in await ac.metrics()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_async_stream_refused_when_no_slots(tmp_path: Path) -> None:
    sn = ServedNode(tmp_path, ApiConfig(max_streams=0))

    async def scenario() -> None:
        async with AsyncClient(sn.url) as ac:
            with pytest.raises(AccordError) as e:
                await ac.stream_ready()
            assert e.value.code == "unavailable"

    try:
        asyncio.run(scenario())
    finally:
        sn.close()


def test_error_from_maps_codes_to_classes() -> None:
    assert type(error_from("bad_nonce", "m")) is NonceError
    assert type(error_from("invalid_signature", "m")) is InvalidSignature
    e = error_from("some_future_code", "later")
    assert type(e) is AccordError and e.code == "some_future_code" and e.message == "later"
    # Codes of classes defined outside accord.base.errors (the contract base's) resolve too.
    from accord.contracts.base import BadStateKey

    assert type(error_from("bad_state_key", "x")) is BadStateKey


contract_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=16)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=15,
)


@settings(max_examples=200)
@given(v=contract_values)
def test_tagged_json_round_trips_every_contract_value(v: object) -> None:
    import json

    from accord.base import encoding

    j = value_to_json(v)
    back = value_from_json(json.loads(json.dumps(j)))
    assert encoding.encode(back) == encoding.encode(v)


def test_str_state_keys_with_url_special_characters(served: ServedNode) -> None:
    from accord.contracts.base import state_key

    with Client(served.url) as c:
        for key in ["a/b", "sp ace", "ünï", "%41", "?x", "#frag", ".."]:
            sv = c.state("token", key)
            assert sv.state_key == state_key("token", key) and sv.value is None
            merkle.verify_state_proof(sv.header.state_root, sv.state_key, None, sv.proof)


def test_sync_stream_ends_cleanly_when_the_node_stops(tmp_path: Path) -> None:
    """The stream of a node that stops ends with a clear error (or just ends), never with
    "Event loop is closed" from closing a generator whose thread already finished."""
    sn = ServedNode(tmp_path)
    got: list[object] = []
    error: BaseException | None = None
    with Client(sn.url) as c:
        gen = c.stream(from_height=0, events=False)
        got.append(next(gen))
        sn.close()
        try:
            for item in gen:
                got.append(item)
        except AccordError as e:
            error = e
        time.sleep(0.2)  # let the stream thread finish and close its loop
        gen.close()
    assert isinstance(got[0], BlockCommitted) and got[0].height == 0
    assert error is None or "Event loop is closed" not in str(error)


@pytest.mark.parametrize("answer", [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"])
def test_both_clients_raise_a_connection_error_when_the_server_hangs_up(answer: bytes) -> None:
    """A server that reads the request and closes the connection, before an answer or in
    the middle of one: both clients raise an OSError (a ConnectionError), never a library's
    own exception type, so one ``except OSError`` (as the devnet's status polling has)
    covers a lost server with either client."""

    async def main() -> tuple[BaseException | None, BaseException | None]:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        caught: list[BaseException | None] = []
        async with AsyncClient(f"http://127.0.0.1:{port}", timeout=5) as c:
            try:
                await c.status()
                caught.append(None)
            except BaseException as e:  # noqa: BLE001 - the type is what is tested
                caught.append(e)

        def sync() -> BaseException | None:
            try:
                Client(f"http://127.0.0.1:{port}", timeout=5).status()
            except BaseException as e:  # noqa: BLE001
                return e
            return None

        caught.append(await asyncio.to_thread(sync))
        server.close()
        return caught[0], caught[1]

    a, s = asyncio.run(main())
    assert isinstance(a, OSError), repr(a)
    assert isinstance(s, OSError), repr(s)
