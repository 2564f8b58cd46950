"""limits.phase: regimes, coordinates, the GD trainer, S_w and the diagram (theory/training.md §1).

Expected values come from P1 (Luo et al. 2021) as recorded in training.md, from the theory
(boundary, conservation law, rescaling invariance), or from independent computations written
here (a NumPy GD, a brute-force distance to the boundary).  The full-width reproductions of
published numbers are marked slow.
"""
import math

import numpy as np
import pytest

from limits import phase as ph

X1, Y1 = ph.one_d_data()


# ----------------------------------------------------------------------------------------------
# regimes and coordinates
# ----------------------------------------------------------------------------------------------
def test_one_d_data_is_p1_problem():
    np.testing.assert_array_equal(X1[:, 0], [-0.5, -1 / 6, 1 / 6, 0.5])
    np.testing.assert_array_equal(Y1, X1[:, 0] ** 2)


@pytest.mark.parametrize("name,expected", [
    ("LeCun", "linear"), ("He", "linear"), ("NTK", "linear"),
    ("Xavier", "critical"), ("mean-field", "critical")])
def test_table1_regimes(name, expected):
    init = ph.INITIALISATIONS[name]
    assert ph.regime(init.gamma, init.gamma_prime) == expected


def test_table1_coordinates_are_the_limits_of_the_scales():
    """P1 Table 1 (gamma, gamma'); the constants (sqrt 2, sqrt 4, d) shift the finite-m value
    by at most log(4)/log(m) for d = 1."""
    table = {"LeCun": (0.5, 0.5), "He": (0.5, 0.5), "Xavier": (1.0, 0.0), "NTK": (0.5, 0.0),
             "mean-field": (1.0, 0.0)}
    for name, (g, gp) in table.items():
        init = ph.INITIALISATIONS[name]
        assert (init.gamma, init.gamma_prime) == (g, gp)
        for m in (10 ** 6, 10 ** 12):
            alpha, b1, b2 = init.scales(m, 1)
            kappa, kappa_p = b1 * b2 / alpha, b1 / b2          # P1 Eq. (8), written out here
            got = (-math.log(kappa) / math.log(m), -math.log(kappa_p) / math.log(m))
            assert ph.gammas_of(alpha, b1, b2, m) == pytest.approx(got, rel=1e-14)
            bound = math.log(4.0) / math.log(m) + 1e-12
            assert abs(got[0] - g) <= bound and abs(got[1] - gp) <= bound, (name, m, got)


def test_e_et_al_line_is_linear():
    t = np.linspace(-1.0, 4.0, 101)
    assert np.all(ph.regime(t, t) == "linear")
    init = ph.INITIALISATIONS["E et al."]
    assert init.line and init.gamma == init.gamma_prime
    m = 10 ** 8
    assert ph.gammas_of(*init.scales(m, 1), m) == pytest.approx((0.25, 0.25), abs=1e-12)


def test_regime_boundary_cases_and_arrays():
    assert ph.regime(1.0, -0.5) == "critical"
    assert ph.regime(1.3, 0.3) == "critical"
    assert ph.regime(1.0 + 1e-6, 0.0) == "condensed"
    assert ph.regime(1.0 - 1e-6, -2.0) == "linear"
    assert ph.regime(1.29, 0.3) == "linear" and ph.regime(1.31, 0.3) == "condensed"
    assert ph.regime(1.04, 0.0, tol=0.05) == "critical"
    out = ph.regime(np.array([0.5, 1.0, 1.5]), 0.0)
    assert isinstance(out, np.ndarray) and list(out) == ["linear", "critical", "condensed"]
    grid = ph.regime(np.array([[0.5], [2.0]]), np.array([0.0, 0.5, 1.5]))
    assert grid.shape == (2, 3)
    assert list(grid[1]) == ["condensed", "condensed", "linear"]


def test_boundary_distance_against_brute_force():
    t = np.linspace(0.0, 4.0, 40_001)          # nearest points have t < 3 for this box
    curve = np.concatenate([np.stack([np.ones_like(t), -t], 1), np.stack([1 + t, t], 1)])
    rng = np.random.default_rng(5)
    pts = rng.uniform([0.0, -1.0], [2.5, 1.5], size=(200, 2))
    got = ph.boundary_distance(pts[:, 0], pts[:, 1])
    for (g, gp), d in zip(pts, got):
        brute = np.min(np.hypot(curve[:, 0] - g, curve[:, 1] - gp))
        assert abs(abs(d) - brute) < 1e-4
        assert (d > 0) == (g > 1 + max(0.0, gp))


