"""Plain-NumPy NNGP / NTK recursions with per-layer variances and both parameterizations,
written straight from theory/kernels.md §2.2, §3.2 and §5b (no package code).

Variances: ``sw2``, ``sb2`` one per Dense layer (MLP: depth + 1, readout last; ResNet: input,
each block, readout); an ``sb2`` entry None is "no bias parameter".  ``maps(q1, q2, c) ->
(V, Vdot)`` from tests/_reference.py.  Kernels are computed on the stacked inputs
``[x1; x2]`` and the requested block returned, so cross kernels come from the same recursion.
"""
import numpy as np


def _bias(sb2):
    return [0.0 if b is None else b for b in sb2], [0.0 if b is None else 1.0 for b in sb2]


def _pairs(maps, K):
    q = np.diag(K)
    return maps(q[:, None], q[None, :], K)


def _block(K, T, n1, cross):
    sl = (slice(0, n1), slice(n1, None)) if cross else (slice(0, n1), slice(0, n1))
    return K[sl], T[sl]


def mlp(maps, x1, x2, sw2, sb2, param="ntk", widths=None, record=False):
    """NNGP, NTK of ``serial(Dense_0, phi, ..., phi, Dense_L)``; ``widths``: n_1..n_L (standard).
    With ``record``: lists of the per-layer (K_{l+1}, Theta_{l+1}), l = 0..L."""
    X = x1 if x2 is None else np.vstack([x1, x2])
    d = X.shape[1]
    L = len(sw2) - 1
    sb, hb = _bias(sb2)
    K0 = X @ X.T / d
    K = sw2[0] * K0 + sb[0]
    T = K.copy() if param == "ntk" else d * K0 + hb[0]
    Ks, Ts = [K], [T]
    for l in range(1, L + 1):
        V, Vd = _pairs(maps, K)
        Kn = sw2[l] * V + sb[l]
        if param == "ntk":
            T = Kn + sw2[l] * Vd * T
        else:
            T = widths[l - 1] * V + sw2[l] * Vd * T + hb[l]
        K = Kn
        Ks.append(K)
        Ts.append(T)
    n1 = x1.shape[0]
    if record:
        return [_block(k, t, n1, x2 is not None) for k, t in zip(Ks, Ts)]
    return _block(K, T, n1, x2 is not None)


def resnet(maps, x1, x2, sw2, sb2, alphas, param="ntk", width=None, record=False):
    """NNGP, NTK of the ResNet of kernels.md §3.1 (``sw2``, ``sb2``: input, blocks, readout).
    With ``record``: the residual stream (K_l, Theta_l), l = 0..L (before the readout)."""
    X = x1 if x2 is None else np.vstack([x1, x2])
    d = X.shape[1]
    L = len(alphas)
    sb, hb = _bias(sb2)
    K0 = X @ X.T / d
    K = sw2[0] * K0 + sb[0]
    T = K.copy() if param == "ntk" else d * K0 + hb[0]
    Ks, Ts = [K], [T]
    for l in range(1, L + 1):
        a2 = alphas[l - 1] ** 2
        V, Vd = _pairs(maps, K)
        dK = a2 * (sw2[l] * V + sb[l])
        if param == "ntk":
            T = T + dK + a2 * sw2[l] * Vd * T
        else:
            T = T + width * V + hb[l] + a2 * sw2[l] * Vd * T
        K = K + dK
        Ks.append(K)
        Ts.append(T)
    n1 = x1.shape[0]
    if record:
        return [_block(k, t, n1, x2 is not None) for k, t in zip(Ks, Ts)]
    Kout = sw2[-1] * K + sb[-1]
    Tout = Kout + sw2[-1] * T if param == "ntk" else width * K + hb[-1] + sw2[-1] * T
    return _block(Kout, Tout, n1, x2 is not None)


