"""Deep two-input trajectory: ``MLP(depth=10_000, activation=ReLU()).trajectory(K0=np.eye(2))``.

Issue 22 item 2: a depth-1e4 trajectory of two inputs is a compiled loop over 1e4 layers of
2 x 2 entries (milliseconds of work); it must take under 0.5 s on 2 cores, also while another
numba-parallel process keeps the cores busy.

Usage::

    python benchmarks/trajectory.py                      # this tree only
    python benchmarks/trajectory.py --before /path/tree  # also an older tree (e.g. git archive)

Each timing runs in a fresh subprocess (``PYTHONPATH`` = the tree) with the numba cache primed
first, and reports the warm time of the call (best and median of ``--repeats``), with no
competitor and with one competing process that runs a numba ``prange`` loop on every core
until it is stopped.  Timings on a shared machine are noisy; the table says which numbers came
from the same run.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

_CHILD = r"""
import sys, time, statistics
import numpy as np
import kernels as kn
depth, repeats = int(sys.argv[1]), int(sys.argv[2])
net = kn.MLP(depth=depth, activation=kn.ReLU())
net.trajectory(K0=np.eye(2))                 # compile / load the cache
ts = []
for _ in range(repeats):
    t0 = time.perf_counter()
    tr = net.trajectory(K0=np.eye(2))
    ts.append(time.perf_counter() - t0)
    if time.perf_counter() - t0 > 60:
        break
assert tr.nngp.shape == (depth + 1, 2, 2)
assert kn.__file__.startswith(sys.argv[3]), kn.__file__
print(min(ts), statistics.median(ts), len(ts))
"""

_BUSY = r"""
import numba, numpy as np
from numba import prange
@numba.njit(parallel=True)
def burn(a):
    s = 0.0
    for i in prange(a.shape[0]):
        s += np.sin(a[i]) * np.cos(a[i])
    return s
a = np.random.default_rng(0).standard_normal(2_000_000)
while True:
    burn(a)
"""


def _time(tree, depth, repeats, env_extra):
    env = dict(os.environ, PYTHONPATH=tree, **env_extra)
    # cwd = the tree: ``python -c`` puts the working directory first on sys.path, so running
    # from another checkout would silently import that one
    out = subprocess.run([sys.executable, "-c", _CHILD, str(depth), str(repeats), tree], env=env,
                         capture_output=True, text=True, timeout=3600, cwd=tree)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    best, med, n = out.stdout.split()
    return float(best), float(med), int(n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="an older source tree to compare (PYTHONPATH root)")
    ap.add_argument("--depth", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = ([("before", os.path.abspath(args.before))] if args.before else []) + [("after", here)]
    print(f"MLP(depth={args.depth}, ReLU()).trajectory(K0=np.eye(2)), warm, "
          f"{os.cpu_count()} cores, best/median of {args.repeats} (noisy shared machine)")
    print(f"{'tree':8s} {'competitor':12s} {'best s':>9s} {'median s':>9s}")
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env_extra = {"NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", cache)}
        for busy in (False, True):
            proc = None
            if busy:
                proc = subprocess.Popen([sys.executable, "-c", _BUSY],
                                        env=dict(os.environ, **env_extra))
                time.sleep(3.0)                       # let it compile and start burning
            try:
                for name, tree in trees:
                    best, med, n = _time(tree, args.depth, args.repeats, env_extra)
                    label = "busy numba" if busy else "none"
                    rows.append((name, label, best, med))
                    print(f"{name:8s} {label:12s} {best:9.3f} {med:9.3f}" +
                          (f"  ({n} runs)" if n != args.repeats else ""), flush=True)
            finally:
                if proc is not None:
                    proc.kill()
                    proc.wait()
    return rows


if __name__ == "__main__":
    main()
