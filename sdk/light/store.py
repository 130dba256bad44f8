"""The light client's trusted state on disk: one small JSON file, replaced atomically.

What is kept, and why:

* ``chain_id`` and ``genesis_hash``: a store made for one chain is never used for another.
* ``head``: the highest verified height; sync resumes after it, so a restart does not re-sync.
* ``headers``: verified headers (canonical hex) with their certificates (None for a header that
  was authenticated by the parent link of a certified child, e.g. the genesis block's). Only the
  newest ``keep`` are kept: an older header is fetched again and re-verified on demand (its
  certificate is checked directly against the validator set).
* ``validator_sets``: on a chain whose set changes by vote, the changes proved so far and the
  height through which sets are known (:mod:`accord.ledger.validatorsets`).
* ``fork``: evidence of two conflicting certified headers. Once set, the client refuses to
  answer (a fork means more than f validators misbehaved; the validator set can no longer be
  trusted). Only an operator removing the file clears it.

Writes go to a temporary file that is fsynced and renamed over the old one, so a crash leaves
either the old or the new state, never a torn file. Everything loaded is re-decoded strictly
(``Header.decode``/``Certificate.decode``) and checked against the height it is filed under.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from accord.base.errors import DecodeError, LightClientError
from accord.base.types import Certificate, Header

FORMAT = 1


class TrustedHeader:
    """A header the light client verified, and the certificate that proved it (if any)."""

    __slots__ = ("header", "certificate")

    def __init__(self, header: Header, certificate: Certificate | None) -> None:
        self.header = header
        self.certificate = certificate

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def hash(self) -> bytes:
        return self.header.hash

    def to_json(self) -> list[str | None]:
        return [
            self.header.encode().hex(),
            self.certificate.encode().hex() if self.certificate else None,
        ]

    @classmethod
    def from_json(cls, v: Any) -> TrustedHeader:
        if type(v) is not list or len(v) != 2 or type(v[0]) is not str:
            raise DecodeError("a stored header must be [header hex, certificate hex | null]")
        try:
            header = Header.decode(bytes.fromhex(v[0]))
            cert = Certificate.decode(bytes.fromhex(v[1])) if v[1] is not None else None
        except (ValueError, TypeError):
            raise DecodeError("a stored header is not hex") from None
        if cert is not None and (cert.block_hash != header.hash or cert.height != header.height):
            raise DecodeError(f"stored certificate does not match header {header.height}")
        return cls(header, cert)

    def __repr__(self) -> str:
        return f"TrustedHeader(height={self.height}, hash={self.hash.hex()[:16]})"


class TrustStore:
    """Verified headers of one chain, in memory and (if ``path`` is given) on disk."""

    def __init__(
        self,
        chain_id: str,
        genesis_hash: bytes,
        path: str | Path | None = None,
        *,
        keep: int = 1024,
    ) -> None:
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.path = Path(path) if path is not None else None
        self.keep = max(1, keep)
        self.headers: dict[int, TrustedHeader] = {}
        self.head_height: int | None = None
        self.fork: dict[str, Any] | None = None
        self.validator_sets: dict[str, Any] | None = None
        if self.path is not None and self.path.exists():
            self._load()

    # --- reading ----------------------------------------------------------------------------

    @property
    def head(self) -> TrustedHeader | None:
        return None if self.head_height is None else self.headers.get(self.head_height)

    def get(self, height: int) -> TrustedHeader | None:
        return self.headers.get(height)

    # --- writing ----------------------------------------------------------------------------

    def add(self, trusted: list[TrustedHeader]) -> None:
        """Record verified headers (callers verify first) and move the head up; then save."""
        for t in trusted:
            self.headers[t.height] = t
            if self.head_height is None or t.height > self.head_height:
                self.head_height = t.height
        self._trim()
        self.save()

    def set_fork(self, evidence: dict[str, Any]) -> None:
        self.fork = evidence
        self.save()

    def _trim(self) -> None:
        if len(self.headers) <= self.keep:
            return
        # Keep the newest headers; the head is always among them.
        for h in sorted(self.headers)[: len(self.headers) - self.keep]:
            del self.headers[h]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "chain_id": self.chain_id,
            "genesis_hash": self.genesis_hash.hex(),
            "head": self.head_height,
            "headers": {str(h): t.to_json() for h, t in sorted(self.headers.items())},
            "fork": self.fork,
            "validator_sets": self.validator_sets,
        }

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(self.to_json(), sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(prefix=".light-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)  # the rename itself is durable
        finally:
            os.close(dfd)

    def _load(self) -> None:
        assert self.path is not None
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError) as e:
            raise LightClientError(f"cannot read the light-client store {self.path}: {e}") from None
        if type(doc) is not dict or doc.get("format") != FORMAT:
            raise LightClientError(f"{self.path} is not a light-client store of format {FORMAT}")
        if (
            doc.get("chain_id") != self.chain_id
            or doc.get("genesis_hash") != self.genesis_hash.hex()
        ):
            raise LightClientError(
                f"{self.path} was made for chain {doc.get('chain_id')!r} with another genesis; "
                "use a different store file"
            )
        headers: dict[int, TrustedHeader] = {}
        raw = doc.get("headers")
        if type(raw) is not dict:
            raise LightClientError(f"{self.path}: headers must be a map")
        for k, v in raw.items():
            try:
                t = TrustedHeader.from_json(v)
                height = int(k)
            except (DecodeError, ValueError) as e:
                raise LightClientError(f"{self.path}: stored header {k}: {e}") from None
            if t.height != height or t.header.chain_id != self.chain_id:
                raise LightClientError(
                    f"{self.path}: stored header {k} is filed under the wrong height or chain"
                )
            headers[height] = t
        head = doc.get("head")
        if head is not None and (type(head) is not int or head not in headers):
            raise LightClientError(
                f"{self.path}: the head {head!r} is not among the stored headers"
            )
        fork = doc.get("fork")
        if fork is not None and type(fork) is not dict:
            raise LightClientError(f"{self.path}: fork evidence must be a map")
        sets = doc.get("validator_sets")
        if sets is not None and type(sets) is not dict:
            raise LightClientError(f"{self.path}: validator_sets must be a map")
        self.headers, self.head_height, self.fork = headers, head, fork
        self.validator_sets = sets
