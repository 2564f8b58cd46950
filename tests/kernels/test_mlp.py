"""Fully connected networks: kn.MLP (theory/kernels.md §2, theory/sde.md §3.3).

Expected values: the §2.3 tables and closed forms, the sde.md §3.3 table, an mpmath iteration of
the He-ReLU correlation map, and a plain-numpy re-implementation of the §2.2 recursion written
below (its own maps: quadrant decomposition for ABReLU, Williams' formula for erf, its own
Gauss-Hermite rule for tanh).
"""
import math

import mpmath as mp
import numpy as np
import pytest

import kernels as kn
from limits.validate import reference_table
from tests._reference import abrelu_maps, erf_maps, gh_maps

PI = math.pi
E2 = np.array([[1.0, 0.0], [0.0, 1.0]])       # d = 2: K_1 = sw2 * I / 2, input correlation 0


# ----------------------------------------------------------------------------------------------
# independent reference implementation of kernels.md §2.2
# ----------------------------------------------------------------------------------------------
_abrelu_maps, _erf_maps = abrelu_maps, erf_maps


def _gh_maps(fn, dfn, deg=200):
    return gh_maps(fn, dfn, deg, min_weight=0.0)


def _mlp_reference(x, depth, maps, sw2, sb2):
    """K_1 = sw2 x.x'/d + sb2, Theta_1 = K_1; K <- sw2 V(K) + sb2, Theta <- K' + sw2 Vdot(K) Theta."""
    K = sw2 * (x @ x.T) / x.shape[1] + sb2
    T = K.copy()
    for _ in range(depth):
        q = np.diag(K).copy()
        V, Vd = maps(q[:, None], q[None, :], K)
        K_new = sw2 * V + sb2
        T = K_new + sw2 * Vd * T
        K = K_new
    return K, T


def _close(got, ref, rtol, scale_tol=0.0):
    """|got - ref| <= rtol |ref| + scale_tol sqrt(ref_ii ref_jj), entrywise."""
    d = np.sqrt(np.abs(np.diag(ref)))
    bound = rtol * np.abs(ref) + scale_tol * np.outer(d, d)
    bad = np.abs(got - ref) > bound
    assert not bad.any(), (f"max abs err {np.max(np.abs(got - ref)):.3e}, "
                           f"max rel err {np.max(np.abs(got - ref) / np.abs(ref)):.3e}")


@pytest.fixture(scope="module")
def xr():
    return np.random.default_rng(7).standard_normal((6, 4))


@pytest.fixture(scope="module")
def xs_small(xr):
    """xr rescaled so that max |x|^2 / d = 0.6: keeps every variance of the quadrature tests <= 1
    (Gauss-Hermite accuracy depends on the variance, see test_activations)."""
    return xr * math.sqrt(0.6 / np.max((xr * xr).sum(1) / xr.shape[1]))


# ----------------------------------------------------------------------------------------------
# §2.3 He-ReLU correlation map
# ----------------------------------------------------------------------------------------------
def _f_he(rho):        # sw2 = 2, unit diagonal: one ReLU layer
    return 2 * float(kn.ReLU().V(1.0, 1.0, rho))


def _fprime_he(rho):
    return 2 * float(kn.ReLU().Vdot(1.0, 1.0, rho))


def test_he_relu_map_values():
    assert _f_he(0.0) == pytest.approx(1 / PI, rel=1e-15)
    assert _f_he(0.0) == pytest.approx(0.3183098861837907, rel=1e-15)
    assert _f_he(1.0) == pytest.approx(1.0, rel=1e-15)
    assert _f_he(-1.0) == pytest.approx(0.0, abs=1e-15)
    assert _fprime_he(1.0) == pytest.approx(1.0, rel=1e-15)
    assert _fprime_he(0.0) == pytest.approx(0.5, rel=1e-15)
    assert _fprime_he(-1.0) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("x2,rho,theta", [((0.0, 1.0), 1 / PI, 1 / PI),       # f(0), Th = f(0)
                                          ((1.0, 0.0), 1.0, 2.0),             # f(1), f(1)+f'(1)
                                          ((-1.0, 0.0), 0.0, 0.0)])           # f(-1), f(-1)-f'(-1)
def test_he_relu_map_through_network(x2, rho, theta):
    x = np.array([[1.0, 0.0], x2])
    k = kn.MLP(1, kn.ReLU(), weight_var=2.0).kernels(x)
    assert k.nngp[0, 1] == pytest.approx(rho, rel=1e-15, abs=1e-15)
    assert k.ntk[0, 1] == pytest.approx(theta, rel=1e-15, abs=1e-15)


# kernels.md §2.3 table: n -> (rho_n = f^n(0), NTK off-diag, NTK diag)
_HE = reference_table("kernels_oracles")["he_relu_map"]
TABLE_23 = {n: row for n, row in enumerate(zip(_HE["rho_n"], _HE["ntk_offdiagonal_n"],
                                               _HE["ntk_diagonal_n"]), start=1)}
RHO_6_10 = _HE["rho_n"][5:10]


@pytest.mark.parametrize("n", sorted(TABLE_23))
def test_he_relu_table_nngp(n):
    K = kn.MLP(n, kn.ReLU(), weight_var=2.0).nngp(E2)
    rho, _, _ = TABLE_23[n]
    assert K[0, 1] == pytest.approx(rho, rel=1e-12)
    assert K[1, 0] == pytest.approx(rho, rel=1e-12)
    np.testing.assert_allclose(np.diag(K), 1.0, rtol=1e-15)


