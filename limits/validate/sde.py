"""Validation checks of the SDE / ODE limits (``limits.sde``, ``limits.solve``).

Expected values: the oracle tables of theory/sde.md §6 and theory/kernels.md §3.4, closed forms
of sde.md §3.3, and finite networks simulated with ``kernels.montecarlo``.
"""
import math

import numpy as np

import kernels as kn

from ._registry import Result, check, reference_table

_TABLE_B = [row[:5] for row in  # C, T, E rho_T, its se, sd (theory/sde.md §6 B, rho0 = 0.3)
            reference_table("sde_oracles")["correlation_sde_6B"]["rows"]]


@check("correlation SDE vs sde.md §6 B table")
def _table_b(ctx):
    from .. import CorrelationSDE, solve
    P = 40_000 if ctx.quick else 200_000
    rows = []
    for C, T, mean, se, sd in _TABLE_B:
        v = solve(CorrelationSDE(0.0, -math.sqrt(C)), 0.3, [T], paths=P, seed=1,
                  dt=5e-4).values[0]
        tol = 3 * math.hypot(se, v.std() / math.sqrt(P))
        rows.append(Result(f"correlation SDE E rho_T, C = {C}, T = {T}", f"{mean} ({se})",
                           f"{v.mean():.4f} (sd {v.std():.4f} vs {sd})", f"3 se = {tol:.4f}",
                           abs(v.mean() - mean) < tol))
    return rows


