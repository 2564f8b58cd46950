"""limits.ItoSDE: user SDEs from numba-compiled drift and diffusion, solved by limits.solve.

Expected values: closed forms of linear SDEs (geometric Brownian motion, Ornstein-Uhlenbeck with
correlated noise), with tolerances of 4 standard errors plus the exactly known bias of
Euler-Maruyama; reproducibility against the built-in scalar SDEs' streams.
"""
import math

import numba
import numpy as np
import pytest

import limits

Z = 4.0


@numba.njit
def _gbm_drift(t, y, out):
    out[0] = 0.5 * y[0]


@numba.njit
def _gbm_diffusion(t, y, out):
    out[0] = 0.4 * y[0]


@numba.njit
def _ou_drift(t, y, out):
    for r in range(y.shape[0]):
        out[r] = -1.5 * y[r]


@numba.njit
def _ou_diffusion(t, y, out):
    for r in range(y.shape[0]):
        out[r] = 0.7


_B = np.array([[1.0, 0.0], [0.6, 0.8]])


@numba.njit
def _corr_diffusion(t, y, out):
    out[0, 0] = 1.0
    out[0, 1] = 0.0
    out[1, 0] = 0.6
    out[1, 1] = 0.8


GBM = limits.ItoSDE(_gbm_drift, _gbm_diffusion, 1)


def test_geometric_brownian_motion_mean():
    """E X_T = x0 e^{mu T}; Euler-Maruyama's mean is x0 (1 + mu h)^n, whose bias is below
    x0 e^{mu T} mu^2 h T / 2."""
    mu, x0, T, P, n = 0.5, 2.0, 1.0, 200_000, 200
    h = T / n
    x = limits.solve(GBM, x0, [T], paths=P, seed=11, dt=h).values[0]
    exact = x0 * math.exp(mu * T)
    bias = x0 * math.exp(mu * T) * mu * mu * h * T / 2
    assert abs(exact - x0 * (1 + mu * h) ** n) <= bias            # the bound holds
    se = x.std(ddof=1) / math.sqrt(P)
    assert abs(x.mean() - exact) < Z * se + bias


def test_one_dimensional_itosde_draws_the_numbers_of_the_built_in_sdes():
    """Diagonal noise in dimension 1 takes normal i of path j at step i, as the built-in scalar
    kernels do: the user's GBM equals GeometricBM bit for bit."""
    a = limits.solve(GBM, 1.0, [0.3, 1.0], paths=50, seed=4, dt=1e-2).values
    b = limits.solve(limits.GeometricBM(0.5, 0.4), 1.0, [0.3, 1.0], paths=50, seed=4,
                     dt=1e-2).values
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 50)


def test_ornstein_uhlenbeck_variance():
    """Var X_T = sigma^2 (1 - e^{-2 theta T}) / (2 theta) in each of 3 independent coordinates;
    Euler's variance is sigma^2 h (1 - r^{2n}) / (1 - r^2), r = 1 - theta h (its bias is taken
    exactly); se of a normal sample variance s^2 sqrt(2 / (P - 1))."""
    theta, sigma, T, P, n = 1.5, 0.7, 1.0, 200_000, 100
    h = T / n
    sde = limits.ItoSDE(_ou_drift, _ou_diffusion, 3)
    x = limits.solve(sde, [1.0, -2.0, 0.0], [T], paths=P, seed=5, dt=h).values[0]
    assert x.shape == (P, 3)
    exact = sigma ** 2 * (1 - math.exp(-2 * theta * T)) / (2 * theta)
    r = 1 - theta * h
    euler = sigma ** 2 * h * (1 - r ** (2 * n)) / (1 - r * r)
    var = x.var(0, ddof=1)
    se = var * math.sqrt(2 / (P - 1))
    assert np.all(np.abs(var - exact) < Z * se + abs(euler - exact))
    # the means: X0 e^{-theta T} (Euler: X0 r^n)
    mean_se = np.sqrt(var / P)
    x0 = np.array([1.0, -2.0, 0.0])
    bias = np.abs(x0) * abs(r ** n - math.exp(-theta * T))
    assert np.all(np.abs(x.mean(0) - x0 * math.exp(-theta * T)) < Z * mean_se + bias)