def test_coordinate_round_trips():
    for g, gp, m, b1 in [(0.5, 0.0, 1000, 1.0), (1.75, -0.3, 40000, 1e-3), (1.2, 0.4, 7, 3.0)]:
        alpha, beta_1, beta_2 = ph.from_gamma(g, gp, m, b1)
        assert beta_1 == b1
        assert beta_2 == pytest.approx(b1 * m ** gp, rel=1e-15)
        assert alpha == pytest.approx(b1 * beta_2 * m ** g, rel=1e-15)
        assert ph.gammas_of(alpha, beta_1, beta_2, m) == pytest.approx((g, gp), abs=1e-12)
        k, kp = ph.kappas(alpha, beta_1, beta_2)
        assert (k, kp) == pytest.approx((m ** -g, m ** -gp), rel=1e-12)
        assert ph.from_kappa(k, kp, b1) == pytest.approx((alpha, beta_1, beta_2), rel=1e-12)
    assert ph.boundary(np.array([-0.3, 0.0, 0.4])) == pytest.approx([1.0, 1.0, 1.4])


# ----------------------------------------------------------------------------------------------
# the trainer against an independent NumPy GD
# ----------------------------------------------------------------------------------------------
def _numpy_gd(a, W, X, y, alpha, steps, F=None, delta=None, lr=None):
    """Plain NumPy full-batch GD on R_S = 1/(2n) sum (f - y)^2, f = (1/alpha) a.relu(W x~),
    with the step rule of ``train``'s docstring written out from scratch."""
    Xa = np.hstack([X, np.ones((len(X), 1))])
    n, c = len(y), 1.0 / alpha
    a, W = a.copy(), W.copy()
    for _ in range(steps):
        Z = W @ Xa.T
        H = np.maximum(Z, 0.0)
        act = (Z > 0).astype(float)
        e = c * a @ H - y
        grad_a = c / n * H @ e
        S = (act * e) @ Xa
        grad_W = c / n * a[:, None] * S
        if lr is None:
            trG = c * c * (np.sum(H * H) + np.sum((a ** 2)[:, None] * act * np.sum(Xa ** 2, 1)))
            vmax = np.max(np.linalg.norm(S, axis=1))
            eta = min(F * n / trG, delta * n / (c * vmax))
        else:
            eta = lr
        a, W = a - eta * grad_a, W - eta * grad_W
    return a, W


@pytest.mark.parametrize("data", ["1d", "2d"])
@pytest.mark.parametrize("rule", ["fixed", "rule"])
def test_trainer_matches_numpy_gd(data, rule):
    if data == "1d":
        X, y = X1, Y1
    else:
        rng = np.random.default_rng(1)
        X, y = rng.uniform(0, 1, (6, 3)), rng.uniform(0, 1, 6)
    m, steps, alpha = 60, 40, 60 ** 1.2
    kw = dict(lr=0.2 * alpha ** 2 / m) if rule == "fixed" else dict(step_factor=0.7,
                                                                       curvature_factor=0.03)
    r = ph.train(m, alpha=alpha, beta_1=1.0, beta_2=1.0, X=X, y=y, seed=3, asi=False,
                 tol=1e-300, max_steps=steps, max_restarts=0, **kw)
    assert r.status == "budget" and r.steps == steps
    a_ref, W_ref = _numpy_gd(r.a0, r.W0, X, y, alpha, steps,
                             F=0.7, delta=0.03, lr=kw.get("lr"))
    np.testing.assert_allclose(r.a, a_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r.W, W_ref, rtol=1e-10, atol=1e-12)
    assert r.rd == pytest.approx(np.linalg.norm(W_ref - r.W0) / np.linalg.norm(r.W0), rel=1e-10)


def test_parallel_kernel_matches_serial():
    kw = dict(seed=5, tol=1e-300, max_steps=60, max_restarts=0)
    r1 = ph.train(20_000, 1.3, -0.1, **kw)
    r2 = ph.train(20_000, 1.3, -0.1, parallel=True, **kw)
    assert r1.steps == r2.steps == 60
    np.testing.assert_allclose(r2.a, r1.a, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r2.W, r1.W, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r2.loss, r1.loss, rtol=1e-9)


