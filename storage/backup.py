"""Backups of a validator's data folder: a consistent copy, a manifest, a checksum.

:func:`backup` copies the LMDB environment from inside one read transaction (LMDB's own
copy), so the copy is the store as of one commit, whether the validator runs (in another
process) or is stopped. ``backup.json`` records what the copy holds (head height and hash,
state root, base) and the SHA-256 of ``data.mdb``. :func:`restore` checks that checksum
first (a flipped byte in the backup is refused before anything is written), writes only into
an empty data folder (never over a store, never into a folder a running validator holds),
and checks that the restored store has the head the manifest names; the caller then runs the
full check (``accord node DIR --verify``). A restore leaves :data:`RESTORED` in the data
folder: the node's first start then catches up without voting and adopts the votes its key
cast after the backup (``accord.node.doublesign``) instead of halting on them.

In-process note: LMDB must not be opened twice in one process (closing one handle drops the
other's locks), so a host application backs up its own running node through the node's open
store (:func:`backup_store`); other processes (``accord node backup``) use :func:`backup`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import time
from pathlib import Path
from typing import Any

import lmdb

from accord.base.errors import AccordError
from accord.storage.lock import FolderLock
from accord.storage.store import SCHEMA_VERSION, Store

FORMAT = 1
MANIFEST = "backup.json"
DATA = "data.mdb"
RESTORED = "restored.json"
"""Left in a data folder by :func:`restore`: the folder's safety record is older than its
key's history. The node reads it (``accord.node.doublesign``), catches up without voting,
and removes it once it has."""


class BackupError(AccordError):
    """A backup that cannot be made or restored (damaged, incomplete, or the target is not empty)."""

    code = "backup_refused"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _describe(env_dir: Path) -> dict[str, Any]:
    """Head, root and base of the store in ``env_dir`` (opened read-only, its own handle)."""
    env = lmdb.open(str(env_dir), readonly=True, lock=False, max_dbs=16)
    try:
        meta = env.open_db(b"meta", create=False)
        with env.begin(db=meta) as txn:
            head = txn.get(b"accord/head")
            root = txn.get(b"accord/state_root")
            base = txn.get(b"accord/base")
            schema = txn.get(b"accord/schema")
    except lmdb.Error as e:
        raise BackupError(f"{env_dir} is not a readable store: {e}") from None
    finally:
        env.close()
    if head is None or len(head) != 40:
        raise BackupError(f"{env_dir} holds no chain (no head)")
    return {
        "head_height": struct.unpack(">Q", head[:8])[0],
        "head_hash": head[8:].hex(),
        "state_root": (root or bytes(32)).hex(),
        "base": struct.unpack(">Q", base[:8])[0] if base else 0,
        "schema": struct.unpack(">Q", schema)[0] if schema and len(schema) == 8 else None,
    }


def _finish(tmp: Path, dest: Path, source: str) -> dict[str, Any]:
    info = _describe(tmp)
    data = tmp / DATA
    manifest = {
        "format": FORMAT,
        **info,
        "bytes": data.stat().st_size,
        "sha256": _sha256(data),
        "created_ms": int(time.time() * 1000),
        "source": source,
    }
    os.replace(data, dest / DATA)
    (dest / (MANIFEST + ".tmp")).write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(
        dest / (MANIFEST + ".tmp"), dest / MANIFEST
    )  # the manifest last: its presence means complete
    shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _prepare(dest: Path) -> Path:
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: back up into a new folder")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / ".partial"
    tmp.mkdir()
    return tmp


def backup(data_dir: str | Path, dest: str | Path) -> dict[str, Any]:
    """Copy the store in ``data_dir`` (running or not, from another process) into ``dest``."""
    data_dir, dest = Path(data_dir), Path(dest)
    if not (data_dir / DATA).exists():
        raise BackupError(f"{data_dir} holds no store")
    tmp = _prepare(dest)
    try:
        # lock=True: take part in LMDB's reader table, so the running writer keeps the pages
        # this copy reads (the copy is one read transaction).
        env = lmdb.open(str(data_dir), readonly=True, lock=True, max_dbs=16)
        try:
            env.copy(str(tmp), compact=True)
        finally:
            env.close()
        return _finish(tmp, dest, str(data_dir))
    except lmdb.Error as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BackupError(f"cannot copy {data_dir}: {e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def backup_store(store: Store, dest: str | Path) -> dict[str, Any]:
    """:func:`backup` of a store this process has open (an embedded node's)."""
    dest = Path(dest)
    tmp = _prepare(dest)
    try:
        with store._gate.reading():
            store._env.copy(str(tmp), compact=True)
        return _finish(tmp, dest, str(store.path))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_manifest(backup_dir: str | Path) -> dict[str, Any]:
    path = Path(backup_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BackupError(f"{path} is missing or unreadable ({e}): not a complete backup") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is not a backup manifest of format {FORMAT}")
    for key, kind in (("sha256", str), ("head_height", int), ("head_hash", str), ("bytes", int)):
        if not isinstance(manifest.get(key), kind):
            raise BackupError(f"{path}: {key} missing or malformed")
    return manifest


def restore(backup_dir: str | Path, data_dir: str | Path) -> dict[str, Any]:
    """Restore ``backup_dir`` into the empty data folder ``data_dir``; return its manifest.

    Refused (BackupError, nothing written) when the backup's checksum or head does not match
    its manifest, when ``data_dir`` already holds a store, and (FolderInUse) when a running
    validator holds ``data_dir``.
    """

    backup_dir, data_dir = Path(backup_dir), Path(data_dir)
    manifest = read_manifest(backup_dir)
    src = backup_dir / DATA
    if not src.exists() or src.stat().st_size != manifest["bytes"]:
        raise BackupError(
            f"{src} is missing or not {manifest['bytes']} bytes: the backup is incomplete"
        )
    if manifest.get("schema") not in (None, SCHEMA_VERSION):
        raise BackupError(
            f"the backup has store schema {manifest['schema']}, this version reads {SCHEMA_VERSION}"
        )
    if _sha256(src) != manifest["sha256"]:
        raise BackupError(
            f"{src} does not match the checksum in its manifest: the backup is damaged"
        )
    with FolderLock(data_dir):  # refused while a validator runs on this folder
        if (data_dir / DATA).exists():
            raise BackupError(
                f"{data_dir} already holds a store: restore only into an empty data folder "
                "(move the old one away first)"
            )
        # The marker first, still under the folder lock: a store placed without its marker
        # would start strictly, with no hold (a restore interrupted between the two left one:
        # review finding). A marker over no store is harmless: a start then holds, or a
        # second restore puts the store in and rewrites it.
        write_restored_marker(
            data_dir,
            {
                "restored_ms": int(time.time() * 1000),
                "head_height": manifest["head_height"],
                "backup_sha256": manifest["sha256"],
            },
        )
        part = data_dir / (DATA + ".partial")
        try:
            with src.open("rb") as fin, part.open("wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
                fout.flush()
                os.fsync(fout.fileno())
            if _sha256(part) != manifest["sha256"]:
                raise BackupError("the copy does not match the backup's checksum (disk error?)")
            os.replace(part, data_dir / DATA)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        info = _describe(data_dir)
        if (
            info["head_height"] != manifest["head_height"]
            or info["head_hash"] != manifest["head_hash"]
        ):
            (data_dir / DATA).unlink()
            raise BackupError("the restored store's head is not the one its manifest names")
    return manifest


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a crash leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power cut
    finally:
        os.close(fd)


def write_restored_marker(data_dir: str | Path, fields: dict[str, Any]) -> None:
    _write_atomic(Path(data_dir) / RESTORED, json.dumps({"format": FORMAT, **fields}) + "\n")


def read_restored_marker(data_dir: str | Path) -> dict[str, Any] | None:
    """The marker's fields; None when the folder was not restored. A marker that does not
    parse still says "restored" (an empty dict): failing towards the cautious start."""
    path = Path(data_dir) / RESTORED
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        doc = json.loads(text)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def clear_restored_marker(data_dir: str | Path) -> None:
    path = Path(data_dir) / RESTORED
    path.unlink(missing_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "BackupError",
    "backup",
    "backup_store",
    "clear_restored_marker",
    "read_manifest",
    "read_restored_marker",
    "restore",
    "write_restored_marker",
]
