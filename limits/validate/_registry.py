"""``python -m limits validate``: every validation the project has, as one report.

Each check compares a computed number with an *independent* expected value (neural-tangents
reference output, closed forms and mpmath tables from ``theory/``), with a stated tolerance, and
writes a row of ``report.md``; some checks also draw a figure.  The process exits non-zero if any
check fails.  ``--quick`` (the README's main command) finishes in well under 5 minutes on 2 cores;
``--full`` adds the long checks.

New capabilities register their checks with ``@check(...)`` in a module
``limits/_validate_<capability>.py``; every such module is imported by ``run`` (so a capability's
checks live next to nothing else and adding one touches no shared file).
"""
import json
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Callable, List, Optional

import numpy as np

import kernels as kn

__all__ = ["Result", "check", "run", "CHECKS"]


@dataclass
class Result:
    """One row of the report."""

    name: str
    expected: str
    measured: str
    tolerance: str
    passed: bool
    figure: Optional[str] = None
    seconds: float = 0.0


@dataclass
class _Check:
    fn: Callable
    name: str
    full_only: bool


CHECKS: List[_Check] = []


def check(name, full_only=False):
    """Register ``fn(ctx) -> list[Result]`` as a validation check."""

    def deco(fn):
        CHECKS.append(_Check(fn, name, full_only))
        return fn

    return deco


@dataclass
class Context:
    out: str
    quick: bool
    figures: list = field(default_factory=list)

    def save(self, fig, name):
        path = os.path.join(self.out, name)
        fig.savefig(path, dpi=110)
        import matplotlib.pyplot as plt
        plt.close(fig)
        return name


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _reference():
    with resources.files("limits").joinpath("_data/nt_relu_mlp.json").open() as f:
        return json.load(f)


# ----------------------------------------------------------------------------------------------
# kernels: reference software, closed forms, mpmath tables
# ----------------------------------------------------------------------------------------------
@check("NNGP/NTK vs neural-tangents 0.6.5")
def _nt_reference(ctx):
    ref = _reference()
    x = np.array(ref["inputs"]["x"])
    out = []
    for case in ref["cases"]:
        net = kn.MLP(case["depth_L"], kn.ReLU(), weight_var=case["W_std"] ** 2,
                     bias_var=case["b_std"] ** 2)
        k = net.kernels(x)
        err = max(_rel(k.nngp, case["nngp"]), _rel(k.ntk, case["ntk"]))
        out.append(Result(f"NT reference {case['name']} (nngp, ntk, every entry)",
                          "neural-tangents output", f"max rel err {err:.1e}", "1e-12",
                          err <= 1e-12))
    return out


# theory/kernels.md §1.5 (mpmath), at (q1, q2, c) = (1, 2, 0.5)
_ORACLE_15 = {
    "relu": (kn.ReLU(), 0.3642988816942232, 0.307513364040654, 0.5),
    "leaky 0.2": (kn.LeakyReLU(0.2), 0.3331512842843028, 0.3968085529860185, 0.52),
    "abs": (kn.ABReLU(-1.0, 1.0), 0.9571955267768927, 0.2300534561626159, 1.0),
    "erf": (kn.Erf(), 0.1662579714811902, 0.3402875819779294, 0.46455905439754),
    "identity": (kn.Identity(), 0.5, 1.0, 1.0),
}


@check("activation maps vs closed-form table")
def _activation_table(ctx):
    out = []
    for name, (act, V, Vd, Vdiag) in _ORACLE_15.items():
        got = (float(act.V(1, 2, 0.5)), float(act.Vdot(1, 2, 0.5)), float(act.V(1, 1, 1)))
        err = _rel(got, (V, Vd, Vdiag))
        out.append(Result(f"V, Vdot, V(1,1,1) for {name} (kernels.md §1.5)",
                          f"{V:.6g}, {Vd:.6g}, {Vdiag:.6g}", f"max rel err {err:.1e}",
                          "1e-12", err <= 1e-12))
    tanh = kn.Tanh()
    got = (float(tanh.V(1, 2, 0.5)), float(tanh.Vdot(1, 2, 0.5)), float(tanh.V(1, 1, 1)))
    exp = (0.146754115460387, 0.299172021393036, 0.394294490397841)
    err = _rel(got, exp)
    out.append(Result("tanh V, Vdot (quadrature) vs dblquad (kernels.md §1.4)",
                      ", ".join(f"{v:.6g}" for v in exp), f"max rel err {err:.1e}", "1e-10",
                      err <= 1e-10))
    return out


