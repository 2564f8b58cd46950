"""Bad input raises ValueError / TypeError naming the offending argument."""
import math

import numpy as np
import pytest

import kernels as kn
from kernels import _checks
from kernels._checks import MemoryBudgetError

X = np.array([[1.0, 0.5], [0.2, -1.0], [0.0, 2.0]])


@pytest.fixture(scope="module", params=["mlp", "resnet"])
def net(request):
    if request.param == "mlp":
        return kn.MLP(3, kn.ReLU())
    return kn.ResNet(3, kn.ReLU())


ENTRY_POINTS = ["nngp", "ntk", "kernels"]


# ----------------------------------------------------------------------------------------------
# inputs x1 / x2
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ENTRY_POINTS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_x1(net, method, bad):
    x = X.copy()
    x[1, 0] = bad
    with pytest.raises(ValueError, match="x1"):
        getattr(net, method)(x)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_x2(net, bad):
    x2 = X.copy()
    x2[0, 1] = bad
    with pytest.raises(ValueError, match="x2"):
        net.nngp(X, x2)


@pytest.mark.parametrize("shape", [(3,), (2, 2, 2), ()], ids=["1d", "3d", "0d"])
def test_x1_not_2d(net, shape):
    with pytest.raises(ValueError, match="x1"):
        net.kernels(np.ones(shape))


def test_x2_not_2d(net):
    with pytest.raises(ValueError, match="x2"):
        net.kernels(X, np.ones(2))


def test_feature_mismatch(net):
    with pytest.raises(ValueError, match="x2"):
        net.nngp(X, np.ones((4, 3)))


def test_empty_x1(net):
    with pytest.raises(ValueError, match="x1"):
        net.nngp(np.ones((0, 2)))


def test_missing_x1(net):
    with pytest.raises(TypeError, match="x1"):
        net.nngp()


def test_non_numeric_x1(net):
    with pytest.raises(TypeError, match="x1"):
        net.nngp([["a", "b"]])


def test_x_and_K0_together(net):
    with pytest.raises(ValueError, match="K0"):
        net.nngp(X, K0=np.eye(3))


# ----------------------------------------------------------------------------------------------
# K0
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("K0", [
    [[1.0, 2.0], [2.0, 1.0]],            # not PSD
    [[1.0, 0.0], [0.0, -1.0]],           # negative diagonal / not PSD
    [[1.0, 0.5], [0.2, 1.0]],            # asymmetric
    np.ones((2, 3)),                     # not square
    [[1.0, np.nan], [np.nan, 1.0]],      # NaN
    [1.0, 2.0],                          # 1-d
], ids=["not-psd", "neg-diag", "asymmetric", "not-square", "nan", "1d"])
@pytest.mark.parametrize("method", ENTRY_POINTS + ["trajectory"])
def test_bad_K0(net, K0, method):
    with pytest.raises(ValueError, match="K0"):
        getattr(net, method)(K0=K0)


# ----------------------------------------------------------------------------------------------
# architecture parameters
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["weight_var", "bias_var"])
def test_mlp_negative_variance(name):
    with pytest.raises(ValueError, match=name):
        kn.MLP(3, kn.ReLU(), **{name: -0.5})


@pytest.mark.parametrize("name", ["weight_var", "bias_var", "input_weight_var",
                                  "readout_weight_var", "input_bias_var", "readout_bias_var"])
def test_resnet_negative_variance(name):
    with pytest.raises(ValueError, match=name):
        kn.ResNet(3, kn.ReLU(), **{name: -1.0})


@pytest.mark.parametrize("name", ["weight_var", "bias_var"])
@pytest.mark.parametrize("bad,exc", [(np.nan, ValueError), (np.inf, ValueError),
                                     ("2", TypeError)], ids=["nan", "inf", "str"])
def test_non_finite_or_non_numeric_variance(name, bad, exc):
    with pytest.raises(exc, match=name):
        kn.MLP(3, kn.ReLU(), **{name: bad})


@pytest.mark.parametrize("cls", [kn.MLP, kn.ResNet])
@pytest.mark.parametrize("depth", [0, -3])
def test_depth_below_one(cls, depth):
    with pytest.raises(ValueError, match="depth"):
        cls(depth, kn.ReLU())


@pytest.mark.parametrize("cls", [kn.MLP, kn.ResNet])
@pytest.mark.parametrize("depth", [2.5, "3", None, True], ids=["float", "str", "none", "bool"])
def test_depth_not_integer(cls, depth):
    with pytest.raises(TypeError, match="depth"):
        cls(depth, kn.ReLU())


