"""The persisted safety record (votes, lock) is sealed with a checksum: a one-bit flip on disk
that still decodes canonically (p_round 733 -> 732) must be refused, never voted from."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.base import encoding
from accord.consensus import SafetyState
from accord.consensus.state import SAFETY_KEY
from accord.storage.store import SafetyRecordDamaged, Store
from accord.storage.verify import verify_store


def _flip_p_round(data: Path, raw: bytes, s: SafetyState) -> int:
    enc = encoding.encode(s.p_round)
    blob = bytearray((data / "data.mdb").read_bytes())
    hits = [i for i in range(len(blob)) if blob.startswith(raw, i)]
    off = raw.index(enc) + len(enc) - 1
    for i in hits:
        b = blob[i + off]
        blob[i + off] = b & (b - 1)  # clear the lowest set bit: a lower round
    (data / "data.mdb").write_bytes(bytes(blob))
    return len(hits)


def test_a_flipped_vote_round_is_refused_and_reported(tmp_path: Path) -> None:
    """Old code: get_safety returned the damaged record (p_round 732) and verify found nothing."""
    data = tmp_path / "data"
    s = SafetyState(
        p_round=733, p_height=5, p_hash=b"\x11" * 32, c_round=730, c_height=5, c_hash=b"\x22" * 32
    )
    raw = s.encode()
    with Store(data) as st:
        st.put_safety(SAFETY_KEY, raw)
        assert st.get_safety(SAFETY_KEY) == raw
        assert not any(p.startswith("safety:") for p in verify_store(st).problems)
    assert _flip_p_round(data, raw, s) >= 1
    lowered = SafetyState.decode(raw.replace(encoding.encode(733), encoding.encode(732), 1), 4)
    assert lowered.p_round == 732  # the flip alone still decodes: only the checksum can tell
    with Store(data) as st:
        with pytest.raises(SafetyRecordDamaged, match="refusing to vote"):
            st.get_safety(SAFETY_KEY)
        report = verify_store(st)
        assert any(p.startswith("safety:") and "checksum" in p for p in report.problems)
