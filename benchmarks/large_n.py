"""Benchmark: kernels past memory (issue 18).  Plain script, prints a table::

    python benchmarks/large_n.py                 # N = 2000 (quick)
    python benchmarks/large_n.py --n 16000       # the memory-map run of the issue's checks
    python benchmarks/large_n.py --n 50000 --cg-n 8000 --cluster-n 4000 --dir /big/disk
    python benchmarks/large_n.py --n 4000 --nt-python /work/ntvenv/bin/python   # + nt.batch
    python benchmarks/large_n.py --nt-max --nt-python /work/ntvenv/bin/python   # NT's largest N

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

* **nt.batch** (with ``--nt-python``, or ``NT_PYTHON`` set): neural-tangents 0.6.5's
  ``nt.batch(kernel_fn, batch_size=B, store_on_device=False)`` on the same N inputs and the same
  network (``benchmarks/nt_batch.py``, run in that interpreter, float64), side by side with the
  memmap row: wall time (block compile excluded, as ours), peak resident memory of its process
  (VmHWM), and the largest relative difference from our kernels (max |ours - NT| / max |ours|,
  read from both in row blocks).  ``nt.batch`` returns the kernels in memory, so it is not run
  when its extrapolated peak memory exceeds the memory available.
* ``--nt-max``: the largest N that ``nt.batch`` handles here: N on ``--nt-ladder`` in order,
  each in a fresh process with a time limit (``--nt-timeout``); a step is not started when its
  peak memory, extrapolated from the steps before (the first step's peak as a fixed base, plus
  the last step's growth above it scaled by (N'/N)^2, at least the two N x N kernels), exceeds
  90% of the memory available (MemAvailable), which is then the reason reported (on a shared
  machine this avoids the kernel's out-of-memory killer).  Only this mode runs (no memmap rows).

Timings on a shared machine are noisy; the table says what was measured, once.
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import numpy as np

import kernels as kn

D = 784
HERE = os.path.dirname(os.path.abspath(__file__))


def print_rows(rows):
    """Rows of strings as aligned columns joined by ' | '."""
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    for r in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))


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


def mem_available_mb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_nt(nt_python, x, batch_size, root, timeout=None, keep=True):
    """benchmarks/nt_batch.py on x in the NT interpreter: its JSON (or {"error": ...})."""
    xf = os.path.join(root, f"x_nt{x.shape[0]}.npy")
    np.save(xf, x)
    cmd = [nt_python, os.path.join(HERE, "nt_batch.py"), "--x", xf, "--depth", "10",
           "--weight-var", "2.0", "--bias-var", "0.05", "--batch-size", str(batch_size)]
    if keep:
        cmd += ["--out", root]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        os.remove(xf)
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""
        return {"error": f"exit {out.returncode} {tail}"[:200]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def max_rel_diff(ours, theirs, rows=1024):
    """max |ours - theirs| / max |ours| over two (N, N) arrays / memory maps, in row blocks."""
    num = den = 0.0
    for r0 in range(0, ours.shape[0], rows):
        a, b = np.asarray(ours[r0:r0 + rows]), np.asarray(theirs[r0:r0 + rows])
        num = max(num, float(np.max(np.abs(a - b))))
        den = max(den, float(np.max(np.abs(a))))
    return num / den


def nt_max(args):
    """--nt-max: the largest N on the ladder that nt.batch handles here."""
    ladder = [int(v) for v in args.nt_ladder.split(",")]
    root = tempfile.mkdtemp(prefix="large_n_nt_", dir=args.dir)
    rows, best, prev, base = [], None, None, None
    try:
        x_all, _ = problem(max(ladder))
        for n in ladder:
            avail = mem_available_mb()
            if prev is not None:
                # peak = base (imports, jax) + c N^2: base from the first N, c from the last,
                # and never less than the two N x N float64 kernels themselves
                grow = max(prev["peak_rss_mb"] - base, 0.0) / prev["n"] ** 2
                need = base + max(1.2 * grow, 16.0 / 2 ** 20) * n * n
                if need > 0.9 * avail:
                    rows.append((f"N={n}", "not run", f"extrapolated peak {need / 1024:.1f} GB "
                                 f"> 0.9 x {avail / 1024:.1f} GB available", ""))
                    break
            res = run_nt(args.nt_python, x_all[:n], args.nt_batch_size, root,
                         timeout=args.nt_timeout, keep=False)
            if "error" in res:
                rows.append((f"N={n}", "failed", res["error"], ""))
                break
            rows.append((f"N={n}", f"{res['time']:.1f} s", f"peak RSS {res['peak_rss_mb']:.0f} "
                         f"MB", f"batch {res['batch_size']}, compile+first block "
                         f"{res['warmup']:.1f} s"))
            best, prev = n, res
            if base is None:                 # the first (smallest) N of the ladder
                base = res["peak_rss_mb"]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"# neural-tangents nt.batch (store_on_device=False), ReLU MLP depth 10, d = {D}, "
          f"{os.cpu_count()} cores; largest N handled: {best}")
    print_rows(rows)


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
    ap.add_argument("--nt-python", default=os.environ.get("NT_PYTHON"),
                    help="interpreter with neural-tangents 0.6.5 (default: $NT_PYTHON; "
                    "without it nt.batch is not run)")
    ap.add_argument("--nt-batch-size", type=int, default=1000)
    ap.add_argument("--nt-max", action="store_true", help="only: the largest N nt.batch "
                    "handles, on --nt-ladder")
    ap.add_argument("--nt-ladder", default="2000,4000,8000,16000,24000,32000,50000")
    ap.add_argument("--nt-timeout", type=float, default=3600.0, help="seconds per N")
    args = ap.parse_args()
    if args.nt_max:
        if not args.nt_python:
            ap.error("--nt-max needs --nt-python (or NT_PYTHON)")
        nt_max(args)
        return
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

        # ---- neural-tangents nt.batch on the same inputs ------------------------------------
        if args.nt_python:
            need = 4 * 16.0 * n * n / 2 ** 20        # 2 kernels, ~2 copies, and our comparison
            if need > 0.9 * mem_available_mb():
                rows.append(("nt.batch", f"N={n}", "not run", "", "",
                             f"needs ~{need / 1024:.0f} GB in memory"))
            else:
                res = run_nt(args.nt_python, x, args.nt_batch_size, root)
                if "error" in res:
                    rows.append(("nt.batch", f"N={n}", "failed", "", "", res["error"]))
                else:
                    dk = max_rel_diff(a, np.load(os.path.join(root, "nt_nngp.npy"),
                                                 mmap_mode="r"))
                    dt = max_rel_diff(b, np.load(os.path.join(root, "nt_ntk.npy"),
                                                 mmap_mode="r"))
                    rows.append((f"nt.batch (B={res['batch_size']})", f"N={n}",
                                 f"{res['time']:.1f} s", f"peak RSS {res['peak_rss_mb']:.0f} MB",
                                 "in memory", f"rel. diff NNGP {dk:.1e}, NTK {dt:.1e}"))
                    for f in ("nt_nngp.npy", "nt_ntk.npy"):
                        os.remove(os.path.join(root, f))

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
            # built anew without a client: the one above refers to inputs scattered to the
            # cluster's workers (kernels.dask_kernels, Notes)
            dk = kn.dask_kernels(net, xc, chunks=700)
            t = time.perf_counter()
            da.store(dk.ntk, mm, lock=True, scheduler="threads")
            st_s = time.perf_counter() - t
            rows.append(("dask threads -> .npy", f"N={cl_n}", f"{st_s:.1f} s", "NTK only", "",
                         f"== in-memory: {np.array_equal(mm, ref.ntk)}"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"# ReLU MLP depth 10 (bias_var 0.05), d = {D}, {os.cpu_count()} cores; numba "
          f"compile/cache load {compile_s:.1f} s (not included)")
    print_rows(rows)


if __name__ == "__main__":
    main()
