"""The layer loop: numba kernels that push pairs of inputs through a stack of layers.

Every architecture here is a *stem* (an affine map of the input kernel), then ``L`` layers of the
form (theory/kernels.md §2.2 for the MLP, §3.2 for the ResNet)::

    K'     = u K + v (sw2 V(K) + sb2)
    Theta' = u Theta + (K' - u K) + v sw2 Vdot(K) Theta

with ``u = 0, v = 1`` for an MLP layer and ``u = 1, v = alpha_l**2`` for a residual block.  The
engine knows nothing else about architectures or activations.  (The NTK increment ``K' - u K``
is, in general, ``nw V + nb`` with per-layer ``nw``, ``nb``: ``architectures._Stack.ntk_w``,
``ntk_b``; equal to ``K' - u K`` in the NTK parameterisation, the standard one differs.)

Organisation (DESIGN.md, performance plan):

* the diagonal ``K(x, x)`` and ``Theta(x, x)`` trajectories are computed first, O(N L), with the
  angle exactly 0;
* the off-diagonal entries are then advanced for a block of one row at a time, *layers outer and
  entries inner*, so the inner loop is contiguous and vectorises; rows are spread over cores with
  ``prange`` (rows i and N-1-i are paired so the triangle is balanced), symmetry is used, and no
  N x N temporary is created per layer;
* layers are processed in chunks so the per-layer diagonal tables stay small (``_CHUNK_DOUBLES``).

For positively homogeneous activations (the ABReLU family) the off-diagonal state is the gap
``eps = 1 - rho`` rather than the covariance: the update below is written so that ``eps`` is
obtained without cancellation, which keeps depth 1e6 accurate (theory/kernels.md §2.4).  With
``s = sqrt(q1 q2)``, ``beta = u + v sw2 m``, ``gamma = v sb2`` and ``kappa = v sw2 fac``
(``m = (a^2 + b^2)/2``, ``fac = (a - b)^2/(2 pi)``, §1.2)::

    q'                 = beta q + gamma                       (each diagonal)
    K'                 = beta s + gamma - s (beta eps - kappa h(theta))
    sqrt(q1' q2') - K' = delta + s (beta eps - kappa h(theta))
    delta              = beta gamma (sqrt q1 - sqrt q2)^2 / (sqrt(q1' q2') + beta s + gamma)

so ``eps' = (delta + s (beta eps - kappa h)) / sqrt(q1' q2')`` with every term non-negative near
rho = 1.  Near rho = -1 the engine keeps ``w = 1 + rho`` instead (the signed gap of ``_fastmath``)::

    sqrt(q1' q2') + K' = delta + 2 gamma + s (beta w + kappa h(theta))
    beta eps - kappa h(theta) = xi + zeta w - kappa h(t),   t = pi - theta
    xi = 2 u + v sw2 (a + b)^2 / 2,   zeta = -u - v sw2 a b

(using ``m - fac pi = a b``), so both gaps are formed without cancellation, including for abs,
whose map sends rho = -1 to +1.

The hot loops are compiled with ``fastmath={"contract"}``: only fused multiply-add contraction,
no reassociation or other unsafe rewrites (results stay within rounding of the plain code), which
halves the cost of the polynomial evaluations.  ``_abrelu_chunk`` is the exception: contraction
there rounded an entry differently in the vectorised loop and in its scalar remainder, so a
tile of a kernel (``_blockwise``, ``_dask``) could differ from the whole in the last bit.  Its
fused multiply-adds are written out instead (``_fastmath.fma``, the ``llvm.fma`` intrinsic), so
every entry is computed by the same IEEE operations wherever it sits; and its per-entry angle
work is one square root and two polynomials (``_fastmath.theta_unit`` / ``h_unit``), with
theta, needed only by the NTK, skipped by the NNGP-only loop.

The smooth loop below (``_smooth_chunk``) serves every activation through its compiled pair
map, called entry by entry (a run-time function argument: nothing vectorises, which the
Gauss–Hermite maps of ``Tanh`` and user activations, ~10^4 evaluations per entry, do not
notice).  ``Erf`` has its own loop with the closed forms inlined and the entries vectorised,
built like ``_abrelu_chunk`` (``kernels._smooth``).

These loops are written by hand because they are the hot path: numpy would allocate an N x N
temporary per operation per layer, and ``math.acos`` does not vectorise (see ``_fastmath``).
"""
import math

