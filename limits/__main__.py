"""Command line: ``python -m limits validate | kernel | sde | phase-diagram``.

Every option has a help text and its default in ``--help``.  Bad input (unreadable or
non-numeric input files, sizes that cannot fit in memory, grids whose parameters overflow, output
paths that cannot be written) is refused with one line on stderr and exit status 2 *before* any
computation starts; the library's own ``ValueError`` / ``TypeError`` messages are printed the
same way, never as a traceback.  Figures are drawn with matplotlib's non-interactive Agg backend,
chosen here (the library's plot functions never change the backend).
"""
import argparse
import math
import os
import sys

import numpy as np

_DOC = {
    "validate": "Run the validation checks and write DIR/report.md plus PNG figures. Every check "
                "compares a computed value with an independent expected one (neural-tangents "
                "output; closed forms and mpmath tables of theory/kernels.md and theory/sde.md; "
                "exact finite-width identities; published values of the training papers) with "
                "a stated tolerance. Capabilities covered: kernels (NNGP/NTK, activation maps, "
                "deep asymptotics, ResNet ODE limit, tabulated fast path), Monte Carlo (finite "
                "width identities, convergence, samplers), SymPy derivations, SDE solvers and "
                "limits against finite networks, the two-layer ReLU phase diagram, the depth "
                "scaling of trained ResNet weights, and the sweep runner. --list shows every "
                "check; --only runs a subset. Exit status 1 if any check fails.",
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in every option's help (``ArgumentDefaultsHelpFormatter``)."""


class CLIError(ValueError):
    """Bad command-line input, reported as one line (exit status 2)."""


# ----------------------------------------------------------------------------------------------
# early checks: input files, output paths, sizes
# ----------------------------------------------------------------------------------------------
def _writable(path, option, suffix=None):
    """Refuse an output path that cannot be written, before computing anything.

    ``suffix`` (e.g. ".npz"): the writer appends it when the name lacks it (``numpy.savez``).
    The test opens the file for appending (removing it again if it did not exist), which also
    catches read-only file systems and permission rules that ``os.access`` does not see.
    """
    if os.path.isdir(path):
        raise CLIError(f"{option} {path!r} is a directory; give a file name")
    if suffix and not path.endswith(suffix):
        path += suffix
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CLIError(f"{option}: the directory {parent!r} does not exist")
    existed = os.path.exists(path)
    try:
        open(path, "ab").close()
    except OSError as exc:
        raise CLIError(f"{option}: cannot write {path!r} ({exc.strerror or exc})") from None
    if not existed:
        os.remove(path)


def _writable_dir(path, option):
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"{option}: cannot create the directory {path!r} "
                       f"({exc.strerror or exc})") from None
    _writable(os.path.join(path, "report.md"), option)


def _fits(need, what):
    """Refuse a size whose estimated memory exceeds the memory available (the library's one
    guard, ``kernels._checks.memory_guard``: a ValueError, reported as one line)."""
    from kernels._checks import memory_guard
    memory_guard(need, what, "use a smaller value")


def _load_inputs(path):
    """An (N, d) real array from a .npy file, with a clear message for anything else."""
    if not os.path.exists(path):
        raise CLIError(f"inputs: no such file {path!r}")
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc) or "Object arrays" in str(exc):
            raise CLIError(f"inputs: {path!r} is not a numeric .npy array (it holds Python "
                           "objects or is not a NumPy file); save an (N, d) float array with "
                           "numpy.save") from None
        raise CLIError(f"inputs: cannot read {path!r} as a .npy array: {exc}") from None
    except (OSError, EOFError) as exc:
        raise CLIError(f"inputs: cannot read {path!r}: {exc}") from None
    if isinstance(x, np.lib.npyio.NpzFile):
        names = list(x.files)
        x.close()
        raise CLIError(f"inputs: {path!r} is a .npz archive (arrays {names}); save one (N, d) "
                       "array with numpy.save to a .npy file")
    if x.dtype.kind not in "fiu":
        raise CLIError(f"inputs: {path!r} holds a {x.dtype} array; an (N, d) array of real "
                       "numbers is needed")
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise CLIError(f"inputs: {path!r} holds an array of shape {x.shape}; an (N, d) array "
                       "with N, d >= 1 is needed")
    if not np.all(np.isfinite(x)):
        raise CLIError(f"inputs: {path!r} contains NaN or infinite values")
    return x.astype(float)


def _agg():
    import matplotlib
    matplotlib.use("Agg")


