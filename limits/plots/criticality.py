"""Figures of the order/chaos capability (``limits.criticality``, theory/kernels.md §5c),
re-exported by ``limits.plots``.  Every function returns a ``Figure``, never calls ``show()`` and
never changes the matplotlib backend."""
import numpy as np

__all__ = ["order_chaos", "trainability"]


def order_chaos(activation, weight_vars=None, bias_vars=None, ax=None, overlays=None, n=None):
    """The order/chaos phase diagram at initialisation (Poole et al. 2016; Schoenholz et al.
    2017, Fig. 1).

    The (weight_var, bias_var) plane coloured by the correlation depth scale ``xi_c`` (log
    scale; ``xi_c = -1 / ln chi_c``), the ordered (``chi_1 < 1``) and chaotic (``chi_1 > 1``)
    regions, and the edge of chaos ``chi_1 = 1`` (``limits.criticality.edge_of_chaos``), where
    ``xi_c`` diverges.

    Parameters
    ----------
    activation : kernels activation
        As in ``limits.criticality.signal_propagation``.
    weight_vars, bias_vars : 1-d array_like, optional
        Grid axes (default ``linspace(0.5, 4, 160)`` and ``linspace(0, 0.3, 120)``).
    ax : matplotlib Axes, optional
    overlays : sequence of dict, optional
        Finite-network measurements, each with keys ``"weight_var"``, ``"bias_var"``,
        ``"depth_scale_c"`` (measured xi_c) and optionally ``"stderr"`` and ``"label"``: drawn as
        markers filled with the colour of the measured value on the same scale (a marker that
        blends in agrees with the theory), annotated with the value.
    n : int, optional
        For ``ShapedReLU``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from limits import criticality as cr

    sw = np.linspace(0.5, 4.0, 160) if weight_vars is None else np.asarray(weight_vars, float)
    sb = np.linspace(0.0, 0.3, 120) if bias_vars is None else np.asarray(bias_vars, float)
    if sw.ndim != 1 or sb.ndim != 1 or sw.size < 2 or sb.size < 2:
        raise ValueError("weight_vars and bias_vars must be 1-d with at least 2 values")
    r = cr.signal_propagation(activation, sw[None, :], sb[:, None], n=n)
    xi = np.array(r.depth_scale_c, dtype=float)
    finite = np.isfinite(xi) & (xi > 0)
    # colour scale up to the 98th percentile: the divergence at the edge saturates
    hi = float(np.percentile(xi[finite], 98)) if finite.any() else 10.0
    lo = float(np.nanmin(xi[finite])) if finite.any() else 0.1
    hi = max(hi, 1.01 * lo)
    shown = np.where(finite, xi, hi)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
    else:
        fig = ax.figure
    norm = LogNorm(vmin=lo, vmax=hi)
    mesh = ax.pcolormesh(sw, sb, shown, norm=norm, cmap="viridis", shading="nearest")
    fig.colorbar(mesh, ax=ax, label=r"depth scale $\xi_c = -1/\ln\chi_c$")
    chaotic = (r.chi_1 > 1).astype(float)
    if 0 < chaotic.mean() < 1:
        ax.contourf(sw, sb, chaotic, levels=[0.5, 1.5], colors="none", hatches=["//"])
    edge = cr.edge_of_chaos(activation, sb, n=n)
    inside = np.isfinite(edge) & (edge >= sw[0]) & (edge <= sw[-1])
    ax.plot(edge[inside], sb[inside], "w-", lw=2.5)
    ax.plot(edge[inside], sb[inside], "k--", lw=1.2, label=r"edge of chaos $\chi_1 = 1$")
    ax.text(0.03, 0.93, "ordered", transform=ax.transAxes, color="w", fontsize=12,
            va="top", fontweight="bold")
    ax.text(0.97, 0.93, "chaotic (hatched)", transform=ax.transAxes, color="w", fontsize=12,
            va="top", ha="right", fontweight="bold")
    for k, o in enumerate(overlays or ()):
        w, b, x = float(o["weight_var"]), float(o["bias_var"]), float(o["depth_scale_c"])
        ax.scatter([w], [b], c=[x], norm=norm, cmap="viridis", s=110, edgecolors="r",
                   linewidths=1.8, zorder=5, label="finite networks" if k == 0 else None)
        txt = f"{x:.3g}" + (f"±{float(o['stderr']):.2g}" if "stderr" in o else "")
        if "label" in o:
            txt = f"{o['label']}: {txt}"
        ax.annotate(txt, (w, b), xytext=(6, 6), textcoords="offset points", color="w",
                    fontsize=8)
    name = getattr(activation, "name", None) or type(activation).__name__
    ax.set_xlabel(r"weight variance $\sigma_w^2$")
    ax.set_ylabel(r"bias variance $\sigma_b^2$")
    ax.set_title(f"Order and chaos at initialisation ({name})", fontsize=11)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def trainability(weight_vars, depths, accuracy, bias_var=0.05, activation=None, ax=None,
                 factor=6.0, errors=None):
    """Trained accuracy on the (weight_var, depth) grid with ``factor * xi_c`` over it
    (Schoenholz et al. 2017, Fig. 5: deep tanh networks train up to depth ~ 6 xi_c).

    Parameters
    ----------
    weight_vars : (W,) array; depths : (D,) array; accuracy : (D, W) array
        E.g. from ``limits.trainability.trainability_grid``.
    bias_var : float
    activation : kernels activation, default ``kernels.Tanh()``
    ax : matplotlib Axes, optional
    factor : float, default 6
    errors : (D, W) array of str, optional
        Per-point errors (``TrainabilityGrid.errors``): points with a non-empty error are
        marked with a red cross ("run failed") instead of being left as blank cells.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    import kernels as kn
    from limits import criticality as cr
    act = kn.Tanh() if activation is None else activation
    sw = np.asarray(weight_vars, float)
    L = np.asarray(depths, float)
    acc = np.asarray(accuracy, float)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
    else:
        fig = ax.figure
    mesh = ax.pcolormesh(sw, L, acc, vmin=0.1, vmax=1.0, cmap="magma", shading="nearest")
    fig.colorbar(mesh, ax=ax, label="trained accuracy (chance 0.1)")
    fine = np.linspace(sw.min(), sw.max(), 200)
    xi = cr.signal_propagation(act, fine, bias_var).depth_scale_c
    ax.plot(fine, factor * xi, "c-", lw=2, label=f"{factor:g} $\\xi_c$")
    if errors is not None:
        bad = np.asarray(errors, dtype=object) != ""
        if bad.any():
            i, j = np.nonzero(bad)
            ax.plot(sw[j], L[i], "rx", ms=9, mew=2, label=f"run failed ({bad.sum()})")
    ax.set_yscale("log")
    ax.set_ylim(L.min() / 1.3, L.max() * 1.3)
    ax.set_xlabel(r"weight variance $\sigma_w^2$")
    ax.set_ylabel("depth")
    ax.set_title(f"Trainability of deep tanh MLPs ($\\sigma_b^2$ = {bias_var})", fontsize=11)
    ax.legend(loc="upper right", fontsize=8)
    return fig
