"""limits.resnet_scaling: trainer, data, statistics, exponents and verdict (training.md §2).

Expected values come from independent computations written here (a NumPy forward pass, central
finite differences, the Adam recurrence written out, loop versions of P2's statistics, the law of
the maximum of L i.i.d. chi variables by quadrature), from the depth list printed in
training.md §2.2, or from the hypotheses' predictions (smooth: Increment slope -1).
The regime reproductions on trained networks are marked slow.
"""
import math
import sys

import warnings

import numpy as np
import pytest
from scipy import special

import kernels as kn
from limits import resnet_scaling as rs

ACTS = ("identity", "tanh", "relu")
DTYPES = ("none", "shared", "multi")


def softsign(x):
    return x / (1.0 + abs(x))


def dsoftsign(x):
    return 1.0 / (1.0 + abs(x)) ** 2


with warnings.catch_warnings():
    # softsign' has a kink at 0: the Gauss-Hermite kernel maps warn (not used by the trainer)
    warnings.simplefilter("ignore", UserWarning)
    SOFTSIGN = kn.Activation(softsign, dsoftsign, name="softsign")
# kernels.Activation objects run through the pointwise protocol; their NumPy twins written here
OBJECTS = {"softsign": SOFTSIGN, "erf": kn.Erf(0.7, 1.3, 0.1), "leaky": kn.LeakyReLU(0.2)}
NP_SIG = {"identity": lambda z: z, "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0),
          "softsign": lambda z: z / (1 + np.abs(z)),
          "erf": lambda z: 0.7 * special.erf(1.3 * z) + 0.1,
          "leaky": lambda z: np.where(z > 0, z, 0.2 * z)}


def _act(name):
    """The ``activation`` argument for a test name: the alias string or the Activation object."""
    return OBJECTS.get(name, name)


def _np_forward(A, b, delta, X, act, dtype):
    sig = NP_SIG[act]
    h = X.copy()
    for k in range(A.shape[0]):
        s = 1.0 if dtype == "none" else abs(delta[0]) if dtype == "shared" else delta[k]
        h = h + s * sig(h @ A[k].T + b[k])
    return h


def _random_net(rng, L, d, dtype, scale=0.5):
    A = rng.standard_normal((L, d, d)) * scale
    b = rng.standard_normal((L, d)) * scale
    delta = {"none": np.zeros(0), "shared": rng.standard_normal(1),
             "multi": rng.standard_normal(L)}[dtype]
    return A, b, delta


