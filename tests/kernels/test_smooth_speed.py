"""The vectorised erf layer loop (kernels._smooth) and its division-free arcsin
(kernels._fastmath.asin_unit / asin_poly): accuracy against math.asin, mpmath and an independent
NumPy recursion with np.arcsin; bit-identity of tiles, duplicates and NNGP-only runs; and that the
entry loop really is vectorised (LLVM vector square roots in the compiled chunk)."""
import math

import mpmath as mp
import numba
import numpy as np
import pytest

import kernels as kn
from kernels import _smooth
from kernels._fastmath import asin_poly
from kernels._pointwise import uncached


@numba.njit
def _asin_vec(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = asin_poly(x[i])
    return out


def _domain():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-1.0, 1.0, 400_000), np.linspace(-1.0, 1.0, 100_001),
                        1.0 - 10.0 ** rng.uniform(-17, 0, 20_000),
                        10.0 ** rng.uniform(-323, 0, 20_000),
                        np.nextafter(1.0 / math.sqrt(2.0), [0.0, 1.0]),
                        [0.0, 5e-324, 1e-300, 0.5, 1.0 / math.sqrt(2.0), 0.75, 1.0]])
    return np.concatenate([x, -x])


def test_asin_poly_ulps_full_domain():
    x = _domain()
    got = _asin_vec(x)
    ref = np.array([math.asin(v) for v in x])
    ulps = np.abs(got - ref) / np.spacing(np.abs(ref))
    assert np.max(ulps) <= 2.0, (np.max(ulps), x[np.argmax(ulps)])
    # odd, exact at 0 and +-1
    np.testing.assert_array_equal(_asin_vec(-x), -got)
    assert np.array_equal(_asin_vec(np.array([0.0, -0.0, 1.0, -1.0])),
                          np.array([0.0, -0.0, math.pi / 2, -math.pi / 2]))
    assert math.copysign(1.0, _asin_vec(np.array([-0.0]))[0]) == -1.0


def test_asin_poly_against_mpmath():
    x = _domain()[::50]
    got = _asin_vec(x)
    with mp.workdps(40):
        ref = [mp.asin(mp.mpf(float(v))) for v in x]
        err = [abs(mp.mpf(float(g)) - r) / np.spacing(abs(float(r))) if r != 0 else abs(g)
               for g, r in zip(got, ref)]
    assert float(max(err)) <= 2.0


# ----------------------------------------------------------------------------------------------
# an independent recursion: the closed forms of the Erf docstring with np.arcsin, NumPy arrays
# ----------------------------------------------------------------------------------------------
def _erf_maps(q1, q2, c, a, b, c0):
    P = (1 + 2 * b * b * q1) * (1 + 2 * b * b * q2)
    V = a * a * (2 / np.pi) * np.arcsin(2 * b * b * c / np.sqrt(P)) + c0 * c0
    Vd = a * a * b * b * (4 / np.pi) / np.sqrt(P - 4 * b ** 4 * c * c)
    return V, Vd


def _reference(kind, depth, act, sw2, sb2, x1, x2=None):
    """NNGP and NTK of the MLP (NTK parameterisation, stem sw2 x x'/d + sb2, no readout) or the
    ResNet (stem x x'/d, K_l = K + alpha^2 (sw2 V + sb2), alpha^2 = 1/depth, readout
    Theta_out = K_L + Theta_L) from theory/kernels.md §2.2 / §3.2, on (N1 + N2) inputs."""
    x = x1 if x2 is None else np.vstack([x1, x2])
    d = x.shape[1]
    G = x @ x.T / d
    K = sw2 * G + sb2 if kind == "mlp" else G.copy()
    T = K.copy()
    a2 = 1.0 / depth
    for _ in range(depth):
        q = np.diag(K)
        V, Vd = _erf_maps(q[:, None], q[None, :], K, act.a, act.b, act.c)
        if kind == "mlp":
            Kn = sw2 * V + sb2
            T = Kn + sw2 * Vd * T
        else:
            dK = a2 * (sw2 * V + sb2)
            Kn = K + dK
            T = T + dK + a2 * sw2 * Vd * T
        K = Kn
    if kind == "resnet":
        T = K + T
    return K, T


def _scaled_err(got, ref, rows, cols):
    d = np.sqrt(np.diag(ref))
    return float(np.max(np.abs(got - ref[np.ix_(rows, cols)]) / np.outer(d[rows], d[cols])))


_ACTS = [kn.Erf(), kn.Erf(1.3, 0.7, 0.2), kn.Erf(0.8, 1.6, -0.3), kn.Erf(1.0, 0.0, 0.5)]


@pytest.mark.parametrize("kind", ["mlp", "resnet"])
@pytest.mark.parametrize("depth", [1, 7, 100, 1000])
@pytest.mark.parametrize("act", _ACTS, ids=["erf", "erf-b", "erf-c", "erf-const"])
@pytest.mark.parametrize("sb2", [0.0, 0.2], ids=["nobias", "bias"])
def test_erf_loop_matches_numpy_arcsin_recursion(kind, depth, act, sb2):
    rng = np.random.default_rng(depth)
    x1 = rng.standard_normal((23, 4))
    x2 = 0.7 * rng.standard_normal((9, 4))
    sw2 = 1.5
    net = (kn.MLP(depth, act, weight_var=sw2, bias_var=sb2) if kind == "mlp"
           else kn.ResNet(depth, act, weight_var=sw2, bias_var=sb2))
    Kr, Tr = _reference(kind, depth, act, sw2, sb2, x1, x2)
    n1, n = x1.shape[0], x1.shape[0] + x2.shape[0]
    r1, r2 = np.arange(n1), np.arange(n1, n)
    k = net.kernels(x1, fast=False)
    c = net.kernels(x1, x2, fast=False)
    for got, ref, rows, cols in ((k.nngp, Kr, r1, r1), (k.ntk, Tr, r1, r1),
                                 (c.nngp, Kr, r1, r2), (c.ntk, Tr, r1, r2)):
        assert _scaled_err(got, ref, rows, cols) <= 1e-12


