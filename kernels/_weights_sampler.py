"""The weights sampler of kernels.montecarlo (``method="weights"``): explicit Gaussian weight
matrices, forward and (for the empirical NTK) backward passes, O(n^2 N) per layer.

The products use BLAS (numpy's, with its own threads); normal generation (kernels/_random.py)
and the elementwise passes are compiled and run on Python threads (``_run_split``).  The
activation enters as its compiled form (kernels/_pointwise.py).  Streams: matrix ``(layer,
role)`` of a sample is stream ``4 layer + role`` (roles W, b, Z = 0, 1, 2; the Gram chain uses
role Z), so a number depends only on (seed, sample, layer, role, index).

Empirical NTK (module docstring of kernels.montecarlo): a sum over dense layers of (forward Gram
of the layer's input, bias included) (.) (backward Gram of the gradient with respect to its
output).  Backward passes: ``delta_L = sqrt(sw2/n) w (.) phi'(h_L)``,
``delta_l = phi'(h_l) (.) (sqrt(sw2/n) W_l^T delta_{l+1})`` (MLP); ``g_L = sqrt(sv/n) w``,
``g_{l-1} = g_l + alpha_l sqrt(sw2/n) phi'(h_{l-1}) (.) (W_l^T g_l)`` (ResNet).
"""
import math

import numba
import numpy as np

from ._pointwise import dphi, phi
from ._random import _fill_part, _run_split

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
    """

    def __init__(self, keys, layout, keep=False):
        self.keys = keys
        self.layout = dict(layout)
        self.buffers = {}
        self.kept = {}
        self.budget = _W_BUDGET if keep else 0

    def __getitem__(self, stream):
        out = self.kept.get(stream)
        if out is not None:
            return out
        shape = self.layout[stream]
        size = int(np.prod(shape))
        if 8 * size <= self.budget:
            out = np.empty(size)
            self.budget -= 8 * size
            self.kept[stream] = out.reshape(shape)
        else:
            out = self.buffers.get(shape)
            if out is None:
                out = self.buffers[shape] = np.empty(size)
        _run_split(_fill_part, (out.size + 1) // 2, self.keys[0], self.keys[1],
                   np.int64(stream), out)
        return out.reshape(shape)


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _dense_act(y, bias, s, t, alpha, resid, pt, h, P, D, want_d, lo, hi):
    """Rows lo..hi-1: h = s y + t b (MLP) or h += alpha (s y + t b) (ResNet); P = phi(h),
    D = phi'(h)."""
    N = y.shape[1]
    for r in range(lo, hi):
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
            dr = D[r]
            for c in range(N):
                dr[c] = dphi(pt, hr[c])


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _backprop(y, D, scale, g, resid, lo, hi):
    """Rows lo..hi-1.  MLP: g = D (scale y); ResNet: g += D (scale y)   (y = W^T g_next)."""
    N = y.shape[1]
    for r in range(lo, hi):
        yr = y[r]
        dr = D[r]
        gr = g[r]
        for c in range(N):
            v = dr[c] * (scale * yr[c])
            gr[c] = gr[c] + v if resid else v


_SPLIT_ELEMENTS = 1 << 18   # elementwise passes smaller than this stay on one thread


