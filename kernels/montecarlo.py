"""Finite-width random networks: exact Monte Carlo of MLPs and ResNets, empirical NNGP / NTK and
per-layer Gram paths.

Networks (the engine's conventions, NTK parameterisation, all weights and biases iid N(0, 1);
``n`` = width, ``x`` is (N, d) and ``X = x^T``, hidden states are (n, N))::

    MLP     h_1     = sqrt(sw2/d) W_0 X + sqrt(sb2) b_0
            h_{l+1} = sqrt(sw2/n) W_l phi(h_l) + sqrt(sb2) b_l          l = 1..L-1
            f       = sqrt(sw2/n) w^T phi(h_L) + sqrt(sb2) b_L
    ResNet  h_0     = sqrt(s0/d) W_in X + sqrt(b0) b_in
            h_l     = h_{l-1} + alpha_l (sqrt(sw2/n) W_l phi(h_{l-1}) + sqrt(sb2) b_l)
            f       = sqrt(sv/n) w^T h_L + sqrt(bv) b_out

**NNGP estimator.**  Given the last hidden layer, f is Gaussian in the readout weights, so
``E[f(x) f(x') | h] = sw2 phi(h_L)^T phi(h_L) / n + sb2`` (MLP) or ``sv h_L^T h_L / n + bv``
(ResNet).  This conditional expectation is an unbiased estimator of the NNGP ``E[f f']`` with
smaller variance than ``f f'`` itself (Rao-Blackwell); it is what ``monte_carlo`` averages.
Conditioning on the last hidden layer is also how Li, Nica & Roy (2022) state the law of the
logits: Gaussian given the penultimate covariance.

**Empirical NTK.**  ``Theta(x, x') = sum_theta df(x)/dtheta df(x')/dtheta`` over every weight and
bias, readout included (neural-tangents ``monte_carlo_kernel_fn`` with ``get='ntk'``).  For a
dense layer ``h' = sqrt(s/m) W u + sqrt(t) b`` the contribution is a product of two Grams::

    (s u^T u / m + t)  (.)  (delta^T delta),      delta = df/dh'  (n, N)

so the NTK is a sum over layers of (forward Gram of the layer's input, bias included) times
(backward Gram of the gradient with respect to its output), with no per-sample Jacobians.
Backward passes: ``delta_L = sqrt(sw2/n) w (.) phi'(h_L)``,
``delta_l = phi'(h_l) (.) (sqrt(sw2/n) W_l^T delta_{l+1})`` (MLP); ``g_L = sqrt(sv/n) w``,
``g_{l-1} = g_l + alpha_l sqrt(sw2/n) phi'(h_{l-1}) (.) (W_l^T g_l)`` (ResNet).

**Two samplers, one law.**

* ``"weights"``: explicit Gaussian weight matrices, forward (and for the NTK backward) passes
  with BLAS, O(n^2 N) per layer.
* ``"gram"``: given ``phi(h)`` (n, N), the rows of ``sqrt(sw2/n) W phi(h) + sqrt(sb2) b`` are iid
  ``N(0, K)`` with ``K = sw2 phi(h)^T phi(h) / n + sb2`` (N, N).  So the next layer is sampled as
  ``Z U`` with Z an (n, N) standard normal matrix and ``U^T U = K`` (upper Cholesky factor), in
  O(n N^2 + N^3) per layer.  This is the exact finite-width Markov chain of Li, Nica & Roy (2022,
  "The neural covariance SDE", theory/sde.md §2.1); the ResNet branch is sampled the same way
  and added to the residual stream.  It is exact in law for everything computed from the
  forward pass (NNGP, per-layer Grams, correlations), not for the NTK (the backward pass needs
  the weights themselves).  A positive semi-definite K is factorised by a Cholesky
  factorisation in which pivots below ``1e-13`` times their diagonal entry (rounding level, e.g.
  duplicate inputs or dead ReLU units) are set to 0, so that singular K are handled.

**Per-layer Grams** (``simulate_paths``), indexed like ``net.trajectory``: for the MLP, layer
``l`` is ``G_l = sw2 phi(h_l)^T phi(h_l) / n + sb2`` (the covariance of the rows of h_{l+1} given
h_l; ``G_0 = sw2 x x^T / d + sb2``; ``G_L`` is the NNGP estimator), whose infinite-width limit is
the engine's K_{l+1}; for the ResNet, layer ``l`` is the residual-stream Gram ``h_l^T h_l / n``
(limit: the engine's K_l).  With ``sw2 = c`` and ``sb2 = 0`` the MLP ``G_l`` is exactly the
``V_l = (c/n) <phi(z_l), phi(z_l)>`` of theory/sde.md §2.1 when ``G_0 = V_0``.

**Random numbers.**  Samples come in fixed blocks of 1024; block ``j`` uses the ``j``-th child of
``SeedSequence(seed)`` (``SeedSequence(seed).spawn(...)[j]``), whose ``generate_state(2, uint64)``
gives two root words (a, b); sample ``1024 j + i`` has the two 64-bit keys
``mix(a + (i + 1) G)`` and ``mix(b + (i + 1) G)`` (SplitMix64, below).  Within a sample every matrix (layer, role) is a separate stream of a counter-based
generator: word ``c`` of the sample is ``mix(mix(c * G + k1) ^ k2)`` with ``mix`` the SplitMix64
output function (Steele, Lea & Flood 2014; a counter-based design in the sense of Salmon et al.
2011, "Parallel random numbers: as easy as 1, 2, 3") and ``G`` the 64-bit golden ratio; two words
give two normals by the Box-Muller transform (branch-free, vectorised log / sin / cos, about
1e-16 accurate).  A number therefore depends only on (seed, sample, layer, role, index), never on
how samples are batched or how many threads run, and the results are reproducible bit for bit
(sample means are accumulated in sample order with Welford's algorithm).

References
----------
M. B. Li, M. Nica, D. M. Roy, "The Neural Covariance SDE: Shaped Infinite Depth-and-Width
Networks at Initialization", NeurIPS 2022 (arXiv 2206.02768).
M. B. Li, M. Nica, "Differential Equation Scaling Limits of Shaped and Unshaped Neural
Networks", TMLR 2024 (arXiv 2310.12079).
R. Novak et al., "Neural Tangents", ICLR 2020: ``neural_tangents.monte_carlo_kernel_fn``.
B. P. Welford, "Note on a method for calculating corrected sums of squares and products",
Technometrics 4 (1962).
"""
import math
import numbers
import os
import sys
from dataclasses import dataclass, field
from typing import Optional

import numba
import numpy as np
from numba import prange, types
from numba.extending import intrinsic

from . import _checks
from .activations import ABReLU, Activation, Erf, ShapedReLU, Tanh, _central_difference
from .architectures import MLP, Kernels, ResNet

__all__ = ["monte_carlo", "simulate_paths", "MonteCarloResult", "Paths"]

_METHODS = ("auto", "weights", "gram")
_STREAM_SHIFT = 40                  # counter = (stream << 40) + word: 2^40 words per stream
_MAX_WORDS = 1 << (_STREAM_SHIFT - 1)
_PAR_PAIRS = 1 << 15                # normal pairs per parallel chunk of a large fill
_W_BUDGET = 256 << 20               # bytes of weight matrices kept for the backward pass
_BLOCK_WORK = 1 << 22               # default gram block: about this many normals per block
_BLOCK_BYTES = 64 << 20             # ... and at most this much recorded output per block
_KEY_BLOCK = 1024                   # samples per SeedSequence child (fixed: keys ignore batch)
_CHOL_TOL = 1e-13                   # relative pivot below which K is treated as singular

# roles of the streams of one layer
_ROLE_W, _ROLE_B, _ROLE_Z = 0, 1, 2


