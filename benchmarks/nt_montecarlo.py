"""neural-tangents Monte Carlo timing for benchmarks/montecarlo.py (run in a SEPARATE venv).

Not imported by the library; ``montecarlo.py`` runs it through ``subprocess`` with the
interpreter named by ``NT_PYTHON`` (neural-tangents 0.6.5, jax 0.4.26; see nt_baseline.py).

Network: ``serial(depth x [Dense(width, W_std=sqrt 2), Relu], Dense(1, W_std=sqrt 2))`` in
float64, ``nt.monte_carlo_kernel_fn(init_fn, apply_fn, key, n_samples, implementation=...)``.
Prints one JSON line with the first-call (trace + compile + run) and warm times of
``kernel_fn(x, None, get)``.
"""
import argparse
import json
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--x", required=True, help=".npy file with the (N, d) float64 inputs")
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--get", choices=["nngp", "ntk", "both"], default="nngp",
                   help="both: get=('nngp', 'ntk') from the same networks")
    p.add_argument("--implementation", type=int, default=2,
                   help="NTK implementation (1 Jacobian contraction, 2 NTK-vector products; "
                        "2 was the fastest here)")
    a = p.parse_args()

    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import neural_tangents as nt
    from neural_tangents import stax

    block = stax.serial(stax.Dense(a.width, W_std=math.sqrt(2.0)), stax.Relu())
    init_fn, apply_fn, _ = stax.serial(*([block] * a.depth), stax.Dense(1, W_std=math.sqrt(2.0)))
    x = np.load(a.x)
    kernel_fn = nt.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(1),
                                         n_samples=a.samples, implementation=a.implementation)
    get = ("nngp", "ntk") if a.get == "both" else a.get
    t = time.perf_counter()
    jax.block_until_ready(kernel_fn(x, None, get))
    first = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(kernel_fn(x, None, get))
    warm = time.perf_counter() - t
    print(json.dumps({"get": a.get, "samples": a.samples, "first": first, "warm": warm}))


if __name__ == "__main__":
    main()
