"""Multi-owner computations: each owner grants one exact computation on its named inputs
(program, receiver, params, every input at its current version); a run that reads another
owner's input without a grant of exactly that run is refused."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accord.base.errors import MpcError
from accord.mpc.channel import public_bytes
from accord.mpc.client import Cluster, ref
from accord.mpc.cluster import free_port
from accord.mpc.ml import load_breast_cancer, train_plain
from accord.mpc.programs import PROGRAMS
from accord.mpc.registry import parse_clients
from accord.mpc.server import MpcServer, ServerInfo

NAMES = ("hospital_a", "hospital_b", "analyst", "mallory")


@pytest.fixture
def consortium(tmp_path):
    keys = {n: X25519PrivateKey.generate() for n in NAMES}
    registry = parse_clients(
        [{"name": n, "public_key": public_bytes(k).hex()} for n, k in keys.items()],
        quota_bytes=64 << 20,
        max_connections=4,
    )
    skeys = [X25519PrivateKey.generate() for _ in range(3)]
    infos = [ServerInfo("127.0.0.1", free_port(), public_bytes(k)) for k in skeys]

    def make(i, **kw):
        return MpcServer(
            i, infos, skeys[i], timeout=10, clients=registry, data_dir=tmp_path / f"s{i}", **kw
        )

    servers = [make(i) for i in range(3)]
    ts = [threading.Thread(target=s.start) for s in servers]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    state = {"servers": servers, "make": make}
    yield infos, keys, state
    for s in state["servers"]:
        s.stop()


def _refs(keys):
    a, b = public_bytes(keys["hospital_a"]), public_bytes(keys["hospital_b"])
    return [
        ref(a, "rows", "X_a"),
        ref(a, "labels", "y_a"),
        ref(b, "rows", "X_b"),
        ref(b, "labels", "y_b"),
    ]


def _restart(state, i, **kw):
    state["servers"][i].stop()
    state["servers"][i] = state["make"](i, **kw)
    state["servers"][i].start()
    deadline = time.monotonic() + 20
    while any(s.dead or len(s.peers) < 2 for s in state["servers"]):
        assert time.monotonic() < deadline, "the restarted server did not rejoin"
        time.sleep(0.05)


def _accuracy(x, y, w, b):
    return float((((x @ w + b) > 0).astype(int) == y).mean())


def test_two_hospitals_train_one_model_the_analyst_receives(consortium):
    infos, keys, _ = consortium
    x, y = load_breast_cancer()
    half = 285
    analyst = public_bytes(keys["analyst"])
    for name, rows in (("hospital_a", slice(0, half)), ("hospital_b", slice(half, None))):
        with Cluster(infos, key=keys[name]) as h:  # each hospital shares only its own rows
            h.share("rows", x[rows])
            h.share("labels", y[rows].astype(float))
    params = {"epochs": 3}
    with Cluster(infos, key=keys["analyst"]) as an:
        # no grant yet: refused before anything is read
        with pytest.raises(MpcError, match="not granted"):
            an.run("lr_train", _refs(keys), params)
        with Cluster(infos, key=keys["hospital_a"]) as h:
            for own in ("rows", "labels"):
                h.grant(own, "lr_train", analyst, params=params, inputs=_refs(keys))
        with pytest.raises(MpcError, match="not granted"):  # hospital B has not granted yet
            an.run("lr_train", _refs(keys), params)
        with Cluster(infos, key=keys["hospital_b"]) as h:
            for own in ("rows", "labels"):
                h.grant(own, "lr_train", analyst, params=params, inputs=_refs(keys))
        out, _ = an.run("lr_train", _refs(keys), params)
    wp, bp = train_plain(x, y, epochs=3, lr=0.5, batch=128)
    assert np.abs(out["w"] - wp).max() < 0.05
    assert abs(_accuracy(x, y, out["w"], out["b"][0]) - _accuracy(x, y, wp, bp)) < 0.02


def test_a_grant_covers_only_its_program_receiver_and_owner(consortium):
    infos, keys, state = consortium
    a = public_bytes(keys["hospital_a"])
    analyst = public_bytes(keys["analyst"])
    both = [ref(a, "x"), ref(a, "y")]
    with Cluster(infos, key=keys["hospital_a"]) as h:
        h.share("x", np.array([3, 5]), 0)
        h.share("y", np.array([4, 6]), 0)
        h.grant("x", "compare", analyst, inputs=both)
        h.grant("y", "compare", analyst, inputs=both)
        with pytest.raises(MpcError, match="not among the inputs"):  # a grant names its input
            h.grant("x", "compare", analyst, inputs=[ref(a, "y")])
    with Cluster(infos, key=keys["analyst"]) as an:
        assert an.run("compare", both)[0]["lt"].tolist() == [1, 1]
        with pytest.raises(MpcError, match="not granted"):  # another program: it would reveal x*y
            an.run("mul", both)
    with Cluster(infos, key=keys["mallory"]) as m:
        with pytest.raises(MpcError, match="not granted"):  # another receiver
            m.run("compare", both)
        # a grant is made in the granter's own namespace: mallory cannot grant A's input
        with pytest.raises(MpcError, match="no input named"):
            m.grant("x", "compare", public_bytes(keys["mallory"]), inputs=both)
        with pytest.raises(MpcError, match="not granted"):
            m.run("compare", both)
    assert all(s.refused_grants >= 3 for s in state["servers"])
    with Cluster(infos, key=keys["hospital_a"]) as h:
        h.revoke("x", "compare", analyst, inputs=both)
    with Cluster(infos, key=keys["analyst"]) as an, pytest.raises(MpcError, match="not granted"):
        an.run("compare", both)
    # deleting an input drops its grants: a new input under the name starts with none
    with Cluster(infos, key=keys["hospital_a"]) as h:
        h.grant("x", "compare", analyst, inputs=both)
        h.delete("y")
        h.share("y", np.array([0, 0]), 0)
    with Cluster(infos, key=keys["analyst"]) as an, pytest.raises(MpcError, match="not granted"):
        an.run("compare", both)


def _small_rows(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(24, 3))
    y = (x @ np.array([1.0, -2.0, 0.5]) > 0).astype(float)
    return x, y


def test_the_row_extraction_run_with_other_params_is_refused(consortium):
    """The finding: a grant of lr_train let the receiver choose the params, e.g. one step of
    batch 1 at a learning rate of 16, whose first update is a multiple of the first patient's
    row. Now the grant names the params: any other params are refused (this run succeeded on
    the old servers), the granted run works, and so it does after a restart."""
    infos, keys, state = consortium
    analyst = public_bytes(keys["analyst"])
    x, y = _small_rows()
    inputs = [
        ref(public_bytes(keys["hospital_a"]), "rows", "X_a"),
        ref(public_bytes(keys["hospital_a"]), "labels", "y_a"),
    ]
    granted = {"epochs": 2, "lr": "0.5", "batch": 8}
    with Cluster(infos, key=keys["hospital_a"]) as h:
        h.share("rows", x)
        h.share("labels", y)
        for own in ("rows", "labels"):
            h.grant(own, "lr_train", analyst, params=granted, inputs=inputs)
    with Cluster(infos, key=keys["analyst"]) as an:
        refused = state["servers"][0].refused_grants
        for attack in (
            {"epochs": 1, "lr": "16", "batch": 1},
            {**granted, "epochs": 3},  # one epoch more is another computation
            {"epochs": 2, "lr": "0.5"},  # a param left out (batch) is not the grant's either
        ):
            with pytest.raises(MpcError, match="other params or inputs"):
                an.run("lr_train", inputs, attack)
        assert state["servers"][0].refused_grants == refused + 3
        # the same inputs under other program names are another computation
        swapped = [dict(inputs[0], **{"as": "X_b"}), inputs[1]]
        with pytest.raises(MpcError, match="not granted"):
            an.run("lr_train", swapped, granted)
        out, _ = an.run("lr_train", inputs, granted)
    wp, _bp = train_plain(x, y.astype(int), epochs=2, lr=0.5, batch=8)
    assert np.abs(out["w"] - wp).max() < 0.05

    # grants are persisted with the shares: a restarted server still honours exactly them
    _restart(state, 1)
    with Cluster(infos, key=keys["analyst"]) as an:
        again, _ = an.run("lr_train", inputs, granted)
        assert np.abs(again["w"] - out["w"]).max() < 1e-3
        with pytest.raises(MpcError, match="other params or inputs"):
            an.run("lr_train", inputs, {"epochs": 1, "lr": "16", "batch": 1})


def test_a_co_input_replaced_after_the_grant_is_refused(consortium):
    """The finding: with lr_predict granted, the receiver could pass a crafted co-input: a
    one-hot weight vector w = e_j makes p = sigmoid(X[:, j] + b), which reveals column j of
    every row. Now the grant records each co-input's version: the receiver's model, replaced
    after the grant by a one-hot vector under the same name, is refused (on the old servers
    this run answered), and so is a co-input the grant does not name."""
    infos, keys, state = consortium
    a, an_key = public_bytes(keys["hospital_a"]), public_bytes(keys["analyst"])
    x, _ = _small_rows(1)
    model = np.array([0.3, -0.2, 0.1])
    inputs = [ref(a, "rows", "X"), ref(an_key, "w"), ref(an_key, "b")]
    with Cluster(infos, key=keys["analyst"]) as an:
        an.share("w", model)  # the model the hospital reviewed
        an.share("b", np.array([0.0]))
        with Cluster(infos, key=keys["hospital_a"]) as h:
            h.share("rows", x)
            h.grant("rows", "lr_predict", an_key, inputs=inputs)
        p, _ = an.run("lr_predict", ["w", "b", ref(a, "rows", "X")])  # own inputs by name: same
        assert np.abs(p["p"] - 1 / (1 + np.exp(-(x @ model)))).max() < 0.01
        an.share("w", np.array([1.0, 0.0, 0.0]))  # same name, replaced content: e_0
        with pytest.raises(MpcError, match="an input was replaced since the grant"):
            an.run("lr_predict", inputs)
        an.share("w2", np.array([1.0, 0.0, 0.0]))
        with pytest.raises(MpcError, match="not granted"):  # a co-input the grant does not name
            an.run("lr_predict", [*inputs, ref(an_key, "w2")])
        with Cluster(infos, key=keys["hospital_a"]) as h:
            h.revoke("rows", "lr_predict", an_key, inputs=inputs)  # the stale grant goes
            assert all(not s.grants for s in state["servers"])
            h.grant("rows", "lr_predict", an_key, inputs=inputs)  # binds the current w
            assert len(state["servers"][2].grants) == 1
            h.share("rows", x + 1)  # replacing the granted input itself drops its grants
        assert all(not s.grants for s in state["servers"])
        with pytest.raises(MpcError, match="not granted"):
            an.run("lr_predict", inputs)


def _crafted_labels(n, k):
    """Labels that make one full-batch step from w = 0 a multiple of row ``k``: p = 1/2 for
    every row, so the error is 0 everywhere but row k (error 1), and w = -(lr / n) x_k."""
    y = np.full(n, 0.5)
    y[k] = -0.5
    return y


def test_crafted_labels_swapped_in_after_the_grant_are_refused(consortium):
    """The two-owner attack: the hospital holds the rows, the analyst the labels. The hospital
    reviewed the analyst's labels and granted one full-batch step on them (its output, an
    aggregate, is what it agreed to release). The analyst then replaces its labels with
    crafted ones, under the same name: the granted params now turn the model into one
    patient's row, exactly. On the servers before grants bound the inputs' versions this run
    answered; now every server refuses it before computing, and so it does for crafted labels
    under a new name, or with the hospital's rows under the program name of the labels."""
    infos, keys, state = consortium
    a, an_key = public_bytes(keys["hospital_a"]), public_bytes(keys["analyst"])
    x, y = _small_rows(2)
    n, k = x.shape[0], 5
    params = {"epochs": 1, "lr": "16", "batch": n}
    inputs = [ref(a, "rows", "X"), ref(an_key, "labels", "y")]
    with Cluster(infos, key=keys["hospital_a"]) as h:
        h.share("rows", x)
    with Cluster(infos, key=keys["analyst"]) as an:
        an.share("labels", y)  # the honest labels the hospital reviews
        with Cluster(infos, key=keys["hospital_a"]) as h:
            h.grant("rows", "lr_train", an_key, params=params, inputs=inputs)
        out, _ = an.run("lr_train", inputs, params)  # the granted run
        wp, _ = train_plain(x, y.astype(int), epochs=1, lr=16, batch=n)
        assert np.abs(out["w"] - wp).max() < 0.05

        # the attack is real: on data the analyst may compute on (its own copy) the crafted
        # labels recover the row to fixed-point precision
        an.share("my_rows", x)
        an.share("crafted", _crafted_labels(n, k))
        got, _ = an.run(
            "lr_train", [ref(an_key, "my_rows", "X"), ref(an_key, "crafted", "y")], params
        )
        assert np.abs(-got["w"] * n / 16 - x[k]).max() < 1e-2

        refused = [s.refused_grants for s in state["servers"]]
        an.share("labels", _crafted_labels(n, k))  # same name, crafted content
        with pytest.raises(MpcError, match="an input was replaced since the grant"):
            an.run("lr_train", inputs, params)
        with pytest.raises(MpcError, match="not granted"):  # crafted labels under a new name
            an.run("lr_train", [inputs[0], ref(an_key, "crafted", "y")], params)
        assert [s.refused_grants for s in state["servers"]] == [r + 2 for r in refused]


