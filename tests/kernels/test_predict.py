"""kernels.predict against direct linear algebra (theory/kernels.md §5) and against an ensemble
of finite-width networks trained by gradient descent (NumPy, written here)."""
import math

import numpy as np
import pytest
from scipy import linalg, special

import kernels as kn


def _data(n=6, m=3, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + m, d))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1]
    return x[:n], y[:n], x[n:]


@pytest.mark.parametrize("net", [kn.MLP(depth=3, activation=kn.ReLU(), bias_var=0.1),
                                 kn.ResNet(depth=4, activation=kn.Erf(), bias_var=0.2)])
def test_against_direct_linear_algebra(net):
    xtr, ytr, xte = _data()
    n = len(xtr)
    k = net.kernels(np.concatenate([xtr, xte]))
    K, T = k.nngp, k.ntk
    r = 1e-3
    Kxx, Txx = K[:n, :n] + r * np.eye(n), T[:n, :n] + r * np.eye(n)
    Ki, Ti = np.linalg.inv(Kxx), np.linalg.inv(Txx)
    p = kn.predict(net, xtr, ytr, xte, kind="nngp", diag_reg=r)
    np.testing.assert_allclose(p.mean, K[n:, :n] @ Ki @ ytr, rtol=1e-9)
    np.testing.assert_allclose(p.cov, K[n:, n:] - K[n:, :n] @ Ki @ K[:n, n:], rtol=1e-8,
                               atol=1e-10)
    p = kn.predict(net, xtr, ytr, xte, kind="ntk", diag_reg=r)
    np.testing.assert_allclose(p.mean, T[n:, :n] @ Ti @ ytr, rtol=1e-9)
    A = T[n:, :n] @ Ti
    cov = K[n:, n:] + A @ K[:n, :n] @ A.T - (A @ K[:n, n:] + (A @ K[:n, n:]).T)
    np.testing.assert_allclose(p.cov, cov, rtol=1e-8, atol=1e-10)
    for t in (0.05, 0.7):
        p = kn.predict(net, xtr, ytr, xte, kind="ntk", diag_reg=r, t=t, learning_rate=2.0)
        expect = T[n:, :n] @ Ti @ (np.eye(n) - linalg.expm(-2.0 * t * Txx)) @ ytr
        np.testing.assert_allclose(p.mean, expect, rtol=1e-9, atol=1e-12)
    # several targets at once
    Y = np.stack([ytr, 2 * ytr + 1], axis=1)
    p = kn.predict(net, xtr, Y, xte, kind="ntk", diag_reg=r, t=0.3)
    q = kn.predict(net, xtr, 2 * ytr + 1, xte, kind="ntk", diag_reg=r, t=0.3)
    np.testing.assert_allclose(p.mean[:, 1], q.mean, rtol=1e-12)


def test_interpolates_training_points():
    net = kn.MLP(depth=2, activation=kn.Erf())
    xtr, ytr, _ = _data()
    p = kn.predict(net, xtr, ytr, xtr, kind="nngp")
    np.testing.assert_allclose(p.mean, ytr, rtol=1e-7, atol=1e-8)
    assert np.max(np.abs(p.cov)) < 1e-7
    p = kn.predict(net, xtr, ytr, xtr, kind="ntk", compute_cov=False)
    np.testing.assert_allclose(p.mean, ytr, rtol=1e-7, atol=1e-8)
    assert p.cov is None


