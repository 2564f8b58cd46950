"""Depth-independent kernels of biased and smooth networks on inputs of equal norm.

When every input has the same norm (all ``K0(x_i, x_i)`` equal; in a cross kernel, all rows of
``x1`` one norm and all rows of ``x2`` another), every diagonal follows one scalar sequence
``q_l`` (two for a cross kernel), so every off-diagonal entry is pushed through the *same*
scalar maps layer after layer (``_recursion`` module docstring).  The depth-L outputs are then
functions of one number, the correlation after the stem::

    1 - rho_L = g(theta0),      Theta_L = sqrt(q1_L q2_L) tau(theta0),
    theta0 = arccos(K_0(x, x') / sqrt(q1_0 q2_0))

(``Theta_L`` is affine in ``Theta_0 = K_0``, itself a function of theta0).  ``g`` and ``tau``
are tabulated by running the exact layer loop (``architectures._run_abrelu`` / ``_run_smooth``,
so per-layer coefficients are read exactly as the loop reads them) on the Chebyshev points of
dyadic pieces of the angle distance to the nearer end (``architectures._fast_pieces``: piece k
is [pi 2^-(k+2), pi 2^-(k+1)], mirrored for rho -> -1), plus the two ends theta0 = 0, pi
exactly.  Both maps are analytic in theta0 away from the ends, and near them they behave like
functions of ``1 - rho`` (for the ReLU family with biases, ``theta_{l+1}`` is an analytic
function of ``theta_l`` with ``theta_{l+1} ~ sqrt(c) theta_l``: the sqrt-type behaviour in rho
becomes analytic in theta), so the dyadic pieces in theta resolve both ends at any depth.
Applying the table is one O(N^2) pass (``_apply``: piece from the float exponent, Clenshaw
sums vectorised across entries, ``prange`` over rows).

Accuracy.  Each piece is accepted when its last two Chebyshev coefficients are below
``_PIECE_TOL`` = 1e-14 (of 1 for g, of the diagonal NTK ratio for tau), an estimate of its
interpolation error; entries that fall on a rejected piece (a feature the degree cannot
resolve, e.g. the sensitive region of a chaotic map near rho = 1, or an angle the stem cannot
produce) are computed by the layer loop itself, on those entries alone and with their own
diagonals, so the result never departs silently from the loop.  The stated accuracy is
|diff| <= 1e-12 sqrt(K(x, x) K(x', x')) (NTK: with its own diagonal) against the layer loop;
measured (tests/kernels/test_equal_norm.py, benchmarks/equal_norm.py): at most 6e-15 for ReLU,
leaky, abs, erf MLPs and ResNets at depths 40 .. 1e3, a chaotic erf net (chi_1 = 1.35), tanh
and a user activation, cross kernels of two norms, exact duplicates and negated rows.  The
diagonals are the loop's own, bit for bit.

Equal norms.  Normalised data (x / |x| * sqrt(d)) has norms equal only to a few ulps, so the
input diagonals |x_i|^2 / d count as equal when their spread is at most ``_NORM_RTOL`` = 1e-14
of the largest (about 45 ulps; measured spread of normalised Gaussian rows: 1e-15).  The
diagonals are still computed row by row by the loop's own diagonal recursion (on the distinct
values, O(U L)); only the off-diagonal correlation map is taken at the common norm (the
midpoint of the range), which adds about S * 1e-14 (scaled), S the sensitivity of rho_L to
log q_0 at fixed rho_0.  Measured at a spread of 9.8e-15 (depth 300): 5.3e-15 for ReLU
1.9/0.01, 5.0e-15 for erf 1.2/0.2, 3.8e-15 for chaotic erf 3.0/0.05, i.e. no visible effect.
A spread above the tolerance, or a zero norm, leaves the layer loop in charge (``fast=None``)
or raises ValueError (``fast=True``).
"""
import math

import numba
import numpy as np
from numba import prange

from . import _gram
from ._fastmath import acos1m_unit, near_minus_one, signed_gap

