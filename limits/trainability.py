"""Trainability of deep tanh MLPs against the depth scale xi_c (Schoenholz et al. 2017, §5).

Schoenholz, Gilmer, Ganguli & Sohl-Dickstein (2017, "Deep Information Propagation", arXiv
1611.01232, Fig. 5) report that random-initialised deep tanh networks train only up to a depth
of about ``6 xi_c``, where ``xi_c`` is the correlation depth scale of
``limits.criticality.signal_propagation`` (theory/kernels.md §5c).  This module trains tanh
MLPs from random initialisation on a (weight_var, depth) grid and returns the trained accuracy;
``limits.plots.trainability`` draws it with ``6 xi_c`` over it.

Task: the scikit-learn digits (8 x 8 images, 10 classes; 1000 training and 797 test images,
pixels standardised).  Network (standard parameterisation, as in the signal-propagation
analysis): ``h_1 = W_0 x + b_0``, ``h_{l+1} = W_l tanh(h_l) + b_l``, logits
``W_L tanh(h_L) + b_L``, ``W_l ~ N(0, sw2 / n_in)``, ``b_l ~ N(0, sb2)``; cross-entropy loss,
plain minibatch SGD (compiled with numba; matrix products through BLAS).
"""
import math
import warnings
from typing import NamedTuple

import numba
import numpy as np

from kernels import _checks

__all__ = ["digits_data", "train_tanh_mlp", "train_point", "trainability_grid",
           "TrainabilityGrid"]


