"""The erf layer loop: the closed-form maps inlined, the entries of a block vectorised.

The generic smooth loop (``_recursion._smooth_chunk``) calls an activation's pair map through a
run-time argument, one entry at a time: nothing vectorises, and the erf map costs three square
roots and three divisions per entry-layer.  ``Erf`` (``phi = a erf(b x) + c0``) has its own
loop here, built like ``_recursion._abrelu_chunk``.  With ``h = 2 b^2`` and, per input and
layer, ``u_i = sqrt(h / (1 + h q_i))`` (an O(N L) table, ``_erf_diag``), the maps of
``Erf`` (Williams 1997; theory/kernels.md §1.3) are::

    r    = 2 b^2 K12 / sqrt((1 + h q1)(1 + h q2)) = K12 u_1 u_2
    V    = a^2 (2/pi) arcsin(r) + c0^2
    Vdot = a^2 (2/pi) u_1 u_2 / sqrt(1 - r^2)

so an entry-layer costs one square root, sqrt(1 - r^2) = sqrt(fma(-r, r, 1)), which also gives
arcsin(r) by one polynomial without division (``_fastmath.asin_unit``), and one division (Vdot,
only for the NTK).  The layer update (``_recursion`` module docstring), with per-layer
coefficients (``erf_coeffs``) ``kv = v sw2 a^2 (2/pi)``, ``kb = v (sw2 c0^2 + sb2)`` and the NTK
increment ``nw V + nb = nwa arcsin(r) + nbc``::

    K'     = u K + (kv arcsin(r) + kb)
    Theta' = u Theta + (kv u_1 u_2 / sqrt(1 - r^2)) Theta + (nwa arcsin(r) + nbc)

As in ``_abrelu_chunk`` every fused multiply-add is explicit (``_fastmath.fma``) and the loops
are compiled without ``fastmath``, so an entry is computed by the same IEEE operations in the
vectorised loop and its scalar remainder: tiles of a kernel (``_blockwise``, ``_dask``) equal the
whole bit for bit, and the diagonal (``_erf_diag``, the same entry function at K12 = q1 = q2)
equals the entries of duplicated inputs bit for bit.

Large variances (``h q > _ERF_DIRECT_MAX`` for either input, as in ``activations._erf_pair``)
take the scale-free form ``activations._erf_scaled``, entry by entry; a block of entries runs
the vectorised loop only when none of its entries needs it (the per-entry choice, hence every
result, is the same either way).
"""
import math

import numba
import numpy as np
from numba import prange

from ._fastmath import asin_unit, fma
from ._recursion import _BLOCK, _ROWS
from .activations import _ERF_DIRECT_MAX, _erf_scaled

# columns of the per-layer coefficient table (``erf_coeffs``)
_NCOEF = 9


def erf_coeffs(a, c0, u, v, sw2, sb2, nw, nb):
    """(C, 9) per-layer coefficients of the erf update: u, kv, kb, nwa, nbc (module docstring)
    and, for the scale-free entries, v sw2, v sb2, nw, nb."""
    a2p = a * a * (2.0 / math.pi)
    vw = v * sw2
    vb = v * sb2
    k = np.empty((u.shape[0], _NCOEF))
    k[:, 0] = u
    k[:, 1] = vw * a2p
    k[:, 2] = vw * (c0 * c0) + vb
    k[:, 3] = nw * a2p
    k[:, 4] = nw * (c0 * c0) + nb
    k[:, 5] = vw
    k[:, 6] = vb
    k[:, 7] = nw
    k[:, 8] = nb
    return k


@numba.njit(inline="always", cache=True, error_model="numpy")
def _u_of(h, q):
    """u = sqrt(h / (1 + h q)) = 2 b^2 / sqrt(2 b^2 (1 + 2 b^2 q))."""
    return math.sqrt(h / fma(h, q, 1.0))


@numba.njit(inline="always", cache=True, error_model="numpy")
def _erf_direct(c, T, ui, uj, ut, kv, kb, nwa, nbc, with_ntk):
    """One layer of one entry (K12, Theta12) -> (K12', Theta12') by the direct closed form."""
    uij = ui * uj
    r = c * uij
    x = min(abs(r), 1.0)
    s = math.sqrt(fma(-x, x, 1.0))                  # sqrt(1 - r^2)
    A = math.copysign(asin_unit(x, s), r)           # arcsin(r)
    cn = fma(ut, c, fma(kv, A, kb))
    Tn = 0.0
    if with_ntk:                                    # a constant
        g = kv * uij / s                            # v sw2 Vdot
        Tn = fma(ut, T, fma(g, T, fma(nwa, A, nbc)))
    return cn, Tn


