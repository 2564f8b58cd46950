"""The weights sampler's normal streams (kernels/_random.py: ``_wstream``, ``_wfill_part``,
``_wnormals``) and the independence of weights-sampler results from batching and threads.

Expected values are independent of the code under test: a pure-Python SplitMix64 with
``math.log`` / ``math.cos`` / ``math.sin`` for the documented definition, moments of N(0, 1)
with their standard errors, scipy's KS test, and a NumPy network built from the documented
streams.
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


def _py_normals(k1, k2, s, m):
    """The documented stream: pair p = Box-Muller of words 2p, 2p + 1 (word q = mix(seed +
    (q + 1) gamma)), laid out as out[p], out[p + ceil(m / 2)]."""
    seed, gamma = _py_stream(k1, k2, s)
    half = (m + 1) // 2
    out = np.empty(m)
    for p in range(half):
        b1 = _py_mix((seed + (2 * p + 1) * gamma) & M64)
        b2 = _py_mix((seed + (2 * p + 2) * gamma) & M64)
        u = ((b1 >> 11) + 0.5) * 2.0 ** -53
        v = (b2 >> 11) * 2.0 ** -53
        r = math.sqrt(-2.0 * math.log(u))
        out[p] = r * math.cos(2 * math.pi * v)
        if p + half < m:
            out[p + half] = r * math.sin(2 * math.pi * v)
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