@pytest.mark.parametrize("n", sorted(TABLE_23))
def test_he_relu_table_ntk(n):
    T = kn.MLP(n, kn.ReLU(), weight_var=2.0).ntk(E2)
    _, off, diag = TABLE_23[n]
    assert T[0, 1] == pytest.approx(off, rel=1e-12)
    np.testing.assert_allclose(np.diag(T), diag, rtol=1e-15)


def test_he_relu_table_rho_6_to_10_via_trajectory():
    tr = kn.MLP(10, kn.ReLU(), weight_var=2.0).trajectory(E2)
    np.testing.assert_array_equal(tr.layers, np.arange(11))
    expected = [0.0] + [TABLE_23[n][0] for n in range(1, 6)] + RHO_6_10
    # correlation is stored as 1 - (1 - rho): absolute rounding ~1e-16 at rho = 0
    np.testing.assert_allclose(tr.correlation[:, 0, 1], expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(tr.ntk[1:6, 0, 1], [TABLE_23[n][1] for n in range(1, 6)],
                               rtol=1e-12)
    np.testing.assert_allclose(tr.ntk[:, 0, 0], np.arange(1, 12), rtol=1e-15)


@pytest.mark.parametrize("n,rho", list(zip(range(6, 11), RHO_6_10)))
def test_he_relu_rho_6_to_10_network_output(n, rho):
    assert kn.MLP(n, kn.ReLU(), weight_var=2.0).nngp(E2)[0, 1] == pytest.approx(rho, rel=1e-12)


@pytest.mark.parametrize("act,slope,rhos", [
    (lambda: kn.LeakyReLU(0.2), 0.2, [0.195883006882333, 0.335264506841993, 0.439104834657294]),
    (lambda: kn.ABReLU(-1.0, 1.0), -1.0, [0.636619772367581, 0.770636932175026,
                                          0.837353404913941]),
], ids=["leaky0.2", "abs"])
def test_leaky_and_abs_correlations(act, slope, rhos):
    sw2 = 2 / (1 + slope ** 2)
    for n, rho in enumerate(rhos, start=1):
        K = kn.MLP(n, act(), weight_var=sw2).nngp(E2)
        assert K[0, 1] / math.sqrt(K[0, 0] * K[1, 1]) == pytest.approx(rho, rel=1e-12)
        # normalised He-type init keeps the diagonal: K_ii = sw2 |x|^2 / d
        np.testing.assert_allclose(np.diag(K), sw2 / 2, rtol=1e-14)


def test_abs_first_correlation_is_two_over_pi():
    K = kn.MLP(1, kn.ABReLU(-1.0, 1.0), weight_var=1.0).nngp(E2)
    assert K[0, 1] / K[0, 0] == pytest.approx(2 / PI, rel=1e-14)


# ----------------------------------------------------------------------------------------------
# diagonal identities
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 2, 7, 30, 100])
def test_he_relu_diagonal_identities(depth):
    x = np.random.default_rng(depth).standard_normal((5, 3)) * np.array([[0.1], [1], [3], [1], [7]])
    k = kn.MLP(depth, kn.ReLU(), weight_var=2.0, bias_var=0.0).kernels(x)
    sq = 2 * (x * x).sum(1) / x.shape[1]
    np.testing.assert_allclose(np.diag(k.nngp), sq, rtol=1e-14)
    np.testing.assert_allclose(np.diag(k.ntk), (depth + 1) * sq, rtol=1e-13)


@pytest.mark.parametrize("sw2,sb2", [(1.5, 0.0), (2.0, 0.3), (3.0, 0.05)])
def test_relu_diagonal_general_variances(sw2, sb2):
    # q_{h+1} = sw2 q_h / 2 + sb2 and Theta_{h+1} = q_{h+1} + (sw2/2) Theta_h on the diagonal
    depth = 6
    x = np.random.default_rng(3).standard_normal((4, 3))
    q = sw2 * (x * x).sum(1) / 3 + sb2
    T = q.copy()
    for _ in range(depth):
        q = sw2 * q / 2 + sb2
        T = q + sw2 / 2 * T
    k = kn.MLP(depth, kn.ReLU(), weight_var=sw2, bias_var=sb2).kernels(x)
    np.testing.assert_allclose(np.diag(k.nngp), q, rtol=1e-14)
    np.testing.assert_allclose(np.diag(k.ntk), T, rtol=1e-14)


# ----------------------------------------------------------------------------------------------
# independent re-implementation of §2.2
# ----------------------------------------------------------------------------------------------
CASES_22 = [
    ("relu", lambda: kn.ReLU(), _abrelu_maps(0.0, 1.0)),
    ("leaky0.2", lambda: kn.LeakyReLU(0.2), _abrelu_maps(0.2, 1.0)),
    ("abs", lambda: kn.ABReLU(-1.0, 1.0), _abrelu_maps(-1.0, 1.0)),
    ("abrelu(-0.3,1.7)", lambda: kn.ABReLU(-0.3, 1.7), _abrelu_maps(-0.3, 1.7)),
    ("erf", lambda: kn.Erf(), _erf_maps()),
    ("erf(1.2,0.8,0.1)", lambda: kn.Erf(1.2, 0.8, 0.1), _erf_maps(1.2, 0.8, 0.1)),
]


