"""Regenerate the figures the README shows from the library (run from the repository root).

    python docs/make_figures.py              # writes docs/order_chaos.png
    python docs/make_figures.py --out DIR    # writes DIR/order_chaos.png

``docs/order_chaos.png``: the order/chaos phase diagram of deep tanh MLPs at initialisation,
``limits.plots.order_chaos(kernels.Tanh())`` (Poole et al. 2016; Schoenholz et al. 2017;
theory/kernels.md §5c): the (weight variance, bias variance) plane coloured by the correlation
depth scale xi_c, the chaotic region hatched, the edge of chaos chi_1 = 1 dashed.  Pure theory
(no simulation), so the file is deterministic up to the matplotlib version; a few seconds
once numba has compiled the quadrature (measured 1.9 s with a warm cache, busy machine).
"""
import argparse
import pathlib
import time


def order_chaos(out):
    """Draw the tanh order/chaos diagram on the default grid (160 x 120) and save it."""
    import matplotlib.pyplot as plt

    import kernels as kn
    import limits.plots

    t = time.perf_counter()
    fig = limits.plots.order_chaos(kn.Tanh())
    fig.set_size_inches(6.4, 4.6)
    fig.tight_layout()
    path = pathlib.Path(out) / "order_chaos.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB, {time.perf_counter() - t:.1f} s)")
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent),
                   help="directory the PNG files are written to")
    args = p.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")           # a script writing files: no display needed
    pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
    order_chaos(args.out)


if __name__ == "__main__":
    main()
