"""Grids of independent runs on any executor, with a resumable SQLite store.

A *grid* is a list of parameter dicts (:func:`product` builds the Cartesian product of axes).
:func:`run_grid` calls ``fn(params, rng_seed) -> dict`` once per grid point on any
:class:`concurrent.futures.Executor` -- by default a local process pool over the available
cores; ``dask.distributed.Client(...).get_executor()`` runs the same grid on a cluster with no
code change -- and stores each completed run in an SQLite file.  :func:`load` returns one
:class:`Record` per stored point, :func:`failures` the recorded failures.

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
``failures`` every failed attempt with its traceback text.  Only the coordinating process
writes, one transaction per completed run, so the store must be on a disk of the machine that
calls :func:`run_grid` (workers never open it; SQLite's WAL does not work on network file
systems).  A rerun skips the stored points and retries the failed ones.  An experiment name is
bound to one ``fn`` and one root seed: rerunning it with another raises ``ValueError``.

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
import datetime
import hashlib
import importlib
import io
import itertools
import json
import math
import multiprocessing
import os
import queue
import sqlite3
import sys
import time
import traceback
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, List

import numpy as np

__all__ = ["run_grid", "load", "failures", "product", "point_seed", "point_key", "Record",
           "Failure", "Summary"]

_SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiments(
    name TEXT PRIMARY KEY, fn TEXT NOT NULL, seed TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS points(
    name TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, params TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    results TEXT, seconds REAL, finished TEXT, error TEXT,
    PRIMARY KEY (name, key));
CREATE INDEX IF NOT EXISTS points_seq ON points(name, seq);
CREATE TABLE IF NOT EXISTS arrays(
    name TEXT NOT NULL, key TEXT NOT NULL, field TEXT NOT NULL, npy BLOB NOT NULL,
    PRIMARY KEY (name, key, field));
CREATE TABLE IF NOT EXISTS failures(
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, key TEXT NOT NULL,
    attempt INTEGER NOT NULL, error TEXT NOT NULL, traceback TEXT NOT NULL, time TEXT NOT NULL);
"""


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
    stored), ``completed`` (stored by this call), ``failed`` (the last failure of each point
    still failing after ``retries``), ``seconds`` wall time."""

    name: str
    store: str
    total: int
    skipped: int
    completed: int
    failed: List[Failure] = field(default_factory=list)
    seconds: float = 0.0

    def __str__(self):
        return (f"{self.name}: {self.skipped + self.completed}/{self.total} stored "
                f"({self.completed} now, {self.skipped} before), {len(self.failed)} failed, "
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
# store
# ----------------------------------------------------------------------------------------------
def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _store_path(store, create):
    if isinstance(store, bool) or not isinstance(store, (str, os.PathLike)):
        raise TypeError(f"store must be a file path (str or os.PathLike), got "
                        f"{type(store).__name__} {store!r}")
    path = os.path.abspath(os.fspath(store))
    if os.fspath(store) in ("", ":memory:") or os.path.isdir(path):
        raise ValueError(f"store must be a file path, got {store!r}")
    if create:
        parent = os.path.dirname(path)
        if not os.path.isdir(parent):
            raise ValueError(f"store={os.fspath(store)!r}: directory {parent!r} does not exist "
                             f"(create it first)")
    elif not os.path.isfile(path):
        raise ValueError(f"store={os.fspath(store)!r} does not exist")
    return path


def _connect(path, create):
    try:
        con = sqlite3.connect(path, timeout=60.0, isolation_level=None)
        con.execute("PRAGMA busy_timeout = 60000")
        if create:
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            con.executescript(_SCHEMA)
            con.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
        version = con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"store={path!r} is not a sweep store ({exc})") from None
    if version is None or version[0] != _SCHEMA_VERSION:
        con.close()
        raise ValueError(f"store={path!r} has schema {version}, expected {_SCHEMA_VERSION}")
    return con


def _experiment(con, name, ref, spec):
    con.execute("BEGIN IMMEDIATE")
    try:
        row = con.execute("SELECT fn, seed FROM experiments WHERE name = ?", (name,)).fetchone()
        if row is None:
            con.execute("INSERT INTO experiments VALUES (?, ?, ?, ?)",
                        (name, ref, json.dumps(spec, sort_keys=True), _now()))
        else:
            if row[0] != ref:
                raise ValueError(f"name={name!r} was run with fn {row[0]}, not {ref}: use "
                                 f"another name")
            if json.loads(row[1]) != spec:
                raise ValueError(f"name={name!r} was run with seed {json.loads(row[1])}, not "
                                 f"{spec}: use another name")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _register(con, name, points):
    """Insert the grid's new points as pending; return {key: status} of the whole grid."""
    con.execute("BEGIN IMMEDIATE")
    try:
        status = dict(con.execute("SELECT key, status FROM points WHERE name = ?", (name,)))
        seq = con.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM points WHERE name = ?",
                          (name,)).fetchone()[0]
        new = [(name, key, seq + i, cj, "pending")
               for i, (key, cj) in enumerate((k, c) for k, c in points if k not in status)]
        con.executemany("INSERT INTO points(name, key, seq, params, status) "
                        "VALUES (?, ?, ?, ?, ?)", new)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return {key: status.get(key, "pending") for key, _ in points}


