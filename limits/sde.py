"""Depth-and-width limits as objects: SDEs of the covariance / correlation of random networks and
the ODE of infinite-width ResNets (theory/sde.md §2-§3, theory/kernels.md §3.3).

Every SDE here is an Itô SDE ``dY = a(t, Y) dt + B(t, Y) dW`` *in solver coordinates* chosen so
that the state cannot leave its domain (theory/sde.md §5): the correlation is carried as
``x = artanh(rho)``, positive quantities as logarithms.  ``limits.solve`` integrates them;
``to_coords`` / ``from_coords`` map the user's variables to these coordinates and back.

The symbolic drift and diffusion come from ``limits.derive`` (``.derivation()``).  The compiled
model functions used by the solver are written in the numerically stable forms of sde.md §5
(Fisher-z, ``h(theta)`` through the tail atan(e) - e of a rational approximation,
logarithms), because the expressions SymPy prints cancel catastrophically near rho = +-1 (0/0
once tanh(x) rounds to 1); the test suite checks that both agree to rounding at random points
(tests/limits/test_solve.py), so the numbers simulated are the derivation's numbers.

References
----------
M. B. Li, M. Nica, D. M. Roy, "The Neural Covariance SDE: Shaped Infinite Depth-and-Width
Networks at Initialization", NeurIPS 2022 (arXiv 2206.02768): §2 of theory/sde.md.
M. B. Li, M. Nica, "Differential Equation Scaling Limits of Shaped and Unshaped Neural
Networks", TMLR 2024 (arXiv 2310.12079): §3 of theory/sde.md.
"""
import math
from dataclasses import dataclass

import numba
import numpy as np

from kernels import _checks
from kernels._fastmath import acos1m, h_of
from kernels._vecmath import ATAN_TAIL_K, EXP_K, _exp_core_k, atan_tail_k

from ._sde_paths import _check_times, _exact_q, _keys

__all__ = ["CorrelationSDE", "CovarianceSDE", "SmoothCovarianceSDE", "UnshapedCorrelationSDE",
           "ResNetODE",
           "GeometricBM", "LinearSDE", "OrnsteinUhlenbeck", "PeluchettiFavaroSDE", "K_UNSHAPED",
           "Q_STAR"]

K_UNSHAPED = 2.0 * math.sqrt(2.0) / (3.0 * math.pi)     # sde.md §1, §3.3
Q_STAR = 9.0 * math.pi ** 2 / 2.0                        # = 4 / k^2

# ----------------------------------------------------------------------------------------------
# compiled model functions: drift a (dim,) and volatility B (dim, noise) in solver coordinates
# ----------------------------------------------------------------------------------------------
# constants of ``_corr_drift_k`` (a runtime argument in the solver's hot loop; see
# kernels/_vecmath.py)
CORR_K = EXP_K + ATAN_TAIL_K + (1.0 / (4.0 * math.pi),)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _corr_drift_k(x, C, k):
    """Fisher-z drift ``nu(tanh x) / (1 - tanh^2 x) + tanh(x) / 2`` (sde.md §2.4), stable for all
    x, branch-free (so that loops over paths vectorise) and with a single division; ``k`` =
    ``CORR_K``.

    With a = |x| (clamped at 300, where the C-term is below 1e-130 for x > 0 and rho = -1 to
    rounding for x < 0), e = e^-a, s = e^2: tanh x = sign(x) (1 - s)/(1 + s), sin theta =
    2e/(1 + s), theta = 2 atan(e) (x >= 0) or pi - 2 atan(e) (x < 0), and
    nu / sin^2 theta = C/(8 pi) H (1 + s) / s with H = (1 + s) h(theta), h = sin theta -
    theta cos theta.  Write atan(e) = e - e^3 A, A = P/Q (``atan_tail``, P, Q > 0) and
    G = Q + P (1 - s) > 0.  Then

    * x >= 0:  H = 2 e^3 (1 + A (1 - s)), so the C-term is C/(4 pi) e (1 + s) G / Q;
    * x < 0:   H = 2e + (pi - 2 atan e)(1 - s) = [pi (1 - s) Q + 2 e s G] / Q;

    sums of positive terms, so H has no cancellation as theta -> 0 (rho -> 1) or theta -> pi.
    Over one common denominator, with T = C/(4 pi) e (1 + s)^2 G,

        x >= 0:  drift = [T + (1 - s) Q / 2] / [Q (1 + s)],
        x < 0:   drift = [s T + (1 - s) Q (C (1 + s)^2 / 8 - s / 2)] / [s Q (1 + s)].

    For x < 0 the C-term and tanh(x)/2 have opposite signs; they cancel only where the drift
    itself is small compared with its terms (possible for C < 1), and the absolute error stays
    at the rounding of the terms, as in any form (tested against mpmath in test_solve.py).
    """
    a = min(abs(x), 300.0)
    e = _exp_core_k(-a, k)
    s = e * e
    p, q = atan_tail_k(s, k[16:30])
    om = 1.0 - s
    op = 1.0 + s
    op2 = op * op
    T = C * k[30] * e * op2 * (q + p * om)
    pos = x >= 0.0
    sel = 1.0 if pos else s
    c = 0.5 if pos else 0.125 * C * op2 - 0.5 * s
    return (sel * T + om * q * c) / (sel * q * op)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _corr_drift(x, C):
    """``_corr_drift_k`` with the module's constants."""
    return _corr_drift_k(x, C, CORR_K)


