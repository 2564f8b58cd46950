"""Benchmark: cost of ``net.kernel_grads(x)`` relative to ``net.kernels(x)``.

Plain script (not a test)::

    python benchmarks/kernel_grads.py            # N = 1000, depth 100
    python benchmarks/kernel_grads.py --n 500 --repeats 3

Networks: MLP depth 100 with weight_var 2 and bias_var 0.01 for ReLU (the fast path does not
apply with a bias), weight_var 1.5 and bias_var 0.05 for Erf; inputs of dimension 16, float64.
For each, the first call of each method (numba compilation, or loading the on-disk cache, plus
one run) is printed separately from the warm time (best of ``--repeats`` in-process runs; the
median is printed too).  ``kernel_grads`` returns the two kernels and their derivatives with
respect to weight_var and bias_var (two tangents).  Target (issue 16): ratio <= 3.
Timings on a shared machine are noisy: compare the ratio, not the absolute times.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import kernels as kn  # noqa: E402


def _time(fn, repeats):
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        warm.append(time.perf_counter() - t0)
    return first, min(warm), statistics.median(warm)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    x = np.random.default_rng(0).standard_normal((args.n, 16))
    nets = [("ReLU, bias", kn.MLP(args.depth, kn.ReLU(), 2.0, 0.01)),
            ("Erf", kn.MLP(args.depth, kn.Erf(), 1.5, 0.05))]
    print(f"N = {args.n}, depth = {args.depth}, d = 16; warm = best of {args.repeats} "
          f"(median in brackets); first call includes compilation or cache load")
    head = (f"{'network':<12} {'kernels warm s':>18} {'grads warm s':>18} {'ratio':>6} "
            f"{'kernels 1st s':>14} {'grads 1st s':>12}")
    print(head)
    print("-" * len(head))
    for name, net in nets:
        fk, wk, mk = _time(lambda: net.kernels(x), args.repeats)
        fg, wg, mg = _time(lambda: net.kernel_grads(x), args.repeats)
        print(f"{name:<12} {wk:>8.3f} [{mk:7.3f}] {wg:>8.3f} [{mg:7.3f}] {wg / wk:>6.2f} "
              f"{fk:>14.2f} {fg:>12.2f}")


if __name__ == "__main__":
    main()