_NORM_RTOL = 1e-14      # input diagonals whose spread is below this (relative) are "equal"
_PIECE_TOL = 1e-14      # accepted estimate of a piece's interpolation error (scaled)
_DEGREE = 24            # Chebyshev points per piece
_PIECES = 28
# smooth activations: the loop's state is the covariance, so 1 - rho0 is either 0 or at least
# 2^-53 (theta0 >= 1.49e-8 > pi 2^-28): 28 pieces reach every angle the input can carry.  The
# ReLU family resolves smaller angles (gaps refined from the unit inputs), but the output is a
# covariance s (1 - g) with g <= ~theta0^2 < 1e-16 on the last piece [0, pi 2^-28], where g is
# a smooth function of theta0 (a theta0^2 + b theta0^3 + ...) that the piece resolves.
_TABLE_CACHE = {}
_TABLE_CACHE_SIZE = 8
_NODE_ROWS = 32         # the nodes form a (32, M/32) cross problem: row tiles for the cores


class Plan:
    """The decision to take this path: the common input norms of both sets."""

    def __init__(self, q1, q2):
        self.q1, self.q2 = q1, q2


def _common(q):
    """The common value of a set of input diagonals, or None if they are not equal (relative
    spread above _NORM_RTOL) or zero."""
    if q.size == 0:
        return None
    lo, hi = float(np.min(q)), float(np.max(q))
    if not (hi > 0.0) or hi - lo > _NORM_RTOL * hi:
        return None
    return lo + 0.5 * (hi - lo)


def _spread(q):
    hi = float(np.max(q)) if q.size else 0.0
    return (hi - float(np.min(q))) / hi if hi > 0 else float("nan")


def plan(stack, x1, x2, K0, diag, norms, fast, record, n_pairs, min_depth, min_pairs):
    """A ``Plan`` if the equal-norm path is taken, else None (raises ValueError for fast=True
    when it does not apply).  ``norms`` = input diagonals of the whole problem (tiles); else
    they are computed here, as ``architectures._input_state`` computes them (O(N d))."""
    if fast is False or record is not None:
        return None
    if fast is None and (stack.u.shape[0] < min_depth or n_pairs < min_pairs):
        return None
    if norms is not None:
        q1, q2 = norms
    elif K0 is not None:
        q1 = q2 = np.diag(K0)
    elif diag is not None:
        q1, q2 = diag
    else:
        gs = 1.0 / x1.shape[1]
        q1 = _gram.row_dots(x1) * gs
        q2 = q1 if x2 is None else _gram.row_dots(x2) * gs
    c1, c2 = _common(q1), (_common(q2) if q2.size else _common(q1))
    if c1 is None or c2 is None:
        if fast:
            bad = q1 if c1 is None else q2
            raise ValueError(
                "fast=True needs a bias-free positively homogeneous network (ABReLU-family "
                "activation, bias_var = 0) or inputs of equal norm (all |x_i|^2 / d, or K0_ii, "
                f"equal to a relative {_NORM_RTOL:g}, and nonzero): the input norms^2 range "
                f"over [{float(np.min(bad)):.6g}, {float(np.max(bad)):.6g}] (relative spread "
                f"{_spread(bad):.3g}); use fast=None or fast=False")
        return None
    return Plan(c1, c2)