def test_integral_float_depth_accepted():
    assert kn.MLP(3.0, kn.ReLU()).depth == 3


@pytest.mark.parametrize("cls", [kn.MLP, kn.ResNet])
@pytest.mark.parametrize("act", ["relu", np.tanh, None], ids=["str", "ufunc", "none"])
def test_activation_not_an_activation(cls, act):
    with pytest.raises(TypeError, match="activation"):
        cls(3, act)


@pytest.mark.parametrize("bs", [[1.0, 2.0], np.ones((3, 1)), [1.0, np.nan, 1.0], np.nan],
                         ids=["short", "2d", "nan", "nan-scalar"])
def test_bad_branch_scale(bs):
    with pytest.raises(ValueError, match="branch_scale"):
        kn.ResNet(3, kn.ReLU(), branch_scale=bs)


# ----------------------------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [3.0, "tanh", None], ids=["float", "str", "none"])
def test_activation_fn_not_callable(fn):
    with pytest.raises(TypeError, match="fn"):
        kn.Activation(fn)


def test_activation_deriv_not_callable():
    with pytest.raises(TypeError, match="deriv"):
        kn.Activation(lambda t: t, deriv=2.0)


def test_activation_fn_not_compilable():
    with pytest.raises(TypeError, match="fn"):
        kn.Activation(lambda t: t.no_such_attribute)


def test_activation_builtin_error_names_fn():
    with pytest.raises(TypeError, match="fn"):
        kn.Activation(math.sin)


def test_activation_deg_invalid():
    with pytest.raises(ValueError, match="deg"):
        kn.Tanh(deg=0)


@pytest.mark.parametrize("make,name", [(lambda: kn.LeakyReLU(np.nan), "slope"),
                                       (lambda: kn.ABReLU("a", 1.0), "a"),
                                       (lambda: kn.ABReLU(0.0, np.inf), "b"),
                                       (lambda: kn.Erf(np.inf), "a"),
                                       (lambda: kn.ShapedReLU(np.nan, 0.0), "c_plus"),
                                       (lambda: kn.ShapedReLU(0.0, "x"), "c_minus")],
                         ids=["leaky-nan", "ab-str", "ab-inf", "erf-inf", "shaped-nan",
                              "shaped-str"])
def test_bad_activation_parameters(make, name):
    with pytest.raises((ValueError, TypeError), match=name):
        make()


def test_shaped_relu_bad_rate():
    with pytest.raises(ValueError, match="rate"):
        kn.ShapedReLU(1.0, 0.0, rate="layers")


@pytest.mark.parametrize("cls", [kn.MLP, kn.ResNet])
def test_shaped_relu_width_rate_in_network(cls):
    net = cls(4, kn.ShapedReLU(1.0, -1.0, rate="width"))     # simulable at finite width ...
    for method in (net.nngp, net.ntk, net.trajectory):       # ... but has no kernel
        with pytest.raises(ValueError, match="rate='width'"):
            method(np.eye(2))


def test_shaped_relu_maps_need_resolution():
    with pytest.raises(ValueError, match="resolved"):
        kn.ShapedReLU(1.0, 0.0).V(1.0, 1.0, 0.5)


def test_shaped_relu_resolved_scale():
    with pytest.raises(ValueError, match=r"\bn\b"):
        kn.ShapedReLU(1.0, 0.0).resolved(0)


@pytest.mark.parametrize("act", [kn.ReLU(), kn.Erf()], ids=["relu", "erf"])
def test_maps_reject_invalid_covariance(act):
    with pytest.raises(ValueError, match="q1"):
        act.V(-1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"\bc\b"):
        act.Vdot(1.0, 1.0, 2.0)


# ----------------------------------------------------------------------------------------------
# fast path
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: kn.MLP(40, kn.ReLU(), bias_var=0.1),
    lambda: kn.MLP(40, kn.Erf()),
    lambda: kn.MLP(40, kn.Tanh()),
    lambda: kn.ResNet(40, kn.ReLU(), bias_var=0.1),
    lambda: kn.ResNet(40, kn.ReLU(), input_bias_var=0.1),
], ids=["mlp-bias", "mlp-erf", "mlp-tanh", "resnet-bias", "resnet-stem-bias"])
def test_fast_true_not_eligible(make):
    with pytest.raises(ValueError, match="fast"):
        make().kernels(X, fast=True)


def test_fast_true_with_readout_bias_is_allowed():
    # the readout acts after the tabulated map, so it does not make the net ineligible
    net = kn.ResNet(40, kn.ReLU(), readout_bias_var=0.1)
    a, b = net.kernels(X, fast=True), net.kernels(X, fast=False)
    np.testing.assert_allclose(a.nngp, b.nngp, rtol=1e-12)