def test_large_variances_match_the_scale_free_maps():
    # 2 b^2 q > 64: the scale-free form (activations._erf_scaled), checked against the NumPy
    # maps of Erf (kernels.md §1.3, with the scale-free form where 2 b^2 q > 64); the stem
    # mixes both forms in one layer, a = 3 keeps every later layer in the scale-free one
    x = np.random.default_rng(5).standard_normal((15, 3)) * np.linspace(0.1, 4.0, 15)[:, None]
    for a in (1.0, 3.0):
        act = kn.Erf(a, 3.0, 0.1)
        net = kn.MLP(20, act, weight_var=1.7, bias_var=0.1)
        K = 1.7 * (x @ x.T / 3) + 0.1
        q = np.diag(K)
        assert np.min(2 * 9.0 * q) < 64 < np.max(2 * 9.0 * q)    # both forms are exercised
        T = K.copy()
        for _ in range(20):
            q = np.diag(K)
            V, Vd = act.V(q[:, None], q[None, :], K), act.Vdot(q[:, None], q[None, :], K)
            K = 1.7 * V + 0.1
            T = K + 1.7 * Vd * T
        k = net.kernels(x)
        for got, ref in ((k.nngp, K), (k.ntk, T)):
            d = np.sqrt(np.diag(ref))
            assert np.max(np.abs(got - ref) / np.outer(d, d)) <= 1e-12


# ----------------------------------------------------------------------------------------------
# bit-identity
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", [1.0, 40.0], ids=["direct", "one-large-row"])
def test_subsets_and_duplicates_bit_identical(scale):
    # a subset of the inputs gets exactly the entries of the whole (whether or not a block
    # of the whole contains a large-variance row, which makes that block run entry by entry),
    # and duplicated inputs get exactly the diagonal's numbers
    rng = np.random.default_rng(11)
    x = rng.standard_normal((700, 5))
    x[3] *= scale
    x[650] = x[10]
    for net in (kn.MLP(12, kn.Erf(1.2, 1.1, 0.1), weight_var=1.6, bias_var=0.1),
                kn.ResNet(12, kn.Erf(), weight_var=2.0, bias_var=0.05)):
        whole = net.kernels(x, fast=False)
        keep = np.r_[0:3, 4:700]
        part = net.kernels(x[keep], fast=False)
        for W, P in ((whole.nngp, part.nngp), (whole.ntk, part.ntk)):
            np.testing.assert_array_equal(P, W[np.ix_(keep, keep)])
            assert W[10, 650] == W[10, 10] == W[650, 650]
            np.testing.assert_array_equal(W[10], W[650])
        np.testing.assert_array_equal(net.nngp(x, fast=False), whole.nngp)
        cross = net.kernels(x[:300], x[300:], fast=False)
        np.testing.assert_array_equal(cross.nngp, whole.nngp[:300, 300:])
        np.testing.assert_array_equal(cross.ntk, whole.ntk[:300, 300:])


def test_trajectory_equals_kernels():
    x = np.random.default_rng(2).standard_normal((40, 3))
    net = kn.MLP(9, kn.Erf(), weight_var=1.4, bias_var=0.3)
    tr = net.trajectory(x, layers=[0, 4, 9])
    k = net.kernels(x, fast=False)
    np.testing.assert_array_equal(tr.nngp[-1], k.nngp)
    np.testing.assert_array_equal(tr.ntk[-1], k.ntk)
    np.testing.assert_array_equal(net.trajectory(x, layers=[4]).nngp[0], tr.nngp[1])


# ----------------------------------------------------------------------------------------------
# the entry loop is vectorised
# ----------------------------------------------------------------------------------------------
def test_erf_chunk_is_vectorised():
    twin = uncached(_smooth, ["_erf_chunk_serial"])._erf_chunk_serial
    n, C = 20, 3
    q = np.ones((C + 1, n))
    k = _smooth.erf_coeffs(1.0, 0.0, np.zeros(C), np.ones(C), np.full(C, 1.5), np.zeros(C),
                           np.full(C, 1.5), np.zeros(C))
    cov = np.full((n, n), 0.5)
    for with_ntk in (True, False):
        twin(True, cov, cov.copy(), q, 0.8 * q, q, 0.8 * q, k, 2.0, 1.0, 1.0, 0.0,
             np.full(C, -1, dtype=np.int64), np.zeros((1, 1, 1)), np.zeros((1, 1, 1)),
             with_ntk)
    for ir in twin.inspect_llvm().values():
        # vector square roots: the per-entry sqrt(1 - r^2) of whole vectors of entries
        assert "@llvm.sqrt.v" in ir, "the erf entry loop did not vectorise"
