"""Counter-based normal random numbers (shared by kernels.montecarlo and limits.solve).

Keys.  A root ``SeedSequence`` gives the samples (or paths) their keys in fixed blocks of
``_KEY_BLOCK``: block ``j`` uses the ``j``-th child ``SeedSequence(seed).spawn(...)[j]``, whose
``generate_state(2, uint64)`` gives two root words (a, b); item ``1024 j + i`` has the two 64-bit
keys ``mix(a + (i + 1) G)`` and ``mix(b + (i + 1) G)`` (``_sample_keys``), so keys never depend
on how items are batched.

Words.  Word ``c`` of the stream with keys (k1, k2) is ``mix(mix(c * G + k1) ^ k2)`` (``_word``),
with ``mix`` the SplitMix64 output function (Steele, Lea & Flood 2014; a counter-based design in
the sense of Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3") and ``G`` the
64-bit golden ratio.  Stream ``s`` of a sample starts at counter ``s << 40`` (``_base``).

Normals.  Two words give two normals by the Box-Muller transform, branch-free and vectorised
(fdlibm's log and sin / cos kernels on reduced arguments, about 1e-16 accurate; the magic-number
integer <-> float conversions of kernels/_vecmath.py), so that a fill loop vectorises on AVX2.
``_fill`` / ``_fill_part`` / ``_normals`` lay the pairs of a stream of m normals out as
``out[j], out[j + ceil(m/2)]``; ``_run_split`` splits large fills over a thread pool (the
numbers do not depend on the split).

Weights-sampler streams (``_wstream``, ``_wfill_part``, ``_wnormals``): the weight matrices of
kernels/_weights_sampler.py come from one SplitMix64 sequence per (sample, stream), one output
mix per word instead of two, and a cheaper Box-Muller transform (``_box_muller_oct_k``: the
angle is a point of the first octant moved by a random symmetry of the square), with the same
layout (their comment block below); the generators above are unchanged.

Constants as tuples: every function has a ``*_k`` form taking its constants (``MIX_K``,
``BM_K``) as a tuple argument; hot loops pass the tuple as a runtime argument, which keeps the
broadcast constants in vector registers (see kernels/_vecmath.py).  The numbers are
bit-identical either way.

References
----------
G. L. Steele, D. Lea, C. H. Flood, "Fast splittable pseudorandom number generators",
OOPSLA 2014.  J. K. Salmon, M. A. Moraes, R. O. Dror, D. E. Shaw, "Parallel random numbers: as
easy as 1, 2, 3", SC 2011.  G. E. P. Box, M. E. Muller, "A note on the generation of random
normal deviates", Ann. Math. Stat. 29 (1958).
"""
import math
import numbers
import os

import numba
import numpy as np

from ._vecmath import _LN2_HI, _LN2_LO, _MAGIC, _MAGIC_BITS, _TWO52, _TWO84, _f2i, _i2f

__all__ = ["MIX_K", "BM_K"]

_STREAM_SHIFT = 40                  # counter = (stream << 40) + word: 2^40 words per stream
_MAX_WORDS = 1 << (_STREAM_SHIFT - 1)
_KEY_BLOCK = 1024                   # samples per SeedSequence child (fixed: keys ignore batch)

