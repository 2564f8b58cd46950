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
    (dict(t=1.0), ValueError, "t"),
    (dict(kind="ntk", t=-1.0), ValueError, "t"),
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
