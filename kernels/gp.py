r"""Gaussian-process model selection with the infinite-width kernels: the log marginal
likelihood of the data under the NNGP (or NTK) prior, its gradient with respect to the
variances and the noise, and maximum-likelihood fitting (type-II maximum likelihood).

Model: every output column ``y[:, c]`` (c = 1..k) is an independent draw of
``N(0, C)``, ``C = K(x, x) + noise_var I``, with ``K`` the network's NNGP (``kind="nngp"``; the
prior of the infinitely wide Bayesian network) or NTK (``kind="ntk"``).  The columns share the
hyperparameters, so their log likelihoods add (Rasmussen & Williams 2006, *Gaussian Processes
for Machine Learning*, eq. 2.30 and eq. 5.9)::

    log p(Y) = -1/2 tr(Y^T C^-1 Y) - k/2 log det C - n k/2 log(2 pi)
    d log p(Y) / d theta = 1/2 sum_c a_c^T (dC/dtheta) a_c - k/2 tr(C^-1 dC/dtheta),  a = C^-1 Y

with ``dC/d noise_var = I`` and ``dC/d weight_var``, ``dC/d bias_var`` from
``net.kernel_grads(x)`` (a forward-mode recursion; theory/kernels.md §5b).  ``C`` is factorised
once by Cholesky (``scipy.linalg.cho_factor``); ``tr(C^-1 dC) = sum(C^-1 * dC)`` (symmetric).

``fit`` maximises ``log p(Y)`` with ``scipy.optimize.minimize(method="L-BFGS-B")`` over the
logarithms of the chosen variances (positivity for free, scale-free steps), and returns the
fitted architecture (``dataclasses.replace(net, weight_var=..., bias_var=...)``).
"""
import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize

from . import _checks
from .architectures import MLP, ResNet

__all__ = ["log_marginal_likelihood", "fit", "GPFit"]

_PARAMS = ("weight_var", "bias_var", "noise_var")
_DEFAULT_BOUNDS = (1e-6, 1e6)


@dataclass(frozen=True)
class GPFit:
    """Result of :func:`fit`.

    Attributes
    ----------
    net : kernels.MLP or kernels.ResNet
        The architecture with the fitted ``weight_var`` / ``bias_var``.
    noise_var : float
        Fitted (or fixed) observation-noise variance.
    log_marginal_likelihood : float
        ``log p(Y)`` at the fitted values (summed over output columns).
    result : scipy.optimize.OptimizeResult
        The optimiser's result (``x`` holds the logarithms of the fitted parameters, in the
        order of ``params``).
    params : tuple of str
        The fitted parameter names.
    kind : str
    """

    net: object
    noise_var: float
    log_marginal_likelihood: float
    result: object
    params: tuple
    kind: str


def _check_net(net):
    if not isinstance(net, (MLP, ResNet)):
        raise TypeError(f"net must be a kernels MLP or ResNet, got {type(net).__name__}")


def _check_kind(kind):
    if kind not in ("nngp", "ntk"):
        raise ValueError(f"kind must be 'nngp' or 'ntk', got {kind!r}")


def _data(x, y):
    x = _checks.inputs(x, "x")
    Y = _checks.finite_array(y, "y")
    if Y.ndim not in (1, 2) or Y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have shape ({x.shape[0]},) or ({x.shape[0]}, k) to match x, "
                         f"got {Y.shape}")
    return x, Y.reshape(x.shape[0], -1)


def _factor(C, noise_var):
    try:
        c = linalg.cho_factor(C, lower=True, check_finite=False)
    except linalg.LinAlgError:
        c = None
    if c is None or not np.min(np.diag(c[0])) ** 2 > C.shape[0] * np.finfo(float).eps * \
            np.max(np.diag(C)):
        w = linalg.eigvalsh(C, check_finite=False)
        cond = w[-1] / w[0] if w[0] > 0 else np.inf
        raise ValueError(f"K + noise_var I (noise_var = {noise_var:.3g}) is not numerically "
                         f"positive definite: smallest eigenvalue {w[0]:.3g}, condition number "
                         f"{cond:.3g}; increase noise_var (duplicate inputs?)")
    return c


