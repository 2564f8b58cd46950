"""Per-layer variances: ``weight_var`` / ``bias_var`` with one value per Dense layer (MLP:
depth + 1, readout last; ResNet: input, each block, readout = depth + 2, or depth per-block
values), theory/kernels.md §5b.

Expected values come from outside the package: the plain-NumPy recursions of
_param_reference.py (written from §2.2, §3.2, §5b), neural-tangents outputs (in
test_parameterization), finite networks with explicit parameters differentiated by central
differences, and the scalar-variance engine (bit-identity when every layer has the same values).
Statistical tolerances are multiples of the Monte Carlo standard error at fixed seeds.
"""
import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

import kernels as kn
from kernels import montecarlo as mc
from tests._reference import abrelu_maps, erf_maps, gh_maps
from tests.kernels import _param_reference as ref

RNG = np.random.default_rng(7)
X1 = RNG.standard_normal((6, 3))
X2 = RNG.standard_normal((4, 3))
Z = 4.0

MAPS = {
    "relu": (kn.ReLU, abrelu_maps(0.0, 1.0), 1.0),
    "leaky": (lambda: kn.LeakyReLU(0.2), abrelu_maps(0.2, 1.0), 1.0),
    "erf": (kn.Erf, erf_maps(), 1.0),
    # degree-400 Gauss-Hermite is converged for variances <= 1: inputs scaled so (test_mlp)
    "tanh": (kn.Tanh, gh_maps(np.tanh, lambda t: 1 / np.cosh(t) ** 2, 400), 0.3),
}
RTOL = {"relu": 1e-12, "leaky": 1e-12, "erf": 1e-12, "tanh": 1e-11}
MLP_SW = [1.5, 2.0, 1.2, 0.8]
MLP_SB = [0.1, 0.0, 0.3, 0.05]
RES_SW = [1.3, 2.0, 1.5, 2.5, 0.7]
RES_SB = [0.2, 0.1, 0.0, 0.3, 0.05]


def _close(got, want, rtol, atol=1e-15):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def _scaled_close(a, b, tol, diag=None):
    """|a - b| <= tol sqrt(K_ii K_jj) (the fast path's accuracy, as in test_mlp); ``diag``:
    the (row, column) diagonals for a cross kernel."""
    for k, (u, v) in enumerate(((a.nngp, b.nngp), (a.ntk, b.ntk))):
        dr, dc = (np.diag(v), np.diag(v)) if diag is None else diag[k]
        bound = tol * np.sqrt(np.outer(dr, dc))
        assert np.all(np.abs(u - v) <= bound), np.max(np.abs(u - v))


# ----------------------------------------------------------------------------------------------
# the NumPy recursion
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", list(MAPS))
def test_mlp_matches_numpy_recursion(act):
    make, maps, scale = MAPS[act]
    sw = [1.2, 1.6, 0.9, 1.1] if act == "tanh" else MLP_SW
    net = kn.MLP(3, make(), weight_var=sw, bias_var=MLP_SB)
    x1, x2 = scale * X1, scale * X2
    for xb in (None, x2):
        K, T = ref.mlp(maps, x1, xb, sw, MLP_SB)
        k = net.kernels(x1, xb)
        _close(k.nngp, K, RTOL[act])
        _close(k.ntk, T, RTOL[act])


@pytest.mark.parametrize("act", list(MAPS))
def test_resnet_matches_numpy_recursion(act):
    make, maps, scale = MAPS[act]
    alphas = [0.8, 0.5, 0.3]
    net = kn.ResNet(3, make(), weight_var=RES_SW, bias_var=RES_SB, branch_scale=alphas)
    x1, x2 = scale * X1, scale * X2
    for xb in (None, x2):
        K, T = ref.resnet(maps, x1, xb, RES_SW, RES_SB, alphas)
        k = net.kernels(x1, xb)
        _close(k.nngp, K, RTOL[act])
        _close(k.ntk, T, RTOL[act])


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
@pytest.mark.parametrize("act", ["relu", "erf"])
def test_trajectory_matches_numpy_recursion(arch, act):
    make, maps, _ = MAPS[act]
    if arch == "mlp":
        net = kn.MLP(3, make(), weight_var=MLP_SW, bias_var=MLP_SB)
        recs = ref.mlp(maps, X1, None, MLP_SW, MLP_SB, record=True)
    else:
        net = kn.ResNet(3, make(), weight_var=RES_SW, bias_var=RES_SB)
        recs = ref.resnet(maps, X1, None, RES_SW, RES_SB, [3 ** -0.5] * 3, record=True)
    tr = net.trajectory(X1)
    for k, (K, T) in enumerate(recs):
        _close(tr.nngp[k], K, 1e-12)
        _close(tr.ntk[k], T, 1e-12)
        rho = K / np.sqrt(np.outer(np.diag(K), np.diag(K)))
        _close(tr.correlation[k], rho, 1e-12, 1e-14)
    sub = net.trajectory(X1, layers=[1, 3], ntk=False)
    _close(sub.nngp[1], recs[3][0], 1e-12)