import numba
import numpy as np
from numba import prange

from ._fastmath import (acos1m_unit, fma, gaps_of, h_unit, near_minus_one, rho_of,
                        signed_gap, theta_unit)

_BLOCK = 512                 # entries per inner block: state + tables stay in L1/L2
_ROWS = 8                    # rows advanced together, so each column table is read once for all
_CHUNK_DOUBLES = 1 << 18     # layers per chunk * N stays below this (2 MB per table: cache-resident)
SERIAL_WORK = 1 << 17        # entry-layers below which one thread is faster than a parallel call
SERIAL_ENTRIES = 1 << 14     # entries below which the per-matrix passes run on one thread


# --------------------------------------------------------------------------------------------
# diagonals
# --------------------------------------------------------------------------------------------
@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _abrelu_diag(q0, t0, beta, gamma, u, mu, m, nw, nb, kinc, q_out, t_out):
    """Diagonal trajectories for the ABReLU family (V(q,q,q) = m q, Vdot = m).

    q0, t0 : (N,) state before the chunk.  q_out, t_out : (C + 1, N), row 0 = the input state.
    The NTK increment of layer t is ``nw[t] V + nb[t]``; with ``kinc`` it equals the covariance
    increment (NTK parameterisation) and is taken as ``qn - u q``.
    """
    n = q0.shape[0]
    C = beta.shape[0]
    q_out[0] = q0
    t_out[0] = t0
    for t in range(C):
        for i in range(n):
            q = q_out[t, i]
            th = t_out[t, i]
            qn = beta[t] * q + gamma[t]
            q_out[t + 1, i] = qn
            dt = (qn - u[t] * q) if kinc else nw[t] * (m * q) + nb[t]
            t_out[t + 1, i] = u[t] * th + dt + mu[t] * m * th


@numba.njit(error_model="numpy", fastmath={"contract"})
def _smooth_diag(pair, params, q0, t0, u, v, sw2, sb2, nw, nb, kinc, q_out, t_out):
    """Diagonal trajectories for any activation given by its pair map (compiled per map).

    Same expressions and compiler flags as ``_smooth_chunk``, so that duplicated inputs keep
    bit-identical diagonal and off-diagonal entries (chaotic maps would amplify any ulp)."""
    n = q0.shape[0]
    C = u.shape[0]
    q_out[0] = q0
    t_out[0] = t0
    for t in range(C):
        for i in range(n):
            q = q_out[t, i]
            th = t_out[t, i]
            V, Vd = pair(q, q, q, params)
            qn = u[t] * q + v[t] * (sw2[t] * V + sb2[t])
            q_out[t + 1, i] = qn
            dt = (qn - u[t] * q) if kinc else nw[t] * V + nb[t]
            t_out[t + 1, i] = u[t] * th + dt + v[t] * sw2[t] * Vd * th


