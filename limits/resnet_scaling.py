"""Depth scaling of trained deep ResNet weights: neural ODE, SDE, or neither.

Cohen, Cont, Rossier & Xu, "Scaling Properties of Deep Residual Networks", ICML 2021
(arXiv 2105.12245), written P2 below; every definition is that of ``theory/training.md`` §2 (the
authors' code, ``instadeepai/scaling-resnets``, where the paper text was not available).

Model (P2 Eq. (1); training.md §2.1), width ``d``, depth ``L``, no input or readout layer::

    h_{k+1} = h_k + s_k sigma(A_k h_k + b_k),   k = 0..L-1,   h_0 = x,   output h_L
    s_k = 1 (delta 'none'),  |delta| (one trainable scalar, 'shared', init 1/L),
          delta_k (one per layer, 'multi', init N(0, 1/L^2))
    loss = mean over batch and coordinates of (h_L - y)^2            (torch MSELoss)

We write ``A_k h`` (column vectors); P2's code computes ``x @ A_l``, i.e. our ``A_k`` is the
transpose of theirs.  Norms are transpose-invariant; entry ``[i, j]`` here is ``[j, i]`` there.
Effective weights (training.md §2.3): ``T_k = |delta_k| A_k`` and ``|delta_k| b_k`` for a positively
homogeneous activation (relu, identity) with per-layer delta, since
``delta relu(A h + b) = sign(delta) relu(|delta| A h + |delta| b)``; ``T_k = A_k`` otherwise.

Why hand-written numba and not a framework: at this size (d <= 32, L up to ~10^4, batch 32) every
layer is a 32 x d x d product, far below the size where a framework's kernels pay for their
per-operation dispatch (a few microseconds per op, about 15 ops per layer and pass); a fused
float64 loop over the layers in one compiled call (batch innermost, so the inner loops vectorise)
has no dependency beyond numba.  ``benchmarks/resnet_scaling.py`` measures one epoch (d = 10,
L = 1000, batch 32, 1024 samples) against the same maths in vectorised NumPy: about 0.065 s and
10-13x for relu, 0.086-0.09 s and 7.2-7.6x for tanh.  (The passes and Adam are compiled with
``error_model="numpy"``: with Python's error model every division carries a zero check and the
loops over the batch do not vectorise; tanh was then 0.18 s and 3.4x.)  Gradients are tested
against finite differences and the optimiser against a hand-computed Adam update.

Scaling statistics (P2-code ``regression.compute_statistics``; training.md §2.3) on a per-layer
sequence ``T_0..T_{L-1}`` with Frobenius norms: Maximum, Spectral, Root SSQ, QuadraticVariation,
SqrtSobolev, Increment(factor), cumsum, detrended-cumsum (:func:`statistics`).  Exponents by
least squares on log-log data (:func:`scaling_exponents`)::

    beta  = -slope(log L, log max_k ||T_k||),    alpha = -slope(log L, log max_k |delta_k|)

and the H1 (smooth / ODE) vs H2 (diffusive / SDE) diagnostic of training.md §2.3; the verdict
rule is ours (the hypotheses' wording in P2 is UNVERIFIED), see :func:`scaling_exponents`.

Entry points: :func:`train` (one network), :func:`study` (a depth grid, optionally through
``limits.sweep.run_grid``), :func:`depth_grid`, :func:`ode_data`, :func:`digits_data`,
:func:`statistics`, :func:`scaling_exponents`, :func:`decompose` (trend / noise) and
:func:`evaluate` (loss of a network with given weights), :func:`denoised_losses` (the
re-evaluation with denoised weights).  Figures:
``limits.plots.max_norm_vs_depth``, ``weight_paths``, ``detrended_cumsums``,
``hypothesis_diagnostic``.
"""
import math
from dataclasses import dataclass, field
from typing import Optional

import numba
import numpy as np

__all__ = [
    "ACTIVATIONS", "DELTA_TYPES", "INITS", "Dataset", "ode_data", "digits_data", "depth_grid",
    "TrainResult", "train", "evaluate", "statistics", "increment", "detrended_cumsum", "Fit",
    "ScalingExponents", "scaling_exponents", "Decomposition", "decompose", "Study", "study",
    "effective_parameters", "gradient", "denoised_loss", "denoised_losses",
]

ACTIVATIONS = {"identity": 0, "tanh": 1, "relu": 2}
DELTA_TYPES = ("none", "shared", "multi")
INITS = ("xavier", "xavier-depth")
OPTIMIZERS = ("adam", "sgd")
_HOMOGENEOUS = ("relu", "identity")


# ----------------------------------------------------------------------------------------------
# argument checks (before any compiled code runs)
# ----------------------------------------------------------------------------------------------
def _int(name, v, minimum):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {v!r}")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
    return int(v)


def _real(name, v, positive=False, nonneg=False):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v!r}")
    if positive and not v > 0:
        raise ValueError(f"{name} must be > 0, got {v!r}")
    if nonneg and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v!r}")
    return v


def _choice(name, v, options):
    if not isinstance(v, str):
        raise TypeError(f"{name} must be a string, one of {options}, got {v!r}")
    if v not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {v!r}")
    return v


