"""Validation checks of the phase capability (registered with ``limits.validate.check``).

Expected values: P1 (Luo et al. 2021) numbers as recorded in theory/training.md §1.3-1.5, the
theory (boundary, conservation law, rescaling invariance) and an independent NumPy GD.
"""
import math

import numpy as np

from ._registry import Result, check  # noqa: F401

# P1 Fig. 3 (printed slopes) and Fig. 4 (stars, read off): training.md §1.5
_PUBLISHED_SLOPES = {0.5: -0.506, 1.0: 0.007, 1.75: 0.372}
_FIG3D_SLOPES = {0.75: -0.25, 1.25: 0.16, 1.5: 0.27}          # read off P1 Fig. 3(d)
# RD(theta_w*) at m = 1000 and 40000 read off P1 Fig. 3(a-c) (log axes): training.md §1.5
_FIG3_RD = {0.5: (9e-3, 1.3e-3), 1.0: (0.27, 0.28), 1.75: (8.0, 31.0)}
_RD_FACTOR = 10 ** 0.1          # reading a log axis to +-0.1 decade
_PUBLISHED_CROSSINGS = {-0.4: 1.00, -0.3: 1.00, -0.2: 1.00, -0.1: 1.00, 0.0: 1.04, 0.1: 1.13,
                        0.2: 1.24, 0.3: 1.34, 0.4: 1.39}
_TOL = 0.1          # training.md §3: finite m, seeds and optimiser


@check("phase: regimes of the Table 1 initialisations")
def _regimes(ctx):
    from limits import phase as ph
    from limits.plots import phase_diagram

    expected = {"LeCun": "linear", "He": "linear", "NTK": "linear", "Xavier": "critical",
                "mean-field": "critical"}
    got = {n: ph.regime(ph.INITIALISATIONS[n].gamma, ph.INITIALISATIONS[n].gamma_prime)
           for n in expected}
    t = np.linspace(-1, 4, 51)
    line = bool(np.all(ph.regime(t, t) == "linear"))
    ok = got == expected and line
    r = Result("regime() of LeCun/He/NTK/Xavier/mean-field and the E et al. line (P1 Table 1)",
               "LeCun, He, NTK linear; Xavier, mean-field critical; E et al. line linear",
               ", ".join(f"{n} {v}" for n, v in got.items()) + f"; E line linear: {line}",
               "exact", ok)
    r.figure = ctx.save(phase_diagram(), "phase_diagram_theory.png")
    return [r]


def _numpy_gd(a, W, X, y, alpha, steps, lr):
    Xa = np.hstack([X, np.ones((len(X), 1))])
    n, c = len(y), 1.0 / alpha
    for _ in range(steps):
        Z = W @ Xa.T
        H = np.maximum(Z, 0.0)
        e = c * a @ H - y
        ga = c / n * H @ e
        gW = c / n * a[:, None] * (((Z > 0) * e) @ Xa)
        a, W = a - lr * ga, W - lr * gW
    return a, W


