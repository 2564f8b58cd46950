"""Validation checks of the sweep capability (registered with ``limits.validate.check``)."""
import concurrent.futures as cf
import multiprocessing
import os
import sqlite3
import tempfile

from ._registry import Result, check  # noqa: F401


def _stored(path):
    con = sqlite3.connect(path)
    try:
        return (con.execute("SELECT key, params, results FROM points WHERE status = 'done' "
                            "ORDER BY key").fetchall(),
                con.execute("SELECT key, field, npy FROM arrays ORDER BY key, field").fetchall(),
                con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


@check("sweep: 20-point grid, 1 vs 2 local workers")
def _one_vs_two_workers(ctx):
    from .. import _sweep_testing as T
    from .. import sweep

    grid = sweep.product(x=list(range(10)), n=[2, 5])
    methods = multiprocessing.get_all_start_methods()
    mp = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    daemon = multiprocessing.current_process().daemon     # e.g. in a dask worker: no children
    kind = "threads (daemonic process)" if daemon else "worker processes"
    dumps = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            path = os.path.join(tmp, f"w{workers}.sqlite")
            with (cf.ThreadPoolExecutor(workers) if daemon
                  else cf.ProcessPoolExecutor(workers, mp_context=mp)) as pool:
                sweep.run_grid(T.noisy, grid, path, executor=pool, seed=3, progress=False)
            dumps.append(_stored(path))
        recs = sweep.load(os.path.join(tmp, "w1.sqlite"))
    (p1, a1, ok1), (p2, a2, ok2) = dumps
    same = p1 == p2 and a1 == a2
    # what was stored is what fn gives in this process with the documented point seed
    direct = all(T.noisy(r.params, sweep.point_seed(r.params, 3))["z"].tobytes()
                 == r.results["z"].tobytes() for r in recs)
    n = len(p1)
    return [Result(f"sweep: 20-point grid through 1 and 2 {kind}",
                   "20 rows each, bit-identical params/results/arrays, = in-process fn",
                   f"{n} and {len(p2)} rows, {'identical' if same else 'DIFFERENT'}, "
                   f"{'=' if direct else '!='} in-process, integrity {ok1}/{ok2}",
                   "exact", same and direct and n == 20 and ok1 == ok2 == "ok")]
