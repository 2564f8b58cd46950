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

**Large n.**  ``log_marginal_likelihood_from_kernel`` takes a kernel computed beforehand: an
array, a ``numpy.memmap`` / ``.npy`` memory map (``net.nngp(x, out=...)``) or a dask array
(``kernels.dask_kernels``).  The log-determinant needs a Cholesky factorisation of the whole
``C``, so the kernel is loaded into memory (one (n, n) copy, factorised in place); a call that
cannot fit is refused up front by ``kernels._checks.memory_guard``.  Conjugate gradients give
``C^-1 Y`` but not ``log det C``, so there is no CG solver here: ``solver="cg"`` is refused
with that explanation (an unbiased stochastic estimate, e.g. stochastic Lanczos quadrature,
Ubaru, Chen & Saad 2017, is not implemented).

**Per-layer variances.**  A variance given per Dense layer (``MLP``: ``depth + 1`` values,
readout last; ``ResNet``: ``depth + 2``, input Dense, each block, readout Dense) has a gradient
with a layer axis (the order of ``net.kernel_grads``), and ``fit`` optimises every entry, each
in log space.  The maximum is then often not unique: e.g. in a bias-free ReLU MLP the NNGP
depends on the weight variances only through their product, so the likelihood is flat along
the directions that keep it; L-BFGS-B stops somewhere on that ridge (the likelihood value is
reliable, the individual entries are not identified).  To fit a single shared value instead,
pass a network with a scalar variance.
"""
import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg, optimize

from . import _checks
from .architectures import MLP, ResNet

__all__ = ["log_marginal_likelihood", "log_marginal_likelihood_from_kernel", "fit", "GPFit"]

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
    Y = Y.reshape(x.shape[0], -1)
    if Y.shape[0] == 0 or Y.shape[1] == 0:
        raise ValueError(f"y must hold at least one training point and one output column, got "
                         f"shape {np.shape(y)}")
    return x, Y


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
        "noise_var": ...}`` (floats; a per-layer variance gives an array with one entry per
        Dense layer, in the order of ``net.kernel_grads``: MLP ``depth + 1`` values, readout
        last; ResNet ``depth + 2``, input Dense, blocks, readout Dense; an infinite one-sided
        derivative of the kernel, e.g. with respect to ``bias_var`` at 0, gives +-inf, never
        NaN).

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
    n = x.shape[0]
    _checks.memory_guard(8.0 * n * n * (5 if not grad else 9), f"the log marginal likelihood of "
                         f"{n} points ({'with' if grad else 'without'} gradient: the kernel, "
                         f"K + noise_var I, its Cholesky factor, temporaries)",
                         "compute the kernel into a memory map (net.nngp(x, out=...)) and call "
                         "log_marginal_likelihood_from_kernel, which needs one n x n array")
    if not grad:
        K = net.nngp(x) if kind == "nngp" else net.ntk(x)
        return _lml(K, Y, noise_var)[0]
    g = net.kernel_grads(x)
    K = getattr(g.kernels, kind)
    return _lml(K, Y, noise_var, getattr(g, kind))


def _is_dask(a):
    return type(a).__module__.startswith("dask.")


def log_marginal_likelihood_from_kernel(K, y, noise_var, solver="direct"):
    r"""Log marginal likelihood of ``y`` under ``N(0, K + noise_var I)`` for a kernel computed
    beforehand, possibly past memory as a file.

    The same value as :func:`log_marginal_likelihood` (``-1/2 tr(Y^T C^-1 Y) - k/2 log det C -
    n k/2 log(2 pi)``, ``C = K + noise_var I``; Rasmussen & Williams 2006, eq. 2.30) with the
    same arithmetic: for ``K = net.nngp(x)`` the two agree bit for bit.

    Parameters
    ----------
    K : (n, n) array, numpy.memmap or dask array
        The prior covariance (e.g. ``net.nngp(x, out=np.lib.format.open_memmap(...))`` or
        ``kernels.dask_kernels(net, x).nngp``).  It is copied (memory map) or computed (dask)
        into one (n, n) float64 array, which is factorised in place: refused up front
        (``kernels._checks.MemoryBudgetError``) when that does not fit.
    y : (n,) or (n, k) array
    noise_var : float >= 0
    solver : {"direct"}
        Only the Cholesky factorisation gives ``log det C``; ``"cg"`` is refused (module
        docstring): CG solves ``C a = y`` but gives no determinant.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If ``C`` is not numerically positive definite, or ``K`` has NaN or inf.
    """
    if solver == "cg":
        raise ValueError("solver='cg' cannot give the log marginal likelihood: conjugate "
                         "gradients solve (K + noise_var I) a = y but give no log-determinant; "
                         "use solver='direct' on a machine whose memory holds one n x n "
                         "array, or a subset of the points (kernel_regression(..., "
                         "solver='cg') gives the data-fit term y.a)")
    if solver != "direct":
        raise ValueError(f"solver must be 'direct', got {solver!r}")
    if not (isinstance(K, np.ndarray) or _is_dask(K)):
        K = _checks.finite_array(K, "K")
    if len(K.shape) != 2 or K.shape[0] != K.shape[1] or K.shape[0] < 1:
        raise ValueError(f"K must be a square (n, n) matrix, got shape {K.shape}")
    if np.dtype(K.dtype).kind not in "iuf":
        raise TypeError(f"K must hold real numbers, got dtype {K.dtype}")
    n = K.shape[0]
    Y = _checks.finite_array(y, "y")
    if Y.ndim not in (1, 2) or Y.shape[0] != n:
        raise ValueError(f"y must have shape ({n},) or ({n}, k) to match K, got {Y.shape}")
    Y = Y.reshape(n, -1)
    noise_var = _checks.nonneg_float(noise_var, "noise_var")
    _checks.memory_guard(8.0 * n * n, f"the log marginal likelihood of {n} points (the "
                         f"{n} x {n} kernel in memory, factorised in place)",
                         "use a subset of the points (CG gives no log-determinant)")
    C = np.array(K.compute() if _is_dask(K) else K, dtype=np.float64, order="F", copy=True)
    if not np.all(np.isfinite(C)):
        raise ValueError("K contains NaN or inf")
    C[np.diag_indices(n)] += noise_var          # K + noise_var I, entry by entry as in _lml
    dmax = float(np.max(np.diag(C)))
    try:
        c = linalg.cho_factor(C, lower=True, overwrite_a=True, check_finite=False)
    except linalg.LinAlgError:
        c = None
    if c is None or not np.min(np.diag(c[0])) ** 2 > n * np.finfo(float).eps * dmax:
        del C, c
        M = np.array(K.compute() if _is_dask(K) else K, dtype=np.float64)
        M[np.diag_indices(n)] += noise_var
        _factor(M, noise_var)                   # raises with the smallest eigenvalue
        raise ValueError(f"K + noise_var I (noise_var = {noise_var:.3g}) is not numerically "
                         f"positive definite")   # pragma: no cover (_factor raises)
    a = linalg.cho_solve(c, Y, check_finite=False)
    k = Y.shape[1]
    logdet = 2.0 * np.sum(np.log(np.diag(c[0])))
    return float(-0.5 * np.sum(Y * a) - 0.5 * k * logdet - 0.5 * n * k * math.log(2 * math.pi))


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
        b = bounds.get(p, _DEFAULT_BOUNDS)
        if not isinstance(b, (tuple, list)) or len(b) != 2:
            raise TypeError(f"bounds[{p!r}] must be a pair (low, high), got {b!r}")
        lo, hi = b
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
        Architecture and starting values of ``weight_var`` / ``bias_var``: scalars (for
        ResNet the branch variance shared by the blocks), or per-layer values (every entry is
        fitted; module docstring: the entries need not be identified).
    x : (n, d) array
    y : (n,) or (n, k) array
    noise_var : float
        Starting (or fixed) noise variance.
    params : sequence of {"weight_var", "bias_var", "noise_var"}
        The parameters to fit; each (every entry of a per-layer one) must start > 0 (log
        space).
    bounds : dict, optional
        ``{name: (low, high)}`` in natural units, 0 < low < high, applied to every entry of
        that parameter; default ``(1e-6, 1e6)``.
    kind : {"nngp", "ntk"}
    maxiter, ftol, gtol
        L-BFGS-B options (``ftol`` relative on the objective -log p / (n k)).

    Returns
    -------
    GPFit
        ``.net``, ``.noise_var``, ``.log_marginal_likelihood``, ``.result`` (``result.x``:
        the logarithms of the fitted entries, parameter by parameter in the order of
        ``params``, a per-layer parameter's entries in layer order).

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
    try:
        params = tuple(params)
    except TypeError:
        raise TypeError(f"params must be a name or a sequence of names from {_PARAMS}, got "
                        f"{params!r}") from None
    if not params or any(p not in _PARAMS for p in params) or len(set(params)) != len(params):
        raise ValueError(f"params must be distinct names from {_PARAMS}, got {params!r}")
    start = {name: _values(net, name) for name in ("weight_var", "bias_var")}
    start["noise_var"] = noise_var
    for p in params:
        vals = np.atleast_1d(np.asarray(start[p], dtype=object))
        for k, val in enumerate(vals):
            where = p if np.ndim(start[p]) == 0 else f"{p}[{k}]"
            if val is None:
                raise ValueError(f"{where} is None (no bias parameter): it cannot be fitted; "
                                 f"leave {p} out of params or give a positive starting value")
            if not val > 0:
                raise ValueError(f"{where} starts at {val!r}: fitting works on log({p}), so "
                                 f"give a positive starting value (or leave {p} out of params)")
    sizes = [int(np.size(start[p])) for p in params]
    bnds = [b for b, m in zip(_bounds(bounds, params), sizes) for _ in range(m)]
    maxiter = _checks.int_in_range(maxiter, "maxiter", 1)
    ftol = _checks.positive_float(ftol, "ftol")
    gtol = _checks.positive_float(gtol, "gtol")
    n, k = Y.shape
    scale = 1.0 / (n * k)
    offsets = np.cumsum([0] + sizes)

    def values(theta):
        v = dict(start)
        for p, a, b in zip(params, offsets[:-1], offsets[1:]):
            e = np.exp(theta[a:b])
            v[p] = float(e[0]) if np.ndim(start[p]) == 0 else tuple(float(z) for z in e)
        return v

    def objective(theta):
        v = values(theta)
        m = _with_values(net, v)
        need_grads = any(p != "noise_var" for p in params)
        if need_grads:
            g = m.kernel_grads(x)
            dK = {p: getattr(g, kind)[p] for p in params if p != "noise_var"}
            value, grad = _lml(getattr(g.kernels, kind), Y, v["noise_var"], dK)
        else:
            K = m.nngp(x) if kind == "nngp" else m.ntk(x)
            value, grad = _lml(K, Y, v["noise_var"], {})
        # d/d log p = p d/dp, entry by entry
        jac = np.concatenate([np.atleast_1d(-np.asarray(grad[p]) * np.asarray(v[p]) * scale)
                              for p in params])
        return -value * scale, jac

    theta0 = np.concatenate([np.log(np.atleast_1d(np.asarray(start[p], dtype=float)))
                             for p in params])
    theta0 = np.clip(theta0, [b[0] for b in bnds], [b[1] for b in bnds])
    res = optimize.minimize(objective, theta0, jac=True, method="L-BFGS-B", bounds=bnds,
                            options=dict(maxiter=maxiter, ftol=ftol, gtol=gtol))
    v = values(res.x)
    fitted = _with_values(net, v)
    lml = log_marginal_likelihood(fitted, x, Y, v["noise_var"], kind=kind)
    return GPFit(fitted, v["noise_var"], lml, res, params, kind)


def _values(net, name):
    """The variance ``name`` of ``net``: a float (or None), or a tuple with one value per Dense
    layer in the order of ``net.kernel_grads`` (ResNet: input, blocks, readout)."""
    val = getattr(net, name)
    if np.ndim(val) == 0 or val is None:
        return val
    if isinstance(net, ResNet):
        return (getattr(net, f"input_{name}"),) + tuple(val) + (getattr(net, f"readout_{name}"),)
    return tuple(val)


def _with_values(net, v):
    """``net`` with ``weight_var`` / ``bias_var`` from ``v`` (layout of ``_values``)."""
    changes = {}
    for name in ("weight_var", "bias_var"):
        val = v[name]
        if isinstance(net, ResNet) and isinstance(val, tuple):
            changes[name] = val[1:-1]
            changes[f"input_{name}"] = val[0]
            changes[f"readout_{name}"] = val[-1]
        else:
            changes[name] = val
    return dataclasses.replace(net, **changes)
