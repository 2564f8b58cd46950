"""Branch-free, vectorisable elementary functions for the numba hot loops.

numba has no vector math library here (no SVML), so ``math.acos`` / ``math.asin`` inside a loop
stop LLVM from vectorising it.  The rational approximations below are the classic Cephes ones
(S. L. Moshier, *Methods and Programs for Mathematical Functions*, 1989; ``asin.c``), evaluated
with selects instead of branches so a loop over them vectorises.  Their peak relative error is
about 1e-16 (tested against ``math.acos`` in ``tests/kernels/test_fastmath.py``).

All functions work on gaps rather than on ``rho`` itself: near rho = 1 the gap ``1 - rho`` carries
all the information (theory/kernels.md §2.4), and ``arccos(1 - eps)`` is computed from ``eps``
without ever forming ``1 - eps``.  The engine stores a *signed gap* ``z``: ``z = 1 - rho`` when that
is the smaller gap and ``z = -(1 + rho)`` otherwise, so that both ends, rho -> 1 and rho -> -1
(antipodal inputs), keep their relative accuracy.  The sign is read with ``copysign`` so that an
exactly antipodal pair is ``z = -0.0`` (and an exactly parallel one ``z = +0.0``).
"""
import math

import numba
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

# Cephes asin.c: asin(x) = x + x^3 P(x^2)/Q(x^2), 0 <= x <= 0.625
_P0, _P1, _P2, _P3, _P4, _P5 = (
    4.253011369004428248960e-3, -6.019598008014123785661e-1, 5.444622390564711410273e0,
    -1.626247967210700244449e1, 1.956261983317594739197e1, -8.198089802484824371615e0)
_Q1, _Q2, _Q3, _Q4, _Q5 = (
    -1.474091372988853791896e1, 7.049610280856842141659e1, -1.471791292232726029859e2,
    1.395105614657485689735e2, -4.918853881490881290097e1)
# Cephes asin.c: asin(1 - z) = pi/2 - sqrt(2 z) (1 + z R(z)/S(z)), 0 <= z <= 0.375
_R0, _R1, _R2, _R3, _R4 = (
    2.967721961301243206100e-3, -5.634242780008963776856e-1, 6.968710824104713396794e0,
    -2.556901049652824852289e1, 2.853665548261061424989e1)
_S1, _S2, _S3, _S4 = (
    -2.194779531642920639778e1, 1.470656354026814941758e2, -3.838770957603691357202e2,
    3.424398657913078477438e2)

_PI = math.pi
_PIO2 = math.pi / 2

# h(theta) = sin(theta) - theta cos(theta) = sum_{j>=1} (-1)^(j+1) 2j theta^(2j+1) / (2j+1)!
# (theory/sde.md §1).  Below theta = 1 the series (10 terms, relative error < 1e-16) replaces
# the direct formula, which cancels like theta^3 against theta; above, the direct formula loses
# at most ~3 ulp.  (A 16-term series over all of [0, pi] avoids the square root but measured
# slower in the engine's loop.)
_HC1 = 0.3333333333333333
_HC2 = -0.03333333333333333
_HC3 = 0.0011904761904761906
_HC4 = -2.2045855379188714e-05
_HC5 = 2.505210838544172e-07
_HC6 = -1.9270852604185937e-09
_HC7 = 1.0706029224547743e-11
_HC8 = -4.498331606952833e-14
_HC9 = 1.4797143443923793e-16
_HC10 = -3.9145882126782523e-19
_H_SERIES_MAX = 1.0


