"""Validation checks of the resnet_scaling capability (registered with ``limits.validate.check``).

Expected values: the trainer against an independent NumPy forward pass, finite differences and
the Adam recurrence; the statistics against sequences with a known answer (smooth: the input beta
and H1; random walk: beta = 1/2 and H2; i.i.d.: neither); the regimes of training.md §2.5 (P2,
provisional): tanh + shared delta on the ODE data is H1 with beta in [0, 1/2), ReLU + per-layer
delta is H2 with beta = 1/2 +- 0.15; on the digits stand-in for MNIST, tanh + shared H1 and
ReLU + per-layer delta H2 with beta = 0.4 +- 0.15.
"""
import math

import numpy as np

from ._registry import Result, check  # noqa: F401

# P2-code DEFAULT_PARAMS (training.md §2.2): Adam lr 1e-3, <= 200 epochs, epsilon 1e-3; batch 32
# (P2's 50 does not divide 1024); init 'xavier-depth' with the example's initial_sd 0.01
REGIME_SETTINGS = dict(optimizer="adam", lr=1e-3, max_epochs=200, epsilon=1e-3, batch_size=32,
                       init="xavier-depth", initial_sd=0.01, patience=5)
# Sensitivity of relu + multi (ODE data, 3 seeds, all runs fitted) to the plateau patience,
# measured 2026-12-01 with these settings otherwise (seed mean +- stderr):
#   patience        5 (P2)        10            20            50            200
#   depths <= 2116  0.764+-0.040  0.685+-0.042  0.517+-0.012  0.145+-0.012  0.050+-0.006
#   depths <= 284   0.607+-0.060  0.625+-0.043  0.643+-0.027  0.659+-0.014  0.673+-0.010
# Deep nets that stop on the plateau rule reach loss ~1.6e-3 (near epsilon) with max norms
# 5e-3..3e-2; the deep nets that go on to epsilon grow them to 1..2, which lowers beta:
# trained to epsilon (patience >= 50: 28 of 36 runs) beta is about 0.1.  The verdict is "sde"
# in 29 of these 30 studies ("neither" once, patience 200).  So the published beta ~ 0.5
# (UNVERIFIED) is matched only near patience 20; the check keeps P2-code's patience 5 rather
# than the value that happens to pass (see issue 7's note).
# training.md §2.5 (provisional): (verdict, beta interval)
EXPECTED = {("tanh", "shared"): ("ode", (0.0, 0.5)), ("relu", "multi"): ("sde", (0.35, 0.65))}


# MNIST rows of training.md §2.5 (provisional), on our stand-in (scikit-learn digits, d = 25):
# tanh + shared "H1 (presumed)", beta not recoverable; relu + multi H2 with beta ~ 0.4 (+- 0.15)
EXPECTED_DIGITS = {("tanh", "shared"): ("ode", (0.0, 1.0)),
                   ("relu", "multi"): ("sde", (0.25, 0.55))}


def regime_study(activation, delta_type, depths, seed=0, executor=None, store=None,
                 data="ode"):
    """The regime study of training.md §2.5 (ODE data, or the digits stand-in for MNIST) with
    :data:`REGIME_SETTINGS`."""
    from limits import resnet_scaling as rs
    return rs.study(depths, data=data, activation=activation, delta_type=delta_type, seed=seed,
                    executor=executor, store=store, **REGIME_SETTINGS)


