"""The client API over TLS: https with a CA file or a pinned certificate, and what a client
with the wrong CA or pin gets (refused before any request). Also: what `accord init` writes
(links encrypted by default, API TLS on request) is what the node runs."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from accord import Client
from accord.base.errors import LightClientError
from accord.client import AsyncClient
from accord.devnet import free_ports
from accord.light import LightClient
from accord.net import tls as nettls
from accord.node import Node
from accord.node.config import NodeConfig, init_network

pytestmark = pytest.mark.timeout(120)


def _network(root: Path) -> Path:
    ports = free_ports(2)
    init_network(
        root,
        validators=1,
        genesis_time_ms=int(time.time() * 1000),
        deterministic=True,
        ports=ports[:1],
        api_ports=ports[1:],
        demo_accounts=2,
        api_tls=True,
    )
    return root / "validator-0"


def test_the_api_over_tls_with_a_ca_file_or_a_pin_and_a_wrong_ca_is_refused(tmp_path: Path) -> None:
    home = _network(tmp_path / "net")
    cfg = NodeConfig.load(home)
    assert cfg.p2p_tls is not None and cfg.api_tls is not None  # what init wrote
    api_cert = home / cfg.api_tls.cert
    pin = nettls.fingerprint(nettls.cert_der(api_cert))
    other = tmp_path / "other.crt"
    nettls.make_self_signed(other, tmp_path / "other.key", name="someone else", hosts=["127.0.0.1"])
    url = f"https://127.0.0.1:{cfg.api_port}"

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    node = Node.from_dir(home)
    asyncio.run_coroutine_threadsafe(node.start(), loop).result(30)
    try:
        assert node.api is not None and node.api.url.startswith("https://")
        assert node.transport is not None and node.transport.encrypted

        with Client(url, ca_file=api_cert) as c:
            assert c.status()["chain_id"] == node.genesis.chain_id
        with Client(url, cert_sha256=pin) as c:
            assert c.status()["chain_id"] == node.genesis.chain_id
        with Client(url, ca_file=other) as c, pytest.raises(ssl.SSLCertVerificationError):
            c.status()
        with (
            Client(url, cert_sha256="00" * 32) as c,
            pytest.raises(ssl.SSLError, match="not the pinned one"),
        ):
            c.status()
        with (
            Client(url) as c,
            pytest.raises(ssl.SSLCertVerificationError),
        ):  # not in the system's CAs
            c.status()
        with pytest.raises(Exception, match="https URLs only"):
            Client(f"http://127.0.0.1:{cfg.api_port}", ca_file=api_cert)

        async def async_side() -> None:
            async with AsyncClient(url, ca_file=api_cert) as c:
                assert (await c.status())["chain_id"] == node.genesis.chain_id
            async with AsyncClient(url, cert_sha256=pin) as c:
                assert (await c.status())["chain_id"] == node.genesis.chain_id
                # the block stream (a WebSocket) over TLS too: replayed from height 1
                async for item in c.stream(from_height=1, events=False):
                    assert getattr(item, "height", None) == 1
                    break
            async with AsyncClient(url, ca_file=other) as c:
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    await c.status()
            async with AsyncClient(url, cert_sha256="11" * 32) as c:
                with pytest.raises(aiohttp.ServerFingerprintMismatch):
                    await c.status()
            async with aiohttp.ClientSession() as s:  # plaintext to the TLS port: no answer
                with pytest.raises(aiohttp.ClientError):
                    await s.get(f"http://127.0.0.1:{cfg.api_port}/v1/status")

        asyncio.run(async_side())

        genesis = home.parent / "genesis.json"
        with LightClient(genesis, [url], ca_file=api_cert) as lc:
            assert lc.sync().certificates_checked >= 1  # headers fetched and checked over https
        with (
            LightClient(genesis, [url], ca_file=other) as lc,
            pytest.raises(LightClientError, match="unreachable"),
        ):
            lc.sync()
    finally:
        asyncio.run_coroutine_threadsafe(node.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_init_can_leave_links_plaintext_and_old_node_json_still_loads(tmp_path: Path) -> None:
    ports = free_ports(2)
    init_network(
        tmp_path / "n",
        validators=1,
        genesis_time_ms=0,
        deterministic=True,
        ports=ports[:1],
        api_ports=ports[1:],
        demo_accounts=1,
        p2p_tls=False,
    )
    cfg = NodeConfig.load(tmp_path / "n" / "validator-0")
    assert cfg.p2p_tls is None and cfg.api_tls is None
    doc = json.loads((tmp_path / "n" / "validator-0" / "node.json").read_text())
    doc.pop("p2p_tls", None)
    doc.pop("api_tls", None)  # a node.json from before this option: plaintext, as it was
    (tmp_path / "n" / "validator-0" / "node.json").write_text(json.dumps(doc))
    assert NodeConfig.load(tmp_path / "n" / "validator-0").p2p_tls is None
