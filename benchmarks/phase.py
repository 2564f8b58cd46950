"""Benchmark of limits.phase: GD step time (numba vs vectorised NumPy, same run) and S_w timings.

    python benchmarks/phase.py            # step table + one S_w point
    python benchmarks/phase.py --grid     # also the P1 Fig. 4 grid (81 points x 5 widths)

Columns: the serial numba kernel (what slope/diagram use, one run per core), the prange kernel
(train(parallel=True), 1-d only), NumPy.  On a machine shared with other jobs the prange kernel
can be much slower: each step has two parallel regions that wait for a descheduled thread.

Step: one full-batch GD step of the two-layer ReLU net with ASI (2m neurons) on the 1-d data of
P1 §3.1 (and on a 3-d random problem for the generic kernel), including the forward pass, the
loss, the gradients, trace(G) and max_k |v_k| of the step rule.  NumPy does the same work with
whole-array operations.  Times are the best of --repeats.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from limits import phase as ph  # noqa: E402
from limits.phase._kernels import _run_gd  # noqa: E402


def numpy_step(a, W, Xa, y, c, F=1.0, delta=0.02):
    """One GD step with the rule of limits.phase.train, in vectorised NumPy."""
    n = len(y)
    Z = W @ Xa.T
    H = np.maximum(Z, 0.0)
    act = Z > 0
    e = c * (a @ H) - y
    loss = e @ e / (2 * n)
    S = (act * e) @ Xa
    ga = H @ e
    tr = c * c * (np.sum(H * H) + (a * a) @ (act @ np.sum(Xa * Xa, 1)))
    vmax = np.sqrt(np.max(np.sum(S * S, 1)))
    lr = min(F * n / tr, delta * n / (abs(c) * vmax))
    a_new = a - lr * c / n * ga
    W_new = W - lr * c / n * a[:, None] * S
    return a_new, W_new, loss


def best(fn, repeats):
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def step_row(m, X, y, gamma, steps, repeats):
    n, d = X.shape
    Xa = np.hstack([X, np.ones((n, 1))])
    alpha, b1, b2 = ph.from_gamma(gamma, 0.0, m)
    a0, W0 = ph.initial_parameters(m, d, 0, b1, b2)
    a0, W0 = np.concatenate([a0, -a0]), np.concatenate([W0, W0])
    c = 1.0 / alpha
    loss = np.empty(steps + 1)

    def run_numba():
        a, W = a0.copy(), W0.copy()
        code, k, _ = _run_gd(a, W, Xa, y, c, 1e-300, steps, 1.0, 0.02, 0.0, 1e300, loss)
        assert k == steps, (code, k)

    run_numba()                                               # compile / load cache
    t_nb = best(run_numba, repeats) / steps
    t_par = float("nan")
    if d == 1:
        def run_par():
            a, W = a0.copy(), W0.copy()
            code, k, _ = _run_gd(a, W, Xa, y, c, 1e-300, steps, 1.0, 0.02, 0.0, 1e300, loss,
                                 parallel=True)
            assert k == steps, (code, k)
        run_par()
        t_par = best(run_par, repeats) / steps
    k_np = max(3, steps // 20)

    def run_numpy():
        a, W = a0.copy(), W0.copy()
        for _ in range(k_np):
            a, W, _ = numpy_step(a, W, Xa, y, c)

    t_np = best(run_numpy, repeats) / k_np
    # same work: the first steps agree
    a, W = a0.copy(), W0.copy()
    for _ in range(3):
        a, W, _ = numpy_step(a, W, Xa, y, c)
    a2, W2 = a0.copy(), W0.copy()
    _run_gd(a2, W2, Xa, y, c, 1e-300, 3, 1.0, 0.02, 0.0, 1e300, np.empty(4))
    diff = max(np.max(np.abs(a - a2)) / np.max(np.abs(a)),
               np.max(np.abs(W - W2)) / np.max(np.abs(W)))
    return t_nb, t_par, t_np, diff


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--grid", action="store_true", help="time the P1 Fig. 4 grid too")
    args = p.parse_args()
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    X1, y1 = ph.one_d_data()
    rng = np.random.default_rng(0)
    X3, y3 = rng.uniform(0, 1, (8, 3)), rng.uniform(0, 1, 8)
    print("\nGD step (ASI, 2m neurons; forward, loss, gradients, step rule)")
    print(f"{'data':>10} {'m':>7} {'numba ms':>10} {'prange ms':>10} {'numpy ms':>10} "
          f"{'numpy/numba':>12} {'max rel diff':>13}")
    X64, y64 = rng.uniform(0, 1, (45, 64)), rng.uniform(0, 1, 45)
    for name, X, y, ms in (("1-d (n=4)", X1, y1, (1000, 10000, 40000)),
                           ("3-d (n=8)", X3, y3, (1000, 10000)),
                           ("64-d(n=45)", X64, y64, (1000, 10000))):
        for m in ms:
            steps = (2000 if m <= 1000 else 300) if X.shape[1] < 64 else 30
            t_nb, t_par, t_np, diff = step_row(m, X, y, 1.0, steps, args.repeats)
            print(f"{name:>10} {m:>7} {1e3 * t_nb:>10.4f} {1e3 * t_par:>10.4f} "
                  f"{1e3 * t_np:>10.4f} {t_np / t_nb:>12.1f} {diff:>13.1e}")
    print("\nOne S_w point: widths 1000..40000, one seed (warm)")
    ph.slope(1.0, 0.0, widths=(100, 200), seeds=(0,))
    for g in (0.5, 1.0, 1.75):
        for workers in (1, 2):
            t = time.perf_counter()
            s = ph.slope(g, 0.0, seeds=(0,), workers=workers)
            dt = time.perf_counter() - t
            print(f"  gamma={g:<5} gamma'=0  workers={workers}: {dt:6.2f} s   S_w = {s.value:+.3f}")
    if args.grid:
        g = np.round(np.arange(0.6, 1.41, 0.1), 2)
        gp = np.round(np.arange(-0.4, 0.41, 0.1), 2) + 0.0
        t = time.perf_counter()
        D = ph.diagram(g, gp, seeds=(0,), progress=False)
        dt = time.perf_counter() - t
        print(f"\nFig. 4 grid ({g.size} x {gp.size} points, 5 widths, 1 seed): {dt:.1f} s, "
              f"{len(D.failures)} failures; crossings "
              + ", ".join(f"{b:+.1f}: {c:.3f}" for b, c in zip(gp, D.crossings)))


if __name__ == "__main__":
    main()
