"""Start three MPC server processes on loopback (benchmarks, examples and tests).

The cluster registers one key per named client (``clients``; ``connect(name)`` uses it) and
gives each server a data folder, so :meth:`LocalCluster.restart` brings a server back with
the shares it held.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base.errors import PeerGone
from accord.base.processes import stop_processes
from accord.mpc.channel import private_bytes, public_bytes
from accord.mpc.client import Cluster
from accord.mpc.server import ServerInfo, pack

_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port that is free now and that this process has not handed out before.

    The kernel may give the same ephemeral port to two successive ``bind(0)`` calls once the
    first socket is closed; two servers of one cluster on one port fail at random.
    """
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise OSError("no fresh loopback port")


class LocalCluster:
    """Three ``accord mpc serve`` processes on 127.0.0.1 with fresh keys; a context manager."""

    def __init__(
        self,
        timeout: float = 30.0,
        frac_bits: int = 16,
        max_client_mb: int | None = None,
        clients: tuple[str, ...] = ("default",),
        quota_mb: dict[str, int] | None = None,
        malicious: list[str] | None = None,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="accord-mpc-"))
        keys = [X25519PrivateKey.generate() for _ in range(3)]
        self.infos = [ServerInfo("127.0.0.1", free_port(), public_bytes(k)) for k in keys]
        self.client_keys = {name: X25519PrivateKey.generate() for name in clients}
        quota_mb = quota_mb or {}
        cluster = {
            "servers": [
                {"host": s.host, "port": s.port, "public_key": s.public_key.hex()}
                for s in self.infos
            ],
            "clients": [
                {
                    "name": n,
                    "public_key": public_bytes(k).hex(),
                    **({"quota_mb": quota_mb[n]} if n in quota_mb else {}),
                }
                for n, k in self.client_keys.items()
            ],
        }
        (self.dir / "cluster.json").write_text(json.dumps(cluster))
        self.cmds: list[list[str]] = []
        for i, k in enumerate(keys):
            kp = self.dir / f"server{i}.key"
            kp.write_text(private_bytes(k).hex())
            os.chmod(kp, 0o600)
            cmd = [
                sys.executable,
                "-m",
                "accord.cli.main",
                "mpc",
                "serve",
                "--index",
                str(i),
                "--cluster",
                str(self.dir / "cluster.json"),
                "--key",
                str(kp),
                "--timeout",
                str(timeout),
                "--frac-bits",
                str(frac_bits),
                "--data",
                str(self.dir / f"data{i}"),
            ]
            if max_client_mb is not None:
                cmd += ["--max-client-mb", str(max_client_mb)]
            if malicious is not None:  # programs checked against a malicious server
                cmd += ["--malicious", ",".join(malicious) or "none"]
            self.cmds.append(cmd)
        self.procs: list[subprocess.Popen[bytes]] = [self._spawn(i) for i in range(3)]

    def _spawn(self, i: int) -> subprocess.Popen[bytes]:
        # One BLAS thread per server: three servers share two cores.
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        return subprocess.Popen(self.cmds[i], stderr=subprocess.DEVNULL, env=env)

    def connect(self, client: str = "default", wait: float = 30.0) -> Cluster:
        """A client with the registered key ``client``, once all three servers see each other."""
        deadline = time.monotonic() + wait
        while True:
            try:
                c = Cluster(self.infos, key=self.client_keys[client])
                replies = c._all([pack({"t": "ping"})] * 3)
                if all(h.get("peers") == 2 for h, _ in replies):
                    return c
                c.close()
                raise PeerGone("servers not yet connected to each other")
            except (OSError, PeerGone):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def kill(self, i: int) -> None:
        self.procs[i].kill()
        self.procs[i].wait()

    def restart(self, i: int) -> None:
        """Kill server ``i`` (no clean shutdown) and start it again on its port and data."""
        self.kill(i)
        self.procs[i] = self._spawn(i)

    def stop(self) -> None:
        stop_processes(self.procs)
        # The folder holds the servers' private keys: it must not outlive the cluster.
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
