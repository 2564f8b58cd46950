"""Width exponents and the empirical phase diagram (P1 §4.1.2, Eq. (19), Fig. 3, 4).

:func:`slope` trains at several widths and seeds and fits ``S_w``; :func:`diagram` does it over
a (gamma, gamma') grid and locates the zero crossings (:func:`zero_crossings`).  Every run is
one point of ``limits.sweep`` (the one grid runner; ``_run_points``), so any executor and a
resumable store work for both.
"""
import math
import warnings
from dataclasses import dataclass

import numba
import numpy as np

from kernels._checks import finite_array, flag, int_in_range, positive_float

from ._coordinates import from_gamma
from ._training import (TrainingFailed, _beta_1, _check_state_memory, _data, _max_steps,
                        _phase_point)

__all__ = ["DEFAULT_WIDTHS", "Slope", "slope", "zero_crossings", "Diagram", "diagram"]

DEFAULT_WIDTHS = (1000, 5000, 10000, 20000, 40000)   # P1 Fig. 3 and 4


def _widths(widths):
    try:
        ws = tuple(widths)
    except TypeError:
        raise TypeError(f"widths must be a sequence of integers, got {widths!r}")
    if len(ws) < 2:
        raise ValueError(f"widths needs at least 2 distinct widths to fit a slope, got {widths!r}")
    ws = tuple(int_in_range(w, "widths", 2) for w in ws)
    if len(set(ws)) != len(ws):
        raise ValueError(f"widths must be distinct, got {widths!r}")
    return ws


def _seeds(seeds):
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        seeds = (seeds,)
    try:
        ss = tuple(seeds)
    except TypeError:
        raise TypeError(f"seeds must be an integer or a sequence of integers, got {seeds!r}")
    if len(ss) < 1:
        raise ValueError(f"seeds must not be empty, got {seeds!r}")
    for s in ss:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"seeds must be non-negative integers, got {seeds!r}")
    if len(set(ss)) != len(ss):
        raise ValueError(f"seeds must be distinct, got {seeds!r}")
    return tuple(int(s) for s in ss)


def _fit(log_m, log_rd):
    """Least-squares slope of log RD on log m (P1 Eq. (19); P1-code np.polyfit(..., 1)[0]) and
    its OLS standard error (nan with 2 widths)."""
    x = log_m - log_m.mean()
    b = float(np.dot(x, log_rd - log_rd.mean()) / np.dot(x, x))
    if len(x) > 2:
        res = log_rd - log_rd.mean() - b * x
        se = float(math.sqrt(np.dot(res, res) / (len(x) - 2) / np.dot(x, x)))
    else:
        se = float("nan")
    return b, se


@dataclass
class Slope:
    """S_w at one (gamma, gamma') (P1 Eq. (19)).

    Attributes
    ----------
    value : float
        Mean over seeds of the least-squares slope of log RD on log m (equal to the slope of the
        seed-averaged log RD, since the fit is linear).
    stderr : float
        Standard error over seeds, ``std(ddof=1)/sqrt(#seeds)``; with one seed, the OLS
        standard error of the fit (``method`` says which).
    per_seed : ndarray (S,)
    rd : ndarray (S, W)
        RD(theta_w*) per seed and width.
    widths, seeds : tuple
    gamma, gamma_prime : float
    method : str
    """

    value: float
    stderr: float
    per_seed: np.ndarray
    rd: np.ndarray
    widths: tuple
    seeds: tuple
    gamma: float
    gamma_prime: float
    method: str

    def __float__(self):
        return self.value


def _train_kw(kw):
    """The options :func:`slope` and :func:`diagram` pass to :func:`train`, checked as
    :func:`train` checks them (before any run starts; a bad value would otherwise fail every
    run); NumPy scalars become Python numbers, other values are kept as given (they are part
    of the stored parameters)."""
    allowed = {"asi", "tol", "max_steps", "step_factor", "curvature_factor", "lr",
               "increase_tol", "max_restarts"}
    bad = set(kw) - allowed
    if bad:
        raise TypeError(f"unknown keyword arguments {sorted(bad)}; allowed: {sorted(allowed)}")
    kw = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in kw.items()}
    for k, v in kw.items():
        if k == "asi":
            flag(v, k)
        elif k == "max_steps":
            _max_steps(v)
        elif k == "max_restarts":
            int_in_range(v, k, 0)
        elif not (k == "lr" and v is None):
            positive_float(v, k)
    return kw


