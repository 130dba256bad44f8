"""The shielded pool: token deposits become notes, notes move privately, notes become tokens.

One method, ``transact``, takes a ``shielded_transfer`` proof (circuits/shielded_transfer.circom)
and its 17 public inputs; the amounts in them decide what it is:

* deposit ``d`` > 0: the pool pulls ``d`` tokens from its caller (``ctx.sender``: the account
  that signed the transaction, or a contract that called the pool), within the allowance the
  caller granted it beforehand with ``token.approve(spender=<pool address>, amount=d)``. The
  pool never pulls from ``ctx.origin``: a contract in the middle could otherwise spend its
  caller's approval to the pool on notes the contract owns;
* withdrawal ``w`` > 0: the pool pays ``w`` tokens to ``recipient`` (a 20-byte address);
* both 0: a private transfer.

State (this contract's namespace):

* ``"depth"`` tree depth (from genesis ``zk_params["shielded_pool"]["depth"]``, default 32);
* ``"next"`` the next free leaf; ``"filled"`` the frontier: per level, the last left node;
* ``"roots"`` the last :data:`ROOT_WINDOW` roots (a proof may use any of them, so a transfer
  built a few blocks ago still lands), newest last;
* ``b"n" + nullifier`` -> 1: the spent set.
* ``b"t" + level (1 byte) + position (8 bytes)`` -> the tree's node there (level 0: the leaves),
  rewritten on every insert along the new leaf's path, so that ``path(index)`` can serve a
  wallet its Merkle path from a node (a missing node is an empty subtree).

Rules, checked before the proof (cheap first) and all before any effect: the root is in the
window; both nullifiers are new and differ; the regulator key in the proof is the one in force
at the block's height (genesis's, until governance's ``rotate_regulator`` activates another)
and the ephemeral key is not the identity; the
``bind`` input equals the hash of (chain id, recipient, note ciphertexts), so a proof cannot
be replayed on another chain, with another recipient or other notes; then the proof verifies. A failed check reverts: no
state changes. Events: ``Transfer`` with everything a wallet (commitments, leaf indices, note
ciphertexts) and the regulator (the regulator key it is encrypted to, ephemeral key,
ciphertext) need.
"""

from __future__ import annotations

from accord.base.encoding import Value
from accord.base.errors import GenesisError
from accord.base.genesis import Genesis
from accord.contracts.base import Context, Contract, method
from accord.zk import notes as zk
from accord.zk.babyjub import check_key
from accord.zk.poseidon import hash2

CIRCUIT = "shielded_transfer"
ROOT_WINDOW = 32
MAX_NOTE_BLOB = 512
DEFAULT_DEPTH = 32


