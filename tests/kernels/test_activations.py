"""Gaussian kernel maps V and Vdot of the activations (theory/kernels.md §1).

Expected values come from the §1.4 / §1.5 oracle tables, from closed forms re-derived in this file
(mpmath), from scipy.integrate.dblquad, or from Monte Carlo with a standard-error tolerance.
"""
import math

import mpmath as mp
import numpy as np
import pytest
from scipy import integrate
from scipy.special import erf as sp_erf

import kernels as kn
from limits.validate import reference_table

Q1, Q2, C = 1.0, 2.0, 0.5

# kernels.md §1.5, oracle table at (q1, q2, c) = (1, 2, 0.5): (V, Vdot, V(1, 1, 1)), and the §1.4
# tanh values; shipped as limits/_data/kernels_oracles.json (one copy for tests and validate)
_ORACLES = reference_table("kernels_oracles")
ORACLE_15 = {name: (lambda row=row: getattr(kn, row["activation"])(*row["args"]), *row["values"])
             for name, row in _ORACLES["activation_maps"]["rows"].items()}
TANH_14 = _ORACLES["tanh"]
THETA_15 = _ORACLES["activation_maps"]["theta"]    # kernels.md §1.5 (mpmath)


# ----------------------------------------------------------------------------------------------
# §1.5 closed-form oracle table
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ORACLE_15))
def test_oracle_table_V(name):
    make, V, _, _ = ORACLE_15[name]
    assert float(make().V(Q1, Q2, C)) == pytest.approx(V, rel=1e-12, abs=0)


@pytest.mark.parametrize("name", list(ORACLE_15))
def test_oracle_table_Vdot(name):
    make, _, Vd, _ = ORACLE_15[name]
    assert float(make().Vdot(Q1, Q2, C)) == pytest.approx(Vd, rel=1e-12, abs=0)


@pytest.mark.parametrize("name", list(ORACLE_15))
def test_oracle_table_V_diagonal(name):
    make, _, _, Vdiag = ORACLE_15[name]
    # the table's erf entry has 14 significant digits: still well inside 1e-12 relative
    assert float(make().V(1.0, 1.0, 1.0)) == pytest.approx(Vdiag, rel=1e-12, abs=0)


def test_oracle_angle_consistent_with_relu_vdot():
    # Vdot_relu = (pi - theta)/(2 pi) with the tabulated theta (kernels.md §1.1)
    assert float(kn.ReLU().Vdot(Q1, Q2, C)) == pytest.approx(
        (math.pi - THETA_15) / (2 * math.pi), rel=1e-14)


# ----------------------------------------------------------------------------------------------
# §1.4 tanh oracle (quadrature)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tanh():
    return kn.Tanh()


def test_tanh_V_oracle(tanh):
    assert float(tanh.V(1.0, 2.0, 0.5)) == pytest.approx(TANH_14["V(1, 2, 0.5)"], rel=1e-9,
                                                         abs=0)


def test_tanh_Vdot_oracle(tanh):
    assert float(tanh.Vdot(1.0, 2.0, 0.5)) == pytest.approx(TANH_14["Vdot(1, 2, 0.5)"], rel=1e-9,
                                                            abs=0)


def test_tanh_second_moment_oracle(tanh):
    assert float(tanh.V(1.0, 1.0, 1.0)) == pytest.approx(TANH_14["V(1, 1, 1)"], rel=1e-9,
                                                         abs=0)


def test_tanh_pointwise(tanh):
    x = np.linspace(-4, 4, 17)
    np.testing.assert_allclose(tanh(x), np.tanh(x), rtol=1e-15, atol=1e-16)
    np.testing.assert_allclose(tanh.derivative(x), 1 / np.cosh(x) ** 2, rtol=1e-13, atol=1e-16)


# ----------------------------------------------------------------------------------------------
# ABReLU family against an independent mpmath derivation (quadrant decomposition, §1.2)
# ----------------------------------------------------------------------------------------------
def _abrelu_mp(a, b, q1, q2, c):
    """V, Vdot from phi = b relu(x) - a relu(-x) and the quadrant probabilities (not NT's form)."""
    mp.mp.dps = 40
    a, b, q1, q2, c = (mp.mpf(t) for t in (a, b, q1, q2, c))
    s = mp.sqrt(q1 * q2)
    th = mp.acos(c / s)
    relu_relu = s * (mp.sin(th) + (mp.pi - th) * mp.cos(th)) / (2 * mp.pi)     # E relu(u) relu(v)
    relu_mrelu = s * (mp.sin(th) - th * mp.cos(th)) / (2 * mp.pi)             # E relu(u) relu(-v)
    V = (a * a + b * b) * relu_relu - 2 * a * b * relu_mrelu
    Vd = ((a * a + b * b) * (mp.pi - th) + 2 * a * b * th) / (2 * mp.pi)
    return float(V), float(Vd)


