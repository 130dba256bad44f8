"""A trusted-setup ceremony across machines: one member per command, a transcript anyone checks.

Groth16 keys are sound if ONE contributor destroyed their secret, which only means something if
each member contributes on their own machine, with entropy nobody else sees, and if anyone can
check afterwards that every published contribution builds on the previous one. This module is
that protocol (``accord zk ceremony init|contribute|beacon|verify``); the single-process
:class:`accord.zk.ceremony.Ceremony` remains for tests and demos only.

The flow, each step on whoever's machine, exchanging folders (a shared drive, mail, git):

1. ``init``: the coordinator fixes the parameters (power, members in order, circuits with their
   r1cs hashes, the beacon source and its hash iterations) and runs ``powersoftau new`` (no
   secret in it). The folder gets ``transcript.json``, the first ptau and the r1cs files.
2. ``contribute`` (each member in turn, phase 1): takes the previous member's folder, verifies
   the transcript and the files it builds on, draws 32 bytes from the OS and hands them to
   snarkjs on its standard input (never a command line, which other users of a machine can
   read; snarkjs mixes in 64 bytes of its own randomness), verifies its own output, and
   writes the new ptau and the extended transcript into its own output folder.
3. ``beacon`` (anyone, phase 1): once the last contribution is published, the value named by the
   beacon source (e.g. the hash of a public chain's block at a height fixed at ``init``, so in
   the future of every contribution) is mixed with the transcript hash so far:
   ``beacon = SHA-256(domain || transcript hash || value)``, iterated 2^k times by snarkjs. No
   member could know it when contributing, and nobody chooses it. Then ``prepare phase2`` and
   the Groth16 ``setup`` of every circuit follow (deterministic: anyone can redo them).
4. ``contribute`` again (each member, phase 2: one contribution per circuit), then ``beacon``
   again (a second value of the beacon source), which also exports the verification keys.
5. ``verify`` (anyone, any time): the transcript's hash chain; every file's SHA-256; snarkjs's
   own verification of every step file (each ptau/zkey file carries all contributions so far
   with their proofs); the contributor names in each file in transcript order; the beacons'
   derivation; and the verification keys re-exported from the final zkeys.

Genesis records the transcript hash and each verification key's hash in
``zk_params["ceremony"]`` (:func:`genesis_record`); a validator refuses to start on a genesis
whose verification keys do not match that record (:func:`check_genesis`).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import encoding
from ..errors import ValidationError
from . import tools
from .tools import ZkToolError

VERSION = 1
TRANSCRIPT = "transcript.json"
ENTRY_DOMAIN = "accord/ceremony-transcript/v1"
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
    members: tuple[str, ...]
    circuits: tuple[tuple[str, str], ...]  # (name, r1cs sha256)
    beacon_source: str
    beacon_iterations: int = DEFAULT_ITERATIONS

    def check(self) -> None:
        from .ceremony import MAX_POWER, MIN_POWER

        if not MIN_POWER <= self.power <= MAX_POWER:
            raise CeremonyError(f"ceremony power must be in {MIN_POWER}..{MAX_POWER}")
        if not self.members or len(set(self.members)) != len(self.members):
            raise CeremonyError("a ceremony needs members with unique names")
        names = [*self.members, *(c for c, _ in self.circuits)]
        for m in names:
            if not _NAME.fullmatch(m):
                raise CeremonyError(f"name {m!r}: use letters, digits, _ . - only")
        if len({c for c, _ in self.circuits}) != len(self.circuits):
            raise CeremonyError("circuit names must be unique")
        for _, h in self.circuits:
            if not re.fullmatch(r"[0-9a-f]{64}", h):
                raise CeremonyError("an r1cs hash must be 64 lowercase hex digits")
        if not 1 <= len(self.beacon_source) <= 500:
            raise CeremonyError("describe the beacon source (1..500 characters)")
        if not MIN_ITERATIONS <= self.beacon_iterations <= MAX_ITERATIONS:
            raise CeremonyError(f"beacon iterations: 2^{MIN_ITERATIONS}..2^{MAX_ITERATIONS}")

    def to_json(self) -> dict[str, Any]:
        return {"power": self.power, "members": list(self.members),
                "circuits": [[n, h] for n, h in self.circuits],
                "beacon_source": self.beacon_source, "beacon_iterations": self.beacon_iterations}

    @classmethod
    def from_json(cls, d: Any) -> Params:
        try:
            p = cls(int(d["power"]), tuple(str(m) for m in d["members"]),
                    tuple((str(n), str(h)) for n, h in d["circuits"]), str(d["beacon_source"]),
                    int(d["beacon_iterations"]))
        except (KeyError, TypeError, ValueError) as e:
            raise CeremonyError(f"malformed ceremony parameters: {e}") from None
        p.check()
        return p


@dataclass
class Transcript:
    params: Params
    entries: list[dict[str, Any]]

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
            body = {k: v for k, v in e.items() if k not in ("prev", "hash")}
            want = _h([ENTRY_DOMAIN, prev, encoding.canonical(dict(sorted(body.items())))])
            if e.get("prev") != prev or e.get("hash") != want:
                raise CeremonyError(f"transcript entry {i} ({e.get('step')}) breaks the hash chain")
            prev = want
        expected = list(_plan(self.params))
        if len(self.entries) > len(expected):
            raise CeremonyError("the transcript has more steps than the ceremony")
        for i, (e, want_step) in enumerate(zip(self.entries, expected, strict=False)):
            got = (e.get("step"), e.get("phase"), e.get("circuit"), e.get("member"))
            if got != want_step:
                raise CeremonyError(f"transcript entry {i} is {got}, expected {want_step}")

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / TRANSCRIPT
        tmp = tools.tmp_path(out)
        tmp.write_text(json.dumps({"version": VERSION, "params": self.params.to_json(),
                                   "entries": self.entries}, indent=2) + "\n")
        tmp.replace(out)
        return out

    @classmethod
    def load(cls, folder: Path) -> Transcript:
        path = Path(folder) / TRANSCRIPT
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CeremonyError(f"cannot read {path}: {e}") from None
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise CeremonyError(f"{path}: not a version-{VERSION} ceremony transcript")
        entries = doc.get("entries")
        if not isinstance(entries, list):
            raise CeremonyError(f"{path}: no entries")
        t = cls(Params.from_json(doc.get("params")), entries)
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


def _plan(p: Params) -> list[tuple[str, int, str | None, str | None]]:
    """The ceremony's steps in order: (step, phase, circuit, member)."""
    steps: list[tuple[str, int, str | None, str | None]] = [("new", 1, None, None)]
    steps += [("contribute", 1, None, m) for m in p.members]
    steps += [("beacon", 1, None, None), ("prepare", 1, None, None)]
    steps += [("setup", 2, c, None) for c, _ in p.circuits]
    steps += [("contribute", 2, c, m) for m in p.members for c, _ in p.circuits]
    steps += [("beacon", 2, c, None) for c, _ in p.circuits]
    steps += [("export", 2, c, None) for c, _ in p.circuits]
    return steps


