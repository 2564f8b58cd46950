"""Order and chaos at initialisation: signal propagation through deep random MLPs.

For an MLP with weight variance ``sw2`` (``weight_var``), bias variance ``sb2`` (``bias_var``) and
activation ``phi`` (theory/kernels.md §5c; Poole et al. 2016; Schoenholz et al. 2017), with
``z, z1, z2`` iid standard normal::

    q-map    q_{l+1} = sw2 E[phi(sqrt(q_l) z)^2] + sb2                     -> fixed point q*
    c-map    c_{l+1} = (sw2 E[phi(u1) phi(u2)] + sb2) / q*,
             (u1, u2) = sqrt(q*) (z1, c_l z1 + sqrt(1 - c_l^2) z2)         -> stable fixed point c*
    chi_1    = sw2 E[phi'(sqrt(q*) z)^2]           slope of the c-map at c = 1
    chi_c    = sw2 E[phi'(u1) phi'(u2)] at c = c*  slope of the c-map at c*
    xi_q     = -1 / ln( sw2 E[phi'(sqrt(q*) z)^2 + phi''(sqrt(q*) z) phi(sqrt(q*) z)] )
             = -1 / ln( d q_{l+1} / d q_l at q* )
    xi_c     = -1 / ln chi_c

so that ``|q_l - q*| ~ exp(-l / xi_q)`` and ``|c_l - c*| ~ exp(-l / xi_c)``.  Phase: *ordered*
if ``chi_1 < 1`` (then ``c* = 1``: every pair of inputs becomes perfectly correlated, and
``chi_c = chi_1``), *chaotic* if ``chi_1 > 1`` (``c* < 1``), *critical* (the edge of chaos) at
``chi_1 = 1``, where ``xi_c`` diverges.

How each activation is computed
-------------------------------
* **ABReLU family** (``ReLU``, ``LeakyReLU(a)``, ``ABReLU(a, b)``, ``Identity``, a resolved
  ``ShapedReLU``): exact.  With ``m = (a^2 + b^2)/2`` the q-map is linear, ``q' = sw2 m q + sb2``,
  so ``chi_1 = sw2 m`` for every q, ``q* = sb2 / (1 - sw2 m)`` if ``sw2 m < 1`` and ``q* = inf``
  otherwise (the variance grows without bound; for ``sb2 = 0, sw2 m = 1`` every q is preserved and
  no q is attracting, also reported as ``inf``).  The c-map with finite q* has ``c* = 1`` and
  ``chi_c = chi_1`` (its slope at 1 is ``sw2 Vdot = sw2 m``); with ``q* = inf`` the bias drops
  out and the c-map is the scale-free arc-cosine map ``c -> V(1, 1, c) / m`` of
  theory/kernels.md §1.2, whose fixed point ``c* = 1`` has slope 1: ``chi_c = 1`` and
  ``xi_c = inf`` (the correlation approaches 1 polynomially, ``1 - c_l ~ 9 pi^2 / (2 l^2)`` for
  ReLU, theory/kernels.md §2.4).  The edge is ``sw2 = 1/m = 2 / (a^2 + b^2)`` for every sb2
  (``2 / (1 + a^2)`` for ``LeakyReLU(a)``).  ``phase`` follows chi_1.
* **Erf** (``a erf(b x) + c``): the closed forms ``V`` and ``Vdot`` of ``kernels.Erf``
  (Williams 1997) and ``d/dq E[phi(sqrt q z)^2] = a^2 (4 b^2 / pi) / ((1 + 2 b^2 q)
  sqrt(1 + 4 b^2 q))``.
* **Any other activation** (``Tanh``, ``Activation(fn, deriv)``): quadrature with the
  trapezoid rule in the standard normal variables, nodes ``z = -L..L`` (``L = 9``: the Gaussian
  weight beyond is below ``3e-18``) with step ``h = 0.2 / max(1, s)``, where ``s`` is the
  scale of the argument of ``phi`` along that variable (``sqrt(q)`` in one dimension).  For a
  ``phi`` analytic in the strip ``|Im x| < d`` the trapezoid rule's error decays like
  ``exp(-2 pi d / (s h))`` times a factor growing with the order of the nearest pole
  (Trefethen & Weideman 2014, "The exponentially convergent trapezoidal rule", SIAM Review 56),
  so the step scaled by ``s`` keeps the error uniform in q: for tanh (poles at ``i pi/2``;
  ``sech^4`` has poles of order 4) ``exp(-pi^2 / 0.2) (2 pi / 0.2)^3 ~ 1e-17``; measured against
  mpmath at q = 0.3 ... 3: below 1e-15 relative for ``E tanh^2`` and ``E sech^4``.  (Step 0.3
  gave 2e-10 for ``E sech^4``; Gauss–Hermite of fixed degree degrades as q grows: 240 points
  are ~1e-8 off for tanh at sb2 = 1, theory/kernels.md §5c.)  The c-map uses Mehler's formula
  ``E[phi(u1) phi(u2)] = sum_k a_k(q)^2 c^k`` (``a_k`` the orthonormal Hermite coefficients of
  ``phi(sqrt(q) z)``, from 640-point Gauss–Hermite, k <= 256) when its truncation error, bounded
  by ``c^(K+1) (E[phi^2] - sum_k a_k^2)`` (the terms are non-negative) and measured against the
  trapezoid value of ``E[phi^2]``, is below 1e-13; otherwise (c* close to 1 at large q*) the
  two-dimensional trapezoid rule in the rotated variables
  ``u1 = sqrt(q) (A x + B y)``, ``u2 = sqrt(q) (A x - B y)``, ``A = sqrt((1 + c)/2)``,
  ``B = sqrt((1 - c)/2)``, with steps ``0.2 / max(1, sqrt(q) A)`` and ``0.2 / max(1, sqrt(q) B)``
  and nodes pruned to ``x^2 + y^2 <= L^2``.

``phi'`` is needed for chi_1 and chi_c: ``Activation(fn, deriv)`` supplies it; an
``Activation(fn)`` without ``deriv`` raises a ``ValueError`` unless ``finite_difference=True``,
which uses the fourth-order central difference
``phi'(x) ~ (8 (phi(x+h) - phi(x-h)) - (phi(x+2h) - phi(x-2h))) / (12 h)``, ``h = 1e-3``, whose
error is ``h^4 |phi^(5)| / 30 + ~1e-13 |phi| / h``, i.e. about 1e-12 to 1e-10 for tanh-like
functions of unit scale; chi_1, chi_c inherit that relative error.  ``phi''`` (for xi_q) is never
needed: by Stein's lemma ``E[phi'(sqrt q z)^2 + phi''(sqrt q z) phi(sqrt q z)] =
E[z phi(sqrt q z) phi'(sqrt q z)] / sqrt(q)``, which is what is integrated.

Fixed points: ``q*`` is the *largest* fixed point of the q-map (the one reached from any large
enough ``q_0``; the only stable one for tanh and erf), found by a safeguarded Newton iteration
from above, vectorised over all points; ``q* = 0`` (``sb2 = 0``, ``phi(0) = 0``, ``chi_1 <= 1``)
is treated as the limit ``sb2 -> 0+`` (``c* = 1``, ``chi_c = chi_1``).  ``c*`` in the chaotic
phase is the unique root in ``[0, 1)`` of ``g(c) - c`` (the c-map ``g`` is a power series in c
with non-negative coefficients, Mehler's formula, hence convex on [0, 1] with ``g(1) = 1``,
``g'(1) = chi_1``), found by Newton's method from ``c = 0`` (monotone for a convex function) on a
coarse rule, then polished by Newton steps on the accurate rule.

References
----------
B. Poole, S. Lahiri, M. Raghu, J. Sohl-Dickstein, S. Ganguli, "Exponential expressivity in deep
neural networks through transient chaos", NeurIPS 2016 (arXiv 1606.05340).
S. S. Schoenholz, J. Gilmer, S. Ganguli, J. Sohl-Dickstein, "Deep Information Propagation",
ICLR 2017 (arXiv 1611.01232).
theory/kernels.md §5c (definitions, exact cases) and §1 (activation maps).
"""
import math
from dataclasses import dataclass