# scalar models for the generic scalar integrator of ``limits.solve``: drift a(t, y, p) and
# volatility (b, db/dy)(t, y, p) (db for Milstein); an SDE object names them as _drift / _vol
@numba.njit(inline="always", cache=True, error_model="numpy")
def _corr_drift_t(t, y, p):
    """``CorrelationSDE`` in Fisher-z coordinates, p = [C]."""
    return _corr_drift(y, p[0])


@numba.njit(inline="always", cache=True, error_model="numpy")
def _unit_vol(t, y, p):
    return 1.0, 0.0


@numba.njit(inline="always", cache=True, error_model="numpy")
def _logq_drift(t, y, p):
    """y = ln q of the unshaped SDE, p = [k]:  (2 - k e^{y/2}) / t - 2."""
    return (2.0 - p[0] * math.exp(0.5 * y)) / t - 2.0


@numba.njit(inline="always", cache=True, error_model="numpy")
def _logq_vol(t, y, p):
    return 2.0 * math.sqrt(2.0), 0.0


@numba.njit(inline="always", cache=True, error_model="numpy")
def _gbm_drift(t, y, p):
    """dX = mu X dt + sigma X dW, p = [mu, sigma]."""
    return p[0] * y


@numba.njit(inline="always", cache=True, error_model="numpy")
def _gbm_vol(t, y, p):
    return p[1] * y, p[1]


@numba.njit(inline="always", cache=True, error_model="numpy")
def _ou_drift(t, y, p):
    """dX = -theta X dt + sigma dW, p = [theta, sigma]."""
    return -p[0] * y


@numba.njit(inline="always", cache=True, error_model="numpy")
def _ou_vol(t, y, p):
    return p[1], 0.0


@numba.njit(inline="always", cache=True, error_model="numpy")
def _linw_drift(t, y, p):
    """dw = ((k/2 - w)/t + 2 w) dt - sqrt(2) w dB, p = [k]."""
    return (0.5 * p[0] - y) / t + 2.0 * y


@numba.njit(inline="always", cache=True, error_model="numpy")
def _linw_vol(t, y, p):
    return -math.sqrt(2.0) * y, -math.sqrt(2.0)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _model3(y, p, a, B):
    """Two-input covariance SDE in (u1, u2, x) = (ln V11, ln V22, artanh rho), sde.md §2.3:
    a = (-1, -1, nu/(1 - rho^2) + rho/2), B = the Cholesky factor of
    [[2, 2 rho^2, rho], [2 rho^2, 2, rho], [rho, rho, 1]]."""
    x = y[2]
    r = math.tanh(x)
    a[0] = -1.0
    a[1] = -1.0
    a[2] = _corr_drift(x, p[0])
    # closed-form lower Cholesky factor:  L10 = sqrt2 r^2, L11 = sqrt2 sqrt(1 - r^4),
    # L20 = r / sqrt2, L21 = r sqrt(1 - r^2) / (sqrt2 sqrt(1 + r^2)), L22 = 1 / sqrt(1 + r^2)
    r2 = r * r
    s2 = math.sqrt(2.0)
    ch = math.cosh(x)
    one_m_r2 = 1.0 / (ch * ch)                  # 1 - r^2 without cancellation
    one_p_r2 = 1.0 + r2
    B[0, 0] = s2
    B[0, 1] = 0.0
    B[0, 2] = 0.0
    B[1, 0] = s2 * r2
    B[1, 1] = s2 * math.sqrt(one_m_r2 * one_p_r2)
    B[1, 2] = 0.0
    B[2, 0] = r / s2
    B[2, 1] = r * math.sqrt(one_m_r2 / one_p_r2) / s2
    B[2, 2] = 1.0 / math.sqrt(one_p_r2)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _cov_drift_relu(p, V, B):
    """Drift b(V) of the shaped-ReLU covariance SDE (sde.md §2.3), p = [C], for V, B of shape
    (m, m, lanes) (independent matrices side by side, lanes innermost; B is symmetric):
    ``b^{ab} = nu(rho^{ab}) sqrt(V^{aa} V^{bb})``, ``b^{aa} = 0``,
    ``nu(rho) = C/(2 pi) h(arccos rho)`` (h by its series for small theta).

    rho is clamped to [-1, 1] against rounding only (V is positive definite)."""
    m = V.shape[0]
    nl = V.shape[2]
    for a in range(m):
        for l in range(nl):
            B[a, a, l] = 0.0
        for c in range(a):
            for l in range(nl):
                s = math.sqrt(V[a, a, l] * V[c, c, l])
                rho = min(max(V[a, c, l] / s, -1.0), 1.0)
                B[a, c, l] = p[0] / (2.0 * math.pi) * h_of(acos1m(1.0 - rho), 1.0 - rho) * s
                B[c, a, l] = B[a, c, l]


