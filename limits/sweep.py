"""Grids of independent runs on any executor, with a resumable SQLite store.

A *grid* is a list of parameter dicts (:func:`product` builds the Cartesian product of axes).
:func:`run_grid` calls ``fn(params, rng_seed) -> dict`` once per grid point on any
:class:`concurrent.futures.Executor` -- by default a local process pool over the available
cores; ``dask.distributed.Client(...).get_executor()`` runs the same grid on a cluster with no
code change -- and stores each completed run in an SQLite file.  :func:`load` returns one
:class:`Record` per stored point, :func:`failures` the recorded failures.  :func:`collect` is
:func:`run_grid` followed by reading the grid's own records back, in grid order, with an
in-memory store when none is given: the one way the library's own studies run their grids.

Contract of ``fn``
------------------
* ``fn`` is a module-level function, importable as ``fn.__module__`` + ``fn.__qualname__`` in
  the coordinating process *and* in the workers (workers receive the reference
  ``"module:qualname"``, never a pickled function).  Lambdas, nested functions,
  ``functools.partial`` and functions of an interactive ``__main__`` (a notebook) are refused
  before any work starts: put ``fn`` in a ``.py`` module and pass constants as parameters.
* ``params`` is the point's dict after a JSON round trip of its canonical form (keys sorted,
  tuples as lists, NumPy scalars as Python numbers): exactly what :func:`load` returns later.
* ``rng_seed`` is a :class:`numpy.random.SeedSequence` that depends only on the root ``seed``
  and the point's parameters (see :func:`point_seed`)::

      h = sha256(canonical_json(params))                  # canonical: sorted keys, no spaces
      words = 4 big-endian uint32 of h[:16]
      rng_seed = SeedSequence(root.entropy, spawn_key=root.spawn_key + words)

  where ``root = SeedSequence(seed)`` for an int ``seed``.  It is the same whatever the
  executor, the number of workers, the order of completion, a retry or a later rerun; use
  ``np.random.default_rng(rng_seed)``, or ``rng_seed.spawn(k)`` for independent sub-streams.
  It does not depend on the experiment ``name``.
* ``fn`` returns a dict with ``str`` keys.  Values are JSON-able (``None``, bool, int, float --
  NaN and infinities kept -- str, lists and dicts of those; NumPy scalars become Python
  numbers) or, at the top level, :class:`numpy.ndarray` (not of object dtype), stored as
  ``.npy`` blobs written and read with ``allow_pickle=False``.

Store
-----
One SQLite file (stdlib :mod:`sqlite3`, WAL journal, ``synchronous=NORMAL``: a crash of the
process loses nothing committed, a power cut at most the last commits; the file stays
consistent).  Table ``points`` has one row per (experiment name, sha256 of the canonical
parameters) with the parameters and results as JSON; ``arrays`` holds the array results;
``failures`` every failed attempt with its traceback text.  Only coordinating processes
write, one transaction per completed run, so the store must be on a disk of the machine that
calls :func:`run_grid` (workers never open it; SQLite's WAL does not work on network file
systems).  A rerun skips the stored points and retries the failed ones.  An experiment name is
bound to one ``fn`` and one root seed: rerunning it with another raises ``ValueError``.  An
SQLite file that is not a sweep store is refused and left untouched.

Several coordinators (processes calling :func:`run_grid` on one store at once) share the
work: each *leases* the points it submits (a row in the store with an expiry, renewed while it
runs), and skips the points leased to the others, then waits for them; the points of a
coordinator that died are taken over at once if it ran on this machine, else when their lease
expires (``lease`` seconds, default 60).
Every point is computed once (twice only if a live coordinator stalls for longer than its
lease), and each :class:`Summary` says what its own call stored and what the others did.

Processes
---------
The default pool's workers exit within moments when the coordinator dies, even by SIGKILL
(they watch a pipe that only the coordinator holds); the fork server and the resource tracker
follow.  A script that calls :func:`run_grid` at its top level must do so under
``if __name__ == "__main__":`` (the workers import the main module again); if it does not,
the error says so.

Example
-------
>>> from limits import sweep                                          # doctest: +SKIP
>>> grid = sweep.product(width=[64, 256, 1024], depth=[2, 8])         # doctest: +SKIP
>>> sweep.run_grid(mymodule.train_once, grid, "runs.sqlite", seed=1)  # doctest: +SKIP
>>> recs = sweep.load("runs.sqlite")                                  # doctest: +SKIP
>>> [(r.params["width"], r.results["loss"]) for r in recs]            # doctest: +SKIP

On a cluster (``pip install nn-limits[dask]``, the project installed on the workers)::

    from dask.distributed import Client
    with Client("tcp://scheduler:8786") as client:
        sweep.run_grid(mymodule.train_once, grid, "runs.sqlite", executor=client.get_executor())
"""
import concurrent.futures as cf
import hashlib
import importlib
import io
import itertools
import json
import math
import multiprocessing
import queue
import sys
import time
import traceback
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, List