import numba
import numpy as np

import kernels as kn
from kernels import _checks

__all__ = ["SignalPropagation", "signal_propagation", "edge_of_chaos"]

_L = 9.0            # truncation of the standard normal variables
_H = 0.2            # trapezoid step (scaled by the argument's scale)
_H_COARSE = 0.9     # coarse step for the first Newton iterations of the c-map
_L_COARSE = 7.0
_H_COARSE_1D = 0.45 # coarse step of the q-map's Newton iterations (accurate ones follow)
_CRITICAL_TOL = 1e-12


# ----------------------------------------------------------------------------------------------
# result
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignalPropagation:
    """Fixed points, slopes and depth scales of the q- and c-maps (module docstring).

    All attributes are arrays of the broadcast shape of ``weight_var`` and ``bias_var``.

    Attributes
    ----------
    weight_var, bias_var : arrays
        The inputs, broadcast.
    q_star : array
        Fixed point of the q-map (``inf`` when the variance grows without bound).
    c_star : array
        Stable fixed point of the c-map (1 in the ordered phase).
    chi_1 : array
        ``sw2 E[phi'(sqrt(q*) z)^2]``.
    chi_c : array
        ``sw2 E[phi'(u1) phi'(u2)]`` at ``c*``.
    depth_scale_q, depth_scale_c : arrays
        ``xi_q``, ``xi_c`` (``inf`` where the slope is >= 1, 0 where it is 0).
    phase : array of str
        ``"ordered"`` (chi_1 < 1), ``"chaotic"`` (chi_1 > 1) or ``"critical"``
        (``|chi_1 - 1| <= 1e-12``); ``"unbounded"`` where a non-ReLU-family activation has no
        finite q* (an unbounded phi such as softplus with a large sw2: the variance grows
        without bound, so no fixed variance defines the c-map): there ``c_star``, ``chi_1``,
        ``chi_c`` and ``depth_scale_c`` are NaN, by design, and ``q_star`` is inf.  (For the
        ReLU family, q* = inf is exact and handled as in the module docstring.)
    """

    weight_var: np.ndarray
    bias_var: np.ndarray
    q_star: np.ndarray
    c_star: np.ndarray
    chi_1: np.ndarray
    chi_c: np.ndarray
    depth_scale_q: np.ndarray
    depth_scale_c: np.ndarray
    phase: np.ndarray


