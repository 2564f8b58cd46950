"""Kernels past memory: tile by tile into caller-provided arrays, and the diagonal alone.

A tile of the kernel is computed by the same engine call as the whole kernel
(``architectures._run``), on the tile's rows and columns, with three things taken from the whole
problem so that the tile equals the corresponding block of ``net.kernels(x)`` bit for bit:

* the input diagonals ``|x_i|^2 / d`` (``_gram.row_dots``, the same sums as the Gram diagonal),
  of the rows after the power-of-two rescaling of extreme rows (``architectures.
  _homogeneous_rescale``, bias-free ReLU-family networks).  That rescaling is row by row (each
  row's exponent depends on that row alone), so the engine, given a tile's rows, rescales them
  and scales the results back exactly as the whole computation does;
* the number of pairs and the input norms, which decide the automatic depth-independent paths
  (``fast``; the equal-norm path of ``_fast_equal_norm`` takes its common norm from the whole
  set): their tabulation depends only on the network and those norms, so a tile evaluates the
  same table as the whole;
* the entries themselves: the Gram matrix is summed entry by entry in a fixed order
  (``_gram``), and every later step of the engine is a function of one entry and its two
  diagonals.

A symmetric kernel is cut into tiles (I, J) with I <= J on a grid of ``tile`` rows; tile (J, I)
is the transpose of tile (I, J), and the diagonal tiles are computed as symmetric problems, as
in the whole computation.  Working memory is a few arrays of ``tile^2`` doubles.

From an input kernel ``K0`` (``net.kernels(K0=K0, out=...)``; ``K0`` may be a memory map): the
engine takes an input kernel only as a whole symmetric problem, so tile (I, J), I < J, is taken
from the symmetric problem on rows I and J together (``K0[I+J, I+J]``, symmetrised entry by
entry as ``_checks.psd_kernel`` symmetrises the whole, ``(K0_ij + K0_ji) / 2``), whose entries
are those of the whole computation for the same reasons (diagonals, number of pairs and norms
from the whole ``K0``; the rescaling of extreme rows is row by row).  Each off-diagonal tile
thus costs a problem of twice its rows: about twice the work of the in-memory call.  ``K0`` is
checked before any tile is computed, tile by tile: finite, symmetric (to the same tolerance as
in memory), a non-negative diagonal, and each diagonal tile positive semi-definite (to the same
tolerance, relative to the trace of the whole ``K0``; by Cauchy interlacing a kernel accepted in
memory passes, but a kernel indefinite only as a whole is not detected: the O(N^3) eigenvalue
check of the in-memory call is what a memory map is meant to avoid).
"""

import numpy as np

from . import _checks, _fast_equal_norm as _fen, _gram
from . import architectures as _arch

DEFAULT_TILE = 1024
_AUTO_PROGRESS_ENTRIES = 5e7       # progress bar by default from about N = 7000 (square)


def check_tile(tile, name="tile"):
    return DEFAULT_TILE if tile is None else _checks.positive_int(tile, name)


def check_out(a, shape, name):
    """An existing writable float64 array (ndarray, numpy.memmap, open_memmap) of ``shape``."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array (np.empty, numpy.memmap, "
                        f"numpy.lib.format.open_memmap), got {type(a).__name__}")
    if a.dtype != np.float64:
        raise TypeError(f"{name} must have dtype float64, got {a.dtype}")
    if a.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only (a memory map opened with mode='r'?): open it "
                         f"with mode='r+' or 'w+'")
    return a


def check_outs(out, shape):
    """``out`` = (nngp_out, ntk_out), either may be None (not stored)."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"out must be a pair (nngp_out, ntk_out) of arrays (None to skip one), "
                        f"got {type(out).__name__}")
    a = None if out[0] is None else check_out(out[0], shape, "out[0] (NNGP)")
    b = None if out[1] is None else check_out(out[1], shape, "out[1] (NTK)")
    if a is None and b is None:
        raise ValueError("out must give at least one array")
    if a is not None and b is not None and np.may_share_memory(a, b):
        raise ValueError("out[0] and out[1] share memory: give two separate arrays")
    return a, b


def check_fast(stack, fast):
    """The type of ``fast``; whether ``fast=True`` applies (a bias-free ReLU-family network, or
    inputs of equal norm) is checked by ``Problem`` and ``architectures._run`` before any
    work."""
    if fast is not None and not isinstance(fast, bool):
        raise TypeError(f"fast must be True, False or None, got {fast!r}")
    return fast


def rescaled(stack):
    """Whether ``architectures._run`` rescales extreme rows for this network (the same test)."""
    return stack.bias_free


