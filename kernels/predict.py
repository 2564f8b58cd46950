r"""Inference with the infinite-width kernels: NNGP posterior and gradient-flow predictions of an
infinite ensemble of infinitely wide networks, at any training time, with uncertainty.

Infinite time (theory/kernels.md §5, after neural-tangents ``predict.gp_inference``; Lee et al.
2019, "Wide neural networks of any depth evolve as linear models under gradient descent",
arXiv 1902.06720, §2.3-§2.4)::

    NNGP (Bayesian posterior / readout-only training):
        mean = K_*X (K_XX + r I)^-1 y
        cov  = K_** - K_*X (K_XX + r I)^-1 K_X*
    NTK (full-batch gradient flow of every layer):
        mean = Th_*X Th_XX^-1 y                 (Th_XX + r I in place of Th_XX throughout)
        cov  = K_** + Th_*X Th^-1 K_XX Th^-1 Th_X* - (Th_*X Th^-1 K_X* + transpose)

Finite time (derivation; the formulas of neural-tangents
``predict.gradient_descent_mse_ensemble``, in this library's time unit).  Gradient flow with
learning rate eta on the loss ``L = 1/2 sum_i (f(x_i) - y_i)^2`` of an infinitely wide network
is the flow of its linearisation, with a constant kernel H: H = Th (the NTK) when every layer
is trained (``kind="ntk"``), H = K (the NNGP, which is the readout layer's own tangent kernel)
when only the readout is trained (``kind="nngp"``)::

    d f_t(X)/dt = -eta H_XX (f_t(X) - y),       d f_t(*)/dt = -eta H_*X (f_t(X) - y)
    =>  f_t(X) - y = e^{-eta H_XX t} (f_0(X) - y)
        f_t(*)     = f_0(*) + A_t (y - f_0(X)),   A_t = H_*X H_XX^-1 (I - e^{-eta H_XX t}).

The initial function f_0 is the NNGP prior, f_0 ~ GP(0, K).  Averaging over it (the infinite
ensemble), f_t(*) is Gaussian with::

    mean_t = A_t y
    cov_t  = K_** - A_t K_X* - K_*X A_t^T + A_t K_XX A_t^T.

With the eigendecomposition H_XX = V diag(w) V^T and phi_t(w) = (1 - e^{-eta w t}) / w
(= eta t at w = 0; computed with ``expm1``), A_t = H_*X V diag(phi_t(w)) V^T: one
decomposition serves every time.

- ``kind="ntk"``: cov_t = K_** + A_t K_XX A_t^T - (A_t K_X* + transpose), with K_XX, K_X* the
  NNGP blocks.
- ``kind="nngp"`` (H = K): A_t K_XX A_t^T = K_*X K^-1 (I - E)^2 K_X* with E = e^{-eta K t}
  (functions of K commute), so cov_t = K_** - K_*X K^-1 (2(I - E) - (I - E)^2) K_X*
  = K_** - K_*X V diag(phi_{2t}(w)) V^T K_X*.

At t = 0, A_0 = 0: mean 0 and cov K_** (the prior).  As t -> inf, phi_t(w) -> 1/w and both
kinds tend to the infinite-time formulas above; the NNGP covariance decreases monotonically
in t (phi_{2t} increases).  A ridge ``diag_reg = r`` is added to H_XX wherever it occurs (for
``kind="nngp"`` the training-set prior covariance is then K_XX + r I: the t = inf limit is the
posterior with observation-noise variance r), exactly as neural-tangents does with
``diag_reg_absolute_scale=True``.

Time unit.  This library's t multiplies ``eta H`` for the summed loss above.  neural-tangents'
``predict_fn(t)`` uses ``exp(-learning_rate * H * t / y_train.size)`` (its loss is the mean
over all n k training targets), so **its t equals ours times the number of training targets
n k** (n points times k output columns).  Checked in tests/kernels/test_predict_nt.py against
neural-tangents 0.6.5: with t_NT = n k t_ours both means and covariances agree to 1e-9 for
k = 1 and k = 2; with t_NT = n t_ours (points only) they do not when k = 2.

Positive definiteness.  Infinite time needs a numerically positive-definite train kernel
(Cholesky succeeds and its smallest pivot squared exceeds n eps times the largest diagonal
entry); finite times need it positive semi-definite up to rounding (eigenvalues >= -n eps
|w|_max; the ones in [-n eps |w|_max, 0) are set to 0, where phi_t = eta t).  Otherwise a
ValueError gives the smallest eigenvalue and the condition number; with ``jitter`` the ridge
is raised step by step (x10) until the condition holds and the jitter used is returned.
"""
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import linalg

