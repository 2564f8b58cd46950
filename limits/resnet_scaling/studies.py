"""A depth grid of runs (:func:`study`), always through ``limits.sweep.run_grid``."""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from kernels._checks import int_in_range

from ._checks import _choice
from .data import digits_data, ode_data
from .stats import ScalingExponents, scaling_exponents  # noqa: F401
from .trainer import ACTIVATIONS, TrainResult, train

__all__ = ["Study", "study"]


# ----------------------------------------------------------------------------------------------
# a depth grid of runs
# ----------------------------------------------------------------------------------------------
@dataclass
class Study:
    """Runs over a depth grid and their exponents (:func:`study`)."""

    results: dict
    weights: "Optional[ScalingExponents]"
    biases: "Optional[ScalingExponents]"
    failures: list


def _point(params, rng_seed=None):
    """One grid point for ``limits.sweep.run_grid``: trains with ``params["seed"]`` (the run is
    deterministic from it; ``rng_seed`` is not used) and returns the weights as arrays."""
    p = dict(params)
    data_kw = p.pop("data_kw", {}) or {}
    data = (digits_data if p.pop("data") == "digits" else ode_data)(**data_kw)
    if "betas" in p:
        p["betas"] = tuple(p["betas"])
    r = train(p.pop("depth"), data, **p)
    out = dict(depth=r.depth, d=r.d, activation=r.activation, delta_type=r.delta_type,
               loss_history=np.asarray(r.loss_history, dtype=float), test_loss=r.test_loss,
               stop=r.stop, settings=r.settings, A=None, b=None, delta=None)
    if not r.diverged:
        out.update(A=r.A, b=r.b, delta=np.asarray(r.delta, dtype=float))
    return out


def _from_record(rec):
    """The :class:`TrainResult` of one stored point (``rec``: what :func:`_point` returned,
    arrays restored by ``sweep.load``); the initial values are not stored (None)."""
    d, L = int(rec["d"]), int(rec["depth"])
    if rec["A"] is None:                       # a diverged run stores no weights
        A, b, delta = np.full((L, d, d), np.nan), np.full((L, d), np.nan), np.zeros(0)
    else:
        A, b, delta = (np.asarray(rec[k], dtype=float) for k in ("A", "b", "delta"))
    settings = dict(rec["settings"])
    settings["betas"] = tuple(settings["betas"])
    return TrainResult(L, d, rec["activation"], rec["delta_type"], A, b, delta, None, None, None,
                       np.asarray(rec["loss_history"], dtype=float), float(rec["test_loss"]),
                       rec["stop"], settings)