class Problem:
    """The whole problem a tile belongs to: inputs, their diagonals, the number of pairs."""

    def __init__(self, stack, x1, x2, fast, ntk=True):
        self.stack = stack
        self.x1, self.x2 = x1, x2
        self.sym = x2 is None
        self.ntk = ntk
        xs1, xs2, _, _ = (_arch._homogeneous_rescale(x1, x2, None) if rescaled(stack)
                          else (x1, x2, None, None))
        gscale = 1.0 / x1.shape[1]        # the same scaling as architectures._input_state
        self.q1 = _gram.row_dots(xs1) * gscale
        self.q2 = self.q1 if self.sym else _gram.row_dots(xs2) * gscale
        n1 = x1.shape[0]
        self.shape = (n1, n1 if self.sym else x2.shape[0])
        self.pairs = n1 * (n1 - 1) // 2 if self.sym else n1 * self.shape[1]
        self.fast = fast
        if fast and not stack.fast_eligible:   # equal norms needed: refuse before any tile
            if tuple(stack.stem_ntk) != tuple(stack.stem):
                raise ValueError(_arch._FAST_REFUSAL)
            _fen.plan(stack, None, None, None, None, (self.q1, self.q2), True, None, 0, 0, 0)

    def tile(self, r0, r1, c0, c1):
        """Kernels of rows r0:r1 and columns c0:c1 (a diagonal tile of a symmetric problem when
        (r0, r1) == (c0, c1)), equal to that block of the whole kernel."""
        xr, qr = self.x1[r0:r1], self.q1[r0:r1]
        if self.sym and (r0, r1) == (c0, c1):
            return _arch._run(self.stack, xr, None, None, fast=self.fast, diag=(qr, qr),
                              pairs=self.pairs, ntk=self.ntk, norms=(self.q1, self.q2))
        xc = (self.x1 if self.sym else self.x2)[c0:c1]
        return _arch._run(self.stack, xr, xc, None, fast=self.fast, diag=(qr, self.q2[c0:c1]),
                          pairs=self.pairs, ntk=self.ntk, norms=(self.q1, self.q2))


def _progress_bar(progress, total, n_entries, desc):
    if progress is None:
        progress = n_entries >= _AUTO_PROGRESS_ENTRIES and total > 1
    if not progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="entry", unit_scale=True)


def _region_jobs(prob, region, tile):
    """Tiles of rows r_lo:r_hi and columns c_lo:c_hi: (sym, [((r0, r1), (c0, c1)), ...]); a
    square region on the diagonal of a symmetric problem is cut into tiles I <= J only."""
    r_lo, r_hi, c_lo, c_hi = region
    sym = prob.sym and (r_lo, r_hi) == (c_lo, c_hi)
    edges1 = [(r, min(r + tile, r_hi)) for r in range(r_lo, r_hi, tile)]
    edges2 = edges1 if sym else [(c, min(c + tile, c_hi)) for c in range(c_lo, c_hi, tile)]
    return sym, [(a, b) for ia, a in enumerate(edges1) for ib, b in enumerate(edges2)
                 if not sym or ib >= ia]


def fill_region(prob, outs, region, tile, bar=None):
    """Fill ``outs`` (arrays of the region's shape, or None) with the block rows r_lo:r_hi,
    columns c_lo:c_hi of the whole problem ``prob``, tile by tile."""
    r_lo, _, c_lo, _ = region
    sym, jobs = _region_jobs(prob, region, tile)
    for (r0, r1), (c0, c1) in jobs:
        k = prob.tile(r0, r1, c0, c1)
        for dst, src in zip(outs, (k.nngp, k.ntk)):
            if dst is None:
                continue
            dst[r0 - r_lo:r1 - r_lo, c0 - c_lo:c1 - c_lo] = src
            if sym and r0 != c0:
                dst[c0 - c_lo:c1 - c_lo, r0 - r_lo:r1 - r_lo] = src.T
        if bar is not None:
            bar.update((r1 - r0) * (c1 - c0) * (2 if sym and r0 != c0 else 1))


def _flush(outs):
    for dst in outs:
        if isinstance(dst, np.memmap):
            dst.flush()


def fill(stack, x1, x2, outs, tile, fast, progress):
    """Fill ``outs`` = (nngp_out, ntk_out) tile by tile; returns ``Kernels`` of the outs.
    No NTK work is done when ``outs[1]`` is None."""
    prob = Problem(stack, x1, x2, fast, ntk=outs[1] is not None)
    n1, n2 = prob.shape
    bar = _progress_bar(progress, n1 * n2, n1 * n2, "kernels")
    try:
        fill_region(prob, outs, (0, n1, 0, n2), tile, bar)
    finally:
        if bar is not None:
            bar.close()
    _flush(outs)
    return _arch.Kernels(nngp=outs[0], ntk=outs[1])