def _slope_from_rd(rd, widths, seeds, gamma, gamma_prime):
    if np.any(rd <= 0):
        raise TrainingFailed(f"RD = 0 at (gamma, gamma') = ({gamma}, {gamma_prime}) for some "
                             f"width: the weights never moved (R_S < tol at initialisation?), "
                             f"log RD is undefined; RD = {rd.tolist()}")
    lm = np.log(np.asarray(widths, dtype=float))
    fits = [_fit(lm, np.log(row)) for row in rd]
    per_seed = np.array([b for b, _ in fits])
    if len(seeds) >= 2:
        se, method = float(per_seed.std(ddof=1) / math.sqrt(len(seeds))), "seeds"
    else:
        se, method = fits[0][1], "ols"
    return Slope(float(per_seed.mean()), se, per_seed, rd, tuple(widths), tuple(seeds),
                 float(gamma), float(gamma_prime), method)


def _check_data_for_points(X, y):
    """The data as nested lists for the grid points (None, None for the default data), and
    its (n, d)."""
    default = X is None and y is None
    X, y = _data(X, y)
    n, d = X.shape
    if default:
        return None, None, n, d
    return X.tolist(), y.tolist(), n, d


def _check_points(gammas, gamma_primes, widths, e1, n, d):
    """Every (gamma, gamma', m) must give representable scales, and the widest run must fit in
    memory: refuse now, naming the argument, rather than fail every run of the grid."""
    _check_state_memory(max(widths), n, d)
    for m in widths:
        b1 = _beta_1(m, e1)
        for gp in gamma_primes:
            for g in gammas:
                from_gamma(g, gp, m, b1)


def _default_workers():
    import os
    return max(1, min(os.cpu_count() or 1, numba.config.NUMBA_NUM_THREADS))


def _run_points(points, executor, store, name, workers, progress):
    """Run :func:`train` at every point through ``limits.sweep`` (the one grid runner).

    On ``executor`` if given, else on ``workers`` threads (the compiled loop releases the GIL,
    so threads use the cores with no process start-up); ``store=None`` keeps the records in
    memory.  The widest runs are submitted first (they take longest).  Returns
    ``(results, errors, summary)``: per point the results dict or None, and the error text of
    each failed point by index."""
    from concurrent.futures import ThreadPoolExecutor

    from limits import sweep

    if workers is not None:
        workers = int_in_range(workers, "workers", 1)
    order = sorted(range(len(points)), key=lambda i: -points[i]["m"])
    own = executor is None
    if own:
        executor = ThreadPoolExecutor(_default_workers() if workers is None else workers)
    try:
        records, summary = sweep.collect(_phase_point, [points[i] for i in order], store,
                                         name=name, executor=executor, seed=0,
                                         progress=progress, retries=0)
    finally:
        if own:
            executor.shutdown(wait=True)
    errors_by_key = {f.key: f.error for f in summary.failed}
    results, errors = [None] * len(points), {}
    for i, rec in zip(order, records):
        if rec is not None:
            results[i] = rec.results
        else:
            errors[i] = errors_by_key.get(sweep.point_key(points[i]), "not run")
    return results, errors, summary


