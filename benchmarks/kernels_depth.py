"""Benchmark: NNGP + NTK of a deep ReLU MLP (depth 100, weight_var 2, bias_var 0.01).

Plain script (not a test)::

    python benchmarks/kernels_depth.py
    NT_PYTHON=/path/to/ntvenv/bin/python python benchmarks/kernels_depth.py
    python benchmarks/kernels_depth.py --split-only     # only the NNGP-only / erf vs ReLU rows

What is measured (all float64, NTK parameterisation, input kernel x x'/d, d = 16):

* ``kernels.MLP(...).kernels(x)`` warm (best of a few in-process repeats; median and max also
  printed) for N in {500, 2000}, against a straightforward vectorised NumPy implementation of the
  same recursion (full N x N arrays per layer) run in the same process;
* first call in a fresh subprocess: with an empty ``NUMBA_CACHE_DIR`` (true cold numba compile)
  and with the default on-disk cache (``cache=True``; primed first), split into import time,
  first call, and first-call-minus-warm (= compile or cache load);
* agreement (max relative difference, elementwise) with the NumPy baseline, so both do equal work;
* fast path (bias_var = 0, ``fast=True``), N = 2000: depth 10 vs depth 1e4, warm and with the
  tabulation included (``architectures._TABLE_CACHE`` cleared before each call), plus the layer
  loop at depth 10 for reference;
* NNGP alone (``net.nngp(x)``, which skips every NTK operation) against NNGP + NTK
  (``net.kernels(x)``), for ReLU and for erf (``Erf()``, same depth and variances), N = 2000:
  medians of interleaved in-process repeats, and the ratios nngp / kernels and erf / ReLU;
* neural-tangents 0.6.5 (``benchmarks/nt_baseline.py``) in the separate interpreter ``NT_PYTHON``
  if set; otherwise the issue's figure (3.7 s to 9.2 s at N = 2000, depth 100) is quoted.

Targets (issue): N = 2000 warm >= 20x faster than NumPy and >= 10x faster than NT
(i.e. <= 0.37 s against the quoted 3.7 s); fast path depth 1e4 <= 2x depth 10.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DEPTH = 100
SW2 = 2.0
SB2 = 0.01
D_IN = 16
NS = (500, 2000)
NT_QUOTED = (3.7, 9.2)          # issue: NT 0.6.5, N = 2000, depth 100, stax.repeat + jit, float64


def inputs(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, D_IN))


# ----------------------------------------------------------------------------------------------
# the baseline: the recursion as a researcher would write it in NumPy
# ----------------------------------------------------------------------------------------------
def numpy_mlp(x, depth, sw2, sb2):
    """NNGP and NTK of a ReLU MLP, full N x N arrays per layer (theory/kernels.md §2.2)."""
    d = x.shape[1]
    K = sw2 * (x @ x.T) / d + sb2
    T = K.copy()
    for _ in range(depth):
        q = np.diag(K)
        P = np.outer(q, q)                                   # K11 K22
        t = np.arctan2(np.sqrt(np.maximum(P - K * K, 0.0)), K)
        V = np.sqrt(P) * (np.sin(t) + (np.pi - t) * np.cos(t)) / (2 * np.pi)
        Vdot = (np.pi - t) / (2 * np.pi)
        K = sw2 * V + sb2
        T = K + sw2 * Vdot * T
    return K, T


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def timed(fn, repeats, before=None):
    ts, out = [], None
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return ts, out


def max_rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), np.finfo(float).tiny)))


def offdiag_diag_rel(a, b):
    mask = ~np.eye(a.shape[0], dtype=bool)
    return max_rel(a[mask], b[mask]), max_rel(np.diag(a), np.diag(b))


def cpu_times():
    """(busy, steal, total) jiffies from /proc/stat (Linux), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(z) for z in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    steal = v[7] if len(v) > 7 else 0
    return sum(v) - idle - steal, steal, sum(v)


def cpu_report(t0, t1):
    """Machine-wide CPU busy and steal percentages between two cpu_times() readings."""
    if t0 is None or t1 is None or t1[2] <= t0[2]:
        return "n/a"
    tot = t1[2] - t0[2]
    return (f"machine busy {100 * (t1[0] - t0[0]) / tot:.0f}%, "
            f"steal {100 * (t1[1] - t0[1]) / tot:.1f}% of {os.cpu_count()} cpus")