def leaky_predict(party, inputs):
    """What an upgrade (or a hostile operator) could put under the granted name: the rows'
    first column, in the output's place."""
    return {"p": inputs["X"][:, 0]}


def test_a_grant_binds_the_program_code_not_only_its_name(consortium):
    """A grant of lr_predict allowed whatever the servers ran under that name. Here the servers
    restart with other code under it, which returns a column of the rows: on the old servers
    the analyst's granted run answered with the column; now the grant (which recorded the
    hash of the code it was made for) no longer matches on any server. A server that runs
    other code under a name than its peers also fails every run of it, grant or not."""
    infos, keys, state = consortium
    a, an_key = public_bytes(keys["hospital_a"]), public_bytes(keys["analyst"])
    x, _ = _small_rows(3)
    inputs = [ref(a, "rows", "X"), ref(an_key, "w"), ref(an_key, "b")]
    with Cluster(infos, key=keys["analyst"]) as an:
        an.share("w", np.array([0.3, -0.2, 0.1]))
        an.share("b", np.array([0.0]))
    with Cluster(infos, key=keys["hospital_a"]) as h:
        h.share("rows", x)
        h.grant("rows", "lr_predict", an_key, inputs=inputs)
    with Cluster(infos, key=keys["analyst"]) as an:
        assert an.run("lr_predict", inputs)[0]["p"].shape == (x.shape[0],)

    swapped = {**PROGRAMS, "lr_predict": leaky_predict}
    _restart(state, 0, programs=swapped)  # one server with other code under the name
    with Cluster(infos, key=keys["analyst"]) as an:
        mismatches = [s.input_mismatches for s in state["servers"]]
        an.share("v", np.array([[1.0, 2.0, 3.0]]))  # no grant involved: the analyst's own run
        with pytest.raises(MpcError, match="run different code under the program's name"):
            an.run("lr_predict", [ref(an_key, "v", "X"), ref(an_key, "w"), ref(an_key, "b")])
        assert [s.input_mismatches for s in state["servers"]] == [m + 1 for m in mismatches]
    for i in (1, 2):
        _restart(state, i, programs=swapped)
    with Cluster(infos, key=keys["analyst"]) as an:
        refused = [s.refused_grants for s in state["servers"]]
        with pytest.raises(MpcError, match="the program's code changed since"):
            an.run("lr_predict", inputs)
        assert [s.refused_grants for s in state["servers"]] == [r + 1 for r in refused]
    # the owner may grant the new code knowingly: the grant then binds that code; revoke
    # takes back the computation whatever code its grants recorded
    with Cluster(infos, key=keys["hospital_a"]) as h:
        h.revoke("rows", "lr_predict", an_key, inputs=inputs)
        assert all(not s.grants for s in state["servers"])
        h.grant("rows", "lr_predict", an_key, inputs=inputs)
    with Cluster(infos, key=keys["analyst"]) as an:
        assert np.abs(an.run("lr_predict", inputs)[0]["p"] - x[:, 0]).max() < 1e-3


