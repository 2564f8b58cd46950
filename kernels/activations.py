"""Activations and their Gaussian expectation maps.

For ``(u, v) ~ N(0, [[q1, c], [c, q2]])`` every activation provides (theory/kernels.md §1)::

    V(q1, q2, c)    = E[phi(u) phi(v)]       # NNGP map
    Vdot(q1, q2, c) = E[phi'(u) phi'(v)]     # derivative map used by the NTK (= dV/dc, Price)

in closed form where one exists (the ABReLU family: Cho & Saul 2009 arc-cosine kernels; erf:
Williams 1997), and by tensor Gauss–Hermite quadrature otherwise (the neural-tangents
``ElementwiseNumerical`` rule, kernels.md §1.4).  The ``V``/``Vdot`` methods here are plain NumPy
(arrays broadcast) and serve users and tests; the recursion engine uses the compiled pair maps.
"""
import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np
from scipy.special import roots_hermite

from . import _checks
from ._fastmath import acos1m_unit, asin_fast

__all__ = ["Activation", "ABReLU", "ReLU", "LeakyReLU", "ShapedReLU", "Identity", "Erf", "Tanh"]


def _as_float_arrays(q1, q2, c):
    """Broadcast (q1, q2, c) to float64 arrays, or raise: complex values (TypeError), NaN or
    inf, negative variances, or |c| > sqrt(q1 q2) (ValueError, naming the argument).  The
    covariance test is written with square roots so that it holds at any representable scale."""
    arrs = []
    for name, a in (("q1", q1), ("q2", q2), ("c", c)):
        _checks.real_array(a, name)
        try:
            arrs.append(np.asarray(a, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be real numbers: {exc}") from exc
    for name, a in zip(("q1", "q2", "c"), arrs):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite, got {a[~np.isfinite(a)].ravel()[0]!r}")
    q1, q2, c = np.broadcast_arrays(*arrs)
    if np.any(q1 < 0) or np.any(q2 < 0):
        raise ValueError("q1 and q2 must be >= 0 (variances)")
    if np.any(np.abs(c) > np.sqrt(q1) * np.sqrt(q2) * (1 + 5e-13) + 1e-150):
        raise ValueError("need c**2 <= q1*q2: (q1, q2, c) must be a covariance matrix")
    return q1, q2, c


def _pow4_scale(q):
    """k with q 4^-k in [1/4, 1) (k = 0 for q = 0): an exact rescaling of a variance."""
    _, e = np.frexp(q)
    return e // 2


def _angle(q1, q2, c):
    """theta = arctan2(sqrt(max(q1 q2 - c^2, 0)), c); q1*q2 taken as a product (exact diagonal)."""
    return np.arctan2(np.sqrt(np.maximum(q1 * q2 - c * c, 0.0)), c)


class Activation:
    """An activation ``phi`` given as a numba-compilable scalar function.

    The kernel maps are computed by tensor Gauss–Hermite quadrature of degree ``deg``
    (kernels.md §1.4): with Hermite nodes ``x_i`` and weights ``w_i`` (weight ``exp(-x^2)``)::

        V(q1,q2,c) = (1/pi) sum_ij w_i w_j phi(sqrt(2 q1) x_i)
                                          phi(c sqrt(2/q1) x_i + sqrt(2 (q2 - c^2/q1)) x_j)

    and the same with ``phi'`` for ``Vdot``.  Quadrature suits smooth activations; for ReLU-like
    kinks use the closed-form classes.

    Parameters
    ----------
    fn : callable
        Scalar function ``float -> float``; it is compiled with ``numba.njit`` (a numba dispatcher
        is used as is).
    deriv : callable, optional
        Its derivative.  If omitted, a fourth-order central difference with step 1e-3 is used
        (error about 1e-12 for smooth ``fn``).
    deg : int, default 300
        Gauss–Hermite degree per dimension, 1 <= deg <= 10000.  At construction the relative
        error of the rule is estimated at unit variance (``V(1, 1, 1)`` and ``Vdot(1, 1, 1)``,
        degree ``deg`` against ``2 deg + 1``; stored as ``quadrature_error``).  Documented
        accuracy: 1e-8.  A degree whose estimate exceeds 1e-2 while a higher degree would meet
        1e-8 is refused (ValueError naming the degree to use); an estimate above 1e-8 that no
        degree fixes (a kink in ``fn`` or ``deriv``: Gauss–Hermite then converges only
        algebraically) gives a ``UserWarning`` with the estimate.  Nodes whose weight is below 1e-18 of the largest
        are dropped (their contribution is below rounding), so degree 300 costs about
        100 x 100 function evaluations per (q1, q2, c).  Gauss–Hermite converges slowly for
        functions with complex singularities near the real axis, which for ``tanh(sqrt(q) z)``
        approach as the variance q grows.  Measured for tanh at (q, q, 1) against degree 600:
        q = 2: 3e-15 (V), 3e-14 (Vdot); q = 3: 1e-14 (V), 5e-12 (Vdot); degree 150 gives
        2e-11 / 4e-10 at q = 2 and 3e-8 (Vdot) at q = 3.  Raise ``deg`` for large variances.
    name : str, optional
        Name shown in ``repr``.

    Examples
    --------
    >>> import math, kernels as kn
    >>> softplus = kn.Activation(lambda x: math.log1p(math.exp(x)))
    >>> round(float(softplus.V(1.0, 1.0, 0.5)), 6) > 0
    True
    """

    homogeneous = False      # True for bias-free positively homogeneous maps (ABReLU family)

    def __init__(self, fn, deriv=None, *, deg=300, name=None):
        self.fn = _compile_scalar(fn, "fn")
        self.deriv = _compile_scalar(deriv, "deriv") if deriv is not None else None
        self.deg = _checks.positive_int(deg, "deg")
        self.name = name or getattr(fn, "__name__", "fn")
        if self.deg > _DEG_MAX:
            raise ValueError(f"deg must be <= {_DEG_MAX} (the rule keeps about "
                             f"6 sqrt(deg) nodes per dimension; beyond that its nodes cost "
                             f"more than they gain), got {deg!r}")
        self.quadrature_error = _check_degree(self.fn, self.deriv, self.deg, self.name)
        xs, ws = roots_hermite(self.deg)
        keep = ws >= 1e-18 * ws.max()
        self._params = np.concatenate([xs[keep], ws[keep]]).astype(np.float64)
        self._pair = None

    def __repr__(self):
        return f"Activation({self.name}, deg={self.deg})"

    # -- engine interface --------------------------------------------------------------------
    def _resolve(self, depth):
        """The activation actually used in a network of the given depth (ShapedReLU needs it)."""
        return self

    # -- pointwise protocol (finite width: Monte Carlo, trainers, SDE coefficients) ----------
    @property
    def positively_homogeneous(self):
        """True if ``phi(c x) = c phi(x)`` for every c > 0 (the ABReLU family): then a bias-free
        network's correlation map does not depend on the scale of its inputs."""
        return bool(self.homogeneous)

    def finite(self, width, depth):
        """The fixed activation a network of this ``width`` and ``depth`` uses (``ShapedReLU``
        resolves its slopes here; every other activation is its own)."""
        return self._resolve(depth)

    def pointwise(self):
        """The compiled form ``p`` of phi: ``kernels._pointwise.phi(p, x)``, ``dphi(p, x)`` and
        ``d2phi(p, x)`` evaluate phi, phi', phi'' inside numba code (inlined), or in Python.

        For ``Activation(fn)``: ``fn``, ``deriv`` (or its fourth-order central difference) and
        the central difference of that for phi''."""
        if getattr(self, "_point", None) is None:
            d = self.deriv if self.deriv is not None else _central_difference(self.fn)
            self._point = _FnPoint(self.fn, d, _central_difference(d))
        return self._point

    def _engine(self):
        """('smooth', pair, params): pair(q1, q2, c, params) -> (V, Vdot), compiled."""
        if self._pair is None:
            d = self.deriv if self.deriv is not None else _central_difference(self.fn)
            self._pair = _make_gh_pair(self.fn, d)
        return "smooth", self._pair, self._params

    # -- user interface ----------------------------------------------------------------------
    def V(self, q1, q2, c):
        """``E[phi(u) phi(v)]`` for ``(u, v) ~ N(0, [[q1, c], [c, q2]])`` (broadcasts)."""
        return self._maps(q1, q2, c)[0]

    def Vdot(self, q1, q2, c):
        """``E[phi'(u) phi'(v)]`` for ``(u, v) ~ N(0, [[q1, c], [c, q2]])`` (broadcasts)."""
        return self._maps(q1, q2, c)[1]

    def _maps(self, q1, q2, c):
        q1, q2, c = _as_float_arrays(q1, q2, c)
        _, pair, params = self._engine()
        V = np.empty(q1.shape)
        Vd = np.empty(q1.shape)
        _apply_pair(pair, params, q1.ravel(), q2.ravel(), c.ravel(), V.reshape(-1),
                    Vd.reshape(-1))
        return V, Vd

    def __call__(self, x):
        """``phi(x)`` elementwise."""
        return _apply_scalar(self.fn, np.asarray(x, dtype=np.float64))

    def derivative(self, x):
        """``phi'(x)`` elementwise."""
        d = self.deriv if self.deriv is not None else _central_difference(self.fn)
        return _apply_scalar(d, np.asarray(x, dtype=np.float64))


# ----------------------------------------------------------------------------------------------
# ABReLU family: closed forms (kernels.md §1.1-1.2)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ABReLU(Activation):
    """``phi(x) = a min(x, 0) + b max(x, 0)`` with closed-form maps (kernels.md §1.2).

    With ``theta = arccos(c / sqrt(q1 q2))``, ``m = (a^2 + b^2)/2`` and ``fac = (a-b)^2/(2 pi)``::

        Vdot = m - fac theta
        V    = fac sqrt(q1 q2 - c^2) + Vdot c

    Special cases: ``ReLU = ABReLU(0, 1)``, ``LeakyReLU(s) = ABReLU(s, 1)``, ``abs = ABReLU(-1, 1)``,
    ``Identity = ABReLU(1, 1)``.  Reference: Cho & Saul (2009), arc-cosine kernels; the
    neural-tangents ``ABRelu`` layer.
    """

    a: float = 0.0
    b: float = 1.0
    homogeneous = True

    def __post_init__(self):
        object.__setattr__(self, "a", _checks.finite_float(self.a, "a"))
        object.__setattr__(self, "b", _checks.finite_float(self.b, "b"))

    @property
    def m(self):
        return 0.5 * (self.a * self.a + self.b * self.b)

    @property
    def fac(self):
        return (self.a - self.b) ** 2 / (2 * math.pi)

    def _engine(self):
        return "abrelu", self.a, self.b

    def pointwise(self):
        return _ABReLUPoint(self.a, self.b)

    def _maps(self, q1, q2, c):
        q1, q2, c = _as_float_arrays(q1, q2, c)
        # positive homogeneity: V(4^k1 q1, 4^k2 q2, 2^(k1+k2) c) = 2^(k1+k2) V(q1, q2, c), so
        # the maps are evaluated on exactly rescaled arguments (q1 q2 cannot overflow or
        # underflow at any representable scale; the diagonal stays exact)
        k1, k2 = _pow4_scale(q1), _pow4_scale(q2)
        q1, q2, c = np.ldexp(q1, -2 * k1), np.ldexp(q2, -2 * k2), np.ldexp(c, -(k1 + k2))
        theta = np.where((q1 == 0) & (c == 0) | (q2 == 0) & (c == 0), np.pi / 2,
                         _angle(q1, q2, c))
        Vd = self.m - self.fac * theta
        V = self.fac * np.sqrt(np.maximum(q1 * q2 - c * c, 0.0)) + Vd * c
        with np.errstate(over="ignore"):
            V = np.ldexp(V, k1 + k2)
        if not np.all(np.isfinite(V)):
            raise FloatingPointError("V overflows: the result exceeds the float64 range "
                                     "(1.8e308)")
        return V, Vd

    def __call__(self, x):
        x = np.asarray(x, dtype=np.float64)
        return np.where(x > 0, self.b * x, self.a * x)

    def derivative(self, x):
        x = np.asarray(x, dtype=np.float64)
        return np.where(x > 0, self.b, self.a)


def ReLU():
    """``phi(x) = max(x, 0)``: ``ABReLU(0, 1)`` (arc-cosine kernel of order 1)."""
    return ABReLU(0.0, 1.0)


def LeakyReLU(slope):
    """``phi(x) = max(x, 0) + slope * min(x, 0)``: ``ABReLU(slope, 1)``."""
    return ABReLU(_checks.finite_float(slope, "slope"), 1.0)


def Identity():
    """``phi(x) = x``: ``ABReLU(1, 1)``, so ``V = c`` and ``Vdot = 1``."""
    return ABReLU(1.0, 1.0)


@dataclass(frozen=True)
class ShapedReLU(Activation):
    """Shaped ReLU: slopes ``1 + c_plus / sqrt(n)`` (x > 0) and ``1 + c_minus / sqrt(n)`` (x < 0).

    ``rate="depth"`` takes ``n`` = the depth of the network it is used in (the architecture
    resolves it), which gives the infinite-width, depth-scaled limit of Li, Nica & Roy (2022,
    "The neural covariance SDE"); ``rate="width"`` is for finite-width simulation, where ``n`` is
    the width, and has no infinite-width kernel of its own.
    """

    c_plus: float = 0.0
    c_minus: float = 0.0
    rate: str = "depth"
    homogeneous = True

    def __post_init__(self):
        object.__setattr__(self, "c_plus", _checks.finite_float(self.c_plus, "c_plus"))
        object.__setattr__(self, "c_minus", _checks.finite_float(self.c_minus, "c_minus"))
        if self.rate not in ("depth", "width"):
            raise ValueError(f"rate must be 'depth' or 'width', got {self.rate!r}")

    def slopes(self, n):
        """``(negative slope, positive slope)`` at scale ``n``."""
        n = _checks.positive_int(n, "n")
        return 1.0 + self.c_minus / math.sqrt(n), 1.0 + self.c_plus / math.sqrt(n)

    def resolved(self, n):
        """The ``ABReLU`` with the slopes at scale ``n``."""
        return ABReLU(*self.slopes(n))

    def _resolve(self, depth):
        if self.rate != "depth":
            raise ValueError("ShapedReLU(rate='width') has no infinite-width kernel: its slopes "
                             "depend on the width; use rate='depth' or a finite-width simulation")
        return self.resolved(depth)

    def _engine(self):
        raise ValueError("ShapedReLU must be resolved by an architecture (its slopes depend on "
                         "the depth); call .resolved(n) for a fixed-slope ABReLU")

    def finite(self, width, depth):
        """``resolved(width)`` for ``rate="width"``, ``resolved(depth)`` for ``rate="depth"``."""
        return self.resolved(width if self.rate == "width" else depth)

    def pointwise(self):
        raise ValueError("ShapedReLU slopes depend on n: use .finite(width, depth).pointwise() "
                         "or .resolved(n).pointwise()")

    def _maps(self, q1, q2, c):
        raise ValueError("ShapedReLU maps depend on n: use .resolved(n).V(...)")


# ----------------------------------------------------------------------------------------------
# erf: closed form (kernels.md §1.3)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Erf(Activation):
    """``phi(x) = a erf(b x) + c`` with closed-form maps (Williams 1997; kernels.md §1.3).

    With ``P = (1 + 2 b^2 q1)(1 + 2 b^2 q2)``::

        V    = a^2 (2/pi) arcsin(2 b^2 c / sqrt(P)) + c^2
        Vdot = a^2 b^2 (4/pi) / sqrt(P - 4 b^4 c^2)
    """

    a: float = 1.0
    b: float = 1.0
    c: float = 0.0

    def __post_init__(self):
        for name in ("a", "b", "c"):
            object.__setattr__(self, name, _checks.finite_float(getattr(self, name), name))

    def _engine(self):
        return "smooth", _erf_pair, np.array([self.a, self.b, self.c], dtype=np.float64)

    def pointwise(self):
        return _ErfPoint(self.a, self.b, self.c)

    def _maps(self, q1, q2, cov):
        q1, q2, cov = _as_float_arrays(q1, q2, cov)
        b2 = self.b * self.b
        with np.errstate(all="ignore"):
            P = (1 + 2 * b2 * q1) * (1 + 2 * b2 * q2)
            V = self.a ** 2 * (2 / np.pi) * np.arcsin(2 * b2 * cov / np.sqrt(P)) + self.c ** 2
            Vd = self.a ** 2 * b2 * (4 / np.pi) / np.sqrt(P - 4 * b2 * b2 * cov * cov)
            # large variances: the product P overflows (and P - 4 b^4 c^2 cancels) beyond
            # 2 b^2 q = _ERF_DIRECT_MAX; use the scale-free form of ``_erf_scaled``
            big = (2 * b2 * q1 > _ERF_DIRECT_MAX) | (2 * b2 * q2 > _ERF_DIRECT_MAX)
            if np.any(big):
                Vs, Vds = _erf_scaled_np(q1, q2, cov, self.a, self.b, self.c)
                V, Vd = np.where(big, Vs, V), np.where(big, Vds, Vd)
        return V, Vd

    def __call__(self, x):
        from scipy.special import erf
        return self.a * erf(self.b * np.asarray(x, dtype=np.float64)) + self.c

    def derivative(self, x):
        x = np.asarray(x, dtype=np.float64)
        return self.a * self.b * 2 / math.sqrt(math.pi) * np.exp(-(self.b * x) ** 2)


# ----------------------------------------------------------------------------------------------
# tanh: quadrature
# ----------------------------------------------------------------------------------------------
@numba.njit(cache=True)
def _tanh(x):
    return math.tanh(x)


@numba.njit(cache=True)
def _dtanh(x):
    t = math.tanh(x)
    return 1.0 - t * t


class Tanh(Activation):
    """``phi(x) = tanh(x)``, maps by Gauss–Hermite quadrature of degree ``deg`` (no closed form;
    see ``Activation`` for the accuracy of the rule)."""

    def __init__(self, deg=300):
        super().__init__(_tanh, _dtanh, deg=deg, name="tanh")

    def __repr__(self):
        return f"Tanh(deg={self.deg})"

    def pointwise(self):
        return _TanhPoint(1.0)

    def __eq__(self, other):
        return isinstance(other, Tanh) and other.deg == self.deg

    def __hash__(self):
        return hash(("Tanh", self.deg))


# ----------------------------------------------------------------------------------------------
# compiled pointwise forms (``pointwise()``; dispatched by kernels._pointwise.phi / dphi / d2phi)
# ----------------------------------------------------------------------------------------------
_TWO_OVER_SQRT_PI = 1.1283791670955126


class _ABReLUPoint(NamedTuple):
    """``phi(x) = b x`` (x > 0), ``a x`` (x <= 0)."""

    a: float
    b: float

    @staticmethod
    def phi(p, x):
        return p.b * x if x > 0.0 else p.a * x

    @staticmethod
    def dphi(p, x):
        return p.b if x > 0.0 else p.a

    @staticmethod
    def d2phi(p, x):
        return 0.0


class _ErfPoint(NamedTuple):
    """``phi(x) = a erf(b x) + c``."""

    a: float
    b: float
    c: float

    @staticmethod
    def phi(p, x):
        return p.a * math.erf(p.b * x) + p.c

    @staticmethod
    def dphi(p, x):
        bx = p.b * x
        return p.a * p.b * _TWO_OVER_SQRT_PI * math.exp(-bx * bx)

    @staticmethod
    def d2phi(p, x):
        bx = p.b * x
        return -2.0 * p.b * bx * (p.a * p.b * _TWO_OVER_SQRT_PI * math.exp(-bx * bx))


class _TanhPoint(NamedTuple):
    """``phi(x) = tanh(x)`` (``unit`` is 1.0: numba wants a non-empty tuple)."""

    unit: float

    @staticmethod
    def phi(p, x):
        return math.tanh(x)

    @staticmethod
    def dphi(p, x):
        t = math.tanh(x)
        return 1.0 - t * t

    @staticmethod
    def d2phi(p, x):
        t = math.tanh(x)
        return -2.0 * t * (1.0 - t * t)


class _FnPoint(NamedTuple):
    """A user function and its first two derivatives (numba dispatchers)."""

    fn: object
    dfn: object
    d2fn: object

    @staticmethod
    def phi(p, x):
        return p.fn(x)

    @staticmethod
    def dphi(p, x):
        return p.dfn(x)

    @staticmethod
    def d2phi(p, x):
        return p.d2fn(x)


# ----------------------------------------------------------------------------------------------
# compiled helpers
# ----------------------------------------------------------------------------------------------
_ERF_DIRECT_MAX = 64.0    # 2 b^2 q above this: the scale-free form (``_erf_scaled``)


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _erf_pair(q1, q2, c, params):
    a, b, c0 = params[0], params[1], params[2]
    b2 = b * b
    if 2.0 * b2 * q1 > _ERF_DIRECT_MAX or 2.0 * b2 * q2 > _ERF_DIRECT_MAX:
        return _erf_scaled(q1, q2, c, a, b, c0)
    P = (1.0 + 2.0 * b2 * q1) * (1.0 + 2.0 * b2 * q2)
    V = a * a * (2.0 / math.pi) * asin_fast(2.0 * b2 * c / math.sqrt(P)) + c0 * c0
    Vd = a * a * b2 * (4.0 / math.pi) / math.sqrt(P - 4.0 * b2 * b2 * c * c)
    return V, Vd


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _erf_scaled(q1, q2, c, a, b, c0):
    """The erf maps without overflow or cancellation at any variance (kernels.md §1.3).

    With ``t_i = |b| sqrt(2 q_i)``, ``h_i = sqrt(1 + t_i^2)``, ``rho = c / sqrt(q1 q2)`` and
    ``r = 2 b^2 c / sqrt(P) = rho (t1/h1)(t2/h2)``::

        1 - r^2 = D = 1/h2^2 + (t2/h2)^2 / h1^2 + (t1/h1)^2 (t2/h2)^2 (1 - rho^2)
        V    = a^2 (2/pi) arcsin(r) + c0^2,    arcsin(|r|) = pi/2 - arccos(1 - D/(1 + |r|))
        Vdot = a^2 b^2 (4/pi) / (h1 h2 sqrt(D))

    Every term of D is >= 0, and 1 - rho^2 is formed from (q1, q2, c) divided by max(q1, q2),
    so the diagonal (c = q1 = q2) has D exact and V -> a^2 + c0^2 as q -> infinity.
    """
    t1 = abs(b) * math.sqrt(2.0 * q1)
    t2 = abs(b) * math.sqrt(2.0 * q2)
    h1 = math.hypot(1.0, t1)
    h2 = math.hypot(1.0, t2)
    u1 = t1 / h1
    u2 = t2 / h2
    s = max(q1, q2)
    om = 1.0
    rho = 0.0
    if s > 0.0:
        a1 = q1 / s
        a2 = q2 / s
        cs = c / s
        p = a1 * a2
        if p > 0.0:
            om = min(max((p - cs * cs) / p, 0.0), 1.0)
            rho = min(max(c / (math.sqrt(q1) * math.sqrt(q2)), -1.0), 1.0)
    D = 1.0 / (h2 * h2) + (u2 * u2) / (h1 * h1) + (u1 * u1) * (u2 * u2) * om
    r = rho * u1 * u2
    ar = abs(r)
    if ar <= 0.5:
        asr = asin_fast(r)
    else:
        asr = math.pi / 2.0 - acos1m_unit(min(D / (1.0 + ar), 1.0))
        asr = asr if r >= 0.0 else -asr
    V = a * a * (2.0 / math.pi) * asr + c0 * c0
    Vd = (a * a * b * b * (4.0 / math.pi) / h1) / (h2 * math.sqrt(D))
    return V, Vd


def _erf_scaled_np(q1, q2, c, a, b, c0):
    """NumPy twin of ``_erf_scaled`` (same formula, arrays)."""
    with np.errstate(all="ignore"):
        t1 = abs(b) * np.sqrt(2.0 * q1)
        t2 = abs(b) * np.sqrt(2.0 * q2)
        h1 = np.hypot(1.0, t1)
        h2 = np.hypot(1.0, t2)
        u1, u2 = t1 / h1, t2 / h2
        s = np.maximum(q1, q2)
        ss = np.where(s > 0, s, 1.0)
        a1, a2, cs = q1 / ss, q2 / ss, c / ss
        p = a1 * a2
        ok = p > 0
        om = np.where(ok, np.clip((p - cs * cs) / np.where(ok, p, 1.0), 0.0, 1.0), 1.0)
        den = np.sqrt(q1) * np.sqrt(q2)
        rho = np.where(ok, np.clip(c / np.where(ok, den, 1.0), -1.0, 1.0), 0.0)
        D = 1.0 / (h2 * h2) + u2 * u2 / (h1 * h1) + (u1 * u1) * (u2 * u2) * om
        r = rho * u1 * u2
        ar = np.abs(r)
        # arcsin|r| = pi/2 - arccos(1 - e), e = 1 - |r| = D/(1 + |r|), arccos(1 - e) =
        # 2 arcsin(sqrt(e/2)) (no cancellation as |r| -> 1)
        far = np.pi / 2 - 2.0 * np.arcsin(np.sqrt(np.clip(0.5 * D / (1.0 + ar), 0.0, 0.5)))
        asr = np.where(ar <= 0.5, np.arcsin(r), np.sign(r) * far)
        V = a * a * (2.0 / np.pi) * asr + c0 * c0
        Vd = (a * a * b * b * (4.0 / np.pi) / h1) / (h2 * np.sqrt(D))
    return V, Vd


_PAIR_CACHE = {}


def _make_gh_pair(fn, dfn):
    """The Gauss–Hermite pair map for ``fn`` (a closure, compiled once per (fn, dfn) and
    memoised so that new activation objects with the same function reuse the machine code)."""
    key = (fn, dfn)
    if key not in _PAIR_CACHE:
        _PAIR_CACHE[key] = _build_gh_pair(fn, dfn)
    return _PAIR_CACHE[key]


def _build_gh_pair(fn, dfn):
    @numba.njit(error_model="numpy", fastmath={"contract"})
    def pair(q1, q2, c, params):
        n = params.shape[0] // 2
        if q1 > 0.0:
            a = math.sqrt(2.0 * q1)
            bc = c * math.sqrt(2.0 / q1)
            cc = c * c
            if cc < 1e300 and (cc > 1e-300 or c == 0.0):
                cq = cc / q1
            else:                       # c * c would overflow or underflow
                cq = c * (c / q1)
            e = math.sqrt(2.0 * max(q2 - cq, 0.0))
        else:
            a = 0.0
            bc = 0.0
            e = math.sqrt(2.0 * max(q2, 0.0))
        V = 0.0
        Vd = 0.0
        for i in range(n):
            xi = params[i]
            wi = params[n + i]
            base = bc * xi
            sv = 0.0
            sd = 0.0
            for j in range(n):
                y = base + e * params[j]
                wj = params[n + j]
                sv += wj * fn(y)
                sd += wj * dfn(y)
            V += wi * fn(a * xi) * sv
            Vd += wi * dfn(a * xi) * sd
        return V / math.pi, Vd / math.pi

    return pair


_DEG_MAX = 10_000         # Gauss–Hermite degree bound (roots_hermite(1e7) takes 46 s)
_DEG_TOL = 1e-8           # documented accuracy of the maps at unit variance
_DEG_REFUSE = 1e-2        # estimated error above which a degree that can be raised is refused


def _gh_unit_error(f, d, n):
    """Estimated relative error of the degree-n rule for E[f(z)^2] and E[d(z)^2], z ~ N(0, 1)
    (= V(1, 1, 1) and Vdot(1, 1, 1)): the difference from the degree 2n + 1 rule."""
    errs = []
    vals = {}
    for m in (n, 2 * n + 1):
        xs, ws = roots_hermite(m)
        keep = ws >= 1e-18 * ws.max()
        zs = math.sqrt(2.0) * xs[keep]
        fv = np.array([f(float(z)) for z in zs])
        dv = np.array([d(float(z)) for z in zs])
        w = ws[keep] / math.sqrt(math.pi)
        vals[m] = (float(np.sum(w * fv * fv)), float(np.sum(w * dv * dv)), zs, fv, dv)
    a, b = vals[n], vals[2 * n + 1]
    for k in (0, 1):
        if not (math.isfinite(a[k]) and math.isfinite(b[k])):
            zs, fv, dv = b[2], b[3], b[4]
            bad = ~np.isfinite(fv if k == 0 else dv)
            what = "fn" if k == 0 else "its derivative"
            raise ValueError(f"the activation's {what} is not finite at x = "
                             f"{float(zs[bad][0]) if bad.any() else float('nan'):.6g} "
                             f"(a Gauss–Hermite node at unit variance): its kernel maps would "
                             f"be NaN")
        errs.append(abs(a[k] - b[k]) / (abs(b[k]) if b[k] != 0.0 else 1.0))
    return max(errs)


def _check_degree(fn, deriv, deg, name):
    """Estimate the quadrature error at unit variance; refuse or warn (see ``Activation``)."""
    if deriv is not None:
        d = deriv
    else:
        def d(x, h=1e-3):
            return (8.0 * (fn(x + h) - fn(x - h)) - (fn(x + 2 * h) - fn(x - 2 * h))) / (12.0 * h)
    err = _gh_unit_error(fn, d, deg)
    if err <= _DEG_TOL:
        return err
    better = None
    n = 16
    while n <= _DEG_MAX and better is None:
        if n > deg and _gh_unit_error(fn, d, n) <= _DEG_TOL:
            better = n
        n = n * 2 if n * 2 <= _DEG_MAX or n == _DEG_MAX else _DEG_MAX
    head = (f"Activation {name}, deg={deg}: the Gauss–Hermite kernel maps have an estimated "
            f"relative error of {err:.2g} at unit variance (documented accuracy {_DEG_TOL:g})")
    if better is not None and err > _DEG_REFUSE:
        raise ValueError(f"deg={deg} is too low: {head}; use deg >= {better}")
    if better is not None:
        warnings.warn(f"{head}; deg >= {better} meets it", UserWarning, stacklevel=3)
    else:
        warnings.warn(f"{head}; no degree up to {_DEG_MAX} reaches it (fn or its derivative "
                      f"is not smooth: the rule converges only algebraically), so prefer a "
                      f"closed-form activation", UserWarning, stacklevel=3)
    return err


_DIFF_CACHE = {}


def _central_difference(fn):
    """Fourth-order central difference of a compiled scalar function (step 1e-3), memoised."""
    if fn not in _DIFF_CACHE:
        _DIFF_CACHE[fn] = _build_central_difference(fn)
    return _DIFF_CACHE[fn]


def _build_central_difference(fn):

    @numba.njit
    def d(x):
        h = 1e-3
        return (8.0 * (fn(x + h) - fn(x - h)) - (fn(x + 2 * h) - fn(x - 2 * h))) / (12.0 * h)

    return d


@numba.njit(error_model="numpy")
def _apply_pair(pair, params, q1, q2, c, V, Vd):
    for k in range(q1.shape[0]):
        V[k], Vd[k] = pair(q1[k], q2[k], c[k], params)


@numba.njit
def _apply_scalar_1d(fn, x, out):
    for k in range(x.shape[0]):
        out[k] = fn(x[k])


def _apply_scalar(fn, x):
    out = np.empty(x.shape)
    _apply_scalar_1d(fn, np.ascontiguousarray(x).reshape(-1), out.reshape(-1))
    return out


def _compile_scalar(fn, name):
    """numba-compile a scalar float function, or raise a TypeError naming the argument."""
    if not callable(fn):
        raise TypeError(f"{name} must be callable, got {type(fn).__name__}: {fn!r}")
    try:
        disp = fn if isinstance(fn, numba.core.registry.CPUDispatcher) else numba.njit(fn)
        disp.compile((numba.float64,))
        val = disp(0.5)
    except Exception as exc:  # numba raises many error types
        raise TypeError(f"{name} must be a numba-compilable scalar function float -> float; "
                        f"compiling {fn!r} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(val, (float, int)):
        raise TypeError(f"{name} must return a float, got {type(val).__name__}")
    return disp
