"""Command line: ``python -m limits validate | kernel``."""
import argparse
import sys

import numpy as np


def _validate(args):
    from . import validate
    quick = not args.full
    results = validate.run(out=args.out, quick=quick, progress=not args.no_progress)
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
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
