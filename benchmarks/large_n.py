"""Benchmark: kernels past memory (issue 18).  Plain script, prints a table::

    python benchmarks/large_n.py                 # N = 2000 (quick)
    python benchmarks/large_n.py --n 16000       # the memory-map run of the issue's checks
    python benchmarks/large_n.py --n 50000 --cg-n 8000 --cluster-n 4000 --dir /big/disk

Problem: N inputs of dimension 784, uniform on the unit sphere, and a teacher
``y = tanh(s u.x) + 0.3 (s v.x)(s w.x)``, ``s = sqrt(784)`` (fixed unit vectors u, v, w; no downloads).  Network: ReLU MLP,
depth 10, weight_var 2, bias_var 0.05 (NTK parameterisation).

Rows:

* **memmap**: NNGP + NTK of all N inputs into two ``.npy`` memory maps
  (``net.kernels(x, out=(a, b))``): wall time (numba compiled beforehand), peak growth of the
  process's anonymous memory (``RssAnon`` in /proc/self/status, sampled every 50 ms by a thread),
  bytes written to disk (the two files), and the check that a random block equals the in-memory
  cross kernel of those rows (bit for bit).
* **cg**: kernel regression of the first ``--cg-n`` points (NNGP, ridge 1e-3 * mean diagonal)
  on the memory-mapped kernel by block-Jacobi conjugate gradients (tol 1e-8), test error on
  1000 held-out points; with the direct (Cholesky) solve of the same system when it fits
  (``--cg-n`` <= 12000), and the max difference of the two predictions.
* **dask**: the kernels of the first ``--cluster-n`` points as ``kernels.dask_kernels`` on a
  2-worker ``distributed.LocalCluster`` (one thread each), stored into ``.npy`` memory maps with
  ``dask.array.store``, compared with the in-memory result.

Timings on a shared machine are noisy; the table says what was measured, once.
"""
import argparse
import os
import shutil
import tempfile
import threading
import time

import numpy as np

import kernels as kn

D = 784


def rss_anon_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakRss:
    """Peak RssAnon growth over a with-block, sampled by a thread."""

    def __enter__(self):
        self.base = rss_anon_mb()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_anon_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_anon_mb())
        self.growth = self.peak - self.base


