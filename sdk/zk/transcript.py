"""A trusted-setup ceremony across machines: one member per command, a transcript anyone checks.

Groth16 keys are sound if ONE contributor destroyed their secret, which only means something if
each member contributes on their own machine, with entropy nobody else sees, and if anyone can
check afterwards that every published contribution builds on the previous one. This module is
that protocol (``accord zk ceremony init|contribute|beacon|verify``); the single-process
:class:`accord.zk.ceremony.Ceremony` remains for tests and demos only.

The flow, each step on whoever's machine, exchanging folders (a shared drive, mail, git):

1. ``init``: the coordinator fixes the parameters (power; members in order, each with its
   Ed25519 public key; circuits with the hash of their sources, the hash of the r1cs they
   compile to and the compiler versions; the beacon chain and height, hash iterations) and runs
   ``powersoftau new`` (no secret in it). The folder gets ``transcript.json``, the first ptau
   and the r1cs files (for reference only: every later step compiles its own).
2. ``contribute`` (each member in turn, phase 1): takes the previous member's folder, compiles
   the circuits from its own copy of the sources and refuses a ceremony whose recorded source
   or r1cs hash differs (a coordinator cannot run the ceremony on a backdoored r1cs), verifies
   the transcript and the files it builds on, draws 32 bytes from the OS and hands them to
   snarkjs on its standard input (never a command line, which other users of a machine can
   read; snarkjs mixes in 64 bytes of its own randomness), verifies its own output, and
   writes the new ptau and the extended transcript into its own output folder. Each entry is
   signed with the member's key (over the file's hash, snarkjs's contribution hash and the
   transcript hash before it), so a relay cannot put its own file under a member's name; the
   member keeps the contribution hash it was shown and finds it in the final transcript.
3. ``prepare`` (anyone, after the last phase-1 contribution): ``prepare phase2`` and the
   Groth16 ``setup`` of every circuit (deterministic: anyone can redo them).
4. ``contribute`` again (each member, phase 2: one contribution per circuit), then ``beacon``
   (anyone): the ceremony's one beacon. ``init`` fixed a chain (its genesis hash) and a height
   in the future of every contribution; the value is that block's hash, taken with its commit
   certificate, which ``beacon`` and ``verify`` check against that chain's validators. It is
   mixed with the transcript hash after the last contribution,
   ``beacon = SHA-256(domain || transcript hash || block hash)``, the same for every circuit,
   iterated 2^k times by snarkjs; then the verification keys are exported. Nobody chooses
   the value and no member knew it when contributing.
5. ``verify`` (anyone, any time, with its own copy of the sources): the circuits compile to the
   recorded r1cs; every member signed its entries, in init's order, once each; the
   transcript's hash chain; every file's SHA-256; snarkjs's
   own verification of every step file (each ptau/zkey file carries all contributions so far
   with their proofs); the contributor names and contribution hashes in each file in transcript
   order; the beacon's certificate and derivation; and the verification keys re-exported from
   the final zkeys.

6. ``verify --attest`` (each member, after its own full ``verify``): the member signs the
   finished transcript's hash with the key hashes its export entries name, and the signature
   goes into ``transcript.json`` (:func:`attest`). The closing steps (prepare, setup, beacon,
   export) are signed by nobody, since anyone may run them; without attestations a validator,
   which only runs the cheap checks, could not tell an honest tail from one that names a
   key no contribution built (the second review's finding: it started on such a key).

Genesis records the transcript hash and each verification key's hash in
``zk_params["ceremony"]`` (:func:`genesis_record`); a validator refuses to start on a genesis
whose verification keys do not match that record, or whose transcript is not attested by
every member (:func:`check_genesis`). Every member, not a quorum: the keys are sound if one
member is honest, and nobody knows which one, so the honest one's word must be among them.
A member who withholds its attestation delays the chain; it cannot make it start on other keys.

Every entry is hashed with the canonical encoding: ``hash_i = H([domain, hash_{i-1}, entry])``,
``hash_0`` covering the parameters, so the last hash commits to the whole ceremony.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accord.base import encoding
from accord.base.crypto import ed25519
from accord.base.errors import AccordError, InvalidSignature, ValidationError
from accord.base.types import Certificate
from accord.consensus.aggregate import verify_certificate
from accord.zk import build, tools
from accord.zk.tools import ZkToolError

VERSION = 2
TRANSCRIPT = "transcript.json"
ENTRY_DOMAIN = "accord/ceremony-transcript/v2"
SIGN_DOMAIN = "accord/ceremony-contribution/v1"
ATTEST_DOMAIN = "accord/ceremony-attestation/v1"
SOURCE_DOMAIN = "accord/circuit-source/v1"
BEACON_DOMAIN = b"accord/ceremony-beacon/v1"
MIN_ITERATIONS, MAX_ITERATIONS = 10, 30  # snarkjs takes 2^10..2^63; 2^30 takes minutes
DEFAULT_ITERATIONS = 20
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")


class CeremonyError(ValidationError):
    """A transcript or step file that does not check out."""


def _h(value: encoding.Value) -> str:
    return encoding.hash_value(value).hex()


@dataclass(frozen=True)
class Params:
    power: int
    members: tuple[tuple[str, str], ...]  # (name, Ed25519 public key hex), in contribution order
    circuits: tuple[tuple[str, str, str], ...]  # (name, source hash, r1cs sha256)
    compiler: tuple[tuple[str, str], ...]  # (npm package, version) the sources compile with
    beacon_chain: str  # genesis hash (hex) of the chain whose block gives the beacon
    beacon_height: int  # that block's height, in the future of every contribution
    beacon_iterations: int = DEFAULT_ITERATIONS

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.members)

    def member_key(self, name: str) -> bytes:
        for m, k in self.members:
            if m == name:
                return bytes.fromhex(k)
        raise CeremonyError(f"{name!r} is not a member of this ceremony")

    def check(self) -> None:
        from accord.zk.ceremony import MAX_POWER, MIN_POWER

        if not MIN_POWER <= self.power <= MAX_POWER:
            raise CeremonyError(f"ceremony power must be in {MIN_POWER}..{MAX_POWER}")
        names_m = self.member_names
        if not names_m or len(set(names_m)) != len(names_m):
            raise CeremonyError("a ceremony needs members with unique names")
        keys = [k for _, k in self.members]
        if len(set(keys)) != len(keys):
            raise CeremonyError("every member needs a public key of its own")
        for _, k in self.members:
            if not re.fullmatch(r"[0-9a-f]{64}", k):
                raise CeremonyError("a member key must be an Ed25519 public key (64 hex digits)")
        names = [*names_m, *(c for c, _, _ in self.circuits)]
        for m in names:
            if not _NAME.fullmatch(m):
                raise CeremonyError(f"name {m!r}: use letters, digits, _ . - only")
        if len({c for c, _, _ in self.circuits}) != len(self.circuits):
            raise CeremonyError("circuit names must be unique")
        for _, src, h in self.circuits:
            if not (re.fullmatch(r"[0-9a-f]{64}", h) and re.fullmatch(r"[0-9a-f]{64}", src)):
                raise CeremonyError("source and r1cs hashes must be 64 lowercase hex digits")
        if not self.compiler:
            raise CeremonyError("the ceremony must name the compiler of its circuits")
        if not re.fullmatch(r"[0-9a-f]{64}", self.beacon_chain):
            raise CeremonyError("the beacon chain is named by its genesis hash (64 hex digits)")
        if not 1 <= self.beacon_height < 2**63:
            raise CeremonyError("the beacon height must be a block height (>= 1)")
        if not MIN_ITERATIONS <= self.beacon_iterations <= MAX_ITERATIONS:
            raise CeremonyError(f"beacon iterations: 2^{MIN_ITERATIONS}..2^{MAX_ITERATIONS}")

    def to_json(self) -> dict[str, Any]:
        return {
            "power": self.power,
            "members": [[n, k] for n, k in self.members],
            "circuits": [[n, s, h] for n, s, h in self.circuits],
            "compiler": [[n, v] for n, v in self.compiler],
            "beacon_chain": self.beacon_chain,
            "beacon_height": self.beacon_height,
            "beacon_iterations": self.beacon_iterations,
        }

    @classmethod
    def from_json(cls, d: Any) -> Params:
        try:
            p = cls(
                int(d["power"]),
                tuple((str(n), str(k)) for n, k in d["members"]),
                tuple((str(n), str(s), str(h)) for n, s, h in d["circuits"]),
                tuple((str(n), str(v)) for n, v in d["compiler"]),
                str(d["beacon_chain"]),
                int(d["beacon_height"]),
                int(d["beacon_iterations"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CeremonyError(f"malformed ceremony parameters: {e}") from None
        p.check()
        return p


@dataclass
class Transcript:
    params: Params
    entries: list[dict[str, Any]]
    #: {"member", "signature"} per member who verified the finished ceremony (:func:`attest`).
    #: Outside the hash chain: they sign its last hash.
    attestations: list[dict[str, str]] = field(default_factory=list)

    @property
    def genesis_hash(self) -> str:
        return _h([ENTRY_DOMAIN, VERSION, encoding.canonical(self.params.to_json())])

    @property
    def hash(self) -> str:
        return self.entries[-1]["hash"] if self.entries else self.genesis_hash

    def append(self, **entry: Any) -> dict[str, Any]:
        body = {k: entry[k] for k in sorted(entry)}
        e = {**body, "prev": self.hash}
        e["hash"] = _h([ENTRY_DOMAIN, e["prev"], encoding.canonical(body)])
        self.entries.append(e)
        return e

    def check_chain(self) -> None:
        """Every entry's ``prev`` and ``hash`` recomputed from the parameters on."""
        prev = self.genesis_hash
        for i, e in enumerate(self.entries):
            if not isinstance(e, dict):
                raise CeremonyError(f"transcript entry {i} is not an object")
            _check_fields(i, e)
            body = {k: v for k, v in e.items() if k not in ("prev", "hash")}
            want = _h([ENTRY_DOMAIN, prev, encoding.canonical(dict(sorted(body.items())))])
            if e.get("prev") != prev or e.get("hash") != want:
                raise CeremonyError(f"transcript entry {i} ({e.get('step')}) breaks the hash chain")
            if e.get("step") == "contribute":
                self._check_signature(i, prev, body)
            prev = want
        expected = list(_plan(self.params))
        if len(self.entries) > len(expected):
            raise CeremonyError("the transcript has more steps than the ceremony")
        for i, (e, want_step) in enumerate(zip(self.entries, expected, strict=False)):
            got = (e.get("step"), e.get("phase"), e.get("circuit"), e.get("member"))
            if got != want_step:
                raise CeremonyError(f"transcript entry {i} is {got}, expected {want_step}")

    def _check_signature(self, i: int, prev: str, body: dict[str, Any]) -> None:
        """A contribution entry is the member's own: signed with the key ``init`` fixed for
        that name, over the file's hash, its contribution hash and the transcript before it
        (so a relay can neither swap in a file of its own under a member's name nor move a
        signed entry elsewhere in the ceremony)."""
        member = str(body.get("member"))
        sig = body.get("signature")
        unsigned = {k: v for k, v in body.items() if k != "signature"}
        try:
            ed25519.verify(
                self.params.member_key(member),
                signed_message(prev, unsigned),
                bytes.fromhex(str(sig)),
            )
        except (InvalidSignature, ValueError):
            raise CeremonyError(
                f"transcript entry {i}: {member}'s signature does not verify "
                "(not this member's contribution)"
            ) from None

    def record(self) -> dict[str, Any]:
        """What genesis records for this transcript and what its members attest: its hash
        and the key hash each export entry names."""
        return {
            "transcript": self.hash,
            "vks": {
                str(e["circuit"]): e.get("vk_hash")
                for e in sorted(
                    (e for e in self.entries if e.get("step") == "export"),
                    key=lambda e: str(e["circuit"]),
                )
            },
        }

    def check_attestations(self) -> None:
        """Every member signed :meth:`record` of this finished transcript, once."""
        if self.next_step() is not None:
            raise CeremonyError("the ceremony is not finished: nothing to attest")
        msg = attestation_message(self.record())
        seen: dict[str, str] = {}
        for a in self.attestations:
            member = a.get("member")
            if member in seen:
                raise CeremonyError(f"{member} attested twice")
            try:
                ed25519.verify(
                    self.params.member_key(str(member)), msg, bytes.fromhex(str(a.get("signature")))
                )
            except (InvalidSignature, ValueError):
                raise CeremonyError(
                    f"{member}'s attestation does not verify: it is not over this "
                    "transcript and the keys it exports"
                ) from None
            seen[str(member)] = str(a.get("signature"))
        missing = [m for m in self.params.member_names if m not in seen]
        if missing:
            raise CeremonyError(
                f"the ceremony is not attested by {', '.join(missing)}: each member runs "
                "`accord zk ceremony verify ... --member NAME --key KEY --attest` on the final "
                "folder after checking it"
            )

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / TRANSCRIPT
        tmp = tools.tmp_path(out)
        doc: dict[str, Any] = {
            "version": VERSION,
            "params": self.params.to_json(),
            "entries": self.entries,
        }
        if self.attestations:
            doc["attestations"] = self.attestations
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(out)
        return out

    @classmethod
    def load(cls, folder: Path) -> Transcript:
        return cls.from_file(Path(folder) / TRANSCRIPT)

    @classmethod
    def from_file(cls, path: Path) -> Transcript:
        """A transcript with its hash chain, plan and members' signatures checked."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CeremonyError(f"cannot read {path}: {e}") from None
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise CeremonyError(f"{path}: not a version-{VERSION} ceremony transcript")
        entries = doc.get("entries")
        if not isinstance(entries, list):
            raise CeremonyError(f"{path}: no entries")
        attestations = doc.get("attestations", [])
        if not isinstance(attestations, list) or not all(
            isinstance(a, dict)
            and set(a) == {"member", "signature"}
            and all(isinstance(v, str) for v in a.values())
            for a in attestations
        ):
            raise CeremonyError(f"{path}: attestations must be [{{member, signature}}, ...]")
        t = cls(Params.from_json(doc.get("params")), entries, attestations)
        t.check_chain()
        return t

    def next_step(self) -> tuple[str, int, str | None, str | None] | None:
        plan = list(_plan(self.params))
        return plan[len(self.entries)] if len(self.entries) < len(plan) else None

    def last_file(self, phase: int, circuit: str | None) -> dict[str, Any]:
        for e in reversed(self.entries):
            if e["phase"] == phase and e.get("circuit") == circuit and e["step"] != "export":
                return e
        raise CeremonyError(f"no phase-{phase} file yet")


_HEX64 = re.compile(r"[0-9a-f]{64}")
_FILE = re.compile(r"[A-Za-z0-9_.-]{1,160}")
_FIELDS: dict[str, tuple[tuple[str, re.Pattern[str] | None], ...]] = {
    "contribute": (("contribution", re.compile(r"[0-9a-f]{64,256}")), ("signature", None)),
    "beacon": (("beacon", _HEX64), ("value", None), ("certificate", None)),
    "export": (("vk_hash", _HEX64),),
}


def _check_fields(i: int, e: dict[str, Any]) -> None:
    """Every field a later step reads, present and of its one form: a transcript is input
    from whoever relayed it, and a missing ``file`` or a number for ``sha256`` must be a
    refusal by name, not a traceback in the middle of ``verify``."""
    fields = (("file", _FILE), ("sha256", _HEX64), *_FIELDS.get(str(e.get("step")), ()))
    for name, form in fields:
        v = e.get(name)
        if not isinstance(v, str) or (form is not None and not form.fullmatch(v)):
            raise CeremonyError(f"transcript entry {i} ({e.get('step')}): malformed {name!r}")
    if not isinstance(e.get("phase"), int) or isinstance(e.get("phase"), bool):
        raise CeremonyError(f"transcript entry {i}: malformed 'phase'")


def signed_message(prev: str, body: dict[str, Any]) -> bytes:
    """What a member signs for one contribution entry (everything but the signature)."""
    return encoding.encode([SIGN_DOMAIN, prev, encoding.canonical(dict(sorted(body.items())))])


def attestation_message(record: dict[str, Any]) -> bytes:
    """What a member signs to attest a finished ceremony (see :meth:`Transcript.record`)."""
    return encoding.encode([ATTEST_DOMAIN, encoding.canonical(record)])


def _plan(p: Params) -> list[tuple[str, int, str | None, str | None]]:
    """The ceremony's steps in order: (step, phase, circuit, member)."""
    steps: list[tuple[str, int, str | None, str | None]] = [("new", 1, None, None)]
    steps += [("contribute", 1, None, m) for m in p.member_names]
    steps += [("prepare", 1, None, None)]
    steps += [("setup", 2, c, None) for c, _, _ in p.circuits]
    steps += [("contribute", 2, c, m) for m in p.member_names for c, _, _ in p.circuits]
    steps += [("beacon", 2, c, None) for c, _, _ in p.circuits]
    steps += [("export", 2, c, None) for c, _, _ in p.circuits]
    return steps