@pytest.mark.parametrize("fast", ["yes", 1, 0.0])
def test_fast_not_bool(net, fast):
    with pytest.raises(TypeError, match="fast"):
        net.kernels(X, fast=fast)


# ----------------------------------------------------------------------------------------------
# trajectory
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layers", [[-1], [0, 4], [100], [0.5], []],
                         ids=["negative", "depth+1", "far", "float", "empty"])
def test_trajectory_layers_out_of_range(net, layers):
    with pytest.raises(ValueError, match="layers"):
        net.trajectory(X, layers=layers)


def test_trajectory_layer_bounds_inclusive(net):
    tr = net.trajectory(X, layers=[0, 3])
    np.testing.assert_array_equal(tr.layers, [0, 3])


def test_trajectory_bad_K0(net):
    with pytest.raises(ValueError, match="K0"):
        net.trajectory(K0=[[1.0, 2.0], [2.0, 1.0]])


def test_trajectory_errors_name_x(net):
    x = X.copy()
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"\bx\b"):
        net.trajectory(x)
    with pytest.raises(TypeError, match=r"\bx\b"):
        net.trajectory()


def test_trajectory_bad_x_raises(net):
    x = X.copy()
    x[0, 0] = np.inf
    with pytest.raises(ValueError):
        net.trajectory(x)
    with pytest.raises(ValueError):
        net.trajectory(np.ones(3))


# ----------------------------------------------------------------------------------------------
# issue 21: no silent wrong answer, early and specific refusals
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ENTRY_POINTS + ["trajectory"])
def test_complex_x_refused(net, method):
    name = r"\bx\b" if method == "trajectory" else "x1"
    with pytest.raises(TypeError, match=name):
        getattr(net, method)(X + 1j)


def test_complex_x2_refused(net):
    with pytest.raises(TypeError, match="x2"):
        net.nngp(X, X.tolist() + [[1j, 0.0]])


@pytest.mark.parametrize("method", ENTRY_POINTS + ["trajectory"])
def test_complex_K0_refused(net, method):
    with pytest.raises(TypeError, match="K0"):
        getattr(net, method)(K0=np.eye(2) * (1 + 0j))


@pytest.mark.parametrize("arg", ["x_train", "y_train", "x_test"])
def test_predict_complex_refused(arg):
    kw = dict(x_train=X[:2], y_train=np.array([1.0, -1.0]), x_test=X[2:])
    kw[arg] = kw[arg] + 0.5j
    with pytest.raises(TypeError, match=arg):
        kn.predict(kn.MLP(2, kn.ReLU()), kw["x_train"], kw["y_train"], kw["x_test"])


@pytest.mark.parametrize("bad", ["no", 0, 1, None, "False"])
def test_predict_compute_cov_must_be_bool(bad):
    with pytest.raises(TypeError, match="compute_cov"):
        kn.predict(kn.MLP(2, kn.ReLU()), X[:2], [1.0, -1.0], X[2:], compute_cov=bad)


def test_predict_compute_cov_numpy_bool_accepted():
    p = kn.predict(kn.MLP(2, kn.ReLU()), X[:2], [1.0, -1.0], X[2:], compute_cov=np.False_)
    assert p.cov is None


@pytest.mark.parametrize("cls", [kn.MLP, kn.ResNet])
@pytest.mark.parametrize("depth", [10 ** 30, 10 ** 12, 10 ** 9 + 1])
def test_huge_depth_refused_at_construction(cls, depth):
    with pytest.raises(ValueError, match=r"depth must be <= 1e\+09.*GiB"):
        cls(depth, kn.ReLU())


def test_trajectory_memory_refused_up_front():
    # 1e9 layers x 2 x 2 x 11 arrays: hundreds of GB, refused before any allocation, with the
    # number and what to do
    net = kn.MLP(10 ** 9, kn.ReLU())
    with pytest.raises(MemoryBudgetError, match=r"needs about .*(GiB|TiB).*layers=") as exc:
        net.trajectory(K0=np.eye(2))
    assert "ntk=False" in str(exc.value)


def test_trajectory_memory_uses_available(monkeypatch):
    from kernels import _checks
    monkeypatch.setattr(_checks, "available_memory", lambda: 10_000)
    with pytest.raises(MemoryBudgetError, match=r"9.77 KiB is available"):
        kn.MLP(100, kn.ReLU()).trajectory(K0=np.eye(2))
    kn.MLP(100, kn.ReLU()).trajectory(K0=np.eye(2), layers=[100])     # 1 layer fits


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_trajectory_ntk_must_be_bool(net, bad):
    with pytest.raises(TypeError, match="ntk"):
        net.trajectory(X, ntk=bad)


