"""Kernel regression at large N: preconditioned conjugate gradients over a stored kernel.

Solves ``(K + r I) a = y`` with ``K`` an (N, N) symmetric positive semi-definite kernel held in
memory, in a ``numpy.memmap`` / ``.npy`` memory map, or as a ``dask.array``.  An array or memory
map is read in (block, block) tiles on and above the diagonal (the lower ones are their
transposes), so each product reads half of it once and needs O(block^2) extra memory; a dask
array is multiplied by dask on the current scheduler's workers, and only the (N, k) product
returns.  A lazy dask kernel (``kernels.dask_kernels``) is recomputed at every product: persist
it (``K = dk.nngp.persist()``, when the cluster's memory holds it) or store it first
(``dask.array.to_npy_stack`` / ``dask.array.store`` into a ``.npy`` memory map) and pass the
memory map.  The predictive mean is then ``K_*X a``
(theory/kernels.md §5: the NNGP posterior mean, and the NTK's infinite-time gradient-flow mean).

Stopping rule (the stated tolerance): every column of the residual satisfies
``|y - (K + r I) a|_2 <= tol |y|_2``.  Then the coefficient error is at most
``|(K + r I)^-1|_2 tol |y|`` <= ``tol |y| / r`` (r > 0), and each predicted mean is within
``|k_*i|_2 tol |y| / r`` of the exact one.

Preconditioners: ``"jacobi"`` (the diagonal) or ``"block"`` (block Jacobi: Cholesky factors of
the diagonal blocks of ``K + r I``, ``block`` rows each; much better for kernel matrices, whose
off-diagonal entries are large).  Reference: Saad, *Iterative Methods for Sparse Linear Systems*
(2003), §9.2 (preconditioned CG), §10.1 (Jacobi and block Jacobi).
"""
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from . import _checks

__all__ = ["kernel_regression", "Regression"]


@dataclass(frozen=True)
class Regression:
    """Result of ``kernel_regression``.

    Attributes
    ----------
    mean : (M,) or (M, k) array or None
        Predictions ``K_*X a`` (None without ``k_test_train``).
    coef : (N,) or (N, k) array
        The solution ``a`` of ``(K + r I) a = y``.
    iterations : int
        CG iterations (0 for the direct solver).
    residual : float
        Max over columns of ``|y - (K + r I) a| / |y|`` (recomputed at the end).
    solver : str
    preconditioner : str or None
    """

    mean: object
    coef: np.ndarray
    iterations: int
    residual: float
    solver: str
    preconditioner: object


def _is_dask(a):
    return type(a).__module__.startswith("dask.")


def _tile(K, r0, r1, c0, c1):
    """K[r0:r1, c0:c1] as an in-memory float64 array (a memory map reads only that tile)."""
    blk = K[r0:r1, c0:c1]
    if _is_dask(blk):
        blk = blk.compute()
    return np.asarray(blk, dtype=np.float64)


def _rows(K, r0, r1):
    """Rows r0:r1 of K as an in-memory float64 array."""
    return _tile(K, r0, r1, 0, K.shape[1])


def _check_kernel(K, name, shape0=None, n=None):
    if not (isinstance(K, np.ndarray) or _is_dask(K)):
        raise TypeError(f"{name} must be a numpy array, memmap or dask array, got "
                        f"{type(K).__name__}")
    if len(K.shape) != 2:
        raise ValueError(f"{name} must be 2-d, got shape {K.shape}")
    if shape0 is None and K.shape[0] != K.shape[1]:
        raise ValueError(f"{name} must be square (N, N), got shape {K.shape}")
    if n is not None and K.shape[1] != n:
        raise ValueError(f"{name} must have {n} columns (the training points), got {K.shape}")
    if np.dtype(K.dtype).kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {K.dtype}")
    return K


def _not_finite(name):
    return ValueError(f"{name} contains NaN or inf (a kernel computation that overflowed, or an "
                      f"unfilled memory map?): the solve cannot be trusted")


def _matvec(K, v, r, block):
    """(K + r I) v.  A numpy array or memory map is read in (block, block) tiles on and above
    the diagonal only (K is taken to be symmetric: tile (J, I) is tile (I, J) transposed), so a
    memory map is read once per product, half of it; extra memory O(block^2).  A dask array is
    multiplied by dask (``K @ v`` on the workers of the current scheduler; only the (N, k)
    result comes back)."""
    if _is_dask(K):
        import dask.array as da
        vd = da.from_array(v, chunks=(K.chunks[1], v.shape[1]))
        out = np.asarray((K @ vd).compute(), dtype=np.float64)
        return out + r * v
    n = K.shape[0]
    out = r * v
    for r0 in range(0, n, block):
        r1 = min(r0 + block, n)
        for c0 in range(r0, n, block):
            c1 = min(c0 + block, n)
            t = _tile(K, r0, r1, c0, c1)
            out[r0:r1] += t @ v[c0:c1]
            if c0 != r0:
                out[c0:c1] += t.T @ v[r0:r1]
    return out