# theory/kernels.md §2.3: rho_n = f^n(0), NTK off-diagonal and diagonal (unit inputs)
_RHO_TABLE = [0.31830988618379067, 0.49373109020037155, 0.60482572011294455,
              0.68095353335573635, 0.73594635062763665, 0.77722869919143624,
              0.80914805147949771, 0.83441630259254746, 0.85480923754890578,
              0.87153551602151762]
_NTK_TABLE = [0.318309886183791, 0.685708636282943, 1.060388106802584, 1.430390497210369,
              1.792195966844595]


@check("He-ReLU correlation map f^n(0) and NTK")
def _relu_table(ctx):
    K0 = np.eye(2)
    tr = kn.MLP(10, kn.ReLU(), weight_var=2.0).trajectory(K0=K0)
    rho = tr.correlation[1:, 0, 1]
    err_rho = _rel(rho, _RHO_TABLE)
    # layer l of the MLP trajectory has the stem scaled by sw2 = 2: divide by 2 for unit inputs
    ntk = tr.ntk[1:6, 0, 1] / 2.0
    ntk_diag = tr.ntk[1:6, 0, 0] / 2.0
    err_ntk = max(_rel(ntk, _NTK_TABLE), _rel(ntk_diag, np.arange(2, 7)))
    return [Result("rho_n = f^n(0), n = 1..10 (kernels.md §2.3, mpmath)", "table",
                   f"max rel err {err_rho:.1e}", "1e-13", err_rho <= 1e-13),
            Result("NTK off-diagonal and diagonal, n = 1..5 (kernels.md §2.3)", "table",
                   f"max rel err {err_ntk:.1e}", "1e-13", err_ntk <= 1e-13)]


# theory/sde.md §3.3: l^2 (1 - rho_l) from rho_0 (mpmath, 40 digits)
_DEEP_TABLE = {
    0.0: {10: 12.8464484, 100: 35.76853316, 1000: 43.12973255, 10_000: 44.25192736,
          100_000: 44.39398667},
    0.5: {10: 10.23532702, 100: 34.47289139, 1000: 42.95603981, 10_000: 44.23385072,
          100_000: 44.39217003},
    0.9: {10: 4.407617852, 100: 28.94856557, 1000: 42.1038007, 10_000: 44.143706,
          100_000: 44.38309586},
}


@check("deep ReLU: l^2 (1 - rho_l) vs mpmath")
def _deep_table(ctx):
    out = []
    for rho0, row in _DEEP_TABLE.items():
        K0 = np.array([[1.0, rho0], [rho0, 1.0]])
        L = max(row)
        tr = kn.MLP(L, kn.ReLU(), weight_var=2.0).trajectory(K0=K0, layers=sorted(row))
        got = [l * l * tr.one_minus_correlation[k, 0, 1] for k, l in enumerate(tr.layers)]
        exp = [row[l] for l in tr.layers]
        # the table has 10 significant digits: 1e-9 relative is its resolution
        err = _rel(got, exp)
        out.append(Result(f"rho_0 = {rho0}: l^2(1 - rho_l), l = 10..1e5 (sde.md §3.3)",
                          f"{exp[-1]:.8f} at l = 1e5", f"max rel err {err:.1e}", "1e-9",
                          err <= 1e-9))
    fig = __import__("limits.plots", fromlist=["x"]).correlation_vs_depth(
        depth=10_000 if ctx.quick else 100_000)
    out[-1].figure = ctx.save(fig, "correlation_vs_depth.png")
    return out


