"""Phase diagram of two-layer ReLU networks: linear / critical / condensed.

Luo, Xu, Ma & Zhang, "Phase diagram for two-layer ReLU neural networks at infinite-width limit",
JMLR 22(71), 2021 (arXiv 2007.07497), written P1 below; all definitions are those of
``theory/training.md`` §1.

Model (P1 Eq. (1), (3), (4)), the bias absorbed by augmenting the input with a 1::

    f(x) = (1/alpha) sum_{k=1..m} a_k relu(w_k . (x, 1)),   a_k ~ N(0, beta_1^2),
                                                           w_k ~ N(0, beta_2^2 I_{d+1})
    R_S  = 1/(2n) sum_i (f(x_i) - y_i)^2

Coordinates (P1 Eq. (8), (14))::

    kappa  = beta_1 beta_2 / alpha,   kappa' = beta_1 / beta_2
    gamma  = -log(kappa) / log(m),    gamma' = -log(kappa') / log(m)
    inverse: beta_2 = beta_1 m^gamma',  alpha = beta_1 beta_2 m^gamma

Regimes (P1 §4.1.1, Thm 6 and 8): linear if gamma < 1 + max(0, gamma'), condensed if
gamma > 1 + max(0, gamma'), critical on the boundary gamma = 1 + max(0, gamma').  The order
parameter is the relative distance of the input weights at the end of training,
``RD = ||theta_w* - theta_w(0)|| / ||theta_w(0)||`` (P1 Eq. (16)), and its width exponent
``S_w = lim log RD / log m`` (P1 Eq. (19)), estimated by least squares of log RD on log m.

Choices P1 does not state (training.md §1.5; each is a parameter, not hard-coded):

* data: the 4-point 1-d problem ``x = -1/2, -1/6, 1/6, 1/2``, ``y = x^2`` is *inferred* from
  P1 Fig. 2 and P1-code (:func:`one_d_data`; ``X, y`` take any data);
* optimiser: full-batch GD with our step rule (see :func:`train`; ``step_factor``,
  ``curvature_factor`` or a fixed ``lr``), stop at ``R_S < tol = 1e-6`` (P1-code stops at
  ``mean(e^2) < 1e-6``, i.e. ``R_S < 5e-7``: ``tol`` is a parameter);
* ASI on by default and RD on the first copy (P1-code; ``asi=False`` trains one copy);
* initial draws ``a = beta_1 A``, ``W = beta_2 Z`` from ``SeedSequence([seed, m, d])``, shared by
  every (alpha, beta_1, beta_2) and every grid point at the same (seed, m, d).

Entry points: :func:`regime`, :func:`boundary_distance`, the coordinate conversions
(:func:`kappas`, :func:`gammas_of`, :func:`from_gamma`), :data:`INITIALISATIONS`, :func:`train`,
:func:`slope`, :func:`diagram`, :func:`zero_crossings`, :func:`step_convergence`,
:func:`condensation_index` (ours, not P1's) and :func:`neuron_features`; failed runs raise
:class:`TrainingFailed`.  Figures: ``limits.plots.phase_diagram``, ``slope_heatmap``,
``condensation_picture``, ``rd_vs_width``.
"""
import math
from dataclasses import dataclass, field
from typing import Callable

import numba
import numpy as np
from numba import prange

__all__ = [
    "regime", "boundary", "boundary_distance", "kappas", "gammas_of", "from_gamma",
    "from_kappa", "Initialisation", "INITIALISATIONS", "one_d_data", "TrainResult", "train",
    "TrainingFailed", "Slope", "slope", "Diagram", "diagram", "zero_crossings",
    "neuron_features", "condensation_index", "DEFAULT_WIDTHS", "initial_parameters",
    "step_convergence",
]

DEFAULT_WIDTHS = (1000, 5000, 10000, 20000, 40000)   # P1 Fig. 3 and 4


class TrainingFailed(RuntimeError):
    """A training run hit its step budget or diverged; its numbers are not used."""


# ----------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------
def _finite_array(name, x):
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number or array of real numbers, got {x!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {x!r}")
    return arr


def _positive(name, x):
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {x!r}")
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be finite and > 0, got {x!r}")
    return float(x)


def _width(name, m, minimum=2):
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {m!r}")
    if m < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {m!r}")
    return int(m)


def _widths(widths):
    try:
        ws = tuple(widths)
    except TypeError:
        raise TypeError(f"widths must be a sequence of integers, got {widths!r}")
    if len(ws) < 2:
        raise ValueError(f"widths needs at least 2 distinct widths to fit a slope, got {widths!r}")
    ws = tuple(_width("widths", w) for w in ws)
    if len(set(ws)) != len(ws):
        raise ValueError(f"widths must be distinct, got {widths!r}")
    return ws


def _seeds(seeds):
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = (seeds,)
    try:
        ss = tuple(seeds)
    except TypeError:
        raise TypeError(f"seeds must be an integer or a sequence of integers, got {seeds!r}")
    if len(ss) < 1:
        raise ValueError(f"seeds must not be empty, got {seeds!r}")
    for s in ss:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"seeds must be non-negative integers, got {seeds!r}")
    if len(set(ss)) != len(ss):
        raise ValueError(f"seeds must be distinct, got {seeds!r}")
    return tuple(int(s) for s in ss)


# ----------------------------------------------------------------------------------------------
# coordinates and regimes
# ----------------------------------------------------------------------------------------------
def boundary(gamma_prime):
    """Theoretical phase boundary ``gamma_c(gamma') = 1 + max(0, gamma')`` (P1 §4.1.1, Thm 6, 8).

    Parameters
    ----------
    gamma_prime : float or array_like

    Returns
    -------
    ndarray or float
        The value of gamma on the critical line.
    """
    gp = _finite_array("gamma_prime", gamma_prime)
    out = 1.0 + np.maximum(0.0, gp)
    return float(out) if out.ndim == 0 else out


def boundary_distance(gamma, gamma_prime):
    """Signed Euclidean distance of ``(gamma, gamma')`` to the critical line.

    The critical line is the union of the rays ``{gamma = 1, gamma' <= 0}`` and
    ``{gamma' = gamma - 1, gamma' >= 0}`` (P1 §4.1.1).  The sign is ``+`` in the condensed
    regime (``gamma > 1 + max(0, gamma')``) and ``-`` in the linear regime.

    Parameters
    ----------
    gamma, gamma_prime : float or array_like (broadcast together)

    Returns
    -------
    ndarray or float
    """
    g = _finite_array("gamma", gamma)
    gp = _finite_array("gamma_prime", gamma_prime)
    g, gp = np.broadcast_arrays(g, gp)
    u, v = g - 1.0, gp
    corner = np.hypot(u, v)
    d_vert = np.where(v <= 0, np.abs(u), corner)
    t = 0.5 * (u + v)                                  # projection on (1, 1)/sqrt 2 from (1, 0)
    d_diag = np.where(t >= 0, np.abs(u - v) / math.sqrt(2.0), corner)
    d = np.minimum(d_vert, d_diag)
    out = np.where(g > 1.0 + np.maximum(0.0, gp), d, -d)
    return float(out) if out.ndim == 0 else out


