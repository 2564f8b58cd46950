"""``python -m kernels``: a short demo table of NNGP / NTK / correlation against depth."""
import argparse
import sys

import numpy as np

from . import MLP, ResNet, ReLU, Erf, Tanh


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m kernels", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Print infinite-width NNGP, NTK and correlation of two inputs at several "
                    "depths (He-initialised ReLU MLP, erf and tanh MLPs, ReLU ResNet).")
    p.add_argument("--rho", type=float, default=0.0,
                   help="input correlation of the two unit-norm inputs")
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2, 5, 10, 100, 1000, 10000],
                   help="depths to tabulate")
    p.add_argument("--tanh-max-depth", type=int, default=1000,
                   help="deepest tanh MLP computed: its Gauss-Hermite maps cost about a "
                        "millisecond per layer (about 10 s at depth 10000 on a busy 2-core "
                        "machine), so deeper rows are listed as skipped unless you raise this")
    args = p.parse_args(argv)
    if not -1.0 <= args.rho <= 1.0:
        p.error(f"--rho must lie in [-1, 1], got {args.rho}")
    if min(args.depths) < 1:
        p.error("--depths must be >= 1")
    if args.tanh_max_depth < 0:
        p.error(f"--tanh-max-depth must be >= 0, got {args.tanh_max_depth}")
    for L in args.depths:                  # refuse a depth the classes refuse, before any output
        try:
            MLP(L, ReLU())
        except ValueError as exc:
            p.error(f"--depths {L}: {exc}")
    r = args.rho
    K0 = np.array([[1.0, r], [r, 1.0]])
    nets = {
        "ReLU MLP (sw2=2)": lambda L: MLP(L, ReLU(), weight_var=2.0),
        "erf MLP (sw2=2, chaotic)": lambda L: MLP(L, Erf(), weight_var=2.0),
        "tanh MLP (sw2=1.5, sb2=0.05)": lambda L: MLP(L, Tanh(), weight_var=1.5, bias_var=0.05),
        "ReLU ResNet (sw2=2, a=L^-1/2)": lambda L: ResNet(L, ReLU(), weight_var=2.0),
    }
    print(f"Two unit-norm inputs with correlation rho_0 = {r}; K0 = [[1, rho_0], [rho_0, 1]].")
    print("NNGP and NTK of the network output; rho and 1 - rho of the last hidden kernel.\n")
    for name, make in nets.items():
        print(name)
        print(f"  {'depth':>6} {'NNGP(x,x)':>12} {'NNGP(x,y)':>12} {'NTK(x,x)':>12} "
              f"{'NTK(x,y)':>12} {'rho':>14} {'1 - rho':>12}")
        for L in args.depths:
            if "tanh" in name and L > args.tanh_max_depth:
                # quadrature activations cost deg^2 per entry and layer: say so, never skip silently
                print(f"  {L:>6}  skipped: deeper than --tanh-max-depth {args.tanh_max_depth} "
                      "(quadrature maps, about 1 ms per layer)")
                continue
            net = make(L)
            try:
                k = net.kernels(K0=K0)
                tr = net.trajectory(K0=K0, layers=[L])
            except FloatingPointError:
                print(f"  {L:>6}  overflow (the NTK grows exponentially: chaotic phase)")
                continue
            print(f"  {L:>6} {k.nngp[0, 0]:>12.6g} {k.nngp[0, 1]:>12.6g} {k.ntk[0, 0]:>12.6g} "
                  f"{k.ntk[0, 1]:>12.6g} {tr.correlation[0, 0, 1]:>14.10f} "
                  f"{tr.one_minus_correlation[0, 0, 1]:>12.4e}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
