"""``accord node backup DIR DEST`` and ``accord node restore BACKUP DIR``.

``DIR`` is a validator's folder (its ``node.json`` names the data folder). A backup is taken
while the validator runs or not; a restore goes only into an empty data folder that no
running validator holds, and ends with the full check of ``accord node DIR --verify``.
"""

from __future__ import annotations

import json
from pathlib import Path


def _data_dir(node_dir: Path) -> Path:
    from accord.node.config import NodeConfig

    return node_dir / NodeConfig.load(node_dir).data_dir


def run(command: str, paths: list[Path]) -> int:
    from accord.base.errors import ValidationError
    from accord.storage import backup as b

    if len(paths) != 2:
        usage = (
            "accord node backup DIR DEST"
            if command == "backup"
            else "accord node restore BACKUP DIR"
        )
        raise ValidationError(f"usage: {usage}")
    if command == "backup":
        node_dir, dest = paths
        manifest = b.backup(_data_dir(node_dir), dest)
        print(json.dumps({"ok": True, "backup": str(dest), **manifest}))
        return 0
    backup_dir, node_dir = paths
    manifest = b.restore(backup_dir, _data_dir(node_dir))
    print(
        json.dumps(
            {
                "restored": str(backup_dir),
                "head_height": manifest["head_height"],
                "head_hash": manifest["head_hash"],
            }
        )
    )
    from accord.cli.node import _verify

    return _verify(node_dir)  # the full check: every block and state entry of the restored store