def derive_beacon(transcript_hash: str, value: str) -> str:
    """The beacon snarkjs gets: bound to everything contributed so far and to the public value
    of the beacon source, which nobody knew when the last contribution was made."""
    return hashlib.sha256(BEACON_DOMAIN + bytes.fromhex(transcript_hash) + value.encode()).hexdigest()


# --- running snarkjs ----------------------------------------------------------------------------


def _snarkjs(args: Sequence[str], what: str, stdin: str | None = None) -> str:
    """snarkjs with an optional standard input (the contribution entropy goes there)."""
    cmd = [*tools.snarkjs_cli(), *args]
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                              cwd=str(tools.project_root()), check=False)
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
    return "_".join(p for p in parts if p) + f".{ext}" if step != "export" else \
        f"{index:03d}_vk_{circuit}.json"


def contributors(out: str, phase: int) -> list[tuple[str, str | None]]:
    """(name, beacon generator or None) per contribution, from snarkjs's verify log."""
    lines = out.splitlines()
    found: list[tuple[str, str | None]] = []
    pat = re.compile(r"Contribution #\d+: ?(.*)$" if phase == 1 else r"contribution #\d+ ?(.*?):\s*$")
    for line in lines:
        m = pat.search(line)
        if m:
            found.append((m.group(1).strip(), None))
            continue
        b = re.search(r"Beacon generator: ([0-9a-f]+)", line)
        if b and found:
            found[-1] = (found[-1][0], b.group(1))
    return found[::-1]  # snarkjs lists the newest first