def _matrix(name, x, cols=None):
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real array, got {type(x).__name__}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-d (samples, features), got shape {a.shape}")
    if cols is not None and a.shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns (the width d), got shape {a.shape}")
    if a.shape[0] < 1:
        raise ValueError(f"{name} must have at least one row, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return np.ascontiguousarray(a)


# ----------------------------------------------------------------------------------------------
# data (training.md §2.2)
# ----------------------------------------------------------------------------------------------
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
    d = _int("d", d, 1)
    ntr, nte = _int("train_size", train_size, 1), _int("test_size", test_size, 0)
    n_steps = _int("n_steps", n_steps, 1)
    noise = _real("noise", noise, nonneg=True)
    seed = _int("seed", seed, 0)
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
    d = _int("d", d, 10)
    ntr, nte = _int("train_size", train_size, 1), _int("test_size", test_size, 0)
    if ntr + nte > 1797:
        raise ValueError(f"train_size + test_size must be <= 1797 (the digits set), got "
                         f"{ntr} + {nte}")
    seed, projection_seed = _int("seed", seed, 0), _int("projection_seed", projection_seed, 0)
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
    base = _real("base", base)
    if not base > 1:
        raise ValueError(f"base must be > 1, got {base!r}")
    lo, hi = _int("min_depth", min_depth, 1), _int("max_depth", max_depth, 1)
    if hi < lo:
        raise ValueError(f"max_depth must be >= min_depth, got {max_depth!r} < {min_depth!r}")
    n = 1 + int(math.log(hi) / math.log(base))
    return sorted({int(math.floor(base ** i)) for i in range(n) if math.floor(base ** i) >= lo})


# ----------------------------------------------------------------------------------------------
# numba: forward, backward, optimiser
# ----------------------------------------------------------------------------------------------
@numba.njit(inline="always", fastmath={"contract"})
def _exp40(y):
    """exp(y) for |y| <= 40: Cody-Waite reduction by ln 2, Taylor polynomial of degree 13 on
    |r| <= ln(2)/2 (truncation < 1e-17), exact scaling by 2^n (branch-free, so loops over it
    vectorise); about 1 ulp."""
    n = math.floor(y * 1.4426950408889634 + 0.5)
    r = (y - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10
    p = 1.6059043836821613e-10
    p = p * r + 2.08767569878681e-09
    p = p * r + 2.505210838544172e-08
    p = p * r + 2.755731922398589e-07
    p = p * r + 2.7557319223985893e-06
    p = p * r + 2.48015873015873e-05
    p = p * r + 0.0001984126984126984
    p = p * r + 0.001388888888888889
    p = p * r + 0.008333333333333333
    p = p * r + 0.041666666666666664
    p = p * r + 0.16666666666666666
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    m = int(n) + 64                   # 2^n = 2^-64 prod_i 2^(2^i bit_i(m)), exact, no table
    f = 5.421010862427522e-20
    f *= 2.0 if m & 1 else 1.0
    f *= 4.0 if m & 2 else 1.0
    f *= 16.0 if m & 4 else 1.0
    f *= 256.0 if m & 8 else 1.0
    f *= 65536.0 if m & 16 else 1.0
    f *= 4294967296.0 if m & 32 else 1.0
    f *= 1.8446744073709552e19 if m & 64 else 1.0
    return p * f


@numba.njit(inline="always", fastmath={"contract"})
def _tanh(x):
    """tanh without a libm call (about 2x faster than math.tanh here, within 3 ulp of it):
    Cephes' rational form x + x^3 P(x^2)/Q(x^2) for |x| < 0.625, 1 - 2/(exp(2x) + 1) else
    (argument clamped to [-20, 20], where tanh rounds to +-1); NaN passes through."""
    xc = 20.0 if x > 20.0 else x
    xc = -20.0 if xc < -20.0 else xc
    s = xc * xc
    p = ((-9.64399179425052238628e-1 * s - 9.92877231001918586564e1) * s
         - 1.61468768441708447952e3)
    q = (((s + 1.12811678491632931402e2) * s + 2.23548839060100448583e3) * s
         + 4.84406305325125486048e3)
    small = xc + xc * s * (p / q)
    big = 1.0 - 2.0 / (_exp40(2.0 * xc) + 1.0)
    out = small if s < 0.390625 else big
    return out if x == x else x


@numba.njit(inline="always")
def _sig(z, act):
    if act == 1:
        return _tanh(z)
    if act == 2:
        return z if z > 0.0 else 0.0
    return z


@numba.njit(inline="always")
def _dsig(u, act):
    """sigma'(z) from u = sigma(z)."""
    if act == 1:
        return 1.0 - u * u
    if act == 2:
        return 1.0 if u > 0.0 else 0.0
    return 1.0


@numba.njit(inline="always")
def _scale(delta, k, dtype):
    if dtype == 0:
        return 1.0
    if dtype == 1:
        return abs(delta[0])
    return delta[k]


@numba.njit(nogil=True, cache=True, fastmath={"contract"}, error_model="numpy")
def _forward(A, b, delta, dtype, act, X, idx, H, U):
    """h_{k+1} = h_k + s_k sigma(A_k h_k + b_k) for the rows ``idx`` of X.

    Layout batch-innermost, so that every inner loop runs over the batch (contiguous, SIMD):
    H (L+1, d, B) holds the states, U (L, d, B) the activations u = sigma(z) (sigma' is a
    function of u for tanh, relu and identity)."""
    L, d = A.shape[0], A.shape[1]
    B = idx.shape[0]
    z = np.empty(B)
    for r in range(B):
        for i in range(d):
            H[0, i, r] = X[idx[r], i]
    for k in range(L):
        s = _scale(delta, k, dtype)
        for i in range(d):
            bi = b[k, i]
            for r in range(B):
                z[r] = bi
            for j in range(d):
                a = A[k, i, j]
                for r in range(B):
                    z[r] += a * H[k, j, r]
            if act == 1:
                for r in range(B):
                    U[k, i, r] = _tanh(z[r])
            elif act == 2:
                for r in range(B):
                    U[k, i, r] = z[r] if z[r] > 0.0 else 0.0
            else:
                for r in range(B):
                    U[k, i, r] = z[r]
            for r in range(B):
                H[k + 1, i, r] = H[k, i, r] + s * U[k, i, r]


@numba.njit(nogil=True, cache=True, fastmath={"contract", "reassoc"}, error_model="numpy")
def _backward(A, b, delta, dtype, act, Y, idx, H, U, G, gA, gb, gd):
    """Loss and gradients of mean((h_L - y)^2) over the batch rows ``idx`` (G: (d, B) work).

    dL/dh_L = 2 (h_L - y) / (B d);  with g = dL/dh_{k+1} and gz = g s_k sigma'(z_k):
    dL/dA_k = gz^T h_k,  dL/db_k = sum_batch gz,  dL/ds_k = sum g . sigma(z_k),
    dL/dh_k = g + gz A_k."""
    L, d = A.shape[0], A.shape[1]
    B = idx.shape[0]
    c = 2.0 / (B * d)
    loss = 0.0
    for r in range(B):
        for i in range(d):
            e = H[L, i, r] - Y[idx[r], i]
            loss += e * e
            G[i, r] = c * e
    loss /= B * d
    for q in range(gd.shape[0]):
        gd[q] = 0.0
    gz = np.empty((d, B))
    for k in range(L - 1, -1, -1):
        s = _scale(delta, k, dtype)
        gs = 0.0
        for i in range(d):
            acc = 0.0
            for r in range(B):
                u = U[k, i, r]
                gs += G[i, r] * u
                v = G[i, r] * s * _dsig(u, act)
                gz[i, r] = v
                acc += v
            gb[k, i] = acc
        for i in range(d):
            for j in range(d):
                acc = 0.0
                for r in range(B):
                    acc += gz[i, r] * H[k, j, r]
                gA[k, i, j] = acc
        for i in range(d):
            for j in range(d):
                a = A[k, i, j]
                for r in range(B):
                    G[j, r] += a * gz[i, r]
        if dtype == 1:
            d0 = delta[0]
            gd[0] += gs * (1.0 if d0 > 0 else (-1.0 if d0 < 0 else 0.0))
        elif dtype == 2:
            gd[k] = gs
    return loss


@numba.njit(nogil=True, cache=True, fastmath={"contract"}, error_model="numpy")
def _adam(p, g, m, v, lr, b1, b2, eps, bc1, bc2):
    """torch.optim.Adam: m <- b1 m + (1-b1) g, v <- b2 v + (1-b2) g^2,
    p <- p - lr (m / bc1) / (sqrt(v / bc2) + eps), bc = 1 - b^t."""
    pf, gf, mf, vf = p.ravel(), g.ravel(), m.ravel(), v.ravel()
    for i in range(pf.shape[0]):
        mf[i] = b1 * mf[i] + (1.0 - b1) * gf[i]
        vf[i] = b2 * vf[i] + (1.0 - b2) * gf[i] * gf[i]
        pf[i] -= lr * (mf[i] / bc1) / (math.sqrt(vf[i] / bc2) + eps)


@numba.njit(nogil=True, cache=True, fastmath={"contract"})
def _sgd(p, g, m, lr, momentum):
    """torch.optim.SGD: m <- momentum m + g (m = g at the first step), p <- p - lr m."""
    pf, gf, mf = p.ravel(), g.ravel(), m.ravel()
    for i in range(pf.shape[0]):
        mf[i] = momentum * mf[i] + gf[i]
        pf[i] -= lr * mf[i]


@numba.njit(nogil=True, cache=True)
def _epoch(A, b, delta, dtype, act, X, Y, perm, batch, opt, lr, b1, b2, eps, step,
           mA, vA, mb, vb, md, vd, H, U, G, gA, gb, gd):
    """One epoch over ``perm`` in batches of ``batch`` rows; returns (mean batch loss, step).
    Stops at the first non-finite batch loss and returns nan."""
    nb = perm.shape[0] // batch
    total = 0.0
    for q in range(nb):
        idx = perm[q * batch:(q + 1) * batch]
        _forward(A, b, delta, dtype, act, X, idx, H, U)
        loss = _backward(A, b, delta, dtype, act, Y, idx, H, U, G, gA, gb, gd)
        if not math.isfinite(loss):
            return np.nan, step
        total += loss
        step += 1
        if opt == 0:
            bc1, bc2 = 1.0 - b1 ** step, 1.0 - b2 ** step
            _adam(A, gA, mA, vA, lr, b1, b2, eps, bc1, bc2)
            _adam(b, gb, mb, vb, lr, b1, b2, eps, bc1, bc2)
            if dtype != 0:
                _adam(delta, gd, md, vd, lr, b1, b2, eps, bc1, bc2)
        else:
            _sgd(A, gA, mA, lr, b1)
            _sgd(b, gb, mb, lr, b1)
            if dtype != 0:
                _sgd(delta, gd, md, lr, b1)
    return total / nb, step


@numba.njit(nogil=True, cache=True)
def _loss_only(A, b, delta, dtype, act, X, Y, chunk):
    n, d = X.shape
    L = A.shape[0]
    total = 0.0
    for q0 in range(0, n, chunk):
        q1 = min(n, q0 + chunk)
        idx = np.arange(q0, q1)
        H = np.empty((L + 1, d, q1 - q0))
        U = np.empty((L, d, q1 - q0))
        _forward(A, b, delta, dtype, act, X, idx, H, U)
        for r in range(q1 - q0):
            for i in range(d):
                e = H[L, i, r] - Y[q0 + r, i]
                total += e * e
    return total / (n * d)


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """One trained network (training.md §2.1-2.2).

    Attributes
    ----------
    depth, d : int
    A : ndarray (L, d, d); b : ndarray (L, d); delta : ndarray (1,) shared, (L,) multi, (0,) none
    A0, b0, delta0 : the initial values
    loss_history : ndarray, mean train loss (MSE) of each epoch
    test_loss : float, MSE on the test set at the end (nan if none or diverged)
    stop : str, 'epsilon' (loss < epsilon), 'plateau' (``patience`` bad epochs), 'max_epochs'
        or 'diverged' (a non-finite loss: the run is reported and never fitted)
    settings : dict, everything needed to repeat the run
    """

    depth: int
    d: int
    activation: str
    delta_type: str
    A: np.ndarray
    b: np.ndarray
    delta: np.ndarray
    A0: np.ndarray
    b0: np.ndarray
    delta0: np.ndarray
    loss_history: np.ndarray
    test_loss: float
    stop: str
    settings: dict = field(default_factory=dict)

    @property
    def diverged(self):
        return self.stop == "diverged"

    @property
    def scales(self):
        """Per-layer branch scales s_k (length L)."""
        return _scales(self.delta, self.delta_type, self.depth)

    @property
    def effective_weights(self):
        """T_k = |delta_k| A_k (relu / identity with 'multi'), else A_k: shape (L, d, d)."""
        return effective_parameters(self)[0]

    @property
    def effective_biases(self):
        return effective_parameters(self)[1]


def _scales(delta, delta_type, L):
    if delta_type == "none":
        return np.ones(L)
    if delta_type == "shared":
        return np.full(L, abs(float(delta[0])))
    return np.asarray(delta, dtype=float).copy()


def effective_parameters(result):
    """Effective per-layer weights and biases of a :class:`TrainResult` (training.md §2.3).

    ``(|delta_k| A_k, |delta_k| b_k)`` for a positively homogeneous activation (relu, identity)
    with per-layer delta ('multi'), since ``delta relu(A h + b) = sign(delta) relu(|delta| A h +
    |delta| b)``; ``(A_k, b_k)`` otherwise (P2-code analyses exactly these).

    Returns
    -------
    (ndarray (L, d, d), ndarray (L, d))
    """
    if result.delta_type == "multi" and result.activation in _HOMOGENEOUS:
        s = np.abs(np.asarray(result.delta, dtype=float))
        return s[:, None, None] * result.A, s[:, None] * result.b
    return result.A.copy(), result.b.copy()


def _init(L, d, init, initial_sd, delta_type, rng):
    scale = initial_sd / L if init == "xavier-depth" else initial_sd
    A = rng.standard_normal((L, d, d)) * (scale / d)
    b = rng.standard_normal((L, d)) * (scale / math.sqrt(d))
    if delta_type == "none":
        delta = np.zeros(0)
    elif delta_type == "shared":
        delta = np.array([1.0 / L])
    else:
        delta = rng.standard_normal(L) / L
    return A, b, delta


def train(depth, data=None, *, d=None, activation="tanh", delta_type="shared", init="xavier-depth",
          initial_sd=0.01, optimizer="adam", lr=1e-2, batch_size=32, max_epochs=10,
          epsilon=1e-3, patience=5, betas=(0.9, 0.999), eps=1e-8, momentum=0.0, seed=0):
    """Train one fully connected ResNet ``h_{k+1} = h_k + s_k sigma(A_k h_k + b_k)`` (P2 Eq. (1)).

    MSE loss ``mean((h_L - y)^2)`` over batch and coordinates; mini-batches of a fresh permutation
    each epoch (the last ``n mod batch_size`` samples of a permutation are skipped; P2-code
    requires divisibility); Adam (torch's update) or SGD with momentum.  Stopping rule of
    P2-code (training.md §2.2): stop when the epoch's mean train loss is ``< epsilon``, after
    ``patience`` consecutive epochs whose loss is not below ``0.99 * best``, or at
    ``max_epochs``.  A non-finite loss stops the run with ``stop = 'diverged'``.

    Initialisation (training.md §2.1; s = ``initial_sd`` is a standard deviation):
    'xavier' ``A ~ N(0, (s/d)^2)``, ``b ~ N(0, s^2/d)``; 'xavier-depth' the same divided by L.
    delta: 'none' 1; 'shared' one scalar, init 1/L, used as |delta|; 'multi' ``delta_k ~
    N(0, 1/L^2)``, used with its sign.  Defaults follow P2-code's shipped example
    (``SCALING_PARAMS``: Adam, lr 1e-2, batch 32, 10 epochs, epsilon 1e-3, sd 0.01,
    'xavier-depth'); P2-code's ``DEFAULT_PARAMS`` has lr 1e-3 and 200 epochs.

    Parameters
    ----------
    depth : int >= 1
    data : Dataset, optional
        Default ``ode_data()`` (d = 10).
    d : int, optional
        Width; if given it must equal the data's number of features.
    activation : {'tanh', 'relu', 'identity'}
    delta_type : {'none', 'shared', 'multi'}
    init : {'xavier', 'xavier-depth'}
    initial_sd : float >= 0
    optimizer : {'adam', 'sgd'}
    lr : float > 0
    batch_size : int, 1 <= batch_size <= number of training samples
    max_epochs, patience : int >= 1
    epsilon : float >= 0
    betas : (float, float) in [0, 1); eps : float > 0 (Adam)
    momentum : float in [0, 1) (SGD)
    seed : int >= 0
        Initial weights from ``SeedSequence([seed, depth, 0])``, the batch permutations from
        ``SeedSequence([seed, depth, 1])``: the same seed gives the same network, whatever runs
        alongside.

    Returns
    -------
    TrainResult
    """
    L = _int("depth", depth, 1)
    if data is None:
        data = ode_data()
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a Dataset (ode_data(), digits_data()), got {data!r}")
    X = _matrix("data.X", data.X)
    if d is not None and _int("d", d, 1) != X.shape[1]:
        raise ValueError(f"d = {d!r} does not match the data's width {X.shape[1]}")
    d = X.shape[1]
    Y = _matrix("data.Y", data.Y, cols=d)
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"data.X and data.Y must have the same number of rows, got "
                         f"{X.shape[0]} and {Y.shape[0]}")
    act = _choice("activation", activation, tuple(ACTIVATIONS))
    dt = _choice("delta_type", delta_type, DELTA_TYPES)
    init = _choice("init", init, INITS)
    opt = _choice("optimizer", optimizer, OPTIMIZERS)
    initial_sd = _real("initial_sd", initial_sd, nonneg=True)
    lr = _real("lr", lr, positive=True)
    bs = _int("batch_size", batch_size, 1)
    if bs > X.shape[0]:
        raise ValueError(f"batch_size must be <= the number of training samples "
                         f"{X.shape[0]}, got {batch_size!r}")
    max_epochs = _int("max_epochs", max_epochs, 1)
    patience = _int("patience", patience, 1)
    epsilon = _real("epsilon", epsilon, nonneg=True)
    try:
        b1, b2 = (_real("betas", v) for v in betas)
    except TypeError:
        raise TypeError(f"betas must be a pair of real numbers, got {betas!r}")
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"betas must lie in [0, 1), got {betas!r}")
    eps = _real("eps", eps, positive=True)
    momentum = _real("momentum", momentum, nonneg=True)
    if momentum >= 1:
        raise ValueError(f"momentum must be < 1, got {momentum!r}")
    seed = _int("seed", seed, 0)
    settings = dict(activation=act, delta_type=dt, init=init, initial_sd=initial_sd,
                    optimizer=opt, lr=lr, batch_size=bs, max_epochs=max_epochs, epsilon=epsilon,
                    patience=patience, betas=(b1, b2), eps=eps, momentum=momentum, seed=seed,
                    data=data.name)

    A, b, delta = _init(L, d, init, initial_sd, dt, np.random.default_rng([seed, L, 0]))
    A0, b0, delta0 = A.copy(), b.copy(), delta.copy()
    shuffle = np.random.default_rng([seed, L, 1])
    dcode, acode = DELTA_TYPES.index(dt), ACTIVATIONS[act]
    dvec = delta if dt != "none" else np.zeros(1)
    mA, vA, mb, vb = (np.zeros_like(A), np.zeros_like(A), np.zeros_like(b), np.zeros_like(b))
    md, vd = np.zeros_like(dvec), np.zeros_like(dvec)
    H, U = np.empty((L + 1, d, bs)), np.empty((L, d, bs))
    G, gA, gb, gd = np.empty((d, bs)), np.empty_like(A), np.empty_like(b), np.empty_like(dvec)
    ocode, p1 = (0, b1) if opt == "adam" else (1, momentum)
    history, best, bad, stop, step = [], math.inf, 0, "max_epochs", 0
    for _ in range(max_epochs):
        perm = shuffle.permutation(X.shape[0]).astype(np.int64)
        loss, step = _epoch(A, b, dvec, dcode, acode, X, Y, perm, bs, ocode, lr, p1, b2, eps,
                            step, mA, vA, mb, vb, md, vd, H, U, G, gA, gb, gd)
        history.append(loss)
        if not math.isfinite(loss) or not (np.all(np.isfinite(A)) and np.all(np.isfinite(b))
                                           and np.all(np.isfinite(dvec))):
            stop = "diverged"
            break
        if loss < epsilon:
            stop = "epsilon"
            break
        if loss < 0.99 * best:
            best, bad = loss, 0
        else:
            bad += 1
            if bad >= patience:
                stop = "plateau"
                break
    delta = dvec if dt != "none" else np.zeros(0)
    test_loss = math.nan
    if stop != "diverged" and data.X_test.shape[0] > 0:
        test_loss = evaluate(A, b, delta, data.X_test, data.Y_test, activation=act,
                             delta_type=dt)
    return TrainResult(L, d, act, dt, A, b, delta, A0, b0, delta0, np.asarray(history),
                       float(test_loss), stop, settings)