def _train_ensemble(xtr, ytr, xte, width, nets, lr, steps, seed):
    """One-hidden-layer erf nets in NTK parameterisation (weight_var 1, bias_var 0.1), trained by
    full-batch gradient descent on 1/2 sum (f - y)^2; returns (nets, m) test outputs."""
    rng = np.random.default_rng(seed)
    d, n = xtr.shape[1], width
    sw, sb = 1.0, math.sqrt(0.1)
    out = np.empty((nets, len(xte)))
    for e in range(nets):
        W, b = rng.standard_normal((n, d)), rng.standard_normal(n)
        w, c = rng.standard_normal(n), rng.standard_normal()

        def f(x):
            h = sw / math.sqrt(d) * x @ W.T + sb * b
            return sw / math.sqrt(n) * special.erf(h) @ w + sb * c, h

        for _ in range(steps):
            fx, h = f(xtr)
            r = fx - ytr
            a = special.erf(h)
            da = sw / math.sqrt(n) * r[:, None] * w[None, :] * (2 / math.sqrt(math.pi)) \
                * np.exp(-h * h)
            gw = sw / math.sqrt(n) * a.T @ r
            gc = sb * r.sum()
            gW = sw / math.sqrt(d) * da.T @ xtr
            gb = sb * da.sum(0)
            W -= lr * gW
            b -= lr * gb
            w -= lr * gw
            c -= lr * gc
        out[e] = f(xte)[0]
    return out


def _ntk_setup(scale):
    xtr, ytr, xte = _data(n=5, m=3, seed=1)
    ytr = scale * ytr
    net = kn.MLP(depth=1, activation=kn.Erf(), weight_var=1.0, bias_var=0.1)
    T = net.ntk(np.concatenate([xtr, xte]))
    n = len(xtr)
    lam = np.linalg.eigvalsh(T[:n, :n])
    lr, t = 0.2 / lam[-1], 2.0 / lam[0]
    steps = int(round(t / lr))
    p = kn.predict(net, xtr, ytr, xte, kind="ntk", t=steps * lr)
    # discrete gradient descent on the linear model: (I - (I - lr T)^steps) instead of expm
    disc = T[n:, :n] @ np.linalg.solve(T[:n, :n], (np.eye(n) - np.linalg.matrix_power(
        np.eye(n) - lr * T[:n, :n], steps)) @ ytr)
    return xtr, ytr, xte, lr, steps, p.mean, np.abs(disc - p.mean)


def test_ntk_mean_matches_trained_wide_networks():
    """Lee et al. (2019): the ensemble mean of gradient-descent-trained wide networks is the NTK
    predictive mean at the same training time.  Tolerance: 4 standard errors of the ensemble
    mean plus the discrete-step correction (exact GD recursion of the linear model)."""
    xtr, ytr, xte, lr, steps, mean, disc = _ntk_setup(1.0)
    outs = _train_ensemble(xtr, ytr, xte, width=512, nets=40, lr=lr, steps=steps, seed=2)
    se = outs.std(0, ddof=1) / math.sqrt(len(outs))
    assert np.all(np.abs(outs.mean(0) - mean) < 4 * se + disc), (outs.mean(0), mean, se)


@pytest.mark.slow
def test_ntk_mean_deviation_shrinks_with_width():
    """With large targets the finite-width (non-linearised) deviation is resolved; it must
    shrink with the width and be within noise at width 4096."""
    xtr, ytr, xte, lr, steps, mean, disc = _ntk_setup(10.0)
    dev, se = [], []
    for width in (256, 1024, 4096):
        outs = _train_ensemble(xtr, ytr, xte, width=width, nets=40, lr=lr, steps=steps, seed=2)
        dev.append(np.abs(outs.mean(0) - mean).max())
        se.append((outs.std(0, ddof=1) / math.sqrt(len(outs))).max())
    assert dev[2] < dev[0] and dev[1] < dev[0], dev
    assert dev[2] < 4 * se[2] + disc.max() + dev[0] / 4, (dev, se)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(kind="svm"), ValueError, "kind"),
    (dict(diag_reg=-1.0), ValueError, "diag_reg"),
    (dict(kind="ntk", t=-1.0), ValueError, "t"),
    (dict(t=[0.1, -1.0]), ValueError, "t"),
    (dict(t=[0.1, np.nan]), ValueError, "NaN"),
    (dict(t=float("nan")), ValueError, "NaN"),
    (dict(t=True), TypeError, "t"),
    (dict(t="1"), TypeError, "t"),
    (dict(t=[]), ValueError, "t"),
    (dict(compute_cov="yes"), TypeError, "compute_cov"),
    (dict(compute_cov=None), TypeError, "compute_cov"),
    (dict(jitter="always"), ValueError, "jitter"),
    (dict(jitter=-1e-6), ValueError, "jitter"),
    (dict(solver="cg", t=1.0, compute_cov=False), ValueError, "t=None"),
    (dict(kind="ntk", learning_rate=0.0), ValueError, "learning_rate"),
    (dict(y_train=[1.0, 2.0]), ValueError, "y_train"),
    (dict(y_train=[np.nan] * 6), ValueError, "y_train"),
    (dict(x_test=np.ones((2, 4))), ValueError, "x_test"),
    (dict(net="mlp"), TypeError, "net"),
])
def test_bad_input(kwargs, exc, match):
    xtr, ytr, xte = _data()
    args = dict(net=kn.MLP(depth=2, activation=kn.ReLU()), x_train=xtr, y_train=ytr,
                x_test=xte)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        kn.predict(**args)


