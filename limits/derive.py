r"""Symbolic derivation (SymPy) of the SDE limits of deep random networks, and their compiled
(numba) drift and diffusion.

Everything a solver integrates comes from here: the drift and the diffusion are *derived* with
SymPy from the one-layer conditional law of the network (Gaussian expectations done by
Isserlis/Wick on a Taylor expansion of the activation, or with the closed ReLU forms of
theory/sde.md §1), pushed through Itô's lemma where a change of variables is needed, and turned
into numba functions by code generation.  There is no second, hand-typed copy of a formula.

Conventions (theory/sde.md; Li, Nica & Roy 2022, "The Neural Covariance SDE", NeurIPS 2022,
arXiv 2206.02768 = [P2]; Li & Nica 2024, "Differential Equation Scaling Limits of Shaped and
Unshaped Neural Networks", TMLR, arXiv 2310.12079 = [P1])::

    z_{l+1} = sqrt(c/n) W_l phi(z_l),  W_l iid N(0, 1),  V_l^{ab} = (c/n) <phi(z_l^a), phi(z_l^b)>
    t = l/n  (layer index over width; T = d/n)                                   (sde.md §2.1, §2.3)

* ``drift`` b is ``lim n (E[V_{l+1} | V_l] - V_l)`` -- the drift per unit of t = l/n.
* ``diffusion`` Sigma is the *instantaneous covariance* ``lim n Cov[V_{l+1} | V_l]`` of the
  increments (not its square root), so ``dY = b dt + Sigma^{1/2} dB`` with B a standard BM.
  For a scalar SDE, Sigma = sigma^2 is the squared volatility.

Derivations return a :class:`Derivation` (SymPy expressions, LaTeX, ``compile()``).  The
functions are cached (``functools.lru_cache``): a second call with the same arguments returns the
same object, and ``Derivation.compile()`` is cached per derivation.

The ReLU drift is written with the function ``h(theta) = sin(theta) - theta*cos(theta)``
(:class:`h`, sde.md §1), ``theta = arccos(rho)``; ``explicit()`` rewrites it into elementary
functions.  In compiled code h is evaluated by its Taylor series for small theta (sde.md §5.2:
no cancellation near rho = 1), and every ``arccos`` argument is clipped to [-1, 1] (sde.md §5.1);
the state itself is never clipped.
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass
from typing import Optional, Tuple

import numba
import numpy as np
import sympy as sp
from sympy.printing.pycode import PythonCodePrinter

from kernels._fastmath import h_of

__all__ = [
    "Derivation", "Compiled", "h", "hs2", "explicit", "J", "E22", "E31",
    "covariance_sde", "correlation_sde", "correlation_derivation", "correlation_sde_coordinates",
    "unshaped_constants", "unshaped_one_step_moments", "unshaped_q_sde", "ito", "isserlis",
]

# ----------------------------------------------------------------------------------------------
# symbols
# ----------------------------------------------------------------------------------------------
rho = sp.Symbol("rho", real=True)
c_plus_sym = sp.Symbol("c_plus", real=True)
c_minus_sym = sp.Symbol("c_minus", real=True)
x_act = sp.Symbol("x", real=True)          # argument of psi / chi / phi
_eps = sp.Symbol("epsilon", positive=True)  # 1/sqrt(n)


def _V(a, b):
    """Symbol of the covariance entry V_ab (a <= b); diagonal entries are positive."""
    a, b = min(a, b), max(a, b)
    return sp.Symbol(f"V{a + 1}{b + 1}", positive=(a == b), real=True)


# ----------------------------------------------------------------------------------------------
# special functions of the ReLU derivations (sde.md §1)
# ----------------------------------------------------------------------------------------------
class h(sp.Function):
    r"""``h(theta) = sin(theta) - theta*cos(theta)`` (sde.md §1; >= 0 on [0, pi]).

    Kept as a named function so that the drift reads ``nu = C/(2 pi) h(theta)`` and so that
    compiled code can use a cancellation-free series for small theta.  ``h'(theta) =
    theta*sin(theta)``.
    """

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return sp.S.Zero
        if arg == sp.pi:
            return sp.pi
        return None

    def fdiff(self, argindex=1):
        u = self.args[0]
        return u * sp.sin(u)

    def _eval_evalf(self, prec):
        u = self.args[0]
        return (sp.sin(u) - u * sp.cos(u))._eval_evalf(prec)

    def _eval_rewrite_as_sin(self, u, **kwargs):
        return sp.sin(u) - u * sp.cos(u)

    def _latex(self, printer, exp=None):
        s = r"h\left(%s\right)" % printer._print(self.args[0])
        return s if exp is None else r"%s^{%s}" % (s, exp)


class hs2(sp.Function):
    r"""``hs2(theta) = h(theta)/sin(theta)**2`` (~ theta/3 as theta -> 0; sde.md §2.4).

    The Fisher-z drift ``nu(rho)/(1 - rho**2) = C/(2 pi) hs2(theta)``; compiled with a series for
    small theta so that it stays finite when 1 - rho**2 underflows.
    """

    nargs = 1

    @classmethod
    def eval(cls, arg):
        if arg.is_zero:
            return sp.S.Zero
        return None

    def fdiff(self, argindex=1):
        u = self.args[0]
        return u / sp.sin(u) - 2 * sp.cos(u) * hs2(u) / sp.sin(u)

    def _eval_evalf(self, prec):
        u = self.args[0]
        return ((sp.sin(u) - u * sp.cos(u)) / sp.sin(u) ** 2)._eval_evalf(prec)

    def _eval_rewrite_as_sin(self, u, **kwargs):
        return (sp.sin(u) - u * sp.cos(u)) / sp.sin(u) ** 2

    def _latex(self, printer, exp=None):
        s = r"\frac{h\left(%s\right)}{\sin^{2}\left(%s\right)}" % ((printer._print(self.args[0]),) * 2)
        return s if exp is None else r"\left(%s\right)^{%s}" % (s, exp)


def explicit(expr):
    """Rewrite :class:`h` and :class:`hs2` into elementary functions (``sin``, ``cos``)."""
    if isinstance(expr, (sp.MatrixBase,)):
        return expr.applyfunc(explicit)
    return sp.sympify(expr).replace(h, lambda u: sp.sin(u) - u * sp.cos(u)).replace(
        hs2, lambda u: (sp.sin(u) - u * sp.cos(u)) / sp.sin(u) ** 2)


def J(r):
    r"""Arc-cosine map ``J(rho) = 2 E[relu(g1) relu(g2)] = rho + h(arccos rho)/pi`` (sde.md §1).

    Equal to ``(sin(theta) + (pi - theta) cos(theta))/pi`` with ``theta = arccos(rho)``.
    """
    return r + h(sp.acos(r)) / sp.pi


def _J_minus(r):
    """J(-rho) = h(arccos rho)/pi (arccos(-rho) = pi - arccos(rho))."""
    return h(sp.acos(r)) / sp.pi


def E22(r):
    r"""``E[relu(g1)^2 relu(g2)^2] = (3 sin t cos t + (pi - t)(1 + 2 cos^2 t))/(2 pi)``, t = arccos rho
    (sde.md §1)."""
    t = sp.acos(r)
    return (3 * sp.sin(t) * sp.cos(t) + (sp.pi - t) * (1 + 2 * sp.cos(t) ** 2)) / (2 * sp.pi)


def E31(r):
    r"""``E[relu(g1)^3 relu(g2)] = (3 cos t (pi - t) + 3 sin t - sin^3 t)/(2 pi)``, t = arccos rho
    (sde.md §1)."""
    t = sp.acos(r)
    return (3 * sp.cos(t) * (sp.pi - t) + 3 * sp.sin(t) - sp.sin(t) ** 3) / (2 * sp.pi)


# ----------------------------------------------------------------------------------------------
# Gaussian moments (Isserlis / Wick)
# ----------------------------------------------------------------------------------------------
def isserlis(indices, cov):
    r"""``E[g_{i1} g_{i2} ... g_{ik}]`` for a centred Gaussian vector (Isserlis' theorem).

    Sum over all perfect matchings of the product of covariances ``cov(i, j)``; zero for an odd
    number of factors.

    Parameters
    ----------
    indices : sequence of hashable
        The index of each factor (repetitions allowed).
    cov : callable
        ``cov(i, j)`` -> SymPy expression, the covariance of g_i and g_j.
    """
    indices = tuple(indices)
    return _isserlis(indices, cov)


def _isserlis(indices, cov):
    if len(indices) == 0:
        return sp.S.One
    if len(indices) % 2:
        return sp.S.Zero
    first, rest = indices[0], indices[1:]
    total = sp.S.Zero
    for j in range(len(rest)):
        total += cov(first, rest[j]) * _isserlis(rest[:j] + rest[j + 1:], cov)
    return total


def _gaussian_expectation(poly_expr, gsyms, cov):
    """E[P(g)] for a polynomial P in the Gaussian symbols ``gsyms`` (coefficients free)."""
    P = sp.Poly(sp.expand(poly_expr), *gsyms)
    total = sp.S.Zero
    for monom, coeff in P.terms():
        idx = []
        for k, e in enumerate(monom):
            idx += [k] * e
        total += coeff * _isserlis(tuple(idx), cov)
    return total


# ----------------------------------------------------------------------------------------------
# the Derivation object
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Derivation:
    r"""A derived SDE ``dY_t = b(Y_t) dt + Sigma(Y_t)^{1/2} dB_t``.

    Attributes
    ----------
    kind : str
        What was derived (e.g. ``"covariance"``, ``"correlation"``, ``"unshaped_q"``).
    state : tuple of sympy.Symbol
        The state coordinates Y, in order (``y[i]`` of the compiled functions).
    params : tuple of sympy.Symbol
        The parameters, in order (``p[i]`` of the compiled functions).  For a time-dependent
        SDE the time symbol ``t`` is the LAST parameter (set ``p[-1] = t`` before each call).
    drift : sympy.ImmutableMatrix
        Column vector b(Y).
    diffusion : sympy.ImmutableMatrix
        Symmetric matrix Sigma(Y), the instantaneous covariance of dY per unit time (for a scalar
        SDE the squared volatility sigma^2).
    time : sympy.Symbol or None
        The time symbol if the coefficients depend on t (then ``params[-1] is time``).
    units : str
        The time variable and normalisation, in words.
    volatility : sympy.Expr or None
        For scalar SDEs: sigma(Y) >= 0 with sigma^2 = Sigma (simplified when Sigma is a perfect
        square).
    """

    kind: str
    state: Tuple[sp.Symbol, ...]
    params: Tuple[sp.Symbol, ...]
    drift: sp.ImmutableMatrix
    diffusion: sp.ImmutableMatrix
    time: Optional[sp.Symbol] = None
    units: str = ""
    volatility: Optional[sp.Expr] = None

    @property
    def dim(self):
        """Number of state coordinates."""
        return len(self.state)

    def explicit(self):
        """The same derivation with :class:`h`, :class:`hs2` rewritten in sin/cos."""
        return Derivation(self.kind, self.state, self.params, sp.ImmutableMatrix(explicit(self.drift)),
                          sp.ImmutableMatrix(explicit(self.diffusion)), self.time, self.units,
                          None if self.volatility is None else explicit(self.volatility))

    def latex(self):
        r"""LaTeX of the SDE: drift and diffusion (``\Sigma``), as an ``aligned`` block."""
        names = {c_plus_sym: "c_+", c_minus_sym: "c_-"}

        def L(e):
            return sp.latex(e, symbol_names=names)

        if self.dim == 1:
            y = L(self.state[0])
            vol = self.volatility if self.volatility is not None else sp.sqrt(self.diffusion[0, 0])
            return (r"\begin{aligned} d%s_t &= \left(%s\right) dt + \left(%s\right) dB_t,\\ "
                    r"\sigma^2(%s) &= %s \end{aligned}" % (y, L(self.drift[0]), L(vol), y,
                                                          L(self.diffusion[0, 0])))
        return (r"\begin{aligned} d%s &= b\,dt + \Sigma^{1/2} dB_t,\\ b &= %s,\\ \Sigma &= %s "
                r"\end{aligned}" % (L(sp.Matrix(self.state)), L(self.drift), L(self.diffusion)))

    def _repr_latex_(self):
        return "$$" + self.latex() + "$$"

    def compile(self):
        """Numba-compiled drift and diffusion generated from the SymPy expressions.

        Returns
        -------
        Compiled
            ``drift(y, p, out)`` (out: vector), ``diffusion(y, p, out)`` (out: matrix Sigma),
            ``diffusion_sqrt(y, p, out)`` (lower-triangular L with L L^T = Sigma; a numerical
            Cholesky factorisation in which non-positive pivots give zero columns); for scalar
            SDEs also ``b(y0, p)``, ``s(y0, p)`` (volatility sqrt(Sigma)) and ``ds(y0, p)``
            (d s / d y, for Milstein).  ``y``, ``p`` are float64 1-d arrays ordered as
            ``.state``, ``.params``.  Cached: a second call returns the same object.
        """
        return _compile(self)


@dataclass(frozen=True)
class Compiled:
    """Numba callables of a :class:`Derivation` (see :meth:`Derivation.compile`).

    ``source`` is the generated Python source; ``time_dependent`` says that ``p[-1]`` is the
    time t (e.g. the unshaped q SDE)."""

    drift: object
    diffusion: object
    diffusion_sqrt: object
    state: tuple
    params: tuple
    b: object = None
    s: object = None
    ds: object = None
    source: str = ""
    time_dependent: bool = False


# ----------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------
def _const(value, name):
    """None -> the symbol; a finite real -> sympy number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, sp.Basic)):
        raise TypeError(f"{name} must be a real number or None, got {value!r}")
    if isinstance(value, sp.Basic):
        if not value.is_number or not value.is_real:
            raise ValueError(f"{name} must be a real number or None, got {value!r}")
        return value
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return sp.nsimplify(value) if float(value) == int(value) else sp.Float(value)


