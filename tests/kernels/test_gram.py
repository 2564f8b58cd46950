"""The input Gram product (kernels/_gram.py): every entry is ``acc = +0.0; acc = fma(x1_ik,
x2_jk, acc)`` for k ascending, bit for bit.

Two references: an exact fused multiply-add in rational arithmetic (``fractions.Fraction``,
correctly rounded to nearest-even by Python's int division; Python 3.11 has no ``math.fma``) for
small shapes, and a copy of the earlier loop kernel (before the register-blocked micro-kernel)
for shapes up to d = 784, so a change of the operation sequence anywhere (first term, remainder
of d, edge tiles, the symmetric triangle, the serial and parallel paths) shows up as a bit
difference.
"""
import math
from fractions import Fraction

import numba
import numpy as np
import pytest
from numba import prange

from kernels import _gram


def _fma(a, b, c):
    """Correctly rounded a * b + c (finite inputs and result), IEEE signs of zero."""
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    if exact != 0:
        return float(exact)
    p_neg = (math.copysign(1.0, a) * math.copysign(1.0, b)) < 0 if a * b == 0 else a * b < 0
    c_neg = math.copysign(1.0, c) < 0
    if a * b == 0 and c == 0 and p_neg and c_neg:
        return -0.0
    return 0.0


def _fma_gram(x1, x2):
    out = np.empty((x1.shape[0], x2.shape[0]))
    for i in range(x1.shape[0]):
        for j in range(x2.shape[0]):
            acc = 0.0
            for k in range(x1.shape[1]):
                acc = _fma(float(x1[i, k]), float(x2[j, k]), acc)
            out[i, j] = acc
    return out


# ---- the earlier kernel, verbatim (kernels/_gram.py before the micro-kernel) ---------------
_JB = 64


@numba.njit(parallel=True, error_model="numpy", fastmath={"contract"})
def _old_kernel(a, bT, sym, out):
    n1, d = a.shape
    n2 = bT.shape[1]
    ng = (n1 + 3) // 4
    ntask = (ng + 1) // 2 if sym else ng
    for ptask in prange(ntask):
        task = np.int64(ptask)
        for half in range(2 if sym else 1):
            g = task if half == 0 else ng - 1 - task
            if half == 1 and g == task:
                continue
            i0 = g * 4
            i1 = min(i0 + 4, n1)
            for j0 in range(i0 if sym else 0, n2, _JB):
                j1 = min(j0 + _JB, n2)
                nb = j1 - j0
                if i1 - i0 == 4:
                    o0 = out[i0, j0:j1]
                    o1 = out[i0 + 1, j0:j1]
                    o2 = out[i0 + 2, j0:j1]
                    o3 = out[i0 + 3, j0:j1]
                    for j in range(nb):
                        o0[j] = 0.0
                        o1[j] = 0.0
                        o2[j] = 0.0
                        o3[j] = 0.0
                    d4 = d - d % 4
                    for k in range(0, d4, 4):
                        b0 = bT[k, j0:j1]
                        b1 = bT[k + 1, j0:j1]
                        b2 = bT[k + 2, j0:j1]
                        b3 = bT[k + 3, j0:j1]
                        a00, a01, a02, a03 = a[i0, k], a[i0, k + 1], a[i0, k + 2], a[i0, k + 3]
                        a10, a11, a12, a13 = (a[i0 + 1, k], a[i0 + 1, k + 1], a[i0 + 1, k + 2],
                                              a[i0 + 1, k + 3])
                        a20, a21, a22, a23 = (a[i0 + 2, k], a[i0 + 2, k + 1], a[i0 + 2, k + 2],
                                              a[i0 + 2, k + 3])
                        a30, a31, a32, a33 = (a[i0 + 3, k], a[i0 + 3, k + 1], a[i0 + 3, k + 2],
                                              a[i0 + 3, k + 3])
                        for j in range(nb):
                            x0 = b0[j]
                            x1 = b1[j]
                            x2 = b2[j]
                            x3 = b3[j]
                            t = o0[j]
                            t += a00 * x0
                            t += a01 * x1
                            t += a02 * x2
                            t += a03 * x3
                            o0[j] = t
                            t = o1[j]
                            t += a10 * x0
                            t += a11 * x1
                            t += a12 * x2
                            t += a13 * x3
                            o1[j] = t
                            t = o2[j]
                            t += a20 * x0
                            t += a21 * x1
                            t += a22 * x2
                            t += a23 * x3
                            o2[j] = t
                            t = o3[j]
                            t += a30 * x0
                            t += a31 * x1
                            t += a32 * x2
                            t += a33 * x3
                            o3[j] = t
                    for k in range(d4, d):
                        b = bT[k, j0:j1]
                        a0 = a[i0, k]
                        a1 = a[i0 + 1, k]
                        a2 = a[i0 + 2, k]
                        a3 = a[i0 + 3, k]
                        for j in range(nb):
                            bj = b[j]
                            o0[j] += a0 * bj
                            o1[j] += a1 * bj
                            o2[j] += a2 * bj
                            o3[j] += a3 * bj
                else:
                    for i in range(i0, i1):
                        o = out[i, j0:j1]
                        for j in range(nb):
                            o[j] = 0.0
                        for k in range(d):
                            b = bT[k, j0:j1]
                            ai = a[i, k]
                            for j in range(nb):
                                o[j] += ai * b[j]


