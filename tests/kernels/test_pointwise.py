"""The activation protocol at finite width: ``Activation.pointwise()`` with
kernels._pointwise.phi / dphi / d2phi (compiled and in Python), ``positively_homogeneous``,
``finite``, and user activations in Monte Carlo.

Expected values: NumPy / SciPy formulas typed here, the activations' NumPy ``__call__`` /
``derivative`` (written separately from the compiled forms), and the infinite-width NNGP, which
a depth-1 network's Monte Carlo mean equals exactly at any width.
"""
import math
import os
import pathlib

import numba
import numpy as np
import pytest
from scipy import special

import kernels as kn
from kernels._pointwise import d2phi, dphi, phi

Z = 4.0


@numba.njit
def _eval(p, x, out):
    for i in range(x.shape[0]):
        out[0, i] = phi(p, x[i])
        out[1, i] = dphi(p, x[i])
        out[2, i] = d2phi(p, x[i])


def _softsign(t):
    return t / (1.0 + abs(t))


CASES = {
    "relu": (kn.ReLU(), lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float),
             lambda x: 0.0 * x),
    "leaky": (kn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x),
              lambda x: np.where(x > 0, 1.0, 0.2), lambda x: 0.0 * x),
    "erf": (kn.Erf(1.5, 0.7, 0.1), lambda x: 1.5 * special.erf(0.7 * x) + 0.1,
            lambda x: 1.5 * 0.7 * 2 / np.sqrt(np.pi) * np.exp(-0.49 * x * x),
            lambda x: -2 * 0.49 * x * 1.5 * 0.7 * 2 / np.sqrt(np.pi) * np.exp(-0.49 * x * x)),
    "tanh": (kn.Tanh(deg=50), np.tanh, lambda x: 1 / np.cosh(x) ** 2,
             lambda x: -2 * np.tanh(x) / np.cosh(x) ** 2),
    "softsign": (kn.Activation(_softsign, lambda t: 1.0 / (1.0 + abs(t)) ** 2, deg=50),
                 lambda x: x / (1 + np.abs(x)), lambda x: 1 / (1 + np.abs(x)) ** 2,
                 lambda x: -2 * np.sign(x) / (1 + np.abs(x)) ** 3),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_pointwise_matches_numpy_formulas(name):
    act, f, df, d2f = CASES[name]
    x = np.linspace(-4.0, 4.0, 161) + 0.0123        # the stencils of d2phi stay off the kink at 0
    out = np.empty((3, x.size))
    _eval(act.pointwise(), x, out)
    np.testing.assert_allclose(out[0], f(x), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(out[1], df(x), rtol=1e-13, atol=1e-15)
    # d2phi of a user activation is a central difference of its derivative (error ~1e-9)
    np.testing.assert_allclose(out[2], d2f(x), rtol=1e-7 if name == "softsign" else 1e-13,
                               atol=1e-9 if name == "softsign" else 1e-15)
    # the same from Python, and against the activation's own NumPy methods
    p = act.pointwise()
    assert phi(p, 0.75) == pytest.approx(float(act(0.75)), rel=1e-15)
    assert dphi(p, 0.75) == pytest.approx(float(act.derivative(0.75)), rel=1e-12)


def test_user_activation_without_derivative_uses_central_differences():
    act = kn.Activation(_softsign, deg=50)
    x = np.linspace(0.1, 3.0, 30)
    out = np.empty((3, x.size))
    _eval(act.pointwise(), x, out)
    np.testing.assert_allclose(out[1], 1 / (1 + x) ** 2, rtol=1e-11)
    np.testing.assert_allclose(out[2], -2 / (1 + x) ** 3, rtol=1e-5)


def test_positive_homogeneity_flags():
    assert kn.ReLU().positively_homogeneous
    assert kn.LeakyReLU(0.1).positively_homogeneous
    assert kn.ShapedReLU(1.0, -1.0).positively_homogeneous
    for act in (kn.Erf(), kn.Tanh(deg=50), kn.Activation(_softsign, deg=50)):
        assert not act.positively_homogeneous
    # and the property holds for the compiled forms: phi(c x) = c phi(x), c > 0
    p = kn.LeakyReLU(0.3).pointwise()
    for x in (-2.0, 0.5, 3.0):
        assert phi(p, 7.0 * x) == 7.0 * phi(p, x)


def test_finite_resolves_shaped_relu_and_pointwise_refuses_unresolved():
    act = kn.ShapedReLU(2.0, -2.0, rate="width")
    assert act.finite(16, 4) == kn.ABReLU(1 - 2 / 4, 1 + 2 / 4)
    assert kn.ShapedReLU(2.0, -2.0).finite(16, 4) == kn.ABReLU(0.0, 2.0)
    assert kn.ReLU().finite(16, 4) == kn.ReLU()
    with pytest.raises(ValueError, match="finite"):
        act.pointwise()


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
@pytest.mark.parametrize("method", ["gram", "weights"])
def test_user_activation_in_monte_carlo_matches_its_nngp(arch, method):
    """Depth 1: the estimator's mean is exactly the infinite-width NNGP at any width (the first
    hidden layer is exactly Gaussian), so |mean - NNGP| < Z stderr with no bias term."""
    act = kn.Activation(_softsign, deg=80, name="softsign")
    x = np.array([[1.0, 0.0, 0.5], [0.6, 0.8, -0.2], [-0.3, 0.4, 1.1]])
    net = (kn.MLP(depth=1, activation=act, weight_var=1.5, bias_var=0.1) if arch == "mlp" else
           kn.ResNet(depth=1, activation=act, weight_var=1.5, bias_var=0.1))
    K = net.nngp(x)
    r = kn.monte_carlo(net, x, width=16, samples=4000, seed=3, ntk=False, method=method,
                       progress=False)
    assert np.all(np.abs(r.nngp - K) < Z * r.nngp_stderr), (r.nngp - K) / r.nngp_stderr
    p = kn.simulate_paths(net, x, width=16, samples=4000, seed=4, method=method,
                          progress=False)
    g = p.gram[:, -1]
    se = g.std(axis=0, ddof=1) / math.sqrt(g.shape[0])
    last = K if arch == "mlp" else net._stack().without_readout()
    if arch == "resnet":          # the residual stream's Gram: K_1 = K_0 + a^2 (sw2 V + sb2)
        last = (K - net.readout_bias_var) / net.readout_weight_var
    assert np.all(np.abs(g.mean(axis=0) - last) < Z * se)


def test_user_activation_stays_out_of_the_disk_cache(tmp_path):
    # a user Activation's compiled functions must not be named in numba's cache index: a later
    # process that cannot import their module would fail on every call (any activation)
    import subprocess
    import sys
    root = pathlib.Path(__file__).resolve().parents[2]
    user, other, cache = tmp_path / "user", tmp_path / "other", tmp_path / "nbcache"
    user.mkdir()
    other.mkdir()
    (user / "myact.py").write_text(
        "import numba, kernels as kn\n"
        "@numba.njit\ndef soft(x):\n    return x / (1.0 + abs(x))\n"
        "@numba.njit\ndef dsoft(x):\n    return 1.0 / (1.0 + abs(x)) ** 2\n"
        "act = kn.Activation(soft, dsoft, deg=50)\n")
    run = ("import numpy as np, kernels as kn\n{imp}\n"
           "x = np.random.default_rng(0).standard_normal((3, 4))\n"
           "kn.monte_carlo(kn.MLP(2, {act}), x, width=8, samples=4, method='gram', ntk=False)\n"
           "kn.monte_carlo(kn.MLP(2, {act}), x, width=8, samples=4, method='weights')\n")
    (user / "a.py").write_text(run.format(imp="from myact import act", act="act"))
    (other / "b.py").write_text(run.format(imp="", act="kn.Erf()"))
    # the library on the path, not the tests (the user's module is importable only in user/)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(root))
    for d, script in ((user, "a.py"), (other, "b.py")):
        r = subprocess.run([sys.executable, script], cwd=d, env=env, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
    assert not [p for p in cache.rglob("*.nbi") if b"myact" in p.read_bytes()]