def _shaping(c_plus, c_minus):
    cp, cm = _const(c_plus, "c_plus"), _const(c_minus, "c_minus")
    params = tuple(s for s, v in ((c_plus_sym, cp), (c_minus_sym, cm)) if v is None)
    return (c_plus_sym if cp is None else cp), (c_minus_sym if cm is None else cm), params


def _leading(expr, order):
    """Coefficient of eps**order of ``expr`` (series in eps); lower orders must vanish."""
    ser = sp.series(expr, _eps, 0, order + 1).removeO()
    ser = sp.expand(ser)
    for k in range(order):
        low = sp.simplify(ser.coeff(_eps, k))
        if low != 0:
            raise ValueError(f"the O(n^-{sp.Rational(k, 2)}) term of the one-layer mean does "
                             f"not vanish ({low}); no diffusion limit at this shaping rate")
    return ser.coeff(_eps, order)


# ----------------------------------------------------------------------------------------------
# 1. covariance SDE
# ----------------------------------------------------------------------------------------------
def covariance_sde(n_inputs=2, activation="relu", c_plus=None, c_minus=None, psi=None, chi=None,
                   normalise=False):
    r"""Neural covariance SDE of a shaped MLP, derived from the one-layer conditional law.

    Given layer l, the rows of z_{l+1} are iid N(0, V_l), so
    ``V_{l+1} = (c/n) sum_i phi(g_i) phi(g_i)^T`` with g_i ~ N(0, V_l) (sde.md §2.1).  With
    ``epsilon = n^{-1/2}``, the drift and the diffusion per unit of ``t = l/n`` are::

        b^{ab}           = lim n (c E[phi(g_a) phi(g_b)] - V^{ab})          (coefficient of eps^2)
        Sigma^{ab,cd}    = lim n Cov(V_{l+1}^{ab}, V_{l+1}^{cd})
                         = E[g_a g_b g_c g_d] - V^{ab} V^{cd} = V^{ac} V^{bd} + V^{ad} V^{bc}

    (Isserlis, phi -> identity at leading order).  For shaped ReLU ([P2], "ReLU shaping";
    sde.md §2.2-2.3) ``phi = s_+ relu(x) - s_- relu(-x)``, ``s_pm = 1 + c_pm/sqrt(n)``,
    ``c = 2/(s_+^2 + s_-^2)``, and with the closed forms of sde.md §1
    ``c E[phi(g_a) phi(g_b)] = sqrt(V^{aa} V^{bb}) [J(rho) - 2 s_+ s_-/(s_+^2 + s_-^2) J(-rho)]``,
    which gives ``b^{ab} = nu(rho^{ab}) sqrt(V^{aa} V^{bb})``,
    ``nu(rho) = (c_+ - c_-)^2/(2 pi) h(arccos rho)`` and ``b^{aa} = 0``.
    For a smooth activation ``phi(x) = x + psi(x)/sqrt(n) + chi(x)/n`` (sde.md §2.6, [R] setup)
    the expectation is taken by Isserlis on the polynomial; with the default
    ``psi = a2 x^2``, ``chi = a3 x^3`` (i.e. ``s phi(x/s)``, ``s = a sqrt(n)``,
    ``a2 = phi''(0)/(2a)``, ``a3 = phi'''(0)/(6a^2)``) and ``c = 1``::

        b^{ab} = a2^2 (V^{aa} V^{bb} + 2 (V^{ab})^2) + 3 a3 V^{ab} (V^{aa} + V^{bb})

    Parameters
    ----------
    n_inputs : int
        Number m of inputs; the state is the m(m+1)/2 entries V_ab, a <= b, row by row
        (``V11, V12, ..., V1m, V22, ...``).
    activation : {"relu", "smooth"}, sympy.Expr or kernels.Activation
        ``"relu"``: shaped ReLU (params ``c_plus, c_minus`` unless given).  ``"smooth"``: the
        polynomial perturbation ``psi``, ``chi`` (default ``a2 x^2``, ``a3 x^3``; params = their
        free symbols other than ``x``, sorted by name).  A SymPy expression ``phi(x)`` in the
        symbol ``x`` with ``phi(0) = 0``, ``phi'(0) = 1``: shaped as ``s phi(x/s)``,
        ``s = a sqrt(n)`` (param ``a``).  A ``kernels.Activation`` is mapped to one of these
        (same derivation, same output): ``ShapedReLU(c_plus, c_minus, rate="width")`` to
        ``"relu"`` with its constants; a positively homogeneous ``ABReLU(a, a)`` (a != 0, e.g.
        ``Identity()``) to ``"relu"`` with ``c_plus = c_minus = 0`` (with the normalisation
        ``c`` a linear map has no drift); ``Tanh()`` and ``Erf(a, b, 0)`` with ``2 a b /
        sqrt(pi) = 1`` (to 1e-12) to their SymPy expressions (``tanh(x)``,
        ``sqrt(pi)/(2 b) erf(b x)``).  Other activations raise: a fixed-slope
        ``ABReLU(a, b)``, a != b, is not a shaping of the identity (no covariance SDE at this
        rate; see ``unshaped_q_sde``), ``ShapedReLU(rate="depth")`` has slopes tending to 1 in
        depth, not width, and a user ``Activation(fn)`` has no symbolic form (pass ``phi`` as a
        SymPy expression in ``limits.derive.x_act`` instead).
    c_plus, c_minus : float or None
        ReLU shaping constants; None keeps them as symbols (recommended for solvers: one
        compilation for all values, passed in ``p``).
    psi, chi : sympy.Expr or None
        Polynomials in ``x`` (see above); only with ``activation="smooth"``.
    normalise : bool
        Smooth case only.  False (sde.md §2.6 default): ``c = 1``.  True: ``c = 1/E[phi(g)^2]``,
        g ~ N(0, 1), which subtracts ``beta V^{ab}`` from the drift (sde.md §2.6 AMBIGUITY: which
        one [P2] uses is unverified).

    Returns
    -------
    Derivation
        ``kind="covariance"``, time ``t = l/n`` ([P2]; sde.md §2.3).

    References
    ----------
    Li, Nica & Roy (2022), "The Neural Covariance SDE", §§ on ReLU shaping and the covariance
    SDE (sde.md §2.1-2.3, §2.6).
    """
    activation, c_plus, c_minus = _from_activation(activation, c_plus, c_minus)
    return _covariance_sde(_int_arg(n_inputs, "n_inputs", 1, 12), _activation_key(activation),
                           _const(c_plus, "c_plus"), _const(c_minus, "c_minus"),
                           _poly_arg(psi, "psi"), _poly_arg(chi, "chi"), bool(normalise))


