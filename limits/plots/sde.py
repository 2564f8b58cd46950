"""Figures of the SDE limits: paths and densities, limit against finite networks."""
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["sde_paths", "limit_vs_network", "resnet_mlp_equivalence"]


def sde_paths(solution, n_show=40, label="rho", ax=None):
    """Sample paths of a scalar ``limits.solve`` solution against time, with the mean and the
    5-95% band over all paths.

    Parameters
    ----------
    solution : limits.Solution
        ``values`` shaped (times, paths).
    n_show : int
        Paths drawn individually.
    """
    v = np.asarray(solution.values)
    if v.ndim != 2:
        raise ValueError(f"sde_paths needs a scalar solution (times, paths), got {v.shape}")
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    t = solution.times
    ax.plot(t, v[:, :n_show], lw=0.6, alpha=0.5, color="tab:blue")
    ax.fill_between(t, np.percentile(v, 5, axis=1), np.percentile(v, 95, axis=1),
                    color="tab:orange", alpha=0.25, label="5-95%")
    ax.plot(t, v.mean(1), color="tab:orange", lw=2, label="mean")
    ax.set_xlabel("t")
    ax.set_ylabel(label)
    ax.legend(loc="best")
    return fig if fig is not None else ax.figure


def limit_vs_network(limit, networks, times, label="rho", bins=60):
    """Densities of the limit against finite networks at each time.

    Parameters
    ----------
    limit : (len(times), P) array
        Limit samples (e.g. ``solve(...).values``).
    networks : dict {str: (len(times), M) array}
        Network samples per label (e.g. ``{"n = 64": ..., "n = 256": ...}``).
    times : sequence of float
    """
    limit = np.atleast_2d(np.asarray(limit, float))
    k = len(times)
    fig, axes = plt.subplots(1, k, figsize=(4.2 * k, 3.4), squeeze=False)
    for i, (ax, t) in enumerate(zip(axes[0], times)):
        lo = min(np.min(limit[i]), *(np.min(np.atleast_2d(v)[i]) for v in networks.values()))
        hi = max(np.max(limit[i]), *(np.max(np.atleast_2d(v)[i]) for v in networks.values()))
        edges = np.linspace(lo, hi, bins + 1)
        ax.hist(limit[i], bins=edges, density=True, color="0.7", label="limit")
        for name, v in networks.items():
            ax.hist(np.atleast_2d(v)[i], bins=edges, density=True, histtype="step", lw=1.5,
                    label=name)
        ax.set_title(f"t = {t:g}")
        ax.set_xlabel(label)
    axes[0][0].set_ylabel("density")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def resnet_mlp_equivalence(c_r=1.0, rho0=0.3, depths=(8, 32, 128)):
    """Correlation against layer time tau = l / L for the ReLU ResNet with branch scale L^-1/2
    (weight_var = c_r), the shaped ReLU MLP with (c+ - c-)^2 = c_r (rate depth^-1/2,
    normalised), both at infinite width and finite depth L, and their common ODE
    ``d rho / d tau = (c_r / 2 pi) h(arccos rho)`` (theory/sde.md §3.1-§3.2).
    """
    import math

    import kernels as kn

    from ..sde import ResNetODE
    from ..solve import solve
    K0 = np.array([[1.0, rho0], [rho0, 1.0]])
    tau = np.linspace(0, 1, 101)
    ode = solve(ResNetODE(kn.ReLU(), c_r), K0, tau).values
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(tau, ode[:, 0, 1] / ode[:, 0, 0], "k-", lw=2, label="ODE")
    c = math.sqrt(c_r) / 2
    for L in depths:
        res = kn.ResNet(depth=L, activation=kn.ReLU(), weight_var=c_r).trajectory(K0=K0)
        s_p, s_m = 1 + c / math.sqrt(L), 1 - c / math.sqrt(L)
        mlp = kn.MLP(depth=L, activation=kn.ShapedReLU(c, -c),
                     weight_var=2 / (s_p ** 2 + s_m ** 2)).trajectory(K0=K0)
        t = np.arange(L + 1) / L
        ax.plot(t, res.correlation[:, 0, 1], "--", label=f"ResNet L = {L}")
        ax.plot(t, mlp.correlation[:, 0, 1], ":", label=f"shaped MLP L = {L}")
    ax.set_xlabel("tau = l / L")
    ax.set_ylabel("rho")
    ax.set_title(f"ResNet = shaped MLP in the limit, (c+ - c-)^2 = c_r = {c_r:g}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
