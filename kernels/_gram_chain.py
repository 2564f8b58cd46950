"""The Gram-chain sampler of kernels.montecarlo (``method="gram"``): exact in law for the
forward pass, O(n N^2 + N^3) per layer.

Given ``phi(h)`` (n, N), the rows of ``sqrt(sw2/n) W phi(h) + sqrt(sb2) b`` are iid ``N(0, G)``
with ``G = sw2 phi(h)^T phi(h) / n + sb2`` (N, N), so a layer is sampled as ``Z U`` with Z an
(n, N) standard normal matrix and ``U^T U = G`` (kernels/_linalg.py), the finite-width Markov
chain of Li, Nica & Roy (2022, theory/sde.md §2.1).

The network is the engine's per-layer description (``architectures._Stack``, read at finite
width by ``montecarlo._finite``): the stem gives the first hidden layer's covariance ``K0``;
layer ``l`` (1..L) is

* feed-forward (``u_l = 0``, MLP): the next hidden layer is ``scale_l Z U(G_l)``; the layer's
  recorded Gram is ``G_l`` itself (the covariance of the next layer given this one);
* residual (``u_l = 1``, ResNet): ``h += scale_l Z U(G_l)`` (``scale_l = alpha_l``); the
  recorded Gram is the residual stream's ``h^T h / n``.

The NNGP estimator is the last ``G_L`` (no readout: MLP) or ``sv h^T h / n + bv`` (readout).
Layer ``l`` draws stream ``4 l + 2`` (stream 2: the first hidden layer), as the "weights"
sampler's streams are numbered, so both samplers give the same law from one seed.
The activation enters as its compiled form ``p`` (kernels/_pointwise.py), so each sampler is
compiled (and cached) once per activation kind with phi inlined.
"""
import sys

import numba
import numpy as np
from numba import prange

from ._linalg import _SMALL_N, _chol2, _chol_upper, _mul_upper
from . import _pointwise as _pw
from ._pointwise import phi
from ._random import _base, _fill, _normal_pair

