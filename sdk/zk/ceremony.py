"""The trusted-setup ceremony: powers of tau (phase 1) and per-circuit Groth16 keys (phase 2).

Groth16 is only sound if nobody knows the setup's toxic waste. A ceremony makes that hold as
long as ONE contributor destroyed their secret: every consortium member contributes in turn,
each contribution is verified before the next builds on it, and a public random beacon closes
each phase (so the last contributor cannot bias the result either).

Resumable by construction: every step writes one file in the ceremony folder (temporary name,
then rename), and a re-run resumes after the last file there. Preparing phase 2 of a 2^15
ceremony takes about 13 minutes on 2 cores; a killed run loses at most the step it was in.
Progress goes to stderr as rich progress bars.

A resumed run trusts no cached file unchecked: every file is verified by snarkjs (its whole
chain of contributions, and the contributor names of this ceremony in order) before it is
recorded in the folder's ``verified.json`` with its SHA-256; a re-run uses a cached file only
if its bytes still hash to that record, verifies in full a file without one, and refuses a file
that changed (see :class:`_Records` for what this does and does not stop).

Entropy: random by default (``secrets``); tests pass a ``seed`` to make contributions
deterministic (and their cache reusable) -- never do that for a real chain.

Folder layout (``<cache>/ceremony/<id>/``)::

    ceremony.json                  parameters, checked on every re-run
    phase1/00_new.ptau, 01_<member>.ptau, ..., beacon.ptau, final.ptau (prepared for phase 2)
    phase1/verified.json           SHA-256 of each file that passed its verification
    phase2/<circuit>-<r1cs hash>/00_setup.zkey, 01_<member>.zkey, ..., final.zkey, vk.json,
                                   verified.json
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accord.base.errors import ValidationError
from accord.zk import tools
from accord.zk.tools import ZkToolError
from accord.zk.transcript import contributors

DEFAULT_BEACON = "0d4b8e5a1b3c1f7e2a9d6c4b8f0e3a5d7c9b1e2f4a6c8d0e1f3a5b7c9d0e2f41"
"""A public beacon value. A real ceremony uses a value nobody could predict when the last
contribution was made (e.g. a future block hash of a public chain); pass it with ``--beacon``."""
BEACON_ITERATIONS = 10  # 2^10 hash iterations: a delay that keeps a beacon from being ground

MIN_POWER, MAX_POWER = 8, 20


@dataclass(frozen=True)
class CeremonyParams:
    power: int
    members: tuple[str, ...]
    beacon: str = DEFAULT_BEACON
    seed: str | None = None  # deterministic entropy (tests only)

    def check(self) -> None:
        if not MIN_POWER <= self.power <= MAX_POWER:
            raise ValidationError(f"ceremony power must be in {MIN_POWER}..{MAX_POWER}")
        if not self.members:
            raise ValidationError("a ceremony needs at least one member")
        if len(set(self.members)) != len(self.members):
            raise ValidationError("member names must be unique")
        for m in self.members:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", m):
                raise ValidationError(f"member name {m!r}: use letters, digits, _ . - only")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", self.beacon):
            raise ValidationError("the beacon must be 32 bytes in hex")

    def to_json(self) -> dict[str, Any]:
        return {
            "power": self.power,
            "members": list(self.members),
            "beacon": self.beacon.lower(),
            "deterministic": self.seed is not None,
        }

    def ident(self) -> str:
        """Deterministic ceremonies are keyed by all their inputs (so caches are shared);
        random ones by a fresh id unless the caller names the folder."""
        blob = json.dumps({**self.to_json(), "seed": self.seed}, sort_keys=True).encode()
        return f"p{self.power}-" + hashlib.sha256(blob).hexdigest()[:12]


ProgressFn = Callable[[str, float], None]
"""Called with (step description, fraction of that step done in [0, 1])."""


class Ceremony:
    """One ceremony folder: phase 1 once, then phase 2 for any number of circuits."""

    def __init__(self, folder: Path, params: CeremonyParams) -> None:
        params.check()
        self.folder = Path(folder)
        self.params = params
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "ceremony.json"
        if meta.exists():
            saved = json.loads(meta.read_text())
            if saved != params.to_json():
                raise ValidationError(
                    f"{self.folder} holds a ceremony with other parameters: {saved}"
                )
        else:
            _write_atomic(meta, json.dumps(params.to_json(), indent=2).encode())

    @classmethod
    def default_folder(cls, params: CeremonyParams, name: str | None = None) -> Path:
        return tools.cache_dir() / "ceremony" / (name or params.ident())

    # --- entropy ------------------------------------------------------------------------

    def _entropy(self, phase: str, member: str) -> str:
        if self.params.seed is None:
            return secrets.token_hex(32)
        return hashlib.sha256(f"{self.params.seed}/{phase}/{member}".encode()).hexdigest()

    # --- phase 1 ------------------------------------------------------------------------

    @property
    def phase1_dir(self) -> Path:
        return self.folder / "phase1"

    @property
    def ptau_final(self) -> Path:
        return self.phase1_dir / "final.ptau"

    def run_phase1(self, progress: ProgressFn | None = None) -> Path:
        """Powers of tau: new, one verified contribution per member, beacon, prepare phase 2.
        Returns the final ptau path, checked against its record (see :class:`_Records`)."""
        with tools.folder_lock(self.folder / "phase1.lock"):
            return self._run_phase1(progress)

    def _run_phase1(self, progress: ProgressFn | None) -> Path:
        d = self.phase1_dir
        d.mkdir(parents=True, exist_ok=True)
        p = self.params
        cli = tools.snarkjs_cli()
        records = _Records(d)
        steps: list[_Step] = []

        def new(out: Path, cb: Callable[[str], None]) -> None:
            tools.run(
                [*cli, "powersoftau", "new", "bn128", str(p.power), str(out), "-v"],
                on_line=cb,
                what="powersoftau new",
            )

        def same_as_new(path: Path) -> None:
            # "new" holds no secret and snarkjs will not verify a file without contributions:
            # it is checked by making it again (deterministic) and comparing the bytes.
            _check_remade(
                path,
                new,
                lambda a, b: tools.file_hash(a) == tools.file_hash(b),
                f"{path} is not the file `powersoftau new` makes",
            )

        steps.append(_Step(d / "00_new.ptau", "phase 1: new", new, same_as_new))
        for i, member in enumerate(p.members, start=1):

            def contribute(
                out: Path, cb: Callable[[str], None], i: int = i, member: str = member
            ) -> None:
                tools.run(
                    [
                        *cli,
                        "powersoftau",
                        "contribute",
                        str(steps[i - 1].out),
                        str(out),
                        f"--name={member}",
                        "-v",
                    ],
                    stdin=self._entropy("phase1", member) + "\n",
                    on_line=cb,
                    what=f"powersoftau contribute ({member})",
                )

            steps.append(
                _Step(
                    d / f"{i:02d}_{member}.ptau",
                    f"phase 1: contribution of {member} (+ verify)",
                    contribute,
                    self._ptau_verifier(cli, p.members[:i], None),
                )
            )

        last_contribution = steps[-1].out

        def beacon(out: Path, cb: Callable[[str], None]) -> None:
            tools.run(
                [
                    *cli,
                    "powersoftau",
                    "beacon",
                    str(last_contribution),
                    str(out),
                    p.beacon.lower(),
                    str(BEACON_ITERATIONS),
                    "-n=final beacon",
                    "-v",
                ],
                on_line=cb,
                what="powersoftau beacon",
            )

        everyone = self._ptau_verifier(cli, p.members, p.beacon.lower())
        steps.append(_Step(d / "beacon.ptau", "phase 1: beacon (+ verify)", beacon, everyone))
        beacon_out = steps[-1].out

        def prepare(out: Path, cb: Callable[[str], None]) -> None:
            tools.run(
                [*cli, "powersoftau", "prepare", "phase2", str(beacon_out), str(out), "-v"],
                on_line=cb,
                what="powersoftau prepare phase2",
            )

        steps.append(
            _Step(
                self.ptau_final,
                "phase 1: prepare phase 2 (+ verify)",
                prepare,
                everyone,
                parse=_prepare_progress(p.power),
                ships=True,
            )
        )
        _run_steps(steps, records, progress)
        return self.ptau_final

    def _ptau_verifier(
        self, cli: list[str], members: Sequence[str], beacon: str | None
    ) -> Callable[[Path], None]:
        want = _expected(members, beacon)

        def check(path: Path) -> None:
            out = tools.run(
                [*cli, "powersoftau", "verify", str(path)], what=f"powersoftau verify ({path.name})"
            )
            if "Powers of Tau Ok!" not in out:
                raise CeremonyCacheError(f"{path}: snarkjs did not confirm the powers of tau")
            _check_contributors(path, contributors(out, 1), want)

        return check

    # --- phase 2 ------------------------------------------------------------------------

    def phase2_dir(self, circuit: str, r1cs: Path) -> Path:
        return self.folder / "phase2" / f"{circuit}-{tools.file_hash(r1cs)[:12]}"

    def run_phase2(self, circuit: str, r1cs: Path, progress: ProgressFn | None = None) -> Path:
        """Groth16 setup for one circuit, one verified contribution per member, beacon, then
        the verification key. Returns the phase-2 folder (final.zkey, vk.json)."""
        ptau = self.run_phase1(progress)
        d = self.phase2_dir(circuit, r1cs)
        d.mkdir(parents=True, exist_ok=True)
        with tools.folder_lock(d.with_name(d.name + ".lock")):
            self._run_phase2(circuit, r1cs, ptau, d, progress)
        return d

    def _run_phase2(
        self, circuit: str, r1cs: Path, ptau: Path, d: Path, progress: ProgressFn | None
    ) -> None:
        cli = tools.snarkjs_cli()
        p = self.params
        # A zkey is only as good as the ptau and r1cs it was verified against: a record made
        # against other inputs does not count (the file is verified again).
        against = {"r1cs": tools.file_hash(r1cs), "ptau": tools.file_hash(ptau)}
        records = _Records(d)
        steps: list[_Step] = []

        def setup(out: Path, cb: Callable[[str], None]) -> None:
            tools.run(
                [*cli, "groth16", "setup", str(r1cs), str(ptau), str(out), "-v"],
                on_line=cb,
                what="groth16 setup",
            )

        steps.append(
            _Step(
                d / "00_setup.zkey",
                f"phase 2 ({circuit}): setup (+ verify)",
                setup,
                _zkey_verifier(cli, r1cs, ptau, [], None),
                against=against,
            )
        )
        for i, member in enumerate(p.members, start=1):

            def contribute(
                out: Path, cb: Callable[[str], None], i: int = i, member: str = member
            ) -> None:
                tools.run(
                    [
                        *cli,
                        "zkey",
                        "contribute",
                        str(steps[i - 1].out),
                        str(out),
                        f"--name={member}",
                        "-v",
                    ],
                    stdin=self._entropy("phase2/" + circuit, member) + "\n",
                    on_line=cb,
                    what=f"zkey contribute ({member})",
                )

            steps.append(
                _Step(
                    d / f"{i:02d}_{member}.zkey",
                    f"phase 2 ({circuit}): contribution of {member} (+ verify)",
                    contribute,
                    _zkey_verifier(cli, r1cs, ptau, p.members[:i], None),
                    against=against,
                )
            )
        last_contribution = steps[-1].out
        final = d / "final.zkey"

        def beacon(out: Path, cb: Callable[[str], None]) -> None:
            tools.run(
                [
                    *cli,
                    "zkey",
                    "beacon",
                    str(last_contribution),
                    str(out),
                    p.beacon.lower(),
                    str(BEACON_ITERATIONS),
                    "-n=final beacon",
                    "-v",
                ],
                on_line=cb,
                what="zkey beacon",
            )

        steps.append(
            _Step(
                final,
                f"phase 2 ({circuit}): beacon (+ verify)",
                beacon,
                _zkey_verifier(cli, r1cs, ptau, p.members, p.beacon.lower()),
                against=against,
                ships=True,
            )
        )

        def export(out: Path, cb: Callable[[str], None]) -> None:
            tools.run(
                [*cli, "zkey", "export", "verificationkey", str(final), str(out)],
                on_line=cb,
                what="zkey export verificationkey",
            )

        def same_as_export(path: Path) -> None:
            _check_remade(
                path, export, _same_json, f"{path} is not the verification key of {final}"
            )

        # The key's record names the zkey it was exported from, so a re-made final.zkey makes
        # the cached vk.json be compared again rather than trusted.
        steps.append(
            _Step(
                d / "vk.json",
                f"phase 2 ({circuit}): export verification key",
                export,
                same_as_export,
                ships=True,
                against=lambda: {"zkey": records.sha256_of(final)},
            )
        )
        _run_steps(steps, records, progress)


class CeremonyCacheError(ZkToolError):
    """A cached ceremony file that does not check out: changed since it was verified, or not
    what its step makes. Nothing built on it is used."""


def _check_remade(
    path: Path,
    make: Callable[[Path, Callable[[str], None]], None],
    same: Callable[[Path, Path], bool],
    error: str,
) -> None:
    """Check a cached file of a deterministic step by making it again beside it and comparing
    (for the steps that hold no secret, where that is the only check snarkjs offers)."""
    again = tools.tmp_path(path.with_name(path.name + ".again"))
    try:
        make(again, lambda line: None)
        if not same(again, path):
            raise CeremonyCacheError(error)
    finally:
        again.unlink(missing_ok=True)


def _same_json(a: Path, b: Path) -> bool:
    try:
        return bool(json.loads(a.read_text()) == json.loads(b.read_text()))
    except ValueError:
        return False


def _expected(members: Sequence[str], beacon: str | None) -> list[tuple[str, str | None]]:
    want: list[tuple[str, str | None]] = [(m, None) for m in members]
    return want + [("final beacon", beacon)] if beacon else want


def _check_contributors(
    path: Path, listed: list[tuple[str, str | None, str | None]], want: list[tuple[str, str | None]]
) -> None:
    got = [(name, beacon) for name, beacon, _ in listed]
    if got != want:
        raise CeremonyCacheError(f"{path}: its contributions {got} are not this ceremony's {want}")


def _zkey_verifier(
    cli: list[str], r1cs: Path, ptau: Path, members: Sequence[str], beacon: str | None
) -> Callable[[Path], None]:
    """``zkey verify`` checks the file's whole chain of contributions (each with its proof)
    against the r1cs and the ptau; the contributor names must be this ceremony's, in order."""
    want = _expected(members, beacon)

    def check(path: Path) -> None:
        out = tools.run(
            [*cli, "zkey", "verify", str(r1cs), str(ptau), str(path)],
            what=f"zkey verify ({path.name})",
        )
        if "ZKey Ok!" not in out:
            raise CeremonyCacheError(f"{path}: snarkjs did not confirm the key")
        _check_contributors(path, contributors(out, 2), want)

    return check