def digits_data():
    """(x_train (1000, 64), y_train, x_test (797, 64), y_test): scikit-learn digits, pixels
    standardised with the training mean and sd, in a fixed shuffled order (seed 0)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x, y = d.data.astype(np.float64), d.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(y))
    x, y = x[perm], y[perm]
    mu, sd = x[:1000].mean(0), x[:1000].std(0) + 1e-8
    x = (x - mu) / sd
    return (np.ascontiguousarray(x[:1000]), y[:1000], np.ascontiguousarray(x[1000:]),
            y[1000:])


@numba.njit(cache=True)
def _forward(Ws, bs, x, H):
    """H[0] = x, H[l+1] = tanh(W_l H[l] + b_l) (pre-activations stored in Z); returns logits."""
    L = len(Ws) - 1
    a = x
    for l in range(L):
        z = a @ Ws[l] + bs[l]
        H[l] = z
        a = np.tanh(z)
    return a @ Ws[L] + bs[L]


@numba.njit(cache=True)
def _sgd(Ws, bs, x, y, steps, lr, batch, order):
    L = len(Ws) - 1
    N = x.shape[0]
    H = [np.empty((batch, Ws[l].shape[1])) for l in range(L)]
    k = 0
    for step in range(steps):
        idx = order[k:k + batch]
        k += batch
        if k + batch > N:
            k = 0
        xb = x[idx]
        yb = y[idx]
        logits = _forward(Ws, bs, xb, H)
        m = logits.shape[1]
        g = np.empty_like(logits)                    # d loss / d logits (softmax - onehot)
        for i in range(batch):
            mx = logits[i].max()
            s = 0.0
            for j in range(m):
                g[i, j] = math.exp(logits[i, j] - mx)
                s += g[i, j]
            for j in range(m):
                g[i, j] /= s
            g[i, yb[i]] -= 1.0
        g /= batch
        for l in range(L, -1, -1):
            a_in = xb if l == 0 else np.tanh(H[l - 1])
            gW = a_in.T @ g
            gb = g.sum(0)
            if l > 0:
                ga = g @ Ws[l].T
                g = ga * (1.0 - a_in * a_in)
            Ws[l] -= lr * gW
            bs[l] -= lr * gb
        if not np.isfinite(Ws[0][0, 0]):
            return False
    return True


def _accuracy(Ws, bs, x, y):
    H = numba.typed.List([np.empty((x.shape[0], W.shape[1])) for W in Ws[:-1]])
    logits = _forward(Ws, bs, x, H)
    return float(np.mean(np.argmax(logits, 1) == y))


def train_tanh_mlp(depth, weight_var, bias_var=0.05, width=64, steps=1500, lr=1e-2, batch=50,
                   seed=0, data=None):
    """Train one tanh MLP on the digits from random initialisation (module docstring).

    Returns
    -------
    dict with ``train_accuracy``, ``test_accuracy`` (fractions; chance is 0.1) and ``diverged``.
    """
    depth = _checks.positive_int(depth, "depth")
    width = _checks.positive_int(width, "width")
    steps = _checks.positive_int(steps, "steps")
    batch = _checks.positive_int(batch, "batch")
    sw2 = _checks.nonneg_float(weight_var, "weight_var")
    sb2 = _checks.nonneg_float(bias_var, "bias_var")
    lr = _checks.positive_float(lr, "lr")
    if not isinstance(seed, (np.random.SeedSequence, np.random.Generator)):
        seed = _checks.int_in_range(seed, "seed", 0)
    xtr, ytr, xte, yte = digits_data() if data is None else data
    _memory_guard(depth, width, batch, xtr.shape[1], max(xtr.shape[0], xte.shape[0]))
    rng = np.random.default_rng(seed)
    dims = [xtr.shape[1]] + [width] * depth + [10]
    Ws = numba.typed.List([rng.standard_normal((dims[l], dims[l + 1])) * math.sqrt(sw2 / dims[l])
                           for l in range(depth + 1)])
    bs = numba.typed.List([rng.standard_normal(dims[l + 1]) * math.sqrt(sb2)
                           for l in range(depth + 1)])
    order = np.concatenate([rng.permutation(xtr.shape[0]) for _ in range(2)]).astype(np.int64)
    ok = _sgd(Ws, bs, xtr, ytr, steps, lr, batch, order)
    if not ok:
        return dict(train_accuracy=0.1, test_accuracy=0.1, diverged=True)
    return dict(train_accuracy=_accuracy(Ws, bs, xtr, ytr),
                test_accuracy=_accuracy(Ws, bs, xte, yte), diverged=False)


def _memory_guard(depth, width, batch, n_in, rows, n_out=10):
    """Refuse up front (``kernels._checks.memory_guard``) a network that cannot fit: the
    weights (and one gradient of each) and the hidden layers of the accuracy pass."""
    weights = n_in * width + (depth - 1) * width * width + width * n_out + depth * width + n_out
    _checks.memory_guard([(16.0 * weights, f"the weights of depth {depth}, width {width}"),
                          (8.0 * (rows + batch) * width * depth,
                           f"the hidden layers of {rows} inputs")],
                         f"train_tanh_mlp(depth={depth}, width={width})",
                         "reduce the depth or the width")


def train_point(params, rng_seed):
    """``limits.sweep`` grid function: one training run at ``params`` (keys of
    ``train_tanh_mlp``), seeded by the sweep's point seed."""
    seed = int(rng_seed.generate_state(1)[0])
    return train_tanh_mlp(seed=seed, **params)


class TrainabilityGrid(NamedTuple):
    """Result of :func:`trainability_grid`.

    Attributes
    ----------
    weight_vars : (W,) array; depths : (D,) array
    accuracy : (D, W) array
        Train accuracy of each point (chance 0.1); NaN where the point failed.
    test_accuracy : (D, W) array
        Test accuracy; NaN where the point failed.
    diverged : (D, W) bool array
        The run diverged (its accuracies are then reported as chance, 0.1: a result, not a
        failure).
    errors : (D, W) object array of str
        ``""`` where the point was stored; else why it has no accuracy: the worker's
        ``"Type: message"`` (the store keeps the traceback: ``limits.sweep.failures``), or
        ``"missing: ..."``.
    """

    weight_vars: np.ndarray
    depths: np.ndarray
    accuracy: np.ndarray
    test_accuracy: np.ndarray
    diverged: np.ndarray
    errors: np.ndarray

    @property
    def failed(self):
        """``[(weight_var, depth, error), ...]`` of the points without a result."""
        return [(float(self.weight_vars[j]), int(self.depths[i]), str(self.errors[i, j]))
                for i, j in zip(*np.nonzero(self.errors != ""))]


