"""What ``accord status``, ``accord query`` and ``accord send`` share: finding the node's API,
reading ``key=value`` arguments, and printing for people or as JSON.

Values on the command line are typed by their spelling, so that one command line means one
transaction: ``0x...`` is bytes (hex), a decimal integer is an integer, ``true``/``false``/
``null`` are themselves, ``"..."`` (JSON) or anything else is a string. ``--args-json`` takes
a JSON object instead, with the same rule for ``0x`` strings.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any

from ..client import Client
from ..errors import AccordError, Unavailable, ValidationError

DEFAULT_URL = "http://127.0.0.1:8650"
_INT = re.compile(r"-?(0|[1-9][0-9]*)\Z")


def add_target(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--url", default=None,
                   help=f"the node's API URL (default: $ACCORD_URL, else {DEFAULT_URL})")
    g.add_argument("--node", type=Path, default=None, metavar="DIR",
                   help="a validator's folder: its API address is read from DIR/node.json")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for each answer of the node (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")


def resolve_url(args: argparse.Namespace) -> str:
    if args.node is not None:
        from ..config import NodeConfig

        try:
            cfg = NodeConfig.load(args.node)
        except (OSError, ValueError) as e:
            raise ValidationError(f"cannot read {args.node / 'node.json'}: {e}") from None
        host = cfg.api_host if cfg.api_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        if not cfg.api_port:
            raise ValidationError(f"{args.node / 'node.json'} sets no api_port")
        scheme = "https" if getattr(cfg, "api_tls", None) else "http"
        return f"{scheme}://{host}:{cfg.api_port}"
    return str(args.url or os.environ.get("ACCORD_URL") or DEFAULT_URL)


class Remote:
    """A client whose transport failures become one clear AccordError (no traceback)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.url = resolve_url(args)
        self.client = Client(self.url, timeout=args.timeout)

    def __call__(self, fn: Any, *a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except AccordError:
            raise
        except (OSError, ValueError) as e:  # refused, reset, timed out, not HTTP
            raise Unavailable(f"no answer from {self.url}: {e}") from None

    def close(self) -> None:
        self.client.close()


def parse_value(text: str) -> Any:
    if text.startswith(("0x", "0X")):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise ValidationError(f"{text!r}: 0x must be followed by an even number of hex digits") from None
    if _INT.match(text):
        return int(text)
    if text in ("true", "false", "null"):
        return json.loads(text)
    if text.startswith('"'):
        try:
            v = json.loads(text)
        except ValueError:
            raise ValidationError(f"{text!r} is not a JSON string") from None
        if isinstance(v, str):
            return v
    return text


def _from_json(v: Any) -> Any:
    if isinstance(v, str) and v.startswith(("0x", "0X")):
        return parse_value(v)
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _from_json(x) for k, x in v.items()}
    if isinstance(v, float):
        raise ValidationError(f"{v}: contract arguments are integers, not floats")
    return v


def parse_args_list(pairs: list[str], args_json: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args_json is not None:
        try:
            doc = json.loads(args_json)
        except ValueError as e:
            raise ValidationError(f"--args-json is not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise ValidationError("--args-json must be a JSON object")
        out.update(_from_json(doc))
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name:
            raise ValidationError(f"{pair!r}: arguments are NAME=VALUE")
        out[name] = parse_value(value)
    return out


def jsonable(v: Any) -> Any:
    """Values for printing: bytes as 0x-hex (the spelling the commands accept back)."""
    if isinstance(v, bytes | bytearray):
        return "0x" + bytes(v).hex()
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    return v


def emit(args: argparse.Namespace, doc: dict[str, Any], lines: list[str]) -> None:
    if args.json:
        print(json.dumps(jsonable(doc), sort_keys=True))
    else:
        print("\n".join(lines))