def _dense_act_split(y, bias, s, t, alpha, resid, pt, h, P, D, want_d):
    _run_split(_dense_act, y.shape[0], y, bias, s, t, alpha, resid, pt, h, P, D, want_d,
               min_size=max(1, _SPLIT_ELEMENTS // y.shape[1]))


def _backprop_split(y, D, scale, g, resid):
    _run_split(_backprop, y.shape[0], y, D, scale, g, resid,
               min_size=max(1, _SPLIT_ELEMENTS // y.shape[1]))


def _gram_np(P, scale, shift):
    """scale P^T P + shift, exactly symmetric."""
    G = P.T @ P
    G = 0.5 * (G + G.T)
    return scale * G + shift


class _WeightsSampler:
    """One network sample at a time, explicit weights (forward, and backward for the NTK).

    The products use BLAS (numpy's, with its own threads); normal generation and the
    elementwise passes are compiled and run on Python threads (see ``_run_split``).
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
        self.layout = layout

    def run(self, keys, rec_out):
        """NNGP estimator, NTK estimator (or None); fills rec_out (R, N, N) if given."""
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
        draws = _Draws(keys, self.layout, keep=want)
        h = np.empty((n, N))
        P = np.empty((n, N))
        D = np.empty((n, N)) if want else P
        Ds = [] if want else None
        Gs = [K0]                                    # forward Grams of each dense input
        # first dense layer (explicit W_in / W_0): the stem
        s0, t0 = st.stem
        y = draws[_stream(0, _ROLE_W)] @ self.X
        _dense_act_split(y, draws[_stream(0, _ROLE_B)], math.sqrt(s0 / d), math.sqrt(t0), 0.0,
                         False, pt, h, P, D, want)
        c_w = [math.sqrt(s / n) for s in sw2]
        c_b = [math.sqrt(t) for t in sb2]
        Fs = [fin.T0]                                # NTK factors of each dense input
        if not self.resnet:
            if rec_out is not None and slots[0] >= 0:
                rec_out[slots[0]] = K0
            for l in range(1, L + 1):
                if want:
                    Ds.append(D)                     # phi'(h_l)
                G = _gram_np(P, sw2[l - 1] / n, sb2[l - 1])       # G_l
                Gs.append(G)
                if want:
                    Fs.append(G if kinc else _gram_np(P, nw[l - 1] / n, nb[l - 1]))
                if rec_out is not None and slots[l] >= 0:
                    rec_out[slots[l]] = G
                if l == L:
                    break
                y = draws[_stream(l, _ROLE_W)] @ P   # W_l phi(h_l)
                P = np.empty((n, N))
                D = np.empty((n, N)) if want else P
                _dense_act_split(y, draws[_stream(l, _ROLE_B)], c_w[l - 1], c_b[l - 1], 0.0,
                                 False, pt, h, P, D, want)
            nngp = Gs[-1]
            if not want:
                return nngp, None
            # backward: delta_L = sqrt(sw2/n) w (.) phi'(h_L), delta_l = phi'(h_l) (.) W_l^T ...
            w = draws[_stream(L, _ROLE_W)]
            delta = np.empty((n, N))
            _backprop_split(np.ascontiguousarray(np.broadcast_to(w[:, None], (n, N))),
                            Ds[L - 1], c_w[L - 1], delta, False)
            ntk = Fs[L].copy()                       # readout: G_L (.) 1
            for l in range(L - 1, 0, -1):
                ntk += Fs[l] * _gram_np(delta, 1.0, 0.0)
                y = draws[_stream(l, _ROLE_W)].T @ delta
                _backprop_split(y, Ds[l - 1], c_w[l - 1], delta, False)
            ntk += Fs[0] * _gram_np(delta, 1.0, 0.0)
            return nngp, ntk
        # ResNet: h = h_0 now; P = phi(h_0), D = phi'(h_0)
        if rec_out is not None and slots[0] >= 0:
            rec_out[slots[0]] = _gram_np(h, 1.0 / n, 0.0)
        alphas = fin.scale
        for l in range(1, L + 1):
            if want:
                Ds.append(D)                         # phi'(h_{l-1})
                if kinc:                             # alpha_l^2 (sw2_l P^T P / n + sb2_l)
                    Fs.append((alphas[l - 1] ** 2) * _gram_np(P, sw2[l - 1] / n, sb2[l - 1]))
                else:                                # standard: n_l P^T P / n + [b_l]
                    Fs.append(_gram_np(P, nw[l - 1] / n, nb[l - 1]))
            y = draws[_stream(l, _ROLE_W)] @ P
            P = np.empty((n, N))
            D = np.empty((n, N)) if want else P
            _dense_act_split(y, draws[_stream(l, _ROLE_B)], c_w[l - 1], c_b[l - 1],
                             alphas[l - 1], True, pt, h, P, D, want and l < L)
            if rec_out is not None and slots[l] >= 0:
                rec_out[slots[l]] = _gram_np(h, 1.0 / n, 0.0)
        sv, bv = st.readout
        nngp = _gram_np(h, sv / n, bv)
        if not want:
            return nngp, None
        w = draws[_stream(L + 1, _ROLE_W)]
        g = np.ascontiguousarray(np.broadcast_to(math.sqrt(sv / n) * w[:, None], (n, N)))
        if tuple(st.readout_ntk) == (sv, bv):
            ntk = nngp.copy()                        # readout: sv h_L^T h_L / n + bv
        else:                                        # standard: a h_L^T h_L / n + c
            a_r, c_r = st.readout_ntk
            ntk = _gram_np(h, a_r / n, c_r)
        for l in range(L, 0, -1):
            ntk += Fs[l] * _gram_np(g, 1.0, 0.0)
            y = draws[_stream(l, _ROLE_W)].T @ g
            _backprop_split(y, Ds[l - 1], alphas[l - 1] * c_w[l - 1], g, True)
        ntk += Fs[0] * _gram_np(g, 1.0, 0.0)
        return nngp, ntk
