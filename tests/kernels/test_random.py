"""The weights sampler's normal streams (kernels/_random.py: ``_wstream``, ``_wfill_part``,
``_wnormals``) and the independence of weights-sampler results from batching and threads.

Expected values are independent of the code under test: a pure-Python SplitMix64 with
``math.log`` / ``math.cos`` / ``math.sin`` for the documented definition (the octant Box-Muller
transform), mpmath for the log and sin / cos kernels in ulps, moments of N(0, 1) and of the
pairs' angle and radius with their standard errors, scipy's KS and chi-square tests, and a NumPy
network built from the documented streams.
"""
import math

import numba
import numpy as np
import pytest
from scipy import stats

import kernels as kn
from kernels import _random as rnd, _weights_sampler as ws, montecarlo as mc

Z = 4.0        # standard errors allowed in statistical comparisons
M64 = (1 << 64) - 1


def _keys(seed, lo, hi):
    return rnd._sample_keys(np.random.SeedSequence(seed), lo, hi)


# ----------------------------------------------------------------------------------------------
# the definition, in plain Python
# ----------------------------------------------------------------------------------------------
def _py_mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _py_word(k1, k2, c):
    return _py_mix(_py_mix((c * 0x9E3779B97F4A7C15 + k1) & M64) ^ k2)


def _py_stream(k1, k2, s):
    c = (1 << 63) | (s << 1)
    seed = _py_word(k1, k2, c)
    gamma = _py_word(k1, k2, c + 1) | 1
    if bin(gamma ^ (gamma >> 1)).count("1") < 24:
        gamma ^= 0xAAAAAAAAAAAAAAAA
    return seed, gamma


def _py_pair(b1, b2):
    """The documented octant Box-Muller transform of two words, with math.log / cos / sin:
    u = 1 - (b1 >> 12) 2^-52, phi = (pi / 4) (b2 >> 12) 2^-52, (cos phi, sin phi) swapped if
    bit 0 of b2 is set, the first negated if bit 1 is set, the second if bit 2 is."""
    u = 1.0 - (b1 >> 12) * 2.0 ** -52
    phi = math.pi / 4 * ((b2 >> 12) * 2.0 ** -52)
    r = math.sqrt(-2.0 * math.log(u))
    a, b = r * math.cos(phi), r * math.sin(phi)
    if b2 & 1:
        a, b = b, a
    return (-a if b2 & 2 else a), (-b if b2 & 4 else b)


def _py_normals(k1, k2, s, m):
    """The documented stream: pair p = the octant transform of words 2p, 2p + 1 (word
    q = mix(seed + (q + 1) gamma)), laid out as out[p], out[p + ceil(m / 2)]."""
    seed, gamma = _py_stream(k1, k2, s)
    half = (m + 1) // 2
    out = np.empty(m)
    for p in range(half):
        b1 = _py_mix((seed + (2 * p + 1) * gamma) & M64)
        b2 = _py_mix((seed + (2 * p + 2) * gamma) & M64)
        z1, z2 = _py_pair(b1, b2)
        out[p] = z1
        if p + half < m:
            out[p + half] = z2
    return out


@pytest.mark.parametrize("m", [1, 2, 7, 1000])
def test_streams_follow_their_definition(m):
    keys = _keys(4, 0, 3)
    for k, s in ((0, 0), (1, 5), (2, 41)):
        got = rnd._wnormals(keys[k], s, (m,))
        expect = _py_normals(int(keys[k][0]), int(keys[k][1]), s, m)
        np.testing.assert_allclose(got, expect, rtol=1e-14, atol=1e-15)


def test_transitions_and_gamma():
    rng = np.random.default_rng(0)
    for z in list(rng.integers(0, 2 ** 63, 50, dtype=np.uint64)) + [np.uint64(1),
                                                                     np.uint64(2 ** 63 + 5)]:
        z = int(z)
        assert rnd._transitions(np.uint64(z)) == bin(z ^ (z >> 1)).count("1")
    keys = _keys(1, 0, 50)
    for k in range(50):
        seed, gamma = rnd._wstream(keys[k][0], keys[k][1], 3 * k)
        assert int(gamma) & 1 == 1
        assert rnd._transitions(np.uint64(gamma)) >= 24


# ----------------------------------------------------------------------------------------------
# the octant Box-Muller transform in ulps: its log and sin / cos kernels against mpmath, the
# vectorised fill and the transform of chosen words against the scalar reference _py_pair
# ----------------------------------------------------------------------------------------------
@numba.njit
def _minus2log_many(u, out):
    for i in range(u.size):
        out[i] = rnd._minus2log_k(u[i], rnd.BM_K)