def test_duplicate_training_inputs_need_a_ridge():
    xtr, ytr, xte = _data()
    xtr[1] = xtr[0]
    with pytest.raises(ValueError, match="diag_reg"):
        kn.predict(kn.MLP(depth=2, activation=kn.ReLU()), xtr, ytr, xte)
    p = kn.predict(kn.MLP(depth=2, activation=kn.ReLU()), xtr, ytr, xte, diag_reg=1e-6)
    assert np.all(np.isfinite(p.mean))
    assert p.jitter == 0.0


# ---- finite training times (module docstring of kernels.predict) ----------------------------

NET = kn.MLP(depth=3, activation=kn.ReLU(), bias_var=0.1)


def _blocks(net, xtr, xte):
    n = len(xtr)
    k = net.kernels(np.concatenate([xtr, xte]))
    return n, k.nngp, k.ntk


def _vanloan(H, eta, t):
    """eta * int_0^t exp(-eta H s) ds (= H^-1 (I - exp(-eta H t)) for invertible H) from one
    matrix exponential (Van Loan 1978), valid for singular H too."""
    n = len(H)
    Z = np.zeros((2 * n, 2 * n))
    Z[:n, :n], Z[:n, n:] = -eta * H, eta * np.eye(n)
    return linalg.expm(t * Z)[:n, n:]


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
@pytest.mark.parametrize("dup", [False, True])
def test_finite_time_against_matrix_exponential(kind, dup):
    """mean_t = A_t y and cov_t = K** - A K_X* - K_*X A^T + A K_XX A^T with A_t = H_*X eta
    int_0^t exp(-eta H s) ds, evaluated directly (no eigendecomposition, no simplification);
    with a duplicated training input (singular H: finite times need no ridge)."""
    xtr, ytr, xte = _data(n=6, m=3)
    if dup:
        xtr[1] = xtr[0]
        ytr[1] = ytr[0]
    n, K, T = _blocks(NET, xtr, xte)
    H = K if kind == "nngp" else T
    eta, times = 0.7, np.array([0.0, 0.03, 0.4, 3.0])
    p = kn.predict(NET, xtr, ytr, xte, kind=kind, t=times, learning_rate=eta)
    assert p.mean.shape == (4, 3) and p.cov.shape == (4, 3, 3) and p.jitter == 0.0
    for i, t in enumerate(times):
        A = H[n:, :n] @ _vanloan(H[:n, :n], eta, t)
        cov = K[n:, n:] - A @ K[:n, n:] - K[n:, :n] @ A.T + A @ K[:n, :n] @ A.T
        np.testing.assert_allclose(p.mean[i], A @ ytr, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(p.cov[i], cov, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_time_zero_is_the_prior_and_infinity_is_todays_answer(kind):
    xtr, ytr, xte = _data()
    n, K, _ = _blocks(NET, xtr, xte)
    Y = np.stack([ytr, np.cos(ytr)], 1)
    p = kn.predict(NET, xtr, Y, xte, kind=kind, t=[0.0, 1.0, np.inf, None], diag_reg=1e-4)
    assert p.mean.shape == (4, 3, 2) and p.cov.shape == (4, 3, 3)
    assert np.all(p.mean[0] == 0.0)
    np.testing.assert_array_equal(p.cov[0], K[n:, n:])
    q = kn.predict(NET, xtr, Y, xte, kind=kind, diag_reg=1e-4)
    np.testing.assert_array_equal(p.mean[2], q.mean)
    np.testing.assert_array_equal(p.mean[3], q.mean)
    np.testing.assert_array_equal(p.cov[2], q.cov)
    s = kn.predict(NET, xtr, Y, xte, kind=kind, t=1.0, diag_reg=1e-4)
    assert s.mean.shape == (3, 2) and s.cov.shape == (3, 3)
    np.testing.assert_array_equal(s.mean, p.mean[1])
    np.testing.assert_array_equal(s.cov, p.cov[1])
    # a 2-d array of times keeps its shape in front
    g = kn.predict(NET, xtr, ytr, xte, kind=kind, t=[[0.0, 1.0], [np.inf, 1.0]], diag_reg=1e-4)
    assert g.mean.shape == (2, 2, 3) and g.cov.shape == (2, 2, 3, 3)
    np.testing.assert_array_equal(g.mean[0, 1], g.mean[1, 1])


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_limits_are_approached_monotonically(kind):
    """On the eigenbasis of H, ||mean_t - mean_inf|| is a sum of e^{-eta w t} terms: it
    tends to 0 along the times; for the NNGP the posterior variances
    decrease monotonically from the prior (cov_t - cov_inf = K_*X V diag(e^{-2 eta w t}/w)
    V^T K_X* is positive semi-definite and decreasing)."""
    xtr, ytr, xte = _data(n=8, m=4, seed=3)
    times = np.geomspace(1e-3, 1e4, 30)
    p = kn.predict(NET, xtr, ytr, xte, kind=kind, t=times)
    q = kn.predict(NET, xtr, ytr, xte, kind=kind)
    dm = np.abs(p.mean - q.mean).max(1)
    dc = np.abs(p.cov - q.cov).max((1, 2))
    assert dm[-1] < 1e-9 * np.abs(q.mean).max() and dc[-1] < 1e-9 * np.abs(q.cov).max()
    if kind == "nngp":
        var = np.diagonal(p.cov, axis1=1, axis2=2)
        assert np.all(np.diff(var, axis=0) <= 1e-13) and np.all(var >= q.cov.diagonal() - 1e-13)
        for a, b in zip(p.cov[:-1], p.cov[1:]):
            assert np.linalg.eigvalsh(a - b).min() > -1e-12
    # on the training inputs the residual is e^{-eta H t} (0 - y): the training loss decreases
    tr = kn.predict(NET, xtr, ytr, xtr, kind=kind, t=times, compute_cov=False)
    loss = np.linalg.norm(tr.mean - ytr, axis=1)
    assert np.all(np.diff(loss) <= 1e-12) and loss[0] > 0.9 * np.linalg.norm(ytr)
    assert loss[-1] < 1e-8


def test_predict_from_kernels_is_predict():
    xtr, ytr, xte = _data()
    n, K, T = _blocks(NET, xtr, xte)
    times = [0.2, None]
    for kind in ("nngp", "ntk"):
        p = kn.predict(NET, xtr, ytr, xte, kind=kind, t=times, diag_reg=1e-5)
        q = kn.predict_from_kernels({"nngp": K[:n, :n], "ntk": T[:n, :n]},
                                    {"nngp": K[n:, :n], "ntk": T[n:, :n]}, ytr, K[n:, n:],
                                    kind=kind, t=times, diag_reg=1e-5)
        np.testing.assert_array_equal(p.mean, q.mean)
        np.testing.assert_array_equal(p.cov, q.cov)
        # kernels.Kernels objects are accepted as well
        kk = NET.kernels(xtr)
        ks = kn.Kernels(K[n:, :n], T[n:, :n])
        r = kn.predict_from_kernels(kk, ks, ytr, kn.Kernels(K[n:, n:], T[n:, n:]), kind=kind,
                                    t=times, diag_reg=1e-5)
        np.testing.assert_allclose(r.mean, p.mean, rtol=1e-12, atol=1e-14)
        # no test-test block: mean only
        assert kn.predict_from_kernels(kk, ks, ytr, kind=kind, t=0.3).cov is None
    # plain arrays are the kernel of `kind`
    a = kn.predict_from_kernels(K[:n, :n], K[n:, :n], ytr, K[n:, n:], kind="nngp", t=0.5)
    b = kn.predict(NET, xtr, ytr, xte, kind="nngp", t=0.5)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.cov, b.cov)
    m = kn.predict_from_kernels(T[:n, :n], T[n:, :n], ytr, kind="ntk", t=0.5)
    np.testing.assert_array_equal(m.mean, kn.predict(NET, xtr, ytr, xte, kind="ntk", t=0.5).mean)


def test_predict_from_kernels_bad_input():
    xtr, ytr, xte = _data()
    n, K, T = _blocks(NET, xtr, xte)
    tt, st = {"nngp": K[:n, :n], "ntk": T[:n, :n]}, {"nngp": K[n:, :n], "ntk": T[n:, :n]}
    f = kn.predict_from_kernels
    with pytest.raises(TypeError, match="both the NNGP and the NTK"):
        f(T[:n, :n], T[n:, :n], ytr, K[n:, n:], kind="ntk")
    with pytest.raises(ValueError, match="'ntk'"):
        f({"nngp": K[:n, :n]}, st, ytr, kind="ntk")
    with pytest.raises(ValueError, match="k_train_train must be a square"):
        f(K[:n, :n - 1], K[n:, :n], ytr)
    with pytest.raises(ValueError, match="k_test_train"):
        f(tt, {"nngp": K[n:, :n - 1]}, ytr)
    with pytest.raises(ValueError, match="k_test_test"):
        f(tt, st, ytr, K[n:, n:][:2], kind="ntk")
    with pytest.raises(ValueError, match="symmetric"):
        f(K[:n, :n] + np.triu(np.ones((n, n)), 1), K[n:, :n], ytr)
    with pytest.raises(ValueError, match="y_train"):
        f(tt, st, ytr[:-1])
    with pytest.raises(ValueError, match="NaN or inf"):
        f(np.where(np.eye(n) > 0, np.nan, K[:n, :n]), K[n:, :n], ytr)
    with pytest.raises(ValueError, match="kind"):
        f(tt, st, ytr, kind="ntkgp")


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_not_positive_definite_is_reported_or_jittered(kind):
    xtr, ytr, xte = _data()
    xtr[1] = xtr[0]
    with pytest.raises(ValueError, match=r"smallest eigenvalue .* condition number .*jitter"):
        kn.predict(NET, xtr, ytr, xte, kind=kind)
    with pytest.raises(ValueError, match="smallest eigenvalue"):
        kn.predict(NET, xtr, ytr, xte, kind=kind, t=[1.0, np.inf])
    p = kn.predict(NET, xtr, ytr, xte, kind=kind, t=[1.0, None], jitter="auto")
    assert 0 < p.jitter < 1e-3 and np.all(np.isfinite(p.mean)) and np.all(np.isfinite(p.cov))
    q = kn.predict(NET, xtr, ytr, xte, kind=kind, t=[1.0, None], diag_reg=p.jitter)
    np.testing.assert_array_equal(p.mean, q.mean)
    j = kn.predict(NET, xtr, ytr, xte, kind=kind, jitter=1e-9)
    assert j.jitter >= 1e-9 and np.all(np.isfinite(j.cov))
    # finite times alone need no jitter (the flow is defined for singular kernels)
    assert kn.predict(NET, xtr, ytr, xte, kind=kind, t=2.0, jitter="auto").jitter == 0.0


def test_indefinite_kernel_is_reported_at_finite_time():
    n = 4
    K = np.eye(n)
    K[0, 1] = K[1, 0] = 1.5                                    # eigenvalue -0.5
    with pytest.raises(ValueError, match=r"smallest eigenvalue -0\.5"):
        kn.predict_from_kernels(K, np.ones((2, n)), np.ones(n), np.eye(2), t=1.0)
    p = kn.predict_from_kernels(K, np.ones((2, n)), np.ones(n), np.eye(2), t=1.0, jitter=0.1)
    assert p.jitter == pytest.approx(1.0) and np.all(np.isfinite(p.cov))
    with pytest.raises(ValueError, match="still not after a jitter"):
        kn.predict_from_kernels(-np.eye(n) * 1e6, np.ones((2, n)), np.ones(n), t=1.0,
                                jitter=1e-9)


# ----------------------------------------------------------------------------------------------
# kernels past memory: memory maps, dask arrays, CG, the memory guard
# ----------------------------------------------------------------------------------------------
def _sphere_problem(n, m, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + m, 6))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n], np.sin(3 * x[:n, 0]) + x[:n, 1] * x[:n, 2], x[n:]


