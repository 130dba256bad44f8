"""Key files: validator (BLS) keys on disk, readable by their owner only.

Account keys (Ed25519) live in :mod:`accord.base.crypto.ed25519`; this module adds the validator key
file and the permission rule shared by both: a key file that others can read is refused, the
way ssh refuses a world-readable private key.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from accord.base.crypto import bls
from accord.base.errors import ValidationError


def write_private(path: str | Path, text: str) -> None:
    """Write ``text`` to a new file with mode 0600 (the mode is set at creation, not after)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def read_private(path: str | Path) -> str:
    path = Path(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ValidationError(
            f"key file {path} is readable by others (mode {mode:o}); chmod 600 it"
        )
    return path.read_text()


def save_validator_key(path: str | Path, secret: bytes) -> None:
    doc = {"type": "bls12-381", "secret": secret.hex(), "public_key": bls.public_key(secret).hex()}
    write_private(path, json.dumps(doc, indent=2) + "\n")


def load_validator_key(path: str | Path) -> bytes:
    doc = json.loads(read_private(path))
    if doc.get("type") != "bls12-381":
        raise ValidationError(f"{path} is not a BLS validator key")
    secret = bytes.fromhex(doc["secret"])
    if bls.public_key(secret).hex() != doc.get("public_key"):
        raise ValidationError(f"{path}: public key does not match the secret")
    return secret
