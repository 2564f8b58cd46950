"""kernels: infinite-width NNGP / NTK and per-layer covariance of random MLPs and ResNets.

>>> import numpy as np, kernels as kn
>>> net = kn.MLP(depth=20, activation=kn.ReLU(), weight_var=2.0, bias_var=0.01)
>>> x = np.random.default_rng(0).standard_normal((4, 3))
>>> K, Th = net.nngp(x), net.ntk(x)
>>> mc = kn.monte_carlo(net, x, width=256, samples=100, seed=0)   # finite-width networks
"""
from .activations import (ABReLU, Activation, Erf, Identity, LeakyReLU, ReLU, ShapedReLU,
                          Tanh)
from .architectures import MLP, Kernels, ResNet, Trajectory
from .montecarlo import MonteCarloResult, Paths, monte_carlo, simulate_paths
from .predict import Prediction, predict, predict_from_kernels
from ._cg import Regression, kernel_regression
from ._dask import DaskKernels, dask_kernels
from ._grads import KernelGrads
from . import gp

__all__ = ["Activation", "ABReLU", "ReLU", "LeakyReLU", "ShapedReLU", "Identity", "Erf", "Tanh",
           "MLP", "ResNet", "Kernels", "Trajectory", "monte_carlo", "simulate_paths",
           "MonteCarloResult", "Paths", "predict", "predict_from_kernels", "Prediction",
           "dask_kernels", "DaskKernels", "kernel_regression", "Regression", "KernelGrads",
           "gp"]
__version__ = "0.1.0"
