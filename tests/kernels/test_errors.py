"""Bad input raises ValueError / TypeError naming the offending argument."""
import math

import numpy as np
import pytest

import kernels as kn

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
