"""Validation checks of order and chaos at initialisation (``limits.criticality``).

Expected values: the c-map iterated at q* (theory/kernels.md §5c, from ``signal_propagation``)
against finite random tanh networks simulated with ``kernels.simulate_paths`` (width >= 512):
the mean correlation layer by layer, its O(1/width) bias removed by Richardson extrapolation
from half the width, within its Monte Carlo standard error, and the depth scale ``xi_c`` fitted to the simulated decay
``c_l = c_inf + A exp(-l / xi) + B exp(-2 l / xi) + C exp(-3 l / xi)`` within its standard
error (delta method from the covariance of the layer means over networks), on both sides of
the edge.
"""
import math

import numpy as np

import kernels as kn

from kernels import _checks

from ._registry import Result, check

__all__ = ["measure_depth_scale"]

_WINDOW = 0.15      # fit where the theory's |c_l - c*| <= _WINDOW (third-order model: bias
                    # of xi on the noise-free c-map <= 0.3% for tanh at the checked points)


def _c_map_path(act, sw2, sb2, q, c0, depth):
    """Theory: c_{l+1} = (sw2 V(q*, q*, q* c_l) + sb2) / q*, c_0 = c0 (kernels.md §5c)."""
    c = np.empty(depth + 1)
    c[0] = c0
    for l in range(depth):
        c[l + 1] = (sw2 * float(act.V(q, q, q * c[l])) + sb2) / q
    return c


_TERMS = 5          # terms a_n lam^(n l) of the curvature model (n = 1.._TERMS)


def _power_coeffs(a, j, N):
    """Coefficients of x^1..x^N in (sum_n a_n x^n)^j (a = a_1..a_N)."""
    base = np.concatenate([[0.0], a])[:N + 1]
    out = np.zeros(N + 1)
    out[0] = 1.0
    for _ in range(j):
        out = np.convolve(out, base)[:N + 1]
    return out[1:]


def _map_from_series(lam, a):
    """Taylor coefficients k_2..k_N of a map d -> lam d + k_2 d^2 + ... whose orbit is
    d_l = sum_n a_n lam^(n l): matching lam^(n (l + 1)) gives
    a_n (lam^n - lam) = sum_{j=2..n} k_j [x^n] (sum_m a_m x^m)^j."""
    a = np.asarray(a, dtype=float)
    N = a.size
    P = {j: _power_coeffs(a, j, N) for j in range(2, N + 1)}
    k = {}
    for n in range(2, N + 1):
        rest = sum(k[j] * P[j][n - 1] for j in range(2, n))
        k[n] = (a[n - 1] * (lam ** n - lam) - rest) / P[n][n - 1]
    return k


def _series_from_map(lam, A, k):
    """The orbit coefficients a_1 = A, a_2..a_N of the map with slope lam and Taylor
    coefficients ``k`` (inverse of :func:`_map_from_series`)."""
    N = max(k) if k else 1
    a = np.zeros(N)
    a[0] = A
    for n in range(2, N + 1):
        a[n - 1] = sum(k[j] * _power_coeffs(a, j, N)[n - 1] for j in range(2, n + 1)) / \
            (lam ** n - lam)
    return a


def _jacobian(f, l, p):
    """``df(l; p) / dp`` by central differences (steps 1e-6 max(|p_k|, 1e-3))."""
    p = np.asarray(p, dtype=float)
    J = np.empty((l.size, p.size))
    for k in range(p.size):
        h = 1e-6 * max(abs(p[k]), 1e-3)
        e = np.zeros(p.size)
        e[k] = h
        J[:, k] = (f(l, *(p + e)) - f(l, *(p - e))) / (2 * h)
    return J


def _delta_stderr(J, se, rho, index=1):
    """Delta-method (sandwich) standard error of the fitted parameter ``index``.

    The weighted least-squares fit ``theta = argmin sum_l (m_l - f(l; theta))^2 / se_l^2`` is,
    to first order in the noise of the layer means ``m``, linear in ``m``:
    ``d theta = G d m`` with ``G = (J^T W J)^-1 J^T W`` (Gauss–Newton; ``J = df/dtheta`` at the
    fit, ``W = diag(1/se^2)``).  So ``Cov(theta) = G Sigma G^T`` with ``Sigma`` the covariance
    of the layer means, estimated from the networks: ``Sigma = cov(rho[:, layers]) / samples``
    (the full matrix: the layers of one network are strongly correlated, which the naive
    ``(J^T W J)^-1`` ignores).  Deterministic given the simulation (no resampling noise, unlike
    a bootstrap with ~100 resamples); White (1982), Econometrica 50, 1 (the sandwich estimator).
    """
    sw = 1.0 / se
    # G = pinv(diag(sw) J) diag(sw), by least squares (stable when columns are near-collinear)
    G = np.linalg.lstsq(J * sw[:, None], np.diag(sw), rcond=None)[0]
    Sigma = np.cov(rho, rowvar=False) / rho.shape[0]
    g = G[index]
    return float(math.sqrt(max(float(g @ Sigma @ g), 0.0)))


