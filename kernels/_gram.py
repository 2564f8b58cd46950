"""The input Gram matrix ``G = x1 x2'``, entry by entry in a fixed order (numba).

Every entry is ``G_ij = sum_k x1_ik x2_jk`` accumulated over ``k = 0, 1, ..., d - 1`` in that
order, one fused multiply-add per term, whatever the shapes, the block or the thread that
computes it.  A BLAS product does not promise this: its rounding depends on the shapes it is
given (an entry of ``x @ x.T`` and the same entry of ``x[a:b] @ x[c:e].T`` can differ in the last
bits, measured with OpenBLAS 0.3.31), so a kernel computed tile by tile into a memory map, or in
dask blocks, would not equal the in-memory kernel bit for bit.  With this product a tile of the
Gram matrix *is* the corresponding block of the full one, and so is every kernel built from it.

How it is fast without reordering a sum: a register-blocked micro-kernel, as in BLAS, but with
one accumulation order.  Both operands are packed (``_pack``): rows of ``x1`` in groups of
``_MR`` = 4 as ``[group, k, row]`` and rows of ``x2`` in groups of ``_NR`` = 8 as
``[group, k, column]``, zero-padded.  The micro-kernel (``_micro``, LLVM IR written here) keeps
the 4 x 8 accumulators of one tile in vector registers and, for k = 0, 1, ..., d - 1, loads one
vector of 8 ``x2`` values, broadcasts each of the 4 ``x1`` values and issues 4 vector
``llvm.fma`` calls: every entry gets ``acc = 0; acc = fma(x1_ik, x2_jk, acc)`` for k ascending,
which is the operation sequence of the earlier loop kernel (fused through ``contract``), so the
bits did not change.  Tasks are blocks of ``_MR * _GB`` rows (pairs of blocks from both ends of
the triangle when symmetric), each sweeping the column groups so a packed column panel is reused
from cache by all its row groups.  Small products (``_SERIAL_WORK``) run the same code on one
thread: a parallel launch costs more than they do, and far more on a loaded machine.
Measured (benchmarks/gram.py, medians of 11 interleaved repeats on a shared two-core AVX-512
EPYC, so noisy): N = 2000, d = 784: 88 ms against 85 ms for OpenBLAS ``x @ x.T`` and 183 ms for
the earlier loop kernel; N = 500, d = 16 or 32: 0.3-0.5 ms (one thread) against 24 ms for the
earlier kernel's parallel launch on the loaded machine.  The same code compiled for AVX2
(``NUMBA_CPU_NAME=haswell``) gives the same bits at about the same speed.

Why not BLAS on a fixed grid of equal blocks: OpenBLAS 0.3.31 (SkylakeX kernels) gives the same
(256, 784) x (784, 256) block different last bits with one thread and with two, so the bits
would depend on the BLAS thread count of the process or dask worker computing a tile.
"""
import types as pytypes

import numba
import numpy as np
from llvmlite import ir
from numba import prange
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = ["gram", "row_dots"]

_MR = 4             # rows per micro-kernel tile (x1 rows, broadcast)
_NR = 8             # columns per micro-kernel tile (x2 rows, one vector of 8 doubles)
_GB = 16            # row groups per task: a block of _MR * _GB rows shares each column panel
_SERIAL_WORK = 1 << 22      # multiply-adds below which one thread does it all


def _make_micro(mr, nr):
    """An intrinsic ``micro(ap, aoff, bp, boff, kc, c, coff, ldc)``: for r < mr, j < nr,
    ``c[coff + r ldc + j] = fma-sum over k < kc of ap[aoff + k mr + r] * bp[boff + k nr + j]``,
    the accumulators in ``mr`` vector registers of ``nr`` doubles, terms in k order, each an
    exact ``llvm.fma`` starting from +0.0."""

    @intrinsic
    def micro(typingctx, ap, aoff, bp, boff, kc, c, coff, ldc):
        sig = types.void(ap, aoff, bp, boff, kc, c, coff, ldc)

        def codegen(context, builder, signature, args):
            apv, aoff, bpv, boff, kc, cv, coff, ldc = args
            aty, _, bty, _, _, cty, _, _ = signature.args
            A = context.make_array(aty)(context, builder, apv).data
            B = context.make_array(bty)(context, builder, bpv).data
            C = context.make_array(cty)(context, builder, cv).data
            i32, i64 = ir.IntType(32), ir.IntType(64)
            vty = ir.VectorType(ir.DoubleType(), nr)
            vptr = ir.PointerType(vty)
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty, vty, vty]), "llvm.fma.v%df64" % nr)
            undef = ir.Constant(vty, ir.Undefined)
            splat = ir.Constant(ir.VectorType(i32, nr), [0] * nr)
            accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * nr))
                    for _ in range(mr)]
            with cgutils.for_range(builder, kc) as loop:
                k = loop.index
                bk = builder.gep(B, [builder.add(boff, builder.mul(k, ir.Constant(i64, nr)))])
                bvec = builder.load(builder.bitcast(bk, vptr), align=8)
                ak = builder.add(aoff, builder.mul(k, ir.Constant(i64, mr)))
                for r in range(mr):
                    a = builder.load(builder.gep(A, [builder.add(ak, ir.Constant(i64, r))]))
                    avec = builder.shuffle_vector(
                        builder.insert_element(undef, a, ir.Constant(i32, 0)), undef, splat)
                    builder.store(builder.call(fma, [avec, bvec, builder.load(accs[r])]), accs[r])
            for r in range(mr):
                cr = builder.gep(C, [builder.add(coff, builder.mul(ir.Constant(i64, r), ldc))])
                builder.store(builder.load(accs[r]), builder.bitcast(cr, vptr), align=8)
            return context.get_dummy_value()

        return sig, codegen

    return micro


