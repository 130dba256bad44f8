"""What a validator's contracts may call outside the ledger: the proof verifier and the MPC
oracle, set up from genesis when it configures them.

Kept apart from the node so that its rules sit in one place: a validator refuses proving keys
that no verified ceremony produced (:func:`accord.zk.transcript.check_genesis`), says loudly
when it runs one-machine ("insecure-dev") keys or the slow pure-Python verifier, and imports
the ZK and MPC packages only when genesis uses them (a plain token chain loads neither).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from accord.base.errors import ProofError, ValidationError
from accord.base.genesis import Genesis
from accord.node.config import NodeConfig

log = logging.getLogger("accord.node")


def ceremony_transcript(genesis: Genesis, config: NodeConfig, home: Path) -> Any:
    """The ZK ceremony transcript the node config names, else ``transcript.json`` next to
    genesis; None when there is none (check_genesis then says what is missing)."""
    from accord.zk.transcript import TRANSCRIPT, Transcript

    if genesis.zk_params.get("ceremony") in (None, "insecure-dev"):
        return None
    if config.ceremony_transcript:  # named: it must be there
        return Transcript.from_file(home / config.ceremony_transcript)
    path = (home / config.genesis).parent / TRANSCRIPT
    return Transcript.from_file(path) if path.exists() else None


def installed_contracts(config: NodeConfig, home: Path) -> list[Any]:
    """The contract classes node.json ``contracts`` names, imported (a ``path`` goes on the
    module path first); ValidationError naming the entry that cannot be loaded."""
    from accord.contracts.installed import load_class, load_entry_point
    from accord.contracts.runtime import code_hash

    out = []
    for entry in config.contracts:
        if entry.path is not None:
            folder = str((home / entry.path).resolve())
            if folder not in sys.path:
                sys.path.insert(0, folder)
        if entry.module is not None:
            cls = load_class(entry.module)
        else:
            assert entry.entry_point is not None
            cls = load_entry_point(entry.entry_point)
        log.info(
            "%s: contract %s installed, code hash %s (%s)",
            config.name,
            cls.name,
            code_hash(cls).hex(),
            entry.module or f"entry point {entry.entry_point}",
        )
        out.append(cls)
    return out


def add_circuit_files(verifier: Any, config: NodeConfig, home: Path) -> None:
    """Offer the verifier the verification keys node.json ``circuits`` names (circuit ->
    vk JSON file). Each is used only where its hash is the one governance put in force for
    that circuit; ValidationError naming a file that cannot be read as JSON."""
    for circuit, rel in sorted(config.circuits.items()):
        path = home / rel
        try:
            vk = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValidationError(
                f'node.json "circuits": cannot read the verification key of {circuit!r} '
                f"from {path}: {e}"
            ) from None
        if not isinstance(vk, dict):
            raise ValidationError(
                f'node.json "circuits": {path} is not a verification key (a JSON object)'
            )
        try:
            h = verifier.add(vk, circuit=circuit, source=str(path))
        except ProofError as e:
            raise ValidationError(f'node.json "circuits": {path}: {e.message}') from None
        log.info(
            "%s: circuit %s verification key %s hashes to %s", config.name, circuit, path, h.hex()
        )


def runtime_hooks(
    genesis: Genesis, config: NodeConfig, home: Path, *, name: str, allow_insecure_zk: bool
) -> dict[str, Any]:
    """Keyword arguments for :class:`accord.contracts.runtime.Runtime`: ``installed`` (the
    contract code node.json names), ``proof_verifier`` and ``oracle``, when genesis
    configures circuits and MPC (``name``: the validator's, for the log)."""
    hooks: dict[str, Any] = {}
    if config.contracts:
        hooks["installed"] = installed_contracts(config, home)
    if genesis.zk_circuits or config.circuits:
        from accord.zk.transcript import check_genesis
        from accord.zk.verifier import FastProofVerifier, verifier_from_genesis

        # Refuse keys that no verified ceremony produced (see accord.zk.transcript).
        if genesis.zk_circuits:
            check_genesis(
                dict(genesis.zk_circuits),
                dict(genesis.zk_params),
                ceremony_transcript(genesis, config, home),
                allow_insecure=allow_insecure_zk,
            )
        verifier = verifier_from_genesis(genesis)
        add_circuit_files(verifier, config, home)
        hooks["proof_verifier"] = verifier
        if genesis.zk_params.get("ceremony") == "insecure-dev":
            log.warning(
                "%s: genesis marks its proving keys insecure-dev (a one-machine "
                "ceremony): never hold real value on this chain",
                name,
            )
        if not isinstance(verifier, FastProofVerifier):
            # Leaders size blocks by their own verification speed: a proof-heavy block a
            # leader with the worker made in one round can take this node ~13x longer.
            log.warning(
                "%s: Node.js or the pinned snarkjs is missing: proofs are verified in "
                "pure Python (~13x slower); this validator may not keep up with "
                "proof-heavy blocks. Validators should run the fast verifier "
                "(npm ci in the project root)",
                name,
            )
    if genesis.mpc:
        from accord.mpc.oracle import oracle_from_genesis

        hooks["oracle"] = oracle_from_genesis(genesis)
    return hooks
