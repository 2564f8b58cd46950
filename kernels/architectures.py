"""Architectures: MLP and ResNet as frozen dataclasses, with their infinite-width kernels.

Conventions follow neural-tangents (DESIGN.md): NTK parameterisation, input kernel
``K0 = x x' / d``, ``depth`` = number of nonlinearities, NNGP = covariance of one scalar output,
NTK summed over every weight and bias, readout included.
"""
import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from . import _checks, _gram, _recursion as _rec
from .activations import Activation, ShapedReLU

__all__ = ["MLP", "ResNet", "Kernels", "Trajectory"]

_FAST_PIECES = 40          # dyadic pieces of [0, pi/2] (down to pi 2^-40), mirrored at pi
_FAST_DEGREE = 24          # Chebyshev points per piece
_FAST_MIN_DEPTH = 32       # auto mode: below this the layer loop is as cheap
_REFINE_EPS = 1e-3         # input pairs closer than this get 1 - rho from |x/|x| - y/|y||^2 / 2


@dataclass(frozen=True)
class Kernels:
    """NNGP and NTK matrices from one pass.

    Bias-free positively homogeneous networks (ABReLU family, no bias in the stem or the
    layers) are computed at any representable input scale (1e-300 .. 1e300): rows of extreme
    norm are rescaled by exact powers of two and the kernels scaled back, so
    ``nngp(a x) = a^2 nngp(x)`` holds to rounding; a result beyond the float64 range raises
    FloatingPointError naming the quantity."""

    nngp: np.ndarray
    ntk: np.ndarray


@dataclass(frozen=True)
class Trajectory:
    """Per-layer kernels.  Arrays are indexed ``[k, i, j]`` with ``layers[k]`` the layer index.

    Attributes
    ----------
    layers : (R,) int array of recorded layer indices l in 0..depth.
    nngp, ntk : (R, N, N) covariance and NTK of the hidden representation after layer l
        (``ntk`` is None for ``trajectory(..., ntk=False)``).
    correlation : (R, N, N) ``rho = K12 / sqrt(K11 K22)``.
    one_minus_correlation : (R, N, N) ``1 - rho`` computed without cancellation (the recursion
        state for ReLU-type activations), accurate in relative terms as rho -> 1.  For smooth
        activations it is formed from the covariances, and rounding is clipped so that
        ``correlation`` lies in [-1, 1].
    angle : (R, N, N) ``theta = arccos(rho)``, accurate near 0 (and, for ReLU-type
        activations, near pi).
    """

    layers: np.ndarray
    nngp: np.ndarray
    ntk: np.ndarray
    correlation: np.ndarray
    one_minus_correlation: np.ndarray
    angle: np.ndarray


# ----------------------------------------------------------------------------------------------
# shared machinery
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Stack:
    """What the engine needs: stem (K <- w K + b, Theta <- K), layers (u, v), readout.

    Layer l maps K <- u_l K + v_l (sw2 V(K) + sb2).  Monte Carlo runs the same description at
    finite width (kernels.montecarlo): ``scales`` are the per-layer multipliers of the sampled
    layer (ResNet: the branch scales alpha_l, whose squares are v; None: sqrt(v)).
    """

    activation: Activation
    sw2: float
    sb2: float
    stem: tuple
    u: np.ndarray
    v: np.ndarray
    readout: Optional[tuple]
    scales: Optional[np.ndarray] = None

    def without_readout(self):
        return replace(self, readout=None)


def _acos1m_np(eps):
    eps = np.clip(eps, 0.0, 2.0)
    return np.where(eps <= 1.0, 2.0 * np.arcsin(np.sqrt(0.5 * eps)), np.arccos(1.0 - eps))


def _unit_rows(x):
    big = np.max(np.abs(x), axis=1, keepdims=True)
    odd = (big > 0) & ((big < 2.0 ** -_SAFE_EXP) | (big > 2.0 ** _SAFE_EXP))
    if np.any(odd):            # the norm would underflow or overflow: rescale those rows first
        x = np.where(odd, x / np.where(odd, big, 1.0), x)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


_SAFE_EXP = 240     # rows with max |x| in [2^-240, 2^240] (~1.8e-72 .. 1.8e72) are used as given


def _row_exponents(x):
    """Power-of-two exponents k_i (x_i 2^-k_i has max |x_i| in [1/2, 1)) for rows whose largest
    entry lies outside [2^-_SAFE_EXP, 2^_SAFE_EXP], 0 for the others; None if all are 0."""
    M = np.max(np.abs(x), axis=1)
    _, e = np.frexp(M)
    odd = (M > 0) & ((M < 2.0 ** -_SAFE_EXP) | (M > 2.0 ** _SAFE_EXP))
    return np.where(odd, e, 0).astype(np.int64) if np.any(odd) else None