def test_asi_output_is_zero_at_initialisation():
    r = ph.train(300, 0.5, 0.0, seed=4)
    assert r.loss[0] == pytest.approx(np.mean(Y1 ** 2) / 2, rel=1e-15)   # f = 0 exactly
    r2 = ph.train(300, 0.5, 0.0, seed=4, asi=False, max_steps=1, tol=1e-300)
    a0, W0 = r2.a0, r2.W0
    f0 = a0 @ np.maximum(W0 @ np.hstack([X1, np.ones((4, 1))]).T, 0) / 300 ** 0.5
    assert r2.loss[0] == pytest.approx(np.mean((f0 - Y1) ** 2) / 2, rel=1e-12)


def test_converged_run_reaches_tolerance():
    r = ph.train(500, 1.0, 0.0, seed=1)
    assert r.status == "converged" and not r.failed
    assert r.loss[-1] < 1e-6 <= r.loss[-2]
    assert np.all(np.isfinite(r.loss))
    assert r.check() is r


def test_conservation_law_to_first_order_in_lr():
    """a_k^2 - ||w_k||^2 is constant under gradient flow (P1 Prop. 27); one GD step changes it
    by eta^2 (g_a^2 - ||g_w||^2), so over a fixed flow time T the drift is O(eta): halving eta
    halves it (ratio -> 1/2 as eta -> 0)."""
    m, alpha, T = 200, 200.0, None
    drift = []
    base = 0.02 * alpha ** 2 / m
    for k, lr in enumerate((base, base / 2, base / 4)):
        steps = 400 * 2 ** k
        r = ph.train(m, alpha=alpha, beta_1=1.0, beta_2=1.0, seed=2, lr=lr, tol=1e-300,
                     max_steps=steps, max_restarts=0)
        assert r.restarts == 0 and r.steps == steps
        c0 = r.a0 ** 2 - np.sum(r.W0 ** 2, 1)
        c1 = r.a ** 2 - np.sum(r.W ** 2, 1)
        drift.append(np.max(np.abs(c1 - c0)))
        T = steps * lr
        # the weights did move: the conserved quantity is not trivially constant
        assert np.max(np.abs(r.a - r.a0)) > 100 * drift[-1]
    assert T > 0
    assert 0.4 < drift[1] / drift[0] < 0.6
    assert 0.4 < drift[2] / drift[1] < 0.6


@pytest.mark.parametrize("point", [(1.75, 0.0), (1.3, -0.3)])
def test_rd_is_converged_in_step_size(point):
    """training.md §1.5: RD must be a gradient-flow quantity, i.e. change by < 5 % when the
    step shrinks (there, a fixed stability-limit step moved RD by 2.4x at gamma = 1.75)."""
    rd1, rd4, rel = ph.step_convergence(1000, *point, factor=4.0)
    assert rel < 0.05, (rd1, rd4)


def test_rescaling_invariance_same_seed():
    """Runs at the same (kappa, kappa') with different (alpha, beta_1, beta_2) are the same run
    up to rounding (P1 Eq. (7); the step rule is invariant), so RD agrees to ~1e-9."""
    rds = []
    for e1 in (0.0, 0.5, 1.0):
        m = 400
        b1 = m ** -e1
        r = ph.train(m, 1.4, 0.1, beta_1=b1, seed=7)
        assert r.status == "converged"
        assert r.beta_1 == b1 and r.beta_2 == pytest.approx(b1 * m ** 0.1)
        rds.append(r.rd)
    np.testing.assert_allclose(rds, rds[0], rtol=1e-7)


def test_slope_invariance_across_parametrisations_within_stderr():
    """P1 Fig. 3(d): S_w depends only on (gamma, gamma').  Independent seeds per
    parametrisation, so the comparison is statistical: |S_i - S_j| <= 4 sqrt(se_i^2 + se_j^2)."""
    widths = (100, 200, 400, 800)
    out = []
    for k, e1 in enumerate((0.0, 0.5, 1.0)):
        seeds = tuple(range(10 * k, 10 * k + 4))
        out.append(ph.slope(1.5, 0.0, widths=widths, seeds=seeds, beta1_exponent=e1))
    for i in range(3):
        for j in range(i + 1, 3):
            si, sj = out[i], out[j]
            assert abs(si.value - sj.value) <= 4 * math.hypot(si.stderr, sj.stderr), (si, sj)
    assert all(s.method == "seeds" and s.stderr > 0 for s in out)


