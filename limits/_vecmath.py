"""Branch-free exp and atan for loops that LLVM should vectorise (numba has no vector math
library here, and a libm call in a loop stops vectorisation; see kernels/_fastmath.py).

* ``vexp``: Cody-Waite reduction ``x = k ln2 + r`` (|r| <= ln2/2), degree-13 Taylor polynomial
  of e^r (truncation < 3e-17 relative), scaling by 2^k through the exponent bits.
  Arguments are clamped to [-708, 709] (no subnormals, no overflow).
* ``vatan01``: Cephes ``atan.c`` (S. L. Moshier, 1989) on [0, 1]: reduction to |x| <= 0.66 by
  atan(x) = pi/4 + atan((x - 1)/(x + 1)), then a rational approximation, with a select instead
  of a branch; it also returns atan(x) - x without cancellation.

Both are tested against ``math`` to a few ulp (tests/limits/test_solve.py).
"""
import math

import numba

from kernels.montecarlo import _MAGIC, _MAGIC_BITS, _f2i, _i2f

_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.0 / math.log(2.0)
_E = [1.0 / math.factorial(k) for k in range(14)]
(_E0, _E1, _E2, _E3, _E4, _E5, _E6, _E7, _E8, _E9, _E10, _E11, _E12, _E13) = _E


@numba.njit(inline="always", cache=True, error_model="numpy")
def vexp(x):
    """e^x for x in [-708, 709] (clamped outside), about 1 ulp."""
    x = min(max(x, -708.0), 709.0)
    # k = round(x / ln 2) by the magic-number trick (vectorises without AVX-512 conversions)
    kb = x * _INV_LN2 + _MAGIC
    k = kb - _MAGIC
    r = (x - k * _LN2_HI) - k * _LN2_LO
    # Estrin's scheme (depth 4 instead of Horner's 13: the exp sits on the dependency chain
    # of the SDE step); terms are added smallest first, so the rounding stays ~1 ulp
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    q = ((_E8 + _E9 * r) + (_E10 + _E11 * r) * r2) + (_E12 + _E13 * r) * r4
    lo = ((_E4 + _E5 * r) + (_E6 + _E7 * r) * r2)
    mid = (_E2 + _E3 * r) * r2
    p = (_E0 + _E1 * r) + (mid + (lo * r4 + q * r8))
    scale = _i2f((_f2i(kb) - _MAGIC_BITS + 1023) << 52)
    return p * scale


# Cephes atan.c
_AP0, _AP1, _AP2, _AP3, _AP4 = (-8.750608600031904122785e-01, -1.615753718733365076637e+01,
                                -7.500855792314704667340e+01, -1.228866684490136173410e+02,
                                -6.485021904942025371773e+01)
_AQ0, _AQ1, _AQ2, _AQ3, _AQ4 = (2.485846490142306297962e+01, 1.650270098316988542046e+02,
                                4.328810604912902668951e+02, 4.853903996359136964868e+02,
                                1.945506571482613964425e+02)
_MOREBITS = 6.123233995736765886130e-17


@numba.njit(inline="always", cache=True, error_model="numpy")
def vatan01(x):
    """``(atan(x), atan(x) - x)`` for 0 <= x <= 1 (Cephes, branch-free), the second without the
    cancellation of ``atan(x) - x = -x^3/3 + ...`` for small x (it is the rational term itself)."""
    mid = x > 0.66
    xr = (x - 1.0) / (x + 1.0) if mid else x
    z = xr * xr
    num = (((_AP0 * z + _AP1) * z + _AP2) * z + _AP3) * z + _AP4
    den = ((((z + _AQ0) * z + _AQ1) * z + _AQ2) * z + _AQ3) * z + _AQ4
    rat = xr * (z * num / den)
    at_mid = 0.25 * math.pi + (rat + xr + 0.5 * _MOREBITS)
    at = at_mid if mid else x + rat
    tail = at_mid - x if mid else rat
    return at, tail
