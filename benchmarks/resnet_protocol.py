"""The ResNet depth-scaling protocol tables of theory/training.md §2.6, regenerated.

    python benchmarks/resnet_protocol.py p2           # P2 reproduction: collapsed loader, 3..9100
    python benchmarks/resnet_protocol.py sensitivity  # beta vs patience on full data, <= 2116
    python benchmarks/resnet_protocol.py tanh         # tanh + shared: which released setting
                                                      # gives beta ~ 0.2 (training.md §2.6 [open])
    options: --max-depth N  --seeds 0 1 2  --patiences 5 200  --settings relu+multi
             --store DIR (resumable runs)

Every run goes through ``limits.resnet_scaling.study`` with a ``limits.sweep`` store in
``--store`` (default ``benchmarks/_resnet_protocol_runs``), one SQLite file per table: an
interrupted table resumes where it stopped, and a rerun only reads the stored networks.  Each
table is printed as Markdown with the wall time.  Settings: ``REGIME_SETTINGS`` of
``limits/validate/resnet_scaling.py`` (P2-code DEFAULT_PARAMS with batch 32: Adam lr 1e-3,
<= 200 epochs, epsilon 1e-3, initial_sd 0.01, 'xavier-depth', patience 5), ODE data.

The ``tanh`` table (``TANH_VARIANTS`` of ``limits/validate/resnet_scaling.py``, also a
full-mode validate check) varies one released-code setting at a time (training.md §2.6:
DEFAULT_PARAMS' initial_sd 1e-4 and batch 50, ``run_experiment``'s SGD lr 5e-3 and epsilon 1e-2, the shipped
example SCALING_PARAMS = Adam lr 1e-2 and 10 epochs, the collapsed loader) and some
combinations, on depths <= ``--max-depth`` (default 300; beta of the base setting is 0.41 there
as at 2116), and reports beta, alpha (the delta exponent), the verdict and the stops.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from limits import resnet_scaling as rs  # noqa: E402
from limits.validate.resnet_scaling import (PATIENCES, REGIME_SETTINGS,  # noqa: E402
                                             SETTINGS, TANH_VARIANTS, fit_summary, patience_rows,
                                             regime_study, table_text)

def _store(args, table):
    os.makedirs(args.store, exist_ok=True)
    return os.path.join(args.store, f"{table}.sqlite")


def p2(args):
    depths = rs.depth_grid(1.2, 3, args.max_depth or 10_000)
    rows = patience_rows(depths, args.seeds, patiences=args.patiences or (5, 200),
                         settings=(("relu", "multi"),), loader="p2-collapsed",
                         store=_store(args, "p2"))
    print(f"P2 reproduction, collapsed loader, ODE data, depths 3..{depths[-1]}")
    print(table_text(rows))
    return rows


def sensitivity(args):
    depths = rs.depth_grid(1.2, 3, args.max_depth or 2500)
    settings = [tuple(x.split("+")) for x in args.settings] if args.settings else SETTINGS
    rows = patience_rows(depths, args.seeds, patiences=args.patiences or PATIENCES,
                         settings=settings, store=_store(args, "sensitivity"))
    print(f"Full (shuffled) data, ODE, depths 3..{depths[-1]}")
    print(table_text(rows))
    return rows


def tanh(args):
    depths = rs.depth_grid(1.2, 3, args.max_depth or 300)
    store = _store(args, "tanh")
    print(f"tanh + shared delta, ODE data, depths 3..{depths[-1]}, seeds {args.seeds}; "
          f"REGIME_SETTINGS = {REGIME_SETTINGS}")
    print("| variant | beta (per seed) | alpha | alpha + beta | verdict | stops | s |")
    print("|---|---|---|---|---|---|---|")
    for label, over in TANH_VARIANTS.items():
        if args.only and not any(o in label for o in args.only):
            continue
        t = time.perf_counter()
        fs = [fit_summary(regime_study("tanh", "shared", depths, seed=s, store=store, **over))
              for s in args.seeds]
        b = [f["beta"] for f in fs]
        a = [f["alpha"] for f in fs]
        stops = {}
        for f in fs:
            for k, v in f["counts"].items():
                stops[k] = stops.get(k, 0) + v
        print(f"| {label} | {', '.join(f'{x:.3f}' for x in b)} | "
              f"{', '.join(f'{x:.3f}' for x in a)} | "
              f"{sum(b) / len(b) + sum(a) / len(a):.3f} | {', '.join(f['verdict'] for f in fs)} "
              f"| {', '.join(f'{k} {v}' for k, v in stops.items())}"
              + (" (mixed)" if any(f["mixed"] for f in fs) else "")
              + f" | {time.perf_counter() - t:.0f} |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("table", choices=("p2", "sensitivity", "tanh"))
    ap.add_argument("--max-depth", type=int, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--patiences", type=int, nargs="+", default=None)
    ap.add_argument("--settings", nargs="+", default=None,
                    help="sensitivity: e.g. relu+multi tanh+shared (default both)")
    ap.add_argument("--only", nargs="+", default=None, help="tanh: variants whose label "
                    "contains one of these strings")
    ap.add_argument("--store", default=os.path.join(os.path.dirname(__file__),
                                                    "_resnet_protocol_runs"))
    args = ap.parse_args()
    t = time.perf_counter()
    {"p2": p2, "sensitivity": sensitivity, "tanh": tanh}[args.table](args)
    print(f"\n{args.table}: {time.perf_counter() - t:.0f} s wall "
          f"(2 shared cores; timings are noisy)")


if __name__ == "__main__":
    main()
