"""kernels.gp: log marginal likelihood against scipy.stats.multivariate_normal, its gradient
against central differences of the value, and maximum-likelihood fits on data drawn from a known
NNGP prior."""
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

import kernels as kn
from kernels import gp


def _x(n, d=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


def _draw(net, x, noise_var, k, seed):
    """k independent columns from N(0, K + noise_var I)."""
    C = net.nngp(x) + noise_var * np.eye(len(x))
    L = np.linalg.cholesky(C)
    return L @ np.random.default_rng(seed).standard_normal((len(x), k))


NETS = [kn.MLP(depth=2, activation=kn.ReLU(), weight_var=1.6, bias_var=0.2),
        kn.MLP(depth=3, activation=kn.Erf(), weight_var=2.5, bias_var=0.05),
        kn.ResNet(depth=3, activation=kn.Tanh(), weight_var=1.2, bias_var=0.1)]


@pytest.mark.parametrize("net", NETS, ids=["relu", "erf", "resnet-tanh"])
@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_value_is_the_gaussian_log_density(net, kind):
    x = _x(12)
    y = np.stack([np.sin(x[:, 0]), x[:, 1] ** 2 - 1, np.cos(x[:, 2])], 1)
    K = net.nngp(x) if kind == "nngp" else net.ntk(x)
    C = K + 0.05 * np.eye(12)
    expect = sum(stats.multivariate_normal(np.zeros(12), C).logpdf(y[:, c]) for c in range(3))
    got = gp.log_marginal_likelihood(net, x, y, 0.05, kind=kind)
    assert got == pytest.approx(expect, rel=1e-11, abs=1e-11)
    one = gp.log_marginal_likelihood(net, x, y[:, 1], 0.05, kind=kind)
    assert one == pytest.approx(stats.multivariate_normal(np.zeros(12), C).logpdf(y[:, 1]),
                                rel=1e-11, abs=1e-11)


def _central(net, x, y, noise, kind, name, h):
    def f(v):
        if name == "noise_var":
            return gp.log_marginal_likelihood(net, x, y, v, kind=kind)
        m = type(net)(**{**{f.name: getattr(net, f.name) for f in
                            net.__dataclass_fields__.values()}, name: v})
        return gp.log_marginal_likelihood(m, x, y, noise, kind=kind)
    v0 = noise if name == "noise_var" else getattr(net, name)
    hv = h * v0
    return (f(v0 + hv) - f(v0 - hv)) / (2 * hv), (f(v0 + 2 * hv) - f(v0 - 2 * hv)) / (4 * hv)


@pytest.mark.parametrize("net", NETS, ids=["relu", "erf", "resnet-tanh"])
@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_gradient_against_central_differences(net, kind):
    """Central differences with steps h and 2h (relative 1e-4): their O(h^2) truncation error is
    estimated from the two (Richardson) and the analytic gradient must lie within 4 times that
    plus 1e-7 relative rounding (the values are O(10), computed to ~1e-13)."""
    x = _x(10, seed=1)
    y = np.stack([np.sin(x[:, 0]), x[:, 1]], 1)
    noise = 0.03
    value, grad = gp.log_marginal_likelihood(net, x, y, noise, kind=kind, grad=True)
    assert value == gp.log_marginal_likelihood(net, x, y, noise, kind=kind) or \
        value == pytest.approx(gp.log_marginal_likelihood(net, x, y, noise, kind=kind), rel=1e-12)
    assert set(grad) == {"weight_var", "bias_var", "noise_var"}
    for name in grad:
        d1, d2 = _central(net, x, y, noise, kind, name, 1e-4)
        rich = (4 * d1 - d2) / 3
        tol = 4 * abs(d1 - d2) + 1e-7 * (1 + abs(rich))
        assert abs(grad[name] - rich) <= tol, (name, grad[name], rich, tol)


def test_gradient_is_finite_on_a_relu_kink():
    """Duplicate inputs (rho = 1 off the diagonal) of a ReLU net: finite derivative, equal to
    the central difference (no NaN at the kink)."""
    x = _x(6, seed=2)
    x[3] = x[0]
    net = kn.MLP(depth=3, activation=kn.ReLU(), weight_var=1.8, bias_var=0.1)
    y = np.sin(x[:, 0])
    value, grad = gp.log_marginal_likelihood(net, x, y, 0.1, grad=True)
    for name, g in grad.items():
        assert np.isfinite(g)
        d1, d2 = _central(net, x, y, 0.1, "nngp", name, 1e-4)
        assert g == pytest.approx((4 * d1 - d2) / 3, rel=1e-6, abs=1e-8)


def test_fit_reaches_at_least_the_generating_likelihood():
    true = kn.MLP(depth=2, activation=kn.Erf(), weight_var=2.0, bias_var=0.3)
    x = _x(60, d=2, seed=3)
    y = _draw(true, x, 0.05, k=3, seed=4)
    start = kn.MLP(depth=2, activation=kn.Erf(), weight_var=1.0, bias_var=1.0)
    f = gp.fit(start, x, y, noise_var=0.3)
    ref = gp.log_marginal_likelihood(true, x, y, 0.05)
    assert f.result.success, f.result.message
    assert f.log_marginal_likelihood >= ref
    assert f.log_marginal_likelihood >= gp.log_marginal_likelihood(start, x, y, 0.3)
    assert isinstance(f.net, kn.MLP) and f.net.depth == 2 and f.noise_var > 0
    assert f.params == ("weight_var", "bias_var", "noise_var")
    np.testing.assert_allclose(np.exp(f.result.x), [f.net.weight_var, f.net.bias_var,
                                                    f.noise_var], rtol=1e-15)
    # a stationary point: the gradient (in log space) vanishes where no bound is active
    _, g = gp.log_marginal_likelihood(f.net, x, y, f.noise_var, grad=True)
    for p in f.params:
        v = f.noise_var if p == "noise_var" else getattr(f.net, p)
        assert abs(g[p] * v) < 1e-3 * abs(f.log_marginal_likelihood) / 60


def test_fit_subset_of_parameters_and_bounds():
    true = kn.MLP(depth=2, activation=kn.ReLU(), weight_var=1.5, bias_var=0.2)
    x = _x(40, d=3, seed=5)
    y = _draw(true, x, 0.1, k=2, seed=6)
    f = gp.fit(true, x, y, noise_var=1.0, params=["noise_var"])
    assert f.net == true and f.noise_var != 1.0
    # noise only: the 1-d optimum is a zero of d log p / d noise_var
    _, g = gp.log_marginal_likelihood(true, x, y, f.noise_var, grad=True)
    assert abs(g["noise_var"] * f.noise_var) < 1e-4 * 80
    b = gp.fit(true, x, y, noise_var=0.1, params=("weight_var", "noise_var"),
               bounds={"weight_var": (0.5, 1.0)})
    assert b.net.weight_var == pytest.approx(1.0) and b.net.bias_var == 0.2


@pytest.mark.parametrize("call, exc, match", [
    (lambda n, x, y: gp.log_marginal_likelihood("mlp", x, y, 0.1), TypeError, "net"),
    (lambda n, x, y: gp.log_marginal_likelihood(n, x, y, -0.1), ValueError, "noise_var"),
    (lambda n, x, y: gp.log_marginal_likelihood(n, x, y, np.nan), ValueError, "noise_var"),
    (lambda n, x, y: gp.log_marginal_likelihood(n, x, y[:-1], 0.1), ValueError, "y"),
    (lambda n, x, y: gp.log_marginal_likelihood(n, x, y, 0.1, kind="rbf"), ValueError, "kind"),
    (lambda n, x, y: gp.log_marginal_likelihood(n, x, y, 0.1, grad="yes"), TypeError, "grad"),
    (lambda n, x, y: gp.fit(n, x, y, 0.1, params=("depth",)), ValueError, "params"),
    (lambda n, x, y: gp.fit(n, x, y, 0.0), ValueError, "noise_var starts at 0"),
    (lambda n, x, y: gp.fit(n, x, y, 0.1, bounds={"noise_var": (1.0, 0.5)}), ValueError,
     "low < high"),
    (lambda n, x, y: gp.fit(n, x, y, 0.1, bounds={"depth": (1.0, 2.0)}), ValueError, "depth"),
    (lambda n, x, y: gp.fit(n, x, y, 0.1, bounds={"noise_var": (0.0, 1.0)}), ValueError,
     "bounds"),
])
def test_bad_input(call, exc, match):
    net = kn.MLP(depth=2, activation=kn.ReLU(), bias_var=0.1)
    x = _x(5)
    with pytest.raises(exc, match=match):
        call(net, x, np.sin(x[:, 0]))


def test_not_positive_definite_is_reported():
    x = _x(5)
    x[2] = x[1]
    net = kn.MLP(depth=2, activation=kn.ReLU())
    with pytest.raises(ValueError, match="smallest eigenvalue .* condition number"):
        gp.log_marginal_likelihood(net, x, np.sin(x[:, 0]), 0.0)


@pytest.mark.slow
def test_fit_recovers_the_generating_variances_at_n_1000():
    """N = 1000 points, k = 2 columns from a known NNGP prior: each fitted variance is within 3
    asymptotic standard errors of the truth.  Standard errors: the inverse observed Fisher
    information, -Hessian of log p at the optimum, from central differences of the analytic
    gradient (natural units)."""
    true = dict(weight_var=1.8, bias_var=0.3, noise_var=0.1)
    net = kn.MLP(depth=2, activation=kn.Erf(), weight_var=true["weight_var"],
                 bias_var=true["bias_var"])
    x = _x(1000, d=3, seed=7)
    y = _draw(net, x, true["noise_var"], k=2, seed=8)
    f = gp.fit(kn.MLP(depth=2, activation=kn.Erf(), weight_var=1.0, bias_var=1.0), x, y,
               noise_var=0.5)
    assert f.result.success, f.result.message
    names = ("weight_var", "bias_var", "noise_var")
    est = np.array([f.net.weight_var, f.net.bias_var, f.noise_var])

    def grad(v):
        m = kn.MLP(depth=2, activation=kn.Erf(), weight_var=v[0], bias_var=v[1])
        g = gp.log_marginal_likelihood(m, x, y, v[2], grad=True)[1]
        return np.array([g[p] for p in names])

    H = np.empty((3, 3))
    for i in range(3):
        h = 1e-4 * est[i]
        e = np.zeros(3)
        e[i] = h
        H[i] = (grad(est + e) - grad(est - e)) / (2 * h)
    H = 0.5 * (H + H.T)
    cov = np.linalg.inv(-H)
    assert np.all(np.linalg.eigvalsh(-H) > 0)
    se = np.sqrt(np.diag(cov))
    z = (est - np.array([true[p] for p in names])) / se
    assert np.all(np.abs(z) < 3), (est, se, z)


# ----------------------------------------------------------------------------------------------
# per-layer variances: the gradient has a layer axis; fit optimises every entry
# ----------------------------------------------------------------------------------------------
PER_LAYER_NETS = [
    kn.MLP(depth=2, activation=kn.Erf(), weight_var=[1.2, 2.0, 0.8], bias_var=[0.1, 0.3, 0.05]),
    kn.ResNet(depth=2, activation=kn.ReLU(), weight_var=[0.9, 1.5, 2.0, 1.1],
              bias_var=[0.1, 0.2, 0.05, 0.15]),
]


def _set_entry(net, name, k, value):
    """net with entry k of the per-layer variance ``name`` (kernel_grads' layer order)."""
    if isinstance(net, kn.ResNet):
        if k == 0:
            return replace(net, **{f"input_{name}": value})
        if k == net.depth + 1:
            return replace(net, **{f"readout_{name}": value})
        vals = list(getattr(net, name))
        vals[k - 1] = value
        return replace(net, **{name: tuple(vals)})
    vals = list(getattr(net, name))
    vals[k] = value
    return replace(net, **{name: tuple(vals)})


def _entry(net, name, k):
    if isinstance(net, kn.ResNet):
        if k == 0:
            return getattr(net, f"input_{name}")
        if k == net.depth + 1:
            return getattr(net, f"readout_{name}")
        return getattr(net, name)[k - 1]
    return getattr(net, name)[k]


@pytest.mark.parametrize("net", PER_LAYER_NETS, ids=["mlp-erf", "resnet-relu"])
@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_per_layer_gradient_against_central_differences(net, kind):
    """Every entry of the layer axis, with the Richardson tolerance of
    test_gradient_against_central_differences."""
    x = _x(10, seed=7)
    y = np.stack([np.sin(x[:, 0]), x[:, 1]], 1)
    noise = 0.05
    value, grad = gp.log_marginal_likelihood(net, x, y, noise, kind=kind, grad=True)
    n_layers = net.depth + (2 if isinstance(net, kn.ResNet) else 1)
    for name in ("weight_var", "bias_var"):
        assert np.shape(grad[name]) == (n_layers,)
        for k in range(n_layers):
            v0 = _entry(net, name, k)
            hv = 1e-4 * v0

            def f(v):
                return gp.log_marginal_likelihood(_set_entry(net, name, k, v), x, y, noise,
                                                  kind=kind)
            d1 = (f(v0 + hv) - f(v0 - hv)) / (2 * hv)
            d2 = (f(v0 + 2 * hv) - f(v0 - 2 * hv)) / (4 * hv)
            rich = (4 * d1 - d2) / 3
            tol = 4 * abs(d1 - d2) + 1e-7 * (1 + abs(rich))
            assert abs(grad[name][k] - rich) <= tol, (name, k, grad[name][k], rich, tol)


@pytest.mark.parametrize("net", PER_LAYER_NETS, ids=["mlp-erf", "resnet-relu"])
def test_per_layer_fit_small(net):
    """A small fit over every entry: the likelihood does not decrease, the fitted network keeps
    its per-layer layout, result.x holds the log of every entry in params order, and the
    log-space gradient vanishes at entries away from the bounds (a stationary point)."""
    x = _x(30, d=2, seed=8)
    y = _draw(net, x, 0.1, k=2, seed=9)
    start = _set_entry(_set_entry(net, "weight_var", 1, 1.0), "bias_var", 0, 0.5)
    f = gp.fit(start, x, y, noise_var=0.3)
    assert f.result.success, f.result.message
    assert f.log_marginal_likelihood >= gp.log_marginal_likelihood(start, x, y, 0.3)
    assert type(f.net) is type(net) and f.net.depth == net.depth
    n_layers = net.depth + (2 if isinstance(net, kn.ResNet) else 1)
    fitted = np.array([_entry(f.net, p, k) for p in ("weight_var", "bias_var")
                       for k in range(n_layers)] + [f.noise_var])
    np.testing.assert_allclose(np.exp(f.result.x), fitted, rtol=1e-15)
    _, g = gp.log_marginal_likelihood(f.net, x, y, f.noise_var, grad=True)
    glog = np.concatenate([g["weight_var"] * fitted[:n_layers],
                           g["bias_var"] * fitted[n_layers:2 * n_layers],
                           [g["noise_var"] * f.noise_var]])
    inside = (fitted > 1.01e-6) & (fitted < 0.99e6)
    assert np.all(np.abs(glog[inside]) < 1e-3 * abs(f.log_marginal_likelihood) / 30), glog


def test_per_layer_fit_refuses_none_and_zero_entries():
    x = _x(6)
    y = np.sin(x[:, 0])
    net = kn.MLP(depth=2, activation=kn.ReLU(), weight_var=1.5, bias_var=[0.1, 0.0, 0.2])
    with pytest.raises(ValueError, match=r"bias_var\[1\] starts at 0.0"):
        gp.fit(net, x, y, 0.1)
    gp.fit(net, x, y, 0.1, params=("weight_var", "noise_var"), maxiter=2)
    std = kn.MLP(depth=2, activation=kn.ReLU(), weight_var=1.5, bias_var=[0.1, None, 0.2],
                 parameterization="standard", width=8)
    with pytest.raises(ValueError, match=r"bias_var\[1\] is None"):
        gp.fit(std, x, y, 0.1)


# ----------------------------------------------------------------------------------------------
# kernels computed beforehand: arrays, memory maps, dask arrays
# ----------------------------------------------------------------------------------------------
def test_from_kernel_equals_the_net_call(tmp_path):
    net = kn.MLP(depth=3, activation=kn.ReLU(), weight_var=2.0, bias_var=0.1)
    x = _x(120, d=4)
    y = _draw(net, x, 0.05, 2, seed=3)
    ref = gp.log_marginal_likelihood(net, x, y, 0.05)
    K = net.nngp(x)
    assert gp.log_marginal_likelihood_from_kernel(K, y, 0.05) == ref     # the same arithmetic
    mm = np.lib.format.open_memmap(tmp_path / "k.npy", mode="w+", dtype=np.float64,
                                   shape=K.shape)
    net.nngp(x, out=mm, tile=50)
    assert gp.log_marginal_likelihood_from_kernel(mm, y, 0.05) == ref
    ro = np.load(tmp_path / "k.npy", mmap_mode="r")       # read-only maps are fine to read
    assert gp.log_marginal_likelihood_from_kernel(ro, y[:, 0], 0.05) == \
        gp.log_marginal_likelihood(net, x, y[:, 0], 0.05)
    np.testing.assert_array_equal(ro, K)                   # and left untouched
    dask = pytest.importorskip("dask")
    dk = kn.dask_kernels(net, x, chunks=45)
    with dask.config.set(scheduler="threads"):
        assert gp.log_marginal_likelihood_from_kernel(dk.nngp, y, 0.05) == ref
        assert gp.log_marginal_likelihood_from_kernel(dk.ntk, y, 0.05) == \
            gp.log_marginal_likelihood(net, x, y, 0.05, kind="ntk")


def test_from_kernel_refusals(monkeypatch):
    net = kn.MLP(depth=2, activation=kn.ReLU())
    x = _x(6)
    K = net.nngp(x)
    y = np.sin(x[:, 0])
    with pytest.raises(ValueError, match="no log-determinant"):
        gp.log_marginal_likelihood_from_kernel(K, y, 0.1, solver="cg")
    with pytest.raises(ValueError, match="solver"):
        gp.log_marginal_likelihood_from_kernel(K, y, 0.1, solver="lu")
    with pytest.raises(ValueError, match="square"):
        gp.log_marginal_likelihood_from_kernel(K[:, :5], y, 0.1)
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        gp.log_marginal_likelihood_from_kernel(K, y[:5], 0.1)
    with pytest.raises(ValueError, match="noise_var"):
        gp.log_marginal_likelihood_from_kernel(K, y, -1.0)
    bad = K.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gp.log_marginal_likelihood_from_kernel(bad, y, 0.1)
    x[2] = x[1]
    with pytest.raises(ValueError, match="smallest eigenvalue .* condition number"):
        gp.log_marginal_likelihood_from_kernel(net.nngp(x), y, 0.0)
    from kernels import _checks
    monkeypatch.setattr(_checks, "available_memory", lambda: 100)   # bytes
    with pytest.raises(_checks.MemoryBudgetError, match="subset"):
        gp.log_marginal_likelihood_from_kernel(K, y, 0.1)
    with pytest.raises(MemoryError, match="log_marginal_likelihood_from_kernel"):
        gp.log_marginal_likelihood(net, _x(6), y, 0.1)


# hostile pass (issue 21): malformed params / bounds, and data without a point or a column
@pytest.mark.parametrize("params", [None, 7])
def test_fit_params_not_a_sequence(params):
    x = np.random.default_rng(0).standard_normal((5, 3))
    with pytest.raises(TypeError, match="params must be a name or a sequence"):
        gp.fit(NETS[0], x, np.ones(5), 0.1, params=params)


@pytest.mark.parametrize("b", [(1.0, 2.0, 3.0), None, 5.0])
def test_fit_bounds_not_a_pair(b):
    x = np.random.default_rng(0).standard_normal((5, 3))
    with pytest.raises(TypeError, match=r"bounds\['noise_var'\] must be a pair"):
        gp.fit(NETS[0], x, np.ones(5), 0.1, bounds={"noise_var": b})


def test_no_output_column_refused():
    x = np.random.default_rng(0).standard_normal((5, 3))
    y = np.zeros((5, 0))
    with pytest.raises(ValueError, match="one output column"):
        gp.log_marginal_likelihood(NETS[0], x, y, 0.1)
    with pytest.raises(ValueError, match="one output column"):
        gp.fit(NETS[0], x, y, 0.1)


def test_kernel_regression_empty_refused():
    with pytest.raises(ValueError, match="at least one training point"):
        kn.kernel_regression(np.zeros((0, 0)), np.zeros(0))
    with pytest.raises(ValueError, match="at least one training point"):
        kn.kernel_regression(np.eye(3), np.zeros((3, 0)), solver="cg")