import numpy as np

from . import _sweep_pool as _pool
from . import _sweep_store as _db

__all__ = ["run_grid", "collect", "load", "failures", "product", "point_seed", "point_key",
           "Record", "Failure", "Summary"]

LEASE_SECONDS = 60.0
"""Default ``lease`` of :func:`run_grid`: how long a point stays reserved to a coordinator
that stops renewing it (it renews every quarter of this while it runs)."""

# ----------------------------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------------------------
@dataclass
class Record:
    """One stored grid point: ``params`` (as ``fn`` received them), ``results`` (arrays
    restored), ``key`` (sha256 of the canonical parameters) and ``seconds`` (wall time of
    ``fn`` in the worker)."""

    params: Dict[str, Any]
    results: Dict[str, Any]
    key: str
    seconds: float


@dataclass
class Failure:
    """One failed attempt at a grid point: ``error`` is ``"Type: message"``, ``traceback`` the
    formatted traceback from the worker; ``attempt`` counts from 1 within one :func:`run_grid`
    call."""

    params: Dict[str, Any]
    key: str
    attempt: int
    error: str
    traceback: str
    time: str


@dataclass
class Summary:
    """What one :func:`run_grid` call did: ``total`` grid points, ``skipped`` (already
    stored when it started), ``completed`` (stored by this call), ``others`` (stored during
    this call by another coordinator sharing the store), ``failed`` (the last failure of each
    point still failing after ``retries``, in this call or, for points another coordinator
    ran, in that one), ``seconds`` wall time.  After a normal return
    ``skipped + completed + others + len(failed) == total``."""

    name: str
    store: str
    total: int
    skipped: int
    completed: int
    failed: List[Failure] = field(default_factory=list)
    seconds: float = 0.0
    others: int = 0

    def __str__(self):
        stored = self.skipped + self.completed + self.others
        by = f", {self.others} by another coordinator" if self.others else ""
        return (f"{self.name}: {stored}/{self.total} stored ({self.completed} now, "
                f"{self.skipped} before{by}), {len(self.failed)} failed, "
                f"{self.seconds:.1f} s")