def test_a_grant_can_bound_params_by_ranges(consortium):
    """An owner lets the receiver choose kmeans' iterations within [1, 3] and nothing else.
    On the old servers the ranges were ignored: the grant bound params {} exactly and the
    in-range run below was refused."""
    infos, keys, state = consortium
    a = public_bytes(keys["hospital_a"])
    analyst = public_bytes(keys["analyst"])
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(-2, 0.3, (10, 2)), rng.normal(2, 0.3, (10, 2))])
    c0 = x[[0, 10]].copy()
    inputs = [ref(a, "pts", "X"), ref(a, "start", "C")]
    with Cluster(infos, key=keys["hospital_a"]) as h:
        h.share("pts", x)
        h.share("start", c0)
        for bad, match in (
            ({"iters": (3, 1)}, "lo <= hi"),
            ({"iters": (1, "3")}, "integers"),
            ({"iters": (True, 3)}, "integers"),
        ):
            with pytest.raises(MpcError, match=match):
                h.grant("pts", "kmeans", analyst, ranges=bad, inputs=inputs)
        with pytest.raises(MpcError, match="both a value and a range"):
            h.grant("pts", "kmeans", analyst, params={"iters": 2}, ranges={"iters": (1, 3)},
                    inputs=inputs)  # fmt: skip
        assert all(not s.grants for s in state["servers"])  # refused grants record nothing
        for own in ("pts", "start"):
            h.grant(own, "kmeans", analyst, ranges={"iters": (1, 3)}, inputs=inputs)
    with Cluster(infos, key=keys["analyst"]) as an:
        for iters in (1, 3):
            out, _ = an.run("kmeans", inputs, {"iters": iters})
            assert np.allclose(out["centers"], [[-2, -2], [2, 2]], atol=0.5)
        refused = state["servers"][0].refused_grants
        for params, match in (
            ({"iters": 4}, r"'iters' = 4 is outside the granted range \[1, 3\]"),
            ({"iters": 0}, r"'iters' = 0 is outside the granted range \[1, 3\]"),
            ({"iters": "2"}, "must be an integer"),
            ({}, "missing"),  # the program's default (10) is not in the range
            ({"iters": 2, "extra": 1}, "not granted"),  # other params stay bound exactly
        ):
            with pytest.raises(MpcError, match=match):
                an.run("kmeans", inputs, params)
        assert state["servers"][0].refused_grants == refused + 5
    with Cluster(infos, key=keys["mallory"]) as m, pytest.raises(MpcError, match="not granted"):
        m.run("kmeans", inputs, {"iters": 2})  # the range is the analyst's, nobody else's

    _restart(state, 2)  # ranged grants are persisted like the others
    with Cluster(infos, key=keys["analyst"]) as an:
        an.run("kmeans", inputs, {"iters": 2})
        with pytest.raises(MpcError, match="outside the granted range"):
            an.run("kmeans", inputs, {"iters": 9})
    with Cluster(infos, key=keys["hospital_a"]) as h:
        h.revoke("pts", "kmeans", analyst, ranges={"iters": (1, 3)}, inputs=inputs)
    with Cluster(infos, key=keys["analyst"]) as an, pytest.raises(MpcError, match="not granted"):
        an.run("kmeans", inputs, {"iters": 2})