def test_activation_returning_nan_is_named():
    # NaN beyond |x| = 20 only: construction (unit variance) passes, the kernel at variance
    # ~50 does not, and the error names the activation and the point, not the depth
    act = kn.Activation(lambda t: math.nan if t > 20.0 else math.tanh(t), name="bad_tanh")
    net = kn.MLP(2, act, weight_var=1.0)
    x = np.array([[10.0, 0.0], [0.0, 10.0]])
    for call in (lambda: net.kernels(x), lambda: net.nngp(x), lambda: net.trajectory(x)):
        with pytest.raises(FloatingPointError, match=r"activation .*bad_tanh.*phi\(2\d\.\d*\) = nan"):
            call()


def test_activation_nan_at_unit_variance_refused():
    with pytest.raises(ValueError, match="not finite at x"):
        kn.Activation(lambda t: math.log(t))


def test_overflow_names_quantity_and_layer():
    # erf at sw2 = 1 is (barely) chaotic: chi_1 = 1.017, so the NTK overflows near layer 42,000
    net = kn.MLP(60_000, kn.Erf(), weight_var=1.0)
    K0 = np.array([[1.0, 0.5], [0.5, 1.0]])
    with pytest.raises(FloatingPointError, match=r"NTK overflows from layer \d+ on.*ntk=False"):
        net.trajectory(K0=K0, layers=[0, 30_000, 50_000, 60_000])
    tr = net.trajectory(K0=K0, layers=[0, 30_000, 50_000, 60_000], ntk=False)
    assert tr.ntk is None and np.all(np.isfinite(tr.correlation))
    with pytest.raises(FloatingPointError, match="NTK overflows"):
        net.kernels(K0=K0)
    assert np.all(np.isfinite(net.nngp(K0=K0)))      # the NNGP alone is not refused


# ----------------------------------------------------------------------------------------------
# the public maps
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", [kn.ReLU(), kn.Erf(), kn.Tanh(), kn.LeakyReLU(0.1)],
                         ids=["relu", "erf", "tanh", "leaky"])
@pytest.mark.parametrize("args,name", [((np.nan, 1.0, 0.0), "q1"), ((1.0, np.inf, 0.0), "q2"),
                                       ((1.0, 1.0, np.nan), r"\bc\b")],
                         ids=["nan-q1", "inf-q2", "nan-c"])
def test_maps_reject_non_finite(act, args, name):
    for m in (act.V, act.Vdot):
        with pytest.raises(ValueError, match=name):
            m(*args)


@pytest.mark.parametrize("act", [kn.ReLU(), kn.Erf(), kn.Tanh()], ids=["relu", "erf", "tanh"])
def test_maps_reject_complex(act):
    with pytest.raises(TypeError, match=r"\bc\b"):
        act.V(1.0, 1.0, 0.5 + 0.1j)


# ----------------------------------------------------------------------------------------------
# Gauss-Hermite degree
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("deg", [1, 3, 5, 10])
def test_too_low_degree_refused(deg):
    # deg 1 returned exact zeros (100 % error), deg 3 31 %, deg 5 11 %
    with pytest.raises(ValueError, match=rf"deg={deg} is too low.*estimated relative error.*"
                                         rf"use deg >= \d+"):
        kn.Tanh(deg=deg)


def test_low_degree_warns_with_estimate():
    with pytest.warns(UserWarning, match=r"estimated relative error of [0-9.e-]+.*deg >= \d+"):
        act = kn.Tanh(deg=40)
    assert 1e-8 < act.quadrature_error < 1e-2


def test_kinked_activation_warns_that_no_degree_helps():
    with pytest.warns(UserWarning, match="no degree up to"):
        kn.Activation(lambda t: t / (1.0 + abs(t)))


def test_default_degree_quiet_and_accurate(recwarn):
    act = kn.Tanh()
    assert act.quadrature_error < 1e-12
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize("deg", [10 ** 7, 10_001])
def test_degree_bounded_above(deg):
    with pytest.raises(ValueError, match=r"deg must be <= 10000"):
        kn.Activation(lambda t: math.tanh(t), deg=deg)