def _store_result(con, name, key, res, blobs, seconds):
    con.execute("BEGIN IMMEDIATE")
    try:
        cur = con.execute("UPDATE points SET status = 'done', results = ?, seconds = ?, "
                          "finished = ?, error = NULL WHERE name = ? AND key = ? "
                          "AND status != 'done'", (res, seconds, _now(), name, key))
        if cur.rowcount == 1:
            con.executemany("INSERT OR REPLACE INTO arrays VALUES (?, ?, ?, ?)",
                            [(name, key, f, b) for f, b in blobs.items()])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _store_failure(con, name, key, attempt, error, tb, final):
    con.execute("BEGIN IMMEDIATE")
    try:
        t = _now()
        con.execute("INSERT INTO failures(name, key, attempt, error, traceback, time) "
                    "VALUES (?, ?, ?, ?, ?, ?)", (name, key, attempt, error, tb, t))
        if final:
            con.execute("UPDATE points SET status = 'failed', error = ? WHERE name = ? AND "
                        "key = ? AND status != 'done'", (error, name, key))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return t


# ----------------------------------------------------------------------------------------------
# executors
# ----------------------------------------------------------------------------------------------
def _cpu_count():
    if hasattr(os, "process_cpu_count"):
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _default_pool(n_points):
    """A process pool over the available cores.  ``forkserver`` where the platform has it
    (``fork`` after threads -- numba, tqdm, dask -- can deadlock), else ``spawn``.  The fork
    server (one per process, started by its first pool) preloads ``limits.sweep``, so workers
    start in milliseconds instead of each importing ``limits`` (about a second)."""
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        from multiprocessing import forkserver
        preload = list(getattr(forkserver._forkserver, "_preload_modules", ["__main__"]))
        if __name__ not in preload:
            ctx.set_forkserver_preload(preload + [__name__])
    else:
        ctx = multiprocessing.get_context("spawn")
    return cf.ProcessPoolExecutor(max_workers=max(1, min(_cpu_count(), n_points)),
                                  mp_context=ctx)


def _check_executor(executor):
    if executor is None or isinstance(executor, cf.Executor):
        return
    hint = ""
    if type(executor).__name__ == "Client":
        hint = " (for dask.distributed pass client.get_executor())"
    raise TypeError(f"executor must be a concurrent.futures.Executor or None, got "
                    f"{type(executor).__name__} {executor!r}{hint}")


def _window(executor):
    n = getattr(executor, "_max_workers", None)
    return max(64, 8 * n) if isinstance(n, int) else 1024


def _terminate(pool):
    """Stop an owned process pool now (used on errors and Ctrl-C)."""
    pool.shutdown(wait=False, cancel_futures=True)
    if hasattr(pool, "terminate_workers"):
        pool.terminate_workers()
        return
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            p.terminate()
        except Exception:
            pass


# ----------------------------------------------------------------------------------------------
# run_grid
# ----------------------------------------------------------------------------------------------
def run_grid(fn, grid, store, name=None, executor=None, seed=0, progress=True, retries=0):
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
        SQLite file, created if missing; its directory must exist.
    name : str, optional
        Experiment name within the store; default ``"module:qualname"`` of ``fn``.
    executor : concurrent.futures.Executor, optional
        Where to run.  Default: a local process pool over the available cores (``forkserver``
        start method; the fork server, one per process, preloads ``limits.sweep``), created
        and shut down by this call.  Any ``Executor`` works, e.g.
        ``ProcessPoolExecutor(4)``, ``ThreadPoolExecutor`` or
        ``dask.distributed.Client(...).get_executor()``; it is not shut down.
    seed : int or numpy.random.SeedSequence
        Root seed; point seeds are derived from it and the parameters (:func:`point_seed`).
    progress : bool
        tqdm bar in this process: points stored / total, failures so far.
    retries : int
        How many more times a failing point is tried in this call (same seed each time).

    Returns
    -------
    Summary
        Counts, and the points that still failed; a :class:`RuntimeWarning` is also issued if
        any failed.  Failures are recorded in the store (:func:`failures`), never as results.

    Raises
    ------
    TypeError, ValueError
        Bad arguments, before any work starts: ``fn`` not importable (also checked in a
        worker), parameters not JSON-serialisable, a store in a missing directory, an
        unknown executor type, a ``name`` already bound to another ``fn`` or seed.
    RuntimeError
        The executor broke (e.g. a worker process was killed); completed points are kept
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
    ref = _fn_ref(fn)
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
    path = _store_path(store, create=True)
    if name is None:
        name = ref
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str or None, got {name!r}")
    _check_executor(executor)
    if executor is None and multiprocessing.current_process().daemon:
        raise ValueError("executor=None starts worker processes, which this daemonic process "
                         "(e.g. a dask worker) cannot have: pass an executor")
    spec = _seed_spec(_root_seed(seed))
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be a bool, got {progress!r}")
    if isinstance(retries, bool) or not isinstance(retries, (int, np.integer)) or retries < 0:
        raise ValueError(f"retries must be a non-negative int, got {retries!r}")
    retries = int(retries)

    con = _connect(path, create=True)
    try:
        _experiment(con, name, ref, spec)
        status = _register(con, name, points)
        todo = [(key, cj) for key, cj in points if status[key] != "done"]
        summary = Summary(name, path, len(points), len(points) - len(todo), 0)
        if todo:
            _execute(con, name, ref, spec, todo, summary, executor, progress, retries)
    finally:
        con.close()
    summary.seconds = time.perf_counter() - t_start
    if summary.failed:
        f = summary.failed[0]
        warnings.warn(f"run_grid {name!r}: {len(summary.failed)} of {summary.total} points "
                      f"failed (first: {f.params} -> {f.error}); see "
                      f"limits.sweep.failures({path!r}, {name!r})", RuntimeWarning,
                      stacklevel=2)
    return summary