# ----------------------------------------------------------------------------------------------
# subcommands
# ----------------------------------------------------------------------------------------------
def _validate(args):
    from . import validate
    quick = not args.full
    if args.list:
        rows = validate.checks(quick=quick, only=args.only)
        width = max(len(n) for n, _ in rows)
        for name, full_only in rows:
            print(f"{name:<{width}}  {'(--full only)' if full_only else ''}".rstrip())
        print(f"\n{len(rows)} checks ({'quick' if quick else 'full'} mode"
              f"{', matching --only' if args.only else ''})")
        return 0
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got {args.workers}")
    validate.checks(quick=quick, only=args.only)      # a pattern matching nothing: error now
    _writable_dir(args.out, "--out")
    _agg()
    executor = None
    if args.dask_scheduler:
        try:
            from dask.distributed import Client
        except ImportError:
            raise CLIError("--dask-scheduler needs dask.distributed: pip install "
                           "'nn-limits[dask]'") from None
        executor = Client(args.dask_scheduler).get_executor()
    elif args.workers and args.workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        executor = ProcessPoolExecutor(args.workers,
                                       mp_context=multiprocessing.get_context("spawn"))
    try:
        results = validate.run(out=args.out, quick=quick, progress=not args.no_progress,
                               executor=executor, only=args.only)
    finally:
        if executor is not None:
            executor.shutdown()
    n_fail = sum(not r.passed for r in results)
    width = max(len(r.name) for r in results)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.name:<{width}}  {r.measured}")
    print(f"\n{len(results) - n_fail}/{len(results)} checks passed; report: "
          f"{args.out}/report.md")
    return 1 if n_fail else 0


def _kernel(args):
    import kernels as kn
    if args.depth < 1:
        raise CLIError(f"--depth must be >= 1, got {args.depth}")
    if args.save:
        _writable(args.save, "--save", suffix=".npz")
    x = _load_inputs(args.inputs)
    # the per-layer description and the diagonal trajectories: about 8 (N + 3) bytes per layer
    _fits(8.0 * (x.shape[0] + 3) * args.depth, f"--depth {args.depth}")
    acts = {"relu": kn.ReLU, "erf": kn.Erf, "tanh": kn.Tanh, "identity": kn.Identity,
            "leaky": lambda: kn.LeakyReLU(args.slope), "abs": lambda: kn.ABReLU(-1.0, 1.0)}
    arch = kn.MLP if args.arch == "mlp" else kn.ResNet
    net = arch(args.depth, acts[args.activation](), args.weight_var, args.bias_var)
    k = net.kernels(x)
    if args.save:
        np.savez(args.save, nngp=k.nngp, ntk=k.ntk)
        print(f"saved nngp and ntk {k.nngp.shape} to {args.save}")
    else:
        np.set_printoptions(precision=6, suppress=False, linewidth=120)
        print("NNGP:\n", k.nngp, "\nNTK:\n", k.ntk)
    return 0


def _sde(args):
    import limits
    if args.paths < 2:
        raise CLIError(f"--paths must be >= 2 (the standard error and sd need two paths), got "
                       f"{args.paths}")
    times = sorted(args.times)
    # keys (16 bytes), state and one saved value per time (8 bytes each) per path
    _fits(args.paths * (8.0 * len(times) + 32.0), f"--paths {args.paths}")
    if args.save:
        _writable(args.save, "--save", suffix=".npz")
    if args.plot:
        _writable(args.plot, "--plot")
    if args.kind == "correlation":
        sde, y0 = limits.CorrelationSDE(args.c_plus, args.c_minus), args.rho0
    else:
        sde, y0 = limits.UnshapedCorrelationSDE(), None
    sol = limits.solve(sde, y0, times, paths=args.paths, seed=args.seed, method=args.method,
                       dt=args.dt, progress=False if args.no_progress else None)
    v = sol.values
    name = "rho" if args.kind == "correlation" else "ln(q/q*)"
    if args.kind == "unshaped":
        v = np.log(v / limits.sde.Q_STAR)
    print(f"{type(sde).__name__}, {args.paths} paths, {sol.steps} steps ({sol.method})")
    print(f"| t | E {name} | se | sd | 5% | 50% | 95% |")
    print("|---|---|---|---|---|---|---|")
    for t, row in zip(sol.times, v):
        q = np.percentile(row, [5, 50, 95])
        print(f"| {t:g} | {row.mean():.5f} | {row.std(ddof=1) / np.sqrt(row.size):.1e} | "
              f"{row.std(ddof=1):.5f} | {q[0]:.4f} | {q[1]:.4f} | {q[2]:.4f} |")
    if args.save:
        np.savez(args.save, times=sol.times, values=sol.values)
        print(f"saved times and values {sol.values.shape} to {args.save}")
    if args.plot:
        _agg()
        from . import plots
        dense = limits.solve(sde, y0, np.linspace(times[-1] / 200, times[-1], 200),
                             paths=min(args.paths, 2000), seed=args.seed, method=args.method,
                             dt=args.dt, progress=False)
        if args.kind == "unshaped":
            dense = type(dense)(dense.times, np.log(dense.values / limits.sde.Q_STAR),
                                dense.method, dense.steps)
        fig = plots.sde_paths(dense, label=name)
        fig.savefig(args.plot, dpi=110)
        print(f"figure: {args.plot}")
    return 0