# --------------------------------------------------------------------------------------------
# off-diagonal entries, ABReLU family: state (eps, Theta)
# --------------------------------------------------------------------------------------------
@numba.njit(inline="always", cache=True, error_model="numpy")
def _abrelu_block(z_row, ntk_row, si, sni, ini, sq_c_t, sq_c_t1, inv_c_t1,
                  b, g, k, mut, ut, xi, zeta, m, fac, ab, nwt, nbt, with_ntk):
    # Arguments are views of one block, indexed from 0: numba then knows j >= 0, drops the
    # negative-index wraparound and the loop vectorises (3.5 ns instead of 22 ns per entry).
    # Per entry: one square root (theta and h(theta) from sqrt(2 |z|) and two polynomials,
    # ``_fastmath.theta_unit`` / ``h_unit``) and one division (delta); theta itself only for
    # the NTK.  Fused multiply-adds are explicit (``fma``), never contracted by the compiler.
    bg = b * g
    g2 = 2.0 * g
    for j in range(z_row.shape[0]):
        sj = sq_c_t[j]
        z = z_row[j]
        s = si * sj
        A = fma(b, s, g)
        d = si - sj
        delta = bg * d * d / fma(sni, sq_c_t1[j], A)
        # angle t to the nearer end (theta = t near rho = 1, theta = pi - t near rho = -1)
        neg = near_minus_one(z)
        az = abs(z)
        sa = math.sqrt(2.0 * az)
        ht = h_unit(az, sa)
        e = 2.0 + z if neg else z                     # 1 - rho
        w = -z if neg else 2.0 - z                    # 1 + rho
        h = fma(math.pi, 1.0 - w, ht) if neg else ht  # h(theta); h(pi - t) = h(t) + pi cos t
        # sqrt(q1' q2') -/+ K' = delta (+ 2 gamma) + s X / s Y, every term >= 0 (module doc)
        X = fma(-k, ht, fma(zeta, w, xi) if neg else b * e)
        Y = fma(b, w, k * h)
        r = ini * inv_c_t1[j]
        en = max(fma(s, X, delta) * r, 0.0)
        wn = fma(s, Y, delta + g2) * r
        zn = signed_gap(en, wn)
        z_row[j] = zn if r > 0.0 else 1.0             # zero-norm input: theta = pi/2 (NT)
        if with_ntk:                                  # a constant (``_abrelu_task``)
            T = ntk_row[j]
            t = theta_unit(az, sa)
            # NTK increment nw V + nb (NTK parameterisation: nw = v sw2, nb = v sb2, the
            # covariance increment K' - u K), with V = s (m cos(theta) + fac h): no cancellation
            dk = fma(nwt * s, fma(m, 1.0 - e, fac * h), nbt)
            vdot = fma(fac, t, ab) if neg else fma(-fac, t, m)   # m - fac theta, exact at both ends
            ntk_row[j] = fma(ut, T, fma(mut * vdot, T, dk))


