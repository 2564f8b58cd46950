"""neural-tangents reference timing for benchmarks/kernels_depth.py (run in a SEPARATE venv).

Not imported by the library; ``kernels_depth.py`` runs it via ``subprocess`` with the interpreter
given by ``NT_PYTHON``.  Needs neural-tangents 0.6.5, jax/jaxlib 0.4.26 (numpy < 2)::

    python3 -m venv /work/ntvenv
    /work/ntvenv/bin/pip install neural-tangents==0.6.5 jax==0.4.26 jaxlib==0.4.26 "numpy<2"

Usage::

    python nt_baseline.py --x x.npy --depth 100 --bias-var 0.01 --repeats 3 [--out k.npz]

Network (NTK parameterisation, float64, jitted)::

    block = serial(Dense(512, W_std=sqrt(weight_var), b_std=sqrt(bias_var)), Relu())
    serial(block, repeat(block, depth - 1), Dense(1, W_std=..., b_std=...))

i.e. ``serial(repeat(block, depth), Dense(1))`` with the first block outside the ``repeat``:
``stax.repeat`` needs a shape-preserving layer, and the first Dense maps d -> 512.

Prints one JSON line: first-call (trace + XLA compile + run) and warm times in seconds.
"""
import argparse
import json
import math
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def relu_mlp_kernel_fn(depth, weight_var, bias_var):
    """neural-tangents' kernel_fn of our benchmark ReLU MLP (float64: x64 enabled) and the time
    its imports took: ``depth`` Dense(512) + Relu blocks (``stax.repeat``), then Dense(1)."""
    t0 = time.perf_counter()
    import jax
    jax.config.update("jax_enable_x64", True)
    from neural_tangents import stax
    t_import = time.perf_counter() - t0
    W, b = math.sqrt(weight_var), math.sqrt(bias_var)
    block = stax.serial(stax.Dense(512, W_std=W, b_std=b), stax.Relu())
    layers = [block] + ([stax.repeat(block, depth - 1)] if depth > 1 else [])
    _, _, kernel_fn = stax.serial(*layers, stax.Dense(1, W_std=W, b_std=b))
    return kernel_fn, t_import


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--x", required=True, help=".npy file with the (N, d) float64 inputs")
    p.add_argument("--depth", type=int, default=100)
    p.add_argument("--weight-var", type=float, default=2.0)
    p.add_argument("--bias-var", type=float, default=0.01)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="save nngp/ntk to this .npz")
    a = p.parse_args()

    kernel_fn, t_import = relu_mlp_kernel_fn(a.depth, a.weight_var, a.bias_var)
    import jax
    import jax.numpy as jnp
    import neural_tangents as nt
    import numpy as np
    kernel_fn = jax.jit(kernel_fn, static_argnames="get")

    x = jnp.asarray(np.load(a.x), dtype=jnp.float64)

    def call():
        k = kernel_fn(x, None, ("nngp", "ntk"))
        k.nngp.block_until_ready()
        k.ntk.block_until_ready()
        return k

    t0 = time.perf_counter()
    k = call()
    t_first = time.perf_counter() - t0
    warm = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        k = call()
        warm.append(time.perf_counter() - t0)
    if a.out:
        np.savez(a.out, nngp=np.asarray(k.nngp), ntk=np.asarray(k.ntk))
    print(json.dumps({"nt": nt.__version__, "jax": jax.__version__, "dtype": str(k.ntk.dtype),
                      "n": int(x.shape[0]), "depth": a.depth, "import": t_import,
                      "first": t_first, "warm": warm}))


if __name__ == "__main__":
    main()