@numba.njit
def _sincos_many(x, s, c):
    for i in range(x.size):
        s[i], c[i] = rnd._sincos_octant_k(x[i], rnd.BM_K)


@numba.njit
def _pairs_many(b1, b2, z1, z2):
    for i in range(b1.size):
        z1[i], z2[i] = rnd._box_muller_oct_k(b1[i], b2[i], rnd.BM_K)


def _ulps(got, exact):
    """|got - exact| in units of the last place of the double nearest to exact."""
    import mpmath as mp
    return float(abs(mp.mpf(float(got)) - exact) / np.spacing(abs(float(exact))))


def test_log_kernel_is_within_one_ulp():
    """-2 log u on the uniforms of the transform (1 - k 2^-52), on every binade down to 2^-52,
    and at the edges of the reduction (mantissa around sqrt 2)."""
    import mpmath as mp
    rng = np.random.default_rng(0)
    k = rng.integers(1, 1 << 52, 3000, dtype=np.int64)
    r2 = math.sqrt(0.5)
    u = np.concatenate([1.0 - k * 2.0 ** -52, 2.0 ** -rng.uniform(0, 52, 2000),
                        [1 - 2 ** -52, 2 ** -52, 2 ** -51, 3 * 2 ** -52, 0.5, 0.25, r2,
                         np.nextafter(r2, 1), np.nextafter(r2, 0), r2 / 1024]])
    out = np.empty_like(u)
    _minus2log_many(u, out)
    with mp.workdps(40):
        err = max(_ulps(g, -2 * mp.log(mp.mpf(float(v)))) for g, v in zip(out, u))
    assert err <= 1.0
    one = np.empty(1)
    _minus2log_many(np.array([1.0]), one)
    assert one[0] == 0.0


def test_sincos_kernel_is_within_about_one_ulp():
    """sin and cos on [0, pi/4] (fdlibm's kernels: sin < 1 ulp; cos 1 - z/2 + ..., < 1.5)."""
    import mpmath as mp
    rng = np.random.default_rng(1)
    q = math.pi / 4
    x = np.concatenate([[0.0, 1e-300, 1e-8, 0.3, q, np.nextafter(q, 0)], q * rng.random(3000)])
    s, c = np.empty_like(x), np.empty_like(x)
    _sincos_many(x, s, c)
    with mp.workdps(40):
        es = max(_ulps(g, mp.sin(mp.mpf(float(v)))) for g, v in zip(s[1:], x[1:]))
        ec = max(_ulps(g, mp.cos(mp.mpf(float(v)))) for g, v in zip(c, x))
    assert s[0] == 0.0 and c[0] == 1.0
    assert es <= 1.0
    assert ec <= 1.5


def _assert_ulps(got, expect, tol):
    """Elementwise |got - expect| <= tol ulps of expect (zeros equal)."""
    got, expect = np.asarray(got), np.asarray(expect)
    assert np.all(np.isfinite(got))
    zero = expect == 0
    assert np.all(got[zero] == 0)
    err = np.abs(got[~zero] - expect[~zero]) / np.spacing(np.abs(expect[~zero]))
    assert err.max() <= tol, err.max()


def test_vectorised_fill_matches_the_scalar_reference_in_ulps():
    """The vectorised fill of a stream (20001 normals: the loop and its odd tail) against the
    scalar transform with math.log / math.cos / math.sin: a few ulp (log, sqrt, sin or cos and
    the product, each about 1/2 to 1 ulp, in both)."""
    keys = _keys(11, 0, 1)[0]
    m = 20_001
    got = rnd._wnormals(keys, 7, (m,))
    expect = _py_normals(int(keys[0]), int(keys[1]), 7, m)
    _assert_ulps(got, expect, 4.0)


def test_transform_of_chosen_words_matches_the_scalar_reference():
    """Edge words: radius word 0 (u = 1, z = 0), all ones (u = 2^-52, the largest radius
    sqrt(104 ln 2)), one step; angle word with top bits 0 (phi = 0), all ones (phi just
    below pi/4) and random, under each of the 8 symmetries of its low 3 bits."""
    rng = np.random.default_rng(2)
    r_words = [0, M64, 1 << 12, (1 << 63) | 12345] + [int(v) for v in
                                                      rng.integers(0, 2 ** 63, 6, np.uint64)]
    a_tops = [0, M64 >> 12] + [int(v) >> 12 for v in rng.integers(0, 2 ** 63, 4, np.uint64)]
    b1, b2 = [], []
    for w1 in r_words:
        for top in a_tops:
            for sym in range(8):
                b1.append(w1)
                b2.append((top << 12) | (int(rng.integers(0, 512)) << 3) | sym)
    b1, b2 = np.array(b1, dtype=np.uint64), np.array(b2, dtype=np.uint64)
    z1, z2 = np.empty(b1.size), np.empty(b1.size)
    _pairs_many(b1, b2, z1, z2)
    expect = np.array([_py_pair(int(a), int(b)) for a, b in zip(b1, b2)])
    _assert_ulps(z1, expect[:, 0], 4.0)
    _assert_ulps(z2, expect[:, 1], 4.0)
    big = np.hypot(z1, z2)[b1 == np.uint64(M64)]
    np.testing.assert_allclose(big, math.sqrt(104 * math.log(2)), rtol=1e-15)