@numba.njit(inline="always", cache=True, error_model="numpy")
def acos1m_unit(a):
    """``arccos(1 - a)`` for ``a`` in [0, 1] (the magnitude of a signed gap): ``acos1m`` without
    the branch for rho < 0, which the signed gap never needs."""
    rho = 1.0 - a
    rn = (((_R0 * a + _R1) * a + _R2) * a + _R3) * a + _R4
    rd = (((a + _S1) * a + _S2) * a + _S3) * a + _S4
    x = rho * rho
    pn = ((((_P0 * x + _P1) * x + _P2) * x + _P3) * x + _P4) * x + _P5
    pd = ((((x + _Q1) * x + _Q2) * x + _Q3) * x + _Q4) * x + _Q5
    near = a < 0.375
    ratio = (a * rn if near else x * pn) / (rd if near else pd)
    s = math.sqrt(2.0 * a)
    return (s + s * ratio) if near else (_PIO2 - (rho + rho * ratio))


@numba.njit(inline="always", cache=True, error_model="numpy")
def acos1m(eps):
    """``arccos(1 - eps)`` for ``eps`` in [0, 2], accurate in relative terms as eps -> 0."""
    return acos1m_unit(eps) if eps <= 1.0 else _PI - acos1m_unit(2.0 - eps)


@numba.njit(inline="always", cache=True, error_model="numpy")
def asin_fast(x):
    """``arcsin(x)`` for x in [-1, 1], vectorisable (Cephes rational approximations)."""
    a = abs(x)
    z = 1.0 - a
    rn = (((_R0 * z + _R1) * z + _R2) * z + _R3) * z + _R4
    rd = (((z + _S1) * z + _S2) * z + _S3) * z + _S4
    xx = a * a
    pn = ((((_P0 * xx + _P1) * xx + _P2) * xx + _P3) * xx + _P4) * xx + _P5
    pd = ((((xx + _Q1) * xx + _Q2) * xx + _Q3) * xx + _Q4) * xx + _Q5
    near = z < 0.375
    ratio = (z * rn if near else xx * pn) / (rd if near else pd)
    s = math.sqrt(2.0 * z)
    r = (_PIO2 - (s + s * ratio)) if near else (a + a * ratio)
    return r if x >= 0.0 else -r


@numba.njit(inline="always", cache=True, error_model="numpy")
def h_of(theta, eps):
    """``h(theta) = sin(theta) - theta cos(theta)`` given theta and eps = 1 - cos(theta)."""
    t2 = theta * theta
    series = theta * t2 * (_HC1 + t2 * (_HC2 + t2 * (_HC3 + t2 * (_HC4 + t2 * (_HC5 + t2 * (
        _HC6 + t2 * (_HC7 + t2 * (_HC8 + t2 * (_HC9 + t2 * _HC10)))))))))
    direct = math.sqrt(eps * (2.0 - eps)) - theta * (1.0 - eps)
    return series if theta < _H_SERIES_MAX else direct


@numba.njit(inline="always", cache=True, error_model="numpy")
def near_minus_one(z):
    """True if the signed gap z stores 1 + rho (sign bit set, -0.0 included)."""
    return math.copysign(1.0, z) < 0.0


@numba.njit(inline="always", cache=True, error_model="numpy")
def rho_of(z):
    """rho from the signed gap z."""
    return -1.0 - z if near_minus_one(z) else 1.0 - z


@numba.njit(inline="always", cache=True, error_model="numpy")
def gaps_of(z):
    """(1 - rho, 1 + rho) from the signed gap z; the smaller one is exact."""
    neg = near_minus_one(z)
    return (2.0 + z if neg else z), (-z if neg else 2.0 - z)


@numba.njit(inline="always", cache=True, error_model="numpy")
def signed_gap(e, w):
    """The signed gap from (1 - rho, 1 + rho) >= 0: the smaller one, negated if it is 1 + rho."""
    return e if e <= w else -w