@numba.njit(inline="always", cache=True, error_model="numpy")  # caller's flags apply
def _abrelu_task(task, ntiles, sym, eps, ntk, sq_r, inv_r, sq_c, inv_c, beta, gamma, kappa, mu,
                 u, xi, zeta, m, fac, ab, nw, nb, rec_slot, rec_eps, rec_ntk, with_ntk):
    """One task of ``_abrelu_chunk``: row tile ``task`` (and its mirror ``ntiles-1-task``)."""
    n1, n2 = eps.shape
    C = beta.shape[0]
    R = _ROWS
    for half in range(2 if sym else 1):
        tile = task if half == 0 else ntiles - 1 - task
        if half == 1 and tile == task:
            continue
        r0 = tile * R
        r1 = min(r0 + R, n1)
        # sym: columns from r0 + 1; the few entries j <= i inside the tile are computed on
        # lower-triangle scratch and discarded (only j > i is ever read back)
        for j0 in range(r0 + 1 if sym else 0, n2, _BLOCK):
            j1 = min(j0 + _BLOCK, n2)
            for t in range(C):
                # the column tables of this block are loaded once for R rows
                sq_t = sq_c[t, j0:j1]
                sq_t1 = sq_c[t + 1, j0:j1]
                inv_t1 = inv_c[t + 1, j0:j1]
                for i in range(r0, r1):
                    # two calls with a constant flag: one loop without any NTK operation
                    # (LLVM did not unswitch the vectorised loop on a run-time flag)
                    if with_ntk:
                        _abrelu_block(eps[i, j0:j1], ntk[i, j0:j1], sq_r[t, i], sq_r[t + 1, i],
                                      inv_r[t + 1, i], sq_t, sq_t1, inv_t1, beta[t], gamma[t],
                                      kappa[t], mu[t], u[t], xi[t], zeta[t], m, fac, ab, nw[t],
                                      nb[t], True)
                    else:
                        _abrelu_block(eps[i, j0:j1], ntk[i, j0:j1], sq_r[t, i], sq_r[t + 1, i],
                                      inv_r[t + 1, i], sq_t, sq_t1, inv_t1, beta[t], gamma[t],
                                      kappa[t], mu[t], u[t], xi[t], zeta[t], m, fac, ab, nw[t],
                                      nb[t], False)
                slot = rec_slot[t]
                if slot >= 0:
                    for i in range(r0, r1):
                        rec_eps[slot, i, j0:j1] = eps[i, j0:j1]
                        if with_ntk:
                            rec_ntk[slot, i, j0:j1] = ntk[i, j0:j1]


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _abrelu_chunk(sym, eps, ntk, sq_r, inv_r, sq_c, inv_c, beta, gamma, kappa, mu, u, xi, zeta,
                  m, fac, ab, nw, nb, rec_slot, rec_eps, rec_ntk, with_ntk):
    """Advance the off-diagonal state through one chunk of layers, in place.

    sym : only entries j > i of the square state are used (and written).
    eps, ntk : (N1, N2) state: signed gap (see ``_fastmath``) and NTK (not read or written
    unless with_ntk).  sq_r/inv_r : (C + 1, N1) sqrt(q) and 1/sqrt(q) (0 where q = 0)
    of the row inputs, layers l0 .. l0 + C; sq_c/inv_c the same for the columns.
    beta, gamma, kappa, mu, u, xi, zeta : (C,) per-layer coefficients (module docstring).
    nw, nb : (C,) NTK increment ``nw V + nb`` of each layer (NTK parameterisation: mu, gamma).
    rec_slot : (C,) slot in rec_* where the state after layer t is recorded, or -1.
    """
    n1 = eps.shape[0]
    ntiles = (n1 + _ROWS - 1) // _ROWS
    ntask = (ntiles + 1) // 2 if sym else ntiles
    for ptask in prange(ntask):
        # prange indices are unsigned; keep the arithmetic signed
        _abrelu_task(np.int64(ptask), ntiles, sym, eps, ntk, sq_r, inv_r, sq_c, inv_c, beta,
                     gamma, kappa, mu, u, xi, zeta, m, fac, ab, nw, nb, rec_slot, rec_eps,
                     rec_ntk, with_ntk)


@numba.njit(cache=True, error_model="numpy")         # no contraction: as _abrelu_chunk
def _abrelu_chunk_serial(sym, eps, ntk, sq_r, inv_r, sq_c, inv_c, beta, gamma, kappa, mu, u,
                         xi, zeta, m, fac, ab, nw, nb, rec_slot, rec_eps, rec_ntk, with_ntk):
    """``_abrelu_chunk`` on one thread (small problems: no thread start-up or barrier, which
    a busy machine makes slow); the same arithmetic, so bit-identical results."""
    n1 = eps.shape[0]
    ntiles = (n1 + _ROWS - 1) // _ROWS
    ntask = (ntiles + 1) // 2 if sym else ntiles
    for task in range(ntask):
        _abrelu_task(np.int64(task), ntiles, sym, eps, ntk, sq_r, inv_r, sq_c, inv_c, beta,
                     gamma, kappa, mu, u, xi, zeta, m, fac, ab, nw, nb, rec_slot, rec_eps,
                     rec_ntk, with_ntk)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _stem_gap(rho0_e, rho0_w, s, sa, sb, sQinv, sQ, w, b):
    """Signed gap after K <- w K + b from the input gaps (1 - rho0, 1 + rho0)."""
    A = w * s + b
    dd = sa - sb
    den = sQ + A
    delta = w * b * dd * dd / den if den > 0.0 else 0.0
    zval = signed_gap((delta + w * s * rho0_e) * sQinv, (delta + 2.0 * b + w * s * rho0_w) * sQinv)
    return zval if sQinv > 0.0 else 1.0


@numba.njit(inline="always", cache=True, error_model="numpy")
def _sqrt_prod(qa, qb, sqa, sqb):
    """sqrt(qa qb) as one rounding where the product is a normal float; otherwise (it would
    overflow or underflow: norms beyond ~1e77 or below ~1e-78) sqrt(qa) sqrt(qb)."""
    p = qa * qb
    return math.sqrt(p) if (p > 1e-290 and p < 1e290) else sqa * sqb