def _network_args(A, b, delta, X, Y, activation, delta_type, none_lengths):
    """Checked arrays of :func:`evaluate` / :func:`gradient`: ``(A, b, delta, X, Y, activation,
    delta_type, L, d)``; ``delta`` must have length 1 ('shared'), L ('multi') or one of
    ``none_lengths`` ('none')."""
    A = np.ascontiguousarray(np.asarray(A, dtype=np.float64))
    if A.ndim != 3 or A.shape[1] != A.shape[2] or A.shape[0] < 1:
        raise ValueError(f"A must have shape (L, d, d) with L >= 1, got {A.shape}")
    L, d = A.shape[0], A.shape[1]
    b = np.ascontiguousarray(np.asarray(b, dtype=np.float64))
    if b.shape != (L, d):
        raise ValueError(f"b must have shape {(L, d)}, got {b.shape}")
    X, Y = _matrix("X", X, cols=d), _matrix("Y", Y, cols=d)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows, got {X.shape[0]} and "
                         f"{Y.shape[0]}")
    act = _choice("activation", activation, tuple(ACTIVATIONS))
    dt = _choice("delta_type", delta_type, DELTA_TYPES)
    delta = np.asarray(delta, dtype=np.float64).reshape(-1)
    want = {"none": none_lengths, "shared": (1,), "multi": (L,)}[dt]
    if delta.shape[0] not in want:
        raise ValueError(f"delta must have length {want[0]} for delta_type {dt!r}, got "
                         f"{delta.shape[0]}")
    return A, b, delta, X, Y, act, dt, L, d