def _verify_file(t: Transcript, entry_index: int, path: Path, folder_of: dict[str, Path]) -> None:
    """snarkjs's check of one step file, and the contributors it lists against the transcript."""
    e = t.entries[entry_index]
    phase = e["phase"]
    if phase == 1:
        out = _snarkjs(["powersoftau", "verify", str(path)], f"powersoftau verify ({path.name})")
        if "Powers of Tau Ok!" not in out:
            raise CeremonyError(f"{path.name}: snarkjs did not confirm the powers of tau")
    else:
        r1cs = _find(folder_of, f"{e['circuit']}.r1cs")
        ptau = _find(folder_of, t.entries[len(t.params.members) + 2]["file"])
        out = _snarkjs(["zkey", "verify", str(r1cs), str(ptau), str(path)], f"zkey verify ({path.name})")
        if "ZKey Ok!" not in out:
            raise CeremonyError(f"{path.name}: snarkjs did not confirm the key")
    want: list[tuple[str, str | None]] = []
    for prior in t.entries[: entry_index + 1]:
        if prior["phase"] != phase or prior.get("circuit") != e.get("circuit"):
            continue
        if prior["step"] == "contribute":
            want.append((prior["member"], None))
        elif prior["step"] == "beacon":
            want.append(("final beacon", prior["beacon"]))
    got = contributors(out, phase)
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


def init(out: Path, power: int, members: Sequence[str], circuits: Sequence[tuple[str, Path]],
         beacon_source: str, beacon_iterations: int = DEFAULT_ITERATIONS) -> Transcript:
    """Fix the parameters, copy the r1cs files, run ``powersoftau new``."""
    out = Path(out)
    if (out / TRANSCRIPT).exists():
        raise CeremonyError(f"{out} already holds a ceremony")
    out.mkdir(parents=True, exist_ok=True)
    params = Params(power, tuple(members), tuple((n, tools.file_hash(r)) for n, r in circuits),
                    beacon_source, beacon_iterations)
    params.check()
    for name, r1cs in circuits:
        shutil.copyfile(r1cs, out / f"{name}.r1cs")
    t = Transcript(params, [])
    name = _file_name("new", 1, None, None, 0)
    _snarkjs(["powersoftau", "new", "bn128", str(power), str(out / name)], "powersoftau new")
    t.append(step="new", phase=1, circuit=None, member=None, file=name,
             sha256=tools.file_hash(out / name))
    t.save(out)
    return t


def _load_and_check_inputs(folder: Path, extra: Sequence[Path] = ()) -> tuple[Transcript, dict[str, Path]]:
    """The previous step's transcript, with the files the next step builds on hashed and
    verified again (a resumed or forwarded ceremony never trusts a step file unchecked)."""
    t = Transcript.load(folder)
    files = _index([folder, *extra])
    heads: list[int] = []
    for phase, circuits in ((1, [None]), (2, [c for c, _ in t.params.circuits])):
        for c in circuits:
            idx = [i for i, e in enumerate(t.entries)
                   if e["phase"] == phase and e.get("circuit") == c and e["step"] != "export"]
            if idx:
                heads.append(idx[-1])
    for name, h in t.params.circuits:
        r1cs = _find(files, f"{name}.r1cs")
        if tools.file_hash(r1cs) != h:
            raise CeremonyError(f"{r1cs.name} is not the circuit the ceremony was started for")
    for i in heads:
        e = t.entries[i]
        path = _find(files, e["file"])
        _check_hash(e, path)
        if e["step"] != "new":
            _verify_file(t, i, path, files)
    return t, files