@pytest.mark.parametrize("cls", ["mlp", "resnet"])
def test_equal_per_layer_values_are_bit_identical_to_a_scalar(cls):
    x = RNG.standard_normal((7, 3))
    if cls == "mlp":
        a = kn.MLP(4, kn.Erf(), weight_var=1.7, bias_var=0.2)
        b = kn.MLP(4, kn.Erf(), weight_var=[1.7] * 5, bias_var=np.full(5, 0.2))
    else:
        a = kn.ResNet(4, kn.ReLU(), weight_var=1.7, bias_var=0.2, input_weight_var=1.3,
                      readout_bias_var=0.1)
        b = kn.ResNet(4, kn.ReLU(), weight_var=[1.3, 1.7, 1.7, 1.7, 1.7, 1.0],
                      bias_var=[0.0, 0.2, 0.2, 0.2, 0.2, 0.1])
    for ka, kb in ((a.kernels(x), b.kernels(x)), (a.kernels(x, x[:3] * 1.5),
                                                  b.kernels(x, x[:3] * 1.5))):
        np.testing.assert_array_equal(ka.nngp, kb.nngp)
        np.testing.assert_array_equal(ka.ntk, kb.ntk)
    np.testing.assert_array_equal(a.trajectory(x).ntk, b.trajectory(x).ntk)
    ra = mc.monte_carlo(a, x, width=6, samples=3, seed=2, progress=False)
    rb = mc.monte_carlo(b, x, width=6, samples=3, seed=2, progress=False)
    np.testing.assert_array_equal(ra.ntk, rb.ntk)
    ga = mc.simulate_paths(a, x[:2], width=6, samples=3, seed=2, method="gram", progress=False)
    gb = mc.simulate_paths(b, x[:2], width=6, samples=3, seed=2, method="gram", progress=False)
    np.testing.assert_array_equal(ga.gram, gb.gram)


# ----------------------------------------------------------------------------------------------
# the ResNet's orders and keywords
# ----------------------------------------------------------------------------------------------
def test_resnet_full_list_sets_input_and_readout():
    full = kn.ResNet(3, kn.Erf(), weight_var=RES_SW, bias_var=RES_SB)
    assert full.input_weight_var == 1.3 and full.readout_weight_var == 0.7
    assert full.weight_var == (2.0, 1.5, 2.5)
    assert full.input_bias_var == 0.2 and full.readout_bias_var == 0.05
    split = kn.ResNet(3, kn.Erf(), weight_var=[2.0, 1.5, 2.5], bias_var=[0.1, 0.0, 0.3],
                      input_weight_var=1.3, readout_weight_var=0.7, input_bias_var=0.2,
                      readout_bias_var=0.05)
    assert full == split
    np.testing.assert_array_equal(full.ntk(X1), split.ntk(X1))
    # dataclasses.replace keeps the object valid (the stored form round-trips)
    again = dataclasses.replace(full, depth=3)
    assert again == full
    assert dataclasses.replace(full, readout_weight_var=2.0).readout_weight_var == 2.0


@pytest.mark.parametrize("kw", ["input_weight_var", "readout_weight_var"])
def test_resnet_full_weight_list_with_explicit_end_keyword_is_refused(kw):
    with pytest.raises(ValueError, match=f"weight_var has 5 values.*do not also give {kw}=1.0"):
        kn.ResNet(3, kn.ReLU(), weight_var=RES_SW, **{kw: 1.0})