def _report(progress: ProgressFn | None, what: str, frac: float) -> None:
    if progress is not None:
        progress(what, frac)


def _linear_progress() -> Callable[[str], float | None]:
    """Tools without a parsable progress log: we only report start and end."""
    return lambda line: None


def _prepare_progress(power: int) -> Callable[[str], float | None]:
    """``prepare phase2 -v`` logs ``<section>: fft <k> ...`` for k = 0..power in 4 sections."""
    sections = ["tauG1", "tauG2", "alphaTauG1", "betaTauG1"]
    pat = re.compile(r"(tauG1|tauG2|alphaTauG1|betaTauG1): fft\s+(\d+)")

    def parse(line: str) -> float | None:
        m = pat.search(line)
        if not m:
            return None
        s = sections.index(m.group(1))
        return min(1.0, (s * (power + 1) + int(m.group(2))) / (4 * (power + 1)))

    return parse


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = tools.tmp_path(path)
    tmp.write_bytes(data)
    tmp.replace(path)


class _Records:
    """``verified.json`` of one step folder: for each step file, the SHA-256 of the bytes that
    passed its verification and what it was verified against.

    This is what makes resuming cheap and still checked: a cached file is used only if its
    bytes hash to its record (a SHA-256 of a few MB, not a snarkjs verification); a file with
    no record (a cache from before the records, a crash between rename and record) is verified
    in full once, then recorded; a file whose bytes differ from its record is refused.

    What this does and does not stop. Someone who can write the cache folder can swap, truncate
    or damage a step file, or put a valid file of another ceremony in its place (one that
    snarkjs alone would accept, and that a later step would happily build on): each of these
    is refused. The same person can also rewrite ``verified.json``, or replace the whole folder
    with a ceremony of their own that verifies: a record kept next to the files cannot tell
    that apart, and no check on one machine can, because whoever owns the machine sees (or
    chooses) every member's entropy anyway. That is why keys from this one-process ceremony
    are marked ``insecure-dev`` in genesis; real chains use the ceremony across machines
    (:mod:`accord.zk.transcript`), whose transcript anyone verifies from the published files.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / "verified.json"
        self._hashes: dict[Path, str] = {}
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as e:
            raise CeremonyCacheError(
                f"{self.path} is unreadable ({e}): delete the ceremony "
                f"folder {folder.parent} to rebuild it"
            ) from None
        if not isinstance(data, dict):
            raise CeremonyCacheError(f"{self.path} is not a record of verified files")
        self.data: dict[str, Any] = data

    def sha256_of(self, path: Path) -> str:
        """The file's hash, computed at most once per run (files do not change under the
        folder lock, except by the steps themselves, which call :meth:`forget`)."""
        h = self._hashes.get(path)
        if h is None:
            h = self._hashes[path] = tools.file_hash(path)
        return h

    def forget(self, path: Path) -> None:
        self._hashes.pop(path, None)

    def get(self, name: str) -> dict[str, Any] | None:
        rec = self.data.get(name)
        return rec if isinstance(rec, dict) else None

    def put(self, name: str, sha256: str, against: dict[str, str]) -> None:
        self.data[name] = {"sha256": sha256, "against": against}
        _write_atomic(self.path, (json.dumps(self.data, indent=2, sort_keys=True) + "\n").encode())


@dataclass
class _Step:
    """One step of a phase: ``make`` writes ``out`` (from the step before it), ``verify``
    raises unless a file is what this step of this ceremony makes. ``ships`` marks the files
    that leave the phase (the prepared ptau, the final zkey and its verification key): they
    are checked on every run, even when nothing is built."""

    out: Path
    what: str
    make: Callable[[Path, Callable[[str], None]], None]
    verify: Callable[[Path], None]
    parse: Callable[[str], float | None] = field(default_factory=_linear_progress)
    ships: bool = False
    against: dict[str, str] | Callable[[], dict[str, str]] = field(default_factory=dict)

    def inputs(self) -> dict[str, str]:
        return self.against() if callable(self.against) else dict(self.against)


def _run_steps(steps: Sequence[_Step], records: _Records, progress: ProgressFn | None) -> None:
    """Run a phase's steps, resuming after the last file already there.

    Only the files still in use are checked: the last existing one (the next step builds on
    it) and those that ship. An earlier cached file needs no check: snarkjs's verification of
    a later file covers every contribution before it (each ptau or zkey carries the whole
    chain with its proofs), and the later file is checked instead.
    """
    last = max((i for i, s in enumerate(steps) if s.out.exists()), default=-1)
    checked: set[int] = set()

    def check_cached(i: int) -> None:
        if i in checked:
            return
        s = steps[i]
        _check_cached(s, records, progress)
        checked.add(i)

    for i, s in enumerate(steps):
        if s.out.exists():
            if i == last or s.ships:
                check_cached(i)
            else:
                _report(progress, s.what + " (cached)", 1.0)
            continue
        if i < last and not s.ships:
            continue  # superseded: a later file already holds (and proves) this step
        if i > 0:
            check_cached(i - 1)  # what this step builds on
        _build(s, records, progress)
        checked.add(i)


def _check_cached(s: _Step, records: _Records, progress: ProgressFn | None) -> None:
    rec = records.get(s.out.name)
    h = records.sha256_of(s.out)
    if rec is not None and rec.get("sha256") != h:
        raise CeremonyCacheError(
            f"{s.out} changed after it was verified (its SHA-256 is not the recorded one): "
            f"nothing is built on it or shipped from it. Delete {s.out.parent} (or this file "
            "and every later step) to run these steps again."
        )
    if rec is not None and rec.get("against") == s.inputs():
        _report(progress, s.what + " (cached, checked)", 1.0)
        return
    # No record (an older cache) or one made against other inputs: verify in full, once.
    _report(progress, s.what + " (cached: verifying)", 0.0)
    s.verify(s.out)
    records.put(s.out.name, h, s.inputs())
    _report(progress, s.what + " (cached: verifying)", 1.0)


def _build(s: _Step, records: _Records, progress: ProgressFn | None) -> None:
    tmp = tools.tmp_path(s.out)
    tmp.unlink(missing_ok=True)
    _report(progress, s.what, 0.0)

    def on_line(line: str) -> None:
        frac = s.parse(line)
        if frac is not None:
            _report(progress, s.what, frac)

    s.make(tmp, on_line)
    if not tmp.exists():
        raise ZkToolError(f"{s.what}: the tool wrote no output")
    # Each output is verified before anyone builds on it (and before it is recorded).
    s.verify(tmp)
    records.forget(s.out)
    h = tools.file_hash(tmp)
    tmp.replace(s.out)
    records.put(s.out.name, h, s.inputs())
    _report(progress, s.what, 1.0)


class RichProgress:
    """A :data:`ProgressFn` that draws one rich progress bar per step on stderr."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=tools.stderr_console(),  # type: ignore[arg-type]
        )
        self._tasks: dict[str, Any] = {}
        self._t0 = time.monotonic()

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, what: str, frac: float) -> None:
        task = self._tasks.get(what)
        if task is None:
            task = self._tasks[what] = self._progress.add_task(what, total=1000)
        self._progress.update(task, completed=int(frac * 1000))


def run_ceremony(
    params: CeremonyParams,
    circuits: Sequence[tuple[str, Path]],
    *,
    folder: Path | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, dict[str, Any]]:
    """Run (or resume) a whole ceremony; return circuit name -> verification key JSON."""
    c = Ceremony(folder or Ceremony.default_folder(params), params)
    c.run_phase1(progress)
    out: dict[str, dict[str, Any]] = {}
    for name, r1cs in circuits:
        d = c.run_phase2(name, r1cs, progress)
        out[name] = json.loads((d / "vk.json").read_text())
    return out