def test_slope_is_least_squares_of_log_rd():
    s = ph.slope(1.0, 0.0, widths=(100, 300, 900), seeds=(0, 1))
    per = [np.polyfit(np.log([100, 300, 900]), np.log(row), 1)[0] for row in s.rd]
    np.testing.assert_allclose(s.per_seed, per, rtol=1e-12)
    assert s.value == pytest.approx(np.mean(per), rel=1e-12)
    assert s.stderr == pytest.approx(np.std(per, ddof=1) / math.sqrt(2), rel=1e-12)
    r = ph.train(300, 1.0, 0.0, seed=1)
    assert s.rd[1, 1] == r.rd


def test_slope_signs_at_small_width():
    """Far from the boundary the sign of S_w is the regime already at m = 200..1600."""
    widths = (200, 400, 800, 1600)
    assert ph.slope(0.5, 0.0, widths=widths, seeds=(0, 1)).value < 0
    assert ph.slope(1.75, 0.0, widths=widths, seeds=(0, 1)).value > 0
    assert ph.slope(1.0, 0.6, widths=widths, seeds=(0, 1)).value < 0


# ----------------------------------------------------------------------------------------------
# diagram
# ----------------------------------------------------------------------------------------------
def test_zero_crossings_linear_interpolation():
    g = np.array([0.8, 1.0, 1.2, 1.4])
    S = np.array([g - 1.1, -(g - 1.1), [-0.3, np.nan, 0.1, 0.2], [-1, -1, -1, -1.0]])
    out = ph.zero_crossings(g, S)
    assert out[0] == pytest.approx(1.1)
    assert math.isnan(out[1]) and math.isnan(out[3])
    assert out[2] == pytest.approx(0.8 + 0.3 * 0.4 / 0.4)


def test_diagram_local_agrees_with_slope():
    widths, g, gp = (100, 200, 400), [0.7, 1.6], [-0.2, 0.3]
    D = ph.diagram(g, gp, widths=widths, seeds=(0, 1), progress=False)
    assert D.slope.shape == (2, 2) and D.rd.shape == (2, 2, 2, 3) and not D.failures
    for r, b in enumerate(gp):
        for c, a in enumerate(g):
            s = ph.slope(a, b, widths=widths, seeds=(0, 1))
            assert D.slope[r, c] == s.value and D.stderr[r, c] == s.stderr
    assert D.slope[0, 0] < 0 < D.slope[0, 1]


def test_diagram_on_executor_without_store_gives_same_numbers():
    from concurrent.futures import ThreadPoolExecutor
    kw = dict(widths=(100, 200), seeds=(0, 1), progress=False)
    with ThreadPoolExecutor(2) as ex:
        D1 = ph.diagram([0.8, 1.5], [0.0, 0.3], executor=ex, **kw)
    D2 = ph.diagram([0.8, 1.5], [0.0, 0.3], workers=1, **kw)
    np.testing.assert_array_equal(D1.rd, D2.rd)
    assert np.all(np.isfinite(D1.slope))