# ----------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------
def _variance_array(value, name):
    """A float64 array of variances >= 0: ``kernels._checks.finite_array`` (the shared check:
    TypeError for None, strings, complex or non-numeric input, ValueError for NaN / inf), bools
    refused (``True`` is not a variance), then the sign."""
    if isinstance(value, (bool, np.bool_)) or getattr(value, "dtype", None) == np.bool_:
        raise TypeError(f"{name} must be a real number or array of real numbers, got "
                        f"{_checks._short(value)} (a bool)")
    arr = _checks.finite_array(value, name)
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0 (a variance), got {value!r}")
    return arr


def _depth_scale(chi):
    chi = np.abs(chi)
    with np.errstate(divide="ignore"):
        xi = np.where(chi >= 1, np.inf, -1.0 / np.log(np.where(chi >= 1, 0.5, chi)))
    return np.where(chi == 0, 0.0, xi)


# ----------------------------------------------------------------------------------------------
# backends: expectations for one activation
# ----------------------------------------------------------------------------------------------
class _ErfBackend:
    """Closed forms (kernels.Erf)."""

    def __init__(self, act):
        self.act = act

    def diag(self, q, coarse=False):
        """(E phi, E phi^2, d/dq E phi^2, E phi'^2) at variance q."""
        a, b = self.act.a, self.act.b
        F = self.act.V(q, q, q)
        D = self.act.Vdot(q, q, q)
        b2 = b * b
        Fp = a * a * (4 * b2 / np.pi) / ((1 + 2 * b2 * q) * np.sqrt(1 + 4 * b2 * q))
        return np.full(q.shape, self.act.c), F, Fp, D

    def pair(self, q, c, coarse=False, want_v=True):
        qc = q * c
        V = self.act.V(q, q, qc) if want_v else None
        return V, self.act.Vdot(q, q, qc)

    phi0 = property(lambda self: float(self.act(0.0)))
    dphi0 = property(lambda self: float(self.act.derivative(0.0)))


_KERNEL_CACHE = {}


def _difference(fn):
    @numba.njit
    def d(x):
        h = 1e-3
        return (8.0 * (fn(x + h) - fn(x - h)) - (fn(x + 2 * h) - fn(x - 2 * h))) / (12.0 * h)
    return d


def _build_kernels(fn, dfn):
    @numba.njit(error_model="numpy")
    def diag(q, h0, L, out):
        inv = 1.0 / math.sqrt(2.0 * math.pi)
        for p in range(q.shape[0]):
            s = math.sqrt(q[p])
            n = int(math.ceil(L * max(1.0, s) / h0))
            h = L / n
            m0 = 0.0
            m1 = 0.0
            m2 = 0.0
            m3 = 0.0
            for i in range(-n, n + 1):
                z = i * h
                w = math.exp(-0.5 * z * z)
                f = fn(s * z)
                d = dfn(s * z)
                m0 += w * f
                m1 += w * f * f
                m2 += w * z * f * d
                m3 += w * d * d
            k = h * inv
            out[p, 0] = m0 * k
            out[p, 1] = m1 * k
            out[p, 2] = m2 * k / s if s > 0 else dfn(0.0) ** 2
            out[p, 3] = m3 * k

    @numba.njit(error_model="numpy")
    def pair(q, c, h0, L, want_v, outV, outD):
        inv = 1.0 / (2.0 * math.pi)
        L2 = L * L
        for p in range(q.shape[0]):
            s = math.sqrt(q[p])
            A = s * math.sqrt(max(0.5 * (1.0 + c[p]), 0.0))
            B = s * math.sqrt(max(0.5 * (1.0 - c[p]), 0.0))
            nx = int(math.ceil(L * max(1.0, A) / h0))
            ny = int(math.ceil(L * max(1.0, B) / h0))
            hx = L / nx
            hy = L / ny
            V = 0.0
            D = 0.0
            for i in range(-nx, nx + 1):
                x = i * hx
                rem = L2 - x * x
                if rem < 0:
                    continue
                jm = min(ny, int(math.sqrt(rem) / hy))
                wx = math.exp(-0.5 * x * x)
                ax = A * x
                sv = 0.0
                sd = 0.0
                for j in range(-jm, jm + 1):
                    y = j * hy
                    wy = math.exp(-0.5 * y * y)
                    by = B * y
                    if want_v:
                        sv += wy * fn(ax + by) * fn(ax - by)
                    sd += wy * dfn(ax + by) * dfn(ax - by)
                V += wx * sv
                D += wx * sd
            k = hx * hy * inv
            outV[p] = V * k
            outD[p] = D * k

    @numba.njit(error_model="numpy")
    def phi_matrix(s, z, sw, out):
        for p in range(s.shape[0]):
            for i in range(z.shape[0]):
                out[p, i] = sw[i] * fn(s[p] * z[i])

    return diag, pair, phi_matrix