from . import _checks
from .architectures import MLP, ResNet

__all__ = ["predict", "predict_from_kernels", "Prediction"]

_EPS = np.finfo(np.float64).eps
_JITTER_STEPS = 10                   # jitter j0, 10 j0, ..., 10^9 j0 before giving up
_AUTO_JITTER = 1e-10                 # "auto": j0 = 1e-10 * mean diagonal of the train kernel


@dataclass(frozen=True)
class Prediction:
    """Predictive mean and covariance of the test outputs.

    Attributes
    ----------
    mean : array
        ``(m,)`` or ``(m, k)`` for a scalar (or None) time; ``t.shape + (m,)`` or
        ``t.shape + (m, k)`` for an array of times.
    cov : array or None
        ``(m, m)`` (shared by the k output columns) or ``t.shape + (m, m)``; None when not
        computed.
    jitter : float
        Ridge added on top of ``diag_reg`` to make the train kernel numerically positive
        definite (0.0 unless ``jitter`` was requested and needed).
    """

    mean: np.ndarray
    cov: Optional[np.ndarray]
    jitter: float = 0.0


def _targets(y, n):
    arr = _checks.finite_array(y, "y_train")
    if arr.ndim not in (1, 2) or arr.shape[0] != n:
        raise ValueError(f"y_train must have shape ({n},) or ({n}, k) to match the training "
                         f"inputs, got {arr.shape}")
    return arr


def _times(t):
    """(scalar?, flat float array of times >= 0, inf allowed, shape)."""
    if t is None:
        return True, np.array([np.inf]), ()
    if isinstance(t, (list, tuple)):
        t = [np.inf if s is None else s for s in t]
    raw = np.asarray(t)
    if raw.dtype.kind not in "iuf":
        raise TypeError(f"t must be a real number >= 0, an array of them, or None (= infinity), "
                        f"got {t!r}")
    arr = raw.astype(np.float64)
    if arr.size == 0:
        raise ValueError("t is an empty array")
    if np.any(np.isnan(arr)):
        raise ValueError(f"t contains NaN: {t!r}")
    if np.any(arr < 0):
        raise ValueError(f"t must be >= 0 (a training time), got {arr[arr < 0].ravel()[0]!r}")
    return arr.ndim == 0, arr.ravel(), arr.shape


def _jitter(jitter):
    if jitter is None or (isinstance(jitter, str) and jitter == "auto"):
        return jitter
    if isinstance(jitter, str):
        raise ValueError(f"jitter must be None, 'auto' or a float > 0, got {jitter!r}")
    return _checks.positive_float(jitter, "jitter")


def _block(k, name, what):
    """The ``what`` ("nngp" or "ntk") block of ``k``: an object with that attribute (e.g.
    ``kernels.Kernels``), a mapping with that key, or an array (then it must be that kernel)."""
    if isinstance(k, Mapping):
        if what not in k or k[what] is None:
            raise ValueError(f"{name} has no {what!r} entry (keys: {sorted(k)})")
        return k[what]
    if hasattr(k, "nngp") or hasattr(k, "ntk"):
        v = getattr(k, what, None)
        if v is None:
            raise ValueError(f"{name}.{what} is missing (None)")
        return v
    return k