@pytest.mark.parametrize("a,b", [(0.0, 1.0), (0.2, 1.0), (-1.0, 1.0), (1.0, 1.0), (-0.5, 2.0),
                                 (1.3, 0.4)])
def test_abrelu_closed_form_random_points(a, b):
    rng = np.random.default_rng(11)
    act = kn.ABReLU(a, b)
    for _ in range(20):
        q1, q2 = rng.uniform(0.1, 3.0, size=2)
        c = rng.uniform(-0.99, 0.99) * math.sqrt(q1 * q2)
        V_ref, Vd_ref = _abrelu_mp(a, b, q1, q2, c)
        scale = math.sqrt(q1 * q2) * (a * a + b * b)
        assert float(act.V(q1, q2, c)) == pytest.approx(V_ref, rel=1e-12, abs=1e-15 * scale)
        assert float(act.Vdot(q1, q2, c)) == pytest.approx(Vd_ref, rel=1e-12,
                                                            abs=1e-15 * (a * a + b * b))


def test_named_constructors_are_abrelu():
    assert (kn.ReLU().a, kn.ReLU().b) == (0.0, 1.0)
    assert (kn.LeakyReLU(0.3).a, kn.LeakyReLU(0.3).b) == (0.3, 1.0)
    assert (kn.Identity().a, kn.Identity().b) == (1.0, 1.0)


def test_abrelu_pointwise():
    act = kn.ABReLU(-0.5, 2.0)
    x = np.array([-3.0, -0.5, 0.25, 4.0])
    np.testing.assert_array_equal(act(x), np.where(x > 0, 2.0 * x, -0.5 * x))
    np.testing.assert_array_equal(act.derivative(x), np.where(x > 0, 2.0, -0.5))


def test_relu_diagonal_identities():
    # V_relu(q, q, q) = q/2, Vdot_relu(q, q, q) = 1/2 (kernels.md §1.1)
    q = np.array([1e-8, 0.3, 1.0, 7.5, 1e6])
    np.testing.assert_allclose(kn.ReLU().V(q, q, q), q / 2, rtol=1e-15)
    np.testing.assert_allclose(kn.ReLU().Vdot(q, q, q), 0.5, rtol=1e-15)


def test_relu_anticorrelated_limit():
    # theta = pi: V = 0 and Vdot = 0 (relu(u) relu(-u) = 0)
    assert float(kn.ReLU().V(2.0, 2.0, -2.0)) == pytest.approx(0.0, abs=1e-15)
    assert float(kn.ReLU().Vdot(2.0, 2.0, -2.0)) == pytest.approx(0.0, abs=1e-15)


def test_zero_norm_angle_convention():
    # NT convention (kernels.md §1): a zero-norm input gives theta = pi/2
    act = kn.ABReLU(0.2, 1.0)
    m, fac = (0.04 + 1) / 2, (0.2 - 1) ** 2 / (2 * math.pi)
    assert float(act.V(0.0, 1.0, 0.0)) == 0.0
    assert float(act.Vdot(0.0, 1.0, 0.0)) == pytest.approx(m - fac * math.pi / 2, rel=1e-15)


def test_maps_broadcast():
    act = kn.ReLU()
    q1 = np.array([[1.0], [2.0]])
    q2 = np.array([1.0, 3.0, 0.5])
    c = 0.25 * np.sqrt(q1 * q2)
    V, Vd = act.V(q1, q2, c), act.Vdot(q1, q2, c)
    assert V.shape == Vd.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert V[i, j] == pytest.approx(float(act.V(q1[i, 0], q2[j], c[i, j])), rel=1e-15)
            assert Vd[i, j] == pytest.approx(float(act.Vdot(q1[i, 0], q2[j], c[i, j])), rel=1e-15)


# ----------------------------------------------------------------------------------------------
# erf with general (a, b, c0) against dblquad
# ----------------------------------------------------------------------------------------------
def _gauss2_expect(f, g, q1, q2, c, lim=12.0):
    """E[f(u) g(v)], (u, v) ~ N(0, [[q1, c], [c, q2]]), by dblquad in whitened coordinates."""
    s1 = math.sqrt(q1)
    r = c / s1
    e = math.sqrt(max(q2 - c * c / q1, 0.0))

    def integrand(z2, z1):
        return (f(s1 * z1) * g(r * z1 + e * z2)
                * math.exp(-0.5 * (z1 * z1 + z2 * z2)) / (2 * math.pi))

    val, err = integrate.dblquad(integrand, -lim, lim, -lim, lim, epsabs=1e-13, epsrel=1e-13)
    return val