_MEHLER_K = 256           # Hermite coefficients kept in Mehler's formula
_MEHLER_NODES = 640       # Gauss-Hermite nodes that compute them
_MEHLER = {}


def _mehler_basis():
    """Gauss-Hermite nodes z_i, sqrt(weights) and U[i, k] = sqrt(w_i) h_k(z_i), with h_k the
    orthonormal (probabilists') Hermite polynomials He_k / sqrt(k!) (stable recurrence)."""
    if not _MEHLER:
        from scipy.special import roots_hermitenorm
        z, w = roots_hermitenorm(_MEHLER_NODES)
        w = w / math.sqrt(2 * math.pi)
        keep = w > 1e-300
        z, sw = z[keep], np.sqrt(w[keep])
        U = np.empty((z.size, _MEHLER_K + 2))
        U[:, 0] = sw
        U[:, 1] = z * sw
        for k in range(1, _MEHLER_K + 1):
            U[:, k + 1] = (z * U[:, k] - math.sqrt(k) * U[:, k - 1]) / math.sqrt(k + 1)
        _MEHLER.update(z=z, sw=sw, U=U)
    return _MEHLER["z"], _MEHLER["sw"], _MEHLER["U"]


class _QuadBackend:
    """Trapezoid quadrature in the normal variables (module docstring)."""

    def __init__(self, act, finite_difference):
        fn = getattr(act, "fn", None)
        if fn is None:
            raise TypeError(f"activation {act!r} has no scalar function .fn to integrate")
        dfn = getattr(act, "deriv", None)
        if dfn is None:
            if not finite_difference:
                raise ValueError(
                    f"{act!r} has no derivative: chi_1 = sw2 E[phi'(sqrt(q*) z)^2] and chi_c "
                    "need phi'.  Give Activation(fn, deriv=...), or pass finite_difference=True "
                    "to use a fourth-order central difference of phi (error ~1e-12..1e-10; "
                    "see limits.criticality)")
            dfn = _difference(fn)
        key = (fn, dfn)
        if key not in _KERNEL_CACHE:
            _KERNEL_CACHE[key] = _build_kernels(fn, dfn)
        self._diag, self._pair, self._phi_matrix = _KERNEL_CACHE[key]
        self.phi0 = float(fn(0.0))
        self.dphi0 = float(dfn(0.0))

    def diag(self, q, coarse=False):
        q = np.ascontiguousarray(q, dtype=np.float64)
        out = np.empty((q.size, 4))
        h, L = (_H_COARSE_1D, _L_COARSE) if coarse else (_H, _L)
        self._diag(q.reshape(-1), h, L, out)
        out = out.reshape(q.shape + (4,))
        return out[..., 0], out[..., 1], out[..., 2], out[..., 3]

    def pair(self, q, c, coarse=False, want_v=True):
        q = np.ascontiguousarray(q, dtype=np.float64).reshape(-1)
        c = np.ascontiguousarray(c, dtype=np.float64).reshape(-1)
        V = np.empty(q.size)
        D = np.empty(q.size)
        h, L = (_H_COARSE, _L_COARSE) if coarse else (_H, _L)
        self._pair(q, c, h, L, bool(want_v), V, D)
        return (V if want_v else None), D

    def mehler(self, q):
        """Squared Hermite coefficients of phi(sqrt(q) z): ``V(q, q, q c) = sum_k A[:, k] c^k``
        and ``Vdot(q, q, q c) = sum_k B[:, k] c^k`` (Mehler's formula; ``B_k = (k + 1)
        A_{k+1} / q`` by Stein's lemma), k = 0..K."""
        z, sw, U = _mehler_basis()
        P = q.size
        A = np.empty((P, U.shape[1]))
        blk = 2048
        Phi = np.empty((min(P, blk), z.size))
        for lo in range(0, P, blk):
            hi = min(P, lo + blk)
            self._phi_matrix(np.sqrt(q[lo:hi]), z, sw, Phi[:hi - lo])
            A[lo:hi] = Phi[:hi - lo] @ U
        A = A * A
        k = np.arange(1, U.shape[1])
        B = A[:, 1:] * k / q[:, None]
        return A[:, :-1], B


