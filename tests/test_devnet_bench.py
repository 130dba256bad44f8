"""``accord devnet --blocks N --json`` and ``accord bench consensus`` end to end (short runs).

These check that the commands work and report coherent figures (every submitted transfer
committed, heads agree); they assert nothing about speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .support.cli import accord

pytestmark = pytest.mark.timeout(240)


def test_devnet_blocks_json(tmp_path: Path) -> None:
    doc = accord(
        "devnet",
        "--dir",
        str(tmp_path / "net"),
        "--blocks",
        "4",
        "--json",
        "--rate",
        "50",
        "--round-ms",
        "500",
        "--stage2-ms",
        "250",
    )
    assert doc["validators"] == 4
    assert isinstance(doc["height"], int) and doc["height"] >= 4
    heads = doc["head_hashes"]
    assert isinstance(heads, dict) and len(heads) == 4 and len(set(heads.values())) == 1
    assert isinstance(doc["txs_committed"], int) and doc["txs_committed"] > 0
    assert isinstance(doc["tps"], float) and doc["tps"] > 0
    # reusing the folder continues the same chain
    again = accord(
        "devnet",
        "--dir",
        str(tmp_path / "net"),
        "--blocks",
        "2",
        "--json",
        "--rate",
        "20",
        "--round-ms",
        "500",
        "--stage2-ms",
        "250",
    )
    assert again["height"] > doc["height"]  # type: ignore[operator]
    # A folder this version cannot reuse (here: a store of an older schema) is named before
    # any validator starts, and --fresh recreates it.
    import struct

    import lmdb

    env = lmdb.open(str(tmp_path / "net" / "validator-2" / "data"), max_dbs=16)
    meta = env.open_db(b"meta")  # outside the write transaction (LMDB would wait on itself)
    with env.begin(write=True) as txn:
        txn.put(b"accord/schema", struct.pack(">Q", 2), db=meta)
    env.close()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "accord.cli.main",
            "devnet",
            "--dir",
            str(tmp_path / "net"),
            "--blocks",
            "1",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert out.returncode != 0 and b"--fresh" in out.stderr and b"schema 2" in out.stderr
    fresh = accord(
        "devnet",
        "--dir",
        str(tmp_path / "net"),
        "--blocks",
        "2",
        "--json",
        "--rate",
        "20",
        "--round-ms",
        "500",
        "--stage2-ms",
        "250",
        "--fresh",
    )
    assert fresh["height"] >= 2 and len(set(fresh["head_hashes"].values())) == 1  # type: ignore[union-attr, arg-type]


def test_bench_consensus_short_run_with_plot(tmp_path: Path) -> None:
    plot = tmp_path / "consensus.png"
    doc = accord(
        "bench",
        "consensus",
        "--duration",
        "4",
        "--rate",
        "100",
        "--accounts",
        "40",
        "--round-ms",
        "500",
        "--stage2-ms",
        "250",
        "--drain",
        "8",
        "--json",
        "--plot",
        str(plot),
    )
    assert doc["bench"] == "consensus" and doc["validators"] == 4
    assert doc["submitted"] == 400 and doc["rejected"] == 0
    assert doc["txs_committed"] == doc["submitted"] and doc["uncommitted"] == 0
    assert doc["heads_agree"] is True
    assert 0 < doc["tps"] <= 100 * 1.05  # type: ignore[operator]
    assert 0 < doc["p50_latency_s"] <= doc["p99_latency_s"]  # type: ignore[operator]
    assert 240 <= doc["tx_bytes"] <= 260  # type: ignore[operator]  # the paper's ~250-byte transfers
    speed = doc["machine"]["speed_before"]  # type: ignore[index]
    assert speed["sha256_100b_per_s"] > 0 and speed["ed25519_verify_per_s"] > 0
    assert doc["machine"]["speed_after"].keys() == speed.keys()  # type: ignore[index]
    # the signature-check limit from the bench's own probe, and where the run stands to it
    per_core = (
        speed["ed25519_verify_per_s"] + doc["machine"]["speed_after"]["ed25519_verify_per_s"]
    ) / 2  # type: ignore[index]
    limit = per_core * (os.cpu_count() or 1) / 4
    assert abs(doc["signature_limit_tps"] - limit) <= 0.1  # type: ignore[operator]
    assert abs(doc["limit_ratio"] - doc["tps"] / limit) <= 1e-3  # type: ignore[operator]
    # CPU per transaction, the whole network's and one validator's, from the same count
    # (validators_cpu_s is printed to 0.1 s, the per-transaction figures to 1 us and 0.1 us)
    cpu_s, n_tx = doc["validators_cpu_s"], doc["txs_committed"]
    assert abs(doc["cpu_ms_per_tx"] - 1000 * cpu_s / n_tx) <= 1e-3 + 50 / n_tx  # type: ignore[operator]
    assert abs(doc["validator_cpu_us_per_tx"] - 1000 * doc["cpu_ms_per_tx"] / 4) <= 0.5  # type: ignore[operator]
    assert doc["validator_cpu_us_per_tx"] > 0  # type: ignore[operator]
    assert (
        type(doc["rounds_without_commit"]) is int
        and 0 <= doc["rounds_without_commit"] < doc["blocks"]
    )  # type: ignore[operator]
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_folder_whose_genesis_registers_other_contract_code_is_named_before_starting(
    tmp_path: Path,
) -> None:
    """After a contract changes (its code hash with it), an old devnet folder would start four
    validators that each exit with CodeMismatch; it is refused up front with the way out."""
    import pytest

    from accord.base.errors import AccordError
    from accord.base.genesis import Genesis
    from accord.devnet import ensure_network

    root = tmp_path / "net"
    g = ensure_network(root)
    assert ensure_network(root).hash == g.hash  # an up-to-date folder is reused as it is
    old = [
        e.model_copy(update={"code_hash": "00" * 32}) if e.name == "token" else e
        for e in g.contracts
    ]
    g.model_copy(update={"contracts": old}).save(root / "genesis.json")
    with pytest.raises(AccordError, match=r"other code for token.*--fresh"):
        ensure_network(root)
    assert Genesis.load(root / "genesis.json").contracts == old  # refused, not rewritten


def test_bench_consensus_over_an_https_api(tmp_path: Path) -> None:
    """``--api-tls``: the validators serve https and every client of the bench (load,
    commit stream, status polls, the header read behind ``rounds_without_commit``) trusts
    the folder's ``api-ca.pem``. Before, the header client had no CA: the TLS handshake
    failed and the figure came back null."""
    root = tmp_path / "net"
    doc = accord(
        "bench",
        "consensus",
        "--dir",
        str(root),
        "--api-tls",
        "--duration",
        "2",
        "--rate",
        "50",
        "--accounts",
        "20",
        "--round-ms",
        "500",
        "--stage2-ms",
        "250",
        "--drain",
        "6",
        "--json",
    )
    assert doc["api_tls"] is True
    from accord.node.config import NodeConfig

    assert all(NodeConfig.load(root / f"validator-{i}").api_tls is not None for i in range(4))
    assert (root / "api-ca.pem").read_text().count("BEGIN CERTIFICATE") == 4
    assert doc["submitted"] == 100 and doc["txs_committed"] == doc["submitted"]
    assert doc["heads_agree"] is True
    assert type(doc["rounds_without_commit"]) is int


def _short_bench(*extra: str, timeout: float = 180) -> dict[str, Any]:
    """``accord bench consensus`` for 3 s at 100 tx/s on a fresh small network."""
    return accord(
        "bench",
        "consensus",
        *extra,
        *("--duration", "3", "--rate", "100", "--accounts", "40"),
        *("--round-ms", "500", "--stage2-ms", "250", "--drain", "8", "--json"),
        timeout=timeout,
    )


def test_bench_vs_etcd_without_etcd_is_refused_clearly(tmp_path: Path) -> None:
    """With no ``etcd`` on the PATH, ``--vs etcd`` says what is missing and how to get it, no
    traceback, and starts no validator (it refuses before making a network)."""
    out = subprocess.run(
        [sys.executable, "-m", "accord.cli.main", "bench", "consensus", "--vs", "etcd", "--json"],
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "PATH": str(tmp_path)},  # an empty folder: no etcd
    )
    err = out.stderr.decode()
    assert out.returncode == 1 and out.stdout == b""
    assert "etcd_missing" in err and "etcd-server" in err and "Traceback" not in err


def test_bench_vs_etcd_whose_etcd_fails_says_why(tmp_path: Path) -> None:
    """An ``etcd`` that exits at once (here a script standing in for a broken install) is
    reported with the end of its log, as a clear error: no traceback, no hang, no network."""
    fake = tmp_path / "etcd"
    fake.write_text("#!/bin/sh\necho 'etcd: unknown flag --broken-install' >&2\nexit 1\n")
    fake.chmod(0o755)
    out = subprocess.run(
        [sys.executable, "-m", "accord.cli.main", "bench", "consensus", "--vs", "etcd", "--json"],
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    err = out.stderr.decode()
    assert out.returncode == 1 and out.stdout == b""
    assert "etcd_failed" in err and "unknown flag --broken-install" in err
    assert "Traceback" not in err


def test_bench_vs_etcd_short_run(tmp_path: Path) -> None:
    """A short alternating run against a real 3-member etcd (skipped where etcd is not
    installed: CI does not need it) prints both figures and their ratio, each consistent."""
    import shutil

    if shutil.which("etcd") is None:
        pytest.skip("etcd is not on the PATH (Debian: etcd-server)")
    doc = _short_bench("--vs", "etcd", timeout=220)
    assert doc["vs"] == "etcd" and doc["etcd_members"] == 3 and doc["heads_agree"] is True
    (pair,) = doc["pairs"]  # type: ignore[misc]
    etcd = pair["etcd"]
    assert etcd["submitted"] == 300 and etcd["acked"] == 300 and etcd["failed"] == 0
    assert 0 < etcd["writes_per_s"] <= 100 * 1.05 and etcd["p50_latency_s"] > 0
    assert doc["write_bytes"] == doc["tx_bytes"]
    assert doc["etcd_writes_per_s"] == etcd["writes_per_s"]
    assert doc["tps"] == pair["accord"]["tps"] > 0
    assert abs(doc["vs_etcd_ratio"] - doc["tps"] / etcd["writes_per_s"]) <= 1e-3  # type: ignore[operator]


def test_bench_consensus_on_uvloop(tmp_path: Path) -> None:
    """``--event-loop uvloop`` runs every validator on uvloop (the ``fast`` extra; the dev
    extra installs it): the network commits every transfer and the heads agree, as on
    asyncio's loop; the JSON line says which loop ran."""
    pytest.importorskip("uvloop")
    doc = _short_bench("--event-loop", "uvloop")
    assert doc["event_loop"] == "uvloop" and doc["heads_agree"] is True
    assert doc["txs_committed"] == doc["submitted"] == 300 and doc["uncommitted"] == 0


def test_event_loop_choice_is_checked() -> None:
    from accord.base.errors import ValidationError
    from accord.cli.node import resolve_event_loop

    assert resolve_event_loop("asyncio") == "asyncio"
    with pytest.raises(ValidationError, match="unknown event loop"):
        resolve_event_loop("trio")
