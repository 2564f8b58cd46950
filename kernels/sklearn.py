"""scikit-learn kernels: a network's NNGP (or NTK) for ``GaussianProcessRegressor``.

>>> import numpy as np, kernels as kn
>>> from kernels.sklearn import NNGPKernel
>>> from sklearn.gaussian_process import GaussianProcessRegressor
>>> from sklearn.gaussian_process.kernels import WhiteKernel
>>> k = NNGPKernel(kn.MLP(depth=3, activation=kn.ReLU(), weight_var=1.5, bias_var=0.1))
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((40, 2)); y = np.sin(x[:, 0])
>>> gp = GaussianProcessRegressor(kernel=k + WhiteKernel(1e-2), random_state=0).fit(x, y)
>>> fitted = gp.kernel_.k1.network            # the net with the fitted variances

The hyperparameters are the network's ``weight_var`` and ``bias_var`` (for a ResNet: those of
the Dense inside each branch), optimised by scikit-learn in log space; the gradient
``dK/dlog(theta) = theta dK/dtheta`` comes from ``net.kernel_grads`` (exact forward-mode
derivatives, theory/kernels.md §5b).  Input rows are the network's inputs ``x`` (the input
kernel is ``x x'/d``).  Only this module imports scikit-learn.
"""
from dataclasses import replace

import numpy as np
from sklearn.gaussian_process.kernels import Hyperparameter, Kernel

from . import _checks
from ._grads import kernel_grads as _kernel_grads

__all__ = ["NNGPKernel", "NTKKernel"]


class _NetworkKernel(Kernel):
    _kind = "nngp"

    def __init__(self, net, weight_var=None, bias_var=None, weight_var_bounds=(1e-3, 1e3),
                 bias_var_bounds=(1e-6, 1e2)):
        from .architectures import _KernelMethods
        if not isinstance(net, _KernelMethods):
            raise TypeError(f"net must be a kernels architecture (MLP, ResNet), got "
                            f"{type(net).__name__}: {net!r}")
        if weight_var is None and np.ndim(net.weight_var) != 0 or \
                bias_var is None and np.ndim(net.bias_var) != 0:
            raise ValueError("net has per-layer variances: a scikit-learn kernel fits one shared "
                             "weight_var and bias_var (give scalars, or fit per-layer variances "
                             "with kernels.gp.fit)")
        self.net = net
        # None: the network's own value (stored as a float so that theta is defined; the
        # object passed in is stored unchanged otherwise, as scikit-learn's clone requires)
        self.weight_var = net.weight_var if weight_var is None else weight_var
        self.bias_var = net.bias_var if bias_var is None else bias_var
        self.weight_var_bounds = weight_var_bounds
        self.bias_var_bounds = bias_var_bounds

    @property
    def hyperparameter_weight_var(self):
        return Hyperparameter("weight_var", "numeric", self.weight_var_bounds)

    @property
    def hyperparameter_bias_var(self):
        return Hyperparameter("bias_var", "numeric", self.bias_var_bounds)

    @property
    def network(self):
        """The architecture with the current (e.g. fitted) variances."""
        return replace(self.net, weight_var=_checks.nonneg_float(self.weight_var, "weight_var"),
                       bias_var=_checks.nonneg_float(self.bias_var, "bias_var"))

    def __call__(self, X, Y=None, eval_gradient=False):
        """Kernel ``k(X, Y)`` and, with ``eval_gradient``, its gradient with respect to the
        log of the non-fixed hyperparameters, shape (N, N, n_free) in the order of
        ``self.hyperparameters`` (``bias_var``, then ``weight_var``)."""
        net = self.network
        X = _checks.inputs(X, "X")
        if not eval_gradient:
            Y = None if Y is None else _checks.inputs(Y, "Y", X.shape[1])
            return getattr(net, self._kind)(X, Y)
        if Y is not None:
            raise ValueError("Gradient can only be evaluated when Y is None.")
        free = [h for h in self.hyperparameters if not h.fixed]
        for h in free:
            if getattr(self, h.name) <= 0.0:
                raise ValueError(f"{h.name} = {getattr(self, h.name)!r}: a hyperparameter "
                                 f"optimised in log space must be > 0 (start from a positive "
                                 f"value, or fix it: {h.name}_bounds='fixed')")
        g = _kernel_grads(net, X)
        K = getattr(g.kernels, self._kind)
        d = getattr(g, self._kind)
        if not free:
            return K, np.empty((X.shape[0], X.shape[0], 0))
        grad = np.stack([getattr(self, h.name) * d[h.name] for h in free], axis=-1)
        return K, grad

    def diag(self, X):
        """``k(x_i, x_i)`` for every row, O(N depth)."""
        return getattr(self.network, self._kind)(_checks.inputs(X, "X"), diagonal=True)

    def is_stationary(self):
        return False

    def __repr__(self):
        return (f"{type(self).__name__}({type(self.net).__name__}(depth={self.net.depth}, "
                f"{self.net.activation!r}), weight_var={float(self.weight_var):.4g}, "
                f"bias_var={float(self.bias_var):.4g})")


class NNGPKernel(_NetworkKernel):
    """The NNGP of ``net`` as a scikit-learn kernel (``GaussianProcessRegressor``).

    ``k(X, Y) = net.nngp(X, Y)`` with the current variances; ``eval_gradient=True`` uses
    ``net.kernel_grads``.  Not stationary.  Combine with ``WhiteKernel`` for observation noise.

    Parameters
    ----------
    net : MLP or ResNet
    weight_var, bias_var : float > 0, optional
        Starting values of the hyperparameters (default: the network's).
    weight_var_bounds, bias_var_bounds : pair of floats or "fixed"
        Bounds for the optimiser (in the variances themselves; scikit-learn works in log space).
    """

    _kind = "nngp"


class NTKKernel(_NetworkKernel):
    """The NTK of ``net`` as a scikit-learn kernel (same parameters as ``NNGPKernel``).

    A GP with the NTK as covariance is the kernel regression an infinitely wide network trained
    to convergence performs in mean (its posterior variance is not the trained ensemble's: for
    that use ``kernels.predict``)."""

    _kind = "ntk"
