"""neural-tangents ``nt.batch`` reference for benchmarks/large_n.py (run in a SEPARATE venv).

Not imported by the library; ``large_n.py`` runs it via ``subprocess`` with the interpreter
given by ``--nt-python`` / ``NT_PYTHON``.  Needs neural-tangents 0.6.5, jax/jaxlib 0.4.26
(numpy < 2), as benchmarks/nt_baseline.py::

    /work/ntvenv/bin/python nt_batch.py --x x.npy --batch-size 1000 [--out dir]

Network: the one of ``large_n.py``, ``kernels.MLP(10, ReLU(), weight_var=2, bias_var=0.05)``
(NTK parameterisation, input kernel x x'/d, float64 via ``jax_enable_x64``)::

    block = serial(Dense(512, W_std=sqrt(weight_var), b_std=sqrt(bias_var)), Relu())
    serial(block, repeat(block, depth - 1), Dense(1, W_std=..., b_std=...))

computed by ``nt.batch(kernel_fn, batch_size=B, store_on_device=False)`` (blocks of B x B
computed one after another and concatenated in host memory; ``nt.batch`` needs N divisible by
B: the largest divisor of N not above ``--batch-size`` is used and reported).  ``nt.batch``
computes every block, both (I, J) and (J, I), and returns the whole N x N kernels in memory.

Prints one JSON line: the block compile + first block (``warmup``, one B x B call), the whole
kernels' wall time (``time``, compile excluded), the process's peak resident memory
(``VmHWM``) and the batch size.
"""
import argparse
import json
import os
import time

from nt_baseline import relu_mlp_kernel_fn   # same directory: the script's sys.path[0]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def vm_hwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def divisor_at_most(n, b):
    for k in range(min(b, n), 0, -1):
        if n % k == 0:
            return k
    return 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--x", required=True, help=".npy file with the (N, d) float64 inputs")
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--weight-var", type=float, default=2.0)
    p.add_argument("--bias-var", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--out", default=None, help="directory: save nngp.npy and ntk.npy there")
    a = p.parse_args()

    kernel_fn, t_import = relu_mlp_kernel_fn(a.depth, a.weight_var, a.bias_var)
    import jax
    import jax.numpy as jnp
    import neural_tangents as nt
    import numpy as np

    x = jnp.asarray(np.load(a.x), dtype=jnp.float64)
    n = int(x.shape[0])
    bs = divisor_at_most(n, a.batch_size)
    batched = nt.batch(kernel_fn, batch_size=bs, store_on_device=False)

    t0 = time.perf_counter()
    k = batched(x[:bs], None, ("nngp", "ntk"))          # compile the block function
    np.asarray(k.ntk)
    t_warm = time.perf_counter() - t0

    t0 = time.perf_counter()
    k = batched(x, None, ("nngp", "ntk"))
    K, T = np.asarray(k.nngp), np.asarray(k.ntk)
    t_all = time.perf_counter() - t0
    if a.out:
        np.save(os.path.join(a.out, "nt_nngp.npy"), K)
        np.save(os.path.join(a.out, "nt_ntk.npy"), T)
    print(json.dumps({"nt": nt.__version__, "jax": jax.__version__, "dtype": str(T.dtype),
                      "n": n, "batch_size": bs, "depth": a.depth, "import": t_import,
                      "warmup": t_warm, "time": t_all, "peak_rss_mb": vm_hwm_mb(),
                      "finite": bool(np.all(np.isfinite(K)) and np.all(np.isfinite(T)))}))


if __name__ == "__main__":
    main()
