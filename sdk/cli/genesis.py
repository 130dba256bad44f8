"""``accord genesis new|add-member|assemble|hash|join``: a consortium's genesis from public parts.

The order (see README, "Setting up a consortium"): each member runs ``accord keys new
--validator`` and sends its ``member.json``; one member runs ``genesis new``, ``add-member`` for
every card and ``assemble``, and sends ``genesis.json``; every member runs ``genesis join``
with the hash it compared out of band, which writes its node.json (peers included).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pydantic import ValidationError as PydanticError

from accord.base.errors import GenesisError, ValidationError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "genesis", help="build genesis from member cards, check its hash, configure a node"
    )
    gs = p.add_subparsers(dest="genesis_cmd", metavar="ACTION", required=True)

    new = gs.add_parser("new", help="start a genesis draft (no members yet)")
    new.add_argument("path", type=Path, help="draft file to create")
    new.add_argument("--chain-id", required=True, help="the chain's name, in every signature")
    new.add_argument("--genesis-time-ms", type=int, default=None, help="default: now")
    new.add_argument("--round-ms", type=int, default=1000, help="round length, ms")
    new.add_argument("--stage2-ms", type=int, default=500, help="agreement stage, ms")
    new.add_argument("--expected-leaders", type=float, default=None)
    new.add_argument("--max-block-txs", type=int, default=None)
    new.add_argument("--max-block-gas", type=int, default=None)
    new.add_argument("--skip-empty-blocks", action="store_true")
    new.add_argument(
        "--token-authority",
        default=None,
        metavar="ADDRESS",
        help="account allowed to mint tokens (default: a member's account, the first added)",
    )
    new.add_argument(
        "--no-builtin-contracts",
        dest="builtins",
        action="store_false",
        help="register no built-in contract (default: all of them, by code hash)",
    )
    new.set_defaults(func=_new)

    add = gs.add_parser("add-member", help="add a member from its card (checks its proof)")
    add.add_argument("path", type=Path, help="the genesis draft")
    add.add_argument("cards", type=Path, nargs="+", help="member.json files")
    add.set_defaults(func=_add)

    asm = gs.add_parser(
        "assemble", help="check the draft, write the final genesis and print its hash"
    )
    asm.add_argument("path", type=Path, help="the genesis draft")
    asm.add_argument(
        "-o", "--out", type=Path, default=None, help="final genesis file (default: in place)"
    )
    asm.set_defaults(func=_assemble)

    h = gs.add_parser("hash", help="check a genesis file and print its hash")
    h.add_argument("path", type=Path)
    h.add_argument("--expect", default=None, metavar="HASH", help="fail unless it is this hash")
    h.set_defaults(func=_hash)

    join = gs.add_parser(
        "join", help="write a member's node.json for an assembled genesis (hash pinned)"
    )
    join.add_argument("path", type=Path, help="the assembled genesis.json")
    join.add_argument(
        "--dir", type=Path, default=Path("."), help="the member's folder (its validator.key)"
    )
    join.add_argument(
        "--hash", required=True, help="the genesis hash the members compared out of band"
    )
    join.add_argument("--host", default="0.0.0.0", help="address to listen on for validators")
    join.add_argument("--port", type=int, required=True, help="validator transport port")
    join.add_argument("--api-host", default="127.0.0.1", help="client API address")
    join.add_argument("--api-port", type=int, default=0, help="client API port (0: any)")
    join.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="where another validator listens (repeat; later: edit node.json's peers)",
    )
    join.add_argument(
        "--added",
        action="store_true",
        help="this member is not in genesis: governance adds it to the running chain (its "
        "name comes from member.json; until the vote it follows by certificates)",
    )
    join.add_argument(
        "--no-p2p-tls",
        dest="p2p_tls",
        action="store_false",
        help="plaintext validator links (default: TLS; every member must choose the same)",
    )
    join.set_defaults(func=_join)


def _new(args: argparse.Namespace) -> int:
    from accord.base.genesis import ConsensusParams, TokenGenesis
    from accord.base.members import GenesisDraft
    from accord.node.config import builtin_contract_entries

    if args.path.exists():
        raise ValidationError(f"{args.path} exists: refusing to overwrite it")
    params = {
        "round_ms": args.round_ms,
        "stage2_ms": args.stage2_ms,
        "skip_empty_blocks": args.skip_empty_blocks,
        "expected_leaders": args.expected_leaders,
        "max_block_txs": args.max_block_txs,
        "max_block_gas": args.max_block_gas,
    }
    try:
        draft = GenesisDraft(
            chain_id=args.chain_id,
            genesis_time_ms=args.genesis_time_ms
            if args.genesis_time_ms is not None
            else int(time.time() * 1000),
            consensus=ConsensusParams(**{k: v for k, v in params.items() if v is not None}),
            contracts=builtin_contract_entries() if args.builtins else [],
            token=TokenGenesis(authority=args.token_authority) if args.token_authority else None,
        )
    except PydanticError as e:  # its message names the bad option
        raise ValidationError(f"bad genesis option: {e}") from None
    draft.save(args.path)
    print(json.dumps({"draft": str(args.path), "chain_id": draft.chain_id}))
    return 0


def _add(args: argparse.Namespace) -> int:
    from accord.base.genesis import TokenGenesis
    from accord.base.members import GenesisDraft, read_card

    draft = GenesisDraft.load(args.path)
    for card_path in args.cards:  # all or nothing: the draft is saved once, at the end
        card = read_card(card_path)
        draft.add(card)
        if draft.token is None and "token" in {c.name for c in draft.contracts}:
            draft.token = TokenGenesis(authority=card.account)
        print(json.dumps({"added": card.name, "members": len(draft.validators)}))
    draft.save(args.path)
    return 0


def _summary(genesis_path: Path, g: object) -> str:
    from accord.base.genesis import Genesis

    assert isinstance(g, Genesis)
    return json.dumps(
        {
            "genesis": str(genesis_path),
            "genesis_hash": g.hash.hex(),
            "chain_id": g.chain_id,
            "validators": [v.name for v in g.validators],
            "f": g.f,
            "quorum": g.quorum,
        }
    )


def _assemble(args: argparse.Namespace) -> int:
    import sys

    from accord.base.members import GenesisDraft

    g = GenesisDraft.load(args.path).assemble()
    out = args.out or args.path
    g.save(out)
    if g.f == 0:
        print(
            f"accord: warning: {g.n} validator(s) tolerate no faulty member (4 tolerate one)",
            file=sys.stderr,
        )
    print(_summary(out, g))
    return 0


def _check_hash(g: object, path: Path, expect: str) -> None:
    from accord.base.genesis import Genesis

    assert isinstance(g, Genesis)
    if g.hash.hex() != expect.strip().lower():
        raise GenesisError(
            f"{path} has hash {g.hash.hex()}, not {expect}: it is not the genesis the members "
            "agreed on (edited after assembly, or another draft); do not start on it"
        )


def _hash(args: argparse.Namespace) -> int:
    from accord.base.genesis import Genesis

    g = Genesis.load(args.path)
    if args.expect is not None:
        _check_hash(g, args.path, args.expect)
    print(_summary(args.path, g))
    return 0


def _join(args: argparse.Namespace) -> int:
    import shutil

    from accord.base.crypto import bls
    from accord.base.genesis import Genesis
    from accord.base.keys import load_validator_key
    from accord.base.members import VALIDATOR_KEY
    from accord.net.tls import make_self_signed
    from accord.node.config import P2P_TLS, NodeConfig

    folder: Path = args.dir
    g = Genesis.load(args.path)
    _check_hash(g, args.path, args.hash)
    if (folder / "node.json").exists():
        raise ValidationError(
            f"{folder / 'node.json'} exists: edit its peers to move a validator, never rejoin"
        )
    mine = bls.public_key(load_validator_key(folder / VALIDATOR_KEY)).hex()
    me = next((v for v in g.validators if v.bls_public_key == mine), None)
    if me is None and args.added:
        from accord.base.genesis import ValidatorInfo
        from accord.base.members import CARD_FILE, MemberCard

        card = MemberCard.model_validate_json((folder / CARD_FILE).read_text())
        if card.bls_public_key != mine:
            raise GenesisError(f"{folder / CARD_FILE} is not the card of {folder / VALIDATOR_KEY}")
        if not any(c.name == "governance" for c in g.contracts):
            raise GenesisError(
                f"{args.path} has no governance contract: nobody can add {card.name}"
            )
        if any(v.name == card.name for v in g.validators):
            raise GenesisError(f"{card.name} is a genesis validator's name: choose another")
        me = ValidatorInfo(name=card.name, bls_public_key=mine, pop=card.pop, account=card.account)
    if me is None:
        raise GenesisError(
            f"{folder / VALIDATOR_KEY} is not the key of any validator in {args.path} "
            "(a member governance is to add joins with --added)"
        )
    peers: dict[str, str] = {}
    for item in args.peer:
        name, sep, addr = item.partition("=")
        if not sep:
            raise ValidationError(f"--peer {item!r}: expected NAME=HOST:PORT")
        peers[name] = addr
    peers.pop(me.name, None)
    config = NodeConfig(
        name=me.name,
        genesis="genesis.json",
        host=args.host,
        port=args.port,
        api_host=args.api_host,
        api_port=args.api_port,
        peers=peers,
        genesis_hash=g.hash.hex(),
    )
    config.peer_addresses(g)  # a typo in a name or an address is refused now, not at start
    target = folder / "genesis.json"
    if target.resolve() != args.path.resolve():
        if target.exists() and Genesis.load(target).hash != g.hash:
            raise GenesisError(f"{target} holds another genesis: refusing to replace it")
        shutil.copyfile(args.path, target)
    if args.p2p_tls:
        make_self_signed(folder / P2P_TLS.cert, folder / P2P_TLS.key, name=me.name)
        config.p2p_tls = P2P_TLS
    config.save(folder)
    print(json.dumps({"node": str(folder), "name": me.name, "peers": sorted(peers)}))
    return 0