def _resolve(activation, n):
    if isinstance(activation, kn.ShapedReLU):
        if n is None:
            raise ValueError("ShapedReLU has slopes 1 + c/sqrt(n): give n= (the depth or width "
                             "that sets them), or pass activation.resolved(n)")
        return activation.resolved(n)
    if n is not None:
        raise ValueError("n is only used with ShapedReLU")
    if not isinstance(activation, kn.Activation):
        raise TypeError(f"activation must be a kernels activation (kn.ReLU(), kn.Tanh(), "
                        f"kn.Activation(fn, deriv), ...), got {type(activation).__name__}")
    return activation


def _backend(act, finite_difference):
    finite_difference = _checks.flag(finite_difference, "finite_difference")
    if isinstance(act, kn.ABReLU):
        return None
    if isinstance(act, kn.Erf):
        return _ErfBackend(act)
    return _QuadBackend(act, finite_difference)


# ----------------------------------------------------------------------------------------------
# fixed points
# ----------------------------------------------------------------------------------------------
def _upper_bracket(hi, f):
    """Grow ``hi`` in place (x4, at most 40 times) where ``f(idx, hi[idx]) >= 0`` until f is
    negative there; returns the mask of entries that passed 1e12 first (no finite root)."""
    unbounded = np.zeros(hi.size, bool)
    todo = np.arange(hi.size)
    for _ in range(40):
        bad = f(todo, hi[todo]) >= 0
        if not bad.any():
            break
        hi[todo[bad]] *= 4.0
        todo = todo[bad]
        big = hi[todo] > 1e12
        unbounded[todo[big]] = True
        todo = todo[~big]
        if todo.size == 0:
            break
    return unbounded


def _solve_q(be, sw2, sb2, max_iter=300):
    """Largest root of G(q) = sw2 F(q) + sb2 - q (safeguarded Newton from above), flat arrays."""
    P = sw2.size
    q = np.empty(P)
    # upper bracket: G(hi) < 0
    hi = np.maximum(1.0, 2.0 * sb2)

    def G(idx, qv):
        _, F, _, _ = be.diag(qv)
        return sw2[idx] * F + sb2[idx] - qv

    infinite = _upper_bracket(hi, G)
    lo = sb2.copy()
    q[:] = hi
    q[infinite] = np.inf
    # Newton on the coarse rule (cheap), then on the accurate rule; the bracket [lo, hi] is only
    # updated by the accurate rule
    qc = q.copy()
    act = np.flatnonzero(~infinite)
    for _ in range(60):
        if act.size == 0:
            break
        qa = qc[act]
        _, F, Fp, _ = be.diag(qa, coarse=True)
        G = sw2[act] * F + sb2[act] - qa
        Gp = sw2[act] * Fp - 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            qn = qa - G / Gp
        ok = np.isfinite(qn) & (qn >= lo[act]) & (qn <= hi[act])
        qc[act[ok]] = qn[ok]
        act = act[ok & (np.abs(qn - qa) > 1e-7 * qn)]
    fin = ~infinite
    q[fin] = qc[fin]
    act = np.flatnonzero(fin)
    for _ in range(max_iter):
        if act.size == 0:
            break
        qa = q[act]
        _, F, Fp, _ = be.diag(qa)
        G = sw2[act] * F + sb2[act] - qa
        Gp = sw2[act] * Fp - 1.0
        pos = G >= 0
        lo[act[pos]] = np.maximum(lo[act[pos]], qa[pos])
        hi[act[~pos]] = np.minimum(hi[act[~pos]], qa[~pos])
        with np.errstate(divide="ignore", invalid="ignore"):
            qn = qa - G / Gp
        l, h = lo[act], hi[act]
        out = ~((qn >= l) & (qn <= h)) | ~np.isfinite(qn)
        qn = np.where(out, 0.5 * (l + h), qn)
        step = np.abs(qn - qa)
        q[act] = qn
        # a Newton step of relative size 1e-11 leaves an error ~1e-22 (quadratic convergence);
        # the bisection fallback stops at rounding
        done = (step <= 1e-11 * qn) & ~out | (G == 0) | (h - l <= 4e-16 * h) | (qn < 1e-300)
        act = act[~done]
    return q


