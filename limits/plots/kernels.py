"""Figures of the kernels: correlation against depth, ResNet against its ODE limit.  Re-exported
by ``limits.plots``; every function returns a ``Figure`` and never calls ``show()``."""
import math

import matplotlib.pyplot as plt
import numpy as np

import kernels as kn

__all__ = ["correlation_vs_depth", "resnet_vs_ode"]


def correlation_vs_depth(depth=10_000, rho0=0.0, activations=None):
    """Correlation of two inputs against depth for several MLPs, and the ReLU rate
    ``l^2 (1 - rho_l) -> 9 pi^2 / 2`` (theory/kernels.md §2.4).

    Parameters
    ----------
    depth : int
        Deepest layer shown.
    rho0 : float
        Input correlation of two unit-norm inputs.
    activations : dict name -> (activation, weight_var, bias_var), optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    if activations is None:
        activations = {
            "ReLU (He)": (kn.ReLU(), 2.0, 0.0),
            "leaky 0.2": (kn.LeakyReLU(0.2), 2.0 / 1.04, 0.0),
            "erf": (kn.Erf(), 1.0, 0.0),
            "ReLU + bias 0.1": (kn.ReLU(), 2.0, 0.1),
        }
    K0 = np.array([[1.0, rho0], [rho0, 1.0]])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, (act, sw2, sb2) in activations.items():
        tr = kn.MLP(depth, act, weight_var=sw2, bias_var=sb2).trajectory(K0=K0)
        l = tr.layers
        a1.semilogx(np.maximum(l, 0.5), tr.correlation[:, 0, 1], label=name)
        if act == kn.ReLU() and sb2 == 0.0:
            a2.semilogx(l[1:], l[1:] ** 2 * tr.one_minus_correlation[1:, 0, 1],
                        label=f"{name}: $l^2(1-\\rho_l)$")
    a2.axhline(9 * math.pi ** 2 / 2, color="k", ls="--", label=r"$9\pi^2/2$")
    a1.set(xlabel="layer l", ylabel=r"$\rho_l$", title="correlation of two inputs")
    a2.set(xlabel="layer l", ylabel=r"$l^2 (1-\rho_l)$", title="ReLU: approach to rho = 1")
    a1.legend()
    a2.legend()
    fig.tight_layout()
    return fig


def resnet_vs_ode(depths=(4, 16, 64, 256), K0=((1.0, 0.0), (0.0, 1.0)), weight_var=1.0,
                  ode_value=None):
    """ResNet (branch scale depth^-1/2) correlation along the residual stream, against
    ``t = l / depth``, for several depths; optionally the ODE value at t = 1 (kernels.md §3.3)."""
    K0 = np.asarray(K0, dtype=float)
    fig, ax = plt.subplots(figsize=(5, 4))
    for L in depths:
        tr = kn.ResNet(L, kn.ReLU(), weight_var=weight_var).trajectory(K0=K0)
        ax.plot(tr.layers / L, tr.correlation[:, 0, 1], marker="." if L < 50 else None,
                label=f"depth {L}")
    if ode_value is not None:
        ax.plot([1.0], [ode_value], "k*", ms=12, label="ODE limit at t = 1")
    ax.set(xlabel="t = l / depth", ylabel=r"$\rho$", title="ReLU ResNet: depth -> ODE")
    ax.legend()
    fig.tight_layout()
    return fig

