"""The weights sampler of kernels.montecarlo (``method="weights"``): explicit Gaussian weight
matrices, forward and (for the empirical NTK) backward passes, O(n^2 N) per layer.

The products use BLAS; normal generation (kernels/_random.py) and the elementwise passes are
compiled and release the GIL.  The activation enters as its compiled form
(kernels/_pointwise.py).  Streams: matrix ``(layer, role)`` of a sample is the weights-sampler
stream ``4 layer + role`` (roles W, b = 0, 1; ``_wfill_part`` of kernels/_random.py: one
SplitMix64 sequence per stream), so a number depends only on (seed, sample, layer, role,
index).

Threads (``_WeightsSampler.run_many``, ``blas_threads``): with several samples, ``_parts()``
Python threads each run whole networks, serially, with single-threaded BLAS; with one sample,
the fill and the elementwise passes are split over ``_parts()`` threads and BLAS may use as many.
So numba's thread count and BLAS's never multiply (on a machine where another process keeps a
core busy, the OpenBLAS threads of every product wait on each other: 6 s became 40 s), and each
network's numbers are the same whichever thread runs it: the results do not depend on the
thread count or the batch.  Each thread keeps its arrays (kept weights, states, products) from
one network to the next (``_WeightsSampler._workspace``): fresh arrays of this size are mapped
page by page on first write, which cost more than generating the weights (``_Draws``).

Empirical NTK (module docstring of kernels.montecarlo): a sum over dense layers of (forward Gram
of the layer's input, bias included) (.) (backward Gram of the gradient with respect to its
output).  Backward passes: ``delta_L = sqrt(sw2/n) w (.) phi'(h_L)``,
``delta_l = phi'(h_l) (.) (sqrt(sw2/n) W_l^T delta_{l+1})`` (MLP); ``g_L = sqrt(sv/n) w``,
``g_{l-1} = g_l + alpha_l sqrt(sw2/n) phi'(h_{l-1}) (.) (W_l^T g_l)`` (ResNet).
The backward pass runs on the transposed gradients ``delta^T`` (N, n) (and ``phi'(h)^T``,
written so by the forward pass): the product ``delta^T W`` reads W by rows, which OpenBLAS does
at the speed of the forward product, while ``W^T delta`` was 1.6x slower once W has left the
cache (0.84 against 1.4 ms at n = 512, N = 64 on one Zen 4 core; the backward pass reads the
weights long after they were generated).
"""
import math
import sys
import threading

import numba
import numpy as np

from . import _pointwise as _pw
from ._pointwise import dphi, phi
from ._random import _parts, _run_split, _wfill_part

_W_BUDGET = 256 << 20               # bytes of weight matrices kept for the backward pass

# roles of the streams of one layer
_ROLE_W, _ROLE_B, _ROLE_Z = 0, 1, 2


def _stream(layer, role):
    return 4 * layer + role


class _Draws:
    """The normal draws of one sample network, generated when asked for: ``draws[stream]``.

    With ``keep=True`` (the NTK: the backward pass reads every weight matrix again) each draw is
    kept while the kept draws fit in ``_W_BUDGET`` bytes; beyond that, and with ``keep=False``,
    a draw is written into a buffer reused for every draw of the same shape and generated again
    if asked for twice (the counter-based generator gives the same numbers).

    ``store`` (a dict, kept by the caller from one network to the next on the same thread) holds
    the arrays: a stream's kept draw, or the shared buffer of a shape, is the same array for
    every network.  Fresh arrays cost more than their fill: a new 2 MB array is mapped by the
    kernel page by page on first write (about 500 page faults, 1 to 4 ms against 0.35 ms for
    the fill of a reused one, measured; worse with two threads faulting at once).
    """

    def __init__(self, keys, layout, keep=False, split=True, budget=_W_BUDGET, store=None):
        self.keys = keys
        self.layout = layout if isinstance(layout, dict) else dict(layout)
        self.store = {} if store is None else store
        self.kept = {}
        self.budget = budget if keep else 0
        self.split = split

    def __getitem__(self, stream):
        out = self.kept.get(stream)
        if out is not None:
            return out
        shape = self.layout[stream]
        size = int(np.prod(shape))
        key = stream if 8 * size <= self.budget else ("shared", shape)
        out = self.store.get(key)
        if out is None:
            out = self.store[key] = np.empty(size)
        if 8 * size <= self.budget:
            self.budget -= 8 * size
            self.kept[stream] = out.reshape(shape)
        _maybe_split(self.split, _wfill_part, (out.size + 1) // 2, self.keys[0], self.keys[1],
                     np.int64(stream), out)
        return out.reshape(shape)