# ----------------------------------------------------------------------------------------------
# forward, gradients, optimiser
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS + tuple(OBJECTS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_matches_numpy(act, dtype):
    rng = np.random.default_rng(0)
    A, b, delta = _random_net(rng, 6, 4, dtype)
    X, Y = rng.standard_normal((7, 4)), rng.standard_normal((7, 4))
    ref = np.mean((_np_forward(A, b, delta, X, act, dtype) - Y) ** 2)
    got = rs.evaluate(A, b, delta, X, Y, activation=_act(act), delta_type=dtype)
    assert got == pytest.approx(ref, rel=1e-13)
    assert rs.gradient(A, b, delta, X, Y, activation=_act(act), delta_type=dtype)[0] == \
        pytest.approx(ref, rel=1e-13)


@pytest.mark.parametrize("act", ACTS + tuple(OBJECTS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_vs_finite_differences(act, dtype):
    """Central differences with step 1e-6 (error O(h^2) ~ 1e-12 relative, round-off ~1e-10):
    the issue's 1e-6 relative tolerance on the largest component."""
    rng = np.random.default_rng(1)
    L, d = 5, 3
    A, b, delta = _random_net(rng, L, d, dtype)
    X, Y = rng.standard_normal((6, d)), rng.standard_normal((6, d))

    def f(A, b, delta):
        return np.mean((_np_forward(A, b, delta, X, act, dtype) - Y) ** 2)

    _, gA, gb, gd = rs.gradient(A, b, delta, X, Y, activation=_act(act), delta_type=dtype)
    h = 1e-6
    for arr, g in ((A, gA), (b, gb), (delta, gd)):
        fd = np.zeros(arr.size)
        flat = arr.reshape(-1)
        for q in range(arr.size):
            o = flat[q]
            flat[q] = o + h
            fp = f(A, b, delta)
            flat[q] = o - h
            fm = f(A, b, delta)
            flat[q] = o
            fd[q] = (fp - fm) / (2 * h)
        if arr.size:
            assert np.max(np.abs(fd - g.reshape(-1))) <= 1e-6 * np.max(np.abs(fd)), (act, dtype)


def _full_batch_data(rng, n=16, d=4):
    X = rng.standard_normal((n, d))
    return rs.Dataset(X, np.tanh(X[:, ::-1]), X[:0], X[:0], "test")


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_steps_vs_hand_computed(dtype):
    """One epoch with batch = n is one Adam step; three epochs three steps.  The update is the
    torch recurrence written out here; gradients from rs.gradient (checked above)."""
    rng = np.random.default_rng(2)
    data = _full_batch_data(rng)
    lr, b1, b2, eps = 3e-3, 0.9, 0.999, 1e-8
    r = rs.train(4, data, activation="tanh", delta_type=dtype, init="xavier", initial_sd=0.5,
                 lr=lr, batch_size=16, max_epochs=3, epsilon=0.0, patience=10, seed=5)
    assert len(r.loss_history) == 3
    p = [r.A0.copy(), r.b0.copy(), r.delta0.copy()]
    m = [np.zeros_like(x) for x in p]
    v = [np.zeros_like(x) for x in p]
    for t in range(1, 4):
        loss, *g = rs.gradient(*p, data.X, data.Y, activation="tanh", delta_type=dtype)
        assert r.loss_history[t - 1] == pytest.approx(loss, rel=1e-12)
        for q in range(3):
            m[q] = b1 * m[q] + (1 - b1) * g[q]
            v[q] = b2 * v[q] + (1 - b2) * g[q] ** 2
            mhat, vhat = m[q] / (1 - b1 ** t), v[q] / (1 - b2 ** t)
            p[q] = p[q] - lr * mhat / (np.sqrt(vhat) + eps)
        if t == 1:   # first step is lr * g / (|g| + eps) (bias corrections cancel)
            step = lr * g[0] / (np.abs(g[0]) + eps)
            np.testing.assert_allclose(r.A0 - p[0], step, rtol=1e-9, atol=1e-17)
    np.testing.assert_allclose(r.A, p[0], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(r.b, p[1], rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(r.delta, p[2], rtol=1e-10, atol=1e-15)


def test_sgd_momentum_vs_hand_computed():
    rng = np.random.default_rng(3)
    data = _full_batch_data(rng)
    lr, mu = 0.05, 0.5
    r = rs.train(3, data, activation="relu", delta_type="multi", init="xavier", initial_sd=0.5,
                 optimizer="sgd", lr=lr, momentum=mu, batch_size=16, max_epochs=2,
                 epsilon=0.0, seed=1)
    p = [r.A0.copy(), r.b0.copy(), r.delta0.copy()]
    buf = [np.zeros_like(x) for x in p]
    for t in range(2):
        _, *g = rs.gradient(*p, data.X, data.Y, activation="relu", delta_type="multi")
        for q in range(3):
            buf[q] = mu * buf[q] + g[q]
            p[q] = p[q] - lr * buf[q]
    for got, exp in zip((r.A, r.b, r.delta), p):
        np.testing.assert_allclose(got, exp, rtol=1e-10, atol=1e-15)


def test_user_activation_trains():
    """A user kernels.Activation(fn, deriv) trains (issue 15): the loss falls from its first
    epoch, the run does not diverge, and the reported test loss is that of the final weights."""
    data = rs.ode_data(d=4, train_size=64, test_size=16)
    r = rs.train(12, data, activation=SOFTSIGN, init="xavier", initial_sd=0.5, batch_size=16,
                 max_epochs=8, epsilon=0.0, patience=8, seed=1)
    assert r.stop == "max_epochs" and r.activation is SOFTSIGN
    h = r.loss_history
    assert np.all(np.isfinite(h)) and h[-1] < 0.5 * h[0]
    ref = np.mean((_np_forward(r.A, r.b, r.delta, data.X_test, "softsign", "shared")
                   - data.Y_test) ** 2)
    assert r.test_loss == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_object_equal_to_alias(dtype):
    """An Activation equal to tanh pointwise (math.tanh, the protocol path) agrees with the
    'tanh' alias (the trainer's libm-free tanh, within 3 ulp of math.tanh) to rounding; the
    kernels ReLU object with the 'relu' alias likewise, and both count as homogeneous."""
    import math
    data = rs.ode_data(d=4, train_size=64, test_size=16)
    kw = dict(delta_type=dtype, init="xavier", initial_sd=0.5, max_epochs=3, seed=2)
    user_tanh = kn.Activation(lambda x: math.tanh(x), lambda x: 1.0 - math.tanh(x) ** 2)
    for alias, obj in (("tanh", user_tanh), ("tanh", kn.Tanh()), ("relu", kn.ReLU())):
        a = rs.train(12, data, activation=alias, **kw)
        o = rs.train(12, data, activation=obj, **kw)
        np.testing.assert_allclose(o.loss_history, a.loss_history, rtol=1e-12)
        assert o.test_loss == pytest.approx(a.test_loss, rel=1e-12)
        for x, y in ((o.A, a.A), (o.b, a.b), (o.delta, a.delta)):
            np.testing.assert_allclose(x, y, rtol=1e-11, atol=1e-15)
        for x, y in zip(rs.effective_parameters(o), rs.effective_parameters(a)):
            np.testing.assert_allclose(x, y, rtol=1e-11, atol=1e-15)


def test_activation_object_errors():
    data = rs.ode_data(train_size=32, test_size=8)
    with pytest.raises(TypeError, match="kernels.Activation"):
        rs.train(3, data, activation=math.tanh)
    with pytest.raises(TypeError, match="kernels.Activation"):
        rs.evaluate(np.zeros((2, 10, 10)), np.zeros((2, 10)), [0.5], data.X, data.Y,
                    activation=None)
    # a ShapedReLU resolves its slopes at the ResNet's width d (rate 'width') or depth
    kw = dict(max_epochs=2, delta_type="multi", batch_size=8, seed=3)
    for rate, n in (("width", 10), ("depth", 3)):
        r = rs.train(3, data, activation=kn.ShapedReLU(1.0, -1.0, rate=rate), **kw)
        f = rs.train(3, data, activation=kn.ABReLU(*kn.ShapedReLU(1.0, -1.0).slopes(n)), **kw)
        np.testing.assert_array_equal(r.loss_history, f.loss_history)
        np.testing.assert_array_equal(r.effective_weights, np.abs(r.delta)[:, None, None] * r.A)
    with pytest.raises(TypeError, match="aliases"):
        rs.study([3, 4, 5], data_kw=dict(train_size=32, test_size=8), max_epochs=1,
                 activation=SOFTSIGN)


def _np_grad(A, b, delta, X, Y, act, dtype):
    """Loss and gradient of mean((h_L - y)^2), backpropagated in NumPy (independent of the
    compiled pass): g = dL/dh_{k+1}, gz = g s_k sigma'(z_k), dA_k = gz^T h_k, db_k = sum gz,
    ds_k = sum g sigma(z_k), dL/dh_k = g + gz A_k."""
    sig = {"tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
           "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float))}[act]
    L = A.shape[0]
    s = np.abs(delta[0]) * np.ones(L) if dtype == "shared" else delta.copy()
    hs, zs = [X], []
    for k in range(L):
        zs.append(hs[-1] @ A[k].T + b[k])
        hs.append(hs[-1] + s[k] * sig[0](zs[-1]))
    e = hs[-1] - Y
    g = 2 * e / e.size
    gA, gb, gs = np.zeros_like(A), np.zeros_like(b), np.zeros(L)
    for k in range(L - 1, -1, -1):
        gz = g * s[k] * sig[1](zs[k])
        gA[k], gb[k], gs[k] = gz.T @ hs[k], gz.sum(0), np.sum(g * sig[0](zs[k]))
        g = g + gz @ A[k]
    gd = np.array([np.sign(delta[0]) * gs.sum()]) if dtype == "shared" else gs
    return np.mean(e ** 2), gA, gb, gd


@pytest.mark.parametrize("act,dtype", [("relu", "multi"), ("tanh", "shared")])
def test_p2_collapsed_loader_trains_on_one_fixed_batch(act, dtype):
    """loader='p2-collapsed' (training.md §2.6): every step's gradient is the gradient on one
    fixed batch of batch_size rows, n // batch_size steps per epoch.  Replayed here with plain
    SGD and a NumPy backward pass on those rows; the full-data and other-batch replays must
    not match (the check can fail)."""
    rng = np.random.default_rng(11)
    n, bs, lr = 48, 16, 0.2
    X = rng.standard_normal((n, 4))
    data = rs.Dataset(X, np.tanh(X[:, ::-1]), X[:0], X[:0], "test")
    kw = dict(activation=act, delta_type=dtype, init="xavier", initial_sd=0.5, optimizer="sgd",
              lr=lr, batch_size=bs, max_epochs=2, epsilon=0.0, patience=10, seed=4)
    r = rs.train(3, data, loader="p2-collapsed", **kw)
    rows = np.array(r.settings["batch_rows"])
    assert r.settings["loader"] == "p2-collapsed"
    assert len(rows) == bs and len(set(rows.tolist())) == bs and rows.min() >= 0 \
        and rows.max() < n
    # the batch is seeded and shared by all depths, as the released loader was
    assert rs.train(5, data, loader="p2-collapsed", **kw).settings["batch_rows"] == rows.tolist()
    other = rs.train(3, data, loader="p2-collapsed", **dict(kw, seed=5)).settings["batch_rows"]
    assert other != rows.tolist()

    def replay(idx):
        p, losses = [r.A0.copy(), r.b0.copy(), r.delta0.copy()], []
        for epoch in range(2):
            ep = []
            for _ in range(n // bs):          # three steps per epoch
                loss, *g = _np_grad(*p, X[idx], data.Y[idx], act, dtype)
                ep.append(loss)
                p = [x - lr * gx for x, gx in zip(p, g)]
            losses.append(np.mean(ep))
        return p, losses

    p, losses = replay(rows)
    np.testing.assert_allclose(r.loss_history, losses, rtol=1e-12)
    for got, exp in zip((r.A, r.b, r.delta), p):
        np.testing.assert_allclose(got, exp, rtol=1e-10, atol=1e-14)
    for idx in (np.arange(n), np.setdiff1d(np.arange(n), rows)[:bs]):
        q, _ = replay(idx)
        assert np.max(np.abs(q[0] - r.A)) > 1e-4 * np.max(np.abs(r.A))
    # the default loader is 'shuffled' and differs
    sh = rs.train(3, data, **kw)
    assert sh.settings["loader"] == "shuffled" and "batch_rows" not in sh.settings
    assert not np.array_equal(sh.A, r.A)
    np.testing.assert_array_equal(rs.train(3, data, loader="shuffled", **kw).A, sh.A)
    with pytest.raises(ValueError, match="loader must be one of"):
        rs.train(3, data, loader="P2", **kw)
    with pytest.raises(TypeError, match="loader must be a string"):
        rs.train(3, data, loader=1, **kw)


def test_study_passes_the_loader_through():
    kw = dict(data_kw=dict(train_size=64, test_size=16), max_epochs=2, activation="relu",
              delta_type="multi")
    s = rs.study([3, 5, 8], loader="p2-collapsed", **kw)
    data = rs.ode_data(train_size=64, test_size=16)
    for L in (3, 5, 8):
        assert s.results[L].settings["loader"] == "p2-collapsed"
        one = rs.train(L, data, loader="p2-collapsed", activation="relu", delta_type="multi",
                       max_epochs=2)
        np.testing.assert_array_equal(s.results[L].A, one.A)
    with pytest.raises(ValueError, match="loader"):
        rs.study([3, 5, 8], loader="collapsed", **kw)


def test_training_deterministic_and_initialisation_scales():
    data = rs.ode_data(train_size=64, test_size=32)
    r1 = rs.train(20, data, max_epochs=2, seed=7)
    r2 = rs.train(20, data, max_epochs=2, seed=7)
    np.testing.assert_array_equal(r1.A, r2.A)
    np.testing.assert_array_equal(r1.loss_history, r2.loss_history)
    r3 = rs.train(20, data, max_epochs=2, seed=8)
    assert not np.array_equal(r1.A, r3.A)
    # init scales (training.md §2.1): xavier-depth sd s/(L d) for A, s/(L sqrt d) for b
    L, d, s = 400, 10, 0.3
    r = rs.train(L, data, init="xavier-depth", initial_sd=s, delta_type="multi", max_epochs=1)
    n = L * d * d   # relative se of a sample sd is 1/sqrt(2n): 4 se
    assert np.std(r.A0) == pytest.approx(s / (L * d), rel=4 / math.sqrt(2 * n))
    assert np.std(r.b0) == pytest.approx(s / (L * math.sqrt(d)), rel=4 / math.sqrt(2 * L * d))
    assert np.std(r.delta0) == pytest.approx(1 / L, rel=4 / math.sqrt(2 * L))
    rs_ = rs.train(L, data, init="xavier", initial_sd=s, delta_type="shared", max_epochs=1)
    assert np.std(rs_.A0) == pytest.approx(s / d, rel=4 / math.sqrt(2 * n))
    assert rs_.delta0[0] == 1 / L


def test_training_reduces_loss_and_stopping_rule():
    data = rs.ode_data(train_size=256, test_size=64)
    r = rs.train(30, data, lr=1e-2, max_epochs=50, epsilon=1e-3)
    assert r.stop == "epsilon" and r.loss_history[-1] < 1e-3
    assert np.all(r.loss_history[:-1] >= 1e-3)
    assert math.isfinite(r.test_loss)
    r = rs.train(30, data, lr=1e-9, max_epochs=50, epsilon=0.0, patience=3)
    assert r.stop == "plateau" and len(r.loss_history) == 4     # 1 best + 3 bad epochs


def test_diverged_run_reported_and_excluded():
    data = rs.ode_data(train_size=64, test_size=16)
    bad = rs.train(12, data, activation="identity", delta_type="none", optimizer="sgd",
                   lr=1e6, init="xavier", initial_sd=1.0, max_epochs=5, epsilon=0.0)
    assert bad.diverged and bad.stop == "diverged" and math.isnan(bad.test_loss)
    good = [rs.train(L, data, max_epochs=2) for L in (3, 5, 8, 13)]
    e = rs.scaling_exponents(good + [bad])
    assert (12, "diverged (non-finite loss)") in e.excluded
    assert list(e.depths) == [3, 5, 8, 13]
    e2 = rs.scaling_exponents(good)
    assert e.beta == e2.beta
    # NaN weights in a dict are excluded too, and never fitted
    w = {r.depth: r.effective_weights for r in good}
    w[12] = np.full((12, 10, 10), np.nan)
    e3 = rs.scaling_exponents(w)
    assert e3.excluded == [(12, "non-finite weights")] and e3.beta == e2.beta


# ----------------------------------------------------------------------------------------------
# data and depth grid
# ----------------------------------------------------------------------------------------------
def test_depth_grid_matches_training_md():
    listed = [3, 4, 5, 6, 7, 8, 10, 12, 15, 18, 22, 26, 31, 38, 46, 55, 66, 79, 95, 114, 137,
              164, 197, 237, 284, 341, 410, 492, 590, 708, 850, 1020, 1224, 1469, 1763, 2116,
              2539, 3047, 3657, 4388, 5266, 6319, 7583, 9100]
    assert rs.depth_grid(1.2, 3, 10_000) == listed
    assert rs.depth_grid(2 ** (1 / 3), 3, 10) == [3, 4, 5, 6, 8]      # P2 SCALING_PARAMS


def test_ode_data_recursion():
    ds = rs.ode_data(d=10, train_size=32, test_size=8, seed=3)
    assert ds.X.shape == (32, 10) and ds.X_test.shape == (8, 10)
    np.testing.assert_allclose(np.linalg.norm(ds.X, axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(np.linalg.norm(ds.Y, axis=1), 1.0, rtol=1e-14)
    # y is the direction of z_100 computed from the unnormalised x (a multiple of ds.X);
    # recover x by scanning the scale along ds.X: z must come out parallel to ds.Y
    x = ds.X[0]

    def zdir(c):
        z = c * x
        for t in range(100):
            z = z + 0.1 * np.tanh(np.sin(5 * np.pi * t / 100) * z + np.cos(5 * np.pi * t / 100))
        return z / np.linalg.norm(z)

    # the unnormalised x lies in [-1, 1]^d, so its norm c is in (0, sqrt(d)]
    cs = np.linspace(1e-3, math.sqrt(10), 4000)
    best = min(np.linalg.norm(zdir(c) - ds.Y[0]) for c in cs)
    assert best < 2e-3


def test_digits_data():
    pytest.importorskip("sklearn")
    ds = rs.digits_data(d=25, train_size=1024, test_size=256)
    assert ds.X.shape == (1024, 25) and ds.Y.shape == (1024, 25)
    np.testing.assert_allclose(np.linalg.norm(ds.X, axis=1), 1.0, rtol=1e-14)
    assert np.all(ds.Y.sum(axis=1) == 1) and np.all(ds.Y[:, 10:] == 0)
    again = rs.digits_data(d=25, train_size=1024, test_size=256)
    np.testing.assert_array_equal(ds.X, again.X)


def test_digits_data_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="scikit-learn"):
        rs.digits_data()


# ----------------------------------------------------------------------------------------------
# statistics: loop versions of P2-code's formulas (training.md §2.3)
# ----------------------------------------------------------------------------------------------
def _loop_stats(T, factor):
    L = len(T)
    fro = [math.sqrt(sum(x * x for x in np.ravel(t))) for t in T]
    inc = [math.sqrt(sum(x * x for x in np.ravel(T[k] - T[k - 1]))) for k in range(1, L)]
    W = [np.zeros_like(T[0])]
    for t in T:
        W.append(W[-1] + t)
    if L < 10:
        det = max(np.linalg.norm(W[k] - k / L * W[L]) for k in range(1, L + 1))
    else:
        win = max(3, int(0.1 * L))
        vals = []
        for k in range(1, L):
            if k < win:
                sl = W[0:2 * k]
            elif k < L - win:
                sl = W[k - win:k + win]
            else:
                sl = W[2 * k - L:L]
            vals.append(np.linalg.norm(W[k] - sum(sl) / len(sl)))
        det = max(vals)
    return dict(maximum=max(fro), spectral=max(np.linalg.svd(t, compute_uv=False)[0] for t in T),
                root_ssq=math.sqrt(sum(f * f for f in fro)),
                quadratic_variation=sum(i * i for i in inc),
                sobolev=math.sqrt(L * sum(i * i for i in inc)),
                increment=L ** factor * max(inc), cumsum=np.linalg.norm(sum(T)),
                detrended_cumsum=det)


@pytest.mark.parametrize("L", [2, 7, 9, 10, 31, 64])
def test_statistics_vs_loop_formulas(L):
    T = np.random.default_rng(L).standard_normal((L, 3, 3))
    got = rs.statistics(T, factor=0.3)
    exp = _loop_stats(list(T), 0.3)
    for k, v in exp.items():
        assert got[k] == pytest.approx(v, rel=1e-12), k


def _smooth(L, beta, M):
    t = np.arange(L) / L
    return L ** -beta * M[None] / (1.0 + t)[:, None, None]


DEPTHS = rs.depth_grid(1.2, 10, 3000)


@pytest.mark.parametrize("beta", [0.0, 0.2, 0.5, 0.8])
def test_smooth_sequence_gives_input_beta_and_h1(beta):
    """A_k = L^-beta f(k/L), f(t) = M/(1+t): max norm L^-beta ||M|| exactly (at k = 0), so beta
    is recovered exactly; max ||A_k - A_{k-1}|| = L^-beta ||M|| / (L + 1) (at k = 1), so the
    Increment(beta) slope is the OLS slope of -log(L+1) on log L (close to -1: H1)."""
    M = np.random.default_rng(0).standard_normal((4, 4))
    e = rs.scaling_exponents({L: _smooth(L, beta, M) for L in DEPTHS})
    assert e.beta == pytest.approx(beta, abs=1e-12)
    assert e.beta_stderr < 1e-12
    exp_inc = np.polyfit(np.log(DEPTHS), -np.log(np.array(DEPTHS) + 1.0), 1)[0]
    assert e.increment_slope == pytest.approx(exp_inc, abs=1e-10)
    assert e.h1 and not e.h2 and e.verdict == "ode"


def _log_max_chi(L, k, scale):
    """E log max of L i.i.d. scale * chi_k variables, by quadrature of the law F(x)^L."""
    from scipy import stats
    x = np.linspace(1e-6, 12 + math.sqrt(k) * 3, 40001)
    Fm = stats.chi.cdf(x, k) ** L
    dens = np.gradient(Fm, x)
    return float(np.trapezoid(np.log(scale * x) * dens, x))


@pytest.mark.parametrize("d", [3, 6])
def test_random_walk_gives_half_and_h2(d):
    """T_k i.i.d. N(0, 1/L) entries (the increments of a random walk with unit quadratic
    variation): beta = 1/2 up to the sqrt(log L) growth of a maximum, which the expected slope
    includes (law of the max of L chi_{d^2} variables, by quadrature).  Tolerance 4 stderr of
    the fit plus the quadrature's discretisation."""
    rng = np.random.default_rng(d)
    depths = rs.depth_grid(1.2, 10, 3000)
    e = rs.scaling_exponents({L: rng.standard_normal((L, d, d)) / math.sqrt(L)
                              for L in depths})
    exp_beta = -np.polyfit(np.log(depths),
                           [_log_max_chi(L, d * d, 1 / math.sqrt(L)) for L in depths], 1)[0]
    assert abs(exp_beta - 0.5) < 0.15
    assert abs(e.beta - exp_beta) <= 4 * e.beta_stderr + 1e-3
    assert e.verdict == "sde" and e.h2 and not e.h1
    # RootSSQ^2 = sum of L d^2 variables of mean 1/L: O(1), slope 0 within 4 se
    assert abs(e.root_ssq_slope) <= 4 * e.root_ssq_stderr + 0.02


def test_iid_beta_zero_gives_neither():
    """T_k i.i.d. N(0, 1): beta = 0 minus the log growth of a maximum; increments do not shrink
    (the cumulative path has quadratic variation ~ L): neither H1 nor H2."""
    rng = np.random.default_rng(11)
    d = 4
    e = rs.scaling_exponents({L: rng.standard_normal((L, d, d)) for L in DEPTHS})
    exp_beta = -np.polyfit(np.log(DEPTHS), [_log_max_chi(L, d * d, 1.0) for L in DEPTHS], 1)[0]
    assert abs(e.beta - exp_beta) <= 4 * e.beta_stderr + 1e-3
    assert e.verdict == "neither" and not e.h1 and not e.h2
    assert e.root_ssq_slope == pytest.approx(0.5, abs=4 * e.root_ssq_stderr + 0.02)


def test_biases_and_alpha():
    """(L, d) sequences (biases) and alpha from deltas ~ L^-0.7 exactly."""
    rng = np.random.default_rng(5)
    f = rng.standard_normal(5)
    w = {L: L ** -0.3 * f[None] * np.cos(np.arange(L) / L)[:, None] for L in DEPTHS}
    deltas = {L: np.full(L, 2.0 * L ** -0.7) for L in DEPTHS}
    e = rs.scaling_exponents(w, deltas)
    assert e.beta == pytest.approx(0.3, abs=1e-12)
    assert e.alpha == pytest.approx(0.7, abs=1e-12)
    assert e.verdict == "ode"


def test_decomposition_of_smooth_weights():
    """For T_k = L^-beta f(k/L) the trend is f averaged over a grid cell and the noise is the
    Riemann-sum error: |Tbar_k - T_k| <= L^-beta (max|f'| / (n-1) + 2 (n-1) max|f| / L)."""
    beta, n = 0.3, 41
    M = np.random.default_rng(1).standard_normal((3, 3))
    depths = [1000, 1500, 2000, 3000]
    w = {L: _smooth(L, beta, M) for L in depths}
    dec = rs.decompose(w, beta, n_times=n)
    assert dec.reference == tuple(depths)
    fmax = np.abs(M).max()          # |f| <= |M|, |f'| <= |M| on [0, 1]
    for L in depths:
        bound = L ** -beta * (fmax / (n - 1) + 2 * (n - 1) * fmax / L)
        assert np.max(np.abs(dec.trend[L] - w[L])) <= bound
        assert np.max(np.abs(dec.noise[L][-1])) <= L ** (beta - 1) * L * bound


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
def test_bad_input_train():
    data = rs.ode_data(train_size=32, test_size=8)
    with pytest.raises(ValueError, match="depth"):
        rs.train(0, data)
    with pytest.raises(TypeError, match="depth"):
        rs.train(2.5, data)
    with pytest.raises(ValueError, match="d = 7"):
        rs.train(3, data, d=7)
    with pytest.raises(ValueError, match="delta_type"):
        rs.train(3, data, delta_type="matrix")
    with pytest.raises(ValueError, match="activation"):
        rs.train(3, data, activation="gelu")
    for lr in (0, -1e-3):
        with pytest.raises(ValueError, match="lr"):
            rs.train(3, data, lr=lr)
    with pytest.raises(ValueError, match="lr"):
        rs.train(3, data, lr=float("nan"))
    with pytest.raises(ValueError, match="batch_size"):
        rs.train(3, data, batch_size=33)
    with pytest.raises(ValueError, match="init"):
        rs.train(3, data, init="he")
    bad = rs.Dataset(data.X, data.Y[:, :5], data.X_test, data.Y_test)
    with pytest.raises(ValueError, match="columns"):
        rs.train(3, bad)
    with pytest.raises(TypeError, match="data"):
        rs.train(3, (data.X, data.Y))
    with pytest.raises(ValueError, match="depth"):
        rs.study([3, 0, 5])


def test_bad_input_statistics():
    with pytest.raises(ValueError, match="at least 3"):
        rs.scaling_exponents({3: np.ones((3, 2, 2)), 4: np.ones((4, 2, 2))})
    with pytest.raises(ValueError, match="weights\\[5\\]"):
        rs.scaling_exponents({3: np.ones((3, 2, 2)), 4: np.ones((4, 2, 2)),
                              5: np.ones((6, 2, 2))})
    with pytest.raises(ValueError, match="identically zero"):
        rs.scaling_exponents({3: np.ones((3, 2)), 4: np.zeros((4, 2)), 5: np.ones((5, 2))})
    with pytest.raises(ValueError, match="keys"):
        rs.scaling_exponents({0: np.ones((0, 2, 2))})
    with pytest.raises(ValueError, match="shape"):
        rs.statistics(np.ones(5))
    with pytest.raises(ValueError, match="finite"):
        rs.statistics(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="base"):
        rs.depth_grid(1.0)
    with pytest.raises(ValueError, match="d must be an integer >= 10"):
        rs.digits_data(d=5)


def test_scaling_exponents_refuses_bad_deltas_and_reports_undetermined():
    """Issue 21 item 8: no alpha or verdict from inputs that cannot give one."""
    rng = np.random.default_rng(8)
    w = {L: rng.standard_normal((L, 2, 2)) / math.sqrt(L) for L in (4, 8, 16, 32)}
    good = {L: np.full(L, 1.0 / L) for L in w}
    e = rs.scaling_exponents(w, deltas=good)
    assert e.alpha == pytest.approx(1.0, abs=1e-12)       # max |delta| = 1/L exactly
    assert rs.scaling_exponents(w, deltas={L: [1.0 / L] for L in w}).alpha \
        == pytest.approx(1.0, abs=1e-12)                   # length 1: a shared delta
    for bad, match in (({L: np.ones(L + 1) for L in w}, "length"),
                       ({L: np.ones(2) for L in w}, "length"),
                       ({4: good[4]}, "no entry for depth 8"),
                       ({**good, 64: np.ones(64)}, "not in weights"),
                       ({**good, 8: np.zeros(8)}, "identically zero"),
                       ({**good, 8: np.r_[np.nan, np.ones(7)]}, "finite")):
        with pytest.raises(ValueError, match=match):
            rs.scaling_exponents(w, deltas=bad)
    with pytest.raises(TypeError, match="deltas must be a dict"):
        rs.scaling_exponents(w, deltas=[1.0, 2.0])
    # a depth-1 entry has no increments: excluded with the reason, the fit uses the rest
    e1 = rs.scaling_exponents({**w, 1: rng.standard_normal((1, 2, 2))})
    assert 1 not in e1.depths and any(L == 1 for L, _ in e1.excluded)
    assert e1.beta == e.beta and e1.verdict == e.verdict and math.isfinite(e1.increment_slope)
    # weights constant along the depth: Increment = 0, no slope, so no verdict
    M = rng.standard_normal((2, 2))
    c = rs.scaling_exponents({L: np.broadcast_to(M / L ** 0.3, (L, 2, 2)) for L in w})
    assert c.verdict == "undetermined" and not c.h1 and not c.h2
    assert "Increment is 0" in c.evidence
    assert c.beta == pytest.approx(0.3, abs=1e-12)


def test_study_local_and_executor():
    from concurrent.futures import ThreadPoolExecutor
    kw = dict(data_kw=dict(train_size=64, test_size=16), max_epochs=2)
    s1 = rs.study([3, 5, 8, 12], **kw)
    with ThreadPoolExecutor(2) as ex:
        s2 = rs.study([3, 5, 8, 12], executor=ex, **kw)
    for L in (3, 5, 8, 12):
        np.testing.assert_array_equal(s1.results[L].A, s2.results[L].A)
    assert s1.weights.beta == s2.weights.beta and s1.failures == []


# ----------------------------------------------------------------------------------------------
# regimes of training.md §2.5 (slow)
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("act,dtype", [("tanh", "shared"), ("relu", "multi")])
def test_regimes_to_depth_2000(act, dtype):
    """training.md §2.6 item 1 (full data, patience 5): tanh + shared delta on the ODE data is
    H1 ('ode') with beta in [0, 1/2); relu + per-layer delta is never 'ode' (its beta measures
    where the plateau rule fires, so no band is asserted)."""
    from limits.validate.resnet_scaling import EXPECTED, regime_study
    depths = rs.depth_grid(1.2, 3, 2500)
    assert depths[-1] == 2116
    e = regime_study(act, dtype, depths).weights
    if act == "tanh":
        verdict, (lo, hi) = EXPECTED[(act, dtype)]
        assert e.verdict == verdict and lo <= e.beta < hi, e.evidence
    else:
        assert e.verdict != "ode", e.evidence


def test_fit_summary_flags_mixed_endpoints_and_the_figure():
    from limits import plots
    from limits.validate.resnet_scaling import fit_summary, table_text
    rng = np.random.default_rng(5)
    depths = [4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048]

    def run(L, stop):
        A = rng.standard_normal((L, 2, 2)) / math.sqrt(L)
        return rs.TrainResult(L, 2, "tanh", "none", A, np.zeros((L, 2)), np.zeros(0), None, None,
                              None, np.array([1.0]), 0.0, stop)

    def study(stops):
        res = {L: run(L, s) for L, s in zip(depths, stops)}
        return rs.Study(res, rs.scaling_exponents(list(res.values())), None, [])

    one_off = fit_summary(study(["epsilon"] * 9 + ["plateau"]))      # 90 % agree: not mixed
    two_off = fit_summary(study(["epsilon"] * 8 + ["plateau"] * 2))  # 80 %: mixed
    assert not one_off["mixed"] and two_off["mixed"]
    assert two_off["counts"] == {"epsilon": 8, "plateau": 2}
    assert two_off["stops"][2048] == "plateau" and two_off["depths"] == depths
    rows = [dict(f, activation="tanh", delta_type="none", loader="shuffled", patience=p, seed=0)
            for f, p in ((one_off, 5), (two_off, 200))]
    text = table_text(rows)
    assert "| 5 |" in text and "| 200 |" in text and "1 of 1 |" in text
    fig = plots.patience_sensitivity(rows)
    assert len(fig.axes) == 2
    assert len(fig.axes[1].lines) >= len(depths) * 2      # one marker per run and patience
    with pytest.raises(ValueError, match="empty"):
        plots.patience_sensitivity([])


def test_flattening_profile_is_h1_and_rough_part_is_neither():
    """H1 is one-sided: a profile whose slope shrinks with L (A_k = L^-beta (M + (k/L) N / L))
    has increments ~ L^(-2-beta), Increment(beta) slope -2: still smooth (ode).  A smooth trend
    plus an i.i.d. part of size L^(-beta-1/2) has increments ~ L^(-beta-1/2), slope -1/2: neither
    the H1 (<= -1) nor the H2 (0) prediction, so 'neither'."""
    rng = np.random.default_rng(7)
    M, N = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    beta = 0.3
    flat = {L: L ** -beta * (M[None] + (np.arange(L) / L)[:, None, None] * N[None] / L)
            for L in DEPTHS}
    e = rs.scaling_exponents(flat)
    assert e.increment_slope == pytest.approx(-2.0, abs=0.05)
    assert e.verdict == "ode"
    rough = {L: _smooth(L, beta, M) + L ** (-beta - 0.5) * 0.3 * rng.standard_normal((L, 3, 3))
             for L in DEPTHS}
    e = rs.scaling_exponents(rough)
    assert e.beta == pytest.approx(beta, abs=4 * e.beta_stderr + 0.02)
    assert abs(e.increment_slope + 0.5) <= 4 * e.increment_stderr + 0.1
    assert e.verdict == "neither" and not e.h1 and not e.h2


def test_denoised_loss_with_exact_weights_is_the_network():
    """relu is positively homogeneous: delta relu(A h + b) = sign(delta) relu(|delta| A h +
    |delta| b), so the effective-weight network with sign(delta) is the trained network."""
    data = rs.ode_data(train_size=64, test_size=32)
    for act, dt in (("relu", "multi"), ("tanh", "shared"), ("identity", "multi")):
        r = rs.train(15, data, activation=act, delta_type=dt, max_epochs=2)
        ref = rs.evaluate(r.A, r.b, r.delta, data.X_test, data.Y_test, activation=act,
                          delta_type=dt)
        assert ref == pytest.approx(r.test_loss, rel=1e-14)
        got = rs.denoised_loss(r, r.effective_weights, r.effective_biases, data.X_test,
                               data.Y_test)
        assert got == pytest.approx(ref, rel=1e-12), (act, dt)


def test_denoised_losses_runs_over_a_study():
    data = rs.ode_data(train_size=64, test_size=32)
    runs = [rs.train(L, data, max_epochs=2) for L in (10, 20, 40, 80)]
    out = rs.denoised_losses(runs, 0.4, data.X, data.Y, n_times=20)
    assert sorted(out) == [10, 20, 40, 80]
    for L, (orig, den) in out.items():
        assert orig == pytest.approx(rs.evaluate(runs[[10, 20, 40, 80].index(L)].A,
                                                 runs[[10, 20, 40, 80].index(L)].b,
                                                 runs[[10, 20, 40, 80].index(L)].delta,
                                                 data.X, data.Y), rel=1e-14)
        assert math.isfinite(den) and den != orig


def test_study_through_the_sweep_store(tmp_path):
    sweep = pytest.importorskip("limits.sweep")
    from concurrent.futures import ThreadPoolExecutor
    kw = dict(data_kw=dict(train_size=64, test_size=16), max_epochs=2)
    local = rs.study([3, 5, 8], **kw)
    store = str(tmp_path / "runs.sqlite")
    with ThreadPoolExecutor(2) as ex:
        stored = rs.study([3, 5, 8], store=store, executor=ex, name="rs", **kw)
        again = rs.study([3, 5, 8], store=store, executor=ex, name="rs", **kw)   # resumes
    assert len(sweep.load(store, "rs")) == 3
    for L in (3, 5, 8):
        np.testing.assert_array_equal(stored.results[L].A, local.results[L].A)
        np.testing.assert_array_equal(again.results[L].delta, local.results[L].delta)
    assert stored.weights.beta == local.weights.beta


def test_figures_show_the_statistics():
    from limits import plots
    M = np.random.default_rng(2).standard_normal((3, 3))
    w = {L: _smooth(L, 0.3, M) for L in (10, 20, 40, 80)}
    e = rs.scaling_exponents(w)
    fig = plots.max_norm_vs_depth(e)
    pts, line = fig.axes[0].lines[:2]
    np.testing.assert_allclose(pts.get_ydata(), [np.linalg.norm(M) * L ** -0.3
                                                 for L in (10, 20, 40, 80)], rtol=1e-12)
    x, y = line.get_xdata(), line.get_ydata()
    assert np.polyfit(np.log(x), np.log(y), 1)[0] == pytest.approx(-0.3, abs=1e-12)
    fig = plots.hypothesis_diagnostic(e)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), e.statistics["increment"])
    fig = plots.weight_paths(w, entry=(1, 2), depths=[20])
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), w[20][:, 1, 2])
    fig = plots.detrended_cumsums(w, 0.3, entry=(0, 0), depths=[40])
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata()[-1],
                               40 ** (0.3 - 1) * w[40][:, 0, 0].sum(), rtol=1e-12)
    with pytest.raises(ValueError, match="depths"):
        plots.weight_paths(w, depths=[7])
    import matplotlib.pyplot as plt
    plt.close("all")


def test_compiled_tanh_and_exp_accuracy():
    """The libm-free tanh of the forward pass against NumPy's: within 4 ulp (Cephes' rational
    form is quoted at about 2 ulp), exactly +-1 beyond |x| = 20, NaN passes through."""
    import numba
    from limits.resnet_scaling import _exp40, _tanh

    @numba.njit
    def both(x, t, e):
        for i in range(x.size):
            t[i] = _tanh(x[i])
            e[i] = _exp40(2.0 * x[i]) if abs(x[i]) <= 20.0 else 1.0

    x = np.concatenate([np.linspace(-25, 25, 200_001), np.geomspace(1e-300, 1.0, 2001),
                        -np.geomspace(1e-300, 1.0, 2001), [0.0, 1e6, -1e6, np.inf, -np.inf]])
    t, e = np.empty_like(x), np.empty_like(x)
    both(x, t, e)
    ref = np.tanh(x)
    assert np.max(np.abs(t - ref) / np.maximum(np.abs(ref), 1e-300)) <= 4 * 2.0 ** -52
    small = np.abs(x) <= 20
    assert np.max(np.abs(e[small] / np.exp(2 * x[small]) - 1)) <= 4 * 2.0 ** -52
    assert np.all(t[np.abs(x) > 20] == np.sign(x[np.abs(x) > 20]))
    nan = np.array([np.nan])
    both(nan, t[:1], e[:1])
    assert np.isnan(t[0])


def test_complex_data_refused():
    # the data matrices go through kernels._checks.finite_array: complex input is refused
    # (NumPy would drop the imaginary part with only a ComplexWarning)
    rng = np.random.default_rng(0)
    A, b, delta = _random_net(rng, 2, 3, "shared")
    X = rng.standard_normal((4, 3))
    with pytest.raises(TypeError, match="X must be real"):
        rs.evaluate(A, b, delta, X + 1j, X, activation="tanh")
    data = rs.Dataset(X, X * (1 + 0.5j), X[:0], X[:0], "complex")
    with pytest.raises(TypeError, match="data.Y must be real"):
        rs.train(2, data, batch_size=2)


_HASH_SCRIPT = """
import hashlib, numpy as np
import limits.resnet_scaling as rs
for act in ("tanh", "relu"):
    r = rs.train(12, rs.ode_data(d=4, train_size=64, test_size=16), activation=act,
                 max_epochs=3, seed=1)
    h = hashlib.sha256()
    for a in (r.A, r.b, r.delta):
        h.update(np.ascontiguousarray(a).tobytes())
    print(act, h.hexdigest())
"""


def _train_hashes(cache, threads):
    """Hashes of the trained (A, b, delta) for tanh and relu, from a fresh interpreter with
    numba cache directory ``cache`` and ``threads`` BLAS / numba / OpenMP threads."""
    import os
    import pathlib
    import subprocess

    root = str(pathlib.Path(rs.__file__).resolve().parents[2])
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), OPENBLAS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               NUMBA_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    env.pop("NUMBA_DISABLE_CACHING", None)
    p = subprocess.run([sys.executable, "-c", _HASH_SCRIPT], capture_output=True, text=True,
                       env=env, timeout=900)
    assert p.returncode == 0, p.stderr
    return dict(line.split() for line in p.stdout.split("\n") if line.strip())


def test_training_bit_identical_across_cache_state_and_threads(tmp_path):
    """The same call gives the same bits whether the compiled code is freshly compiled (cold
    numba cache) or loaded from the cache (warm; a cached ``_epoch`` runs its own copy of the
    forward / backward passes), and whatever the thread settings.  Before the fix, fastmath
    ('reassoc', 'contract') let the two copies round differently."""
    import hashlib

    cache = tmp_path / "nbcache"
    cold = _train_hashes(cache, 1)
    assert any(cache.rglob("*trainer._epoch*.nbc")), "the cold run did not write the cache"
    warm = _train_hashes(cache, 2)
    assert cold == warm
    here = {}
    for act in ("tanh", "relu"):
        r = rs.train(12, rs.ode_data(d=4, train_size=64, test_size=16), activation=act,
                     max_epochs=3, seed=1)
        h = hashlib.sha256()
        for a in (r.A, r.b, r.delta):
            h.update(np.ascontiguousarray(a).tobytes())
        here[act] = h.hexdigest()
    assert here == cold