def _PREPARED(t: Transcript) -> int:  # noqa: N802
    """Index of the phase-2 ptau's entry: after ``new`` and one contribution per member."""
    return 1 + len(t.params.members)


def certified_beacon(p: Params, chain: Any, certificate: str) -> str:
    """The beacon value: the hash of the block at the height ``init`` fixed on the chain
    ``init`` fixed, as 2f+1 of its validators certified it. Nobody chooses it, and nobody
    knew it when contributing. ``chain`` is that chain's :class:`accord.base.genesis.Genesis`;
    ``certificate`` the hex of the block's :meth:`accord.base.types.Certificate.encode`."""
    if chain.hash.hex() != p.beacon_chain:
        raise CeremonyError("the beacon chain's genesis is not the one init fixed")
    try:
        cert = Certificate.decode(bytes.fromhex(certificate))
    except (ValueError, AccordError) as e:
        raise CeremonyError(f"malformed beacon certificate: {e}") from None
    if cert.height != p.beacon_height:
        raise CeremonyError(
            f"the beacon certificate is for height {cert.height}, "
            f"init fixed height {p.beacon_height}"
        )
    try:
        verify_certificate(chain, chain.chain_id, cert, chain.quorum)
    except AccordError as e:
        raise CeremonyError(
            f"the beacon certificate does not verify against the chain's validators: {e}"
        ) from None
    return cert.block_hash.hex()