def problem(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    u, v, w = (a / np.linalg.norm(a) for a in rng.standard_normal((3, D)))
    # teacher on the sphere: projections are O(1/sqrt(d)), so scale them to O(1)
    s = np.sqrt(D)
    y = np.tanh(s * (x @ u)) + 0.3 * (s * (x @ v)) * (s * (x @ w))
    return x, y


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="inputs for the memory-map run")
    ap.add_argument("--cg-n", type=int, default=None, help="training points for CG "
                    "(default min(n, 4000))")
    ap.add_argument("--cluster-n", type=int, default=None, help="inputs for the dask run "
                    "(default min(n, 3000))")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--dir", default=None, help="directory for the .npy files (default: tmp)")
    ap.add_argument("--no-cluster", action="store_true")
    args = ap.parse_args()
    n = args.n
    cg_n = min(n, 4000) if args.cg_n is None else min(args.cg_n, n)
    cl_n = min(n, 3000) if args.cluster_n is None else args.cluster_n
    n_test = 1000
    root = tempfile.mkdtemp(prefix="large_n_", dir=args.dir)
    rows = []
    try:
        x_all, y_all = problem(n + n_test)
        x, x_test, y, y_test = x_all[:n], x_all[n:], y_all[:n], y_all[n:]
        net = kn.MLP(10, kn.ReLU(), weight_var=2.0, bias_var=0.05)
        t = time.perf_counter()
        net.kernels(x[:64], out=(np.empty((64, 64)), np.empty((64, 64))))
        net.kernels(x[:64], x_test[:8])
        compile_s = time.perf_counter() - t

        # ---- memmap ------------------------------------------------------------------------
        fa, fb = os.path.join(root, "nngp.npy"), os.path.join(root, "ntk.npy")
        a = np.lib.format.open_memmap(fa, mode="w+", dtype=np.float64, shape=(n, n))
        b = np.lib.format.open_memmap(fb, mode="w+", dtype=np.float64, shape=(n, n))
        with PeakRss() as mem:
            t = time.perf_counter()
            net.kernels(x, out=(a, b), tile=args.tile)
            mm_s = time.perf_counter() - t
        disk_gb = (os.path.getsize(fa) + os.path.getsize(fb)) / 1e9
        rng = np.random.default_rng(1)
        ri, ci = np.sort(rng.choice(n, 20, replace=False)), np.sort(rng.choice(n, 30,
                                                                            replace=False))
        blk = net.kernels(x[ri], x[ci])
        exact = (np.array_equal(a[np.ix_(ri, ci)], blk.nngp)
                 and np.array_equal(b[np.ix_(ri, ci)], blk.ntk))
        rows.append(("memmap NNGP+NTK", f"N={n}", f"{mm_s:.1f} s",
                     f"RssAnon +{mem.growth:.0f} MB", f"disk {disk_gb:.2f} GB",
                     f"block == cross kernel: {exact}"))

        # ---- CG ----------------------------------------------------------------------------
        if cg_n == n:
            Kxx = a
        else:
            Kxx = np.lib.format.open_memmap(os.path.join(root, "nngp_cg.npy"), mode="w+",
                                            dtype=np.float64, shape=(cg_n, cg_n))
            Kxx[:] = a[:cg_n, :cg_n]
        Ksx = net.nngp(x_test, x[:cg_n])
        r = 1e-3 * float(np.mean(net.nngp(x[:cg_n], diagonal=True)))
        with PeakRss() as mem:
            t = time.perf_counter()
            reg = kn.kernel_regression(Kxx, y[:cg_n], Ksx, diag_reg=r, tol=1e-8,
                                       preconditioner="block", block=1024)
            cg_s = time.perf_counter() - t
        err = float(np.sqrt(np.mean((reg.mean - y_test) ** 2)) / np.std(y_test))
        rows.append(("CG (block Jacobi)", f"N={cg_n}", f"{cg_s:.1f} s",
                     f"{reg.iterations} iterations", f"residual {reg.residual:.1e}",
                     f"test rel. RMSE {err:.4f}"))
        if cg_n <= 12000:
            t = time.perf_counter()
            direct = kn.kernel_regression(np.asarray(Kxx), y[:cg_n], Ksx, diag_reg=r,
                                          solver="direct")
            d_s = time.perf_counter() - t
            derr = float(np.sqrt(np.mean((direct.mean - y_test) ** 2)) / np.std(y_test))
            rows.append(("direct (Cholesky)", f"N={cg_n}", f"{d_s:.1f} s", "",
                         f"max |cg - direct| {np.max(np.abs(reg.mean - direct.mean)):.1e}",
                         f"test rel. RMSE {derr:.4f}"))
        del a, b, Kxx

        # ---- dask on a LocalCluster --------------------------------------------------------
        if not args.no_cluster:
            import dask.array as da
            import distributed
            xc = x[:cl_n]
            ref = net.kernels(xc)
            with distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                          dashboard_address=None) as cluster, \
                    distributed.Client(cluster) as client:
                client.run(lambda: net.kernels(xc[:64], out=(np.empty((64, 64)), None)))
                dk = kn.dask_kernels(net, xc, chunks=700)
                t = time.perf_counter()
                K, T = client.compute([dk.nngp, dk.ntk], sync=True)
                dask_s = time.perf_counter() - t
            same = np.array_equal(K, ref.nngp) and np.array_equal(T, ref.ntk)
            rows.append(("dask LocalCluster 2x1", f"N={cl_n}", f"{dask_s:.1f} s",
                         "chunks 700", "", f"== in-memory: {same}"))
            mm = np.lib.format.open_memmap(os.path.join(root, "dask_ntk.npy"), mode="w+",
                                           dtype=np.float64, shape=(cl_n, cl_n))
            t = time.perf_counter()
            da.store(dk.ntk, mm, lock=True, scheduler="threads")
            st_s = time.perf_counter() - t
            rows.append(("dask threads -> .npy", f"N={cl_n}", f"{st_s:.1f} s", "NTK only", "",
                         f"== in-memory: {np.array_equal(mm, ref.ntk)}"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"# ReLU MLP depth 10 (bias_var 0.05), d = {D}, {os.cpu_count()} cores; numba "
          f"compile/cache load {compile_s:.1f} s (not included)")
    widths = [max(len(r[k]) for r in rows) for k in range(6)]
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