_CHUNK = 8          # samples per parallel task (workspace allocated once per task)


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _gram(P, G, scale, shift):
    """G = scale P^T P + shift (symmetric); rows of P summed in a fixed order, 8 at a time."""
    n, N = P.shape
    for a in range(N):
        for b in range(N):
            G[a, b] = 0.0
    n8 = n - n % 8
    for r in range(0, n8, 8):
        p0, p1, p2, p3 = P[r], P[r + 1], P[r + 2], P[r + 3]
        p4, p5, p6, p7 = P[r + 4], P[r + 5], P[r + 6], P[r + 7]
        for a in range(N):
            a0, a1, a2, a3 = p0[a], p1[a], p2[a], p3[a]
            a4, a5, a6, a7 = p4[a], p5[a], p6[a], p7[a]
            ga = G[a]
            if N <= _SMALL_N:
                for b in range(a, N):
                    ga[b] += ((a0 * p0[b] + a1 * p1[b] + a2 * p2[b] + a3 * p3[b])
                              + (a4 * p4[b] + a5 * p5[b] + a6 * p6[b] + a7 * p7[b]))
            else:               # full rows: fixed-length loops vectorise better than triangles
                for b in range(N):
                    ga[b] += ((a0 * p0[b] + a1 * p1[b] + a2 * p2[b] + a3 * p3[b])
                              + (a4 * p4[b] + a5 * p5[b] + a6 * p6[b] + a7 * p7[b]))
    for r in range(n8, n):
        pr = P[r]
        for a in range(N):
            pa = pr[a]
            ga = G[a]
            for b in range(a, N):
                ga[b] += pa * pr[b]
    for a in range(N):
        for b in range(a, N):
            v = scale * G[a, b] + shift
            G[a, b] = v
            G[b, a] = v


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _apply_phi(pt, H, P):
    n, N = H.shape
    for r in range(n):
        for c in range(N):
            P[r, c] = phi(pt, H[r, c])


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _gram_sample(k1, k2, resid, scale, readout, n, U0, K0, sw2, sb2, sv, bv, pt, slots,
                 est, rec, Z, H, P, G, U, A):
    """One sample of the gram chain, general N; est (N, N), rec (R, N, N); the rest is scratch."""
    N = U0.shape[0]
    L = slots.shape[0] - 1
    Zf = Z.reshape(n * N)
    _fill(k1, k2, 4 * 0 + 2, Zf)
    _mul_upper(Z, U0, H, False)                         # first hidden layer (MLP h_1, ResNet h_0)
    if slots[0] >= 0:
        if resid[0]:
            _gram(H, G, 1.0 / n, 0.0)
            rec[slots[0]] = G
        else:
            rec[slots[0]] = K0
    for l in range(1, L + 1):
        _apply_phi(pt, H, P)
        _gram(P, G, sw2[l - 1] / n, sb2[l - 1])         # covariance of the layer's rows
        if resid[l - 1]:
            _chol_upper(G, U, A)
            al = scale[l - 1]
            for i in range(N):
                for j in range(N):
                    U[i, j] *= al
            _fill(k1, k2, 4 * l + 2, Zf)
            _mul_upper(Z, U, H, True)                   # h_l = h_{l-1} + alpha Z U
            if slots[l] >= 0:
                _gram(H, G, 1.0 / n, 0.0)
                rec[slots[l]] = G
        else:
            if slots[l] >= 0:
                rec[slots[l]] = G                       # G_l
            if l == L and not readout:
                est[:, :] = G
                return
            _chol_upper(G, U, A)
            al = scale[l - 1]
            if al != 1.0:
                for i in range(N):
                    for j in range(N):
                        U[i, j] *= al
            _fill(k1, k2, 4 * l + 2, Zf)
            _mul_upper(Z, U, H, False)                  # h_{l+1} = Z U
    _gram(H, G, sv / n, bv)
    est[:, :] = G


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def _gram_chain(keys, resid, scale, readout, n, U0, K0, sw2, sb2, sv, bv, pt, slots, est, rec):
    """The gram sampler for a block of samples, general N (tasks of _CHUNK samples).

    keys (B, 2) uint64.  resid, scale, sw2, sb2 (L,): per-layer kind, finite-width multiplier
    and variances of the layer's Dense (``_Stack``); readout:
    whether (sv, bv) give the estimator.  U0: upper factor of the first hidden layer's
    covariance K0.  slots (L + 1,): record slot of layer l, or -1.  est (B, N, N) gets the NNGP
    estimator, rec (B, R, N, N) the recorded Grams.
    """
    B = keys.shape[0]
    N = U0.shape[0]
    for t in prange((B + _CHUNK - 1) // _CHUNK):
        Z = np.empty((n, N))
        H = np.empty((n, N))
        P = np.empty((n, N))
        G = np.empty((N, N))
        U = np.empty((N, N))
        A = np.empty((N, N))
        for s in range(t * _CHUNK, min(B, (t + 1) * _CHUNK)):
            _gram_sample(keys[s, 0], keys[s, 1], resid, scale, readout, n, U0, K0, sw2, sb2,
                         sv, bv, pt, slots, est[s], rec[s], Z, H, P, G, U, A)


# ----------------------------------------------------------------------------------------------
# N = 2: everything fused and vectorised (the per-layer path workhorse)
# ----------------------------------------------------------------------------------------------
@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _pairs_into(k1, k2, stream, n, z):
    """z[:n], z[n:2n] <- the n normal pairs of ``stream`` (the layout of ``_fill``)."""
    base = _base(stream)
    for i in range(n):
        a, b = _normal_pair(k1, k2, base + np.uint64(2 * i))
        z[i] = a
        z[n + i] = b


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _sums3(x, y, n, acc):
    """(x.x, x.y, y.y) over n entries with 8 fixed partial sums each (vectorises; the order does
    not depend on the machine).  acc: scratch (3, 8)."""
    a, b, c = acc[0], acc[1], acc[2]
    for k in range(8):
        a[k] = 0.0
        b[k] = 0.0
        c[k] = 0.0
    n8 = n - n % 8
    for i in range(0, n8, 8):
        for k in range(8):
            xi = x[i + k]
            yi = y[i + k]
            a[k] += xi * xi
            b[k] += xi * yi
            c[k] += yi * yi
    for i in range(n8, n):
        a[0] += x[i] * x[i]
        b[0] += x[i] * y[i]
        c[0] += y[i] * y[i]
    return (((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])),
            ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7])),
            ((c[0] + c[1]) + (c[2] + c[3])) + ((c[4] + c[5]) + (c[6] + c[7])))


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _affine2(z, n, l11, l21, l22, alpha, h):
    """h[:n] += alpha l11 z1,  h[n:] += alpha (l21 z1 + l22 z2)   (z1 = z[:n], z2 = z[n:])."""
    for i in range(n):
        z1 = z[i]
        z2 = z[n + i]
        h[i] += alpha * (l11 * z1)
        h[n + i] += alpha * (l21 * z1 + l22 * z2)


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _set2(z, n, l11, l21, l22, h):
    for i in range(n):
        z1 = z[i]
        z2 = z[n + i]
        h[i] = l11 * z1
        h[n + i] = l21 * z1 + l22 * z2


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _phi2(pt, h, w):
    for i in range(h.shape[0]):
        w[i] = phi(pt, h[i])