@numba.njit(cache=True, error_model="numpy")
def _mehler_newton(A, B, sw2, sb2, q, c_out, chi_out):
    """Newton's method from c = 0 on f(c) = (sw2 V(c) + sb2) / q - c with V, Vdot the power
    series of Mehler's formula (rows of A, B); monotone since f is convex."""
    K = A.shape[1]
    for p in range(A.shape[0]):
        c = 0.0
        for it in range(200):
            v = A[p, K - 1]
            d = B[p, K - 1]
            for k in range(K - 2, -1, -1):
                v = v * c + A[p, k]
                d = d * c + B[p, k]
            f = (sw2[p] * v + sb2[p]) / q[p] - c
            fp = sw2[p] * d - 1.0
            if f <= 0.0 and it == 0:
                break                       # g(0) = 0: c* = 0
            if not fp < 0.0:
                cn = 0.5 * (c + 1.0)
            else:
                cn = min(max(c - f / fp, 0.0), 1.0)
            done = abs(cn - c) <= 1e-16
            c = cn
            if done:
                break
        d = B[p, K - 1]
        for k in range(K - 2, -1, -1):
            d = d * c + B[p, k]
        c_out[p] = c
        chi_out[p] = sw2[p] * d


def _solve_c(be, q, sw2, sb2, mean, F, D):
    """Stable fixed point c* in [0, 1) of the c-map and chi_c, for chaotic points (flat).

    Quadrature backends first use Mehler's formula ``V(q, q, q c) = sum_k a_k^2 c^k`` truncated
    at K = 200 (``a_k`` the orthonormal Hermite coefficients of ``phi(sqrt(q) z)``): the
    coefficients are non-negative, so for c in [0, 1] the truncation error is at most
    ``c^(K+1) (E[phi^2] - sum_k a_k^2)`` (and likewise for Vdot with ``E[phi'^2]``), which is
    computed; points where this bound exceeds 1e-13 (c* close to 1 with a large q*) are done by
    the two-dimensional trapezoid rule instead.
    """
    P = q.size
    c = np.zeros(P)
    chic = np.empty(P)
    todo = np.ones(P, bool)
    if hasattr(be, "mehler"):
        A, B = be.mehler(q)
        tail = np.maximum(np.abs(F - A.sum(1)) / np.maximum(F, 1e-300),
                          np.abs(D - B.sum(1)) / np.maximum(D, 1e-300))
        _mehler_newton(A, B, sw2, sb2, q, c, chic)
        bound = c ** (A.shape[1]) * tail
        todo = bound > 1e-13
        if not todo.any():
            return c, chic
        c[todo], chic[todo] = _solve_c_direct(be, q[todo], sw2[todo], sb2[todo], mean[todo])
        return c, chic
    return _solve_c_direct(be, q, sw2, sb2, mean)


def _solve_c_direct(be, q, sw2, sb2, mean):
    P = q.size
    g0 = (sw2 * mean ** 2 + sb2) / q
    c = np.zeros(P)
    act = np.flatnonzero(g0 > 0)
    # coarse Newton from c = 0 (monotone: g convex)
    for _ in range(60):
        if act.size == 0:
            break
        V, D = be.pair(q[act], c[act], coarse=True)
        f = (sw2[act] * V + sb2[act]) / q[act] - c[act]
        fp = sw2[act] * D - 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            cn = c[act] - f / fp
        cn = np.where(np.isfinite(cn) & (fp < 0), cn, 0.5 * (c[act] + 1.0))
        cn = np.clip(cn, 0.0, 1.0 - 1e-16)
        step = np.abs(cn - c[act])
        c[act] = cn
        act = act[step > 1e-9]
    # accurate Newton polish
    act = np.flatnonzero(g0 > 0)
    for _ in range(8):
        if act.size == 0:
            break
        V, D = be.pair(q[act], c[act])
        f = (sw2[act] * V + sb2[act]) / q[act] - c[act]
        fp = sw2[act] * D - 1.0
        with np.errstate(divide="ignore", invalid="ignore"):
            cn = c[act] - f / fp
        ok = np.isfinite(cn) & (fp < 0)
        cn = np.where(ok, cn, c[act])
        cn = np.where(cn >= 1.0, 0.5 * (c[act] + 1.0), np.maximum(cn, 0.0))
        step = np.abs(cn - c[act])
        c[act] = cn
        act = act[(step > 2e-16) & ok]
    _, D = be.pair(q, c, want_v=False)
    return c, sw2 * D