def _fe(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _b(x: int) -> bytes:
    return x.to_bytes(32, "big")


def _node_key(level: int, position: int) -> bytes:
    return b"t" + bytes([level]) + position.to_bytes(8, "big")


def regulator_key_of(genesis_params: dict[str, object]) -> tuple[int, int]:
    """The regulator's BabyJubJub key from ``zk_params["regulator"]`` ([x, y] decimal strings)."""
    raw = genesis_params.get("regulator")
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise GenesisError("zk_params.regulator must be [x, y]")
    try:
        point = (int(str(raw[0])), int(str(raw[1])))
        return check_key(point, "the regulator key")
    except Exception as e:  # noqa: BLE001 - any parse problem is a genesis problem
        raise GenesisError(f"zk_params.regulator: {e}") from None


class ShieldedPool(Contract):
    name = "shielded_pool"

    def __init__(self, genesis: Genesis) -> None:
        super().__init__(genesis)
        params = dict(self.genesis.zk_params)
        pool = params.get("shielded_pool") or {}
        depth = pool.get("depth", DEFAULT_DEPTH) if isinstance(pool, dict) else DEFAULT_DEPTH
        if type(depth) is not int or not 1 <= depth <= 32:
            raise GenesisError("zk_params.shielded_pool.depth must be in 1..32")
        self.depth = depth
        if "regulator" in params:
            regulator_key_of(params)  # a bad genesis key is refused at start-up
        self.zeros = zk.zeros(depth)

    def genesis_state(self) -> dict[str | bytes, Value]:
        return {
            "depth": self.depth,
            "next": 0,
            "filled": [_b(z) for z in self.zeros[: self.depth]],
            "roots": [_b(self.zeros[self.depth])],
        }

    # --- the tree ---------------------------------------------------------------------------

    def _insert(self, ctx: Context, leaves: list[int]) -> tuple[list[int], int]:
        """Append leaves to the frontier; return their indices and the new root."""
        nxt = int(ctx.get("next", 0))
        filled = [_fe(x) for x in ctx.get("filled")]
        ctx.require(nxt + len(leaves) <= 1 << self.depth, "the commitment tree is full")
        indices = []
        root = 0
        for leaf in leaves:
            idx, cur = nxt, leaf
            for level in range(self.depth):
                ctx.set(_node_key(level, idx), _b(cur))
                if idx % 2 == 0:
                    filled[level] = cur
                    cur = hash2(cur, self.zeros[level])
                else:
                    cur = hash2(filled[level], cur)
                idx //= 2
            indices.append(nxt)
            nxt += 1
            root = cur
        ctx.set("next", nxt)
        ctx.set("filled", [_b(x) for x in filled])
        roots = list(ctx.get("roots"))
        roots.append(_b(root))
        ctx.set("roots", roots[-ROOT_WINDOW:])
        return indices, root

    # --- methods ----------------------------------------------------------------------------

    @method
    def transact(
        self, ctx: Context, proof: bytes, inputs: list, notes: list, recipient: bytes
    ) -> dict:
        """Deposit, transfer or withdraw with one shielded-transfer proof (see the module)."""
        # The regulator key in force at this block's height: genesis's until governance
        # rotates it (``rotate_regulator``); from the activation height only transfers
        # encrypted to the new key land, so no transfer is readable by a retired key alone.
        regulator = ctx.in_force("regulator")
        ctx.require(regulator is not None, "no regulator key in force: the pool is closed")
        ctx.require(len(proof) == 128, "the proof must be 128 compressed bytes")
        ctx.require(
            len(inputs) == zk.N_TRANSFER_PUBLIC, f"expected {zk.N_TRANSFER_PUBLIC} public inputs"
        )
        for x in inputs:
            ctx.require(type(x) is bytes and len(x) == 32, "public inputs are 32-byte values")
            ctx.require(_fe(x) < zk.FIELD, "a public input is not below the field size")
        ctx.require(len(notes) == 2, "two note ciphertexts, one per output")
        for blob in notes:
            ctx.require(
                type(blob) is bytes and 0 < len(blob) <= MAX_NOTE_BLOB,
                f"note ciphertexts are 1..{MAX_NOTE_BLOB} bytes",
            )
        pub = [_fe(x) for x in inputs]
        root = inputs[zk.PUB_ROOT]
        nf = inputs[zk.PUB_NF : zk.PUB_NF + 2]
        cm = pub[zk.PUB_CM : zk.PUB_CM + 2]
        deposit, withdrawal = pub[zk.PUB_DEPOSIT], pub[zk.PUB_WITHDRAWAL]

        ctx.require(root in ctx.get("roots"), "unknown or too old Merkle root")
        ctx.require(nf[0] != nf[1], "the two nullifiers are equal")
        for n in nf:
            ctx.require(not ctx.has(b"n" + n), "double spend: nullifier already used")
        ctx.require(
            pub[zk.PUB_REGULATOR : zk.PUB_REGULATOR + 2] == [int(regulator[0]), int(regulator[1])],
            f"the transfer is not encrypted to the regulator key in force at height {ctx.height}",
        )
        # An identity ephemeral key (scalar 0 mod l) would make the regulator's pads public
        # constants; the circuit refuses it too. In the subgroup (the proof shows E = e*Base8),
        # x = 0 exactly at the identity.
        ctx.require(
            pub[zk.PUB_EPHEMERAL] != 0,
            "the regulator's ephemeral key is the identity: the transfer would be public",
        )
        ctx.require(deposit < 2**63 and withdrawal < 2**63, "amount too large")
        if withdrawal:
            ctx.require(len(recipient) == 20, "a withdrawal needs a 20-byte recipient address")
        else:
            ctx.require(recipient == b"", "no withdrawal: the recipient must be empty")
        ctx.require(
            pub[zk.PUB_BIND] == zk.transfer_bind(ctx.chain_id, recipient, notes),
            "the proof is bound to another recipient or other notes",
        )
        # Compressed proof bytes: accord.zk verifiers take them as well as snarkjs JSON.
        ctx.require(ctx.verify_proof(CIRCUIT, proof, pub), "invalid shielded-transfer proof")

        # Effects, after every check.
        for n in nf:
            ctx.set(b"n" + n, 1)
        if deposit:
            # From the pool's direct caller, within its explicit allowance (see the module).
            ctx.call("token", "transfer_from", owner=ctx.sender, to=ctx.address, amount=deposit)
        if withdrawal:
            ctx.call("token", "transfer", to=recipient, amount=withdrawal)
        indices, new_root = self._insert(ctx, cm)
        ctx.emit(
            "Transfer",
            nullifiers=list(nf),
            commitments=[_b(c) for c in cm],
            indices=indices,
            notes=list(notes),
            regulator=list(inputs[zk.PUB_REGULATOR : zk.PUB_REGULATOR + 2]),
            ephemeral=list(inputs[zk.PUB_EPHEMERAL : zk.PUB_EPHEMERAL + 2]),
            ciphertext=list(inputs[zk.PUB_CIPHER : zk.PUB_CIPHER + 5]),
            deposit=deposit,
            withdrawal=withdrawal,
            root=_b(new_root),
        )
        return {"indices": indices, "root": _b(new_root)}

    @method(readonly=True)
    def root(self, ctx: Context) -> bytes:
        return bytes(ctx.get("roots")[-1])

    @method(readonly=True)
    def is_spent(self, ctx: Context, nullifier: bytes) -> bool:
        return ctx.has(b"n" + nullifier)

    @method(readonly=True)
    def path(self, ctx: Context, index: int) -> dict:
        """The Merkle path of leaf ``index`` against the current root: ``siblings`` from the
        leaf up, ``bits`` (1 where the node is a right child) and that ``root``. A wallet that
        follows no events gets its witness from any node this way (and checks it against a root
        a light client verified)."""
        ctx.require(0 <= index < int(ctx.get("next", 0)), f"leaf {index} is not in the tree")
        siblings, bits = [], []
        i = index
        for level in range(self.depth):
            node = ctx.get(_node_key(level, i ^ 1))
            siblings.append(bytes(node) if node is not None else _b(self.zeros[level]))
            bits.append(i & 1)
            i //= 2
        return {
            "siblings": siblings,
            "bits": bits,
            "root": bytes(ctx.get("roots")[-1]),
            "leaf": bytes(ctx.get(_node_key(0, index))),
        }

    @method(readonly=True)
    def size(self, ctx: Context) -> int:
        return int(ctx.get("next", 0))
