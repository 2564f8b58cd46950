"""Validation checks of the finite-width Monte Carlo (``kernels.montecarlo``).

Expected values: the exact finite-width identities of theory/sde.md §6 A, and the infinite-width
engine (validated against neural-tangents) approached with an O(1/width) bias.
"""
import math

import numpy as np

import kernels as kn

from ._registry import Result, check


@check("Monte Carlo: E V_l = V_0, E V_l^2 = V_0^2 (1 + 5/n)^l (sde.md §6 A)")
def _identities(ctx):
    n, L = 16, 8
    samples = 20_000 if ctx.quick else 200_000
    net = kn.MLP(depth=L, activation=kn.ReLU(), weight_var=2.0)
    x = np.array([[1.0, -0.5, 2.0]])
    V0 = 2.0 * float(x[0] @ x[0]) / 3
    p = kn.simulate_paths(net, x, width=n, samples=samples, seed=1, progress=False)
    v = p.gram[:, L, 0, 0]
    z1 = (v.mean() - V0) / (v.std(ddof=1) / math.sqrt(samples))
    m2 = V0 ** 2 * (1 + 5 / n) ** L
    z2 = ((v ** 2).mean() - m2) / ((v ** 2).std(ddof=1) / math.sqrt(samples))
    return [Result("Monte Carlo: E V_8 (He-ReLU, n = 16)", f"{V0:.6f}", f"{v.mean():.6f} "
                   f"({z1:+.2f} se)", "4 se", abs(z1) < 4),
            Result("Monte Carlo: E V_8^2 (He-ReLU, n = 16)", f"{m2:.6f}",
                   f"{(v ** 2).mean():.6f} ({z2:+.2f} se)", "4 se", abs(z2) < 4)]


@check("Monte Carlo -> kernels as width grows (bias ~ a/width)")
def _convergence(ctx):
    import matplotlib.pyplot as plt

    x = np.array([[1.0, 0.0, 0.0], [0.3, 0.9, -0.3]])
    net = kn.MLP(depth=4, activation=kn.ReLU(), weight_var=2.0, bias_var=0.1)
    K = net.kernels(x)
    widths = [8, 16, 32, 64, 128] if ctx.quick else [16, 32, 64, 128, 256, 512, 1024]
    base = 400 if ctx.quick else 2000
    rows, fig = [], plt.figure(figsize=(5.5, 3.8))
    ax = fig.add_subplot(111)
    for name in ("nngp", "ntk"):
        dev, se = [], []
        for w in widths:
            r = kn.monte_carlo(net, x, width=w, samples=max(100, base * 64 // w), seed=w,
                               progress=False)
            dev.append(getattr(r, name)[0, 1] - getattr(K, name)[0, 1])
            se.append(getattr(r, name + "_stderr")[0, 1])
        dev, se, w = np.array(dev), np.array(se), np.array(widths, float)
        A = np.stack([1 / w, np.ones_like(w)], 1) / se[:, None]
        coef, *_ = np.linalg.lstsq(A, dev / se, rcond=None)
        cov = np.linalg.inv(A.T @ A)
        res = (dev - coef[0] / w - coef[1]) / se
        ok = bool(np.all(np.abs(res) < 4) and abs(coef[1]) < 4 * math.sqrt(cov[1, 1]))
        rows.append(Result(f"Monte Carlo {name.upper()}(x1, x2) - kernel = a/width + b",
                           "b = 0, residuals < 4 se",
                           f"a = {coef[0]:.3g}, b = {coef[1]:.2g} ± {math.sqrt(cov[1, 1]):.1g}, "
                           f"max |res| = {np.abs(res).max():.1f} se", "4 se", ok))
        line = ax.errorbar(1 / w, dev, yerr=se, fmt="o", capsize=3, label=f"{name.upper()}")
        u = np.linspace(0, 1 / w.min(), 50)
        ax.plot(u, coef[0] * u + coef[1], "-", color=line[0].get_color())
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("1 / width")
    ax.set_ylabel("Monte Carlo mean - kernel  (x1, x2)")
    ax.set_title("ReLU MLP, depth 4: deviation -> 0 like a/width\n(lines: fitted a/n + b)",
                 fontsize=10)
    ax.legend()
    fig.tight_layout()
    name = ctx.save(fig, "montecarlo_convergence.png")
    for r in rows:
        r.figure = name
    return rows


@check("Monte Carlo: gram and weights samplers agree in law (KS)")
def _samplers(ctx):
    from scipy import stats
    x = np.array([[1.0, 0.0, 0.5], [0.6, 0.8, -0.2]])
    net = kn.ResNet(depth=6, activation=kn.Tanh(), weight_var=1.0, bias_var=0.1)
    S = 2000 if ctx.quick else 20_000
    a = kn.simulate_paths(net, x, width=32, samples=S, seed=1, method="gram", record="rho",
                          progress=False)
    b = kn.simulate_paths(net, x, width=32, samples=S, seed=2, method="weights", record="rho",
                          progress=False)
    p = stats.ks_2samp(a.rho[:, -1], b.rho[:, -1]).pvalue
    return [Result("Monte Carlo: KS p-value, rho_6 of a tanh ResNet, gram vs weights", "> 1e-3",
                   f"{p:.3g}", "-", p > 1e-3)]