def _lml(K, Y, noise_var, dK=None):
    """Value (and gradient dict over ``dK`` plus noise_var) of the log marginal likelihood."""
    n, k = Y.shape
    C = K + noise_var * np.eye(n)
    c = _factor(C, noise_var)
    a = linalg.cho_solve(c, Y, check_finite=False)
    logdet = 2.0 * np.sum(np.log(np.diag(c[0])))
    value = float(-0.5 * np.sum(Y * a) - 0.5 * k * logdet - 0.5 * n * k * math.log(2 * math.pi))
    if dK is None:
        return value, None
    Ci = linalg.cho_solve(c, np.eye(n), check_finite=False)
    W = 0.5 * (a @ a.T - k * Ci)             # d log p = sum(W * dC)   (W, dC symmetric)
    grad = {}
    for name, D in dK.items():
        D = np.asarray(D)
        g = np.einsum("...ij,ij->...", D, W)
        grad[name] = float(g) if np.ndim(g) == 0 else g
    grad["noise_var"] = float(np.trace(W))
    for name, g in grad.items():
        if np.any(np.isnan(g)):
            raise FloatingPointError(f"the gradient of the log marginal likelihood with respect "
                                     f"to {name} is NaN: infinite one-sided derivatives of the "
                                     f"kernel of both signs (bias_var = 0 with parallel "
                                     f"inputs?)")
    return value, grad


def log_marginal_likelihood(net, x, y, noise_var, kind="nngp", grad=False):
    r"""Log marginal likelihood of ``y`` under the GP prior ``N(0, K(x, x) + noise_var I)``.

    ``log p(Y) = -1/2 tr(Y^T C^-1 Y) - k/2 log det C - n k/2 log(2 pi)``, summed over the k
    output columns, which share the hyperparameters (module docstring; Rasmussen & Williams
    2006, eq. 2.30).

    Parameters
    ----------
    net : kernels.MLP or kernels.ResNet
    x : (n, d) array
    y : (n,) or (n, k) array
    noise_var : float >= 0
        Observation-noise variance added to the kernel's diagonal.
    kind : {"nngp", "ntk"}
        The prior covariance: the NNGP (Bayesian network) or the NTK.
    grad : bool
        Also return the gradient with respect to ``weight_var``, ``bias_var`` (through
        ``net.kernel_grads(x)``; for ResNet the block variances) and ``noise_var``.

    Returns
    -------
    float, or (float, dict)
        The value; with ``grad=True`` also ``{"weight_var": ..., "bias_var": ...,
        "noise_var": ...}`` (floats; per-layer variances give one entry per layer; an
        infinite one-sided derivative of the kernel, e.g. with respect to ``bias_var`` at 0,
        gives +-inf, never NaN).

    Raises
    ------
    ValueError
        If ``K + noise_var I`` is not numerically positive definite (the message gives its
        smallest eigenvalue and condition number).

    Examples
    --------
    >>> import numpy as np, kernels as kn
    >>> x = np.random.default_rng(0).standard_normal((5, 2)); y = np.sin(x[:, 0])
    >>> net = kn.MLP(depth=2, activation=kn.Erf(), bias_var=0.1)
    >>> v = kn.gp.log_marginal_likelihood(net, x, y, noise_var=0.01)
    >>> isinstance(v, float)
    True
    """
    _check_net(net)
    _check_kind(kind)
    x, Y = _data(x, y)
    noise_var = _checks.nonneg_float(noise_var, "noise_var")
    grad = _checks.flag(grad, "grad")
    if not grad:
        K = net.nngp(x) if kind == "nngp" else net.ntk(x)
        return _lml(K, Y, noise_var)[0]
    g = net.kernel_grads(x)
    K = getattr(g.kernels, kind)
    return _lml(K, Y, noise_var, getattr(g, kind))


def _bounds(bounds, params):
    if bounds is None:
        bounds = {}
    if not isinstance(bounds, dict):
        raise TypeError(f"bounds must be None or a dict {{name: (low, high)}}, got "
                        f"{type(bounds).__name__}")
    unknown = set(bounds) - set(params)
    if unknown:
        raise ValueError(f"bounds has entries for parameters not in params: {sorted(unknown)}")
    out = []
    for p in params:
        lo, hi = bounds.get(p, _DEFAULT_BOUNDS)
        lo = _checks.positive_float(lo, f"bounds[{p!r}][0]")
        hi = _checks.positive_float(hi, f"bounds[{p!r}][1]")
        if not lo < hi:
            raise ValueError(f"bounds[{p!r}] must have low < high, got ({lo}, {hi})")
        out.append((math.log(lo), math.log(hi)))
    return out