# ----------------------------------------------------------------------------------------------
# public functions
# ----------------------------------------------------------------------------------------------
def signal_propagation(activation, weight_var, bias_var, *, n=None, finite_difference=False):
    """Fixed points, slopes and depth scales of signal propagation in a deep random MLP.

    Computes, for every ``(weight_var, bias_var)`` (broadcast), the q-map fixed point ``q*``, the
    stable c-map fixed point ``c*``, ``chi_1``, ``chi_c``, the depth scales ``xi_q``, ``xi_c``
    and the phase (ordered / chaotic / critical).  Definitions (theory/kernels.md §5c; Poole et
    al. 2016, arXiv 1606.05340, eqs. for the q- and c-maps; Schoenholz et al. 2017, arXiv
    1611.01232, for chi_c, xi_q and xi_c)::

        q_{l+1} = sw2 E[phi(sqrt(q_l) z)^2] + sb2
        c_{l+1} = (sw2 E[phi(u1) phi(u2)] + sb2) / q*
        chi_1   = sw2 E[phi'(sqrt(q*) z)^2],   chi_c = sw2 E[phi'(u1) phi'(u2)] |_{c*}
        xi_q    = -1 / ln(chi_1 + sw2 E[phi''(sqrt(q*) z) phi(sqrt(q*) z)]),   xi_c = -1 / ln chi_c

    See the module docstring for how each activation is computed and its accuracy (exact for the
    ReLU family and erf; about 1e-14 relative for tanh; tested at 1e-9 against scipy quad).

    Parameters
    ----------
    activation : kernels activation
        ``kn.ReLU()``, ``kn.LeakyReLU(a)``, ``kn.ABReLU(a, b)``, ``kn.Identity()``,
        ``kn.ShapedReLU(c_plus, c_minus)`` (with ``n``), ``kn.Erf(...)``, ``kn.Tanh()``,
        ``kn.Activation(fn, deriv)``.
    weight_var, bias_var : float or array_like, >= 0
        ``sw2`` and ``sb2``; broadcast against each other.
    n : int, optional
        For ``ShapedReLU`` only: the n of its slopes ``1 + c/sqrt(n)``.
    finite_difference : bool, default False
        Allow an ``Activation(fn)`` without ``deriv``: phi' by a fourth-order central difference
        (accuracy in the module docstring).

    Returns
    -------
    SignalPropagation
        Arrays of the broadcast shape: ``q_star``, ``c_star``, ``chi_1``, ``chi_c``,
        ``depth_scale_q``, ``depth_scale_c``, ``phase``.

    Raises
    ------
    ValueError
        Negative, NaN or infinite variances; an activation without phi' (module docstring).
    TypeError
        Not a kernels activation.

    Examples
    --------
    >>> import kernels as kn
    >>> from limits.criticality import signal_propagation
    >>> r = signal_propagation(kn.ReLU(), [1.0, 2.0, 3.0], 0.1)
    >>> r.phase.tolist(), r.chi_1.tolist()
    (['ordered', 'critical', 'chaotic'], [0.5, 1.0, 1.5])
    """
    sw2 = _variance_array(weight_var, "weight_var")
    sb2 = _variance_array(bias_var, "bias_var")
    act = _resolve(activation, n)
    be = _backend(act, finite_difference)
    try:
        sw2, sb2 = np.broadcast_arrays(sw2, sb2)
    except ValueError:
        raise ValueError(f"weight_var (shape {sw2.shape}) and bias_var (shape {sb2.shape}) do "
                         f"not broadcast to one shape") from None
    shape = sw2.shape
    sw2 = sw2.reshape(-1).astype(np.float64)
    sb2 = sb2.reshape(-1).astype(np.float64)
    if be is None:
        res = _abrelu(act, sw2, sb2)
    else:
        res = _smooth(be, sw2, sb2)
    q, c, chi1, chic, slope_q = res
    undefined = np.isnan(chi1)
    phase = np.where(np.abs(chi1 - 1.0) <= _CRITICAL_TOL, "critical",
                     np.where(chi1 < 1.0, "ordered", "chaotic"))
    phase = np.where(undefined, "unbounded", phase)
    xi_q = np.where(np.isinf(q), np.inf, _depth_scale(np.nan_to_num(slope_q)))
    xi_c = np.where(undefined, np.nan, _depth_scale(np.nan_to_num(chic)))
    out = dict(weight_var=sw2, bias_var=sb2, q_star=q, c_star=c, chi_1=chi1, chi_c=chic,
               depth_scale_q=xi_q, depth_scale_c=xi_c, phase=phase)
    return SignalPropagation(**{k: v.reshape(shape) for k, v in out.items()})


def _abrelu(act, sw2, sb2):
    m = act.m
    chi1 = sw2 * m
    finite = chi1 < 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(finite, sb2 / np.where(finite, 1.0 - chi1, 1.0), np.inf)
    c = np.ones_like(q)
    chic = np.where(finite, chi1, 1.0)
    return q, c, chi1, chic, chi1