def derive_beacon(transcript_hash: str, value: str) -> str:
    """The beacon snarkjs gets: bound to everything contributed so far and to the public value
    of the beacon source, which nobody knew when the last contribution was made."""
    return hashlib.sha256(
        BEACON_DOMAIN + bytes.fromhex(transcript_hash) + value.encode()
    ).hexdigest()


# --- running snarkjs ----------------------------------------------------------------------------


def _snarkjs(args: Sequence[str], what: str, stdin: str | None = None) -> str:
    """snarkjs with an optional standard input (the contribution entropy goes there)."""
    cmd = [*tools.snarkjs_cli(), *args]
    try:
        proc = subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            cwd=str(tools.project_root()),
            check=False,
        )
    except OSError as e:
        raise ZkToolError(f"cannot start {cmd[0]}: {e}") from None
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    if proc.returncode != 0 or "[ERROR]" in out:
        tail = "\n".join(out.splitlines()[-15:])
        raise ZkToolError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return out


def _file_name(step: str, phase: int, circuit: str | None, member: str | None, index: int) -> str:
    ext = "ptau" if phase == 1 else "zkey"
    parts = [f"{index:03d}", step, circuit, member]
    return (
        "_".join(p for p in parts if p) + f".{ext}"
        if step != "export"
        else f"{index:03d}_vk_{circuit}.json"
    )