def test_diagram_with_store_is_resumable(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from limits import sweep
    store = str(tmp_path / "phase.sqlite")
    kw = dict(widths=(100, 200), seeds=(0,), progress=False)
    with ThreadPoolExecutor(2) as ex:
        D1 = ph.diagram([0.8, 1.5], [0.0], executor=ex, store=store, **kw)
    assert D1.sweep_summary.completed == 4 and not D1.failures
    D2 = ph.diagram([0.8, 1.5], [0.0], store=store, **kw)
    assert D2.sweep_summary.completed == 0 and D2.sweep_summary.skipped == 4   # nothing redone
    np.testing.assert_array_equal(D1.rd, D2.rd)
    local = ph.diagram([0.8, 1.5], [0.0], **kw)
    assert local.sweep_summary.store == ":memory:" and local.sweep_summary.completed == 4
    np.testing.assert_array_equal(D1.rd, local.rd)
    # other settings under the same name are other points, not mixed in
    D3 = ph.diagram([0.8, 1.5], [0.0], store=store, tol=1e-5, **kw)
    assert D3.sweep_summary.completed == 4 and not np.array_equal(D3.rd, D1.rd)
    # a slope reuses the diagram's runs when it shares the store and name
    s = ph.slope(1.5, 0.0, widths=(100, 200), seeds=(0,), store=store, name="phase_diagram")
    np.testing.assert_array_equal(s.rd[0], D1.rd[0, 1, 0])
    # a diverging run is recorded as a failure by the sweep, never as a result
    with ThreadPoolExecutor(2) as ex, pytest.warns(RuntimeWarning, match="2 of 2 runs failed"):
        D4 = ph.diagram([0.8], [0.0], executor=ex, store=store, lr=1e6, max_restarts=0, **kw)
    assert len(D4.failures) == 2 and np.isnan(D4.slope[0, 0])
    assert all("TrainingFailed" in f["error"] for f in D4.failures)
    assert all("TrainingFailed" in f.error for f in sweep.failures(store, "phase_diagram"))
    # the experiment is bound to the point function's import path of before the split
    import sqlite3
    con = sqlite3.connect(store)
    assert con.execute("SELECT DISTINCT fn FROM experiments").fetchall() == \
        [("limits.phase:_phase_point",)]
    con.close()


def test_slope_and_diagram_on_a_process_pool_give_the_same_numbers():
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    kw = dict(widths=(100, 200), seeds=(0, 1))
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in
                                      multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        s1 = ph.slope(1.2, 0.1, executor=ex, **kw)
        D1 = ph.diagram([1.2], [0.1], executor=ex, progress=False, **kw)
    s2 = ph.slope(1.2, 0.1, workers=1, **kw)
    np.testing.assert_array_equal(s1.rd, s2.rd)
    np.testing.assert_array_equal(D1.rd[0, 0], s2.rd)
    assert s1.value == s2.value == D1.slope[0, 0]


# ----------------------------------------------------------------------------------------------
# failures and bad input
# ----------------------------------------------------------------------------------------------
def test_diverging_run_is_reported_not_used():
    r = ph.train(100, 0.5, 0.0, lr=1e6, max_restarts=2)
    assert r.status == "diverged" and r.failed and r.restarts == 2
    with pytest.raises(ph.TrainingFailed, match="diverged"):
        r.check()
    with pytest.raises(ph.TrainingFailed, match="failed"):
        ph.slope(0.5, 0.0, widths=(50, 100), seeds=(0,), lr=1e6, max_restarts=1)
    with pytest.warns(RuntimeWarning, match="2 of 2 runs failed"):
        D = ph.diagram([0.5], [0.0], widths=(50, 100), seeds=(0,), progress=False, lr=1e6,
                       max_restarts=1)
    assert math.isnan(D.slope[0, 0]) and np.all(np.isnan(D.rd)) and len(D.failures) == 2


def test_extreme_scales_give_a_result_or_a_named_error():
    """Property over (gamma, gamma', m) far outside the diagram (issue 21): ``train`` either
    refuses with a ValueError naming the coordinates, or returns finite numbers (a loss that is
    finite at every step unless the run is reported diverged); never an OverflowError,
    ZeroDivisionError, MemoryError, a nan RD or an infinite loss reported as "budget"."""
    refused = returned = 0
    for g in np.linspace(-400.0, 400.0, 17):
        for gp in (-300.0, -20.0, 0.0, 20.0, 300.0):
            for m in (2, 10, 1000):
                try:
                    r = ph.train(m, g, gp, max_steps=50, seed=1)
                except ValueError as exc:
                    assert str(exc).startswith(("gamma=", "gamma_prime=")), exc
                    refused += 1
                    continue
                returned += 1
                assert r.status in ("converged", "budget", "diverged")
                assert math.isfinite(r.rd) and r.rd >= 0, (g, gp, m, r.rd)
                if r.status != "diverged":
                    assert np.all(np.isfinite(r.loss)), (g, gp, m, r.status)
                if r.status == "converged":
                    assert r.loss[-1] < 1e-6
    assert refused > 0 and returned > 0


def test_tiny_and_huge_weights_give_the_relative_distance():
    """RD = ||W - W0|| / ||W0|| where the squares of the weights under- or overflow: the
    plain formula would give 0/0 or inf/inf."""
    from limits.phase._training import _relative_distance
    rng = np.random.default_rng(0)
    W0 = rng.standard_normal((50, 2))
    W1 = W0 + 1e-3 * rng.standard_normal((50, 2))
    want = np.linalg.norm(W1 - W0) / np.linalg.norm(W0)
    assert _relative_distance(W1, W0) == want                        # the plain formula
    for scale in (1e-200, 1e-160, 1e160, 1e200):
        assert _relative_distance(W1 * scale, W0 * scale) == pytest.approx(want, rel=1e-13)
    r = ph.train(100, 0.5, -60.0, seed=2)          # beta_2 = 1e-120: squares underflow
    assert r.status == "converged"
    assert r.rd == pytest.approx(np.linalg.norm((r.W - r.W0) * 1e120)
                                 / np.linalg.norm(r.W0 * 1e120), rel=1e-13)


def test_zero_rd_is_not_fitted():
    X = np.array([[0.1], [0.5]])
    with pytest.raises(ph.TrainingFailed, match="RD = 0"):
        ph.slope(1.0, 0.0, widths=(10, 20), seeds=(0,), X=X, y=[0.0, 0.0])


def test_budget_is_a_failure():
    r = ph.train(100, 1.5, 0.0, max_steps=3)
    assert r.status == "budget" and r.failed
    with pytest.raises(ph.TrainingFailed, match="budget"):
        r.check()


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ph.slope(1.0, 0.0, widths=(1000,)), ValueError, "widths"),
    (lambda: ph.slope(1.0, 0.0, widths=(1, 1000)), ValueError, "widths"),
    (lambda: ph.slope(1.0, 0.0, widths=(100, 100)), ValueError, "widths"),
    (lambda: ph.slope(1.0, 0.0, widths=(100.5, 200)), TypeError, "widths"),
    (lambda: ph.slope(np.nan, 0.0), ValueError, "gamma"),
    (lambda: ph.slope(1.0, np.inf), ValueError, "gamma_prime"),
    (lambda: ph.regime(np.array([1.0, np.nan]), 0.0), ValueError, "gamma"),
    (lambda: ph.regime(1.0, 0.0, tol=-1), ValueError, "tol"),
    (lambda: ph.train(1, 1.0, 0.0), ValueError, "m"),
    (lambda: ph.train(100, 1.0, 0.0, X=[[0.0], [np.nan]], y=[0.0, 1.0]), ValueError, "X"),
    (lambda: ph.train(100, 1.0, 0.0, X=[[0.0], [1.0]], y=[0.0, np.nan]), ValueError, "y"),
    (lambda: ph.train(100, 1.0, 0.0, X=[[0.0], [1.0]], y=[0.0, 1.0, 2.0]), ValueError, "y"),
    (lambda: ph.train(100, 1.0, 0.0, X=[[0.0], [1.0]]), ValueError, "y"),
    (lambda: ph.train(100, 1.0, 0.0, alpha=1.0, beta_1=1.0, beta_2=1.0), ValueError, "either"),
    (lambda: ph.train(100, alpha=-1.0, beta_1=1.0, beta_2=1.0), ValueError, "alpha"),
    (lambda: ph.train(100, 1.0, 0.0, tol=0.0), ValueError, "tol"),
    (lambda: ph.train(100, 1.0, 0.0, lr=np.nan), ValueError, "lr"),
    (lambda: ph.train(100, 1.0, 0.0, seed=-1), ValueError, "seed"),
    (lambda: ph.slope(1.0, 0.0, widths=(10, 20), bogus=1), TypeError, "bogus"),
    (lambda: ph.diagram([1.0, 0.9], [0.0], widths=(10, 20)), ValueError, "increasing"),
    (lambda: ph.diagram([1.0], [0.0], widths=(10,)), ValueError, "widths"),
    (lambda: ph.diagram([1.0], [0.0], widths=(10, 20), seeds=()), ValueError, "seeds"),
    (lambda: ph.from_gamma(1.0, 0.0, 1000, beta_1=0.0), ValueError, "beta_1"),
    (lambda: ph.condensation_index(np.zeros(3), np.ones((3, 2))), ValueError, "zero"),
    # issue 21: early, named errors instead of OverflowError, ZeroDivisionError, MemoryError
    (lambda: ph.train(10, 1000.0, 0.0), ValueError, r"gamma=1000.0 at m=10: alpha.*overflows"),
    (lambda: ph.train(10, -1000.0, 0.0), ValueError, r"gamma=-1000.0 at m=10: alpha.*underfl"),
    (lambda: ph.train(10, 0.5, 400.0), ValueError, r"gamma_prime=400.0 at m=10: beta_2"),
    (lambda: ph.train(10, -300.0, 0.0), ValueError, r"gamma=-300.0, gamma_prime=0.0 .*m=10"),
    (lambda: ph.train(10, -150.0, 0.0), ValueError, r"gamma=-150.0.*rounding error"),
    (lambda: ph.train(100, 1.0, 0.0, max_steps=10 ** 12), ValueError,
     r"max_steps=1000000000000: the loss history.*needs about [0-9,]+ bytes \(7.28 TiB"),
    (lambda: ph.train(10 ** 12, 1.0, 0.0), ValueError, r"m=1000000000000.*needs about"),
    (lambda: ph.train(100, 1.0, 0.0, max_steps=10.0), TypeError, "max_steps"),
    (lambda: ph.train(100, 1.0, 0.0, seed=1.0), TypeError, "seed"),
    (lambda: ph.train(100, 1.0, 0.0, asi="no"), TypeError, "asi"),
    (lambda: ph.train(100, 1.0, 0.0, parallel=1), TypeError, "parallel"),
    (lambda: ph.train(100, 1.0, 0.0, max_restarts=-1), ValueError, "max_restarts"),
    (lambda: ph.train(100, 1.0, 0.0, X=[[1j], [0.5]], y=[0.0, 1.0]), TypeError, "X.*complex"),
    (lambda: ph.train(100, 1.0, 0.0, init=(np.ones(100), np.ones((100, 2)) * np.nan)),
     ValueError, "W0"),
    (lambda: ph.train(100, alpha=1e-300, beta_1=1e300, beta_2=1.0), ValueError,
     r"alpha=1e-300, beta_1=1e\+300"),
    (lambda: ph.from_gamma(1.0, 0.0, 10.0), TypeError, "m"),
    (lambda: ph.kappas(1e-300, 1e300, 1e300), ValueError, "kappa = beta_1 beta_2 / alpha"),
    (lambda: ph.from_kappa(1e-300, 1e-300), ValueError, "kappa"),
    (lambda: ph.initial_parameters(10, 1, -1), ValueError, "seed"),
    (lambda: ph.slope(1000.0, 0.0, widths=(10, 20)), ValueError, "gamma=1000.0 at m=10"),
    (lambda: ph.slope(1.0, 0.0, widths=(10, 20), beta1_exponent=400.0), ValueError,
     "beta1_exponent=400.0"),
    (lambda: ph.slope(1.0, 0.0, widths=(10, 20), tol=-1.0), ValueError, "tol"),
    (lambda: ph.slope(1.0, 0.0, widths=(10, 20), max_steps=10 ** 12), ValueError, "max_steps"),
    (lambda: ph.slope(1.0, 0.0, widths=(10, 20), workers=0), ValueError, "workers"),
    (lambda: ph.slope(1.0, 0.0, widths=(10, 10 ** 12)), ValueError, "m=1000000000000.*memory"),
    (lambda: ph.slope(-150.0, 0.0, widths=(10, 20), seeds=(0,)), ValueError,
     r"gamma=-150.0.*rounding error.*\(seed=0; 2 of 2 runs refused\)"),
    (lambda: ph.diagram([0.5, 1000.0], [0.0], widths=(10, 20)), ValueError, "gamma=1000.0"),
    (lambda: ph.diagram([0.5], [0.0], widths=(10, 20), asi=1), TypeError, "asi"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ----------------------------------------------------------------------------------------------
# condensation index (ours)
# ----------------------------------------------------------------------------------------------
def test_condensation_index_extremes():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 2.0, 50)
    W = np.outer(rng.uniform(0.1, 3.0, 50), [np.cos(0.3), np.sin(0.3)])   # one orientation
    assert ph.condensation_index(a, W) == pytest.approx(1.0, abs=1e-12)
    ang = -math.pi + (np.arange(64) + 0.5) * 2 * math.pi / 64             # one per bin
    W = np.stack([np.cos(ang), np.sin(ang)], 1)
    assert ph.condensation_index(np.ones(64), W) == pytest.approx(0.0, abs=1e-12)
    A, o = ph.neuron_features(np.array([-2.0]), np.array([[0.0, 3.0]]))
    assert A[0] == 6.0 and o[0] == pytest.approx(math.pi / 2)


