"""``accord status``: what a node says about itself and its chain."""

from __future__ import annotations

import argparse

from accord.cli.remote import STATUS_FIELDS, Remote, add_target, emit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show a node's height, head, peers and health")
    add_target(p)
    p.set_defaults(func=_status)


def _status(args: argparse.Namespace) -> int:
    r = Remote(args)
    try:
        st = r.doc(r.client.status, fields=STATUS_FIELDS)
    finally:
        r.close()
    healthy = bool(st.get("healthy", True)) and bool(st.get("running", True))
    lines = [
        f"node      {st.get('name')} (validator {st.get('index')}) at {r.url}",
        f"chain     {st.get('chain_id')}",
        f"height    {st.get('height')}  head {str(st.get('head_hash', ''))[:16]}",
        f"round     {st.get('round')}",
        f"peers     {len(st.get('peers') or [])} connected",
        f"mempool   {st.get('mempool')} transactions",
        f"health    {'ok' if healthy else 'UNHEALTHY: ' + str(st.get('fault') or 'not running')}",
    ]
    if st.get("holding"):
        lines.append("restored  holding: catching up by certificates, not voting yet")
    emit(args, {"url": r.url, **st}, lines)
    return 0 if healthy else 1