@numba.njit(inline="always", cache=True, error_model="numpy")
def _cov_drift_smooth(p, V, B):
    """Drift b(V) of the smooth covariance SDE (sde.md §2.6), p = [a2, a3, beta_sub], V, B as
    in ``_cov_drift_relu``: ``b^{ab} = a2^2 (V^{aa} V^{bb} + 2 (V^{ab})^2)
    + 3 a3 V^{ab} (V^{aa} + V^{bb}) - beta_sub V^{ab}``."""
    m = V.shape[0]
    nl = V.shape[2]
    a2, a3, bs = p[0], p[1], p[2]
    for a in range(m):
        for c in range(a + 1):
            for l in range(nl):
                v = V[a, c, l]
                B[a, c, l] = (a2 * a2 * (V[a, a, l] * V[c, c, l] + 2.0 * v * v)
                              + 3.0 * a3 * v * (V[a, a, l] + V[c, c, l]) - bs * v)
                B[c, a, l] = B[a, c, l]


_SYM_RTOL = 1e-12           # asymmetry of V0 tolerated (then symmetrised), relative to max |V0|
_NORMAL_MIN = 2.2250738585072014e-308   # smallest normal float64


def _real_array(y0, name):
    """A float64 copy of ``y0`` (any shape; finiteness is the caller's, after its shape
    check): ``kernels._checks.real_array``, whose TypeError names ``name``."""
    return np.array(_checks.real_array(y0, name))


def _check_V0(y0, min_inputs):
    """A finite symmetric positive definite m x m matrix, m >= min_inputs (float64 copy).

    An asymmetry up to 1e-12 max|V0| (rounding) is tolerated and removed by (V0 + V0^T)/2."""
    V = _real_array(y0, "y0 = V0")
    if V.ndim != 2 or V.shape[0] != V.shape[1] or V.shape[0] < min_inputs:
        raise ValueError(f"y0 must be an m x m covariance V0 with m >= {min_inputs}, got shape "
                         f"{V.shape}")
    if not np.all(np.isfinite(V)):
        raise ValueError(f"y0 = V0 must be finite, got {V.tolist()}")
    if not np.array_equal(V, V.T):
        if np.max(np.abs(V - V.T)) > _SYM_RTOL * np.max(np.abs(V)):
            raise ValueError(f"y0 = V0 must be symmetric (to 1e-12 relative), got {V.tolist()}")
        V = 0.5 * V + 0.5 * V.T
    try:
        np.linalg.cholesky(V)
    except np.linalg.LinAlgError:
        raise ValueError(f"y0 = V0 must be positive definite, got {V.tolist()}") from None
    return V


def _sqrt_product(a, b):
    """sqrt(a b) for a, b > 0 (arrays or floats), also where the product over- or underflows:
    sqrt(a) sqrt(b) there (the product form elsewhere, which rounds once less)."""
    with np.errstate(over="ignore", under="ignore"):
        p = np.multiply(a, b)
    ok = (p >= _NORMAL_MIN) & (p < np.inf)
    if np.ndim(p) == 0:
        return float(np.sqrt(p)) if ok else float(np.sqrt(a) * np.sqrt(b))
    return np.where(ok, np.sqrt(p), np.sqrt(a) * np.sqrt(b))


def _matrix_from_flat(z):
    m = math.isqrt(z.shape[-1])
    return z.reshape(z.shape[:-1] + (m, m))


# ----------------------------------------------------------------------------------------------
# SDE objects
# ----------------------------------------------------------------------------------------------
def _finite(v, name):
    return _checks.finite_float(v, name)


class _SDE:
    """Common interface of the SDEs that ``limits.solve`` integrates.

    An SDE object says, in solver coordinates (``to_coords`` / ``from_coords``):

    * ``dim``, ``params`` (a float64 array passed to the compiled functions), ``additive``,
      ``singular_at_zero`` (geometric time grid from ``t0``), ``euler_only`` (None, or why only
      Euler-Maruyama applies);
    * how it is integrated, by ``_integrator(z0, method)``: the name of a kernel of
      ``limits.solve`` (``solve._KERNELS``).  A scalar SDE names ``"scalar"`` and provides its
      compiled ``_drift(t, y, p)`` and ``_vol(t, y, p) -> (b, db/dy)`` (the generic Euler /
      Milstein / Heun integrator runs them; compiled once per process, since numba does not
      cache a kernel specialised on function arguments); built-in SDEs name a specialised,
      cached kernel instead; ``ItoSDE`` names ``"ito"`` (its user-supplied drift and
      diffusion).
    """

    singular_at_zero = False
    dim = 1
    additive = False
    euler_only = None       # why only Euler-Maruyama applies (None: every scheme of ``solve``)
    _drift = None           # scalar SDEs: compiled a(t, y, p)
    _vol = None             # scalar SDEs: compiled (b, db/dy)(t, y, p)

    def _integrator(self, z0, method):
        """Name of the ``limits.solve`` kernel that integrates this SDE from ``z0``."""
        return "scalar"

    def to_coords(self, y0):
        y = _real_array(y0, "y0")
        if y.ndim != 0 or not np.isfinite(y):
            raise ValueError(f"y0 must be a finite scalar, got {y0!r}")
        return np.array([float(y)])

    def from_coords(self, z):
        return z[..., 0]