def _carry(t: Transcript, files: dict[str, Path], out: Path) -> None:
    """Copy into the output folder what the next member needs to verify it besides the new
    step files: the r1cs files and, in phase 2, the prepared ptau."""
    names = [f"{c}.r1cs" for c, _ in t.params.circuits]
    if len(t.entries) > len(t.params.members) + 2:
        names.append(t.entries[len(t.params.members) + 2]["file"])
    for name in names:
        if not (out / name).exists():
            shutil.copyfile(_find(files, name), out / name)


def contribute(src: Path, out: Path, member: str) -> Transcript:
    """This member's contribution(s) for the current phase (phase 1: the ptau; phase 2: one
    zkey per circuit). Entropy: 32 bytes from the OS, passed to snarkjs on its stdin, never
    stored, never on a command line."""
    t, files = _load_and_check_inputs(Path(src))
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
            _snarkjs(["powersoftau", "contribute", str(prev), str(dst), f"--name={member}"],
                     f"powersoftau contribute ({member})", stdin=secret)
        else:
            _snarkjs(["zkey", "contribute", str(prev), str(dst), f"--name={member}"],
                     f"zkey contribute ({member})", stdin=secret)
        del secret
        t.append(step="contribute", phase=phase, circuit=circuit, member=member, file=name,
                 sha256=tools.file_hash(dst))
        files[name] = dst
        _verify_file(t, len(t.entries) - 1, dst, files)
    t.save(out)
    return t


def beacon(src: Path, out: Path, value: str) -> Transcript:
    """Close the current phase with the beacon source's ``value`` (see the module); phase 1 then
    prepares phase 2 and sets up every circuit, phase 2 exports the verification keys."""
    t, files = _load_and_check_inputs(Path(src))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not 1 <= len(value) <= 200:
        raise CeremonyError("the beacon value must be 1..200 characters")
    step = t.next_step()
    if step is None or step[0] != "beacon":
        raise CeremonyError(f"the ceremony's next step is {step}, not a beacon")
    _carry(t, files, out)
    it = str(t.params.beacon_iterations)

    def record(step: str, phase: int, circuit: str | None, name: str, **kw: Any) -> None:
        t.append(step=step, phase=phase, circuit=circuit, member=None, file=name,
                 sha256=tools.file_hash(out / name), **kw)
        files[name] = out / name

    while (step := t.next_step()) is not None and step[0] in ("beacon", "prepare", "setup", "export"):
        kind, phase, circuit, _ = step
        name = _file_name(kind, phase, circuit, None, len(t.entries))
        if kind == "beacon":
            b = derive_beacon(t.hash, value)
            prev = _find(files, t.last_file(phase, circuit)["file"])
            tool = "powersoftau" if phase == 1 else "zkey"
            _snarkjs([tool, "beacon", str(prev), str(out / name), b, it, "-n=final beacon"],
                     f"{tool} beacon")
            record(kind, phase, circuit, name, beacon=b, value=value)
            _verify_file(t, len(t.entries) - 1, out / name, files)
        elif kind == "prepare":
            prev = _find(files, t.last_file(1, None)["file"])
            _snarkjs(["powersoftau", "prepare", "phase2", str(prev), str(out / name)],
                     "powersoftau prepare phase2")
            record(kind, phase, circuit, name)
            _verify_file(t, len(t.entries) - 1, out / name, files)
        elif kind == "setup":
            ptau = _find(files, t.last_file(1, None)["file"])
            _snarkjs(["groth16", "setup", str(files[f"{circuit}.r1cs"]), str(ptau), str(out / name)],
                     "groth16 setup")
            record(kind, phase, circuit, name)
        else:  # export
            final = _find(files, t.last_file(2, circuit)["file"])
            _snarkjs(["zkey", "export", "verificationkey", str(final), str(out / name)],
                     "zkey export verificationkey")
            record(kind, phase, circuit, name)
    t.save(out)
    return t


