"""The standard parameterization (``parameterization="standard"``, ``width``), theory/kernels.md
§5b.

Expected values come from outside the package: neural-tangents 0.6.5 outputs
(data/nt_parameterization.json, made by data/make_nt_parameterization.py), the plain-NumPy
recursions of _param_reference.py (written from §5b), exact homogeneity identities, and finite
networks with explicit parameters differentiated by central differences.  Statistical
tolerances are multiples of the Monte Carlo standard error at fixed seeds.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest

import kernels as kn
from kernels import montecarlo as mc
from tests._reference import abrelu_maps, erf_maps, gh_maps
from tests.kernels import _param_reference as ref

DATA = Path(__file__).with_name("data") / "nt_parameterization.json"
NT = json.loads(DATA.read_text())
X1 = np.array(NT["inputs"]["x1"])
X2 = np.array(NT["inputs"]["x2"])
ACT = {"relu": kn.ReLU, "erf": kn.Erf}
Z = 4.0         # standard errors allowed in statistical comparisons


def _nt_net(c):
    act = ACT[c["act"]]()
    if c["arch"] == "mlp":
        return kn.MLP(len(c["weight_var"]) - 1, act, weight_var=c["weight_var"],
                      bias_var=c["bias_var"], parameterization=c["param"], width=c["width"])
    return kn.ResNet(len(c["alphas"]), act, weight_var=c["weight_var"], bias_var=c["bias_var"],
                     branch_scale=c["alphas"], parameterization=c["param"], width=c["width"])


def _close(got, want, rtol, atol=0.0):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def _scaled_close(a, b, tol):
    """|a - b| <= tol sqrt(b_ii b_jj) for NNGP and NTK: the fast path's accuracy (relative to
    the scale of the pair, as in test_mlp)."""
    for u, v in ((a.nngp, b.nngp), (a.ntk, b.ntk)):
        dg = np.sqrt(np.diag(v))
        assert np.all(np.abs(u - v) <= tol * np.outer(dg, dg)), np.max(np.abs(u - v))


# ----------------------------------------------------------------------------------------------
# neural-tangents 0.6.5
# ----------------------------------------------------------------------------------------------
def test_reference_file_records_its_origin():
    assert NT["versions"]["neural_tangents"] == "0.6.5"
    assert "make_nt_parameterization.py" in NT["command"]
    rng = np.random.default_rng(NT["inputs"]["seed"])
    np.testing.assert_array_equal(rng.standard_normal((5, 4)), X1)
    np.testing.assert_array_equal(rng.standard_normal((3, 4)), X2)
    names = {c["name"] for c in NT["cases"]}
    for need in ("mlp_relu_standard_bias", "mlp_relu_standard_zero_bias",
                 "mlp_relu_standard_no_bias", "resnet_relu_standard_no_bias",
                 "mlp_erf_perlayer_ntk", "resnet_relu_perlayer_ntk"):
        assert need in names


@pytest.mark.parametrize("case", NT["cases"], ids=[c["name"] for c in NT["cases"]])
@pytest.mark.parametrize("which", ["self", "cross"])
def test_matches_neural_tangents(case, which):
    net = _nt_net(case)
    k = net.kernels(X1, None if which == "self" else X2)
    # every entry (the diagonal included) to 1e-12 relative
    _close(k.nngp, np.array(case[which]["nngp"]), 1e-12)
    _close(k.ntk, np.array(case[which]["ntk"]), 1e-12)


def test_zero_initialised_biases_differ_from_no_biases():
    # neural-tangents: b_std = 0.0 is a trained bias (adds 1 per layer), b_std = None is none;
    # same NNGP
    by = {c["name"]: c for c in NT["cases"]}
    zero, none = by["mlp_relu_standard_zero_bias"], by["mlp_relu_standard_no_bias"]
    _close(np.array(zero["self"]["nngp"]), np.array(none["self"]["nngp"]), 1e-14)
    assert np.all(np.array(zero["self"]["ntk"]) > np.array(none["self"]["ntk"]) + 1.0)
    net0 = kn.MLP(3, kn.ReLU(), bias_var=0.0, parameterization="standard", width=64)
    netn = kn.MLP(3, kn.ReLU(), bias_var=None, parameterization="standard", width=64)
    assert net0.bias_var == 0.0 and netn.bias_var is None
    assert np.all(net0.ntk(X1) > netn.ntk(X1) + 1.0)


# ----------------------------------------------------------------------------------------------
# the plain-NumPy recursion of §5b
# ----------------------------------------------------------------------------------------------
MAPS = {
    "relu": (kn.ReLU, abrelu_maps(0.0, 1.0), 1.0),
    "leaky": (lambda: kn.LeakyReLU(0.2), abrelu_maps(0.2, 1.0), 1.0),
    "erf": (kn.Erf, erf_maps(), 1.0),
    # tensor Gauss-Hermite of degree 400 is converged to rounding for variances <= 1: inputs
    # scaled so, and the library's rule is good to ~1e-12 there (test_mlp)
    "tanh": (kn.Tanh, gh_maps(np.tanh, lambda t: 1 / np.cosh(t) ** 2, 400), 0.3),
}
RTOL = {"relu": 1e-12, "leaky": 1e-12, "erf": 1e-12, "tanh": 1e-11}


@pytest.mark.parametrize("act", list(MAPS))
@pytest.mark.parametrize("bias", ["bias", "zero", "none", "mixed"])
def test_standard_mlp_matches_numpy_recursion(act, bias):
    make, maps, scale = MAPS[act]
    sw2 = [1.2, 1.6, 0.9, 1.1] if act == "tanh" else [1.5, 2.0, 1.2, 0.8]
    sb2 = {"bias": [0.1, 0.05, 0.2, 0.1], "zero": [0.0] * 4, "none": [None] * 4,
           "mixed": [0.1, None, 0.0, 0.05]}[bias]
    widths = [50, 200, 100]
    x1, x2 = scale * X1, scale * X2
    net = kn.MLP(3, make(), weight_var=sw2, bias_var=sb2, parameterization="standard",
                 width=widths)
    for xb in (None, x2):
        K, T = ref.mlp(maps, x1, xb, sw2, sb2, "standard", widths)
        k = net.kernels(x1, xb)
        _close(k.nngp, K, RTOL[act], 1e-15)
        _close(k.ntk, T, RTOL[act], 1e-15)


@pytest.mark.parametrize("act", list(MAPS))
@pytest.mark.parametrize("bias", ["bias", "zero", "none", "mixed"])
def test_standard_resnet_matches_numpy_recursion(act, bias):
    make, maps, scale = MAPS[act]
    sw2 = [1.0, 2.0, 1.5, 0.5, 1.3]
    sb2 = {"bias": [0.1, 0.05, 0.2, 0.1, 0.3], "zero": [0.0] * 5, "none": [None] * 5,
           "mixed": [None, 0.1, 0.0, None, 0.2]}[bias]
    alphas = [0.8, 0.5, 0.3]
    x1, x2 = scale * X1, scale * X2
    net = kn.ResNet(3, make(), weight_var=sw2, bias_var=sb2, branch_scale=alphas,
                    parameterization="standard", width=37)
    for xb in (None, x2):
        K, T = ref.resnet(maps, x1, xb, sw2, sb2, alphas, "standard", 37)
        k = net.kernels(x1, xb)
        _close(k.nngp, K, RTOL[act], 1e-15)
        _close(k.ntk, T, RTOL[act], 1e-15)


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
def test_standard_trajectory_matches_numpy_recursion(arch):
    maps = erf_maps()
    if arch == "mlp":
        sw2, sb2 = [1.5, 2.0, 1.2, 0.8], [0.1, None, 0.0, 0.05]
        net = kn.MLP(3, kn.Erf(), weight_var=sw2, bias_var=sb2, parameterization="standard",
                     width=[20, 30, 40])
        recs = ref.mlp(maps, X1, None, sw2, sb2, "standard", [20, 30, 40], record=True)
    else:
        sw2, sb2 = [1.0, 2.0, 1.5, 0.5, 1.3], [0.2, 0.1, None, 0.0, 0.2]
        net = kn.ResNet(3, kn.Erf(), weight_var=sw2, bias_var=sb2, branch_scale=0.6,
                        parameterization="standard", width=25)
        recs = ref.resnet(maps, X1, None, sw2, sb2, [0.6] * 3, "standard", 25, record=True)
    tr = net.trajectory(X1)
    assert len(recs) == len(tr.layers) == 4
    for k, (K, T) in enumerate(recs):
        _close(tr.nngp[k], K, 1e-12, 1e-15)
        _close(tr.ntk[k], T, 1e-12, 1e-15)


def test_nngp_does_not_depend_on_parameterization_or_width():
    for make in (kn.ReLU, kn.Erf):
        ntk_net = kn.MLP(3, make(), weight_var=[1.5, 2.0, 1.2, 0.8], bias_var=0.1)
        for w in (7, 300):
            std = kn.MLP(3, make(), weight_var=[1.5, 2.0, 1.2, 0.8], bias_var=0.1,
                         parameterization="standard", width=w)
            np.testing.assert_array_equal(std.nngp(X1, X2), ntk_net.nngp(X1, X2))
            np.testing.assert_array_equal(std.kernels(X1).nngp, ntk_net.nngp(X1))


def test_standard_ntk_weight_part_is_linear_in_width():
    # Theta = n A + B for a fixed architecture (every hidden width n): exactly affine in n
    nets = [kn.MLP(3, kn.Erf(), bias_var=0.1, parameterization="standard", width=w)
            for w in (10, 20, 40)]
    T = [n.ntk(X1) for n in nets]
    _close(T[2] - T[1], 2 * (T[1] - T[0]), 1e-12)


# ----------------------------------------------------------------------------------------------
# exactly parallel inputs: neural-tangents is off by ~1e-8 there, so compare with an exact
# identity: bias-free positively homogeneous networks have K(x, a x) = a K(x, x), a > 0
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["mlp", "resnet"])
@pytest.mark.parametrize("a", [3.0, 0.3, 2.0])
def test_parallel_inputs_exact(arch, a):
    if arch == "mlp":
        net = kn.MLP(4, kn.ReLU(), weight_var=[1.5, 2.0, 1.2, 0.8, 2.2], bias_var=None,
                     parameterization="standard", width=[30, 40, 50, 60])
    else:
        net = kn.ResNet(3, kn.LeakyReLU(0.1), weight_var=[1.0, 2.0, 1.5, 0.5, 1.3],
                        bias_var=[None] * 5, parameterization="standard", width=33)
    k = net.kernels(X1, a * X1)
    d = net.kernels(X1, diagonal=True)
    _close(np.diag(k.nngp), a * d.nngp, 1e-13)
    _close(np.diag(k.ntk), a * d.ntk, 1e-13)


# ----------------------------------------------------------------------------------------------
# fast path, blockwise, predict
# ----------------------------------------------------------------------------------------------
def test_fast_path_standard_bias_free():
    x = np.random.default_rng(3).standard_normal((40, 5))
    x[1] = 2.0 * x[0]
    net = kn.MLP(60, kn.ReLU(), weight_var=np.linspace(1.5, 2.5, 61), bias_var=None,
                 parameterization="standard", width=100)
    slow = net.kernels(x, fast=False)
    fast = net.kernels(x, fast=True)
    _scaled_close(fast, slow, 1e-12)
    # a scalar bias_var is the blocks' (the input and readout layers have their own, default
    # 0.0: trained zero biases); a readout bias does not spoil the fast path
    res = kn.ResNet(50, kn.ReLU(), bias_var=None, parameterization="standard", width=64,
                    input_bias_var=None, readout_bias_var=0.3)
    slow, fast = res.kernels(x, fast=False), res.kernels(x, fast=True)
    _scaled_close(fast, slow, 1e-12)


def test_fast_path_refused_with_trained_zero_biases():
    # bias_var = 0.0 in the standard parameterization: biases are parameters (NTK + 1): not
    # homogeneous; the automatic choice falls back to the layer loop
    x = np.random.default_rng(3).standard_normal((40, 5))
    net = kn.MLP(40, kn.ReLU(), bias_var=0.0, parameterization="standard", width=100)
    with pytest.raises(ValueError, match="fast=True.*bias"):
        net.kernels(x, fast=True)
    auto, slow = net.kernels(x), net.kernels(x, fast=False)
    np.testing.assert_array_equal(auto.ntk, slow.ntk)
    K, T = ref.mlp(abrelu_maps(0.0, 1.0), x, None, [2.0] * 41, [0.0] * 41, "standard",
                   [100] * 40)
    _close(auto.ntk, T, 1e-11)


def test_blockwise_and_diagonal_equal_whole(tmp_path):
    x = np.random.default_rng(4).standard_normal((23, 3))
    net = kn.ResNet(5, kn.Erf(), weight_var=[1.0, 2.0, 1.5, 0.5, 1.3, 0.7, 1.1],
                    bias_var=[0.1, None, 0.0, 0.2, 0.1, 0.0, None],
                    parameterization="standard", width=40)
    whole = net.kernels(x)
    outs = (np.zeros((23, 23)), np.zeros((23, 23)))
    net.kernels(x, out=outs, tile=7)
    np.testing.assert_array_equal(outs[0], whole.nngp)
    np.testing.assert_array_equal(outs[1], whole.ntk)
    d = net.kernels(x, diagonal=True)
    np.testing.assert_array_equal(d.nngp, np.diag(whole.nngp))
    np.testing.assert_array_equal(d.ntk, np.diag(whole.ntk))
    pytest.importorskip("dask")
    dk = kn.dask_kernels(net, x, chunks=8)
    np.testing.assert_array_equal(dk.ntk.compute(), whole.ntk)
    np.testing.assert_array_equal(dk.nngp.compute(), whole.nngp)


def test_predict_uses_the_standard_ntk():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((9, 3)), rng.standard_normal(9)
    net = kn.MLP(2, kn.ReLU(), bias_var=0.0, parameterization="standard", width=50)
    p = kn.predict(net, x[:6], y[:6], x[6:], kind="ntk")
    T = net.ntk(x)
    _close(p.mean, T[6:, :6] @ np.linalg.solve(T[:6, :6], y[:6]), 1e-10)


# ----------------------------------------------------------------------------------------------
# Monte Carlo of finite standard-parameterised networks
# ----------------------------------------------------------------------------------------------
_draw_fn, PHI = ref.draw_fn, ref.PHI


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
@pytest.mark.parametrize("act", ["relu", "erf", "tanh"])
@pytest.mark.parametrize("bias", ["bias", "zero", "none"])
def test_monte_carlo_sample_is_the_gradient_of_a_finite_network(arch, act, bias):
    """One sampled network: its NNGP estimator and empirical NTK equal those of the same
    network written out with explicit W ~ N(0, sw2/n_in), b ~ N(0, sb2), NTK = J J^T with J
    the central-difference Jacobian w.r.t. W and b themselves."""
    # seed: no ReLU pre-activation within reach of the finite differences of a kink (seeds 11
    # and 12 kill a whole layer for one input; with zero biases the next pre-activations are
    # then exactly 0, where central differences give 1/2 and the gradient 0)
    n, d, seed = 5, 4, 13
    x = np.random.default_rng(2).standard_normal((3, d))
    make, phi = PHI[act]
    if arch == "mlp":
        sw2 = [1.7, 1.2, 2.0, 0.9]
        sb2 = {"bias": [0.3, 0.1, 0.2, 0.4], "zero": [0.0] * 4, "none": [None] * 4}[bias]
        net = kn.MLP(3, make(), weight_var=sw2, bias_var=sb2, parameterization="standard",
                     width=n)
        alphas = None
    else:
        sw2 = [1.1, 1.3, 0.8, 1.6, 0.7]
        sb2 = {"bias": [0.1, 0.2, 0.3, 0.1, 0.4], "zero": [0.0] * 5, "none": [None] * 5}[bias]
        alphas = [0.9, 0.5, 0.7]
        net = kn.ResNet(3, make(), weight_var=sw2, bias_var=sb2, branch_scale=alphas,
                        parameterization="standard", width=n)
    r = mc.monte_carlo(net, x, samples=1, seed=seed, method="weights", keep_samples=True,
                       progress=False)
    assert r.width == n
    params, scales = ref.finite_params(_draw_fn(seed), arch, sw2, sb2, n, d, "standard",
                                       alphas)

    def forward(p):
        return ref.finite_forward(arch, phi, p, scales, x)

    expect = ref.fd_ntk(forward, params)
    np.testing.assert_allclose(r.ntk_samples[0], expect, rtol=2e-7,
                               atol=2e-7 * np.abs(expect).max())
    # NNGP estimator: E[f f' | last hidden layer] (the readout's weights integrated out)
    np.testing.assert_allclose(
        r.nngp_samples[0], _nngp_given_last_layer(arch, phi, params, scales, x, sw2, sb2, n),
        rtol=1e-12, atol=1e-12)


def _nngp_given_last_layer(arch, phi, params, scales, x, sw2, sb2, n):
    dense = len(params) // 2
    W = [scales[2 * l] * params[2 * l] for l in range(dense)]
    b = [scales[2 * l + 1] * params[2 * l + 1] for l in range(dense)]
    h = x @ W[0].T + b[0]
    for l in range(1, dense - 1):
        h = (phi(h) @ W[l].T + b[l]) if arch == "mlp" else h + phi(h) @ W[l].T + b[l]
    u = phi(h) if arch == "mlp" else h
    bv = 0.0 if sb2[-1] is None else sb2[-1]
    return sw2[-1] * u @ u.T / n + bv


def _fit_inverse_width(widths, dev, se):
    """Weighted least squares of dev = a / w + b; returns (a, b, se_b, residuals / se)."""
    A = np.stack([1.0 / np.asarray(widths, float), np.ones(len(widths))], axis=1)
    Wt = 1.0 / se
    coef, *_ = np.linalg.lstsq(A * Wt[:, None], dev * Wt, rcond=None)
    cov = np.linalg.inv((A * Wt[:, None]).T @ (A * Wt[:, None]))
    return coef[0], coef[1], math.sqrt(cov[1, 1]), (dev - A @ coef) / se


@pytest.mark.parametrize("arch", ["mlp", "resnet"])
def test_monte_carlo_converges_to_the_standard_kernels(arch):
    """At each width n the finite standard network's mean NTK approaches the kernel of the
    same width (relative deviation a / n + b with b = 0 within its standard error)."""
    x = np.array([[1.0, 0.0, 0.0], [0.3, 0.9, -0.3]])
    widths, samples = [4, 8, 16, 32], [3000, 2000, 1200, 600]
    for name in ("nngp", "ntk"):
        dev, se = [], []
        for w, S in zip(widths, samples):
            if arch == "mlp":
                net = kn.MLP(3, kn.ReLU(), weight_var=[1.0, 2.0, 1.5, 1.0],
                             bias_var=[0.1, 0.0, None, 0.2], parameterization="standard",
                             width=w)
            else:
                net = kn.ResNet(3, kn.Erf(), weight_var=[1.0, 1.5, 2.0, 1.0, 1.2],
                                bias_var=[0.0, 0.1, None, 0.2, 0.1],
                                parameterization="standard", width=w)
            K = getattr(net.kernels(x), name)
            r = mc.monte_carlo(net, x, samples=S, seed=w, progress=False)
            dev.append((getattr(r, name)[0, 1] - K[0, 1]) / K[0, 1])
            se.append(getattr(r, name + "_stderr")[0, 1] / abs(K[0, 1]))
        dev, se = np.array(dev), np.array(se)
        a, b, se_b, res = _fit_inverse_width(widths, dev, se)
        assert np.all(np.abs(res) < Z), (name, dev, se, a, b)
        assert abs(b) < Z * se_b, (name, b, se_b)
        assert abs(dev[-1]) < Z * se[-1] + abs(a) / widths[-1]


def test_monte_carlo_width_defaults_to_the_networks():
    x = X1[:3]
    net = kn.MLP(2, kn.ReLU(), parameterization="standard", width=6)
    a = mc.monte_carlo(net, x, samples=3, seed=1, progress=False)
    b = mc.monte_carlo(net, x, width=6, samples=3, seed=1, progress=False)
    assert a.width == 6
    np.testing.assert_array_equal(a.ntk, b.ntk)
    p = mc.simulate_paths(net, x, samples=2, seed=1, progress=False)
    assert p.width == 6
    with pytest.raises(ValueError, match="width=8 differs from the network's width=6"):
        mc.monte_carlo(net, x, width=8, samples=3, progress=False)
    with pytest.raises(ValueError, match="width=8 differs"):
        mc.simulate_paths(net, x, width=8, samples=3, progress=False)
    varying = kn.MLP(2, kn.ReLU(), parameterization="standard", width=[6, 7])
    with pytest.raises(ValueError, match="one hidden width.*varies by layer"):
        mc.monte_carlo(varying, x, samples=3, progress=False)
    with pytest.raises(TypeError, match="width is required"):
        mc.monte_carlo(kn.MLP(2, kn.ReLU()), x, samples=3, progress=False)
    with pytest.raises(TypeError, match="samples is required"):
        mc.monte_carlo(net, x, progress=False)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [kn.MLP, kn.ResNet])
@pytest.mark.parametrize("value,exc", [("NTK", ValueError), ("std", ValueError),
                                       ("", ValueError), (None, TypeError), (1, TypeError)])
def test_unknown_parameterization(cls, value, exc):
    with pytest.raises(exc, match=f"parameterization must be 'ntk' or 'standard', got "
                                  f"(int: |NoneType: )?{value!r}"):
        cls(2, kn.ReLU(), parameterization=value, width=4)


@pytest.mark.parametrize("cls", [kn.MLP, kn.ResNet])
def test_standard_needs_width(cls):
    with pytest.raises(ValueError, match="width is required in the standard parameterization"):
        cls(2, kn.ReLU(), parameterization="standard")


@pytest.mark.parametrize("width,exc,match", [
    (0, ValueError, "width must be >= 1, got 0"),
    (-3, ValueError, "width must be >= 1, got -3"),
    (2.5, TypeError, "width must be an integer, got float: 2.5"),
    ("8", TypeError, "width must be an integer, got str"),
    (True, TypeError, "width must be an integer, got bool"),
    ([4, 5], ValueError, r"width must be an int or have 3 values .*got 2 values"),
    ([4, 0, 5], ValueError, r"width\[1\] must be >= 1, got 0"),
    ([4, 5.5, 6], TypeError, r"width\[1\] must be an integer"),
    (np.ones((3, 1), int), ValueError, "1-d"),
])
def test_bad_mlp_width(width, exc, match):
    with pytest.raises(exc, match=match):
        kn.MLP(3, kn.ReLU(), parameterization="standard", width=width)


def test_bad_resnet_width():
    with pytest.raises(TypeError, match="width must be one int"):
        kn.ResNet(3, kn.ReLU(), parameterization="standard", width=[4, 4, 4])
    with pytest.raises(ValueError, match="width must be >= 1"):
        kn.ResNet(3, kn.ReLU(), parameterization="standard", width=0)


def test_width_is_checked_in_the_ntk_parameterization_too():
    assert kn.MLP(2, kn.ReLU(), width=[3, 4]).width == (3, 4)
    with pytest.raises(ValueError, match="width"):
        kn.MLP(2, kn.ReLU(), width=0)


@pytest.mark.parametrize("cls", [kn.MLP, kn.ResNet])
def test_standard_ntk_from_K0_is_refused(cls):
    net = cls(2, kn.ReLU(), parameterization="standard", width=8)
    K0 = X1 @ X1.T / X1.shape[1]
    for call in (lambda: net.ntk(K0=K0), lambda: net.kernels(K0=K0),
                 lambda: net.trajectory(K0=K0), lambda: net.kernels(K0=K0, diagonal=True)):
        with pytest.raises(ValueError, match="K0 cannot give the NTK in the standard "
                                             "parameterization.*input dimension"):
            call()
    # the NNGP does not need d
    _close(net.nngp(K0=K0), net.nngp(X1), 1e-13)
    tr = net.trajectory(K0=K0, ntk=False)
    _close(tr.nngp[-1], net.trajectory(X1, ntk=False).nngp[-1], 1e-13)


def test_none_bias_means_zero_in_the_ntk_parameterization():
    a = kn.MLP(2, kn.Erf(), bias_var=None)
    b = kn.MLP(2, kn.Erf(), bias_var=0.0)
    assert a == b and a.bias_var == 0.0
    r = kn.ResNet(2, kn.Erf(), bias_var=[None, 0.1], readout_bias_var=None)
    assert r.bias_var == (0.0, 0.1) and r.readout_bias_var == 0.0