class _Shaped:
    """Shaping constants of a shaped-ReLU SDE and the finite network it is the limit of."""

    def __post_init__(self):
        object.__setattr__(self, "c_plus", _finite(self.c_plus, "c_plus"))
        object.__setattr__(self, "c_minus", _finite(self.c_minus, "c_minus"))
        d = self.c_plus - self.c_minus
        if not math.isfinite(d * d):
            raise ValueError(f"C = (c_plus - c_minus)^2 overflows for c_plus = {self.c_plus!r}, "
                             f"c_minus = {self.c_minus!r}; the limit needs a finite C")

    @property
    def C(self):
        """``(c_plus - c_minus)^2``, the only combination in the limit."""
        return (self.c_plus - self.c_minus) ** 2

    @property
    def params(self):
        return np.array([self.C])

    def network(self, width, T, rho0=0.3):
        """The finite network whose limit this SDE is (theory/sde.md §2.1-§2.2).

        A ReLU MLP of width ``n = width`` and depth ``round(T n)`` with slopes
        ``s_pm = 1 + c_pm / sqrt(n)`` (``ShapedReLU(rate="width")``), normalisation
        ``weight_var = 2 / (s_+^2 + s_-^2)``, no bias, and two unit-norm inputs (times sqrt 2, so
        that ``G_0 = I`` in correlation ``rho0``): its layer-``depth`` Gram of
        ``kernels.simulate_paths(net, x, width=n, ...)`` tends to the SDE at time T.

        Returns
        -------
        (kernels.MLP, (2, 2) array x)

        Notes
        -----
        At finite n the drift is ``C (1 - (c_+ + c_-)/sqrt(n) + ...)`` (limits.derive); choosing
        ``c_plus = -c_minus`` cancels the n^-1/2 term, and the networks approach the limit fastest.
        """
        import kernels as kn
        n = _checks.positive_int(width, "width")
        T = _checks.positive_float(T, "T")
        rho0 = _finite(rho0, "rho0")
        if abs(rho0) >= 1:
            raise ValueError(f"rho0 must lie in (-1, 1), got {rho0!r}")
        depth = max(1, int(round(T * n)))
        s_plus, s_minus = 1 + self.c_plus / math.sqrt(n), 1 + self.c_minus / math.sqrt(n)
        net = kn.MLP(depth=depth, activation=kn.ShapedReLU(self.c_plus, self.c_minus,
                                                            rate="width"),
                     weight_var=2.0 / (s_plus ** 2 + s_minus ** 2))
        x = np.array([[1.0, 0.0], [rho0, math.sqrt(1 - rho0 ** 2)]]) * math.sqrt(2.0)
        return net, x


@dataclass(frozen=True)
class CorrelationSDE(_Shaped, _SDE):
    """Correlation SDE of the shaped-ReLU network (Li, Nica & Roy 2022; theory/sde.md §2.4)::

        d rho = [nu(rho) - rho (1 - rho^2)/2] dt + (1 - rho^2) dW,
        nu(rho) = (c_plus - c_minus)^2 / (2 pi) * h(arccos rho),  h(theta) = sin theta - theta cos theta

    in the time ``t = l/n`` of a network of width ``n`` with slopes ``1 + c_pm / sqrt(n)`` (so
    ``T = depth / width``; the table of sde.md §6 B).  Solved in Fisher-z coordinates
    ``x = artanh(rho)``, which have additive noise and never reach +-1 (sde.md §2.4)::

        dx = [nu(tanh x) / (1 - tanh^2 x) + tanh(x) / 2] dt + dW

    Parameters
    ----------
    c_plus, c_minus : float
        Shaping constants; only ``C = (c_plus - c_minus)^2`` enters.
    """

    c_plus: float = 0.0
    c_minus: float = 0.0
    additive = True
    _drift = staticmethod(_corr_drift_t)
    _vol = staticmethod(_unit_vol)

    def _integrator(self, z0, method):
        # the lane-vectorised kernel (Euler, Heun); Milstein (= Euler here) by the scalar one
        return "scalar" if method == "milstein" else "correlation"

    def to_coords(self, y0):
        rho = _real_array(y0, "y0 = rho0")
        if rho.ndim != 0:
            raise ValueError(f"y0 must be a scalar correlation rho0, got shape {rho.shape}")
        if not np.isfinite(rho) or abs(rho) >= 1:
            raise ValueError(f"y0 = rho0 must lie in (-1, 1), got {float(rho)!r} "
                             "(+-1 are never reached from inside: sde.md §2.4)")
        return np.array([math.atanh(float(rho))])

    def from_coords(self, z):
        return np.tanh(z[..., 0])

    def derivation(self):
        """The SymPy derivation of this SDE in the solver's Fisher-z coordinates
        (``limits.derive.correlation_derivation(..., coordinates="artanh")``)."""
        from . import derive
        return derive.correlation_derivation(self.c_plus, self.c_minus, coordinates="artanh")