# ----------------------------------------------------------------------------------------------
# counter-based normal generator (vectorisable: no branches, no libm calls)
# ----------------------------------------------------------------------------------------------
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
# lane at a time; the generator below (and limits/_vecmath.py's exp) convert instead with only
# 64-bit integer add/and/or/shift and float add, which vectorise on every x86-64 target and give
# bit-identical results: float(e) = bits(e + _MAGIC_BITS) - _MAGIC for |e| < 2^51, and
# round(x) = bits(x + _MAGIC) - _MAGIC_BITS.
_MAGIC = 6755399441055744.0                 # 1.5 * 2^52
_MAGIC_BITS = 0x4338000000000000            # its bit pattern
_TWO52 = 4503599627370496.0                 # 2^52, bits 0x4330000000000000
_TWO84 = 19342813113834066795298816.0       # 2^84, bits 0x4530000000000000


# Constants as tuples: every function below has a ``*_k`` form taking its constants as a tuple
# argument, and the plain form passes the module tuple (compile-time constants).  Hot loops
# pass the tuple as a runtime argument instead, so that LLVM keeps the broadcast constants in
# (spilled) vector registers rather than rematerialising each one inside the loop (an
# absolute-address move plus a broadcast load: numba's JIT uses the large code model); see
# limits/_vecmath.py.  The numbers are bit-identical either way.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX_K = (_GOLDEN, np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


@numba.njit(inline="always", cache=True)
def _mix_k(z, mk):
    """SplitMix64 output function (a bijection of uint64 with full avalanche); mk = MIX_K."""
    z = (z ^ (z >> np.uint64(30))) * mk[1]
    z = (z ^ (z >> np.uint64(27))) * mk[2]
    return z ^ (z >> np.uint64(31))


@numba.njit(inline="always", cache=True)
def _mix(z):
    """SplitMix64 output function (a bijection of uint64 with full avalanche)."""
    return _mix_k(z, MIX_K)


@numba.njit(inline="always", cache=True)
def _word(k1, k2, c):
    """Random 64-bit word number ``c`` of the stream with keys (k1, k2)."""
    return _mix(_mix(c * _GOLDEN + k1) ^ k2)


# Box-Muller constants, BM_K:
#   0, 1       ln 2 split (fdlibm e_log.c), 2..8 its LG1..LG7: log(1 + f) = f - hfsq + s (hfsq + R)
#   9..14      fdlibm k_sin.c S1..S6,  15..20 k_cos.c C1..C6 (on [-pi/4, pi/4])
#   21..26     2 pi, sqrt 2, 2^-53, 1.5 * 2^52 (magic), 2^52, 2^84
BM_K = (6.93147180369123816490e-01, 1.90821492927058770002e-10,
        6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
        2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
        1.479819860511658591e-01,
        -1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04,
        2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10,
        4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05,
        -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11,
        2.0 * math.pi, math.sqrt(2.0), 2.0 ** -53, _MAGIC, _TWO52, _TWO84)


@numba.njit(inline="always", cache=True)
def _u53_to_float_k(x, bk):
    """``float(x)`` for an integer 0 <= x < 2^53 (int64): the high 21 and low 32 bits are placed in
    the mantissas of 2^84 and 2^52, and the exact sum of the two differences is x."""
    hi = _i2f((x >> 32) | 0x4530000000000000) - bk[26]
    lo = _i2f((x & 0xFFFFFFFF) | 0x4330000000000000) - bk[25]
    return hi + lo


