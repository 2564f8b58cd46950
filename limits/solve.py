"""``solve``: one entry point for the SDEs and ODEs of ``limits.sde`` (in the style of diffrax's
``diffeqsolve``), and ``compare`` of limit samples with finite-network samples.

SDEs are integrated path by path in compiled code (numba, parallel over paths, both cores);
values are saved only at the requested times; the state lives in the SDE's domain-preserving
coordinates (``sde.to_coords``), never clipped.  Each SDE object names the kernel that integrates
it (``sde._integrator(z0, method)``, a key of ``_KERNELS``): the generic scalar integrator of its
compiled ``_drift`` / ``_vol``, a specialised kernel, or ``ItoSDE``'s Euler-Maruyama of a user's
drift and diffusion; ``solve`` only checks arguments, builds the time grid and runs blocks of
paths.  Random numbers (``limits._sde_paths``) are counter-based: path ``j`` has
the key kappa_j = mix(k1 ^ mix(k2)) from its generator keys (k1, k2) of ``kernels.montecarlo``
(``_sample_keys``), its word ``c`` is mix(kappa_j + c G) (SplitMix64: Steele, Lea & Flood
2014; G the 64-bit golden ratio), and words 2i, 2i + 1 give normals 2i, 2i + 1 by
``kernels.montecarlo``'s Box-Muller transform.  So the normal of step ``i`` of path ``j``
depends only on (seed, j, i), and results do not depend on the thread count or on how paths are
blocked.  (One mix per word instead of the two of ``kernels._random._word``: AVX2 has no
64-bit multiply, and the generator is half of the correlation solver's work.)  The paths are
windows of one SplitMix64 sequence at random offsets kappa_j / G mod 2^64; two windows of W
words overlap with probability about 2 W / 2^64, so 10^5 paths x 4,000 words overlap nowhere
with probability 1 - 2e-6.

Schemes (``method``):

* ``"euler"``: Euler-Maruyama, strong order 1/2 (1 for additive noise), weak order 1; any SDE.
* ``"milstein"``: strong order 1 for scalar SDEs (``+ b b' (dW^2 - h) / 2``).
* ``"heun"``: stochastic Heun for additive noise, ``y* = y + a h + b dW``,
  ``y' = y + (a(y) + a(y*)) h / 2 + b dW``: strong order 1 and weak order 2 (Kloeden & Platen
  1992, §15.1).

Covariance SDEs of m inputs (``CovarianceSDE`` with m >= 3, ``SmoothCovarianceSDE``) use a
multiplicative Euler scheme that keeps V positive definite without clipping: with V = L L^T
(Cholesky), W an m x m matrix of independent N(0, h) increments and B = b(V),

    V' = (L M)(L M)^T,   M = I + H + D h,   H = (W + W^T) / (2 sqrt 2),
    D = lower triangle of A + diag(A) / 2 - (m + 1)/8 I,   A = L^-1 B L^-T

(so D + D^T = A - (m + 1)/4 I).  D is lower triangular, not A/2: near a singular V (inputs
becoming collinear, which smooth activations drive V towards exponentially fast) the entries of
A grow like lambda_min^-1/2, but those of L D stay bounded (the small pivot of L multiplies the
large column of D), so the step's error h^2 (L D)(L D)^T stays O(h^2); with a symmetric D it
grows like h^2 / lambda_min and the scheme breaks down once lambda_min ~ h.

The state carried is L itself: L' is the lower factor of F F^T, F = L M, by modified
Gram-Schmidt on F's rows (no Cholesky of a possibly ill-conditioned V).  Since
E[H^2] = (m + 1) h / 4 I, E[V' - V] = B h + O(h^2), and V' - V = L (W + W^T) L^T / sqrt 2
+ O(h) is the noise of sde.md §2.3 (``(L dW L^T + L dW^T L^T) / sqrt 2``), whose covariance is
Sigma^{ab,cd} = V^{ac} V^{bd} + V^{ad} V^{bc}; the remaining O(h) terms have mean zero and
variance O(h^2).  So the scheme is weakly of order 1, like Euler-Maruyama, and V' is a Gram
matrix by construction.

ODEs (``ResNetODE``) go to ``scipy.integrate.solve_ivp`` with DOP853.
"""
import math
import sys
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numba
import numpy as np
from numba import prange

from kernels import _checks
from kernels._linalg import _chol_upper
from kernels import _pointwise as _pw
from kernels._pointwise import phi
from kernels._random import BM_K, MIX_K, _fill

from . import sde as _sde
from ._itosde import _solve_ito, _solve_ito_diagonal
from ._sde_paths import (_check_times, _gauss, _geometric_grid, _keys, _lane_keys, _path_key,
                         _path_pair, _path_pair_k, _uniform_grid)
