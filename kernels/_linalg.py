"""Small dense linear algebra for compiled loops (shared by kernels.montecarlo and limits.solve).

* ``_chol_upper``: upper Cholesky factor of a symmetric positive semi-definite K (U^T U = K),
  right-looking; a pivot at or below ``_CHOL_TOL`` times its diagonal entry (rounding level:
  duplicate inputs, dead ReLU units) gives a zero row, which is exact for a PSD matrix of lower
  rank.  ``_chol2``: the same for 2 x 2 (lower factor, scalars).
* ``_mul_upper``: H = Z U or H += Z U for an upper-triangular U, in a fixed summation order
  (so that results do not depend on the machine or the thread count).

References: G. H. Golub, C. F. Van Loan, *Matrix Computations*, 4th ed. (2013), §4.2 (Cholesky)
and §4.2.8 (semidefinite case).
"""
import math

import numba

_CHOL_TOL = 1e-13                   # relative pivot below which K is treated as singular


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _chol_upper(K, U, A):
    """Upper factor U (U^T U = K) of a symmetric PSD K; A is scratch (N, N).

    Right-looking Cholesky; a pivot <= _CHOL_TOL * K[j, j] (rounding level) gives a zero row,
    which is exact for a PSD matrix of lower rank.  A NaN or infinite pivot gives a NaN row, so
    that non-finite input propagates to the caller's finiteness check instead of being zeroed.
    """
    N = K.shape[0]
    for i in range(N):
        for j in range(i, N):
            A[i, j] = K[i, j]
            U[i, j] = 0.0
        for j in range(i):
            U[i, j] = 0.0
    for j in range(N):
        d = A[j, j]
        if d > _CHOL_TOL * K[j, j] and d > 0.0:
            r = math.sqrt(d)
            inv = 1.0 / r
            U[j, j] = r
            for k in range(j + 1, N):
                U[j, k] = A[j, k] * inv
            for i in range(j + 1, N):
                uji = U[j, i]
                for k in range(i, N):
                    A[i, k] -= uji * U[j, k]
        elif not (abs(d) < math.inf and abs(K[j, j]) < math.inf):
            for k in range(j, N):
                U[j, k] = math.nan


_SMALL_N = 8     # below: triangular loops blocked over rows; above: full-width rows


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _mul_upper(Z, U, H, accumulate):
    """H = Z U, or H += Z U, for an upper-triangular U (fixed summation order over k)."""
    n, N = Z.shape
    if N <= _SMALL_N:
        n4 = n - n % 4
        for r in range(0, n4, 4):
            h0, h1, h2, h3 = H[r], H[r + 1], H[r + 2], H[r + 3]
            z0, z1, z2, z3 = Z[r], Z[r + 1], Z[r + 2], Z[r + 3]
            if not accumulate:
                for c in range(N):
                    h0[c] = 0.0
                    h1[c] = 0.0
                    h2[c] = 0.0
                    h3[c] = 0.0
            for k in range(N):
                uk = U[k]
                a0, a1, a2, a3 = z0[k], z1[k], z2[k], z3[k]
                for c in range(k, N):
                    u = uk[c]
                    h0[c] += a0 * u
                    h1[c] += a1 * u
                    h2[c] += a2 * u
                    h3[c] += a3 * u
        for r in range(n4, n):
            hr, zr = H[r], Z[r]
            if not accumulate:
                for c in range(N):
                    hr[c] = 0.0
            for k in range(N):
                zk, uk = zr[k], U[k]
                for c in range(k, N):
                    hr[c] += zk * uk[c]
        return
    N8 = N - N % 8
    tri = N > 32             # long rows: skip the zero triangle; short rows: full fixed length
    for r in range(n):
        hr, zr = H[r], Z[r]
        if not accumulate:
            for c in range(N):
                hr[c] = 0.0
        for k in range(0, N8, 8):
            z0, z1, z2, z3 = zr[k], zr[k + 1], zr[k + 2], zr[k + 3]
            z4, z5, z6, z7 = zr[k + 4], zr[k + 5], zr[k + 6], zr[k + 7]
            s = k if tri else 0
            h = hr[s:]
            v0, v1, v2, v3 = U[k, s:], U[k + 1, s:], U[k + 2, s:], U[k + 3, s:]
            v4, v5, v6, v7 = U[k + 4, s:], U[k + 5, s:], U[k + 6, s:], U[k + 7, s:]
            for c in range(N - s):
                h[c] += ((z0 * v0[c] + z1 * v1[c] + z2 * v2[c] + z3 * v3[c])
                         + (z4 * v4[c] + z5 * v5[c] + z6 * v6[c] + z7 * v7[c]))
        for k in range(N8, N):
            zk, uk = zr[k], U[k]
            for c in range(k, N):
                hr[c] += zk * uk[c]


@numba.njit(inline="always", cache=True, error_model="numpy")
def _chol2(g11, g12, g22):
    """Lower factor (l11, l21, l22) of a 2 x 2 PSD matrix (zero and non-finite pivots as in
    _chol_upper: NaN factors if an entry is NaN or infinite)."""
    if not (abs(g11) < math.inf and abs(g12) < math.inf and abs(g22) < math.inf):
        return math.nan, math.nan, math.nan
    l11 = math.sqrt(g11) if g11 > 0.0 else 0.0
    l21 = g12 / l11 if l11 > 0.0 else 0.0
    d = g22 - l21 * l21
    l22 = math.sqrt(d) if d > _CHOL_TOL * g22 and d > 0.0 else 0.0
    return l11, l21, l22