def _from_activation(act, c_plus, c_minus):
    """``(activation, c_plus, c_minus)`` with a ``kernels.Activation`` replaced by the string or
    SymPy expression it derives as (see :func:`covariance_sde`); anything else is returned as
    is (checked by ``_activation_key``)."""
    import kernels as kn
    if not isinstance(act, kn.Activation):
        return act, c_plus, c_minus
    if isinstance(act, kn.ShapedReLU):
        if act.rate != "width":
            raise ValueError(f"activation = {act!r}: the covariance SDE is the width-n shaping "
                             f"(slopes 1 + c/sqrt(n), t = l/n); a ShapedReLU with rate='depth' "
                             f"has slopes 1 + c/sqrt(L) (the infinite-width, depth-scaled "
                             f"limit); use rate='width'")
    if isinstance(act, (kn.ShapedReLU, kn.ABReLU)) and (c_plus is not None
                                                       or c_minus is not None):
        raise ValueError(f"the shaping of activation = {act!r} is fixed by it: do not pass "
                         f"c_plus / c_minus too (got c_plus={c_plus!r}, c_minus={c_minus!r})")
    if isinstance(act, kn.ShapedReLU):
        return "relu", act.c_plus, act.c_minus
    if isinstance(act, kn.ABReLU):
        if act.a == act.b != 0.0:
            return "relu", 0.0, 0.0
        raise ValueError(f"activation = {act!r} has fixed slopes a != b (or zero): it is not a "
                         f"shaping of the identity, so it has no covariance SDE at rate "
                         f"n^(-1/2); use ShapedReLU(c_plus, c_minus, rate='width') or, for the "
                         f"unshaped ReLU, unshaped_q_sde()")
    if isinstance(act, kn.Tanh):
        return sp.tanh(x_act), c_plus, c_minus
    if isinstance(act, kn.Erf):
        slope = 2.0 * act.a * act.b / math.sqrt(math.pi)
        if act.c != 0.0 or abs(slope - 1.0) > 1e-12:
            raise ValueError(f"activation = {act!r}: the smooth derivation needs phi(0) = 0 and "
                             f"phi'(0) = 1, i.e. Erf(a, b, 0) with 2 a b / sqrt(pi) = 1; got "
                             f"phi(0) = {act.c!r}, phi'(0) = {slope!r} (use Erf(a=sqrt(pi)/(2 "
                             f"b), b=b))")
        b = sp.nsimplify(act.b, rational=True)      # phi'(0) = 1 exactly, whatever b
        return sp.sqrt(sp.pi) / (2 * b) * sp.erf(b * x_act), c_plus, c_minus
    raise TypeError(f"activation = {act!r} has no symbolic form for derive: the kernels "
                    f"activations derive accepts are ShapedReLU(rate='width'), ABReLU(a, a), "
                    f"Tanh and Erf; for any other phi pass a SymPy expression in "
                    f"limits.derive.x_act (phi(0) = 0, phi'(0) = 1)")