from .sde import CORR_K, _corr_drift_k, _cov_drift_relu, _cov_drift_smooth, _model3

__all__ = ["solve", "Solution", "compare", "Comparison"]

_METHODS = ("euler", "milstein", "heun")
_EULER, _MILSTEIN, _HEUN = 0, 1, 2
_PATH_BLOCK = 8192


# ----------------------------------------------------------------------------------------------
# compiled integrators
# ----------------------------------------------------------------------------------------------
@numba.njit(inline="always", cache=True, error_model="numpy")
def _scalar_paths(drift, vol, p, y0, grid, save, keys, method, out):
    """Scalar SDE ``dy = drift(t, y, p) dt + b dW``, ``(b, db/dy) = vol(t, y, p)``, on the step
    grid ``grid``; out[k, j] = y at grid[save[k]] of path j.  Inlined into the kernels below
    (parallel over paths)."""
    paths = keys.shape[0]
    nsteps = grid.shape[0] - 1
    for j in prange(paths):
        kk = _path_key(keys[j, 0], keys[j, 1])
        y = y0
        k = 0
        while k < save.shape[0] and save[k] == 0:
            out[k, j] = y
            k += 1
        z_odd = 0.0
        for i in range(nsteps):
            t = grid[i]
            h = grid[i + 1] - t
            if (i & 1) == 0:            # normals i and i + 1 come as one Box-Muller pair
                z, z_odd = _path_pair(kk, np.uint64(i))
            else:
                z = z_odd
            dw = math.sqrt(h) * z
            a = drift(t, y, p)
            b, db = vol(t, y, p)
            if method == _HEUN:
                ys = y + a * h + b * dw
                y = y + 0.5 * (a + drift(t + h, ys, p)) * h + b * dw
            elif method == _MILSTEIN:
                y = y + a * h + b * dw + 0.5 * b * db * (dw * dw - h)
            else:
                y = y + a * h + b * dw
            while k < save.shape[0] and save[k] == i + 1:
                out[k, j] = y
                k += 1


@numba.njit(parallel=True, error_model="numpy")
def _solve_scalar(drift, vol, p, y0, grid, save, keys, method, out):
    """Any scalar SDE object's ``_drift`` / ``_vol`` (not cached: numba keys a kernel specialised
    on function arguments by their identity, so it compiles once per process)."""
    _scalar_paths(drift, vol, p, y0, grid, save, keys, method, out)


# the built-in scalar SDEs: the same integrator, compiled once and cached
@numba.njit(parallel=True, cache=True, error_model="numpy")
def _solve_corr_scalar(p, y0, grid, save, keys, method, out):
    _scalar_paths(_sde._corr_drift_t, _sde._unit_vol, p, y0, grid, save, keys, method, out)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _solve_log_q(p, y0, grid, save, keys, method, out):
    _scalar_paths(_sde._logq_drift, _sde._logq_vol, p, y0, grid, save, keys, method, out)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _solve_gbm(p, y0, grid, save, keys, method, out):
    _scalar_paths(_sde._gbm_drift, _sde._gbm_vol, p, y0, grid, save, keys, method, out)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _solve_ou(p, y0, grid, save, keys, method, out):
    _scalar_paths(_sde._ou_drift, _sde._ou_vol, p, y0, grid, save, keys, method, out)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _solve_linear_w(p, y0, grid, save, keys, method, out):
    _scalar_paths(_sde._linw_drift, _sde._linw_vol, p, y0, grid, save, keys, method, out)