def study(depths, *, data="ode", data_kw=None, seed=0, executor=None, store=None, name=None,
          progress=False, **train_kw):
    """Train one network per depth and fit the exponents (P2 §"experiments"; training.md §2).

    The runs always go through ``limits.sweep.run_grid`` (one grid point per depth, function
    ``limits.resnet_scaling.studies._point``): into ``store`` when one is given (a rerun skips
    the stored depths), else into a temporary store deleted on return.  Every run is
    deterministic from ``seed`` and its depth (see :func:`train`), so the results do not depend
    on the executor or the store.

    Parameters
    ----------
    depths : sequence of int (>= 3 distinct), e.g. ``depth_grid(max_depth=300)``
    data : {'ode', 'digits'}
    data_kw : dict, optional, passed to :func:`ode_data` / :func:`digits_data`
    seed : int
    executor : concurrent.futures.Executor, optional
        Where the runs go (any executor ``run_grid`` accepts: a process pool, a dask client's
        executor, ...).  Default: one worker thread in this process (the compiled passes
        release the GIL; no process start-up).
    store : str, optional
        SQLite store of ``limits.sweep.run_grid`` to keep the runs in.
    name : str, optional
        Experiment name in the store (default ``resnet_scaling_<activation>_<delta>_<data>``).
    progress : bool, default False
        ``run_grid``'s progress bar.
    **train_kw : passed to :func:`train` (e.g. ``loader="p2-collapsed"``, ``patience``)

    Returns
    -------
    Study
        ``.results`` depth -> TrainResult (``A0``, ``b0``, ``delta0`` are None: the store keeps
        the trained values only); ``.weights`` / ``.biases`` the :class:`ScalingExponents` of
        the effective weights / biases (None when fewer than 3 depths are usable);
        ``.failures`` (depth, reason) of the diverged runs, and of the points that raised
        (``'failed: <error>'``).  Runs that stopped on 'plateau' or 'max_epochs' (loss still
        >= epsilon) are fitted, as in P2-code; to leave them out, pass ``[r for r in
        study.results.values() if r.stop == 'epsilon']`` to :func:`scaling_exponents`.
    """
    import concurrent.futures as cf
    import tempfile
    import warnings

    from limits import sweep

    try:
        ds = sorted({int_in_range(L, "depths", 1) for L in depths})
    except TypeError as exc:
        if "depths" in str(exc):
            raise
        raise TypeError(f"depths must be a sequence of integers, got {depths!r}")
    data = _choice("data", data, ("ode", "digits"))
    data_kw = dict(data_kw or {})
    seed = int_in_range(seed, "seed", 0)
    train_kw = dict(train_kw)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {progress!r}")
    # every training argument is checked once, before any run: a one-layer, one-epoch run on
    # the same data (microseconds) raises what train() would raise
    if not isinstance(train_kw.get("activation", "tanh"), str):
        raise TypeError(f"study keeps its runs in a sweep store whose points are JSON, so "
                        f"activation must be one of the aliases {tuple(ACTIVATIONS)}, got "
                        f"{train_kw['activation']!r}; train a kernels.Activation with train() "
                        f"per depth")
    probe = (ode_data if data == "ode" else digits_data)(**data_kw)
    if "max_epochs" in train_kw:
        int_in_range(train_kw["max_epochs"], "max_epochs", 1)
    train(1, probe, **dict(train_kw, max_epochs=1, seed=seed))
    points = [dict(depth=L, data=data, data_kw=data_kw, seed=seed, **train_kw) for L in ds]
    nm = name or (f"resnet_scaling_{train_kw.get('activation', 'tanh')}_"
                  f"{train_kw.get('delta_type', 'shared')}_{data}")
    own = executor is None
    ex = cf.ThreadPoolExecutor(1) if own else executor
    tmp = tempfile.TemporaryDirectory(prefix="resnet_scaling_") if store is None else None
    where = store if tmp is None else f"{tmp.name}/study.sqlite"
    try:
        with warnings.catch_warnings():
            # run_grid's summary warning of failed points: they are in .failures below
            warnings.filterwarnings("ignore", message="run_grid ", category=RuntimeWarning)
            summary = sweep.run_grid(_point, points, where, name=nm, executor=ex, seed=seed,
                                     progress=progress, retries=0)
        want = {sweep.point_key(p): L for L, p in zip(ds, points)}
        results = {}
        for rec in sweep.load(where, nm):
            L = want.get(rec.key)
            if L is not None:
                results[L] = _from_record(rec.results)
    finally:
        if own:
            ex.shutdown(wait=True)
        if tmp is not None:
            tmp.cleanup()
    failures = [(L, r.stop) for L, r in results.items() if r.diverged]
    failed = {int(f.params["depth"]): f.error for f in summary.failed}
    failures += [(L, f"failed: {failed[L]}" if L in failed else "missing")
                 for L in ds if L not in results]
    good = {L: r for L, r in results.items() if not r.diverged}
    fw = fb = None
    if len(good) >= 3:
        fw = scaling_exponents(list(good.values()))
        bia = {L: r.effective_biases for L, r in good.items()}
        fb = scaling_exponents(bia)
    return Study(dict(sorted(results.items())), fw, fb, failures)