BIG = kn.MLP(depth=4, activation=kn.ReLU(), weight_var=2.0, bias_var=0.05)


def _memmap(path, a):
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=a.shape)
    mm[:] = a
    mm.flush()
    return np.load(path, mmap_mode="r")            # read-only: nothing is written to it


def test_predict_from_memmap_and_dask_kernels(tmp_path):
    xtr, ytr, xte = _sphere_problem(400, 30)
    n, r, tol = len(xtr), 1e-3, 1e-10
    k = BIG.kernels(np.concatenate([xtr, xte]))
    tt = {"nngp": k.nngp[:n, :n], "ntk": k.ntk[:n, :n]}
    st = {"nngp": k.nngp[n:, :n], "ntk": k.ntk[n:, :n]}
    mt = {g: _memmap(tmp_path / f"{g}.npy", v) for g, v in tt.items()}
    for kind in ("nngp", "ntk"):
        ref = kn.predict_from_kernels(tt, st, ytr, k.nngp[n:, n:], kind=kind, diag_reg=r)
        # direct on memory maps: loaded, the same numbers
        got = kn.predict_from_kernels(mt, st, ytr, k.nngp[n:, n:], kind=kind, diag_reg=r)
        np.testing.assert_array_equal(got.mean, ref.mean)
        np.testing.assert_array_equal(got.cov, ref.cov)
        # CG on memory maps: within the stated bound |k_*i| tol |y| / r
        cg = kn.predict_from_kernels(mt, st, ytr, kind=kind, diag_reg=r, solver="cg", tol=tol)
        bound = np.linalg.norm(st[kind], axis=1) * tol * np.linalg.norm(ytr) / r
        assert cg.cov is None and np.all(np.abs(cg.mean - ref.mean) <= bound)
        # kn.predict with CG: tile by tile into a memory map in kernel_dir
        p = kn.predict(BIG, xtr, ytr, xte, kind=kind, diag_reg=r, solver="cg", tol=tol,
                       compute_cov=False, kernel_dir=tmp_path)
        assert np.all(np.abs(p.mean - ref.mean) <= bound)
        q = kn.predict(BIG, xtr, ytr, xte, kind=kind, diag_reg=r, solver="cg", tol=tol,
                       compute_cov=False)
        np.testing.assert_array_equal(p.mean, q.mean)     # same tiles in memory or on disk
    assert sorted(f.name for f in tmp_path.iterdir()) == ["nngp.npy", "ntk.npy"]  # cleaned
    dask = pytest.importorskip("dask")
    dk = kn.dask_kernels(BIG, xtr, chunks=150)
    with dask.config.set(scheduler="threads"):
        d = kn.predict_from_kernels(dk, st, ytr, kind="ntk", diag_reg=r)
        np.testing.assert_array_equal(d.mean, kn.predict_from_kernels(tt, st, ytr, kind="ntk",
                                                                      diag_reg=r).mean)
        c = kn.predict_from_kernels(dk, st, ytr, kind="ntk", diag_reg=r, solver="cg", tol=tol)
    bound = np.linalg.norm(st["ntk"], axis=1) * tol * np.linalg.norm(ytr) / r
    assert np.all(np.abs(c.mean - d.mean) <= bound)