@dataclass(frozen=True)
class Verified:
    transcript_hash: str
    vks: dict[str, dict[str, Any]]


def verify(folders: Sequence[Path]) -> Verified:
    """Check a finished ceremony from its published folders (the transcript is taken from the
    first folder). Raises :class:`CeremonyError` (or ``ZkToolError``) at the first fault."""
    if not folders:
        raise CeremonyError("no ceremony folder given")
    t = Transcript.load(Path(folders[0]))
    if t.next_step() is not None:
        raise CeremonyError(f"the ceremony is not finished: next step {t.next_step()}")
    files = _index([Path(f) for f in folders])
    for name, h in t.params.circuits:
        if tools.file_hash(_find(files, f"{name}.r1cs")) != h:
            raise CeremonyError(f"{name}.r1cs is not the circuit the ceremony was started for")
    vks: dict[str, dict[str, Any]] = {}
    for i, e in enumerate(t.entries):
        path = _find(files, e["file"])
        _check_hash(e, path)
        if e["step"] == "beacon" and e.get("beacon") != derive_beacon(
                t.entries[i - 1]["hash"], str(e.get("value"))):
            raise CeremonyError(f"entry {i}: the beacon is not derived from the transcript")
        if e["step"] == "export":
            final = _find(files, t.last_file(2, e["circuit"])["file"])
            tmp = Path(tools.cache_dir()) / f"ceremony-verify-{secrets.token_hex(6)}.json"
            try:
                _snarkjs(["zkey", "export", "verificationkey", str(final), str(tmp)],
                         "zkey export verificationkey")
                again = json.loads(tmp.read_text())
            finally:
                tmp.unlink(missing_ok=True)
            vk = json.loads(path.read_text())
            if vk != again:
                raise CeremonyError(f"{path.name} is not the key of the final zkey")
            vks[e["circuit"]] = vk
        elif e["step"] != "new":
            _verify_file(t, i, path, files)
    return Verified(t.hash, vks)


# --- genesis ------------------------------------------------------------------------------------


def vk_hash(vk: Any) -> str:
    return hashlib.sha256(json.dumps(vk, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def genesis_record(v: Verified) -> dict[str, Any]:
    """What genesis keeps in ``zk_params["ceremony"]``."""
    return {"transcript": v.transcript_hash, "vks": {n: vk_hash(vk) for n, vk in sorted(v.vks.items())}}


def check_genesis(zk_circuits: dict[str, Any], zk_params: dict[str, Any]) -> None:
    """A validator's start-up check: every verification key in genesis is one a verified
    ceremony produced (its hash is in ``zk_params["ceremony"]``, next to that ceremony's
    transcript hash, which anyone can re-verify with ``accord zk ceremony verify``).
    A genesis without circuits needs no record; one with circuits and no record is refused
    unless it says ``"ceremony": "insecure-dev"`` (test chains with local keys)."""
    if not zk_circuits:
        return
    rec = zk_params.get("ceremony")
    if rec == "insecure-dev":
        return
    if not isinstance(rec, dict) or not re.fullmatch(r"[0-9a-f]{64}", str(rec.get("transcript"))):
        raise ValidationError("genesis has verification keys but no ceremony transcript hash "
                              "(zk_params.ceremony)")
    vks = rec.get("vks")
    if not isinstance(vks, dict):
        raise ValidationError("zk_params.ceremony.vks must map circuits to key hashes")
    for name, vk in zk_circuits.items():
        if vks.get(name) != vk_hash(vk):
            raise ValidationError(f"the verification key of {name!r} is not the ceremony's")