def _int_arg(v, name, lo, hi):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {v!r}")
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v!r}")
    return int(v)


def _activation_key(a):
    if isinstance(a, str):
        if a not in ("relu", "smooth"):
            raise ValueError(f"activation must be 'relu', 'smooth' or a SymPy expression in x, "
                             f"got {a!r}")
        return a
    if isinstance(a, sp.Expr):
        if not a.free_symbols <= {x_act}:
            raise ValueError(f"activation must be an expression in the symbol x only, got {a!r}")
        return a
    raise TypeError(f"activation must be 'relu', 'smooth' or a SymPy expression, got {a!r}")


def _poly_arg(e, name):
    if e is None:
        return None
    if not isinstance(e, sp.Expr):
        raise TypeError(f"{name} must be a SymPy expression in x, got {e!r}")
    if not e.is_polynomial(x_act):
        raise ValueError(f"{name} must be a polynomial in x (Gaussian moments by Isserlis), "
                         f"got {e!r}")
    return e


def _pairs(m):
    return [(a, b) for a in range(m) for b in range(a, m)]


@functools.lru_cache(maxsize=None)
def _covariance_sde(m, activation, cp, cm, psi, chi, normalise):
    pairs = _pairs(m)
    state = tuple(_V(a, b) for a, b in pairs)

    def cov(i, j):
        return _V(i, j)

    # --- diffusion: leading order, phi -> identity, c -> 1 (Isserlis)
    n_s = len(pairs)
    Sig = sp.zeros(n_s, n_s)
    for I, (a, b) in enumerate(pairs):
        for K, (c, d) in enumerate(pairs):
            Sig[I, K] = sp.expand(_isserlis((a, b, c, d), cov) - _V(a, b) * _V(c, d))

    # --- drift
    units = ("t = l/n (layer over width), shaping at rate n^(-1/2) [P2]; drift and Sigma per "
             "unit t")
    b = sp.zeros(n_s, 1)
    if activation == "relu":
        if psi is not None or chi is not None or normalise:
            raise ValueError("psi, chi and normalise apply to smooth activations only, got "
                             f"psi={psi!r}, chi={chi!r}, normalise={normalise!r}")
        cpv, cmv, params = _shaping(cp, cm)
        sp_, sm_ = 1 + cpv * _eps, 1 + cmv * _eps
        r = sp.Symbol("r", real=True)
        # c E[phi(g_a) phi(g_b)] / sqrt(V_aa V_bb), phi = s+ relu(x) - s- relu(-x):
        # s+^2 E[r r] + s-^2 E[r(-) r(-)] - s+ s- (E[r r(-)] + E[r(-) r]), E[r r] = J(rho)/2 (§1)
        cE = 2 / (sp_ ** 2 + sm_ ** 2) * ((sp_ ** 2 + sm_ ** 2) * J(r) / 2
                                           - 2 * sp_ * sm_ * _J_minus(r) / 2)
        nu_r = sp.factor(_leading(cE - r, 2))           # per-layer mean change is eps^2 nu
        for I, (a, c) in enumerate(pairs):
            if a == c:
                val = sp.simplify(nu_r.subs(r, 1))
            else:
                sq = sp.sqrt(_V(a, a) * _V(c, c))
                val = nu_r.subs(r, _V(a, c) / sq) * sq
            b[I] = val
        kind = "covariance_relu"
    else:
        if cp is not None or cm is not None:
            raise ValueError("c_plus, c_minus apply to activation='relu' only, got "
                             f"c_plus={cp!r}, c_minus={cm!r}")
        if isinstance(activation, sp.Expr):
            if psi is not None or chi is not None:
                raise ValueError("give either an activation expression or psi/chi, not both")
            phi = activation
            d = [sp.simplify(sp.diff(phi, x_act, k).subs(x_act, 0)) for k in range(4)]
            if d[0] != 0 or d[1] != 1:
                raise ValueError(f"activation must satisfy phi(0) = 0 and phi'(0) = 1, got "
                                 f"phi(0) = {d[0]}, phi'(0) = {d[1]}")
            a_sym = sp.Symbol("a", positive=True)
            psi = d[2] / (2 * a_sym) * x_act ** 2
            chi = d[3] / (6 * a_sym ** 2) * x_act ** 3
        else:
            if psi is None and chi is None:
                psi = sp.Symbol("a2", real=True) * x_act ** 2
                chi = sp.Symbol("a3", real=True) * x_act ** 3
            psi = sp.S.Zero if psi is None else psi
            chi = sp.S.Zero if chi is None else chi
        params = tuple(sorted((psi.free_symbols | chi.free_symbols) - {x_act}, key=str))
        ga, gb = sp.symbols("g_a g_b", real=True)

        def phi_s(g):
            return g + _eps * psi.subs(x_act, g) + _eps ** 2 * chi.subs(x_act, g)

        if normalise:
            g0 = sp.Symbol("g0", real=True)
            m2 = _gaussian_expectation(sp.expand(phi_s(g0) ** 2), [g0], lambda i, j: sp.S.One)
            cnorm = 1 / m2
        else:
            cnorm = sp.S.One
        for I, (a, c) in enumerate(pairs):
            def cov2(i, j, a=a, c=c):
                return _V((a, c)[i], (a, c)[j])
            mom = _gaussian_expectation(sp.expand(phi_s(ga) * phi_s(gb)), [ga, gb], cov2)
            b[I] = sp.expand(_leading(cnorm * mom - _V(a, c), 2))
        kind = "covariance_smooth"
    return Derivation(kind, state, params, sp.ImmutableMatrix(b), sp.ImmutableMatrix(Sig),
                      None, units)