@dataclass(frozen=True)
class CovarianceSDE(_Shaped, _SDE):
    """Covariance SDE of m >= 2 inputs through a shaped-ReLU network (theory/sde.md §2.3)::

        dV = b(V) dt + Sigma(V)^{1/2} dB,   b^{ab} = nu(rho^{ab}) sqrt(V^{aa} V^{bb}),  b^{aa} = 0,
        Sigma^{ab,cd} = V^{ac} V^{bd} + V^{ad} V^{bc}

    in time ``t = l/n``.  The state stays in the cone of positive definite matrices:

    * m = 2: solved in ``(ln V11, ln V22, artanh rho)`` (sde.md §2.3, "PSD-preserving
      alternative")::

          du_a = -dt + dM_a,  dx = [nu/(1 - rho^2) + rho/2] dt + dM_3,
          d<M> / dt = [[2, 2 rho^2, rho], [2 rho^2, 2, rho], [rho, rho, 1]]

    * m >= 3: a multiplicative Euler scheme on a square root of V (``limits.solve``'s module
      docstring): ``V' = (L M)(L M)^T`` with V = L L^T, M = I + H + D dt, H the symmetrised
      Brownian increment; the noise is sde.md §2.3's ``(L dW L^T + L dW^T L^T)/sqrt 2``.

    ``y0`` is the m x m input covariance ``V0`` (positive definite, at any scale: the SDE is
    scale-equivariant, V_t(c V0) = c V_t(V0)); values come back as (..., m, m) matrices.  Every 2 x 2 sub-block evolves as the m = 2 SDE (sde.md §2.4).  For the
    shaped MLP at rate ``depth^-1/2`` (sde.md §3.1) use ``tau = t / T0`` and
    ``c_pm -> c_pm / sqrt(T0)``.
    """

    c_plus: float = 0.0
    c_minus: float = 0.0
    dim = 3
    euler_only = "multiplicative noise in several dimensions"

    def _integrator(self, z0, method):
        return "log_covariance" if z0.shape[0] == 3 else "gram_relu"

    def to_coords(self, y0):
        V = _check_V0(y0, 2)
        if V.shape[0] > 2:
            return V.ravel()                 # the multiplicative scheme works on V itself
        rho = V[0, 1] / _sqrt_product(V[0, 0], V[1, 1])   # at any scale of V0
        if abs(rho) >= 1:                     # rounding-level PD matrices
            raise ValueError(f"y0 = V0 must be positive definite (|rho0| < 1), got {V.tolist()}")
        return np.array([math.log(V[0, 0]), math.log(V[1, 1]), math.atanh(rho)])

    def from_coords(self, z):
        if z.shape[-1] != 3:                 # m >= 3: V flattened (3 is not a square)
            return _matrix_from_flat(z)
        v11, v22 = np.exp(z[..., 0]), np.exp(z[..., 1])
        v12 = np.tanh(z[..., 2]) * _sqrt_product(v11, v22)
        out = np.empty(z.shape[:-1] + (2, 2))
        out[..., 0, 0], out[..., 1, 1] = v11, v22
        out[..., 0, 1] = out[..., 1, 0] = v12
        return out

    def derivation(self, n_inputs=2):
        """The SymPy derivation: for ``n_inputs = 2`` in the m = 2 solver's coordinates
        (ln V11, ln V22, artanh rho) (``limits.derive.correlation_sde_coordinates``); otherwise
        in the entries V_ab, a <= b (``limits.derive.covariance_sde(n_inputs, "relu", ...)``)."""
        from . import derive
        if n_inputs == 2:
            return derive.correlation_sde_coordinates(self.c_plus, self.c_minus)
        return derive.covariance_sde(n_inputs, "relu", self.c_plus, self.c_minus)