def regime(gamma, gamma_prime, tol=1e-9):
    """Regime predicted by the theory: ``"linear"``, ``"critical"`` or ``"condensed"``.

    ``gamma < 1 + max(0, gamma') - tol`` is linear, ``gamma > 1 + max(0, gamma') + tol`` is
    condensed, and the band ``|gamma - 1 - max(0, gamma')| <= tol`` is critical
    (P1 §4.1.1; Thm 6 for the linear and Thm 8 for the condensed regime; the critical regime is
    the boundary, with mean-field as its typical point, P1 §4.2).

    Parameters
    ----------
    gamma, gamma_prime : float or array_like
        Coordinates (P1 Eq. (14)); arrays are broadcast together.
    tol : float, default 1e-9
        Half-width of the critical band, measured along gamma.  The default only absorbs
        rounding (e.g. ``1 + 0.1``); use e.g. 0.05 to call nearby points critical.

    Returns
    -------
    str or ndarray of str
    """
    g = _finite_array("gamma", gamma)
    gp = _finite_array("gamma_prime", gamma_prime)
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.integer, np.floating)) \
            or not math.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    g, gp = np.broadcast_arrays(g, gp)
    diff = g - (1.0 + np.maximum(0.0, gp))
    out = np.where(diff > tol, "condensed", np.where(diff < -tol, "linear", "critical"))
    return str(out) if out.ndim == 0 else out.astype("<U9")


def kappas(alpha, beta_1, beta_2):
    """Scaling parameters ``kappa = beta_1 beta_2 / alpha`` and ``kappa' = beta_1 / beta_2``
    (P1 Eq. (8)).

    Returns
    -------
    (kappa, kappa_prime)
    """
    alpha, beta_1, beta_2 = (_positive(n, v) for n, v in
                             (("alpha", alpha), ("beta_1", beta_1), ("beta_2", beta_2)))
    return beta_1 * beta_2 / alpha, beta_1 / beta_2


def gammas_of(alpha, beta_1, beta_2, m):
    """Finite-width coordinates ``gamma = -log(kappa)/log(m)``, ``gamma' = -log(kappa')/log(m)``
    (P1 Eq. (14) without the limit; constants such as sqrt(2) give a log(2)/log(m) offset).

    Returns
    -------
    (gamma, gamma_prime)
    """
    m = _width("m", m)
    k, kp = kappas(alpha, beta_1, beta_2)
    lm = math.log(m)
    return -math.log(k) / lm, -math.log(kp) / lm


def from_gamma(gamma, gamma_prime, m, beta_1=1.0):
    """``(alpha, beta_1, beta_2)`` at width m for the coordinates (gamma, gamma'):
    ``beta_2 = beta_1 m^gamma'``, ``alpha = beta_1 beta_2 m^gamma`` (P1 Fig. 3 caption).

    Parameters
    ----------
    gamma, gamma_prime : float
    m : int
        Width (>= 2).
    beta_1 : float, default 1
        Free choice; S_w does not depend on it (P1 Fig. 3(d)).

    Returns
    -------
    (alpha, beta_1, beta_2)
    """
    gamma = float(_finite_array("gamma", gamma))
    gamma_prime = float(_finite_array("gamma_prime", gamma_prime))
    m = _width("m", m)
    beta_1 = _positive("beta_1", beta_1)
    beta_2 = beta_1 * float(m) ** gamma_prime
    alpha = beta_1 * beta_2 * float(m) ** gamma
    return alpha, beta_1, beta_2


def from_kappa(kappa, kappa_prime, beta_1=1.0):
    """``(alpha, beta_1, beta_2)`` with the given ``(kappa, kappa')``: ``beta_2 = beta_1/kappa'``,
    ``alpha = beta_1 beta_2 / kappa`` (inverse of :func:`kappas`)."""
    kappa, kappa_prime, beta_1 = (_positive(n, v) for n, v in
                                  (("kappa", kappa), ("kappa_prime", kappa_prime),
                                   ("beta_1", beta_1)))
    beta_2 = beta_1 / kappa_prime
    return beta_1 * beta_2 / kappa, beta_1, beta_2


@dataclass(frozen=True)
class Initialisation:
    """A common initialisation as a point (or line) of the phase diagram (P1 Table 1).

    ``alpha(m, d)``, ``beta_1(m, d)``, ``beta_2(m, d)`` give the scales at width m and input
    dimension d; ``gamma``, ``gamma_prime`` are the limits m -> inf.  The E et al. (2020) family is
    the line ``gamma' = gamma`` (``line=True``; ``gamma``, ``gamma_prime`` hold one example point,
    beta = m^-1/4).
    """

    name: str
    alpha: Callable
    beta_1: Callable
    beta_2: Callable
    gamma: float
    gamma_prime: float
    line: bool = False

    def scales(self, m, d):
        """``(alpha, beta_1, beta_2)`` at width m, input dimension d."""
        return float(self.alpha(m, d)), float(self.beta_1(m, d)), float(self.beta_2(m, d))


INITIALISATIONS = {
    "LeCun": Initialisation("LeCun", lambda m, d: 1.0, lambda m, d: math.sqrt(1 / m),
                            lambda m, d: math.sqrt(1 / d), 0.5, 0.5),
    "He": Initialisation("He", lambda m, d: 1.0, lambda m, d: math.sqrt(2 / m),
                         lambda m, d: math.sqrt(2 / d), 0.5, 0.5),
    "Xavier": Initialisation("Xavier", lambda m, d: 1.0, lambda m, d: math.sqrt(2 / (m + 1)),
                             lambda m, d: math.sqrt(2 / (m + d)), 1.0, 0.0),
    "NTK": Initialisation("NTK", lambda m, d: math.sqrt(m), lambda m, d: 1.0,
                          lambda m, d: 1.0, 0.5, 0.0),
    "mean-field": Initialisation("mean-field", lambda m, d: float(m), lambda m, d: 1.0,
                                 lambda m, d: 1.0, 1.0, 0.0),
    "E et al.": Initialisation("E et al.", lambda m, d: 1.0, lambda m, d: m ** -0.25,
                               lambda m, d: 1.0, 0.25, 0.25, line=True),
}
"""P1 Table 1.  LeCun/He/NTK are linear, Xavier and mean-field sit at the corner (1, 0) of the
critical line, and the E et al. line gamma' = gamma lies in the linear regime."""


def one_d_data():
    """The 4-point 1-d problem of P1 §3.1 (inferred, training.md §1.5):
    ``X = [-1/2, -1/6, 1/6, 1/2]``, ``y = X^2``.

    Returns
    -------
    X : ndarray (4, 1)
    y : ndarray (4,)
    """
    x = np.array([-0.5, -1.0 / 6.0, 1.0 / 6.0, 0.5])
    return x[:, None], x ** 2


# ----------------------------------------------------------------------------------------------
# full-batch gradient descent (numba)
# ----------------------------------------------------------------------------------------------
_CONVERGED, _BUDGET, _INCREASE = 0, 1, 2
_STATUS = {0: "converged", 1: "budget", 2: "diverged"}


