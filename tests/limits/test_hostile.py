"""Hostile inputs found by the second pass of issue 21 (benchmarks/hostile_probes.py): each is
refused early with a clear error naming the argument, or computed right."""
import math
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import kernels as kn
import limits
from kernels import _checks
from kernels._checks import MemoryBudgetError
from limits import criticality as cr
from limits.sde import _real_array

X = np.random.default_rng(0).standard_normal((4, 3))


# ----------------------------------------------------------------------------------------------
# the shared array check (kernels._checks.real_array / finite_array; limits.sde._real_array)
# ----------------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.one_of(st.text(max_size=8), st.binary(max_size=8),
                 st.lists(st.text(max_size=3), min_size=1, max_size=3), st.none()))
def test_strings_and_none_are_type_errors(value):
    """NumPy would parse "1.5", give NaN for None: every array argument refuses them."""
    for check in (_checks.real_array, _checks.finite_array, _real_array):
        with pytest.raises(TypeError, match="arg"):
            check(value, "arg")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=6),
       st.sampled_from([np.float64, np.float32, np.int64]))
def test_finite_array_is_real_array_plus_finiteness(values, dtype):
    """finite_array = real_array + the finiteness check: the same float64 values, or a
    ValueError exactly when a value is NaN or inf; limits.sde._real_array is a float64 copy."""
    with np.errstate(invalid="ignore", over="ignore"):
        a = np.array(values, dtype=np.float64).astype(dtype) if dtype is not np.int64 else \
            np.array([v for v in values if np.isfinite(v) and abs(v) < 2 ** 62], dtype=dtype)
    ref = np.asarray(a, dtype=np.float64)
    assert np.array_equal(_checks.real_array(a, "arg"), ref, equal_nan=True)
    copy = _real_array(a, "arg")
    assert copy.dtype == np.float64 and np.array_equal(copy, ref, equal_nan=True)
    assert not np.shares_memory(copy, a)
    if np.all(np.isfinite(ref)):
        assert np.array_equal(_checks.finite_array(a, "arg"), ref)
    else:
        with pytest.raises(ValueError, match="arg must be finite"):
            _checks.finite_array(a, "arg")


@pytest.mark.parametrize("value, exc", [
    (np.array(0.25), None), (np.array(3), None), (np.array(True), TypeError),
    (np.array(1 + 0j), TypeError), (np.array([0.25]), TypeError), (np.array(np.nan), ValueError),
])
def test_finite_float_takes_0d_real_arrays(value, exc):
    if exc is None:
        assert _checks.finite_float(value, "noise_var") == float(value)
    else:
        with pytest.raises(exc, match="noise_var"):
            _checks.finite_float(value, "noise_var")


def test_gp_noise_var_as_0d_array():
    net = kn.MLP(2, kn.Erf(), bias_var=0.1)
    y = np.sin(X[:, 0])
    assert kn.gp.log_marginal_likelihood(net, X, y, np.array(0.1)) == \
        kn.gp.log_marginal_likelihood(net, X, y, 0.1)


# ----------------------------------------------------------------------------------------------
# limits.criticality
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, exc", [(True, TypeError), (np.array([True, False]), TypeError),
                                      (np.array([1.5 + 1j]), TypeError), (None, TypeError),
                                      ("1.5", TypeError), (float("nan"), ValueError)])
def test_criticality_refuses_non_variances(bad, exc):
    with pytest.raises(exc, match="weight_var"):
        cr.signal_propagation(kn.Tanh(), bad, 0.1)
    with pytest.raises(exc, match="bias_var"):
        cr.edge_of_chaos(kn.Tanh(), bad)


def test_criticality_shapes_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"weight_var \(shape \(2,\)\) and bias_var"):
        cr.signal_propagation(kn.Tanh(), [1.0, 2.0], [0.1, 0.2, 0.3])


def test_criticality_finite_difference_is_a_bool():
    f = numba.njit(lambda v: math.sin(v))
    with pytest.raises(TypeError, match="finite_difference"):
        cr.signal_propagation(kn.Activation(f), 1.0, 0.1, finite_difference="yes")
    with pytest.raises(TypeError, match="finite_difference"):
        cr.edge_of_chaos(kn.Tanh(), 0.1, finite_difference=1)


def test_criticality_float32_and_0d_equal_float():
    a = cr.signal_propagation(kn.Tanh(), np.array(1.5), np.float32(0.25))
    b = cr.signal_propagation(kn.Tanh(), 1.5, 0.25)
    assert a.chi_1 == b.chi_1 and a.q_star == b.q_star


# ----------------------------------------------------------------------------------------------
# kernels.sklearn
# ----------------------------------------------------------------------------------------------
def test_sklearn_kernel_checks_inputs_and_variances():
    from kernels.sklearn import NNGPKernel, NTKKernel
    net = kn.MLP(2, kn.ReLU(), 2.0, 0.1)
    k = NNGPKernel(net)
    with pytest.raises(TypeError, match="X must be real"):
        k(X + 1j)
    with pytest.raises(ValueError, match="X must be finite"):
        k(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="Y has 2 features"):
        k(X, X[:, :2])
    with pytest.raises(ValueError, match="X must be 2-d"):
        NTKKernel(net).diag(X[0])
    with pytest.raises(TypeError, match="weight_var"):
        NNGPKernel(net, weight_var="a")(X)
    with pytest.raises(ValueError, match="weight_var must be >= 0"):
        NNGPKernel(net, weight_var=-1.0)(X)
    with pytest.raises(ValueError, match="per-layer"):
        NNGPKernel(kn.MLP(2, kn.ReLU(), weight_var=[1.0, 2.0, 2.0]))
    # a per-layer network with scalar starting values given explicitly is fine
    kk = NNGPKernel(kn.MLP(2, kn.ReLU(), weight_var=[1.0, 2.0, 2.0]), weight_var=2.0,
                    bias_var=0.1)
    assert np.array_equal(kk(X), net.nngp(X))
    assert np.array_equal(k(X.tolist()), net.nngp(X))