_HEX_ROW = re.compile(r"^\s*(?:[0-9a-f]{8}\s+){3}[0-9a-f]{8}\s*$")


def _hex_block(lines: Sequence[str], start: int) -> str | None:
    """The hash snarkjs prints as rows of 4 x 8 hex digits from ``lines[start]`` on."""
    rows = []
    for line in lines[start:]:
        if not _HEX_ROW.match(line):
            break
        rows.append("".join(line.split()))
    return "".join(rows) or None


def contribution_hash(out: str) -> str:
    """The contribution hash snarkjs prints when it makes a contribution (phase 1: the
    response hash; phase 2: the contribution hash). The member keeps it to find its own
    contribution in the final transcript and in every later file's list of contributions."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if "Contribution Response Hash" in line or "Contribution Hash:" in line:
            h = _hex_block(lines, i + 1)
            if h:
                return h
    raise ZkToolError("snarkjs did not print the contribution hash")


def contributors(out: str, phase: int) -> list[tuple[str, str | None, str | None]]:
    """(name, beacon generator or None, contribution hash) per contribution, from snarkjs's
    verify log, oldest first."""
    lines = out.splitlines()
    found: list[list[str | None]] = []
    pat = re.compile(
        r"Contribution #\d+: ?(.*)$" if phase == 1 else r"contribution #\d+ ?(.*?):\s*$"
    )
    for i, line in enumerate(lines):
        m = pat.search(line)
        if m:
            found.append(
                [m.group(1).strip(), None, _hex_block(lines, i + 1) if phase == 2 else None]
            )
            continue
        b = re.search(r"Beacon generator: ([0-9a-f]+)", line)
        if b and found:
            found[-1][1] = b.group(1)
        if phase == 1 and found and "Response Hash:" in line and found[-1][2] is None:
            found[-1][2] = _hex_block(lines, i + 1)
    return [(str(n), bg, h) for n, bg, h in found][::-1]  # snarkjs lists the newest first


def _verify_file(t: Transcript, entry_index: int, path: Path, folder_of: dict[str, Path]) -> None:
    """snarkjs's check of one step file, and the contributions it lists (names and hashes)
    against the transcript's signed entries."""
    e = t.entries[entry_index]
    phase = e["phase"]
    if phase == 1:
        out = _snarkjs(["powersoftau", "verify", str(path)], f"powersoftau verify ({path.name})")
        if "Powers of Tau Ok!" not in out:
            raise CeremonyError(f"{path.name}: snarkjs did not confirm the powers of tau")
    else:
        r1cs = _find(folder_of, f"{e['circuit']}.r1cs")
        ptau = _find(folder_of, t.entries[_PREPARED(t)]["file"])
        out = _snarkjs(
            ["zkey", "verify", str(r1cs), str(ptau), str(path)], f"zkey verify ({path.name})"
        )
        if "ZKey Ok!" not in out:
            raise CeremonyError(f"{path.name}: snarkjs did not confirm the key")
    want: list[tuple[str, str | None, str | None]] = []
    for prior in t.entries[: entry_index + 1]:
        if prior["phase"] != phase or prior.get("circuit") != e.get("circuit"):
            continue
        if prior["step"] == "contribute":
            want.append((prior["member"], None, prior.get("contribution")))
        elif prior["step"] == "beacon":
            want.append(("final beacon", prior["beacon"], None))
    got = contributors(out, phase)
    # a beacon's own hash is not recorded (anyone can recompute it from the beacon)
    got = [(n, bg, None if bg is not None else h) for n, bg, h in got]
    if got != want:
        raise CeremonyError(f"{path.name}: its contributions {got} are not the transcript's {want}")