@numba.njit(inline="always", cache=True, error_model="numpy")
def _init_gap_row(i, sym, G, gscale, qa, qb, w, b, ua, ub, refine_below, z, ntk, sqb, sqb2,
                  invb2):
    """Row i of ``_init_gap``."""
    d = ua.shape[1]
    qi = qa[i]
    sa = math.sqrt(qi)
    sa2 = math.sqrt(w * qi + b)
    inva2 = 1.0 / sa2 if sa2 > 0.0 else 0.0
    j0 = i + 1 if sym else 0
    G_row = G[i, j0:]
    z_row = z[i, j0:]
    t_row = ntk[i, j0:]
    qb_v = qb[j0:]
    sqb_v = sqb[j0:]
    sqb2_v = sqb2[j0:]
    invb2_v = invb2[j0:]
    for j in range(G_row.shape[0]):
        g = gscale * G_row[j]
        t_row[j] = w * g + b
        se = _sqrt_prod(qi, qb_v[j], sa, sqb_v[j])
        rho0 = g / se if se > 0.0 else 0.0
        rho0 = min(max(rho0, -1.0), 1.0)
        z_row[j] = _stem_gap(1.0 - rho0, 1.0 + rho0, sa * sqb_v[j], sa, sqb_v[j],
                             inva2 * invb2_v[j], sa2 * sqb2_v[j], w, b)
    if refine_below > 0.0:
        for j in range(G_row.shape[0]):
            if abs(z_row[j]) < refine_below and qi > 0.0 and qb_v[j] > 0.0:
                se = _sqrt_prod(qi, qb_v[j], sa, sqb_v[j])
                rho0 = min(max(gscale * G_row[j] / se, -1.0), 1.0)
                sgn = 1.0 if rho0 >= 0.0 else -1.0
                acc = 0.0
                for k in range(d):
                    diff = ua[i, k] - sgn * ub[j0 + j, k]
                    acc += diff * diff
                e0 = 0.5 * acc if rho0 >= 0.0 else 1.0 - rho0
                w0 = 1.0 + rho0 if rho0 >= 0.0 else 0.5 * acc
                z_row[j] = _stem_gap(e0, w0, sa * sqb_v[j], sa, sqb_v[j],
                                     inva2 * invb2_v[j], sa2 * sqb2_v[j], w, b)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _init_gap_rows(sym, G, gscale, qa, qb, w, b, ua, ub, refine_below, z, ntk):
    # the body of ``_init_gap`` and ``_init_gap_serial`` (prange is range in the serial one)
    n1 = G.shape[0]
    sqb = np.sqrt(qb)
    sqb2 = np.sqrt(w * qb + b)
    invb2 = np.where(sqb2 > 0.0, 1.0 / np.where(sqb2 > 0.0, sqb2, 1.0), 0.0)
    for pi in prange(n1):
        _init_gap_row(np.int64(pi), sym, G, gscale, qa, qb, w, b, ua, ub, refine_below, z, ntk,
                      sqb, sqb2, invb2)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _init_gap(sym, G, gscale, qa, qb, w, b, ua, ub, refine_below, z, ntk):
    """Signed gap (``_fastmath``) and NTK (= K) of the stem output K <- w K + b.

    The input kernel is gscale * G.  rho0 = G / sqrt(qa qb) (exact for equal diagonals); after
    the affine stem, with s = sqrt(qa qb) and sQ = sqrt((w qa + b)(w qb + b)), the gaps
    (delta + w s (1 - rho0)) / sQ and (delta + 2 b + w s (1 + rho0)) / sQ have no cancellation
    (module docstring).  Pairs whose gap is below refine_below are recomputed from the unit
    inputs ua, ub, with 1 -/+ rho0 = |ua_i -/+ ub_j|^2 / 2 (no cancellation; pass
    refine_below = 0 when only a kernel is known).  Zero-norm inputs get the NT convention
    theta = pi/2 (gap 1).  The main loop has no branches and vectorises; refinement is rare.
    """
    _init_gap_rows(sym, G, gscale, qa, qb, w, b, ua, ub, refine_below, z, ntk)