def test_condensation_index_at_initialisation_matches_chi_square():
    """Isotropic Gaussian neurons: orientations uniform and independent of A, so the weighted
    histogram's KL to uniform is chi^2_{B-1} / (2 N_eff), N_eff = (sum A)^2 / sum A^2:
    E[2 N_eff log(B) C / (B - 1)] -> 1."""
    B, vals = 32, []
    for seed in range(40):
        a, W = ph.initial_parameters(4000, 1, seed)
        A, _ = ph.neuron_features(a, W)
        neff = A.sum() ** 2 / np.sum(A ** 2)
        vals.append(2 * neff * math.log(B) * ph.condensation_index(a, W, bins=B) / (B - 1))
    vals = np.array(vals)
    se = vals.std(ddof=1) / math.sqrt(len(vals))
    assert abs(vals.mean() - 1.0) < 4 * se + 0.05   # + O(1/N_eff) bias of the chi^2 limit


def test_condensation_index_separates_regimes():
    idx = {}
    for g in (0.5, 1.75):
        r = ph.train(1000, g, 0.0, seed=0)
        idx[g] = (ph.condensation_index(r.a0, r.W0), ph.condensation_index(r.a, r.W))
    # linear: RD ~ 1e-2, the histogram barely changes; condensed: amplitude collapses
    assert abs(idx[0.5][1] - idx[0.5][0]) < 0.01
    assert idx[1.75][1] > 0.5 > 10 * idx[1.75][0]


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------
def test_phase_diagram_figure():
    import matplotlib.figure
    import limits.plots as lp
    fig = lp.phase_diagram()
    assert isinstance(fig, matplotlib.figure.Figure)
    labels = [t.get_text() for ax in fig.axes for t in ax.texts]
    for name in ("LeCun", "NTK", "mean-field", "Xavier"):
        assert any(name in s for s in labels), labels