@numba.njit(inline="always", cache=True)
def _put3(out, a, b, c):
    out[0] = a
    out[1] = b
    out[2] = c


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _gram_sample2(k1, k2, resid, scale, readout, n, g0, sw2, sb2, sv, bv, pt, slots, est,
                  rec, z, h, w, acc):
    """One sample of the gram chain for N = 2; est (3,) and rec (R, 3) get (G11, G12, G22)."""
    L = slots.shape[0] - 1
    l11, l21, l22 = _chol2(g0[0], g0[1], g0[2])
    _pairs_into(k1, k2, 2, n, z)
    _set2(z, n, l11, l21, l22, h)
    if slots[0] >= 0:
        if resid[0]:
            a, b, c = _sums3(h[:n], h[n:], n, acc)
            _put3(rec[slots[0]], a / n, b / n, c / n)
        else:
            _put3(rec[slots[0]], g0[0], g0[1], g0[2])
    for l in range(1, L + 1):
        _phi2(pt, h, w)
        a, b, c = _sums3(w[:n], w[n:], n, acc)
        w2 = sw2[l - 1]
        b2 = sb2[l - 1]
        g11 = w2 / n * a + b2
        g12 = w2 / n * b + b2
        g22 = w2 / n * c + b2
        if resid[l - 1]:
            l11, l21, l22 = _chol2(g11, g12, g22)
            _pairs_into(k1, k2, 4 * l + 2, n, z)
            _affine2(z, n, l11, l21, l22, scale[l - 1], h)
            if slots[l] >= 0:
                a, b, c = _sums3(h[:n], h[n:], n, acc)
                _put3(rec[slots[l]], a / n, b / n, c / n)
        else:
            if slots[l] >= 0:
                _put3(rec[slots[l]], g11, g12, g22)
            if l == L and not readout:
                _put3(est, g11, g12, g22)
                return
            l11, l21, l22 = _chol2(g11, g12, g22)
            al = scale[l - 1]
            if al != 1.0:
                l11, l21, l22 = al * l11, al * l21, al * l22
            _pairs_into(k1, k2, 4 * l + 2, n, z)
            _set2(z, n, l11, l21, l22, h)
    a, b, c = _sums3(h[:n], h[n:], n, acc)
    _put3(est, sv / n * a + bv, sv / n * b + bv, sv / n * c + bv)


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath={"contract"})
def _gram_chain2(keys, resid, scale, readout, n, g0, sw2, sb2, sv, bv, pt, slots, est, rec):
    """The gram sampler for N = 2 (tasks of _CHUNK samples).  g0 = (g11, g12, g22) of the first
    hidden layer's covariance; est (B, 3) and rec (B, R, 3) hold (G11, G12, G22)."""
    B = keys.shape[0]
    for t in prange((B + _CHUNK - 1) // _CHUNK):
        z = np.empty(2 * n)
        h = np.empty(2 * n)
        w = np.empty(2 * n)
        acc = np.empty((3, 8))
        for s in range(t * _CHUNK, min(B, (t + 1) * _CHUNK)):
            _gram_sample2(keys[s, 0], keys[s, 1], resid, scale, readout, n, g0, sw2, sb2, sv, bv,
                          pt, slots, est[s], rec[s], z, h, w, acc)


def _gram_block(fin, n, keys, slots, R):
    """Run the gram sampler on a block of samples: est (B, N, N), rec (B, R, N, N)."""
    B = keys.shape[0]
    N = fin.K0.shape[0]
    st = fin.stack
    sv, bv = st.readout if st.readout is not None else (0.0, 0.0)
    readout = st.readout is not None
    fns = (sys.modules[__name__] if _pw.cacheable(fin.point) else
           _pw.uncached(sys.modules[__name__], ("_apply_phi", "_gram_sample", "_gram_chain",
                                                "_phi2", "_gram_sample2", "_gram_chain2")))
    if N == 2:
        g0 = np.array([fin.K0[0, 0], fin.K0[0, 1], fin.K0[1, 1]])
        est3 = np.empty((B, 3))
        rec3 = np.empty((B, max(R, 1), 3))
        fns._gram_chain2(keys, fin.resid, fin.scale, readout, n, g0, fin.sw2, fin.sb2, sv, bv,
                     fin.point, slots, est3, rec3)
        return _unpack3(est3), _unpack3(rec3[:, :R])
    U0 = np.empty((N, N))
    _chol_upper(fin.K0, U0, np.empty((N, N)))
    est = np.empty((B, N, N))
    rec = np.empty((B, max(R, 1), N, N))
    fns._gram_chain(keys, fin.resid, fin.scale, readout, n, U0, fin.K0, fin.sw2, fin.sb2, sv, bv,
                fin.point, slots, est, rec)
    return est, rec[:, :R]


def _unpack3(a):
    out = np.empty(a.shape[:-1] + (2, 2))
    out[..., 0, 0] = a[..., 0]
    out[..., 0, 1] = a[..., 1]
    out[..., 1, 0] = a[..., 1]
    out[..., 1, 1] = a[..., 2]
    return out
