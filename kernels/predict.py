"""Inference with the infinite-width kernels: NNGP posterior and NTK gradient-descent predictions.

Formulas (theory/kernels.md §5, after neural-tangents ``predict.gp_inference``; Lee et al. 2019,
"Wide neural networks of any depth evolve as linear models under gradient descent", §2.3-§2.4)::

    NNGP (Bayesian posterior / readout-only training):
        mean = K_*X (K_XX + r I)^-1 y
        cov  = K_** - K_*X (K_XX + r I)^-1 K_X*
    NTK (full-batch gradient flow on L = 1/2 sum (f - y)^2, learning rate eta, from a random
    initialisation whose outputs are the NNGP prior):
        mean_t = Th_*X Th_XX^-1 (I - exp(-eta Th_XX t)) y                          (t = inf: Th_*X Th_XX^-1 y)
        cov_inf = K_** + Th_*X Th^-1 K_XX Th^-1 Th_X* - (Th_*X Th^-1 K_X* + transpose)

with ``Th_XX`` regularised by ``r I`` as well.  Linear solves use ``scipy.linalg.cho_factor``;
the finite-time mean uses the eigendecomposition of ``Th_XX``.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import linalg

from . import _checks
from .architectures import MLP, ResNet

__all__ = ["predict", "Prediction"]


@dataclass(frozen=True)
class Prediction:
    """Predictive mean (N_test, ...) and covariance (N_test, N_test) or None."""

    mean: np.ndarray
    cov: Optional[np.ndarray]


def _targets(y, n):
    arr = _checks.finite_array(y, "y_train")
    if arr.ndim not in (1, 2) or arr.shape[0] != n:
        raise ValueError(f"y_train must have shape ({n},) or ({n}, k) to match x_train, "
                         f"got {arr.shape}")
    return arr


def _cho(A, name):
    try:
        return linalg.cho_factor(A, lower=True, check_finite=False)
    except linalg.LinAlgError as exc:
        raise ValueError(f"{name} is not positive definite (duplicate training inputs?): use "
                         f"diag_reg > 0") from exc


def predict(net, x_train, y_train, x_test, kind="nngp", diag_reg=0.0, t=None,
            learning_rate=1.0, compute_cov=True, solver="direct", tol=1e-10):
    """Predictions of an infinitely wide network on ``x_test`` after seeing ``(x_train, y_train)``.

    Parameters
    ----------
    net : kernels.MLP or kernels.ResNet
        The architecture (its NNGP and NTK are computed on train and test inputs in one pass).
    x_train : (n, d) array
    y_train : (n,) or (n, k) array
    x_test : (m, d) array
    kind : {"nngp", "ntk"}
        ``"nngp"``: Gaussian-process posterior (Bayesian inference, or training the readout
        only).  ``"ntk"``: ensemble of networks trained by full-batch gradient flow on the MSE
        loss ``1/2 sum (f - y)^2`` (theory/kernels.md §5).
    diag_reg : float >= 0
        Ridge ``r`` added to the train-train kernel(s).
    t : float >= 0 or None
        ``kind="ntk"``: training time (None = infinity).  The covariance is returned only for
        t = None.
    learning_rate : float > 0
        ``eta`` in ``exp(-eta Th t)``.
    compute_cov : bool
        Also return the predictive covariance of the test outputs.
    solver : {"direct", "cg"}
        ``"cg"``: the mean by preconditioned conjugate gradients
        (``kernels.kernel_regression``, relative residual <= ``tol``); infinite time and
        ``compute_cov=False`` only.  For kernels past memory call ``kernel_regression`` on
        memory-mapped or dask kernels.
    tol : float > 0
        CG tolerance.

    Returns
    -------
    Prediction
        ``.mean`` (m,) or (m, k); ``.cov`` (m, m) or None.

    Examples
    --------
    >>> import numpy as np, kernels as kn
    >>> x = np.random.default_rng(0).standard_normal((6, 3)); y = np.sin(x[:, 0])
    >>> p = kn.predict(kn.MLP(depth=3, activation=kn.ReLU()), x[:4], y[:4], x[4:], kind="ntk")
    >>> p.mean.shape, p.cov.shape
    ((2,), (2, 2))
    """
    if not isinstance(net, (MLP, ResNet)):
        raise TypeError(f"net must be a kernels MLP or ResNet, got {type(net).__name__}")
    if kind not in ("nngp", "ntk"):
        raise ValueError(f"kind must be 'nngp' or 'ntk', got {kind!r}")
    x_train = _checks.inputs(x_train, "x_train")
    x_test = _checks.inputs(x_test, "x_test", d=x_train.shape[1])
    y = _targets(y_train, x_train.shape[0])
    r = _checks.nonneg_float(diag_reg, "diag_reg")
    eta = _checks.positive_float(learning_rate, "learning_rate")
    compute_cov = _checks.flag(compute_cov, "compute_cov")
    if t is not None:
        t = _checks.nonneg_float(t, "t")
        if kind != "ntk":
            raise ValueError("t (finite training time) applies to kind='ntk' only")
    if solver not in ("direct", "cg"):
        raise ValueError(f"solver must be 'direct' or 'cg', got {solver!r}")
    if solver == "cg":
        from . import _cg
        tol = _checks.positive_float(tol, "tol")
        if t is not None or compute_cov is not False:
            raise ValueError("solver='cg' gives infinite-time means only: pass t=None and "
                             "compute_cov=False")
    n = x_train.shape[0]
    xs = np.concatenate([x_train, x_test])
    if kind == "nngp":                  # the NNGP posterior needs no NTK
        K, Th = net.nngp(xs), None
    else:
        k = net.kernels(xs)
        K, Th = k.nngp, k.ntk
    if solver == "cg":
        M = K if kind == "nngp" else Th
        reg = _cg.kernel_regression(M[:n, :n], y, M[n:, :n], diag_reg=r, tol=tol)
        return Prediction(reg.mean, None)
    Kxx, Ksx, Kss = K[:n, :n] + r * np.eye(n), K[n:, :n], K[n:, n:]
    if kind == "nngp":
        c = _cho(Kxx, "K_train_train")
        mean = Ksx @ linalg.cho_solve(c, y)
        cov = Kss - Ksx @ linalg.cho_solve(c, Ksx.T) if compute_cov else None
        return Prediction(mean, None if cov is None else 0.5 * (cov + cov.T))
    Txx, Tsx = Th[:n, :n] + r * np.eye(n), Th[n:, :n]
    if t is not None:
        w, V = linalg.eigh(Txx)
        if w[0] <= 0:
            raise ValueError("Theta_train_train is not positive definite: use diag_reg > 0")
        decay = -np.expm1(-eta * t * w) / w                   # (1 - e^{-eta w t}) / w
        coef = V @ (decay[:, None] * (V.T @ y.reshape(n, -1)))
        return Prediction((Tsx @ coef).reshape((-1,) + y.shape[1:]), None)
    c = _cho(Txx, "Theta_train_train")
    mean = Tsx @ linalg.cho_solve(c, y)
    if not compute_cov:
        return Prediction(mean, None)
    A = linalg.cho_solve(c, Tsx.T)                           # Th^-1 Th_X*   (n, m)
    cross = A.T @ K[:n, n:]                                  # Th_*X Th^-1 K_X*
    cov = Kss + A.T @ K[:n, :n] @ A - (cross + cross.T)
    return Prediction(mean, 0.5 * (cov + cov.T))