def evaluate(A, b, delta, X, Y, *, activation="tanh", delta_type="shared"):
    """MSE ``mean((h_L - y)^2)`` of the ResNet with weights ``A`` (L, d, d), ``b`` (L, d) and
    ``delta`` on ``(X, Y)`` (training.md §2.1).  Used for the denoised re-evaluation of P2-code
    ``denoising.coupling``: for relu with 'multi' pass the trend of the effective weights and
    ``delta = sign(delta_k)`` (the weights already carry |delta_k|).

    Returns
    -------
    float
    """
    A, b, delta, X, Y, act, dt, L, d = _network_args(A, b, delta, X, Y, activation, delta_type,
                                                     none_lengths=(0, 1))
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(b)) and np.all(np.isfinite(delta))):
        raise ValueError("A, b and delta must be finite")
    dvec = delta if dt != "none" else np.zeros(1)
    return float(_loss_only(A, b, np.ascontiguousarray(dvec), DELTA_TYPES.index(dt),
                            ACTIVATIONS[act], X, Y, 256))


def gradient(A, b, delta, X, Y, *, activation="tanh", delta_type="shared"):
    """Loss ``mean((h_L - y)^2)`` on ``(X, Y)`` and its gradient (the compiled backward pass that
    :func:`train` uses), for checking against finite differences.

    Returns
    -------
    (float, ndarray like A, ndarray like b, ndarray like delta)
        For 'shared' the delta gradient is ``sign(delta) dL/d|delta|``; for 'none' it is empty.
    """
    A, b, delta, X, Y, act, dt, L, d = _network_args(A, b, delta, X, Y, activation, delta_type,
                                                     none_lengths=(0,))
    dvec = np.ascontiguousarray(delta) if dt != "none" else np.zeros(1)
    B = X.shape[0]
    idx = np.arange(B, dtype=np.int64)
    H, U = np.empty((L + 1, d, B)), np.empty((L, d, B))
    gA, gb, gd = np.empty_like(A), np.empty_like(b), np.empty_like(dvec)
    code = DELTA_TYPES.index(dt)
    _forward(A, b, dvec, code, ACTIVATIONS[act], X, idx, H, U)
    loss = _backward(A, b, dvec, code, ACTIVATIONS[act], Y, idx, H, U, np.empty((d, B)), gA,
                     gb, gd)
    return float(loss), gA, gb, (gd if dt != "none" else np.zeros(0))