# ----------------------------------------------------------------------------------------------
# the layer loop on a list of entries with common diagonals
# ----------------------------------------------------------------------------------------------
def _loop_entries(stack, kind, state0, ntk0, qa0, qb0, with_ntk):
    """Run the exact layer loop on M entries with off-diagonal stem state ``state0`` (signed gap
    for the ReLU family, covariance otherwise) and stem NTK ``ntk0``: either all with the
    diagonals qa0, qb0 (floats; the table nodes, laid out as a (32, M/32) cross problem so that
    the cores share the work), or, with qb0 an (M,) array, as one row of diagonal qa0 against M columns
    of their own diagonals (the loop's own arithmetic for those entries).  Returns
    (g = 1 - rho_L, tau = Theta_L / sqrt(q1_L q2_L)) of shape (M,) and the depth-L diagonals
    (qa_L, qb_L, ta_L, tb_L) (row 0 / column 0)."""
    from . import architectures as _arch
    M = state0.shape[0]
    if np.ndim(qb0) == 0:
        R = _NODE_ROWS if M >= 4 * _NODE_ROWS else 1
        C = -(-M // R)
        qa, qb = np.full(R, qa0), np.full(C, qb0)
    else:
        R, C = 1, M
        qa, qb = np.full(1, qa0), np.ascontiguousarray(qb0, dtype=np.float64)
    pad = R * C - M
    st = np.concatenate([state0, np.repeat(state0[-1:], pad)]).reshape(R, C)
    nt = np.concatenate([ntk0, np.repeat(ntk0[-1:], pad)]).reshape(R, C)
    if kind[0] == "abrelu":
        z, nt, qa, qb, ta, tb = _arch._run_abrelu(stack, st, nt, qa, qb, qa.copy(), qb.copy(),
                                                  False, kind[1], kind[2], None,
                                                  with_ntk=with_ntk)
        g = np.where(np.signbit(z), 2.0 + z, z)          # 1 - rho from the signed gap
    else:
        cov, nt, qa, qb, ta, tb = _arch._run_smooth(stack, kind[1], kind[2], st, nt, qa, qb,
                                                    qa.copy(), qb.copy(), False, None,
                                                    with_ntk=with_ntk)
        g = 1.0 - cov / np.sqrt(qa[:, None] * qb[None, :])
    s = np.sqrt(qa[:, None] * qb[None, :])
    tau = nt / s if with_ntk else np.zeros_like(g)
    return (g.reshape(-1)[:M], tau.reshape(-1)[:M], qa[0], qb[0], ta[0], tb[0])


def _stem_min_correlation(stack, q1, q2):
    """The smallest correlation the stem K <- w K + b can output (antipodal inputs)."""
    w, b = stack.stem
    s = math.sqrt(q1 * q2)
    den = math.sqrt((w * q1 + b) * (w * q2 + b))
    return -1.0 if b == 0.0 else (b - w * s) / den


def _key(stack, kind, qa0, qb0, with_ntk):
    parts = [kind[0], stack.u.tobytes(), stack.v.tobytes(), np.asarray(stack.sw2).tobytes(),
             np.asarray(stack.sb2).tobytes(), tuple(stack.stem), qa0, qb0, with_ntk]
    parts += [kind[1], kind[2]] if kind[0] == "abrelu" else [kind[1], kind[2].tobytes()]
    return tuple(parts)


def _tables(stack, kind, plan_, with_ntk):
    """Piecewise Chebyshev tables of g and tau (module docstring), cached per network and norms.

    Returns (P, los, his, ok, coef_g, coef_t, end_g, end_t, (qa_L, qb_L))."""
    w, b = stack.stem
    qa0, qb0 = w * plan_.q1 + b, w * plan_.q2 + b         # the stem, as _input_state
    key = _key(stack, kind, qa0, qb0, with_ntk)
    hit = _TABLE_CACHE.get(key)
    if hit is None and not with_ntk:
        hit = _TABLE_CACHE.get(_key(stack, kind, qa0, qb0, True))
    if hit is not None:
        return hit
    P, n = _PIECES, _DEGREE
    los, his = _pieces(P)
    xk = np.cos(np.pi * (np.arange(n) + 0.5) / n)
    mid, half = 0.5 * (his + los), 0.5 * (his - los)
    # mirror pieces (rho near -1) only as far as the stem can reach
    rmin = _stem_min_correlation(stack, plan_.q1, plan_.q2)
    dmin = 0.0 if rmin <= -1.0 else math.pi - math.acos(min(max(rmin, -1.0), 1.0))
    neg = his >= dmin * (1.0 - 1e-9)
    ks = np.concatenate([np.arange(P), P + np.flatnonzero(neg)])
    dist = np.concatenate([mid[:, None] + half[:, None] * xk,
                           (mid[:, None] - half[:, None] * xk)[neg]])     # (columns, n)
    gap = 2.0 * np.sin(0.5 * dist) ** 2
    side = (ks >= P)[:, None]
    z0 = np.where(side, -gap, gap).ravel()
    rho0 = np.where(side, gap - 1.0, 1.0 - gap).ravel()
    ends = [0.0] + ([-0.0] if rmin <= -1.0 else [])
    z0 = np.concatenate([z0, ends])
    rho0 = np.concatenate([rho0, [1.0, -1.0][:len(ends)]])
    s0 = math.sqrt(qa0 * qb0)
    state0 = z0 if kind[0] == "abrelu" else s0 * rho0
    g, tau, qaL, qbL, taL, tbL = _loop_entries(stack, kind, state0, s0 * rho0, qa0, qb0,
                                               with_ntk)
    m = ks.shape[0] * n
    gv, tv = g[:m].reshape(-1, n), tau[:m].reshape(-1, n)
    j = np.arange(n)
    Tm = np.cos(np.pi * j[:, None] * (j[None, :] + 0.5) / n)
    with np.errstate(all="ignore"):
        cg = (2.0 / n) * Tm @ gv.T                              # (degree, columns)
        ct = (2.0 / n) * Tm @ tv.T
    cg[0] *= 0.5
    ct[0] *= 0.5
    sL = math.sqrt(qaL * qbL)
    tscale = math.sqrt(taL * tbL) / sL if with_ntk else 1.0
    err_g = np.abs(cg[-1]) + np.abs(cg[-2])
    err_t = (np.abs(ct[-1]) + np.abs(ct[-2])) / tscale
    good = (np.all(np.isfinite(cg), axis=0) & np.all(np.isfinite(ct), axis=0)
            & (err_g <= _PIECE_TOL) & (err_t <= _PIECE_TOL))
    coef_g, coef_t = np.zeros((n, 2 * P)), np.zeros((n, 2 * P))
    ok = np.zeros(2 * P, dtype=np.bool_)
    coef_g[:, ks] = np.where(good, cg, 0.0)
    coef_t[:, ks] = np.where(good, ct, 0.0)
    ok[ks] = good
    end_g = np.zeros(2)
    end_t = np.zeros(2)
    end_ok = np.zeros(2, dtype=np.bool_)
    for e in range(len(ends)):
        end_g[e], end_t[e] = g[m + e], tau[m + e]
        end_ok[e] = np.isfinite(end_g[e]) and np.isfinite(end_t[e])
    out = (P, los, his, ok, np.ascontiguousarray(coef_g), np.ascontiguousarray(coef_t), end_g,
           end_t, end_ok)
    if len(_TABLE_CACHE) >= _TABLE_CACHE_SIZE:
        _TABLE_CACHE.pop(next(iter(_TABLE_CACHE)))
    _TABLE_CACHE[key] = out
    return out


# ----------------------------------------------------------------------------------------------
# applying the tables: one O(N^2) pass
# ----------------------------------------------------------------------------------------------
@numba.njit(inline="always", cache=True, error_model="numpy")
def _sqrt_prod(qa, qb, sqa, sqb):
    """sqrt(qa qb) as one rounding (exactly q for qa = qb = q, as the loop's diagonal) where the
    product is a normal float, else sqrt(qa) sqrt(qb)."""
    p = qa * qb
    return math.sqrt(p) if (p > 1e-290 and p < 1e290) else sqa * sqb


@numba.njit(inline="always", cache=True, error_model="numpy")
def _gap_of(smooth, x, q1, q2):
    """The signed gap of an entry: the engine's state itself (ReLU family) or from the
    covariance x and s0 = sqrt(q1_0 q2_0) (smooth; rho clipped to [-1, 1]; s0 in one rounding,
    so that an exact duplicate, x = q1 = q2 as in the loop, has rho = 1 exactly)."""
    if not smooth:
        return x
    s0 = _sqrt_prod(q1, q2, math.sqrt(q1), math.sqrt(q2))
    rho = min(max(x / s0, -1.0), 1.0) if s0 > 0.0 else 0.0
    return signed_gap(1.0 - rho, 1.0 + rho)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _column(z, dist, kexp, P, los, his, ok, end_ok):
    """(column, Chebyshev variable) of an entry with signed gap z, angle distance ``dist`` to
    the nearer end and kexp = floor(log2(pi / (2 dist))): column >= 0 a table piece, -1 / -2
    the end theta0 = 0 / pi, -3 an entry the table does not serve (left to the loop)."""
    neg = near_minus_one(z)
    if dist == 0.0:
        e = 1 if neg else 0
        return (-1 - e if end_ok[e] else -3), 0.0
    k = min(max(kexp, 0), P - 1)
    lo = los[k]
    hi = his[k]
    x = min(max((2.0 * dist - (hi + lo)) / (hi - lo), -1.0), 1.0)
    col = k + P if neg else k
    if not ok[col]:
        return -3, 0.0
    return col, (-x if neg else x)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _block_columns(smooth, state_row, q0_i, q0_c, P, los, his, ok, end_ok, zb, th, ratio,
                   ibits, ks, xs):
    """Columns and Chebyshev variables of one block of entries (three loops that vectorise;
    the piece index is read from the float exponent, as in ``_recursion._fast_eval``)."""
    nb = state_row.shape[0]
    for jj in range(nb):
        z = _gap_of(smooth, state_row[jj], q0_i, q0_c[jj])
        zb[jj] = z
        dist = acos1m_unit(abs(z))
        th[jj] = dist
        ratio[jj] = 0.5 * math.pi / max(dist, 1e-300)
    for jj in range(nb):
        kexp = (ibits[jj] >> 52) - 1023
        col, x = _column(zb[jj], th[jj], kexp, P, los, his, ok, end_ok)
        ks[jj] = col
        xs[jj] = x


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def _apply(smooth, sym, state, q0_r, q0_c, qL_r, qL_c, P, los, his, ok, coef_g, coef_t,
           end_g, end_t, end_ok, out_cov, out_ntk, with_ntk, bad_rows):
    """out_cov = s_L (1 - g(theta0)), out_ntk = s_L tau(theta0), s_L = sqrt(q1_L q2_L), for
    entries j > i if sym.  state: signed gap (ReLU family) or stem covariance (smooth, may be
    out_cov itself: each block is read before it is written).  Entries the table does not
    serve are counted in bad_rows[i], set to NaN in out_cov, and their out_ntk (the stem
    NTK, = the stem covariance) is left as it was."""
    n1, n2 = state.shape
    deg = coef_g.shape[0]
    ntask = (n1 + 1) // 2 if sym else n1
    B = 256
    for ptask in prange(ntask):
        task = np.int64(ptask)
        zb = np.empty(B)
        th = np.empty(B)
        ratio = np.empty(B)
        ibits = ratio.view(np.int64)
        xs = np.empty(B)
        ks = np.empty(B, dtype=np.int64)
        b1g = np.empty(B)
        b2g = np.empty(B)
        b1t = np.empty(B)
        b2t = np.empty(B)
        for half in range(2 if sym else 1):
            i = task if half == 0 else n1 - 1 - task
            if half == 1 and i == task:
                continue
            sqi = math.sqrt(qL_r[i])
            for j0 in range(i + 1 if sym else 0, n2, B):
                j1 = min(j0 + B, n2)
                nb = j1 - j0
                _block_columns(smooth, state[i, j0:j1], q0_r[i], q0_c[j0:j1], P, los, his,
                               ok, end_ok, zb, th, ratio, ibits, ks, xs)
                for jj in range(nb):
                    b1g[jj] = 0.0
                    b2g[jj] = 0.0
                    b1t[jj] = 0.0
                    b2t[jj] = 0.0
                for m in range(deg - 1, 0, -1):
                    cg_m = coef_g[m]
                    ct_m = coef_t[m]
                    for jj in range(nb):
                        k = max(ks[jj], 0)
                        x2 = 2.0 * xs[jj]
                        tg = x2 * b1g[jj] - b2g[jj] + cg_m[k]
                        b2g[jj] = b1g[jj]
                        b1g[jj] = tg
                        if with_ntk:
                            tt = x2 * b1t[jj] - b2t[jj] + ct_m[k]
                            b2t[jj] = b1t[jj]
                            b1t[jj] = tt
                cg_0 = coef_g[0]
                ct_0 = coef_t[0]
                nbad = 0
                for jj in range(nb):
                    col = ks[jj]
                    if col == -3:               # left to the loop: marked, NTK state kept
                        nbad += 1
                        out_cov[i, j0 + jj] = np.nan
                        continue
                    j = j0 + jj
                    k = max(col, 0)
                    g = xs[jj] * b1g[jj] - b2g[jj] + cg_0[k]
                    tau = xs[jj] * b1t[jj] - b2t[jj] + ct_0[k]
                    if col < 0:
                        g = end_g[-1 - col]
                        tau = end_t[-1 - col]
                    s = _sqrt_prod(qL_r[i], qL_c[j], sqi, math.sqrt(qL_c[j]))
                    out_cov[i, j] = s * (1.0 - min(max(g, 0.0), 2.0))
                    if with_ntk:
                        out_ntk[i, j] = s * tau
                bad_rows[i] += nbad


@numba.njit(cache=True, error_model="numpy")
def _collect(sym, out_cov, bad_rows, I, J):
    """Indices of the entries ``_apply`` left to the loop (marked NaN in rows with
    bad_rows > 0)."""
    n1, n2 = out_cov.shape
    m = 0
    for i in range(n1):
        if bad_rows[i] == 0:
            continue
        for j in range(i + 1 if sym else 0, n2):
            if math.isnan(out_cov[i, j]):
                I[m] = i
                J[m] = j
                m += 1
    return m


def _pieces(P):
    """Dyadic pieces of the angle distance to the nearer end (as ``architectures.
    _fast_pieces``, with P pieces): piece k = [pi 2^-(k+2), pi 2^-(k+1)], the last [0, pi 2^-P]."""
    k = np.arange(P, dtype=np.float64)
    his = 0.5 * np.pi * 2.0 ** (-k)
    los = np.where(k == P - 1, 0.0, 0.5 * his)
    return los, his


def run(plan_, stack, kind, state, ntk, out_cov, qa, qb, sym, with_ntk):
    """The equal-norm path.  ``state``: the engine's stem state (signed gap, or covariance for
    smooth activations, then also ``out_cov``); ``ntk``: the stem NTK, overwritten with the
    result; ``qa``, ``qb``: stem diagonals per row.  Returns (cov, ntk, qa_L, qb_L, ta_L, tb_L)
    like the layer loops of ``architectures``."""
    smooth = kind[0] != "abrelu"
    P, los, his, ok, coef_g, coef_t, end_g, end_t, end_ok = _tables(stack, kind, plan_,
                                                                    with_ntk)
    # diagonals row by row as the loop computes them, on the distinct values only
    qa_L, ta_L = _diagonals(stack, kind, qa, with_ntk)
    qb_L, tb_L = (qa_L, ta_L) if sym else _diagonals(stack, kind, qb, with_ntk)
    n1, n2 = state.shape
    bad = np.zeros(n1, dtype=np.int64)
    if n2 > 0:
        _apply(smooth, sym, state, qa, qb, qa_L, qb_L, P, los, his, ok, coef_g, coef_t,
               end_g, end_t, end_ok, out_cov, ntk, with_ntk, bad)
    nbad = int(bad.sum())
    if nbad:                       # entries the table does not serve: the loop, on them alone
        I, J = np.empty(nbad, np.int64), np.empty(nbad, np.int64)
        _collect(sym, out_cov, bad, I, J)
        _fallback(stack, kind, smooth, state, ntk, out_cov, qa, qb, qa_L, qb_L, I, J, with_ntk)
    return out_cov, ntk, qa_L, qb_L, ta_L, tb_L


def _fallback(stack, kind, smooth, state, ntk, out_cov, qa, qb, qa_L, qb_L, I, J, with_ntk):
    """Entries (I, J) by the layer loop with their own stem diagonals, grouped by the row's
    diagonal (a handful of distinct values): the loop's arithmetic for those entries."""
    rows = qa[I]
    for v in np.unique(rows):
        sel = np.flatnonzero(rows == v)
        i, j = I[sel], J[sel]
        t0 = ntk[i, j]              # the stem NTK = the stem covariance, kept by _apply
        g, tau, _, _, _, _ = _loop_entries(stack, kind, t0.copy() if smooth else state[i, j],
                                           t0, v, qb[j], with_ntk)
        s = np.sqrt(qa_L[i] * qb_L[j])
        out_cov[i, j] = s * (1.0 - np.clip(g, 0.0, 2.0))
        if with_ntk:
            ntk[i, j] = s * tau


def _diagonals(stack, kind, q, with_ntk):
    """Depth-L diagonals (q_L, Theta_L) of each stem diagonal in q, computed by the loop's own
    diagonal recursion on the distinct values (a handful for normalised data)."""
    from . import architectures as _arch
    u, inv = np.unique(q, return_inverse=True)
    if kind[0] == "abrelu":
        _, _, qL, _, tL, _ = _arch._run_abrelu(stack, None, None, u, u, u.copy(), u.copy(), True,
                                               kind[1], kind[2], None, diag_only=True)
    else:
        e = np.empty((u.shape[0], 0))
        _, _, qL, _, tL, _ = _arch._run_smooth(stack, kind[1], kind[2], e, e.copy(), u, u[:0],
                                               u.copy(), u[:0].copy(), False, None,
                                               with_ntk=with_ntk)
    return qL[inv], tL[inv]