def _diagonal_blocks(K, edges):
    """The diagonal blocks K[r0:r1, r0:r1] (dask: computed in one call)."""
    if _is_dask(K):
        import dask
        blocks = dask.compute(*[K[r0:r1, r0:r1] for r0, r1 in edges])
        return [np.asarray(b, dtype=np.float64) for b in blocks]
    return [_tile(K, r0, r1, r0, r1) for r0, r1 in edges]


class _Precond:
    def __init__(self, K, r, kind, block):
        n = K.shape[0]
        self.kind, self.block, self.n = kind, block, n
        edges = [(r0, min(r0 + block, n)) for r0 in range(0, n, block)]
        blocks = _diagonal_blocks(K, edges)
        if not all(np.all(np.isfinite(b)) for b in blocks):
            raise _not_finite("k_train_train")
        if kind == "jacobi":
            d = np.concatenate([np.diagonal(b) for b in blocks]) + r
            if np.any(d <= 0):
                raise ValueError("the kernel has a non-positive diagonal entry: use diag_reg > 0")
            self.inv = 1.0 / d
        else:
            self.factors = []
            for (r0, r1), B in zip(edges, blocks):
                B = B + r * np.eye(r1 - r0)
                try:
                    self.factors.append(linalg.cho_factor(B, lower=True, check_finite=False))
                except linalg.LinAlgError as exc:
                    raise ValueError("a diagonal block of K + diag_reg I is not positive "
                                     "definite (duplicate inputs?): use diag_reg > 0") from exc

    def __call__(self, v):
        if self.kind == "jacobi":
            return self.inv[:, None] * v
        out = np.empty_like(v)
        for k, r0 in enumerate(range(0, self.n, self.block)):
            r1 = min(r0 + self.block, self.n)
            out[r0:r1] = linalg.cho_solve(self.factors[k], v[r0:r1], check_finite=False)
        return out


def cg(K, y, r, tol, maxiter, preconditioner, block):
    """Preconditioned CG on every column of y (N, k) at once; returns (a, iterations, residual)."""
    n, kcols = y.shape
    M = _Precond(K, r, preconditioner, block)
    ynorm = np.linalg.norm(y, axis=0)
    ynorm = np.where(ynorm > 0, ynorm, 1.0)
    a = np.zeros_like(y)
    res = y.copy()
    z = M(res)
    p = z.copy()
    rz = np.einsum("ij,ij->j", res, z)
    it = 0
    rel = np.linalg.norm(res, axis=0) / ynorm
    while np.max(rel) > tol and it < maxiter:
        Ap = _matvec(K, p, r, block)
        if not np.all(np.isfinite(Ap)):
            raise _not_finite("k_train_train")
        pAp = np.einsum("ij,ij->j", p, Ap)
        active = rel > tol
        alpha = np.where(active & (pAp > 0), rz / np.where(pAp > 0, pAp, 1.0), 0.0)
        a += alpha * p
        res -= alpha * Ap
        it += 1
        if it % 50 == 0:                        # recompute: no drift of the recursive residual
            res = y - _matvec(K, a, r, block)
        rel = np.linalg.norm(res, axis=0) / ynorm
        z = M(res)
        rz_new = np.einsum("ij,ij->j", res, z)
        beta = np.where(rz > 0, rz_new / np.where(rz > 0, rz, 1.0), 0.0)
        p = z + beta * p
        rz = rz_new
    # the reported residual is the true one
    rel = np.linalg.norm(y - _matvec(K, a, r, block), axis=0) / ynorm
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(rel))):
        raise _not_finite("k_train_train")
    return a, it, float(np.max(rel))


def direct_memory(n, what, hint):
    """Refuse up front a direct solve of an (n, n) system that cannot fit: the kernel loaded
    into memory, K + r I and its Cholesky factor (three n x n float64 arrays)."""
    _checks.memory_guard([(8.0 * n * n, f"the {n} x {n} kernel loaded into memory"),
                          (16.0 * n * n, "K + r I and its Cholesky factor")], what, hint)


def mean_of(k_test_train, a, block):
    """k_test_train @ a, row block by row block (dask: by dask)."""
    m = k_test_train.shape[0]
    if _is_dask(k_test_train):
        import dask.array as da
        ad = da.from_array(a, chunks=(k_test_train.chunks[1], a.shape[1]))
        mean = np.asarray((k_test_train @ ad).compute(), dtype=np.float64)
    else:
        mean = np.empty((m, a.shape[1]))
        for r0 in range(0, m, block):
            r1 = min(r0 + block, m)
            mean[r0:r1] = _rows(k_test_train, r0, r1) @ a
    if not np.all(np.isfinite(mean)):
        raise _not_finite("k_test_train")
    return mean


