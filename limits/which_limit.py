"""Which limit describes a finite network?  ``which_limit`` simulates random networks of the
user's width and depth and compares the law of the output correlation of a pair of inputs with
every applicable limit.

Limits (each a law of the output correlation rho of the two inputs):

* ``"nngp"``: infinite width at fixed depth: a point mass at the kernel's correlation
  ``K12 / sqrt(K11 K22)`` (``net.nngp``; for ``ShapedReLU(rate="width")`` the kernel of the
  fixed slopes ``1 + c/sqrt(width)``).  Theory: theory/kernels.md §2.
* ``"correlation_sde"``: shaped ReLU MLPs without bias, depth and width large with
  ``T = depth / width`` fixed: ``limits.CorrelationSDE(c_plus', c_minus')`` at time T started at
  the input correlation (Li, Nica & Roy 2022; theory/sde.md §2.4), where ``c' = c`` for slopes
  ``1 + c/sqrt(width)`` and ``c' = c sqrt(width / depth)`` for slopes ``1 + c/sqrt(depth)``
  (sde.md §3.1: the time change t = T tau).
* ``"unshaped_sde"``: ReLU MLPs without bias: ``1 - rho = q_T / depth^2`` with ``q_T`` the
  q_t SDE at ``T = depth / width`` (``limits.UnshapedCorrelationSDE.sample_exact``; Li & Nica
  2024, theory/sde.md §3.3); asymptotic in depth.
* ``"resnet_ode"``: ResNets: a point mass at the correlation of ``limits.ResNetODE`` solved to
  ``t = sum_l alpha_l^2`` (= 1 for the default branch scale ``depth^-1/2``) from the stem's
  kernel, then the readout (theory/kernels.md §3.3; sde.md §3.2: fluctuations are O(1/width)).

Distance: the 1-Wasserstein distance between the simulated correlations (``samples`` networks)
and the predicted law (a point mass, or 20,000 SDE samples), in units of correlation, with its
Monte Carlo uncertainty from ``n_boot`` bootstrap resamples (of the networks and of the SDE
samples).  Verdict: ``"consistent"`` if ``distance < tol + 2 uncertainty``, else ``"rejected"``.
"""
import math
from dataclasses import dataclass, field

import numpy as np

import kernels as kn
from kernels import _checks

__all__ = ["which_limit", "WhichLimit"]

_SDE_PATHS = 20_000


@dataclass
class WhichLimit:
    """Result of ``which_limit``.

    Attributes
    ----------
    table : list of dict
        One row per applicable limit: ``"limit"``, ``"distance"`` (W1), ``"uncertainty"``
        (bootstrap sd of the distance), ``"tolerance"``, ``"verdict"``
        (``"consistent"`` / ``"rejected"``), ``"description"``.
    simulated : (samples,) array
        Output correlations of the simulated networks.
    predicted : dict
        Limit name -> predicted samples (array) or point mass (float).
    depth, width : int
    """

    table: list
    simulated: np.ndarray
    predicted: dict
    depth: int
    width: int
    input_correlation: float = field(default=float("nan"))

    def verdict(self, limit):
        """The verdict for one limit name."""
        for row in self.table:
            if row["limit"] == limit:
                return row["verdict"]
        raise KeyError(f"limit {limit!r} is not applicable here; have "
                       f"{[r['limit'] for r in self.table]}")

    def __str__(self):
        lines = [f"which_limit: depth {self.depth}, width {self.width} "
                 f"(depth/width = {self.depth / self.width:.4g})",
                 f"{'limit':<18}{'W1 distance':>14}{'± (boot)':>11}{'tol':>7}  verdict"]
        for r in self.table:
            lines.append(f"{r['limit']:<18}{r['distance']:>14.4f}{r['uncertainty']:>11.4f}"
                         f"{r['tolerance']:>7.3f}  {r['verdict']}")
        return "\n".join(lines)

    def plot(self, ax=None):
        """Histogram of the simulated output correlations with every predicted law (point
        masses as vertical lines); returns the Figure (the backend is not changed)."""
        import matplotlib.pyplot as plt
        if ax is None:
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
        else:
            fig = ax.figure
        lo = min(np.min(self.simulated), *[np.min(v) for v in self.predicted.values()])
        hi = max(np.max(self.simulated), *[np.max(v) for v in self.predicted.values()])
        pad = 0.05 * max(hi - lo, 1e-3)
        bins = np.linspace(lo - pad, hi + pad, 50)
        ax.hist(self.simulated, bins=bins, density=True, color="0.75",
                label=f"{self.simulated.size} networks, width {self.width}")
        verdicts = {r["limit"]: r["verdict"] for r in self.table}
        for k, (name, v) in enumerate(self.predicted.items()):
            col = f"C{k}"
            lab = f"{name} ({verdicts[name]})"
            if np.ndim(v) == 0:
                ax.axvline(float(v), color=col, lw=2, ls="--", label=lab)
            else:
                ax.hist(v, bins=bins, density=True, histtype="step", lw=2, color=col,
                        label=lab)
        ax.set_xlabel("output correlation of the two inputs")
        ax.set_ylabel("density")
        ax.set_title(f"Which limit? depth {self.depth}, width {self.width}", fontsize=10)
        ax.legend(fontsize=8)
        return fig