# theory/kernels.md §3.4: ODE limit at t = 1 (DOP853, rtol 1e-13)
_ODE_TABLE = [
    # sw2, sb2, K0 (q1, q2, c), K1 (q1, q2, c), Theta1 (11, 22, 12)
    (1.0, 0.0, (1, 1, 0), (1.648721270700, 1.648721270700, 0.233042921716),
     (2.473081906050, 2.473081906050, 0.262819755286)),
    (2.0, 0.0, (1, 1, 0), (2.718281828459, 2.718281828459, 0.690060582046),
     (5.436563656918, 5.436563656918, 0.869243826051)),
    (2.0, 0.3, (1, 1, 0), (3.233766376997, 3.233766376997, 1.174999509959),
     (6.252048205456, 6.252048205456, 1.512615480510)),
    (1.0, 0.0, (1, 2, 0.5), (1.648721270700, 3.297442541400, 0.996141387168),
     (2.473081906050, 4.946163812100, 1.259129137930)),
]


def _stream(L, sw2, sb2, K0):
    tr = kn.ResNet(L, kn.ReLU(), weight_var=sw2, bias_var=sb2).trajectory(K0=K0, layers=[L])
    K, T = tr.nngp[0], tr.ntk[0]
    return np.array([K[0, 0], K[1, 1], K[0, 1], T[0, 0], T[1, 1], T[0, 1]])


@check("ReLU ResNet -> ODE limit (Richardson)")
def _resnet_ode(ctx):
    """The ResNet recursion is forward Euler with step 1/L (kernels.md §3.3), so its error has
    an expansion in powers of 1/L; two Richardson steps over L, 2L, 4L leave O(L^-3), measured
    below 3e-9 relative at L = 500 for these rows (and below 1e-10 at L = 2000)."""
    out = []
    L = 500 if ctx.quick else 2000
    tol = 1e-8 if ctx.quick else 1e-10
    for sw2, sb2, (q1, q2, c), K1, T1 in _ODE_TABLE:
        K0 = np.array([[q1, c], [c, q2]], dtype=float)
        a, b, d = (_stream(n, sw2, sb2, K0) for n in (L, 2 * L, 4 * L))
        r1, r1b = 2 * b - a, 2 * d - b            # removes the O(1/L) term
        rich = (4 * r1b - r1) / 3                  # removes the O(1/L^2) term
        exp = np.array(K1 + T1)
        err = _rel(rich, exp)
        out.append(Result(f"sw2={sw2}, sb2={sb2}, K0={K0[0, 0]:g},{K0[1, 1]:g},{K0[0, 1]:g}: "
                          f"K_1, Theta_1 (kernels.md §3.4)", "ODE table (DOP853)",
                          f"max rel err {err:.1e} (L={L},{2 * L},{4 * L})", f"{tol:g}",
                          err <= tol))
    fig = __import__("limits.plots", fromlist=["x"]).resnet_vs_ode(
        weight_var=1.0, ode_value=0.141347677050)
    out[-1].figure = ctx.save(fig, "resnet_vs_ode.png")
    return out


@check("fast path vs layer loop")
def _fast_vs_loop(ctx):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8))
    x[1] = x[0] + 1e-7 * rng.standard_normal(8)        # a nearly parallel pair
    out = []
    for name, act in [("ReLU", kn.ReLU()), ("leaky 0.2", kn.LeakyReLU(0.2)),
                      ("abs", kn.ABReLU(-1.0, 1.0))]:
        for L in ((100, 3000) if ctx.quick else (100, 3000, 30_000)):
            net = kn.MLP(L, act, weight_var=2.0 / (1 + act.a ** 2))
            a, b = net.kernels(x, fast=True), net.kernels(x, fast=False)
            err = 0.0
            for A, B in ((a.nngp, b.nngp), (a.ntk, b.ntk)):
                d = np.sqrt(np.outer(np.diag(B), np.diag(B)))
                err = max(err, float(np.max(np.abs(A - B) / d)))
            out.append(Result(f"{name} MLP depth {L}: tabulated vs loop", "equal",
                              f"max |diff| / sqrt(K_ii K_jj) = {err:.1e}", "1e-12",
                              err <= 1e-12))
    return out


