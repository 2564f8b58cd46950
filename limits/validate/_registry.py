"""The validation registry and runner behind ``python -m limits validate``.

``Result`` (one report row), ``check`` (the registering decorator), ``run`` (runs the checks,
writes ``report.md`` and figures) and ``reference_table`` (the shipped oracle tables of
``limits/_data``).  The checks themselves live in one module per capability of the
``limits.validate`` package (``kernels``, ``montecarlo``, ``derive``, ``sde``, ``phase``,
``resnet_scaling``, ``sweep``); ``run`` imports every public module of the package, so adding a
check touches no shared file.
"""
import fnmatch
import json
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Callable, List, Optional

import numpy as np

__all__ = ["Result", "check", "run", "CHECKS", "Context", "checks", "reference_table"]


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


def reference_table(name):
    """The shipped reference data ``limits/_data/<name>.json`` as a dict.

    One source of truth for the expected values that tests and validation checks share
    (neural-tangents output ``nt_relu_mlp``, the closed-form and mpmath tables of
    ``theory/kernels.md`` in ``kernels_oracles``, the SDE tables of ``theory/sde.md`` in
    ``sde_oracles``); each file says in its ``"source"`` and ``"how made"`` fields where the
    numbers come from.
    """
    with resources.files("limits").joinpath(f"_data/{name}.json").open() as f:
        return json.load(f)


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
    """Run the check called ``name`` in this process (the worker side of ``run(executor=)``).

    A worker process only writes figures to files: it selects matplotlib's non-interactive Agg
    backend (the library's plot functions never choose a backend); a worker thread of the
    calling process leaves the backend alone.
    """
    import multiprocessing
    if multiprocessing.parent_process() is not None:     # a worker process, not a thread
        import matplotlib
        matplotlib.use("Agg")
    _load_check_modules()
    c = next(c for c in CHECKS if c.name == name)
    return _run_one(c, Context(out=out, quick=quick))


def _matches(name, patterns):
    name = name.lower()
    for p in patterns:
        p = p.lower()
        if any(ch in p for ch in "*?["):
            if fnmatch.fnmatchcase(name, p):
                return True
        elif p in name:
            return True
    return False


def checks(quick=True, only=None):
    """The registered checks that ``run(quick=quick, only=only)`` would run, in report order.

    Parameters
    ----------
    quick : bool
        Leave out the ``full_only`` checks.
    only : str or sequence of str, optional
        Keep the checks whose name contains one of these strings (case-insensitive), or matches
        one of them as a shell-style pattern when it contains ``*``, ``?`` or ``[``.

    Returns
    -------
    list of (name, full_only) tuples

    Raises
    ------
    ValueError
        If ``only`` is given and no check matches it.
    """
    _load_check_modules()
    return [(c.name, c.full_only) for c in _select(quick, only)]


def _select(quick, only):
    todo = [c for c in CHECKS if quick is False or not c.full_only]
    if only is not None:
        patterns = [only] if isinstance(only, str) else list(only)
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise ValueError(f"only must be a non-empty string or list of strings, got {only!r}")
        todo = [c for c in todo if _matches(c.name, patterns)]
        if not todo:
            raise ValueError(f"only={only!r} matches no {'quick ' if quick else ''}check; "
                             "list them with: python -m limits validate --list")
    return todo


def run(out="validation-report", quick=True, progress=True, executor=None, only=None):
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
    only : str or sequence of str, optional
        Run only the checks whose name matches (see ``checks``).

    Notes
    -----
    Figures are drawn with pyplot under the current matplotlib backend, saved and closed; this
    function does not change the backend (the command line selects Agg).
    """
    from tqdm.auto import tqdm

    _load_check_modules()
    todo = _select(quick, only)
    os.makedirs(out, exist_ok=True)
    ctx = Context(out=out, quick=quick)
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


# the capability modules, in report order (kernels first, as before the split); any other
# public module of the package is imported after them, in name order
_ORDER = ("kernels", "derive", "montecarlo", "phase", "resnet_scaling", "sde", "sweep")


def _load_check_modules():
    """Import every public module of ``limits.validate`` (each registers its checks on import)."""
    import importlib
    import pkgutil

    from limits import validate
    names = [m.name for m in pkgutil.iter_modules(validate.__path__)
             if not m.name.startswith("_")]
    names = [n for n in _ORDER if n in names] + sorted(n for n in names if n not in _ORDER)
    for n in names:
        importlib.import_module(f"limits.validate.{n}")


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