def _np_forward(A, b, delta, X, act, dtype):
    sig = {"identity": lambda z: z, "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0)}[act]
    h = X.copy()
    for k in range(A.shape[0]):
        s = 1.0 if dtype == "none" else abs(delta[0]) if dtype == "shared" else delta[k]
        h = h + s * sig(h @ A[k].T + b[k])
    return h


@check("resnet_scaling: forward vs NumPy, gradients vs finite differences")
def _gradients(ctx):
    from limits import resnet_scaling as rs
    rng = np.random.default_rng(0)
    L, d, n = 6, 4, 8
    worst_f, worst_g = 0.0, 0.0
    for act in ("identity", "tanh", "relu"):
        for dt in ("none", "shared", "multi"):
            A, b = rng.standard_normal((L, d, d)) * 0.5, rng.standard_normal((L, d)) * 0.5
            delta = {"none": np.zeros(0), "shared": rng.standard_normal(1),
                     "multi": rng.standard_normal(L)}[dt]
            X, Y = rng.standard_normal((n, d)), rng.standard_normal((n, d))

            def f():
                return np.mean((_np_forward(A, b, delta, X, act, dt) - Y) ** 2)

            loss, gA, gb, gd = rs.gradient(A, b, delta, X, Y, activation=act, delta_type=dt)
            worst_f = max(worst_f, abs(loss - f()) / f())
            for arr, g in ((A, gA), (b, gb), (delta, gd)):
                flat, fd = arr.reshape(-1), np.zeros(arr.size)
                for q in range(arr.size):
                    o = flat[q]
                    flat[q] = o + 1e-6
                    fp = f()
                    flat[q] = o - 1e-6
                    fd[q] = (fp - f()) / 2e-6
                    flat[q] = o
                if arr.size:
                    worst_g = max(worst_g, np.max(np.abs(fd - g.reshape(-1)))
                                  / np.max(np.abs(fd)))
    return [Result("loss of the numba forward vs NumPy (3 activations x 3 delta types)", "equal",
                   f"max rel diff {worst_f:.1e}", "1e-13", worst_f <= 1e-13),
            Result("backward pass vs central differences (h = 1e-6)", "equal",
                   f"max rel err {worst_g:.1e}", "1e-6", worst_g <= 1e-6)]


@check("resnet_scaling: Adam steps vs the hand-written recurrence")
def _adam(ctx):
    from limits import resnet_scaling as rs
    rng = np.random.default_rng(1)
    X = rng.standard_normal((16, 4))
    data = rs.Dataset(X, np.tanh(X[:, ::-1]), X[:0], X[:0], "check")
    lr, b1, b2, eps = 3e-3, 0.9, 0.999, 1e-8
    r = rs.train(5, data, activation="relu", delta_type="multi", init="xavier", initial_sd=0.5,
                 lr=lr, batch_size=16, max_epochs=3, epsilon=0.0, patience=10, seed=2)
    p = [r.A0.copy(), r.b0.copy(), r.delta0.copy()]
    m, v = [np.zeros_like(x) for x in p], [np.zeros_like(x) for x in p]
    for t in range(1, 4):
        _, *g = rs.gradient(*p, X, data.Y, activation="relu", delta_type="multi")
        for q in range(3):
            m[q] = b1 * m[q] + (1 - b1) * g[q]
            v[q] = b2 * v[q] + (1 - b2) * g[q] ** 2
            p[q] = p[q] - lr * (m[q] / (1 - b1 ** t)) / (np.sqrt(v[q] / (1 - b2 ** t)) + eps)
    err = max(float(np.max(np.abs(a - e)) / np.max(np.abs(e)))
              for a, e in zip((r.A, r.b, r.delta), p))
    return [Result("3 full-batch Adam steps (relu, per-layer delta) vs torch's recurrence",
                   "equal", f"max rel diff {err:.1e}", "1e-10", err <= 1e-10)]


def _smooth(L, beta, M):
    return L ** -beta * M[None] / (1.0 + np.arange(L) / L)[:, None, None]


@check("resnet_scaling: statistics on sequences with a known answer")
def _known(ctx):
    from limits import resnet_scaling as rs
    from limits.plots import hypothesis_diagnostic
    depths = rs.depth_grid(1.2, 10, 3000)
    rng = np.random.default_rng(3)
    M = rng.standard_normal((4, 4))
    out = []
    for beta in (0.0, 0.3, 0.6):
        e = rs.scaling_exponents({L: _smooth(L, beta, M) for L in depths})
        ok = abs(e.beta - beta) < 1e-12 and e.verdict == "ode"
        out.append(Result(f"smooth A_k = L^-{beta} M/(1 + k/L): beta and verdict", f"{beta}, ode",
                          f"{e.beta:.12f}, {e.verdict} (Increment slope "
                          f"{e.increment_slope:.3f})", "1e-12; exact verdict", ok))
    rw = rs.scaling_exponents({L: rng.standard_normal((L, 4, 4)) / math.sqrt(L)
                               for L in depths})
    out.append(Result("random-walk increments N(0, 1/L): beta and verdict",
                      "1/2 (less the sqrt(log L) of a max), sde",
                      f"{rw.beta:.3f} +- {rw.beta_stderr:.3f}, {rw.verdict}",
                      "verdict exact", rw.verdict == "sde"))
    out[-1].figure = ctx.save(hypothesis_diagnostic(rw), "resnet_scaling_h2_synthetic.png")
    iid = rs.scaling_exponents({L: rng.standard_normal((L, 4, 4)) for L in depths})
    out.append(Result("i.i.d. N(0, 1) weights (beta = 0): verdict", "neither",
                      f"{iid.verdict} (beta {iid.beta:.3f})", "exact", iid.verdict == "neither"))
    grid = rs.depth_grid(1.2, 3, 10_000)
    out.append(Result("depth grid base 1.2, 3..1e4 (training.md §2.2)", "44 depths, 3 .. 9100",
                      f"{len(grid)} depths, {grid[0]} .. {grid[-1]}", "exact",
                      len(grid) == 44 and grid[0] == 3 and grid[-1] == 9100))
    return out


def _regimes(ctx, max_depth, data="ode", seeds=(0,)):
    """One study per seed; the verdict must hold for every seed and the seed-averaged beta
    (standard error from the scatter between seeds, which the single-fit stderr understates)
    must lie in the expected band."""
    from limits import resnet_scaling as rs
    from limits import plots
    depths = rs.depth_grid(1.2, 3, max_depth)
    out = []
    expected = EXPECTED if data == "ode" else EXPECTED_DIGITS
    for (act, dt), (verdict, (lo, hi)) in expected.items():
        studies = [regime_study(act, dt, depths, data=data, seed=s) for s in seeds]
        st = studies[0]
        e = st.weights
        fits = [x.weights for x in studies]
        ok = (all(f is not None and f.verdict == verdict for f in fits)
              and not any(x.failures for x in studies))
        if ok:
            betas = np.array([f.beta for f in fits])
            beta = betas.mean()
            ok = lo <= beta < hi
        meas = "no fit" if e is None else f"{e.verdict}, beta {e.beta:.3f} +- {e.beta_stderr:.3f}"
        if len(seeds) > 1 and all(f is not None for f in fits):
            b = np.array([f.beta for f in fits])
            meas = (f"verdicts {', '.join(f.verdict for f in fits)} (seeds {list(seeds)}); "
                    f"beta {b.mean():.3f} +- {b.std(ddof=1) / math.sqrt(len(b)):.3f} over seeds "
                    f"({', '.join(f'{v:.3f}' for v in b)}); seed {seeds[0]}: " + meas)
        if e is not None and not math.isnan(e.alpha):
            meas += f", alpha {e.alpha:.3f}"
        if e is not None:
            meas += (f"; Increment slope {e.increment_slope:.2f} +- {e.increment_stderr:.2f}, "
                     f"RootSSQ slope {e.root_ssq_slope:.2f}")
            stops = [r.stop for r in st.results.values()]
            meas += "; stops " + ", ".join(f"{k} {stops.count(k)}" for k in sorted(set(stops)))
            ds = rs.ode_data() if data == "ode" else rs.digits_data()
            den = rs.denoised_losses(st, e.beta, ds.X, ds.Y,
                                     n_times=min(500, max(20, depths[-1])))
            ratio = np.median([b / a for a, b in den.values()])
            meas += f"; denoised/original train MSE (median over depths) {ratio:.2g}"
        r = Result(f"{act} + {dt} delta, {data} data, depths 3..{depths[-1]} (training.md §2.5)",
                   f"{verdict}, beta in [{lo}, {hi})", meas + (f"; failures {st.failures}"
                                                             if st.failures else ""),
                   "verdict exact (tol 0.2 + 3 se)", ok)
        if e is not None:
            tag = f"{act}_{dt}_{data}_{max_depth}"
            ctx.save(plots.max_norm_vs_depth(e), f"resnet_scaling_maxnorm_{tag}.png")
            ctx.save(plots.weight_paths(st.results), f"resnet_scaling_paths_{tag}.png")
            ctx.save(plots.detrended_cumsums(st.results, beta=e.beta),
                     f"resnet_scaling_cumsum_{tag}.png")
            r.figure = ctx.save(plots.hypothesis_diagnostic(e),
                                f"resnet_scaling_hypothesis_{tag}.png")
        out.append(r)
    return out


@check("resnet_scaling: regimes on depths <= 300")
def _regimes_quick(ctx):
    return _regimes(ctx, 300, seeds=(0, 1, 2))


@check("resnet_scaling: regimes on depths <= 2116", full_only=True)
def _regimes_full(ctx):
    # depth_grid(1.2, 3, 2116) stops at 1763 (int(log 2116 / log 1.2) = 41): ask for 2500
    return _regimes(ctx, 2500, seeds=(0, 1, 2))


@check("resnet_scaling: regimes on the digits stand-in for MNIST, depths <= 1000",
       full_only=True)
def _regimes_digits(ctx):
    import importlib.util
    if importlib.util.find_spec("sklearn") is None:
        return [Result("regimes on digits (training.md §2.5, MNIST rows)", "ode; sde",
                       "not run: scikit-learn missing (pip install nn-limits[data])", "-",
                       False)]
    return _regimes(ctx, 1000, data="digits")
