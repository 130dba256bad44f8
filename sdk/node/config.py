"""Node folders: what ``accord init`` writes and ``Node.from_dir`` reads.

A network folder holds ``genesis.json``, one folder per validator (``node.json``, its BLS key
``validator.key`` and its LMDB ``data/``), and ``accounts/`` with demo account keys. Every
member of a real consortium holds only its own validator folder and the shared genesis.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from accord.base.crypto import bls
from accord.base.crypto.ed25519 import AccountKey
from accord.base.errors import GenesisError, ValidationError
from accord.base.genesis import ConsensusParams, ContractEntry, Genesis, TokenGenesis, ValidatorInfo
from accord.base.keys import save_validator_key
from accord.net.tls import make_self_signed

DEMO_BALANCE = 10**12
MEMBER_KEY = "account.json"
"""A member's account key in its node folder (as ``accord keys new --validator`` names it)."""


class TlsFiles(BaseModel):
    """A PEM certificate and its private key, paths relative to the node folder."""

    model_config = ConfigDict(extra="forbid")

    cert: str = Field(description="PEM certificate (chain) file")
    key: str = Field(description="PEM private key file (mode 0600)")


P2P_TLS = TlsFiles(cert="p2p-tls.crt", key="p2p-tls.key")
"""Where ``accord init`` puts a validator's link certificate (self-signed: the handshake, not a
CA, decides who a peer is; see accord.net.tls)."""

API_TLS = TlsFiles(cert="api-tls.crt", key="api-tls.key")


class InstalledContract(BaseModel):
    """Contract code this node offers (installed like chaincode on a Fabric peer): a class
    from a module path, or an installed package's entry point. Genesis or a governance vote
    decides whether it runs, by its code hash."""

    model_config = ConfigDict(extra="forbid")

    module: str | None = Field(
        default=None, description="'package.module:Class' of the contract class"
    )
    entry_point: str | None = Field(
        default=None,
        description="the name of an entry point in the group 'accord.contracts' that an "
        "installed distribution declares (pip install the contract's package)",
    )
    path: str | None = Field(
        default=None,
        description="a folder (relative to the node folder) put on the module path first, "
        "for a module that is not installed as a package",
    )

    @model_validator(mode="after")
    def _one_source(self) -> InstalledContract:
        if (self.module is None) == (self.entry_point is None):
            raise ValueError("a contract entry names exactly one of 'module' or 'entry_point'")
        return self


