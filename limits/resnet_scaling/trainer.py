"""Trainer of the fully connected ResNet of P2 (training.md §2.1-2.2): compiled forward and
backward passes, Adam / SGD, the stopping rule, :func:`train`, :func:`evaluate`,
:func:`gradient`.  Why hand-written numba: see the package docstring."""
import math
import sys
from dataclasses import dataclass, field

import numba
import numpy as np

from kernels import Activation, ReLU
from kernels._checks import (finite_array, finite_float, int_in_range, memory_guard,
                             nonneg_float,
                             positive_float)
from kernels import _pointwise as _pw
from kernels._pointwise import dphi, phi

from ._checks import _choice, _samples
from .data import Dataset, ode_data

__all__ = ["ACTIVATIONS", "DELTA_TYPES", "INITS", "OPTIMIZERS", "LOADERS", "TrainResult", "train",
           "evaluate", "gradient", "effective_parameters"]

ACTIVATIONS = {"identity": 0, "tanh": 1, "relu": 2}
_PROTOCOL = 3            # activation code of a kernels.Activation (its compiled pointwise form)
DELTA_TYPES = ("none", "shared", "multi")
INITS = ("xavier", "xavier-depth")
OPTIMIZERS = ("adam", "sgd")
LOADERS = ("shuffled", "p2-collapsed")
_HOMOGENEOUS = ("relu", "identity")
# the pointwise form passed to the compiled passes with an alias code: its type is fixed, so the
# alias kernels compile (and cache) once; they never evaluate it
_ALIAS_POINT = ReLU().pointwise()


def _activation(v, width, depth):
    """``(label, code, point)`` of the ``activation`` argument (resolved here, at the boundary).

    A string alias ('identity', 'tanh', 'relu') runs the trainer's specialised kernels (code 0,
    1, 2; ``point`` unused); a ``kernels.Activation`` runs through its compiled pointwise form
    ``activation.finite(width, depth).pointwise()`` (code 3; ``phi`` and ``phi'`` from
    ``kernels._pointwise``).  ``label`` is what :class:`TrainResult` records."""
    if isinstance(v, Activation):
        try:
            point = v.finite(width, depth).pointwise()
        except ValueError as exc:
            raise ValueError(f"activation {v!r} has no pointwise form at width {width}, depth "
                             f"{depth}: {exc}") from None
        return v, _PROTOCOL, point
    if not isinstance(v, str):
        raise TypeError(f"activation must be a string, one of {tuple(ACTIVATIONS)}, or a "
                        f"kernels.Activation (e.g. kernels.Activation(fn, deriv)), got {v!r}")
    act = _choice("activation", v, tuple(ACTIVATIONS))
    return act, ACTIVATIONS[act], _ALIAS_POINT


def _is_homogeneous(activation):
    """True for a positively homogeneous activation (relu, identity, the ABReLU family):
    ``delta phi(z) = sign(delta) phi(|delta| z)``, so |delta_k| moves into the weights."""
    if isinstance(activation, Activation):
        return activation.positively_homogeneous
    return activation in _HOMOGENEOUS


# ----------------------------------------------------------------------------------------------
# numba: forward, backward, optimiser
# ----------------------------------------------------------------------------------------------
# No fastmath flags here, on purpose: the results must depend only on the arguments.  A cached
# ``_epoch`` carries its own copy of ``_forward`` / ``_backward`` (numba links the callees' IR
# into the caller's module and re-optimises it), while a freshly compiled ``_epoch`` calls the
# standalone ones; with 'reassoc' (vectorised batch sums) and 'contract' (FMA fusion) the two
# copies rounded differently, so a cold and a warm cache gave different last bits.  Strict IEEE
# code rounds the same in every copy; the hot loops are written to vectorise without fastmath.
@numba.njit(inline="always")
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


