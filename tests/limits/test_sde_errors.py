"""Hostile inputs to the SDE objects and limits.solve (issue 21): every one gets the right answer
or a clear, early error naming the argument.

Expected values: exact identities (scale equivariance of the shaped-ReLU covariance SDE, the
correlation of V0), not outputs of this code.
"""
import math
import warnings

import numpy as np
import pytest

import kernels as kn
import limits

V2 = np.array([[1.0, 0.3], [0.3, 2.0]])
V3 = np.array([[1.0, 0.3, -0.2], [0.3, 2.0, 0.5], [-0.2, 0.5, 1.5]])


@pytest.mark.parametrize("make, exc, match", [
    (lambda: limits.GeometricBM(mu="a"), TypeError, "mu must be a real number"),
    (lambda: limits.GeometricBM(sigma=None), TypeError, "sigma"),
    (lambda: limits.GeometricBM(mu=float("nan")), ValueError, "mu must be finite"),
    (lambda: limits.OrnsteinUhlenbeck(theta=None), TypeError, "theta must be a real number"),
    (lambda: limits.OrnsteinUhlenbeck(sigma=float("inf")), ValueError, "sigma must be finite"),
    (lambda: limits.CorrelationSDE(1e200, -1e200), ValueError, "overflows"),
    (lambda: limits.CovarianceSDE(-1e155, 1e155), ValueError, "overflows"),
    (lambda: limits.PeluchettiFavaroSDE(kn.ShapedReLU(1, -1)), ValueError, "rate='width'"),
])
def test_bad_parameters_are_refused_at_construction(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_large_but_finite_C_is_accepted():
    assert limits.CorrelationSDE(1e100, -1e100).C == pytest.approx(4e200)


def test_peluchetti_favaro_shaped_relu_at_width_rate_resolves_at_the_width():
    """rate='width' slopes are 1 + c/sqrt(D): the SDE equals the one of the resolved ABReLU."""
    D = 9
    act = kn.ShapedReLU(1.0, -1.0, rate="width")
    a = limits.solve(limits.PeluchettiFavaroSDE(act, width=D), V2, [0.2], paths=3, seed=1).values
    b = limits.solve(limits.PeluchettiFavaroSDE(act.resolved(D), width=D), V2, [0.2], paths=3,
                     seed=1).values
    np.testing.assert_array_equal(a, b)
    assert act.resolved(D).a == pytest.approx(1 - 1 / 3) and act.resolved(D).b == pytest.approx(
        1 + 1 / 3)


def test_v0_asymmetric_by_one_ulp_is_symmetrised():
    Va = V2.copy()
    Va[0, 1] = np.nextafter(0.3, 1.0)
    for sde, V in ((limits.CovarianceSDE(1, -1), Va),
                   (limits.CovarianceSDE(1, -1), np.pad(Va, (0, 1)) + np.diag([0, 0, 1.0])),
                   (limits.SmoothCovarianceSDE(0.1, -0.2), Va)):
        v = limits.solve(sde, V, [0.0, 0.1], paths=2, seed=0).values
        np.testing.assert_allclose(v[0, 0, :2, :2], 0.5 * (Va + Va.T), rtol=1e-15)
    bad = V2.copy()
    bad[0, 1] = 0.3 + 1e-9
    with pytest.raises(ValueError, match="symmetric"):
        limits.solve(limits.CovarianceSDE(), bad, [0.1])


@pytest.mark.parametrize("scale", [1e154, 1e155, 1e200, 1e300, 1e-162, 1e-200, 1e-300])
def test_two_input_covariance_sde_at_any_scale(scale):
    """The SDE is scale-equivariant (b and Sigma^{1/2} are 1-homogeneous): V_t(c V0) = c V_t(V0)
    path by path; rho0 is kept at every scale.  (Not bit for bit: the solver carries ln V, whose
    ulp at |ln V| ~ 700 is 1e-13, so V agrees to about 1e-12 after the steps.)"""
    ref = limits.solve(limits.CovarianceSDE(1, -1), V2, [0.0, 0.3], paths=5, seed=2).values
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = limits.solve(limits.CovarianceSDE(1, -1), V2 * scale, [0.0, 0.3], paths=5,
                           seed=2).values
    rho = got[..., 0, 1] / np.sqrt(got[..., 0, 0]) / np.sqrt(got[..., 1, 1])
    np.testing.assert_allclose(rho[0], 0.3 / math.sqrt(2.0), rtol=1e-14)
    np.testing.assert_allclose(got / scale, ref, rtol=1e-10)


@pytest.mark.parametrize("scale", [4.0 ** 200, 1e155, 1e-162, 4.0 ** -250])
def test_three_input_covariance_sde_at_any_scale(scale):
    ref = limits.solve(limits.CovarianceSDE(1, -1), V3, [0.3], paths=5, seed=2).values
    got = limits.solve(limits.CovarianceSDE(1, -1), V3 * scale, [0.3], paths=5, seed=2).values
    np.testing.assert_allclose(got / scale, ref, rtol=1e-12)
    if math.log(scale, 4).is_integer():                # exact rescaling by powers of 4
        np.testing.assert_array_equal(got / scale, ref)


def test_smooth_covariance_out_of_range_is_refused():
    for scale in (1e155, 1e-162):
        with pytest.raises(ValueError, match="1e-100 .. 1e100"):
            limits.solve(limits.SmoothCovarianceSDE(0.1, 0.0), V3 * scale, [0.1])


def test_complex_v0_is_refused():
    with pytest.raises(TypeError, match="real"):
        limits.solve(limits.CovarianceSDE(), V2 + 0j, [0.1])


def test_resnet_ode_non_psd_k0_names_y0():
    K0 = [[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]]
    with pytest.raises(ValueError, match="y0 = K0 must be positive semi-definite"):
        limits.solve(limits.ResNetODE(), K0, [1.0])


@pytest.mark.parametrize("sde", [limits.UnshapedCorrelationSDE(), limits.LinearSDE()])
def test_singular_sde_step_is_checked(sde):
    """dt is the relative step h of the geometric grid: h >= 1 overshoots (Euler factor 1 - h
    of the 1/t drift) and is refused; 4e-3 < h < 1 is warned (sde.md §5.4)."""
    with pytest.raises(ValueError, match="relative step"):
        limits.solve(sde, None, [0.5], paths=2, dt=10)
    with pytest.warns(RuntimeWarning, match="4e-3"):
        v = limits.solve(sde, None, [0.5], paths=2, dt=0.01).values
    assert np.all(v > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        limits.solve(sde, None, [0.5], paths=2, dt=4e-3)


def test_cli_reports_an_overflowing_c_without_a_traceback(capsys):
    from limits.__main__ import main
    assert main(["sde", "--c-plus", "1e200", "--c-minus=-1e200", "--paths", "10",
                 "--no-progress"]) == 2
    assert "overflows" in capsys.readouterr().err
