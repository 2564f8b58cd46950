"""Command line: ``python -m limits validate | kernel``."""
import argparse
import sys

import numpy as np


def _validate(args):
    from . import validate
    quick = not args.full
    executor = None
    if args.dask_scheduler:
        try:
            from dask.distributed import Client
        except ImportError:
            raise ValueError("--dask-scheduler needs dask.distributed: pip install "
                             "'nn-limits[dask]'") from None
        executor = Client(args.dask_scheduler).get_executor()
    elif args.workers and args.workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        executor = ProcessPoolExecutor(args.workers,
                                       mp_context=multiprocessing.get_context("spawn"))
    elif args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    try:
        results = validate.run(out=args.out, quick=quick, progress=not args.no_progress,
                               executor=executor)
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
    acts = {"relu": kn.ReLU(), "erf": kn.Erf(), "tanh": kn.Tanh(), "identity": kn.Identity(),
            "leaky": kn.LeakyReLU(args.slope), "abs": kn.ABReLU(-1.0, 1.0)}
    x = np.load(args.inputs)
    if args.arch == "mlp":
        net = kn.MLP(args.depth, acts[args.activation], args.weight_var, args.bias_var)
    else:
        net = kn.ResNet(args.depth, acts[args.activation], args.weight_var, args.bias_var)
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
    from . import plots
    if args.kind == "correlation":
        sde, y0 = limits.CorrelationSDE(args.c_plus, args.c_minus), args.rho0
    else:
        sde, y0 = limits.UnshapedCorrelationSDE(), None
    times = sorted(args.times)
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


def _phase_diagram(args):
    from . import phase, plots
    if args.theory:
        fig = plots.phase_diagram()
        fig.savefig(args.out, dpi=110, bbox_inches="tight")
        print(f"theoretical phase diagram: {args.out}")
        return 0
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
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
    fig = plots.slope_heatmap(d)
    fig.savefig(args.out, dpi=110, bbox_inches="tight")
    print(f"figure: {args.out}")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m limits",
                                description="Infinite-width / infinite-depth network theory: "
                                            "validation report and kernel computations.")
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="run every validation check and write a report",
                       description="Run every check (kernels vs neural-tangents reference and "
                                   "closed forms, deep asymptotics, ResNet ODE limit, fast "
                                   "path) and write DIR/report.md plus PNG figures. Exit "
                                   "status 1 if any check fails.")
    g = v.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="the fast subset (default; minutes)")
    g.add_argument("--full", action="store_true", help="add the long checks")
    v.add_argument("--out", default="validation-report",
                   help="output directory (default: validation-report)")
    v.add_argument("--no-progress", action="store_true", help="no progress bar")
    w = v.add_mutually_exclusive_group()
    w.add_argument("--workers", type=int, default=None,
                   help="run the checks in N local processes (default: one process)")
    w.add_argument("--dask-scheduler", metavar="ADDR", default=None,
                   help="run the checks on a dask.distributed cluster (e.g. tcp://host:8786; "
                        "needs the 'dask' extra and a shared filesystem for --out)")
    v.set_defaults(func=_validate)
    k = sub.add_parser("kernel", help="NNGP/NTK of an MLP or ResNet for inputs in a .npy file",
                       description="Compute the infinite-width NNGP and NTK for inputs x "
                                   "(an (N, d) array saved with numpy.save).")
    k.add_argument("inputs", help="path to an (N, d) .npy array")
    k.add_argument("--arch", choices=["mlp", "resnet"], default="mlp",
                   help="architecture (default mlp)")
    k.add_argument("--depth", type=int, default=10, help="number of hidden layers / blocks")
    k.add_argument("--activation", choices=["relu", "leaky", "abs", "erf", "tanh", "identity"],
                   default="relu", help="activation (default relu)")
    k.add_argument("--slope", type=float, default=0.2, help="negative slope for leaky")
    k.add_argument("--weight-var", type=float, default=2.0, help="sigma_w^2 (default 2)")
    k.add_argument("--bias-var", type=float, default=0.0, help="sigma_b^2 (default 0)")
    k.add_argument("--save", help="write nngp and ntk to this .npz instead of printing")
    k.set_defaults(func=_kernel)
    s = sub.add_parser("sde", help="simulate a correlation SDE limit and print its statistics",
                       description="Solve the shaped-ReLU correlation SDE (theory/sde.md §2.4; "
                                   "time t = depth/width) or the unshaped q_t SDE (§3.3) and "
                                   "print mean, standard error, sd and quantiles at each time.")
    s.add_argument("kind", choices=["correlation", "unshaped"], nargs="?", default="correlation")
    s.add_argument("--c-plus", type=float, default=0.0, help="shaping c_+ (default 0)")
    s.add_argument("--c-minus", type=float, default=-2.0, help="shaping c_- (default -2)")
    s.add_argument("--rho0", type=float, default=0.3, help="initial correlation (default 0.3)")
    s.add_argument("--times", type=float, nargs="+", default=[0.25, 0.5, 1.0],
                   help="save times (default 0.25 0.5 1)")
    s.add_argument("--paths", type=int, default=100_000, help="paths (default 1e5)")
    s.add_argument("--dt", type=float, default=None,
                   help="step (correlation; default T/1000) or relative step (unshaped)")
    s.add_argument("--method", choices=["euler", "heun", "milstein"], default="euler")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--save", help="write times and values to this .npz")
    s.add_argument("--plot", help="write a paths figure (PNG) to this file")
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=_sde)
    ph = sub.add_parser("phase-diagram", help="empirical (or theoretical) phase diagram of "
                        "two-layer ReLU networks",
                        description="Train two-layer ReLU networks over a (gamma, gamma') grid "
                                    "and widths, fit S_w = d log RD / d log m, and draw the "
                                    "diagram (Luo et al. 2021, theory/training.md §1). With "
                                    "--store the grid is resumable (SQLite).")
    ph.add_argument("--theory", action="store_true",
                    help="only draw the theoretical diagram with the named initialisations")
    ph.add_argument("--gammas", type=float, nargs="+", default=[0.6, 1.0, 1.4],
                    help="gamma values (default 0.6 1.0 1.4)")
    ph.add_argument("--gamma-primes", type=float, nargs="+", default=[0.0],
                    help="gamma' values (default 0)")
    ph.add_argument("--widths", type=int, nargs="+", default=[1000, 5000, 10000, 20000, 40000],
                    help="widths m (default 1000 5000 10000 20000 40000)")
    ph.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default 0)")
    ph.add_argument("--store", default=None, help="SQLite file: resumable grid")
    ph.add_argument("--workers", type=int, default=None, help="parallel trainings")
    ph.add_argument("--out", default="phase_diagram.png", help="figure file (PNG)")
    ph.add_argument("--no-progress", action="store_true")
    ph.set_defaults(func=_phase_diagram)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError) as exc:   # bad input: a message, not a traceback
        print(f"python -m limits {args.cmd}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