@numba.njit(inline="always", cache=True, error_model="numpy")
def _erf_entry(c, T, qi, qj, ui, uj, h, a, b, c0, ut, kv, kb, nwa, nbc, vw, vb, nw, nb,
               with_ntk):
    """``_erf_direct``, or the scale-free form where either variance is large."""
    if h * qi > _ERF_DIRECT_MAX or h * qj > _ERF_DIRECT_MAX:
        V, Vd = _erf_scaled(qi, qj, c, a, b, c0)
        cn = fma(ut, c, fma(vw, V, vb))
        Tn = 0.0
        if with_ntk:
            Tn = fma(ut, T, fma(vw * Vd, T, fma(nw, V, nb)))
        return cn, Tn
    return _erf_direct(c, T, ui, uj, ut, kv, kb, nwa, nbc, with_ntk)


@numba.njit(cache=True, error_model="numpy")
def _erf_diag(q0, t0, k, h, a, b, c0, q_out, t_out, u_out):
    """Diagonal trajectories of an erf network: q_out, t_out (C + 1, N) with row 0 = (q0, t0),
    and u_out (C + 1, N) = sqrt(h / (1 + h q)) of each row of q_out.  The same entry function
    as the off-diagonal loop at K12 = q1 = q2 (duplicated inputs stay bit-identical)."""
    n = q0.shape[0]
    C = k.shape[0]
    q_out[0] = q0
    t_out[0] = t0
    for t in range(C):
        for i in range(n):
            q = q_out[t, i]
            ui = _u_of(h, q)
            u_out[t, i] = ui
            qn, tn = _erf_entry(q, t_out[t, i], q, q, ui, ui, h, a, b, c0, k[t, 0], k[t, 1],
                                k[t, 2], k[t, 3], k[t, 4], k[t, 5], k[t, 6], k[t, 7], k[t, 8],
                                True)
            q_out[t + 1, i] = qn
            t_out[t + 1, i] = tn
    for i in range(n):
        u_out[C, i] = _u_of(h, q_out[C, i])


@numba.njit(inline="always", cache=True, error_model="numpy")
def _erf_block(c_row, t_row, ui, u_t, ut, kv, kb, nwa, nbc, with_ntk):
    # views of one block indexed from 0 (no wraparound checks: the loop vectorises)
    for j in range(c_row.shape[0]):
        T = t_row[j] if with_ntk else 0.0
        cn, Tn = _erf_direct(c_row[j], T, ui, u_t[j], ut, kv, kb, nwa, nbc, with_ntk)
        c_row[j] = cn
        if with_ntk:
            t_row[j] = Tn


@numba.njit(inline="always", cache=True, error_model="numpy")
def _erf_block_any(c_row, t_row, qi, ui, q_t, u_t, h, a, b, c0, ut, kv, kb, nwa, nbc, vw, vb,
                   nw, nb, with_ntk):
    # a block with large variances: the per-entry choice of ``_erf_entry``
    for j in range(c_row.shape[0]):
        T = t_row[j] if with_ntk else 0.0
        cn, Tn = _erf_entry(c_row[j], T, qi, q_t[j], ui, u_t[j], h, a, b, c0, ut, kv, kb, nwa,
                            nbc, vw, vb, nw, nb, with_ntk)
        c_row[j] = cn
        if with_ntk:
            t_row[j] = Tn