@check("unshaped q_t: exact sampler and SDE vs sde.md §3.3 / §6 C")
def _unshaped(ctx):
    from .. import UnshapedCorrelationSDE, solve
    from ..sde import Q_STAR
    P = 40_000 if ctx.quick else 200_000
    sde = UnshapedCorrelationSDE()
    times = [0.1, 0.25, 0.5]
    q = sde.sample_exact(times, P, seed=1, substeps=4000)
    rows = []
    for t, qt in zip(times, q):
        Y2 = Q_STAR / qt
        e2 = ((math.exp(6 * t) - 1) / 6 - (math.exp(2 * t) - 1) / 2) / (2 * t * t)
        tol = 3 * Y2.std() / math.sqrt(P)
        rows.append(Result(f"unshaped exact sampler E[q*/q_t], t = {t}", f"{e2:.6f}",
                           f"{Y2.mean():.6f}", f"3 se = {tol:.4f}", abs(Y2.mean() - e2) < tol))
    from scipy import stats
    a = solve(sde, None, [0.5], paths=P // 2, seed=2, dt=2e-3).values[0]
    p = stats.ks_2samp(np.log(a), np.log(q[-1])).pvalue
    rows.append(Result("unshaped log-q SDE (geometric grid) vs exact sampler, t = 0.5, KS p",
                       "> 1e-3", f"{p:.3g}", "-", p > 1e-3))
    return rows


@check("ResNet ODE vs kernels.md §3.4 table")
def _resnet_ode(ctx):
    from .. import ResNetODE, solve
    rows = []
    table = reference_table("kernels_oracles")["resnet_ode"]["rows"]   # kernels.md §3.4
    for sw2, sb2, K0, K1, Th1 in [(sw2, sb2, [[q1, c], [c, q2]], (K1[0], K1[2]), (T1[0], T1[2]))
                                  for sw2, sb2, (q1, q2, c), K1, T1, _ in table]:
        sol = solve(ResNetODE(kn.ReLU(), sw2, sb2), np.array(K0, float), [1.0])
        got = (sol.values[0][0, 0], sol.values[0][0, 1], sol.ntk[0][0, 0], sol.ntk[0][0, 1])
        want = K1 + Th1
        err = max(abs(g / w - 1) for g, w in zip(got, want))
        rows.append(Result(f"ResNet ODE ReLU sw2={sw2} sb2={sb2} K0={K0}: K_1, Theta_1",
                           ", ".join(f"{w:.10g}" for w in want), f"max rel err {err:.1e}",
                           "1e-9", err < 1e-9))
    return rows


@check("shaped ReLU networks -> correlation SDE (KS distance vs width)")
def _networks(ctx):
    from scipy import stats

    from .. import CorrelationSDE, plots, solve
    T = 0.5                     # C = (c+ - c-)^2 = 4
    P = 10_000
    widths = [32, 64, 128, 256] if ctx.quick else [64, 128, 256, 512]
    lim = solve(CorrelationSDE(0.0, -2.0), 0.3, [T], paths=P, seed=1, dt=5e-4).values[0]
    # c+ = 0, c- = -2 (sde.md §6 B's network check): the finite-n drift bias
    # C (c+ + c-)/sqrt(n) is visible and must fade (with c+ = -c- it is below the noise)
    sde = CorrelationSDE(0.0, -2.0)
    nets = {}
    for n in widths:
        net, x = sde.network(n, T, 0.3)
        nets[f"n = {n}"] = kn.simulate_paths(net, x, width=n, samples=P, seed=n,
                                             layers=[net.depth], record="rho",
                                             progress=False).rho[:, 0]
    ks = [stats.ks_2samp(v, lim).statistic for v in nets.values()]
    noise = 1.36 * math.sqrt(2 / P)            # KS statistic at p = 0.05 for equal laws
    fig = plots.limit_vs_network(lim[None], {k: v[None] for k, v in nets.items()}, [T])
    name = ctx.save(fig, "shaped_network_vs_sde.png")
    rows = [Result(f"KS(shaped net c+=0 c-=-2, SDE), T = 0.5, n = {widths[0]}..{widths[-1]}",
                   "decreasing with n",
                   ", ".join(f"{k:.3f}" for k in ks), f"noise level {noise:.3f}",
                   ks[-1] < ks[0], figure=name)]
    if not ctx.quick:
        rows.append(Result("KS(shaped net, SDE) at n = 512", "< 0.05", f"{ks[-1]:.3f}", "0.05",
                           ks[-1] < 0.05, figure=name))
    return rows


@check("ResNet with branch scale depth^-1/2 -> ODE (sde.md §6 D)")
def _resnet_network(ctx):
    from .. import ResNetODE, solve
    n = d = 128 if ctx.quick else 256
    samples = 200 if ctx.quick else 1000
    net = kn.ResNet(depth=d, activation=kn.ReLU(), weight_var=1.0, input_weight_var=1.0)
    x = np.array([[1.0, 0.0], [0.3, math.sqrt(1 - 0.09)]]) * math.sqrt(2.0)
    p = kn.simulate_paths(net, x, width=n, samples=samples, seed=3, layers=[d], record="rho",
                          progress=False)
    rho = p.rho[:, 0]
    ode = solve(ResNetODE(kn.ReLU(), 1.0), np.array([[1.0, 0.3], [0.3, 1.0]]), [1.0]).values[0]
    expect = ode[0, 1] / ode[0, 0]
    se = rho.std() / math.sqrt(samples)
    return [Result(f"ResNet n = d = {n}: E rho_d vs ODE (c_r = 1)", f"{expect:.5f}",
                   f"{rho.mean():.5f} ({se:.1g})", "4 se", abs(rho.mean() - expect) < 4 * se)]


@check("covariance SDE of three inputs (shaped ReLU, erf): norms, pairs, networks")
def _covariance_three_inputs(ctx):
    """sde.md §2.3/§2.5/§2.6: ln V_aa ~ N(ln V_aa(0) - t, 2t) exactly; each 2 x 2 block has the
    law of the two-input SDE (another scheme); finite networks of width 256 agree (KS)."""
    from scipy import stats

    from .. import CovarianceSDE, SmoothCovarianceSDE, solve
    P = 10_000 if ctx.quick else 40_000
    T = 1.0
    V0 = np.array([[1.0, 0.3, -0.2], [0.3, 2.0, 0.5], [-0.2, 0.5, 1.5]])
    sde = CovarianceSDE(0.0, -2.0)
    V = solve(sde, V0, [T], paths=P, seed=1, dt=1e-3).values[0]
    lv = np.log(V[:, 1, 1])
    tol = 4 * math.sqrt(2 * T / P) + 2e-3
    rows = [Result("3 inputs, C = 4: E ln V22(1) (exact geometric BM)",
                   f"{math.log(2.0) - T:.4f}", f"{lv.mean():.4f}", f"4 se + 2 dt = {tol:.4f}",
                   abs(lv.mean() - (math.log(2.0) - T)) < tol),
            Result("3 inputs: min eigenvalue of V over all paths", "> 0",
                   f"{np.linalg.eigvalsh(V).min():.3g}", "-", bool(np.all(np.linalg.eigvalsh(V) > 0)))]
    V2 = solve(sde, V0[1:, 1:], [T], paths=P, seed=2, dt=1e-3).values[0]
    r3 = V[:, 1, 2] / np.sqrt(V[:, 1, 1] * V[:, 2, 2])
    r2 = V2[:, 0, 1] / np.sqrt(V2[:, 0, 0] * V2[:, 1, 1])
    p = stats.ks_2samp(r3, r2).pvalue
    rows.append(Result("3 inputs: rho_23(1) vs the two-input SDE (log / Fisher-z scheme), KS p",
                       "> 1e-3", f"{p:.3g}", "-", p > 1e-3))
    n, S = 256, (1000 if ctx.quick else 3000)
    s = math.sqrt(n)
    cases = [("shaped ReLU c+- = +-1", CovarianceSDE(1.0, -1.0), None),
             ("erf, phi''' = -2 (beta = -2)", SmoothCovarianceSDE.from_activation(0.0, -2.0),
              kn.MLP(depth=round(0.5 * n), activation=kn.Erf(s * math.sqrt(math.pi) / 2, 1 / s),
                     weight_var=1.0))]
    x = np.array([[1.0, 0.0, 0.0], [0.3, math.sqrt(0.91), 0.0], [-0.5, 0.1, math.sqrt(0.74)]])
    for name, lim_sde, net in cases:
        if net is None:
            net, _ = lim_sde.network(n, 0.5)
        g = kn.simulate_paths(net, x * math.sqrt(2.0), width=n, samples=S, seed=3,
                              layers=[0, net.depth], progress=False).gram
        lim = solve(lim_sde, g[0, 0], [0.5], paths=P, seed=4, dt=1e-3).values[0]
        ps = []
        for a, b in ((0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2)):
            if a == b:
                f_net, f_lim = np.log(g[:, 1, a, a]), np.log(lim[:, a, a])
            else:
                f_net = g[:, 1, a, b] / np.sqrt(g[:, 1, a, a] * g[:, 1, b, b])
                f_lim = lim[:, a, b] / np.sqrt(lim[:, a, a] * lim[:, b, b])
            ps.append(stats.ks_2samp(f_net, f_lim).pvalue)
        rows.append(Result(f"3 inputs, {name}: network (n = {n}, T = 0.5, {S} samples) vs SDE, "
                           "KS p of ln V_aa and rho_ab (min of 6)", "> 1e-3 / 6",
                           f"{min(ps):.3g}", "Bonferroni", min(ps) > 1e-3 / 6))
    return rows
