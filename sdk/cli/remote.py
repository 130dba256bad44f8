"""What ``accord status``, ``accord query`` and ``accord send`` share: finding the node's API,
reading ``key=value`` arguments, and printing for people or as JSON.

Values on the command line are typed by their spelling, so that one command line means one
transaction: ``0x...`` is bytes (hex), a decimal integer is an integer, ``true``/``false``/
``null`` are themselves, ``"..."`` (JSON) or anything else is a string. ``--args-json`` takes
a JSON object instead, with the same rule for ``0x`` strings.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
from pathlib import Path
from typing import Any

from accord.base.errors import AccordError, DecodeError, Unavailable, ValidationError
from accord.client import Client

DEFAULT_URL = "http://127.0.0.1:8650"
# The node is not trusted: no answer these commands need comes near this size, and a bigger one
# is refused unread rather than held in memory.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
_INT = re.compile(r"-?(0|[1-9][0-9]*)\Z")


def add_target(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--url", default=None, help=f"the node's API URL (default: $ACCORD_URL, else {DEFAULT_URL})"
    )
    g.add_argument(
        "--node",
        type=Path,
        default=None,
        metavar="DIR",
        help="a validator's folder: its API address is read from DIR/node.json",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds the whole of each exchange with the node may take (default 10)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")


def resolve_url(args: argparse.Namespace) -> str:
    if args.node is not None:
        from accord.node.config import NodeConfig

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
    """A client of an untrusted node whose every failure becomes one clear AccordError (no
    traceback): transport failures, answers past :data:`MAX_ANSWER_BYTES` or the whole-exchange
    ``--timeout``, JSON nested too deep, and answers of the wrong shape."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.url = resolve_url(args)
        if not args.timeout > 0:
            raise ValidationError("--timeout must be a positive number of seconds")
        self.client = Client(
            self.url,
            timeout=args.timeout,
            max_response_bytes=MAX_ANSWER_BYTES,
            whole_request_timeout=True,
        )

    def __call__(self, fn: Any, *a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except AccordError as e:
            if isinstance(e, DecodeError):
                raise type(e)(f"bad answer from {self.url}: {e.message}") from None
            raise
        except TimeoutError as e:
            raise Unavailable(
                f"no answer from {self.url} within {self.client.timeout:g} s: {e}"
            ) from None
        except (OSError, http.client.HTTPException) as e:  # refused, reset, not HTTP
            raise Unavailable(
                f"no answer from {self.url}: {type(e).__name__}: {str(e)[:200]}"
            ) from None
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as e:
            # the client's parsing met an answer of another shape than the API's
            raise DecodeError(
                f"malformed answer from {self.url}: {type(e).__name__}: {str(e)[:200]}"
            ) from None

    def doc(
        self,
        fn: Any,
        *a: Any,
        fields: dict[str, type | tuple[type, ...]],
        required: tuple[str, ...] = (),
        **kw: Any,
    ) -> dict[str, Any]:
        """A JSON object answer, checked against ``fields`` (name -> allowed types; absent or
        null is allowed unless the name is ``required``)."""
        return expect_object(self(fn, *a, **kw), self.url, fields, required)

    def close(self) -> None:
        self.client.close()


def _type_ok(v: Any, types: type | tuple[type, ...]) -> bool:
    allowed = types if isinstance(types, tuple) else (types,)
    if isinstance(v, bool):  # JSON true is not a height
        return bool in allowed
    return isinstance(v, allowed)


def expect_object(
    doc: Any, url: str, fields: dict[str, type | tuple[type, ...]], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise DecodeError(
            f"malformed answer from {url}: expected a JSON object, got {type(doc).__name__}"
        )
    for name, types in fields.items():
        v = doc.get(name)
        if v is None:
            if name in required:
                raise DecodeError(f"malformed answer from {url}: no {name!r}")
            continue
        if not _type_ok(v, types):
            raise DecodeError(f"malformed answer from {url}: {name!r} is a {type(v).__name__}")
    return doc


STATUS_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "index": int,
    "chain_id": str,
    "height": int,
    "head_hash": str,
    "round": int,
    "peers": list,
    "mempool": int,
    "healthy": bool,
    "running": bool,
    "fault": str,
    "holding": bool,
}


def parse_value(text: str) -> Any:
    if text.startswith(("0x", "0X")):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise ValidationError(
                f"{text!r}: 0x must be followed by an even number of hex digits"
            ) from None
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