@numba.njit(inline="always")
def _check_and_lr(loss, prev, slack, tol, step, max_steps, trace, vmax2, n, c, F, delta,
                  lr_fixed):
    """Stopping rule and the step size of the next step; returns (code, lr), code -1 = go on.
    ``prev`` is the running minimum of R_S."""
    if not (loss <= prev * (1.0 + slack)):       # increase above the running minimum, nan, inf
        return _INCREASE, 0.0
    if loss < tol:
        return _CONVERGED, 0.0
    if step == max_steps:
        return _BUDGET, 0.0
    if lr_fixed > 0.0:
        return -1, lr_fixed
    lr = np.inf
    if trace > 0.0:
        lr = F * n / (c * c * trace)
    if vmax2 > 0.0:
        lr2 = delta * n / (abs(c) * math.sqrt(vmax2))
        if lr2 < lr:
            lr = lr2
    if not math.isfinite(lr):          # zero gradient and zero trace: nothing can move
        return _BUDGET, 0.0
    return -1, lr


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _gd(a, W, Xa, y, c, tol, max_steps, F, delta, lr_fixed, slack, loss_out):
    """Full-batch GD on f = c sum_k a_k relu(W_k . x), any input dimension; a (M,) and W (M, D)
    are updated in place.  The two products ``Z = W Xa^T`` and ``S = E Xa`` go to BLAS, the
    rest is fused in loops over neurons.  Returns (status, steps, gradient-flow time sum lr)."""
    M, D = W.shape
    n = Xa.shape[0]
    XaT = np.ascontiguousarray(Xa.T)
    xx = np.zeros(n)
    for i in range(n):
        for j in range(D):
            xx[i] += Xa[i, j] * Xa[i, j]
    ga = np.zeros(M)
    S = np.zeros((M, D))
    E = np.empty((M, n))
    f = np.zeros(n)
    e = np.zeros(n)
    lr = 0.0
    time = 0.0
    prev = np.inf
    cn = c / n
    for step in range(max_steps + 1):
        # the previous step's update, then the forward pass and trace(G) / c^2
        if step > 0:
            for k in range(M):
                ak = a[k]
                a[k] = ak - lr * cn * ga[k]
                sc = lr * cn * ak
                for j in range(D):
                    W[k, j] -= sc * S[k, j]
        Z = np.dot(W, XaT)
        f[:] = 0.0
        tr = 0.0
        for k in range(M):
            ak = a[k]
            for i in range(n):
                z = Z[k, i]
                h = max(z, 0.0)
                ind = 1.0 if z > 0.0 else 0.0
                f[i] += ak * h
                tr += h * h + ak * ak * xx[i] * ind
        loss = 0.0
        for i in range(n):
            e[i] = c * f[i] - y[i]
            loss += e[i] * e[i]
        loss /= 2.0 * n
        loss_out[step] = loss
        if not (loss <= prev * (1.0 + slack)) or loss < tol or step == max_steps:
            code, lr = _check_and_lr(loss, prev, slack, tol, step, max_steps, 0.0, 0.0, n, c, F,
                                     delta, lr_fixed)
            return code, step, time
        if loss < prev:
            prev = loss                # running minimum of R_S
        # g_k = sum_i e_i relu(z_ik), s_k = sum_i e_i 1[z_ik > 0] x_i  (S = E Xa)
        for k in range(M):
            g = 0.0
            for i in range(n):
                z = Z[k, i]
                g += e[i] * max(z, 0.0)
                E[k, i] = e[i] if z > 0.0 else 0.0
            ga[k] = g
        np.dot(E, Xa, S)
        vm = 0.0
        for k in range(M):
            v = 0.0
            for j in range(D):
                v += S[k, j] * S[k, j]
            vm = max(vm, v)
        code, lr = _check_and_lr(loss, np.inf, slack, tol, -1, max_steps, tr, vm, n, c, F, delta,
                                 lr_fixed)
        if code != -1:
            return code, step, time
        time += lr
    return _BUDGET, max_steps, time


@numba.njit(inline="always", error_model="numpy", fastmath={"contract"})
def _step_and_forward(a, w0, w1, x0, ga, g0, g1, lr_cn, update, lo, hi, f):
    """Neurons lo..hi-1 of ``_gd2``: the GD update (if ``update``; step lr c/n) from the previous
    gradients, then their outputs added to f; returns their part of the trace of the Gram."""
    n = x0.shape[0]
    tr = 0.0
    for k in range(lo, hi):
        ak = a[k]
        if update:
            a[k] = ak - lr_cn * ga[k]
            w0[k] -= lr_cn * ak * g0[k]
            w1[k] -= lr_cn * ak * g1[k]
            ak = a[k]
        for i in range(n):
            z = w0[k] * x0[i] + w1[k]
            h = max(z, 0.0)
            ind = 1.0 if z > 0.0 else 0.0
            f[i] += ak * h
            tr += h * h + ak * ak * (x0[i] * x0[i] + 1.0) * ind
    return tr


@numba.njit(inline="always", error_model="numpy", fastmath={"contract"})
def _gradients(w0, w1, x0, e, ga, g0, g1, lo, hi):
    """Neurons lo..hi-1 of ``_gd2``: gradient sums (ga, g0, g1) from the residual e; returns
    the largest ``g0^2 + g1^2`` among them."""
    n = x0.shape[0]
    vm = 0.0
    for k in range(lo, hi):
        g = 0.0
        s0 = 0.0
        s1 = 0.0
        for i in range(n):
            z = w0[k] * x0[i] + w1[k]
            g += e[i] * max(z, 0.0)
            ei = e[i] if z > 0.0 else 0.0
            s0 += ei * x0[i]
            s1 += ei
        ga[k] = g
        g0[k] = s0
        g1[k] = s1
        vm = max(vm, s0 * s0 + s1 * s1)
    return vm


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _gd2(a, w0, w1, x0, y, c, tol, max_steps, F, delta, lr_fixed, slack, loss_out):
    """The same as ``_gd`` for 1-d inputs (x, 1): the two input-weight columns w0 (slope) and
    w1 (bias) stored apart, which keeps every neuron's update in registers (about 3x faster)."""
    M = a.shape[0]
    n = x0.shape[0]
    ga = np.zeros(M)
    g0 = np.zeros(M)
    g1 = np.zeros(M)
    f = np.zeros(n)
    e = np.zeros(n)
    lr = 0.0
    time = 0.0
    prev = np.inf
    cn = c / n
    for step in range(max_steps + 1):
        f[:] = 0.0
        tr = _step_and_forward(a, w0, w1, x0, ga, g0, g1, lr * cn, step > 0, 0, M, f)
        loss = 0.0
        for i in range(n):
            e[i] = c * f[i] - y[i]
            loss += e[i] * e[i]
        loss /= 2.0 * n
        loss_out[step] = loss
        if not (loss <= prev * (1.0 + slack)) or loss < tol or step == max_steps:
            code, lr = _check_and_lr(loss, prev, slack, tol, step, max_steps, 0.0, 0.0, n, c, F,
                                     delta, lr_fixed)
            return code, step, time
        if loss < prev:
            prev = loss                # running minimum of R_S
        vm = _gradients(w0, w1, x0, e, ga, g0, g1, 0, M)
        code, lr = _check_and_lr(loss, np.inf, slack, tol, -1, max_steps, tr, vm, n, c, F, delta,
                                 lr_fixed)
        if code != -1:
            return code, step, time
        time += lr
    return _BUDGET, max_steps, time


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def _gd2_par(a, w0, w1, x0, y, c, tol, max_steps, F, delta, lr_fixed, slack, nch, loss_out):
    """``_gd2`` with the neurons split in ``nch`` chunks over numba's threads (``prange``).

    Two parallel regions per step; the per-chunk partial sums are added in chunk order, so the
    result depends on ``nch`` (a function of m only), not on the thread count."""
    M = a.shape[0]
    n = x0.shape[0]
    ga = np.zeros(M)
    g0 = np.zeros(M)
    g1 = np.zeros(M)
    fpart = np.zeros((nch, n))
    trpart = np.zeros(nch)
    vpart = np.zeros(nch)
    e = np.zeros(n)
    lr = 0.0
    time = 0.0
    prev = np.inf
    cn = c / n
    for step in range(max_steps + 1):
        for ch in prange(nch):
            lo = (M * ch) // nch
            hi = (M * (ch + 1)) // nch
            fl = np.zeros(n)
            tr = _step_and_forward(a, w0, w1, x0, ga, g0, g1, lr * cn, step > 0, lo, hi, fl)
            for i in range(n):
                fpart[ch, i] = fl[i]
            trpart[ch] = tr
        loss = 0.0
        tr = 0.0
        for ch in range(nch):
            tr += trpart[ch]
        for i in range(n):
            f = 0.0
            for ch in range(nch):
                f += fpart[ch, i]
            e[i] = c * f - y[i]
            loss += e[i] * e[i]
        loss /= 2.0 * n
        loss_out[step] = loss
        if not (loss <= prev * (1.0 + slack)) or loss < tol or step == max_steps:
            code, lr = _check_and_lr(loss, prev, slack, tol, step, max_steps, 0.0, 0.0, n, c, F,
                                     delta, lr_fixed)
            return code, step, time
        if loss < prev:
            prev = loss
        for ch in prange(nch):
            lo = (M * ch) // nch
            hi = (M * (ch + 1)) // nch
            vpart[ch] = _gradients(w0, w1, x0, e, ga, g0, g1, lo, hi)
        vm = 0.0
        for ch in range(nch):
            vm = max(vm, vpart[ch])
        code, lr = _check_and_lr(loss, np.inf, slack, tol, -1, max_steps, tr, vm, n, c, F, delta,
                                 lr_fixed)
        if code != -1:
            return code, step, time
        time += lr
    return _BUDGET, max_steps, time


