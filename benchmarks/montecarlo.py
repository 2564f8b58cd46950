"""Benchmark of kernels.montecarlo against neural-tangents (issue 20, items 3-5), as a table.

    python benchmarks/montecarlo.py                        # ours, idle machine
    python benchmarks/montecarlo.py --busy                 # ours, with one competing busy process
    NT_PYTHON=/work/ntvenv/bin/python python benchmarks/montecarlo.py --busy   # + neural-tangents

Main case (issue 20): ReLU MLP, depth 10, width 512, weight_var 2, float64, N = 64 inputs
N(0, 1) of dimension 32, 256 networks, NNGP + NTK (the ``"weights"`` sampler).  Also the NNGP
alone (``method="auto"``, the ``"gram"`` sampler here); ``--all`` adds the older cases (gram
against weights at width 1024, ``simulate_paths`` at depth 256).

Our times: the first call in this process (numba's cache load or compilation, plus one run) is
reported separately from the warm calls; warm times are the median (and the best) of
``--repeats`` calls.  The machine may be shared: timings are noisy, hence medians, and the CPU
time of the process is printed next to the wall time.

``--busy`` starts one ``python -c "while True: pass"`` process for the duration of our
timings (then kills it): the weights sampler must not collapse when another process holds a
core (it did: 6 s became 40 s when numba's and OpenBLAS's threads multiplied).

neural-tangents (``nt_montecarlo.py``, run once in the interpreter named by ``NT_PYTHON`` or
``--nt-python``): ``monte_carlo_kernel_fn`` with implementation 2 (its fastest here;
implementation 3 fails on JAX 0.4.26), ``get=("nngp", "ntk")``, ``--nt-samples`` networks
(>= 32, so that its compile time does not dominate: it is excluded, as a separate first call);
its warm time is scaled linearly to 256 networks (its Monte Carlo loop costs the same per
network).  It runs without the busy process, after our timings, only once (it is slow).
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import kernels as kn  # noqa: E402


def machine():
    """CPU model, cores, widest vector extension, numba threads, BLAS."""
    model, flags = platform.processor() or "?", ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("?", "x86_64", ""):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = line
                    break
    except OSError:
        pass
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "?"
    import numba
    try:
        from threadpoolctl import threadpool_info
        blas = ", ".join(f"{i['internal_api']} {i.get('version')} ({i['num_threads']} threads)"
                         for i in threadpool_info() if i["user_api"] == "blas")
    except Exception:                     # pragma: no cover - informational only
        blas = "?"
    return (f"{platform.node()}: {model}, {os.cpu_count()} cores, {isa}; numba "
            f"{numba.__version__} with {numba.get_num_threads()} threads; BLAS {blas}")


def timed(fn, repeats):
    """(first call wall time, warm wall times, warm cpu times)."""
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return first, walls, cpus


def nt_time(py, x, samples, width, depth):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.npy")
        np.save(path, x)
        out = subprocess.run([py, os.path.join(HERE, "nt_montecarlo.py"), "--x", path, "--get",
                              "both", "--samples", str(samples), "--width", str(width),
                              "--depth", str(depth), "--implementation", "2"],
                             capture_output=True, text=True)
    if out.returncode != 0:
        print(f"neural-tangents failed:\n{out.stderr[-2000:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3, help="warm calls per case (median)")
    p.add_argument("--samples", type=int, default=256, help="networks in the main case")
    p.add_argument("--busy", action="store_true",
                   help="run our timings with one competing busy process")
    p.add_argument("--all", action="store_true", help="also the older cases")
    p.add_argument("--nt-python", default=os.environ.get("NT_PYTHON"),
                   help="interpreter with neural-tangents (default: $NT_PYTHON; none: skip)")
    p.add_argument("--nt-samples", type=int, default=32)
    a = p.parse_args()
    if a.nt_python and a.nt_samples < 32:
        p.error("--nt-samples must be >= 32 (compile time would dominate the extrapolation)")

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32))
    net = kn.MLP(depth=10, activation=kn.ReLU(), weight_var=2.0)
    mc = kn.monte_carlo
    S = a.samples
    cases = [("NNGP+NTK w512 L10 N64 S%d (weights)" % S,
              lambda: mc(net, x, width=512, samples=S, seed=0, progress=False)),
             ("NNGP     w512 L10 N64 S%d (auto = gram)" % S,
              lambda: mc(net, x, width=512, samples=S, seed=0, ntk=False, progress=False))]
    if a.all:
        x16 = x[:16]
        deep = kn.MLP(depth=256, activation=kn.ReLU(), weight_var=2.0)
        cases += [("NNGP     w1024 L10 N16 S64 (weights)",
                   lambda: mc(net, x16, width=1024, samples=64, seed=0, ntk=False,
                              method="weights", progress=False)),
                  ("NNGP     w1024 L10 N16 S64 (gram)",
                   lambda: mc(net, x16, width=1024, samples=64, seed=0, ntk=False,
                              method="gram", progress=False)),
                  ("paths rho w256 L256 N2 S10000 (gram)",
                   lambda: kn.simulate_paths(deep, x[:2], width=256, samples=10_000, seed=0,
                                             record="rho", progress=False))]

    load = os.getloadavg()[0]
    busy = None
    if a.busy:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
    rows = []
    try:
        for name, fn in cases:
            first, walls, cpus = timed(fn, a.repeats)
            med = float(np.median(walls))
            rows.append((name, first, med, min(walls), float(np.median(cpus))))
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()

    print(f"machine: {machine()}")
    print(f"mode: {'one competing busy process' if a.busy else 'no competing process started'}"
          f"; load average before / after: {load:.2f} / {os.getloadavg()[0]:.2f} (shared "
          f"machine: noisy timings, "
          f"medians of {a.repeats} warm calls)")
    print("| case | first call (s) | compile / cache load (s) | warm median (s) | warm best (s) "
          "| warm CPU (s) |")
    print("|---|---|---|---|---|---|")
    for name, first, med, best, cpu in rows:
        print(f"| {name} | {first:.2f} | {max(0.0, first - med):.2f} | {med:.2f} | {best:.2f} "
              f"| {cpu:.2f} |")

    if not a.nt_python:
        print("\nneural-tangents: not run (set NT_PYTHON or --nt-python to an interpreter with "
              "neural-tangents 0.6.5)")
        return
    nt = nt_time(a.nt_python, x, a.nt_samples, 512, 10)
    if nt is None:
        return
    scaled = nt["warm"] / nt["samples"] * S
    ours = rows[0][2]
    print(f"\nneural-tangents monte_carlo_kernel_fn (implementation 2, get=('nngp', 'ntk')), run "
          f"once, without the busy process:")
    print("| NT networks | NT first call (s) | NT warm (s) | NT scaled to %d (s) | ours, warm "
          "median (s) | ratio |" % S)
    print("|---|---|---|---|---|---|")
    print(f"| {nt['samples']} | {nt['first']:.1f} | {nt['warm']:.1f} | {scaled:.1f} | "
          f"{ours:.2f}{' (busy)' if a.busy else ''} | {scaled / ours:.0f}x |")


if __name__ == "__main__":
    main()
