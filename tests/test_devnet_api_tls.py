"""``accord devnet --api-tls``: every validator's client API serves https with a certificate
of its own, the devnet's clients (load, watcher, status table) trust the bundle it writes, and
a plain http request to an API port gets no answer."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from accord.client import AsyncClient
from accord.devnet import API_CA_FILE, Devnet

pytestmark = pytest.mark.timeout(180)


def test_devnet_with_api_tls_serves_https_only_and_trusts_its_own_bundle(tmp_path: Path) -> None:
    root = tmp_path / "net"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "accord.cli.main",
            "devnet",
            "--dir",
            str(root),
            "--api-tls",
            "--blocks",
            "2",
            "--json",
            "--rate",
            "20",
            "--round-ms",
            "500",
            "--stage2-ms",
            "250",
        ],
        capture_output=True,
        timeout=150,
        check=False,
    )
    err = out.stderr.decode()
    assert out.returncode == 0, err[-2000:]
    doc = json.loads(out.stdout.decode().strip().splitlines()[-1])
    # the devnet's own load and watcher went over https: transfers were seen committed
    assert doc["txs_committed"] > 0 and len(set(doc["head_hashes"].values())) == 1
    assert "https://127.0.0.1:" in err and "http://127.0.0.1:" not in err
    ca = root / API_CA_FILE
    assert ca.read_text().count("BEGIN CERTIFICATE") == 4

    async def main() -> None:
        net = Devnet(root)  # the same folder again: the chain is reused, still https
        assert net.ca_file == ca
        net.start()
        try:
            await net.wait_ready()
            for v in net.validators:
                assert v.api_url.startswith("https://")
                async with AsyncClient(v.api_url, ca_file=ca) as c:
                    assert (await c.status())["height"] >= doc["height"]
            u = urllib.parse.urlsplit(net.validators[0].api_url)
            assert u.hostname is not None and u.port is not None
            # plain http to the https port: no answer is served
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
            with pytest.raises((OSError, http.client.HTTPException)):
                conn.request("GET", "/v1/status")
                conn.getresponse()
            conn.close()
            # and without the devnet's bundle the certificate is not trusted
            with pytest.raises(ssl.SSLError):
                async with AsyncClient(net.validators[0].api_url) as c:
                    await c.status()
        finally:
            net.stop()

    asyncio.run(main())
