"""Figures of the resnet_scaling capability, re-exported by ``limits.plots``.

Depth scaling of trained ResNet weights (P2, Cohen et al. 2021; theory/training.md §2.3):
max norm against depth, weights against k/L, detrended cumulative sums, and the H1/H2 diagnostic.
"""
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["max_norm_vs_depth", "weight_paths", "detrended_cumsums", "hypothesis_diagnostic",
           "patience_sensitivity"]


def _weights_of(runs):
    """depth -> effective weight array, from a dict of TrainResult / arrays or a Study."""
    from limits import resnet_scaling as rs
    if isinstance(runs, rs.Study):
        runs = runs.results
    if not isinstance(runs, dict):
        runs = {r.depth: r for r in runs}
    out = {}
    for L, r in sorted(runs.items()):
        if isinstance(r, rs.TrainResult):
            if r.diverged:
                continue
            r = r.effective_weights
        a = np.asarray(r, dtype=float)
        if np.all(np.isfinite(a)):
            out[int(L)] = a
    if not out:
        raise ValueError("no finite weights to plot")
    return out


def _pick(depths, depths_shown, n=4):
    if depths_shown is not None:
        miss = [L for L in depths_shown if L not in depths]
        if miss:
            raise ValueError(f"depths {miss} are not among the runs {sorted(depths)}")
        return list(depths_shown)
    ds = sorted(depths)
    idx = np.unique(np.linspace(0, len(ds) - 1, min(n, len(ds))).round().astype(int))
    return [ds[i] for i in idx]


def _entry(a, entry):
    return a[(slice(None),) + tuple(entry)] if a.ndim == 3 else a[:, entry[0]]


