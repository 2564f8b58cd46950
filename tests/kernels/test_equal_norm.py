"""The equal-norm depth-independent path (kernels/_fast_equal_norm.py) against the layer loop
(fast=False) and against a plain NumPy recursion (kernels.md §1.2, §1.3, §2.2).

Accuracy target (issue 20): |diff| <= 1e-12 sqrt(K(x, x) K(x', x')) for the NNGP, and the same
with the NTK diagonal for the NTK.
"""
import math

import numpy as np
import pytest

import kernels as kn
from kernels import _fast_equal_norm as _fen

TOL = 1e-12


def _normalised(n, d=16, seed=0, norm2=1.0):
    """n rows with |x|^2 / d = norm2 (to rounding), with an exact duplicate, an exactly negated
    row and a near duplicate (1 - rho ~ 1e-14)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    x[5] = x[3]
    x[9] = -x[2]
    x[11] = x[4] + 3e-7 * rng.standard_normal(d)
    return x * (np.sqrt(norm2 * d) / np.linalg.norm(x, axis=1, keepdims=True))


def _assert_scaled_close(a, b, tol=TOL, qa=None, qb=None):
    """|a - b| <= tol sqrt(b_ii b_jj) (diagonals from b, or given for cross kernels)."""
    for name, u, v, da, db in (("nngp", a.nngp, b.nngp, qa and qa[0], qb and qb[0]),
                               ("ntk", a.ntk, b.ntk, qa and qa[1], qb and qb[1])):
        if u is None and v is None:
            continue
        da = np.diag(v) if da is None else da
        db = np.diag(v) if db is None else db
        err = np.abs(u - v) / np.sqrt(np.outer(da, db))
        assert np.all(err <= tol), (f"{name}: max scaled diff {err.max():.3e} at "
                                    f"{np.unravel_index(np.argmax(err), err.shape)}")


@pytest.fixture
def spy(monkeypatch):
    """Counts the calls of the equal-norm path."""
    calls = []
    real = _fen.run

    def run(*args, **kw):
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(_fen, "run", run)
    return calls


NETS = {
    "relu": lambda L: kn.MLP(L, kn.ReLU(), weight_var=1.9, bias_var=0.01),
    "erf": lambda L: kn.MLP(L, kn.Erf(), weight_var=1.2, bias_var=0.2),
    "leaky-resnet": lambda L: kn.ResNet(L, kn.LeakyReLU(0.2), weight_var=2.0, bias_var=0.1,
                                        readout_bias_var=0.3),
    "erf-resnet": lambda L: kn.ResNet(L, kn.Erf(), weight_var=1.5, bias_var=0.2,
                                      input_bias_var=0.1),
    "abs-mlp": lambda L: kn.MLP(L, kn.ABReLU(-1.0, 1.0), weight_var=1.0, bias_var=0.05),
}


# ----------------------------------------------------------------------------------------------
# against the layer loop
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("depth", [40, 300, 1000])
def test_auto_matches_loop(name, depth, spy):
    x = _normalised(150)             # 11175 pairs: the automatic choice takes the path
    net = NETS[name](depth)
    fast = net.kernels(x)
    assert spy, "the equal-norm path was not taken"
    slow = net.kernels(x, fast=False)
    _assert_scaled_close(fast, slow)
    # the diagonals are the loop's own, bit for bit
    assert np.array_equal(np.diag(fast.nngp), np.diag(slow.nngp))
    assert np.array_equal(np.diag(fast.ntk), np.diag(slow.ntk))


def _erf_chi(sw2, sb2):
    """chi_1 = sw2 Vdot(q*, q*, q*) of an erf MLP at its variance fixed point (NumPy)."""
    q = 1.0
    for _ in range(10000):
        q = sw2 * (2 / np.pi) * np.arcsin(2 * q / (1 + 2 * q)) + sb2
    return sw2 * (4 / np.pi) / np.sqrt((1 + 2 * q) ** 2 - 4 * q * q)


@pytest.mark.parametrize("depth", [40, 300, 1000])
def test_chaotic_erf_matches_loop(depth):
    # chi_1 > 1: rho = 1 is repelling, correlations flow to rho* < 1 and the near duplicate
    # (1 - rho0 ~ 1e-14) crosses over at depth ~ 30: its pieces are left to the loop
    assert _erf_chi(3.0, 0.05) > 1.3
    x = _normalised(60)
    net = kn.MLP(depth, kn.Erf(), weight_var=3.0, bias_var=0.05)
    fast, slow = net.kernels(x, fast=True), net.kernels(x, fast=False)
    _assert_scaled_close(fast, slow)
    # duplicates stay exactly correlated, as in the loop
    assert fast.nngp[3, 5] == pytest.approx(fast.nngp[3, 3], rel=1e-15)
    rho = slow.nngp[0, 1] / math.sqrt(slow.nngp[0, 0] * slow.nngp[1, 1])
    assert rho < 0.99         # the map really is chaotic: generic pairs decorrelate


def test_smooth_user_activations_match_loop():
    x = _normalised(24, d=6)
    user = kn.Activation(lambda z: math.sin(z) + 0.5 * z, lambda z: math.cos(z) + 0.5, deg=64)
    for act in (kn.Tanh(deg=128), user):
        net = kn.MLP(40, act, weight_var=1.5, bias_var=0.1)
        _assert_scaled_close(net.kernels(x, fast=True), net.kernels(x, fast=False))


@pytest.mark.parametrize("name", ["relu", "erf"])
def test_cross_kernel_two_norms(name):
    """x1 of one norm, x2 of another (two diagonal sequences, one cross map); x2 holds x1[0]
    rescaled (rho0 = 1 with different norms) and -x1[1] rescaled."""
    x1 = _normalised(70, seed=1)
    x2 = _normalised(50, seed=2, norm2=4.0)
    x2[0], x2[1] = 2.0 * x1[0], -2.0 * x1[1]
    net = NETS[name](300)
    fast, slow = net.kernels(x1, x2, fast=True), net.kernels(x1, x2, fast=False)
    qa = (net.nngp(x1, diagonal=True, fast=False), net.ntk(x1, diagonal=True, fast=False))
    qb = (net.nngp(x2, diagonal=True, fast=False), net.ntk(x2, diagonal=True, fast=False))
    _assert_scaled_close(fast, slow, qa=qa, qb=qb)


@pytest.mark.parametrize("act", [kn.ReLU(), kn.Erf()], ids=["relu", "erf"])
def test_exact_antipodal_end(act):
    """No stem bias: an exactly negated row is rho0 = -1 after the stem (the table's end at
    theta0 = pi), and the block biases still make the path necessary."""
    x = _normalised(40)
    net = kn.ResNet(300, act, weight_var=1.5, bias_var=0.1)
    fast, slow = net.kernels(x, fast=True), net.kernels(x, fast=False)
    _assert_scaled_close(fast, slow)


# ----------------------------------------------------------------------------------------------
# against a plain NumPy recursion (no library code)
# ----------------------------------------------------------------------------------------------
def _numpy_mlp(x, depth, sw2, sb2, act):
    d = x.shape[1]
    K = sw2 * (x @ x.T) / d + sb2
    T = K.copy()
    for _ in range(depth):
        q = np.diag(K)
        if act == "relu":
            rho = np.clip(K / np.sqrt(np.outer(q, q)), -1.0, 1.0)
            np.fill_diagonal(rho, 1.0)
            th = np.arccos(rho)
            s = np.sqrt(np.outer(q, q))
            V = s * (np.sin(th) + (np.pi - th) * np.cos(th)) / (2 * np.pi)
            Vd = (np.pi - th) / (2 * np.pi)
        else:
            P = np.outer(1 + 2 * q, 1 + 2 * q)
            V = (2 / np.pi) * np.arcsin(2 * K / np.sqrt(P))
            Vd = (4 / np.pi) / np.sqrt(P - 4 * K * K)
        K, T = sw2 * V + sb2, sw2 * V + sb2 + sw2 * Vd * T
    return K, T


@pytest.mark.parametrize("act,sw2,sb2", [("relu", 1.9, 0.01), ("erf", 1.2, 0.2),
                                         ("erf", 3.0, 0.05)])
@pytest.mark.parametrize("depth", [3, 12])
def test_matches_numpy_recursion(act, sw2, sb2, depth):
    x = _normalised(30)
    x = np.delete(x, 11, axis=0)         # np.arccos near rho = 1 is not accurate enough
    net = kn.MLP(depth, kn.ReLU() if act == "relu" else kn.Erf(), weight_var=sw2,
                 bias_var=sb2)
    K, T = _numpy_mlp(x, depth, sw2, sb2, act)
    k = net.kernels(x, fast=True)
    _assert_scaled_close(k, kn.Kernels(nngp=K, ntk=T), tol=1e-13)


# ----------------------------------------------------------------------------------------------
# detection, refusals, other entry points
# ----------------------------------------------------------------------------------------------
def test_detection_tolerance(spy):
    x = _normalised(150)
    net = NETS["erf"](40)
    q = (x * x).sum(1) / x.shape[1]
    assert 0 < (q.max() - q.min()) / q.max() <= 1e-14       # normalised: equal to a few ulps
    net.kernels(x)
    assert len(spy) == 1
    x[7] *= 1 + 1e-12               # beyond the tolerance: the layer loop, bit for bit
    k = net.kernels(x)
    assert len(spy) == 1
    ref = net.kernels(x, fast=False)
    assert np.array_equal(k.nngp, ref.nngp) and np.array_equal(k.ntk, ref.ntk)
    with pytest.raises(ValueError, match="fast=True.*equal norm"):
        net.kernels(x, fast=True)


def test_auto_not_taken_when_shallow_or_small(spy):
    NETS["relu"](20).kernels(_normalised(150))          # depth < 32
    NETS["relu"](100).kernels(_normalised(100))         # 4950 pairs
    assert not spy


def test_zero_norm_rows():
    net = NETS["relu"](300)
    x = _normalised(40)
    x[6] = 0.0
    with pytest.raises(ValueError, match="equal norm"):
        net.kernels(x, fast=True)
    x = np.zeros((40, 16))
    with pytest.raises(ValueError, match="nonzero"):
        net.kernels(x, fast=True)
    k = net.kernels(x)                   # all equal, but zero: the loop
    assert np.all(np.isfinite(k.nngp)) and np.allclose(k.nngp, k.nngp[0, 0], rtol=1e-14)


def test_input_kernel_K0():
    x = _normalised(40)
    K0 = x @ x.T / x.shape[1]
    net = NETS["erf"](300)
    _assert_scaled_close(net.kernels(K0=K0, fast=True), net.kernels(K0=K0, fast=False))


def test_nngp_only_diagonal_and_tiles(tmp_path, spy):
    x = _normalised(150)
    net = NETS["relu"](300)
    full = net.kernels(x)
    # NNGP alone: the same table values, no NTK work
    assert np.array_equal(net.nngp(x), full.nngp)
    # diagonal=True: the diagonal of the full computation
    dg = net.kernels(x, diagonal=True)
    assert np.array_equal(dg.nngp, np.diag(full.nngp)) and np.array_equal(dg.ntk,
                                                                          np.diag(full.ntk))
    # tiles: the whole problem's norms decide and tabulate, so tiles equal the whole bit for bit
    a = np.lib.format.open_memmap(tmp_path / "k.npy", mode="w+", dtype=np.float64,
                                  shape=(150, 150))
    b = np.empty((150, 150))
    net.kernels(x, out=(a, b), tile=64)
    assert np.array_equal(a, full.nngp) and np.array_equal(b, full.ntk)
    x2 = _normalised(30, seed=5, norm2=2.0)
    c = np.empty((150, 30))
    net.nngp(x, x2, out=c, tile=16)
    assert np.array_equal(c, net.nngp(x, x2))
    assert spy


def test_table_independent_of_cache():
    x = _normalised(60)
    net = NETS["erf"](300)
    _fen._TABLE_CACHE.clear()
    a = net.kernels(x, fast=True)
    b = net.kernels(x, fast=True)              # from the cached table
    assert np.array_equal(a.nngp, b.nngp) and np.array_equal(a.ntk, b.ntk)
