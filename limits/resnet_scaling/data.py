"""Data of the depth-scaling study (training.md §2.2): P2's synthetic "ODE" set, the digits
stand-in for MNIST, and P2's depth grid."""
import math
from dataclasses import dataclass

import numpy as np

from kernels._checks import finite_float, int_in_range, nonneg_float

__all__ = ["Dataset", "ode_data", "digits_data", "depth_grid"]


@dataclass(frozen=True)
class Dataset:
    """Train / test inputs and targets, rows are samples, all of width ``d``."""

    X: np.ndarray
    Y: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    name: str = ""

    @property
    def d(self):
        return self.X.shape[1]


def _unit_rows(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _sizes(d, d_min, train_size, test_size, seed):
    """The checked arguments every data set takes: ``(d, train_size, test_size, seed)``."""
    return (int_in_range(d, "d", d_min), int_in_range(train_size, "train_size", 1),
            int_in_range(test_size, "test_size", 0), int_in_range(seed, "seed", 0))


def ode_data(d=10, train_size=1024, test_size=256, seed=0, n_steps=100, noise=0.0):
    """Synthetic "ODE" data of P2 (P2-code ``generate_data_ODE``; training.md §2.2).

    ``x ~ U([-1, 1]^d)``, ``z_0 = x``, ``z_{t+1} = z_t + n^-1/2 tanh(sin(5 pi t/n) z_t +
    cos(5 pi t/n))`` for ``t = 0..n-1`` (``n = n_steps``), ``y = z_n + noise N(0, I)``; then
    ``x`` and ``y`` are normalised row-wise (``y`` is computed from the unnormalised ``x``).

    Parameters
    ----------
    d : int, default 10
    train_size, test_size : int, default 1024, 256
    seed : int, default 0
    n_steps : int, default 100
    noise : float, default 0

    Returns
    -------
    Dataset
    """
    d, ntr, nte, seed = _sizes(d, 1, train_size, test_size, seed)
    n_steps = int_in_range(n_steps, "n_steps", 1)
    noise = nonneg_float(noise, "noise")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2105_12245]))
    x = rng.uniform(-1.0, 1.0, size=(ntr + nte, d))
    z = x.copy()
    for t in range(n_steps):
        z = z + n_steps ** -0.5 * np.tanh(math.sin(5 * math.pi * t / n_steps) * z
                                          + math.cos(5 * math.pi * t / n_steps))
    y = z + noise * rng.standard_normal(z.shape)
    x, y = _unit_rows(x), _unit_rows(y)
    return Dataset(x[:ntr], y[:ntr], x[ntr:], y[ntr:], "ode")


def digits_data(d=25, train_size=1024, test_size=256, seed=0, projection_seed=0):
    """Real data that ships with scikit-learn: the 8x8 digits, reduced to ``d`` features.

    Our stand-in for P2's MNIST set (training.md §2.2; nothing is downloaded at run time): the
    64 pixel values / 16 are multiplied by a fixed Gaussian random projection ``P`` (64 x d,
    entries N(0, 1/d), from ``projection_seed``; it plays the part of P2's two fixed random
    convolutions), each feature row is L2-normalised, and the target is the one-hot vector of the
    label (0..9) in R^d, as in P2-code ``generate_mnist_resnet``.  The 1797 images are shuffled
    with ``seed`` and split into train / test.  Needs the optional extra ``data`` (scikit-learn).

    Parameters
    ----------
    d : int, default 25 (>= 10: the target is one-hot in R^d)
    train_size, test_size : int, default 1024, 256 (sum <= 1797)
    seed, projection_seed : int, default 0

    Returns
    -------
    Dataset
    """
    d, ntr, nte, seed = _sizes(d, 10, train_size, test_size, seed)
    if ntr + nte > 1797:
        raise ValueError(f"train_size + test_size must be <= 1797 (the digits set), got "
                         f"{ntr} + {nte}")
    projection_seed = int_in_range(projection_seed, "projection_seed", 0)
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("digits_data needs scikit-learn: pip install 'nn-limits[data]' "
                          "(or pip install scikit-learn)") from exc
    digits = load_digits()
    pix = np.asarray(digits.data, dtype=np.float64) / 16.0
    labels = np.asarray(digits.target)
    P = np.random.default_rng(projection_seed).standard_normal((64, d)) / math.sqrt(d)
    feats = _unit_rows(pix @ P)
    Y = np.zeros((len(labels), d))
    Y[np.arange(len(labels)), labels] = 1.0
    order = np.random.default_rng(seed).permutation(len(labels))[:ntr + nte]
    X, Y = feats[order], Y[order]
    return Dataset(X[:ntr], Y[:ntr], X[ntr:], Y[ntr:], "digits")


def depth_grid(base=1.2, min_depth=3, max_depth=10_000):
    """Depth grid of P2-code (training.md §2.2).

    ``unique(floor(base^n) for n in range(1 + int(log(max_depth)/log(base)))  if >= min_depth)``

    Returns
    -------
    list of int
    """
    base = finite_float(base, "base")
    if not base > 1:
        raise ValueError(f"base must be > 1, got {base!r}")
    lo, hi = int_in_range(min_depth, "min_depth", 1), int_in_range(max_depth, "max_depth", 1)
    if hi < lo:
        raise ValueError(f"max_depth must be >= min_depth, got {max_depth!r} < {min_depth!r}")
    n = 1 + int(math.log(hi) / math.log(base))
    return sorted({int(math.floor(base ** i)) for i in range(n) if math.floor(base ** i) >= lo})