@numba.njit(cache=True, error_model="numpy")
def _init_gap_serial(sym, G, gscale, qa, qb, w, b, ua, ub, refine_below, z, ntk):
    """``_init_gap`` on one thread (small inputs: a parallel call costs a thread wake-up, which
    on a busy machine can take a scheduler time slice), bit-identical."""
    _init_gap_rows(sym, G, gscale, qa, qb, w, b, ua, ub, refine_below, z, ntk)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _gap_to_cov_rows(sym, z, qa, qb, out):
    # the body of ``_gap_to_cov`` and ``_gap_to_cov_serial``
    n1, n2 = z.shape
    for pi in prange(n1):
        i = np.int64(pi)
        sa = math.sqrt(qa[i])
        for j in range(i + 1 if sym else 0, n2):
            out[i, j] = sa * math.sqrt(qb[j]) * rho_of(z[i, j])


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _gap_to_cov(sym, z, qa, qb, out):
    """out[i, j] = sqrt(qa_i qb_j) rho_ij from the signed gap (entries j > i only if sym)."""
    _gap_to_cov_rows(sym, z, qa, qb, out)


@numba.njit(cache=True, error_model="numpy")
def _gap_to_cov_serial(sym, z, qa, qb, out):
    """``_gap_to_cov`` on one thread (small inputs), bit-identical."""
    _gap_to_cov_rows(sym, z, qa, qb, out)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _gap_fields_all(z, e_out, theta_out):
    # the body of ``_gap_fields`` and ``_gap_fields_serial``
    zf = z.reshape(-1)
    ef = e_out.reshape(-1)
    tf = theta_out.reshape(-1)
    for k in prange(zf.shape[0]):
        e, w = gaps_of(zf[k])
        t = acos1m_unit(abs(zf[k]))
        ef[k] = e
        tf[k] = math.pi - t if near_minus_one(zf[k]) else t


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _gap_fields(z, e_out, theta_out):
    """1 - rho and theta from the signed gap, elementwise (trajectories)."""
    _gap_fields_all(z, e_out, theta_out)


@numba.njit(cache=True, error_model="numpy")
def _gap_fields_serial(z, e_out, theta_out):
    """``_gap_fields`` on one thread (small trajectories), bit-identical."""
    _gap_fields_all(z, e_out, theta_out)


@numba.njit(parallel=True, cache=True)
def _symmetrize(a, diag):
    """In place: mirror the strict upper triangle of ``a`` into the lower one, set the diagonal.

    Tiled (64 x 64) so that the transposed reads stay in cache.
    """
    n = a.shape[0]
    T = 64
    nt = (n + T - 1) // T
    for pbi in prange(nt):
        bi = np.int64(pbi)
        i0 = bi * T
        i1 = min(i0 + T, n)
        for bj in range(bi + 1):
            j0 = bj * T
            for i in range(i0, i1):
                for j in range(j0, min(j0 + T, i)):
                    a[i, j] = a[j, i]
        for i in range(i0, i1):
            a[i, i] = diag[i]
    return a


@numba.njit(cache=True)
def _symmetrize_layers(a, diag):
    """``_symmetrize`` for every layer of a (R, N, N) stack, one call, serial (trajectories:
    many small matrices; diag is (R, N))."""
    R, n = a.shape[0], a.shape[1]
    for k in range(R):
        for i in range(n):
            for j in range(i):
                a[k, i, j] = a[k, j, i]
            a[k, i, i] = diag[k, i]
    return a