@intrinsic
def fma(typingctx, x, y, z):
    """``x * y + z`` with one rounding (LLVM ``llvm.fma.f64``; a vector FMA instruction in a
    vectorised loop, the same result in its scalar remainder).  Explicit FMAs, unlike
    ``fastmath={"contract"}``, do not depend on how LLVM happens to schedule a loop, so an entry
    gets the same bits wherever it sits in the loop (tiles of a kernel equal the whole)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        d = ir.DoubleType()
        fn = builder.module.declare_intrinsic("llvm.fma", [d], ir.FunctionType(d, [d, d, d]))
        return builder.call(fn, args)
    return sig, codegen


# Polynomials in y = 2 a - 1 (a in [0, 1]), Chebyshev interpolants (mpmath, 60 digits) of
#   F(a) = arccos(1 - a) / sqrt(2 a)                (degree 18)
#   G(a) = h(arccos(1 - a)) / (a sqrt(2 a))          (degree 17)
# both analytic on [0, 1] (nearest singularity a = 2) and nearly constant (F in [1, 1.111],
# G in [2/3, 0.7072]), so Horner in y is well conditioned: theta and h(theta) come from one
# square root and no division, to relative error < 5e-16 (tests/kernels/test_fastmath.py).
_FC = (1.0471975511965979, 0.05375149359132718, 0.007798902238973735, 0.001519668539582746,
       0.0003408637234163692, 8.302317819140265e-05, 2.134555260606702e-05,
       5.701781075076665e-06, 1.5669625983394028e-06, 4.402075904513191e-07,
       1.2584618618630428e-07, 3.646596273974707e-08, 1.0699801762268182e-08,
       3.2125465398641487e-09, 9.606986257778525e-10, 2.514428331625947e-10,
       7.597606552881001e-11, 4.207679353989645e-11, 1.294087904918515e-11)
_GC = (0.6848532563722796, 0.019917666638178427, 0.0019786634979398186,
       0.0002911933320605566, 5.232463634754999e-05, 1.0615644724132274e-05,
       2.3369143732289924e-06, 5.455275951165459e-07, 1.331006417827932e-07,
       3.361303049032891e-08, 8.723940712158392e-09, 2.316634996469963e-09,
       6.310266253435969e-10, 1.7359452479010136e-10, 4.4343667241030216e-11,
       1.2468194494137464e-11, 5.714155527145124e-12, 1.6539899795965228e-12)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _poly_f(y):
    """Horner for F, written out (explicit FMAs)."""
    r = fma(_FC[18], y, _FC[17])
    r = fma(r, y, _FC[16])
    r = fma(r, y, _FC[15])
    r = fma(r, y, _FC[14])
    r = fma(r, y, _FC[13])
    r = fma(r, y, _FC[12])
    r = fma(r, y, _FC[11])
    r = fma(r, y, _FC[10])
    r = fma(r, y, _FC[9])
    r = fma(r, y, _FC[8])
    r = fma(r, y, _FC[7])
    r = fma(r, y, _FC[6])
    r = fma(r, y, _FC[5])
    r = fma(r, y, _FC[4])
    r = fma(r, y, _FC[3])
    r = fma(r, y, _FC[2])
    r = fma(r, y, _FC[1])
    r = fma(r, y, _FC[0])
    return r


@numba.njit(inline="always", cache=True, error_model="numpy")
def _poly_g(y):
    r = fma(_GC[17], y, _GC[16])
    r = fma(r, y, _GC[15])
    r = fma(r, y, _GC[14])
    r = fma(r, y, _GC[13])
    r = fma(r, y, _GC[12])
    r = fma(r, y, _GC[11])
    r = fma(r, y, _GC[10])
    r = fma(r, y, _GC[9])
    r = fma(r, y, _GC[8])
    r = fma(r, y, _GC[7])
    r = fma(r, y, _GC[6])
    r = fma(r, y, _GC[5])
    r = fma(r, y, _GC[4])
    r = fma(r, y, _GC[3])
    r = fma(r, y, _GC[2])
    r = fma(r, y, _GC[1])
    r = fma(r, y, _GC[0])
    return r


@numba.njit(inline="always", cache=True, error_model="numpy")
def theta_unit(a, sa):
    """``arccos(1 - a)`` for a in [0, 1] given ``sa = sqrt(2 a)``: sa F(a), no division."""
    return sa * _poly_f(2.0 * a - 1.0)


@numba.njit(inline="always", cache=True, error_model="numpy")
def h_unit(a, sa):
    """``h(arccos(1 - a)) = sin(theta) - theta cos(theta)`` for a in [0, 1] given
    ``sa = sqrt(2 a)``: (sa a) G(a), accurate in relative terms as a -> 0 (h ~ theta^3 / 3)."""
    return (sa * a) * _poly_g(2.0 * a - 1.0)


# arcsin without a division (the erf layer loop, ``kernels._smooth``).  With m in [0, 1/sqrt 2]
# and t = m^2, asin(m) = m + m t A(t), A(t) = (asin(sqrt t) - sqrt t) / t^(3/2) analytic on
# [0, 1/2] (nearest singularity t = 1) and nearly constant (A in [1/6, 0.2215]): its Chebyshev
# interpolant of degree 18 in y = 4 t - 1 (mpmath, 60 digits; truncation error 9e-18 relative
# in asin), written in powers of y.  Every x in [0, 1] is served by m = min(x, sqrt(1 - x^2)) <=
# 1/sqrt 2, using asin(x) = pi/2 - asin(sqrt(1 - x^2)) above 1/sqrt 2, so a caller that needs
# sqrt(1 - x^2) anyway (the erf NTK map) gets arcsin for one polynomial and no extra root.
_AC = (0.188790204786391, 0.026215769578916855, 0.004979839376978085, 0.0010988347814059787,
       0.00026462011225949816, 6.747259957191366e-05, 1.79096108523544e-05,
       4.89752092154259e-06, 1.3703294718150211e-06, 3.904685044321573e-07,
       1.1291624031305978e-07, 3.3030046611996035e-08, 9.769160437076693e-09,
       2.954201159199072e-09, 8.885933439123378e-10, 2.3313187507479965e-10,
       7.077238704044044e-11, 3.9557843950766e-11, 1.2205672245974605e-11)
_PIO2_HI = 1.5707963267948966               # pi/2 = _PIO2_HI + _PIO2_LO (fdlibm)
_PIO2_LO = 6.123233995736766e-17


@numba.njit(inline="always", cache=True, error_model="numpy")
def _poly_asin(y):
    """Horner for A, written out (explicit FMAs)."""
    r = fma(_AC[18], y, _AC[17])
    r = fma(r, y, _AC[16])
    r = fma(r, y, _AC[15])
    r = fma(r, y, _AC[14])
    r = fma(r, y, _AC[13])
    r = fma(r, y, _AC[12])
    r = fma(r, y, _AC[11])
    r = fma(r, y, _AC[10])
    r = fma(r, y, _AC[9])
    r = fma(r, y, _AC[8])
    r = fma(r, y, _AC[7])
    r = fma(r, y, _AC[6])
    r = fma(r, y, _AC[5])
    r = fma(r, y, _AC[4])
    r = fma(r, y, _AC[3])
    r = fma(r, y, _AC[2])
    r = fma(r, y, _AC[1])
    r = fma(r, y, _AC[0])
    return r


@numba.njit(inline="always", cache=True, error_model="numpy")
def asin_unit(x, s):
    """``arcsin(x)`` for x in [0, 1] given ``s = sqrt(1 - x^2)``: one polynomial, no division,
    no branch (selects), so a loop over it vectorises; within 2 ulp of ``math.asin`` when s is
    the correctly rounded root of ``fma(-x, x, 1)`` (tests/kernels/test_fastmath.py)."""
    low = x <= s
    m = x if low else s
    p = fma(m * (m * m), _poly_asin(fma(4.0 * m, m, -1.0)), m)     # asin(m)
    return p if low else (_PIO2_HI - p) + _PIO2_LO


@numba.njit(inline="always", cache=True, error_model="numpy")
def asin_poly(x):
    """``arcsin(x)`` for x in [-1, 1] by ``asin_unit`` (odd: asin_poly(-x) = -asin_poly(x))."""
    ax = abs(x)
    r = asin_unit(ax, math.sqrt(fma(-ax, ax, 1.0)))
    return math.copysign(r, x)