def test_correlated_noise_covariance():
    """dX = -theta X dt + B dW with B (2, 2): Cov X_T = B B^T (1 - e^{-2 theta T}) / (2 theta)
    (Euler: B B^T h (1 - r^{2n}) / (1 - r^2)); se of a sample covariance of a normal vector
    sqrt((S_aa S_bb + S_ab^2) / P)."""
    theta, T, P, n = 1.5, 1.0, 200_000, 100
    h = T / n
    sde = limits.ItoSDE(_ou_drift, _corr_diffusion, 2, noise_dim=2)
    x = limits.solve(sde, [0.5, 0.5], [T], paths=P, seed=6, dt=h).values[0]
    BB = _B @ _B.T
    exact = BB * (1 - math.exp(-2 * theta * T)) / (2 * theta)
    r = 1 - theta * h
    euler = BB * h * (1 - r ** (2 * n)) / (1 - r * r)
    cov = np.cov(x.T)
    d = np.diag(cov)
    se = np.sqrt((np.outer(d, d) + cov ** 2) / P)
    assert np.all(np.abs(cov - exact) < Z * se + np.abs(euler - exact))
    assert abs(exact[0, 1] / math.sqrt(exact[0, 0] * exact[1, 1]) - 0.6) < 1e-12


@numba.njit
def _wide_diffusion(t, y, out):
    for r in range(out.shape[0]):
        for q in range(out.shape[1]):
            out[r, q] = 0.1 * (r + 1) * (q + 1)


def test_paths_do_not_depend_on_how_many_are_solved_or_on_threads():
    for sde, y0 in ((limits.ItoSDE(_ou_drift, _ou_diffusion, 3), [1.0, 0.0, -1.0]),
                    (limits.ItoSDE(_ou_drift, _wide_diffusion, 2, noise_dim=3), [1.0, 0.0])):
        a = limits.solve(sde, y0, [0.05, 0.1], paths=37, seed=3, dt=1e-2).values
        b = limits.solve(sde, y0, [0.05, 0.1], paths=5, seed=3, dt=1e-2).values
        np.testing.assert_array_equal(a[:, :5], b)
        old = numba.get_num_threads()
        try:
            numba.set_num_threads(1)
            c = limits.solve(sde, y0, [0.05, 0.1], paths=37, seed=3, dt=1e-2).values
        finally:
            numba.set_num_threads(old)
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(a[0], limits.solve(sde, y0, [0.05], paths=37, seed=3,
                                                         dt=1e-2).values[0])
        assert a.shape == (2, 37, len(y0))


def _python_drift(t, y, out):
    out[0] = 0.0


@numba.njit
def _two_argument_drift(t, y):
    return y


@numba.njit
def _silent_diffusion(t, y, out):
    pass


@pytest.mark.parametrize("make, exc, match", [
    (lambda: limits.ItoSDE(_python_drift, _gbm_diffusion, 1), TypeError, "drift"),
    (lambda: limits.ItoSDE(_gbm_drift, "sigma", 1), TypeError, "diffusion"),
    (lambda: limits.ItoSDE(_gbm_drift, _gbm_diffusion, 0), ValueError, "dim"),
    (lambda: limits.ItoSDE(_gbm_drift, _gbm_diffusion, 2.0), TypeError, "dim"),
    (lambda: limits.ItoSDE(_gbm_drift, _gbm_diffusion, True), TypeError, "dim"),
    (lambda: limits.ItoSDE(_gbm_drift, _gbm_diffusion, 1, noise_dim=0), ValueError,
     "noise_dim"),
    (lambda: limits.ItoSDE(_gbm_drift, _gbm_diffusion, 1, noise_dim="2"), TypeError,
     "noise_dim"),
])
def test_bad_construction(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("sde, y0, kw, exc, match", [
    (GBM, 1.0, dict(method="heun"), ValueError, "Euler-Maruyama only"),
    (GBM, 1.0, dict(method="milstein"), ValueError, "Euler-Maruyama only"),
    (GBM, [1.0, 2.0], {}, ValueError, "shape"),
    (GBM, float("nan"), {}, ValueError, "finite"),
    (GBM, 1j, {}, TypeError, "real"),
    (limits.ItoSDE(_two_argument_drift, _gbm_diffusion, 1), 1.0, {}, TypeError, "drift"),
    (limits.ItoSDE(_gbm_drift, _silent_diffusion, 1), 1.0, {}, ValueError, "diffusion"),
])
def test_bad_solve(sde, y0, kw, exc, match):
    with pytest.raises(exc, match=match):
        limits.solve(sde, y0, [1.0], paths=2, **kw)
