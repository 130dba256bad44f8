#!/usr/bin/env python3
"""The long-run reliability campaign: a validator network under load and faults, then a check
that nothing committed was lost (docs/operations.md, "Reliability campaign").

    .venv/bin/python scripts/chaos.py --minutes 5              # as root: network namespaces
    .venv/bin/python scripts/chaos.py --minutes 5 --no-netns   # anyone: loopback

Each validator runs as its own ``accord node`` process. As root (and where ``ip netns`` works)
each one gets a network namespace of its own, joined to the others by a bridge, so links can be
cut (``partition``: the validator's link goes down for a while). ``--delay 20ms --jitter 5ms
--loss 1%`` (and ``--rate 10mbit``) put a shaping relay between every pair of validators
(accord.net.linkshaper: userspace, so it works where the kernel has no ``netem``; loss is a
retransmission stall, as TCP shows it); each validator's ``node.json`` ``peers`` point at its
relays. Without namespaces a ``partition`` drops the validator's relayed links instead.
``--netem "delay 20ms 5ms loss 1%"`` applies the kernel's netem too where it exists (the
report says whether it was). Meanwhile a load thread submits token transfers to random
live validators and faults are injected one at a time, at most one validator down at once
(f = 1 of 4) except for whole-cluster kills:

* ``kill``: SIGKILL a random validator, restart it a few seconds later;
* ``stop``: SIGSTOP a random validator for a few seconds, then SIGCONT;
* ``partition``: cut a validator's link for a few seconds (namespaces only);
* ``cluster``: SIGKILL every validator, restart them all;
* ``flip``: stop a validator cleanly, flip random bytes of its LMDB file, run ``accord node
  --verify`` on it, start it; if it is refused or reports itself unhealthy the folder is put
  back from the copy taken before the flips (as an operator restores a backup).

``--skew 3=+0.8s`` runs validator 3 under ``faketime`` with its clock 0.8 s ahead (repeatable),
and the report counts the blocks each validator proposed; ``--faults ""`` runs load only.

At the end the load stops, the validators catch up, and the campaign checks every transaction
it saw committed against every validator (same height, same block) and every height's block
hash across validators. It prints one JSON line: what it tried, how many times, and what was
lost (must be 0) or diverged (must be 0). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from accord.base.errors import AccordError
from accord.base.genesis import ConsensusParams, Genesis
from accord.base.types import Tx
from accord.client import Client
from accord.devnet import free_ports
from accord.net.linkshaper import LinkProfile, ShapedNetwork, ShaperThread
from accord.node.config import NodeConfig, demo_account, init_network

BIN = Path(sys.executable).with_name("accord")
NS = "accord-chaos"
SUBNET = "10.77.0"


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


class Net:
    """Namespaces joined by a bridge (or nothing, with --no-netns)."""

    def __init__(self, n: int, use_netns: bool, netem: str) -> None:
        self.n, self.use, self.netem_status = n, use_netns, "off"
        if not use_netns:
            return
        self.teardown()
        sh("ip", "link", "add", f"{NS}-br", "type", "bridge")
        sh("ip", "addr", "add", f"{SUBNET}.254/24", "dev", f"{NS}-br")
        sh("ip", "link", "set", f"{NS}-br", "up")
        for i in range(n):
            ns, host, peer = f"{NS}-{i}", f"ach{i}", f"acn{i}"
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
            sh("ip", "link", "set", peer, "netns", ns)
            sh("ip", "link", "set", host, "master", f"{NS}-br")
            sh("ip", "link", "set", host, "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.ip(i)}/24", "dev", peer)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", peer, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            if netem:
                r = sh(
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "tc",
                    "qdisc",
                    "add",
                    "dev",
                    peer,
                    "root",
                    "netem",
                    *netem.split(),
                    check=False,
                )
                self.netem_status = (
                    netem if r.returncode == 0 else f"unavailable: {r.stderr.strip()}"
                )

    def ip(self, i: int) -> str:
        return f"{SUBNET}.{i + 1}" if self.use else "127.0.0.1"

    def prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", f"{NS}-{i}"] if self.use else []

    def link(self, i: int, up: bool) -> None:
        sh("ip", "link", "set", f"ach{i}", "up" if up else "down")

    def teardown(self) -> None:
        if not self.use:
            return
        for i in range(self.n):
            sh("ip", "netns", "del", f"{NS}-{i}", check=False)
            sh("ip", "link", "del", f"ach{i}", check=False)
        sh("ip", "link", "del", f"{NS}-br", check=False)


class Cluster:
    def __init__(
        self, root: Path, net: Net, n: int, skew: dict[int, str], profile: LinkProfile | None
    ) -> None:
        self.root, self.net, self.n, self.skew = root, net, n, skew
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n
        self.down: set[int] = set()  # validators a fault has taken out (not for load)
        ports = free_ports(2 * n)
        init_network(
            root,
            validators=n,
            deterministic=True,
            genesis_time_ms=int(time.time() * 1000) + 3000,
            ports=ports[:n],
            api_ports=ports[n:],
            consensus=ConsensusParams(round_ms=1000, stage2_ms=500),
        )
        self.shaper: ShaperThread | None = None
        if profile is not None:
            # relays in this (the root) namespace, on the bridge's address when there is one
            relay_host = f"{SUBNET}.254" if net.use else "127.0.0.1"
            self.shaper = ShaperThread(
                ShapedNetwork(
                    {i: (net.ip(i), ports[i]) for i in range(n)}, profile, host=relay_host
                )
            )
            self.shaper.start()
        self.urls = []
        for i in range(n):
            d = self.dir(i)
            cfg = NodeConfig.load(d)
            cfg.host = cfg.api_host = net.ip(i)
            if self.shaper is not None:
                cfg.peers = {
                    f"validator-{j}": f"{h}:{p}"
                    for j, (h, p) in self.shaper.network.dial_map(i).items()
                }
            else:  # each validator in its own namespace: peers at their namespace's address
                cfg.peers = {
                    f"validator-{j}": f"{net.ip(j)}:{ports[j]}" for j in range(n) if j != i
                }
            cfg.save(d)
            self.urls.append(f"http://{net.ip(i)}:{cfg.api_port}")

    def dir(self, i: int) -> Path:
        return self.root / f"validator-{i}"

    def start(self, i: int) -> None:
        log = open(self.dir(i) / "node.log", "ab")  # noqa: SIM115 - the child holds it
        faked = ["faketime", "-f", self.skew[i]] if i in self.skew else []
        self.procs[i] = subprocess.Popen(
            [*self.net.prefix(i), *faked, str(BIN), "node", str(self.dir(i))],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        self.down.discard(i)

    def signal(self, i: int, sig: int) -> None:
        p = self.procs[i]
        if p is not None and p.poll() is None:
            os.killpg(p.pid, sig)

    def kill(self, i: int) -> None:
        self.down.add(i)
        self.signal(i, signal.SIGKILL)
        p = self.procs[i]
        if p is not None:
            p.wait()

    def stop(self, i: int) -> None:
        self.down.add(i)
        self.signal(i, signal.SIGTERM)
        p = self.procs[i]
        if p is not None:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill(i)

    def status(self, i: int) -> dict[str, Any] | None:
        try:
            with Client(self.urls[i], timeout=3) as c:
                return c.status()
        except (AccordError, OSError, ValueError):
            return None

    def wait_healthy(self, i: int, timeout: float = 30) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            st = self.status(i)
            if st is not None:
                return bool(st.get("healthy", True))
            p = self.procs[i]
            if p is not None and p.poll() is not None:
                return False  # refused to start
            time.sleep(0.3)
        return False


class Load(threading.Thread):
    """Token transfers to random live validators; remembers what was accepted and committed."""

    def __init__(self, cluster: Cluster, chain_id: str, tps: float, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.c, self.chain_id, self.tps, self.rng = cluster, chain_id, tps, rng
        self.stop_flag = threading.Event()
        self.submitted = 0
        self.accepted: dict[str, int] = {}  # tx hash -> validator that accepted it
        self.errors: dict[str, int] = {}
        self.committed: dict[str, tuple[int, str]] = {}  # tx hash -> (height, block hash)
        # Each sender's next nonce, counted here: asking a validator that has not yet received
        # the sender's previous transaction by gossip would sign two transactions with one
        # nonce, and one of them could never commit. Re-read after a nonce error.
        self.nonces: dict[bytes, int] = {}

    def run(self) -> None:
        k = 0
        while not self.stop_flag.is_set():
            live = [i for i in range(self.c.n) if i not in self.c.down]
            if live:
                i = self.rng.choice(live)
                sender = demo_account(k % 50)
                k += 1
                try:
                    with Client(self.c.urls[i], timeout=5) as cl:
                        nonce = self.nonces.get(sender.address)
                        if nonce is None:
                            nonce = int(cl.account(sender.address)["next_nonce"])
                        tx = Tx.create(
                            sender,
                            chain_id=self.chain_id,
                            contract="token",
                            method="transfer",
                            args={"to": demo_account(50 + k % 50).address, "amount": 1},
                            nonce=nonce,
                            gas_limit=100_000,
                        )
                        self.submitted += 1
                        self.accepted[cl.submit(tx).hex()] = i
                        self.nonces[sender.address] = nonce + 1
                except AccordError as e:
                    self.errors[e.code] = self.errors.get(e.code, 0) + 1
                    self.nonces.pop(sender.address, None)
                except (OSError, ValueError):
                    self.errors["unreachable"] = self.errors.get("unreachable", 0) + 1
                    self.nonces.pop(sender.address, None)  # it may or may not have been admitted
            self.observe(3)
            time.sleep(1 / self.tps)

    def observe(self, count: int) -> None:
        """Ask a live validator about a few accepted transactions not yet seen committed."""
        todo = [h for h in list(self.accepted) if h not in self.committed][:count]
        live = [i for i in range(self.c.n) if i not in self.c.down]
        if not todo or not live:
            return
        try:
            with Client(self.c.urls[self.rng.choice(live)], timeout=5) as cl:
                for h in todo:
                    st = cl.tx(bytes.fromhex(h), proof=False)
                    if st.committed and st.height is not None and st.block_hash is not None:
                        self.committed[h] = (st.height, st.block_hash.hex())
        except (AccordError, OSError, ValueError):
            pass


def flip_bytes(path: Path, count: int, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    for _ in range(count):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--minutes", type=float, default=5.0, help="how long to inject faults (default 5)"
    )
    ap.add_argument("--validators", type=int, default=4, help="network size (default 4)")
    ap.add_argument(
        "--dir", type=Path, default=None, help="network folder (default: a new temporary one)"
    )
    ap.add_argument(
        "--seed", type=int, default=1, help="seeds the choice of faults, victims and bytes"
    )
    ap.add_argument(
        "--tps", type=float, default=10.0, help="transfers submitted per second (default 10)"
    )
    ap.add_argument("--every", type=float, default=8.0, help="seconds between faults (default 8)")
    ap.add_argument(
        "--no-netns", action="store_true", help="run on loopback, without network namespaces"
    )
    ap.add_argument(
        "--skew",
        action="append",
        default=[],
        metavar="I=OFFSET",
        help="run validator I under faketime with this clock offset, e.g. 3=+0.8s (repeatable)",
    )
    ap.add_argument(
        "--faults",
        default="kill,stop,cluster,flip,partition",
        help="comma-separated faults to draw from ('' for none: load and skew only)",
    )
    ap.add_argument(
        "--delay", default="0ms", help="added one-way latency per link direction, e.g. 30ms"
    )
    ap.add_argument("--jitter", default="0ms", help="latency varies by up to this much, e.g. 10ms")
    ap.add_argument(
        "--loss",
        default="0%",
        help="share of chunks stalled for a retransmission timeout (200 ms), e.g. 1%%",
    )
    ap.add_argument("--rate", default=None, help="bandwidth cap per link direction, e.g. 10mbit")
    ap.add_argument(
        "--netem",
        default="",
        help="also tc netem arguments per validator link, where the kernel has netem "
        "(e.g. 'delay 20ms 5ms loss 1%%'; default none)",
    )
    args = ap.parse_args()
    from rich.progress import Progress

    rng = random.Random(args.seed)
    profile: LinkProfile | None = LinkProfile.parse(args.delay, args.jitter, args.loss, args.rate)
    if profile == LinkProfile():
        profile = None
    root = args.dir or Path(f"/tmp/accord-chaos-{os.getpid()}")
    if root.exists():
        shutil.rmtree(root)
    use_netns = not args.no_netns and os.geteuid() == 0 and shutil.which("ip") is not None
    net = Net(args.validators, use_netns, args.netem if use_netns else "")
    faults: dict[str, int] = {}
    skew = {int(k): v for k, _, v in (x.partition("=") for x in args.skew)}
    if skew and shutil.which("faketime") is None:
        raise SystemExit("--skew needs faketime (apt-get install faketime)")
    flips = {
        "rounds": 0,
        "bytes": 0,
        "verify_found_damage": 0,
        "refused_or_unhealthy": 0,
        "restored": 0,
        "silent": 0,
    }
    cluster: Cluster | None = None
    try:
        cluster = Cluster(root, net, args.validators, skew, profile)
        for i in range(args.validators):
            cluster.start(i)
        if not all(cluster.wait_healthy(i, 60) for i in range(args.validators)):
            raise SystemExit("the network did not start")
        load = Load(cluster, Genesis.load(root / "genesis.json").chain_id, args.tps, rng)
        load.start()
        can_cut = use_netns or cluster.shaper is not None
        kinds = [k for k in args.faults.split(",") if k and (k != "partition" or can_cut)]
        end = time.monotonic() + args.minutes * 60
        with Progress(transient=True) as bar:
            task = bar.add_task("faults", total=args.minutes * 60)
            while time.monotonic() < end:
                time.sleep(min(args.every, max(0.0, end - time.monotonic())))
                if not kinds:
                    bar.update(
                        task,
                        completed=args.minutes * 60 - (end - time.monotonic()),
                        description=f"load only: {len(load.committed)} committed seen",
                    )
                    continue
                kind = rng.choice(kinds)
                i = rng.randrange(args.validators)
                faults[kind] = faults.get(kind, 0) + 1
                bar.update(
                    task,
                    completed=args.minutes * 60 - (end - time.monotonic()),
                    description=f"{kind} validator-{i}: {len(load.committed)} committed seen",
                )
                if kind == "kill":
                    cluster.kill(i)
                    time.sleep(rng.uniform(1, 5))
                    cluster.start(i)
                elif kind == "stop":
                    cluster.down.add(i)
                    cluster.signal(i, signal.SIGSTOP)
                    time.sleep(rng.uniform(2, 6))
                    cluster.signal(i, signal.SIGCONT)
                    cluster.down.discard(i)
                elif kind == "partition":
                    cluster.down.add(i)
                    if use_netns:
                        net.link(i, False)
                    elif cluster.shaper is not None:
                        cluster.shaper.call(cluster.shaper.network.partition, i, "drop")
                    time.sleep(rng.uniform(2, 8))
                    if use_netns:
                        net.link(i, True)
                    elif cluster.shaper is not None:
                        cluster.shaper.call(cluster.shaper.network.heal, i)
                    cluster.down.discard(i)
                elif kind == "cluster":
                    for j in range(args.validators):
                        cluster.kill(j)
                    time.sleep(rng.uniform(1, 3))
                    for j in range(args.validators):
                        cluster.start(j)
                elif kind == "flip":
                    cluster.stop(i)
                    data = cluster.dir(i) / "data" / "data.mdb"
                    backup = data.with_suffix(".chaos-backup")
                    shutil.copyfile(data, backup)
                    count = rng.randint(1, 4)
                    flip_bytes(data, count, rng)
                    flips["rounds"] += 1
                    flips["bytes"] += count
                    v = subprocess.run(
                        [str(BIN), "node", str(cluster.dir(i)), "--verify"],
                        capture_output=True,
                        text=True,
                    )
                    damaged = v.returncode != 0
                    flips["verify_found_damage"] += damaged
                    cluster.start(i)
                    healthy = cluster.wait_healthy(i, 30)
                    if not healthy:
                        flips["refused_or_unhealthy"] += 1
                    elif not damaged:
                        flips["silent"] += (
                            1  # a flip in free or unread pages; the final check covers the rest
                        )
                    if damaged or not healthy:
                        cluster.kill(i)
                        shutil.copyfile(backup, data)
                        flips["restored"] += 1
                        cluster.start(i)
                    backup.unlink()
                for j in range(args.validators):
                    p = cluster.procs[j]
                    if p is not None and p.poll() is not None and j not in cluster.down:
                        cluster.start(j)  # exited on its own (e.g. stopped on damage): restart it
                        faults["unplanned_restart"] = faults.get("unplanned_restart", 0) + 1
            load.stop_flag.set()
            load.join(timeout=30)
        # Let everyone catch up, then check what was committed everywhere.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            heights = [(cluster.status(i) or {}).get("height", -1) for i in range(args.validators)]
            if min(heights) >= 0 and max(heights) - min(heights) <= 1:
                break
            time.sleep(1)
        idle = 0
        for _ in range(120):  # until three passes a second apart see nothing new
            before = len(load.committed)
            load.observe(500)
            idle = idle + 1 if len(load.committed) == before else 0
            if idle >= 3 or len(load.committed) == len(load.accepted):
                break
            time.sleep(1)
        lost, diverged = 0, 0
        clients = [Client(u, timeout=10) for u in cluster.urls]
        for h, (height, block) in load.committed.items():
            for c in clients:
                st = c.tx(bytes.fromhex(h), proof=False)
                if (
                    not st.committed
                    or st.height != height
                    or st.block_hash is None
                    or st.block_hash.hex() != block
                ):
                    lost += 1
        top = min(int((cluster.status(i) or {}).get("height", 0)) for i in range(args.validators))
        proposed = [0] * args.validators
        for start in range(1, top + 1, 100):
            views = [c.headers(start, min(100, top - start + 1)) for c in clients]
            diverged += sum(
                1 for col in zip(*views, strict=True) if len({x.header.hash for x in col}) > 1
            )
            for x in views[0]:
                proposed[x.header.proposer] += 1
        report = {
            "minutes": args.minutes,
            "validators": args.validators,
            "netns": use_netns,
            "netem": net.netem_status,
            "links": "direct" if profile is None else profile.describe(),
            "link_stalls": 0 if cluster.shaper is None else cluster.shaper.network.stalls(),
            "faults": faults,
            "flips": flips,
            "txs": {
                "submitted": load.submitted,
                "accepted": len(load.accepted),
                "committed_seen": len(load.committed),
                "refused": load.errors,
                "lost": lost,
            },
            "height": top,
            "diverged_heights": diverged,
            "proposed": proposed,
            "skew": {str(k): v for k, v in skew.items()},
        }
        print(json.dumps(report, sort_keys=True))
        return 0 if lost == 0 and diverged == 0 else 1
    finally:
        for i in range(args.validators if cluster is not None else 0):
            assert cluster is not None
            try:
                cluster.signal(i, signal.SIGCONT)
                cluster.kill(i)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
        if cluster is not None and cluster.shaper is not None:
            cluster.shaper.stop()
        net.teardown()


if __name__ == "__main__":
    sys.exit(main())