def measure_depth_scale(activation, weight_var, bias_var, width=512, samples=400, seed=0,
                        c0=None, depth=None, n_boot=None, model="curvature"):
    """Simulate finite MLPs started at the fixed point q* and fit the decay of their correlation.

    Two inputs of squared norm ``(q* - sb2) / sw2`` (so that every layer's variance starts at
    q*) and correlation ``c0`` go through ``samples`` random MLPs of width ``width``
    (``kernels.simulate_paths``, record="rho"); the per-layer mean correlation ``m_l`` (with its
    standard error) is compared with the c-map iterate, and the third-order decay model of a map
    ``d -> chi d + k2 d^2 + k3 d^3``,
    ``m_l = c_inf + A exp(-l / xi) + B exp(-2 l / xi) + C exp(-3 l / xi)``, is fitted
    (weighted least squares, ``scipy.optimize.curve_fit``) on the layers where the theory's
    ``|c_l - c*| <= 0.15`` and the simulated ``|m_l - c*|`` exceeds 5 standard errors.

    ``model="curvature"`` (default): ``c_inf``, ``xi`` and ``A`` are fitted; the nonlinear
    terms follow from the c-map's Taylor coefficients at c*: the orbit of
    ``d -> lam d + k_2 d^2 + ... + k_5 d^5`` is ``d_l = sum_{n<=5} a_n lam^(n l)`` with
    ``a_1 = A``, ``a_n (lam^n - lam) = sum_{j=2..n} k_j [x^n] (sum_m a_m x^m)^j`` and
    ``lam = exp(-1/xi)`` (``_series_from_map``), and ``k_2..k_5`` come from a five-term fit on
    the noise-free c-map path (``_map_from_series``): the rate ``1/xi`` is measured, the shape
    of the nonlinear terms is the c-map's (its bias on the noise-free path: ~1e-4 of xi at
    the quick points).  ``model="free"``: the former third-order model with ``A, B, C`` all
    fitted; poorly identified on the chaotic side at quick sizes: the decay spans about 3 xi
    above the noise and the finite-width fixed point sits ~0.018 above c* at width 512, and
    the fitted xi ranged from 7 to over 50 for xi_c = 11.8 over 20 seeds.

    The standard error of ``xi`` is the delta-method (sandwich) error of the fit from the full
    covariance of the layer means over the networks (``_delta_stderr``: the layers of one
    network are correlated), ``se(xi) = se(1/xi) xi^2``; it replaced a bootstrap over the
    networks (issue 17; ``n_boot``: also compute that bootstrap error, as
    ``xi_stderr_bootstrap``, for comparison only).  Seed study at the quick size (width 512,
    800 networks, tanh, sb2 = 0.05; z = (xi - xi_c) / se): chaotic sw2 = 2.5, 20 seeds:
    curvature model z mean -0.14, sd 0.76, se 0.68..0.95 (free model with the same error:
    z mean -1.43, sd 2.02, se 0.7..1186; free with the bootstrap, 10 seeds: -1.24, 2.37);
    ordered sw2 = 1.5, 10 seeds: curvature z mean -0.10, sd 0.72, se 0.15..0.17 (free: -0.32,
    1.08, se 0.44..1.23).  The error is slightly conservative (sd of z ~0.75 < 1).

    Returns
    -------
    dict with ``theory`` (SignalPropagation), ``layers``, ``mean``, ``stderr``, ``c_map``,
    ``fit_layers``, ``xi``, ``xi_stderr``, ``c_inf``, ``z`` ((xi - xi_c) / xi_stderr) and
    ``max_z_layers`` (max over layers of |mean - c-map| / stderr), ``xi_of_c_map`` (the
    five-parameter fit on the noise-free c-map path: the model's bias); with ``n_boot`` also
    ``xi_stderr_bootstrap``.
    """
    from scipy.optimize import curve_fit

    from limits.criticality import signal_propagation
    if model not in ("curvature", "free"):
        raise ValueError(f"model must be 'curvature' or 'free', got {model!r}")
    r = signal_propagation(activation, weight_var, bias_var)
    q, cs, xi_c = float(r.q_star), float(r.c_star), float(r.depth_scale_c)
    if c0 is None:
        c0 = 0.7 if cs == 1.0 else min(0.98, cs + 0.3)
    if depth is None:
        depth = int(min(200, max(30, math.ceil(4 * xi_c))))
    d = 4
    norm2 = (q - bias_var) / weight_var * d
    x = np.zeros((2, d))
    x[0, 0] = math.sqrt(norm2)
    x[1, 0] = c0 * math.sqrt(norm2)
    x[1, 1] = math.sqrt(1 - c0 ** 2) * math.sqrt(norm2)
    # G_l (simulate_paths) is the covariance of layer l + 1's pre-activations: G_0 = K_1 at q*
    # with correlation (sw2 c0 q0 + sb2) / q*; the theory starts from that value
    g0 = (weight_var * c0 * norm2 / d + bias_var) / q
    net = kn.MLP(depth=depth, activation=activation, weight_var=weight_var, bias_var=bias_var)
    p = kn.simulate_paths(net, x, width=width, samples=samples, seed=seed, record="rho",
                          progress=False)
    rho = p.rho
    mean = rho.mean(0)
    se = rho.std(0, ddof=1) / math.sqrt(samples)
    theory = _c_map_path(activation, weight_var, bias_var, q, g0, depth)
    dev = theory - cs
    # fit window: |c_l - c*| <= _WINDOW in theory (where the third-order model below holds) and a
    # simulated deviation above 5 standard errors
    use = np.flatnonzero((np.abs(dev) <= _WINDOW) & (np.abs(mean - cs) > 5 * se))
    use = use[use > 0]
    out = dict(theory=r, layers=np.arange(depth + 1), mean=mean, stderr=se, c_map=theory,
               fit_layers=use, width=width, samples=samples)
    zl = np.abs(mean - theory)[1:] / se[1:]         # layer 0 is deterministic
    out["max_z_layers"] = float(zl.max())
    nan = float("nan")
    if use.size < 6:
        out.update(xi=nan, xi_stderr=nan, c_inf=nan, z=nan)
        return out
    # third-order model of a map d -> chi d + k2 d^2 + k3 d^3 started at d_0:
    # d_l = A chi^l + B chi^(2l) + C chi^(3l) + higher orders
    ll = use.astype(float)
    f = lambda l, ci, inv, A, B, C: (ci + A * np.exp(-l * inv) + B * np.exp(-2 * l * inv)  # noqa
                                     + C * np.exp(-3 * l * inv))

    def fit5(m):
        A0 = (m[use[0]] - cs) * math.exp(use[0] / xi_c)
        popt, _ = curve_fit(f, ll, m[use], p0=[cs, 1 / xi_c, A0, 0.0, 0.0], sigma=se[use],
                            maxfev=20000)
        return popt

    # the c-map's Taylor coefficients k_2..k_N at c* from an N-term fit on the noise-free
    # c-map path (module helper _series_from_map: d_l = sum_n a_n lam^(n l))
    fN = lambda l, ci, inv, *a: ci + sum(a[n] * np.exp(-(n + 1) * l * inv)  # noqa: E731
                                         for n in range(len(a)))
    A0 = (theory[use[0]] - cs) * math.exp(use[0] / xi_c)
    th = curve_fit(fN, ll, theory[use], p0=[cs, 1 / xi_c, A0] + [0.0] * (_TERMS - 1),
                   sigma=se[use], maxfev=50000)[0]
    out["xi_of_c_map"] = 1 / fit5(theory)[1] if model == "free" else 1 / th[1]
    ks = _map_from_series(math.exp(-th[1]), th[2:])

    def g3(l, ci, inv, A):
        return fN(l, ci, inv, *_series_from_map(math.exp(-inv), A, ks))

    if model == "curvature":
        fun = g3

        def fit(m):
            return curve_fit(g3, ll, m[use], p0=list(th[:3]), sigma=se[use], maxfev=20000)[0]
    else:
        fun, fit = f, fit5
    popt = fit(mean)
    inv = popt[1]
    inv_se = _delta_stderr(_jacobian(fun, ll, popt), se[use], rho[:, use])
    if n_boot is not None:
        # the former bootstrap standard error, for comparison only (noisy at n_boot ~ 100)
        n_boot = _checks.int_in_range(n_boot, "n_boot", 2)
        rng = np.random.default_rng(seed)
        boot = []
        for _ in range(n_boot):
            idx = rng.integers(0, samples, samples)
            try:
                boot.append(fit(rho[idx].mean(0))[1])
            except RuntimeError:          # a resample where the fit does not converge
                continue
        out["xi_stderr_bootstrap"] = float(np.std(boot, ddof=1)) / inv ** 2
    xi, xi_se = 1 / inv, inv_se / inv ** 2
    out.update(xi=xi, xi_stderr=xi_se, c_inf=popt[0], z=(xi - xi_c) / xi_se)
    return out


