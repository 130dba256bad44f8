"""``accord bench mpc``'s comparison with MPyC: both sides warm, at the same vector length.

The earlier bench compared Accord's best of 3 on vectors of 1,000,000 with MPyC's first
(cold) operation on 20,000 (mul) and 2,000 (comparison) elements: Accord's rate at a large n
against MPyC's at a small one, and MPyC's one-time costs in its figure. These check the
method (same n, an untimed pass first, ratios from the same-n figures); they assert nothing
about speed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(240)


def test_mpyc_is_timed_warm_at_the_requested_length():
    pytest.importorskip("mpyc")
    from accord.benches.mpc import mpyc_figures

    figs = mpyc_figures(12, 2)
    assert figs["n"] == 12 and figs["repeat"] == 2 and figs["warm"] is True
    for kind in ("secint64", "secfxp64"):
        assert figs[kind]["mul_per_s"] > 0 and figs[kind]["cmp_per_s"] > 0, figs


def test_the_ratios_compare_both_sides_at_the_same_n():
    pytest.importorskip("mpyc")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "accord.cli.main",
            "bench",
            "mpc",
            "--json",
            "--n",
            "4096",
            "--m",
            "2",
            "--epochs",
            "1",
            "--repeat",
            "1",
            "--no-adult",
            "--mpyc-n",
            "16",
        ],
        capture_output=True,
        timeout=200,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    doc = json.loads(out.stdout.decode().strip().splitlines()[-1])
    same = doc["at_mpyc_n"]
    assert same["n"] == doc["mpyc"]["n"] == 16 and doc["mpyc"]["warm"] is True
    for kind, key in (("secfxp64", "ratio_vs_mpyc_fxp"), ("secint64", "ratio_vs_mpyc_int")):
        theirs, ratio = doc["mpyc"][kind], doc[key]
        assert ratio["n"] == 16
        for op in ("mul", "cmp"):
            assert ratio[op] == round(same[op + "_per_s"] / theirs[op + "_per_s"], 1)
    # the large-n figures stay (the goals are about them), but no ratio is built from them
    assert doc["n"] == 4096 and doc["mul_per_s"] > 0
