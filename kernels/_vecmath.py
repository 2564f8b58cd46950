"""Branch-free vector math for loops that LLVM should vectorise (numba has no vector math
library here, and a libm call in a loop stops vectorisation; the scalar special functions of the
kernel engine, arccos / arcsin / h(theta), are in kernels/_fastmath.py).

* ``_f2i`` / ``_i2f``: bit casts between float64 and int64, and the magic-number integer <-> float
  conversions built on them (below), used here and by the normal generator (kernels/_random.py).

* ``vexp``: Cody-Waite reduction ``x = k ln2 + r`` (|r| <= ln2/2), degree-11 Chebyshev
  approximation of e^r on that interval (``mpmath.chebyfit``; error 3.2e-18, so the result is
  within about 1 ulp), scaling by 2^k through the exponent bits.  Arguments are clamped to
  [-708, 709] (no subnormals, no overflow); ``_exp_core_k`` is the unclamped kernel for callers
  whose argument is known to be in range.
* ``atan_tail``: ``(P(s), Q(s))`` with ``P/Q = (e - atan e) / e^3``, s = e^2 in [0, 1], a
  rational approximation of degree (6, 6) (positive coefficients, so no cancellation; relative
  error 5e-18 in exact arithmetic, about 2 ulp in floating point).  It gives atan(e) =
  e - e^3 P/Q and the tail atan(e) - e without cancellation, and leaves the one division to the
  caller, which can merge it with its own (the correlation drift needs one division in all).
  The coefficients come from ``_fit_atan_tail`` (mpmath), kept here to regenerate them.

Both are tested against mpmath / ``math`` (tests/limits/test_solve.py).  Used by the SDE
models (limits/sde.py); the Box-Muller log / sincos of the generator are in kernels/_random.py.

Constants as arguments
----------------------
``_exp_core_k`` and ``atan_tail_k`` take their constants as a tuple argument (``EXP_K``,
``ATAN_TAIL_K``); ``vexp`` and ``atan_tail`` pass the module tuple.  Hot loops pass the tuple as a
*runtime* argument of the compiled kernel: LLVM then keeps the broadcast constants in (spilled)
vector registers and folds them into the FMAs as memory operands, instead of rematerialising
each one inside the loop by an absolute-address move plus a broadcast load (numba's JIT uses
the large code model), which on AVX2 with its 16 vector registers cost about 20% of the
correlation solver's time (measured, one Zen 3 core).  The numbers are bit-identical.
"""
import math

import numba
from numba import types
from numba.extending import intrinsic

__all__ = ["vexp", "atan_tail", "atan_tail_k", "EXP_K", "ATAN_TAIL_K"]


@intrinsic
def _f2i(typingctx, x):
    """Reinterpret the bits of a float64 as an int64."""
    if x != types.float64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return types.int64(types.float64), codegen


@intrinsic
def _i2f(typingctx, x):
    """Reinterpret the bits of an int64 as a float64."""
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return types.float64(types.int64), codegen


# Integer <-> float conversions by the "magic number" trick.  AVX2 has no packed int64 <-> double
# conversion (that is AVX-512DQ), so ``float(int64)`` / ``int64(float)`` in a loop are done one
# lane at a time; the generator (kernels/_random.py) and ``vexp`` below convert instead with only
# 64-bit integer add/and/or/shift and float add, which vectorise on every x86-64 target and give
# bit-identical results: float(e) = bits(e + _MAGIC_BITS) - _MAGIC for |e| < 2^51, and
# round(x) = bits(x + _MAGIC) - _MAGIC_BITS.
_MAGIC = 6755399441055744.0                 # 1.5 * 2^52
_MAGIC_BITS = 0x4338000000000000            # its bit pattern
_TWO52 = 4503599627370496.0                 # 2^52, bits 0x4330000000000000
_TWO84 = 19342813113834066795298816.0       # 2^84, bits 0x4530000000000000

# ln 2 split into a short head and a tail (fdlibm e_log.c; also BM_K[0], BM_K[1] in _random)
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_INV_LN2 = 1.0 / math.log(2.0)

# e^r on [-ln2/2, ln2/2]: mpmath.chebyfit(exp, [-ln2/2, ln2/2], 12) (degree 11, error 3.2e-18),
# coefficients of r^0 .. r^11, then the reduction constants
EXP_K = (1.0, 1.0, 0.50000000000000183855, 0.16666666666666680806, 0.041666666666488095495,
         0.0083333333333196006109, 0.0013888888952314774652, 0.00019841269890047113707,
         0.000024801485482328492419, 2.7557240918578969823e-6, 2.7632639639041029749e-7,
         2.5110037605963777712e-8) + (_LN2_HI, _LN2_LO, _INV_LN2, _MAGIC)