_POINTS_QUICK = [(1.5, 0.05), (2.5, 0.05)]                      # ordered, chaotic (tanh)
_POINTS_FULL = [(1.2, 0.05), (1.5, 0.05), (2.5, 0.05), (4.0, 0.05), (3.0, 0.2)]


@check("order/chaos: finite tanh networks follow the c-map and its depth scale xi_c")
def _depth_scales(ctx):
    import matplotlib.pyplot as plt

    from limits.plots import order_chaos
    points = _POINTS_QUICK if ctx.quick else _POINTS_FULL
    width = 512 if ctx.quick else 1024
    samples = 800 if ctx.quick else 4000
    act = kn.Tanh()
    rows, overlays = [], []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, (sw2, sb2) in enumerate(points):
        m = measure_depth_scale(act, sw2, sb2, width=width, samples=samples, seed=k + 1)
        r = m["theory"]
        xi_c = float(r.depth_scale_c)
        # per-layer: the finite-width mean of rho_l is the c-map plus an O(1/width) bias, which
        # the chaotic phase amplifies by ~ xi_c (the fixed point moves by ~ b / (width (1 -
        # chi_c))): remove it by Richardson extrapolation from width / 2 (independent
        # networks), R = 2 m_n - m_{n/2}, and compare R with the c-map within 4 of its
        # standard errors; the O(1/width^2) remainder is far below them here
        h = measure_depth_scale(act, sw2, sb2, width=width // 2, samples=samples,
                                seed=1000 + k + 1)
        R = 2.0 * m["mean"] - h["mean"]
        se_R = np.sqrt(4.0 * m["stderr"] ** 2 + h["stderr"] ** 2)
        z_R = (np.abs(R - m["c_map"]) / np.where(se_R > 0, se_R, np.inf))[1:]
        ok_l = bool(np.all(z_R < 4.0))
        rows.append(Result(f"c-map layer by layer, tanh sw2 = {sw2}, sb2 = {sb2} "
                           f"({r.phase}), widths {width // 2} and {width}",
                           "|2 m_n - m_{n/2} - c_l| < 4 se at every layer (Richardson: the "
                           "O(1/width) bias removed)",
                           f"max z = {float(z_R.max()):.2f} over {z_R.size} layers; width "
                           f"{width} alone: max |dev| / se = {m['max_z_layers']:.2f}",
                           "4 se", ok_l))
        ok = np.isfinite(m["z"]) and abs(m["z"]) < 3
        rows.append(Result(f"depth scale xi_c, tanh sw2 = {sw2}, sb2 = {sb2} ({r.phase})",
                           f"{xi_c:.3f}", f"{m['xi']:.3f} ± {m['xi_stderr']:.2f} "
                           f"(z = {m['z']:+.2f}, {m['fit_layers'].size} layers; same fit on "
                           f"the c-map: {m['xi_of_c_map']:.3f})",
                           "3 se (delta method, layer covariance over networks)", bool(ok)))
        overlays.append(dict(weight_var=sw2, bias_var=sb2, depth_scale_c=m["xi"],
                             stderr=m["xi_stderr"]))
        line = axes[0].errorbar(m["layers"], m["mean"], yerr=m["stderr"], fmt=".", ms=3,
                                label=f"$\\sigma_w^2$={sw2}, $\\sigma_b^2$={sb2}")
        axes[0].plot(m["layers"], m["c_map"], "-", lw=1, color=line[0].get_color())
    axes[0].set_xlabel("layer l")
    axes[0].set_ylabel("correlation $c_l$")
    axes[0].set_title(f"width {width}, {samples} networks (dots) vs c-map (lines)",
                      fontsize=10)
    axes[0].legend(fontsize=8)
    order_chaos(act, np.linspace(0.8, 4.2, 60), np.linspace(0, 0.25, 40), ax=axes[1],
                overlays=overlays)
    fig.tight_layout()
    name = ctx.save(fig, "order_chaos_simulation.png")
    for r in rows:
        r.figure = name
    return rows