def _finish_diagonal(stack, cov, ntk, qa, qb, ta, tb, sym, scale):
    # the whole kernel's diagonal is qa (NNGP) and ta (NTK) put through _finish, entry (i, i)
    # scaled back by 2^(k_i + k_i): do exactly that on (N, 1) columns
    if scale is not None:
        scale = (scale[0] + scale[0], np.zeros(1, np.int64))
    k = _arch._finish(stack, qa[:, None].copy(), None if ntk is None else ta[:, None].copy(),
                      qa, qb, ta, tb, False, scale)
    return _arch.Kernels(nngp=k.nngp[:, 0], ntk=None if k.ntk is None else k.ntk[:, 0])


def diagonal(stack, x, K0, fast, ntk=True):
    """The (N,) diagonals of the NNGP and NTK in O(N L): the diagonal recursion of the whole
    computation alone (the off-diagonal state is an (N, 0) array), with the same rescaling of
    extreme rows (``architectures._homogeneous_rescale``)."""
    scale = None
    if rescaled(stack):
        x, _, K0, scale = _arch._homogeneous_rescale(x, None, K0)
    if K0 is not None:
        n = K0.shape[0]
        q = np.diag(K0).copy()            # as architectures._input_state
        x = np.zeros((n, 1))              # placeholder rows: no pair is ever formed
    else:
        n = x.shape[0]
        q = _gram.row_dots(x) * (1.0 / x.shape[1])
    return _arch._run(stack, x, x[:0], None, fast=fast, ntk=ntk, diag=(q, q[:0]),
                      pairs=n * (n - 1) // 2, finish=_finish_diagonal, prescaled=True,
                      scale=scale, norms=(q, q))


def kernels(net, x1, x2, K0, fast, out, diagonal_only, tile, progress, ntk=True):
    """Entry point behind ``net.kernels(..., out=, diagonal=, tile=, progress=)``."""
    if not isinstance(diagonal_only, bool):
        raise TypeError(f"diagonal must be True or False, got {diagonal_only!r}")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    if K0 is not None and out is not None and not diagonal_only:
        if x1 is not None or x2 is not None:
            raise ValueError("give either inputs x1 (and x2) or an input kernel K0, not both")
        return kernels_from_input_kernel(net, K0, fast, out, tile, progress, ntk)
    x1, x2, K0 = net._prepare(x1, x2, K0)
    stack = net._engine_stack(x1, K0, ntk)
    fast = check_fast(stack, fast)
    if diagonal_only:
        if x2 is not None:
            raise ValueError("diagonal=True needs a single set of inputs (x2 = None): the "
                             "diagonal of a cross kernel is not defined")
        if out is not None or tile is not None:
            raise ValueError("diagonal=True returns (N,) arrays: it takes no out= or tile=")
        return diagonal(stack, x1, K0, fast, ntk)
    if out is None:
        raise ValueError("tile= and progress= apply to out= (blockwise computation)")
    tile = check_tile(tile)
    n1 = x1.shape[0]
    outs = check_outs(out, (n1, n1 if x2 is None else x2.shape[0]))
    if not ntk:
        outs = (outs[0], None)
    return fill(stack, x1, x2, outs, tile, fast, progress)


# ----------------------------------------------------------------------------------------------
# out= from an input kernel K0 (module docstring)
# ----------------------------------------------------------------------------------------------
def _k0_array(K0):
    """K0 as an (N, N) real array without copying a memory map (lists etc. are converted)."""
    if not isinstance(K0, np.ndarray):
        K0 = _checks.finite_array(K0, "K0")
    if np.iscomplexobj(K0):
        raise TypeError("K0 must be real, got complex values")
    if K0.dtype.kind not in "iuf":
        raise TypeError(f"K0 must hold real numbers, got dtype {K0.dtype}")
    if K0.ndim != 2 or K0.shape[0] != K0.shape[1] or K0.shape[0] < 1:
        raise ValueError(f"K0 must be a square (N, N) matrix, got shape {K0.shape}")
    return K0


def _edges(n, tile):
    return [(r, min(r + tile, n)) for r in range(0, n, tile)]


def _read(K0, r0, r1, c0, c1):
    return np.asarray(K0[r0:r1, c0:c1], dtype=np.float64)