def test_large_n_refusals(tmp_path, monkeypatch):
    xtr, ytr, xte = _sphere_problem(40, 5)
    n = len(xtr)
    k = BIG.kernels(np.concatenate([xtr, xte]))
    K, S = k.nngp[:n, :n], k.nngp[n:, :n]
    f = kn.predict_from_kernels
    with pytest.raises(ValueError, match="t=None"):
        f(K, S, ytr, solver="cg", t=1.0)
    with pytest.raises(ValueError, match="k_test_test=None"):
        f(K, S, ytr, k.nngp[n:, n:], solver="cg")
    with pytest.raises(ValueError, match="diag_reg > 0"):
        f(K, S, ytr, solver="cg", jitter="auto")
    with pytest.raises(ValueError, match="solver"):
        f(K, S, ytr, solver="qr")
    with pytest.raises(ValueError, match="tol must be > 0"):
        f(K, S, ytr, solver="cg", tol=-1.0)
    with pytest.raises(ValueError, match="kernel_dir applies to solver='cg'"):
        kn.predict(BIG, xtr, ytr, xte, kernel_dir=tmp_path)
    with pytest.raises(ValueError, match="existing directory"):
        kn.predict(BIG, xtr, ytr, xte, solver="cg", compute_cov=False,
                   kernel_dir=tmp_path / "nope")
    with pytest.raises(ValueError, match="diag_reg > 0"):
        kn.predict(BIG, xtr, ytr, xte, solver="cg", compute_cov=False, jitter=1e-6)
    # a memory map with NaN (never filled) is refused, never a NaN prediction
    bad = np.lib.format.open_memmap(tmp_path / "bad.npy", mode="w+", dtype=np.float64,
                                    shape=(n, n))
    bad[:] = K
    bad[5, 30] = bad[30, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        f(bad, S, ytr, solver="cg", diag_reg=1e-3)
    with pytest.raises(ValueError, match="NaN or inf"):
        kn.kernel_regression(bad, ytr, diag_reg=1e-3, preconditioner="jacobi", block=7)
    with pytest.raises(ValueError, match="NaN or inf"):
        f(bad, S, ytr)
    # the memory guard refuses the direct solvers up front and names the way out
    from kernels import _checks
    monkeypatch.setattr(_checks, "available_memory", lambda: 10000)      # bytes
    with pytest.raises(_checks.MemoryBudgetError, match="solver='cg'"):
        f(K, S, ytr)
    with pytest.raises(MemoryError, match="solver='cg'"):
        kn.predict(BIG, xtr, ytr, xte)
    with pytest.raises(ValueError, match="solver='cg'"):
        kn.kernel_regression(K, ytr, S, solver="direct")
    with pytest.raises(MemoryError, match="kernel_dir"):
        kn.predict(BIG, xtr, ytr, xte, solver="cg", compute_cov=False)
    # CG needs O(block^2) only: it still runs
    cg = f(K, S, ytr, solver="cg", diag_reg=1e-3)
    assert np.all(np.isfinite(cg.mean))
