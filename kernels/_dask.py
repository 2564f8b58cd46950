"""NNGP and NTK as lazy dask arrays: one task per pair of symmetric blocks, run by the workers.

dask is an optional extra (``pip install "nn-limits[dask]"``); it is imported here only, when
``dask_kernels`` is called.
"""
from dataclasses import dataclass

import numpy as np

from . import _blockwise

__all__ = ["dask_kernels", "DaskKernels"]


@dataclass(frozen=True)
class DaskKernels:
    """``.nngp`` and ``.ntk``: (N1, N2) ``dask.array.Array`` s sharing one graph of block tasks
    (compute them together, ``dask.compute(dk.nngp, dk.ntk)``, to run each task once)."""

    nngp: object
    ntk: object


def _import_dask():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:
        raise ImportError("kernels.dask_kernels needs dask: install the 'dask' extra "
                          "(pip install \"nn-limits[dask]\")") from exc
    return dask, da


class _State:
    """What every block task shares (the network, the input diagonals, the number of pairs):
    one graph key (or one scattered future), sent once to each worker, not once per task."""

    def __init__(self, state):
        self.state = state


def _pair_task(prob, r0, r1, c0, c1, x_rows, x_cols):
    """Kernels of one block; runs on a worker.  The block's inputs arrive as task arguments
    (row chunks of x, and the shared ``_State``) so that a worker receives only the rows it
    needs, each once."""
    prob = prob.state
    local = _blockwise.Problem.__new__(_blockwise.Problem)
    local.__dict__.update(prob)
    # rows r0:r1 and columns c0:c1 of the whole problem, re-based on the chunks received
    local.x1 = x_rows
    local.q1 = prob["q1"][r0:r1]
    if prob["sym"] and (r0, r1) == (c0, c1):
        k = local.tile(0, r1 - r0, 0, r1 - r0)
    else:
        local.sym = False
        local.x2 = x_cols
        local.q2 = prob["q2"][c0:c1]
        k = local.tile(0, r1 - r0, 0, c1 - c0)
    return k.nngp, k.ntk


def _pick(pair, which, transpose):
    a = pair[which]
    return a.T.copy() if transpose else a


def _active_client():
    """The current ``distributed.Client``, or None (no distributed, or no client)."""
    try:
        from distributed.client import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def _chunk_tuple(chunks, n, name):
    """Block sizes along one axis: an int >= 1 (equal blocks) or a sequence summing to n."""
    if isinstance(chunks, (tuple, list)):
        sizes = tuple(_blockwise._checks.positive_int(c, name) for c in chunks)
        if sum(sizes) != n:
            raise ValueError(f"{name} must sum to {n}, got {list(sizes)} (sum {sum(sizes)})")
        return sizes
    c = _blockwise._checks.positive_int(chunks, name)
    return tuple(min(c, n - s) for s in range(0, n, c))