def _w1_point(x, p):
    return float(np.mean(np.abs(x - p)))


def _w1(x, y):
    from scipy.stats import wasserstein_distance
    return float(wasserstein_distance(x, y))


def which_limit(net, x, width, samples=1000, seed=0, tol=0.05, n_boot=200):
    """Which infinite-width / infinite-depth limit describes this finite network?

    Simulates ``samples`` random networks ``net`` of width ``width``
    (``kernels.simulate_paths``, the exact Gram chain) on the pair of inputs ``x`` and compares
    the law of their output correlation with every applicable limit (module docstring) by the
    1-Wasserstein distance; a limit is ``"consistent"`` when the distance is below
    ``tol + 2 * uncertainty`` (bootstrap), else ``"rejected"``.

    Parameters
    ----------
    net : kernels.MLP or kernels.ResNet
    x : (2, d) array_like
        The two inputs.
    width : int >= 1
    samples : int >= 2
        Simulated networks.
    seed : int
    tol : float > 0, default 0.05
        Tolerance in units of correlation.
    n_boot : int >= 10
        Bootstrap resamples for the uncertainty of each distance.

    Returns
    -------
    WhichLimit
        ``.table`` (rows with ``"limit"``, ``"distance"``, ``"uncertainty"``, ``"tolerance"``,
        ``"verdict"``), ``.plot()``.

    Examples
    --------
    >>> import numpy as np, kernels as kn, limits
    >>> net = kn.MLP(depth=64, activation=kn.ShapedReLU(1.0, -1.0, rate="width"), weight_var=1.0)
    >>> x = np.array([[1.0, 0.0], [0.3, 0.954]])
    >>> rep = limits.which_limit(net, x, width=64, samples=300, seed=0)   # doctest: +SKIP
    >>> rep.verdict("nngp"), rep.verdict("correlation_sde")                # doctest: +SKIP
    ('rejected', 'consistent')
    """
    from . import CorrelationSDE, ResNetODE, UnshapedCorrelationSDE, solve
    if not isinstance(net, (kn.MLP, kn.ResNet)):
        raise TypeError(f"net must be a kernels.MLP or kernels.ResNet, got {type(net).__name__}")
    per_layer = [k for k in ("weight_var", "bias_var", "input_bias_var", "readout_bias_var")
                 if isinstance(getattr(net, k, 0.0), tuple) or getattr(net, k, 0.0) is None]
    if per_layer:       # the depth limits assume one (weight_var, bias_var) for every layer
        raise ValueError(f"which_limit needs scalar variances (the same for every layer, no "
                         f"None bias), got per-layer or None values for {per_layer}")
    x = _checks.inputs(x, "x")
    if x.shape[0] != 2:
        raise ValueError(f"x must hold exactly two inputs (a pair), got shape {x.shape}")
    if np.any(np.sum(x * x, 1) == 0):
        raise ValueError("x has a zero input: its correlation with the other is undefined")
    width = _checks.positive_int(width, "width")
    samples = _checks.positive_int(samples, "samples")
    if samples < 2:
        raise ValueError(f"samples must be >= 2, got {samples}")
    tol = _checks.positive_float(tol, "tol")
    n_boot = _checks.positive_int(n_boot, "n_boot")
    if n_boot < 10:
        raise ValueError(f"n_boot must be >= 10, got {n_boot}")
    L = net.depth
    act = net.activation
    d = x.shape[1]
    rho_in = float(x[0] @ x[1] / math.sqrt((x[0] @ x[0]) * (x[1] @ x[1])))

    # --- simulation: output correlation ------------------------------------------------------
    p = kn.simulate_paths(net, x, width=width, samples=samples, seed=seed, layers=[L],
                          record="gram", progress=False)
    G = p.gram[:, 0]
    if isinstance(net, kn.ResNet):
        G = net.readout_weight_var * G + net.readout_bias_var
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = G[:, 0, 1] / np.sqrt(G[:, 0, 0] * G[:, 1, 1])
    if not np.all(np.isfinite(sim)):
        raise ValueError("some simulated networks have a zero output norm (dead units): the "
                         "output correlation is undefined; use another activation or width")

    # --- predictions ----------------------------------------------------------------------------
    predicted, desc = {}, {}
    kernel_net = net
    if isinstance(act, kn.ShapedReLU) and act.rate == "width":
        kernel_net = kn.MLP(depth=L, activation=act.resolved(width), weight_var=net.weight_var,
                            bias_var=net.bias_var)
    K = kernel_net.nngp(x)
    predicted["nngp"] = float(K[0, 1] / math.sqrt(K[0, 0] * K[1, 1]))
    desc["nngp"] = "infinite width, fixed depth: point mass at the NNGP correlation"
    rng_seed = np.random.SeedSequence(seed).spawn(2)
    if isinstance(net, kn.MLP) and net.bias_var == 0:
        K0 = net.weight_var * x @ x.T / d
        r0 = float(K0[0, 1] / math.sqrt(K0[0, 0] * K0[1, 1]))
        T = L / width
        if isinstance(act, kn.ShapedReLU):
            scale = 1.0 if act.rate == "width" else math.sqrt(width / L)
            sde = CorrelationSDE(act.c_plus * scale, act.c_minus * scale)
            if abs(r0) < 1:
                v = solve(sde, r0, [T], paths=_SDE_PATHS, seed=rng_seed[0],
                          dt=min(T / 200, 1e-3), method="heun").values[0]
                predicted["correlation_sde"] = v
                desc["correlation_sde"] = (f"shaped SDE, C = {sde.C:.4g}, at t = depth/width "
                                           f"= {T:.4g}")
        elif isinstance(act, kn.ABReLU) and act.a == 0.0 and act.b == 1.0:
            qT = UnshapedCorrelationSDE().sample_exact([T], _SDE_PATHS,
                                                       seed=rng_seed[0])[0]
            predicted["unshaped_sde"] = 1.0 - qT / L ** 2
            desc["unshaped_sde"] = f"unshaped q_t SDE at t = depth/width = {T:.4g}"
    if isinstance(net, kn.ResNet):
        s0, b0 = net.input_weight_var, net.input_bias_var
        K0 = s0 * x @ x.T / d + b0
        t_end = float(np.sum(net.alphas ** 2))
        ode_act = act.resolved(L) if isinstance(act, kn.ShapedReLU) else act
        KT = solve(ResNetODE(ode_act, net.weight_var, net.bias_var), K0,
                   [t_end]).values[0]
        KT = net.readout_weight_var * np.asarray(KT) + net.readout_bias_var
        predicted["resnet_ode"] = float(KT[0, 1] / math.sqrt(KT[0, 0] * KT[1, 1]))
        desc["resnet_ode"] = f"ResNet ODE to t = sum alpha^2 = {t_end:.4g}: point mass"

    # --- distances with bootstrap uncertainty -------------------------------------------------
    rng = np.random.default_rng(rng_seed[1])
    table = []
    for name, pred in predicted.items():
        point = np.ndim(pred) == 0
        dist = _w1_point(sim, pred) if point else _w1(sim, pred)
        boot = np.empty(n_boot)
        for b in range(n_boot):
            s = sim[rng.integers(0, sim.size, sim.size)]
            if point:
                boot[b] = _w1_point(s, pred)
            else:
                boot[b] = _w1(s, pred[rng.integers(0, pred.size, pred.size)])
        unc = float(np.std(boot, ddof=1))
        table.append(dict(limit=name, distance=dist, uncertainty=unc, tolerance=tol,
                          verdict="consistent" if dist < tol + 2 * unc else "rejected",
                          description=desc[name]))
    return WhichLimit(table=table, simulated=sim, predicted=predicted, depth=L, width=width,
                      input_correlation=rho_in)