def max_norm_vs_depth(exponents):
    """``max_k ||T_k||`` against depth L on log-log axes with the fitted line of slope -beta
    (P2 ``plots_fully_connected``; training.md §2.3), and ``max_k |delta_k|`` (slope -alpha)
    when available.

    Parameters
    ----------
    exponents : limits.resnet_scaling.ScalingExponents

    Returns
    -------
    matplotlib.figure.Figure
    """
    e = exponents
    L = np.asarray(e.depths, float)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    y = e.statistics["maximum"]
    ax.loglog(L, y, "o", ms=4, label=r"$\max_k \|T_k\|_F$")
    c = np.exp(np.mean(np.log(y) + e.beta * np.log(L)))
    ax.loglog(L, c * L ** -e.beta, "-",
              label=fr"slope $-\beta$ = {-e.beta:.2f} $\pm$ {e.beta_stderr:.2f}")
    if "max_delta" in e.statistics:
        yd = e.statistics["max_delta"]
        cd = np.exp(np.mean(np.log(yd) + e.alpha * np.log(L)))
        ax.loglog(L, yd, "s", ms=4, label=r"$\max_k |\delta_k|$")
        ax.loglog(L, cd * L ** -e.alpha, "--",
                  label=fr"slope $-\alpha$ = {-e.alpha:.2f} $\pm$ {e.alpha_stderr:.2f}")
    ax.set(xlabel="depth L", ylabel="max norm",
           title=f"max norm vs depth (verdict: {e.verdict})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def weight_paths(runs, entry=(0, 1), depths=None, beta=0.0):
    """Entry ``T_k[i, j]`` of the effective weights against k/L at several depths, scaled by
    ``L^beta`` (the "does it look like a path" picture of P2; training.md §2.3).

    Parameters
    ----------
    runs : dict depth -> TrainResult or array (L, d, d), or a Study
    entry : (i, j), default (0, 1); (i,) for (L, d) biases
    depths : sequence of int, optional (default: up to 4 spread over the runs)
    beta : float, default 0

    Returns
    -------
    matplotlib.figure.Figure
    """
    w = _weights_of(runs)
    fig, ax = plt.subplots(figsize=(6, 4))
    for L in _pick(w, depths):
        t = np.arange(L) / L
        ax.plot(t, L ** beta * _entry(w[L], entry), lw=0.8, marker="." if L < 60 else None,
                label=f"L = {L}")
    lab = f"T_k[{', '.join(map(str, entry))}]"
    ax.set(xlabel="k / L", ylabel=(f"$L^{{{beta:.2g}}}$ " if beta else "") + lab,
           title="trained weights against k/L")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def detrended_cumsums(runs, beta, entry=(0, 1), depths=None):
    """Cumulative sums ``W_k = L^(beta-1) sum_{j<k} T_j[entry]`` against k/L (left) and the same
    minus its centred moving average with P2's window ``max(3, int(0.1 L))`` (right; the
    ``detrended-cumsum`` statistic of training.md §2.3 is the max norm of the latter).  Under
    H1 the right panel vanishes as L grows; under H2 it is a rough path of order 1 (beta = 1/2).

    Parameters
    ----------
    runs : dict depth -> TrainResult or array, or a Study
    beta : float
    entry : (i, j), default (0, 1)
    depths : sequence of int, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    w = _weights_of(runs)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for n, L in enumerate(_pick(w, depths)):
        color = f"C{n}"
        x = np.concatenate([[0.0], np.cumsum(_entry(w[L], entry))]) * L ** (beta - 1.0)
        t = np.arange(L + 1) / L
        a1.plot(t, x, lw=0.8, color=color, label=f"L = {L}")
        if L >= 10:
            win = max(3, int(0.1 * L))
            C = np.concatenate([[0.0], np.cumsum(x)])
            k = np.arange(1, L)
            lo = np.where(k < win, 0, np.where(k < L - win, k - win, 2 * k - L))
            hi = np.where(k < win, 2 * k, np.where(k < L - win, k + win, L))
            a2.plot(k / L, x[k] - (C[hi] - C[lo]) / (hi - lo), lw=0.8, color=color,
                    label=f"L = {L}")
    a1.set(xlabel="k / L", ylabel=fr"$L^{{\beta-1}}\sum_{{j<k}} T_j$ ($\beta$ = {beta:.2f})",
           title="cumulative sums")
    a2.set(xlabel="k / L", ylabel="minus moving average", title="detrended cumulative sums")
    a1.legend(fontsize=8)
    a2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def hypothesis_diagnostic(exponents):
    """H1/H2 diagnostic (P2's "hypothesis_*" plots; training.md §2.3): ``Increment(beta) =
    L^beta max_k ||T_k - T_{k-1}||`` and ``RootSSQ`` against L on log-log axes with the fitted
    slopes, and reference lines of the predicted slopes (H1: -1 and 1/2 - beta; H2: 0 and 0).

    Parameters
    ----------
    exponents : limits.resnet_scaling.ScalingExponents

    Returns
    -------
    matplotlib.figure.Figure
    """
    e = exponents
    L = np.asarray(e.depths, float)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, slope, se, preds, name in (
            (a1, "increment", e.increment_slope, e.increment_stderr, (-1.0, 0.0),
             fr"Increment($\beta$ = {e.beta:.2f})"),
            (a2, "root_ssq", e.root_ssq_slope, e.root_ssq_stderr, (0.5 - e.beta, 0.0),
             "Root SSQ")):
        y = e.statistics[key]
        ax.loglog(L, y, "o", ms=4, label=f"{name}: slope {slope:.2f} $\\pm$ {se:.2f}")
        y0 = np.exp(np.mean(np.log(y)))
        Lm = np.exp(np.mean(np.log(L)))
        for p, style, h in zip(preds, ("--", ":"), ("H1", "H2")):
            ax.loglog(L, y0 * (L / Lm) ** p, style, color="gray",
                      label=f"{h} prediction: slope {p:.2f}")
        ax.set(xlabel="depth L", ylabel=name)
        ax.legend(fontsize=8)
    fig.suptitle(f"H1 / H2 diagnostic: verdict {e.verdict}")
    fig.tight_layout()
    return fig


_STOP_COLOURS = {"epsilon": "C2", "plateau": "C3", "max_epochs": "C1"}


def patience_sensitivity(rows):
    """The protocol sensitivity of training.md §2.6: beta against the plateau patience (left;
    seed mean with its standard error, each seed a small dot, a hollow marker where the fit is
    flagged "mixed endpoints"), and max_k ||T_k|| against depth for each setting, coloured by
    how each run stopped (epsilon, plateau, max_epochs), at the smallest (o) and largest (^)
    patience of the rows, first seed.

    Parameters
    ----------
    rows : list of dict
        Rows of ``limits.validate.resnet_scaling.patience_rows`` (keys ``activation``,
        ``delta_type``, ``loader``, ``patience``, ``seed``, ``beta``, ``mixed``, ``depths``,
        ``max_norm``, ``stops``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty: nothing to plot")
    groups = sorted({(r["activation"], r["delta_type"], r["loader"]) for r in rows})
    fig, axes = plt.subplots(1, 1 + len(groups), figsize=(4.6 * (1 + len(groups)), 4))
    ax = axes[0]
    for n, g in enumerate(groups):
        rr = [r for r in rows if (r["activation"], r["delta_type"], r["loader"]) == g]
        pats = sorted({r["patience"] for r in rr})
        mean, se, mixed = [], [], []
        for p in pats:
            b = np.array([r["beta"] for r in rr if r["patience"] == p])
            ax.plot([p] * len(b), b, ".", color=f"C{n}", ms=3, alpha=0.5)
            mean.append(b.mean())
            se.append(b.std(ddof=1) / np.sqrt(len(b)) if len(b) > 1 else 0.0)
            mixed.append(any(r["mixed"] for r in rr if r["patience"] == p))
        ax.errorbar(pats, mean, yerr=se, color=f"C{n}", lw=1, capsize=3,
                    label=f"{g[0]} + {g[1]}, {g[2]}")
        for p, m, mx in zip(pats, mean, mixed):
            ax.plot(p, m, "o", color=f"C{n}", mfc="white" if mx else f"C{n}", ms=6)
    ax.set_xscale("log")
    ax.set(xlabel="plateau patience (epochs)", ylabel=r"$\beta$ (max-norm exponent)",
           title=r"$\beta$ vs patience (hollow: mixed endpoints)")
    ax.legend(fontsize=7)
    for ax, g in zip(axes[1:], groups):
        rr = [r for r in rows if (r["activation"], r["delta_type"], r["loader"]) == g]
        s0 = min(r["seed"] for r in rr)
        pats = sorted({r["patience"] for r in rr})
        for p, mk in zip((pats[0], pats[-1]) if len(pats) > 1 else pats, ("o", "^")):
            for r in rr:
                if r["patience"] != p or r["seed"] != s0:
                    continue
                for L, v in zip(r["depths"], r["max_norm"]):
                    stop = r["stops"].get(L, r["stops"].get(str(L)))
                    ax.loglog(L, v, mk, ms=4, color=_STOP_COLOURS.get(stop, "k"),
                              mfc="none" if mk == "^" else None)
        for stop, c in _STOP_COLOURS.items():
            ax.plot([], [], "s", color=c, label=stop)
        ax.plot([], [], "o", color="gray", label=f"patience {pats[0]}")
        if len(pats) > 1:
            ax.plot([], [], "^", color="gray", mfc="none", label=f"patience {pats[-1]}")
        ax.set(xlabel="depth L", ylabel=r"$\max_k \|T_k\|$",
               title=f"{g[0]} + {g[1]}, {g[2]} (seed {s0})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
