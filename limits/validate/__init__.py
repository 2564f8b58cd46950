"""``python -m limits validate``: every validation the project has, as one report.

Each check compares a computed number with an *independent* expected value (neural-tangents
reference output, closed forms and mpmath tables of ``theory/``, shipped in ``limits/_data`` and
read with ``reference_table``), with a stated tolerance, and writes a row of ``report.md``; some
checks also draw a figure.  The command exits non-zero if any check fails.  ``--quick`` (the
README's main command) is the fast subset; ``--full`` adds the long checks.

Layout: ``_registry`` holds the machinery (``Result``, ``check``, ``run``, ``checks``); each
capability registers its checks with ``@check(...)`` in its own module of this package:

- ``kernels``: NNGP/NTK against neural-tangents, activation maps, He-ReLU tables, deep
  asymptotics, the ResNet ODE limit, the tabulated fast path;
- ``montecarlo``: finite-width identities, Monte Carlo convergence, the two samplers;
- ``derive``: SymPy drift/diffusion against theory and against one simulated layer;
- ``sde``: SDE solvers against the oracle tables, limits against finite networks;
- ``phase``: the two-layer ReLU phase diagram (trainer, regimes, published slopes);
- ``resnet_scaling``: trained ResNet weights' depth scaling (gradients, Adam, regimes);
- ``sweep``: the grid runner's results independent of the number of workers.

``run`` imports every public module of this package, so a new check touches no shared file.
"""
from ._registry import CHECKS, Context, Result, check, checks, reference_table, run

__all__ = ["Result", "check", "checks", "run", "CHECKS", "Context", "reference_table"]