def fit(net, x, y, noise_var, params=_PARAMS, bounds=None, kind="nngp", maxiter=200,
        ftol=1e-12, gtol=1e-8):
    r"""Maximum-likelihood (type-II) variances: maximise :func:`log_marginal_likelihood`.

    L-BFGS-B (``scipy.optimize.minimize``) over ``log`` of each parameter in ``params``, with
    the analytic gradient (``net.kernel_grads``); the others stay at their values in ``net``
    / ``noise_var``.  The output columns of ``y`` share the hyperparameters.

    Parameters
    ----------
    net : kernels.MLP or kernels.ResNet
        Architecture and starting values of ``weight_var`` / ``bias_var`` (scalars; for ResNet
        the block variances).
    x : (n, d) array
    y : (n,) or (n, k) array
    noise_var : float
        Starting (or fixed) noise variance.
    params : sequence of {"weight_var", "bias_var", "noise_var"}
        The parameters to fit; each must start > 0 (log space).
    bounds : dict, optional
        ``{name: (low, high)}`` in natural units, 0 < low < high; default ``(1e-6, 1e6)``.
    kind : {"nngp", "ntk"}
    maxiter, ftol, gtol
        L-BFGS-B options (``ftol`` relative on the objective -log p / (n k)).

    Returns
    -------
    GPFit
        ``.net``, ``.noise_var``, ``.log_marginal_likelihood``, ``.result``.

    Examples
    --------
    >>> import numpy as np, kernels as kn
    >>> x = np.random.default_rng(0).standard_normal((20, 2)); y = np.sin(x[:, 0])
    >>> f = kn.gp.fit(kn.MLP(depth=2, activation=kn.Erf(), bias_var=0.1), x, y, noise_var=0.1)
    >>> f.log_marginal_likelihood >= kn.gp.log_marginal_likelihood(
    ...     kn.MLP(depth=2, activation=kn.Erf(), bias_var=0.1), x, y, noise_var=0.1)
    True
    """
    _check_net(net)
    _check_kind(kind)
    x, Y = _data(x, y)
    noise_var = _checks.nonneg_float(noise_var, "noise_var")
    if isinstance(params, str):
        params = (params,)
    params = tuple(params)
    if not params or any(p not in _PARAMS for p in params) or len(set(params)) != len(params):
        raise ValueError(f"params must be distinct names from {_PARAMS}, got {params!r}")
    start = {"weight_var": net.weight_var, "bias_var": net.bias_var, "noise_var": noise_var}
    for p in params:
        if not isinstance(start[p], numbers.Real):
            raise TypeError(f"fit supports scalar {p} only, got {start[p]!r}")
        if not start[p] > 0:
            raise ValueError(f"{p} starts at {start[p]!r}: fitting works on log({p}), so give "
                             f"a positive starting value (or leave it out of params)")
    bnds = _bounds(bounds, params)
    maxiter = _checks.int_in_range(maxiter, "maxiter", 1)
    ftol = _checks.positive_float(ftol, "ftol")
    gtol = _checks.positive_float(gtol, "gtol")
    n, k = Y.shape
    scale = 1.0 / (n * k)

    def values(theta):
        v = dict(start)
        v.update({p: float(np.exp(t)) for p, t in zip(params, theta)})
        return v

    def objective(theta):
        v = values(theta)
        m = dataclasses.replace(net, weight_var=v["weight_var"], bias_var=v["bias_var"])
        need_grads = any(p != "noise_var" for p in params)
        if need_grads:
            g = m.kernel_grads(x)
            dK = {p: getattr(g, kind)[p] for p in params if p != "noise_var"}
            value, grad = _lml(getattr(g.kernels, kind), Y, v["noise_var"], dK)
        else:
            K = m.nngp(x) if kind == "nngp" else m.ntk(x)
            value, grad = _lml(K, Y, v["noise_var"], {})
        # d/d log p = p d/dp
        return (-value * scale, np.array([-grad[p] * v[p] * scale for p in params]))

    theta0 = np.array([math.log(start[p]) for p in params])
    theta0 = np.clip(theta0, [b[0] for b in bnds], [b[1] for b in bnds])
    res = optimize.minimize(objective, theta0, jac=True, method="L-BFGS-B", bounds=bnds,
                            options=dict(maxiter=maxiter, ftol=ftol, gtol=gtol))
    v = values(res.x)
    fitted = dataclasses.replace(net, weight_var=v["weight_var"], bias_var=v["bias_var"])
    lml = log_marginal_likelihood(fitted, x, Y, v["noise_var"], kind=kind)
    return GPFit(fitted, v["noise_var"], lml, res, params, kind)