_LANES = 32


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def _solve_corr(C, y0, grid, save, keys, method, out, kc, mk, bk):
    """``CorrelationSDE`` (Fisher-z, additive noise): the scalar scheme of ``_solve_scalar`` with
    _LANES paths per task advanced together, so that the loops over paths vectorise (this is
    hand-written because it is the hot loop of the limit studies; same numbers per path).

    ``kc``, ``mk``, ``bk``: the constants of the drift and the generator (``CORR_K``, ``MIX_K``,
    ``BM_K``), passed as runtime arguments (see kernels/_vecmath.py: 20% faster on AVX2)."""
    paths = keys.shape[0]
    nsteps = grid.shape[0] - 1
    for b in prange((paths + _LANES - 1) // _LANES):
        lo = b * _LANES
        m = min(paths, lo + _LANES) - lo
        y = np.full(_LANES, y0)
        za = np.zeros(_LANES)
        zb = np.zeros(_LANES)
        kk = _lane_keys(keys, lo, m, _LANES)
        k = 0
        while k < save.shape[0] and save[k] == 0:
            out[k, lo:lo + m] = y[:m]
            k += 1
        for i in range(nsteps):
            t = grid[i]
            h = grid[i + 1] - t
            sh = math.sqrt(h)
            if method == _HEUN:
                if (i & 1) == 0:
                    for l in range(_LANES):
                        za[l], zb[l] = _path_pair_k(kk[l], np.uint64(i), mk, bk)
                    z = za
                else:
                    z = zb
                for l in range(_LANES):
                    a = _corr_drift_k(y[l], C, kc)
                    ys = y[l] + a * h + sh * z[l]
                    y[l] = y[l] + 0.5 * (a + _corr_drift_k(ys, C, kc)) * h + sh * z[l]
            elif (i & 1) == 0:
                # Euler, even step: the normal pair of steps i, i + 1 is drawn in the same loop
                # as the drift, so that its (y-independent) work fills the latency of the
                # drift's dependency chain (8% faster than two loops, one AVX2 core)
                for l in range(_LANES):
                    z1, z2 = _path_pair_k(kk[l], np.uint64(i), mk, bk)
                    zb[l] = z2
                    y[l] = y[l] + _corr_drift_k(y[l], C, kc) * h + sh * z1
            else:
                for l in range(_LANES):
                    y[l] = y[l] + _corr_drift_k(y[l], C, kc) * h + sh * zb[l]
            while k < save.shape[0] and save[k] == i + 1:
                out[k, lo:lo + m] = y[:m]
                k += 1


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _solve_cov2(p, y0, grid, save, keys, out):
    """Euler-Maruyama of the 3-d covariance model; out (len(save), paths, 3)."""
    paths = keys.shape[0]
    nsteps = grid.shape[0] - 1
    for j in prange(paths):
        kk = _path_key(keys[j, 0], keys[j, 1])
        y = y0.copy()
        a = np.empty(3)
        B = np.empty((3, 3))
        k = 0
        while k < save.shape[0] and save[k] == 0:
            out[k, j, :] = y
            k += 1
        for i in range(nsteps):
            h = grid[i + 1] - grid[i]
            sh = math.sqrt(h)
            z0 = _gauss(kk, 3 * i)
            z1 = _gauss(kk, 3 * i + 1)
            z2 = _gauss(kk, 3 * i + 2)
            _model3(y, p, a, B)
            for r in range(3):
                y[r] += a[r] * h + sh * (B[r, 0] * z0 + B[r, 1] * z1 + B[r, 2] * z2)
            while k < save.shape[0] and save[k] == i + 1:
                out[k, j, :] = y
                k += 1


_GLANES = 16


@numba.njit(inline="always", cache=True, error_model="numpy")
def _gram_paths(cov_drift, p, L0, grid, save, keys, out):
    """Covariance SDE of m inputs by the multiplicative Euler scheme (module docstring); the
    state is the Cholesky factor L of V (lower, L0 at t = 0), re-triangularised after each step
    by modified Gram-Schmidt on the rows of F = L M (L' = F Q), which works with the condition
    number of L, the square root of V's.  out (len(save), paths, m * m) holds V flattened; a
    zero pivot (V singular to rounding) makes the path NaN, which ``solve`` reports.

    _GLANES paths per task are advanced together, lanes innermost, so that the small dense
    algebra of different paths overlaps instead of waiting on one path's dependency chain
    (hand-written: this is the hot loop; the numbers per path do not depend on the grouping)."""
    paths = keys.shape[0]
    m = L0.shape[0]
    nsteps = grid.shape[0] - 1
    r8 = 1.0 / math.sqrt(8.0)
    shift = (m + 1) / 8.0
    npair = (m * m + 1) // 2
    NL = _GLANES
    for b in prange((paths + NL - 1) // NL):
        lo = b * NL
        nl = min(paths, lo + NL) - lo
        L = np.empty((m, m, NL))
        for l in range(NL):
            L[:, :, l] = L0
        V = np.empty((m, m, NL))
        A = np.empty((m, m, NL))
        B = np.empty((m, m, NL))
        Z = np.empty((m, m, NL))
        w = np.empty((m * m, NL))
        F = np.empty((m, m, NL))
        dinv = np.empty((m, NL))
        s = np.empty(NL)
        kk = _lane_keys(keys, lo, nl, NL)
        _gram_lower(L, V)
        for a in range(m):                      # 1 / diag L; kept current by the MGS below
            for l in range(NL):
                dinv[a, l] = 1.0 / L[a, a, l]
        k = 0
        while k < save.shape[0] and save[k] == 0:
            _save_flat(V, out, k, lo, nl)
            k += 1
        for i in range(nsteps):
            h = grid[i + 1] - grid[i]
            sh = math.sqrt(h)
            cov_drift(p, V, B)
            # A = L^-1 B L^-T = L^-1 (L^-1 B^T)^T (B is symmetric); A is symmetric up to
            # rounding and is symmetrised below
            _lower_solve_t(L, dinv, B, Z, s)
            _lower_solve_t(L, dinv, Z, A, s)
            # M = I + H + D h, H = (W + W^T) / (2 sqrt 2), D lower triangular with
            # D + D^T = A - (m + 1)/4 I (see the module docstring for why not symmetric)
            base = np.uint64(2 * npair * i)              # whole Box-Muller pairs per step
            for q in range(0, m * m - 1, 2):
                for l in range(NL):
                    z1, z2 = _path_pair(kk[l], base + np.uint64(q))
                    w[q, l] = sh * z1
                    w[q + 1, l] = sh * z2
            if (m * m) & 1:
                for l in range(NL):
                    w[m * m - 1, l] = sh * _path_pair(kk[l], base + np.uint64(m * m - 1))[0]
            for a in range(m):
                for c in range(m):
                    for l in range(NL):
                        Z[a, c, l] = (w[a * m + c, l] + w[c * m + a, l]) * r8
                    if c < a:
                        for l in range(NL):
                            Z[a, c, l] += 0.5 * h * (A[a, c, l] + A[c, a, l])
                for l in range(NL):
                    Z[a, a, l] += 1.0 + h * (0.5 * A[a, a, l] - shift)
            # F = L M; L' = lower factor of F F^T by modified Gram-Schmidt on F's rows
            for a in range(m):
                for c in range(m):
                    for l in range(NL):
                        s[l] = 0.0
                    for q in range(a + 1):
                        for l in range(NL):
                            s[l] += L[a, q, l] * Z[q, c, l]
                    for l in range(NL):
                        F[a, c, l] = s[l]
            for c in range(m):
                _row_dot(F, c, c, s)
                for l in range(NL):
                    nrm = math.sqrt(s[l])
                    L[c, c, l] = nrm if nrm > 0.0 else np.nan
                    dinv[c, l] = 1.0 / nrm
                for q in range(m):
                    for l in range(NL):
                        F[c, q, l] *= dinv[c, l]
                for a in range(c + 1, m):          # (L's upper triangle is never read)
                    _row_dot(F, a, c, s)
                    for l in range(NL):
                        L[a, c, l] = s[l]
                    for q in range(m):
                        for l in range(NL):
                            F[a, q, l] -= s[l] * F[c, q, l]
            _gram_lower(L, V)
            while k < save.shape[0] and save[k] == i + 1:
                _save_flat(V, out, k, lo, nl)
                k += 1


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _solve_gram_relu(p, L0, grid, save, keys, out):
    """``_gram_paths`` of the shaped-ReLU covariance SDE (``CovarianceSDE``, m >= 3)."""
    _gram_paths(_cov_drift_relu, p, L0, grid, save, keys, out)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _solve_gram_smooth(p, L0, grid, save, keys, out):
    """``_gram_paths`` of ``SmoothCovarianceSDE``."""
    _gram_paths(_cov_drift_smooth, p, L0, grid, save, keys, out)


@numba.njit(inline="always", cache=True)
def _row_dot(F, a, c, s):
    """s = <F[a], F[c]> per lane (F (m, m, lanes))."""
    for l in range(F.shape[2]):
        s[l] = 0.0
    for q in range(F.shape[1]):
        for l in range(F.shape[2]):
            s[l] += F[a, q, l] * F[c, q, l]


@numba.njit(inline="always", cache=True)
def _lower_solve_t(L, dinv, Y, X, s):
    """X = L^-1 Y^T per lane by forward substitution (L lower triangular, dinv = 1/diag L);
    all (m, m, lanes), s (lanes,) scratch."""
    m = L.shape[0]
    nl = L.shape[2]
    for c in range(m):
        for a in range(m):
            for l in range(nl):
                s[l] = Y[c, a, l]
            for q in range(a):
                for l in range(nl):
                    s[l] -= L[a, q, l] * X[q, c, l]
            for l in range(nl):
                X[a, c, l] = s[l] * dinv[a, l]


@numba.njit(inline="always", cache=True)
def _gram_lower(L, V):
    """V = L L^T for lower-triangular L, per lane: L, V (m, m, lanes)."""
    m = L.shape[0]
    for a in range(m):
        for c in range(a + 1):
            for l in range(L.shape[2]):
                V[a, c, l] = 0.0
            for q in range(c + 1):
                for l in range(L.shape[2]):
                    V[a, c, l] += L[a, q, l] * L[c, q, l]
            for l in range(L.shape[2]):
                V[c, a, l] = V[a, c, l]


@numba.njit(inline="always", cache=True)
def _save_flat(V, out, k, lo, nl):
    m = V.shape[0]
    for l in range(nl):
        for a in range(m):
            for c in range(m):
                out[k, lo + l, a * m + c] = V[a, c, l]


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def _solve_pf(pt, D, U0, p, grid, save, keys, out):
    """Peluchetti-Favaro diffusion: X (N, D) from a stem X_0 = U0^T Z; Euler-Maruyama with the
    noise of coordinate j shared by the inputs through the Cholesky factor of
    G = sb2 + sw2 phi(X) phi(X)^T / D; out (S, paths, N, N) = X X^T / D at the save times."""
    paths = keys.shape[0]
    N = U0.shape[0]
    sw2, sb2, mw, mb = p[0], p[1], p[2], p[3]
    nsteps = grid.shape[0] - 1
    for j in prange(paths):
        k1, k2 = keys[j, 0], keys[j, 1]
        X = np.zeros((N, D))
        Z = np.empty((N, D))
        P = np.empty((N, D))
        G = np.empty((N, N))
        U = np.empty((N, N))
        A = np.empty((N, N))
        mu = np.empty(N)
        Zf = Z.reshape(N * D)
        _fill(k1, k2, 0, Zf)                # stream 0: the stem; stream i + 1: step i
        for a in range(N):
            for b in range(a + 1):
                ub = U0[b, a]
                for c in range(D):
                    X[a, c] += ub * Z[b, c]
        k = 0
        while k < save.shape[0] and save[k] == 0:
            out[k, j] = X @ X.T / D
            k += 1
        for i in range(nsteps):
            h = grid[i + 1] - grid[i]
            sh = math.sqrt(h)
            for a in range(N):
                s = 0.0
                for c in range(D):
                    v = phi(pt, X[a, c])
                    P[a, c] = v
                    s += v
                mu[a] = mb + mw * s / D
            for a in range(N):
                for b in range(a, N):
                    s = 0.0
                    for c in range(D):
                        s += P[a, c] * P[b, c]
                    G[a, b] = sb2 + sw2 * s / D
                    G[b, a] = G[a, b]
            _chol_upper(G, U, A)
            _fill(k1, k2, i + 1, Zf)
            for a in range(N):
                for c in range(D):
                    X[a, c] += mu[a] * h
                for b in range(a + 1):
                    ub = sh * U[b, a]
                    for c in range(D):
                        X[a, c] += ub * Z[b, c]
            while k < save.shape[0] and save[k] == i + 1:
                out[k, j] = X @ X.T / D
                k += 1


# ----------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Solution:
    """Output of ``solve``.

    Attributes
    ----------
    times : (S,) array
        Save times.
    values : array
        ``(S, paths)`` for scalar SDEs, ``(S, paths, ...)`` for matrix states (e.g.
        ``(S, paths, m, m)`` for ``CovarianceSDE``); ``(S, N, N)`` for ``ResNetODE``.
    method : str
    steps : int
        Number of time steps taken (SDEs) or right-hand-side evaluations (ODEs).
    ntk : array or None
        ``ResNetODE`` only: Theta at the save times, (S, N, N).
    """

    times: np.ndarray
    values: np.ndarray
    method: str
    steps: int
    ntk: Optional[np.ndarray] = field(default=None, repr=False)


def solve(sde, y0, times, paths=1, seed=0, method="euler", dt=None, t0=None, progress=None,
          ntk0=None, rtol=1e-12, atol=1e-14):
    """Integrate a limit SDE (or the ResNet ODE) and return its values at ``times``.

    Parameters
    ----------
    sde : limits.sde object
        ``CorrelationSDE``, ``CovarianceSDE``, ``SmoothCovarianceSDE``,
        ``UnshapedCorrelationSDE``, ``GeometricBM``, ``OrnsteinUhlenbeck``, ``LinearSDE``,
        ``PeluchettiFavaroSDE``, ``ItoSDE`` (any user SDE) or ``ResNetODE``.  The object names
        the kernel that integrates it (``sde._integrator``, a key of ``_KERNELS``).
    y0 : initial value in the user's variables
        rho0 (correlation), V0 (m x m covariance), q0 (None = q*), K0 ((N, N) kernel, ODE),
        y0 of shape (dim,) (``ItoSDE``).
    times : increasing sequence of save times >= 0 (> t0 for SDEs singular at 0).
    paths : int >= 1
        Independent paths (SDEs).
    seed : int or SeedSequence
        Path j draws from the stream whose key comes from the keys of sample j of
        ``kernels.montecarlo``'s scheme (module docstring).
    method : {"euler", "milstein", "heun"}
        See the module docstring; "milstein" needs a scalar SDE, "heun" additive noise;
        covariance SDEs, ``PeluchettiFavaroSDE`` and ``ItoSDE`` take "euler" only.
    dt : float, optional
        Step size (default ``times[-1] / 1000``).  For SDEs singular at t = 0 it is the
        *relative* step ``h`` of the geometric grid ``t_{i+1} = (1 + h) t_i`` (default 2e-3;
        sde.md §5.4 asks h <= 4e-3: a larger h warns, h >= 1 is refused).
    t0 : float, optional
        Start of the geometric grid of SDEs singular at t = 0 (default 1e-7, where the state is
        ``y0``).
    progress : bool or None
        tqdm bar over blocks of paths (None: when stderr is a terminal and paths are many).
    ntk0 : (N, N) array, optional
        ``ResNetODE``: Theta at t = 0 (default K0, a trained stem as in kernels.md §3.4).
    rtol, atol : float
        ``ResNetODE``: tolerances of DOP853.

    Returns
    -------
    Solution
        ``.times``, ``.values`` shaped ``(len(times), paths[, state dims])``.

    Examples
    --------
    >>> import limits
    >>> sol = limits.solve(limits.CorrelationSDE(0.0, -2.0), 0.3, [0.25, 1.0], paths=1000)
    >>> sol.values.shape
    (2, 1000)
    """
    if isinstance(sde, _sde.ResNetODE):
        return _solve_ode(sde, y0, times, ntk0, rtol, atol)
    if not isinstance(sde, _sde._SDE):
        raise TypeError(f"sde must be a limits SDE or ResNetODE, got {type(sde).__name__}")
    times = _check_times(times, allow_zero=not sde.singular_at_zero)
    paths = _checks.positive_int(paths, "paths")
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if sde.euler_only is not None and method != "euler":
        raise ValueError(f"{type(sde).__name__} is solved by Euler-Maruyama only "
                         f"({sde.euler_only}), got method={method!r}")
    if method == "milstein" and sde.dim != 1:
        raise ValueError("method='milstein' needs a scalar SDE (no Levy areas are simulated); "
                         "use 'euler'")
    if method == "heun" and not sde.additive:
        raise ValueError(f"method='heun' is for additive noise; {type(sde).__name__} has "
                         "multiplicative noise: use 'euler' or 'milstein'")
    z0 = sde.to_coords(y0)
    if sde.singular_at_zero:
        h = 2e-3 if dt is None else _checks.positive_float(dt, "dt")
        if h >= 1.0:
            raise ValueError(f"dt = {dt!r} is the relative step h of the geometric grid "
                             f"t_(i+1) = (1 + h) t_i of {type(sde).__name__}; its 1/t drift "
                             "makes Euler steps u -> (1 - h) u, which overshoot for h >= 1 "
                             "(sde.md §5.4 asks h <= 4e-3)")
        if h > 4e-3:
            warnings.warn(f"dt = {dt!r} (relative step of the geometric grid) exceeds the "
                          f"h <= 4e-3 that sde.md §5.4 asks for {type(sde).__name__}: the 1/t "
                          "drift is stiff and the result is biased", RuntimeWarning,
                          stacklevel=2)
        t0 = 1e-7 if t0 is None else _checks.positive_float(t0, "t0")
        if times[0] <= t0:
            raise ValueError(f"times must be > t0 = {t0} for {type(sde).__name__}, "
                             f"got {times.tolist()}")
        steps = math.log(times[-1] / t0) / math.log1p(h)
        _solve_memory(steps, len(times), paths, z0)
        grid, save = _geometric_grid(times, t0, h)
    else:
        if dt is None:
            dt = times[-1] / 1000 if times[-1] > 0 else 1.0
        dt = _checks.positive_float(dt, "dt")
        _solve_memory(times[-1] / dt, len(times), paths, z0)
        grid, save = _uniform_grid(times, dt)
    keys = _keys(seed, paths)
    run = _KERNELS[sde._integrator(z0, method)]
    if hasattr(sde, "_check_callables"):
        sde._check_callables(float(grid[0]), z0)
    mcode = {"euler": _EULER, "milstein": _MILSTEIN, "heun": _HEUN}[method]
    bar = None
    if progress or (progress is None and paths * len(grid) > 5e8):
        import sys

        from tqdm.auto import tqdm
        if progress or sys.stderr.isatty():
            bar = tqdm(total=paths, desc=f"solve {type(sde).__name__}", unit="path", leave=False)
    out = None
    try:
        for lo in range(0, paths, _PATH_BLOCK):
            hi = min(paths, lo + _PATH_BLOCK)
            blk = run(sde, z0, grid, save, keys[lo:hi], mcode, len(times))
            if out is None:
                out = np.empty((len(times), paths) + blk.shape[2:])
            out[:, lo:hi] = blk
            if bar is not None:
                bar.update(hi - lo)
    finally:
        if bar is not None:
            bar.close()
    values = sde.from_coords(out[..., None] if out.ndim == 2 else out)
    if not np.all(np.isfinite(values)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise FloatingPointError(f"{bad} non-finite values: the SDE left its domain or exploded "
                                 f"(try a smaller dt, or see the SDE's docstring)")
    return Solution(times=times, values=values, method=method, steps=len(grid) - 1)


def _solve_memory(steps, n_times, paths, z0):
    """Refuse up front a time grid (built as a Python list: ~48 bytes a step), path keys or saved
    values that cannot fit (``kernels._checks.memory_guard``)."""
    steps = float(steps) + n_times + 1
    _checks.memory_guard([(48.0 * steps, f"the time grid ({steps:.3g} steps)"),
                          (16.0 * paths, f"the keys of {paths} paths"),
                          (16.0 * n_times * paths * max(1, np.size(z0)), "the saved values")],
                         "solve", "use fewer paths or save times, or a larger dt")


# ----------------------------------------------------------------------------------------------
# kernels by name: an SDE object's ``_integrator(z0, method)`` names one; each runs a block of
# paths (keys) and returns its states in solver coordinates, (S, paths[, ...])
# ----------------------------------------------------------------------------------------------
def _run_scalar(sde, z0, grid, save, keys, method, S):
    blk = np.empty((S, keys.shape[0]))
    _solve_scalar(sde._drift, sde._vol, sde.params, float(z0[0]), grid, save, keys, method, blk)
    return blk


def _cached_scalar(kernel):
    """Runner of a cached scalar kernel ``kernel(p, y0, grid, save, keys, method, out)``."""
    def run(sde, z0, grid, save, keys, method, S):
        blk = np.empty((S, keys.shape[0]))
        kernel(sde.params, float(z0[0]), grid, save, keys, method, blk)
        return blk
    return run


def _run_corr(sde, z0, grid, save, keys, method, S):
    blk = np.empty((S, keys.shape[0]))
    _solve_corr(float(sde.params[0]), float(z0[0]), grid, save, keys, method, blk,
                CORR_K, MIX_K, BM_K)
    return blk


def _run_cov2(sde, z0, grid, save, keys, method, S):
    blk = np.empty((S, keys.shape[0], 3))
    _solve_cov2(sde.params, z0, grid, save, keys, blk)
    return blk


def _gram_runner(kernel, homogeneous):
    """Runner of ``kernel(p, L0, grid, save, keys, out)`` (``_gram_paths`` with a drift).

    ``homogeneous``: b(c V) = c b(V) (shaped ReLU), so that V_t(c V0) = c V_t(V0) path by path;
    then a V0 outside 1e-100 .. 1e100 (where the scheme's products V_aa V_bb would over- or
    underflow) is solved as V0 / 4^k and the result multiplied by 4^k, exactly (powers of 4
    scale every product, square root and division of the scheme without rounding)."""
    def run(sde, z0, grid, save, keys, method, S):
        m = math.isqrt(z0.shape[0])
        V0 = z0.reshape(m, m)
        scale = 1.0
        big = float(np.max(np.diag(V0)))
        if homogeneous and not 1e-100 <= big <= 1e100:
            scale = 4.0 ** math.floor(math.log(big, 4))
            V0 = V0 / scale
        blk = np.empty((S, keys.shape[0], m * m))
        kernel(sde.params, np.linalg.cholesky(V0), grid, save, keys, blk)
        if scale != 1.0:
            blk *= scale
        return blk
    return run


def _run_pf(sde, K0, grid, save, keys, S):
    pt = sde.activation.finite(sde.width, 1).pointwise()
    N = K0.shape[0]
    U0 = np.empty((N, N))
    _chol_upper(K0, U0, np.empty((N, N)))
    blk = np.empty((S, keys.shape[0], N, N))
    solve_pf = (_solve_pf if _pw.cacheable(pt) else   # a user Activation: not on disk
                _pw.uncached(sys.modules[__name__], ("_solve_pf",))._solve_pf)
    solve_pf(pt, sde.width, U0, sde.params, grid, save, keys, blk)
    return blk


def _run_ito(sde, z0, grid, save, keys, method, S):
    blk = np.empty((S, keys.shape[0], sde.dim))
    if sde.noise_dim is None:
        _solve_ito_diagonal(sde.drift, sde.diffusion, z0, grid, save, keys, blk)
    else:
        _solve_ito(sde.drift, sde.diffusion, sde.noise_dim, z0, grid, save, keys, blk)
    return blk


_KERNELS = {
    "scalar": _run_scalar,                          # any SDE with compiled _drift / _vol
    "correlation": _run_corr,                       # CorrelationSDE (lane-vectorised)
    "correlation_scalar": _cached_scalar(_solve_corr_scalar),
    "log_q": _cached_scalar(_solve_log_q),          # UnshapedCorrelationSDE
    "gbm": _cached_scalar(_solve_gbm),
    "ou": _cached_scalar(_solve_ou),
    "linear_w": _cached_scalar(_solve_linear_w),
    "log_covariance": _run_cov2,                    # CovarianceSDE, m = 2
    "gram_relu": _gram_runner(_solve_gram_relu, True),        # CovarianceSDE, m >= 3
    "gram_smooth": _gram_runner(_solve_gram_smooth, False),   # SmoothCovarianceSDE
    "peluchetti_favaro": lambda sde, K0, grid, save, keys, method, S: _run_pf(sde, K0, grid,
                                                                             save, keys, S),
    "ito": _run_ito,                                # ItoSDE (user drift and diffusion)
}


def _solve_ode(ode, K0, times, ntk0, rtol, atol):
    from scipy.integrate import solve_ivp
    times = _check_times(times)
    K0 = _checks.real_array(K0, "y0 = K0")        # complex, None, strings: TypeError
    if K0.ndim != 2 or K0.shape[0] != K0.shape[1] or not np.all(np.isfinite(K0)):
        raise ValueError(f"y0 must be a finite square kernel K0, got shape {K0.shape}")
    if not np.allclose(K0, K0.T, rtol=0, atol=1e-14 * np.abs(K0).max()):
        raise ValueError("y0 = K0 must be symmetric")
    if np.any(np.diag(K0) <= 0):
        raise ValueError(f"y0 = K0 must have a positive diagonal, got {np.diag(K0).tolist()}")
    lam = np.linalg.eigvalsh(0.5 * (K0 + K0.T)).min()
    if lam < -1e-12 * np.abs(K0).max():
        raise ValueError(f"y0 = K0 must be positive semi-definite (a kernel), got minimum "
                         f"eigenvalue {lam:.3g} for K0 = {K0.tolist()}")
    T0 = K0 if ntk0 is None else _checks.real_array(ntk0, "ntk0")
    if T0.shape != K0.shape:
        raise ValueError(f"ntk0 must have the shape of K0 {K0.shape}, got {T0.shape}")
    N = K0.shape[0]
    iu = np.triu_indices(N)

    def full(v):
        M = np.empty((N, N))
        M[iu] = v
        M.T[iu] = v
        return M

    def rhs(t, y):
        m = len(iu[0])
        dK, dT = ode.rhs(full(y[:m]), full(y[m:]))
        return np.concatenate([dK[iu], dT[iu]])

    y0 = np.concatenate([K0[iu], T0[iu]])
    sol = solve_ivp(rhs, (0.0, float(times[-1])), y0, method="DOP853", t_eval=times,
                    rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"DOP853 failed: {sol.message}")
    m = len(iu[0])
    K = np.array([full(sol.y[:m, k]) for k in range(len(times))])
    Th = np.array([full(sol.y[m:, k]) for k in range(len(times))])
    return Solution(times=times, values=K, method="DOP853", steps=int(sol.nfev), ntk=Th)


# ----------------------------------------------------------------------------------------------
# limit vs network
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """Per-time statistics of limit samples against network samples (``compare``)."""

    mean_limit: np.ndarray
    mean_network: np.ndarray
    stderr_limit: np.ndarray
    stderr_network: np.ndarray
    sd_limit: np.ndarray
    sd_network: np.ndarray
    ks_statistic: np.ndarray
    ks_pvalue: np.ndarray

    @property
    def z(self):
        """Difference of the means in combined standard errors."""
        return (self.mean_network - self.mean_limit) / np.hypot(self.stderr_limit,
                                                                 self.stderr_network)


def compare(limit_samples, network_samples):
    """Compare samples of a limit with samples of finite networks at each saved time.

    Parameters
    ----------
    limit_samples, network_samples : (S, paths) arrays (or (paths,) for one time)
        E.g. ``solve(...).values`` and ``simulate_paths(...).rho`` transposed to (S, paths).

    Returns
    -------
    Comparison
        Means, standard deviations and standard errors of both, and the two-sample
        Kolmogorov-Smirnov statistic and p-value (``scipy.stats.ks_2samp``) per time.
    """
    from scipy import stats
    a = np.asarray(limit_samples, dtype=np.float64)
    b = np.asarray(network_samples, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    if b.ndim == 1:
        b = b[None]
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"limit_samples and network_samples must be (times, samples) with the "
                         f"same number of times, got {a.shape} and {b.shape}")
    if a.shape[1] < 2 or b.shape[1] < 2:
        raise ValueError("need at least 2 samples of each")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("samples must be finite")
    ks = [stats.ks_2samp(a[k], b[k]) for k in range(a.shape[0])]
    sa, sb = a.std(1, ddof=1), b.std(1, ddof=1)
    return Comparison(mean_limit=a.mean(1), mean_network=b.mean(1),
                      stderr_limit=sa / math.sqrt(a.shape[1]),
                      stderr_network=sb / math.sqrt(b.shape[1]), sd_limit=sa, sd_network=sb,
                      ks_statistic=np.array([k.statistic for k in ks]),
                      ks_pvalue=np.array([k.pvalue for k in ks]))