def _array(a, name, shape):
    arr = _checks.finite_array(a, name)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    return arr


def _symmetric(a, name):
    scale = max(float(np.max(np.abs(np.diag(a)))), 1e-300)
    if not np.allclose(a, a.T, rtol=0, atol=1e-10 * scale):
        raise ValueError(f"{name} must be symmetric (max |K - K.T| = "
                         f"{float(np.max(np.abs(a - a.T))):.3g})")
    return a


def _not_pd(M, name, reg, advice=True):
    w = linalg.eigvalsh(M, check_finite=False)
    cond = w[-1] / w[0] if w[0] > 0 else np.inf
    msg = (f"{name}{' + diag_reg I' if reg else ''} is not numerically positive definite: "
           f"smallest eigenvalue {w[0]:.3g}, largest {w[-1]:.3g}, condition number {cond:.3g}")
    if advice:
        msg += (" (duplicate or nearly parallel training inputs?): pass diag_reg > 0, or "
                "jitter='auto' to add the smallest sufficient ridge")
    return msg


def _cho(M):
    """Cholesky factor of M, or None if M is not numerically positive definite."""
    try:
        c = linalg.cho_factor(M, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return None
    piv = np.diag(c[0])
    if not np.min(piv) ** 2 > M.shape[0] * _EPS * np.max(np.diag(M)):
        return None
    return c


def _eig(M):
    """(w, V) of M with rounding-level negative eigenvalues set to 0, or None if M has an
    eigenvalue below -n eps max|w|."""
    w, V = linalg.eigh(M, check_finite=False)
    tau = M.shape[0] * _EPS * max(abs(w[0]), abs(w[-1]))
    if w[0] < -tau:
        return None
    return np.maximum(w, 0.0), V


def _phi(w, eta_t):
    """(1 - exp(-eta t w)) / w elementwise, eta t at w = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -np.expm1(-eta_t * w) / w
    return np.where(w > 0, out, eta_t)


def predict_from_kernels(k_train_train, k_test_train, y_train, k_test_test=None, *,
                         kind="nngp", t=None, diag_reg=0.0, learning_rate=1.0, jitter=None,
                         solver="direct", tol=1e-10):
    r"""Predictions from precomputed kernel blocks (neural-tangents issue #172).

    Formulas and their derivation: module docstring (``kernels.predict``).  The predictive
    covariance is computed when ``k_test_test`` is given.

    Parameters
    ----------
    k_train_train : (n, n) array, mapping or object
        Train-train kernel(s).  Either a dict ``{"nngp": K_XX, "ntk": Th_XX}``, an object with
        ``.nngp`` / ``.ntk`` attributes (``kernels.Kernels``, neural-tangents' ``Kernel``), or a
        plain array holding the kernel of ``kind``.  ``kind="ntk"`` with a covariance needs both
        the NTK and the NNGP blocks.
    k_test_train : (m, n) array, mapping or object
        Test-train kernel(s), same conventions.
    y_train : (n,) or (n, k) array
    k_test_test : (m, m) array, mapping or object, optional
        The test-test NNGP (the prior covariance; a plain array is taken as the NNGP).
        None: mean only.
    kind : {"nngp", "ntk"}
        ``"ntk"``: infinite ensemble trained by gradient flow of all layers; ``"nngp"``: of the
        readout only (the Bayesian posterior at t = inf).
    t : None, float >= 0 or array of them
        Training time(s) in the unit of ``exp(-learning_rate * H * t)`` for the loss
        ``1/2 sum (f - y)^2``.  None or inf: infinite time.  neural-tangents' t is ours times
        ``y_train.size`` (n k).  An array (``None`` entries allowed in a list) stacks the
        results along leading axes of shape ``t.shape``.
    diag_reg : float >= 0
        Ridge r added to the train-train NTK (``"ntk"``) or NNGP (``"nngp"``).
    learning_rate : float > 0
        eta.
    jitter : None, "auto" or float > 0
        What to do when the train kernel (+ r I) is not numerically positive definite (module
        docstring): None raises ValueError with its smallest eigenvalue and condition number;
        a float j0 (absolute) or ``"auto"`` (j0 = 1e-10 times the mean diagonal) adds
        j0, 10 j0, ..., 10^9 j0 to the diagonal until it is, and reports the amount in
        ``Prediction.jitter``.
    solver : {"direct", "cg"}
        ``"direct"``: Cholesky / eigendecomposition in memory; memory maps are read and dask
        arrays computed into memory, and the call is refused up front
        (``kernels._checks.MemoryBudgetError``, a ValueError and MemoryError) when the blocks
        and about six (n, n) float64 work arrays do not fit in the memory available.
        ``"cg"``: the infinite-time mean by preconditioned conjugate gradients
        (``kernels.kernel_regression``: relative residual <= ``tol``, the kernels read tile by
        tile, never loaded whole), for kernels past memory: ``numpy.memmap`` / ``.npy`` memory
        maps (``net.kernels(x, out=...)``) or dask arrays (``kernels.dask_kernels``).  Needs
        ``t=None``, ``k_test_test=None`` and ``jitter=None`` (use ``diag_reg > 0``).
    tol : float > 0
        CG tolerance.

    Returns
    -------
    Prediction

    Examples
    --------
    >>> import numpy as np, kernels as kn
    >>> x = np.random.default_rng(0).standard_normal((6, 3)); y = np.sin(x[:, 0])
    >>> k = kn.MLP(depth=2, activation=kn.ReLU()).kernels(x)
    >>> p = kn.predict_from_kernels({"nngp": k.nngp[:4, :4], "ntk": k.ntk[:4, :4]},
    ...                             {"nngp": k.nngp[4:, :4], "ntk": k.ntk[4:, :4]}, y[:4],
    ...                             k.nngp[4:, 4:], kind="ntk", t=[0.0, 1.0, None])
    >>> p.mean.shape, p.cov.shape
    ((3, 2), (3, 2, 2))
    """
    if kind not in ("nngp", "ntk"):
        raise ValueError(f"kind must be 'nngp' or 'ntk', got {kind!r}")
    scalar, times, tshape = _times(t)
    r = _checks.nonneg_float(diag_reg, "diag_reg")
    eta = _checks.positive_float(learning_rate, "learning_rate")
    jitter = _jitter(jitter)
    cov_wanted = k_test_test is not None
    if solver not in ("direct", "cg"):
        raise ValueError(f"solver must be 'direct' or 'cg', got {solver!r}")
    tol = _checks.positive_float(tol, "tol")
    name = "Theta_train_train" if kind == "ntk" else "K_train_train"
    Hxx = _block(k_train_train, "k_train_train", kind)
    Hsx = _block(k_test_train, "k_test_train", kind)
    if np.ndim(Hxx) != 2 or np.shape(Hxx)[0] != np.shape(Hxx)[1] or np.shape(Hxx)[0] < 1:
        raise ValueError(f"k_train_train must be a square (n, n) matrix, got shape "
                         f"{np.shape(Hxx)}")
    n = np.shape(Hxx)[0]
    if np.ndim(Hsx) != 2 or np.shape(Hsx)[0] < 1:
        raise ValueError(f"k_test_train must be an (m, {n}) matrix, got shape {np.shape(Hsx)}")
    m = np.shape(Hsx)[0]
    if solver == "cg":
        return _cg_mean(Hxx, Hsx, y_train, n, m, scalar, times, cov_wanted, jitter, r, tol)
    _direct_memory(n, m, cov_wanted, [Hxx, Hsx] + ([] if not cov_wanted else [
        _peek(k_test_test, "nngp"), _peek(k_train_train, "nngp"), _peek(k_test_train, "nngp")]))
    Hxx = _symmetric(_array(Hxx, "k_train_train", (n, n)), "k_train_train")
    Hsx = _array(Hsx, "k_test_train", (m, n))
    y = _targets(y_train, n)
    if cov_wanted:
        if kind == "ntk":
            for k, nm in ((k_train_train, "k_train_train"), (k_test_train, "k_test_train")):
                if not (isinstance(k, Mapping) or hasattr(k, "nngp")):
                    raise TypeError(f"kind='ntk' with a covariance needs both the NNGP and the "
                                    f"NTK blocks: pass {nm} as a dict {{'nngp': ..., 'ntk': "
                                    f"...}} or an object with .nngp and .ntk")
            Kxx = _array(_block(k_train_train, "k_train_train", "nngp"),
                         "k_train_train['nngp']", (n, n))
            Ksx = _array(_block(k_test_train, "k_test_train", "nngp"),
                         "k_test_train['nngp']", (m, n))
        else:
            Kxx, Ksx = Hxx, Hsx
        Kss = _symmetric(_array(_block(k_test_test, "k_test_test", "nngp"), "k_test_test",
                                (m, m)), "k_test_test")
    inf = np.isinf(times)
    Hr, j = _regularised(Hxx, r, jitter, name, need_chol=bool(inf.any()),
                         need_eig=bool((~inf).any()))
    M, chol, eig = Hr
    mshape = y.shape[1:]
    means = np.empty((len(times), m) + mshape)
    covs = np.empty((len(times), m, m)) if cov_wanted else None
    if inf.any():
        mean = Hsx @ linalg.cho_solve(chol, y)
        cov = None
        if cov_wanted and kind == "nngp":
            cov = Kss - Hsx @ linalg.cho_solve(chol, Hsx.T)
        elif cov_wanted:
            A = linalg.cho_solve(chol, Hsx.T)                   # Th^-1 Th_X*   (n, m)
            cross = A.T @ Ksx.T                                 # Th_*X Th^-1 K_X*
            cov = Kss + A.T @ Kxx @ A - (cross + cross.T)
        means[inf] = mean
        if cov_wanted:
            covs[inf] = 0.5 * (cov + cov.T)
    if (~inf).any():
        w, V = eig
        proj = V.T @ y.reshape(n, -1)
        G = Hsx @ V if cov_wanted else None                     # H_*X V   (m, n)
        for i in np.flatnonzero(~inf):
            ti = times[i]
            decay = _phi(w, eta * ti)                           # (1 - e^{-eta w t}) / w
            coef = V @ (decay[:, None] * proj)
            means[i] = (Hsx @ coef).reshape((-1,) + mshape)
            if not cov_wanted:
                continue
            if kind == "nngp":
                cov = Kss - (G * _phi(w, 2.0 * eta * ti)) @ G.T
            else:
                A = (G * decay) @ V.T                           # A_t   (m, n)
                cross = A @ Ksx.T
                cov = Kss + A @ Kxx @ A.T - (cross + cross.T)
            covs[i] = 0.5 * (cov + cov.T)
    if scalar:
        return Prediction(means[0], None if covs is None else covs[0], j)
    return Prediction(means.reshape(tshape + means.shape[1:]),
                      None if covs is None else covs.reshape(tshape + (m, m)), j)


def _peek(k, what):
    """The ``what`` block of ``k`` if it has one (no error: ``_block`` reports later)."""
    if isinstance(k, Mapping):
        return k.get(what)
    return getattr(k, what, None) if hasattr(k, "nngp") or hasattr(k, "ntk") else k


def _is_lazy(a):
    """A dask array (computed into memory by the direct solver)."""
    return type(a).__module__.startswith("dask.")


def _direct_memory(n, m, cov_wanted, blocks):
    """Refuse up front a direct solve that cannot fit: dask blocks computed into memory, and
    about six (n, n) float64 work arrays (symmetry check, K + r I, its Cholesky factor or
    eigenvectors, temporaries), plus the (m, n) and (m, m) covariance work."""
    parts = [(8.0 * float(np.prod(b.shape)), "dask blocks computed into memory")
             for b in blocks if b is not None and _is_lazy(b)]
    parts.append((48.0 * n * n, f"about six {n} x {n} work arrays (K + r I, its factor, "
                                f"temporaries)"))
    if cov_wanted:
        parts.append((8.0 * (4 * n * m + 3 * m * m), "the covariance work"))
    _checks.memory_guard(parts, f"the direct solve with {n} training points",
                         "use solver='cg' (infinite-time means, kernels read tile by tile from "
                         "memory maps or dask arrays)")


def _cg_mean(Hxx, Hsx, y_train, n, m, scalar, times, cov_wanted, jitter, r, tol):
    """Infinite-time mean by CG over stored kernels (``kernels._cg``)."""
    from . import _cg
    if not (scalar and np.isinf(times[0])) or cov_wanted:
        raise ValueError("solver='cg' gives infinite-time means only: pass t=None and "
                         "k_test_test=None")
    if jitter is not None:
        raise ValueError("jitter applies to solver='direct'; with solver='cg' pass diag_reg > 0 "
                         "for a train kernel that is not positive definite")
    Hxx, Hsx = (a if isinstance(a, np.ndarray) or _is_lazy(a) else _checks.finite_array(a, nm)
                for a, nm in ((Hxx, "k_train_train"), (Hsx, "k_test_train")))
    y = _targets(y_train, n)
    reg = _cg.kernel_regression(Hxx, y, Hsx, diag_reg=r, tol=tol)
    return Prediction(reg.mean, None)


def _regularised(H, r, jitter, name, need_chol, need_eig):
    """((M, chol, eig), jitter used) with M = H + (r + jitter) I numerically positive definite
    (need_chol) / semi-definite (need_eig); see the module docstring."""
    n = H.shape[0]
    base = H + r * np.eye(n)
    if jitter is None:
        steps = [0.0]
    else:
        j0 = (_AUTO_JITTER * float(np.mean(np.diag(base))) if jitter == "auto" else jitter)
        if not j0 > 0:
            raise ValueError(f"jitter='auto' needs a train kernel with a positive diagonal, "
                             f"got mean diagonal {float(np.mean(np.diag(base))):.3g}")
        steps = [0.0] + [j0 * 10.0 ** i for i in range(_JITTER_STEPS)]
    for jit in steps:
        M = base if jit == 0.0 else base + jit * np.eye(n)
        chol = _cho(M) if need_chol else None
        if need_chol and chol is None:
            continue
        eig = _eig(M) if need_eig else None
        if need_eig and eig is None:
            continue
        return (M, chol, eig), jit
    if jitter is None:
        raise ValueError(_not_pd(base, name, r > 0))
    raise ValueError(_not_pd(base, name, r > 0, advice=False) + f"; still not after a jitter "
                     f"of {steps[-1]:.3g} (jitter={jitter!r}): the kernel is far from positive "
                     "definite")


def predict(net, x_train, y_train, x_test, kind="nngp", diag_reg=0.0, t=None,
            learning_rate=1.0, compute_cov=True, solver="direct", tol=1e-10, jitter=None,
            kernel_dir=None):
    """Predictions of an infinitely wide network on ``x_test`` after seeing ``(x_train, y_train)``.

    Parameters
    ----------
    net : kernels.MLP or kernels.ResNet
        The architecture (its NNGP and NTK are computed on train and test inputs in one pass).
    x_train : (n, d) array
    y_train : (n,) or (n, k) array
    x_test : (m, d) array
    kind : {"nngp", "ntk"}
        ``"nngp"``: Gaussian-process posterior (Bayesian inference), or at finite t the infinite
        ensemble with only the readout layer trained by gradient flow.  ``"ntk"``: the ensemble
        of networks with all layers trained by full-batch gradient flow on the loss
        ``1/2 sum (f - y)^2`` (module docstring; theory/kernels.md §5).
    diag_reg : float >= 0
        Ridge ``r`` added to the train-train kernel(s).
    t : None, float >= 0 or array of them
        Training time(s) (None or inf = infinity), in the unit of ``exp(-eta H t)``;
        neural-tangents' ``predict_fn(t)`` is ours at ``t / y_train.size``.  A scalar gives
        mean ``(m,)`` / ``(m, k)`` and cov ``(m, m)``; an array stacks them along leading axes
        ``t.shape``.
    learning_rate : float > 0
        ``eta`` in ``exp(-eta H t)``.
    compute_cov : bool
        Also return the predictive covariance of the test outputs.
    solver : {"direct", "cg"}
        ``"cg"``: the mean by preconditioned conjugate gradients
        (``kernels.kernel_regression``, relative residual <= ``tol``); infinite time and
        ``compute_cov=False`` only.  The train-train and test-train kernels are computed
        tile by tile (``net.kernels(..., out=...)``: the same numbers as the blocks of the
        joint kernel) into memory, or into a temporary ``.npy`` memory map in ``kernel_dir``;
        no test-test kernel.  ``"direct"`` computes the joint (n + m) kernel in memory and is
        refused up front (``kernels._checks.MemoryBudgetError``) when it and the solve do not
        fit.  For kernels computed beforehand (memory maps, dask arrays) use
        :func:`predict_from_kernels` or ``kernel_regression``.
    tol : float > 0
        CG tolerance.
    jitter : None, "auto" or float > 0
        See :func:`predict_from_kernels`: by default a train kernel that is not numerically
        positive definite is an error giving its smallest eigenvalue and condition number.
    kernel_dir : str or path, optional
        With ``solver="cg"``: a directory for the (n, n) train kernel as a temporary ``.npy``
        memory map (deleted on return), for n past memory.  Default: in memory (refused up
        front when it does not fit).

    Returns
    -------
    Prediction
        ``.mean``, ``.cov`` (None if not computed), ``.jitter``.

    Examples
    --------
    >>> import numpy as np, kernels as kn
    >>> x = np.random.default_rng(0).standard_normal((6, 3)); y = np.sin(x[:, 0])
    >>> p = kn.predict(kn.MLP(depth=3, activation=kn.ReLU()), x[:4], y[:4], x[4:], kind="ntk")
    >>> p.mean.shape, p.cov.shape
    ((2,), (2, 2))
    >>> p = kn.predict(kn.MLP(depth=3, activation=kn.ReLU()), x[:4], y[:4], x[4:], kind="ntk",
    ...                t=np.geomspace(0.01, 100, 5))
    >>> p.mean.shape, p.cov.shape
    ((5, 2), (5, 2, 2))
    """
    if not isinstance(net, (MLP, ResNet)):
        raise TypeError(f"net must be a kernels MLP or ResNet, got {type(net).__name__}")
    if kind not in ("nngp", "ntk"):
        raise ValueError(f"kind must be 'nngp' or 'ntk', got {kind!r}")
    x_train = _checks.inputs(x_train, "x_train")
    x_test = _checks.inputs(x_test, "x_test", d=x_train.shape[1])
    y = _targets(y_train, x_train.shape[0])
    r = _checks.nonneg_float(diag_reg, "diag_reg")
    _checks.positive_float(learning_rate, "learning_rate")
    compute_cov = _checks.flag(compute_cov, "compute_cov")
    scalar, times, _ = _times(t)
    _jitter(jitter)
    if solver not in ("direct", "cg"):
        raise ValueError(f"solver must be 'direct' or 'cg', got {solver!r}")
    if kernel_dir is not None and solver != "cg":
        raise ValueError("kernel_dir applies to solver='cg' (the direct solver holds the "
                         "kernels in memory)")
    if solver == "cg":
        tol = _checks.positive_float(tol, "tol")
        if not (scalar and np.isinf(times[0])) or compute_cov is not False:
            raise ValueError("solver='cg' gives infinite-time means only: pass t=None and "
                             "compute_cov=False")
        if jitter is not None:
            raise ValueError("jitter applies to solver='direct'; with solver='cg' pass "
                             "diag_reg > 0 for a train kernel that is not positive definite")
        return _predict_cg(net, x_train, y, x_test, kind, r, tol, kernel_dir)
    n = x_train.shape[0]
    N = n + x_test.shape[0]
    _checks.memory_guard([(8.0 * N * N * (1 if kind == "nngp" else 2),
                           f"the {N} x {N} kernel{'s' if kind == 'ntk' else ''} of train and "
                           f"test inputs"), (48.0 * n * n, "the solve's work arrays")],
                         "predict(solver='direct')", "use solver='cg' with compute_cov=False "
                         "(and kernel_dir= past memory)")
    xs = np.concatenate([x_train, x_test])
    if kind == "nngp":                  # the NNGP posterior needs no NTK
        K, Th = net.nngp(xs), None
    else:
        k = net.kernels(xs)
        K, Th = k.nngp, k.ntk
    blocks = {"nngp": K} if Th is None else {"nngp": K, "ntk": Th}
    return predict_from_kernels({g: v[:n, :n] for g, v in blocks.items()},
                                {g: v[n:, :n] for g, v in blocks.items()}, y,
                                K[n:, n:] if compute_cov else None, kind=kind, t=t,
                                diag_reg=r, learning_rate=learning_rate, jitter=jitter)


def _predict_cg(net, x_train, y, x_test, kind, r, tol, kernel_dir):
    """``predict(solver="cg")``: the train-train and test-train blocks of the joint kernel, tile
    by tile (``kernels._blockwise``), into memory or a temporary memory map, then CG."""
    import os
    import shutil
    import tempfile
    from . import _blockwise, _cg
    n, m = x_train.shape[0], x_test.shape[0]
    xs = np.concatenate([x_train, x_test])
    parts = [(8.0 * m * n, f"the {m} x {n} test-train kernel")]
    if kernel_dir is None:
        parts.append((8.0 * n * n, f"the {n} x {n} train kernel"))
    else:
        kernel_dir = os.fspath(kernel_dir)
        if not os.path.isdir(kernel_dir):
            raise ValueError(f"kernel_dir must be an existing directory, got {kernel_dir!r}")
    _checks.memory_guard(parts, "predict(solver='cg')",
                         "pass kernel_dir= (a directory for the train kernel as a .npy memory "
                         "map)" if kernel_dir is None else "use fewer test points")
    stack = net._engine_stack(xs, None, kind == "ntk")
    prob = _blockwise.Problem(stack, xs, None, None, ntk=kind == "ntk")
    tmp = None if kernel_dir is None else tempfile.mkdtemp(prefix="kernels-predict-",
                                                            dir=kernel_dir)
    try:
        Kxx = (np.empty((n, n)) if tmp is None else np.lib.format.open_memmap(
            os.path.join(tmp, "train.npy"), mode="w+", dtype=np.float64, shape=(n, n)))
        Ksx = np.empty((m, n))
        slot = 0 if kind == "nngp" else 1
        for out, region in ((Kxx, (0, n, 0, n)), (Ksx, (n, n + m, 0, n))):
            outs = [None, None]
            outs[slot] = out
            _blockwise.fill_region(prob, outs, region, _blockwise.DEFAULT_TILE)
        reg = _cg.kernel_regression(Kxx, y, Ksx, diag_reg=r, tol=tol)
        del Kxx
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return Prediction(reg.mean, None)