@check("phase: GD trainer vs NumPy, conservation law, rescaling invariance")
def _trainer(ctx):
    from limits import phase as ph

    out = []
    X, y = ph.one_d_data()
    m, alpha, steps = 200, 200.0 ** 1.2, 60
    lr = 0.2 * alpha ** 2 / m
    ra = ph.train(m, alpha=alpha, beta_1=1.0, beta_2=1.0, seed=3, lr=lr, tol=1e-300,
                  max_steps=steps, max_restarts=0, asi=False)
    a_ref, W_ref = _numpy_gd(ra.a0, ra.W0, X, y, alpha, steps, lr)
    err = max(np.max(np.abs(ra.a - a_ref)) / np.max(np.abs(a_ref)),
              np.max(np.abs(ra.W - W_ref)) / np.max(np.abs(W_ref)))
    out.append(Result("numba GD vs plain NumPy GD, 60 steps, m = 200 (no ASI)", "equal",
                      f"max rel diff {err:.1e}", "1e-10", err <= 1e-10))
    # conservation a_k^2 - |w_k|^2 (P1 Prop. 27): drift O(lr) at fixed flow time
    drift = []
    base = 0.02 * 200.0 ** 2 / m
    for k in range(3):
        rr = ph.train(m, alpha=200.0, beta_1=1.0, beta_2=1.0, seed=2, lr=base / 2 ** k,
                      tol=1e-300, max_steps=400 * 2 ** k, max_restarts=0)
        c0 = rr.a0 ** 2 - np.sum(rr.W0 ** 2, 1)
        c1 = rr.a ** 2 - np.sum(rr.W ** 2, 1)
        drift.append(float(np.max(np.abs(c1 - c0))))
    ratios = [drift[1] / drift[0], drift[2] / drift[1]]
    out.append(Result("a_k^2 - ||w_k||^2 under GD: drift halves with lr at fixed flow time "
                      "(P1 Prop. 27; O(lr) per unit time)", "ratio 0.5",
                      f"drifts {drift[0]:.2e}, {drift[1]:.2e}, {drift[2]:.2e}; ratios "
                      f"{ratios[0]:.3f}, {ratios[1]:.3f}", "0.5 +- 0.1",
                      all(abs(q - 0.5) <= 0.1 for q in ratios)))
    rds = [ph.train(400, 1.4, 0.1, beta_1=400.0 ** -e, seed=7).check().rd for e in (0, .5, 1)]
    spread = max(rds) / min(rds) - 1
    out.append(Result("RD at the same (gamma, gamma') = (1.4, 0.1) for beta_1 = 1, m^-1/2, m^-1, "
                      "same seed (P1 Eq. (7): the same run)", "equal",
                      f"RD {rds[0]:.6g}; rel spread {spread:.1e}", "1e-7", spread <= 1e-7))
    return out


@check("phase: RD converged in the step size")
def _step_size(ctx):
    """training.md §1.5: a fixed stability-limit step is wrong for gamma > 1; RD must not move
    by more than 5 % when the step shrinks.  Quick mode: m = 1000; full: m = 40000 too."""
    from limits import phase as ph

    out = []
    for g, gp in ((1.75, 0.0), (1.3, -0.3), (1.0, 0.0)):
        for m in ((1000,) if ctx.quick else (1000, 40000)):
            rd1, rd4, rel = ph.step_convergence(m, g, gp, factor=4.0)
            out.append(Result(f"RD at ({g}, {gp}), m = {m}: default steps vs F/4, delta/4",
                              "same RD", f"{rd1:.4g} vs {rd4:.4g} (rel {rel:.1e})", "5 %",
                              rel <= 0.05))
    return out


@check("phase: condensation picture and our condensation index")
def _condensation(ctx):
    from limits import phase as ph
    from limits.plots import condensation_picture

    pts = ((0.5, 0.0), (1.0, 0.0), (1.75, 0.0))
    res = [ph.train(1000, g, gp, seed=0).check() for g, gp in pts]
    idx = [(ph.condensation_index(r.a0, r.W0), ph.condensation_index(r.a, r.W)) for r in res]
    ok = abs(idx[0][1] - idx[0][0]) < 0.01 and idx[2][1] > 0.5 and idx[0][1] < idx[1][1] < \
        idx[2][1]
    r = Result("our condensation index (entropy of A-weighted orientation histogram; not P1's), "
               "m = 1000, gamma = 0.5 / 1 / 1.75", "linear ~ initial; increasing; condensed > 0.5",
               "; ".join(f"{g}: {a:.3f} -> {b:.3f}" for (g, _), (a, b) in zip(pts, idx)),
               "qualitative (P1 §3.1)", ok)
    r.figure = ctx.save(condensation_picture(results=res), "phase_condensation.png")
    return [r]