@numba.njit(parallel=True)
def _old_mirror(a):
    n = a.shape[0]
    for pi in prange(n):
        i = np.int64(pi)
        for j in range(i):
            a[i, j] = a[j, i]


def old_gram(x1, x2=None):
    sym = x2 is None
    bT = np.ascontiguousarray((x1 if sym else x2).T)
    out = np.empty((x1.shape[0], bT.shape[1]))
    _old_kernel(np.ascontiguousarray(x1), bT, sym, out)
    if sym:
        _old_mirror(out)
    return out


def _bits(a):
    return np.ascontiguousarray(a).view(np.int64)


def _assert_bits(got, ref):
    assert got.shape == ref.shape
    bad = _bits(got) != _bits(ref)
    assert not bad.any(), f"{bad.sum()} entries differ, first at {np.argwhere(bad)[0]}"


def _data(n, d, seed):
    """Normal entries of mixed magnitude (sums with heavy cancellation and rounding)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * np.exp(rng.uniform(-8, 8, (n, d)))


# ---- the exact fma reference ---------------------------------------------------------------
@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 7, 8, 9, 16, 31])
@pytest.mark.parametrize("n1,n2", [(1, 1), (5, 3), (9, 13)])
def test_fma_sequence_exact(n1, n2, d):
    x1, x2 = _data(n1, d, d), _data(n2, d, d + 100)
    _assert_bits(_gram.gram(x1, x2), _fma_gram(x1, x2))
    _assert_bits(_gram.gram(x1), _fma_gram(x1, x1))


def test_fma_sequence_exact_d784():
    x1, x2 = _data(5, 784, 1), _data(11, 784, 2)
    _assert_bits(_gram.gram(x1, x2), _fma_gram(x1, x2))


def test_fused_not_separately_rounded():
    # (1 + 2^-30)^2 = 1 + 2^-29 + 2^-60: the 2^-60 survives only inside a fused multiply-add
    e = 2.0 ** -30
    x1 = np.array([[1.0, 1.0 + e]])
    x2 = np.array([[-(1.0 + 2 * e), 1.0 + e]])
    assert _gram.gram(x1, x2)[0, 0] == 2.0 ** -60     # unfused: (1 + 2^-29) - (1 + 2^-29) = 0
    assert _gram.gram(x1, x2)[0, 0] == _fma_gram(x1, x2)[0, 0]


def test_signed_zero_and_zero_inputs():
    x1 = np.array([[-0.0, 0.0], [-1.0, -0.0], [0.0, 0.0]])
    x2 = np.array([[0.0, -0.0], [1.0, 0.0]])
    g = _gram.gram(x1, x2)
    _assert_bits(g, _fma_gram(x1, x2))
    assert (g == 0).sum() == 5 and not np.signbit(g[g == 0]).any()   # -0 + (+0) = +0


# ---- the earlier kernel --------------------------------------------------------------------
@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 7, 16, 31, 784])
@pytest.mark.parametrize("n1,n2", [(1, 1), (3, 70), (37, 53), (131, 67), (261, 9)])
def test_equals_earlier_kernel(n1, n2, d):
    x1, x2 = _data(n1, d, n1 + d), _data(n2, d, n2 + d + 1)
    _assert_bits(_gram.gram(x1, x2), old_gram(x1, x2))
    _assert_bits(_gram.gram(x1), old_gram(x1))


@pytest.mark.parametrize("n,d", [(500, 16), (500, 32), (613, 784), (1031, 5)])
def test_equals_earlier_kernel_parallel_sizes(n, d):
    x = _data(n, d, 7)
    _assert_bits(_gram.gram(x), old_gram(x))
    _assert_bits(_gram.gram(x[:n - 11], x[5:]), old_gram(x[:n - 11], x[5:]))


@pytest.mark.parametrize("work", [0, 1 << 60])
def test_serial_and_parallel_paths_agree(monkeypatch, work):
    monkeypatch.setattr(_gram, "_SERIAL_WORK", work)       # 0: always parallel; huge: serial
    x = _data(203, 41, 3)
    _assert_bits(_gram.gram(x), old_gram(x))
    _assert_bits(_gram.gram(x, x[17:150]), old_gram(x, x[17:150]))


def test_symmetric_and_exact_diagonal():
    x = _data(77, 13, 5)
    g = _gram.gram(x)
    _assert_bits(g, g.T)
    _assert_bits(np.diag(g).copy(), _gram.row_dots(x))
    _assert_bits(g, _gram.gram(x, x))


def test_tiles_equal_the_whole():
    x = _data(150, 30, 9)
    full = _gram.gram(x)
    for a, b, c, e in [(0, 7, 3, 150), (13, 94, 41, 42), (100, 150, 0, 150), (5, 6, 5, 6)]:
        _assert_bits(_gram.gram(x[a:b], x[c:e]), full[a:b, c:e])


def test_non_contiguous_and_other_dtypes():
    base = _data(60, 40, 11)
    x1 = base[::2, ::3]                  # strided view
    x2 = np.asfortranarray(base[5:40, ::3])
    ref = _fma_gram(x1, x2)
    _assert_bits(_gram.gram(x1, x2), ref)
    _assert_bits(_gram.gram(x1), _fma_gram(x1, x1))
    i = np.arange(24).reshape(6, 4)      # integers: converted exactly to float64
    _assert_bits(_gram.gram(i), _fma_gram(i.astype(float), i.astype(float)))


def test_non_finite_like_earlier_kernel():
    x = _data(21, 9, 4)
    x[3, 2] = np.inf
    x[8, 0] = -np.inf
    x[11, 5] = np.nan
    np.testing.assert_array_equal(_gram.gram(x), old_gram(x))
    np.testing.assert_array_equal(_gram.gram(x, x[::-1]), old_gram(x, x[::-1]))


@pytest.mark.parametrize("shape1,shape2", [((0, 5), (4, 5)), ((4, 0), (3, 0)), ((3, 5), (0, 5))])
def test_empty(shape1, shape2):
    x1, x2 = np.ones(shape1), np.ones(shape2)
    _assert_bits(_gram.gram(x1, x2), np.zeros((shape1[0], shape2[0])))
    _assert_bits(_gram.gram(x1), np.full((shape1[0], shape1[0]), float(shape1[1])))