@check("order/chaos: known edges (ReLU family, tanh, erf, Schoenholz et al. 2017)")
def _edges(ctx):
    from limits.criticality import edge_of_chaos
    cases = [("ReLU, sb2 = 0.3", kn.ReLU(), 0.3, 2.0, 1e-15),
             ("leaky 0.2, sb2 = 1", kn.LeakyReLU(0.2), 1.0, 2 / 1.04, 1e-15),
             ("tanh, sb2 = 0", kn.Tanh(), 0.0, 1.0, 1e-12),
             ("erf, sb2 = 0", kn.Erf(), 0.0, math.pi / 4, 1e-12),
             ("tanh, sb2 = 0.05 (Schoenholz et al. 2017 Fig. 1)", kn.Tanh(), 0.05, 1.76, 0.01)]
    rows = []
    for name, act, sb2, exp, tol in cases:
        v = float(edge_of_chaos(act, sb2))
        rows.append(Result(f"edge of chaos sw2: {name}", f"{exp:.10g}", f"{v:.10g}",
                           f"{tol:g}", abs(v - exp) <= tol * max(1.0, abs(exp))))
    return rows


def trainable_band(weight_vars, depths, accuracy, xi_c, threshold=0.5):
    """Per weight_var, the bracket ``[L_ok, L_fail] / xi_c`` of the trainability boundary: L_ok
    the deepest depth trained to ``accuracy >= threshold`` below the shallowest failing one,
    L_fail that failing depth (inf if none fails)."""
    out = []
    for j in range(len(weight_vars)):
        a = np.asarray(accuracy)[:, j]
        fail = np.flatnonzero(a < threshold)
        first_fail = fail[0] if fail.size else None
        ok = np.flatnonzero(a >= threshold)
        ok = ok[ok < first_fail] if first_fail is not None else ok
        L_ok = float(depths[ok[-1]]) if ok.size else 0.0
        L_fail = float(depths[first_fail]) if first_fail is not None else float("inf")
        out.append((L_ok / xi_c[j], L_fail / xi_c[j]))
    return out