def _find(folders: dict[str, Path], name: str) -> Path:
    path = folders.get(name)
    if path is None:
        raise CeremonyError(f"step file {name} is not in any given folder")
    return path


def _index(folders: Sequence[Path]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for d in folders:
        for f in Path(d).iterdir():
            if f.is_file() and f.name != TRANSCRIPT:
                out.setdefault(f.name, f)
    return out


def _check_hash(entry: dict[str, Any], path: Path) -> None:
    if tools.file_hash(path) != entry["sha256"]:
        raise CeremonyError(f"{path.name} is not the file the transcript records (SHA-256 differs)")


# --- the commands -------------------------------------------------------------------------------


def compiler_versions() -> tuple[tuple[str, str], ...]:
    """What turns a circuit's sources into its r1cs on this machine: with the same sources and
    these versions the build is deterministic, so every member can redo it."""
    return tuple((pkg, tools.package_version(pkg)) for pkg in ("circom2", "circomlib"))


def source_hash(spec: build.CircuitSpec) -> str:
    """The hash of everything a circuit is compiled from, except the compiler (recorded
    beside it): its name, the generated main file, and every ``.circom`` file of its folder
    (the includes; the same set :mod:`accord.zk.build` keys its cache on)."""
    files = sorted(spec.source.parent.glob("*.circom"))
    return _h(
        [
            SOURCE_DOMAIN,
            spec.name,
            spec.main_source() or spec.source.name,
            [[f.name, tools.file_hash(f)] for f in files],
        ]
    )


def compile_circuits(params: Params, specs: Sequence[build.CircuitSpec]) -> dict[str, Path]:
    """Compile, on this machine, the sources a member was given (from its own checkout, not
    from the ceremony's folders) and check they are the ceremony's: same source hash, same
    compiler, and the r1cs they compile to is the one ``init`` recorded. A coordinator who
    started the ceremony on another r1cs (a circuit with a constraint removed, same name and
    public inputs) is caught here. Returns circuit name -> this machine's r1cs."""
    mine = compiler_versions()
    if mine != params.compiler:
        raise CeremonyError(
            f"this machine compiles circuits with {dict(mine)}, the ceremony "
            f"with {dict(params.compiler)}: install the ceremony's versions"
        )
    given = {s.name: s for s in specs}
    wanted = {n for n, _, _ in params.circuits}
    if set(given) != wanted:
        raise CeremonyError(
            f"give the sources of exactly the ceremony's circuits {sorted(wanted)} "
            f"(--circuit/--file), not {sorted(given)}"
        )
    out: dict[str, Path] = {}
    for name, src_h, r1cs_h in params.circuits:
        spec = given[name]
        if source_hash(spec) != src_h:
            raise CeremonyError(
                f"circuit {name!r}: these sources are not the ones the ceremony "
                "was started for (source hash differs)"
            )
        r1cs = build.build(spec).r1cs
        if tools.file_hash(r1cs) != r1cs_h:
            raise CeremonyError(
                f"circuit {name!r}: the ceremony's r1cs is not what its sources "
                "compile to (the ceremony runs on another circuit)"
            )
        out[name] = r1cs
    return out


def init(
    out: Path,
    power: int,
    members: Sequence[tuple[str, bytes]],
    circuits: Sequence[build.CircuitSpec],
    beacon_chain: str,
    beacon_height: int,
    beacon_iterations: int = DEFAULT_ITERATIONS,
) -> Transcript:
    """Fix the parameters (members with their public keys; each circuit's source hash, the
    r1cs it compiles to and the compiler), run ``powersoftau new``."""
    out = Path(out)
    if (out / TRANSCRIPT).exists():
        raise CeremonyError(f"{out} already holds a ceremony")
    built = [(spec, build.build(spec).r1cs) for spec in circuits]
    params = Params(
        power,
        tuple((n, bytes(k).hex()) for n, k in members),
        tuple((spec.name, source_hash(spec), tools.file_hash(r)) for spec, r in built),
        compiler_versions(),
        beacon_chain,
        beacon_height,
        beacon_iterations,
    )
    params.check()
    return _init_with(out, params, {spec.name: r for spec, r in built})


def _init_with(out: Path, params: Params, r1cs: dict[str, Path]) -> Transcript:
    out.mkdir(parents=True, exist_ok=True)
    for name, path in r1cs.items():
        shutil.copyfile(path, out / f"{name}.r1cs")
    t = Transcript(params, [])
    name = _file_name("new", 1, None, None, 0)
    _snarkjs(["powersoftau", "new", "bn128", str(params.power), str(out / name)], "powersoftau new")
    t.append(
        step="new",
        phase=1,
        circuit=None,
        member=None,
        file=name,
        sha256=tools.file_hash(out / name),
    )
    t.save(out)
    return t


def _load_and_check_inputs(
    folder: Path, specs: Sequence[build.CircuitSpec]
) -> tuple[Transcript, dict[str, Path]]:
    """The previous step's transcript, with the files the next step builds on hashed and
    verified again (a resumed or forwarded ceremony never trusts a step file unchecked), and
    the circuits compiled here from the member's own sources."""
    t = Transcript.load(folder)
    files = _index([folder])
    # The r1cs a step is checked against is this machine's build, never the folder's copy.
    for name, r1cs in compile_circuits(t.params, specs).items():
        files[f"{name}.r1cs"] = r1cs
    heads: list[int] = []
    for phase, circuits in ((1, [None]), (2, [c for c, _, _ in t.params.circuits])):
        for c in circuits:
            idx = [
                i
                for i, e in enumerate(t.entries)
                if e["phase"] == phase and e.get("circuit") == c and e["step"] != "export"
            ]
            if idx:
                heads.append(idx[-1])
    for i in heads:
        e = t.entries[i]
        path = _find(files, e["file"])
        _check_hash(e, path)
        if e["step"] != "new":
            _verify_file(t, i, path, files)
    return t, files


def _carry(t: Transcript, files: dict[str, Path], out: Path) -> None:
    """Copy into the output folder what the next member needs to verify it besides the new
    step files: the r1cs files (for reference: each member compiles its own) and, in phase 2,
    the prepared ptau."""
    names = [f"{c}.r1cs" for c, _, _ in t.params.circuits]
    if len(t.entries) > _PREPARED(t):
        names.append(t.entries[_PREPARED(t)]["file"])
    for name in names:
        if not (out / name).exists():
            shutil.copyfile(_find(files, name), out / name)


def contribute(
    src: Path, out: Path, member: str, key: ed25519.AccountKey, specs: Sequence[build.CircuitSpec]
) -> Transcript:
    """This member's contribution(s) for the current phase (phase 1: the ptau; phase 2: one
    zkey per circuit), each entry signed with the member's key. Entropy: 32 bytes from the
    OS, passed to snarkjs on its stdin, never stored, never on a command line."""
    t = Transcript.load(Path(src))
    if t.params.member_key(member) != key.public_key:
        raise CeremonyError(f"this key is not {member}'s (init fixed another public key)")
    t, files = _load_and_check_inputs(Path(src), specs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    step = t.next_step()
    if step is None or step[0] != "contribute":
        raise CeremonyError(f"the ceremony's next step is {step}, not a contribution")
    if step[3] != member:
        raise CeremonyError(f"the next contribution is {step[3]}'s, not {member}'s")
    _carry(t, files, out)
    while (step := t.next_step()) is not None and step[0] == "contribute" and step[3] == member:
        _, phase, circuit, _ = step
        prev = _find(files, t.last_file(phase, circuit)["file"])
        name = _file_name("contribute", phase, circuit, member, len(t.entries))
        dst = out / name
        secret = secrets.token_bytes(32).hex() + "\n"
        if phase == 1:
            log = _snarkjs(
                ["powersoftau", "contribute", str(prev), str(dst), f"--name={member}"],
                f"powersoftau contribute ({member})",
                stdin=secret,
            )
        else:
            log = _snarkjs(
                ["zkey", "contribute", str(prev), str(dst), f"--name={member}"],
                f"zkey contribute ({member})",
                stdin=secret,
            )
        del secret
        body = {
            "step": "contribute",
            "phase": phase,
            "circuit": circuit,
            "member": member,
            "file": name,
            "sha256": tools.file_hash(dst),
            "contribution": contribution_hash(log),
        }
        body["signature"] = key.sign(signed_message(t.hash, body)).hex()
        t.append(**body)
        files[name] = dst
        _verify_file(t, len(t.entries) - 1, dst, files)
    t.save(out)
    return t


def prepare(src: Path, out: Path, specs: Sequence[build.CircuitSpec]) -> Transcript:
    """After the last phase-1 contribution (anyone; deterministic, so anyone can redo it):
    ``prepare phase2`` and the Groth16 ``setup`` of every circuit. Phase 1 has no beacon of
    its own: the ceremony's one beacon closes phase 2, after every contribution."""
    return _close(Path(src), Path(out), specs, "prepare", None)


def beacon(
    src: Path, out: Path, certificate: str, chain: Any, specs: Sequence[build.CircuitSpec]
) -> Transcript:
    """Close the ceremony with its one beacon: the block hash that ``certificate`` (hex of
    :meth:`accord.base.types.Certificate.encode`) certifies at the height fixed at ``init`` on the
    chain ``chain`` (its genesis); then export the verification keys."""
    return _close(Path(src), Path(out), specs, "beacon", certificate, chain)


def _close(
    src: Path,
    out: Path,
    specs: Sequence[build.CircuitSpec],
    first: str,
    certificate: str | None,
    chain: Any = None,
) -> Transcript:
    t, files = _load_and_check_inputs(src, specs)
    step = t.next_step()
    if step is None or step[0] != first:
        raise CeremonyError(f"the ceremony's next step is {step}, not {first}")
    value = "" if certificate is None else certified_beacon(t.params, chain, certificate)
    out.mkdir(parents=True, exist_ok=True)
    _carry(t, files, out)
    it = str(t.params.beacon_iterations)
    # One beacon for every circuit, bound to the transcript after the last contribution.
    b = derive_beacon(t.hash, value) if value else ""

    def record(step: str, phase: int, circuit: str | None, name: str, **kw: Any) -> None:
        t.append(
            step=step,
            phase=phase,
            circuit=circuit,
            member=None,
            file=name,
            sha256=tools.file_hash(out / name),
            **kw,
        )
        files[name] = out / name

    kinds = ("prepare", "setup") if first == "prepare" else ("beacon", "export")
    while (step := t.next_step()) is not None and step[0] in kinds:
        kind, phase, circuit, _ = step
        name = _file_name(kind, phase, circuit, None, len(t.entries))
        if kind == "beacon":
            prev = _find(files, t.last_file(phase, circuit)["file"])
            _snarkjs(
                ["zkey", "beacon", str(prev), str(out / name), b, it, "-n=final beacon"],
                "zkey beacon",
            )
            record(kind, phase, circuit, name, beacon=b, value=value, certificate=certificate)
            _verify_file(t, len(t.entries) - 1, out / name, files)
        elif kind == "prepare":
            prev = _find(files, t.last_file(1, None)["file"])
            _snarkjs(
                ["powersoftau", "prepare", "phase2", str(prev), str(out / name)],
                "powersoftau prepare phase2",
            )
            record(kind, phase, circuit, name)
            _verify_file(t, len(t.entries) - 1, out / name, files)
        elif kind == "setup":
            ptau = _find(files, t.last_file(1, None)["file"])
            _snarkjs(
                ["groth16", "setup", str(files[f"{circuit}.r1cs"]), str(ptau), str(out / name)],
                "groth16 setup",
            )
            record(kind, phase, circuit, name)
        else:  # export
            final = _find(files, t.last_file(2, circuit)["file"])
            _snarkjs(
                ["zkey", "export", "verificationkey", str(final), str(out / name)],
                "zkey export verificationkey",
            )
            record(
                kind, phase, circuit, name, vk_hash=vk_hash(json.loads((out / name).read_text()))
            )
    t.save(out)
    return t


@dataclass(frozen=True)
class Verified:
    transcript_hash: str
    vks: dict[str, dict[str, Any]]
    #: member -> its contribution hashes in the verified transcript, in order (phase 1, then
    #: one per circuit): what each member compares with what ``contribute`` printed to it.
    contributions: dict[str, list[str]]


def verify(folders: Sequence[Path], specs: Sequence[build.CircuitSpec], chain: Any) -> Verified:
    """Check a finished ceremony from its published folders (the transcript is taken from the
    first folder), against circuits compiled here from ``specs`` (the verifier's own copy of
    the sources) and with ``chain``, the genesis of the chain that gave the beacon. Raises
    :class:`CeremonyError` (or ``ZkToolError``) at the first fault."""
    if not folders:
        raise CeremonyError("no ceremony folder given")
    t = Transcript.load(Path(folders[0]))
    files = _index([Path(f) for f in folders])
    for name, r1cs in compile_circuits(t.params, specs).items():
        files[f"{name}.r1cs"] = r1cs
    if t.next_step() is not None:
        raise CeremonyError(f"the ceremony is not finished: next step {t.next_step()}")
    vks: dict[str, dict[str, Any]] = {}
    for i, e in enumerate(t.entries):
        path = _find(files, e["file"])
        _check_hash(e, path)
        if e["step"] == "beacon":
            last = max(j for j, c in enumerate(t.entries) if c["step"] == "contribute")
            if certified_beacon(t.params, chain, str(e.get("certificate"))) != e.get("value"):
                raise CeremonyError(f"entry {i}: the beacon value is not the certified block hash")
            if e.get("beacon") != derive_beacon(t.entries[last]["hash"], str(e.get("value"))):
                raise CeremonyError(
                    f"entry {i}: the beacon is not derived from the transcript "
                    "after the last contribution and the certified block"
                )
        if e["step"] == "export":
            final = _find(files, t.last_file(2, e["circuit"])["file"])
            tmp = Path(tools.cache_dir()) / f"ceremony-verify-{secrets.token_hex(6)}.json"
            try:
                _snarkjs(
                    ["zkey", "export", "verificationkey", str(final), str(tmp)],
                    "zkey export verificationkey",
                )
                again = json.loads(tmp.read_text())
            finally:
                tmp.unlink(missing_ok=True)
            vk = json.loads(path.read_text())
            if vk != again or e.get("vk_hash") != vk_hash(vk):
                raise CeremonyError(f"{path.name} is not the key of the final zkey")
            vks[e["circuit"]] = vk
        elif e["step"] != "new":
            _verify_file(t, i, path, files)
    contributions: dict[str, list[str]] = {m: [] for m in t.params.member_names}
    for e in t.entries:
        if e["step"] == "contribute":
            contributions[e["member"]].append(str(e["contribution"]))
    return Verified(t.hash, vks, contributions)


def attest(folder: Path, v: Verified, member: str, key: ed25519.AccountKey) -> Transcript:
    """Add ``member``'s attestation to the transcript in ``folder``, which ``v`` is the result
    of verifying in full (:func:`verify`): the member's signature over that transcript's hash
    and the key hashes it exports. A validator starts only on a transcript every member
    attested."""
    t = Transcript.load(Path(folder))
    if t.params.member_key(member) != key.public_key:
        raise CeremonyError(f"this key is not {member}'s (init fixed another public key)")
    if t.hash != v.transcript_hash or t.record() != genesis_record(v):
        raise CeremonyError(f"{folder} does not hold the transcript that was verified")
    sig = key.sign(attestation_message(t.record())).hex()
    mine = {m: a for a in t.attestations if (m := a.get("member")) != member}
    mine[member] = {"member": member, "signature": sig}
    t.attestations = [mine[m] for m in t.params.member_names if m in mine]
    t.save(Path(folder))
    return t


def check_member(v: Verified, member: str, hashes: Sequence[str]) -> None:
    """A member's own check: every contribution hash ``contribute`` printed to it is in the
    verified transcript under its name (a relay that replaced its file fails this)."""
    if member not in v.contributions:
        raise CeremonyError(f"{member!r} is not a member of this ceremony")
    mine = v.contributions[member]
    for h in hashes:
        if h.strip().lower() not in mine:
            raise CeremonyError(
                f"contribution {h[:16]}... of {member} is not in the transcript: "
                "the published ceremony does not build on your file"
            )


# --- genesis ------------------------------------------------------------------------------------


def vk_hash(vk: Any) -> str:
    return hashlib.sha256(
        json.dumps(vk, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def genesis_record(v: Verified) -> dict[str, Any]:
    """What genesis keeps in ``zk_params["ceremony"]``."""
    return {
        "transcript": v.transcript_hash,
        "vks": {n: vk_hash(vk) for n, vk in sorted(v.vks.items())},
    }


def check_genesis(
    zk_circuits: dict[str, Any],
    zk_params: dict[str, Any],
    transcript: Transcript | None = None,
    *,
    allow_insecure: bool = False,
) -> None:
    """A validator's start-up check of genesis's verification keys.

    A genesis without circuits needs no record. ``"ceremony": "insecure-dev"`` (one-machine
    keys) is refused unless the node was started with ``allow_insecure`` (test and demo
    chains). Otherwise genesis records a transcript hash and each key's hash, and the
    validator must have the transcript itself: its hash is genesis's, its hash chain and every
    member's signature hold, it is finished, its exported keys are genesis's keys, and every
    member attested it (signed its hash and those keys after a full ``verify``). These
    are the cheap checks; re-running snarkjs over every step file is ``accord zk ceremony
    verify``, which each member runs once."""
    if not zk_circuits:
        return
    rec = zk_params.get("ceremony")
    if rec == "insecure-dev":
        if not allow_insecure:
            raise ValidationError(
                "genesis marks its ZK keys insecure-dev (a one-machine ceremony): "
                "a validator starts on it only with allow_insecure_zk (test chains)"
            )
        return
    if not isinstance(rec, dict) or not re.fullmatch(r"[0-9a-f]{64}", str(rec.get("transcript"))):
        raise ValidationError(
            "genesis has verification keys but no ceremony transcript hash (zk_params.ceremony)"
        )
    vks = rec.get("vks")
    if not isinstance(vks, dict):
        raise ValidationError("zk_params.ceremony.vks must map circuits to key hashes")
    for name, vk in zk_circuits.items():
        if vks.get(name) != vk_hash(vk):
            raise ValidationError(f"the verification key of {name!r} is not the ceremony's")
    if transcript is None:
        raise ValidationError(
            "genesis records a ceremony: give the validator its transcript "
            "(node.json ceremony_transcript, or transcript.json next to genesis)"
        )
    if transcript.hash != rec["transcript"]:
        raise ValidationError(
            "the ceremony transcript is not the one genesis records (hash differs)"
        )
    if transcript.next_step() is not None:
        raise ValidationError("the ceremony transcript is not finished")
    derived = {e["circuit"]: e.get("vk_hash") for e in transcript.entries if e["step"] == "export"}
    if derived != dict(vks) or set(derived) != set(zk_circuits):
        raise ValidationError("the ceremony transcript does not produce the keys genesis records")
    # The export entries (like the beacon's) are nobody's signed word: only the members'
    # attestations say a full verification found these keys at the end of these contributions.
    transcript.check_attestations()