# ----------------------------------------------------------------------------------------------
# finite networks with explicit parameters, and their NTK by central differences
# ----------------------------------------------------------------------------------------------
def finite_params(draw, arch, sw2, sb2, n, d, param, alphas=None):
    """Trained parameters of one finite network from the sampler's normal draws.

    ``draw(layer, role, shape)`` returns the standard normals of the Monte Carlo streams
    (roles 0 = W, 1 = b).  Returns (params, scales): ``params`` is the list of arrays the NTK
    differentiates, ``scales`` the matching multipliers, so that the layer's actual weight is
    ``scale * param``.  NTK parameterization: params are the N(0, 1) variables and scales the
    standard deviations; standard: params are the actual weights (scale 1).  A bias with
    variance None is not a parameter; the readout bias is zero-valued (only its derivative
    counts)."""
    L = len(sw2) - 1 if arch == "mlp" else len(sw2) - 2
    dense = L + 1 if arch == "mlp" else L + 2
    params, scales = [], []
    for l in range(dense):
        m = d if l == 0 else n
        out = 1 if l == dense - 1 else n
        a = 1.0 if (arch == "mlp" or l in (0, dense - 1)) else alphas[l - 1]
        shape = (out, m) if out > 1 else (m,)
        zW = draw(l, 0, shape)
        sW = a * np.sqrt(sw2[l] / m)
        has_b = sb2[l] is not None
        sB = a * np.sqrt(0.0 if sb2[l] is None else sb2[l])
        zb = draw(l, 1, (out,)) if out > 1 else np.zeros(())
        if param == "ntk":
            params.append(zW.copy())
            scales.append(sW)
            params.append(zb.copy())
            scales.append(sB)          # variance None -> 0: no contribution
        else:
            params.append(sW * zW)
            scales.append(1.0)
            if has_b:
                params.append(np.array(sB * zb))     # an array even for the scalar readout
                scales.append(1.0)
            else:
                params.append(np.zeros_like(zb))
                scales.append(0.0)     # no bias parameter: its derivative is multiplied by 0
    return params, scales


def finite_forward(arch, phi, params, scales, x):
    """Outputs (N,) of the finite network (layer l uses params[2l], params[2l + 1])."""
    dense = len(params) // 2
    W = [scales[2 * l] * params[2 * l] for l in range(dense)]
    b = [scales[2 * l + 1] * params[2 * l + 1] for l in range(dense)]
    h = x @ W[0].T + b[0]
    if arch == "mlp":
        for l in range(1, dense - 1):
            h = phi(h) @ W[l].T + b[l]
        return phi(h) @ W[-1] + b[-1]
    for l in range(1, dense - 1):
        h = h + phi(h) @ W[l].T + b[l]
    return h @ W[-1] + b[-1]


def fd_ntk(forward, params, eps=1e-6):
    """sum over parameter entries of d f / d theta (x) d f / d theta (x'), central differences."""
    cols = []
    for p in params:
        flat = p.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            fp = forward(params)
            flat[i] = old - eps
            fm = forward(params)
            flat[i] = old
            cols.append((fp - fm) / (2 * eps))
    J = np.array(cols).T
    return J @ J.T


def draw_fn(seed):
    """The weights sampler's draws of sample 0 for ``seed``: ``draw(layer, role, shape)`` (its
    per-matrix streams, kernels._random._wnormals), to rebuild a sampled network in NumPy."""
    from kernels import _random as rnd, _weights_sampler as ws
    keys = rnd._sample_keys(np.random.SeedSequence(seed), 0, 1)[0]
    return lambda l, role, shape: rnd._wnormals(keys, ws._stream(l, role), shape).copy()


def _phi_table():
    import kernels as kn
    from scipy import special
    return {"relu": (kn.ReLU, lambda h: np.maximum(h, 0.0)), "erf": (kn.Erf, special.erf),
            "tanh": (kn.Tanh, np.tanh)}


PHI = _phi_table()