def _maybe_split(split, fn, n, *args, **kw):
    """``_run_split(fn, n, *args)`` if ``split``, else fn(*args, 0, n) on this thread."""
    if split:
        _run_split(fn, n, *args, **kw)
    else:
        fn(*args, 0, n)


_TILE = 8                           # rows per tile of the transposed write of D


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _dense_act(y, bias, s, t, alpha, resid, pt, h, P, DT, want_d, lo, hi):
    """Rows lo..hi-1: h = s y + t b (MLP) or h += alpha (s y + t b) (ResNet); P = phi(h),
    and, transposed, DT = phi'(h)^T (N, n) for the backward pass.

    DT is written by tiles of ``_TILE`` rows, column by column: a row-at-a-time transposed
    write touches N lines one row of DT apart (n doubles), which share a cache set when n is a
    multiple of 512."""
    N = y.shape[1]
    for r0 in range(lo, hi, _TILE):
        r1 = min(r0 + _TILE, hi)
        for r in range(r0, r1):
            br = t * bias[r]
            yr = y[r]
            hr = h[r]
            pr = P[r]
            for c in range(N):
                v = s * yr[c] + br
                if resid:
                    v = hr[c] + alpha * v
                hr[c] = v
                pr[c] = phi(pt, v)
        if want_d:
            for c in range(N):
                dc = DT[c]
                for r in range(r0, r1):
                    dc[r] = dphi(pt, h[r, c])


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _backprop(y, D, scale, g, resid, lo, hi):
    """Rows lo..hi-1 of (N, n) arrays, transposed.  MLP: g = D (scale y); ResNet:
    g += D (scale y)   (y = g_next W, i.e. (W^T g_next)^T; D = phi'(h)^T)."""
    N = y.shape[1]
    for r in range(lo, hi):
        yr = y[r]
        dr = D[r]
        gr = g[r]
        for c in range(N):
            v = dr[c] * (scale * yr[c])
            gr[c] = gr[c] + v if resid else v


_SPLIT_ELEMENTS = 1 << 18   # elementwise passes smaller than this stay on one thread