def fmt_t(t):
    return "n/a" if t is None else f"{t:.4f}"


def fmt_r(r):
    return "n/a" if r is None else f"{r:.1f}x"


# ----------------------------------------------------------------------------------------------
# first call in a fresh process
# ----------------------------------------------------------------------------------------------
def child(n):
    """Run in a subprocess: import, first call, second call; print JSON."""
    t0 = time.perf_counter()
    import kernels as kn
    t_import = time.perf_counter() - t0
    x = inputs(n)
    net = kn.MLP(DEPTH, kn.ReLU(), weight_var=SW2, bias_var=SB2)
    t0 = time.perf_counter()
    net.kernels(x)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    net.kernels(x)
    t_second = time.perf_counter() - t0
    fnet = kn.MLP(DEPTH, kn.ReLU(), weight_var=SW2, bias_var=0.0)
    t0 = time.perf_counter()
    fnet.kernels(x, fast=True)
    t_ffirst = time.perf_counter() - t0
    t0 = time.perf_counter()
    fnet.kernels(x, fast=True)
    t_fsecond = time.perf_counter() - t0
    print(json.dumps({"import": t_import, "first": t_first, "second": t_second,
                      "fast_first": t_ffirst, "fast_second": t_fsecond}))


def run_child(n, cache_dir=None):
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(n)],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# neural-tangents in its own interpreter
# ----------------------------------------------------------------------------------------------
def run_nt(nt_python, x, repeats, tmp):
    xf = os.path.join(tmp, f"x{x.shape[0]}.npy")
    kf = os.path.join(tmp, f"nt{x.shape[0]}.npz")
    np.save(xf, x)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    cmd = [nt_python, os.path.join(HERE, "nt_baseline.py"), "--x", xf, "--depth", str(DEPTH),
           "--weight-var", str(SW2), "--bias-var", str(SB2), "--repeats", str(repeats),
           "--out", kf]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr else "failed")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    k = np.load(kf)
    res["nngp"], res["ntk"] = k["nngp"], k["ntk"]
    return res


# ----------------------------------------------------------------------------------------------
def split_rows(kn, net, repeats):
    """Section 3b: NNGP alone vs NNGP + NTK for the ReLU net ``net`` and its erf twin (same
    depth and variances), N = 2000: {(act, what): [times]} from interleaved repeats."""
    print("NNGP only / erf, N = 2000 ...", flush=True)
    x = inputs(2000)
    enet = kn.MLP(DEPTH, kn.Erf(), weight_var=SW2, bias_var=SB2)
    split_cases = {("relu", "kernels"): lambda: net.kernels(x),
                   ("relu", "nngp"): lambda: net.nngp(x),
                   ("erf", "kernels"): lambda: enet.kernels(x),
                   ("erf", "nngp"): lambda: enet.nngp(x)}
    for f in split_cases.values():
        f()                                        # load / compile
    split = {key: [] for key in split_cases}
    for _ in range(repeats):
        for key, f in split_cases.items():
            split[key].append(timed(f, 1)[0][0])
    return split