@dataclass(frozen=True)
class SmoothCovarianceSDE(_SDE):
    """Covariance SDE of m >= 1 inputs through a network with a smooth shaped activation
    ``phi_s(x) = s phi(x/s) = x + a2 x^2/sqrt(n) + a3 x^3/n + ...``, ``s = a sqrt(n)``
    (Li, Nica & Roy 2022; theory/sde.md §2.6), weights N(0, 1/n)::

        dV = b(V) dt + Sigma(V)^{1/2} dB,  Sigma^{ab,cd} = V^{ac} V^{bd} + V^{ad} V^{bc},
        b^{ab} = a2^2 (V^{aa} V^{bb} + 2 (V^{ab})^2) + 3 a3 V^{ab} (V^{aa} + V^{bb}) [- beta V^{ab}]

    with ``a2 = phi''(0)/(2a)``, ``a3 = phi'''(0)/(6 a^2)`` and ``beta = 3 a2^2 + 6 a3``; the
    bracket only with ``normalise=True`` (c = 1/E[phi_s(g)^2]; sde.md §2.6 AMBIGUITY: which
    normalisation [P2] uses is unverified, so it is a parameter).  On the diagonal
    ``dV = beta V^2 dt + sqrt 2 V dB`` (c = 1): the norm explodes in finite time with positive
    probability iff beta > 0 (Feller), and then ``limits.solve`` reports non-finite values.

    Solved by the multiplicative Euler scheme of ``limits.solve`` (V stays positive definite).

    Parameters
    ----------
    a2, a3 : float
        Coefficients of the polynomial form; see :meth:`from_activation` for phi''(0), phi'''(0).
    normalise : bool
        Subtract ``beta V^{ab}`` (normalised weights), default False.

    Examples
    --------
    tanh (phi'' = 0, phi''' = -2) with a = 1: ``SmoothCovarianceSDE.from_activation(0, -2)``,
    beta = -2 < 0, so the norm does not explode.
    """

    a2: float = 0.0
    a3: float = 0.0
    normalise: bool = False
    dim = 0                 # not scalar; the state size m * m comes from V0
    euler_only = "multiplicative noise in several dimensions"

    def _integrator(self, z0, method):
        return "gram_smooth"

    def __post_init__(self):
        object.__setattr__(self, "a2", _finite(self.a2, "a2"))
        object.__setattr__(self, "a3", _finite(self.a3, "a3"))
        if not isinstance(self.normalise, (bool, np.bool_)):
            raise TypeError(f"normalise must be a bool, got {self.normalise!r}")

    @classmethod
    def from_activation(cls, phi2, phi3, a=1.0, normalise=False):
        """From ``phi''(0)``, ``phi'''(0)`` and the shaping scale ``a`` (s = a sqrt(n))."""
        a = _checks.positive_float(a, "a")
        return cls(_finite(phi2, "phi2") / (2.0 * a), _finite(phi3, "phi3") / (6.0 * a * a),
                   normalise)

    @property
    def beta(self):
        """``3 a2^2 + 6 a3``: the diagonal drift is beta V^2 (c = 1)."""
        return 3.0 * self.a2 ** 2 + 6.0 * self.a3

    @property
    def params(self):
        return np.array([self.a2, self.a3, self.beta if self.normalise else 0.0])

    def to_coords(self, y0):
        V = _real_array(y0, "y0 = V0")
        V = _check_V0(V.reshape(1, 1) if V.ndim == 0 else V, 1)
        d = np.diag(V)
        if d.max() > 1e100 or d.min() < 1e-100:
            raise ValueError(f"y0 = V0 must have its diagonal within 1e-100 .. 1e100 for the "
                             f"smooth covariance SDE (its drift has terms V_aa V_bb, and it is not "
                             f"scale-equivariant), got diagonal {d.tolist()}")
        return V.ravel()

    def from_coords(self, z):
        return _matrix_from_flat(z)

    def derivation(self, n_inputs=2):
        """``limits.derive.covariance_sde(n_inputs, "smooth", normalise=...)`` (params a2, a3)."""
        from . import derive
        return derive.covariance_sde(n_inputs, "smooth", normalise=self.normalise)


@dataclass(frozen=True)
class UnshapedCorrelationSDE(_SDE):
    """The q_t SDE of the unshaped ReLU MLP (Li & Nica 2024; theory/sde.md §3.3).

    ``q_l = l^2 (1 - rho_l)``, ``t = l / n``::

        dq = [(2 q - k q^{3/2}) / t + 2 q] dt + 2 sqrt(2) q dB,   k = 2 sqrt(2) / (3 pi),

    singular at t = 0 where q must start at ``q* = 9 pi^2 / 2``.  Solved as ``y = ln q`` with
    additive noise (``dy = [(2 - k e^{y/2}) / t - 2] dt + 2 sqrt(2) dB``) on a geometric grid
    from ``t0`` (``limits.solve`` picks it: steps ``h t``); ``sample_exact`` draws q_t from the
    exact representation ``q_t = q* / Y_t^2`` instead, with no singular stepping.
    """

    additive = True
    singular_at_zero = True
    _drift = staticmethod(_logq_drift)
    _vol = staticmethod(_logq_vol)

    def _integrator(self, z0, method):
        return "log_q"

    @property
    def params(self):
        return np.array([K_UNSHAPED])

    def to_coords(self, y0):
        q = _real_array(Q_STAR if y0 is None else y0, "y0 = q0")
        if q.ndim != 0 or not np.isfinite(q) or q <= 0:
            raise ValueError(f"y0 = q0 must be a positive scalar (q* = {Q_STAR}), got {y0!r}")
        return np.array([math.log(float(q))])

    def from_coords(self, z):
        return np.exp(z[..., 0])

    def derivation(self):
        """The SymPy derivation of the SDE of y = ln q (``limits.derive.unshaped_q_sde("log")``),
        params ``(t,)``."""
        from . import derive
        return derive.unshaped_q_sde(coordinates="log")

    def sample_exact(self, times, paths, seed=0, substeps=2000):
        """Exact samples of q_t at ``times`` (sde.md §3.3): ``q_t = q* / Y_t^2`` with
        ``Y_t = e^{t - sqrt2 B_t} / t * int_0^t e^{-s + sqrt2 B_s} ds`` along one Brownian path
        per sample (trapezoid rule with ``substeps`` per unit of the largest time; the only
        error is quadrature, O(substeps^-1) in mean).  Returns (len(times), paths)."""
        times = _check_times(times, allow_zero=False)
        paths = _checks.positive_int(paths, "paths")
        substeps = _checks.positive_int(substeps, "substeps")
        T = float(times[-1])
        m = max(int(math.ceil(substeps * T)), 16)
        grid = np.linspace(0.0, T, m + 1)
        idx = np.searchsorted(grid, times)
        grid[idx] = times          # save times on the grid
        out = np.empty((len(times), paths))
        _exact_q(_keys(seed, paths), grid, idx.astype(np.int64), Q_STAR, out)
        return out