def kernel_regression(k_train_train, y_train, k_test_train=None, *, diag_reg=0.0,
                      solver="cg", tol=1e-10, maxiter=None, preconditioner="block", block=1024):
    """Kernel regression ``mean = K_*X (K_XX + r I)^-1 y`` on stored kernels, for large N.

    The NNGP posterior mean (``K`` = NNGP) and the infinite-time mean of gradient-flow training
    (``K`` = NTK) of ``kernels.predict`` (theory/kernels.md §5), from kernels computed
    beforehand: in memory, into memory maps (``net.kernels(x, out=...)``) or as dask arrays
    (``kernels.dask_kernels``).  The kernels are read tile by tile.

    Parameters
    ----------
    k_train_train : (N, N) array, numpy.memmap or dask array
    y_train : (N,) or (N, k) array
    k_test_train : (M, N) array, memmap or dask array, optional
        Test-train kernel; without it only ``coef`` is returned.
    diag_reg : float >= 0
        Ridge ``r``.
    solver : {"cg", "direct"}
        ``"cg"``: preconditioned conjugate gradients, stopped when every residual column has
        ``|y - (K + r I) a| <= tol |y|`` (then each mean is within ``|k_*i| tol |y| / r`` of the
        exact one); the kernel is read tile by tile (module docstring: a lazy dask kernel is
        recomputed at every product).  ``"direct"``: Cholesky (loads K into memory).
    tol : float > 0
    maxiter : int, optional
        Default ``10 N``; a ``RuntimeError`` if CG has not converged by then.
    preconditioner : {"block", "jacobi"}
        Block Jacobi (Cholesky of the ``block``-row diagonal blocks) or the diagonal.
    block : int >= 1
        Rows read at once (and the preconditioner's block size).

    Returns
    -------
    Regression
        ``.mean``, ``.coef``, ``.iterations``, ``.residual``.

    Not supported: predictive covariances and finite training times (use ``kernels.predict``,
    which holds the kernels in memory).  ``"direct"`` refuses up front
    (``kernels._checks.MemoryBudgetError``) when the kernel, ``K + r I`` and its factor do not
    fit in the memory available; a kernel with NaN or inf is a ValueError, never a NaN result.
    """
    K = _check_kernel(k_train_train, "k_train_train")
    n = K.shape[0]
    try:
        y = np.asarray(y_train, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"y_train must be an array of real numbers: {exc}") from exc
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise ValueError(f"y_train must have shape ({n},) or ({n}, k), got {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y_train contains NaN or inf")
    if n == 0 or y.size == 0:
        raise ValueError(f"kernel_regression needs at least one training point and one output "
                         f"column, got k_train_train {K.shape} and y_train {y.shape}")
    if k_test_train is not None:
        _check_kernel(k_test_train, "k_test_train", shape0=True, n=n)
    r = _checks.nonneg_float(diag_reg, "diag_reg")
    if solver not in ("cg", "direct"):
        raise ValueError(f"solver must be 'cg' or 'direct', got {solver!r}")
    tol = _checks.positive_float(tol, "tol")
    if preconditioner not in ("block", "jacobi"):
        raise ValueError(f"preconditioner must be 'block' or 'jacobi', got {preconditioner!r}")
    block = _checks.positive_int(block, "block")
    maxiter = 10 * n if maxiter is None else _checks.positive_int(maxiter, "maxiter")
    Y = y.reshape(n, -1)
    if solver == "direct":
        direct_memory(n, "kernel_regression(solver='direct')",
                      "use solver='cg', which reads the kernel tile by tile")
        A = _rows(K, 0, n)
        if not _is_dask(K):
            A = A.copy()                  # our own copy: the ridge is added in place
        if not np.all(np.isfinite(A)):
            raise _not_finite("k_train_train")
        A[np.diag_indices(n)] += r
        try:
            c = linalg.cho_factor(A, lower=True, check_finite=False)
        except linalg.LinAlgError as exc:
            raise ValueError("K_train_train + diag_reg I is not positive definite: use "
                             "diag_reg > 0") from exc
        a = linalg.cho_solve(c, Y, check_finite=False)
        ynorm = np.where(np.linalg.norm(Y, axis=0) > 0, np.linalg.norm(Y, axis=0), 1.0)
        it, res, pre = 0, float(np.max(np.linalg.norm(Y - A @ a, axis=0) / ynorm)), None
    else:
        a, it, res = cg(K, Y, r, tol, maxiter, preconditioner, min(block, n))
        pre = preconditioner
        if res > tol and it >= maxiter:
            raise RuntimeError(f"CG did not converge in {maxiter} iterations (relative residual "
                               f"{res:.3g} > tol = {tol:g}): raise maxiter or diag_reg")
    mean = None
    if k_test_train is not None:
        m = k_test_train.shape[0]
        mean = mean_of(k_test_train, a, block).reshape((m,) + y.shape[1:])
    return Regression(mean=mean, coef=a.reshape(y.shape), iterations=it, residual=res,
                      solver=solver, preconditioner=pre)
