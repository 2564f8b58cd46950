"""Property tests (hypothesis): structural facts that hold for every input and architecture.

- NNGP and NTK are symmetric positive semi-definite (they are covariance / Gram matrices);
- |rho| <= 1 for the NNGP and for every recorded layer of a trajectory;
- the ReLU correlation map is monotone in the input correlation (f is increasing, §2.3; the
  ResNet flow preserves order, §3.3);
- the cross kernel k(x1, x2) is the off-diagonal block of k(vstack(x1, x2)).
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import kernels as kn

SETTINGS = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------------------------
# strategies
# ----------------------------------------------------------------------------------------------
# entries below 1e-100 in magnitude are flushed to 0: their squares underflow, which makes the
# float64 input Gram matrix itself inconsistent (K_ii = 0 with K_ij != 0)
finite = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False, width=64).map(
    lambda v: 0.0 if abs(v) < 1e-100 else v)


def _is_homogeneous(net):
    return isinstance(net.activation, (kn.ABReLU, kn.ShapedReLU))


def _has_duplicate_rows(x):
    return len({tuple(r) for r in x}) < len(x)


def _has_near_duplicate(x):
    """Rows closer than 1e-6 (absolute) or 1e-12 (relative): their kernels coincide to rounding."""
    n = np.linalg.norm(x, axis=1)
    D = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)
    tol = np.maximum(1e-6, 1e-12 * np.maximum(n[:, None], n[None, :]))
    return bool(np.any((D <= tol)[~np.eye(len(x), dtype=bool)]))


def _has_parallel_pair(x):
    n = np.linalg.norm(x, axis=1)
    ok = n > 0
    u = x[ok] / n[ok, None]
    G = u @ u.T - 2 * np.eye(int(ok.sum()))
    return bool(np.any(G > 1 - 1e-12))


@st.composite
def inputs(draw, n_min=2, n_max=6, scale=1.0, d=None):
    n = draw(st.integers(n_min, n_max))
    d = draw(st.integers(1, 5)) if d is None else d
    x = draw(arrays(np.float64, (n, d), elements=finite)) * scale
    if n >= 3 and draw(st.booleans()):   # duplicates, parallel and antipodal copies are legal
        x[-1] = draw(st.sampled_from([1.0, 2.5, 1e-3, -1.0, -0.5])) * x[0]
    return x


# slopes: 0 or |slope| >= 0.05 (slopes like 1e-80 underflow the kernel to subnormals after a few
# layers, which the library reports as non-finite; see the report)
slope = st.one_of(st.just(0.0), st.floats(0.05, 1.5), st.floats(-1.5, -0.05))


@st.composite
def closed_form_activation(draw):
    kind = draw(st.sampled_from(["relu", "leaky", "abrelu", "identity", "erf", "shaped"]))
    if kind == "relu":
        return kn.ReLU()
    if kind == "leaky":
        return kn.LeakyReLU(draw(slope.filter(lambda a: abs(a) <= 1.0)))
    if kind == "abrelu":
        return kn.ABReLU(draw(slope), draw(slope))
    if kind == "identity":
        return kn.Identity()
    if kind == "shaped":
        return kn.ShapedReLU(draw(st.floats(-1.0, 1.0)), draw(st.floats(-1.0, 1.0)))
    return kn.Erf(draw(st.floats(0.2, 2.0)), draw(st.floats(0.2, 2.0)), draw(st.floats(-0.5, 0.5)))


@st.composite
def network(draw, activation=closed_form_activation()):
    act = draw(activation)
    depth = draw(st.integers(1, 30))
    sw2 = draw(st.floats(0.1, 2.5))
    sb2 = draw(st.sampled_from([0.0, 0.0, 0.01, 0.3, 1.0]))
    if draw(st.booleans()):
        return kn.MLP(depth, act, weight_var=sw2, bias_var=sb2)
    return kn.ResNet(depth, act, weight_var=sw2, bias_var=sb2,
                     input_weight_var=draw(st.floats(0.2, 2.0)),
                     input_bias_var=draw(st.sampled_from([0.0, 0.1])),
                     readout_weight_var=draw(st.floats(0.2, 2.0)),
                     readout_bias_var=draw(st.sampled_from([0.0, 0.1])))


# tanh by quadrature: variances kept <= ~2 (inputs in [-1, 1], weights <= 1.5, small bias), where
# the default rule is accurate to <= ~1e-8 relative (test_activations)
tanh_network = st.builds(
    lambda depth, sw2, sb2, mlp: (kn.MLP(depth, kn.Tanh(), weight_var=sw2, bias_var=sb2) if mlp
                                  else kn.ResNet(depth, kn.Tanh(), weight_var=sw2, bias_var=sb2)),
    st.integers(1, 6), st.floats(0.2, 1.5), st.sampled_from([0.0, 0.1]), st.booleans())


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _assert_psd(M, name):
    assert np.all(np.isfinite(M)), name
    np.testing.assert_array_equal(M, M.T, err_msg=f"{name} not symmetric")
    tr = float(np.trace(M))
    lam = float(np.linalg.eigvalsh(M)[0])
    assert lam >= -1e-12 * max(tr, 1e-300), f"{name}: min eigenvalue {lam:.3e}, trace {tr:.3e}"


def _assert_correlation_bounded(K, name):
    d = np.sqrt(np.diag(K))
    lim = np.outer(d, d)
    assert np.all(np.abs(K) <= lim * (1 + 1e-12) + 1e-300), f"{name}: |rho| > 1"


# ----------------------------------------------------------------------------------------------
# properties
# ----------------------------------------------------------------------------------------------
@SETTINGS
@given(net=network(), x=inputs(), fast=st.sampled_from([None, False]))
def test_kernels_symmetric_psd(net, x, fast):
    k = net.kernels(x, fast=fast)
    _assert_psd(k.nngp, "nngp")
    _assert_psd(k.ntk, "ntk")
    _assert_correlation_bounded(k.nngp, "nngp")


@SETTINGS
@given(net=tanh_network, x=inputs(scale=1 / 3))
def test_tanh_kernels_symmetric_psd(net, x):
    k = net.kernels(x)
    _assert_psd(k.nngp, "nngp")
    _assert_psd(k.ntk, "ntk")
    _assert_correlation_bounded(k.nngp, "nngp")


@SETTINGS
@given(depth=st.integers(1, 400), act=st.sampled_from(["relu", "leaky", "abs", "shaped"]),
       x=inputs(), resnet=st.booleans())
def test_fast_path_symmetric_psd(depth, act, x, resnet):
    a = {"relu": kn.ReLU(), "leaky": kn.LeakyReLU(0.2), "abs": kn.ABReLU(-1.0, 1.0),
         "shaped": kn.ShapedReLU(0.7, -0.4)}[act]
    net = kn.ResNet(depth, a, weight_var=1.0) if resnet else kn.MLP(depth, a, weight_var=1.0)
    k = net.kernels(x, fast=True)
    _assert_psd(k.nngp, "nngp")
    _assert_psd(k.ntk, "ntk")
    _assert_correlation_bounded(k.nngp, "nngp")


@SETTINGS
@given(net=network(), x=inputs())
def test_trajectory_correlation_in_range(net, x):
    tr = net.trajectory(x)
    assert tr.nngp.shape == (net.depth + 1, x.shape[0], x.shape[0])
    assert np.all(np.isfinite(tr.correlation))
    assert np.all(tr.correlation <= 1.0) and np.all(tr.correlation >= -1.0)
    assert np.all(tr.one_minus_correlation >= 0.0)
    assert np.all(tr.one_minus_correlation <= 2.0)
    assert np.all(tr.angle >= 0.0) and np.all(tr.angle <= math.pi)
    for l in range(net.depth + 1):
        _assert_psd(tr.nngp[l], f"nngp[{l}]")
        _assert_psd(tr.ntk[l], f"ntk[{l}]")


@SETTINGS
@given(r1=st.floats(-1.0, 1.0), r2=st.floats(-1.0, 1.0), depth=st.integers(1, 200),
       sb2=st.sampled_from([0.0, 0.1, 1.0]), resnet=st.booleans())
def test_relu_correlation_map_monotone(r1, r2, depth, sb2, resnet):
    lo, hi = min(r1, r2), max(r1, r2)
    net = (kn.ResNet(depth, kn.ReLU(), weight_var=2.0, bias_var=sb2) if resnet
           else kn.MLP(depth, kn.ReLU(), weight_var=2.0, bias_var=sb2))
    out = []
    for r in (lo, hi):
        tr = net.trajectory(K0=[[1.0, r], [r, 1.0]], layers=[depth])
        out.append(tr.correlation[0, 0, 1])
    assert out[0] <= out[1] + 1e-14
    # and the ReLU map never decreases the correlation (f(rho) >= rho, §2.3; with a bias the
    # added constant only pushes it further up)
    assert out[0] >= lo - 1e-14


@SETTINGS
@given(net=network(), x1=inputs(n_min=1, n_max=4), data=st.data())
def test_cross_kernel_is_block_of_stacked(net, x1, data):
    x2 = data.draw(inputs(n_min=1, n_max=4, d=x1.shape[1]))
    # duplicates across x1 / x2 under smooth activations: the cross diagonals come from a
    # different product than the cross Gram (1 ulp), which chaotic maps amplify
    assume(_is_homogeneous(net) or not _has_near_duplicate(np.vstack([x1, x2])))
    full = net.kernels(np.vstack([x1, x2]), fast=False)
    cross = net.kernels(x1, x2, fast=False)
    n1 = x1.shape[0]
    for name, c, f in (("nngp", cross.nngp, full.nngp), ("ntk", cross.ntk, full.ntk)):
        blk = f[:n1, n1:]
        d = np.sqrt(np.diag(f))
        tol = 1e-12 * np.abs(blk) + 1e-13 * np.outer(d[:n1], d[n1:])
        assert np.all(np.abs(c - blk) <= tol), f"{name}: {np.max(np.abs(c - blk)):.3e}"


@SETTINGS
@given(net=network(), x=inputs())
def test_input_kernel_route_equals_inputs(net, x):
    # K0 = x x'/d carries 1 - rho only to absolute rounding, so pairs closer than 1 - rho = 1e-6
    # are excluded (there the x route is more accurate by design: it refines near-parallel pairs
    # from unit vectors; exact duplicates given through K0 are a known issue, see test_mlp.py
    # test_input_kernel_duplicates_*).  Otherwise 1 - rho has relative error <= ~1e-10.
    n = np.linalg.norm(x, axis=1)
    assume(np.all(n > 0))
    u = x / n[:, None]
    G = u @ u.T
    assume(np.all(1 - G[~np.eye(len(x), dtype=bool)] > 1e-6))
    a = net.kernels(x, fast=False)
    b = net.kernels(K0=x @ x.T / x.shape[1], fast=False)
    for u_, v_ in ((a.nngp, b.nngp), (a.ntk, b.ntk)):
        d = np.sqrt(np.diag(u_))
        assert np.all(np.abs(u_ - v_) <= 1e-9 * np.outer(d, d))


@pytest.mark.parametrize("make", [kn.Erf, kn.Tanh, lambda: kn.Erf(1.0, 1.0, 0.375)],
                         ids=["erf", "tanh", "erf-offset"])
def test_trajectory_parallel_inputs_smooth_activation(make):
    # e.g. MLP(1, Erf(), 2.0).trajectory([[0.5], [0.5]]).correlation.max() == 1 + 2.2e-16,
    # MLP(1, Erf(), 1.5).trajectory([[1.0], [0.5]]).correlation[0].max() == 1 + 2.2e-16
    x = np.array([[0.5], [0.5], [1.7], [1.7], [1.0]])
    for net in (kn.MLP(1, make(), weight_var=2.0), kn.MLP(5, make(), weight_var=1.3, bias_var=0.1),
                kn.MLP(1, make(), weight_var=1.5), kn.ResNet(1, make(), weight_var=2.0)):
        tr = net.trajectory(x)
        assert np.all(tr.correlation <= 1.0)
        assert np.all(tr.one_minus_correlation >= 0.0)


def test_duplicate_inputs_identical_rows_smooth():
    net = kn.MLP(17, kn.Erf(1.9052560305369017, 1.9245056336370923, 0.0),
                 weight_var=0.40554671854973157, bias_var=0.01)
    x = np.array([[0.0, 0.984375], [0.0, 0.0], [0.0, 0.984375]])
    k = net.kernels(x)
    for M in (k.nngp, k.ntk):
        np.testing.assert_allclose(M[0], M[2], rtol=1e-14)
        np.testing.assert_allclose(M[0, 2], M[0, 0], rtol=1e-14)
        assert np.linalg.eigvalsh(M)[0] >= -1e-12 * np.trace(M)


def test_duplicate_inputs_identical_rows_homogeneous():
    x = np.array([[0.3, -1.2, 0.7], [1.0, 0.0, 0.0], [0.3, -1.2, 0.7]])
    for net in (kn.MLP(40, kn.ReLU(), weight_var=2.0, bias_var=0.2),
                kn.ResNet(40, kn.ABReLU(-0.4, 1.3), weight_var=1.5)):
        k = net.kernels(x, fast=False)
        for M in (k.nngp, k.ntk):
            # diagonal and off-diagonal take different arithmetic routes: equal to rounding
            np.testing.assert_allclose(M[0], M[2], rtol=1e-15)
            assert M[0, 2] == pytest.approx(M[0, 0], rel=1e-15)


def test_trajectory_duplicate_inputs_homogeneous_exact():
    x = np.array([[0.5, -1.0], [0.5, -1.0], [2.0, 1.0]])
    for net in (kn.MLP(7, kn.ReLU(), weight_var=2.0, bias_var=0.1),
                kn.ResNet(7, kn.LeakyReLU(0.3), weight_var=1.5)):
        tr = net.trajectory(x)
        np.testing.assert_array_equal(tr.one_minus_correlation[:, 0, 1], 0.0)
        np.testing.assert_array_equal(tr.correlation[:, 0, 1], 1.0)


# ----------------------------------------------------------------------------------------------
# scale: bias-free positively homogeneous networks are 2-homogeneous at every representable
# scale (issue 21 item 1); every public output is finite or the call raises
# ----------------------------------------------------------------------------------------------
homogeneous_act = st.sampled_from(["relu", "leaky", "abrelu"]).flatmap(
    lambda k: st.just(kn.ReLU()) if k == "relu" else
    (st.floats(0.05, 0.9).map(kn.LeakyReLU) if k == "leaky" else
     st.tuples(slope, st.floats(0.3, 1.5)).map(lambda ab: kn.ABReLU(*ab))))


@st.composite
def homogeneous_network(draw):
    act = draw(homogeneous_act)
    depth = draw(st.integers(1, 12))
    sw2 = draw(st.floats(0.5, 2.5))
    if draw(st.booleans()):
        return kn.MLP(depth, act, weight_var=sw2)
    return kn.ResNet(depth, act, weight_var=sw2, input_weight_var=draw(st.floats(0.2, 2.0)),
                     readout_weight_var=draw(st.floats(0.2, 2.0)))


def _nonzero_rows(x):
    return bool(np.all(np.max(np.abs(x), axis=1) > 0))


def _assert_scaled(got, ref, scale_i, scale_j, name, diags=None):
    """got_ij = scale_i scale_j ref_ij, to 1e-13 of scale_i scale_j sqrt(ref_ii ref_jj)
    (plus the smallest normal float, where the result is subnormal).  For a cross kernel,
    ``diags`` gives the two diagonals (K(x1, x1)_ii, K(x2, x2)_jj)."""
    di, dj = (np.diag(ref), np.diag(ref)) if diags is None else diags
    unit = np.outer(np.sqrt(np.abs(di)), np.sqrt(np.abs(dj)))     # no underflow of di dj
    with np.errstate(over="ignore", under="ignore"):
        exp = np.outer(scale_i, scale_j) * ref
        tol = 1e-13 * np.outer(scale_i, scale_j) * unit + 4 * np.finfo(float).tiny
    bad = np.abs(got - exp) > tol
    assert not bad.any(), (name, got[bad][:3], exp[bad][:3])


@SETTINGS
@given(net=homogeneous_network(), x=inputs(n_min=2, n_max=5).filter(_nonzero_rows),
       e=st.floats(-300.0, 300.0), pow2=st.booleans())
def test_homogeneous_scale_invariance(net, x, e, pow2):
    # nngp(a x) = a^2 nngp(x), the same for the NTK, for a from 1e-300 to 1e300; where
    # a^2 nngp(x) overflows, a FloatingPointError that says so
    a = 2.0 ** round(e * 3.3219) if pow2 else 10.0 ** e
    ref = net.kernels(x)
    with np.errstate(over="ignore"):
        big = not (np.all(np.isfinite(a * a * ref.nngp)) and np.all(np.isfinite(a * a * ref.ntk)))
    if big:
        with pytest.raises(FloatingPointError, match="overflow"):
            net.kernels(a * x)
        return
    got = net.kernels(a * x)
    s = np.full(x.shape[0], a)
    _assert_scaled(got.nngp, ref.nngp, s, s, "nngp")
    _assert_scaled(got.ntk, ref.ntk, s, s, "ntk")
    if pow2:                      # exact powers of two: the same bits, scaled
        with np.errstate(under="ignore"):
            exact = (a * a * ref.nngp)
        normal = np.abs(exact) >= np.finfo(float).tiny
        np.testing.assert_array_equal(got.nngp[normal], exact[normal])


@SETTINGS
@given(net=homogeneous_network(), x=inputs(n_min=2, n_max=5).filter(_nonzero_rows),
       data=st.data())
def test_homogeneous_per_row_scale(net, x, data):
    # K(D x) = D K(x) D for a positive diagonal D whose entries span 1e-150 .. 1e150: no
    # product of two norms overflows or underflows in the engine (it once gave rho0 = 0)
    e = np.array(data.draw(st.lists(st.floats(-150.0, 150.0), min_size=x.shape[0],
                                    max_size=x.shape[0])))
    s = 10.0 ** e
    ref = net.kernels(x)
    got = net.kernels(s[:, None] * x)
    _assert_scaled(got.nngp, ref.nngp, s, s, "nngp")
    _assert_scaled(got.ntk, ref.ntk, s, s, "ntk")
    # the cross kernel with a second set at another scale
    x2 = data.draw(inputs(n_min=1, n_max=3, d=x.shape[1]).filter(_nonzero_rows))
    s2 = 10.0 ** data.draw(st.floats(-150.0, 150.0))
    cross = net.nngp(s[:, None] * x, s2 * x2)
    _assert_scaled(cross, net.nngp(x, x2), s, np.full(x2.shape[0], s2), "cross",
                   diags=(np.diag(ref.nngp), np.diag(net.nngp(x2))))


@SETTINGS
@given(net=homogeneous_network(), x=inputs(n_min=2, n_max=4).filter(_nonzero_rows),
       e=st.floats(-300.0, 300.0))
def test_homogeneous_trajectory_correlation_scale_free(net, x, e):
    # the correlation and angle of every layer do not depend on the input scale, even where
    # the kernels themselves underflow to 0 or overflow (ntk=False: only the NNGP is needed)
    a = 10.0 ** e
    tiny = np.finfo(np.float64).tiny
    ax = a * x
    # the claim is about a scaled copy of x: entries that underflow (to 0 or to subnormals, which
    # lose relative precision) change the direction of a row itself
    assume(np.all((x == 0) | (np.abs(ax) >= tiny)))
    ref = net.trajectory(x, ntk=False)
    try:
        got = net.trajectory(ax, ntk=False)
    except FloatingPointError as exc:
        assert "overflow" in str(exc)
        with np.errstate(over="ignore"):
            assert not np.all(np.isfinite(a * a * ref.nngp))
        return
    assert got.ntk is None
    np.testing.assert_allclose(got.correlation, ref.correlation, rtol=0, atol=1e-13)
    # relative accuracy of the gap (parallel rows get a rounding-level gap, ~1e-33, from
    # the scaled copy a x itself)
    np.testing.assert_allclose(got.one_minus_correlation, ref.one_minus_correlation,
                               rtol=1e-12, atol=1e-24)


def _finite_or_named_error(calls):
    """Each call's public outputs are finite, or it raises FloatingPointError naming the NNGP
    or NTK."""
    for call in calls:
        try:
            out = call()
        except FloatingPointError as exc:
            assert "NNGP" in str(exc) or "NTK" in str(exc)
            continue
        for name in ("nngp", "ntk", "correlation", "angle"):
            arr = getattr(out, name, None)
            if arr is not None:
                assert np.all(np.isfinite(arr)), name


@SETTINGS
@given(net=network(), x=inputs(), e=st.floats(-300.0, 300.0))
def test_every_output_finite_or_error(net, x, e):
    # any architecture, activation and input scale: each public output is finite, or the call
    # raises FloatingPointError naming the quantity that left the float64 range
    xs = 10.0 ** e * x
    _finite_or_named_error((lambda: net.kernels(xs), lambda: net.trajectory(xs),
                            lambda: net.trajectory(xs, ntk=False)))
    try:
        K = net.nngp(xs)
    except FloatingPointError as exc:
        assert "NNGP" in str(exc)
    else:
        assert np.all(np.isfinite(K))


@SETTINGS
@given(e=st.floats(-300.0, 300.0), k=st.integers(-498, 510), r=st.floats(-1.0, 1.0),
       act=st.sampled_from([kn.ReLU(), kn.LeakyReLU(0.3), kn.ABReLU(-0.5, 1.5), kn.Erf(),
                            kn.Identity()]))
def test_public_maps_finite_at_any_scale(e, k, r, act):
    # V and Vdot of the closed forms at q1 = q2 = 10^e: finite; homogeneous ones at q = 4^k
    # (so that c = r q is exact: near |r| = 1 the maps are ill-conditioned in c) scale like q
    q = 10.0 ** e
    V, Vd = act.V(q, q, r * q), act.Vdot(q, q, r * q)
    assert np.isfinite(V) and np.isfinite(Vd)
    if act.homogeneous:
        q = 4.0 ** k
        V, Vd = act.V(q, q, r * q), act.Vdot(q, q, r * q)
        V1 = act.V(1.0, 1.0, r)
        assert abs(V - q * V1) <= 1e-15 * q * max(abs(act.V(1.0, 1.0, 1.0)), 1.0)
        assert abs(Vd - act.Vdot(1.0, 1.0, r)) <= 1e-15


@pytest.mark.parametrize("s", [1e-300, 1e-200, 1e-80, 1e80, 1e200, 1e300])
@pytest.mark.parametrize("arch", ["mlp", "resnet"])
def test_homogeneous_input_kernel_route_any_scale(s, arch):
    # the K0 route: K0 scaled by s gives kernels scaled by s (2-homogeneity in K0 = degree 1)
    K0 = np.array([[1.0, 0.3, -0.2], [0.3, 2.0, 0.5], [-0.2, 0.5, 0.7]])
    net = (kn.MLP(9, kn.LeakyReLU(0.3), weight_var=1.2) if arch == "mlp"
           else kn.ResNet(9, kn.ABReLU(-0.4, 1.1), weight_var=1.2))
    ref, got = net.kernels(K0=K0), net.kernels(K0=s * K0)
    with np.errstate(under="ignore"):
        np.testing.assert_allclose(got.nngp, s * ref.nngp, rtol=1e-13,
                                   atol=1e-13 * s * np.max(ref.nngp) + 1e-307)
        np.testing.assert_allclose(got.ntk, s * ref.ntk, rtol=1e-13,
                                   atol=1e-13 * s * np.max(ref.ntk) + 1e-307)
    np.testing.assert_allclose(net.trajectory(K0=s * K0).correlation,
                               net.trajectory(K0=K0).correlation, rtol=0, atol=1e-13)


# ----------------------------------------------------------------------------------------------
# smooth (and biased) networks at extreme input scales: not rescaled, so each output is finite
# and right, or the call raises naming the quantity (issue 21: no silent wrong answer)
# ----------------------------------------------------------------------------------------------
USER_SIN = kn.Activation(lambda t: math.sin(t), lambda t: math.cos(t), name="sin")


@st.composite
def smooth_network(draw, bias=None):
    act = draw(st.sampled_from(["erf", "tanh", "sin"]))
    act = {"tanh": kn.Tanh(), "sin": USER_SIN}.get(act) or kn.Erf(
        draw(st.floats(0.2, 2.0)), draw(st.floats(0.2, 2.0)))
    depth = draw(st.integers(1, 6))
    sw2 = draw(st.floats(0.2, 1.5))
    sb2 = draw(st.sampled_from([0.0, 0.1])) if bias is None else bias
    if draw(st.booleans()):
        return kn.MLP(depth, act, weight_var=sw2, bias_var=sb2)
    return kn.ResNet(depth, act, weight_var=sw2, bias_var=sb2,
                     input_weight_var=draw(st.floats(0.2, 2.0)))


@SETTINGS
@given(net=smooth_network(), x=inputs(n_min=2, n_max=4), e=st.floats(-300.0, 300.0))
def test_smooth_outputs_finite_or_error_any_scale(net, x, e):
    # tanh and a user activation by quadrature, erf in closed form, with and without bias,
    # inputs scaled by 1e-300 .. 1e300: finite results, or a FloatingPointError naming the
    # NNGP / NTK (overflow of the input kernel, or underflow of a bias-free one)
    xs = 10.0 ** e * x
    _finite_or_named_error((lambda: net.kernels(xs), lambda: net.trajectory(xs, ntk=False)))


@SETTINGS
@given(net=smooth_network(bias=0.0), x=inputs(n_min=2, n_max=4).filter(_nonzero_rows),
       e=st.floats(-300.0, -40.0))
def test_smooth_bias_free_small_scale_keeps_correlation(net, x, e):
    # phi odd with phi'(0) != 0 and no bias: at |x| <= 3e-40 the network is linear to
    # ~1e-80, so every layer keeps the input correlation x_i.x_j / (|x_i| |x_j|).  Where the
    # input variances underflow (below the smallest normal float64) the call must say so
    # instead (it once returned correlation 0, or garbage from the quadrature)
    xs = 10.0 ** e * x
    try:
        tr = net.trajectory(xs, ntk=False)
    except FloatingPointError as exc:
        assert "underflows" in str(exc)
        w = net.input_weight_var if isinstance(net, kn.ResNet) else net.weight_var
        with np.errstate(under="ignore"):
            q = w * np.sum(xs * xs, axis=1) / x.shape[1]
        assert np.min(q) < np.finfo(float).tiny
        return
    n = np.linalg.norm(x, axis=1)
    rho0 = np.clip((x @ x.T) / np.outer(n, n), -1, 1)
    np.testing.assert_allclose(tr.correlation, np.broadcast_to(rho0, tr.correlation.shape),
                               rtol=0, atol=1e-11)