@pytest.mark.parametrize("name,make,maps", CASES_22, ids=[c[0] for c in CASES_22])
@pytest.mark.parametrize("depth", [1, 2, 5, 20])
@pytest.mark.parametrize("sw2,sb2", [(2.0, 0.0), (1.7, 0.1), (2.5, 0.4)])
def test_mlp_matches_numpy_reference(xr, name, make, maps, depth, sw2, sb2):
    K_ref, T_ref = _mlp_reference(xr, depth, maps, sw2, sb2)
    k = kn.MLP(depth, make(), weight_var=sw2, bias_var=sb2).kernels(xr)
    # entrywise relative 1e-12; the scale term only matters for erf entries that cross zero
    _close(k.nngp, K_ref, 1e-12, 1e-15)
    _close(k.ntk, T_ref, 1e-12, 1e-15)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("sw2,sb2", [(1.0, 0.0), (1.5, 0.1)])
def test_tanh_mlp_matches_own_quadrature(xs_small, depth, sw2, sb2):
    # Own tensor Gauss-Hermite rule, degree 400 with all nodes (converged to rounding at q <= 1).
    # The library's default degree-150 rule has, at variances q <= 1, relative errors <= ~2e-14
    # (V) and <= ~2e-12 (Vdot) -- asserted against mpmath in test_activations -- so 1e-11 covers
    # a few layers with margin.  Inputs are scaled so every K_ii <= 1.
    maps = _gh_maps(np.tanh, lambda t: 1 / np.cosh(t) ** 2, deg=400)
    K_ref, T_ref = _mlp_reference(xs_small, depth, maps, sw2, sb2)
    assert np.max(np.diag(K_ref)) <= 1.0
    k = kn.MLP(depth, kn.Tanh(), weight_var=sw2, bias_var=sb2).kernels(xs_small)
    _close(k.nngp, K_ref, 1e-11, 1e-13)
    _close(k.ntk, T_ref, 1e-11, 1e-13)


def test_shaped_relu_mlp_is_resolved_abrelu(xr):
    depth, cp, cm = 16, 0.6, -1.2
    sp, sm = 1 + cp / 4, 1 + cm / 4            # 1 + c / sqrt(depth)
    res = kn.ShapedReLU(cp, cm).resolved(depth)
    assert (res.a, res.b) == pytest.approx((sm, sp), rel=1e-15)
    sw2 = 2 / (sp ** 2 + sm ** 2)
    K_ref, T_ref = _mlp_reference(xr, depth, _abrelu_maps(sm, sp), sw2, 0.0)
    k = kn.MLP(depth, kn.ShapedReLU(cp, cm), weight_var=sw2).kernels(xr, fast=False)
    _close(k.nngp, K_ref, 1e-12)
    _close(k.ntk, T_ref, 1e-12)


def test_user_activation_mlp_matches_erf_closed_form(xs_small):
    # kn.Activation(erf) by quadrature vs Williams' closed form (independent maps).  Variances
    # stay <= 1, where the degree-150 rule for erf is at rounding level (test_activations).
    act = kn.Activation(lambda t: math.erf(t), lambda t: 2 / math.sqrt(PI) * math.exp(-t * t))
    K_ref, T_ref = _mlp_reference(xs_small, 3, _erf_maps(), 1.5, 0.1)
    assert np.max(np.diag(K_ref)) <= 1.0
    k = kn.MLP(3, act, weight_var=1.5, bias_var=0.1).kernels(xs_small)
    _close(k.nngp, K_ref, 1e-12, 1e-14)
    _close(k.ntk, T_ref, 1e-12, 1e-14)


def test_input_kernel_equals_inputs(xr):
    net = kn.MLP(4, kn.LeakyReLU(0.1), weight_var=1.8, bias_var=0.2)
    a = net.kernels(xr)
    b = net.kernels(K0=xr @ xr.T / xr.shape[1])
    _close(b.nngp, a.nngp, 1e-13)
    _close(b.ntk, a.ntk, 1e-13)


# ----------------------------------------------------------------------------------------------
# trajectory indexing
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [kn.ReLU, lambda: kn.Erf(1.0, 1.0, 0.0)], ids=["relu", "erf"])
def test_trajectory_indexing(xr, make):
    depth, sw2, sb2 = 5, 1.8, 0.1
    net = kn.MLP(depth, make(), weight_var=sw2, bias_var=sb2)
    tr = net.trajectory(xr)
    assert tr.nngp.shape == tr.ntk.shape == tr.correlation.shape == (depth + 1, 6, 6)
    K1 = sw2 * xr @ xr.T / xr.shape[1] + sb2
    _close(tr.nngp[0], K1, 1e-14)            # layer 0 = first Dense output, Theta_1 = K_1
    _close(tr.ntk[0], K1, 1e-14)
    k = net.kernels(xr)
    _close(tr.nngp[-1], k.nngp, 1e-13)
    _close(tr.ntk[-1], k.ntk, 1e-13)
    maps = _abrelu_maps(0.0, 1.0) if make is kn.ReLU else _erf_maps()
    for l in range(depth + 1):
        K_ref, T_ref = _mlp_reference(xr, l, maps, sw2, sb2)
        _close(tr.nngp[l], K_ref, 1e-12, 1e-15)
        _close(tr.ntk[l], T_ref, 1e-12, 1e-15)