# ----------------------------------------------------------------------------------------------
# Itô's lemma
# ----------------------------------------------------------------------------------------------
def ito(derivation, new_exprs):
    r"""Itô's lemma: drift and diffusion of ``F(Y)`` for ``dY = b dt + Sigma^{1/2} dB``.

    ``d F_i = [grad F_i . b + (1/2) tr(Hess F_i Sigma)] dt + ...``,
    ``d<F_i, F_j> = grad F_i^T Sigma grad F_j`` per unit time.

    Parameters
    ----------
    derivation : Derivation
    new_exprs : sequence of sympy.Expr
        ``F_i`` in terms of ``derivation.state``.

    Returns
    -------
    (sympy.Matrix, sympy.Matrix)
        Drift column and covariance matrix of F, in the OLD state variables (substitute the
        inverse map yourself).
    """
    X = sp.Matrix(derivation.state)
    b, S = sp.Matrix(derivation.drift), sp.Matrix(derivation.diffusion)
    F = sp.Matrix(list(new_exprs))
    Jac = F.jacobian(X)
    drift = sp.zeros(len(F), 1)
    for i in range(len(F)):
        H = sp.hessian(F[i], X)
        drift[i] = (Jac[i, :] * b)[0] + sp.Rational(1, 2) * (H * S).trace()
    return drift, Jac * S * Jac.T


def _tidy(expr):
    """Collect the h / hs2 terms and factor their coefficients (display only; same value)."""
    fs = sorted(expr.atoms(h, hs2), key=str)
    return sp.collect(sp.expand(expr), fs, sp.factor) if fs else expr


