"""The feature problem the shallow estimators' tests share."""

import numpy as np


def topic_problem(seed=0, n_train=400, n_test=100, f=32, m=6, topics=3, noise=3.0, distract=0):
    """Labels from a few latent topics; features = labels @ random projection + Gaussian noise;
    the first ``distract`` features replaced by loud noise that a learned metric should drop."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.02, 0.9, size=(topics, m))  # P(label | topic)
    t = rng.integers(topics, size=n_train + n_test)
    y = (rng.random((n_train + n_test, m)) < p[t]).astype(np.uint8)
    x = (y @ rng.normal(size=(m, f)) + noise * rng.normal(size=(len(y), f))).astype(np.float32)
    x[:, :distract] = 5 * rng.normal(size=(len(y), distract))
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]
