"""Benchmark: the input Gram product ``kernels._gram.gram`` (issues 18 and 20).  Plain script::

    python benchmarks/gram.py                # N = 2000 d = 784, N = 500 d = 16 and d = 32
    python benchmarks/gram.py --repeats 21

Three ways to compute the symmetric ``x @ x.T`` of N normal rows of dimension d, all in this
process, interleaved (old, new, BLAS, old, new, BLAS, ...) so that the load of a shared machine
falls on all three alike; the table gives medians and the ratios of medians.

* **old**: the loop kernel before the register-blocked micro-kernel (a verbatim copy kept in
  tests/kernels/test_gram.py as the bit-identity reference, imported from there);
* **new**: ``kernels._gram.gram``;
* **BLAS**: ``x @ x.T`` (NumPy's BLAS, its default threads; its last bits depend on the shapes,
  which is why the library does not use it).

The script also checks that old and new agree bit for bit on each input.  Timings on a shared
machine are noisy: read the ratios, and rerun when the machine is quiet.
"""
import argparse
import importlib.util
import os
import platform
import time

import numpy as np

from kernels import _gram

_HERE = os.path.dirname(os.path.abspath(__file__))


def _old_gram():
    path = os.path.join(_HERE, os.pardir, "tests", "kernels", "test_gram.py")
    spec = importlib.util.spec_from_file_location("_test_gram_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.old_gram


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--cases", default="2000x784,500x16,500x32",
                    help="comma-separated NxD (default: %(default)s)")
    args = ap.parse_args()
    old = _old_gram()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus; "
          f"medians of {args.repeats} interleaved repeats (ms)")
    print(f"{'N':>6} {'d':>5} {'old':>9} {'new':>9} {'BLAS':>9} {'old/BLAS':>9} {'new/BLAS':>9}"
          f" {'old/new':>8}  bits")
    for case in args.cases.split(","):
        n, d = (int(v) for v in case.lower().split("x"))
        x = np.random.default_rng(0).standard_normal((n, d))
        same = np.array_equal(old(x).view(np.int64), _gram.gram(x).view(np.int64))
        x @ x.T
        ts = {"old": [], "new": [], "blas": []}
        fns = {"old": lambda: old(x), "new": lambda: _gram.gram(x), "blas": lambda: x @ x.T}
        for _ in range(args.repeats):
            for name, f in fns.items():
                t = time.perf_counter()
                f()
                ts[name].append(time.perf_counter() - t)
        m = {k: float(np.median(v)) for k, v in ts.items()}
        print(f"{n:>6} {d:>5} {m['old'] * 1e3:>9.2f} {m['new'] * 1e3:>9.2f} "
              f"{m['blas'] * 1e3:>9.2f} {m['old'] / m['blas']:>9.2f} {m['new'] / m['blas']:>9.2f}"
              f" {m['old'] / m['new']:>8.2f}  {'equal' if same else 'DIFFER'}")


if __name__ == "__main__":
    main()