_micro = _make_micro(_MR, _NR)


@numba.njit(cache=True)
def _pack(x, m, out):
    """out[g, k, r] = x[g m + r, k], zero for rows past the end (out: (ceil(n / m), d, m))."""
    n, d = x.shape
    for g in range(out.shape[0]):
        for r in range(m):
            i = g * m + r
            if i < n:
                for k in range(d):
                    out[g, k, r] = x[i, k]
            else:
                for k in range(d):
                    out[g, k, r] = 0.0


def _gram_tasks(ap, bp, n1, n2, sym, out):
    """out[i, j] = sum_k a[i, k] b[j, k] (k ascending, one fma per term) from the packed
    operands; when sym only the tiles reaching j >= i are computed."""
    ng, d, mr = ap.shape
    njb, _, nr = bp.shape
    nblk = (ng + _GB - 1) // _GB
    ntask = (nblk + 1) // 2 if sym else nblk
    af = ap.reshape(-1)
    bf = bp.reshape(-1)
    of = out.reshape(-1)
    for ptask in prange(ntask):
        task = np.int64(ptask)
        tile = np.empty(mr * nr)
        for half in range(2 if sym else 1):
            blk = task if half == 0 else nblk - 1 - task     # pair blocks: balanced triangle
            if half == 1 and blk == task:
                continue
            g0 = blk * _GB
            g1 = min(g0 + _GB, ng)
            for jb in range((g0 * mr) // nr if sym else 0, njb):
                j0 = jb * nr
                ncol = min(nr, n2 - j0)
                for g in range(g0, g1):
                    i0 = g * mr
                    if sym and j0 + nr <= i0:
                        continue
                    nrow = min(mr, n1 - i0)
                    if nrow == mr and ncol == nr:
                        _micro(af, g * d * mr, bf, jb * d * nr, d, of, i0 * n2 + j0, n2)
                    else:
                        _micro(af, g * d * mr, bf, jb * d * nr, d, tile, 0, nr)
                        for r in range(nrow):
                            for c in range(ncol):
                                out[i0 + r, j0 + c] = tile[r * nr + c]


def _mirror_rows(a):
    """Copy the upper triangle (j > i) of a square array into the lower one, in place."""
    n = a.shape[0]
    for pi in prange(n):
        i = np.int64(pi)
        for j in range(i):
            a[i, j] = a[j, i]


def _named(f, name):
    """A copy of function ``f`` called ``name``: numba's on-disk cache names its files after the
    qualified name and ignores ``parallel``, so two dispatchers of one function would share
    (and overwrite) one cache entry."""
    code = f.__code__.replace(co_name=name)
    if hasattr(code, "co_qualname"):                  # Python >= 3.11
        code = code.replace(co_qualname=name)
    g = pytypes.FunctionType(code, f.__globals__, name, f.__defaults__, f.__closure__)
    g.__qualname__ = g.__name__ = name
    g.__doc__ = f.__doc__
    return g


# the same code on all threads and on one (prange is range without parallel=True)
_gram_par = numba.njit(parallel=True, cache=True)(_named(_gram_tasks, "_gram_tasks_par"))
_gram_ser = numba.njit(cache=True)(_named(_gram_tasks, "_gram_tasks_ser"))
_mirror = numba.njit(parallel=True, cache=True)(_named(_mirror_rows, "_mirror_par"))
_mirror_ser = numba.njit(cache=True)(_named(_mirror_rows, "_mirror_ser"))


def gram(x1, x2=None):
    """``x1 @ x2.T`` (``x1 @ x1.T`` when ``x2`` is None), every entry summed in the same order.

    Parameters
    ----------
    x1 : (N1, d) float64 array
    x2 : (N2, d) float64 array, optional

    Returns
    -------
    (N1, N2) array; the same entry for the same pair of rows whatever the rest of the inputs
    (module docstring).  Symmetric exactly when ``x2`` is None (the upper triangle is computed
    and mirrored).
    """
    sym = x2 is None
    x1 = np.ascontiguousarray(x1, dtype=np.float64)
    b = x1 if sym else np.ascontiguousarray(x2, dtype=np.float64)
    n1, d = x1.shape
    n2 = b.shape[0]
    ap = np.empty(((n1 + _MR - 1) // _MR, d, _MR))
    _pack(x1, _MR, ap)
    bp = np.empty(((n2 + _NR - 1) // _NR, d, _NR))
    _pack(b, _NR, bp)
    out = np.empty((n1, n2))
    serial = n1 * n2 * max(d, 1) < (2 * _SERIAL_WORK if sym else _SERIAL_WORK)
    (_gram_ser if serial else _gram_par)(ap, bp, n1, n2, sym, out)
    if sym:
        (_mirror_ser if serial else _mirror)(out)
    return out


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def _row_dots_kernel(x, out):
    n, d = x.shape
    for pi in prange(n):
        i = np.int64(pi)
        s = 0.0
        for k in range(d):
            s += x[i, k] * x[i, k]
        out[i] = s


def row_dots(x):
    """``(x * x).sum(1)`` summed like ``gram``: ``row_dots(x)[i] == gram(x)[i, i]`` exactly."""
    out = np.empty(x.shape[0])
    _row_dots_kernel(np.ascontiguousarray(x), out)
    return out