@dataclass(frozen=True)
class GeometricBM(_SDE):
    """``dX = mu X dt + sigma X dW`` (exact solution ``X_0 exp((mu - sigma^2/2) t + sigma W_t)``):
    the test SDE for strong and weak orders of ``limits.solve``."""

    mu: float = 0.0
    sigma: float = 1.0
    _drift = staticmethod(_gbm_drift)
    _vol = staticmethod(_gbm_vol)

    def __post_init__(self):
        for name in ("mu", "sigma"):
            object.__setattr__(self, name, _finite(getattr(self, name), name))

    def _integrator(self, z0, method):
        return "gbm"

    @property
    def params(self):
        return np.array([self.mu, self.sigma])


@dataclass(frozen=True)
class OrnsteinUhlenbeck(_SDE):
    """``dX = -theta X dt + sigma dW`` (``E X_t = X_0 e^{-theta t}``): the additive-noise test SDE
    for the weak order of ``method="heun"``."""

    theta: float = 1.0
    sigma: float = 1.0
    additive = True
    _drift = staticmethod(_ou_drift)
    _vol = staticmethod(_ou_vol)

    def __post_init__(self):
        for name in ("theta", "sigma"):
            object.__setattr__(self, name, _finite(getattr(self, name), name))

    def _integrator(self, z0, method):
        return "ou"

    @property
    def params(self):
        return np.array([self.theta, self.sigma])


@dataclass(frozen=True)
class LinearSDE(_SDE):
    """The linear SDE of ``w = q^{-1/2}`` (theory/sde.md §3.3)::

        dw = [(k/2 - w)/t + 2 w] dt - sqrt(2) w dB,   w(0) = 1/sqrt(q*) = k/2,

    with ``E[w_t] = (k/2) (e^{2t} - 1) / (2t)``: a singular, multiplicative-noise test SDE."""

    singular_at_zero = True
    _drift = staticmethod(_linw_drift)
    _vol = staticmethod(_linw_vol)

    def _integrator(self, z0, method):
        return "linear_w"

    @property
    def params(self):
        return np.array([K_UNSHAPED])

    def to_coords(self, y0):
        return super().to_coords(0.5 * K_UNSHAPED if y0 is None else y0)


def _set_activation_and_variances(obj):
    """Validate ``activation`` (default ReLU), ``weight_var`` and ``bias_var`` of a frozen
    dataclass in place."""
    import kernels as kn
    if obj.activation is None:
        object.__setattr__(obj, "activation", kn.ReLU())
    if not isinstance(obj.activation, kn.Activation):
        raise TypeError(f"activation must be a kernels activation, got {obj.activation!r}")
    for name in ("weight_var", "bias_var"):
        object.__setattr__(obj, name, _checks.nonneg_float(getattr(obj, name), name))