def test_trajectory_correlation_fields(xr):
    tr = kn.MLP(6, kn.ReLU(), weight_var=2.0, bias_var=0.05).trajectory(xr, layers=[0, 3, 6])
    np.testing.assert_array_equal(tr.layers, [0, 3, 6])
    for k in range(3):
        K = tr.nngp[k]
        d = np.sqrt(np.diag(K))
        rho = K / np.outer(d, d)
        np.testing.assert_allclose(tr.correlation[k], rho, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(tr.one_minus_correlation[k], 1 - rho, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(tr.angle[k], np.arccos(np.clip(rho, -1, 1)), rtol=1e-7,
                                   atol=1e-7)
        np.testing.assert_array_equal(np.diag(tr.correlation[k]), 1.0)
        np.testing.assert_array_equal(np.diag(tr.one_minus_correlation[k]), 0.0)


def test_trajectory_subset_equals_full(xr):
    net = kn.MLP(8, kn.LeakyReLU(0.3), weight_var=1.9, bias_var=0.02)
    full = net.trajectory(xr)
    sub = net.trajectory(xr, layers=[2, 7])
    np.testing.assert_array_equal(sub.nngp, full.nngp[[2, 7]])
    np.testing.assert_array_equal(sub.ntk, full.ntk[[2, 7]])


# ----------------------------------------------------------------------------------------------
# deep accuracy: sde.md §3.3 table of l^2 (1 - rho_l)
# ----------------------------------------------------------------------------------------------
SDE_33 = {   # rho_0 -> (rho_1, {l: l^2 (1 - rho_l)})
    0.0: ("0.318309886184", {10: "12.8464484", 100: "35.76853316", 1000: "43.12973255",
                             10000: "44.25192736", 100000: "44.39398667"}),
    0.5: ("0.608997781044", {10: "10.23532702", 100: "34.47289139", 1000: "42.95603981",
                             10000: "44.23385072", 100000: "44.39217003"}),
    0.9: ("0.909538398845", {10: "4.407617852", 100: "28.94856557", 1000: "42.1038007",
                             10000: "44.143706", 100000: "44.38309586"}),
}


def _half_ulp_rel(s):
    """Relative rounding half-width of a printed decimal."""
    digits = len(s.split(".")[1])
    return 0.5 * 10.0 ** (-digits) / float(s)


def _mp_gap_path(rho0, lmax, record):
    """l^2 (1 - rho_l) by iterating cos th' = cos th + (sin th - th cos th)/pi in mpmath, with
    the state eps = 1 - rho (never formed as 1 - rho at the end), 30 digits."""
    mp.mp.dps = 30
    eps = 1 - mp.mpf(rho0)
    out = {}
    for l in range(1, lmax + 1):
        th = 2 * mp.asin(mp.sqrt(eps / 2))
        eps = eps - (mp.sin(th) - th * mp.cos(th)) / mp.pi
        if l in record:
            out[l] = float(l * l * eps)
    return out


@pytest.fixture(scope="module")
def mp_paths():
    return {r: _mp_gap_path(r, 10000, {1, 10, 100, 1000, 10000}) for r in SDE_33}


def _net_gap(rho0, L):
    K0 = [[1.0, rho0], [rho0, 1.0]]
    tr = kn.MLP(L, kn.ReLU(), weight_var=2.0, bias_var=0.0).trajectory(K0=K0, layers=[L])
    return L * L * tr.one_minus_correlation[0, 0, 1], tr


@pytest.mark.parametrize("rho0", sorted(SDE_33))
def test_mpmath_oracle_reproduces_sde_table(mp_paths, rho0):
    # validates the in-test oracle against the printed table, at the table's printed precision
    rho1, tab = SDE_33[rho0]
    assert 1 - mp_paths[rho0][1] == pytest.approx(float(rho1), rel=_half_ulp_rel(rho1) * 1.01)
    for l, s in tab.items():
        if l in mp_paths[rho0]:
            assert mp_paths[rho0][l] == pytest.approx(float(s), rel=_half_ulp_rel(s) * 1.01)


@pytest.mark.parametrize("rho0", sorted(SDE_33))
@pytest.mark.parametrize("L", [10, 100, 1000, 10000])
def test_deep_relu_gap_vs_mpmath(mp_paths, rho0, L):
    got, _ = _net_gap(rho0, L)
    assert got == pytest.approx(mp_paths[rho0][L], rel=1e-9)


@pytest.mark.parametrize("rho0", sorted(SDE_33))
@pytest.mark.parametrize("L", [10, 100, 1000, 10000, 100000])
def test_deep_relu_gap_vs_sde_table(rho0, L):
    s = SDE_33[rho0][1][L]
    got, _ = _net_gap(rho0, L)
    # 1e-9 relative, unless the table prints fewer digits than that
    assert got == pytest.approx(float(s), rel=max(1e-9, _half_ulp_rel(s) * 1.01))


@pytest.mark.slow
@pytest.mark.parametrize("rho0", sorted(SDE_33))
def test_deep_relu_gap_vs_mpmath_1e5(rho0):
    ref = _mp_gap_path(rho0, 100000, {100000})[100000]
    got, _ = _net_gap(rho0, 100000)
    assert got == pytest.approx(ref, rel=1e-9)


def test_deep_relu_first_layer_column():
    for rho0, (rho1, _) in SDE_33.items():
        tr = kn.MLP(1, kn.ReLU(), weight_var=2.0).trajectory(K0=[[1.0, rho0], [rho0, 1.0]])
        # stored as 1 - (1 - rho): absolute rounding ~1e-16 at rho = 0
        assert tr.correlation[0, 0, 1] == pytest.approx(rho0, rel=1e-15, abs=1e-15)
        assert tr.correlation[1, 0, 1] == pytest.approx(float(rho1), rel=_half_ulp_rel(rho1))


def test_deep_relu_angle_and_diagonal():
    L = 100000
    _, tr = _net_gap(0.0, L)
    eps = tr.one_minus_correlation[0, 0, 1]
    # angle accurate near 0: theta = 2 asin(sqrt(eps/2)); theory: l theta_l -> 3 pi (§2.4)
    assert tr.angle[0, 0, 1] == pytest.approx(2 * math.asin(math.sqrt(eps / 2)), rel=1e-14)
    assert L * tr.angle[0, 0, 1] == pytest.approx(3 * PI, rel=1e-3)
    assert tr.correlation[0, 0, 1] == pytest.approx(1 - eps, rel=1e-15)
    # He init, no bias: diagonal stays at K_1 = 2 * K0 = 2; NTK diagonal = (L + 1) * 2
    np.testing.assert_allclose(np.diag(tr.nngp[0]), 2.0, rtol=1e-13)
    np.testing.assert_allclose(np.diag(tr.ntk[0]), 2.0 * (L + 1), rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# fast (tabulated) path vs layer loop
# ----------------------------------------------------------------------------------------------
def _fast_inputs():
    rng = np.random.default_rng(2024)
    x = rng.standard_normal((10, 5))
    extra = [x[0] + 1e-7 * rng.standard_normal(5),     # nearly parallel
             x[1] * 3.0,                               # exactly parallel, other norm
             1e-3 * x[4],                              # small norm
             np.zeros(5)]                              # zero norm (theta = pi/2 convention)
    # exactly antipodal pairs are left to test_exact_antipodal_inputs (known bug)
    return np.vstack([x, extra])


def _near_antipodal_pair():
    rng = np.random.default_rng(2024)
    a = rng.standard_normal(5)
    return np.vstack([a, -a + 1e-6 * rng.standard_normal(5)])     # 1 + rho0 ~ 1e-13


FAST_ACTS = [
    ("relu", lambda L: (kn.ReLU(), 2.0)),
    ("leaky0.2", lambda L: (kn.LeakyReLU(0.2), 2 / 1.04)),
    ("abs", lambda L: (kn.ABReLU(-1.0, 1.0), 1.0)),
    ("shaped", lambda L: (kn.ShapedReLU(0.5, -1.5),
                          2 / ((1 + 0.5 / math.sqrt(L)) ** 2 + (1 - 1.5 / math.sqrt(L)) ** 2))),
    ("leaky0.2-unnormalised", lambda L: (kn.LeakyReLU(0.2), 2.0)),
]


@pytest.mark.parametrize("name,make", FAST_ACTS, ids=[a[0] for a in FAST_ACTS])
@pytest.mark.parametrize("depth", [40, 1000])
def test_fast_path_matches_loop(name, make, depth):
    x = _fast_inputs()
    act, sw2 = make(depth)
    net = kn.MLP(depth, act, weight_var=sw2)
    slow = net.kernels(x, fast=False)
    fast = net.kernels(x, fast=True)
    _assert_scaled_close(fast, slow, 1e-12)


def _assert_scaled_close(a, b, tol):
    """|a - b| <= tol sqrt(b_ii b_jj) for NNGP and NTK (exact equality where the scale is 0)."""
    for name, u, v in (("nngp", a.nngp, b.nngp), ("ntk", a.ntk, b.ntk)):
        d = np.sqrt(np.diag(v))
        bad = np.abs(u - v) > tol * np.outer(d, d)
        assert not bad.any(), (f"{name}: max |diff| {np.max(np.abs(u - v)):.3e} at "
                               f"{np.unravel_index(np.argmax(np.abs(u - v)), u.shape)}")


def _mp_abrelu_mlp(x, depth, a, b, sw2):
    """Off-diagonal (rho_L, Theta_L / sqrt(Theta_11 Theta_22)) of an ABReLU MLP on two inputs,
    kernels.md §1.2 / §2.2 in mpmath (50 digits) from the exact float64 inputs."""
    mp.mp.dps = 50
    xa, xb = ([mp.mpf(float(t)) for t in row] for row in x)
    d = len(xa)
    dot = lambda u, v: mp.fsum(p * q for p, q in zip(u, v)) / d
    q1, q2, c = sw2 * dot(xa, xa), sw2 * dot(xb, xb), sw2 * dot(xa, xb)
    t1, t2, t = q1, q2, c
    fac, m = mp.mpf(a - b) ** 2 / (2 * mp.pi), (mp.mpf(a) ** 2 + mp.mpf(b) ** 2) / 2
    for _ in range(depth):
        th = mp.acos(max(min(c / mp.sqrt(q1 * q2), 1), -1))
        Vd = m - fac * th
        cn = sw2 * (fac * mp.sqrt(max(q1 * q2 - c * c, 0)) + Vd * c)
        t = cn + sw2 * Vd * t
        c = cn
        t1, t2 = sw2 * m * q1 + sw2 * m * t1, sw2 * m * q2 + sw2 * m * t2
        q1, q2 = sw2 * m * q1, sw2 * m * q2
    return float(c / mp.sqrt(q1 * q2)), float(t / mp.sqrt(t1 * t2))


NEAR_ANTIPODAL_ACTS = [
    pytest.param("relu", 0.0, 1.0, 2.0, id="relu"),
    pytest.param("leaky0.2", 0.2, 1.0, 2 / 1.04, id="leaky0.2"),
    pytest.param("abs", -1.0, 1.0, 1.0, id="abs"),
]


@pytest.mark.parametrize("name,a,b,sw2", NEAR_ANTIPODAL_ACTS)
@pytest.mark.parametrize("depth", [40, 1000])
def test_fast_path_matches_loop_near_antipodal(name, a, b, sw2, depth):
    x = _near_antipodal_pair()
    net = kn.MLP(depth, kn.ABReLU(a, b), weight_var=sw2)
    _assert_scaled_close(net.kernels(x, fast=True), net.kernels(x, fast=False), 1e-12)


@pytest.mark.parametrize("name,a,b,sw2", NEAR_ANTIPODAL_ACTS)
@pytest.mark.parametrize("fast", [False, True], ids=["loop", "fast"])
def test_near_antipodal_pair_vs_mpmath(name, a, b, sw2, fast):
    x = _near_antipodal_pair()
    depth = 40
    rho_ref, tau_ref = _mp_abrelu_mlp(x, depth, a, b, sw2)
    k = kn.MLP(depth, kn.ABReLU(a, b), weight_var=sw2).kernels(x, fast=fast)
    rho = k.nngp[0, 1] / math.sqrt(k.nngp[0, 0] * k.nngp[1, 1])
    tau = k.ntk[0, 1] / math.sqrt(k.ntk[0, 0] * k.ntk[1, 1])
    assert abs(rho - rho_ref) <= 1e-12
    assert abs(tau - tau_ref) <= 1e-12


@pytest.mark.parametrize("depth", [40, 1000])
def test_fast_path_cross_kernel_matches_loop(depth):
    x = _fast_inputs()
    x1, x2 = x[:7], x[5:]
    net = kn.MLP(depth, kn.ReLU(), weight_var=2.0)
    slow = net.kernels(x1, x2, fast=False)
    fast = net.kernels(x1, x2, fast=True)
    q1 = np.diag(net.nngp(x1, fast=False))
    q2 = np.diag(net.nngp(x2, fast=False))
    t1 = np.diag(net.ntk(x1, fast=False))
    t2 = np.diag(net.ntk(x2, fast=False))
    assert np.all(np.abs(fast.nngp - slow.nngp) <= 1e-12 * np.sqrt(np.outer(q1, q2)))
    assert np.all(np.abs(fast.ntk - slow.ntk) <= 1e-12 * np.sqrt(np.outer(t1, t2)))


def test_fast_path_he_relu_table():
    for n in (1, 5):
        k = kn.MLP(n, kn.ReLU(), weight_var=2.0).kernels(E2, fast=True)
        assert k.nngp[0, 1] == pytest.approx(TABLE_23[n][0], rel=1e-12)
        assert k.ntk[0, 1] == pytest.approx(TABLE_23[n][1], rel=1e-12)


# ----------------------------------------------------------------------------------------------
# cross kernels
# ----------------------------------------------------------------------------------------------
CROSS_NETS = [
    ("relu-bias", lambda: kn.MLP(6, kn.ReLU(), weight_var=2.0, bias_var=0.1), None),
    ("relu-fast", lambda: kn.MLP(50, kn.ReLU(), weight_var=2.0), True),
    ("leaky-loop", lambda: kn.MLP(50, kn.LeakyReLU(0.1), weight_var=1.9), False),
    ("erf", lambda: kn.MLP(4, kn.Erf(), weight_var=1.5, bias_var=0.2), None),
    ("tanh", lambda: kn.MLP(3, kn.Tanh(), weight_var=1.2, bias_var=0.1), None),
]
# quadrature (tanh) is only accurate to rounding at variances <= 1: scale those inputs
CROSS_SCALE = {"tanh": 0.4}


@pytest.mark.parametrize("name,make,fast", CROSS_NETS, ids=[c[0] for c in CROSS_NETS])
def test_cross_kernel_is_block_of_stacked(name, make, fast):
    rng = np.random.default_rng(5)
    x1, x2 = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    x1, x2 = x1 * CROSS_SCALE.get(name, 1.0), x2 * CROSS_SCALE.get(name, 1.0)
    net = make()
    full = net.kernels(np.vstack([x1, x2]), fast=fast)
    cross = net.kernels(x1, x2, fast=fast)
    assert cross.nngp.shape == cross.ntk.shape == (4, 5)
    _close_block(cross.nngp, full.nngp)
    _close_block(cross.ntk, full.ntk)
    rev = net.kernels(x2, x1, fast=fast)
    np.testing.assert_allclose(rev.nngp, cross.nngp.T, rtol=1e-12, atol=0)


def _close_block(block, full):
    n1 = block.shape[0]
    ref = full[:n1, n1:]
    d = np.sqrt(np.diag(full))
    scale = np.outer(d[:n1], d[n1:])
    assert np.max(np.abs(block - ref) - 1e-12 * np.abs(ref) - 1e-15 * scale) <= 0, \
        f"max rel err {np.max(np.abs(block - ref) / np.abs(ref)):.3e}"


# ----------------------------------------------------------------------------------------------
# degenerate pairs: exactly antipodal inputs, duplicates given through K0
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("a,b", [(0.0, 1.0), (0.2, 1.0), (-1.0, 1.0)], ids=["relu", "leaky0.2",
                                                                          "abs"])
@pytest.mark.parametrize("fast", [False, True], ids=["loop", "fast"])
def test_exact_antipodal_inputs(a, b, fast):
    # theta0 = pi exactly: Vdot = m - fac pi = a b and V = a b c (kernels.md §1.2), so after one
    # layer K_2 = w [[m q, -a b q], [-a b q, m q]] with q = K_1 diagonal, and
    # Theta_2 = K_2 + w Vdot(K_1) Theta_1
    m = (a * a + b * b) / 2
    for w in (0.375, 0.5, 1.0, 2.0, 3.0):
        for x in ([[1.0], [-1.0]], [[3.0, 1.0], [-3.0, -1.0]]):
            x = np.array(x)
            q = w * (x[0] @ x[0]) / x.shape[1]
            K = w * np.array([[m * q, -a * b * q], [-a * b * q, m * q]])
            T = K + w * np.array([[m * q, -a * b * q], [-a * b * q, m * q]])
            k = kn.MLP(1, kn.ABReLU(a, b), weight_var=w).kernels(x, fast=fast)
            for got, ref in ((k.nngp, K), (k.ntk, T)):
                d = np.sqrt(np.diag(ref))
                assert np.all(np.abs(got - ref) <= 1e-12 * np.outer(d, d)), (w, x.tolist(), got)


@pytest.mark.parametrize("depth", [1, 100])
def test_input_kernel_duplicates_relu(depth):
    x = np.array([[0, 0, 0, 0, 0.625], [0, 0, 0, 0, 0.625], [1.0, 0, 0, 0, 0]])
    k = kn.MLP(depth, kn.ReLU(), weight_var=2.0).kernels(K0=x @ x.T / 5)
    # duplicate inputs: identical rows; He-ReLU diagonal Theta = (depth + 1) K
    for M in (k.nngp, k.ntk):
        assert M[0, 1] == pytest.approx(M[0, 0], rel=1e-12)
    assert k.ntk[0, 0] == pytest.approx((depth + 1) * 2 * 0.625 ** 2 / 5, rel=1e-13)


@pytest.mark.parametrize("depth", [1, 100])
def test_input_duplicates_relu_via_x(depth):
    x = np.array([[0, 0, 0, 0, 0.625], [0, 0, 0, 0, 0.625], [1.0, 0, 0, 0, 0]])
    k = kn.MLP(depth, kn.ReLU(), weight_var=2.0).kernels(x)
    for M in (k.nngp, k.ntk):
        assert M[0, 1] == pytest.approx(M[0, 0], rel=1e-14)
    assert k.ntk[0, 0] == pytest.approx((depth + 1) * 2 * 0.625 ** 2 / 5, rel=1e-13)


# ----------------------------------------------------------------------------------------------
# issue 21: large norms (erf), the NNGP-only path, the vectorised trajectory recorder
# ----------------------------------------------------------------------------------------------
def _erf_mp(q1, q2, c):
    """Williams' maps (a = b = 1) in mpmath, where nothing overflows; 700 digits, so that
    P - 4 c^2 does not cancel even at q ~ 1e300."""
    with mp.workdps(700):
        q1, q2, c = mp.mpf(q1), mp.mpf(q2), mp.mpf(c)
        P = (1 + 2 * q1) * (1 + 2 * q2)
        return (2 / mp.pi * mp.asin(2 * c / mp.sqrt(P)),
                4 / mp.pi / mp.sqrt(P - 4 * c * c))


@pytest.mark.parametrize("norm2", [1e10, 1e80, 1e160, 1e300])
def test_erf_large_norm_diagonal(norm2):
    # the diagonal at huge input norm is about sw2 * 1 (arcsin(2q/(1+2q)) -> pi/2); the product
    # (1 + 2 q1)(1 + 2 q2) used to overflow beyond ~1e77 and every entry came out 0.  Reference:
    # the recursion in mpmath, with the independent diagonal form V(q, q, q) =
    # (2/pi) arctan(2q / sqrt(1 + 4q)), Vdot(q, q, q) = (4/pi) / sqrt(1 + 4q)
    sw2, sb2, depth = 1.7, 0.1, 3
    x = np.array([[math.sqrt(norm2), 0.0], [0.0, 2 * math.sqrt(norm2)]])
    k = kn.MLP(depth, kn.Erf(), weight_var=sw2, bias_var=sb2).kernels(x)
    for i in range(2):
        with mp.workdps(60):
            q = sw2 * mp.mpf(float(x[i] @ x[i])) / 2 + sb2
            th = q
            for _ in range(depth):
                V = 2 / mp.pi * mp.atan(2 * q / mp.sqrt(1 + 4 * q))
                Vd = 4 / mp.pi / mp.sqrt(1 + 4 * q)
                q, th = sw2 * V + sb2, sw2 * V + sb2 + sw2 * Vd * th
        assert k.nngp[i, i] == pytest.approx(float(q), rel=1e-14)
        assert k.ntk[i, i] == pytest.approx(float(th), rel=1e-13)
    # one layer: sw2 V + sb2 with V -> 1 (it was 0 beyond ~1e77)
    k1 = kn.MLP(1, kn.Erf(), weight_var=sw2, bias_var=sb2).nngp(x)
    assert np.all(np.diag(k1) > 0.99 * sw2 + sb2)


@pytest.mark.parametrize("scale", [1e40, 1e80, 1e150])
def test_erf_large_norm_off_diagonal(scale):
    # full 2 x 2 recursion in mpmath at large norms and input correlation 0.6
    sw2, sb2, depth = 1.3, 0.05, 2
    x = scale * np.array([[1.0, 0.0], [0.6, 0.8]])
    k = kn.MLP(depth, kn.Erf(), weight_var=sw2, bias_var=sb2).kernels(x)
    G = (x @ x.T) / 2
    q1, q2, c = (sw2 * G[0, 0] + sb2, sw2 * G[1, 1] + sb2, sw2 * G[0, 1] + sb2)
    t = c
    for _ in range(depth):
        V1, _ = _erf_mp(q1, q1, q1)
        V2, _ = _erf_mp(q2, q2, q2)
        V, Vd = _erf_mp(q1, q2, c)
        q1, q2, c, t = (sw2 * V1 + sb2, sw2 * V2 + sb2, sw2 * V + sb2,
                        sw2 * V + sb2 + sw2 * Vd * t)
    assert k.nngp[0, 1] == pytest.approx(float(c), rel=1e-13)
    assert k.ntk[0, 1] == pytest.approx(float(t), rel=1e-12)


def test_erf_maps_scaled_form_matches_closed_form():
    # the overflow-free form used beyond 2 b^2 q = 64 agrees with Williams' formula in mpmath
    act = kn.Erf()
    for q1, q2, r in [(40.0, 50.0, 0.3), (1e3, 2e5, -0.7), (1e20, 1e20, 1.0), (1e20, 1e21, 0.999),
                      (1e200, 1e250, 0.5), (2.0 ** 996, 2.0 ** 996, -1.0)]:
        # at |rho| = 1 the maps are ill-conditioned in c (a 1-ulp change of c moves V by
        # ~1e-8), so those cases use c = +-q exactly
        c = r * q1 if q1 == q2 and abs(r) == 1.0 else r * math.sqrt(q1) * math.sqrt(q2)
        V, Vd = _erf_mp(q1, q2, c)
        assert act.V(q1, q2, c) == pytest.approx(float(V), rel=1e-14, abs=1e-300)
        assert act.Vdot(q1, q2, c) == pytest.approx(float(Vd), rel=1e-13, abs=1e-300)


def test_public_maps_at_1e160():
    # issue 21 item 3: Erf gave 0, ReLU NaN
    assert kn.Erf().V(1e160, 1e160, 1e160) == pytest.approx(1.0, rel=1e-15)
    assert kn.ReLU().V(1e160, 1e160, 1e160) == 0.5e160
    assert kn.ReLU().V(1e160, 1e160, 0.0) == pytest.approx(1e160 / (2 * PI), rel=1e-15)
    assert kn.ReLU().Vdot(1e160, 1e160, 0.0) == 0.25
    with pytest.raises(FloatingPointError, match="overflow"):
        kn.ABReLU(3.0, 3.0).V(1e308, 1e308, 1e308)          # 9e308


def test_tanh_maps_at_extreme_variances():
    # c^2 / q1 formed without overflow / underflow: tanh(sqrt(q) z) is sign(z) at q = 1e40 to
    # rounding, so 1e160 must agree with it; at 1e-170 tanh is linear: V = c
    act = kn.Tanh()
    assert act.V(1e160, 1e160, 0.5e160) == pytest.approx(act.V(1e40, 1e40, 0.5e40), rel=1e-12)
    assert act.V(1e-170, 1e-170, 0.3e-170) == pytest.approx(0.3e-170, rel=1e-12)


@pytest.mark.parametrize("make", [kn.ReLU, kn.Erf, lambda: kn.LeakyReLU(0.2), kn.Tanh],
                         ids=["relu", "erf", "leaky", "tanh"])
@pytest.mark.parametrize("bias", [0.0, 0.1])
def test_nngp_only_path_is_bit_identical(make, bias):
    x = np.random.default_rng(4).standard_normal((7, 3))
    net = kn.MLP(6, make(), weight_var=1.5, bias_var=bias)
    np.testing.assert_array_equal(net.nngp(x), net.kernels(x).nngp)
    np.testing.assert_array_equal(net.nngp(x[:3], x[3:]), net.kernels(x[:3], x[3:]).nngp)
    a, b = net.trajectory(x[:3]), net.trajectory(x[:3], ntk=False)
    assert b.ntk is None
    for name in ("nngp", "correlation", "one_minus_correlation", "angle"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("make", [kn.ReLU, kn.Erf], ids=["relu", "erf"])
def test_trajectory_all_layers_equals_single_layers(make):
    # the vectorised recorder: recording every layer gives, bit for bit, what recording one
    # layer at a time gives
    x = np.random.default_rng(5).standard_normal((4, 3))
    net = kn.MLP(25, make(), weight_var=1.8, bias_var=0.05)
    full = net.trajectory(x)
    np.testing.assert_array_equal(full.layers, np.arange(26))
    for l in (0, 1, 7, 25):
        one = net.trajectory(x, layers=[l])
        for name in ("nngp", "ntk", "correlation", "one_minus_correlation", "angle"):
            np.testing.assert_array_equal(getattr(full, name)[l], getattr(one, name)[0])


@pytest.mark.parametrize("make", [kn.ReLU, kn.Erf], ids=["relu", "erf"])
def test_serial_and_parallel_engines_bit_identical(make, monkeypatch):
    from kernels import _recursion
    x = np.random.default_rng(6).standard_normal((40, 3))
    net = kn.MLP(30, make(), weight_var=1.8, bias_var=0.05)
    monkeypatch.setattr(_recursion, "SERIAL_WORK", 0)           # always parallel
    par, tpar = net.kernels(x, fast=False), net.trajectory(x[:5])
    monkeypatch.setattr(_recursion, "SERIAL_WORK", 1 << 62)     # always serial
    ser, tser = net.kernels(x, fast=False), net.trajectory(x[:5])
    np.testing.assert_array_equal(par.nngp, ser.nngp)
    np.testing.assert_array_equal(par.ntk, ser.ntk)
    np.testing.assert_array_equal(tpar.ntk, tser.ntk)


def test_deep_two_input_trajectory_every_layer():
    # depth 1e4, every layer recorded (notebook 01); checked against sde.md-free facts: the
    # He-ReLU diagonal stays 1, the diagonal NTK is l + 1, rho follows 1 - rho_l ~ 9 pi^2/(2 l^2)
    tr = kn.MLP(depth=10_000, activation=kn.ReLU()).trajectory(K0=np.eye(2))
    assert tr.nngp.shape == (10_001, 2, 2)
    np.testing.assert_allclose(tr.nngp[:, 0, 0], 2.0, rtol=1e-12)
    np.testing.assert_allclose(tr.ntk[:, 1, 1], 2.0 * np.arange(1, 10_002), rtol=1e-11)
    assert 10_000 ** 2 * tr.one_minus_correlation[-1, 0, 1] == pytest.approx(44.25, rel=2e-3)