# ----------------------------------------------------------------------------------------------
# statistics (training.md §2.3, P2-code regression.compute_statistics)
# ----------------------------------------------------------------------------------------------
def _sequence(name, T):
    try:
        a = np.asarray(T, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real array, got {type(T).__name__}")
    if a.ndim not in (2, 3) or a.shape[0] < 1:
        raise ValueError(f"{name} must have shape (L, d, d) or (L, d) with L >= 1, got "
                         f"{a.shape}")
    return a


def _norms(a):
    return np.sqrt(np.sum(a.reshape(a.shape[0], -1) ** 2, axis=1))


def increment(T, factor=0.0):
    """``Increment(factor) = L^factor max_{k>=1} ||T_k - T_{k-1}||`` (training.md §2.3);
    0 for L = 1."""
    T = _sequence("T", T)
    L = T.shape[0]
    if L < 2:
        return 0.0
    return float(L ** float(factor) * np.max(_norms(np.diff(T, axis=0))))


def detrended_cumsum(T):
    """Max norm of the detrended cumulative sum (P2-code; training.md §2.3).

    ``W_0 = 0, W_{k+1} = W_k + T_k``.  For L < 10: ``max_{k=1..L} ||W_k - (k/L) W_L||``.  Else,
    with ``win = max(3, int(0.1 L))``, for k = 1..L-1 subtract the mean of ``W_0..W_{2k-1}``
    (k < win), of ``W_{k-win}..W_{k+win-1}`` (k < L - win), or of ``W_{2k-L}..W_{L-1}``, and
    take the max of the norms.
    """
    T = _sequence("T", T)
    L = T.shape[0]
    flat = T.reshape(L, -1)
    W = np.vstack([np.zeros((1, flat.shape[1])), np.cumsum(flat, axis=0)])   # W_0..W_L
    if L < 10:
        k = np.arange(1, L + 1)
        return float(np.max(_norms(W[k] - (k / L)[:, None] * W[L])))
    win = max(3, int(0.1 * L))
    C = np.vstack([np.zeros((1, W.shape[1])), np.cumsum(W, axis=0)])        # C_j = sum_{i<j} W_i
    k = np.arange(1, L)
    lo = np.where(k < win, 0, np.where(k < L - win, k - win, 2 * k - L))
    hi = np.where(k < win, 2 * k, np.where(k < L - win, k + win, L))         # exclusive
    means = (C[hi] - C[lo]) / (hi - lo)[:, None]
    return float(np.max(_norms(W[k] - means)))


def statistics(T, factor=0.0):
    """All statistics of P2-code on one per-layer sequence (training.md §2.3).

    With Frobenius norms ``||.||`` (Euclidean for biases) and ``L = len(T)``::

        maximum             = max_k ||T_k||
        spectral            = max_k ||T_k||_2                  (Euclidean norm for biases)
        root_ssq            = sqrt(sum_k ||T_k||^2)
        quadratic_variation = sum_{k>=1} ||T_k - T_{k-1}||^2
        sobolev             = sqrt(L * quadratic_variation)
        increment           = L^factor max_{k>=1} ||T_k - T_{k-1}||
        cumsum              = ||sum_k T_k||
        detrended_cumsum    = see :func:`detrended_cumsum`

    Parameters
    ----------
    T : array (L, d, d) or (L, d)
    factor : float, default 0
        Exponent of the Increment statistic (P2 uses beta).

    Returns
    -------
    dict of float
    """
    T = _sequence("T", T)
    if not np.all(np.isfinite(T)):
        raise ValueError("T must be finite (a diverged run is excluded, never analysed)")
    L = T.shape[0]
    n = _norms(T)
    if T.ndim == 3:
        spec = float(np.max(np.linalg.norm(T, ord=2, axis=(1, 2))))
    else:
        spec = float(np.max(n))
    qv = float(np.sum(_norms(np.diff(T, axis=0)) ** 2)) if L > 1 else 0.0
    return dict(maximum=float(np.max(n)), spectral=spec, root_ssq=float(np.sqrt(np.sum(n * n))),
                quadratic_variation=qv, sobolev=float(math.sqrt(L * qv)),
                increment=increment(T, factor), cumsum=float(np.linalg.norm(T.sum(axis=0))),
                detrended_cumsum=detrended_cumsum(T))


# ----------------------------------------------------------------------------------------------
# exponents and the H1 / H2 verdict
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fit:
    """Least-squares line ``log y = intercept + slope log L``; ``stderr`` is the OLS standard
    error of the slope, ``sqrt(SSR / (n - 2) / Sxx)`` (nan for n = 2)."""

    slope: float
    stderr: float
    intercept: float


def _fit(depths, values):
    x, y = np.log(np.asarray(depths, float)), np.log(np.asarray(values, float))
    if not np.all(np.isfinite(y)):
        return Fit(math.nan, math.nan, math.nan)
    xm = x.mean()
    sxx = float(np.sum((x - xm) ** 2))
    slope = float(np.sum((x - xm) * (y - y.mean())) / sxx)
    icpt = float(y.mean() - slope * xm)
    n = len(x)
    se = math.sqrt(float(np.sum((y - icpt - slope * x) ** 2)) / (n - 2) / sxx) if n > 2 \
        else math.nan
    return Fit(slope, se, icpt)


@dataclass
class ScalingExponents:
    """Result of :func:`scaling_exponents`.

    Attributes
    ----------
    depths : ndarray of the depths used
    beta, beta_stderr : weight exponent, ``-slope(log L, log max_k ||T_k||)``
    alpha, alpha_stderr : delta exponent ``-slope(log L, log max_k |delta_k|)`` (nan if no deltas)
    increment_slope, increment_stderr : slope of ``log Increment(factor=beta)``
    root_ssq_slope, root_ssq_stderr : slope of ``log RootSSQ``
    predictions : {'H1': (increment slope, root ssq slope), 'H2': (...)}
    h1, h2 : bool, whether each hypothesis is accepted
    verdict : 'ode' (H1 only), 'sde' (H2 only) or 'neither'
    evidence : str, the numbers behind the verdict
    statistics : dict name -> ndarray over depths (all of :func:`statistics`)
    excluded : list of (depth, reason) (diverged or non-finite runs; never fitted)
    """

    depths: np.ndarray
    beta: float
    beta_stderr: float
    alpha: float
    alpha_stderr: float
    increment_slope: float
    increment_stderr: float
    root_ssq_slope: float
    root_ssq_stderr: float
    predictions: dict
    h1: bool
    h2: bool
    verdict: str
    evidence: str
    statistics: dict
    excluded: list
    z: float = 3.0
    tol: float = 0.2


def _collect(weights, deltas):
    """depth -> (T, delta or None), with the excluded runs."""
    excluded, items = [], {}
    if isinstance(weights, dict):
        pairs = list(weights.items())
    else:
        try:
            pairs = [(None, w) for w in weights]
        except TypeError:
            raise TypeError(f"weights must map depth -> array (L, d, d) / (L, d), or be a "
                            f"sequence of TrainResult, got {type(weights).__name__}")
    for L, w in pairs:
        dl = None
        if isinstance(w, TrainResult):
            if L is not None and int(L) != w.depth:
                raise ValueError(f"weights key {L!r} does not match the run's depth {w.depth}")
            L = w.depth
            if w.diverged:
                excluded.append((L, "diverged (non-finite loss)"))
                continue
            dl = np.abs(w.scales) if w.delta_type != "none" else None
            w = w.effective_weights
        if L is None:
            raise TypeError("a sequence of weights must hold TrainResult objects; pass a dict "
                            "depth -> array for arrays")
        if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 1:
            raise ValueError(f"weights keys must be depths (integers >= 1), got {L!r}")
        T = _sequence(f"weights[{L}]", w)
        if T.shape[0] != L:
            raise ValueError(f"weights[{L}] must have {L} layers (first axis), got shape "
                             f"{T.shape}")
        if int(L) in items:
            raise ValueError(f"depth {L} appears twice in weights")
        if not np.all(np.isfinite(T)):
            excluded.append((int(L), "non-finite weights"))
            continue
        if deltas is not None and int(L) in deltas:
            dl = np.abs(np.asarray(deltas[int(L)], float).reshape(-1))
        items[int(L)] = (T, dl)
    return dict(sorted(items.items())), excluded


def scaling_exponents(weights, deltas=None, *, z=3.0, tol=0.2):
    """Scaling exponents of trained ResNet weights against depth, and the regime verdict.

    ``beta = -slope(log L, log max_k ||T_k||)`` and ``alpha = -slope(log L, log max_k |delta_k|)``
    by least squares on log-log data (P2-code ``plots_fully_connected.py``; training.md §2.3),
    with OLS standard errors.  The H1/H2 diagnostic (training.md §2.3, our derivation,
    UNVERIFIED as P2 text) fits the slopes of ``Increment(factor=beta) = L^beta max ||T_k -
    T_{k-1}||`` and of ``RootSSQ = sqrt(sum_k ||T_k||^2)`` against log L and compares them with

    * H1 (smooth, ``T_k = L^-beta f(k/L)``): Increment slope -1, RootSSQ slope 1/2 - beta;
    * H2 (diffusive, ``T_k`` = increments of a process with non-zero quadratic variation, size
      ``L^-1/2``): Increment slope 0, beta = 1/2 (RootSSQ slope 0).

    Verdict (our rule, parameters ``z`` and ``tol``): a prediction holds when
    ``|measured - predicted| <= tol + z * stderr`` (``tol`` covers the slowly varying log factors
    of finite depths, e.g. the sqrt(2 log L) growth of a maximum of L Gaussians).  H1 needs
    ``Increment slope <= -1 + tol + z * stderr`` (one-sided: a Lipschitz profile has increments
    ``O(L^-1-beta)``; a steeper slope means the increments vanish even faster, as happens at
    finite depth while a trained profile flattens, and cannot come from a rough path), the
    RootSSQ prediction and ``beta > -tol``; H2 needs Increment slope 0 and ``beta`` = 1/2.
    'ode' if only H1 holds, 'sde' if only H2 holds, 'neither' otherwise (both or none;
    ``.evidence`` says which).

    Parameters
    ----------
    weights : dict depth -> array (L, d, d) or (L, d), or sequence / dict of TrainResult
        Effective per-layer weights (or biases) of one network per depth (>= 3 depths).  Runs
        that diverged or hold non-finite values are excluded and listed in ``.excluded``.
    deltas : dict depth -> array, optional
        |delta_k| per depth for alpha (taken from the TrainResults when those are given).
    z : float, default 3
    tol : float, default 0.2

    Returns
    -------
    ScalingExponents
    """
    z, tol = _real("z", z, nonneg=True), _real("tol", tol, nonneg=True)
    items, excluded = _collect(weights, deltas)
    if len(items) < 3:
        raise ValueError(f"scaling_exponents needs at least 3 distinct depths with finite "
                         f"weights, got {sorted(items)} (excluded: {excluded})")
    depths = np.array(sorted(items))
    stats0 = [statistics(items[L][0]) for L in depths]
    for L, st in zip(depths, stats0):
        if st["maximum"] == 0.0:
            raise ValueError(f"weights[{L}] is identically zero: log max norm is undefined")
    fb = _fit(depths, [s["maximum"] for s in stats0])
    beta, beta_se = -fb.slope, fb.stderr
    stats = {k: np.array([s[k] for s in stats0]) for k in stats0[0]}
    stats["increment"] = np.array([increment(items[L][0], beta) for L in depths])
    fi = _fit(depths, stats["increment"])
    fr = _fit(depths, stats["root_ssq"])
    if all(items[L][1] is not None for L in depths):
        stats["max_delta"] = np.array([np.max(items[L][1]) for L in depths])
        fa = _fit(depths, stats["max_delta"])
        alpha, alpha_se = -fa.slope, fa.stderr
    else:
        alpha, alpha_se = math.nan, math.nan
    pred = {"H1": (-1.0, 0.5 - beta), "H2": (0.0, 0.0)}

    def ok(meas, se, exp):
        return bool(abs(meas - exp) <= tol + z * se)

    h1_inc = bool(fi.slope <= -1.0 + tol + z * fi.stderr)
    h1_ssq = ok(fr.slope, fr.stderr, 0.5 - beta)
    h1 = h1_inc and h1_ssq and beta > -tol
    h2_inc = ok(fi.slope, fi.stderr, 0.0)
    h2_beta = ok(beta, beta_se, 0.5)
    h2 = h2_inc and h2_beta
    verdict = "ode" if (h1 and not h2) else "sde" if (h2 and not h1) else "neither"
    evidence = (f"beta = {beta:.3f} +- {beta_se:.3f}; Increment(beta) slope {fi.slope:.3f} +- "
                f"{fi.stderr:.3f} (H1 <= -1, H2 0); RootSSQ slope {fr.slope:.3f} +- "
                f"{fr.stderr:.3f} (1/2 - beta = {0.5 - beta:.3f}); band tol {tol} + {z} se; "
                f"H1 {'accepted' if h1 else 'rejected'} (increment {h1_inc}, root ssq {h1_ssq}),"
                f" H2 {'accepted' if h2 else 'rejected'} (increment {h2_inc}, beta 1/2 "
                f"{h2_beta})" + ("; both fit: undecided" if h1 and h2 else ""))
    return ScalingExponents(depths, beta, beta_se, alpha, alpha_se, fi.slope, fi.stderr,
                            fr.slope, fr.stderr, pred, h1, h2, verdict, evidence, stats,
                            excluded, z, tol)


# ----------------------------------------------------------------------------------------------
# trend / noise decomposition (P2-code denoising.coupling)
# ----------------------------------------------------------------------------------------------
@dataclass
class Decomposition:
    """Trend and noise of the weights (see :func:`decompose`).

    Attributes
    ----------
    times : ndarray (n_times,), the grid on [0, 1]
    mean_integral : ndarray (n_times, ...), ``Ibar(t)``
    reference : tuple of the depths averaged into ``Ibar``
    trend : dict depth -> ndarray like the weights, ``Tbar_k``
    noise : dict depth -> ndarray (L, ...), ``L^(beta-1) cumsum_k (T_k - Tbar_k)``
    beta : float
    """

    times: np.ndarray
    mean_integral: np.ndarray
    reference: tuple
    trend: dict
    noise: dict
    beta: float


def _cum_on_grid(T, beta, n_times):
    L = T.shape[0]
    W = np.concatenate([np.zeros((1,) + T.shape[1:]), np.cumsum(T, axis=0)])
    t = np.linspace(0.0, 1.0, n_times)
    k = np.minimum(np.floor(t * L + 1e-9).astype(int), L)
    return L ** (beta - 1.0) * W[k]


def decompose(weights, beta, *, n_times=500, reference=None):
    """Trend / noise decomposition of P2-code ``denoising.coupling`` (training.md §2.3).

    ``cum_L(t_i) = L^(beta-1) sum_{k < t_i L} T_k`` on ``n_times`` points of [0, 1];
    ``Ibar = `` mean of ``cum_L`` over the ``reference`` depths; trend
    ``Tbar_k = L^-beta (n_times - 1) (Ibar[i+1] - Ibar[i])``, ``i = floor((n_times - 1) k / L)``
    (P2-code writes 500 for the grid spacing of ``linspace(0, 1, 500)``; we use the exact
    spacing); noise ``L^(beta-1) cumsum_k (T_k - Tbar_k)``.

    Parameters
    ----------
    weights : dict depth -> array (L, d, d) or (L, d)
    beta : float
    n_times : int, default 500
    reference : sequence of depths, optional
        Default as P2-code: the depths at sorted positions -8..-5 restricted to L > 500; if that
        leaves none, the (up to) 4 deepest.

    Returns
    -------
    Decomposition
    """
    beta = _real("beta", beta)
    n_times = _int("n_times", n_times, 2)
    items, excluded = _collect(weights, None)
    if not items:
        raise ValueError(f"weights has no finite run (excluded: {excluded})")
    depths = sorted(items)
    if reference is None:
        ref = [L for L in depths[-8:-4] if L > 500] or depths[-4:]
    else:
        ref = [int(L) for L in reference]
        for L in ref:
            if L not in items:
                raise ValueError(f"reference depth {L!r} is not in weights {depths}")
    Ibar = np.mean([_cum_on_grid(items[L][0], beta, n_times) for L in ref], axis=0)
    h = n_times - 1
    trend, noise = {}, {}
    for L in depths:
        T = items[L][0]
        i = np.minimum(np.floor(h * np.arange(L) / L).astype(int), h - 1)
        Tb = L ** (-beta) * h * (Ibar[i + 1] - Ibar[i])
        trend[L] = Tb
        noise[L] = L ** (beta - 1.0) * np.cumsum(T - Tb, axis=0)
    return Decomposition(np.linspace(0, 1, n_times), Ibar, tuple(ref), trend, noise, beta)


def denoised_loss(result, trend_A, trend_b, X, Y):
    """Loss of ``result``'s network with its effective weights replaced by a trend (P2-code
    ``denoising``): for relu / identity with 'multi' delta the branch scale becomes
    ``sign(delta_k)`` (the trend already carries |delta_k|); otherwise delta is kept."""
    if result.delta_type == "multi" and result.activation in _HOMOGENEOUS:
        delta = np.sign(result.delta)
    else:
        delta = result.delta
    return evaluate(trend_A, trend_b, delta, X, Y, activation=result.activation,
                    delta_type=result.delta_type)


def denoised_losses(results, beta, X, Y, *, n_times=500, reference=None):
    """Re-evaluate every network with its denoised weights (P2-code ``denoising.coupling``).

    The effective weights and biases of all runs are decomposed with :func:`decompose` (same
    ``beta``, ``n_times`` and ``reference`` depths), and each network is evaluated on ``(X, Y)``
    with the trends ``(Tbar_k, bbar_k)`` in place of its weights (:func:`denoised_loss`).

    Parameters
    ----------
    results : dict depth -> TrainResult, sequence of TrainResult, or a Study
    beta : float
    X, Y : array (n, d)

    Returns
    -------
    dict depth -> (original loss, denoised loss)
    """
    if isinstance(results, Study):
        results = results.results
    runs = results.values() if isinstance(results, dict) else results
    runs = {r.depth: r for r in runs if isinstance(r, TrainResult) and not r.diverged}
    if not runs:
        raise ValueError("results holds no finite TrainResult")
    wA = decompose({L: r.effective_weights for L, r in runs.items()}, beta, n_times=n_times,
                   reference=reference)
    wb = decompose({L: r.effective_biases for L, r in runs.items()}, beta, n_times=n_times,
                   reference=wA.reference)
    out = {}
    for L, r in sorted(runs.items()):
        orig = evaluate(r.A, r.b, r.delta, X, Y, activation=r.activation,
                        delta_type=r.delta_type)
        out[L] = (orig, denoised_loss(r, wA.trend[L], wb.trend[L], X, Y))
    return out


# ----------------------------------------------------------------------------------------------
# a depth grid of runs
# ----------------------------------------------------------------------------------------------
@dataclass
class Study:
    """Runs over a depth grid and their exponents (:func:`study`)."""

    results: dict
    weights: "Optional[ScalingExponents]"
    biases: "Optional[ScalingExponents]"
    failures: list


def _point(params, rng_seed=None):
    """One grid point for ``limits.sweep.run_grid``: trains with ``params["seed"]`` (the run is
    deterministic from it; ``rng_seed`` is not used) and returns the weights as arrays."""
    p = dict(params)
    data_kw = p.pop("data_kw", {}) or {}
    data = (digits_data if p.pop("data") == "digits" else ode_data)(**data_kw)
    if "betas" in p:
        p["betas"] = tuple(p["betas"])
    r = train(p.pop("depth"), data, **p)
    out = dict(depth=r.depth, d=r.d, activation=r.activation, delta_type=r.delta_type,
               loss_history=np.asarray(r.loss_history, dtype=float), test_loss=r.test_loss,
               stop=r.stop, A=None, b=None, delta=None)
    if not r.diverged:
        out.update(A=r.A, b=r.b, delta=np.asarray(r.delta, dtype=float))
    return out


def _from_record(rec):
    d, L = int(rec["d"]), int(rec["depth"])
    if rec["stop"] == "diverged" or rec["A"] is None:
        A, b, delta = np.full((L, d, d), np.nan), np.full((L, d), np.nan), np.zeros(0)
    else:
        A, b, delta = (np.asarray(rec[k], dtype=float) for k in ("A", "b", "delta"))
    return TrainResult(L, d, rec["activation"], rec["delta_type"], A, b, delta, None, None, None,
                       np.asarray(rec["loss_history"], dtype=float), float(rec["test_loss"]),
                       rec["stop"], {})


def _canonical(params):
    import json
    return json.dumps(json.loads(json.dumps(dict(params))), sort_keys=True)


def study(depths, *, data="ode", data_kw=None, seed=0, executor=None, store=None, name=None,
          progress=False, **train_kw):
    """Train one network per depth and fit the exponents (P2 §"experiments"; training.md §2).

    Parameters
    ----------
    depths : sequence of int (>= 3 distinct), e.g. ``depth_grid(max_depth=300)``
    data : {'ode', 'digits'}
    data_kw : dict, optional, passed to :func:`ode_data` / :func:`digits_data`
    seed : int
    executor : concurrent.futures.Executor, optional
        Without ``store``: ``executor.submit`` per depth; else a local loop.
    store : str, optional
        SQLite store of ``limits.sweep.run_grid`` (imported lazily; if it is not importable the
        runs are done locally and nothing is stored).
    name : str, optional, experiment name in the store
    **train_kw : passed to :func:`train`

    Returns
    -------
    Study
        ``.results`` depth -> TrainResult; ``.weights`` / ``.biases`` the
        :class:`ScalingExponents` of the effective weights / biases (None when fewer than 3
        depths are usable); ``.failures`` diverged runs.  Runs that stopped on 'plateau' or
        'max_epochs' (loss still >= epsilon) are fitted, as in P2-code; to leave them out,
        pass ``[r for r in study.results.values() if r.stop == 'epsilon']`` to
        :func:`scaling_exponents`.
    """
    try:
        ds = sorted({_int("depths", L, 1) for L in depths})
    except TypeError as exc:
        if "depths" in str(exc):
            raise
        raise TypeError(f"depths must be a sequence of integers, got {depths!r}")
    data = _choice("data", data, ("ode", "digits"))
    data_kw = dict(data_kw or {})
    seed = _int("seed", seed, 0)
    # check the training arguments once, before any run
    probe = (ode_data if data == "ode" else digits_data)(**data_kw)
    train_kw = dict(train_kw)
    for k in ("activation", "delta_type"):
        if k in train_kw:
            _choice(k, train_kw[k], tuple(ACTIVATIONS) if k == "activation" else DELTA_TYPES)
    if "lr" in train_kw:
        _real("lr", train_kw["lr"], positive=True)
    points = [dict(depth=L, data=data, data_kw=data_kw, seed=seed, **train_kw) for L in ds]
    results = {}
    sweep = None
    if store is not None:
        try:
            from limits import sweep
        except ImportError:
            import warnings
            warnings.warn("limits.sweep is not available: running locally, nothing is stored",
                          RuntimeWarning, stacklevel=2)
    if sweep is not None:
        nm = name or f"resnet_scaling_{train_kw.get('activation', 'tanh')}_" \
                     f"{train_kw.get('delta_type', 'shared')}_{data}"
        sweep.run_grid(_point, points, store, name=nm, executor=executor, seed=seed,
                       progress=progress, retries=0)
        want = {_canonical(p): L for L, p in zip(ds, points)}
        for rec in sweep.load(store, nm):
            L = want.get(_canonical(rec.params))
            if L is not None and isinstance(rec.results, dict):
                results[L] = _from_record(rec.results)
    elif executor is not None:
        futs = {L: executor.submit(_point, p) for L, p in zip(ds, points)}
        results = {L: _from_record(f.result()) for L, f in futs.items()}
    else:
        for L, p in zip(ds, points):
            kw = {k: v for k, v in p.items() if k not in ("depth", "data", "data_kw")}
            results[L] = train(L, probe, **kw)
    failures = [(L, r.stop) for L, r in results.items() if r.diverged]
    failures += [(L, "missing") for L in ds if L not in results]
    good = {L: r for L, r in results.items() if not r.diverged}
    fw = fb = None
    if len(good) >= 3:
        fw = scaling_exponents(list(good.values()))
        bia = {L: r.effective_biases for L, r in good.items()}
        fb = scaling_exponents(bia)
    return Study(results, fw, fb, failures)
