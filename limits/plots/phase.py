"""Figures of the phase capability (two-layer ReLU phase diagram, theory/training.md §1),
re-exported by ``limits.plots``.  Every function returns a ``Figure`` and never calls ``show()``."""
import math

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["phase_diagram", "slope_heatmap", "condensation_picture", "rd_vs_width"]


def phase_diagram(gamma_range=(0.0, 2.5), gamma_prime_range=(-1.0, 1.5), initialisations=None,
                  ax=None):
    """The theoretical phase diagram of two-layer ReLU networks (P1 Fig. 1, §4.1.1).

    Linear regime ``gamma < 1 + max(0, gamma')``, condensed regime
    ``gamma > 1 + max(0, gamma')``, critical line in between; the common initialisations of
    P1 Table 1 as points, the E et al. (2020) family as the line ``gamma' = gamma``.

    Parameters
    ----------
    gamma_range, gamma_prime_range : (float, float)
        Axes: gamma horizontal, gamma' vertical (as in P1 Fig. 1).
    initialisations : dict name -> limits.phase.Initialisation, optional
        Default ``limits.phase.INITIALISATIONS``.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from limits import phase as ph

    inits = ph.INITIALISATIONS if initialisations is None else initialisations
    fig, ax = _axes(ax, (6, 5))
    g0, g1 = gamma_range
    p0, p1 = gamma_prime_range
    gp = np.linspace(p0, p1, 400)
    gb = ph.boundary(gp)
    ax.fill_betweenx(gp, g0, np.clip(gb, g0, g1), color="tab:blue", alpha=0.18)
    ax.fill_betweenx(gp, np.clip(gb, g0, g1), g1, color="tab:red", alpha=0.18)
    ax.plot(gb, gp, "k-", lw=2.5, label="critical: $\\gamma = 1 + \\max(0, \\gamma')$")
    ax.annotate("critical", (1.0, p0 + 0.22 * (p1 - p0)), xytext=(6, 0),
                textcoords="offset points", rotation=90)
    ax.text(g0 + 0.05 * (g1 - g0), p0 + 0.08 * (p1 - p0), "linear", fontsize=13,
            color="tab:blue")
    ax.text(g0 + 0.75 * (g1 - g0), p0 + 0.08 * (p1 - p0), "condensed", fontsize=13,
            color="tab:red")
    offsets = {}
    for name, init in inits.items():
        if init.line:
            t = np.linspace(max(g0, p0), min(g1, p1), 2)
            ax.plot(t, t, "--", color="tab:green", lw=1.5)
            mid = 0.5 * (t[0] + t[-1])
            ax.annotate(f"{name} line ($\\gamma' = \\gamma$)", (mid, mid), xytext=(10, -6),
                        textcoords="offset points", color="tab:green", rotation=35)
            continue
        key = (init.gamma, init.gamma_prime)
        k = offsets.get(key, 0)
        offsets[key] = k + 1
        ax.plot(*key, "o", color="k", ms=6)
        ax.annotate(name, key, xytext=(6, 6 + 12 * k), textcoords="offset points")
    ax.set(xlim=(g0, g1), ylim=(p0, p1), xlabel="$\\gamma$", ylabel="$\\gamma'$",
           title="two-layer ReLU NN: phase diagram (Luo et al. 2021)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def slope_heatmap(diagram, ax=None, clip=0.5):
    """The empirical phase diagram: S_w over (gamma, gamma') (P1 Fig. 4).

    Colour = S_w clipped to [-clip, clip], zero crossings per gamma' as stars, the theoretical
    boundary as a line; failed points are blank.  A diagram with a single gamma' row is drawn as
    S_w against gamma instead (with standard-error bars, the measured zero crossing and the
    theoretical boundary ``gamma = 1 + max(0, gamma')``).

    Parameters
    ----------
    diagram : limits.phase.Diagram
    ax : matplotlib Axes, optional
    clip : float, default 0.5

    Returns
    -------
    matplotlib.figure.Figure
    """
    from limits import phase as ph

    g, gp, S = diagram.gammas, diagram.gamma_primes, diagram.slope
    if len(gp) == 1:        # one gamma' row: a heat map would be a thin band; draw S_w(gamma)
        return _slope_row(diagram, ax)
    fig, ax = _axes(ax, (6.5, 5))
    ge, pe = _edges(g), _edges(gp)
    mesh = ax.pcolormesh(ge, pe, np.clip(S, -clip, clip), cmap="RdBu_r", vmin=-clip,
                         vmax=clip, shading="flat")
    fig.colorbar(mesh, ax=ax, label="$S_w$ (clipped)")
    ok = np.isfinite(diagram.crossings)
    ax.plot(diagram.crossings[ok], gp[ok], "*", color="gold", mec="k", ms=14,
            label="zero crossing of $S_w$")
    line = np.linspace(pe[0], pe[-1], 200)
    ax.plot(ph.boundary(line), line, "k-", lw=2, label="theory $1 + \\max(0, \\gamma')$")
    ax.set(xlim=(ge[0], ge[-1]), ylim=(pe[0], pe[-1]), xlabel="$\\gamma$", ylabel="$\\gamma'$",
           title=f"$S_w$, widths {min(diagram.widths)}..{max(diagram.widths)}, "
                 f"{len(diagram.seeds)} seed(s)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def _slope_row(diagram, ax):
    """S_w against gamma for a one-row diagram (the body of ``slope_heatmap`` in that case)."""
    from limits import phase as ph

    g, gp = np.asarray(diagram.gammas, float), float(diagram.gamma_primes[0])
    S, SE = np.asarray(diagram.slope, float)[0], np.asarray(diagram.stderr, float)[0]
    fig, ax = _axes(ax, (6.5, 4.5))
    ax.errorbar(g, S, yerr=SE, fmt="o-", capsize=3, label="$S_w$ (measured, $\\pm$ 1 se)")
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.axvline(float(ph.boundary(gp)), color="k", lw=2,
               label="theory $\\gamma = 1 + \\max(0, \\gamma')$")
    c = float(diagram.crossings[0])
    if np.isfinite(c):
        ax.plot([c], [0.0], "*", color="gold", mec="k", ms=14, label="zero crossing of $S_w$")
    ax.set(xlabel="$\\gamma$", ylabel="$S_w$",
           title=f"$S_w$ at $\\gamma' = {gp:g}$, widths {min(diagram.widths)}.."
                 f"{max(diagram.widths)}, {len(diagram.seeds)} seed(s)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def condensation_picture(points=((0.5, 0.0), (1.0, 0.0), (1.75, 0.0)), m=1000, seed=0,
                         results=None):
    """Amplitude ``A_k = |a_k| ||w_k||`` against orientation ``atan2(b_k, w_k)`` of every neuron,
    initial (cyan) and final (red), for a linear, a critical and a condensed point (P1 Fig. 2
    lower row, 1-d data; for d > 1 the orientation is the projection on ones/sqrt(d+1), P1
    §4.2).  Each panel gives our condensation index (not P1's).

    Parameters
    ----------
    points : sequence of (gamma, gamma')
    m, seed : int
        Width and seed of the runs (:func:`limits.phase.train`).
    results : sequence of limits.phase.TrainResult, optional
        Use these runs instead of training.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from limits import phase as ph

    if results is None:
        results = [ph.train(m, g, gp, seed=seed).check() for g, gp in points]
    else:
        points = [tuple(v + 0.0 for v in ph.gammas_of(r.alpha, r.beta_1, r.beta_2, r.m))
                  for r in results]
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    for ax, (g, gp), r in zip(axes[0], points, results):
        g, gp = g + 0.0, gp + 0.0                  # no "-0" in titles
        A0, o0 = ph.neuron_features(r.a0, r.W0)
        A1, o1 = ph.neuron_features(r.a, r.W)
        scale = max(A0.max(), A1.max())
        ax.plot(o0, A0 / scale, ".", color="c", ms=2, label="initial", zorder=3)
        ax.plot(o1, A1 / scale, ".", color="r", ms=2, alpha=0.6, label="final", zorder=2)
        c0, c1 = ph.condensation_index(r.a0, r.W0), ph.condensation_index(r.a, r.W)
        one_d = r.W.shape[1] == 2
        xlabel = "orientation atan2(b, w)" if one_d else "orientation w.p/|w|, p = 1/sqrt(d+1)"
        ax.set(xlabel=xlabel,
               ylabel="A / max A", xlim=(-math.pi, math.pi) if one_d else (-1, 1),
               title=f"$\\gamma$={g:.3g}, $\\gamma'$={gp:.3g} ({ph.regime(g, gp, tol=0.01)})\n"
                     f"RD={r.rd:.3g}; our index {c0:.2f} -> {c1:.2f}")
        ax.legend(fontsize=7, markerscale=4)
    fig.tight_layout()
    return fig


def rd_vs_width(slopes, ax=None):
    """``log RD(theta_w*)`` against ``log m`` with the fitted lines and S_w (P1 Fig. 3(a-c)).

    Parameters
    ----------
    slopes : sequence of limits.phase.Slope
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _axes(ax, (5.5, 4.5))
    for s in slopes:
        m = np.asarray(s.widths, dtype=float)
        lr = np.log(s.rd)
        mean = lr.mean(0)
        b = s.value
        a = mean.mean() - b * np.log(m).mean()
        (h,) = ax.plot(m, np.exp(mean), "o")
        ax.plot(m, np.exp(a + b * np.log(m)), "-", color=h.get_color(),
                label=f"$\\gamma$={s.gamma:g}, $\\gamma'$={s.gamma_prime:g}: "
                      f"$S_w$ = {b:.3f} ± {s.stderr:.3f}")
    ax.set(xscale="log", yscale="log", xlabel="width m", ylabel="RD($\\theta_w^*$)",
           title="relative distance of input weights vs width")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _axes(ax, size):
    if ax is None:
        fig, ax = plt.subplots(figsize=size)
        return fig, ax
    return ax.figure, ax


def _edges(v):
    v = np.asarray(v, dtype=float)
    if v.size == 1:
        return np.array([v[0] - 0.05, v[0] + 0.05])
    mid = 0.5 * (v[1:] + v[:-1])
    return np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