# (e - atan e) / e^3 = P(s) / Q(s), s = e^2 in [0, 1]: _fit_atan_tail(6, 6)
_ATAN_P = (0.3333333333333333316525, 0.8193369003041019162177, 0.7274424499146527257372,
           0.282360563010594264615, 0.04561034831547186753914, 0.002269640613087243285778,
           0.000002506627016811031718223)
_ATAN_Q = (1.0, 3.058010700912303335529, 3.588562341720100508169, 2.022976412714675423101,
           0.5592712309368735612596, 0.06833552789941724453789, 0.00264259980299752216571)
ATAN_TAIL_K = _ATAN_P + _ATAN_Q


@numba.njit(inline="always", cache=True, error_model="numpy")
def _exp_core_k(x, k):
    """e^x for x in [-708, 709] (not checked), about 1 ulp; ``k`` = ``EXP_K``."""
    # n = round(x / ln 2) by the magic-number trick (vectorises without AVX-512 conversions)
    nb = x * k[14] + k[15]
    n = nb - k[15]
    r = (x - n * k[12]) - n * k[13]
    # Estrin's scheme (depth 4 instead of Horner's 11: the exp sits on the dependency chain
    # of the SDE step); terms are added smallest first, so the rounding stays ~1 ulp
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    hi = (k[8] + k[9] * r) + (k[10] + k[11] * r) * r2
    lo = (k[4] + k[5] * r) + (k[6] + k[7] * r) * r2
    mid = (k[2] + k[3] * r) * r2
    p = (k[0] + k[1] * r) + (mid + (lo * r4 + hi * r8))
    scale = _i2f((_f2i(nb) - _MAGIC_BITS + 1023) << 52)
    return p * scale


@numba.njit(inline="always", cache=True, error_model="numpy")
def vexp(x):
    """e^x for x in [-708, 709] (clamped outside), about 1 ulp."""
    return _exp_core_k(min(max(x, -708.0), 709.0), EXP_K)


@numba.njit(inline="always", cache=True, error_model="numpy")
def atan_tail_k(s, k):
    """``(P, Q)`` with ``P / Q = (e - atan e) / e^3`` for s = e^2 in [0, 1] (Estrin's scheme,
    both positive); ``k`` = ``ATAN_TAIL_K``."""
    s2 = s * s
    s4 = s2 * s2
    p = ((k[0] + k[1] * s) + (k[2] + k[3] * s) * s2) + ((k[4] + k[5] * s) + k[6] * s2) * s4
    q = ((k[7] + k[8] * s) + (k[9] + k[10] * s) * s2) + ((k[11] + k[12] * s) + k[13] * s2) * s4
    return p, q


@numba.njit(inline="always", cache=True, error_model="numpy")
def atan_tail(s):
    """``(P, Q)`` with ``P / Q = (e - atan e) / e^3`` for s = e^2 in [0, 1]."""
    return atan_tail_k(s, ATAN_TAIL_K)


def _fit_atan_tail(m=6, n=6, nodes=400, iterations=8, dps=50):
    """Coefficients of P (degree m) and Q (degree n, Q(0) = 1) for ``(e - atan e)/e^3 = P/Q`` on
    s = e^2 in [0, 1], by linearised least squares of the relative error at Chebyshev nodes in
    ``dps``-digit arithmetic, reweighted by 1/Q of the previous iterate (Loeb's / Sanathanan-
    Koerner iteration; near-minimax).  Returns two lists of mpf."""
    import mpmath as mp
    with mp.workdps(dps):
        def f(s):
            if s == 0:
                return mp.mpf(1) / 3
            e = mp.sqrt(s)
            return (e - mp.atan(e)) / e ** 3

        xs = [(1 - mp.cos(mp.pi * (j + mp.mpf(1) / 2) / nodes)) / 2 for j in range(nodes)]
        fs = [f(x) for x in xs]
        qprev = [mp.mpf(1)] * nodes
        for _ in range(iterations):
            rows, rhs = [], []
            for x, fx, qp in zip(xs, fs, qprev):
                w = 1 / (fx * qp)
                rows.append([w * x ** j for j in range(m + 1)]
                            + [-w * fx * x ** j for j in range(1, n + 1)])
                rhs.append(w * fx)
            sol = mp.qr_solve(mp.matrix(rows), mp.matrix(rhs))[0]
            p = [sol[j] for j in range(m + 1)]
            q = [mp.mpf(1)] + [sol[m + j] for j in range(1, n + 1)]
            qprev = [mp.polyval(q[::-1], x) for x in xs]
        return p, q