@pytest.mark.parametrize("kw", ["input_bias_var", "readout_bias_var"])
def test_resnet_full_bias_list_with_explicit_end_keyword_is_refused(kw):
    with pytest.raises(ValueError, match=f"bias_var has 5 values.*do not also give {kw}=0.0"):
        kn.ResNet(3, kn.ReLU(), bias_var=RES_SB, **{kw: 0.0})


def test_resnet_default_ends_are_unchanged():
    net = kn.ResNet(3, kn.ReLU())
    assert (net.input_weight_var, net.readout_weight_var) == (1.0, 1.0)
    assert (net.input_bias_var, net.readout_bias_var) == (0.0, 0.0)
    assert net.weight_var == 2.0 and net.bias_var == 0.0


# ----------------------------------------------------------------------------------------------
# fast path, blockwise, predict
# ----------------------------------------------------------------------------------------------
def test_fast_path_with_per_layer_variances():
    x = np.random.default_rng(3).standard_normal((40, 5))
    x[1] = 2.0 * x[0]
    x[2] = -0.5 * x[0]
    sw = np.linspace(1.5, 2.5, 61)
    net = kn.MLP(60, kn.LeakyReLU(0.1), weight_var=sw, bias_var=0.0)
    slow, fast = net.kernels(x, fast=False), net.kernels(x, fast=True)
    _scaled_close(fast, slow, 1e-12)
    K, T = ref.mlp(abrelu_maps(0.1, 1.0), x[3:9], None, list(sw), [0.0] * 61)
    _close(fast.nngp[3:9, 3:9], K, 1e-11)
    _close(fast.ntk[3:9, 3:9], T, 1e-11)
    res = kn.ResNet(50, kn.ReLU(), weight_var=np.linspace(0.5, 3.0, 52),
                    branch_scale=np.linspace(0.05, 0.2, 50))
    _scaled_close(res.kernels(x, fast=True), res.kernels(x, fast=False), 1e-12)
    # cross kernel
    dn, dt = np.diag(slow.nngp), np.diag(slow.ntk)
    _scaled_close(net.kernels(x[:9], x[9:], fast=True), net.kernels(x[:9], x[9:], fast=False),
                  1e-12, diag=((dn[:9], dn[9:]), (dt[:9], dt[9:])))


def test_fast_path_refused_with_a_bias_in_one_layer():
    x = np.random.default_rng(3).standard_normal((40, 5))
    sb = [0.0] * 41
    sb[17] = 0.01
    net = kn.MLP(40, kn.ReLU(), bias_var=sb)
    with pytest.raises(ValueError, match="fast=True needs a bias-free"):
        net.kernels(x, fast=True)
    with pytest.raises(ValueError, match="fast=True needs a bias-free"):
        net.kernels(x, fast=True, out=(np.zeros((40, 40)), None))
    np.testing.assert_array_equal(net.kernels(x).ntk, net.kernels(x, fast=False).ntk)


def test_blockwise_and_diagonal_equal_whole():
    x = np.random.default_rng(4).standard_normal((23, 3))
    net = kn.MLP(4, kn.Tanh(), weight_var=[1.0, 2.0, 1.5, 0.5, 1.3],
                 bias_var=[0.1, 0.0, 0.2, 0.1, 0.3])
    whole = net.kernels(x)
    outs = (np.zeros((23, 23)), np.zeros((23, 23)))
    net.kernels(x, out=outs, tile=6)
    np.testing.assert_array_equal(outs[0], whole.nngp)
    np.testing.assert_array_equal(outs[1], whole.ntk)
    d = net.kernels(x, diagonal=True)
    np.testing.assert_array_equal(d.ntk, np.diag(whole.ntk))


def test_predict_with_per_layer_variances():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((9, 3)), rng.standard_normal(9)
    net = kn.ResNet(3, kn.Erf(), weight_var=RES_SW, bias_var=RES_SB)
    p = kn.predict(net, x[:6], y[:6], x[6:], kind="nngp")
    K = net.nngp(x)
    _close(p.mean, K[6:, :6] @ np.linalg.solve(K[:6, :6], y[:6]), 1e-10)