def slope(gamma, gamma_prime, widths=DEFAULT_WIDTHS, seeds=(0, 1, 2), *, beta1_exponent=0.0,
          X=None, y=None, workers=None, progress=False, executor=None, store=None,
          name="phase_slope", **train_kw):
    """Width exponent ``S_w = lim log RD(theta_w*) / log m`` at one (gamma, gamma').

    Estimated as in P1 §4.1.2 (Eq. (19), Fig. 3): for every seed, train at every width
    (:func:`train`), fit a least-squares line through ``(log m, log RD)`` and take its slope;
    report the mean over seeds and its standard error.

    Parameters
    ----------
    gamma, gamma_prime : float
    widths : sequence of int, default (1000, 5000, 10000, 20000, 40000)
        At least 2 distinct widths, each >= 2 (P1 Fig. 3, 4).
    seeds : int or sequence of int, default (0, 1, 2)
    beta1_exponent : float, default 0
        ``beta_1 = m^-beta1_exponent`` (then ``beta_2 = beta_1 m^gamma'``,
        ``alpha = beta_1 beta_2 m^gamma``); P1 Fig. 3(d) uses 0, 1/2 and 1.
    X, y : array_like, optional
        Training data; default the 1-d data of P1 §3.1.
    workers : int, optional
        Trainings run at once on threads (default: the number of cores); ignored with
        ``executor``.
    progress : bool, default False
    executor : concurrent.futures.Executor, optional
        Where the runs go instead (e.g. ``ProcessPoolExecutor``, a dask client's executor).
    store : str or path, optional
        SQLite sweep store: stored runs are reused, new ones kept (see :func:`diagram`).
        Default: an in-memory store, nothing kept.
    name : str, default "phase_slope"
        Experiment name in the store.
    **train_kw
        Passed to :func:`train` (``tol``, ``max_steps``, ``step_factor``, ...).
        The runs go through ``limits.sweep`` like :func:`diagram`'s, with the same numbers.

    Returns
    -------
    Slope
        ``.value`` (S_w), ``.stderr``, ``.rd`` (seeds x widths).

    Raises
    ------
    ValueError
        Bad arguments, before any run; or scales that :func:`train` refuses for a seed's
        initialisation (e.g. not trainable in float64).
    TrainingFailed
        If any run hit its step budget or diverged (failed runs are never fitted).
    """
    gamma = float(finite_array(gamma, "gamma"))
    gamma_prime = float(finite_array(gamma_prime, "gamma_prime"))
    widths = _widths(widths)
    seeds = _seeds(seeds)
    e1 = float(finite_array(beta1_exponent, "beta1_exponent"))
    Xl, yl, n, d = _check_data_for_points(X, y)
    kw = _train_kw(dict(train_kw))
    _check_points([gamma], [gamma_prime], widths, e1, n, d)
    points = [dict(gamma=gamma, gamma_prime=gamma_prime, m=m, seed=s, beta1_exponent=e1, X=Xl,
                   y=yl, **kw) for s in seeds for m in widths]
    res, errors, _ = _run_points(points, executor, store, name, workers, progress)
    failed = [(points[i]["m"], points[i]["seed"], errors[i]) for i in sorted(errors)]
    refused = [f for f in failed if f[2].startswith("ValueError: ")]
    if refused:                     # train refused the scales (e.g. not trainable in float64)
        m, seed, error = refused[0]
        raise ValueError(f"{error[len('ValueError: '):]} (seed={seed}; {len(refused)} of "
                         f"{len(points)} runs refused)")
    if failed:
        raise TrainingFailed(f"{len(failed)} of {len(points)} runs failed at (gamma, gamma') = "
                             f"({gamma}, {gamma_prime}): {failed}")
    rd = np.array([r["rd"] for r in res]).reshape(len(seeds), len(widths))
    return _slope_from_rd(rd, widths, seeds, gamma, gamma_prime)


def zero_crossings(gammas, S):
    """Zero crossing of S_w in gamma for each gamma' (P1 Fig. 4 stars): the first change of sign
    from S_w < 0 to S_w >= 0 along increasing gamma, located by linear interpolation.

    Parameters
    ----------
    gammas : array_like (G,), increasing
    S : array_like (G', G)
        S_w with gamma' along the rows; nan entries are skipped.

    Returns
    -------
    ndarray (G',)
        nan where S_w does not change sign.
    """
    g = np.asarray(gammas, dtype=float)
    S = np.atleast_2d(np.asarray(S, dtype=float))
    if S.shape[1] != g.shape[0]:
        raise ValueError(f"S must have shape (G', {g.shape[0]}), got {S.shape}")
    out = np.full(S.shape[0], np.nan)
    for r, row in enumerate(S):
        ok = np.isfinite(row)
        gg, ss = g[ok], row[ok]
        for k in range(len(ss) - 1):
            if ss[k] < 0 <= ss[k + 1]:
                out[r] = gg[k] + (0.0 - ss[k]) * (gg[k + 1] - gg[k]) / (ss[k + 1] - ss[k])
                break
    return out


@dataclass
class Diagram:
    """The empirical phase diagram (P1 Fig. 4).

    Attributes
    ----------
    gammas : ndarray (G,)
    gamma_primes : ndarray (G',)
    widths, seeds : tuple
    slope, stderr : ndarray (G', G)
        S_w and its standard error (rows: gamma', columns: gamma); nan where a run failed.
    rd : ndarray (G', G, S, W)
    crossings : ndarray (G',)
        Zero crossing of S_w in gamma for each gamma' (:func:`zero_crossings`).
    failures : list of dict
        The runs that failed (parameters and message); they are not in ``rd``.
    sweep_summary : limits.sweep.Summary or None
        What the sweep did (points skipped because stored, completed now, stored meanwhile by
        another coordinator, failed).
    """

    gammas: np.ndarray
    gamma_primes: np.ndarray
    widths: tuple
    seeds: tuple
    slope: np.ndarray
    stderr: np.ndarray
    rd: np.ndarray
    crossings: np.ndarray
    failures: list
    sweep_summary: object = None