def _chunks(M):
    """Chunks of the parallel kernel: a function of the number of neurons only."""
    return int(min(64, max(1, M // 4096)))


def _run_gd(a, W, Xa, y, c, tol, max_steps, F, delta, lr_fixed, slack, loss, parallel=False):
    """Dispatch to the 1-d kernel when the augmented input is (x, 1) (its ``prange`` variant
    with ``parallel``); W is updated in place."""
    if Xa.shape[1] == 2 and np.all(Xa[:, 1] == 1.0):
        w0 = np.ascontiguousarray(W[:, 0])
        w1 = np.ascontiguousarray(W[:, 1])
        x0 = np.ascontiguousarray(Xa[:, 0])
        if parallel:
            out = _gd2_par(a, w0, w1, x0, y, c, tol, max_steps, F, delta, lr_fixed, slack,
                           _chunks(a.shape[0]), loss)
        else:
            out = _gd2(a, w0, w1, x0, y, c, tol, max_steps, F, delta, lr_fixed, slack, loss)
        W[:, 0] = w0
        W[:, 1] = w1
        return out
    return _gd(a, W, Xa, y, c, tol, max_steps, F, delta, lr_fixed, slack, loss)



@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    rd : float
        ``RD(theta_w*) = ||W* - W0||_F / ||W0||_F`` over the input weights (bias included) of the
        first ASI copy (P1 Eq. (16); P1-code).
    status : str
        ``"converged"`` (R_S < tol), ``"budget"`` (step budget reached) or ``"diverged"`` (the loss
        increased at every one of the allowed step-size halvings).  Only ``"converged"`` runs
        are results; see :attr:`failed`.
    steps : int
        GD steps of the final attempt.
    loss : ndarray
        R_S at every step of the final attempt (``loss[0]`` at initialisation).
    time : float
        Gradient-flow time of the final attempt, ``sum_t lr_t``.
    a0, W0, a, W : ndarray
        Initial and final output weights (m,) and input weights (m, d+1) of the first copy
        (original, not normalised, coordinates; the last column of W is the bias).
    alpha, beta_1, beta_2 : float
    m : int
    step_factor, curvature_factor : float
        The factors F, delta of the final attempt (after halvings).
    restarts : int
        Restarts after a loss increase.
    """

    rd: float
    status: str
    steps: int
    loss: np.ndarray
    time: float
    a0: np.ndarray
    W0: np.ndarray
    a: np.ndarray
    W: np.ndarray
    alpha: float
    beta_1: float
    beta_2: float
    m: int
    step_factor: float
    curvature_factor: float
    restarts: int
    asi: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def failed(self):
        """True unless the run converged (R_S < tol)."""
        return self.status != "converged"

    def check(self):
        """Raise :class:`TrainingFailed` if the run failed; return self otherwise."""
        if self.failed:
            raise TrainingFailed(
                f"training {self.status} (m={self.m}, alpha={self.alpha:.4g}, "
                f"beta_1={self.beta_1:.4g}, beta_2={self.beta_2:.4g}, steps={self.steps}, "
                f"last R_S={self.loss[-1]:.3g}, restarts={self.restarts})")
        return self


def _data(X, y):
    if X is None and y is None:
        return one_d_data()
    if X is None or y is None:
        raise ValueError("give both X and y (or neither, for the 1-d data of P1 §3.1)")
    try:
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        raise TypeError("X and y must be real arrays")
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must have shape (n, d), got shape {X.shape}")
    y = y.reshape(-1) if y.ndim == 2 and 1 in y.shape else y
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X {X.shape}, got {y.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or inf")
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or inf")
    return X, y


def _scales(m, gamma, gamma_prime, alpha, beta_1, beta_2):
    explicit = alpha is not None or beta_2 is not None
    if gamma is not None or gamma_prime is not None:
        if explicit:
            raise ValueError("give either (gamma, gamma_prime[, beta_1]) or (alpha, beta_1, "
                             "beta_2), not both")
        if gamma is None or gamma_prime is None:
            raise ValueError(f"give both gamma and gamma_prime, got gamma={gamma!r}, "
                             f"gamma_prime={gamma_prime!r}")
        return from_gamma(gamma, gamma_prime, m, 1.0 if beta_1 is None else beta_1)
    if alpha is None or beta_1 is None or beta_2 is None:
        raise ValueError("give (gamma, gamma_prime) or all of alpha, beta_1, beta_2")
    return (_positive("alpha", alpha), _positive("beta_1", beta_1),
            _positive("beta_2", beta_2))


def initial_parameters(m, d, seed, beta_1=1.0, beta_2=1.0):
    """Initial ``a (m,)`` and ``W (m, d+1)``: ``a = beta_1 A``, ``W = beta_2 Z`` with A, Z
    standard normal from ``numpy.random.default_rng(SeedSequence([seed, m, d]))`` (P1 Eq. (4)).

    The same seed gives the same normalised draws (A, Z) for every (alpha, beta_1, beta_2), so
    points of a diagram share their random numbers."""
    m = _width("m", m, 1)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), m, int(d)]))
    A = rng.standard_normal(m)
    Z = rng.standard_normal((m, d + 1))
    return beta_1 * A, beta_2 * Z


def train(m, gamma=None, gamma_prime=None, *, alpha=None, beta_1=None, beta_2=None, X=None,
          y=None, seed=0, asi=True, tol=1e-6, max_steps=200_000, step_factor=1.0,
          curvature_factor=0.02, lr=None, increase_tol=0.05, max_restarts=8, init=None,
          parallel=False):
    """Train the two-layer ReLU network by full-batch gradient descent and return RD(theta_w*).

    Model and loss as in P1 Eq. (1), (3)-(5) (see the module docstring); the dynamics are GD on
    the original parameters ``theta <- theta - eta_t grad R_S(theta)``, in float64, with the
    whole step loop in one numba call (``nogil``; :func:`slope` and :func:`diagram` run
    several trainings at once on the cores; ``parallel=True`` splits one run's neurons over
    the cores with ``prange`` instead).

    **Learning-rate rule** (ours; P1 states none, training.md §1.5).  At every step::

        eta_t = min( F n / tr G,   delta n / (|c| max_k |v_k|) ),   c = 1/alpha
        tr G  = c^2 sum_k sum_i [relu(w_k.x_i)^2 + a_k^2 1[w_k.x_i > 0] |x_i|^2]
        v_k   = sum_i e_i 1[w_k.x_i > 0] x_i

    The first term is the stability limit of the Gauss-Newton part of the Hessian: G is the
    empirical NTK Gram, ``tr G >= lambda_max(G)``, so ``eta lambda_max(G)/n <= F`` and every
    output mode contracts monotonically for F <= 1.  The second term resolves the other part,
    ``(1/n) sum_i e_i Hess f(x_i)``, which is block-diagonal with eigenvalues
    ``+-|c| |v_k|/n`` per neuron: it sets the rate at which neurons grow and rotate away from
    initialisation (the condensed regime starts with that growth, at kappa m << 1).  Keeping
    ``eta |c| |v_k| / n <= delta`` makes GD follow gradient flow there, where the Gram rule
    alone takes steps far too large (training.md §1.5: RD at gamma = 1.75 changes by 2.4x with
    the step size).  With the defaults F = 1, delta = 0.02 we measured RD converged in the step
    size: F/4 and delta/16 move RD by < 1.5 % at (gamma, gamma') = (1.75, 0), (1.3, -0.3),
    (1.4, 0.3), (1.2, -0.1), (1.0, 0) for m = 1000 and 40000, and by 4.8 % at (1.4, -0.4),
    m = 1000 (:func:`step_convergence` repeats the check at any point).  Both terms are
    invariant under the rescaling of P1 Eq. (7), so runs at the same (kappa, kappa') with
    different (alpha, beta_1, beta_2) are the same run up to rounding.
    ``lr`` fixes a constant step instead.

    **Safeguard.**  If R_S rises above its running minimum by more than ``increase_tol``
    (relative, default 5 %) or becomes non-finite, F and delta (or ``lr``) are halved and the
    run restarts from the same initialisation (as P1-code does, which restarts on any
    increase).  The slack is needed because the loss is only piecewise smooth: neurons whose
    kink sits on a data point (condensed solutions) make GD chatter, and we measured
    increases up to 2.5 % above the running minimum at small steps at gamma = 1.75, with RD
    unaffected; a real instability grows geometrically and is caught.  After ``max_restarts``
    halvings the run is reported ``"diverged"``.  A run that reaches ``max_steps`` is
    reported ``"budget"``.  Neither is a result: :attr:`TrainResult.failed` is True and
    :meth:`TrainResult.check` raises.

    Parameters
    ----------
    m : int
        Width (number of hidden neurons of one copy), >= 2.
    gamma, gamma_prime : float, optional
        Coordinates; then ``beta_1`` (default 1) is free, ``beta_2 = beta_1 m^gamma'`` and
        ``alpha = beta_1 beta_2 m^gamma``.
    alpha, beta_1, beta_2 : float, optional
        Explicit scales instead of (gamma, gamma').
    X, y : array_like (n, d) and (n,), optional
        Training data (the input is augmented with a 1).  Default: the 1-d data of P1 §3.1.
    seed : int
        Initialisation seed (see :func:`initial_parameters`).
    asi : bool, default True
        Antisymmetric initialisation (P1 §4.1; Zhang et al. 2020): a second copy with output
        ``-c sum a'_k relu(w'_k.x)``, starting at ``(a', w') = (a, w)`` and trained
        independently, so ``f = 0`` at initialisation.  RD uses the first copy (P1-code).
    tol : float, default 1e-6
        Stop when ``R_S < tol`` (training.md §1.5).
    max_steps : int, default 200000
        Step budget.
    step_factor, curvature_factor : float, default 1.0 and 0.02
        F and delta of the learning-rate rule.
    lr : float, optional
        Constant step instead of the rule.
    increase_tol : float, default 0.05
        Relative rise of R_S above its running minimum that triggers a restart.
    max_restarts : int, default 8
    init : (a0, W0), optional
        Explicit initial parameters (original coordinates, W0 of shape (m, d+1)).
    parallel : bool, default False
        1-d data only: split the neurons over numba's threads (``prange``, two parallel
        regions per step).  It pays for one large run on otherwise idle cores (see
        ``benchmarks/phase.py``); :func:`slope` and :func:`diagram` instead run whole
        trainings in parallel, which needs no per-step synchronisation.  Rounding differs
        from the serial kernel (partial sums per chunk).

    Returns
    -------
    TrainResult
    """
    m = _width("m", m)
    X, y = _data(X, y)
    alpha, beta_1, beta_2 = _scales(m, gamma, gamma_prime, alpha, beta_1, beta_2)
    if not isinstance(asi, (bool, np.bool_)):
        raise TypeError(f"asi must be a bool, got {asi!r}")
    tol = _positive("tol", tol)
    max_steps = _width("max_steps", max_steps, 1)
    F = _positive("step_factor", step_factor)
    delta = _positive("curvature_factor", curvature_factor)
    lr_fixed = 0.0 if lr is None else _positive("lr", lr)
    increase_tol = _positive("increase_tol", increase_tol)
    if not isinstance(parallel, (bool, np.bool_)):
        raise TypeError(f"parallel must be a bool, got {parallel!r}")
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, (int, np.integer)) \
            or max_restarts < 0:
        raise ValueError(f"max_restarts must be an integer >= 0, got {max_restarts!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    n, d = X.shape
    Xa = np.ascontiguousarray(np.hstack([X, np.ones((n, 1))]))
    y = np.ascontiguousarray(y, dtype=float)
    if init is None:
        a0, W0 = initial_parameters(m, d, seed, beta_1, beta_2)
    else:
        a0, W0 = (np.asarray(v, dtype=float) for v in init)
        if a0.shape != (m,) or W0.shape != (m, d + 1):
            raise ValueError(f"init must be (a0 of shape ({m},), W0 of shape ({m}, {d + 1})), "
                             f"got {a0.shape}, {W0.shape}")
        if not (np.all(np.isfinite(a0)) and np.all(np.isfinite(W0))):
            raise ValueError("init contains NaN or inf")
    if asi:
        a_init = np.concatenate([a0, -a0])       # second copy: output -c a'_k, a' = a at t = 0
        W_init = np.concatenate([W0, W0])
    else:
        a_init, W_init = a0.copy(), W0.copy()
    c = 1.0 / alpha
    restarts = 0
    while True:
        a = a_init.copy()
        W = np.ascontiguousarray(W_init.copy())
        loss = np.empty(max_steps + 1)
        code, steps, time = _run_gd(a, W, Xa, y, c, tol, max_steps, F, delta, lr_fixed,
                                     increase_tol, loss, parallel)
        if code != _INCREASE or restarts >= max_restarts:
            break
        restarts += 1
        F, delta, lr_fixed = F / 2, delta / 2, lr_fixed / 2
    a1, W1 = a[:m].copy(), W[:m].copy()
    rd = float(np.linalg.norm(W1 - W0) / np.linalg.norm(W0))
    return TrainResult(rd=rd, status=_STATUS[code], steps=int(steps), loss=loss[:steps + 1].copy(),
                       time=float(time), a0=a0, W0=W0, a=a1, W=W1, alpha=alpha, beta_1=beta_1,
                       beta_2=beta_2, m=m, step_factor=F, curvature_factor=delta,
                       restarts=restarts, asi=bool(asi),
                       extra={"lr": lr_fixed if lr is not None else None})


def step_convergence(m, gamma, gamma_prime, factor=4.0, **train_kw):
    """Relative change of RD when both step factors F and delta are divided by ``factor``.

    Returns ``(rd, rd_small_steps, |rd_small - rd| / rd)``; both runs must converge (else
    :class:`TrainingFailed`).  Use it to show that RD is a property of gradient flow and not of
    the step size (training.md §1.5)."""
    factor = _positive("factor", factor)
    F = train_kw.pop("step_factor", 1.0)
    delta = train_kw.pop("curvature_factor", 0.02)
    r1 = train(m, gamma, gamma_prime, step_factor=F, curvature_factor=delta, **train_kw).check()
    r2 = train(m, gamma, gamma_prime, step_factor=F / factor, curvature_factor=delta / factor,
               **train_kw).check()
    return r1.rd, r2.rd, abs(r2.rd - r1.rd) / r1.rd


# ----------------------------------------------------------------------------------------------
# S_w over widths and seeds; the empirical diagram
# ----------------------------------------------------------------------------------------------
def _default_workers():
    import os
    return max(1, min(os.cpu_count() or 1, numba.config.NUMBA_NUM_THREADS))


def _run_point(p):
    """One training run from a JSON-able dict; returns a dict of results or raises
    :class:`TrainingFailed`.  ``p`` holds gamma, gamma_prime, m, seed, beta1_exponent and the
    keyword arguments of :func:`train` (X, y as nested lists or None)."""
    kw = dict(p)
    g, gp, m, seed = kw.pop("gamma"), kw.pop("gamma_prime"), int(kw.pop("m")), int(kw.pop("seed"))
    e1 = float(kw.pop("beta1_exponent", 0.0))
    X, y = kw.pop("X", None), kw.pop("y", None)
    r = train(m, g, gp, beta_1=float(m) ** (-e1), X=X, y=y, seed=seed, **kw)
    r.check()
    return {"rd": r.rd, "steps": r.steps, "time": r.time, "restarts": r.restarts}


def _phase_point(params, rng_seed=None):
    """Point function of :func:`diagram` for ``limits.sweep.run_grid``: one training run.

    The initialisation comes from ``params["seed"]`` and the width (see
    :func:`initial_parameters`), not from the sweep's ``rng_seed``, so that :func:`train`,
    :func:`slope` and :func:`diagram` give the same numbers whatever runs them.  A run is
    single-threaded; the sweep's processes (or :func:`diagram`'s threads) use the cores."""
    return _run_point(params)


def _train_many(points, workers=None, progress=False, desc="train"):
    """Run ``_run_point`` over dicts on ``workers`` threads (the kernels release the GIL).
    Returns a list of results or exceptions, in order."""
    from concurrent.futures import ThreadPoolExecutor

    workers = _default_workers() if workers is None else int(workers)
    order = sorted(range(len(points)), key=lambda i: -int(points[i]["m"]))   # big runs first
    out = [None] * len(points)

    def one(i):
        try:
            return i, _run_point(points[i])
        except TrainingFailed as exc:
            return i, exc

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(points), desc=desc)
    if workers <= 1:
        results = map(one, order)
        for i, res in results:
            out[i] = res
            if bar is not None:
                bar.update(1)
    else:
        with ThreadPoolExecutor(max_workers=workers) as ex:
            for i, res in ex.map(one, order):
                out[i] = res
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return out


def _fit(log_m, log_rd):
    """Least-squares slope of log RD on log m (P1 Eq. (19); P1-code np.polyfit(..., 1)[0]) and
    its OLS standard error (nan with 2 widths)."""
    x = log_m - log_m.mean()
    b = float(np.dot(x, log_rd - log_rd.mean()) / np.dot(x, x))
    if len(x) > 2:
        res = log_rd - log_rd.mean() - b * x
        se = float(math.sqrt(np.dot(res, res) / (len(x) - 2) / np.dot(x, x)))
    else:
        se = float("nan")
    return b, se


@dataclass
class Slope:
    """S_w at one (gamma, gamma') (P1 Eq. (19)).

    Attributes
    ----------
    value : float
        Mean over seeds of the least-squares slope of log RD on log m (equal to the slope of the
        seed-averaged log RD, since the fit is linear).
    stderr : float
        Standard error over seeds, ``std(ddof=1)/sqrt(#seeds)``; with one seed, the OLS
        standard error of the fit (``method`` says which).
    per_seed : ndarray (S,)
    rd : ndarray (S, W)
        RD(theta_w*) per seed and width.
    widths, seeds : tuple
    gamma, gamma_prime : float
    method : str
    """

    value: float
    stderr: float
    per_seed: np.ndarray
    rd: np.ndarray
    widths: tuple
    seeds: tuple
    gamma: float
    gamma_prime: float
    method: str

    def __float__(self):
        return self.value


def _train_kw(kw):
    allowed = {"asi", "tol", "max_steps", "step_factor", "curvature_factor", "lr",
               "increase_tol", "max_restarts"}
    bad = set(kw) - allowed
    if bad:
        raise TypeError(f"unknown keyword arguments {sorted(bad)}; allowed: {sorted(allowed)}")
    return kw


def _slope_from_rd(rd, widths, seeds, gamma, gamma_prime):
    if np.any(rd <= 0):
        raise TrainingFailed(f"RD = 0 at (gamma, gamma') = ({gamma}, {gamma_prime}) for some "
                             f"width: the weights never moved (R_S < tol at initialisation?), "
                             f"log RD is undefined; RD = {rd.tolist()}")
    lm = np.log(np.asarray(widths, dtype=float))
    fits = [_fit(lm, np.log(row)) for row in rd]
    per_seed = np.array([b for b, _ in fits])
    if len(seeds) >= 2:
        se, method = float(per_seed.std(ddof=1) / math.sqrt(len(seeds))), "seeds"
    else:
        se, method = fits[0][1], "ols"
    return Slope(float(per_seed.mean()), se, per_seed, rd, tuple(widths), tuple(seeds),
                 float(gamma), float(gamma_prime), method)


def _check_data_for_points(X, y):
    if X is None and y is None:
        return None, None
    X, y = _data(X, y)
    return X.tolist(), y.tolist()


def slope(gamma, gamma_prime, widths=DEFAULT_WIDTHS, seeds=(0, 1, 2), *, beta1_exponent=0.0,
          X=None, y=None, workers=None, progress=False, **train_kw):
    """Width exponent ``S_w = lim log RD(theta_w*) / log m`` at one (gamma, gamma').

    Estimated as in P1 §4.1.2 (Eq. (19), Fig. 3): for every seed, train at every width
    (:func:`train`), fit a least-squares line through ``(log m, log RD)`` and take its slope;
    report the mean over seeds and its standard error.

    Parameters
    ----------
    gamma, gamma_prime : float
    widths : sequence of int, default (1000, 5000, 10000, 20000, 40000)
        At least 2 distinct widths, each >= 2 (P1 Fig. 3, 4).
    seeds : int or sequence of int, default (0, 1, 2)
    beta1_exponent : float, default 0
        ``beta_1 = m^-beta1_exponent`` (then ``beta_2 = beta_1 m^gamma'``,
        ``alpha = beta_1 beta_2 m^gamma``); P1 Fig. 3(d) uses 0, 1/2 and 1.
    X, y : array_like, optional
        Training data; default the 1-d data of P1 §3.1.
    workers : int, optional
        Trainings run at once (threads; default: the number of cores).
    progress : bool, default False
    **train_kw
        Passed to :func:`train` (``tol``, ``max_steps``, ``step_factor``, ...).

    Returns
    -------
    Slope
        ``.value`` (S_w), ``.stderr``, ``.rd`` (seeds x widths).

    Raises
    ------
    TrainingFailed
        If any run hit its step budget or diverged (failed runs are never fitted).
    """
    gamma = float(_finite_array("gamma", gamma))
    gamma_prime = float(_finite_array("gamma_prime", gamma_prime))
    widths = _widths(widths)
    seeds = _seeds(seeds)
    e1 = float(_finite_array("beta1_exponent", beta1_exponent))
    Xl, yl = _check_data_for_points(X, y)
    kw = _train_kw(dict(train_kw))
    points = [dict(gamma=gamma, gamma_prime=gamma_prime, m=m, seed=s, beta1_exponent=e1, X=Xl,
                   y=yl, **kw) for s in seeds for m in widths]
    res = _train_many(points, workers, progress, desc=f"S_w({gamma:g}, {gamma_prime:g})")
    failed = [(p["m"], p["seed"], str(r)) for p, r in zip(points, res) if isinstance(r, Exception)]
    if failed:
        raise TrainingFailed(f"{len(failed)} of {len(points)} runs failed at (gamma, gamma') = "
                             f"({gamma}, {gamma_prime}): {failed}")
    rd = np.array([r["rd"] for r in res]).reshape(len(seeds), len(widths))
    return _slope_from_rd(rd, widths, seeds, gamma, gamma_prime)


def zero_crossings(gammas, S):
    """Zero crossing of S_w in gamma for each gamma' (P1 Fig. 4 stars): the first change of sign
    from S_w < 0 to S_w >= 0 along increasing gamma, located by linear interpolation.

    Parameters
    ----------
    gammas : array_like (G,), increasing
    S : array_like (G', G)
        S_w with gamma' along the rows; nan entries are skipped.

    Returns
    -------
    ndarray (G',)
        nan where S_w does not change sign.
    """
    g = np.asarray(gammas, dtype=float)
    S = np.atleast_2d(np.asarray(S, dtype=float))
    if S.shape[1] != g.shape[0]:
        raise ValueError(f"S must have shape (G', {g.shape[0]}), got {S.shape}")
    out = np.full(S.shape[0], np.nan)
    for r, row in enumerate(S):
        ok = np.isfinite(row)
        gg, ss = g[ok], row[ok]
        for k in range(len(ss) - 1):
            if ss[k] < 0 <= ss[k + 1]:
                out[r] = gg[k] + (0.0 - ss[k]) * (gg[k + 1] - gg[k]) / (ss[k + 1] - ss[k])
                break
    return out


@dataclass
class Diagram:
    """The empirical phase diagram (P1 Fig. 4).

    Attributes
    ----------
    gammas : ndarray (G,)
    gamma_primes : ndarray (G',)
    widths, seeds : tuple
    slope, stderr : ndarray (G', G)
        S_w and its standard error (rows: gamma', columns: gamma); nan where a run failed.
    rd : ndarray (G', G, S, W)
    crossings : ndarray (G',)
        Zero crossing of S_w in gamma for each gamma' (:func:`zero_crossings`).
    failures : list of dict
        The runs that failed (parameters and message); they are not in ``rd``.
    sweep_summary : limits.sweep.Summary or None
        With a store: what ``run_grid`` did (points skipped because stored, completed now,
        failed).
    """

    gammas: np.ndarray
    gamma_primes: np.ndarray
    widths: tuple
    seeds: tuple
    slope: np.ndarray
    stderr: np.ndarray
    rd: np.ndarray
    crossings: np.ndarray
    failures: list
    sweep_summary: object = None


def _canonical(params):
    """JSON text of a parameter dict with sorted keys (what a JSON store gives back)."""
    import json
    return json.dumps(json.loads(json.dumps(dict(params))), sort_keys=True)


def _records(loaded):
    """Normalise what ``limits.sweep.load`` returns into (params, results) pairs."""
    if isinstance(loaded, dict):
        loaded = loaded.get("records", list(loaded.values()))
    out = []
    for rec in loaded:
        if hasattr(rec, "params") and hasattr(rec, "results"):     # limits.sweep.Record
            out.append((rec.params, rec.results))
        elif isinstance(rec, dict) and "params" in rec:
            out.append((rec["params"], rec.get("results", rec.get("result"))))
        elif isinstance(rec, (tuple, list)) and len(rec) == 2:
            out.append((rec[0], rec[1]))
        else:
            out.append((rec, rec))
    return out


def diagram(gammas, gamma_primes, widths=DEFAULT_WIDTHS, seeds=(0,), executor=None, store=None,
            *, name="phase_diagram", beta1_exponent=0.0, X=None, y=None, progress=True,
            workers=None, **train_kw):
    """Empirical phase diagram: S_w over a (gamma, gamma') grid (P1 §4.1.2, Fig. 4).

    Every (gamma, gamma', m, seed) is one training run (:func:`train`); S_w per grid point is
    fitted as in :func:`slope`, and the zero crossings of S_w in gamma per gamma' by linear
    interpolation (:func:`zero_crossings`).

    With ``store`` the runs go through ``limits.sweep.run_grid`` (point function
    ``limits.phase._phase_point``; one row per run in the SQLite store, so a stopped diagram
    resumes where it stopped and nothing stored is recomputed), on ``executor`` (default: the
    sweep's local process pool); the diagram is then assembled from ``limits.sweep.load``, and
    failed runs are recorded by the sweep (``limits.sweep.failures``), never as results.
    Without ``store``, or if ``limits.sweep`` cannot be imported (then with a RuntimeWarning),
    the runs are done here: on ``executor`` if given, else on threads (the kernels release the
    GIL), and nothing is kept between calls.  Measured: the P1 Fig. 4 grid (9 x 9 points,
    5 widths, 1 seed) takes about 1 min on 2 threads, 2.5 min through the sweep's process pool
    on a shared 2-core machine; stopped at 63/405 and restarted, it recomputed none of them.

    Parameters
    ----------
    gammas, gamma_primes : sequence of float
        Grid axes; gammas increasing.
    widths : sequence of int, default (1000, 5000, 10000, 20000, 40000)
    seeds : int or sequence of int, default (0,)
    executor : concurrent.futures.Executor, optional
    store : str or path, optional
        SQLite file of the sweep store.
    name : str, default "phase_diagram"
        Experiment name in the store.
    beta1_exponent : float, default 0
        ``beta_1 = m^-beta1_exponent`` (see :func:`slope`).
    X, y : array_like, optional
        Training data (default: the 1-d data of P1 §3.1).
    progress : bool, default True
    workers : int, optional
        Threads for the local run (default: the number of cores).
    **train_kw
        Passed to :func:`train`.

    Returns
    -------
    Diagram
        Failed runs are listed in ``.failures`` and leave nan in ``.slope``; they are never
        written as results.
    """
    g = _finite_array("gammas", gammas).reshape(-1)
    gp = _finite_array("gamma_primes", gamma_primes).reshape(-1)
    if g.size < 1 or gp.size < 1:
        raise ValueError(f"gammas and gamma_primes must not be empty, got {gammas!r}, "
                         f"{gamma_primes!r}")
    if np.any(np.diff(g) <= 0):
        raise ValueError(f"gammas must be increasing, got {gammas!r}")
    if np.unique(gp).size != gp.size:
        raise ValueError(f"gamma_primes must be distinct, got {gamma_primes!r}")
    widths = _widths(widths)
    seeds = _seeds(seeds)
    e1 = float(_finite_array("beta1_exponent", beta1_exponent))
    Xl, yl = _check_data_for_points(X, y)
    kw = _train_kw(dict(train_kw))
    kw = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in kw.items()}
    points = [dict(gamma=float(a), gamma_prime=float(b), m=m, seed=s, beta1_exponent=e1,
                   X=Xl, y=yl, **kw)
              for b in gp for a in g for s in seeds for m in widths]
    results = [None] * len(points)
    failures = []
    sweep = summary = None
    if store is not None:
        try:
            from limits import sweep
        except ImportError:
            import warnings
            warnings.warn("limits.sweep is not available: running the diagram locally, "
                          "nothing is stored", RuntimeWarning, stacklevel=2)
    if sweep is not None:
        summary = sweep.run_grid(_phase_point, points, store, name=name, executor=executor,
                                 seed=0, progress=progress, retries=0)
        # match stored records on the whole parameter dict (a store may hold other grids or
        # other training settings under the same name)
        key = {_canonical(p): i for i, p in enumerate(points)}
        for params, res in _records(sweep.load(store, name)):
            i = key.get(_canonical(params))
            if i is not None and isinstance(res, dict) and "rd" in res:
                results[i] = res
    elif executor is not None:
        futs = [executor.submit(_phase_point, p) for p in points]
        for i, f in enumerate(futs):
            try:
                results[i] = f.result()
            except TrainingFailed as exc:
                results[i] = exc
    else:
        results = _train_many(points, workers, progress, desc="phase diagram")
    for p, r in zip(points, results):
        if not isinstance(r, dict):
            failures.append({"params": {k: p[k] for k in ("gamma", "gamma_prime", "m", "seed")},
                             "error": "not stored (failed or missing)" if r is None else str(r)})
    nW, nS = len(widths), len(seeds)
    rd = np.full((gp.size, g.size, nS, nW), np.nan)
    for i, (p, r) in enumerate(zip(points, results)):
        if isinstance(r, dict):
            rd[np.nonzero(gp == p["gamma_prime"])[0][0], np.nonzero(g == p["gamma"])[0][0],
               seeds.index(p["seed"]), widths.index(p["m"])] = float(r["rd"])
    S = np.full((gp.size, g.size), np.nan)
    SE = np.full((gp.size, g.size), np.nan)
    for r in range(gp.size):
        for c in range(g.size):
            block = rd[r, c]
            if np.all(np.isfinite(block)):
                try:
                    s = _slope_from_rd(block, widths, seeds, g[c], gp[r])
                except TrainingFailed as exc:
                    failures.append({"params": {"gamma": float(g[c]),
                                                "gamma_prime": float(gp[r])},
                                     "error": str(exc)})
                    continue
                S[r, c], SE[r, c] = s.value, s.stderr
    return Diagram(g, gp, widths, seeds, S, SE, rd, zero_crossings(g, S), failures, summary)


# ----------------------------------------------------------------------------------------------
# condensation
# ----------------------------------------------------------------------------------------------
def neuron_features(a, W, reference=None):
    """Per-neuron amplitude and orientation (P1 §3.1, §4.2).

    ``A_k = |a_k| ||w_k||`` (w includes the bias).  Orientation: for 1-d input (W of shape
    (m, 2), columns (w, b)) the angle ``atan2(b_k, w_k)`` in [-pi, pi] (P1-code); for higher
    dimension the projection ``I_k = w_k . p / ||w_k||`` on ``p = ones(d+1)/sqrt(d+1)``
    (P1-code's reference direction) or on ``reference``.

    Returns
    -------
    A : ndarray (m,)
    orientation : ndarray (m,)
    """
    a = _finite_array("a", a).reshape(-1)
    W = _finite_array("W", W)
    if W.ndim != 2 or W.shape[0] != a.shape[0]:
        raise ValueError(f"W must have shape ({a.shape[0]}, d+1), got {W.shape}")
    norm = np.linalg.norm(W, axis=1)
    A = np.abs(a) * norm
    if W.shape[1] == 2 and reference is None:
        return A, np.arctan2(W[:, 1], W[:, 0])
    p = np.ones(W.shape[1]) if reference is None else _finite_array("reference", reference)
    if p.shape != (W.shape[1],) or not np.any(p):
        raise ValueError(f"reference must be a non-zero vector of length {W.shape[1]}")
    p = p / np.linalg.norm(p)
    with np.errstate(invalid="ignore", divide="ignore"):
        I = np.where(norm > 0, W @ p / norm, 0.0)
    return A, I


def condensation_index(a, W, bins=64, reference=None):
    """Condensation index (**ours, not P1's**: P1 has no quantitative condensation measure,
    training.md §1.6): one minus the normalised entropy of the amplitude-weighted histogram
    of neuron orientations::

        p_j = sum_{k in bin j} A_k / sum_k A_k,    C = 1 - (-sum_j p_j log p_j) / log(bins)

    with ``A_k = |a_k| ||w_k||`` and the orientation of :func:`neuron_features` (the angle on
    [-pi, pi] for 1-d input, the projection on [-1, 1] otherwise), ``bins`` equal bins.
    C = 1 when all amplitude sits in one bin (complete condensation), C = 0 when it is spread
    evenly over the bins; random initialisations give a small C that shrinks as m grows.

    Parameters
    ----------
    a : array_like (m,)
    W : array_like (m, d+1)
    bins : int, default 64
    reference : array_like (d+1,), optional
        Projection direction for d > 1.

    Returns
    -------
    float
    """
    bins = _width("bins", bins)
    A, o = neuron_features(a, W, reference)
    tot = A.sum()
    if not tot > 0:
        raise ValueError("all amplitudes |a_k| ||w_k|| are zero; the index is undefined")
    lo, hi = (-math.pi, math.pi) if (W.shape[1] == 2 and reference is None) else (-1.0, 1.0)
    h, _ = np.histogram(o, bins=bins, range=(lo, hi), weights=A)
    p = h[h > 0] / tot
    return float(1.0 + np.dot(p, np.log(p)) / math.log(bins))