def _phase_grid_ok(gammas, gamma_primes, widths):
    """Every (gamma, gamma', m) must give finite, positive (alpha, beta_1, beta_2) with finite
    reciprocals: ``alpha = m^(gamma + gamma')``, ``beta_2 = m^gamma'`` (P1 Fig. 3 caption)."""
    from . import phase
    for g in gammas:
        for gp in gamma_primes:
            for m in widths:
                try:
                    vals = phase.from_gamma(g, gp, m)
                    ok = all(math.isfinite(v) and 1e-300 < v < 1e300 for v in vals)
                except (OverflowError, ZeroDivisionError):
                    ok = False
                if not ok:
                    raise CLIError(
                        f"gamma = {g:g}, gamma' = {gp:g} at width {m}: the initialisation scales "
                        f"alpha = m^(gamma + gamma') = {m}^{g + gp:g} and beta_2 = m^gamma' = "
                        f"{m}^{gp:g} leave the float64 range; keep |gamma + gamma'| and "
                        f"|gamma'| below about {690 / math.log(max(widths)):.3g} for these "
                        "widths")


def _phase_diagram(args):
    from . import phase
    if args.theory:
        _writable(args.out, "--out")
        _agg()
        from . import plots
        fig = plots.phase_diagram()
        fig.savefig(args.out, dpi=110, bbox_inches="tight")
        print(f"theoretical phase diagram: {args.out}")
        return 0
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got {args.workers}")
    if min(args.widths) < 2:
        raise CLIError(f"--widths must be >= 2, got {min(args.widths)}")
    _phase_grid_ok(args.gammas, args.gamma_primes, args.widths)
    _writable(args.out, "--out")
    if args.store:
        _writable(args.store, "--store")
    d = phase.diagram(args.gammas, args.gamma_primes, widths=tuple(args.widths),
                      seeds=tuple(args.seeds), store=args.store,
                      progress=not args.no_progress, workers=args.workers)
    print("S_w (rows: gamma', columns: gamma " + " ".join(f"{g:g}" for g in d.gammas) + ")")
    for gp, row, err in zip(d.gamma_primes, d.slope, d.stderr):
        cells = " ".join(f"{v:+.3f}({e:.3f})" for v, e in zip(row, err))
        print(f"gamma' = {gp:+.2f}: {cells}")
    print("zero crossings: " + ", ".join(f"{gp:+.2f} -> {c:.3f}"
                                         for gp, c in zip(d.gamma_primes, d.crossings)))
    if d.failures:
        print(f"{len(d.failures)} failed runs (not used): see the store or rerun")
    _agg()
    from . import plots
    fig = plots.slope_heatmap(d)
    fig.savefig(args.out, dpi=110, bbox_inches="tight")
    print(f"figure: {args.out}")
    return 0