# --------------------------------------------------------------------------------------------
# off-diagonal entries, smooth activations: state (K, Theta)
# --------------------------------------------------------------------------------------------
@numba.njit(inline="always", error_model="numpy", fastmath={"contract"})
def _smooth_task(task, pair, params, sym, cov, ntk, q_r, q_c, u, v, sw2, sb2, nw, nb, kinc,
                 rec_slot, rec_cov, rec_ntk, with_ntk):
    """One task of ``_smooth_chunk``: row ``task`` and its mirror ``n1 - 1 - task``."""
    n1, n2 = cov.shape
    C = u.shape[0]
    for half in range(2 if sym else 1):
        i = task if half == 0 else n1 - 1 - task
        if half == 1 and i == task:
            continue
        j_start = i + 1 if sym else 0
        for j0 in range(j_start, n2, _BLOCK):
            j1 = min(j0 + _BLOCK, n2)
            for t in range(C):
                qi = q_r[t, i]
                ut = u[t]
                vt = v[t]
                w2 = sw2[t]
                b2 = sb2[t]
                nwt = nw[t]
                nbt = nb[t]
                for j in range(j0, j1):
                    c = cov[i, j]
                    V, Vd = pair(qi, q_c[t, j], c, params)
                    cn = ut * c + vt * (w2 * V + b2)
                    if with_ntk:
                        T = ntk[i, j]
                        dt = (cn - ut * c) if kinc else nwt * V + nbt
                        ntk[i, j] = ut * T + dt + vt * w2 * Vd * T
                    cov[i, j] = cn
                slot = rec_slot[t]
                if slot >= 0:
                    for j in range(j0, j1):
                        rec_cov[slot, i, j] = cov[i, j]
                        if with_ntk:
                            rec_ntk[slot, i, j] = ntk[i, j]


@numba.njit(parallel=True, error_model="numpy", fastmath={"contract"})
def _smooth_chunk(pair, params, sym, cov, ntk, q_r, q_c, u, v, sw2, sb2, nw, nb, kinc,
                  rec_slot, rec_cov, rec_ntk, with_ntk):
    """Same as ``_abrelu_chunk`` for an activation given by its pair map (V, Vdot); sw2, sb2,
    nw, nb are (C,) per-layer arrays, ``kinc``: the NTK increment is the covariance's."""
    n1 = cov.shape[0]
    ntask = (n1 + 1) // 2 if sym else n1
    for ptask in prange(ntask):
        # prange indices are unsigned; keep the arithmetic signed
        _smooth_task(np.int64(ptask), pair, params, sym, cov, ntk, q_r, q_c, u, v, sw2, sb2,
                     nw, nb, kinc, rec_slot, rec_cov, rec_ntk, with_ntk)


@numba.njit(error_model="numpy", fastmath={"contract"})
def _smooth_chunk_serial(pair, params, sym, cov, ntk, q_r, q_c, u, v, sw2, sb2, nw, nb, kinc,
                         rec_slot, rec_cov, rec_ntk, with_ntk):
    """``_smooth_chunk`` on one thread (small problems), bit-identical."""
    n1 = cov.shape[0]
    ntask = (n1 + 1) // 2 if sym else n1
    for task in range(ntask):
        _smooth_task(np.int64(task), pair, params, sym, cov, ntk, q_r, q_c, u, v, sw2, sb2,
                     nw, nb, kinc, rec_slot, rec_cov, rec_ntk, with_ntk)