def _smooth(be, sw2, sb2):
    q = _solve_q(be, sw2, sb2)
    if be.phi0 == 0.0:      # the root q* = 0 is reached only asymptotically (linearly at sw2 = 1)
        q[(sb2 == 0) & (q < 1e-13)] = 0.0
    qf = np.where(np.isfinite(q), q, 1.0)
    mean, F, Fp, D = be.diag(qf)
    chi1 = sw2 * D
    slope_q = sw2 * Fp
    zero = q == 0          # sb2 = 0, phi(0) = 0: the limit sb2 -> 0+ (linear regime)
    if zero.any():
        chi1[zero] = sw2[zero] * be.dphi0 ** 2
        slope_q[zero] = chi1[zero]
    c = np.ones_like(q)
    chic = chi1.copy()
    chaos = (chi1 > 1.0 + _CRITICAL_TOL) & np.isfinite(q) & (q > 0)
    if chaos.any():
        c[chaos], chic[chaos] = _solve_c(be, q[chaos], sw2[chaos], sb2[chaos], mean[chaos],
                                          F[chaos], D[chaos])
    crit = np.abs(chi1 - 1.0) <= _CRITICAL_TOL
    chic[crit] = 1.0
    inf = ~np.isfinite(q)          # no fixed variance: the c-map and chi_1 are not defined
    for a in (c, chi1, chic, slope_q):
        a[inf] = np.nan
    return q, c, chi1, chic, slope_q


def edge_of_chaos(activation, bias_var, *, n=None, finite_difference=False):
    """The critical weight variance ``sw2`` at which ``chi_1 = 1`` (the edge of chaos).

    With ``F(q) = E[phi(sqrt q z)^2]`` and ``D(q) = E[phi'(sqrt q z)^2]``, the edge satisfies
    ``sw2 D(q*) = 1`` and ``q* = sw2 F(q*) + sb2``, so q* is the root of
    ``H(q) = F(q) / D(q) + sb2 - q`` (``H(0) >= 0``) and ``sw2 = 1 / D(q*)``.  The root is
    bracketed (``[0, hi]`` with hi doubled until ``H(hi) < 0``) and found by bisection,
    vectorised over ``bias_var``, to ``4e-16`` relative (the smallest root if several).
    Exact for the ReLU family: ``sw2 = 2 / (a^2 + b^2)`` for every sb2 (theory/kernels.md §5c).
    Known values: tanh at sb2 = 0: 1; erf at sb2 = 0: pi/4; tanh at sb2 = 0.05: about 1.76
    (Schoenholz et al. 2017, Fig. 1).

    Parameters
    ----------
    activation, n, finite_difference
        As in ``signal_propagation``.
    bias_var : float or array_like, >= 0

    Returns
    -------
    float array of the shape of ``bias_var``: ``inf`` where no edge with a finite q* exists
    (q* < 1e12), e.g. softplus, whose chi_1 reaches 1 only where q* diverges.
    """
    sb2 = _variance_array(bias_var, "bias_var")
    act = _resolve(activation, n)
    be = _backend(act, finite_difference)
    shape = sb2.shape
    sb2 = sb2.reshape(-1).astype(np.float64)
    if be is None:
        if act.m == 0:
            return np.full(shape, np.inf)
        return np.full(shape, 1.0 / act.m)

    def H(idx, q):
        _, F, _, D = be.diag(q)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(D > 0, F / D, np.inf) + sb2[idx] - q

    P = sb2.size
    hi = np.maximum(1.0, 2.0 * sb2)
    lo = np.zeros(P)
    none = _upper_bracket(hi, H)
    act_ = np.flatnonzero(~none)
    for _ in range(250):
        if act_.size == 0:
            break
        mid = 0.5 * (lo[act_] + hi[act_])
        pos = H(act_, mid) >= 0
        lo[act_[pos]] = mid[pos]
        hi[act_[~pos]] = mid[~pos]
        width = hi[act_] - lo[act_]
        act_ = act_[(width > 4e-16 * hi[act_]) & (hi[act_] > 1e-300)]
    q = 0.5 * (lo + hi)
    # sb2 = 0 and phi(0) = 0: q = 0 is a root of H (the smallest); H ~ q^3 near 0 for odd phi,
    # below the rounding of F / D, so take the limit q -> 0 exactly: sw2 = 1 / phi'(0)^2
    if be.phi0 == 0.0:
        q[sb2 == 0] = 0.0
    _, _, _, D = be.diag(np.where(none, 1.0, q))
    zero = q < 1e-300
    with np.errstate(divide="ignore"):
        sw2 = np.where(zero, 1.0 / be.dphi0 ** 2 if be.dphi0 != 0 else np.inf, 1.0 / D)
    sw2 = np.where(none, np.inf, sw2)
    return sw2.reshape(shape)