def _execute(con, name, ref, spec, todo, summary, executor, progress, retries):
    from tqdm.auto import tqdm

    own = executor is None
    pool = _default_pool(len(todo)) if own else executor
    done_q = queue.SimpleQueue()
    pending = {}
    params_of = dict(todo)
    failed_now = 0
    nonce = uuid.uuid4().hex          # one per call: a rerun never reuses a cached task
    broken = None
    ok = False

    def submit(key, attempt):
        nonlocal broken
        if broken is not None:
            return
        try:
            f = pool.submit(_run_point, ref, params_of[key], spec, key, attempt, nonce)
        except cf.BrokenExecutor as exc:
            broken = exc
            return
        pending[f] = (key, attempt)
        f.add_done_callback(done_q.put)

    bar = tqdm(total=summary.total, initial=summary.skipped, desc=name[-40:], unit="pt",
               disable=not progress, dynamic_ncols=True)
    try:
        try:
            err = pool.submit(_probe, ref, nonce).result()
        except cf.BrokenExecutor as exc:
            raise RuntimeError(f"the executor's workers died before running anything "
                               f"({type(exc).__name__}: {exc})") from exc
        if err is not None:
            raise TypeError(f"fn is not importable as {ref} in the executor's workers: {err} "
                            f"(is the module on the workers' path?)")
        queued = iter(todo)
        for key, _ in itertools.islice(queued, _window(pool)):
            submit(key, 1)
        while pending:
            f = done_q.get()
            key, attempt = pending.pop(f)
            try:
                out = f.result()
            except (cf.BrokenExecutor, cf.CancelledError) as exc:
                broken = broken or exc      # keep storing what did complete, submit no more
                continue
            except Exception as exc:      # the executor could not run the task (e.g. dask)
                out = (False, f"{type(exc).__name__}: {exc}", traceback.format_exc(), 0.0)
            if out[0]:
                _store_result(con, name, key, out[1], out[2], out[3])
                summary.completed += 1
                bar.update(1)
            else:
                final = attempt > retries or broken is not None
                t = _store_failure(con, name, key, attempt, out[1], out[2], final)
                if final:
                    failed_now += 1
                    bar.set_postfix_str(f"failed={failed_now}", refresh=False)
                    summary.failed.append(Failure(json.loads(params_of[key]), key, attempt,
                                                  out[1], out[2], t))
                else:
                    submit(key, attempt + 1)
            for key2, _ in itertools.islice(queued, 0 if broken else 1):
                submit(key2, 1)
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
        if own:
            if ok:
                pool.shutdown(wait=True)
            else:
                _terminate(pool)


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def _pick_name(con, name, path):
    names = [r[0] for r in con.execute("SELECT name FROM experiments ORDER BY created")]
    if name is None:
        if len(names) != 1:
            raise ValueError(f"store={path!r} holds {len(names)} experiments {names}: pass "
                             f"name=")
        return names[0]
    if name not in names:
        raise ValueError(f"name={name!r} is not in store={path!r} (it holds {names})")
    return name


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
    path = _store_path(store, create=False)
    con = _connect(path, create=False)
    try:
        name = _pick_name(con, name, path)
        arrays = {}
        for key, fld, blob in con.execute("SELECT key, field, npy FROM arrays WHERE name = ?",
                                          (name,)):
            arrays.setdefault(key, {})[fld] = np.load(io.BytesIO(blob), allow_pickle=False)
        out = []
        for key, params, results, seconds in con.execute(
                "SELECT key, params, results, seconds FROM points WHERE name = ? AND "
                "status = 'done' ORDER BY seq", (name,)):
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
    path = _store_path(store, create=False)
    con = _connect(path, create=False)
    try:
        name = _pick_name(con, name, path)
        sql = ("SELECT p.params, f.key, f.attempt, f.error, f.traceback, f.time FROM failures f "
               "JOIN points p ON p.name = f.name AND p.key = f.key WHERE f.name = ?")
        if not resolved:
            sql += " AND p.status != 'done'"
        return [Failure(json.loads(p), k, a, e, tb, t)
                for p, k, a, e, tb, t in con.execute(sql + " ORDER BY f.id", (name,))]
    finally:
        con.close()