# ----------------------------------------------------------------------------------------------
# Monte Carlo
# ----------------------------------------------------------------------------------------------
_draw_fn, PHI = ref.draw_fn, ref.PHI


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
@pytest.mark.parametrize("act", ["relu", "erf", "tanh"])
def test_monte_carlo_sample_is_the_gradient_of_a_finite_network(arch, act):
    """One sampled network with per-layer variances: its empirical NTK equals J J^T of the same
    network written out in NumPy (Jacobian by central differences w.r.t. the N(0, 1) variables
    of the NTK parameterization)."""
    n, d, seed = 5, 4, 13
    x = np.random.default_rng(2).standard_normal((3, d))
    make, phi = PHI[act]
    if arch == "mlp":
        sw2, sb2, alphas = [1.7, 1.2, 2.0, 0.9], [0.3, None, 0.2, 0.4], None
        net = kn.MLP(3, make(), weight_var=sw2, bias_var=sb2)
    else:
        sw2, sb2, alphas = [1.1, 1.3, 0.8, 1.6, 0.7], [0.1, 0.2, 0.0, 0.1, 0.4], [0.9, 0.5, 0.7]
        net = kn.ResNet(3, make(), weight_var=sw2, bias_var=sb2, branch_scale=alphas)
    r = mc.monte_carlo(net, x, width=n, samples=1, seed=seed, method="weights",
                       keep_samples=True, progress=False)
    params, scales = ref.finite_params(_draw_fn(seed), arch, sw2, sb2, n, d, "ntk", alphas)
    expect = ref.fd_ntk(lambda p: ref.finite_forward(arch, phi, p, scales, x), params)
    np.testing.assert_allclose(r.ntk_samples[0], expect, rtol=2e-7,
                               atol=2e-7 * np.abs(expect).max())


def _fit_inverse_width(widths, dev, se):
    """Weighted least squares of dev = a / w + b; returns (a, b, se_b, residuals / se)."""
    A = np.stack([1.0 / np.asarray(widths, float), np.ones(len(widths))], axis=1)
    Wt = 1.0 / se
    coef, *_ = np.linalg.lstsq(A * Wt[:, None], dev * Wt, rcond=None)
    cov = np.linalg.inv((A * Wt[:, None]).T @ (A * Wt[:, None]))
    return coef[0], coef[1], math.sqrt(cov[1, 1]), (dev - A @ coef) / se


@pytest.mark.parametrize("case", ["mlp-relu-weights", "resnet-erf-weights", "mlp-erf-gram",
                                  "resnet-relu-gram"])
def test_monte_carlo_converges_to_the_kernels(case):
    arch, act, method = case.split("-")
    x = np.array([[1.0, 0.0, 0.0], [0.3, 0.9, -0.3]])
    make = PHI[act][0]
    if arch == "mlp":
        net = kn.MLP(3, make(), weight_var=[1.0, 2.5, 1.5, 0.8], bias_var=[0.1, 0.0, 0.2, 0.05])
    else:
        net = kn.ResNet(3, make(), weight_var=[1.0, 1.5, 3.0, 0.5, 1.2],
                        bias_var=[0.0, 0.1, 0.0, 0.3, 0.1], branch_scale=[0.9, 0.6, 0.3])
    K = net.kernels(x)
    ntk = method == "weights"
    widths, samples = [4, 8, 16, 32], [3000, 2000, 1200, 600]
    for name in (("nngp", "ntk") if ntk else ("nngp",)):
        dev, se = [], []
        for w, S in zip(widths, samples):
            r = mc.monte_carlo(net, x, width=w, samples=S, seed=w, ntk=ntk, method=method,
                               progress=False)
            dev.append(getattr(r, name)[0, 1] - getattr(K, name)[0, 1])
            se.append(getattr(r, name + "_stderr")[0, 1])
        dev, se = np.array(dev), np.array(se)
        a, b, se_b, res = _fit_inverse_width(widths, dev, se)
        assert np.all(np.abs(res) < Z), (name, dev, se, a, b)
        assert abs(b) < Z * se_b, (name, b, se_b)