# ----------------------------------------------------------------------------------------------
# parser
# ----------------------------------------------------------------------------------------------
def _parser():
    p = argparse.ArgumentParser(prog="python -m limits", formatter_class=_Formatter,
                                description="Infinite-width / infinite-depth network theory: "
                                            "validation report, kernels, SDE limits and the "
                                            "phase diagram of two-layer ReLU networks.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    v = sub.add_parser("validate", help="run the validation checks and write a report",
                       description=_DOC["validate"], formatter_class=_Formatter)
    g = v.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true",
                   help="the fast subset of checks (the default mode)")
    g.add_argument("--full", action="store_true", help="add the long checks")
    v.add_argument("--list", action="store_true",
                   help="print the checks that would run (with --full / --only) and exit")
    v.add_argument("--only", metavar="PATTERN", action="append", default=None,
                   help="run only the checks whose name contains PATTERN (case-insensitive; a "
                        "shell pattern if it has * ? or [); repeat for several")
    v.add_argument("--out", metavar="DIR", default="validation-report",
                   help="output directory for report.md and the figures")
    v.add_argument("--no-progress", action="store_true", help="no progress bar")
    w = v.add_mutually_exclusive_group()
    w.add_argument("--workers", metavar="N", type=int, default=None,
                   help="run the checks in N local processes (None: in this process)")
    w.add_argument("--dask-scheduler", metavar="ADDR", default=None,
                   help="run the checks on a dask.distributed cluster (e.g. tcp://host:8786; "
                        "needs the 'dask' extra and a shared filesystem for --out)")
    v.set_defaults(func=_validate)

    k = sub.add_parser("kernel", help="NNGP/NTK of an MLP or ResNet for inputs in a .npy file",
                       description="Compute the infinite-width NNGP and NTK for inputs x "
                                   "(an (N, d) array saved with numpy.save) and print them or "
                                   "save them to a .npz file.", formatter_class=_Formatter)
    k.add_argument("inputs", help="path to an (N, d) float .npy array")
    k.add_argument("--arch", choices=["mlp", "resnet"], default="mlp", help="architecture")
    k.add_argument("--depth", type=int, default=10,
                   help="number of hidden layers (MLP) or residual blocks (ResNet)")
    k.add_argument("--activation", choices=["relu", "leaky", "abs", "erf", "tanh", "identity"],
                   default="relu", help="activation function")
    k.add_argument("--slope", type=float, default=0.2,
                   help="negative-side slope of the leaky ReLU (with --activation leaky)")
    k.add_argument("--weight-var", type=float, default=2.0, help="weight variance sigma_w^2")
    k.add_argument("--bias-var", type=float, default=0.0, help="bias variance sigma_b^2")
    k.add_argument("--save", metavar="FILE",
                   help="write nngp and ntk to this .npz instead of printing them")
    k.set_defaults(func=_kernel)

    s = sub.add_parser("sde", help="simulate a correlation SDE limit and print its statistics",
                       description="Solve the shaped-ReLU correlation SDE (theory/sde.md §2.4; "
                                   "time t = depth/width) or the unshaped q_t SDE (§3.3) and "
                                   "print mean, standard error, sd and quantiles at each time.",
                       formatter_class=_Formatter)
    s.add_argument("kind", choices=["correlation", "unshaped"], nargs="?", default="correlation",
                   help="which limit: the shaped correlation SDE or the unshaped q_t SDE")
    s.add_argument("--c-plus", type=float, default=0.0,
                   help="shaping: positive-side slope 1 + c_+/sqrt(n)")
    s.add_argument("--c-minus", type=float, default=-2.0,
                   help="shaping: negative-side slope 1 + c_-/sqrt(n)")
    s.add_argument("--rho0", type=float, default=0.3, help="initial correlation in (-1, 1)")
    s.add_argument("--times", type=float, nargs="+", default=[0.25, 0.5, 1.0],
                   help="save times t = depth / width")
    s.add_argument("--paths", type=int, default=100_000,
                   help="independent paths (>= 2; integers only, e.g. 100000)")
    s.add_argument("--dt", type=float, default=None,
                   help="step (correlation; None: T/1000) or relative step (unshaped)")
    s.add_argument("--method", choices=["euler", "heun", "milstein"], default="euler",
                   help="time-stepping scheme of limits.solve")
    s.add_argument("--seed", type=int, default=0,
                   help="random seed: the same seed gives the same paths")
    s.add_argument("--save", metavar="FILE", help="write times and values to this .npz")
    s.add_argument("--plot", metavar="FILE", help="write a paths figure (PNG) to this file")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(func=_sde)

    ph = sub.add_parser("phase-diagram", help="empirical (or theoretical) phase diagram of "
                        "two-layer ReLU networks",
                        description="Train two-layer ReLU networks over a (gamma, gamma') grid "
                                    "and widths, fit S_w = d log RD / d log m, and draw the "
                                    "diagram (Luo et al. 2021, theory/training.md §1). With "
                                    "--store the grid is resumable (SQLite). A single gamma' "
                                    "row is drawn as S_w against gamma.",
                        formatter_class=_Formatter)
    ph.add_argument("--theory", action="store_true",
                    help="only draw the theoretical diagram with the named initialisations")
    ph.add_argument("--gammas", type=float, nargs="+", default=[0.6, 1.0, 1.4],
                    help="gamma values (increasing)")
    ph.add_argument("--gamma-primes", type=float, nargs="+", default=[0.0],
                    help="gamma' values")
    ph.add_argument("--widths", type=int, nargs="+", default=[1000, 5000, 10000, 20000, 40000],
                    help="hidden widths m (>= 2)")
    ph.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    ph.add_argument("--store", metavar="FILE", default=None,
                    help="SQLite file that makes the grid resumable")
    ph.add_argument("--workers", type=int, default=None,
                    help="parallel trainings (None: the number of cores)")
    ph.add_argument("--out", metavar="FILE", default="phase_diagram.png",
                    help="figure file (PNG)")
    ph.add_argument("--no-progress", action="store_true", help="no progress bar")
    ph.set_defaults(func=_phase_diagram)
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as exc:   # bad input: a message, not a traceback
        print(f"python -m limits {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    except (ArithmeticError, MemoryError) as exc:     # overflow or size the checks did not see
        print(f"python -m limits {args.cmd}: error: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