def _dense_act_split(y, bias, s, t, alpha, resid, pt, h, P, D, want_d, split=True):
    fn = (_dense_act if _pw.cacheable(pt) else
          _pw.uncached(sys.modules[__name__], ("_dense_act",))._dense_act)
    _maybe_split(split, fn, y.shape[0], y, bias, s, t, alpha, resid, pt, h, P, D,
                 want_d, min_size=max(1, _SPLIT_ELEMENTS // y.shape[1]))


def _backprop_split(y, D, scale, g, resid, split=True):
    _maybe_split(split, _backprop, y.shape[0], y, D, scale, g, resid,
                 min_size=max(1, _SPLIT_ELEMENTS // y.shape[1]))


def _gram_np(P, scale, shift):
    """scale P^T P + shift, exactly symmetric."""
    G = P.T @ P
    G = 0.5 * (G + G.T)
    return scale * G + shift


def _gram_t(A):
    """A A^T for a transposed state A (N, n), exactly symmetric."""
    G = A @ A.T
    return 0.5 * (G + G.T)


class _WeightsSampler:
    """One network sample at a time, explicit weights (forward, and backward for the NTK).

    ``run`` computes one sample (its fill and elementwise passes split over threads, or not);
    ``run_many`` a block of samples, one per thread (module docstring).
    """

    def __init__(self, fin, x, n, want_ntk, slots):
        self.fin, self.n, self.want_ntk, self.slots = fin, n, want_ntk, slots
        st = fin.stack
        resnet = bool(fin.resid.all()) and st.readout is not None
        if not resnet and (fin.resid.any() or st.readout is not None
                           or np.any(fin.scale != 1.0)):
            raise NotImplementedError("the 'weights' sampler runs stacks whose layers are all "
                                      "feed-forward without readout (MLP) or all residual "
                                      "with a readout (ResNet); use method='gram'")
        self.resnet = resnet
        self.X = np.ascontiguousarray(x.T)                # (d, N)
        self.d, self.N = x.shape[1], x.shape[0]
        L = fin.depth
        n, d = self.n, self.d
        layout = [(_stream(0, _ROLE_W), (n, d)), (_stream(0, _ROLE_B), (n,))]
        hidden = range(1, L) if not resnet else range(1, L + 1)
        for l in hidden:
            layout += [(_stream(l, _ROLE_W), (n, n)), (_stream(l, _ROLE_B), (n,))]
        if want_ntk:
            layout.append((_stream(L if not resnet else L + 1, _ROLE_W), (n,)))
        self.layout = dict(layout)
        self._local = threading.local()

    def _workspace(self):
        """This thread's arrays, reused by every network it runs (``_Draws``: fresh arrays
        page-fault): states h, phi(h) and the products (n, N); phi'(h)^T of each layer and the
        transposed gradient and product (N, n) for the NTK; the weights' ``store``."""
        ws = getattr(self._local, "ws", None)
        if ws is None:
            n, N, L = self.n, self.N, self.fin.depth
            ws = {"h": np.empty((n, N)), "P": np.empty((n, N)), "y": np.empty((n, N)),
                  "store": {}}
            if self.want_ntk:
                ws.update(D=[np.empty((N, n)) for _ in range(L)], gT=np.empty((N, n)),
                          yT=np.empty((N, n)))
            self._local.ws = ws
        return ws

    def run(self, keys, rec_out, split=True, budget=_W_BUDGET):
        """NNGP estimator, NTK estimator (or None); fills rec_out (R, N, N) if given.

        ``split``: the fill and elementwise passes over ``_parts()`` threads; ``budget``:
        bytes of weight matrices kept for the backward pass (``_Draws``)."""
        fin, n, N, d = self.fin, self.n, self.N, self.d
        st = fin.stack
        pt = fin.point
        sw2, sb2, K0 = fin.sw2, fin.sb2, fin.K0
        # NTK factors of each Dense: its forward Gram (NTK parameterization) or, standard,
        # ntk_w / n P^T P + ntk_b (gradients with respect to the unscaled parameters)
        kinc = st.ntk_is_k_increment
        nw, nb = st.ntk_w, st.ntk_b
        L = fin.depth
        slots = self.slots
        want = self.want_ntk
        ws = self._workspace()
        draws = _Draws(keys, self.layout, keep=want, split=split, budget=budget,
                       store=ws["store"])
        # h, phi(h) and the product y are overwritten layer by layer; phi'(h)^T (transposed:
        # so is the backward pass) has one array per layer, kept for the backward pass
        h, P, y = ws["h"], ws["P"], ws["y"]
        Dk = iter(ws["D"]) if want else None
        D = next(Dk) if want else P
        Ds = [] if want else None
        Gs = [K0]                                    # forward Grams of each dense input
        # first dense layer (explicit W_in / W_0): the stem
        s0, t0 = st.stem
        np.matmul(draws[_stream(0, _ROLE_W)], self.X, out=y)
        _dense_act_split(y, draws[_stream(0, _ROLE_B)], math.sqrt(s0 / d), math.sqrt(t0), 0.0,
                         False, pt, h, P, D, want, split)
        c_w = [math.sqrt(s / n) for s in sw2]
        c_b = [math.sqrt(t) for t in sb2]
        Fs = [fin.T0]                                # NTK factors of each dense input
        if not self.resnet:
            if rec_out is not None and slots[0] >= 0:
                rec_out[slots[0]] = K0
            for l in range(1, L + 1):
                if want:
                    Ds.append(D)                     # phi'(h_l)^T
                G = _gram_np(P, sw2[l - 1] / n, sb2[l - 1])       # G_l
                Gs.append(G)
                if want:
                    Fs.append(G if kinc else _gram_np(P, nw[l - 1] / n, nb[l - 1]))
                if rec_out is not None and slots[l] >= 0:
                    rec_out[slots[l]] = G
                if l == L:
                    break
                np.matmul(draws[_stream(l, _ROLE_W)], P, out=y)     # W_l phi(h_l)
                D = next(Dk) if want else P
                _dense_act_split(y, draws[_stream(l, _ROLE_B)], c_w[l - 1], c_b[l - 1], 0.0,
                                 False, pt, h, P, D, want, split)
            nngp = Gs[-1]
            if not want:
                return nngp, None
            # backward, transposed (module docstring): delta_L = sqrt(sw2/n) w (.) phi'(h_L),
            # delta_l = phi'(h_l) (.) W_l^T ...; deltaT = delta^T (N, n)
            w = draws[_stream(L, _ROLE_W)]
            deltaT, yT = ws["gT"], ws["yT"]
            deltaT[:] = w[None, :]
            _backprop_split(deltaT, Ds[L - 1], c_w[L - 1], deltaT, False, split)
            ntk = Fs[L].copy()                       # readout: G_L (.) 1
            for l in range(L - 1, 0, -1):
                ntk += Fs[l] * _gram_t(deltaT)
                np.matmul(deltaT, draws[_stream(l, _ROLE_W)], out=yT)  # (W_l^T delta)^T
                _backprop_split(yT, Ds[l - 1], c_w[l - 1], deltaT, False, split)
            ntk += Fs[0] * _gram_t(deltaT)
            return nngp, ntk
        # ResNet: h = h_0 now; P = phi(h_0), D = phi'(h_0)
        if rec_out is not None and slots[0] >= 0:
            rec_out[slots[0]] = _gram_np(h, 1.0 / n, 0.0)
        alphas = fin.scale
        for l in range(1, L + 1):
            if want:
                Ds.append(D)                         # phi'(h_{l-1})^T
                if kinc:                             # alpha_l^2 (sw2_l P^T P / n + sb2_l)
                    Fs.append((alphas[l - 1] ** 2) * _gram_np(P, sw2[l - 1] / n, sb2[l - 1]))
                else:                                # standard: n_l P^T P / n + [b_l]
                    Fs.append(_gram_np(P, nw[l - 1] / n, nb[l - 1]))
            np.matmul(draws[_stream(l, _ROLE_W)], P, out=y)
            D = next(Dk) if want and l < L else P
            _dense_act_split(y, draws[_stream(l, _ROLE_B)], c_w[l - 1], c_b[l - 1],
                             alphas[l - 1], True, pt, h, P, D, want and l < L,
                             split)
            if rec_out is not None and slots[l] >= 0:
                rec_out[slots[l]] = _gram_np(h, 1.0 / n, 0.0)
        sv, bv = st.readout
        nngp = _gram_np(h, sv / n, bv)
        if not want:
            return nngp, None
        w = draws[_stream(L + 1, _ROLE_W)]
        gT, yT = ws["gT"], ws["yT"]
        gT[:] = math.sqrt(sv / n) * w[None, :]
        if tuple(st.readout_ntk) == (sv, bv):
            ntk = nngp.copy()                        # readout: sv h_L^T h_L / n + bv
        else:                                        # standard: a h_L^T h_L / n + c
            a_r, c_r = st.readout_ntk
            ntk = _gram_np(h, a_r / n, c_r)
        for l in range(L, 0, -1):                    # transposed, as the MLP's
            ntk += Fs[l] * _gram_t(gT)
            np.matmul(gT, draws[_stream(l, _ROLE_W)], out=yT)    # (W_l^T g)^T
            _backprop_split(yT, Ds[l - 1], alphas[l - 1] * c_w[l - 1], gT, True, split)
        ntk += Fs[0] * _gram_t(gT)
        return nngp, ntk

    def run_many(self, keys, nngp_out, ntk_out=None, rec_out=None):
        """Samples with keys ``keys`` (B, 2): nngp_out[k], ntk_out[k] (if given) and
        rec_out[k] (if given) of sample k.

        With B > 1 and ``_parts() > 1``, ``min(B, _parts())`` threads (a pool's and this one)
        take the samples in turn, each run serially (``split=False``) with its share of the
        kept-weights budget; call it under ``blas_threads(1)``.  Each sample's numbers are those
        of ``run``: they do not depend on which thread runs it, nor on B.
        """
        B = keys.shape[0]
        workers = min(B, _parts())

        def one(k, split, budget):
            a, b = self.run(keys[k], None if rec_out is None else rec_out[k], split, budget)
            nngp_out[k] = a
            if ntk_out is not None:
                ntk_out[k] = b

        if workers <= 1:
            for k in range(B):
                one(k, True, _W_BUDGET)
            return
        lock = threading.Lock()
        nxt = [0]
        budget = _W_BUDGET // workers

        def worker():
            try:
                while True:
                    with lock:
                        k = nxt[0]
                        nxt[0] += 1
                    if k >= B:
                        return
                    one(k, False, budget)
            except BaseException:            # an error or Ctrl-C: the other threads stop too
                with lock:
                    nxt[0] = B
                raise

        futures = [_pool(workers).submit(worker) for _ in range(workers - 1)]
        try:
            worker()
        finally:
            for f in futures:
                f.result()


_SAMPLE_POOL = (0, None)          # (threads, pool)


def _pool(workers):
    """A thread pool with at least ``workers`` threads (for ``run_many``)."""
    global _SAMPLE_POOL
    if _SAMPLE_POOL[0] < workers:
        from concurrent.futures import ThreadPoolExecutor
        _SAMPLE_POOL = (workers, ThreadPoolExecutor(max_workers=workers,
                                                    thread_name_prefix="kernels-ws"))
    return _SAMPLE_POOL[1]


def sample_parallel(samples):
    """True when ``run_many`` runs several samples at once (then BLAS should use one thread)."""
    return samples > 1 and _parts() > 1


def blas_threads(samples):
    """Context manager limiting BLAS's threads for a weights-sampler run of ``samples``
    networks: 1 when the samples run in parallel (``sample_parallel``), else ``_parts()``, so
    that numba's threads and BLAS's do not multiply (threadpoolctl)."""
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=1 if sample_parallel(samples) else _parts(),
                             user_api="blas")