@dataclass(frozen=True)
class PeluchettiFavaroSDE(_SDE):
    """Depth limit of a *finite-width* ResNet with block variances ~ 1/depth (Peluchetti &
    Favaro 2020; theory/kernels.md §4.2)::

        x_l = x_{l-1} + b_l + W_l phi(x_{l-1}),  b_l ~ N(mu_b/L, sb2/L),  W_l ~ N(mu_w/(L D), sw2/(L D))

    is the Euler-Maruyama scheme (step 1/L) of the D-dimensional diffusion, jointly over the N
    inputs (coordinate i of all inputs shares one noise, distinct coordinates are independent)::

        dX_t^i(x) = mu(X_t(x)) dt + dM_t^i(x),   mu(y) = mu_b + mu_w mean_j phi(y_j),
        d<M^i(x), M^i(x')>_t = sb2 + sw2 mean_j phi(X_t^j(x)) phi(X_t^j(x'))

    ``solve(PeluchettiFavaroSDE(...), K0, times, paths)`` starts each path from a random stem
    ``X_0`` with iid rows ~ N(0, K0) over the D coordinates (the input layer of
    ``kernels.ResNet``) and returns the Grams ``X_t^T X_t / D`` (times, paths, N, N).  With
    ``mu = 0`` and ``D -> infinity`` the Gram tends to the ResNet ODE's K_t (kernels.md §4.4;
    ``ResNetODE``), and a ``kernels.ResNet(depth=L, weight_var=sw2, bias_var=sb2)`` of width D
    (branch scale L^-1/2) converges to this SDE as L grows.  Euler-Maruyama only (the
    noise is not commutative).

    Parameters
    ----------
    activation : kernels activation with a compiled form (ReLU family, Erf, Tanh or Activation
        with a numba-compilable fn); a ``ShapedReLU`` needs ``rate="width"`` (its slopes are
        resolved at ``n = width``)
    width : int, the D of the network
    weight_var, bias_var : sw2, sb2 >= 0
    weight_mean, bias_mean : mu_w, mu_b
    """

    activation: object = None
    width: int = 16
    weight_var: float = 1.0
    bias_var: float = 0.0
    weight_mean: float = 0.0
    bias_mean: float = 0.0
    euler_only = "its noise is not commutative"

    def _integrator(self, z0, method):
        return "peluchetti_favaro"

    def from_coords(self, z):
        return z                            # the Grams X_t^T X_t / D, (..., N, N)

    def __post_init__(self):
        import kernels as kn
        _set_activation_and_variances(self)
        object.__setattr__(self, "width", _checks.positive_int(self.width, "width"))
        act = self.activation
        if isinstance(act, kn.ShapedReLU) and act.rate == "depth":
            raise ValueError(
                f"activation = {act!r}: a ShapedReLU with rate='depth' has slopes "
                "1 + c/sqrt(L), which tend to 1 in this depth limit (L -> infinity), so no fixed "
                "slopes belong to it; use rate='width' (slopes 1 + c/sqrt(width), resolved at "
                f"width = {self.width}) or a fixed-slope ABReLU")
        for name in ("weight_mean", "bias_mean"):
            object.__setattr__(self, name, _finite(getattr(self, name), name))

    @property
    def params(self):
        return np.array([self.weight_var, self.bias_var, self.weight_mean, self.bias_mean])

    def to_coords(self, y0):
        K0 = _real_array(y0, "y0 = K0")
        if K0.ndim != 2 or K0.shape[0] != K0.shape[1] or not np.all(np.isfinite(K0)):
            raise ValueError(f"y0 must be a finite square stem covariance K0, got {y0!r}")
        if not np.allclose(K0, K0.T, rtol=0, atol=1e-14 * max(1.0, np.abs(K0).max())):
            raise ValueError("y0 = K0 must be symmetric")
        if np.linalg.eigvalsh(K0).min() < -1e-12 * np.abs(K0).max():
            raise ValueError(f"y0 = K0 must be positive semi-definite, got {K0.tolist()}")
        return K0


# ----------------------------------------------------------------------------------------------
# ODE: infinite-width ResNet with branch scale depth^-1/2 (theory/kernels.md §3.3)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResNetODE:
    """Depth limit of the infinite-width ResNet ``h_l = h_{l-1} + L^{-1/2}(sqrt(sw2/n) W phi +
    sqrt(sb2) b)`` (theory/kernels.md §3.3), ``t = l / L`` in [0, 1]::

        dK/dt     = sb2 + sw2 V_phi(K)                       (every pair of inputs)
        dTheta/dt = sb2 + sw2 V_phi(K) + sw2 Vdot_phi(K) Theta

    ``solve(ResNetODE(...), K0, times)`` integrates it with SciPy's DOP853.  For ReLU with
    ``weight_var = c_r`` and no bias this is the ODE of theory/sde.md §3.2,
    ``d rho / dt = (c_r / 2 pi) h(arccos rho)``, the shaped MLP's ODE with (c+ - c-)^2 = c_r.

    Parameters
    ----------
    activation : kernels activation (any: closed forms or quadrature)
    weight_var, bias_var : float >= 0
    """

    activation: object = None
    weight_var: float = 1.0
    bias_var: float = 0.0

    def __post_init__(self):
        _set_activation_and_variances(self)

    def rhs(self, K, Theta=None):
        """Right-hand sides (dK/dt, dTheta/dt) for symmetric (N, N) K (and Theta)."""
        d = np.diag(K)
        q1, q2 = np.broadcast_arrays(d[:, None], d[None, :])
        V = self.activation.V(q1, q2, K)
        dK = self.bias_var + self.weight_var * V
        if Theta is None:
            return dK, None
        Vd = self.activation.Vdot(q1, q2, K)
        return dK, dK + self.weight_var * Vd * Theta
