"""accord.net frames and handshake pieces, and the accord.base.metrics registry (no sockets)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.base import encoding
from accord.base.crypto import bls
from accord.base.errors import BadFrame, HandshakeRefused
from accord.base.genesis import ConsensusParams
from accord.base.metrics import OVERFLOW, Registry, parse_text
from accord.net import Kind, Overflow, decode_frame, encode_frame, kind_specs
from accord.net import handshake as hs
from accord.net.frames import HANDSHAKE_KINDS, max_frame

SPECS = kind_specs(ConsensusParams())

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=64)
    | st.text(max_size=32),
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=8), c, max_size=5),
    max_leaves=20,
)


# --- frames -------------------------------------------------------------------------------------


@given(st.sampled_from(sorted(Kind)), values)
def test_frame_round_trip(kind: Kind, payload: object) -> None:
    data = encode_frame(kind, payload)
    if len(data) > SPECS[kind].max_bytes:
        with pytest.raises(BadFrame):
            decode_frame(data, SPECS)
        return
    k, p = decode_frame(data, SPECS)
    assert k is kind and p == encoding.canonical(payload)


@given(st.binary(max_size=300))
def test_random_bytes_are_a_bad_frame_or_a_valid_one(data: bytes) -> None:
    try:
        kind, payload = decode_frame(data, SPECS)
    except BadFrame as e:
        assert e.reason in {"garbage", "unknown_kind", "oversized"}
    else:  # only the one canonical encoding of [kind, payload] gets through
        assert encode_frame(kind, payload) == data


@given(st.sampled_from(sorted(Kind)), values, st.integers(0, 200), st.integers(0, 255))
def test_tampered_frames_never_decode_to_something_else_silently(
    kind: Kind, payload: object, pos: int, byte: int
) -> None:
    data = bytearray(encode_frame(kind, payload))
    pos %= len(data)
    if data[pos] == byte:
        return
    data[pos] = byte
    try:
        k, p = decode_frame(bytes(data), SPECS)
    except BadFrame:
        return
    assert encode_frame(k, p) == bytes(data)  # it decoded to exactly what the bytes say


def test_kind_specs_policies() -> None:
    assert SPECS[Kind.TX_BATCH].overflow is Overflow.DROP_OLDEST and SPECS[Kind.TX_BATCH].dedup
    assert SPECS[Kind.STATUS].overflow is Overflow.DROP_OLDEST and not SPECS[Kind.STATUS].dedup
    assert SPECS[Kind.CONSENSUS].overflow is Overflow.BLOCK and SPECS[Kind.CONSENSUS].dedup
    assert SPECS[Kind.BLOCK_RESPONSE].overflow is Overflow.BLOCK
    assert all(SPECS[k].max_bytes <= 1024 for k in HANDSHAKE_KINDS)
    # a proposal carrying a full block fits its kind
    assert SPECS[Kind.CONSENSUS].max_bytes > ConsensusParams().max_block_bytes
    assert max_frame(SPECS) == SPECS[Kind.BLOCK_RESPONSE].max_bytes
    with pytest.raises(BadFrame) as e:
        decode_frame(b"\x00" * (max_frame(SPECS) + 1), SPECS)
    assert e.value.reason == "oversized"
    with pytest.raises(BadFrame) as e:
        decode_frame(encode_frame(Kind.BLOCK_REQUEST, b"x" * 5000), SPECS)
    assert e.value.reason == "oversized"
    with pytest.raises(BadFrame) as e:
        decode_frame(encoding.encode([7, None]), SPECS)
    assert e.value.reason == "unknown_kind"
    with pytest.raises(BadFrame) as e:
        decode_frame(encoding.encode([True, None]), SPECS)
    assert e.value.reason == "garbage"


# --- handshake ---------------------------------------------------------------------------------


def test_handshake_signature_binds_every_field() -> None:
    sk0, sk1 = bls.demo_secret("v0"), bls.demo_secret("v1")
    pk0 = bls.public_key(sk0)
    gh, nd, na = b"g" * 32, b"d" * 32, b"a" * 32
    sig = hs.sign(sk0, gh, nd, na, 0, 1)
    hs.verify(pk0, sig, gh, nd, na, 0, 1)
    tampered = [
        (pk0, sig, b"h" * 32, nd, na, 0, 1),  # other genesis
        (pk0, sig, gh, b"e" * 32, na, 0, 1),  # other dialer nonce
        (pk0, sig, gh, nd, b"b" * 32, 0, 1),  # other acceptor nonce
        (pk0, sig, gh, nd, na, 1, 0),  # reflected roles
        (pk0, sig, gh, nd, na, 0, 2),  # other peer
        (bls.public_key(sk1), sig, gh, nd, na, 0, 1),  # other key
        (pk0, hs.sign(sk1, gh, nd, na, 0, 1), gh, nd, na, 0, 1),  # signed by someone else
    ]
    for args in tampered:
        with pytest.raises(HandshakeRefused) as e:
            hs.verify(*args)  # type: ignore[arg-type]
        assert e.value.reason == "bad_signature"
    for bad in (b"x" * 95, "sig", None, b"\x00" * 96):
        with pytest.raises(HandshakeRefused):
            hs.verify(pk0, bad, gh, nd, na, 0, 1)


def test_handshake_fields_are_type_checked() -> None:
    assert hs.field({"nonce": b"n" * 32}, "nonce", bytes, 32) == b"n" * 32
    for payload in ({"nonce": b"n" * 31}, {"nonce": "n" * 32}, {}, [b"n" * 32], None):
        with pytest.raises(HandshakeRefused) as e:
            hs.field(payload, "nonce", bytes, 32)
        assert e.value.reason == "malformed"
    with pytest.raises(HandshakeRefused):
        hs.field({"to": True}, "to", int)  # bool is not an index


def test_recent_set_is_bounded() -> None:
    s = hs.RecentSet(3)
    assert s.add(b"a") and s.add(b"b") and s.add(b"c")
    assert not s.add(b"a")
    assert s.add(b"d") and len(s) == 3
    assert b"a" not in s and b"d" in s


# --- metrics -----------------------------------------------------------------------------------


def test_metrics_exposition_format() -> None:
    r = Registry()
    c = r.counter("accord_x_total", "things\nthat happen", ["reason"])
    c.inc(reason="a")
    c.inc(2, reason='q"uo\\te\n')
    g = r.gauge("accord_depth", "depth")
    g.set(7)
    g.dec(2)
    h = r.histogram("accord_lat_seconds", "latency", buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 5.0):
        h.observe(v)
    text = r.render()
    assert "# HELP accord_x_total things\\nthat happen" in text
    assert "# TYPE accord_x_total counter" in text
    assert "# TYPE accord_lat_seconds histogram" in text
    assert 'accord_x_total{reason="q\\"uo\\\\te\\n"} 2' in text
    parsed = parse_text(text)
    assert parsed['accord_x_total{reason="a"}'] == 1
    assert parsed["accord_depth"] == 5
    assert parsed['accord_lat_seconds_bucket{le="0.1"}'] == 1
    assert parsed['accord_lat_seconds_bucket{le="1"}'] == 2
    assert parsed['accord_lat_seconds_bucket{le="+Inf"}'] == 3
    assert parsed["accord_lat_seconds_count"] == 3
    assert math.isclose(parsed["accord_lat_seconds_sum"], 5.55)
    assert text.endswith("\n")


def test_metrics_rules() -> None:
    r = Registry(max_series=2)
    c = r.counter("accord_c_total", "c", ["peer"])
    assert r.counter("accord_c_total", "c", ["peer"]) is c  # shared by name
    with pytest.raises(ValueError):
        r.gauge("accord_c_total", "c", ["peer"])
    with pytest.raises(ValueError):
        c.inc(-1, peer="a")
    with pytest.raises(ValueError):
        c.inc(other="a")
    with pytest.raises(ValueError):
        r.counter("bad name", "x")
    for p in ("a", "b", "c", "d"):
        c.inc(peer=p)
    assert c.get(peer=OVERFLOW) == 2  # bounded: extra label values fold into one series
    assert c.total() == 4
    calls = []
    r.add_collector(lambda: calls.append(1))
    r.render()
    assert calls == [1]


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 1000)), max_size=50))
def test_counter_totals_match_increments(incs: list[tuple[str, int]]) -> None:
    r = Registry()
    c = r.counter("accord_t_total", "t", ["k"])
    for k, n in incs:
        c.inc(n, k=k)
    parsed = parse_text(r.render())
    for k in "abc":
        want = sum(n for kk, n in incs if kk == k)
        assert parsed.get(f'accord_t_total{{k="{k}"}}', 0) == want


# --- per-peer send lanes --------------------------------------------------------------------------


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["send", "pop"]),
            st.sampled_from([Kind.TX_BATCH, Kind.CONSENSUS]),
            st.integers(1, 400),
        ),
        max_size=200,
    )
)
def test_send_lanes_stay_bounded(ops: list[tuple[str, Kind, int]]) -> None:
    """Whatever the mix of sends and writes, a lane never exceeds its frame and byte bounds
    (except one oversized frame alone in an empty lane), byte accounting is exact, reliable
    frames are never dropped once queued, and the reliable lane is written first."""
    import asyncio

    from accord.base.genesis import Genesis, ValidatorInfo
    from accord.net.transport import GOSSIP, RELIABLE, _Peer

    sk = bls.demo_secret("v0")
    g = Genesis(
        chain_id="c",
        genesis_time_ms=0,
        validators=[
            ValidatorInfo(
                name="v0", bls_public_key=bls.public_key(sk).hex(), pop=bls.pop_prove(sk).hex()
            )
        ],
    )
    from accord.net import NetConfig, Transport

    async def main() -> None:
        cfg = NetConfig(queue_frames=5, queue_bytes=1000)
        t = Transport(g, 0, sk, config=cfg)
        peer = _Peer(1, None, cfg, dialed=True)  # type: ignore[arg-type]
        queued_reliable: list[bytes] = []
        written: list[bytes] = []
        seq = 0
        for op, kind, size in ops:
            if op == "send":
                seq += 1
                frame = encode_frame(kind, [seq, b"x" * size])
                if t._enqueue(peer, kind, frame) and kind is Kind.CONSENSUS:
                    queued_reliable.append(frame)
            else:
                before_reliable = len(peer.lanes[RELIABLE])
                item = peer.pop()
                if item is not None:
                    written.append(item[0])
                    assert (item[1] is Kind.CONSENSUS) == (before_reliable > 0)
            for lane in (RELIABLE, GOSSIP):
                q = peer.lanes[lane]
                assert len(q) <= cfg.queue_frames
                assert peer.lane_bytes[lane] == sum(len(f) for f, _ in q)
                assert len(q) <= 1 or peer.lane_bytes[lane] <= cfg.queue_bytes
        while (item := peer.pop()) is not None:
            written.append(item[0])
        assert [f for f in written if f in set(queued_reliable)] == queued_reliable

    asyncio.run(main())
