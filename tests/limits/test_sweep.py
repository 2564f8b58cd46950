"""limits.sweep: same stored results on any executor, resumable store, failures, bad input."""
import concurrent.futures as cf
import functools
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import types

import numpy as np
import pytest

from limits import _sweep_testing as T
from limits import sweep


_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _pool(n):
    return cf.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context(_METHOD))


def _dump(path):
    """Everything a run stores about its results, in a canonical order."""
    con = sqlite3.connect(path)
    try:
        points = con.execute("SELECT name, key, params, status, results FROM points "
                             "ORDER BY name, key").fetchall()
        arrays = con.execute("SELECT name, key, field, npy FROM arrays "
                             "ORDER BY name, key, field").fetchall()
    finally:
        con.close()
    return points, arrays


def _integrity(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA integrity_check").fetchall()
    finally:
        con.close()


def _direct(fn, params, seed=0):
    """What fn returns for params when called in this process with the documented seed."""
    return fn(params, sweep.point_seed(params, seed))


def _assert_same_results(got, want):
    assert got.keys() == want.keys()
    for k, v in want.items():
        if isinstance(v, np.ndarray):
            assert got[k].dtype == v.dtype and got[k].shape == v.shape
            assert got[k].tobytes() == v.tobytes(), k
        else:
            assert got[k] == (v.item() if isinstance(v, np.generic) else v), k


GRID = sweep.product(x=list(range(6)), n=[1, 4])


# ----------------------------------------------------------------------------------------------
# grids, keys, seeds
# ----------------------------------------------------------------------------------------------
def test_product_order_and_canonical_keys():
    g = sweep.product(a=[1, 2], b=("u", "v", "w"))
    assert g == [{"a": 1, "b": "u"}, {"a": 1, "b": "v"}, {"a": 1, "b": "w"},
                 {"a": 2, "b": "u"}, {"a": 2, "b": "v"}, {"a": 2, "b": "w"}]
    assert sweep.point_key({"a": 1, "b": (1, 2)}) == sweep.point_key({"b": [1, 2], "a": 1})
    assert sweep.point_key({"a": np.int64(3)}) == sweep.point_key({"a": 3})
    assert sweep.point_key({"a": 1}) != sweep.point_key({"a": 1.0})
    s1, s2 = sweep.point_seed({"a": 1}, 0), sweep.point_seed({"a": 2}, 0)
    assert s1.entropy == 0 and len(s1.spawn_key) == 4
    assert s1.spawn_key != s2.spawn_key
    assert sweep.point_seed({"a": 1}, 5).entropy == 5
    assert sweep.point_seed({"a": 1}, np.random.SeedSequence(5)).spawn_key == s1.spawn_key
    with pytest.raises(TypeError, match="axis 'a'"):
        sweep.product(a=3)
    with pytest.raises(TypeError, match="axis 'a'"):
        sweep.product(a="abc")
    with pytest.raises(ValueError, match="axis 'b'"):
        sweep.product(a=[1], b=[])


# ----------------------------------------------------------------------------------------------
# the same stored results on every executor
# ----------------------------------------------------------------------------------------------
def test_identical_results_one_and_two_workers_and_threads(tmp_path):
    dumps = []
    for label, ex in [("one", _pool(1)), ("default", None), ("threads", cf.ThreadPoolExecutor(2))]:
        store = tmp_path / f"{label}.sqlite"
        s = sweep.run_grid(T.noisy, GRID, store, executor=ex, seed=7, progress=False)
        if ex is not None:
            ex.shutdown()
        assert (s.total, s.skipped, s.completed, s.failed) == (12, 0, 12, [])
        dumps.append(_dump(store))
        assert _integrity(store) == [("ok",)]
    assert dumps[0] == dumps[1] == dumps[2]
    points, arrays = dumps[0]
    assert len(points) == 12 and len(arrays) == 12 * 3
    # what is stored is what fn returns with the documented seed, in this process
    recs = sweep.load(tmp_path / "one.sqlite")
    assert [r.params for r in recs] == [dict(sorted(p.items())) for p in GRID]   # grid order
    for r in recs:
        _assert_same_results(r.results, _direct(T.noisy, r.params, seed=7))
    # the seed matters, and differs between points
    means = [r.results["mean"] for r in recs]
    assert len(set(means)) == len(means)
    other = tmp_path / "seed8.sqlite"
    sweep.run_grid(T.noisy, GRID, other, executor=cf.ThreadPoolExecutor(2), seed=8,
                   progress=False)
    assert [r.results["mean"] for r in sweep.load(other)] != means


def test_identical_results_on_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    ref = tmp_path / "pool.sqlite"
    with _pool(1) as pool:
        sweep.run_grid(T.noisy, GRID, ref, executor=pool, seed=7, progress=False)
    store = tmp_path / "dask.sqlite"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        s = sweep.run_grid(T.noisy, GRID, store, executor=client.get_executor(), seed=7,
                           progress=False)
        assert s.completed == 12
        ran_on = client.run(lambda: sorted(m for m in sys.modules if m == "limits.sweep"))
        stored = _dump(store)
        with pytest.warns(RuntimeWarning, match="1 of 3 points failed"):   # failures, retries
            s = sweep.run_grid(T.fail_on, sweep.product(x=[0, 1, 2], bad=[[1]]), store,
                               executor=client.get_executor(), progress=False, retries=1)
        assert s.completed == 2 and [f.attempt for f in sweep.failures(store, s.name)] == [1, 2]
    assert len(ran_on) == 2 and ["limits.sweep"] in ran_on.values()    # ran in the workers
    assert stored == _dump(ref)
    assert _integrity(store) == [("ok",)]


def test_collect_returns_the_grids_records_in_grid_order(tmp_path, monkeypatch):
    """collect = run_grid + the grid's own records (in memory without a store): what the
    library's studies call; failed points are None and in the summary, with no warning."""
    monkeypatch.chdir(tmp_path)
    grid = sweep.product(x=[3, 1, 2, 0], bad=[[2]])
    with cf.ThreadPoolExecutor(2) as ex:
        recs, s = sweep.collect(T.fail_on, grid, executor=ex, seed=4, progress=False)
    assert os.listdir(tmp_path) == [] and s.store == ":memory:"           # nothing written
    assert (s.total, s.skipped, s.completed, s.others) == (4, 0, 3, 0)
    assert [f.params["x"] for f in s.failed] == [2] and recs[2] is None
    for p, r in zip(grid, recs):
        if p["x"] != 2:
            assert r.params == p
            _assert_same_results(r.results, _direct(T.fail_on, p, seed=4))
    # with a store: the same records, and a second call reads them back without running
    store = tmp_path / "s.sqlite"
    with cf.ThreadPoolExecutor(2) as ex:
        sweep.run_grid(T.fail_on, grid[:2], store, executor=ex, seed=4, progress=False)
        recs2, s2 = sweep.collect(T.fail_on, grid, store, executor=ex, seed=4, progress=False)
    assert (s2.skipped, s2.completed, len(s2.failed)) == (2, 1, 1)
    assert [r and r.key for r in recs2] == [r and r.key for r in recs]
    assert all(r is None or r.results["z"].tobytes() == q.results["z"].tobytes()
               for r, q in zip(recs, recs2))


# ----------------------------------------------------------------------------------------------
# resuming
# ----------------------------------------------------------------------------------------------
def _log_lines(path):
    return path.read_text().split() if path.exists() else []


def test_rerun_skips_stored_points(tmp_path):
    log = tmp_path / "calls.log"
    store = tmp_path / "s.sqlite"
    small = sweep.product(x=list(range(5)), log=[str(log)])
    big = sweep.product(x=list(range(8)), log=[str(log)])
    assert sweep.run_grid(T.logged, small, store, progress=False).completed == 5
    s = sweep.run_grid(T.logged, big, store, progress=False)
    assert (s.skipped, s.completed) == (5, 3)
    assert sorted(map(int, _log_lines(log))) == list(range(8))         # each point ran once
    assert [r.params["x"] for r in sweep.load(store)] == list(range(8))
    s = sweep.run_grid(T.logged, big, store, progress=False)
    assert (s.skipped, s.completed) == (8, 0) and len(_log_lines(log)) == 8


def _done(store):
    try:
        con = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
        try:
            return {x for (x,) in con.execute(
                "SELECT json_extract(params, '$.x') FROM points WHERE status = 'done'")}
        finally:
            con.close()
    except sqlite3.OperationalError:        # not created yet
        return set()


def _check_complete(store, log, grid, stored_before, calls_before):
    rerun_calls = list(map(int, _log_lines(log)[calls_before:]))
    assert len(rerun_calls) == len(set(rerun_calls))                     # each once
    assert set(rerun_calls) == {p["x"] for p in grid} - stored_before    # nothing stored redone
    recs = sweep.load(store)
    assert sorted(r.params["x"] for r in recs) == [p["x"] for p in grid]  # every point once
    for r in recs:
        _assert_same_results(r.results, T.noisy(r.params, sweep.point_seed(r.params)))
    assert _integrity(store) == [("ok",)]


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")
def test_killed_coordinator_then_rerun(tmp_path):
    log, store = tmp_path / "calls.log", tmp_path / "s.sqlite"
    grid = sweep.product(x=list(range(40)), log=[str(log)], sleep=[0.05])
    script = textwrap.dedent(f"""
        from limits import sweep, _sweep_testing as T
        sweep.run_grid(T.logged, sweep.product(x=list(range(40)), log=[{str(log)!r}],
                       sleep=[0.05]), {str(store)!r}, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(_done(store)) < 6 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the coordinator and its pool, mid-way
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stored_before = _done(store)
    assert 6 <= len(stored_before) < 40
    assert _integrity(store) == [("ok",)]
    calls_before = len(_log_lines(log))
    s = sweep.run_grid(T.logged, grid, store, progress=False)
    assert s.skipped == len(stored_before) and s.completed == 40 - len(stored_before)
    _check_complete(store, log, grid, stored_before, calls_before)


def test_killed_worker_stops_the_grid_then_rerun(tmp_path):
    log, store = tmp_path / "calls.log", tmp_path / "s.sqlite"
    grid = sweep.product(x=list(range(12)), log=[str(log)], die=[5], sleep=[0.2])
    with pytest.raises(RuntimeError, match="executor broke.*rerun|executor broke.*again"):
        with _pool(2) as pool:
            sweep.run_grid(T.die_once, grid, store, executor=pool, progress=False)
    stored_before = _done(store)
    assert 5 not in stored_before
    assert _integrity(store) == [("ok",)]
    calls_before = len(_log_lines(log))
    s = sweep.run_grid(T.die_once, grid, store, progress=False)
    assert s.completed == 12 - len(stored_before) and not s.failed
    _check_complete(store, log, grid, stored_before, calls_before)


# ----------------------------------------------------------------------------------------------
# failures
# ----------------------------------------------------------------------------------------------
def test_failing_point_is_recorded_and_the_rest_completes(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    grid = sweep.product(x=list(range(8)), bad=[[2]])
    with pytest.warns(RuntimeWarning, match=r"1 of 8 points failed.*bad point x=2"):
        s = sweep.run_grid(T.fail_on, grid, store, progress=True)
    assert "failed=1" in capsys.readouterr().err                        # the bar reports it
    assert s.completed == 7 and len(s.failed) == 1
    assert s.failed[0].params == {"bad": [2], "x": 2}
    assert s.failed[0].error == "ValueError: bad point x=2"
    assert "Traceback" in s.failed[0].traceback and "fail_on" in s.failed[0].traceback
    recs = sweep.load(store)
    assert sorted(r.params["x"] for r in recs) == [0, 1, 3, 4, 5, 6, 7]  # never a result
    fails = sweep.failures(store)
    assert [(f.params["x"], f.attempt, f.error) for f in fails] == \
        [(2, 1, "ValueError: bad point x=2")]
    with pytest.warns(RuntimeWarning):                 # a rerun retries only the failed point
        s = sweep.run_grid(T.fail_on, grid, store, progress=False, retries=2)
    assert (s.skipped, s.completed, len(s.failed)) == (7, 0, 1)
    assert [f.attempt for f in sweep.failures(store)] == [1, 1, 2, 3]


def test_retries_and_unstorable_results(tmp_path):
    store = tmp_path / "s.sqlite"
    grid = sweep.product(x=list(range(4)), dir=[str(tmp_path)])
    with _pool(2) as pool:
        s = sweep.run_grid(T.flaky, grid, store, executor=pool, progress=False, retries=1)
    assert s.completed == 4 and not s.failed
    assert sweep.failures(store) == []
    assert sorted(f.params["x"] for f in sweep.failures(store, resolved=True)) == [0, 1, 2, 3]
    with pytest.warns(RuntimeWarning, match="2 of 2 points failed"):
        s = sweep.run_grid(T.wrong_return, sweep.product(x=[0, 1]), store, progress=False)
    errors = sorted(f.error for f in s.failed)
    assert errors[0].startswith("TypeError: fn must return a dict of results, got list")
    assert errors[1].startswith("TypeError: result 'obj' is an object array")
    assert len(sweep.load(store, "limits._sweep_testing:wrong_return")) == 0


# ----------------------------------------------------------------------------------------------
# bad input: clear errors before any work starts
# ----------------------------------------------------------------------------------------------
def _nested():
    def fn(params, rng_seed):
        return {}
    return fn


def _ghost_fn():
    """A function whose module exists in this process only (as a notebook's or a test file's
    collected with --import-mode=importlib may be)."""
    mod = types.ModuleType("sweep_ghost_module")
    exec("def fn(params, rng_seed):\n    return {}\n", mod.__dict__)
    sys.modules["sweep_ghost_module"] = mod
    return mod.fn


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(fn=lambda p, s: {}), TypeError, "lambda"),
    (dict(fn=_nested()), TypeError, "nested"),
    (dict(fn=functools.partial(T.noisy)), TypeError, "module-level.*partial"),
    (dict(fn="limits._sweep_testing:noisy"), TypeError, "fn must be"),
    (dict(executor="dask"), TypeError, "executor must be.*'dask'"),
    (dict(executor=multiprocessing.get_context("spawn")), TypeError, "executor must be"),
    (dict(grid=[{"x": float("nan")}]), ValueError, r"grid\[0\]\['x'\].*nan"),
    (dict(grid=[{"x": 1}, {"x": {1, 2}}]), TypeError, r"grid\[1\]\['x'\].*set"),
    (dict(grid=[{"x": np.zeros(2)}]), TypeError, r"grid\[0\]\['x'\].*ndarray"),
    (dict(grid=[{1: 2}]), TypeError, r"grid\[0\] keys must be str"),
    (dict(grid=[[1, 2]]), TypeError, r"grid\[0\] must be a dict"),
    (dict(grid={"x": 1}), TypeError, "grid must be an iterable"),
    (dict(grid=[]), ValueError, "grid is empty"),
    (dict(grid=[{"x": 1}, {"x": 2}, {"x": 1}]), ValueError, r"grid\[2\].*grid\[0\]"),
    (dict(seed=-1), ValueError, "seed.*-1"),
    (dict(seed=1.5), TypeError, "seed.*1.5"),
    (dict(retries=-1), ValueError, "retries.*-1"),
    (dict(name=""), TypeError, "name"),
    (dict(store=123), TypeError, "store.*123"),
    (dict(lease=0), ValueError, "lease.*0"),
    (dict(lease=float("inf")), ValueError, "lease"),
])
def test_bad_input(tmp_path, kwargs, exc, match):
    args = dict(fn=T.noisy, grid=[{"x": 1}], store=tmp_path / "s.sqlite", progress=False)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        sweep.run_grid(**args)
    assert not (tmp_path / "s.sqlite").exists()                         # nothing started


def test_bad_store_and_names(tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "s.sqlite"
    with pytest.raises(ValueError, match="does not exist"):
        sweep.run_grid(T.noisy, [{"x": 1}], missing, progress=False)
    assert not missing.parent.exists()
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(ValueError, match="not a sweep store"):
        sweep.run_grid(T.noisy, [{"x": 1}], junk, progress=False)
    with pytest.raises(ValueError, match="store=.*does not exist"):
        sweep.load(tmp_path / "absent.sqlite")
    store = tmp_path / "s.sqlite"
    sweep.run_grid(T.noisy, [{"x": 1}], store, name="a", seed=1, executor=cf.ThreadPoolExecutor(1),
                   progress=False)
    with pytest.raises(ValueError, match="name='a' was run with seed"):
        sweep.run_grid(T.noisy, [{"x": 2}], store, name="a", seed=2, progress=False)
    with pytest.raises(ValueError, match="name='a' was run with fn"):
        sweep.run_grid(T.logged, [{"x": 2}], store, name="a", seed=1, progress=False)
    sweep.run_grid(T.noisy, [{"x": 1}], store, name="b", executor=cf.ThreadPoolExecutor(1),
                   progress=False)
    with pytest.raises(ValueError, match="2 experiments"):
        sweep.load(store)
    with pytest.raises(ValueError, match="name='c' is not in"):
        sweep.load(store, "c")
    assert [r.params for r in sweep.load(store, "a")] == [{"x": 1}]


def test_fn_not_importable_in_workers(tmp_path):
    fn = _ghost_fn()
    try:
        with pytest.raises(TypeError, match="not importable as sweep_ghost_module:fn in the "
                                            "executor's workers.*ModuleNotFoundError"):
            with _pool(1) as pool:
                sweep.run_grid(fn, [{"x": 1}], tmp_path / "s.sqlite", executor=pool,
                               progress=False)
    finally:
        del sys.modules["sweep_ghost_module"]
    assert sweep.load(tmp_path / "s.sqlite") == [] and sweep.failures(tmp_path / "s.sqlite") == []


def test_default_pool_refused_in_a_daemonic_process(tmp_path, monkeypatch):
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True)
    with pytest.raises(ValueError, match="executor=None.*daemonic"):
        sweep.run_grid(T.noisy, [{"x": 1}], tmp_path / "s.sqlite", progress=False)
    assert not (tmp_path / "s.sqlite").exists()
    s = sweep.run_grid(T.noisy, [{"x": 1}], tmp_path / "s.sqlite", progress=False,
                       executor=cf.ThreadPoolExecutor(1))
    assert s.completed == 1


# ----------------------------------------------------------------------------------------------
# processes: nothing outlives a killed coordinator; a missing __main__ guard is named
# ----------------------------------------------------------------------------------------------
def _parents():
    """{pid: parent pid} of every process, from /proc."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue
            out[int(entry)] = int(stat[stat.rindex(")") + 2:].split()[1])
    return out


def _descendants(pid):
    parents, found, todo = _parents(), set(), [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in found]
        found.update(kids)
        todo.extend(kids)
    return found


def _running(pid):
    """Alive and not a zombie (an orphan's zombie waits for a reaper that may never come)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


@pytest.mark.skipif(not os.path.isdir("/proc") or not hasattr(os, "killpg"),
                    reason="needs /proc and POSIX process groups")
def test_killed_coordinator_leaves_no_live_processes(tmp_path):
    """SIGKILL to the coordinator alone (not its process group): its pool's workers, the fork
    server and the resource tracker must all be gone 10 s later (issue 21, item 9)."""
    log, store = tmp_path / "calls.log", tmp_path / "s.sqlite"
    script = textwrap.dedent(f"""
        from limits import sweep, _sweep_testing as T
        if __name__ == "__main__":
            sweep.run_grid(T.logged, sweep.product(x=list(range(400)), log=[{str(log)!r}],
                           sleep=[0.5]), {str(store)!r}, progress=False)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(_done(store)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None and len(_done(store)) >= 2       # workers are computing
        family = _descendants(proc.pid)
        workers = [p for p in family if "forkserver" in open(f"/proc/{p}/cmdline").read()]
        assert len(workers) >= 2                      # the fork server and at least a worker
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while any(_running(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.1)
        alive = [p for p in family if _running(p)]
        assert alive == [], f"still running 10 s after the coordinator was killed: {alive}"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def test_script_without_main_guard_gets_a_clear_error(tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f"""
        from limits import sweep, _sweep_testing as T
        sweep.run_grid(T.noisy, sweep.product(x=[1, 2]), {str(tmp_path / 's.sqlite')!r},
                       progress=False)
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(sweep.__file__)), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: the executor's workers died before running anything")
    assert 'has no `if __name__ == "__main__":` block' in last and str(script) in last
    # with the guard the same script runs
    script.write_text("if __name__ == '__main__':\n" + textwrap.indent(script.read_text(), "    "))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert [r.params["x"] for r in sweep.load(tmp_path / "s.sqlite")] == [1, 2]


# ----------------------------------------------------------------------------------------------
# a database that is not a sweep store is refused and left untouched
# ----------------------------------------------------------------------------------------------
def test_unrelated_sqlite_database_is_refused_untouched(tmp_path):
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE people(name TEXT, age INTEGER)")
    con.executemany("INSERT INTO people VALUES (?, ?)", [("ada", 36), ("alan", 41)])
    con.commit()
    mode = con.execute("PRAGMA journal_mode").fetchone()[0]
    con.close()
    before = path.read_bytes()
    files = sorted(os.listdir(tmp_path))
    for call in (lambda: sweep.run_grid(T.noisy, [{"x": 1}], path, progress=False,
                                        executor=cf.ThreadPoolExecutor(1)),
                 lambda: sweep.collect(T.noisy, [{"x": 1}], path, progress=False,
                                       executor=cf.ThreadPoolExecutor(1)),
                 lambda: sweep.load(path), lambda: sweep.failures(path)):
        with pytest.raises(ValueError, match=r"not a sweep store.*\['people'\]"):
            call()
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == files
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == mode != "wal"
    assert con.execute("SELECT name FROM sqlite_master").fetchall() == [("people",)]
    con.close()
    # an empty file (e.g. from tempfile.mkstemp) becomes a store
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    assert sweep.run_grid(T.noisy, [{"x": 1}], empty, progress=False,
                          executor=cf.ThreadPoolExecutor(1)).completed == 1


# ----------------------------------------------------------------------------------------------
# several coordinators on one store: leases
# ----------------------------------------------------------------------------------------------
def _coordinator(store, log, n, sleep, out):
    """A script that runs the shared grid on 2 threads and writes its Summary as JSON."""
    return textwrap.dedent(f"""
        import concurrent.futures as cf, json
        from limits import sweep, _sweep_testing as T
        if __name__ == "__main__":
            grid = sweep.product(x=list(range({n})), log=[{str(log)!r}], sleep=[{sleep}])
            with cf.ThreadPoolExecutor(2) as ex:
                s = sweep.run_grid(T.logged, grid, {str(store)!r}, executor=ex,
                                   progress=False)
            with open({str(out)!r}, "w") as fh:
                json.dump(dict(total=s.total, skipped=s.skipped, completed=s.completed,
                               others=s.others, failed=len(s.failed)), fh)
    """)


def test_two_coordinators_share_the_work(tmp_path):
    """Two coordinators started together on one store: each point computed once, both did
    some of it, and each summary adds up (what it stored + what the other stored)."""
    log, store, n = tmp_path / "calls.log", tmp_path / "s.sqlite", 30
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    sweep.run_grid(T.logged, [{"x": -1, "log": str(tmp_path / "warm.log"), "sleep": 0.0}],
                   store, name="warm-up", executor=cf.ThreadPoolExecutor(1), progress=False)
    procs = [subprocess.Popen([sys.executable, "-c", _coordinator(store, log, n, 0.4, out)])
             for out in outs]
    for p in procs:
        assert p.wait(timeout=300) == 0
    calls = sorted(map(int, _log_lines(log)))
    assert calls == list(range(n))                                     # each point once
    a, b = (json.loads(o.read_text()) for o in outs)
    for s in (a, b):
        assert s["total"] == n and s["failed"] == 0
        assert s["skipped"] + s["completed"] + s["others"] == n
    assert a["completed"] + b["completed"] == n
    assert a["completed"] > 0 and b["completed"] > 0                   # shared
    recs = sweep.load(store, "limits._sweep_testing:logged")
    assert sorted(r.params["x"] for r in recs) == list(range(n))
    for r in recs:
        _assert_same_results(r.results, T.noisy(r.params, sweep.point_seed(r.params)))
    assert _integrity(store) == [("ok",)]
    con = sqlite3.connect(store)
    assert con.execute("SELECT COUNT(*) FROM leases").fetchone() == (0,)   # all released
    con.close()


def test_a_lease_is_respected_until_it_expires(tmp_path):
    """A point leased to a live coordinator elsewhere is left alone until its lease expires,
    then taken over; the summary says which points this call stored."""
    store = tmp_path / "s.sqlite"
    grid = sweep.product(x=[0, 1, 2])
    ex = cf.ThreadPoolExecutor(2)
    sweep.run_grid(T.noisy, grid[:1], store, executor=ex, progress=False)    # creates it
    key = sweep.point_key(grid[2])
    con = sqlite3.connect(store)
    con.execute("INSERT INTO points(name, key, seq, params, status) VALUES (?, ?, 99, ?, "
                "'pending')", ("limits._sweep_testing:noisy", key, '{"x":2}'))
    con.execute("INSERT INTO leases VALUES (?, ?, 'elsewhere/1/x', ?)",
                ("limits._sweep_testing:noisy", key, time.time() + 3.0))
    con.commit()
    con.close()
    t0 = time.monotonic()
    s = sweep.run_grid(T.noisy, grid, store, executor=ex, progress=False)
    waited = time.monotonic() - t0
    assert (s.skipped, s.completed, s.others, s.failed) == (1, 2, 0, [])
    assert 2.0 < waited < 60
    assert sorted(r.params["x"] for r in sweep.load(store)) == [0, 1, 2]


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups")
def test_leases_of_a_killed_coordinator_are_taken_over_at_once(tmp_path):
    log, store = tmp_path / "calls.log", tmp_path / "s.sqlite"
    n = 40
    out = tmp_path / "never.json"
    proc = subprocess.Popen([sys.executable, "-c", _coordinator(store, log, n, 0.3, out)],
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(_done(store)) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    con = sqlite3.connect(store)
    leased = con.execute("SELECT COUNT(*) FROM leases").fetchone()[0]
    con.close()
    assert leased > 0                                   # the killed call's leases remain
    stored_before = _done(store)
    with cf.ThreadPoolExecutor(2) as ex:
        s = sweep.run_grid(T.logged, sweep.product(x=list(range(n)), log=[str(log)],
                                                   sleep=[0.3]), store, executor=ex,
                           progress=False)
    assert s.completed == n - len(stored_before) and s.skipped == len(stored_before)
    assert s.seconds < sweep.LEASE_SECONDS / 2          # no wait for the dead leases to expire
    assert not out.exists()