_BAND = (3.0, 12.0)    # the trainable depth / xi_c: Schoenholz et al. 2017 report ~6


@check("order/chaos: tanh MLPs train only up to depth ~ 6 xi_c (Schoenholz et al. 2017)")
def _trainability(ctx):
    import os
    import tempfile

    from limits.criticality import signal_propagation
    from limits.plots import trainability
    from limits.trainability import trainability_grid
    if ctx.quick:
        sws, depths, width, steps = [1.0, 4.0], [8, 16, 32, 64], 32, 800
    else:
        sws, depths, width, steps = ([1.0, 1.5, 2.5, 3.0, 4.0], [6, 12, 24, 48, 96, 192], 64,
                                     2000)
    sb2 = 0.05
    store = os.path.join(tempfile.mkdtemp(prefix="trainability-"), "runs.sqlite")
    g = trainability_grid(sws, depths, store, bias_var=sb2, width=width, steps=steps)
    sw, L, acc = g.weight_vars, g.depths, g.accuracy
    xi = signal_propagation(kn.Tanh(), sw, sb2).depth_scale_c
    fig = trainability(sw, L, acc, bias_var=sb2, errors=g.errors)
    name = ctx.save(fig, "trainability.png")
    rows = []
    for j, ((lo, hi), w, x) in enumerate(zip(trainable_band(sw, L, acc, xi), sw, xi)):
        failed = [f"depth {L[i]}: {g.errors[i, j]}" for i in range(len(L)) if g.errors[i, j]]
        ok = lo > 0 and lo <= _BAND[1] and hi >= _BAND[0] and not failed
        rows.append(Result(f"trainable depth / xi_c, tanh sw2 = {w:g}, sb2 = {sb2} "
                           f"(xi_c = {x:.2f}; width {width}, {steps} SGD steps, digits)",
                           f"boundary bracket overlaps {_BAND} (paper: ~6)",
                           f"[{lo:.2f}, {hi:.2f}]; accuracies by depth "
                           f"{np.round(acc[:, j], 2).tolist()}"
                           + (f"; FAILED runs: {'; '.join(failed)}" if failed else ""),
                           "grid resolution x2", bool(ok), figure=name))
    return rows