# ----------------------------------------------------------------------------------------------
# runner
# ----------------------------------------------------------------------------------------------
def _run_one(c, ctx):
    t0 = time.perf_counter()
    try:
        rows = c.fn(ctx)
    except Exception as exc:  # a crashing check is a failed check, reported as such
        rows = [Result(c.name, "runs", f"raised {type(exc).__name__}: {exc}", "-", False)]
    dt = time.perf_counter() - t0
    for r in rows:
        r.seconds = dt / len(rows)
    return rows


def _run_named(name, out, quick):
    """Run the check called ``name`` in this process (the worker side of ``run(executor=)``)."""
    _load_check_modules()
    c = next(c for c in CHECKS if c.name == name)
    return _run_one(c, Context(out=out, quick=quick))


def run(out="validation-report", quick=True, progress=True, executor=None):
    """Run the checks, write ``out/report.md`` and figures; return the list of Results.

    Parameters
    ----------
    out : str
        Output directory (created).  With an executor on other machines it must be on a shared
        filesystem (the checks write their figures there).
    quick : bool
        Skip the ``full_only`` checks.
    progress : bool
        tqdm bar over the checks.
    executor : concurrent.futures.Executor, optional
        Run the checks concurrently (``--workers N``: a local process pool; ``--dask-scheduler``:
        ``dask.distributed.Client(addr).get_executor()``).  The report lists them in the same
        order either way.
    """
    from tqdm.auto import tqdm

    _load_check_modules()
    os.makedirs(out, exist_ok=True)
    ctx = Context(out=out, quick=quick)
    todo = [c for c in CHECKS if quick is False or not c.full_only]
    bar = tqdm(total=len(todo), desc="validate", disable=not progress)
    if executor is None:
        results = []
        for c in todo:
            bar.set_postfix_str(c.name[:40])
            results.extend(_run_one(c, ctx))
            bar.update(1)
    else:
        from concurrent.futures import as_completed
        futures = {executor.submit(_run_named, c.name, os.path.abspath(out), quick): k
                   for k, c in enumerate(todo)}
        rows = [None] * len(todo)
        for f in as_completed(futures):
            k = futures[f]
            try:
                rows[k] = f.result()
            except Exception as exc:  # the worker died: a failed check
                rows[k] = [Result(todo[k].name, "runs", f"worker raised {type(exc).__name__}: "
                                  f"{exc}", "-", False)]
            bar.update(1)
        results = [r for rs in rows for r in rs]
    bar.close()
    _write_report(results, out, quick)
    return results


def _load_check_modules():
    """Import every ``limits._validate_*`` module (each registers its checks on import)."""
    import importlib
    import pkgutil

    import limits
    for m in sorted(pkgutil.iter_modules(limits.__path__), key=lambda m: m.name):
        if m.name.startswith("_validate_"):
            importlib.import_module(f"limits.{m.name}")


def _write_report(results, out, quick):
    n_pass = sum(r.passed for r in results)
    lines = [f"# Validation report ({'quick' if quick else 'full'})", "",
             f"{n_pass} of {len(results)} checks passed.  Expected values are independent: "
             "neural-tangents output, closed forms and mpmath tables of `theory/`.", "",
             "| check | expected | measured | tolerance | result | figure | time (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        fig = f"[{r.figure}]({r.figure})" if r.figure else ""
        lines.append(f"| {r.name} | {r.expected} | {r.measured} | {r.tolerance} | "
                     f"{'pass' if r.passed else '**FAIL**'} | {fig} | {r.seconds:.1f} |")
    linked = {r.figure for r in results if r.figure}
    extra = sorted(f for f in os.listdir(out) if f.endswith(".png") and f not in linked)
    if extra:                               # figures a check drew besides its linked one
        lines += ["", "## Further figures", ""] + [f"- [{f}]({f})" for f in extra]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