@numba.njit(inline="always", cache=True, error_model="numpy")
def _erf_rows(cov, ntk, r0, r1, j0, j1, t, q_r, u_r, q_t, u_t, big_c, k, h, a, b, c0,
              with_ntk):
    """Layer t of rows r0..r1-1, columns j0..j1-1 (column tables q_t, u_t of the block)."""
    ut, kv, kb, nwa, nbc = k[t, 0], k[t, 1], k[t, 2], k[t, 3], k[t, 4]
    vw, vb, nw, nb = k[t, 5], k[t, 6], k[t, 7], k[t, 8]
    for i in range(r0, r1):
        qi = q_r[t, i]
        if big_c or h * qi > _ERF_DIRECT_MAX:
            _erf_block_any(cov[i, j0:j1], ntk[i, j0:j1], qi, u_r[t, i], q_t, u_t, h, a, b, c0,
                           ut, kv, kb, nwa, nbc, vw, vb, nw, nb, with_ntk)
        else:
            _erf_block(cov[i, j0:j1], ntk[i, j0:j1], u_r[t, i], u_t, ut, kv, kb, nwa, nbc,
                       with_ntk)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _erf_task(task, ntiles, sym, cov, ntk, q_r, u_r, q_c, u_c, k, h, a, b, c0, rec_slot,
              rec_cov, rec_ntk, with_ntk):
    """One task of ``_erf_chunk``: row tile ``task`` (and its mirror ``ntiles-1-task``)."""
    n1, n2 = cov.shape
    C = k.shape[0]
    R = _ROWS
    for half in range(2 if sym else 1):
        tile = task if half == 0 else ntiles - 1 - task
        if half == 1 and tile == task:
            continue
        r0 = tile * R
        r1 = min(r0 + R, n1)
        # sym: columns from r0 + 1; entries j <= i inside the tile are scratch (never read)
        for j0 in range(r0 + 1 if sym else 0, n2, _BLOCK):
            j1 = min(j0 + _BLOCK, n2)
            for t in range(C):
                q_t = q_c[t, j0:j1]
                u_t = u_c[t, j0:j1]
                qmax = 0.0
                for j in range(q_t.shape[0]):
                    qmax = max(qmax, q_t[j])
                big_c = h * qmax > _ERF_DIRECT_MAX
                # two calls with a constant flag: one loop without any NTK operation
                if with_ntk:
                    _erf_rows(cov, ntk, r0, r1, j0, j1, t, q_r, u_r, q_t, u_t, big_c, k, h, a,
                              b, c0, True)
                else:
                    _erf_rows(cov, ntk, r0, r1, j0, j1, t, q_r, u_r, q_t, u_t, big_c, k, h, a,
                              b, c0, False)
                slot = rec_slot[t]
                if slot >= 0:
                    for i in range(r0, r1):
                        rec_cov[slot, i, j0:j1] = cov[i, j0:j1]
                        if with_ntk:
                            rec_ntk[slot, i, j0:j1] = ntk[i, j0:j1]


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _erf_chunk(sym, cov, ntk, q_r, u_r, q_c, u_c, k, h, a, b, c0, rec_slot, rec_cov, rec_ntk,
               with_ntk):
    """Advance the off-diagonal (K, Theta) of an erf network through one chunk of layers.

    sym : only entries j > i of the square state are used (and written).
    q_r, u_r : (C + 1, N1) diagonal and u tables of the rows (``_erf_diag``); q_c, u_c the
    columns'.  k : (C, 9) per-layer coefficients (``erf_coeffs``); h = 2 b^2, (a, b, c0) the
    activation's parameters.  rec_slot : (C,) slot in rec_* for the state after layer t, or -1.
    """
    n1 = cov.shape[0]
    ntiles = (n1 + _ROWS - 1) // _ROWS
    ntask = (ntiles + 1) // 2 if sym else ntiles
    for ptask in prange(ntask):
        _erf_task(np.int64(ptask), ntiles, sym, cov, ntk, q_r, u_r, q_c, u_c, k, h, a, b, c0,
                  rec_slot, rec_cov, rec_ntk, with_ntk)


@numba.njit(cache=True, error_model="numpy")
def _erf_chunk_serial(sym, cov, ntk, q_r, u_r, q_c, u_c, k, h, a, b, c0, rec_slot, rec_cov,
                      rec_ntk, with_ntk):
    """``_erf_chunk`` on one thread (small problems), bit-identical."""
    n1 = cov.shape[0]
    ntiles = (n1 + _ROWS - 1) // _ROWS
    ntask = (ntiles + 1) // 2 if sym else ntiles
    for task in range(ntask):
        _erf_task(np.int64(task), ntiles, sym, cov, ntk, q_r, u_r, q_c, u_c, k, h, a, b, c0,
                  rec_slot, rec_cov, rec_ntk, with_ntk)
