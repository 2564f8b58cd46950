"""limits: the depth-and-width limits of random networks, and the checks that validate them.

This package grows issue by issue (SDE/ODE derivations and solvers, phase diagrams, ResNet
depth scaling, sweeps).  Today it holds the validation report (``python -m limits validate``)
and the plotting helpers it uses.
"""
from . import plots, validate

__all__ = ["plots", "validate"]
__version__ = "0.1.0"