# ----------------------------------------------------------------------------------------------
# the generator (vectorisable: no branches, no libm calls)
# ----------------------------------------------------------------------------------------------
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
BM_K = (_LN2_HI, _LN2_LO,
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


def _seed_repr(ss):
    return {"entropy": ss.entropy, "spawn_key": tuple(ss.spawn_key)}


# ----------------------------------------------------------------------------------------------
# the weights sampler's streams: one SplitMix64 sequence per (sample, matrix)
# ----------------------------------------------------------------------------------------------
# The weight matrices of kernels/_weights_sampler.py are its dominant cost after the products, so
# their streams use one output mix per word instead of two: stream ``s`` of the sample with keys
# (k1, k2) is a SplitMix64 sequence (Steele, Lea & Flood 2014, as in Java's SplittableRandom)
# with its own seed and its own odd increment ("gamma"), both taken from the sample's
# counter-based words above in a separate counter domain (bit 63 set, never reached by the
# streams of ``_word``, which stay below 2^63)::
#
#     seed  = _word(k1, k2, 2^63 + 2 s),   gamma = mixGamma(_word(k1, k2, 2^63 + 2 s + 1))
#     word p of the stream = mix(seed + (p + 1) gamma)
#
# (mixGamma: gamma | 1, flipped by 0xAAAA... when it has fewer than 24 bit transitions,
# Steele et al.'s guard against weak increments).  Two streams with different gammas are
# different Weyl sequences, so no stream is a shifted copy of another.  Normal pair j of the
# stream is the octant Box-Muller transform below of words 2j, 2j + 1, laid out as out[j],
# out[j + ceil(m/2)] (as ``_fill``), so a number depends only on (keys, stream, index): never on
# the split over threads.
_W_DOMAIN = np.uint64(1 << 63)
_MIX_GAMMA_FLIP = np.uint64(0xAAAAAAAAAAAAAAAA)


@numba.njit(cache=True)
def _transitions(z):
    """Number of bit transitions of z: popcount(z ^ (z >> 1))."""
    v = z ^ (z >> np.uint64(1))
    n = 0
    while v != np.uint64(0):
        v &= v - np.uint64(1)
        n += 1
    return n


@numba.njit(cache=True)
def _wstream(k1, k2, stream):
    """(seed, gamma) of the weights-sampler stream ``stream`` of the sample with keys (k1, k2)."""
    c = _W_DOMAIN | (np.uint64(stream) << np.uint64(1))
    seed = _word(k1, k2, c)
    gamma = _word(k1, k2, c + np.uint64(1)) | np.uint64(1)
    if _transitions(gamma) < 24:
        gamma ^= _MIX_GAMMA_FLIP
    return seed, gamma


# The transform of these streams (``_box_muller_oct_k``) is Box-Muller with the angle drawn as a
# point of the first octant moved by a random symmetry of the square: with b1, b2 the two words,
#
#     u   = 1 - (b1 >> 12) 2^-52                    in (0, 1]   (2 - [1, 2): exact)
#     r   = sqrt(-2 log u)
#     phi = (pi / 4) t,   t = (b2 >> 12) 2^-52      in [0, pi / 4)
#     (a, b) = (cos phi, sin phi), swapped if bit 0 of b2 is set
#     z1 = (-1)^(bit 1 of b2) r a,   z2 = (-1)^(bit 2 of b2) r b
#
# phi is uniform on the first octant; the swap reflects it about the diagonal, so the angle is
# uniform on the first quadrant, and the two independent signs spread it over the four
# quadrants: the angle is uniform on the circle, independent of r, so (z1, z2) are two
# independent N(0, 1) (Box & Muller 1958).  The angle's top 52 bits and the 3 symmetry bits are
# disjoint bits of b2.  Against the generic ``_box_muller_k`` this drops the quadrant reduction
# and its selects, and the 53-bit integer -> float conversions (the uniforms are mantissa bit
# patterns): 1.2 instead of 1.55 ns per normal on one Zen 4 core (AVX-512; measured on a
# loaded machine, CPU time).  The log is fdlibm's (``_minus2log_k``, < 1 ulp) and sin / cos are
# fdlibm's kernels on [0, pi/4] (``_sincos_octant_k``, about 1 ulp): tests/kernels/test_random.py
# checks both in ulps against math.log / math.sin / math.cos, and the normals against a
# scalar reference built from them.
_ONE_BITS = 0x3FF0000000000000         # bits of 1.0: (w >> 12) | _ONE_BITS is in [1, 2)
_SIGN_BIT = -0x8000000000000000        # bit 63 as an int64


@numba.njit(inline="always", cache=True, error_model="numpy")
def _sincos_octant_k(x, bk):
    """``(sin x, cos x)`` for x in [0, pi/4] (fdlibm k_sin / k_cos polynomials, no reduction);
    bk = BM_K."""
    z = x * x
    sn = x + x * z * (bk[9] + z * (bk[10] + z * (bk[11] + z * (bk[12] + z * (bk[13]
                                                                            + z * bk[14])))))
    cs = 1.0 - 0.5 * z + z * z * (bk[15] + z * (bk[16] + z * (bk[17] + z * (bk[18] + z * (
        bk[19] + z * bk[20])))))
    return sn, cs


@numba.njit(inline="always", cache=True, error_model="numpy")
def _box_muller_oct_k(b1, b2, bk):
    """Two independent N(0, 1) from two random 64-bit words (uint64): the octant transform of
    the comment above; bk = BM_K."""
    u = 2.0 - _i2f(np.int64(b1 >> np.uint64(12)) | _ONE_BITS)               # (0, 1]
    r = math.sqrt(_minus2log_k(u, bk))
    w = np.int64(b2)
    t = _i2f(np.int64(b2 >> np.uint64(12)) | _ONE_BITS) - 1.0               # [0, 1)
    sn, cs = _sincos_octant_k((0.125 * bk[21]) * t, bk)
    swap = (w & 1) != 0
    a = sn if swap else cs
    b = cs if swap else sn
    z1 = _i2f(_f2i(r * a) ^ ((w << 62) & _SIGN_BIT))
    z2 = _i2f(_f2i(r * b) ^ ((w << 61) & _SIGN_BIT))
    return z1, z2


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _wfill_pairs(seed, gamma, p0, first, second, bk, mk):
    """Normal pairs p0 + j (j = 0, 1, ...) of the stream (seed, gamma): first[j], second[j].

    Pair p is the octant Box-Muller transform (``_box_muller_oct_k``) of words 2p, 2p + 1,
    i.e. of ``mix(seed + (2p + 1) gamma)`` and ``mix(seed + (2p + 2) gamma)``.  ``second`` may
    be one shorter than ``first``."""
    m2 = second.shape[0]
    g2 = gamma + gamma
    for j in range(m2):
        x = seed + (p0 + np.uint64(j)) * g2
        z1, z2 = _box_muller_oct_k(_mix_k(x + gamma, mk), _mix_k(x + g2, mk), bk)
        first[j] = z1
        second[j] = z2
    for j in range(m2, first.shape[0]):
        x = seed + (p0 + np.uint64(j)) * g2
        z1, z2 = _box_muller_oct_k(_mix_k(x + gamma, mk), _mix_k(x + g2, mk), bk)
        first[j] = z1


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _wfill_part(k1, k2, stream, out, lo, hi):
    """Pairs lo..hi-1 of the weights-sampler stream ``stream`` of the sample with keys (k1, k2)
    into ``out`` (1-d, all the stream's ``out.size`` normals; pair p gives out[p] and
    out[p + ceil(m/2)]); releases the GIL."""
    m = out.shape[0]
    half = (m + 1) // 2
    seed, gamma = _wstream(k1, k2, stream)
    _wfill_pairs(seed, gamma, np.uint64(lo), out[lo:hi], out[lo + half:min(hi + half, m)],
                 BM_K, MIX_K)


def _wnormals(keys, stream, shape, split=True):
    """Standard normals of the weights-sampler stream ``stream`` of one sample, as a new array
    (split over threads if ``split``; the numbers do not depend on it)."""
    out = np.empty(int(np.prod(shape)))
    n = (out.size + 1) // 2
    if split:
        _run_split(_wfill_part, n, keys[0], keys[1], np.int64(stream), out)
    else:
        _wfill_part(keys[0], keys[1], np.int64(stream), out, 0, n)
    return out.reshape(shape)