def test_gram_and_weights_samplers_agree_in_law():
    x = np.array([[1.0, 0.0, 0.5], [0.6, 0.8, -0.2]])
    net = kn.MLP(4, kn.ReLU(), weight_var=[1.0, 3.0, 1.0, 2.5, 1.5],
                 bias_var=[0.0, 0.2, 0.0, 0.1, 0.3])
    S, n = 3000, 16
    a = mc.simulate_paths(net, x, width=n, samples=S, seed=1, method="gram", progress=False)
    b = mc.simulate_paths(net, x, width=n, samples=S, seed=2, method="weights", progress=False)
    for l in (1, 2, 4):
        ra, rb = a.rho[:, l], b.rho[:, l]
        assert stats.ks_2samp(ra, rb).pvalue > 1e-3
        ga, gb = a.gram[:, l, 0, 0], b.gram[:, l, 0, 0]
        assert stats.ks_2samp(ga, gb).pvalue > 1e-3
        # the mean Gram of layer l approaches the per-layer kernel K_{l+1}
    tr = net.trajectory(x)
    g = a.gram[:, 1].mean(0)
    se = a.gram[:, 1].std(0, ddof=1) / math.sqrt(S)
    # layer 1 given layer 0 is exact in the mean for a ReLU: E[G_1] = sw2_1 E[relu(h)relu(h')]
    # + sb2_1 with h ~ N(0, K_1) -- the infinite-width value
    assert np.all(np.abs(g - tr.nngp[1]) < Z * se + 1e-12)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["weight_var", "bias_var"])
@pytest.mark.parametrize("value,exc,match", [
    ([1.0, 2.0], ValueError, r"{} must be a scalar or have 4 values .*got 2 values"),
    ([1.0] * 5, ValueError, r"{} must be a scalar or have 4 values .*got 5 values"),
    ([], ValueError, r"{} must be a scalar or have 4 values .*got 0 values"),
    ([1.0, -0.5, 1.0, 1.0], ValueError, r"{}\[1\] must be >= 0, got -0.5"),
    ([1.0, 1.0, np.nan, 1.0], ValueError, r"{}\[2\] must be finite, got nan"),
    ([1.0, 1.0, 1.0, np.inf], ValueError, r"{}\[3\] must be finite, got inf"),
    ([1.0, "a", 1.0, 1.0], TypeError, r"{}\[1\] must be a real number, got str"),
    (np.ones((2, 2)), ValueError, r"{} must be a scalar or a 1-d sequence.*shape \(2, 2\)"),
    (-1.0, ValueError, r"{} must be >= 0, got -1.0"),
    (np.nan, ValueError, r"{} must be finite"),
    ("2", TypeError, r"{} must be a real number, got str"),
    (object(), TypeError, r"{} must be a number or a sequence of numbers"),
])
def test_bad_mlp_variances(name, value, exc, match):
    with pytest.raises(exc, match=match.format(name)):
        kn.MLP(3, kn.ReLU(), **{name: value})


def test_none_is_not_a_weight_variance():
    with pytest.raises(TypeError, match="weight_var must be a real number, got NoneType"):
        kn.MLP(3, kn.ReLU(), weight_var=None)
    with pytest.raises(TypeError, match=r"weight_var\[1\] must be a real number, got NoneType"):
        kn.MLP(2, kn.ReLU(), weight_var=[1.0, None, 1.0])


@pytest.mark.parametrize("value,match", [
    ([1.0] * 4, r"weight_var must be a scalar or have 3 or 5 values .*got 4 values"),
    ([1.0] * 6, r"got 6 values"),
    ([1.0, 1.0, -2.0], r"weight_var\[2\] must be >= 0"),
])
def test_bad_resnet_variances(value, match):
    with pytest.raises(ValueError, match=match):
        kn.ResNet(3, kn.ReLU(), weight_var=value)


def test_bad_resnet_end_variances():
    with pytest.raises(ValueError, match="input_weight_var must be >= 0"):
        kn.ResNet(3, kn.ReLU(), input_weight_var=-1.0)
    with pytest.raises(TypeError, match="readout_weight_var must be a real number"):
        kn.ResNet(3, kn.ReLU(), readout_weight_var=None)
    with pytest.raises(ValueError, match="readout_bias_var must be finite"):
        kn.ResNet(3, kn.ReLU(), readout_bias_var=float("inf"))


def test_which_limit_refuses_per_layer_variances():
    from limits.which_limit import which_limit
    x = np.array([[1.0, 0.0], [0.6, 0.8]])
    for net in (kn.MLP(1, kn.ReLU(), weight_var=[1.0, 2.0]),
                kn.ResNet(2, kn.ReLU(), readout_bias_var=None, parameterization="standard",
                          width=8)):
        with pytest.raises(ValueError, match="which_limit needs scalar variances"):
            which_limit(net, x, width=8, samples=10)