# ----------------------------------------------------------------------------------------------
# memory refused up front (the guard runs before any allocation)
# ----------------------------------------------------------------------------------------------
def _tiny_memory(monkeypatch):
    monkeypatch.setattr(_checks, "available_memory", lambda: 1 << 20)


def test_solve_memory_guard(monkeypatch):
    _tiny_memory(monkeypatch)
    sde = limits.OrnsteinUhlenbeck(1.0, 0.5)
    with pytest.raises(MemoryBudgetError, match="keys of 1000000 paths"):
        limits.solve(sde, 1.0, [1.0], paths=10 ** 6)
    with pytest.raises(MemoryBudgetError, match="time grid"):
        limits.solve(sde, 1.0, [1e6], dt=1e-3)
    with pytest.raises(MemoryBudgetError, match="time grid"):
        limits.solve(limits.UnshapedCorrelationSDE(), None, [1e300])     # geometric grid


def test_solve_memory_guard_real_sizes():
    """Sizes no machine has: refused with the bytes, not a NumPy MemoryError."""
    sde = limits.OrnsteinUhlenbeck(1.0, 0.5)
    with pytest.raises(MemoryBudgetError, match=r"needs about [\d,]+ bytes"):
        limits.solve(sde, 1.0, [1.0], paths=10 ** 15)
    with pytest.raises(MemoryBudgetError, match="time grid"):
        limits.solve(sde, 1.0, [1e12], dt=1e-3)


def test_trainers_memory_guard(monkeypatch, tmp_path):
    from limits import resnet_scaling as rs
    from limits.trainability import train_tanh_mlp, trainability_grid
    with pytest.raises(MemoryBudgetError, match="train_tanh_mlp"):
        train_tanh_mlp(2, 1.0, width=10 ** 9)
    with pytest.raises(MemoryBudgetError, match="train\\(depth=1000000000"):
        rs.train(10 ** 9, max_epochs=1)
    store = tmp_path / "t.sqlite"
    with pytest.raises(MemoryBudgetError, match="depth=1000000000000"):
        trainability_grid([1.0], [10 ** 12], str(store))
    assert not store.exists()                 # refused before the store was created
    _tiny_memory(monkeypatch)
    with pytest.raises(MemoryBudgetError):
        train_tanh_mlp(200, 1.0, width=64)


def test_train_tanh_mlp_seed():
    from limits.trainability import train_tanh_mlp
    with pytest.raises(TypeError, match="seed"):
        train_tanh_mlp(2, 1.0, seed="a")
    with pytest.raises(ValueError, match="seed"):
        train_tanh_mlp(2, 1.0, seed=-1)


# ----------------------------------------------------------------------------------------------
# SDE initial values and ItoSDE callables
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sde, bad", [
    (limits.CorrelationSDE(1.0, -1.0), 0.3 + 0j),
    (limits.CorrelationSDE(1.0, -1.0), "0.3"),
    (limits.GeometricBM(0.0, 1.0), 1j),
    (limits.UnshapedCorrelationSDE(), 1 + 0j),
    (limits.GeometricBM(0.0, 1.0), None),
])
def test_sde_initial_value_types(sde, bad):
    with pytest.raises(TypeError, match="y0"):
        limits.solve(sde, bad, [0.5])


def test_resnet_ode_complex_K0():
    """NumPy would drop the imaginary part with only a ComplexWarning."""
    with pytest.raises(TypeError, match="y0 = K0"):
        limits.solve(limits.ResNetODE(kn.ReLU()), np.eye(2) + 0j, [0.5])
    with pytest.raises(TypeError, match="ntk0"):
        limits.solve(limits.ResNetODE(kn.ReLU()), np.eye(2), [0.5], ntk0=np.eye(2) + 1j)


@numba.njit
def _drift_two(t, y, out):
    out[0] = -y[0]
    out[1] = -y[0]


@numba.njit
def _vol(t, y, out):
    out[0] = 0.5


@numba.njit
def _vol_matrix_wide(t, y, out):
    for j in range(3):
        out[0, j] = 0.1


def test_itosde_write_past_out():
    """Compiled code does not check bounds: a drift written for dim 2 and declared dim 1
    would corrupt memory; it is caught before the solver runs."""
    with pytest.raises(ValueError, match=r"drift\(t, y0, out\) wrote past the end of out"):
        limits.solve(limits.ItoSDE(_drift_two, _vol, 1), 1.0, [0.5], paths=2)
    with pytest.raises(ValueError, match=r"diffusion\(t, y0, out\) wrote past"):
        limits.solve(limits.ItoSDE(_vol, _vol_matrix_wide, 1, noise_dim=2), 1.0, [0.5],
                     paths=2)


# ----------------------------------------------------------------------------------------------
# python -m kernels
# ----------------------------------------------------------------------------------------------
def _kernels_cli(*args):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "kernels", *args], capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.mark.parametrize("args, match", [
    (["--depths", "10000000000000"], "--depths 10000000000000: depth must be <= "),
    (["--tanh-max-depth", "-1"], "--tanh-max-depth must be >= 0"),
])
def test_kernels_cli_refusals(args, match):
    r = _kernels_cli(*args)
    assert r.returncode == 2 and match in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert r.stdout == ""
