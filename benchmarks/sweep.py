"""Benchmark of limits.sweep: bookkeeping overhead per grid point for a trivial ``fn``.

    python benchmarks/sweep.py                 # 1,000 points, 3 repeats
    python benchmarks/sweep.py --points 5000 --repeats 5

``fn`` is ``limits._sweep_testing.trivial`` (returns its parameter).  Every row runs the same
grid into a fresh SQLite store (a new file in a temporary directory) and prints the median of
``--repeats`` wall times, divided by the number of points:

* ``run_grid, default pool, first in this process``: ``executor=None`` once, i.e. a new local
  process pool over the available cores, including the start of the fork server (one per
  process; it imports ``limits.sweep`` once so that workers fork ready);
* ``run_grid, default pool``: the same, later calls (a new pool each, its start-up included);
* ``run_grid, warm pool``: the same on an already started ``ProcessPoolExecutor`` whose workers
  have imported ``limits.sweep`` (the steady state of a long grid);
* ``raw submit, warm pool``: the baseline measured in the same run: the same pool,
  ``submit(trivial, params, seed)`` for every point and ``result()``, no store, no seeds;
* ``run_grid, 2 threads``: ``ThreadPoolExecutor(2)``, bookkeeping without inter-process traffic;
* ``rerun, all stored``: the cost of skipping a completed grid;
* ``store writes only``: one SQLite transaction per point (WAL, synchronous=NORMAL), no executor.

Target (issue 8): overhead <= 5 ms per point for the local pool with 1,000 points.
"""
import argparse
import concurrent.futures as cf
import multiprocessing
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from limits import _sweep_testing as T  # noqa: E402
from limits import _sweep_pool, _sweep_store  # noqa: E402
from limits import sweep  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args(argv)
    grid = sweep.product(x=list(range(a.points)))
    tmp = tempfile.mkdtemp(prefix="sweep-bench-")
    counter = iter(range(10 ** 6))

    def store():
        return os.path.join(tmp, f"s{next(counter)}.sqlite")

    def run(executor):
        return lambda: sweep.run_grid(T.trivial, grid, store(), executor=executor,
                                      progress=False)

    ctx = multiprocessing.get_context("forkserver")
    workers = _sweep_pool._cpu_count()
    rows = []

    def row(label, fn):
        ts = [timed(fn) for _ in range(a.repeats)]
        rows.append((label, statistics.median(ts), min(ts)))

    t_first = timed(run(None))
    rows.append(("run_grid, default pool, first in this process", t_first, t_first))
    row(f"run_grid, default pool ({workers} workers, start-up incl.)", run(None))
    with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        sweep.run_grid(T.trivial, grid[:2 * workers], store(), executor=pool, progress=False)
        row(f"run_grid, warm pool ({workers} workers)", run(pool))

        def raw():
            seed = sweep.point_seed({}, 0)
            fs = [pool.submit(T.trivial, g, seed) for g in grid]
            for f in fs:
                f.result()
        row(f"raw submit, warm pool ({workers} workers), no store", raw)
    with cf.ThreadPoolExecutor(2) as threads:
        row("run_grid, 2 threads", run(threads))
    done = store()
    sweep.run_grid(T.trivial, grid, done, executor=cf.ThreadPoolExecutor(2), progress=False)
    row("rerun, all stored", lambda: sweep.run_grid(T.trivial, grid, done, progress=False))

    def writes():
        path = store()
        con = _sweep_store._connect(path, create=True)
        spec = sweep._seed_spec(sweep._root_seed(0))
        _sweep_store._experiment(con, "w", "limits._sweep_testing:trivial", spec)
        pts = [(sweep.point_key(g), sweep._canonical_json(g)) for g in grid]
        _sweep_store._register(con, "w", pts)
        for key, cj in pts:
            _sweep_store._store_result(con, "w", key, cj, {}, 0.0)
        con.close()
    row("store writes only (1 transaction / point)", writes)

    print(f"\n{a.points} points, trivial fn, median (min) of {a.repeats}; cores: {workers}\n")
    print(f"| {'configuration':<55} | total (s) | per point (ms) |")
    print(f"|{'-' * 57}|-----------|----------------|")
    for label, med, mn in rows:
        print(f"| {label:<55} | {med:9.3f} | {1e3 * med / a.points:6.3f} "
              f"({1e3 * mn / a.points:5.3f}) |")
    print()
    for label, t, _ in rows[:2]:
        per = t / a.points * 1e3
        print(f"target <= 5 ms per point, {label}: {'met' if per <= 5 else 'NOT met'} "
              f"({per:.2f} ms)")


if __name__ == "__main__":
    main()