def trainability_grid(weight_vars, depths, store, bias_var=0.05, width=64, steps=1500,
                      lr=1e-2, executor=None, progress=False):
    """Train on the (weight_var, depth) grid through ``limits.sweep.run_grid`` (resumable
    SQLite ``store``; experiment ``limits.trainability:train_point``).

    Arguments are checked before any run.  A point whose run raised has NaN accuracies and its
    error in ``errors``; a ``RuntimeWarning`` names every such point (weight_var, depth, error).
    Only this grid's points are read from the store (points of other settings that share it
    are left out).

    Returns
    -------
    TrainabilityGrid
    """
    from limits import sweep
    sws = _checks.finite_array(weight_vars, "weight_vars").reshape(-1)
    if sws.size == 0 or np.any(sws < 0) or len(set(sws.tolist())) != sws.size:
        raise ValueError(f"weight_vars must be distinct numbers >= 0, got {weight_vars!r}")
    try:
        Ls = [_checks.int_in_range(d, "depths", 1) for d in depths]
    except TypeError:
        raise TypeError(f"depths must be a sequence of integers >= 1, got {depths!r}") from None
    if not Ls or len(set(Ls)) != len(Ls):
        raise ValueError(f"depths must be distinct integers >= 1, got {depths!r}")
    params = dict(bias_var=_checks.nonneg_float(bias_var, "bias_var"),
                  width=_checks.int_in_range(width, "width", 1),
                  steps=_checks.int_in_range(steps, "steps", 1),
                  lr=_checks.positive_float(lr, "lr"))
    xtr, _, xte, _ = digits_data()
    _memory_guard(max(Ls), params["width"], 50, xtr.shape[1], max(xtr.shape[0], xte.shape[0]))
    grid = sweep.product(weight_var=[float(w) for w in sws], depth=Ls,
                         **{k: [v] for k, v in params.items()})
    with warnings.catch_warnings():
        # run_grid's summary warning names the first failure only: ours below names them all
        warnings.filterwarnings("ignore", message="run_grid ", category=RuntimeWarning)
        summary = sweep.run_grid(train_point, grid, store, executor=executor,
                                 progress=progress)
    stored = {r.key: r.results for r in sweep.load(store, summary.name)}
    failed = {f.key: f.error for f in summary.failed}
    shape = (len(Ls), len(sws))
    acc, test = np.full(shape, np.nan), np.full(shape, np.nan)
    div, errors = np.zeros(shape, dtype=bool), np.full(shape, "", dtype=object)
    for p in grid:
        i, j = Ls.index(p["depth"]), [float(w) for w in sws].index(p["weight_var"])
        key = sweep.point_key(p)
        if key in stored:
            r = stored[key]
            acc[i, j], test[i, j] = r["train_accuracy"], r["test_accuracy"]
            div[i, j] = bool(r["diverged"])
        else:
            errors[i, j] = failed.get(key, "missing: not stored (still run by another "
                                           "coordinator of the store?)")
    out = TrainabilityGrid(sws, np.asarray(Ls), acc, test, div, errors)
    if out.failed:
        listed = "; ".join(f"(weight_var={w:g}, depth={L}): {e}" for w, L, e in out.failed)
        warnings.warn(f"trainability_grid: {len(out.failed)} of {len(grid)} points have no "
                      f"result (accuracy NaN): {listed}; tracebacks in "
                      f"limits.sweep.failures({str(store)!r})", RuntimeWarning, stacklevel=2)
    return out