def test_erf_general_parameters_vs_dblquad():
    a, b, c0 = 1.3, 0.7, 0.2
    act = kn.Erf(a, b, c0)
    phi = lambda t: a * math.erf(b * t) + c0
    dphi = lambda t: a * b * 2 / math.sqrt(math.pi) * math.exp(-(b * t) ** 2)
    V_ref = _gauss2_expect(phi, phi, 0.8, 1.7, -0.6)
    Vd_ref = _gauss2_expect(dphi, dphi, 0.8, 1.7, -0.6)
    assert float(act.V(0.8, 1.7, -0.6)) == pytest.approx(V_ref, rel=1e-10)
    assert float(act.Vdot(0.8, 1.7, -0.6)) == pytest.approx(Vd_ref, rel=1e-10)


def test_erf_pointwise():
    act = kn.Erf(1.3, 0.7, 0.2)
    x = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(act(x), 1.3 * sp_erf(0.7 * x) + 0.2, rtol=1e-15)
    np.testing.assert_allclose(act.derivative(x),
                               1.3 * 0.7 * 2 / math.sqrt(math.pi) * np.exp(-(0.7 * x) ** 2),
                               rtol=1e-14)


def test_tanh_vs_dblquad_other_point(tanh):
    V_ref = _gauss2_expect(math.tanh, math.tanh, 0.6, 1.4, 0.7)
    sech2 = lambda t: 1.0 / math.cosh(t) ** 2
    Vd_ref = _gauss2_expect(sech2, sech2, 0.6, 1.4, 0.7)
    # default deg = 150 Gauss-Hermite: ~1e-13 for q <= 2 (analytic strip pi/(2 sqrt(2q)))
    assert float(tanh.V(0.6, 1.4, 0.7)) == pytest.approx(V_ref, rel=1e-9)
    assert float(tanh.Vdot(0.6, 1.4, 0.7)) == pytest.approx(Vd_ref, rel=1e-9)


# ----------------------------------------------------------------------------------------------
# user activations: kn.Activation(fn[, deriv])
# ----------------------------------------------------------------------------------------------
def _softplus(x):
    return math.log1p(math.exp(x)) if x < 30.0 else x


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


@pytest.fixture(scope="module")
def softplus_ref():
    pts = [(1.0, 2.0, 0.5), (0.5, 0.5, -0.3)]
    return {p: (_gauss2_expect(_softplus, _softplus, *p), _gauss2_expect(_sigmoid, _sigmoid, *p))
            for p in pts}


@pytest.mark.parametrize("with_deriv", [True, False], ids=["deriv", "finite-diff"])
def test_user_activation_vs_dblquad(softplus_ref, with_deriv):
    act = kn.Activation(_softplus, _sigmoid if with_deriv else None)
    for (q1, q2, c), (V_ref, Vd_ref) in softplus_ref.items():
        assert float(act.V(q1, q2, c)) == pytest.approx(V_ref, rel=1e-9)
        # without deriv: 4th-order central difference, step 1e-3 (error ~1e-13)
        assert float(act.Vdot(q1, q2, c)) == pytest.approx(Vd_ref, rel=1e-9)


def test_user_activation_pointwise():
    act = kn.Activation(_softplus)
    x = np.array([-2.0, 0.0, 1.5])
    np.testing.assert_allclose(act(x), np.log1p(np.exp(x)), rtol=1e-15)
    np.testing.assert_allclose(act.derivative(x), 1 / (1 + np.exp(-x)), rtol=1e-10)


def test_user_activation_sin_closed_form():
    # E[sin u sin v] = exp(-(q1+q2)/2) sinh(c), E[cos u cos v] = exp(-(q1+q2)/2) cosh(c)
    # lambdas: numba cannot njit the builtins math.sin / math.cos themselves
    act = kn.Activation(lambda t: math.sin(t), lambda t: math.cos(t))
    for q1, q2, c in [(1.0, 2.0, 0.5), (0.3, 0.9, -0.4), (1.5, 1.5, 1.5)]:
        damp = math.exp(-(q1 + q2) / 2)
        assert float(act.V(q1, q2, c)) == pytest.approx(damp * math.sinh(c), rel=1e-11)
        assert float(act.Vdot(q1, q2, c)) == pytest.approx(damp * math.cosh(c), rel=1e-11)


def test_user_activation_identity_matches_closed_form():
    # GH quadrature is exact for polynomials: phi = x gives V = c, Vdot = 1
    act = kn.Activation(lambda t: t, lambda t: 1.0)
    assert float(act.V(1.0, 2.0, 0.5)) == pytest.approx(0.5, rel=1e-13)
    assert float(act.Vdot(1.0, 2.0, 0.5)) == pytest.approx(1.0, rel=1e-13)