@numba.njit(inline="always")
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


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _forward(A, b, delta, dtype, act, point, X, idx, H, U, D):
    """h_{k+1} = h_k + s_k sigma(A_k h_k + b_k) for the rows ``idx`` of X.

    Layout batch-innermost, so that every inner loop runs over the batch (contiguous, SIMD):
    H (L+1, d, B) holds the states, U (L, d, B) the activations u = sigma(z) (sigma' is a
    function of u for tanh, relu and identity).  With ``act == 3`` sigma is the pointwise form
    ``point`` (``phi(point, z)``) and D (L, d, B) receives sigma'(z) = ``dphi(point, z)`` (not
    written when D is empty, as for a loss only); D is unused by the aliases."""
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
            elif act == 3:
                for r in range(B):
                    U[k, i, r] = phi(point, z[r])
                if D.shape[0] > 0:
                    for r in range(B):
                        D[k, i, r] = dphi(point, z[r])
            else:
                for r in range(B):
                    U[k, i, r] = z[r]
            for r in range(B):
                H[k + 1, i, r] = H[k, i, r] + s * U[k, i, r]


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _backward(A, b, delta, dtype, act, Y, idx, H, U, D, G, gA, gb, gd):
    """Loss and gradients of mean((h_L - y)^2) over the batch rows ``idx`` (G: (d, B) work);
    sigma' from U (aliases) or from D (``act == 3``, see :func:`_forward`).

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
    HT = np.empty((B, d))
    for k in range(L - 1, -1, -1):
        s = _scale(delta, k, dtype)
        gs = 0.0
        for i in range(d):
            acc = 0.0
            if act == 3:
                for r in range(B):
                    gs += G[i, r] * U[k, i, r]
                    v = G[i, r] * s * D[k, i, r]
                    gz[i, r] = v
                    acc += v
            else:
                for r in range(B):
                    u = U[k, i, r]
                    gs += G[i, r] * u
                    v = G[i, r] * s * _dsig(u, act)
                    gz[i, r] = v
                    acc += v
            gb[k, i] = acc
        # dL/dA_k = gz h_k^T as a sum of outer products in batch order, through the transposed
        # states HT: the inner loop runs over j without a reduction, so it vectorises without
        # fastmath reassociation (which made the rounding depend on how LLVM compiled this).
        for j in range(d):
            for r in range(B):
                HT[r, j] = H[k, j, r]
        for i in range(d):
            for j in range(d):
                gA[k, i, j] = 0.0
        for r in range(B):
            for i in range(d):
                g = gz[i, r]
                for j in range(d):
                    gA[k, i, j] += g * HT[r, j]
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


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _adam(p, g, m, v, lr, b1, b2, eps, bc1, bc2):
    """torch.optim.Adam: m <- b1 m + (1-b1) g, v <- b2 v + (1-b2) g^2,
    p <- p - lr (m / bc1) / (sqrt(v / bc2) + eps), bc = 1 - b^t."""
    pf, gf, mf, vf = p.ravel(), g.ravel(), m.ravel(), v.ravel()
    for i in range(pf.shape[0]):
        mf[i] = b1 * mf[i] + (1.0 - b1) * gf[i]
        vf[i] = b2 * vf[i] + (1.0 - b2) * gf[i] * gf[i]
        pf[i] -= lr * (mf[i] / bc1) / (math.sqrt(vf[i] / bc2) + eps)


@numba.njit(nogil=True, cache=True)
def _sgd(p, g, m, lr, momentum):
    """torch.optim.SGD: m <- momentum m + g (m = g at the first step), p <- p - lr m."""
    pf, gf, mf = p.ravel(), g.ravel(), m.ravel()
    for i in range(pf.shape[0]):
        mf[i] = momentum * mf[i] + gf[i]
        pf[i] -= lr * mf[i]


@numba.njit(nogil=True, cache=True)
def _epoch(A, b, delta, dtype, act, point, X, Y, perm, batch, opt, lr, b1, b2, eps, step,
           mA, vA, mb, vb, md, vd, H, U, D, G, gA, gb, gd):
    """One epoch over ``perm`` in batches of ``batch`` rows; returns (mean batch loss, step).
    Stops at the first non-finite batch loss and returns nan."""
    nb = perm.shape[0] // batch
    total = 0.0
    for q in range(nb):
        idx = perm[q * batch:(q + 1) * batch]
        _forward(A, b, delta, dtype, act, point, X, idx, H, U, D)
        loss = _backward(A, b, delta, dtype, act, Y, idx, H, U, D, G, gA, gb, gd)
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
def _loss_only(A, b, delta, dtype, act, point, X, Y, chunk):
    n, d = X.shape
    L = A.shape[0]
    D = np.empty((0, 0, 0))
    total = 0.0
    for q0 in range(0, n, chunk):
        q1 = min(n, q0 + chunk)
        idx = np.arange(q0, q1)
        H = np.empty((L + 1, d, q1 - q0))
        U = np.empty((L, d, q1 - q0))
        _forward(A, b, delta, dtype, act, point, X, idx, H, U, D)
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
    activation : str or kernels.Activation, as passed to :func:`train`
    A : ndarray (L, d, d); b : ndarray (L, d); delta : ndarray (1,) shared, (L,) multi, (0,) none
    A0, b0, delta0 : the initial values
    loss_history : ndarray, mean train loss (MSE) of each epoch
    test_loss : float, MSE on the test set at the end (nan if none or diverged)
    stop : str, 'epsilon' (loss < epsilon), 'plateau' (``patience`` bad epochs), 'max_epochs'
        or 'diverged' (a non-finite loss: the run is reported and never fitted)
    settings : dict, everything needed to repeat the run (with ``loader``; for
        'p2-collapsed' also ``batch_rows``, the rows of the one batch trained on)
    """

    depth: int
    d: int
    activation: object          # the alias string, or the kernels.Activation trained with
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
        """T_k = |delta_k| A_k (positively homogeneous activation with 'multi'), else A_k:
        shape (L, d, d)."""
        return effective_parameters(self)[0]

    @property
    def effective_biases(self):
        return effective_parameters(self)[1]


