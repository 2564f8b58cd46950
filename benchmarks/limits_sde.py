"""Benchmark of limits.solve on the shaped-ReLU correlation SDE (issue 5 targets).

    python benchmarks/limits_sde.py [--paths 100000] [--steps 2000]

Case: ``CorrelationSDE(0, -2)`` (C = 4), rho0 = 0.3, T = 1, Euler-Maruyama in Fisher-z
coordinates, ``paths`` x ``steps``, values saved at 4 times.  Baseline: the same scheme of the
same equation written as vectorised NumPy (one array of all paths, one step at a time, drift
``C/(2 pi) h(theta) / sin^2 theta + tanh(x)/2`` with the series of h for theta < 1), run in
this process on the same machine.  Numba compile time is reported separately (first call minus
warm call).  Also times the SymPy derivation + code generation of ``limits.derive`` when it is
available (target <= 10 s cold).
"""
import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import limits  # noqa: E402


def numpy_euler(C, rho0, T, paths, steps, seed=0):
    """Vectorised NumPy Euler-Maruyama of dx = [C/(2pi) h/sin^2 + tanh x / 2] dt + dW."""
    rng = np.random.default_rng(seed)
    h = T / steps
    x = np.full(paths, math.atanh(rho0))
    for _ in range(steps):
        e = np.exp(-x)
        e2 = e * e
        inv = 1.0 / (1.0 + e2)
        r = (1.0 - e2) * inv
        th = 2.0 * np.arctan(e)
        sn = 2.0 * e * inv
        t2 = th * th
        series = th * t2 * (1 / 3 + t2 * (-1 / 30 + t2 * (1 / 840 + t2 * (-1 / 45360))))
        hh = np.where(th < 1.0, series, sn - th * r)
        x += (C / (2 * math.pi) * hh / (sn * sn) + 0.5 * r) * h \
            + math.sqrt(h) * rng.standard_normal(paths)
    return np.tanh(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--paths", type=int, default=100_000)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    sde = limits.CorrelationSDE(0.0, -2.0)
    times = [0.25, 0.5, 0.75, 1.0]
    dt = 1.0 / a.steps

    def ours():
        return limits.solve(sde, 0.3, times, paths=a.paths, seed=0, dt=dt, progress=False)

    t = time.perf_counter()
    ours()
    first = time.perf_counter() - t
    warm = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        sol = ours()
        warm.append(time.perf_counter() - t)
    t = time.perf_counter()
    ref = numpy_euler(4.0, 0.3, 1.0, a.paths, a.steps)
    t_np = time.perf_counter() - t
    w = min(warm)
    print(f"CorrelationSDE C=4, {a.paths} paths x {a.steps} steps, "
          f"{os.cpu_count()} cores")
    print("| implementation | time (s) | ns / path-step | E rho_1 |")
    print("|---|---|---|---|")
    n = a.paths * a.steps
    print(f"| limits.solve (warm, best of {a.repeats}) | {w:.3f} | {w / n * 1e9:.2f} | "
          f"{sol.values[-1].mean():.4f} |")
    print(f"| NumPy vectorised Euler | {t_np:.3f} | {t_np / n * 1e9:.2f} | {ref.mean():.4f} |")
    print(f"\nratio NumPy / ours: {t_np / w:.1f}x (target >= 10x); ours <= 5 s target: "
          f"{'met' if w <= 5 else 'NOT met'}; compile {max(0.0, first - w):.1f} s")
    try:
        from limits import derive
    except ImportError:
        return
    t = time.perf_counter()
    d = derive.correlation_derivation() if hasattr(derive, "correlation_derivation") else None
    if d is not None:
        d.compile()
        print(f"derivation + code generation of the correlation SDE: "
              f"{time.perf_counter() - t:.2f} s (first in this process; target <= 10 s)")


if __name__ == "__main__":
    main()
