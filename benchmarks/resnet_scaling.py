"""Benchmark of limits.resnet_scaling: one training epoch, numba vs vectorised NumPy (same run).

    python benchmarks/resnet_scaling.py                 # d = 10, L = 1000, batch 32, 1024 samples
    python benchmarks/resnet_scaling.py --depths 100 1000 3000 --repeats 3

One epoch = 32 Adam steps of batch 32 on the ODE data of P2 (training.md §2.2): forward pass
through L residual blocks, the backward pass and the Adam update of A (L, d, d), b (L, d) and
delta.  The NumPy version does the same work with one batched matrix product per layer and pass
(``H @ A_k.T``, ``gz.T @ h``, ``gz @ A_k``) and whole-array Adam.  Both start from the same
weights and permutation; the final weights are compared.  numba's compile (or cache load) time is
reported separately; times are the best of --repeats.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from limits import resnet_scaling as rs  # noqa: E402
from limits.resnet_scaling.trainer import _ALIAS_POINT, _epoch  # noqa: E402


def numpy_epoch(A, b, delta, X, Y, perm, batch, lr, act="tanh", b1=0.9, b2=0.999, eps=1e-8,
                state=None):
    """One Adam epoch, 'shared' delta, vectorised NumPy (the same maths as the numba kernel)."""
    L, d = A.shape[0], A.shape[1]
    if state is None:
        state = dict(t=0, m=[np.zeros_like(A), np.zeros_like(b), np.zeros_like(delta)],
                     v=[np.zeros_like(A), np.zeros_like(b), np.zeros_like(delta)])
    sig = np.tanh if act == "tanh" else (lambda z: np.maximum(z, 0.0))
    total = 0.0
    H = np.empty((L + 1, batch, d))
    U = np.empty((L, batch, d))
    gA, gb = np.empty_like(A), np.empty_like(b)
    for q in range(len(perm) // batch):
        idx = perm[q * batch:(q + 1) * batch]
        s = abs(delta[0])
        H[0] = X[idx]
        for k in range(L):
            U[k] = sig(H[k] @ A[k].T + b[k])
            H[k + 1] = H[k] + s * U[k]
        e = H[L] - Y[idx]
        total += np.mean(e * e)
        G = 2.0 * e / e.size
        gs = 0.0
        for k in range(L - 1, -1, -1):
            gs += np.sum(G * U[k])
            gz = G * (s * (1.0 - U[k] ** 2) if act == "tanh" else s * (U[k] > 0))
            gA[k] = gz.T @ H[k]
            gb[k] = gz.sum(0)
            G = G + gz @ A[k]
        gd = np.array([gs * np.sign(delta[0])])
        state["t"] += 1
        t = state["t"]
        for p, g, m, v in zip((A, b, delta), (gA, gb, gd), state["m"], state["v"]):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return total / (len(perm) // batch)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[1000])
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--activations", nargs="+", default=["tanh", "relu"],
                    choices=["tanh", "relu"])
    args = ap.parse_args()
    data = rs.ode_data(d=args.d, train_size=args.samples, test_size=0)
    X, Y = data.X, data.Y
    perm = np.random.default_rng(0).permutation(args.samples).astype(np.int64)

    t0 = time.perf_counter()
    rs.train(3, data, max_epochs=1)             # compile or load the numba cache
    print(f"numba compile / cache load (first call of train): {time.perf_counter() - t0:.2f} s")
    print(f"one epoch: d = {args.d}, batch {args.batch}, {args.samples} samples, Adam, shared "
          f"delta; best of {args.repeats}")
    print(f"{'act':>5} {'L':>6} {'numba [s]':>10} {'NumPy [s]':>10} {'ratio':>7} "
          f"{'max rel diff':>13}")
    for act, L in [(a, L) for a in args.activations for L in args.depths]:
        rng = np.random.default_rng(L)
        A0 = rng.standard_normal((L, args.d, args.d)) * (0.01 / (L * args.d))
        b0 = rng.standard_normal((L, args.d)) * (0.01 / (L * args.d ** 0.5))
        d0 = np.array([1.0 / L])
        tn, tp = [], []
        for _ in range(args.repeats):
            A, b, dl = A0.copy(), b0.copy(), d0.copy()
            z = [np.zeros_like(x) for x in (A, A, b, b, dl, dl)]
            work = (np.empty((L + 1, args.d, args.batch)), np.empty((L, args.d, args.batch)),
                    np.empty((0, 0, 0)), np.empty((args.d, args.batch)), np.empty_like(A),
                    np.empty_like(b), np.empty_like(dl))
            t = time.perf_counter()
            _epoch(A, b, dl, 1, rs.ACTIVATIONS[act], _ALIAS_POINT, X, Y, perm, args.batch, 0,
                   1e-3, 0.9, 0.999, 1e-8, 0, *z, *work)
            tn.append(time.perf_counter() - t)
            An = A
            A, b, dl = A0.copy(), b0.copy(), d0.copy()
            t = time.perf_counter()
            numpy_epoch(A, b, dl, X, Y, perm, args.batch, 1e-3, act=act)
            tp.append(time.perf_counter() - t)
        diff = float(np.max(np.abs(An - A)) / np.max(np.abs(A)))
        print(f"{act:>5} {L:>6} {min(tn):>10.3f} {min(tp):>10.3f} {min(tp) / min(tn):>6.1f}x "
              f"{diff:>13.1e}")


if __name__ == "__main__":
    main()
