"""Covariance SDEs of m >= 3 inputs (shaped ReLU) and of smooth activations (any m): the
multiplicative Euler scheme of ``limits.solve`` against the SymPy derivation, exact laws,
the m = 2 solver, and finite networks (theory/sde.md §2.3, §2.5, §2.6)."""
import math

import numpy as np
import pytest
from scipy import stats

import kernels as kn
import limits
from limits import sde as S

Z = 4.0
V3 = np.array([[1.0, 0.3, -0.2], [0.3, 2.0, 0.5], [-0.2, 0.5, 1.5]])


def _pairs(m):
    return [(a, b) for a in range(m) for b in range(a, m)]


def _flat(V):
    return np.array([V[a, b] for a, b in _pairs(V.shape[0])])


@pytest.mark.parametrize("m", [3, 4])
def test_shaped_relu_drift_equals_the_sympy_derivation(m):
    """The compiled b(V) is the derivation's b (derive.covariance_sde), also near rho = +-1."""
    rng = np.random.default_rng(m)
    B, out = np.empty((m, m, 1)), np.empty(m * (m + 1) // 2)
    for c_plus, c_minus in ((0.0, -2.0), (0.7, 0.2)):
        comp = limits.CovarianceSDE(c_plus, c_minus).derivation(n_inputs=m).compile()
        C = (c_plus - c_minus) ** 2
        for trial in range(10):
            A = rng.standard_normal((m, m + 1))
            V = A @ A.T
            if trial == 0:                     # two nearly parallel and one nearly antipodal
                V[1] = V[0] * (1 + 1e-9)
                V[:, 1] = V[1]
                V[1, 1] = V[0, 0] * (1 + 1e-9) ** 2 + 1e-12
            S._cov_drift_relu(np.array([C]), V[:, :, None], B)
            comp.drift(_flat(V), np.zeros(0), out)
            np.testing.assert_allclose(_flat(B[:, :, 0]), out, rtol=1e-10, atol=1e-12 * np.abs(V).max())


def test_smooth_drift_equals_the_sympy_derivation():
    rng = np.random.default_rng(1)
    for normalise in (False, True):
        comp = limits.SmoothCovarianceSDE(normalise=normalise).derivation(n_inputs=3).compile()
        B, out = np.empty((3, 3, 1)), np.empty(6)
        for a2, a3 in ((0.0, -1 / 3), (0.4, 0.1), (-0.3, -0.05)):
            sde = limits.SmoothCovarianceSDE(a2, a3, normalise)
            A = rng.standard_normal((3, 4))
            V = A @ A.T
            S._cov_drift_smooth(sde.params, V[:, :, None], B)
            comp.drift(_flat(V), np.array([a2, a3]), out)
            np.testing.assert_allclose(_flat(B[:, :, 0]), out, rtol=1e-13, atol=1e-14)


def test_one_step_covariance_is_sigma():
    """Cov(V' - V) / h -> Sigma^{ab,cd} = V^ac V^bd + V^ad V^bc (derive.covariance_sde's
    diffusion), within Monte Carlo error, for one small step from V3."""
    h, P = 1e-4, 200_000
    sol = limits.solve(limits.CovarianceSDE(0.0, -2.0), V3, [h], paths=P, seed=3, dt=h)
    dV = np.array([sol.values[0][:, a, b] - V3[a, b] for a, b in _pairs(3)]).T
    emp = np.cov(dV, rowvar=False) / h
    comp = limits.CovarianceSDE(0.0, -2.0).derivation(n_inputs=3).compile()
    Sig = np.empty((6, 6))
    comp.diffusion(_flat(V3), np.zeros(0), Sig)
    # sd of a sample covariance entry: sqrt((Sig_ii Sig_jj + Sig_ij^2) / P)
    se = np.sqrt((np.outer(np.diag(Sig), np.diag(Sig)) + Sig ** 2) / P)
    assert np.all(np.abs(emp - Sig) < Z * se + 20 * h * np.abs(Sig).max()), (emp - Sig) / se


def test_three_inputs_norms_pairs_and_definiteness():
    """ln V_aa is exactly N(ln V_aa(0) - t, 2 t) (sde.md §2.5); every 2 x 2 sub-block has the law
    of the two-input SDE (solved by the other scheme, in log / Fisher-z coordinates); V stays
    positive definite."""
    P, T, h = 20_000, 1.0, 1e-3
    sde = limits.CovarianceSDE(0.0, -2.0)
    V = limits.solve(sde, V3, [T], paths=P, seed=1, dt=h).values[0]
    assert V.shape == (P, 3, 3) and np.array_equal(V, V.transpose(0, 2, 1))
    assert np.all(np.linalg.eigvalsh(V) > 0)
    for a in range(3):
        lv = np.log(V[:, a, a])
        assert abs(lv.mean() - (math.log(V3[a, a]) - T)) < Z * math.sqrt(2 * T / P) + 2 * h
        assert abs(lv.var() / (2 * T) - 1) < Z * math.sqrt(2 / P) + 2 * h
    for a, b in ((0, 1), (1, 2), (0, 2)):
        sub = V3[np.ix_([a, b], [a, b])]
        V2 = limits.solve(sde, sub, [T], paths=P, seed=10 + a + b, dt=h).values[0]
        for f in (lambda M, i, j: M[:, i, j] / np.sqrt(M[:, i, i] * M[:, j, j]),
                  lambda M, i, j: M[:, i, j]):
            assert stats.ks_2samp(f(V, a, b), f(V2, 0, 1)).pvalue > 1e-3


def test_nearly_singular_start_stays_definite():
    """Three inputs at pairwise correlation 0.999 (C = 4 pushes them apart, noise may push them
    together): every saved V is positive definite, no clipping."""
    V0 = np.full((3, 3), 0.999) + 0.001 * np.eye(3)
    sol = limits.solve(limits.CovarianceSDE(0.0, -2.0), V0, [0.1, 1.0, 3.0], paths=2000, seed=2,
                       dt=1e-3)
    assert np.all(np.linalg.eigvalsh(sol.values) > 0)


def test_martingale_case_is_exact_gbm_for_every_m():
    """a2 = a3 = 0: b = 0, so dV = sqrt 2 V dB on the diagonal (geometric BM) for m = 1 and 3,
    and E[V_t] = V_0 entrywise (a martingale)."""
    P, T = 20_000, 0.5
    sde = limits.SmoothCovarianceSDE(0.0, 0.0)
    v1 = limits.solve(sde, 2.0, [T], paths=P, seed=4, dt=1e-3).values[0]
    assert v1.shape == (P, 1, 1)
    lv = np.log(v1[:, 0, 0])
    assert abs(lv.mean() - (math.log(2.0) - T)) < Z * math.sqrt(2 * T / P) + 2e-3
    V = limits.solve(sde, V3, [T], paths=P, seed=5, dt=1e-3).values[0]
    se = V.std(0) / math.sqrt(P)
    assert np.all(np.abs(V.mean(0) - V3) < Z * se)


def _erf_network(n, T):
    """MLP with phi_s(x) = s (sqrt(pi)/2) erf(x / s), s = sqrt(n) (phi'' = 0, phi''' = -2, so
    a2 = 0, a3 = -1/3 with a = 1), weights N(0, 1/n), no bias."""
    s = math.sqrt(n)
    return kn.MLP(depth=max(1, round(T * n)), activation=kn.Erf(s * math.sqrt(math.pi) / 2, 1 / s),
                  weight_var=1.0, bias_var=0.0)


def test_smooth_sde_matches_an_erf_network():
    """The erf network (beta = -2, no explosion) at n = 256, depth T n: ln V_aa and rho_ab of its
    last-layer Gram against the SDE started from its first-layer Gram (KS, 3000 vs 20000)."""
    n, T = 256, 0.5
    net = _erf_network(n, T)
    x = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.2, math.sqrt(0.87)]]) * 1.2
    g = kn.simulate_paths(net, x, width=n, samples=3000, seed=7, layers=[0, net.depth],
                          progress=False).gram
    V0 = g[0, 0]
    assert np.allclose(g[:, 0], V0)                  # the input layer is deterministic
    lim = limits.solve(limits.SmoothCovarianceSDE.from_activation(0.0, -2.0), V0, [T],
                       paths=20_000, seed=8, dt=1e-3).values[0]
    net_V = g[:, 1]
    for a in range(3):
        p = stats.ks_2samp(np.log(net_V[:, a, a]), np.log(lim[:, a, a])).pvalue
        assert p > 1e-3, (a, p)
    for a, b in ((0, 1), (1, 2), (0, 2)):
        r_net = net_V[:, a, b] / np.sqrt(net_V[:, a, a] * net_V[:, b, b])
        r_lim = lim[:, a, b] / np.sqrt(lim[:, a, a] * lim[:, b, b])
        assert stats.ks_2samp(r_net, r_lim).pvalue > 1e-3, (a, b)