def _perfect_square_sqrt(D, var, point):
    """sqrt(D) simplified when D factors as (coeff) * P^2; positive at ``point``."""
    D = sp.factor(D)
    coeff, facs = sp.factor_list(D)
    if coeff.is_number and coeff > 0 and all(mult % 2 == 0 for _, mult in facs):
        s = sp.sqrt(coeff) * sp.Mul(*[f ** (mult // 2) for f, mult in facs])
        if s.subs(var, point) < 0:
            s = -s
        return sp.expand(s) if s.is_polynomial(var) else s
    return sp.sqrt(D)


# ----------------------------------------------------------------------------------------------
# 2. correlation SDE
# ----------------------------------------------------------------------------------------------
_CORR_UNITS = ("t = l/n (layer over width, [P2]; sde.md §6 B), slopes 1 + c_pm/sqrt(n); the drift "
               "depends only on C = (c_plus - c_minus)^2")


def correlation_sde(c_plus=None, c_minus=None):
    r"""Correlation SDE of the shaped ReLU MLP, by Itô's lemma on ``rho = V12/sqrt(V11 V22)``.

    ::

        d rho_t = [nu(rho_t) - rho_t (1 - rho_t^2)/2] dt + (1 - rho_t^2) dW_t,
        nu(rho) = (c_plus - c_minus)^2/(2 pi) h(arccos rho),  h(th) = sin th - th cos th

    (sde.md §2.4; [P2] correlation SDE), time ``t = l/n`` (T = d/n) with slopes
    ``1 + c_pm/sqrt(n)`` -- the units of the oracle table sde.md §6 B.

    Parameters
    ----------
    c_plus, c_minus : float or None
        Shaping constants; None keeps the symbols ``c_plus``, ``c_minus``.

    Returns
    -------
    drift : sympy.Expr
        In the symbol ``rho`` (``limits.derive.rho``) and the shaping constants.
    diffusion : sympy.Expr
        The squared volatility ``sigma^2(rho) = (1 - rho^2)^2`` (d<rho>/dt), NOT sigma.
    """
    d = correlation_derivation(c_plus, c_minus)
    return d.drift[0], d.diffusion[0, 0]


def correlation_derivation(c_plus=None, c_minus=None, coordinates="rho"):
    r"""The correlation SDE as a :class:`Derivation` (state ``(rho,)`` or ``(x,)``).

    Derived by Itô's lemma from :func:`covariance_sde` (2 inputs):
    ``f = V12/sqrt(V11 V22)``, then ``V12 -> rho sqrt(V11 V22)``; V11, V22 cancel (sde.md §2.4).

    Parameters
    ----------
    c_plus, c_minus : float or None
        Shaping constants (None = symbols, params ``(c_plus, c_minus)``).
    coordinates : {"rho", "artanh"}
        ``"rho"``: state rho, ``d rho = [nu - rho(1 - rho^2)/2] dt + (1 - rho^2) dW``.
        ``"artanh"``: Fisher z, state ``x = artanh(rho)``, additive noise (recommended for
        solvers, sde.md §2.4, §5.3)::

            dx = [C/(2 pi) hs2(theta) + tanh(x)/2] dt + dW,   theta = 2 arctan(exp(-x))

        with ``hs2(theta) = h(theta)/sin(theta)^2 = nu/(1 - rho^2)/(C/(2 pi))``.

    Returns
    -------
    Derivation
        Time ``t = l/n``; ``volatility`` is ``1 - rho**2`` resp. ``1``.
    """
    if coordinates not in ("rho", "artanh"):
        raise ValueError(f"coordinates must be 'rho' or 'artanh', got {coordinates!r}")
    return _correlation(_const(c_plus, "c_plus"), _const(c_minus, "c_minus"), coordinates)


x_z = sp.Symbol("x", real=True)


def _to_rho(expr, V11, V12, V22):
    e = expr.subs(V12, rho * sp.sqrt(V11 * V22))
    e = sp.simplify(sp.expand(e))
    if e.has(V11) or e.has(V22):
        raise RuntimeError(f"correlation SDE not autonomous: {e}")
    return e


def _fisher(expr):
    """Express a function of rho (with h(acos rho)) in x = artanh(rho), theta = 2 atan(exp(-x))."""
    th = sp.Dummy("th")
    e = expr.subs(sp.acos(rho), th)
    e = e.replace(h, lambda u: hs2(u) * (1 - rho ** 2) if u == th else h(u))
    e = sp.expand(sp.cancel(sp.together(e)))
    return e.subs(th, 2 * sp.atan(sp.exp(-x_z))).subs(rho, sp.tanh(x_z))


@functools.lru_cache(maxsize=None)
def _correlation(cp, cm, coordinates):
    cov = _covariance_sde(2, "relu", cp, cm, None, None, False)
    V11, V12, V22 = cov.state
    f = V12 / sp.sqrt(V11 * V22)
    dr, Sr = ito(cov, [f])
    drift = _tidy(_to_rho(dr[0], V11, V12, V22))
    diff = sp.factor(_to_rho(Sr[0, 0], V11, V12, V22))
    if coordinates == "rho":
        vol = _perfect_square_sqrt(diff, rho, 0)
        if not vol.has(sp.sqrt(diff)):
            diff = vol ** 2              # (1 - rho^2)^2, same polynomial, readable form
        return Derivation("correlation", (rho,), cov.params, sp.ImmutableMatrix([drift]),
                          sp.ImmutableMatrix([[diff]]), None, _CORR_UNITS, vol)
    # Fisher z: Itô on atanh(rho) (scalar)
    rd = Derivation("correlation", (rho,), cov.params, sp.ImmutableMatrix([drift]),
                    sp.ImmutableMatrix([[diff]]))
    dz, Sz = ito(rd, [sp.atanh(rho)])
    dzf = _tidy(_fisher(sp.simplify(dz[0])))
    Szf = sp.simplify(Sz[0, 0])
    if Szf.free_symbols:
        raise RuntimeError(f"Fisher-z diffusion not constant: {Szf}")
    return Derivation("correlation_artanh", (x_z,), cov.params, sp.ImmutableMatrix([dzf]),
                      sp.ImmutableMatrix([[Szf]]), None, _CORR_UNITS,
                      _perfect_square_sqrt(Szf, x_z, 0) if Szf != 0 else sp.S.Zero)


u1_sym, u2_sym = sp.symbols("u1 u2", real=True)


def correlation_sde_coordinates(c_plus=None, c_minus=None):
    r"""Covariance SDE of 2 inputs in the in-domain coordinates ``(ln V11, ln V22, artanh rho)``.

    Itô's lemma applied to ``(u1, u2, x) = (ln V11, ln V22, artanh(V12/sqrt(V11 V22)))``
    (sde.md §2.3 "PSD-preserving alternative", §5.3)::

        du1 = -dt + dM1,   du2 = -dt + dM2,   dx = (nu(rho)/(1 - rho^2) + rho/2) dt + dM3,
        d<M>/dt = [[2, 2 rho^2, rho], [2 rho^2, 2, rho], [rho, rho, 1]],   rho = tanh x

    Any state maps back to a positive-definite V: ``V11 = e^{u1}``, ``V22 = e^{u2}``,
    ``V12 = tanh(x) e^{(u1+u2)/2}``.  ``nu/(1 - rho^2)`` is written ``C/(2 pi) hs2(theta)``
    with ``theta = 2 arctan(exp(-x))`` (finite for all x).

    Returns
    -------
    Derivation
        State ``(u1, u2, x)``, params ``(c_plus, c_minus)`` (unless given), time t = l/n.
    """
    return _coordinates(_const(c_plus, "c_plus"), _const(c_minus, "c_minus"))


@functools.lru_cache(maxsize=None)
def _coordinates(cp, cm):
    cov = _covariance_sde(2, "relu", cp, cm, None, None, False)
    V11, V12, V22 = cov.state
    F = [sp.log(V11), sp.log(V22), sp.atanh(V12 / sp.sqrt(V11 * V22))]
    dF, SF = ito(cov, F)
    drift = [_tidy(_fisher(_to_rho(e, V11, V12, V22))) for e in dF]
    Sig = sp.Matrix(3, 3, lambda i, j: _fisher(_to_rho(SF[i, j], V11, V12, V22)))
    return Derivation("covariance_log_artanh", (u1_sym, u2_sym, x_z), cov.params,
                      sp.ImmutableMatrix(drift), sp.ImmutableMatrix(Sig), None, _CORR_UNITS)


# ----------------------------------------------------------------------------------------------
# 3. unshaped ReLU: the q_t SDE
# ----------------------------------------------------------------------------------------------
q_sym = sp.Symbol("q", positive=True)
t_sym = sp.Symbol("t", positive=True)
_n = sp.Symbol("n", positive=True)
_e = sp.Symbol("varepsilon", positive=True)  # 1 - rho


def unshaped_one_step_moments():
    r"""One-step moments of rho for the unshaped ReLU MLP at width n (delta method).

    ``A = (1/n) sum_i M_i``, ``M_i = 2 relu(g_i) relu(g_i)^T``, g_i ~ N(0, [[1, r], [r, 1]]);
    ``rho' = A12/sqrt(A11 A22)``.  With ``mu = E M`` and ``C = Cov M`` (from J, E22, E31)::

        E[rho' | r]   = J(r) + B(r)/(2n) + O(n^-2),   B = sum_ij f_ij(mu) C_ij
        Var[rho' | r] = S(r)/n + O(n^-2),             S = grad f^T C grad f

    (sde.md §3.3: ``B = 9J + 2J E22 - 8 E31``, ``S = 4 E22 + J^2 (3 + 2 E22) - 8 J E31``.)

    Returns
    -------
    (sympy.Expr, sympy.Expr, sympy.Expr)
        ``(J(r), B(r), S(r))`` in the symbol ``rho``.
    """
    return _unshaped_moments()


_Js, _E22s, _E31s = sp.symbols("J E22 E31", real=True)


@functools.lru_cache(maxsize=None)
def _unshaped_moments_generic():
    """B and S as polynomials in the symbols J, E22, E31 (delta method)."""
    Jr, e22, e31 = _Js, _E22s, _E31s
    # M entries (M11, M22, M12): E M = (1, 1, J); Cov via E[relu^4] = 3/2, E22, E31.
    mu = [sp.S.One, sp.S.One, Jr]
    E4 = sp.Rational(3, 2)
    C = sp.Matrix([[4 * E4 - 1, 4 * e22 - 1, 4 * e31 - Jr],
                   [4 * e22 - 1, 4 * E4 - 1, 4 * e31 - Jr],
                   [4 * e31 - Jr, 4 * e31 - Jr, 4 * e22 - Jr ** 2]])
    X, Y, Z = sp.symbols("X Y Z", positive=True)
    f = Z / sp.sqrt(X * Y)
    vars_ = [X, Y, Z]
    at = dict(zip(vars_, mu))
    grad = sp.Matrix([sp.diff(f, v) for v in vars_]).subs(at)
    H = sp.hessian(f, vars_).subs(at)
    B = sp.expand(sum(H[i, j] * C[i, j] for i in range(3) for j in range(3)))
    S = sp.expand((grad.T * C * grad)[0])
    return B, S


@functools.lru_cache(maxsize=None)
def _unshaped_moments():
    B, S = _unshaped_moments_generic()
    sub = {_Js: J(rho), _E22s: E22(rho), _E31s: E31(rho)}
    return J(rho), sp.expand(B.subs(sub)), sp.expand(S.subs(sub))


def _series_near_one(expr, order=3):
    """Puiseux series of expr(rho = 1 - varepsilon) in varepsilon, up to varepsilon**order."""
    e = explicit(expr).subs(rho, 1 - _e)
    return sp.expand(sp.series(e, _e, 0, order).removeO())


def _truncate(expr, order):
    """Drop the terms of a Puiseux polynomial in varepsilon of degree >= order."""
    out = sp.S.Zero
    for term in sp.Add.make_args(sp.expand(expr)):
        if term.as_coeff_exponent(_e)[1] < order:
            out += term
    return out


@functools.lru_cache(maxsize=None)
def _unshaped_series(order=3):
    """Series near rho = 1 (varepsilon = 1 - rho) of 1 - J, B, S, up to varepsilon**order."""
    sJ, s22, s31 = (_series_near_one(f(rho), order) for f in (J, E22, E31))
    B, S = _unshaped_moments_generic()
    sub = {_Js: sJ, _E22s: s22, _E31s: s31}
    return (_truncate(1 - sJ, order), _truncate(B.subs(sub), order),
            _truncate(S.subs(sub), order))


def unshaped_constants():
    r"""``k`` and ``q_star`` of the unshaped ReLU MLP, from the series of J near rho = 1.

    ``1 - J(1 - eps) = eps - k eps^{3/2} + O(eps^{5/2})`` gives ``k = 2 sqrt(2)/(3 pi)``, and
    ``q_star = 4/k^2 = 9 pi^2/2`` is the positive root of ``2q - k q^{3/2}`` (sde.md §1, §3.3;
    [P1] unshaped limit).

    Returns
    -------
    (sympy.Expr, sympy.Expr)
    """
    return _unshaped_constants()


@functools.lru_cache(maxsize=None)
def _unshaped_constants():
    ser = _unshaped_series()[0]
    k = sp.simplify(-ser.coeff(_e ** sp.Rational(3, 2)))
    roots = [r for r in sp.solve(sp.Eq(2 * q_sym - k * q_sym ** sp.Rational(3, 2), 0), q_sym)
             if r.is_positive]
    return k, sp.simplify(roots[0])


def _limit_n(expr):
    """lim_{n -> oo} of a Laurent polynomial in n (checks that positive powers cancel)."""
    parts = sp.collect(sp.expand(expr), _n, evaluate=False)
    out = sp.S.Zero
    for key, coeff in parts.items():
        power = sp.S.Zero if key == 1 else key.as_coeff_exponent(_n)[1]
        if power > 0 and sp.simplify(coeff) != 0:
            raise RuntimeError(f"no limit: term n^{power} * {coeff}")
        if power == 0:
            out += coeff
    return out


def unshaped_q_sde(coordinates="q"):
    r"""The q_t SDE of the unshaped ReLU MLP, ``q_t = l^2 (1 - rho_l)``, ``t = l/n`` ([P1]).

    From the one-step moments (:func:`unshaped_one_step_moments`) expanded near rho = 1
    (eps = 1 - rho = q/(t n)^2), with ``l = t n``, ``dt = 1/n``::

        drift     = lim n E[(l+1)^2 eps_{l+1} - l^2 eps_l]  = (2q - k q^{3/2})/t + 2q
        diffusion = lim n Var[(l+1)^2 eps_{l+1}]           = 8 q^2

    (sde.md §3.3: ``dq = [(2q - k q^1.5)/t + 2q] dt + 2 sqrt(2) q dB``, ``k = 2 sqrt(2)/(3 pi)``,
    ``q_0 = q_star = 9 pi^2/2``.)  The drift is singular at t = 0 (sde.md §5.4).

    Parameters
    ----------
    coordinates : {"q", "log"}
        ``"q"``: state q.  ``"log"``: state ``y = ln q`` (Itô:
        ``dy = [(2 - k e^{y/2})/t - 2] dt + 2 sqrt(2) dB``).

    Returns
    -------
    Derivation
        ``params = (t,)``: time-dependent, ``p[-1]`` is the time t.
    """
    if coordinates not in ("q", "log"):
        raise ValueError(f"coordinates must be 'q' or 'log', got {coordinates!r}")
    return _unshaped_q(coordinates)


@functools.lru_cache(maxsize=None)
def _unshaped_q(coordinates):
    oneJ, Bs, Ss = _unshaped_series()
    l = t_sym * _n
    eps_val = q_sym / l ** 2
    mean_eps_next = (oneJ - Bs / (2 * _n)).subs(_e, eps_val)   # E[1 - rho'] = 1 - J - B/(2n)
    var_eps_next = (Ss / _n).subs(_e, eps_val)
    mean_dq = (l + 1) ** 2 * mean_eps_next - l ** 2 * eps_val
    var_dq = (l + 1) ** 4 * var_eps_next
    drift = _limit_n(_n * mean_dq)
    diff = _limit_n(_n * var_dq)
    drift = sp.expand(sp.simplify(drift))
    diff = sp.simplify(diff)
    units = "t = l/n (layer over width), unshaped ReLU (c = 2) [P1]; singular at t = 0"
    if coordinates == "q":
        return Derivation("unshaped_q", (q_sym,), (t_sym,), sp.ImmutableMatrix([drift]),
                          sp.ImmutableMatrix([[diff]]), t_sym, units,
                          _perfect_square_sqrt(diff, q_sym, 1))
    y = sp.Symbol("y", real=True)
    base = Derivation("unshaped_q", (q_sym,), (t_sym,), sp.ImmutableMatrix([drift]),
                      sp.ImmutableMatrix([[diff]]), t_sym)
    dy, Sy = ito(base, [sp.log(q_sym)])
    dyy = sp.expand(sp.simplify(dy[0].subs(q_sym, sp.exp(y))))
    Syy = sp.simplify(Sy[0, 0].subs(q_sym, sp.exp(y)))
    return Derivation("unshaped_log_q", (y,), (t_sym,), sp.ImmutableMatrix([dyy]),
                      sp.ImmutableMatrix([[Syy]]), t_sym, units, _perfect_square_sqrt(Syy, y, 0))


# ----------------------------------------------------------------------------------------------
# 4. code generation
# ----------------------------------------------------------------------------------------------
@numba.njit(cache=True)
def _h_num(t):
    """h(theta) = sin - theta cos (sde.md §1, §5.2): ``kernels._fastmath.h_of``, its series below
    theta = 1, with 1 - cos theta = 2 sin^2(theta / 2) formed without cancellation."""
    s = math.sin(0.5 * t)
    return h_of(t, 2.0 * s * s)


@numba.njit(cache=True)
def _hs2_num(t):
    """h(theta)/sin(theta)^2; theta/3 + theta^3/... for tiny theta (no 0/0)."""
    if t < 1e-8:
        return t / 3.0
    s = math.sin(t)
    return _h_num(t) / (s * s)


@numba.njit(cache=True)
def _chol_psd(A, n):
    """In-place lower Cholesky factor of the symmetric PSD matrix A[:n, :n]; non-positive pivots
    (singular directions) give zero columns; the strict upper triangle is zeroed."""
    for j in range(n):
        s = A[j, j]
        for k in range(j):
            s -= A[j, k] * A[j, k]
        if s > 0.0:
            d = math.sqrt(s)
            A[j, j] = d
            for i in range(j + 1, n):
                v = A[i, j]
                for k in range(j):
                    v -= A[i, k] * A[j, k]
                A[i, j] = v / d
        else:
            A[j, j] = 0.0
            for i in range(j + 1, n):
                A[i, j] = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            A[i, j] = 0.0


class _Printer(PythonCodePrinter):
    def _print_h(self, e):
        return f"_h_num({self._print(e.args[0])})"

    def _print_hs2(self, e):
        return f"_hs2_num({self._print(e.args[0])})"


def _clip_acos(exprs):
    """Replace every acos(u) by acos(min(1, max(-1, u))) (sde.md §5.1)."""
    return [e.replace(sp.acos, lambda u: sp.acos(sp.Min(1, sp.Max(-1, u))))
            for e in exprs]


def _body(derivation, exprs, targets, printer):
    lines = []
    for i, s in enumerate(derivation.state):
        lines.append(f"    {s} = y_[{i}]")
    for i, s in enumerate(derivation.params):
        lines.append(f"    {s} = p_[{i}]")
    exprs = _clip_acos(exprs)
    repl, red = sp.cse(exprs, symbols=sp.numbered_symbols("_x"), optimizations="basic")
    for s, e in repl:
        lines.append(f"    {s} = {printer.doprint(e)}")
    for t, e in zip(targets, red):
        code = printer.doprint(e)
        lines.append(f"    {t}({code})" if t.endswith("float") else f"    {t}{code}")
    return lines


def _names_ok(d):
    for s in d.state + d.params:
        if not str(s).isidentifier() or str(s).endswith("_") or str(s) == "math":
            raise ValueError(f"symbol name {s} is not usable in generated code")


@functools.lru_cache(maxsize=None)
def _compile(d: Derivation):
    _names_ok(d)
    pr = _Printer({"fully_qualified_modules": True, "inline": True, "allow_unknown_functions": True})
    k = d.dim
    src = []
    src.append("def drift(y_, p_, out_):")
    src += _body(d, list(d.drift), [f"out_[{i}] = " for i in range(k)], pr)
    src.append("")
    src.append("def diffusion(y_, p_, out_):")
    ents, tg = [], []
    for i in range(k):
        for j in range(i, k):
            ents.append(d.diffusion[i, j])
            tg.append(f"out_[{i}, {j}] = ")
    src += _body(d, ents, tg, pr)
    for i in range(k):
        for j in range(i + 1, k):
            src.append(f"    out_[{j}, {i}] = out_[{i}, {j}]")
    src.append("")
    src.append("def diffusion_sqrt(y_, p_, out_):")
    src.append("    diffusion(y_, p_, out_)")
    src.append(f"    _chol_psd(out_, {k})")
    src.append("")
    scalar = k == 1
    if scalar:
        vol = d.volatility if d.volatility is not None else sp.sqrt(d.diffusion[0, 0])
        dvol = sp.simplify(sp.diff(vol, d.state[0]))
        for name, e in (("b", d.drift[0]), ("s", vol), ("ds", dvol)):
            src.append(f"def {name}(y0_, p_):")
            src.append("    y_ = (y0_,)")
            src += _body(d, [e], ["return float"], pr)
            src.append("")
    source = "\n".join(src)
    ns = {"math": math, "_h_num": _h_num, "_hs2_num": _hs2_num, "_chol_psd": _chol_psd}
    exec(compile(source, f"<limits.derive:{d.kind}>", "exec"), ns)
    jit = numba.njit(fastmath=False)
    fns = {}
    # diffusion must be jitted first: diffusion_sqrt calls it
    ns["diffusion"] = fns["diffusion"] = jit(ns["diffusion"])
    for name in ("drift", "diffusion_sqrt") + (("b", "s", "ds") if scalar else ()):
        fns[name] = jit(ns[name])
    # warm up (compile now, for C-contiguous float64 arrays)
    y = np.full(k, 0.5)
    p = np.full(len(d.params), 1.0)
    fns["drift"](y, p, np.empty(k))
    fns["diffusion"](y, p, np.empty((k, k)))
    fns["diffusion_sqrt"](y, p, np.empty((k, k)))
    if scalar:
        for name in ("b", "s", "ds"):
            fns[name](0.5, p)
    return Compiled(fns["drift"], fns["diffusion"], fns["diffusion_sqrt"], d.state, d.params,
                    fns.get("b"), fns.get("s"), fns.get("ds"), source, d.time is not None)