class NodeConfig(BaseModel):
    """One validator's local settings (everything shared lives in genesis)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    genesis: str = Field(description="path of genesis.json, relative to the node folder")
    validator_key: str = "validator.key"
    next_validator_key: str | None = Field(
        default=None,
        description="a BLS key file (relative to the node folder) governance is to rotate "
        "this validator's key to (`rotate_validator_key`): the node signs with "
        "`validator_key` until the set of the next height names this key for it, then "
        "with this one, without a restart (then make it `validator_key`)",
    )
    data_dir: str = "data"
    host: str = "127.0.0.1"
    port: int = 0
    api_host: str = "127.0.0.1"
    api_port: int = 0
    mempool_size: int = 200_000
    sync: bool = True
    p2p_tls: TlsFiles | None = Field(
        default=None,
        description="TLS on the validator links (required of every peer once set); written by accord init. "
        "Absent: plaintext links, as networks made before encryption existed",
    )
    api_tls: TlsFiles | None = Field(
        default=None, description="serve the client API over https with these files"
    )
    state_sync: bool = Field(
        default=True,
        description=(
            "a node with an empty data folder takes a peer's state snapshot (checked against its "
            "certified header) instead of replaying the chain from genesis, when one is offered"
        ),
    )
    snapshot_interval: int = Field(
        default=1000,
        ge=0,
        description=("build a state snapshot for joining nodes every this many blocks (0: never)"),
    )
    snapshot_keep: int = Field(default=2, ge=1, description="state snapshots kept on disk")
    prune_keep: int = Field(
        default=0,
        ge=0,
        description=("keep only the last this many blocks and state versions (0: keep everything)"),
    )
    ceremony_transcript: str | None = Field(
        default=None,
        description="the ZK ceremony's transcript.json, relative to the node folder "
        "(default: transcript.json next to genesis); checked against genesis at start-up",
    )
    allow_insecure_zk: bool = Field(
        default=False,
        description="start on a genesis whose ZK keys are marked insecure-dev "
        "(one-machine keys: test and demo chains only)",
    )
    double_sign_check: bool = Field(
        default=True,
        description="halt when a committed certificate carries this validator's commit vote "
        "for a height and round its own safety record never signed: another instance with "
        "this key is running (a copied folder or key file). A folder restored with "
        "`accord node restore` adopts the votes its original signed before the restore and "
        "catches up without voting instead",
    )

    peers: dict[str, str] = Field(
        default_factory=dict,
        description="where the other validators listen ('host:port' by validator name): "
        "genesis names no address, so a validator that moves changes only its peers' "
        "node.json. Applied by `Node.from_dir` and `accord node`",
    )
    new_validators: list[str] = Field(
        default_factory=list,
        description="names of validators governance is to add after genesis that `peers` "
        "gives addresses for (any other name genesis lacks is refused as a typo)",
    )
    new_validator_keys: dict[str, str] = Field(
        default_factory=dict,
        description="the BLS public keys (hex, from their member cards) of `new_validators`: "
        "the node accepts and dials them from the start, for catch-up only (their votes "
        "count once a set names them, their certificates are checked against the set of each "
        "height), so a validator that was down while they were added can catch up from them "
        "alone",
    )
    contracts: list[InstalledContract] = Field(
        default_factory=list,
        description="contract code installed on this node beyond the built-ins; the runtime "
        "runs, at each height, the code whose hash genesis or governance put in force there "
        "(a validator lacking approved code stops before its activation height and says "
        "what to install)",
    )
    circuits: dict[str, str] = Field(
        default_factory=dict,
        description="verification keys beyond genesis's: circuit name -> snarkjs vk JSON file "
        "(relative to the node folder), for circuits governance registers or upgrades "
        "(`register_circuit`); a proof is checked against the key whose hash is in force at "
        "its block's height, and a validator lacking that key stops before its activation "
        "height and says which file to provide",
    )
    genesis_hash: str | None = Field(
        default=None,
        description="the genesis hash the members agreed on out of band (hex; written by "
        "`accord genesis join`): the node refuses to start on a genesis file with another hash",
    )

    def expected_keys(self) -> list[tuple[str, bytes]]:
        """``new_validator_keys`` as (name, key), checked: each a 48-byte key of a name in
        ``new_validators``."""
        out = []
        for name, hexkey in sorted(self.new_validator_keys.items()):
            if name not in self.new_validators:
                raise ValidationError(
                    f"node.json new_validator_keys: {name!r} is not in new_validators"
                )
            try:
                key = bytes.fromhex(hexkey)
            except ValueError:
                key = b""
            if len(key) != bls.PUBLIC_KEY_SIZE:
                raise ValidationError(
                    f"node.json new_validator_keys: {name}: not a {bls.PUBLIC_KEY_SIZE}-byte "
                    "BLS public key in hex"
                )
            out.append((name, key))
        return out

    def check_genesis(self, genesis: Genesis) -> None:
        """Refuse a genesis file edited after the members compared its hash."""
        if self.genesis_hash is not None and genesis.hash.hex() != self.genesis_hash.lower():
            raise GenesisError(
                f"genesis {self.genesis} has hash {genesis.hash.hex()}, not the agreed "
                f"{self.genesis_hash} pinned in node.json: it changed after assembly "
                "(compare hashes with the other members again)"
            )

    def peer_addresses(self, genesis: Genesis) -> dict[int, tuple[str, int]]:
        """``peers`` by validator index, checked against genesis (a typo must not pass as a
        validator nobody can reach).

        The pinned genesis hash is checked here too (see ``check_genesis``; ``Node`` checks
        it again whatever way it was built)."""
        self.check_genesis(genesis)
        index = {v.name: i for i, v in enumerate(genesis.validators)}
        return {
            index[name]: addr for name, addr in self.named_peers(genesis).items() if name in index
        }

    def named_peers(self, genesis: Genesis) -> dict[str, tuple[str, int]]:
        """``peers`` by name. A name genesis lacks must be one of the ``new_validators`` this
        node expects governance to add (so a typo is still refused, not kept for ever)."""
        known = {v.name for v in genesis.validators} | set(self.new_validators)
        out: dict[str, tuple[str, int]] = {}
        for name, addr in self.peers.items():
            if name not in known:
                raise ValidationError(
                    f"node.json peers: no validator named {name!r} in genesis (a validator "
                    "governance adds is listed in new_validators too)"
                )
            host, sep, port = addr.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValidationError(f"node.json peers: {name}: {addr!r} is not host:port")
            out[name] = (host.strip("[]"), int(port))
        return out

    @classmethod
    def load(cls, node_dir: str | Path) -> NodeConfig:
        path = Path(node_dir) / "node.json"
        try:
            return cls.model_validate_json(path.read_text())
        except OSError as e:
            raise ValidationError(f"cannot read {path}: {e}") from None

    def save(self, node_dir: str | Path) -> None:
        (Path(node_dir) / "node.json").write_text(self.model_dump_json(indent=2) + "\n")


def builtin_contract_entries() -> list[ContractEntry]:
    from accord.contracts import BUILTINS
    from accord.contracts.determinism import check_contract
    from accord.contracts.runtime import code_hash

    for cls in BUILTINS.values():
        check_contract(cls)  # genesis registers only code every validator computes alike
    return [
        ContractEntry(name=name, code_hash=code_hash(cls).hex())
        for name, cls in sorted(BUILTINS.items())
    ]


def demo_account(i: int) -> AccountKey:
    return AccountKey.from_name(f"demo-{i}")


def init_network(
    root: str | Path,
    *,
    validators: int = 4,
    chain_id: str = "accord-devnet",
    genesis_time_ms: int = 0,
    base_port: int = 26650,
    base_api_port: int = 8650,
    demo_accounts: int = 100,
    consensus: ConsensusParams | None = None,
    deterministic: bool = False,
    ports: list[int] | None = None,
    api_ports: list[int] | None = None,
    p2p_tls: bool = True,
    api_tls: bool = False,
) -> Genesis:
    """Create a network folder for ``validators`` members and return its genesis.

    ``deterministic`` derives validator keys from their names (for tests and demos only:
    anyone can recompute them). ``p2p_tls`` gives every validator a link certificate (links
    are encrypted, and encryption required); ``api_tls`` a self-signed API certificate for
    127.0.0.1/localhost (clients pin it or use it as their CA file).
    """
    root = Path(root)
    if (root / "genesis.json").exists():
        raise ValidationError(f"{root} already holds a network (genesis.json exists)")
    root.mkdir(parents=True, exist_ok=True)
    infos: list[ValidatorInfo] = []
    ports = ports or [base_port + i for i in range(validators)]
    api_ports = api_ports or [base_api_port + i for i in range(validators)]
    for i in range(validators):
        name = f"validator-{i}"
        secret = bls.demo_secret(name) if deterministic else bls.keygen()
        node_dir = root / name
        node_dir.mkdir(parents=True, exist_ok=True)
        save_validator_key(node_dir / "validator.key", secret)
        # The member's account key signs its governance proposals and approvals.
        member = AccountKey.from_name(f"member-{name}") if deterministic else AccountKey.generate()
        member.save(node_dir / MEMBER_KEY)
        infos.append(
            ValidatorInfo(
                name=name,
                bls_public_key=bls.public_key(secret).hex(),
                pop=bls.pop_prove(secret).hex(),
                account=member.address.hex(),
            )
        )
        # One machine: every validator reaches the others on loopback; genesis names no
        # address, so each node.json says where its peers are.
        peers = {
            f"validator-{j}": f"127.0.0.1:{ports[j]}"
            for j in range(validators)
            if j != i and ports[j]
        }
        config = NodeConfig(
            name=name,
            genesis="../genesis.json",
            port=ports[i],
            api_port=api_ports[i],
            peers=peers,
        )
        if p2p_tls:
            make_self_signed(node_dir / P2P_TLS.cert, node_dir / P2P_TLS.key, name=name)
            config.p2p_tls = P2P_TLS
        if api_tls:
            enable_api_tls(node_dir, config)
        config.save(node_dir)
    authority = AccountKey.from_name("authority") if deterministic else AccountKey.generate()
    authority.save(root / "accounts" / "authority.json")
    balances = {}
    for i in range(demo_accounts):
        key = demo_account(i)
        balances[key.address.hex()] = DEMO_BALANCE
    genesis = Genesis(
        chain_id=chain_id,
        genesis_time_ms=genesis_time_ms,
        validators=infos,
        consensus=consensus or ConsensusParams(),
        contracts=builtin_contract_entries(),
        token=TokenGenesis(authority=authority.address.hex(), balances=balances),
    )
    genesis.save(root / "genesis.json")
    (root / "accounts" / "README").write_text(
        "Demo accounts demo-0.. are derived from public names (accord.node.config.demo_account):\n"
        "they exist for demos and benchmarks only. authority.json may mint tokens.\n"
    )
    return genesis


def enable_api_tls(node_dir: Path, config: NodeConfig) -> None:
    """Give one validator's client API a self-signed certificate and turn https on in
    ``config`` (the caller saves it): a local matter, nothing in genesis."""
    make_self_signed(
        node_dir / API_TLS.cert,
        node_dir / API_TLS.key,
        name=f"{config.name} API",
        hosts=[config.api_host, "localhost"],
    )
    config.api_tls = API_TLS