# --------------------------------------------------------------------------------------------
# fast path tables: evaluate piecewise Chebyshev series
# --------------------------------------------------------------------------------------------
@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def _fast_eval(sym, eps0, sq_r, sq_c, los, his, coef_r, coef_tau, out_cov, out_ntk, with_ntk):
    """Evaluate the tabulated depth-L maps: 1 - rho_L = (1 - rho_0) r(theta0), tau_L(theta0).

    Pieces (los[k], his[k]), k < P, are dyadic in the angle distance to the nearer end (piece k
    ends at pi 2^-(k+1); architectures._fast_pieces); coefficient column k serves rho >= 0-side
    angles theta = distance, column P + k the mirror image theta = pi - distance, whose
    Chebyshev variable is -x.  coef_* are (degree, 2P) Chebyshev coefficients (c_0 halved);
    eps0 is the signed gap (``_fastmath``).  out_cov = sqrt(q1_L q2_L) rho_L and
    out_ntk = sqrt(q1_L q2_L) tau_L = Theta_L (entries j > i if sym).  Written as three loops over a block so that each
    vectorises (the piece index comes from the float exponent, the series by Clenshaw with
    gathers), instead of one latency-bound scalar loop.
    """
    n1, n2 = eps0.shape
    deg = coef_r.shape[0]
    P = los.shape[0]
    ntask = (n1 + 1) // 2 if sym else n1
    B = 256
    for ptask in prange(ntask):
        task = np.int64(ptask)
        ratio = np.empty(B)
        ibits = ratio.view(np.int64)
        th = np.empty(B)
        xs = np.empty(B)
        ks = np.empty(B, dtype=np.int64)
        b1r = np.empty(B)
        b2r = np.empty(B)
        b1t = np.empty(B)
        b2t = np.empty(B)
        for half in range(2 if sym else 1):
            i = task if half == 0 else n1 - 1 - task
            if half == 1 and i == task:
                continue
            j_start = i + 1 if sym else 0
            for j0 in range(j_start, n2, B):
                j1 = min(j0 + B, n2)
                e_blk = eps0[i, j0:j1]
                nb = j1 - j0
                for jj in range(nb):
                    dist = acos1m_unit(abs(e_blk[jj]))     # angle to the nearer end
                    th[jj] = dist
                    ratio[jj] = 0.5 * math.pi / max(dist, 1e-300)
                for jj in range(nb):
                    k = (ibits[jj] >> 52) - 1023           # floor(log2(ratio)), ratio >= 1
                    k = min(max(k, 0), P - 1)
                    lo = los[k]
                    hi = his[k]
                    x = (2.0 * th[jj] - (hi + lo)) / (hi - lo)
                    x = min(max(x, -1.0), 1.0)
                    # near rho = -1 the piece is the mirror image: theta = pi - distance
                    neg = near_minus_one(e_blk[jj])
                    ks[jj] = k + P if neg else k
                    xs[jj] = -x if neg else x
                c_blk = out_cov[i, j0:j1]
                t_blk = out_ntk[i, j0:j1]
                sc_blk = sq_c[j0:j1]
                si = sq_r[i]
                # Clenshaw, degrees outer and entries inner (the inner loop vectorises)
                for jj in range(nb):
                    b1r[jj] = 0.0
                    b2r[jj] = 0.0
                    b1t[jj] = 0.0
                    b2t[jj] = 0.0
                for n in range(deg - 1, 0, -1):
                    cr_n = coef_r[n]
                    ct_n = coef_tau[n]
                    for jj in range(nb):
                        x2 = 2.0 * xs[jj]
                        tr = x2 * b1r[jj] - b2r[jj] + cr_n[ks[jj]]
                        b2r[jj] = b1r[jj]
                        b1r[jj] = tr
                        if with_ntk:
                            tt = x2 * b1t[jj] - b2t[jj] + ct_n[ks[jj]]
                            b2t[jj] = b1t[jj]
                            b1t[jj] = tt
                cr_0 = coef_r[0]
                ct_0 = coef_tau[0]
                for jj in range(nb):
                    k = ks[jj]
                    rr = xs[jj] * b1r[jj] - b2r[jj] + cr_0[k]
                    s = si * sc_blk[jj]
                    e0, w0 = gaps_of(e_blk[jj])
                    c_blk[jj] = s * (1.0 - e0 * rr) if s > 0.0 else 0.0
                    if with_ntk:
                        tau = xs[jj] * b1t[jj] - b2t[jj] + ct_0[k]
                        t_blk[jj] = s * tau


def chunk_length(n, depth):
    """Number of layers per chunk so that a (chunk, n) table stays below _CHUNK_DOUBLES."""
    return int(max(1, min(depth, _CHUNK_DOUBLES // max(n, 1))))


def inv_sqrt_or_zero(q):
    """(sqrt(q), 1/sqrt(q)) with 1/sqrt(0) := 0 (the engine's zero-norm marker)."""
    sq = np.sqrt(q)
    with np.errstate(divide="ignore"):
        inv = np.where(sq > 0.0, 1.0 / np.where(sq > 0.0, sq, 1.0), 0.0)
    return sq, inv