# ----------------------------------------------------------------------------------------------
# Price identity dV/dc = Vdot (kernels.md §1)
# ----------------------------------------------------------------------------------------------
PRICE_ACTS = {
    "relu": kn.ReLU,
    "leaky0.2": lambda: kn.LeakyReLU(0.2),
    "abs": lambda: kn.ABReLU(-1.0, 1.0),
    "abrelu(-0.5,2)": lambda: kn.ABReLU(-0.5, 2.0),
    "identity": kn.Identity,
    "erf": lambda: kn.Erf(1.3, 0.7, 0.2),
    "tanh": kn.Tanh,
    "softplus": lambda: kn.Activation(_softplus, _sigmoid),
}


@pytest.mark.parametrize("name", list(PRICE_ACTS))
@pytest.mark.parametrize("q1,q2,c", [(1.0, 2.0, 0.5), (0.7, 0.4, -0.3), (1.5, 1.2, 1.1)])
def test_price_identity(name, q1, q2, c):
    act = PRICE_ACTS[name]()
    h = 1e-5
    dV = (float(act.V(q1, q2, c + h)) - float(act.V(q1, q2, c - h))) / (2 * h)
    # central difference: truncation h^2 V'''/6 ~ 1e-10, rounding ~1e-16/h = 1e-11
    assert dV == pytest.approx(float(act.Vdot(q1, q2, c)), rel=1e-7, abs=1e-9)


# ----------------------------------------------------------------------------------------------
# Monte Carlo
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("q1,q2,c", [(1.0, 2.0, 0.5), (0.5, 1.5, -0.6)])
def test_relu_monte_carlo(q1, q2, c):
    rng = np.random.default_rng(20240601)
    n = 1_000_000
    L = np.linalg.cholesky(np.array([[q1, c], [c, q2]]))
    uv = rng.standard_normal((n, 2)) @ L.T
    u, v = uv[:, 0], uv[:, 1]
    prod = np.maximum(u, 0) * np.maximum(v, 0)
    step = ((u > 0) & (v > 0)).astype(np.float64)
    act = kn.ReLU()
    for sample, expected in ((prod, float(act.V(q1, q2, c))), (step, float(act.Vdot(q1, q2, c)))):
        se = sample.std(ddof=1) / math.sqrt(n)
        assert abs(sample.mean() - expected) < 5 * se


# ----------------------------------------------------------------------------------------------
# accuracy of the default Gauss-Hermite rule (what the quadrature-based network tests rely on)
# ----------------------------------------------------------------------------------------------
def _mp_tanh_diag(q):
    """E[tanh(z)^2] and E[sech(z)^4], z ~ N(0, q), by mpmath quadrature (30 digits)."""
    mp.mp.dps = 30
    s = mp.sqrt(q)
    w = lambda z: mp.exp(-z * z / 2) / mp.sqrt(2 * mp.pi)
    pts = [-mp.inf, -3, 0, 3, mp.inf]
    V = mp.quad(lambda z: mp.tanh(s * z) ** 2 * w(z), pts)
    Vd = mp.quad(lambda z: mp.sech(s * z) ** 4 * w(z), pts)
    return float(V), float(Vd)


@pytest.mark.parametrize("q", [0.25, 0.5, 1.0])
def test_tanh_default_quadrature_accuracy_unit_variance(tanh, q):
    # the network-level tanh tests keep every variance <= 1 and rely on these bounds
    V, Vd = _mp_tanh_diag(q)
    assert float(tanh.V(q, q, q)) == pytest.approx(V, rel=1e-13)
    assert float(tanh.Vdot(q, q, q)) == pytest.approx(Vd, rel=2e-12)


def test_tanh_default_quadrature_accuracy_as_documented_q2(tanh):
    # the Activation docstring documents ~1e-14 at q = 2 for the default degree (300)
    V, Vd = _mp_tanh_diag(2.0)
    assert float(tanh.V(2.0, 2.0, 2.0)) == pytest.approx(V, rel=1e-12)
    assert float(tanh.Vdot(2.0, 2.0, 2.0)) == pytest.approx(Vd, rel=1e-12)


@pytest.mark.parametrize("q1,q2,c", [(0.5, 0.5, 0.5), (1.0, 1.0, 1.0), (2.0, 2.0, 2.0),
                                     (1.0, 2.0, 0.5), (2.0, 1.5, -1.2)])
def test_user_erf_quadrature_matches_closed_form(q1, q2, c):
    # kn.Activation(erf) by Gauss-Hermite vs the independent closed form (variances <= 2)
    act = kn.Activation(lambda t: math.erf(t), lambda t: 2 / math.sqrt(math.pi) * math.exp(-t * t))
    P = (1 + 2 * q1) * (1 + 2 * q2)
    V = 2 / math.pi * math.asin(2 * c / math.sqrt(P))
    Vd = 4 / math.pi / math.sqrt(P - 4 * c * c)
    assert float(act.V(q1, q2, c)) == pytest.approx(V, rel=1e-13)
    assert float(act.Vdot(q1, q2, c)) == pytest.approx(Vd, rel=1e-13)