# ----------------------------------------------------------------------------------------------
# parameters, keys, seeds
# ----------------------------------------------------------------------------------------------
def _canon(value, where):
    """Plain-JSON copy of ``value`` (finite numbers, str keys), or a clear error."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"{where} must be finite (JSON has no NaN/inf), got {value!r}")
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_canon(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} keys must be str, got {k!r}")
            out[k] = _canon(v, f"{where}[{k!r}]")
        return out
    raise TypeError(f"{where} must be JSON-serialisable (None, bool, int, float, str, list, "
                    f"dict), got {type(value).__name__} {value!r}")


def _canonical_json(params, where="params"):
    if not isinstance(params, Mapping):
        raise TypeError(f"{where} must be a dict of parameters, got {type(params).__name__} "
                        f"{params!r}")
    return json.dumps(_canon(params, where), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False)


def _key_of(canonical):
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _root_seed(seed):
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative int or numpy.random.SeedSequence, "
                        f"got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return np.random.SeedSequence(int(seed))


def _seed_spec(root):
    entropy = root.entropy
    entropy = [int(e) for e in entropy] if isinstance(entropy, (list, tuple, np.ndarray)) \
        else int(entropy)
    return {"entropy": entropy, "spawn_key": [int(k) for k in root.spawn_key],
            "pool_size": int(root.pool_size)}


def _seed_from(spec, key):
    words = tuple(int(key[i:i + 8], 16) for i in range(0, 32, 8))
    return np.random.SeedSequence(spec["entropy"], spawn_key=tuple(spec["spawn_key"]) + words,
                                  pool_size=spec["pool_size"])


def point_key(params):
    """sha256 (hex) of the canonical JSON of ``params``: the point's identity in the store.

    Canonical JSON: keys sorted, separators ``","`` and ``":"``, ASCII, tuples as lists, NumPy
    scalars as Python numbers.  ``1`` and ``1.0`` are different points.

    >>> point_key({"b": 2, "a": 1}) == point_key({"a": 1, "b": 2})
    True
    """
    return _key_of(_canonical_json(params))


def point_seed(params, seed=0):
    """The :class:`numpy.random.SeedSequence` that :func:`run_grid` passes to ``fn`` for
    ``params`` under the root ``seed``, to reproduce one point outside a sweep.

    ``SeedSequence(root.entropy, spawn_key=root.spawn_key + words)``, ``words`` the first 16
    bytes of :func:`point_key` as four big-endian uint32, ``root = SeedSequence(seed)``.

    >>> import numpy as np
    >>> s = point_seed({"x": 1}, seed=0)
    >>> s.spawn_key == point_seed({"x": 1}, seed=0).spawn_key != point_seed({"x": 2}).spawn_key
    True
    >>> float(np.random.default_rng(s).random()) == float(np.random.default_rng(
    ...     point_seed({"x": 1}, 0)).random())
    True
    """
    return _seed_from(_seed_spec(_root_seed(seed)), point_key(params))


def product(**axes):
    """Cartesian product of parameter axes, as a list of dicts (the last axis varies fastest).

    Parameters
    ----------
    **axes : iterables
        ``name=[values...]``; a scalar or a string is refused (write ``name=[value]``).

    Examples
    --------
    >>> product(m=[10, 100], gamma=[0.5, 1.5])
    [{'m': 10, 'gamma': 0.5}, {'m': 10, 'gamma': 1.5}, {'m': 100, 'gamma': 0.5}, \
{'m': 100, 'gamma': 1.5}]
    """
    values = []
    for name, vals in axes.items():
        if isinstance(vals, (str, bytes, Mapping)) or not hasattr(vals, "__iter__"):
            raise TypeError(f"axis {name!r} must be a list of values, got {vals!r} "
                            f"(write {name}=[{vals!r}] for a single value)")
        vals = list(vals)
        if not vals:
            raise ValueError(f"axis {name!r} has no values")
        values.append(vals)
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*values)]


# ----------------------------------------------------------------------------------------------
# fn by reference
# ----------------------------------------------------------------------------------------------
_FN_CACHE: Dict[str, Any] = {}


def _resolve(ref):
    fn = _FN_CACHE.get(ref)
    if fn is None:
        module, _, qualname = ref.partition(":")
        fn = importlib.import_module(module)
        for part in qualname.split("."):
            fn = getattr(fn, part)
        _FN_CACHE[ref] = fn
    return fn


def _fn_ref(fn):
    if not callable(fn):
        raise TypeError(f"fn must be a module-level function, got {type(fn).__name__} {fn!r}")
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise TypeError(f"fn must be a module-level function importable by module and "
                        f"qualname, got {fn!r} (no __module__/__qualname__)")
    if "<" in qualname:
        raise TypeError(f"fn={module}.{qualname} is not importable by module and qualname "
                        f"(a lambda or a nested function): define it at module level")
    if module == "__main__" and not getattr(sys.modules.get("__main__"), "__file__", None):
        raise TypeError(f"fn={qualname} is defined in an interactive __main__ (notebook or "
                        f"REPL) that worker processes cannot import: put it in a .py module")
    ref = f"{module}:{qualname}"
    try:
        found = _resolve(ref)
    except Exception as exc:
        _FN_CACHE.pop(ref, None)
        raise TypeError(f"fn={fn!r} is not importable as {ref}: "
                        f"{type(exc).__name__}: {exc}") from None
    if found is not fn:
        raise TypeError(f"fn={fn!r} is not importable by module and qualname: {ref} is "
                        f"{found!r}")
    return ref


def _probe(ref, nonce=None):
    """Worker side: can this worker import ``ref``?  None, or the error text."""
    try:
        _resolve(ref)
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------------------------
# worker side: run one point, encode its results
# ----------------------------------------------------------------------------------------------
def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        raise TypeError("numpy arrays are stored only as top-level result values")
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON-serialisable")


def _encode_results(out):
    if not isinstance(out, Mapping):
        raise TypeError(f"fn must return a dict of results, got {type(out).__name__}")
    plain, blobs = {}, {}
    for k, v in out.items():
        if not isinstance(k, str):
            raise TypeError(f"result keys must be str, got {k!r}")
        if isinstance(v, np.ndarray):
            if v.dtype.hasobject:
                raise TypeError(f"result {k!r} is an object array; only numeric/str/bool "
                                f"arrays are stored (no pickle)")
            buf = io.BytesIO()
            np.save(buf, v, allow_pickle=False)
            blobs[k] = buf.getvalue()
            plain[k] = None
        else:
            plain[k] = v
    try:
        return json.dumps(plain, separators=(",", ":"), default=_json_default), blobs
    except (TypeError, ValueError):
        for k, v in plain.items():          # name the offending result
            try:
                json.dumps(v, default=_json_default)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"result {k!r}: {exc}") from None
        raise


def _run_point(ref, params_json, seed_spec, key, attempt, nonce=None):
    """Worker side of :func:`run_grid`.  ``attempt`` and ``nonce`` (unused) make every
    submission a distinct task for executors that cache calls by their arguments (dask's
    ``pure=True`` default)."""
    t0 = time.perf_counter()
    try:
        out = _resolve(ref)(json.loads(params_json), _seed_from(seed_spec, key))
        res, blobs = _encode_results(out)
        return True, res, blobs, time.perf_counter() - t0
    except (Exception, SystemExit) as exc:
        return (False, f"{type(exc).__name__}: {exc}", traceback.format_exc(),
                time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------------
# run_grid
# ----------------------------------------------------------------------------------------------
def run_grid(fn, grid, store, name=None, executor=None, seed=0, progress=True, retries=0, *,
             lease=LEASE_SECONDS):
    """Run ``fn`` on every point of ``grid`` not yet stored, on any executor; store the results.

    Parameters
    ----------
    fn : function
        ``fn(params: dict, rng_seed: numpy.random.SeedSequence) -> dict``, a module-level
        function importable by ``fn.__module__`` and ``fn.__qualname__`` (see the module
        docstring for what it receives and may return).
    grid : iterable of dict
        Parameter dicts with ``str`` keys and JSON-serialisable, finite values (e.g. from
        :func:`product`).  Two points with the same canonical JSON are refused.
    store : str or os.PathLike
        SQLite file, created if missing (or empty); its directory must exist.  Any other
        SQLite database is refused, unchanged.
    name : str, optional
        Experiment name within the store; default ``"module:qualname"`` of ``fn``.
    executor : concurrent.futures.Executor, optional
        Where to run.  Default: a local process pool over the available cores (``forkserver``
        start method; the fork server, one per process, preloads ``limits.sweep``), created
        and shut down by this call; its workers exit if this process dies.  Any ``Executor``
        works, e.g. ``ProcessPoolExecutor(4)``, ``ThreadPoolExecutor`` or
        ``dask.distributed.Client(...).get_executor()``; it is not shut down.
    seed : int or numpy.random.SeedSequence
        Root seed; point seeds are derived from it and the parameters (:func:`point_seed`).
    progress : bool
        tqdm bar in this process: points stored / total, failures so far.
    retries : int
        How many more times a failing point is tried in this call (same seed each time).
    lease : float, default 60
        Seconds a point submitted by this call stays reserved to it without renewal (it is
        renewed every ``lease / 4`` while this call runs): other coordinators on the store
        leave it alone meanwhile and take it over after this call died.

    Returns
    -------
    Summary
        Counts, and the points that still failed; a :class:`RuntimeWarning` is also issued if
        any failed.  Failures are recorded in the store (:func:`failures`), never as results.

    Raises
    ------
    TypeError, ValueError
        Bad arguments, before any work starts: ``fn`` not importable (also checked in a
        worker), parameters not JSON-serialisable, a store in a missing directory or an
        SQLite file that is not a sweep store, an unknown executor type, a ``name`` already
        bound to another ``fn`` or seed.
    RuntimeError
        The executor broke (e.g. a worker process was killed, or a script without
        ``if __name__ == "__main__":``, which the message names); completed points are kept
        and a rerun resumes.

    Examples
    --------
    >>> from limits import sweep, _sweep_testing as T                     # doctest: +SKIP
    >>> grid = sweep.product(x=range(20), n=[3])                          # doctest: +SKIP
    >>> s = sweep.run_grid(T.noisy, grid, "s.sqlite", progress=False)     # doctest: +SKIP
    >>> s.completed, len(sweep.load("s.sqlite"))                          # doctest: +SKIP
    (20, 20)
    >>> sweep.run_grid(T.noisy, grid, "s.sqlite", progress=False).skipped  # doctest: +SKIP
    20
    """
    t_start = time.perf_counter()
    job = _Job(fn, grid, store, name, executor, seed, progress, retries, lease, memory=False)
    con = _db._connect(job.path, create=True)
    try:
        summary = _run(con, job)
    finally:
        con.close()
    summary.seconds = time.perf_counter() - t_start
    if summary.failed:
        f = summary.failed[0]
        warnings.warn(f"run_grid {job.name!r}: {len(summary.failed)} of {summary.total} points "
                      f"failed (first: {f.params} -> {f.error}); see "
                      f"limits.sweep.failures({job.path!r}, {job.name!r})", RuntimeWarning,
                      stacklevel=2)
    return summary


def collect(fn, grid, store=None, name=None, executor=None, seed=0, progress=True, retries=0,
            *, lease=LEASE_SECONDS):
    """:func:`run_grid`, then the grid's own records, in grid order.

    What a study built on a grid calls (``limits.phase.slope`` and ``diagram`` do): one call
    runs what is missing and returns every point's result, whether it was computed now, stored
    before, or computed meanwhile by another coordinator on the same store.

    Parameters
    ----------
    fn, grid, name, executor, seed, progress, retries, lease
        As for :func:`run_grid`.
    store : str or os.PathLike, optional
        As for :func:`run_grid`; default ``None``: an in-memory store, gone when this returns.

    Returns
    -------
    records : list of Record or None
        ``records[i]`` is the stored record of ``grid[i]``, None if that point failed
        (then it is in ``summary.failed``).
    summary : Summary
        As :func:`run_grid` returns it (``store`` is ``":memory:"`` without a file); no
        warning is issued for failures: the caller decides.
    """
    t_start = time.perf_counter()
    job = _Job(fn, grid, store, name, executor, seed, progress, retries, lease,
               memory=store is None)
    con = _db._connect(job.path, create=True)
    try:
        summary = _run(con, job)
        keys = {key for key, _ in job.points}
        arrays = _db._arrays(con, job.name, keys)
        found = {}
        for key, params, results, seconds in _db._done_rows(con, job.name):
            if key in keys:
                res = json.loads(results)
                res.update(arrays.get(key, {}))
                found[key] = Record(json.loads(params), res, key, seconds)
    finally:
        con.close()
    summary.seconds = time.perf_counter() - t_start
    return [found.get(key) for key, _ in job.points], summary


class _Job:
    """The checked arguments of one :func:`run_grid` / :func:`collect` call (every check runs
    here, before the store is opened or any work starts)."""

    def __init__(self, fn, grid, store, name, executor, seed, progress, retries, lease, memory):
        self.ref = _fn_ref(fn)
        if isinstance(grid, (Mapping, str, bytes)) or not hasattr(grid, "__iter__"):
            raise TypeError(f"grid must be an iterable of parameter dicts (e.g. a list or "
                            f"sweep.product(...)), got {type(grid).__name__} {grid!r}")
        points, first = [], {}
        for i, params in enumerate(grid):
            cj = _canonical_json(params, f"grid[{i}]")
            key = _key_of(cj)
            if key in first:
                raise ValueError(f"grid[{i}] = {params!r} duplicates grid[{first[key]}]")
            first[key] = i
            points.append((key, cj))
        if not points:
            raise ValueError("grid is empty")
        self.points = points
        self.path = _db.MEMORY if memory else _db._store_path(store, create=True)
        self.name = self.ref if name is None else name
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str or None, got {name!r}")
        _pool._check_executor(executor)
        if executor is None and multiprocessing.current_process().daemon:
            raise ValueError("executor=None starts worker processes, which this daemonic "
                             "process (e.g. a dask worker) cannot have: pass an executor")
        self.executor = executor
        self.spec = _seed_spec(_root_seed(seed))
        if not isinstance(progress, (bool, np.bool_)):
            raise TypeError(f"progress must be a bool, got {progress!r}")
        self.progress = bool(progress)
        if isinstance(retries, bool) or not isinstance(retries, (int, np.integer)) \
                or retries < 0:
            raise ValueError(f"retries must be a non-negative int, got {retries!r}")
        self.retries = int(retries)
        if isinstance(lease, bool) or not isinstance(lease, (int, float, np.integer,
                                                             np.floating)) \
                or not (math.isfinite(lease) and lease > 0):
            raise ValueError(f"lease must be a finite number of seconds > 0, got {lease!r}")
        self.lease = float(lease)


def _run(con, job):
    """Register the grid in the store, run what is missing, return the Summary."""
    _db._experiment(con, job.name, job.ref, job.spec)
    started = _db._now()
    status = _db._register(con, job.name, job.points)
    todo = [(key, cj) for key, cj in job.points if status[key] != "done"]
    summary = Summary(job.name, job.path, len(job.points), len(job.points) - len(todo), 0)
    if todo:
        _execute(con, job, todo, summary, started)
    return summary


def _execute(con, job, todo, summary, started):
    """Lease, submit and store the points of ``todo`` until each is settled (stored or failed,
    by this call or by another coordinator); see the module docstring."""
    from tqdm.auto import tqdm

    name, retries = job.name, job.retries
    owned = _pool.OwnedPool(len(todo)) if job.executor is None else None
    pool = owned.pool if owned is not None else job.executor
    done_q = queue.SimpleQueue()
    pending = {}
    params_of = dict(todo)
    remaining = dict.fromkeys(key for key, _ in todo)   # not leased by this call, not settled
    failed_now = 0
    me = _db._new_owner()          # lease owner; also makes every submission a distinct task
    window = _pool._window(pool)
    renew_every = job.lease / 4
    renewed = time.monotonic()
    broken = None
    ok = False

    def submit(key, attempt):
        nonlocal broken
        if broken is not None:
            return
        try:
            f = pool.submit(_run_point, job.ref, params_of[key], job.spec, key, attempt, me)
        except cf.BrokenExecutor as exc:
            broken = exc
            return
        pending[f] = (key, attempt)
        f.add_done_callback(done_q.put)

    def fail(key, attempt, error, tb, t):
        nonlocal failed_now
        failed_now += 1
        bar.set_postfix_str(f"failed={failed_now}", refresh=False)
        summary.failed.append(Failure(json.loads(params_of[key]), key, attempt, error, tb, t))

    def refill():
        """Lease and submit more points; count those settled elsewhere meanwhile."""
        claimed, done, failed, _ = _db._claim(con, name, me, remaining, window - len(pending),
                                              started, job.lease)
        for key in itertools.chain(claimed, done, failed):
            del remaining[key]
        summary.others += len(done)
        bar.update(len(done))
        for key in failed:
            fail(key, *_db._last_failure(con, name, key))
        for key in claimed:
            submit(key, 1)

    bar = tqdm(total=summary.total, initial=summary.skipped, desc=name[-40:], unit="pt",
               disable=not job.progress, dynamic_ncols=True)
    try:
        try:
            err = pool.submit(_probe, job.ref, me).result()
        except cf.BrokenExecutor as exc:
            raise RuntimeError(f"the executor's workers died before running anything"
                               f"{_pool._main_guard_hint(job.executor)} "
                               f"({type(exc).__name__}: {exc})") from exc
        if err is not None:
            raise TypeError(f"fn is not importable as {job.ref} in the executor's workers: "
                            f"{err} (is the module on the workers' path?)")
        while True:
            if broken is None and remaining and len(pending) <= window // 2:
                refill()
            if not pending:
                if broken is not None or not remaining:
                    break
                time.sleep(min(0.25, renew_every))      # the rest is leased to others: wait
                continue
            if time.monotonic() - renewed > renew_every:
                _db._renew(con, me, job.lease)
                renewed = time.monotonic()
            try:
                f = done_q.get(timeout=renew_every)
            except queue.Empty:
                continue
            key, attempt = pending.pop(f)
            try:
                out = f.result()
            except (cf.BrokenExecutor, cf.CancelledError) as exc:
                broken = broken or exc      # keep storing what did complete, submit no more
                continue
            except Exception as exc:      # the executor could not run the task (e.g. dask)
                out = (False, f"{type(exc).__name__}: {exc}", traceback.format_exc(), 0.0)
            if out[0]:
                if _db._store_result(con, name, key, out[1], out[2], out[3]):
                    summary.completed += 1
                else:
                    summary.others += 1        # another coordinator stored it first
                bar.update(1)
            else:
                final = attempt > retries or broken is not None
                t, marked = _db._store_failure(con, name, key, attempt, out[1], out[2], final)
                if final and marked:
                    fail(key, attempt, out[1], out[2], t)
                elif final:
                    summary.others += 1
                    bar.update(1)
                else:
                    submit(key, attempt + 1)
        if broken is not None:
            raise RuntimeError(
                f"the executor broke after {summary.completed} points were stored by this "
                f"call ({type(broken).__name__}: {broken}); stored results are kept, run "
                f"run_grid again to resume") from broken
        ok = True
    finally:
        bar.close()
        for f in pending:
            f.cancel()
        try:
            _db._release(con, me)
        finally:
            if owned is not None:
                owned.close(wait=ok)



# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def load(store, name=None):
    """The stored results of an experiment: one :class:`Record` per completed grid point.

    Parameters
    ----------
    store : str or os.PathLike
        An existing store written by :func:`run_grid`.
    name : str, optional
        Experiment name; may be omitted if the store holds exactly one.

    Returns
    -------
    list of Record
        In the order the points were first registered (the grid order of the first run that
        listed them), failed and pending points left out.  Arrays are restored bit for bit.

    Examples
    --------
    >>> recs = load("s.sqlite")                                           # doctest: +SKIP
    >>> xs = np.array([r.params["x"] for r in recs])                      # doctest: +SKIP
    >>> ys = np.array([r.results["y"] for r in recs])                     # doctest: +SKIP
    """
    path = _db._store_path(store, create=False)
    con = _db._connect(path, create=False)
    try:
        name = _db._pick_name(con, name, path)
        arrays = _db._arrays(con, name)
        out = []
        for key, params, results, seconds in _db._done_rows(con, name):
            res = json.loads(results)
            res.update(arrays.get(key, {}))
            out.append(Record(json.loads(params), res, key, seconds))
        return out
    finally:
        con.close()


def failures(store, name=None, resolved=False):
    """Recorded failed attempts of an experiment, oldest first.

    Parameters
    ----------
    store, name
        As for :func:`load`.
    resolved : bool
        Also list failures of points that have since been stored.

    Returns
    -------
    list of Failure
    """
    path = _db._store_path(store, create=False)
    con = _db._connect(path, create=False)
    try:
        name = _db._pick_name(con, name, path)
        sql = ("SELECT p.params, f.key, f.attempt, f.error, f.traceback, f.time FROM failures f "
               "JOIN points p ON p.name = f.name AND p.key = f.key WHERE f.name = ?")
        if not resolved:
            sql += " AND p.status != 'done'"
        return [Failure(json.loads(p), k, a, e, tb, t)
                for p, k, a, e, tb, t in con.execute(sql + " ORDER BY f.id", (name,))]
    finally:
        con.close()