def print_split(split, repeats):
    med = {key: statistics.median(ts) for key, ts in split.items()}
    print(f"\nNNGP only vs NNGP + NTK, N=2000 (medians of {repeats} interleaved repeats):")
    for act in ("relu", "erf"):
        print(f"  {act:<4}: nngp {med[(act, 'nngp')]:.4f} s, kernels {med[(act, 'kernels')]:.4f} s,"
              f" nngp / kernels = {med[(act, 'nngp')] / med[(act, 'kernels')]:.2f}")
    print(f"  erf / relu: kernels {med[('erf', 'kernels')] / med[('relu', 'kernels')]:.2f}, "
          f"nngp {med[('erf', 'nngp')] / med[('relu', 'nngp')]:.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=7, help="warm repeats (best is reported)")
    p.add_argument("--quick", action="store_true",
                   help="skip the slow parts: NumPy at N = 2000 and the cold-compile runs")
    p.add_argument("--split-only", action="store_true",
                   help="only the NNGP-only and erf / ReLU rows (section 3b)")
    a = p.parse_args()
    if a.child is not None:
        child(a.child)
        return

    import numba
    import kernels as kn
    from kernels import architectures as arch

    try:
        load = "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        load = ""
    print(f"kernels {kn.__version__} | numpy {np.__version__} | numba {numba.__version__} "
          f"({numba.get_num_threads()} threads) | cpus {os.cpu_count()} | python "
          f"{sys.version.split()[0]} | {load}")
    print(f"ReLU MLP: depth {DEPTH}, weight_var {SW2}, bias_var {SB2}, d = {D_IN}, float64, "
          f"NNGP + NTK\n")

    if a.split_only:
        print_split(split_rows(kn, kn.MLP(DEPTH, kn.ReLU(), weight_var=SW2, bias_var=SB2),
                               a.repeats), a.repeats)
        return

    rows = []            # (case, time, ratio numpy, ratio nt)
    notes = []

    # ---- 1. first call in fresh processes --------------------------------------------------
    print("first call (fresh subprocess) ...", flush=True)
    first = {}
    for n in NS:
        if not a.quick:
            with tempfile.TemporaryDirectory() as cold:
                first[("cold", n)] = run_child(n, cold)
        run_child(n)                              # prime the default on-disk cache
        first[("cached", n)] = run_child(n)

    # ---- 2. warm, in process, against NumPy --------------------------------------------------
    net = kn.MLP(DEPTH, kn.ReLU(), weight_var=SW2, bias_var=SB2)
    warm, agree, np_time, results, cpu = {}, {}, {}, {}, {}
    for n in NS:
        x = inputs(n)
        print(f"warm N = {n} ...", flush=True)
        net.kernels(x)                            # load / compile
        c0 = cpu_times()
        ts, k = timed(lambda: net.kernels(x), a.repeats)
        cpu[n] = cpu_report(c0, cpu_times())
        warm[n] = ts
        results[n] = k
        if n == 2000 and a.quick:
            np_time[n] = None
            continue
        reps = 3 if n <= 500 else 1
        print(f"numpy N = {n} ({reps} run{'s' if reps > 1 else ''}) ...", flush=True)
        tn, (K, T) = timed(lambda: numpy_mlp(x, DEPTH, SW2, SB2), reps)
        np_time[n] = min(tn)
        agree[n] = (max_rel(k.nngp, K), max_rel(k.ntk, T))

    # ---- 3. neural-tangents ------------------------------------------------------------------
    nt_python = os.environ.get("NT_PYTHON")
    nt = {}
    if nt_python:
        with tempfile.TemporaryDirectory() as tmp:
            for n in NS:
                print(f"neural-tangents N = {n} ({nt_python}) ...", flush=True)
                try:
                    nt[n] = run_nt(nt_python, inputs(n), 3, tmp)
                except Exception as e:            # report and fall back to the quoted figure
                    notes.append(f"NT run failed at N = {n}: {e}")
    else:
        notes.append("NT_PYTHON not set: neural-tangents not run; ratios use the issue's "
                     f"figure {NT_QUOTED[0]}-{NT_QUOTED[1]} s (NT 0.6.5, N = 2000, depth 100, "
                     "stax.repeat under jit, float64, 2 cores)")

    # ---- 3b. NNGP alone vs NNGP + NTK, erf vs ReLU (interleaved repeats, medians) ------------
    split = split_rows(kn, net, a.repeats)

    # ---- 4. fast path --------------------------------------------------------------------------
    print("fast path N = 2000 ...", flush=True)
    x = inputs(2000)
    f10 = kn.MLP(10, kn.ReLU(), weight_var=SW2, bias_var=0.0)
    f1e4 = kn.MLP(10_000, kn.ReLU(), weight_var=SW2, bias_var=0.0)
    clear = arch._TABLE_CACHE.clear
    f10.kernels(x, fast=True)
    f1e4.kernels(x, fast=True)
    fr = max(3, a.repeats)
    fast = {
        "warm10": timed(lambda: f10.kernels(x, fast=True), fr)[0],
        "warm1e4": timed(lambda: f1e4.kernels(x, fast=True), fr)[0],
        "tab10": timed(lambda: f10.kernels(x, fast=True), fr, clear)[0],
        "tab1e4": timed(lambda: f1e4.kernels(x, fast=True), fr, clear)[0],
    }
    f10.kernels(x, fast=False)
    ts, kloop = timed(lambda: f10.kernels(x, fast=False), fr)
    fast["loop10"] = ts
    kfast = f10.kernels(x, fast=True)
    fast_agree10 = (max_rel(kfast.nngp, kloop.nngp), max_rel(kfast.ntk, kloop.ntk))
    xs = x[:300]                                   # depth 1e4 layer loop: check on a subset
    kf, kl = f1e4.kernels(xs, fast=True), f1e4.kernels(xs, fast=False)
    fast_agree1e4 = (max_rel(kf.nngp, kl.nngp), max_rel(kf.ntk, kl.ntk))

    # ---- table ---------------------------------------------------------------------------------
    def nt_ratio(n, t):
        if n in nt:
            return f"{min(nt[n]['warm']) / t:.1f}x"
        if n == 2000:
            return f"{NT_QUOTED[0] / t:.1f}x-{NT_QUOTED[1] / t:.1f}x (quoted)"
        return "n/a"

    for n in NS:
        t = min(warm[n])
        rn = None if np_time[n] is None else np_time[n] / t
        rows.append((f"kernels warm, N={n}, depth {DEPTH}", t, fmt_r(rn), nt_ratio(n, t)))
    for n in NS:
        rows.append((f"numpy baseline, N={n}, depth {DEPTH}", np_time[n], "1.0x" if np_time[n]
                     else "n/a", "n/a" if n not in nt else f"{min(nt[n]['warm']) / np_time[n]:.2f}x"
                     if np_time[n] else "n/a"))
    for n in NS:
        if n in nt:
            t = min(nt[n]["warm"])
            rows.append((f"neural-tangents warm, N={n}", t,
                         fmt_r(None if np_time[n] is None else np_time[n] / t), "1.0x"))
    for n in NS:
        c = first[("cached", n)]
        rows.append((f"kernels first call (cached), N={n}", c["first"],
                     fmt_r(None if np_time[n] is None else np_time[n] / c["first"]),
                     f"{nt[n]['first'] / c['first']:.1f}x (NT first call)" if n in nt
                     else "n/a"))
    for n in NS:
        if n in nt:
            rows.append((f"neural-tangents first call (jit), N={n}", nt[n]["first"], "", ""))
    for key, label in (("warm10", "fast=True depth 10 (table cached)"),
                       ("warm1e4", "fast=True depth 1e4 (table cached)"),
                       ("tab10", "fast=True depth 10 (incl. tabulation)"),
                       ("tab1e4", "fast=True depth 1e4 (incl. tabulation)"),
                       ("loop10", "fast=False depth 10 (layer loop)")):
        rows.append((f"{label}, N=2000, bias 0", min(fast[key]), "", ""))

    for act in ("relu", "erf"):
        for what, label in (("kernels", "NNGP + NTK (kernels)"), ("nngp", "NNGP only (nngp)")):
            t = statistics.median(split[(act, what)])
            rows.append((f"{act} {label}, N=2000, depth {DEPTH}, median", t, "", nt_ratio(2000, t)
                         if (act, what) == ("relu", "kernels") else ""))

    w = max(len(r[0]) for r in rows)
    print("\n" + "=" * (w + 60))
    print(f"{'case':<{w}} | {'time (s)':>9} | {'vs NumPy':>9} | vs NT "
          f"({'measured' if nt else 'quoted'})")
    print("-" * (w + 60))
    for case, t, r1, r2 in rows:
        print(f"{case:<{w}} | {fmt_t(t):>9} | {r1:>9} | {r2}")
    print("=" * (w + 60))

    print("\nwarm spread (min / median / max over repeats, s):")
    for n in NS:
        ts = warm[n]
        print(f"  kernels N={n}: {min(ts):.4f} / {statistics.median(ts):.4f} / {max(ts):.4f}"
              f"  ({len(ts)} repeats; {cpu[n]})")
    for n in nt:
        ts = nt[n]["warm"]
        print(f"  NT      N={n}: {min(ts):.4f} / {statistics.median(ts):.4f} / {max(ts):.4f}"
              f"  ({len(ts)} repeats)")
    for key in ("warm10", "warm1e4", "tab10", "tab1e4", "loop10"):
        ts = fast[key]
        print(f"  fast {key:<8}: {min(ts):.4f} / {statistics.median(ts):.4f} / {max(ts):.4f}")

    print_split(split, a.repeats)

    print("\nfirst call / compile (fresh subprocess; compile = first - second call):")
    print(f"  {'run':<16} | {'import':>7} | {'first':>7} | {'second':>7} | {'compile':>7} | "
          f"{'fast 1st':>8} | {'fast 2nd':>8} | {'fast compile':>12}")
    for (kind, n), c in sorted(first.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(f"  {kind + ' N=' + str(n):<16} | {c['import']:7.3f} | {c['first']:7.3f} | "
              f"{c['second']:7.3f} | {c['first'] - c['second']:7.3f} | {c['fast_first']:8.3f} | "
              f"{c['fast_second']:8.3f} | {c['fast_first'] - c['fast_second']:12.3f}")
    print("  (cold = empty NUMBA_CACHE_DIR, true numba compile; cached = default on-disk cache; "
          "fast = bias 0, depth 100, fast=True, same N)")
    for n in nt:
        print(f"  NT N={n}: import jax + NT {nt[n]['import']:.3f} s, first call (trace + XLA "
              f"compile + run) {nt[n]['first']:.3f} s, compile ~ "
              f"{nt[n]['first'] - min(nt[n]['warm']):.3f} s")

    print("\nagreement (max elementwise relative difference):")
    for n in agree:
        print(f"  kernels vs numpy, N={n}: nngp {agree[n][0]:.2e}, ntk {agree[n][1]:.2e}")
    for n in nt:
        od, dg = offdiag_diag_rel(results[n].nngp, nt[n]["nngp"])
        od2, dg2 = offdiag_diag_rel(results[n].ntk, nt[n]["ntk"])
        print(f"  kernels vs NT,    N={n}: nngp off-diag {od:.2e} diag {dg:.2e}; "
              f"ntk off-diag {od2:.2e} diag {dg2:.2e}   (NT {nt[n]['nt']}, jax {nt[n]['jax']}, "
              f"{nt[n]['dtype']})")
    print(f"  fast vs loop, depth 10, N=2000: nngp {fast_agree10[0]:.2e}, "
          f"ntk {fast_agree10[1]:.2e}")
    print(f"  fast vs loop, depth 1e4, N=300: nngp {fast_agree1e4[0]:.2e}, "
          f"ntk {fast_agree1e4[1]:.2e}")

    t2000 = min(warm[2000])
    print("\ntargets (issue):")
    if np_time[2000] is not None:
        r = np_time[2000] / t2000
        print(f"  N=2000 warm vs NumPy >= 20x: {r:.1f}x  {'PASS' if r >= 20 else 'FAIL'}")
    if 2000 in nt:
        r = min(nt[2000]["warm"]) / t2000
        print(f"  N=2000 warm vs NT (measured) >= 10x: {r:.1f}x  {'PASS' if r >= 10 else 'FAIL'}")
    r = NT_QUOTED[0] / t2000
    print(f"  N=2000 warm vs NT (quoted {NT_QUOTED[0]} s) >= 10x: {r:.1f}x  "
          f"{'PASS' if r >= 10 else 'FAIL'}")
    for lab, k1, k2 in (("table cached", "warm1e4", "warm10"),
                        ("incl. tabulation", "tab1e4", "tab10")):
        r = min(fast[k1]) / min(fast[k2])
        print(f"  fast path depth 1e4 / depth 10 <= 2 ({lab}): {r:.2f}  "
              f"{'PASS' if r <= 2 else 'FAIL'}")
    for note in notes:
        print(f"\nnote: {note}")


if __name__ == "__main__":
    main()
