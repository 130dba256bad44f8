"""A data set of UCI Adult's shape for the logistic-regression benchmark.

PrivPy reports its logistic regression on Adult as LIBSVM prepares it ("a9a": 32,561
training instances, 123 binary features: 14 attributes, the continuous ones binned, all of
them one-hot encoded, so a row has at most 14 ones). No package installable here ships that
file (the Adult wrappers on PyPI download it at run time, and the benchmark downloads
nothing), so :func:`synthetic_adult` builds a set of the same shape and sparsity: 14 groups
of one-hot features (group sizes as in a9a's encoding, 123 in all), one feature on per group,
labels from a fixed logistic model with about a quarter positive, as in Adult. Seeded, so
every run trains on the same rows. Cost per instance depends on the shape, not the values,
which is what the benchmark measures; the accuracy it reports is on this synthetic set.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# sizes of the 14 one-hot groups (a9a: age, workclass, fnlwgt, education, education-num,
# marital-status, occupation, relationship, race, sex, capital-gain, capital-loss,
# hours-per-week, native-country)
GROUPS = (5, 8, 5, 16, 5, 7, 14, 6, 5, 2, 2, 2, 5, 41)
ADULT_INSTANCES = 32_561
ADULT_FEATURES = sum(GROUPS)  # 123


def synthetic_adult(
    n: int = ADULT_INSTANCES, seed: int = 0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """``n`` rows of 123 binary features (one per group) and 0/1 labels, ~24 % positive."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, ADULT_FEATURES))
    off = 0
    for size in GROUPS:
        # skewed category frequencies, as real categorical attributes have
        p = rng.dirichlet(np.full(size, 0.8))
        x[np.arange(n), off + rng.choice(size, size=n, p=p)] = 1.0
        off += size
    w = rng.normal(0.0, 1.5, ADULT_FEATURES)
    score = x @ w
    bias = -np.quantile(score, 0.76)  # about 24 % of rows above the threshold
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-(score + bias) * 2.0))).astype(np.int64)
    return x, y