# ----------------------------------------------------------------------------------------------
# the one memory guard and the one array check of both packages (kernels._checks)
# ----------------------------------------------------------------------------------------------
def test_memory_guard_one_type_with_sizes(monkeypatch):
    monkeypatch.setattr(_checks, "available_memory", lambda: 3 << 30)
    _checks.memory_guard(3 << 30, "exactly the available memory")          # fits
    _checks.memory_guard([(1 << 30, "a"), (2 << 30, "b")], "parts")        # 3 GiB in all fits
    with pytest.raises(MemoryError) as a:
        _checks.memory_guard([(1 << 30, "small part"), (5 << 30, "big part")], "job",
                             "use less")
    assert isinstance(a.value, MemoryBudgetError) and isinstance(a.value, ValueError)
    msg = str(a.value)
    for part in ("job needs about 6,442,450,944 bytes (6 GiB", "largest part: big part",
                 "only 3 GiB is available (3,221,225,472 bytes of memory)", ": use less"):
        assert part in msg, msg
    # the memory of the machine unknown: only the address space bounds a request
    monkeypatch.setattr(_checks, "available_memory", lambda: None)
    _checks.memory_guard(1 << 40, "a terabyte")
    with pytest.raises(MemoryBudgetError, match="2\\^63-byte address space"):
        _checks.memory_guard(1e30, "an impossible request")


def test_memory_guard_callers_share_the_type(monkeypatch):
    # Monte Carlo (once a ValueError), the analytic engine (once a MemoryError) and the phase
    # trainer (once a ValueError against half the physical memory) raise the same error
    from limits import phase as ph
    monkeypatch.setattr(_checks, "available_memory", lambda: 1 << 20)
    calls = [lambda: kn.monte_carlo(kn.MLP(2, kn.ReLU()), X, width=4096, samples=1,
                                    progress=False),
             lambda: kn.MLP(10 ** 6, kn.ReLU()).trajectory(X),
             lambda: ph.train(10 ** 6, 1.0, 0.0)]
    for call in calls:
        with pytest.raises(MemoryBudgetError, match=r"needs about [\d,]+ bytes .*available"):
            call()


@pytest.mark.parametrize("value, exc, match", [
    ([1.0, 2j], TypeError, "arg must be real"),
    ([[1.0], [1.0, 2.0]], TypeError, "arg must be a real number or an array"),
    ("abc", TypeError, "arg must be a real number"),
    ([1.0, np.inf], ValueError, r"arg must be finite.*index \(1,\): inf"),
    (np.nan, ValueError, "arg must be finite, got nan"),
])
def test_finite_array_refusals(value, exc, match):
    with pytest.raises(exc, match=match):
        _checks.finite_array(value, "arg")


def test_finite_array_returns_float64():
    a = _checks.finite_array([[1, 2], [3, 4]], "arg")
    assert a.dtype == np.float64 and a.shape == (2, 2)
    assert _checks.finite_array(3, "arg").shape == ()


# ----------------------------------------------------------------------------------------------
# input scales a network that is not rescaled cannot represent (issue 21)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("net", [kn.MLP(3, kn.Erf(), weight_var=1.5, bias_var=0.1),
                                 kn.ResNet(3, kn.Tanh(), weight_var=1.5),
                                 kn.MLP(3, kn.ReLU(), weight_var=2.0, bias_var=0.1)],
                         ids=["erf-biased", "tanh-resnet", "relu-biased"])
def test_input_variance_overflow_named(net):
    for call in (net.kernels, net.nngp, net.trajectory):
        with pytest.raises(FloatingPointError,
                           match=r"NNGP overflows at the input: rows \[0, 1, 2\] of x1.*scale the "
                                 r"inputs down"):
            call(1e160 * X)


def test_input_variance_underflow_of_bias_free_smooth_net_named():
    # a bias-free tanh net at 1e-160: variances ~1e-320 (subnormal); it returned nngp ~6e-160
    # (the quadrature overflowed 2/q) and correlations far from the input's
    net = kn.MLP(3, kn.Tanh(), weight_var=1.5)
    with pytest.raises(FloatingPointError, match=r"NNGP underflows: rows \[0, 1, 2\] of x1"):
        net.trajectory(1e-160 * X)
    with pytest.raises(FloatingPointError, match=r"rows \[1\] of x2"):
        net.nngp(X, np.array([[1.0, 0.0], [1e-170, 0.0]]))
    assert np.all(net.nngp(np.vstack([X, np.zeros((1, 2))]))[-1] == 0.0)   # a zero row is fine
    # with a bias, or phi(0) != 0, the tiny input part only rounds away: results are those at x = 0
    for biased in (kn.MLP(3, kn.Tanh(), weight_var=1.5, bias_var=0.1),
                   kn.MLP(3, kn.Erf(1.0, 1.0, 0.3), weight_var=1.5)):
        np.testing.assert_array_equal(biased.nngp(1e-300 * X), biased.nngp(0.0 * X))