def dask_kernels(net, x1, x2=None, chunks=1000, *, fast=None):
    """NNGP and NTK of ``net`` as lazy ``dask.array`` arrays computed block by block.

    Each block is computed by the numba engine on a worker, from the rows of ``x1`` (and ``x2``)
    it needs, and equals the same block of ``net.kernels(x1, x2)`` bit for bit (``_blockwise``
    explains why).  For a symmetric kernel (``x2`` None) one task computes blocks (i, j) and
    (j, i) (the transpose), so every pair of symmetric blocks is computed once.

    Parameters
    ----------
    net : kernels.MLP or kernels.ResNet
    x1 : (N1, d) array
    x2 : (N2, d) array, optional
        Cross kernel; default ``x1`` (symmetric).
    chunks : int >= 1, or (rows, cols)
        Block size (or, per axis, an int or a sequence of block sizes).  A symmetric kernel needs
        the same blocks on both axes.
    fast : bool, optional
        As in ``net.kernels``; the automatic choice is the whole problem's.

    Returns
    -------
    DaskKernels
        ``.nngp``, ``.ntk``: float64 dask arrays of shape (N1, N2).  Run them on any scheduler
        (threads, ``distributed.LocalCluster`` or a cluster ``Client``); store them with
        ``dask.array.to_npy_stack``, ``dask.array.to_zarr`` (``zarr`` is in the ``dask``
        extra) or ``dask.array.store`` into a ``numpy.lib.format.open_memmap`` (threaded
        scheduler).

    Notes
    -----
    The inputs enter the graph once, as one key per row chunk (and one for what every task
    shares: the network and the input diagonals), never once per task.  When a
    ``distributed.Client`` is active at the call, these are scattered to its workers right
    away and the graph holds only references to them, so a submission sends no large graph
    (N = 20,000 inputs of dimension 784 are 125 MB); compute the arrays with that client.
    Without a client they are embedded in the graph (the threaded scheduler copies nothing).

    Examples
    --------
    >>> import numpy as np, kernels as kn
    >>> x = np.random.default_rng(0).standard_normal((50, 3))
    >>> net = kn.MLP(depth=3, activation=kn.ReLU(), bias_var=0.1)
    >>> dk = kn.dask_kernels(net, x, chunks=20)
    >>> bool((dk.nngp.compute() == net.nngp(x)).all())
    True
    """
    from .architectures import MLP, ResNet
    if not isinstance(net, (MLP, ResNet)):
        raise TypeError(f"net must be a kernels MLP or ResNet, got {type(net).__name__}")
    if isinstance(x2, (int, np.integer)) and not isinstance(x2, bool):
        raise TypeError(f"x2 must be an array of inputs, got {x2!r}: give the block size as "
                        f"chunks={x2}")
    x1, x2, _ = net._prepare(x1, x2, None)
    sym = x2 is None
    n1 = x1.shape[0]
    n2 = n1 if sym else x2.shape[0]
    if isinstance(chunks, tuple) and len(chunks) == 2:
        c1, c2 = chunks
    elif isinstance(chunks, (tuple, list)) and not sym:
        raise ValueError(f"chunks for a cross kernel: an int or a pair (rows, cols), "
                         f"got {chunks!r}")
    else:
        c1 = c2 = chunks
    rows = _chunk_tuple(c1, n1, "chunks")
    cols = _chunk_tuple(c2, n2, "chunks")
    if sym and rows != cols:
        raise ValueError(f"a symmetric kernel needs the same blocks on both axes, got {chunks!r}")
    stack = net._engine_stack(x1, None)
    fast = _blockwise.check_fast(stack, fast)
    dask, da = _import_dask()
    from dask.highlevelgraph import HighLevelGraph

    prob = _blockwise.Problem(stack, x1, x2, fast)
    state = _State({k: v for k, v in prob.__dict__.items() if k not in ("x1", "x2")})
    token = dask.base.tokenize(repr(net), x1, x2, rows, cols, fast)
    xr_name, xc_name = f"kernel-x1-{token}", f"kernel-x2-{token}"
    pair_name, state_name = f"kernel-pairs-{token}", f"kernel-state-{token}"
    e1 = np.concatenate([[0], np.cumsum(rows)])
    e2 = np.concatenate([[0], np.cumsum(cols)])
    data = {(xr_name, i): x1[e1[i]:e1[i + 1]].copy() for i in range(len(rows))}
    if not sym:
        data.update({(xc_name, j): x2[e2[j]:e2[j + 1]].copy() for j in range(len(cols))})
    data[state_name] = state
    client = _active_client()
    if client is not None:
        # the data go to the workers once, now; the graph holds only references to them
        # (no "large graph" to serialise with every submission)
        keys = list(data)
        futures = client.scatter([data[k] for k in keys], hash=False)
        data = dict(zip(keys, futures))
    layers = dict(data)
    for i in range(len(rows)):
        for j in range(i if sym else 0, len(cols)):
            col_key = (xr_name, j) if sym else (xc_name, j)
            layers[(pair_name, i, j)] = (_pair_task, state_name, int(e1[i]), int(e1[i + 1]),
                                         int(e2[j]), int(e2[j + 1]), (xr_name, i), col_key)
    arrays = []
    for which, label in ((0, "nngp"), (1, "ntk")):
        name = f"kernel-{label}-{token}"
        blocks = {}
        for i in range(len(rows)):
            for j in range(len(cols)):
                if sym and j < i:
                    blocks[(name, i, j)] = (_pick, (pair_name, j, i), which, True)
                else:
                    blocks[(name, i, j)] = (_pick, (pair_name, i, j), which, False)
        graph = HighLevelGraph.from_collections(name, {**layers, **blocks}, dependencies=())
        arrays.append(da.Array(graph, name, chunks=(rows, cols), dtype=np.float64))
    return DaskKernels(nngp=arrays[0], ntk=arrays[1])