@check("phase: S_w at full widths vs P1 Fig. 3", full_only=True)
def _published_slopes(ctx):
    from limits import phase as ph
    from limits.plots import rd_vs_width

    out, slopes = [], []
    for g, pub in _PUBLISHED_SLOPES.items():
        s = ph.slope(g, 0.0, seeds=(0, 1, 2))
        slopes.append(s)
        out.append(Result(f"S_w({g}, 0), m = 1000..40000, 3 seeds (P1 Fig. 3)", f"{pub}",
                          f"{s.value:.3f} +- {s.stderr:.3f}", f"+-{_TOL}",
                          abs(s.value - pub) <= _TOL))
        geo = np.exp(np.log(s.rd).mean(0))                   # geometric mean over seeds
        got = (geo[0], geo[-1])
        ratio = max(max(a / b, b / a) for a, b in zip(got, _FIG3_RD[g]))
        out.append(Result(f"RD({g}, 0) at m = 1000 and 40000 (P1 Fig. 3, read off)",
                          "{:.3g}, {:.3g}".format(*_FIG3_RD[g]), "{:.3g}, {:.3g}".format(*got),
                          f"factor {_RD_FACTOR:.3f}", ratio <= _RD_FACTOR))
    out[-1].figure = ctx.save(rd_vs_width(slopes), "phase_rd_vs_width.png")
    for g, pub in _FIG3D_SLOPES.items():
        s = ph.slope(g, 0.0, seeds=(0, 1, 2))
        out.append(Result(f"S_w({g}, 0), m = 1000..40000, 3 seeds (P1 Fig. 3(d), read off)",
                          f"{pub}", f"{s.value:.3f} +- {s.stderr:.3f}", f"+-{_TOL}",
                          abs(s.value - pub) <= _TOL))
    # P1 Fig. 3(d): the same S_w for (beta_1, beta_2) = (1,1), (m^-1/2, m^-1/2), (m^-1, m^-1)
    for g in (0.75, 1.25):
        ss = [ph.slope(g, 0.0, seeds=tuple(range(10 * k, 10 * k + 3)), beta1_exponent=e)
              for k, e in enumerate((0.0, 0.5, 1.0))]
        worst = max(abs(a.value - b.value) / math.hypot(a.stderr, b.stderr)
                    for i, a in enumerate(ss) for b in ss[i + 1:])
        out.append(Result(f"S_w({g}, 0) for beta_1 = 1, m^-1/2, m^-1 (independent seeds; "
                          "P1 Fig. 3(d))", "equal within standard errors",
                          ", ".join(f"{s.value:.3f}+-{s.stderr:.3f}" for s in ss)
                          + f"; max |diff|/se {worst:.2f}", "4 se", worst <= 4))
    return out


@check("phase: empirical diagram vs P1 Fig. 4", full_only=True)
def _diagram(ctx):
    from limits import phase as ph
    from limits.plots import slope_heatmap

    g = np.unique(np.round(np.concatenate([np.arange(0.6, 1.51, 0.1), [0.95, 1.05]]), 2))
    gp = np.round(np.arange(-0.4, 0.41, 0.1), 2) + 0.0
    D = ph.diagram(g, gp, seeds=(0,), progress=False)
    out = [Result("Fig. 4 grid: all runs converged (R_S < 1e-6)", "no failures",
                  f"{len(D.failures)} failures of {D.rd.size}", "0", not D.failures)]
    for b, c in zip(gp, D.crossings):
        pub = _PUBLISHED_CROSSINGS[round(float(b), 1)]
        required = round(float(b), 1) in (0.0, 0.2)
        out.append(Result(f"zero crossing of S_w at gamma' = {b:+.1f}"
                          + (" (issue oracle)" if required else ""),
                          f"{pub} (P1 Fig. 4, read off)", f"{c:.3f}", f"+-{_TOL}",
                          bool(abs(c - pub) <= _TOL)))
    G, GP = np.meshgrid(g, gp)
    far = np.abs(ph.boundary_distance(G, GP)) >= 0.15
    pred = np.where(ph.regime(G, GP) == "condensed", 1.0, -1.0)
    agree = int(np.sum(np.sign(D.slope[far]) == pred[far]))
    out.append(Result("sign(S_w) = predicted regime at grid points >= 0.15 from the boundary",
                      f"{int(far.sum())} of {int(far.sum())}", f"{agree}", "exact",
                      agree == int(far.sum())))
    out[-1].figure = ctx.save(slope_heatmap(D), "phase_heatmap.png")
    return out
