"""limits: the depth-and-width limits of random networks, and the checks that validate them.

Limit objects (``CorrelationSDE``, ``CovarianceSDE``, ``SmoothCovarianceSDE``,
``UnshapedCorrelationSDE``, ``ResNetODE``),
one solver (``solve``) and the comparison with finite networks (``compare``); SymPy derivations in
``limits.derive``; the validation report (``python -m limits validate``) and figures
(``limits.plots``).
"""
from .sde import (CorrelationSDE, CovarianceSDE, GeometricBM, LinearSDE, OrnsteinUhlenbeck,
                  PeluchettiFavaroSDE, ResNetODE, SmoothCovarianceSDE, UnshapedCorrelationSDE)
from .solve import Comparison, Solution, compare, solve
from .which_limit import WhichLimit, which_limit

__all__ = ["CorrelationSDE", "CovarianceSDE", "SmoothCovarianceSDE",
           "UnshapedCorrelationSDE",
           "ResNetODE", "GeometricBM", "LinearSDE", "OrnsteinUhlenbeck", "PeluchettiFavaroSDE",
           "solve", "Solution",
           "compare", "Comparison", "which_limit", "WhichLimit"]
__version__ = "0.1.0"

# heavier imports, loaded on first use: SymPy (derive), matplotlib (plots), dask (sweep), ...
_LAZY = ("criticality", "derive", "phase", "plots", "resnet_scaling", "sweep", "validate")


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'limits' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