@numba.njit(inline="always", cache=True, error_model="numpy")
def _minus2log_k(u, bk):
    """``-2 log(u)`` for a normal double u in (0, 1] (fdlibm algorithm, < 1 ulp)."""
    ib = _f2i(u)
    e = (ib >> 52) - 1023
    m = _i2f((ib & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)        # [1, 2)
    big = m > bk[22]
    m = 0.5 * m if big else m
    e = e + 1 if big else e
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    R = (z * (bk[2] + w * (bk[4] + w * (bk[6] + w * bk[8])))
         + w * (bk[3] + w * (bk[5] + w * bk[7])))
    hfsq = 0.5 * f * f
    dk = _i2f(e + _MAGIC_BITS) - bk[24]                          # float(e)
    return -2.0 * (dk * bk[0] - ((hfsq - (s * (hfsq + R) + dk * bk[1])) - f))


@numba.njit(inline="always", cache=True, error_model="numpy")
def _sincos_2pi_k(v, bk):
    """``(sin 2 pi v, cos 2 pi v)`` for v in [0, 1), branch-free (quadrant selects).

    The quadrant q = round(4 v) comes from the magic-number trick (``math.floor`` would return
    an int64, converted one lane at a time on AVX2); q is round-half-even, not half-up, which
    differs only at 4 v = j + 1/2 exactly, where both give x = +-pi/4 and the same value."""
    qb = 4.0 * v + bk[24]
    q = qb - bk[24]
    x = bk[21] * (v - 0.25 * q)                                   # [-pi/4, pi/4]
    z = x * x
    sn = x + x * z * (bk[9] + z * (bk[10] + z * (bk[11] + z * (bk[12] + z * (bk[13]
                                                                            + z * bk[14])))))
    cs = 1.0 - 0.5 * z + z * z * (bk[15] + z * (bk[16] + z * (bk[17] + z * (bk[18] + z * (
        bk[19] + z * bk[20])))))
    qi = _f2i(qb) - _MAGIC_BITS
    odd = (qi & 1) != 0
    a = cs if odd else sn
    b = sn if odd else cs
    s = -a if (qi & 2) != 0 else a
    c = -b if ((qi + 1) & 2) != 0 else b
    return s, c


@numba.njit(inline="always", cache=True, error_model="numpy")
def _box_muller_k(b1, b2, bk):
    """Two independent N(0, 1) from two random 64-bit words (their top 53 bits)."""
    u = (_u53_to_float_k(np.int64(b1 >> np.uint64(11)), bk) + 0.5) * bk[23]     # (0, 1]
    v = _u53_to_float_k(np.int64(b2 >> np.uint64(11)), bk) * bk[23]             # [0, 1)
    r = math.sqrt(_minus2log_k(u, bk))
    sn, cs = _sincos_2pi_k(v, bk)
    return r * cs, r * sn


@numba.njit(inline="always", cache=True, error_model="numpy")
def _normal_pair(k1, k2, c):
    """Two independent N(0, 1) from words c, c + 1 (Box-Muller)."""
    return _box_muller_k(_word(k1, k2, c), _word(k1, k2, c + np.uint64(1)), BM_K)


@numba.njit(inline="always", cache=True)
def _base(stream):
    return np.uint64(stream) << np.uint64(_STREAM_SHIFT)


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _fill_pairs(k1, k2, c0, first, second):
    """Normal pairs j = 0, 1, ... from words c0 + 2j, c0 + 2j + 1: first[j], second[j].

    ``second`` may be one shorter than ``first`` (odd stream length).  Indices start at 0 so
    that LLVM sees them non-negative and vectorises (no wrap-around selects).
    """
    m2 = second.shape[0]
    for j in range(m2):
        z1, z2 = _normal_pair(k1, k2, c0 + np.uint64(2 * j))
        first[j] = z1
        second[j] = z2
    for j in range(m2, first.shape[0]):
        z1, z2 = _normal_pair(k1, k2, c0 + np.uint64(2 * j))
        first[j] = z1


@numba.njit(inline="always", cache=True)
def _fill_range(k1, k2, base, out, half, lo, hi):
    """Pairs lo..hi-1 of a stream of ``out.size`` normals: pair p gives out[p], out[p + half]."""
    m = out.shape[0]
    _fill_pairs(k1, k2, base + np.uint64(2 * lo), out[lo:hi],
                out[lo + half:min(hi + half, m)])


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _fill(k1, k2, stream, out):
    """``out`` (1-d) <- the normals of ``stream``, serially."""
    half = (out.shape[0] + 1) // 2
    _fill_range(k1, k2, _base(stream), out, half, 0, half)


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _fill_part(k1, k2, stream, out, lo, hi):
    """Pairs lo..hi-1 of ``stream`` into ``out`` (the layout of ``_fill``); releases the GIL."""
    half = (out.shape[0] + 1) // 2
    _fill_range(k1, k2, _base(stream), out, half, lo, hi)


# Python threads (not numba's OpenMP pool) run the compiled pieces of the "weights" sampler:
# OpenMP workers spin after a parallel region and then starve OpenBLAS's threads in the matrix
# products that follow (measured: 8 ms instead of 0.7 ms for a 512 x 512 fill + product).
_POOL = None


def _parts():
    """Number of parallel parts: numba's thread count (results do not depend on it)."""
    return max(1, int(numba.get_num_threads()))


def _run_split(fn, n, *args, min_size=1 << 14):
    """fn(*args, lo, hi) over a split of range(n) into _parts() pieces, on a thread pool."""
    global _POOL
    parts = _parts() if n >= min_size else 1
    if parts == 1:
        fn(*args, 0, n)
        return
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor
        _POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2),
                                   thread_name_prefix="kernels-mc")
    bounds = [n * i // parts for i in range(parts + 1)]
    futures = [_POOL.submit(fn, *args, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    fn(*args, bounds[0], bounds[1])
    for f in futures:
        f.result()


def _normals(keys, stream, shape):
    """Standard normals of one stream of one sample, as a new array (split over threads)."""
    out = np.empty(int(np.prod(shape)))
    _run_split(_fill_part, (out.size + 1) // 2, keys[0], keys[1], np.int64(stream), out)
    return out.reshape(shape)


class _Draws:
    """The normal draws of one sample network, generated when asked for: ``draws[stream]``.

    With ``keep=True`` (the NTK: the backward pass reads every weight matrix again) each draw is
    kept while the kept draws fit in ``_W_BUDGET`` bytes; beyond that, and with ``keep=False``,
    a draw is written into a buffer reused for every draw of the same shape and generated again
    if asked for twice (the counter-based generator gives the same numbers).
    """

    def __init__(self, keys, layout, keep=False):
        self.keys = keys
        self.layout = dict(layout)
        self.buffers = {}
        self.kept = {}
        self.budget = _W_BUDGET if keep else 0

    def __getitem__(self, stream):
        out = self.kept.get(stream)
        if out is not None:
            return out
        shape = self.layout[stream]
        size = int(np.prod(shape))
        if 8 * size <= self.budget:
            out = np.empty(size)
            self.budget -= 8 * size
            self.kept[stream] = out.reshape(shape)
        else:
            out = self.buffers.get(shape)
            if out is None:
                out = self.buffers[shape] = np.empty(size)
        _run_split(_fill_part, (out.size + 1) // 2, self.keys[0], self.keys[1],
                   np.int64(stream), out)
        return out.reshape(shape)


def _stream(layer, role):
    return 4 * layer + role


# ----------------------------------------------------------------------------------------------
# activations inside compiled code: builtin codes (cacheable) or a user function (fn not None)
# ----------------------------------------------------------------------------------------------
_ABRELU, _ERF, _TANH, _USER = 0, 1, 2, 3


@numba.njit(inline="always", cache=True, error_model="numpy")
def _phi(code, p, fn, x):
    if fn is None:
        if code == _ABRELU:
            return p[1] * x if x > 0.0 else p[0] * x
        elif code == _ERF:
            return p[0] * math.erf(p[1] * x) + p[2]
        return math.tanh(x)
    return fn(x)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _dphi(code, p, dfn, x):
    if dfn is None:
        if code == _ABRELU:
            return p[1] if x > 0.0 else p[0]
        elif code == _ERF:
            bx = p[1] * x
            return p[0] * p[1] * 1.1283791670955126 * math.exp(-bx * bx)
        t = math.tanh(x)
        return 1.0 - t * t
    return dfn(x)


@dataclass(frozen=True)
class _Act:
    """What compiled code needs to evaluate phi and phi'."""

    code: int
    params: np.ndarray
    fn: object
    dfn: object
    activation: Activation


def _compiled_activation(net, width):
    """The fixed-slope activation of ``net`` at this width (ShapedReLU resolved), as an _Act."""
    act = net.activation
    if isinstance(act, ShapedReLU):
        act = act.resolved(width if act.rate == "width" else net.depth)
    else:
        act = act._resolve(net.depth)
    if isinstance(act, ABReLU):
        return _Act(_ABRELU, np.array([act.a, act.b, 0.0]), None, None, act)
    if isinstance(act, Erf):
        return _Act(_ERF, np.array([act.a, act.b, act.c]), None, None, act)
    if isinstance(act, Tanh):
        return _Act(_TANH, np.zeros(3), None, None, act)
    d = act.deriv if act.deriv is not None else _central_difference(act.fn)
    return _Act(_USER, np.zeros(3), act.fn, d, act)


# ----------------------------------------------------------------------------------------------
# small dense kernels for the gram chain (one sample per thread; deterministic order)
# ----------------------------------------------------------------------------------------------
@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _chol_upper(K, U, A):
    """Upper factor U (U^T U = K) of a symmetric PSD K; A is scratch (N, N).

    Right-looking Cholesky; a pivot <= _CHOL_TOL * K[j, j] (rounding level) gives a zero row,
    which is exact for a PSD matrix of lower rank.
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


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _gram(P, G, scale, shift):
    """G = scale P^T P + shift (symmetric); rows of P summed in a fixed order, 8 at a time."""
    n, N = P.shape
    for a in range(N):
        for b in range(N):
            G[a, b] = 0.0
    n8 = n - n % 8
    for r in range(0, n8, 8):
        p0, p1, p2, p3 = P[r], P[r + 1], P[r + 2], P[r + 3]
        p4, p5, p6, p7 = P[r + 4], P[r + 5], P[r + 6], P[r + 7]
        for a in range(N):
            a0, a1, a2, a3 = p0[a], p1[a], p2[a], p3[a]
            a4, a5, a6, a7 = p4[a], p5[a], p6[a], p7[a]
            ga = G[a]
            if N <= _SMALL_N:
                for b in range(a, N):
                    ga[b] += ((a0 * p0[b] + a1 * p1[b] + a2 * p2[b] + a3 * p3[b])
                              + (a4 * p4[b] + a5 * p5[b] + a6 * p6[b] + a7 * p7[b]))
            else:               # full rows: fixed-length loops vectorise better than triangles
                for b in range(N):
                    ga[b] += ((a0 * p0[b] + a1 * p1[b] + a2 * p2[b] + a3 * p3[b])
                              + (a4 * p4[b] + a5 * p5[b] + a6 * p6[b] + a7 * p7[b]))
    for r in range(n8, n):
        pr = P[r]
        for a in range(N):
            pa = pr[a]
            ga = G[a]
            for b in range(a, N):
                ga[b] += pa * pr[b]
    for a in range(N):
        for b in range(a, N):
            v = scale * G[a, b] + shift
            G[a, b] = v
            G[b, a] = v


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _apply_phi(code, p, fn, H, P):
    n, N = H.shape
    for r in range(n):
        for c in range(N):
            P[r, c] = _phi(code, p, fn, H[r, c])


_CHUNK = 8          # samples per parallel task (workspace allocated once per task)


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _gram_sample(k1, k2, resnet, n, U0, K0, sw2, sb2, alphas, sv, bv, code, p, fn, slots,
                 est, rec, Z, H, P, G, U, A):
    """One sample of the gram chain, general N; est (N, N), rec (R, N, N); the rest is scratch."""
    N = U0.shape[0]
    L = slots.shape[0] - 1
    Zf = Z.reshape(n * N)
    _fill(k1, k2, 4 * 0 + 2, Zf)
    _mul_upper(Z, U0, H, False)                         # first hidden layer (MLP h_1, ResNet h_0)
    if not resnet:
        if slots[0] >= 0:
            rec[slots[0]] = K0
        for l in range(1, L + 1):
            _apply_phi(code, p, fn, H, P)
            _gram(P, G, sw2 / n, sb2)                   # G_l
            if slots[l] >= 0:
                rec[slots[l]] = G
            if l == L:
                est[:, :] = G
                break
            _chol_upper(G, U, A)
            _fill(k1, k2, 4 * l + 2, Zf)
            _mul_upper(Z, U, H, False)                  # h_{l+1} = Z U
        return
    if slots[0] >= 0:
        _gram(H, G, 1.0 / n, 0.0)
        rec[slots[0]] = G
    for l in range(1, L + 1):
        _apply_phi(code, p, fn, H, P)
        _gram(P, G, sw2 / n, sb2)                       # covariance of the branch rows
        _chol_upper(G, U, A)
        al = alphas[l - 1]
        for i in range(N):
            for j in range(N):
                U[i, j] *= al
        _fill(k1, k2, 4 * l + 2, Zf)
        _mul_upper(Z, U, H, True)                       # h_l = h_{l-1} + alpha Z U
        if slots[l] >= 0:
            _gram(H, G, 1.0 / n, 0.0)
            rec[slots[l]] = G
    _gram(H, G, sv / n, bv)
    est[:, :] = G


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def _gram_chain(keys, resnet, n, U0, K0, sw2, sb2, alphas, sv, bv, code, p, fn, slots,
                est, rec):
    """The gram sampler for a block of samples, general N (tasks of _CHUNK samples).

    keys (B, 2) uint64.  U0: upper factor of the first layer's covariance (MLP: G_0;
    ResNet: the stem's).  slots (L + 1,): record slot of layer l, or -1.  est (B, N, N) gets the
    NNGP estimator, rec (B, R, N, N) the recorded Grams.
    """
    B = keys.shape[0]
    N = U0.shape[0]
    for t in prange((B + _CHUNK - 1) // _CHUNK):
        Z = np.empty((n, N))
        H = np.empty((n, N))
        P = np.empty((n, N))
        G = np.empty((N, N))
        U = np.empty((N, N))
        A = np.empty((N, N))
        for s in range(t * _CHUNK, min(B, (t + 1) * _CHUNK)):
            _gram_sample(keys[s, 0], keys[s, 1], resnet, n, U0, K0, sw2, sb2, alphas, sv, bv,
                         code, p, fn, slots, est[s], rec[s], Z, H, P, G, U, A)


# ----------------------------------------------------------------------------------------------
# N = 2: everything fused and vectorised (the per-layer path workhorse)
# ----------------------------------------------------------------------------------------------
@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _pairs_into(k1, k2, stream, n, z):
    """z[:n], z[n:2n] <- the n normal pairs of ``stream`` (the layout of ``_fill``)."""
    base = _base(stream)
    for i in range(n):
        a, b = _normal_pair(k1, k2, base + np.uint64(2 * i))
        z[i] = a
        z[n + i] = b


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _sums3(x, y, n, acc):
    """(x.x, x.y, y.y) over n entries with 8 fixed partial sums each (vectorises; the order does
    not depend on the machine).  acc: scratch (3, 8)."""
    a, b, c = acc[0], acc[1], acc[2]
    for k in range(8):
        a[k] = 0.0
        b[k] = 0.0
        c[k] = 0.0
    n8 = n - n % 8
    for i in range(0, n8, 8):
        for k in range(8):
            xi = x[i + k]
            yi = y[i + k]
            a[k] += xi * xi
            b[k] += xi * yi
            c[k] += yi * yi
    for i in range(n8, n):
        a[0] += x[i] * x[i]
        b[0] += x[i] * y[i]
        c[0] += y[i] * y[i]
    return (((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])),
            ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7])),
            ((c[0] + c[1]) + (c[2] + c[3])) + ((c[4] + c[5]) + (c[6] + c[7])))


@numba.njit(inline="always", cache=True, error_model="numpy")
def _chol2(g11, g12, g22):
    """Lower factor (l11, l21, l22) of a 2 x 2 PSD matrix (zero pivots as in _chol_upper)."""
    l11 = math.sqrt(g11) if g11 > 0.0 else 0.0
    l21 = g12 / l11 if l11 > 0.0 else 0.0
    d = g22 - l21 * l21
    l22 = math.sqrt(d) if d > _CHOL_TOL * g22 and d > 0.0 else 0.0
    return l11, l21, l22


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _affine2(z, n, l11, l21, l22, alpha, h):
    """h[:n] += alpha l11 z1,  h[n:] += alpha (l21 z1 + l22 z2)   (z1 = z[:n], z2 = z[n:])."""
    for i in range(n):
        z1 = z[i]
        z2 = z[n + i]
        h[i] += alpha * (l11 * z1)
        h[n + i] += alpha * (l21 * z1 + l22 * z2)


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _set2(z, n, l11, l21, l22, h):
    for i in range(n):
        z1 = z[i]
        z2 = z[n + i]
        h[i] = l11 * z1
        h[n + i] = l21 * z1 + l22 * z2


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _phi2(code, p, fn, h, w):
    for i in range(h.shape[0]):
        w[i] = _phi(code, p, fn, h[i])


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _gram_sample2(k1, k2, resnet, n, g0, sw2, sb2, alphas, sv, bv, code, p, fn, slots, est,
                  rec, z, h, w, acc):
    """One sample of the gram chain for N = 2; est (3,) and rec (R, 3) get (G11, G12, G22)."""
    L = slots.shape[0] - 1
    l11, l21, l22 = _chol2(g0[0], g0[1], g0[2])
    _pairs_into(k1, k2, 2, n, z)
    _set2(z, n, l11, l21, l22, h)
    if not resnet:
        if slots[0] >= 0:
            rec[slots[0], 0] = g0[0]
            rec[slots[0], 1] = g0[1]
            rec[slots[0], 2] = g0[2]
        for l in range(1, L + 1):
            _phi2(code, p, fn, h, w)
            a, b, c = _sums3(w[:n], w[n:], n, acc)
            g11 = sw2 / n * a + sb2
            g12 = sw2 / n * b + sb2
            g22 = sw2 / n * c + sb2
            if slots[l] >= 0:
                rec[slots[l], 0] = g11
                rec[slots[l], 1] = g12
                rec[slots[l], 2] = g22
            if l == L:
                est[0] = g11
                est[1] = g12
                est[2] = g22
                break
            l11, l21, l22 = _chol2(g11, g12, g22)
            _pairs_into(k1, k2, 4 * l + 2, n, z)
            _set2(z, n, l11, l21, l22, h)
        return
    if slots[0] >= 0:
        a, b, c = _sums3(h[:n], h[n:], n, acc)
        rec[slots[0], 0] = a / n
        rec[slots[0], 1] = b / n
        rec[slots[0], 2] = c / n
    for l in range(1, L + 1):
        _phi2(code, p, fn, h, w)
        a, b, c = _sums3(w[:n], w[n:], n, acc)
        l11, l21, l22 = _chol2(sw2 / n * a + sb2, sw2 / n * b + sb2, sw2 / n * c + sb2)
        _pairs_into(k1, k2, 4 * l + 2, n, z)
        _affine2(z, n, l11, l21, l22, alphas[l - 1], h)
        if slots[l] >= 0:
            a, b, c = _sums3(h[:n], h[n:], n, acc)
            rec[slots[l], 0] = a / n
            rec[slots[l], 1] = b / n
            rec[slots[l], 2] = c / n
    a, b, c = _sums3(h[:n], h[n:], n, acc)
    est[0] = sv / n * a + bv
    est[1] = sv / n * b + bv
    est[2] = sv / n * c + bv


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def _gram_chain2(keys, resnet, n, g0, sw2, sb2, alphas, sv, bv, code, p, fn, slots, est, rec):
    """The gram sampler for N = 2 (tasks of _CHUNK samples).  g0 = (g11, g12, g22) of the first
    layer's covariance; est (B, 3) and rec (B, R, 3) hold (G11, G12, G22)."""
    B = keys.shape[0]
    for t in prange((B + _CHUNK - 1) // _CHUNK):
        z = np.empty(2 * n)
        h = np.empty(2 * n)
        w = np.empty(2 * n)
        acc = np.empty((3, 8))
        for s in range(t * _CHUNK, min(B, (t + 1) * _CHUNK)):
            _gram_sample2(keys[s, 0], keys[s, 1], resnet, n, g0, sw2, sb2, alphas, sv, bv,
                          code, p, fn, slots, est[s], rec[s], z, h, w, acc)


# ----------------------------------------------------------------------------------------------
# weights sampler: BLAS for the products, compiled elementwise passes
# ----------------------------------------------------------------------------------------------
@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _dense_act(y, bias, s, t, alpha, resid, code, p, fn, dfn, h, P, D, want_d, lo, hi):
    """Rows lo..hi-1: h = s y + t b (MLP) or h += alpha (s y + t b) (ResNet); P = phi(h),
    D = phi'(h)."""
    N = y.shape[1]
    for r in range(lo, hi):
        br = t * bias[r]
        yr = y[r]
        hr = h[r]
        pr = P[r]
        for c in range(N):
            v = s * yr[c] + br
            if resid:
                v = hr[c] + alpha * v
            hr[c] = v
            pr[c] = _phi(code, p, fn, v)
        if want_d:
            dr = D[r]
            for c in range(N):
                dr[c] = _dphi(code, p, dfn, hr[c])


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _backprop(y, D, scale, g, resid, lo, hi):
    """Rows lo..hi-1.  MLP: g = D (scale y); ResNet: g += D (scale y)   (y = W^T g_next)."""
    N = y.shape[1]
    for r in range(lo, hi):
        yr = y[r]
        dr = D[r]
        gr = g[r]
        for c in range(N):
            v = dr[c] * (scale * yr[c])
            gr[c] = gr[c] + v if resid else v


_SPLIT_ELEMENTS = 1 << 18   # elementwise passes smaller than this stay on one thread


def _dense_act_split(y, bias, s, t, alpha, resid, act, h, P, D, want_d):
    _run_split(_dense_act, y.shape[0], y, bias, s, t, alpha, resid, act.code, act.params,
               act.fn, act.dfn, h, P, D, want_d,
               min_size=max(1, _SPLIT_ELEMENTS // y.shape[1]))


def _backprop_split(y, D, scale, g, resid):
    _run_split(_backprop, y.shape[0], y, D, scale, g, resid,
               min_size=max(1, _SPLIT_ELEMENTS // y.shape[1]))


def _gram_np(P, scale, shift):
    """scale P^T P + shift, exactly symmetric."""
    G = P.T @ P
    G = 0.5 * (G + G.T)
    return scale * G + shift


class _WeightsSampler:
    """One network sample at a time, explicit weights (forward, and backward for the NTK).

    The products use BLAS (numpy's, with its own threads); normal generation and the
    elementwise passes are compiled and run on Python threads (see ``_run_split``).
    """

    def __init__(self, spec, x, n, want_ntk, slots):
        self.spec, self.n, self.want_ntk, self.slots = spec, n, want_ntk, slots
        self.X = np.ascontiguousarray(x.T)                # (d, N)
        self.d, self.N = x.shape[1], x.shape[0]
        L = spec.depth
        n, d = self.n, self.d
        layout = [(_stream(0, _ROLE_W), (n, d)), (_stream(0, _ROLE_B), (n,))]
        hidden = range(1, L) if not spec.resnet else range(1, L + 1)
        for l in hidden:
            layout += [(_stream(l, _ROLE_W), (n, n)), (_stream(l, _ROLE_B), (n,))]
        if want_ntk:
            layout.append((_stream(L if not spec.resnet else L + 1, _ROLE_W), (n,)))
        self.layout = layout

    def run(self, keys, rec_out):
        """NNGP estimator, NTK estimator (or None); fills rec_out (R, N, N) if given."""
        sp, n, N, d = self.spec, self.n, self.N, self.d
        act = sp.act
        L = sp.depth
        slots = self.slots
        want = self.want_ntk
        draws = _Draws(keys, self.layout, keep=want)
        h = np.empty((n, N))
        P = np.empty((n, N))
        D = np.empty((n, N)) if want else P
        Ds = [] if want else None
        Gs = [sp.K0]                                 # forward Grams of each dense input
        # first dense layer (explicit W_in / W_0)
        s0, t0 = (sp.s0, sp.b0) if sp.resnet else (sp.sw2, sp.sb2)
        y = draws[_stream(0, _ROLE_W)] @ self.X
        _dense_act_split(y, draws[_stream(0, _ROLE_B)], math.sqrt(s0 / d), math.sqrt(t0), 0.0,
                         False, act, h, P, D, want)
        c_w, c_b = math.sqrt(sp.sw2 / n), math.sqrt(sp.sb2)
        if not sp.resnet:
            if rec_out is not None and slots[0] >= 0:
                rec_out[slots[0]] = sp.K0
            for l in range(1, L + 1):
                if want:
                    Ds.append(D)                     # phi'(h_l)
                G = _gram_np(P, sp.sw2 / n, sp.sb2)  # G_l
                Gs.append(G)
                if rec_out is not None and slots[l] >= 0:
                    rec_out[slots[l]] = G
                if l == L:
                    break
                y = draws[_stream(l, _ROLE_W)] @ P   # W_l phi(h_l)
                P = np.empty((n, N))
                D = np.empty((n, N)) if want else P
                _dense_act_split(y, draws[_stream(l, _ROLE_B)], c_w, c_b, 0.0, False, act, h, P,
                                 D, want)
            nngp = Gs[-1]
            if not want:
                return nngp, None
            # backward: delta_L = sqrt(sw2/n) w (.) phi'(h_L), delta_l = phi'(h_l) (.) W_l^T ...
            w = draws[_stream(L, _ROLE_W)]
            delta = np.empty((n, N))
            _backprop_split(np.ascontiguousarray(np.broadcast_to(w[:, None], (n, N))),
                            Ds[L - 1], c_w, delta, False)
            ntk = nngp.copy()                        # readout: G_L (.) 1
            for l in range(L - 1, 0, -1):
                ntk += Gs[l] * _gram_np(delta, 1.0, 0.0)
                y = draws[_stream(l, _ROLE_W)].T @ delta
                _backprop_split(y, Ds[l - 1], c_w, delta, False)
            ntk += Gs[0] * _gram_np(delta, 1.0, 0.0)
            return nngp, ntk
        # ResNet: h = h_0 now; P = phi(h_0), D = phi'(h_0)
        if rec_out is not None and slots[0] >= 0:
            rec_out[slots[0]] = _gram_np(h, 1.0 / n, 0.0)
        alphas = sp.alphas
        for l in range(1, L + 1):
            if want:
                Ds.append(D)                         # phi'(h_{l-1})
                Gs.append(_gram_np(P, sp.sw2 / n, sp.sb2))
            y = draws[_stream(l, _ROLE_W)] @ P
            P = np.empty((n, N))
            D = np.empty((n, N)) if want else P
            _dense_act_split(y, draws[_stream(l, _ROLE_B)], c_w, c_b, alphas[l - 1], True, act,
                             h, P, D, want and l < L)
            if rec_out is not None and slots[l] >= 0:
                rec_out[slots[l]] = _gram_np(h, 1.0 / n, 0.0)
        nngp = _gram_np(h, sp.sv / n, sp.bv)
        if not want:
            return nngp, None
        w = draws[_stream(L + 1, _ROLE_W)]
        g = np.ascontiguousarray(np.broadcast_to(math.sqrt(sp.sv / n) * w[:, None], (n, N)))
        ntk = nngp.copy()                            # readout: sv h_L^T h_L / n + bv
        for l in range(L, 0, -1):
            ntk += (alphas[l - 1] ** 2) * Gs[l] * _gram_np(g, 1.0, 0.0)
            y = draws[_stream(l, _ROLE_W)].T @ g
            _backprop_split(y, Ds[l - 1], alphas[l - 1] * c_w, g, True)
        ntk += Gs[0] * _gram_np(g, 1.0, 0.0)
        return nngp, ntk


# ----------------------------------------------------------------------------------------------
# network description and argument checks
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    resnet: bool
    depth: int
    act: _Act
    sw2: float
    sb2: float
    alphas: np.ndarray
    s0: float
    b0: float
    sv: float
    bv: float
    K0: np.ndarray          # covariance of the rows of the first hidden layer


def _spec(net, x, width):
    d = x.shape[1]
    act = _compiled_activation(net, width)
    G = x @ x.T                                       # as in the engine: w (G / d) + b
    if isinstance(net, MLP):
        K0 = net.weight_var * ((1.0 / d) * G) + net.bias_var
        return _Spec(False, net.depth, act, net.weight_var, net.bias_var, np.zeros(0),
                     net.weight_var, net.bias_var, net.weight_var, net.bias_var,
                     0.5 * (K0 + K0.T))
    K0 = net.input_weight_var * ((1.0 / d) * G) + net.input_bias_var
    return _Spec(True, net.depth, act, net.weight_var, net.bias_var,
                 np.ascontiguousarray(net.alphas, dtype=np.float64), net.input_weight_var,
                 net.input_bias_var, net.readout_weight_var, net.readout_bias_var,
                 0.5 * (K0 + K0.T))


def _check_net(net):
    if not isinstance(net, (MLP, ResNet)):
        raise TypeError(f"net must be a kernels MLP or ResNet, got {type(net).__name__}: {net!r}")
    return net


def _check_seed(seed):
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is None:
        return np.random.SeedSequence()
    if isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.integer)):
        raise TypeError(f"seed must be a non-negative integer, a numpy SeedSequence or None, "
                        f"got {type(seed).__name__}: {seed!r}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed!r}")
    return np.random.SeedSequence(int(seed))


def _check_bool_or_none(value, name):
    if value is not None and not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True, False or None, got {value!r}")
    return None if value is None else bool(value)


def _check_common(net, x, width, samples, seed, method, progress, batch):
    net = _check_net(net)
    width = _checks.positive_int(width, "width")
    samples = _checks.positive_int(samples, "samples")
    x = _checks.inputs(x, "x")
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    ss = _check_seed(seed)
    progress = _check_bool_or_none(progress, "progress")
    if batch is not None:
        batch = _checks.positive_int(batch, "batch")
    N, d = x.shape
    words = 2 * max(width * max(width, d, N), width) + 2
    if words > _MAX_WORDS:
        raise ValueError(f"width {width} is too large for the generator's streams "
                         f"(width * max(width, d, N) must stay below {_MAX_WORDS // 2})")
    return net, x, width, samples, ss, progress, batch


@numba.njit(cache=True)
def _derive_keys(a, b, i0, out):
    """Keys of samples i0, i0 + 1, ... of a block with root words (a, b): SplitMix64 outputs
    ``mix(a + (i + 1) G)``, ``mix(b + (i + 1) G)``."""
    for k in range(out.shape[0]):
        c = np.uint64(i0 + k + 1) * np.uint64(0x9E3779B97F4A7C15)
        out[k, 0] = _mix(a + c)
        out[k, 1] = _mix(b + c)


def _sample_keys(ss, lo, hi):
    """Generator keys (hi - lo, 2) of samples lo..hi-1.

    Samples come in fixed blocks of ``_KEY_BLOCK``: block j is the j-th child of ``ss``
    (``SeedSequence(ss.entropy, spawn_key=ss.spawn_key + (j,))``, as ``ss.spawn`` makes it),
    whose ``generate_state(2, uint64)`` gives two root words (a, b); sample ``i`` of the block
    has the keys ``(mix(a + (i + 1) G), mix(b + (i + 1) G))`` (SplitMix64).  The keys of a sample
    therefore do not depend on ``batch``.
    """
    out = np.empty((hi - lo, 2), dtype=np.uint64)
    for j in range(lo // _KEY_BLOCK, (hi - 1) // _KEY_BLOCK + 1):
        child = np.random.SeedSequence(ss.entropy, spawn_key=tuple(ss.spawn_key) + (j,),
                                       pool_size=ss.pool_size)
        root = child.generate_state(2, np.uint64)
        a, b = max(lo, _KEY_BLOCK * j), min(hi, _KEY_BLOCK * (j + 1))
        _derive_keys(root[0], root[1], a - _KEY_BLOCK * j, out[a - lo:b - lo])
    return out


def _progress_bar(show, total, desc):
    if show is None:
        show = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not show:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="sample", leave=False)


def _seed_repr(ss):
    return {"entropy": ss.entropy, "spawn_key": tuple(ss.spawn_key)}


# ----------------------------------------------------------------------------------------------
# running blocks of samples
# ----------------------------------------------------------------------------------------------
def _choose_method(method, ntk, N, width):
    if method == "auto":
        return "gram" if (not ntk and N < width) else "weights"
    if method == "gram":
        if ntk:
            raise ValueError("method='gram' samples the forward pass only (NNGP, per-layer "
                             "Grams): it cannot give the NTK; use method='weights' or 'auto', "
                             "or ntk=False")
        if N > width:
            raise ValueError(f"method='gram' needs N <= width (the N x N layer covariance has "
                             f"rank <= width); got N = {N} inputs and width = {width}: use "
                             f"method='weights' (method='auto' chooses it)")
    return method


def _default_batch(method, width, N, depth, R):
    """Samples per block: a multiple of the key block with enough work to hide the Python
    overhead (scheduling only: results do not depend on it)."""
    if method != "gram":
        return 1
    b = _BLOCK_WORK // max(1, width * N * depth)
    b = min(b, _BLOCK_BYTES // (8 * max(1, R) * N * N))
    return max(_KEY_BLOCK, b - b % _KEY_BLOCK)


def _gram_block(spec, n, keys, slots, R):
    """Run the gram sampler on a block of samples: est (B, N, N), rec (B, R, N, N)."""
    B = keys.shape[0]
    N = spec.K0.shape[0]
    act = spec.act
    alphas = spec.alphas if spec.resnet else np.zeros(1)
    sv, bv = (spec.sv, spec.bv) if spec.resnet else (0.0, 0.0)
    if N == 2:
        g0 = np.array([spec.K0[0, 0], spec.K0[0, 1], spec.K0[1, 1]])
        est3 = np.empty((B, 3))
        rec3 = np.empty((B, max(R, 1), 3))
        _gram_chain2(keys, spec.resnet, n, g0, spec.sw2, spec.sb2, alphas, sv, bv, act.code,
                     act.params, act.fn, slots, est3, rec3)
        return _unpack3(est3), _unpack3(rec3[:, :R])
    U0 = np.empty((N, N))
    _chol_upper(spec.K0, U0, np.empty((N, N)))
    est = np.empty((B, N, N))
    rec = np.empty((B, max(R, 1), N, N))
    _gram_chain(keys, spec.resnet, n, U0, spec.K0, spec.sw2, spec.sb2, alphas, sv, bv,
                act.code, act.params, act.fn, slots, est, rec)
    return est, rec[:, :R]


def _unpack3(a):
    out = np.empty(a.shape[:-1] + (2, 2))
    out[..., 0, 0] = a[..., 0]
    out[..., 0, 1] = a[..., 1]
    out[..., 1, 0] = a[..., 1]
    out[..., 1, 1] = a[..., 2]
    return out


@numba.njit(cache=True)
def _welford(count, mean, m2, vals):
    """Add the samples vals (B, ...) in order; returns the new count."""
    flat_mean = mean.reshape(-1)
    flat_m2 = m2.reshape(-1)
    B = vals.shape[0]
    V = vals.reshape(B, -1)
    for s in range(B):
        count += 1
        inv = 1.0 / count
        for k in range(V.shape[1]):
            x = V[s, k]
            delta = x - flat_mean[k]
            flat_mean[k] += delta * inv
            flat_m2[k] += delta * (x - flat_mean[k])
    return count


# ----------------------------------------------------------------------------------------------
# public results
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MonteCarloResult:
    """Monte Carlo estimates of the NNGP and NTK of a finite-width network.

    Attributes
    ----------
    nngp : (N, N) array
        Sample mean of ``E[f(x) f(x') | last hidden layer]`` (unbiased for the NNGP).
    ntk : (N, N) array or None
        Sample mean of the empirical NTK (None when ``ntk=False``).
    nngp_stderr, ntk_stderr : (N, N) arrays (or None)
        Standard errors of the means, ``sqrt(s^2 / samples)`` with the unbiased sample variance
        ``s^2`` (Welford); NaN when ``samples == 1``.
    samples : int
    width : int
    method : str
        ``"weights"`` or ``"gram"``: the sampler actually used.
    seed : dict
        ``{"entropy": ..., "spawn_key": ...}`` of the root ``SeedSequence`` (reproduces the run).
    nngp_samples, ntk_samples : (samples, N, N) arrays or None
        Every sample, when ``keep_samples=True``.
    """

    nngp: np.ndarray
    ntk: Optional[np.ndarray]
    nngp_stderr: np.ndarray
    ntk_stderr: Optional[np.ndarray]
    samples: int
    width: int
    method: str
    seed: dict
    nngp_samples: Optional[np.ndarray] = field(default=None, repr=False)
    ntk_samples: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def stderr(self):
        """``Kernels(nngp=nngp_stderr, ntk=ntk_stderr)``."""
        return Kernels(nngp=self.nngp_stderr, ntk=self.ntk_stderr)


@dataclass(frozen=True)
class Paths:
    """Per-layer Gram samples of finite-width networks (``simulate_paths``).

    Attributes
    ----------
    layers : (R,) int array
        Recorded layer indices (as in ``net.trajectory``).
    gram : (samples, R, N, N) array or None
        ``gram[s, k]`` is layer ``layers[k]``'s Gram of sample ``s`` (None if ``record="rho"``).
    samples, width, method, seed
        As in ``MonteCarloResult``.
    """

    layers: np.ndarray
    gram: Optional[np.ndarray]
    samples: int
    width: int
    method: str
    seed: dict
    _rho: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def correlation(self):
        """(samples, R, N, N) correlations ``G_ab / sqrt(G_aa G_bb)`` (NaN where a norm is 0)."""
        if self.gram is None:
            raise ValueError("only rho was recorded (record='rho'): use .rho")
        diag = np.sqrt(np.einsum("...ii->...i", self.gram))
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.gram / (diag[..., :, None] * diag[..., None, :])

    @property
    def rho(self):
        """(samples, R) correlation of the pair of inputs (N = 2 only)."""
        if self._rho is not None:
            return self._rho
        if self.gram.shape[-1] != 2:
            raise ValueError(f"rho is defined for N = 2 inputs, got N = {self.gram.shape[-1]}; "
                             "use .correlation")
        return _rho_of(self.gram[..., 0, 0], self.gram[..., 0, 1], self.gram[..., 1, 1])


def _rho_of(g11, g12, g22):
    with np.errstate(invalid="ignore", divide="ignore"):
        return g12 / np.sqrt(g11 * g22)


# ----------------------------------------------------------------------------------------------
# entry points
# ----------------------------------------------------------------------------------------------
def monte_carlo(net, x, width, samples, seed=0, ntk=True, method="auto", progress=None,
                batch=None, keep_samples=False):
    """Monte Carlo NNGP and NTK of finite-width random networks.

    Samples ``samples`` independent networks of the architecture ``net`` (an ``MLP`` or
    ``ResNet``) at hidden width ``width``, and averages, per network,

    * the NNGP estimator ``E[f(x) f(x') | h_L] = sw2 phi(h_L)^T phi(h_L) / n + sb2`` (MLP) or
      ``sv h_L^T h_L / n + bv`` (ResNet), unbiased for ``E[f(x) f(x')]`` with lower variance;
    * the empirical NTK ``sum_theta df(x)/dtheta df(x')/dtheta`` over every weight and bias,
      readout included, as a sum over layers of (forward Gram) (.) (backward Gram)
      (neural-tangents ``monte_carlo_kernel_fn`` computes the same quantity from Jacobians).

    As ``width -> infinity`` the means converge to ``net.nngp(x)`` and ``net.ntk(x)``; the bias
    is O(1/width).  See the module docstring for the formulas.

    Parameters
    ----------
    net : MLP or ResNet
        The architecture.  Its activation is used at fixed slopes: ``ShapedReLU(rate="width")``
        takes the slopes ``1 + c/sqrt(width)``, ``rate="depth"`` ``1 + c/sqrt(depth)``.
    x : (N, d) array_like
        Inputs (finite).
    width : int >= 1
        Hidden width n.
    samples : int >= 1
        Number of independent networks.
    seed : int >= 0, numpy.random.SeedSequence or None, default 0
        Root seed; samples ``1024 j .. 1024 j + 1023`` draw their keys from the ``j``-th child
        ``SeedSequence`` (module docstring), so the result depends only on (seed, arguments),
        not on ``batch`` or the thread count.
        ``None`` draws fresh entropy (recorded in ``result.seed``).
    ntk : bool, default True
        Also compute the empirical NTK (needs the ``"weights"`` sampler).
    method : {"auto", "weights", "gram"}
        ``"weights"``: explicit weight matrices, O(width^2 N) per layer.  ``"gram"``: the exact
        Gram chain (rows of each layer sampled from their conditional Gaussian law),
        O(width N^2 + N^3) per layer, forward quantities only; it needs ``N <= width`` (else a
        ``ValueError``).  ``"auto"``: ``"gram"`` when ``ntk=False`` and ``N < width``, else
        ``"weights"``.
    progress : bool or None
        tqdm progress bar: None shows it when stderr is a terminal; True / False force it.
    batch : int, optional
        Samples per block (memory and scheduling only; results do not depend on it).
    keep_samples : bool, default False
        Also return every sample (``nngp_samples``, ``ntk_samples``); otherwise only streaming
        means and variances are kept.

    Returns
    -------
    MonteCarloResult

    Raises
    ------
    TypeError, ValueError
        Bad arguments (before any compiled code runs).

    Examples
    --------
    >>> import numpy as np, kernels as kn
    >>> from kernels.montecarlo import monte_carlo
    >>> net = kn.MLP(depth=2, activation=kn.ReLU())
    >>> x = np.array([[1.0, 0.0], [0.6, 0.8]])
    >>> mc = monte_carlo(net, x, width=64, samples=20, seed=1)
    >>> mc.nngp.shape, mc.ntk.shape, mc.method
    ((2, 2), (2, 2), 'weights')
    """
    net, x, width, samples, ss, progress, batch = _check_common(net, x, width, samples, seed,
                                                                method, progress, batch)
    if not isinstance(ntk, (bool, np.bool_)):
        raise TypeError(f"ntk must be True or False, got {ntk!r}")
    if not isinstance(keep_samples, (bool, np.bool_)):
        raise TypeError(f"keep_samples must be True or False, got {keep_samples!r}")
    ntk = bool(ntk)
    N = x.shape[0]
    method = _choose_method(method, ntk, N, width)
    spec = _spec(net, x, width)
    L = net.depth
    slots = np.full(L + 1, -1, dtype=np.int64)
    if batch is None:
        batch = _default_batch(method, width, N, L, 0)

    count = 0
    mean_k, m2_k = np.zeros((N, N)), np.zeros((N, N))
    mean_t, m2_t = (np.zeros((N, N)), np.zeros((N, N))) if ntk else (None, None)
    all_k = np.empty((samples, N, N)) if keep_samples else None
    all_t = np.empty((samples, N, N)) if keep_samples and ntk else None
    sampler = _WeightsSampler(spec, x, width, ntk, slots) if method == "weights" else None
    bar = _progress_bar(progress, samples, f"monte_carlo ({method})")
    try:
        for lo in range(0, samples, batch):
            hi = min(samples, lo + batch)
            keys = _sample_keys(ss, lo, hi)
            if method == "gram":
                est, _ = _gram_block(spec, width, keys, slots, 0)
                tk = None
            else:
                est = np.empty((hi - lo, N, N))
                tk = np.empty((hi - lo, N, N)) if ntk else None
                for k in range(hi - lo):
                    a, b = sampler.run(keys[k], None)
                    est[k] = a
                    if ntk:
                        tk[k] = b
            c0 = count
            count = _welford(c0, mean_k, m2_k, est)
            if ntk:
                _welford(c0, mean_t, m2_t, tk)
            if keep_samples:
                all_k[lo:hi] = est
                if ntk:
                    all_t[lo:hi] = tk
            if bar is not None:
                bar.update(hi - lo)
    finally:
        if bar is not None:
            bar.close()

    def stderr(m2):
        if count < 2:
            return np.full((N, N), np.nan)
        return np.sqrt(m2 / (count - 1) / count)

    return MonteCarloResult(nngp=mean_k, ntk=mean_t, nngp_stderr=stderr(m2_k),
                            ntk_stderr=stderr(m2_t) if ntk else None, samples=samples,
                            width=width, method=method, seed=_seed_repr(ss),
                            nngp_samples=all_k, ntk_samples=all_t)


def simulate_paths(net, x, width, samples, seed=0, layers=None, record="gram", method="auto",
                   progress=None, batch=None):
    """Per-layer Gram matrices (or the correlation of a pair) of finite-width random networks.

    For limit studies (theory/sde.md): records, for every sample network and every chosen
    layer, the Gram matrix of that layer (indexed like ``net.trajectory``)::

        MLP     G_l = sw2 phi(h_l)^T phi(h_l) / n + sb2,  G_0 = sw2 x x^T / d + sb2,
                G_depth = the NNGP estimator;  width -> inf: the engine's K_{l+1}
        ResNet  G_l = h_l^T h_l / n  (residual stream, l = 0..depth);  width -> inf: K_l

    Samples are processed in blocks and only the chosen layers are kept, so memory is
    ``samples x len(layers) x N^2`` doubles (``samples x len(layers)`` with ``record="rho"``)
    plus one block's workspace.

    Parameters
    ----------
    net, x, width, samples, seed, progress, batch
        As in ``monte_carlo``.
    layers : sequence of int, optional
        Layers in 0..depth to record (default: all).
    record : {"gram", "rho"}
        ``"gram"``: Gram matrices (samples, R, N, N).  ``"rho"``: only the correlation of the
        pair, ``G_12 / sqrt(G_11 G_22)`` (samples, R); needs N = 2.
    method : {"auto", "weights", "gram"}
        As in ``monte_carlo`` (``"auto"`` = ``"gram"`` when ``N <= width``).  Both samplers
        have the same law.

    Returns
    -------
    Paths
        ``.layers``, ``.gram``, ``.rho`` (N = 2), ``.correlation``.

    Reference: M. B. Li, M. Nica, D. M. Roy (2022), the finite-width covariance Markov chain.

    Examples
    --------
    >>> import numpy as np, kernels as kn
    >>> from kernels.montecarlo import simulate_paths
    >>> net = kn.MLP(depth=8, activation=kn.ReLU())
    >>> x = np.array([[1.0, 0.0], [0.6, 0.8]])
    >>> p = simulate_paths(net, x, width=32, samples=10, layers=[0, 4, 8], record="rho")
    >>> p.rho.shape
    (10, 3)
    """
    net, x, width, samples, ss, progress, batch = _check_common(net, x, width, samples, seed,
                                                                method, progress, batch)
    N = x.shape[0]
    L = net.depth
    if layers is None:
        layers = np.arange(L + 1)
    try:
        layers = np.unique(np.asarray(layers))
    except TypeError as exc:
        raise TypeError(f"layers must be a sequence of integers: {exc}") from exc
    if layers.ndim != 1 or layers.size == 0 or not np.issubdtype(layers.dtype, np.integer):
        raise ValueError(f"layers must be a non-empty sequence of integers, got {layers!r}")
    if layers[0] < 0 or layers[-1] > L:
        raise ValueError(f"layers must lie in 0..{L}, got {layers.tolist()}")
    if record not in ("gram", "rho"):
        raise ValueError(f"record must be 'gram' or 'rho', got {record!r}")
    if record == "rho" and N != 2:
        raise ValueError(f"record='rho' needs N = 2 inputs, got N = {N}; use record='gram'")
    if method == "auto":
        method = "gram" if N <= width else "weights"
    method = _choose_method(method, False, N, width)
    spec = _spec(net, x, width)
    R = layers.size
    slots = np.full(L + 1, -1, dtype=np.int64)
    slots[layers] = np.arange(R)
    if batch is None:
        batch = _default_batch(method, width, N, L, R)
    gram = np.empty((samples, R, N, N)) if record == "gram" else None
    rho = np.empty((samples, R)) if record == "rho" else None
    sampler = _WeightsSampler(spec, x, width, False, slots) if method == "weights" else None
    bar = _progress_bar(progress, samples, f"simulate_paths ({method})")
    try:
        for lo in range(0, samples, batch):
            hi = min(samples, lo + batch)
            keys = _sample_keys(ss, lo, hi)
            if method == "gram":
                _, rec = _gram_block(spec, width, keys, slots, R)
            else:
                rec = np.empty((hi - lo, R, N, N))
                for k in range(hi - lo):
                    sampler.run(keys[k], rec[k])
            if gram is not None:
                gram[lo:hi] = rec
            else:
                rho[lo:hi] = _rho_of(rec[..., 0, 0], rec[..., 0, 1], rec[..., 1, 1])
            if bar is not None:
                bar.update(hi - lo)
    finally:
        if bar is not None:
            bar.close()
    return Paths(layers=layers, gram=gram, samples=samples, width=width, method=method,
                 seed=_seed_repr(ss), _rho=rho)