def test_shaped_relu_sde_matches_a_three_input_network():
    """Shaped ReLU (c+ = 1, c- = -1, C = 4) at n = 256, T = 0.5, three inputs."""
    n, T = 256, 0.5
    sde = limits.CovarianceSDE(1.0, -1.0)
    net, _ = sde.network(n, T)
    x = np.array([[1.0, 0.0, 0.0], [0.3, math.sqrt(0.91), 0.0], [-0.5, 0.1, math.sqrt(0.74)]])
    x = x * math.sqrt(2.0)
    g = kn.simulate_paths(net, x, width=n, samples=3000, seed=9, layers=[0, net.depth],
                          progress=False).gram
    V0 = g[0, 0]
    lim = limits.solve(sde, V0, [T], paths=20_000, seed=10, dt=1e-3).values[0]
    net_V = g[:, 1]
    for a, b in ((0, 1), (1, 2), (0, 2), (0, 0), (2, 2)):
        if a == b:
            f_net, f_lim = np.log(net_V[:, a, a]), np.log(lim[:, a, a])
        else:
            f_net = net_V[:, a, b] / np.sqrt(net_V[:, a, a] * net_V[:, b, b])
            f_lim = lim[:, a, b] / np.sqrt(lim[:, a, a] * lim[:, b, b])
        cmp = limits.compare(f_lim, f_net)
        assert cmp.ks_pvalue[0] > 1e-3 and abs(cmp.z[0]) < Z, (a, b, cmp)