def _kernel_exponents(K0):
    """The same for an input kernel: k_i with K0_ii 4^-k_i in [1/4, 1) where K0_ii is outside
    [4^-_SAFE_EXP, 4^_SAFE_EXP]."""
    q = np.diag(K0)
    _, e = np.frexp(q)
    odd = (q > 0) & ((q < 4.0 ** -_SAFE_EXP) | (q > 4.0 ** _SAFE_EXP))
    return np.where(odd, e // 2, 0).astype(np.int64) if np.any(odd) else None


def _homogeneous_rescale(x1, x2, K0):
    """Bias-free positively homogeneous networks satisfy K(D1 x1, D2 x2) = D1 K(x1, x2) D2 for
    positive diagonal D (every layer, NNGP and NTK alike).  Rows of extreme scale are brought
    to scale 1 by exact powers of two, so that no product such as q1 q2 or x x' overflows or
    underflows (theta, rho and every ratio are then exact at any representable scale); the
    results are multiplied back by 2^(k_i + k_j) (``_unscale``).  Rows in the safe range are
    untouched, so their numbers are bit-identical to the unscaled computation."""
    if K0 is not None:
        k = _kernel_exponents(K0)
        if k is None:
            return x1, x2, K0, None
        return x1, x2, np.ldexp(K0, -(k[:, None] + k[None, :])), (k, k)
    ka = _row_exponents(x1)
    kb = ka if x2 is None else _row_exponents(x2)
    if ka is None and kb is None:
        return x1, x2, K0, None
    ka = np.zeros(x1.shape[0], np.int64) if ka is None else ka
    kb = (ka if x2 is None else np.zeros(x2.shape[0], np.int64)) if kb is None else kb
    x1 = np.ldexp(x1, -ka[:, None])
    if x2 is not None:
        x2 = np.ldexp(x2, -kb[:, None])
    return x1, x2, None, (ka, kb)


def _unscale(a, scale):
    """a * 2^(k_i + k_j) on the last two axes (exact unless it overflows or underflows)."""
    if scale is None or a is None:
        return a
    ka, kb = scale
    with np.errstate(over="ignore", under="ignore"):
        return np.ldexp(a, ka[:, None] + kb[None, :])


def _input_state(x1, x2, K0, stem, gap, diag=None):
    """Stem output K <- w K + b: diagonals qa (N1,), qb (N2,), the off-diagonal state and the
    sym flag.  With ``gap`` (ReLU family) the state is (signed gap z, NTK, a free (N1, N2)
    buffer); otherwise (covariance, NTK, None).  Only entries j > i are set when sym.

    ``diag`` = (qa, qb), the scaled input diagonals, replaces their computation (a tile of a
    larger kernel takes them from the whole input set: ``_blockwise``)."""
    w, b = stem
    if K0 is not None:
        sym = True
        G, gscale = K0, 1.0            # K0 is our own copy (_checks.psd_kernel)
        qa = qb = np.diag(K0).copy()
    else:
        sym = x2 is None
        xa, xb = (x1, x1) if sym else (x1, x2)
        gscale = 1.0 / x1.shape[1]
        G = _gram.gram(xa, None if sym else xb)     # entry by entry: tiles equal the whole
        # diagonals from the same sums and scaling as G: duplicates stay exactly equal
        qa = np.diag(G) * gscale if sym else _gram.row_dots(xa) * gscale
        qb = qa if sym else _gram.row_dots(xb) * gscale
    if diag is not None:
        qa, qb = diag
    if gap:
        z, ntk = np.empty(G.shape), np.empty(G.shape)
        init = _rec._init_gap_serial if G.size < _rec.SERIAL_ENTRIES else _rec._init_gap
        if K0 is None:
            ua = _unit_rows(xa)
            init(sym, G, gscale, qa, qb, w, b, ua, ua if sym else _unit_rows(xb),
                 _REFINE_EPS, z, ntk)
        else:
            empty = np.zeros((G.shape[0], 0))
            init(sym, G, gscale, qa, qb, w, b, empty, empty, 0.0, z, ntk)
        state = (z, ntk, G)
    else:
        cov = w * (gscale * G) + b        # the same operations as the diagonal w qa + b
        state = (cov, cov.copy(), None)
    return w * qa + b, w * qb + b, state, sym


def _run(stack, x1=None, x2=None, K0=None, record=None, fast=None, ntk=True, diag=None,
         pairs=None, finish=None, prescaled=False, scale=None):
    """Run the recursion: Kernels, or a Trajectory when ``record`` lists layers.  With
    ``ntk=False`` no NTK operation runs in the O(N^2 L) loops and ``.ntk`` is None.

    For tiles of a larger kernel (``_blockwise``): ``diag`` gives the input diagonals, ``pairs``
    the number of pairs of the whole problem (the automatic ``fast`` choice), ``finish`` replaces
    ``_finish`` (same arguments); with ``prescaled`` the inputs are already rescaled
    (``_homogeneous_rescale`` of the whole problem, which is row by row) and ``scale`` is this
    tile's part of its exponents."""
    kind = stack.activation._engine()
    w0, b0 = stack.stem
    eligible = kind[0] == "abrelu" and stack.sb2 == 0.0 and b0 == 0.0
    if not prescaled:
        scale = None
        if eligible:
            x1, x2, K0, scale = _homogeneous_rescale(x1, x2, K0)
    n1 = (K0 if K0 is not None else x1).shape[0]
    n2 = n1 if (K0 is not None or x2 is None) else x2.shape[0]
    L = stack.u.shape[0]
    if record is not None:
        _trajectory_memory(len(record), n1, n2, ntk)
    qa, qb, (state, ntk_state, spare), sym = _input_state(x1, x2, K0, stack.stem,
                                                           gap=kind[0] == "abrelu", diag=diag)
    ta, tb = qa.copy(), qb.copy()    # Theta = K after the (trained) stem
    eps, cov = (state, spare) if kind[0] == "abrelu" else (None, state)

    n_pairs = (n1 * (n1 - 1) // 2 if sym else n1 * n2) if pairs is None else pairs
    if fast is None:
        fast = (eligible and record is None and L >= _FAST_MIN_DEPTH
                and n_pairs >= 8 * _FAST_PIECES * _FAST_DEGREE)
    elif fast:
        if not eligible:
            raise ValueError("fast=True needs a bias-free positively homogeneous network "
                             "(ABReLU-family activation, bias_var = 0)")
        if record is not None:
            raise ValueError("fast=True is not available for trajectories")

    rec = _Recorder(record, n1, n2, ntk) if record is not None else None
    if kind[0] == "abrelu":
        _, a, b = kind
        if fast:
            cov, ntk_state, qa, qb, ta, tb = _run_fast(stack, eps, cov, ntk_state, qa, qb, ta,
                                                       tb, sym, a, b, ntk)
        else:
            eps, ntk_state, qa, qb, ta, tb = _run_abrelu(stack, eps, ntk_state, qa, qb, ta, tb,
                                                         sym, a, b, rec, with_ntk=ntk)
            if rec is None:
                (_rec._gap_to_cov_serial if eps.size < _rec.SERIAL_ENTRIES
                 else _rec._gap_to_cov)(sym, eps, qa, qb, cov)
    else:
        _, pair, params = kind
        cov, ntk_state, qa, qb, ta, tb = _run_smooth(stack, pair, params, cov, ntk_state, qa,
                                                     qb, ta, tb, sym, rec, with_ntk=ntk)
    if rec is not None:
        return _finish_trajectory(stack, rec, sym, gap=kind[0] == "abrelu", scale=scale)
    return (finish or _finish)(stack, cov, ntk_state if ntk else None, qa, qb, ta, tb, sym,
                               scale)


def _trajectory_memory(R, n1, n2, ntk):
    """Refuse up front a trajectory that cannot fit: about (9 + 2 ntk) arrays of (R, N1, N2)
    float64 (engine records, outputs, temporaries)."""
    per = 9 + (2 if ntk else 0)
    _checks.memory_budget(8.0 * R * (n1 * n2 * per + 4),
                          f"a trajectory of {R} recorded layers x {n1} x {n2} entries",
                          "record fewer layers (layers=[...])" +
                          ("" if not ntk else " or skip the NTK (ntk=False)"))


def _layer_coeffs(stack, a, b, lo, hi):
    """Per-layer coefficients of the ABReLU update (``_recursion`` module docstring)."""
    m = 0.5 * (a * a + b * b)
    fac = (a - b) ** 2 / (2 * math.pi)
    u = stack.u[lo:hi]
    v = stack.v[lo:hi]
    beta = u + v * stack.sw2 * m
    gamma = v * stack.sb2
    kappa = v * stack.sw2 * fac
    mu = v * stack.sw2
    xi = 2.0 * u + v * stack.sw2 * 0.5 * (a + b) ** 2
    zeta = -u - v * stack.sw2 * a * b
    return [np.ascontiguousarray(z, dtype=np.float64)
            for z in (beta, gamma, kappa, mu, u, xi, zeta)]


class _Recorder:
    """Collects the recorded layers: off-diagonal state from the engine, diagonals from tables.
    Layer look-ups are vectorised (``searchsorted`` on the sorted layer list), so recording
    every layer of a depth-1e7 network costs no Python loop over layers."""

    def __init__(self, record, n1, n2, ntk=True):
        self.layers = np.asarray(record, dtype=np.int64)
        R = len(self.layers)
        self.ntk = ntk
        self.off_a = np.zeros((R, n1, n2))     # eps (ABReLU) or covariance (smooth)
        self.off_t = np.zeros((R, n1, n2)) if ntk else _NO_SLOTS
        self.qa = np.zeros((R, n1))
        self.qb = np.zeros((R, n2))
        self.ta = np.zeros((R, n1))
        self.tb = np.zeros((R, n2))

    def _find(self, ls):
        """Slot of each layer in ``ls`` (int array), -1 where it is not recorded."""
        idx = np.searchsorted(self.layers, ls)
        idc = np.minimum(idx, len(self.layers) - 1)
        return np.where(self.layers[idc] == ls, idc, -1).astype(np.int64)

    def slots(self, lo, hi):
        """rec_slot for the states after layers lo+1 .. hi."""
        return self._find(np.arange(lo + 1, hi + 1, dtype=np.int64))

    def take_diag(self, lo, hi, tables):
        qa_t, qb_t, ta_t, tb_t = tables
        k = self._find(np.arange(lo, hi + 1, dtype=np.int64))
        hit = k >= 0
        rows, k = np.nonzero(hit)[0], k[hit]
        self.qa[k], self.qb[k] = qa_t[rows], qb_t[rows]
        self.ta[k], self.tb[k] = ta_t[rows], tb_t[rows]

    def take_state(self, off_a, off_t):
        k = int(self._find(np.zeros(1, dtype=np.int64))[0])
        if k >= 0:
            self.off_a[k] = off_a
            if self.ntk:
                self.off_t[k] = off_t


def _chunks(stack, n):
    L = stack.u.shape[0]
    step = _rec.chunk_length(n, L)
    return [(lo, min(L, lo + step)) for lo in range(0, L, step)]


def _diag_tables(diag_fn, qa, qb, ta, tb, sym, C):
    """Per-layer diagonal tables (C + 1, N) for rows and columns (shared when sym)."""
    qa_t, ta_t = np.empty((C + 1, qa.shape[0])), np.empty((C + 1, qa.shape[0]))
    diag_fn(qa, ta, qa_t, ta_t)
    if sym:
        return qa_t, qa_t, ta_t, ta_t
    qb_t, tb_t = np.empty((C + 1, qb.shape[0])), np.empty((C + 1, qb.shape[0]))
    diag_fn(qb, tb, qb_t, tb_t)
    return qa_t, qb_t, ta_t, tb_t


_NO_SLOTS = np.zeros((1, 1, 1))


def _serial(state, sym, C):
    """One thread when the chunk is too small for threads to pay (``_rec.SERIAL_WORK``)."""
    n1, n2 = state.shape
    pairs = n1 * (n1 - 1) // 2 if sym else n1 * n2
    return pairs * C < _rec.SERIAL_WORK


def _run_abrelu(stack, z, ntk, qa, qb, ta, tb, sym, a, b, rec, diag_only=False,
                with_ntk=True):
    """ABReLU family: advance the signed gap z, the NTK and the diagonals, in place."""
    m = 0.5 * (a * a + b * b)
    fac = (a - b) ** 2 / (2 * math.pi)
    n1, n2 = qa.shape[0], qb.shape[0]
    if rec is not None:
        rec.take_state(z, ntk)
    for lo, hi in _chunks(stack, n1 + n2):
        beta, gamma, kappa, mu, u, xi, zeta = _layer_coeffs(stack, a, b, lo, hi)
        tables = _diag_tables(
            lambda q, t, qo, to: _rec._abrelu_diag(q, t, beta, gamma, u, mu, m, qo, to),
            qa, qb, ta, tb, sym, hi - lo)
        qa_t, qb_t, ta_t, tb_t = tables
        if not diag_only:
            sqa, inva = _rec.inv_sqrt_or_zero(qa_t)
            sqb, invb = (sqa, inva) if sym else _rec.inv_sqrt_or_zero(qb_t)
            slots, r_eps, r_ntk = np.full(hi - lo, -1, dtype=np.int64), _NO_SLOTS, _NO_SLOTS
            if rec is not None:
                slots, r_eps, r_ntk = rec.slots(lo, hi), rec.off_a, rec.off_t
                rec.take_diag(lo, hi, tables)
            chunk = (_rec._abrelu_chunk_serial if _serial(z, sym, hi - lo)
                     else _rec._abrelu_chunk)
            chunk(sym, z, ntk, sqa, inva, sqb, invb, beta, gamma,
                  kappa, mu, u, xi, zeta, m, fac, a * b, slots, r_eps, r_ntk, with_ntk)
        qa, qb, ta, tb = qa_t[-1].copy(), qb_t[-1].copy(), ta_t[-1].copy(), tb_t[-1].copy()
    return z, ntk, qa, qb, ta, tb


def _run_smooth(stack, pair, params, cov, ntk, qa, qb, ta, tb, sym, rec, with_ntk=True):
    """Any activation with a compiled pair map: advance (cov, ntk) and the diagonals."""
    n1, n2 = cov.shape
    if rec is not None:
        rec.take_state(cov, ntk)
    for lo, hi in _chunks(stack, n1 + n2):
        u = np.ascontiguousarray(stack.u[lo:hi], dtype=np.float64)
        v = np.ascontiguousarray(stack.v[lo:hi], dtype=np.float64)
        tables = _diag_tables(
            lambda q, t, qo, to: _rec._smooth_diag(pair, params, q, t, u, v, stack.sw2,
                                                   stack.sb2, qo, to),
            qa, qb, ta, tb, sym, hi - lo)
        qa_t, qb_t, ta_t, tb_t = tables
        slots, r_cov, r_ntk = np.full(hi - lo, -1, dtype=np.int64), _NO_SLOTS, _NO_SLOTS
        if rec is not None:
            slots, r_cov, r_ntk = rec.slots(lo, hi), rec.off_a, rec.off_t
            rec.take_diag(lo, hi, tables)
        chunk = _rec._smooth_chunk_serial if _serial(cov, sym, hi - lo) else _rec._smooth_chunk
        chunk(pair, params, sym, cov, ntk, qa_t, qb_t, u, v,
              stack.sw2, stack.sb2, slots, r_cov, r_ntk, with_ntk)
        qa, qb, ta, tb = qa_t[-1].copy(), qb_t[-1].copy(), ta_t[-1].copy(), tb_t[-1].copy()
    return cov, ntk, qa, qb, ta, tb


def _assemble(off, diag, sym):
    """Full matrix from the off-diagonal state (upper triangle if sym) and the diagonal."""
    if not sym:
        return off
    diag = np.broadcast_to(diag, off.shape[:1]).copy()
    if off.size < _rec.SERIAL_ENTRIES:       # one thread: no wake-up of the pool
        return _rec._symmetrize_layers(off[None], diag[None])[0]
    return _rec._symmetrize(off, diag)


def _assemble_layers(off, diag, sym):
    """``_assemble`` for a (R, N, N) stack of layers in one compiled call (diag (R, N))."""
    return _rec._symmetrize_layers(off, np.ascontiguousarray(diag)) if sym else off


def _activation_fault(act):
    """A string naming where the activation (or its derivative) returns NaN or inf, or None.
    Only user activations (``Activation(fn)``) can: the closed forms are total."""
    if not hasattr(act, "fn") or type(act).__name__ in ("ABReLU", "Erf"):
        return None
    grid = np.concatenate([np.linspace(-60.0, 60.0, 2401), np.logspace(-300, 300, 241),
                           -np.logspace(-300, 300, 241), [0.0]])
    for what, f in (("phi", act), ("phi'", act.derivative)):
        try:
            with np.errstate(all="ignore"):
                vals = f(grid)
        except Exception as exc:                         # noqa: BLE001 (reported as is)
            return f"{what} raised {type(exc).__name__}: {exc}"
        bad = ~np.isfinite(vals)
        if bad.any():
            x = float(grid[bad][np.argmin(np.abs(grid[bad]))])
            return f"{what}({x:.6g}) = {float(vals[bad][np.argmin(np.abs(grid[bad]))])!r}"
    return None


def _check_finite(stack, named, layers=None):
    """Raise FloatingPointError naming the quantity, the layer and the cause if any of the
    (name, array) pairs has a non-finite entry (arrays are (N1, N2), or (R, N1, N2) with
    ``layers`` the recorded layer indices)."""
    for name, a in named:
        if a is None or np.all(np.isfinite(a)):
            continue
        where = ""
        if layers is not None:
            bad_layer = np.flatnonzero(~np.all(np.isfinite(a), axis=(1, 2)))[0]
            where = f" from layer {int(layers[bad_layer])} on"
        fault = _activation_fault(stack.activation)
        if fault is not None:
            raise FloatingPointError(
                f"the {name} has non-finite entries{where}: the activation "
                f"{stack.activation!r} returns a non-finite value ({fault}); fix the "
                f"activation (its kernel maps integrate it over the whole real line)")
        skip = (" (a trajectory or kernel that does not need the NTK can skip it: "
                "ntk=False, or net.nngp(x))" if name == "NTK" else "")
        # with finite inputs and an activation that is finite everywhere, a NaN can only come
        # from an entry that overflowed (inf - inf, 0 * inf) a layer or so earlier
        raise FloatingPointError(
            f"the {name} overflows{where}: entries exceed the float64 range (1.8e308) and "
            f"become inf or NaN; reduce the depth or adjust the variances{skip}")


def _finish(stack, cov, ntk, qa, qb, ta, tb, sym, scale=None):
    K = _unscale(_assemble(cov, qa, sym), scale)
    T = None if ntk is None else _unscale(_assemble(ntk, ta, sym), scale)
    if stack.readout is not None:
        w, b = stack.readout
        with np.errstate(over="ignore", invalid="ignore"):   # reported by _check_finite
            K = w * K + b
            T = None if T is None else K + w * T
    _check_finite(stack, (("NNGP", K), ("NTK", T)))
    return Kernels(nngp=K, ntk=T)


def _finish_trajectory(stack, rec, sym, gap, scale=None):
    """All recorded layers at once: a few whole-array NumPy operations and one compiled call
    each for the gap fields and the symmetrisation (the same arithmetic as layer by layer, so
    the numbers are bit-identical to it)."""
    R = len(rec.layers)
    n1, n2 = rec.off_a.shape[1:]
    small = R * n1 * n2 < 4 * _rec.SERIAL_ENTRIES
    s = np.sqrt(rec.qa)[:, :, None] * np.sqrt(rec.qb)[:, None, :]
    if gap:
        E, TH = np.empty((R, n1, n2)), np.empty((R, n1, n2))
        (_rec._gap_fields_serial if small else _rec._gap_fields)(rec.off_a, E, TH)
        with np.errstate(over="ignore", invalid="ignore"):   # reported by _check_finite
            K = s * (1.0 - E)
    else:
        K = rec.off_a
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.where(s > 0, K / np.where(s > 0, s, 1.0), 0.0)
        # rounding can put |K12| a hair above sqrt(K11 K22): the correlation is clipped
        # to [-1, 1] (documented in Trajectory)
        E = 1.0 - np.clip(rho, -1.0, 1.0)
        TH = _acos1m_np(E)
    del s
    zero = rec.qa == 0
    K = _unscale(_assemble_layers(K, rec.qa, sym), scale)
    T = _unscale(_assemble_layers(rec.off_t, rec.ta, sym), scale) if rec.ntk else None
    E = _assemble_layers(E, np.where(zero, 1.0, 0.0), sym)
    TH = _assemble_layers(TH, np.where(zero, 0.5 * np.pi, 0.0), sym)
    _check_finite(stack, (("NNGP", K), ("NTK", T)), layers=rec.layers)
    return Trajectory(layers=rec.layers, nngp=K, ntk=T, correlation=1.0 - E,
                      one_minus_correlation=E, angle=TH)


# ----------------------------------------------------------------------------------------------
# fast path: tabulate the depth-L angle map once (bias-free homogeneous networks)
# ----------------------------------------------------------------------------------------------
_TABLE_CACHE = {}
_TABLE_CACHE_SIZE = 8


def _fast_pieces():
    """Dyadic pieces of the angle distance to the nearer end, [0, pi/2]: (lo, hi) of length P.

    Piece k covers [pi 2^-(k+2), pi 2^-(k+1)] (the last one [0, pi 2^-P]).  Each serves both
    ends: theta = distance (rho near 1) and, mirrored, theta = pi - distance (rho near -1;
    abs-like maps send pi to 0), so features near either end are resolved as finely.
    """
    P = _FAST_PIECES
    k = np.arange(P, dtype=np.float64)
    his = 0.5 * np.pi * 2.0 ** (-k)
    los = np.where(k == P - 1, 0.0, 0.5 * his)
    return los, his


def _fast_tables(stack, a, b):
    """Piecewise Chebyshev coefficients of r(theta0) = (1 - rho_L)/(1 - rho_0) and tau_L(theta0).

    In a bias-free ABReLU network every layer maps the angle on its own and multiplies the
    diagonals by beta_l, so rho_L and tau_L = Theta_L / sqrt(q1_L q2_L) are fixed functions of
    the angle theta0 after the stem.  Both are analytic on [0, pi]; on the dyadic pieces of
    ``_fast_pieces`` their complex singularities stay about a piece-length away (near 0,
    theta_L ~ theta0 / (1 + A L theta0), and r ~ (theta_L / theta0)^2), so 24 Chebyshev points per piece reach rounding level
    at any depth.  The tables cost one layer loop over 2 * 40 * 24 angles.
    """
    key = (a, b, stack.sw2, stack.u.tobytes(), stack.v.tobytes())
    hit = _TABLE_CACHE.get(key)
    if hit is not None:
        return hit
    P, n = _FAST_PIECES, _FAST_DEGREE
    xk = np.cos(np.pi * (np.arange(n) + 0.5) / n)            # Chebyshev points, first kind
    los, his = _fast_pieces()
    dist = 0.5 * (his + los)[:, None] + 0.5 * (his - los)[:, None] * xk[None, :]    # (P, n)
    # columns 0..P-1: theta = dist (rho > 0 side); P..2P-1: theta = pi - dist at Chebyshev
    # variable x, i.e. distance mid - half * x (the mirror image)
    dist_m = 0.5 * (his + los)[:, None] - 0.5 * (his - los)[:, None] * xk[None, :]
    gap = 2.0 * np.sin(0.5 * np.concatenate([dist, dist_m])) ** 2        # (2P, n), exact
    z0 = np.concatenate([gap[:P], -gap[P:]])                             # signed gaps
    e0 = np.concatenate([gap[:P], 2.0 - gap[P:]])                        # 1 - rho_0
    rho0 = np.concatenate([1.0 - gap[:P], gap[P:] - 1.0])
    P2 = 2 * P
    # the 2 P n angles as a (rows, cols) cross problem with two row tiles, one per core
    rows = 2 * _rec._ROWS
    cols = P2 * n // rows
    one_a, one_b = np.ones(rows), np.ones(cols)
    z_L, ntk_L, q_L, _, _, _ = _run_abrelu(stack, z0.reshape(rows, cols).copy(),
                                           rho0.reshape(rows, cols).copy(),   # Theta = K
                                           one_a, one_b, one_a.copy(), one_b.copy(), False, a,
                                           b, None)
    e_L = np.empty_like(z_L)
    _rec._gap_fields(z_L, e_L, np.empty_like(z_L))
    r = e_L.reshape(P2, n) / e0                                # (1 - rho_L) / (1 - rho_0)
    tau = ntk_L.reshape(P2, n) / q_L[0]
    # Chebyshev coefficients from values at first-kind points (c_0 halved for Clenshaw),
    # stored (degree, piece) so that the evaluation gathers from one small row per degree
    j = np.arange(n)
    Tm = np.cos(np.pi * j[:, None] * (np.arange(n)[None, :] + 0.5) / n)      # (deg, point)
    cr = (2.0 / n) * Tm @ r.T                                 # (degree, 2 P)
    ct = (2.0 / n) * Tm @ tau.T
    cr[0] *= 0.5
    ct[0] *= 0.5
    out = (np.ascontiguousarray(cr), np.ascontiguousarray(ct))
    if len(_TABLE_CACHE) >= _TABLE_CACHE_SIZE:
        _TABLE_CACHE.pop(next(iter(_TABLE_CACHE)))
    _TABLE_CACHE[key] = out
    return out


def _run_fast(stack, eps, cov, ntk, qa, qb, ta, tb, sym, a, b, with_ntk=True):
    """Depth-independent path; cov and ntk are overwritten with the results."""
    cr, ct = _fast_tables(stack, a, b)
    # bias-free: every diagonal is its stem value times the unit input's factors
    one = np.ones(1)
    _, _, qf, _, tf, _ = _run_abrelu(stack, None, None, one, one, one.copy(), one.copy(), True,
                                     a, b, None, diag_only=True)
    qa, qb, ta, tb = qa * qf[0], qb * qf[0], ta * tf[0], tb * tf[0]
    los, his = _fast_pieces()
    _rec._fast_eval(sym, eps, np.sqrt(qa), np.sqrt(qb), los, his, cr, ct, cov, ntk, with_ntk)
    return cov, ntk, qa, qb, ta, tb


# ----------------------------------------------------------------------------------------------
# public architectures
# ----------------------------------------------------------------------------------------------
def _check_activation(activation):
    if not isinstance(activation, Activation):
        raise TypeError(f"activation must be a kernels activation (ReLU(), Erf(), "
                        f"Activation(fn), ...), got {type(activation).__name__}: {activation!r}")
    return activation


class _KernelMethods:
    """nngp / ntk / kernels / trajectory on top of ``self._stack()``."""

    def _prepare(self, x1, x2, K0, name1="x1"):
        if K0 is not None:
            if x1 is not None or x2 is not None:
                raise ValueError(f"give either inputs {name1} (and x2) or an input kernel K0, "
                                 "not both")
            return None, None, _checks.psd_kernel(K0, "K0")
        x1 = _checks.inputs(x1, name1)
        if x2 is not None:
            x2 = _checks.inputs(x2, "x2", d=x1.shape[1])
        return x1, x2, None

    def kernels(self, x1=None, x2=None, *, K0=None, fast=None, out=None, diagonal=False,
                tile=None, progress=None):
        """NNGP and NTK in one pass.

        Parameters
        ----------
        x1 : (N1, d) array_like
            Inputs; the input kernel is ``K0 = x1 x2' / d`` (neural-tangents convention).
        x2 : (N2, d) array_like, optional
            Second set of inputs for the cross kernel; default ``x1`` (symmetry is used).
        K0 : (N, N) array_like, optional
            A positive semi-definite input kernel to start from instead of inputs.
        fast : bool, optional
            Use the depth-independent tabulated path (bias-free ReLU-type networks only).
            Default: automatic, when it is eligible and cheaper.
        out : pair of arrays (nngp_out, ntk_out), optional
            Fill these (N1, N2) float64 arrays, e.g. ``numpy.memmap`` or ``.npy`` files opened
            with ``numpy.lib.format.open_memmap(..., mode="w+")``, tile by tile instead of
            building the kernels in memory (either may be None: not stored).  Extra memory is a
            few ``tile^2`` arrays; symmetry is used; the entries equal the in-memory result bit
            for bit.  Inputs x1 (and x2) only, not K0.  Returns ``Kernels`` of these arrays.
        diagonal : bool
            Return only the (N,) diagonals ``K(x_i, x_i)``, ``Theta(x_i, x_i)`` in O(N depth),
            equal to the diagonal of the full computation (x2 must be None).
        tile : int >= 1, optional
            Rows and columns per tile with ``out`` (default 1024).
        progress : bool, optional
            Progress bar (tqdm) with ``out``; default: shown when N1 N2 >= 5e7.

        Returns
        -------
        Kernels
            ``.nngp`` and ``.ntk``, each (N1, N2) (or (N,) with ``diagonal=True``).
        """
        return self._kernels(x1, x2, K0, fast, out, diagonal, tile, progress, ntk=True)

    def _kernels(self, x1, x2, K0, fast, out, diagonal, tile, progress, ntk):
        if out is not None or diagonal is not False or tile is not None or progress is not None:
            from . import _blockwise
            return _blockwise.kernels(self, x1, x2, K0, fast, out, diagonal, tile, progress, ntk)
        x1, x2, K0 = self._prepare(x1, x2, K0)
        if fast is not None and not isinstance(fast, bool):
            raise TypeError(f"fast must be True, False or None, got {fast!r}")
        return _run(self._stack(), x1, x2, K0, fast=fast, ntk=ntk)

    def nngp(self, x1=None, x2=None, *, K0=None, fast=None, out=None, diagonal=False,
             tile=None, progress=None):
        """NNGP kernel ``E[f(x) f(x')]`` of one scalar output (see ``kernels``; ``out`` is one
        array here).

        Runs the NNGP recursion alone: no NTK operation in the layer loop (and no NTK
        overflow can stop it)."""
        return self._kernels(x1, x2, K0, fast, None if out is None else (out, None), diagonal,
                             tile, progress, ntk=False).nngp

    def ntk(self, x1=None, x2=None, *, K0=None, fast=None, out=None, diagonal=False, tile=None,
            progress=None):
        """Neural tangent kernel, summed over every weight and bias (see ``kernels``; ``out``
        is one array here)."""
        return self.kernels(x1, x2, K0=K0, fast=fast, out=None if out is None else (None, out),
                            diagonal=diagonal, tile=tile, progress=progress).ntk

    def trajectory(self, x=None, *, K0=None, layers=None, ntk=True):
        """Per-layer NNGP, NTK and correlation of the hidden representation.

        Parameters
        ----------
        x : (N, d) array_like
            Inputs (or give ``K0``).
        K0 : (N, N) array_like, optional
            Input kernel instead of ``x``.
        layers : sequence of int, optional
            Layer indices in ``0..depth`` to record (default: all).  Layer 0 is the stem output.
        ntk : bool, default True
            Also compute the NTK.  ``False`` skips every NTK operation (``.ntk`` is None), so
            a correlation trajectory is not refused because the NTK, which grows like
            ``chi_1^l`` in the chaotic phase, overflows.

        Returns
        -------
        Trajectory

        Raises
        ------
        MemoryError
            Up front, with the number of bytes, if the recorded layers cannot fit in the
            memory available (about 11 arrays of (layers, N, N) float64; 9 with ntk=False).
        """
        x1, _, K0 = self._prepare(x, None, K0, name1="x")
        ntk = _checks.flag(ntk, "ntk")
        n = (K0 if K0 is not None else x1).shape[0]
        if layers is None:              # check before the layer list itself is allocated
            _trajectory_memory(self.depth + 1, n, n, ntk)
            layers = np.arange(self.depth + 1)
        else:     # sorted and de-duplicated (np.unique hashes: seconds for 1e6 layers)
            layers = np.sort(np.asarray(layers).ravel())
            if layers.size:
                layers = layers[np.concatenate([[True], layers[1:] != layers[:-1]])]
        if layers.ndim != 1 or layers.size == 0 or not np.issubdtype(layers.dtype, np.integer):
            raise ValueError(f"layers must be a non-empty sequence of integers, got {layers!r}")
        if layers[0] < 0 or layers[-1] > self.depth:
            raise ValueError(f"layers must lie in 0..{self.depth}, got "
                             f"{_short(layers.tolist())}")
        _trajectory_memory(len(layers), n, n, ntk)
        stack = self._stack()
        return _run(stack.without_readout(), x1, None, K0, record=layers, fast=False, ntk=ntk)


def _short(seq, k=6):
    return str(seq) if len(seq) <= 2 * k else f"[{str(seq[:k])[1:-1]}, ..., {str(seq[-k:])[1:-1]}]"


_MAX_DEPTH = 10 ** 9      # 16 bytes of layer description per layer: 16 GB at the bound


def _check_depth(depth):
    depth = _checks.positive_int(depth, "depth")
    if depth > _MAX_DEPTH:
        raise ValueError(f"depth must be <= {_MAX_DEPTH:.0e}, got {depth:.3g}: the per-layer "
                         f"description alone would need {16 * depth / 2 ** 30:.3g} GiB (and "
                         f"the layer loop about {depth * 5e-9:.3g} s per input pair)")
    return depth


def _stack_memory(L):
    """Refuse up front a per-layer description that cannot fit (u, v: 16 bytes a layer)."""
    _checks.memory_budget(16.0 * L, f"the per-layer description of depth {L}")


def _check_resolvable(activation, depth):
    """Fail early on activations the architecture cannot use.  ``ShapedReLU(rate="width")`` is
    allowed: its networks can be simulated (``kernels.montecarlo``), though its infinite-width
    kernels raise when asked for (the slopes depend on the width)."""
    if isinstance(activation, ShapedReLU) and activation.rate == "width":
        return
    activation._resolve(depth)


@dataclass(frozen=True)
class MLP(_KernelMethods):
    """Fully connected network: ``depth`` hidden layers, then a linear readout.

    ``serial(Dense, phi, Dense, phi, ..., phi, Dense)`` with ``depth`` nonlinearities and
    ``depth + 1`` Dense layers, all with the same ``weight_var`` (``W_std**2``) and ``bias_var``
    (``b_std**2``), NTK parameterisation.  Infinite-width recursion (kernels.md §2.2; Lee et al.
    2018, Jacot et al. 2018, Arora et al. 2019)::

        K_1 = sw2 x.x'/d + sb2,                 Theta_1 = K_1
        K_{h+1}     = sw2 V(K_h) + sb2
        Theta_{h+1} = K_{h+1} + sw2 Vdot(K_h) Theta_h,     h = 1..depth

    and NNGP = K_{depth+1}, NTK = Theta_{depth+1}.  In ``trajectory``, layer ``l`` is ``K_{l+1}``
    (layer 0 = the first Dense's output; layer ``depth`` = the network output).

    Parameters
    ----------
    depth : int >= 1
    activation : Activation
        ``ReLU()``, ``Erf()``, ``ShapedReLU(c_plus, c_minus)`` (slopes resolved with ``depth``), ...
    weight_var, bias_var : float >= 0

    Examples
    --------
    >>> import numpy as np, kernels as kn
    >>> net = kn.MLP(depth=3, activation=kn.ReLU())
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> bool(np.allclose(np.diag(net.nngp(x)), 2 * (x * x).sum(1) / 2))
    True
    """

    depth: int
    activation: Activation
    weight_var: float = 2.0
    bias_var: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "depth", _check_depth(self.depth))
        _check_activation(self.activation)
        object.__setattr__(self, "weight_var", _checks.nonneg_float(self.weight_var,
                                                                    "weight_var"))
        object.__setattr__(self, "bias_var", _checks.nonneg_float(self.bias_var, "bias_var"))
        _check_resolvable(self.activation, self.depth)

    def _stack(self, width=None):
        """The per-layer description; at a finite ``width`` the activation is ``finite(width,
        depth)`` (Monte Carlo)."""
        L = self.depth
        _stack_memory(L)
        act = self.activation._resolve(L) if width is None else self.activation.finite(width, L)
        return _Stack(act, self.weight_var, self.bias_var,
                      (self.weight_var, self.bias_var), np.zeros(L), np.ones(L), None)


@dataclass(frozen=True)
class ResNet(_KernelMethods):
    """Residual network: trained input Dense, ``depth`` residual blocks, readout Dense.

    Finite width: ``h_0 = Dense(x)``, ``h_l = h_{l-1} + alpha_l Dense(phi(h_{l-1}))``,
    ``f = Dense(h_depth)``.  Infinite-width recursion (kernels.md §3.2)::

        K_0 = s0 x.x'/d + b0,   Theta_0 = K_0
        dK_l    = alpha_l^2 (sw2 V(K_{l-1}) + sb2)
        K_l     = K_{l-1} + dK_l
        Theta_l = Theta_{l-1} + dK_l + alpha_l^2 sw2 Vdot(K_{l-1}) Theta_{l-1}
        NNGP = sv K_L + bv,     NTK = NNGP + sv Theta_L

    With the default ``alpha = depth**-0.5`` this is the forward-Euler scheme of the ODE
    ``dK/dt = sb2 + sw2 V(K)`` on [0, 1] (Peluchetti & Favaro 2020; Hayou et al. 2021, "Stable
    ResNet"; kernels.md §3.3).  ``trajectory`` records the residual stream ``K_l, Theta_l``
    (l = 0..depth), before the readout.

    Parameters
    ----------
    depth : int >= 1
    activation : Activation
    weight_var, bias_var : float >= 0
        Variances of the Dense inside each branch.
    branch_scale : float or (depth,) array, optional
        ``alpha_l``; default ``depth**-0.5``.
    input_weight_var, input_bias_var : float >= 0
        ``s0``, ``b0`` of the input Dense.
    readout_weight_var, readout_bias_var : float >= 0
        ``sv``, ``bv`` of the readout Dense.
    """

    depth: int
    activation: Activation
    weight_var: float = 2.0
    bias_var: float = 0.0
    branch_scale: object = None
    input_weight_var: float = 1.0
    readout_weight_var: float = 1.0
    input_bias_var: float = 0.0
    readout_bias_var: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "depth", _check_depth(self.depth))
        _check_activation(self.activation)
        for name in ("weight_var", "bias_var", "input_weight_var", "readout_weight_var",
                     "input_bias_var", "readout_bias_var"):
            object.__setattr__(self, name, _checks.nonneg_float(getattr(self, name), name))
        bs = self.branch_scale
        if bs is not None and np.ndim(bs) == 0:
            object.__setattr__(self, "branch_scale", _checks.finite_float(bs, "branch_scale"))
        elif bs is not None:
            arr = np.asarray(bs, dtype=np.float64)
            if arr.shape != (self.depth,):
                raise ValueError(f"branch_scale must be a scalar or have shape ({self.depth},), "
                                 f"got shape {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError("branch_scale contains NaN or inf")
            object.__setattr__(self, "branch_scale", tuple(float(a) for a in arr))
        _check_resolvable(self.activation, self.depth)

    @property
    def alphas(self):
        """The per-block branch scales ``alpha_l``, shape (depth,)."""
        if self.branch_scale is None:
            return np.full(self.depth, self.depth ** -0.5)
        return np.broadcast_to(np.asarray(self.branch_scale, dtype=np.float64),
                               (self.depth,)).copy()

    def _stack(self, width=None):
        """The per-layer description (see ``MLP._stack``)."""
        L = self.depth
        _stack_memory(L)
        act = self.activation._resolve(L) if width is None else self.activation.finite(width, L)
        alphas = self.alphas
        return _Stack(act, self.weight_var, self.bias_var,
                      (self.input_weight_var, self.input_bias_var), np.ones(L),
                      alphas ** 2, (self.readout_weight_var, self.readout_bias_var), alphas)
