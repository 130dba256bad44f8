"""The trusted-setup ceremony: powers of tau (phase 1) and per-circuit Groth16 keys (phase 2).

Groth16 is only sound if nobody knows the setup's toxic waste. A ceremony makes that hold as
long as ONE contributor destroyed their secret: every consortium member contributes in turn,
each contribution is verified before the next builds on it, and a public random beacon closes
each phase (so the last contributor cannot bias the result either).

Resumable by construction: every step writes one file in the ceremony folder (temporary name,
then rename), and a re-run skips the steps whose output already exists. Preparing phase 2 of a
2^15 ceremony takes about 13 minutes on 2 cores; a killed run loses at most the step it was in.
Progress goes to stderr as rich progress bars.

Entropy: random by default (``secrets``); tests pass a ``seed`` to make contributions
deterministic (and their cache reusable) -- never do that for a real chain.

Folder layout (``<cache>/ceremony/<id>/``)::

    ceremony.json                  parameters, checked on every re-run
    phase1/00_new.ptau, 01_<member>.ptau, ..., beacon.ptau, final.ptau (prepared for phase 2)
    phase2/<circuit>-<r1cs hash>/00_setup.zkey, 01_<member>.zkey, ..., final.zkey, vk.json
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ValidationError
from . import tools
from .tools import ZkToolError

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
        """Powers of tau: new, one verified contribution per member, beacon, prepare phase 2,
        verify the prepared file. Returns the final ptau path."""
        with tools.folder_lock(self.folder / "phase1.lock"):
            return self._run_phase1(progress)

    def _run_phase1(self, progress: ProgressFn | None) -> Path:
        d = self.phase1_dir
        d.mkdir(parents=True, exist_ok=True)
        p = self.params
        cli = tools.snarkjs_cli()
        done_marker = d / "verified.ok"
        prev = d / "00_new.ptau"
        _step(prev, progress, "phase 1: new", lambda out, cb: tools.run(
            [*cli, "powersoftau", "new", "bn128", str(p.power), str(out), "-v"], on_line=cb,
            what="powersoftau new"), _linear_progress())
        for i, member in enumerate(p.members, start=1):
            out_file = d / f"{i:02d}_{member}.ptau"
            src = prev

            def contribute(out: Path, cb: Callable[[str], None], src: Path = src,
                           member: str = member) -> str:
                tools.run([*cli, "powersoftau", "contribute", str(src), str(out),
                           f"--name={member}", f"-e={self._entropy('phase1', member)}", "-v"],
                          on_line=cb, what=f"powersoftau contribute ({member})")
                # Each contribution is checked before anyone builds on it.
                return tools.run([*cli, "powersoftau", "verify", str(out)],
                                 what=f"powersoftau verify ({member})")

            _step(out_file, progress, f"phase 1: contribution of {member} (+ verify)", contribute,
                  _linear_progress())
            prev = out_file
        beacon = d / "beacon.ptau"
        _step(beacon, progress, "phase 1: beacon", lambda out, cb: tools.run(
            [*cli, "powersoftau", "beacon", str(prev), str(out), p.beacon.lower(),
             str(BEACON_ITERATIONS), "-n=final beacon", "-v"], on_line=cb,
            what="powersoftau beacon"), _linear_progress())
        _step(self.ptau_final, progress, "phase 1: prepare phase 2", lambda out, cb: tools.run(
            [*cli, "powersoftau", "prepare", "phase2", str(beacon), str(out), "-v"], on_line=cb,
            what="powersoftau prepare phase2"), _prepare_progress(p.power))
        if not done_marker.exists():
            _report(progress, "phase 1: verify the prepared file", 0.0)
            tools.run([*cli, "powersoftau", "verify", str(self.ptau_final)],
                      what="powersoftau verify (final)")
            _write_atomic(done_marker, b"ok\n")
            _report(progress, "phase 1: verify the prepared file", 1.0)
        return self.ptau_final

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

    def _run_phase2(self, circuit: str, r1cs: Path, ptau: Path, d: Path,
                    progress: ProgressFn | None) -> None:
        cli = tools.snarkjs_cli()
        prev = d / "00_setup.zkey"
        _step(prev, progress, f"phase 2 ({circuit}): setup", lambda out, cb: tools.run(
            [*cli, "groth16", "setup", str(r1cs), str(ptau), str(out), "-v"], on_line=cb,
            what="groth16 setup"), _linear_progress())
        for i, member in enumerate(self.params.members, start=1):
            out_file = d / f"{i:02d}_{member}.zkey"
            src = prev

            def contribute(out: Path, cb: Callable[[str], None], src: Path = src,
                           member: str = member) -> str:
                tools.run([*cli, "zkey", "contribute", str(src), str(out), f"--name={member}",
                           f"-e={self._entropy('phase2/' + circuit, member)}", "-v"],
                          on_line=cb, what=f"zkey contribute ({member})")
                return _zkey_verify(cli, r1cs, ptau, out, member)

            _step(out_file, progress, f"phase 2 ({circuit}): contribution of {member} (+ verify)",
                  contribute, _linear_progress())
            prev = out_file
        final = d / "final.zkey"

        def beacon(out: Path, cb: Callable[[str], None]) -> str:
            tools.run([*cli, "zkey", "beacon", str(prev), str(out), self.params.beacon.lower(),
                       str(BEACON_ITERATIONS), "-n=final beacon", "-v"], on_line=cb,
                      what="zkey beacon")
            return _zkey_verify(cli, r1cs, ptau, out, "beacon")

        _step(final, progress, f"phase 2 ({circuit}): beacon (+ verify)", beacon, _linear_progress())
        vk = d / "vk.json"
        _step(vk, progress, f"phase 2 ({circuit}): export verification key", lambda out, cb:
              tools.run([*cli, "zkey", "export", "verificationkey", str(final), str(out)],
                        on_line=cb, what="zkey export verificationkey"), _linear_progress())


def _zkey_verify(cli: list[str], r1cs: Path, ptau: Path, zkey: Path, who: str) -> str:
    out = tools.run([*cli, "zkey", "verify", str(r1cs), str(ptau), str(zkey)],
                    what=f"zkey verify ({who})")
    if "ZKey Ok!" not in out:
        raise ZkToolError(f"zkey verify ({who}) did not confirm the key")
    return out


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


def _step(
    out: Path,
    progress: ProgressFn | None,
    what: str,
    action: Callable[[Path, Callable[[str], None]], str],
    parse: Callable[[str], float | None],
) -> None:
    """Run ``action`` to produce ``out`` unless it exists (the resume rule)."""
    if out.exists():
        _report(progress, what + " (cached)", 1.0)
        return
    tmp = tools.tmp_path(out)
    tmp.unlink(missing_ok=True)
    _report(progress, what, 0.0)

    def on_line(line: str) -> None:
        frac = parse(line)
        if frac is not None:
            _report(progress, what, frac)

    action(tmp, on_line)
    if not tmp.exists():
        raise ZkToolError(f"{what}: the tool wrote no output")
    tmp.replace(out)
    _report(progress, what, 1.0)


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
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(), TimeRemainingColumn(),
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