def check_input_kernel(K0, tile):
    """The checks of ``_checks.psd_kernel``, tile by tile (module docstring); returns the
    diagonal of K0."""
    n = K0.shape[0]
    q = np.asarray(np.diagonal(K0), dtype=np.float64).copy()
    scale = max(float(np.max(np.abs(q))) if np.all(np.isfinite(q)) else 0.0, 1e-300)
    trace = float(np.sum(q))
    edges = _edges(n, tile)
    for ia, (r0, r1) in enumerate(edges):
        for c0, c1 in edges[ia:]:
            A = _read(K0, r0, r1, c0, c1)
            B = A if c0 == r0 else _read(K0, c0, c1, r0, r1)
            for blk in (A, B):
                if not np.all(np.isfinite(blk)):
                    i, j = np.argwhere(~np.isfinite(blk))[0]
                    r, c = (r0, c0) if blk is A else (c0, r0)
                    raise ValueError(f"K0 must be finite: it contains NaN or inf (first at "
                                     f"index ({r + i}, {c + j}): {float(blk[i, j])!r})")
            if not np.allclose(A, B.T, rtol=0, atol=1e-12 * scale):
                raise ValueError(f"K0 must be symmetric (max |K - K.T| = "
                                 f"{float(np.max(np.abs(A - B.T))):.3g} in rows {r0}:{r1}, "
                                 f"columns {c0}:{c1})")
    if np.any(q < 0):
        raise ValueError("K0 has a negative diagonal entry")
    for r0, r1 in edges:
        A = _read(K0, r0, r1, r0, r1)
        lam = float(np.linalg.eigvalsh(0.5 * (A + A.T))[0])
        if lam < -1e-10 * max(trace, 1e-300):
            raise ValueError(f"K0 is not positive semi-definite (its diagonal block {r0}:{r1} "
                             f"has smallest eigenvalue {lam:.3g})")
    return q


class InputKernelProblem:
    """The whole problem of an input kernel: K0 (array or memory map), its diagonal, the
    number of pairs; ``sub(ranges)`` = kernels of the symmetric problem on those rows."""

    def __init__(self, stack, K0, q, fast, ntk=True):
        self.stack, self.K0, self.q, self.fast, self.ntk = stack, K0, q, fast, ntk
        n = K0.shape[0]
        self.pairs = n * (n - 1) // 2
        if fast and not stack.fast_eligible:   # equal norms needed: refuse before any tile
            if tuple(stack.stem_ntk) != tuple(stack.stem):
                raise ValueError(_arch._FAST_REFUSAL)
            _fen.plan(stack, None, None, None, None, (q, q), True, None, 0, 0, 0)

    def sub(self, ranges):
        S = np.block([[_read(self.K0, r0, r1, c0, c1) for c0, c1 in ranges]
                      for r0, r1 in ranges])
        S = np.ascontiguousarray(0.5 * (S + S.T))   # entry by entry as _checks.psd_kernel
        return _arch._run(self.stack, None, None, S, fast=self.fast, pairs=self.pairs,
                          ntk=self.ntk, norms=(self.q, self.q))


def kernels_from_input_kernel(net, K0, fast, out, tile, progress, ntk):
    """``net.kernels(K0=K0, out=...)``: tile by tile, equal to the in-memory call."""
    K0 = _k0_array(K0)
    stack = net._engine_stack(None, K0, ntk)
    fast = check_fast(stack, fast)
    tile = DEFAULT_TILE // 2 if tile is None else check_tile(tile)
    n = K0.shape[0]
    outs = check_outs(out, (n, n))
    if not ntk:
        outs = (outs[0], None)
    for k, dst in enumerate(outs):
        if dst is not None and np.may_share_memory(dst, K0):
            raise ValueError(f"out[{k}] shares memory with K0: the input kernel would be "
                             f"overwritten while it is read; give a separate array")
    q = check_input_kernel(K0, tile)
    prob = InputKernelProblem(stack, K0, q, fast, ntk=outs[1] is not None)
    edges = _edges(n, tile)
    bar = _progress_bar(progress, n * n, n * n, "kernels")
    done = set()
    try:
        pairs = ([(0, None)] if len(edges) == 1 else
                 [(a, b) for a in range(len(edges)) for b in range(a + 1, len(edges))])
        for a, b in pairs:
            ranges = [edges[a]] if b is None else [edges[a], edges[b]]
            k = prob.sub(ranges)
            offs = np.cumsum([0] + [r1 - r0 for r0, r1 in ranges])
            for ia, ib in ([(0, 0)] if b is None else [(0, 1), (1, 0), (0, 0), (1, 1)]):
                ta, tb = (a, b)[ia], (a, b)[ib]
                if ia == ib and ta in done:
                    continue
                (r0, r1), (c0, c1) = edges[ta], edges[tb]
                for dst, src in zip(outs, (k.nngp, k.ntk)):
                    if dst is not None:
                        dst[r0:r1, c0:c1] = src[offs[ia]:offs[ia + 1], offs[ib]:offs[ib + 1]]
                if ia == ib:
                    done.add(ta)
                if bar is not None:
                    bar.update((r1 - r0) * (c1 - c0))
    finally:
        if bar is not None:
            bar.close()
    _flush(outs)
    return _arch.Kernels(nngp=outs[0], ntk=outs[1])