def diagram(gammas, gamma_primes, widths=DEFAULT_WIDTHS, seeds=(0,), executor=None, store=None,
            *, name="phase_diagram", beta1_exponent=0.0, X=None, y=None, progress=True,
            workers=None, **train_kw):
    """Empirical phase diagram: S_w over a (gamma, gamma') grid (P1 §4.1.2, Fig. 4).

    Every (gamma, gamma', m, seed) is one training run (:func:`train`); S_w per grid point is
    fitted as in :func:`slope`, and the zero crossings of S_w in gamma per gamma' by linear
    interpolation (:func:`zero_crossings`).

    The runs go through ``limits.sweep`` (point function ``limits.phase._phase_point``) on
    ``executor``, by default on ``workers`` threads (the compiled loop releases the GIL).
    With ``store`` every run is one row of that SQLite file, so a stopped diagram resumes
    where it stopped, nothing stored is recomputed, and coordinators sharing the store share
    the runs; without it the records are kept in memory for this call only.  Failed runs are
    recorded by the sweep (``limits.sweep.failures``), never as results, and a RuntimeWarning
    says how many failed.  Measured: the P1 Fig. 4 grid (9 x 9 points, 5 widths, 1 seed) takes
    about 1 min on 2 threads, 2.5 min through a process pool on a shared 2-core machine;
    stopped at 63/405 and restarted, it recomputed none of them.

    Parameters
    ----------
    gammas, gamma_primes : sequence of float
        Grid axes; gammas increasing.
    widths : sequence of int, default (1000, 5000, 10000, 20000, 40000)
    seeds : int or sequence of int, default (0,)
    executor : concurrent.futures.Executor, optional
        Where the runs go (default: ``workers`` threads).
    store : str or path, optional
        SQLite file of the sweep store (default: in memory, nothing kept).
    name : str, default "phase_diagram"
        Experiment name in the store.
    beta1_exponent : float, default 0
        ``beta_1 = m^-beta1_exponent`` (see :func:`slope`).
    X, y : array_like, optional
        Training data (default: the 1-d data of P1 §3.1).
    progress : bool, default True
    workers : int, optional
        Threads when no ``executor`` is given (default: the number of cores).
    **train_kw
        Passed to :func:`train`.

    Returns
    -------
    Diagram
        Failed runs are listed in ``.failures`` and leave nan in ``.slope``; they are never
        written as results.
    """
    g = finite_array(gammas, "gammas").reshape(-1)
    gp = finite_array(gamma_primes, "gamma_primes").reshape(-1)
    if g.size < 1 or gp.size < 1:
        raise ValueError(f"gammas and gamma_primes must not be empty, got {gammas!r}, "
                         f"{gamma_primes!r}")
    if np.any(np.diff(g) <= 0):
        raise ValueError(f"gammas must be increasing, got {gammas!r}")
    if np.unique(gp).size != gp.size:
        raise ValueError(f"gamma_primes must be distinct, got {gamma_primes!r}")
    widths = _widths(widths)
    seeds = _seeds(seeds)
    e1 = float(finite_array(beta1_exponent, "beta1_exponent"))
    Xl, yl, n, d = _check_data_for_points(X, y)
    kw = _train_kw(dict(train_kw))
    _check_points(g, gp, widths, e1, n, d)
    points = [dict(gamma=float(a), gamma_prime=float(b), m=m, seed=s, beta1_exponent=e1,
                   X=Xl, y=yl, **kw)
              for b in gp for a in g for s in seeds for m in widths]
    results, errors, summary = _run_points(points, executor, store, name, workers, progress)
    failures = [{"params": {k: points[i][k] for k in ("gamma", "gamma_prime", "m", "seed")},
                 "error": errors[i]} for i in sorted(errors)]
    if failures:
        warnings.warn(f"phase.diagram: {len(failures)} of {len(points)} runs failed (first: "
                      f"{failures[0]['params']} -> {failures[0]['error']}); they are listed in "
                      f"Diagram.failures and leave nan in the slope", RuntimeWarning,
                      stacklevel=2)
    rd = np.array([np.nan if r is None else float(r["rd"]) for r in results])
    rd = rd.reshape(gp.size, g.size, len(seeds), len(widths))     # the order of the points
    S = np.full((gp.size, g.size), np.nan)
    SE = np.full((gp.size, g.size), np.nan)
    for r in range(gp.size):
        for c in range(g.size):
            block = rd[r, c]
            if np.all(np.isfinite(block)):
                try:
                    s = _slope_from_rd(block, widths, seeds, g[c], gp[r])
                except TrainingFailed as exc:
                    failures.append({"params": {"gamma": float(g[c]),
                                                "gamma_prime": float(gp[r])},
                                     "error": str(exc)})
                    continue
                S[r, c], SE[r, c] = s.value, s.stderr
    return Diagram(g, gp, widths, seeds, S, SE, rd, zero_crossings(g, S), failures, summary)