@pytest.mark.parametrize("bad, match", [
    (np.eye(3)[:2], "m x m"),
    ([[1.0, 0.2, 0.0], [0.1, 1.0, 0.0], [0.0, 0.0, 1.0]], "symmetric"),
    ([[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]], "positive definite"),
    ([[1.0, np.nan, 0], [np.nan, 1, 0], [0, 0, 1]], "finite"),
])
def test_bad_covariances(bad, match):
    with pytest.raises(ValueError, match=match):
        limits.solve(limits.CovarianceSDE(), bad, [1.0])
    with pytest.raises(ValueError, match=match):
        limits.solve(limits.SmoothCovarianceSDE(), bad, [1.0])


def test_bad_smooth_parameters_and_methods():
    with pytest.raises(ValueError, match="a2"):
        limits.SmoothCovarianceSDE(a2=float("inf"))
    with pytest.raises(TypeError, match="normalise"):
        limits.SmoothCovarianceSDE(normalise="yes")
    with pytest.raises(ValueError, match="a"):
        limits.SmoothCovarianceSDE.from_activation(0.0, -2.0, a=0.0)
    with pytest.raises(ValueError, match="Euler-Maruyama only"):
        limits.solve(limits.CovarianceSDE(), V3, [1.0], method="heun")
    with pytest.raises(ValueError, match="m >= 2"):
        limits.solve(limits.CovarianceSDE(), [[1.0]], [1.0])


def test_explosion_is_reported_not_returned():
    """beta = 3 a2^2 > 0: the norm explodes in finite time with positive probability (sde.md
    §2.6, Feller); solve raises instead of returning inf/NaN."""
    sde = limits.SmoothCovarianceSDE(a2=3.0)
    with pytest.raises(FloatingPointError, match="non-finite"):
        limits.solve(sde, 5.0, [5.0], paths=2000, seed=0, dt=1e-3)


def test_smooth_sde_towards_a_singular_V_is_stable():
    """Odd smooth activations drive three inputs towards collinearity (log det V falls about
    linearly in t); the scheme must stay positive definite and agree with itself at 4x smaller
    steps (median of log det V at T = 2 within 4 standard errors)."""
    sde = limits.SmoothCovarianceSDE.from_activation(0.0, -2.0)
    P = 4000
    med = []
    for dt, seed in ((1e-3, 11), (2.5e-4, 12)):
        V = limits.solve(sde, V3, [2.0], paths=P, seed=seed, dt=dt).values[0]
        assert np.all(np.linalg.eigvalsh(V) > 0)
        ld = np.linalg.slogdet(V)[1]
        med.append((np.median(ld), 1.2533 * ld.std() / math.sqrt(P)))
    (m1, s1), (m2, s2) = med
    assert m1 < math.log(np.linalg.det(V3)) - 10          # it did approach the boundary
    assert abs(m1 - m2) < Z * math.hypot(s1, s2)


def test_paths_do_not_depend_on_how_they_are_grouped():
    """Path j's numbers depend only on (seed, j): the first 5 of 37 paths (lanes partly
    filled, several tasks) equal a 5-path run, bit for bit."""
    for sde in (limits.CovarianceSDE(0.0, -2.0), limits.SmoothCovarianceSDE(0.2, -0.3)):
        a = limits.solve(sde, V3, [0.05, 0.1], paths=37, seed=3, dt=1e-3).values
        b = limits.solve(sde, V3, [0.05, 0.1], paths=5, seed=3, dt=1e-3).values
        np.testing.assert_array_equal(a[:, :5], b)