# ----------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------
def _check_standard_normal(z):
    assert np.all(np.isfinite(z))
    se = 1 / math.sqrt(z.size)
    assert abs(z.mean()) < Z * se
    assert abs(z.var() - 1) < Z * math.sqrt(2) * se
    assert abs(np.mean(z ** 3)) < Z * math.sqrt(15) * se
    assert abs(np.mean(z ** 4) - 3) < Z * math.sqrt(96) * se            # Var z^4 = 105 - 9
    assert stats.kstest(z, "norm").pvalue > 1e-3
    tail = np.count_nonzero(np.abs(z) > 4)                                # P = 6.33e-5
    expect = z.size * 2 * stats.norm.sf(4)
    assert abs(tail - expect) < Z * math.sqrt(expect)


def test_one_stream_is_standard_normal():
    _check_standard_normal(rnd._wnormals(_keys(7, 0, 1)[0], 5, (1_000_000,)))


def test_pairs_are_uniform_on_the_circle():
    """The two normals of a pair (out[p], out[p + m/2]) as a point of the plane: angle uniform
    (KS, and equal counts in the 8 octants, which a wrong swap or sign would unbalance), squared
    radius exponential with mean 2 (KS), radius independent of the octant, and the joint
    moments E z1 z2 = 0, E z1^2 z2^2 = 1 (variances 1 and 8)."""
    m = 1_000_000
    z = rnd._wnormals(_keys(12, 0, 1)[0], 3, (m,))
    z1, z2 = z[:m // 2], z[m // 2:]
    n = z1.size
    theta = np.arctan2(z2, z1)
    r2 = z1 * z1 + z2 * z2
    assert stats.kstest((theta + math.pi) / (2 * math.pi), "uniform").pvalue > 1e-3
    assert stats.kstest(r2, "expon", args=(0, 2)).pvalue > 1e-3
    octant = np.minimum(np.floor((theta + math.pi) / (math.pi / 4)), 7).astype(int)
    counts = np.bincount(octant, minlength=8)
    assert stats.chisquare(counts).pvalue > 1e-3
    # E[r^2 | octant] = 2 in each octant (Var r^2 = 4)
    means = np.bincount(octant, weights=r2, minlength=8) / counts
    assert np.all(np.abs(means - 2) < Z * 2 / np.sqrt(counts))
    se = 1 / math.sqrt(n)
    assert abs(np.mean(z1 * z2)) < Z * se
    assert abs(np.mean(z1 * z1 * z2 * z2) - 1) < Z * math.sqrt(8) * se


def test_many_short_streams_are_standard_normal():
    """1e6 draws from 2000 streams of 500 (20 layers of 100 samples): the start of each
    stream is as normal as the bulk."""
    keys = _keys(8, 0, 100)
    z = np.concatenate([rnd._wnormals(keys[k], s, (500,)) for k in range(100)
                        for s in range(20)])
    _check_standard_normal(z)
    # the first draw of each stream alone
    first = np.array([rnd._wnormals(keys[k], s, (2,))[0] for k in range(100)
                      for s in range(40)])
    assert stats.kstest(first, "norm").pvalue > 1e-3


def test_adjacent_streams_and_keys_are_uncorrelated():
    n = 200_000
    keys = _keys(1, 0, 2)
    a = rnd._wnormals(keys[0], 2, (n,))
    b = rnd._wnormals(keys[0], 3, (n,))       # the next stream (next role) of the same sample
    c = rnd._wnormals(keys[0], 6, (n,))       # the next layer, same role
    d = rnd._wnormals(keys[1], 2, (n,))       # the same stream of the next sample
    e = rnd._normals(keys[0], 2, (n,))        # the other generator's stream with the same keys
    half = n // 2
    pairs = [(a, b), (a, c), (a, d), (a, e), (a[:-1], a[1:]),      # lag 1
             (a[:half], a[half:])]                                 # the two normals of a pair
    for u, v in pairs:
        assert abs(np.corrcoef(u, v)[0, 1]) < Z / math.sqrt(u.size)
        # dependence without correlation would show in the squares (Var z^2 = 2)
        assert abs(np.corrcoef(u * u, v * v)[0, 1]) < Z / math.sqrt(u.size)
    assert not np.array_equal(a, e)


# ----------------------------------------------------------------------------------------------
# independence from the split, the batch and the threads
# ----------------------------------------------------------------------------------------------
def test_fill_does_not_depend_on_the_split():
    keys = _keys(2, 0, 1)[0]
    m = 100_003
    whole = rnd._wnormals(keys, 9, (m,), split=False)
    np.testing.assert_array_equal(rnd._wnormals(keys, 9, (m,), split=True), whole)
    out = np.empty(m)
    n = (m + 1) // 2
    bounds = [0, 1, 17, 4096, 33_333, n]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        rnd._wfill_part(keys[0], keys[1], np.int64(9), out, lo, hi)
    np.testing.assert_array_equal(out, whole)


def _numpy_mlp_nngp(net, keys, x, n):
    """NNGP estimator of one MLP sample built from the documented streams."""
    L, d = net.depth, x.shape[1]
    sw, sb = math.sqrt(net.weight_var), math.sqrt(net.bias_var)
    relu = lambda h: np.maximum(h, 0.0)          # noqa: E731
    W = rnd._wnormals(keys, ws._stream(0, ws._ROLE_W), (n, d))
    b = rnd._wnormals(keys, ws._stream(0, ws._ROLE_B), (n,))
    h = sw / math.sqrt(d) * x @ W.T + sb * b
    for l in range(1, L):
        W = rnd._wnormals(keys, ws._stream(l, ws._ROLE_W), (n, n))
        b = rnd._wnormals(keys, ws._stream(l, ws._ROLE_B), (n,))
        h = sw / math.sqrt(n) * relu(h) @ W.T + sb * b
    return net.weight_var * relu(h) @ relu(h).T / n + net.bias_var


def test_each_network_depends_only_on_seed_index_and_layer():
    """Network k of a run is the network built from the keys of sample k, whatever the batch,
    the thread count and the number of samples."""
    net = kn.MLP(depth=3, activation=kn.ReLU(), weight_var=2.0, bias_var=0.1)
    x = np.random.default_rng(0).standard_normal((5, 4))
    n, S = 32, 6
    kw = dict(width=n, seed=13, method="weights", keep_samples=True, progress=False)
    r = mc.monte_carlo(net, x, samples=S, **kw)
    keys = _keys(13, 0, S)
    for k in (0, 3, 5):
        np.testing.assert_allclose(r.nngp_samples[k], _numpy_mlp_nngp(net, keys[k], x, n),
                                   rtol=1e-12, atol=1e-12)
    runs = [mc.monte_carlo(net, x, samples=S, batch=1, **kw),
            mc.monte_carlo(net, x, samples=S, batch=4, **kw),
            mc.monte_carlo(net, x, samples=4, **kw)]
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        runs.append(mc.monte_carlo(net, x, samples=S, **kw))
    finally:
        numba.set_num_threads(old)
    for q in runs:
        m = q.samples
        np.testing.assert_array_equal(q.nngp_samples, r.nngp_samples[:m])
        np.testing.assert_array_equal(q.ntk_samples, r.ntk_samples[:m])


def test_wide_networks_do_not_depend_on_batch_or_threads():
    """Width 256: one network alone splits its fills over threads (and BLAS may use them),
    several run one per thread with single-threaded BLAS; the numbers are the same."""
    net = kn.MLP(depth=3, activation=kn.Erf(), weight_var=1.5, bias_var=0.2)
    x = np.random.default_rng(1).standard_normal((6, 300))
    kw = dict(width=256, samples=3, seed=2, method="weights", keep_samples=True,
              progress=False)
    a = mc.monte_carlo(net, x, **kw)
    b = mc.monte_carlo(net, x, batch=1, **kw)
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        c = mc.monte_carlo(net, x, **kw)
    finally:
        numba.set_num_threads(old)
    for q in (b, c):
        np.testing.assert_array_equal(q.nngp_samples, a.nngp_samples)
        np.testing.assert_array_equal(q.ntk_samples, a.ntk_samples)
    p = mc.simulate_paths(net, x, width=256, samples=3, seed=2, method="weights",
                          progress=False)
    np.testing.assert_array_equal(p.gram[:, -1], a.nngp_samples)


def test_blas_threads_are_limited_and_restored():
    from threadpoolctl import threadpool_info
    before = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    with ws.blas_threads(10):
        inside = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        expect = 1 if ws.sample_parallel(10) else ws._parts()
        assert all(t == expect for t in inside)
    after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert after == before
