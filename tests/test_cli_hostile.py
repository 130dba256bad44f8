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
from accord.config import demo_account

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
        server: _Server, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Old code signed for whatever chain the node reported and posted the signed transfer."""
    server.answer = _phish
    key = _key(tmp_path)
    code, _, err = _cli(capsys, "send", "token", "transfer", "amount=1", "--key", str(key),
                        "--url", server.url, "--chain-id", "accord-devnet", "--wait", "0")
    assert code == 1 and "some-other-production-chain" in err and "refusing" in err
    assert "Traceback" not in err
    assert server.posted == [], "a transaction was signed and sent to the phishing node"


def test_send_needs_a_chain_id_from_the_operator(
        server: _Server, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    server.answer = _phish
    code, _, err = _cli(capsys, "send", "token", "transfer", "amount=1", "--key", str(_key(tmp_path)),
                        "--url", server.url, "--wait", "0")
    assert code == 1 and "--chain-id" in err and server.posted == []


def test_send_reads_the_chain_id_from_a_local_genesis_and_prints_it(
        server: _Server, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from accord.config import init_network

    init_network(tmp_path / "net", validators=4, chain_id="some-other-production-chain", deterministic=True,
                 p2p_tls=False, demo_accounts=1)
    server.answer = _phish
    code, out, err = _cli(capsys, "send", "token", "transfer", "amount=1", "--key", str(_key(tmp_path)),
                          "--url", server.url, "--genesis", str(tmp_path / "net" / "genesis.json"),
                          "--wait", "0")
    assert code == 0, err
    assert "'some-other-production-chain'" in err and "nonce 41" in err
    assert len(server.posted) == 1
