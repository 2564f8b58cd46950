"""Scaling statistics, exponents and the H1 / H2 verdict, and the trend / noise decomposition
(training.md §2.3; P2-code ``regression.compute_statistics``, ``plots_fully_connected``,
``denoising.coupling``)."""
import math
from dataclasses import dataclass

import numpy as np

from kernels._checks import finite_float, int_in_range, nonneg_float
from .trainer import TrainResult, _is_homogeneous, evaluate

__all__ = ["statistics", "increment", "detrended_cumsum", "Fit", "ScalingExponents",
           "scaling_exponents", "Decomposition", "decompose", "denoised_loss", "denoised_losses"]


# ----------------------------------------------------------------------------------------------
# statistics (training.md §2.3, P2-code regression.compute_statistics)
# ----------------------------------------------------------------------------------------------
def _sequence(name, T):
    try:
        a = np.asarray(T, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real array, got {type(T).__name__}")
    if a.ndim not in (2, 3) or a.shape[0] < 1:
        raise ValueError(f"{name} must have shape (L, d, d) or (L, d) with L >= 1, got "
                         f"{a.shape}")
    return a


def _norms(a):
    return np.sqrt(np.sum(a.reshape(a.shape[0], -1) ** 2, axis=1))


def increment(T, factor=0.0):
    """``Increment(factor) = L^factor max_{k>=1} ||T_k - T_{k-1}||`` (training.md §2.3);
    0 for L = 1."""
    T = _sequence("T", T)
    L = T.shape[0]
    if L < 2:
        return 0.0
    return float(L ** float(factor) * np.max(_norms(np.diff(T, axis=0))))


def detrended_cumsum(T):
    """Max norm of the detrended cumulative sum (P2-code; training.md §2.3).

    ``W_0 = 0, W_{k+1} = W_k + T_k``.  For L < 10: ``max_{k=1..L} ||W_k - (k/L) W_L||``.  Else,
    with ``win = max(3, int(0.1 L))``, for k = 1..L-1 subtract the mean of ``W_0..W_{2k-1}``
    (k < win), of ``W_{k-win}..W_{k+win-1}`` (k < L - win), or of ``W_{2k-L}..W_{L-1}``, and
    take the max of the norms.
    """
    T = _sequence("T", T)
    L = T.shape[0]
    flat = T.reshape(L, -1)
    W = np.vstack([np.zeros((1, flat.shape[1])), np.cumsum(flat, axis=0)])   # W_0..W_L
    if L < 10:
        k = np.arange(1, L + 1)
        return float(np.max(_norms(W[k] - (k / L)[:, None] * W[L])))
    win = max(3, int(0.1 * L))
    C = np.vstack([np.zeros((1, W.shape[1])), np.cumsum(W, axis=0)])        # C_j = sum_{i<j} W_i
    k = np.arange(1, L)
    lo = np.where(k < win, 0, np.where(k < L - win, k - win, 2 * k - L))
    hi = np.where(k < win, 2 * k, np.where(k < L - win, k + win, L))         # exclusive
    means = (C[hi] - C[lo]) / (hi - lo)[:, None]
    return float(np.max(_norms(W[k] - means)))


def statistics(T, factor=0.0):
    """All statistics of P2-code on one per-layer sequence (training.md §2.3).

    With Frobenius norms ``||.||`` (Euclidean for biases) and ``L = len(T)``::

        maximum             = max_k ||T_k||
        spectral            = max_k ||T_k||_2                  (Euclidean norm for biases)
        root_ssq            = sqrt(sum_k ||T_k||^2)
        quadratic_variation = sum_{k>=1} ||T_k - T_{k-1}||^2
        sobolev             = sqrt(L * quadratic_variation)
        increment           = L^factor max_{k>=1} ||T_k - T_{k-1}||
        cumsum              = ||sum_k T_k||
        detrended_cumsum    = see :func:`detrended_cumsum`

    Parameters
    ----------
    T : array (L, d, d) or (L, d)
    factor : float, default 0
        Exponent of the Increment statistic (P2 uses beta).

    Returns
    -------
    dict of float
    """
    T = _sequence("T", T)
    if not np.all(np.isfinite(T)):
        raise ValueError("T must be finite (a diverged run is excluded, never analysed)")
    L = T.shape[0]
    n = _norms(T)
    if T.ndim == 3:
        spec = float(np.max(np.linalg.norm(T, ord=2, axis=(1, 2))))
    else:
        spec = float(np.max(n))
    qv = float(np.sum(_norms(np.diff(T, axis=0)) ** 2)) if L > 1 else 0.0
    return dict(maximum=float(np.max(n)), spectral=spec, root_ssq=float(np.sqrt(np.sum(n * n))),
                quadratic_variation=qv, sobolev=float(math.sqrt(L * qv)),
                increment=increment(T, factor), cumsum=float(np.linalg.norm(T.sum(axis=0))),
                detrended_cumsum=detrended_cumsum(T))


# ----------------------------------------------------------------------------------------------
# exponents and the H1 / H2 verdict
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fit:
    """Least-squares line ``log y = intercept + slope log L``; ``stderr`` is the OLS standard
    error of the slope, ``sqrt(SSR / (n - 2) / Sxx)`` (nan for n = 2)."""

    slope: float
    stderr: float
    intercept: float


def _fit(depths, values):
    with np.errstate(divide="ignore", invalid="ignore"):    # log 0: checked just below
        x, y = np.log(np.asarray(depths, float)), np.log(np.asarray(values, float))
    if not np.all(np.isfinite(y)):
        return Fit(math.nan, math.nan, math.nan)
    xm = x.mean()
    sxx = float(np.sum((x - xm) ** 2))
    slope = float(np.sum((x - xm) * (y - y.mean())) / sxx)
    icpt = float(y.mean() - slope * xm)
    n = len(x)
    se = math.sqrt(float(np.sum((y - icpt - slope * x) ** 2)) / (n - 2) / sxx) if n > 2 \
        else math.nan
    return Fit(slope, se, icpt)


@dataclass
class ScalingExponents:
    """Result of :func:`scaling_exponents`.

    Attributes
    ----------
    depths : ndarray of the depths used
    beta, beta_stderr : weight exponent, ``-slope(log L, log max_k ||T_k||)``
    alpha, alpha_stderr : delta exponent ``-slope(log L, log max_k |delta_k|)`` (nan if no deltas)
    increment_slope, increment_stderr : slope of ``log Increment(factor=beta)``
    root_ssq_slope, root_ssq_stderr : slope of ``log RootSSQ``
    predictions : {'H1': (increment slope, root ssq slope), 'H2': (...)}
    h1, h2 : bool, whether each hypothesis is accepted
    verdict : 'ode' (H1 only), 'sde' (H2 only), 'neither' (both or none), or 'undetermined'
        (a statistic cannot be fitted, e.g. weights constant along the depth: ``evidence``
        says why; h1 and h2 are then False)
    evidence : str, the numbers behind the verdict
    statistics : dict name -> ndarray over depths (all of :func:`statistics`)
    excluded : list of (depth, reason) (diverged or non-finite runs; never fitted)
    """

    depths: np.ndarray
    beta: float
    beta_stderr: float
    alpha: float
    alpha_stderr: float
    increment_slope: float
    increment_stderr: float
    root_ssq_slope: float
    root_ssq_stderr: float
    predictions: dict
    h1: bool
    h2: bool
    verdict: str
    evidence: str
    statistics: dict
    excluded: list
    z: float = 3.0
    tol: float = 0.2


def _delta_entry(deltas, L):
    """|delta_k| of depth L from a user's ``deltas`` dict: length L (per layer) or 1 (one
    shared scalar), finite, not all zero."""
    if L not in deltas:
        raise ValueError(f"deltas has no entry for depth {L} (it must cover every depth of "
                         f"weights, or be None), got depths {sorted(deltas)}")
    try:
        dl = np.abs(np.asarray(deltas[L], dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        raise TypeError(f"deltas[{L}] must be a real array, got {deltas[L]!r}")
    if dl.shape[0] not in (1, L):
        raise ValueError(f"deltas[{L}] must have length {L} (one delta per layer) or 1 (a "
                         f"shared delta), got length {dl.shape[0]}")
    if not np.all(np.isfinite(dl)):
        raise ValueError(f"deltas[{L}] must be finite, got {deltas[L]!r}")
    if not np.max(dl) > 0:
        raise ValueError(f"deltas[{L}] is identically zero: log max |delta| is undefined")
    return dl


def _collect(weights, deltas):
    """depth -> (T, delta or None), with the excluded runs."""
    excluded, items = [], {}
    if isinstance(weights, dict):
        pairs = list(weights.items())
    else:
        try:
            pairs = [(None, w) for w in weights]
        except TypeError:
            raise TypeError(f"weights must map depth -> array (L, d, d) / (L, d), or be a "
                            f"sequence of TrainResult, got {type(weights).__name__}")
    for L, w in pairs:
        dl = None
        if isinstance(w, TrainResult):
            if L is not None and int(L) != w.depth:
                raise ValueError(f"weights key {L!r} does not match the run's depth {w.depth}")
            L = w.depth
            if w.diverged:
                excluded.append((L, "diverged (non-finite loss)"))
                continue
            dl = np.abs(w.scales) if w.delta_type != "none" else None
            w = w.effective_weights
        if L is None:
            raise TypeError("a sequence of weights must hold TrainResult objects; pass a dict "
                            "depth -> array for arrays")
        if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 1:
            raise ValueError(f"weights keys must be depths (integers >= 1), got {L!r}")
        T = _sequence(f"weights[{L}]", w)
        if T.shape[0] != L:
            raise ValueError(f"weights[{L}] must have {L} layers (first axis), got shape "
                             f"{T.shape}")
        if int(L) in items:
            raise ValueError(f"depth {L} appears twice in weights")
        if not np.all(np.isfinite(T)):
            excluded.append((int(L), "non-finite weights"))
            continue
        if deltas is not None:
            dl = _delta_entry(deltas, int(L))
        items[int(L)] = (T, dl)
    return dict(sorted(items.items())), excluded


def scaling_exponents(weights, deltas=None, *, z=3.0, tol=0.2):
    """Scaling exponents of trained ResNet weights against depth, and the regime verdict.

    ``beta = -slope(log L, log max_k ||T_k||)`` and ``alpha = -slope(log L, log max_k |delta_k|)``
    by least squares on log-log data (P2-code ``plots_fully_connected.py``; training.md §2.3),
    with OLS standard errors.  The H1/H2 diagnostic (training.md §2.3, our derivation,
    UNVERIFIED as P2 text) fits the slopes of ``Increment(factor=beta) = L^beta max ||T_k -
    T_{k-1}||`` and of ``RootSSQ = sqrt(sum_k ||T_k||^2)`` against log L and compares them with

    * H1 (smooth, ``T_k = L^-beta f(k/L)``): Increment slope -1, RootSSQ slope 1/2 - beta;
    * H2 (diffusive, ``T_k`` = increments of a process with non-zero quadratic variation, size
      ``L^-1/2``): Increment slope 0, beta = 1/2 (RootSSQ slope 0).

    Verdict (our rule, parameters ``z`` and ``tol``): a prediction holds when
    ``|measured - predicted| <= tol + z * stderr`` (``tol`` covers the slowly varying log factors
    of finite depths, e.g. the sqrt(2 log L) growth of a maximum of L Gaussians).  H1 needs
    ``Increment slope <= -1 + tol + z * stderr`` (one-sided: a Lipschitz profile has increments
    ``O(L^-1-beta)``; a steeper slope means the increments vanish even faster, as happens at
    finite depth while a trained profile flattens, and cannot come from a rough path), the
    RootSSQ prediction and ``beta > -tol``; H2 needs Increment slope 0 and ``beta`` = 1/2.
    'ode' if only H1 holds, 'sde' if only H2 holds, 'neither' otherwise (both or none;
    ``.evidence`` says which).

    Parameters
    ----------
    weights : dict depth -> array (L, d, d) or (L, d), or sequence / dict of TrainResult
        Effective per-layer weights (or biases) of one network per depth (>= 3 depths).  Runs
        that diverged or hold non-finite values are excluded and listed in ``.excluded``.
    deltas : dict depth -> array, optional
        |delta_k| per depth for alpha (taken from the TrainResults when those are given): for
        every depth of ``weights``, of length L (per layer) or 1 (shared), finite and not all
        zero; anything else is a ValueError.  Depth-1 entries have no increments: they are
        excluded (listed in ``.excluded``).
    z : float, default 3
    tol : float, default 0.2

    Returns
    -------
    ScalingExponents
    """
    z, tol = nonneg_float(z, "z"), nonneg_float(tol, "tol")
    if deltas is not None:
        if not isinstance(deltas, dict):
            raise TypeError(f"deltas must be a dict depth -> array of |delta_k| or None, got "
                            f"{type(deltas).__name__}")
    items, excluded = _collect(weights, deltas)
    if deltas is not None:
        extra = set(deltas) - set(items) - {L for L, _ in excluded}
        if extra:
            raise ValueError(f"deltas has depths {sorted(extra, key=str)} that are not in "
                             f"weights")
    for L in [L for L in items if L < 2]:
        del items[L]
        excluded.append((L, "depth 1: no increments, the H1 / H2 diagnostic needs L >= 2"))
    if len(items) < 3:
        raise ValueError(f"scaling_exponents needs at least 3 distinct depths with finite "
                         f"weights, got {sorted(items)} (excluded: {excluded})")
    depths = np.array(sorted(items))
    stats0 = [statistics(items[L][0]) for L in depths]
    for L, st in zip(depths, stats0):
        if st["maximum"] == 0.0:
            raise ValueError(f"weights[{L}] is identically zero: log max norm is undefined")
    fb = _fit(depths, [s["maximum"] for s in stats0])
    beta, beta_se = -fb.slope, fb.stderr
    stats = {k: np.array([s[k] for s in stats0]) for k in stats0[0]}
    stats["increment"] = np.array([increment(items[L][0], beta) for L in depths])
    fi = _fit(depths, stats["increment"])
    fr = _fit(depths, stats["root_ssq"])
    if all(items[L][1] is not None for L in depths):
        stats["max_delta"] = np.array([np.max(items[L][1]) for L in depths])
        fa = _fit(depths, stats["max_delta"])
        alpha, alpha_se = -fa.slope, fa.stderr
    else:
        alpha, alpha_se = math.nan, math.nan
    pred = {"H1": (-1.0, 0.5 - beta), "H2": (0.0, 0.0)}

    def ok(meas, se, exp):
        return bool(abs(meas - exp) <= tol + z * se)

    h1_inc = bool(fi.slope <= -1.0 + tol + z * fi.stderr)
    h1_ssq = ok(fr.slope, fr.stderr, 0.5 - beta)
    h1 = h1_inc and h1_ssq and beta > -tol
    h2_inc = ok(fi.slope, fi.stderr, 0.0)
    h2_beta = ok(beta, beta_se, 0.5)
    h2 = h2_inc and h2_beta
    verdict = "ode" if (h1 and not h2) else "sde" if (h2 and not h1) else "neither"
    undetermined = ""
    zero_inc = [int(L) for L, v in zip(depths, stats["increment"]) if not v > 0]
    if zero_inc:
        undetermined = (f"Increment is 0 at depths {zero_inc} (weights constant along the "
                        f"depth): log Increment and its slope are undefined")
    elif not all(math.isfinite(v) for v in (beta, beta_se, fi.slope, fi.stderr, fr.slope,
                                            fr.stderr)):
        undetermined = "a fitted slope or its standard error is not finite"
    if undetermined:
        h1 = h2 = False
        verdict = "undetermined"
    evidence = (f"beta = {beta:.3f} +- {beta_se:.3f}; Increment(beta) slope {fi.slope:.3f} +- "
                f"{fi.stderr:.3f} (H1 <= -1, H2 0); RootSSQ slope {fr.slope:.3f} +- "
                f"{fr.stderr:.3f} (1/2 - beta = {0.5 - beta:.3f}); band tol {tol} + {z} se; "
                f"H1 {'accepted' if h1 else 'rejected'} (increment {h1_inc}, root ssq {h1_ssq}),"
                f" H2 {'accepted' if h2 else 'rejected'} (increment {h2_inc}, beta 1/2 "
                f"{h2_beta})" + ("; both fit: undecided" if h1 and h2 else "")
                + (f"; undetermined: {undetermined}" if undetermined else ""))
    return ScalingExponents(depths, beta, beta_se, alpha, alpha_se, fi.slope, fi.stderr,
                            fr.slope, fr.stderr, pred, h1, h2, verdict, evidence, stats,
                            excluded, z, tol)


# ----------------------------------------------------------------------------------------------
# trend / noise decomposition (P2-code denoising.coupling)
# ----------------------------------------------------------------------------------------------
@dataclass
class Decomposition:
    """Trend and noise of the weights (see :func:`decompose`).

    Attributes
    ----------
    times : ndarray (n_times,), the grid on [0, 1]
    mean_integral : ndarray (n_times, ...), ``Ibar(t)``
    reference : tuple of the depths averaged into ``Ibar``
    trend : dict depth -> ndarray like the weights, ``Tbar_k``
    noise : dict depth -> ndarray (L, ...), ``L^(beta-1) cumsum_k (T_k - Tbar_k)``
    beta : float
    """

    times: np.ndarray
    mean_integral: np.ndarray
    reference: tuple
    trend: dict
    noise: dict
    beta: float


def _cum_on_grid(T, beta, n_times):
    L = T.shape[0]
    W = np.concatenate([np.zeros((1,) + T.shape[1:]), np.cumsum(T, axis=0)])
    t = np.linspace(0.0, 1.0, n_times)
    k = np.minimum(np.floor(t * L + 1e-9).astype(int), L)
    return L ** (beta - 1.0) * W[k]


def decompose(weights, beta, *, n_times=500, reference=None):
    """Trend / noise decomposition of P2-code ``denoising.coupling`` (training.md §2.3).

    ``cum_L(t_i) = L^(beta-1) sum_{k < t_i L} T_k`` on ``n_times`` points of [0, 1];
    ``Ibar = `` mean of ``cum_L`` over the ``reference`` depths; trend
    ``Tbar_k = L^-beta (n_times - 1) (Ibar[i+1] - Ibar[i])``, ``i = floor((n_times - 1) k / L)``
    (P2-code writes 500 for the grid spacing of ``linspace(0, 1, 500)``; we use the exact
    spacing); noise ``L^(beta-1) cumsum_k (T_k - Tbar_k)``.

    Parameters
    ----------
    weights : dict depth -> array (L, d, d) or (L, d)
    beta : float
    n_times : int, default 500
    reference : sequence of depths, optional
        Default as P2-code: the depths at sorted positions -8..-5 restricted to L > 500; if that
        leaves none, the (up to) 4 deepest.

    Returns
    -------
    Decomposition
    """
    beta = finite_float(beta, "beta")
    n_times = int_in_range(n_times, "n_times", 2)
    items, excluded = _collect(weights, None)
    if not items:
        raise ValueError(f"weights has no finite run (excluded: {excluded})")
    depths = sorted(items)
    if reference is None:
        ref = [L for L in depths[-8:-4] if L > 500] or depths[-4:]
    else:
        ref = [int(L) for L in reference]
        for L in ref:
            if L not in items:
                raise ValueError(f"reference depth {L!r} is not in weights {depths}")
    Ibar = np.mean([_cum_on_grid(items[L][0], beta, n_times) for L in ref], axis=0)
    h = n_times - 1
    trend, noise = {}, {}
    for L in depths:
        T = items[L][0]
        i = np.minimum(np.floor(h * np.arange(L) / L).astype(int), h - 1)
        Tb = L ** (-beta) * h * (Ibar[i + 1] - Ibar[i])
        trend[L] = Tb
        noise[L] = L ** (beta - 1.0) * np.cumsum(T - Tb, axis=0)
    return Decomposition(np.linspace(0, 1, n_times), Ibar, tuple(ref), trend, noise, beta)


def denoised_loss(result, trend_A, trend_b, X, Y):
    """Loss of ``result``'s network with its effective weights replaced by a trend (P2-code
    ``denoising``): for a positively homogeneous activation with 'multi' delta the branch
    scale becomes ``sign(delta_k)`` (the trend already carries |delta_k|); otherwise delta is
    kept."""
    if result.delta_type == "multi" and _is_homogeneous(result.activation):
        delta = np.sign(result.delta)
    else:
        delta = result.delta
    return evaluate(trend_A, trend_b, delta, X, Y, activation=result.activation,
                    delta_type=result.delta_type)


def denoised_losses(results, beta, X, Y, *, n_times=500, reference=None):
    """Re-evaluate every network with its denoised weights (P2-code ``denoising.coupling``).

    The effective weights and biases of all runs are decomposed with :func:`decompose` (same
    ``beta``, ``n_times`` and ``reference`` depths), and each network is evaluated on ``(X, Y)``
    with the trends ``(Tbar_k, bbar_k)`` in place of its weights (:func:`denoised_loss`).

    Parameters
    ----------
    results : dict depth -> TrainResult, sequence of TrainResult, or a Study
    beta : float
    X, Y : array (n, d)

    Returns
    -------
    dict depth -> (original loss, denoised loss)
    """
    from .studies import Study
    if isinstance(results, Study):
        results = results.results
    runs = results.values() if isinstance(results, dict) else results
    runs = {r.depth: r for r in runs if isinstance(r, TrainResult) and not r.diverged}
    if not runs:
        raise ValueError("results holds no finite TrainResult")
    wA = decompose({L: r.effective_weights for L, r in runs.items()}, beta, n_times=n_times,
                   reference=reference)
    wb = decompose({L: r.effective_biases for L, r in runs.items()}, beta, n_times=n_times,
                   reference=wA.reference)
    out = {}
    for L, r in sorted(runs.items()):
        orig = evaluate(r.A, r.b, r.delta, X, Y, activation=r.activation,
                        delta_type=r.delta_type)
        out[L] = (orig, denoised_loss(r, wA.trend[L], wb.trend[L], X, Y))
    return out
