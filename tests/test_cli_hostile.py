"""``accord status|query|send`` against a node that lies or attacks (a real HTTP server in a
thread, answering what a hostile node would): the CLI must never sign for a chain the operator
did not name, and every hostile answer must end as one clear error line (exit 1)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from accord.cli.main import main
from accord.node.config import demo_account

Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


class _Server:
    def __init__(self) -> None:
        self.answer: Handler = lambda h: None
        self.posted: list[bytes] = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.answer(self)

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                outer.posted.append(self.rfile.read(n))
                outer.answer(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send_json(h: http.server.BaseHTTPRequestHandler, body: bytes, code: int = 200) -> None:
    h.send_response(code)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    try:
        yield s
    finally:
        s.close()


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _key(tmp_path: Path) -> Path:
    f = tmp_path / "sender.json"
    demo_account(0).save(f)
    return f


def _phish(h: http.server.BaseHTTPRequestHandler) -> None:
    if h.path.startswith("/v1/status"):
        send_json(h, b'{"chain_id": "some-other-production-chain", "height": 1, "running": true}')
    elif h.path.startswith("/v1/accounts/"):
        send_json(h, b'{"address": "00", "nonce": 41, "next_nonce": 41}')
    elif h.command == "POST":
        send_json(h, b'{"tx_hash": "' + b"00" * 32 + b'"}')
    else:
        send_json(h, b'{"error": {"code": "not_found", "message": "no"}}', 404)


def test_send_refuses_a_node_that_reports_another_chain(
    server: _Server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Old code signed for whatever chain the node reported and posted the signed transfer."""
    server.answer = _phish
    key = _key(tmp_path)
    code, _, err = _cli(
        capsys,
        "send",
        "token",
        "transfer",
        "amount=1",
        "--key",
        str(key),
        "--url",
        server.url,
        "--chain-id",
        "accord-devnet",
        "--wait",
        "0",
    )
    assert code == 1 and "some-other-production-chain" in err and "refusing" in err
    assert "Traceback" not in err
    assert server.posted == [], "a transaction was signed and sent to the phishing node"


def test_send_needs_a_chain_id_from_the_operator(
    server: _Server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server.answer = _phish
    code, _, err = _cli(
        capsys,
        "send",
        "token",
        "transfer",
        "amount=1",
        "--key",
        str(_key(tmp_path)),
        "--url",
        server.url,
        "--wait",
        "0",
    )
    assert code == 1 and "--chain-id" in err and server.posted == []


def test_send_reads_the_chain_id_from_a_local_genesis_and_prints_it(
    server: _Server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from accord.node.config import init_network

    init_network(
        tmp_path / "net",
        validators=4,
        chain_id="some-other-production-chain",
        deterministic=True,
        p2p_tls=False,
        demo_accounts=1,
    )
    server.answer = _phish
    code, out, err = _cli(
        capsys,
        "send",
        "token",
        "transfer",
        "amount=1",
        "--key",
        str(_key(tmp_path)),
        "--url",
        server.url,
        "--genesis",
        str(tmp_path / "net" / "genesis.json"),
        "--wait",
        "0",
    )
    assert code == 0, err
    assert "'some-other-production-chain'" in err and "nonce 41" in err
    assert len(server.posted) == 1


def _fixed(body: bytes, code: int = 200) -> Handler:
    return lambda h: send_json(h, body, code)


def _huge(h: http.server.BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(3 * 1024**3))
    h.end_headers()
    chunk = b" " * (1 << 20)
    try:
        for _ in range(64):  # 64 MiB at most, then hang up: enough to see whether it is read
            h.wfile.write(chunk)
    except OSError:
        pass


def _huge_chunked(h: http.server.BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    chunk = b" " * (1 << 20)
    try:
        for _ in range(64):
            h.wfile.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    except OSError:
        pass


def _drip(h: http.server.BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", "1000")
    h.end_headers()
    try:
        for _ in range(1000):
            h.wfile.write(b" ")
            h.wfile.flush()
            threading.Event().wait(0.2)  # each byte well inside the per-read timeout
    except OSError:
        pass


_TYPES = (
    b'{"name":1,"peers":5,"healthy":"no","running":true,"height":{"a":1},"head_hash":7,'
    b'"next_nonce":"x","nonce":[],"tx_hash":5}'
)

_HOSTILE: dict[str, Handler] = {
    "deep": _fixed(b"[" * 100_000 + b"]" * 100_000),
    "deep_map": _fixed(b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
    "list": _fixed(b"[1,2,3]"),
    "types": _fixed(_TYPES),
    "not_json": _fixed(b"\xff\xfe<html>"),
    "err500_deep": _fixed(b"[" * 100_000, 500),
    "huge": _huge,
    "huge_chunked": _huge_chunked,
}

_COMMANDS = {
    "status": ("status",),
    "query_account": ("query", "account", "00" * 20),
    "query_block": ("query", "block", "3"),
    "query_tx": ("query", "tx", "00" * 32),
    "query_call": ("query", "call", "token", "balance_of", "account=0x" + "00" * 20),
    "send": (
        "send",
        "token",
        "transfer",
        "amount=1",
        "--chain-id",
        "c",
        "--wait",
        "1",
        "--nonce",
        "0",
    ),
    "send_nonce": ("send", "token", "transfer", "amount=1", "--chain-id", "c", "--wait", "0"),
}


@pytest.mark.parametrize("mode", sorted(_HOSTILE))
@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_hostile_answers_are_one_clear_error_line(
    server: _Server, capsys: pytest.CaptureFixture[str], tmp_path: Path, mode: str, command: str
) -> None:
    """Old code: RecursionError / AttributeError / TypeError tracebacks, or 64 MiB read into memory."""
    server.answer = _HOSTILE[mode]
    argv = list(_COMMANDS[command])
    if command.startswith("send"):
        argv += ["--key", str(_key(tmp_path))]
    code, _, err = _cli(capsys, *argv, "--url", server.url, "--timeout", "5")
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("accord: error: "), err


def test_send_with_a_well_formed_chain_but_malformed_account(
    server: _Server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def answer(h: http.server.BaseHTTPRequestHandler) -> None:
        if h.path.startswith("/v1/status"):
            send_json(h, b'{"chain_id": "c"}')
        else:
            send_json(h, b'{"next_nonce": "x"}')

    server.answer = answer
    code, _, err = _cli(
        capsys,
        "send",
        "token",
        "transfer",
        "amount=1",
        "--chain-id",
        "c",
        "--wait",
        "0",
        "--key",
        str(_key(tmp_path)),
        "--url",
        server.url,
    )
    assert code == 1 and "next_nonce" in err and "Traceback" not in err and server.posted == []


def test_huge_answer_is_refused_unread(server: _Server, capsys: pytest.CaptureFixture[str]) -> None:
    server.answer = _huge
    code, _, err = _cli(capsys, "status", "--url", server.url)
    assert code == 1 and "too_large" in err


def test_timeout_bounds_the_whole_exchange(
    server: _Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """A node dripping a byte every 0.2 s never trips a per-read timeout of 1 s; old code waited
    the full 200 s of the drip. The bound checked is loose (no timing race): far under the drip."""
    import time

    server.answer = _drip
    t0 = time.monotonic()
    code, _, err = _cli(capsys, "status", "--url", server.url, "--timeout", "1")
    assert code == 1 and "within 1 s" in err
    assert time.monotonic() - t0 < 60