# ----------------------------------------------------------------------------------------------
# published numbers (P1 Fig. 3, 4; training.md §1.5), full widths: slow
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("gamma,published", [(0.5, -0.506), (1.0, 0.007), (1.75, 0.372),
                                             (0.75, -0.25), (1.25, 0.16), (1.5, 0.27)])
def test_published_slopes(gamma, published):
    """Printed in P1 Fig. 3 (0.5, 1, 1.75) and read off Fig. 3(d) (0.75, 1.25, 1.5)."""
    s = ph.slope(gamma, 0.0, widths=ph.DEFAULT_WIDTHS, seeds=(0, 1, 2))
    assert abs(s.value - published) <= 0.1, s


@pytest.mark.slow
@pytest.mark.parametrize("gamma_prime,published", [(0.0, 1.04), (0.2, 1.24)])
def test_published_zero_crossings(gamma_prime, published):
    g = np.round(np.arange(0.8, 1.51, 0.1), 2)
    D = ph.diagram(g, [gamma_prime], seeds=(0,), progress=False)
    assert not D.failures
    assert abs(D.crossings[0] - published) <= 0.1, (D.slope, D.crossings)


@pytest.mark.slow
def test_sign_matches_regime_away_from_boundary():
    """P1 Fig. 4 grid: sign(S_w) is the predicted regime wherever the point is >= 0.15 from
    the critical line."""
    g = np.round(np.arange(0.6, 1.41, 0.1), 2)
    gp = np.round(np.arange(-0.4, 0.41, 0.1), 2)
    D = ph.diagram(g, gp, seeds=(0,), progress=False)
    assert not D.failures
    G, GP = np.meshgrid(g, gp)
    far = np.abs(ph.boundary_distance(G, GP)) >= 0.15
    pred = np.where(ph.regime(G, GP) == "condensed", 1.0, -1.0)
    assert far.sum() > 30
    assert np.all(np.sign(D.slope[far]) == pred[far]), D.slope


@pytest.mark.slow
def test_sign_matches_regime_on_user_data_in_10d():
    """The regimes are data-independent (P1 Thm 6, 8; Fig. 5 for MNIST): on random 10-d data
    the sign of S_w at points far from the boundary is the predicted one."""
    rng = np.random.default_rng(0)
    X, y = rng.uniform(0, 1, (20, 10)), rng.uniform(0, 1, 20)
    for g, gp in ((0.6, 0.0), (1.4, -0.3), (1.0, 0.6)):
        assert abs(ph.boundary_distance(g, gp)) >= 0.15
        s = ph.slope(g, gp, widths=(500, 1000, 2000, 4000), seeds=(0, 1), X=X, y=y)
        expected = 1.0 if ph.regime(g, gp) == "condensed" else -1.0
        assert np.sign(s.value) == expected, s