def _passes(point):
    """The compiled passes taking the pointwise form ``point``: this module's cached ones, or
    (a user ``Activation``, whose compiled functions must not enter the on-disk cache:
    ``kernels._pointwise.cacheable``) their uncached twins."""
    if _pw.cacheable(point):
        return sys.modules[__name__]
    return _pw.uncached(sys.modules[__name__], ("_forward", "_epoch", "_loss_only"))


def _scales(delta, delta_type, L):
    if delta_type == "none":
        return np.ones(L)
    if delta_type == "shared":
        return np.full(L, abs(float(delta[0])))
    return np.asarray(delta, dtype=float).copy()


def effective_parameters(result):
    """Effective per-layer weights and biases of a :class:`TrainResult` (training.md §2.3).

    ``(|delta_k| A_k, |delta_k| b_k)`` for a positively homogeneous activation (relu, identity,
    an ``Activation`` whose ``positively_homogeneous`` is True) with per-layer delta ('multi'),
    since ``delta relu(A h + b) = sign(delta) relu(|delta| A h + |delta| b)``; ``(A_k, b_k)``
    otherwise (P2-code analyses exactly these).

    Returns
    -------
    (ndarray (L, d, d), ndarray (L, d))
    """
    if result.delta_type == "multi" and _is_homogeneous(result.activation):
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
          epsilon=1e-3, patience=5, betas=(0.9, 0.999), eps=1e-8, momentum=0.0, seed=0,
          loader="shuffled"):
    """Train one fully connected ResNet ``h_{k+1} = h_k + s_k sigma(A_k h_k + b_k)`` (P2 Eq. (1)).

    MSE loss ``mean((h_L - y)^2)`` over batch and coordinates; mini-batches of a fresh permutation
    each epoch (the last ``n mod batch_size`` samples of a permutation are skipped; P2-code
    requires divisibility); Adam (torch's update) or SGD with momentum.  Stopping rule of
    P2-code (training.md §2.2): stop when the epoch's mean train loss is ``< epsilon``, after
    ``patience`` consecutive epochs whose loss is not below ``0.99 * best``, or at
    ``max_epochs``.  A non-finite loss stops the run with ``stop = 'diverged'``.

    Loaders.  ``'shuffled'`` (the default, correct protocol): each epoch is one pass over a fresh
    permutation of the training set.  ``'p2-collapsed'`` reproduces what P2's released training
    loop ended up doing (training.md §2.6): ``train_final_net`` calls ``np.random.shuffle`` on a
    torch tensor of batches; NumPy swaps rows by ``x[i], x[j] = x[j], x[i]``, which copies rows
    that are views (numpy/numpy#18206, pytorch/pytorch#50880), so after about 8 epochs every
    row of the tensor holds the same batch, and the networks trained after the first one saw
    only that one batch.  Here: one fixed batch of ``batch_size`` distinct training rows,
    ``default_rng([seed, 2]).choice(n, batch_size, replace=False)`` (it does not depend on the
    depth: the released loader was shared by all depths), and each epoch makes ``n //
    batch_size`` steps on it (the epoch length of the released loop); the epoch loss is the
    mean of those batch losses, all on that batch.  The rows are in ``settings['batch_rows']``.
    It is a reproduction of a bug's effect, not a recommended protocol.

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
    activation : {'tanh', 'relu', 'identity'} or kernels.Activation
        The strings are aliases run by the trainer's own compiled kernels (tanh without a libm
        call, :func:`_tanh`); any ``kernels.Activation`` (``kernels.Erf()``,
        ``kernels.LeakyReLU(0.1)``, a user ``kernels.Activation(fn, deriv)``, ...) runs through
        its compiled pointwise form ``activation.finite(d, depth).pointwise()``
        (``kernels._pointwise.phi`` / ``dphi``; without ``deriv``, phi' is the activation's
        central difference).  ``kernels.Tanh()`` uses ``math.tanh``, so it agrees with
        ``'tanh'`` to rounding, not bit for bit.
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
    loader : {'shuffled', 'p2-collapsed'}, default 'shuffled'
        See "Loaders" above.

    Returns
    -------
    TrainResult
    """
    L = int_in_range(depth, "depth", 1)
    if data is None:
        data = ode_data()
    if not isinstance(data, Dataset):
        raise TypeError(f"data must be a Dataset (ode_data(), digits_data()), got {data!r}")
    X, Y = _samples("data.X", data.X, "data.Y", data.Y)
    if d is not None and int_in_range(d, "d", 1) != X.shape[1]:
        raise ValueError(f"d = {d!r} does not match the data's width {X.shape[1]}")
    d = X.shape[1]
    act, acode, point = _activation(activation, d, L)
    dt = _choice("delta_type", delta_type, DELTA_TYPES)
    init = _choice("init", init, INITS)
    opt = _choice("optimizer", optimizer, OPTIMIZERS)
    initial_sd = nonneg_float(initial_sd, "initial_sd")
    lr = positive_float(lr, "lr")
    bs = int_in_range(batch_size, "batch_size", 1)
    if bs > X.shape[0]:
        raise ValueError(f"batch_size must be <= the number of training samples "
                         f"{X.shape[0]}, got {batch_size!r}")
    max_epochs = int_in_range(max_epochs, "max_epochs", 1)
    patience = int_in_range(patience, "patience", 1)
    epsilon = nonneg_float(epsilon, "epsilon")
    try:
        b1, b2 = (finite_float(v, "betas") for v in betas)
    except TypeError:
        raise TypeError(f"betas must be a pair of real numbers, got {betas!r}")
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"betas must lie in [0, 1), got {betas!r}")
    eps = positive_float(eps, "eps")
    momentum = nonneg_float(momentum, "momentum")
    if momentum >= 1:
        raise ValueError(f"momentum must be < 1, got {momentum!r}")
    seed = int_in_range(seed, "seed", 0)
    loader = _choice("loader", loader, LOADERS)
    settings = dict(activation=act, delta_type=dt, init=init, initial_sd=initial_sd,
                    optimizer=opt, lr=lr, batch_size=bs, max_epochs=max_epochs, epsilon=epsilon,
                    patience=patience, betas=(b1, b2), eps=eps, momentum=momentum, seed=seed,
                    data=data.name, loader=loader)
    memory_guard([(8.0 * 6 * L * d * (d + 1), f"the {L} blocks' weights, gradients and Adam "
                                              f"moments"),
                  (8.0 * 3 * L * d * bs, "the stored activations of a batch")],
                 f"train(depth={L}, d={d})", "reduce the depth")
    n, collapsed = X.shape[0], loader == "p2-collapsed"
    if collapsed:
        rows = np.random.default_rng([seed, 2]).choice(n, bs, replace=False).astype(np.int64)
        settings["batch_rows"] = [int(i) for i in rows]
        fixed = np.tile(rows, n // bs)          # n // bs steps per epoch, all on one batch

    A, b, delta = _init(L, d, init, initial_sd, dt, np.random.default_rng([seed, L, 0]))
    A0, b0, delta0 = A.copy(), b.copy(), delta.copy()
    shuffle = np.random.default_rng([seed, L, 1])
    dcode = DELTA_TYPES.index(dt)
    dvec = delta if dt != "none" else np.zeros(1)
    mA, vA, mb, vb = (np.zeros_like(A), np.zeros_like(A), np.zeros_like(b), np.zeros_like(b))
    md, vd = np.zeros_like(dvec), np.zeros_like(dvec)
    H, U = np.empty((L + 1, d, bs)), np.empty((L, d, bs))
    D = np.empty((L, d, bs) if acode == _PROTOCOL else (0, 0, 0))
    G, gA, gb, gd = np.empty((d, bs)), np.empty_like(A), np.empty_like(b), np.empty_like(dvec)
    ocode, p1 = (0, b1) if opt == "adam" else (1, momentum)
    history, best, bad, stop, step = [], math.inf, 0, "max_epochs", 0
    passes = _passes(point)
    for _ in range(max_epochs):
        perm = fixed if collapsed else shuffle.permutation(n).astype(np.int64)
        loss, step = passes._epoch(A, b, dvec, dcode, acode, point, X, Y, perm, bs, ocode, lr,
                                   p1, b2, eps, step, mA, vA, mb, vb, md, vd, H, U, D, G, gA,
                                   gb, gd)
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
    """Checked arrays of :func:`evaluate` / :func:`gradient` (finite, real): ``(A, b, delta, X,
    Y, (code, point), delta_type, L, d)``; ``delta`` must have length 1 ('shared'), L ('multi')
    or one of ``none_lengths`` ('none')."""
    A = np.ascontiguousarray(finite_array(A, "A"))
    if A.ndim != 3 or A.shape[1] != A.shape[2] or A.shape[0] < 1:
        raise ValueError(f"A must have shape (L, d, d) with L >= 1, got {A.shape}")
    L, d = A.shape[0], A.shape[1]
    b = np.ascontiguousarray(finite_array(b, "b"))
    if b.shape != (L, d):
        raise ValueError(f"b must have shape {(L, d)}, got {b.shape}")
    X, Y = _samples("X", X, "Y", Y, cols=d)
    _, code, point = _activation(activation, d, L)
    dt = _choice("delta_type", delta_type, DELTA_TYPES)
    delta = finite_array(delta, "delta").reshape(-1)
    want = {"none": none_lengths, "shared": (1,), "multi": (L,)}[dt]
    if delta.shape[0] not in want:
        raise ValueError(f"delta must have length {want[0]} for delta_type {dt!r}, got "
                         f"{delta.shape[0]}")
    return A, b, delta, X, Y, (code, point), dt, L, d


def evaluate(A, b, delta, X, Y, *, activation="tanh", delta_type="shared"):
    """MSE ``mean((h_L - y)^2)`` of the ResNet with weights ``A`` (L, d, d), ``b`` (L, d) and
    ``delta`` on ``(X, Y)`` (training.md §2.1).  Used for the denoised re-evaluation of P2-code
    ``denoising.coupling``: for relu with 'multi' pass the trend of the effective weights and
    ``delta = sign(delta_k)`` (the weights already carry |delta_k|).  ``activation``: as in
    :func:`train`.

    Returns
    -------
    float
    """
    A, b, delta, X, Y, act, dt, L, d = _network_args(A, b, delta, X, Y, activation, delta_type,
                                                     none_lengths=(0, 1))
    dvec = delta if dt != "none" else np.zeros(1)
    return float(_passes(act[1])._loss_only(A, b, np.ascontiguousarray(dvec),
                                            DELTA_TYPES.index(dt), *act, X, Y, 256))


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
    code, (acode, point) = DELTA_TYPES.index(dt), act
    D = np.empty((L, d, B) if acode == _PROTOCOL else (0, 0, 0))
    _passes(point)._forward(A, b, dvec, code, acode, point, X, idx, H, U, D)
    loss = _backward(A, b, dvec, code, acode, Y, idx, H, U, D, np.empty((d, B)), gA, gb, gd)
    return float(loss), gA, gb, (gd if dt != "none" else np.zeros(0))
