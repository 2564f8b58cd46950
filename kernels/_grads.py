"""Derivatives of the NNGP and NTK with respect to the variances: a tangent (forward-mode)
recursion run inside numba next to the kernel recursion (theory/kernels.md §5b).

The engine works on plain per-layer arrays (``_Problem``): layer ``l`` maps::

    K'     = u_l K + v_l (sw2_l V(K) + sb2_l)
    Theta' = (u_l + v_l sw2_l Vdot(K)) Theta + ntk_w_l V(K) + ntk_b_l

(NTK parameterisation: ``ntk_w = v sw2``, ``ntk_b = v sb2``), after a stem
``K_0 = w0 K_in + b0``, ``Theta_0 = a0 K_in + c0`` (``K_in = x x'/d``) and before an optional
readout ``K = w K_L + b``, ``Theta = a K_L + c + w Theta_L``.  A *tangent* is one direction in
parameter space, given by the derivatives of every one of these numbers (``d sw2_l``,
``d sb2_l``, ``d ntk_w_l``, ``d ntk_b_l``, the stem's and the readout's); the engine carries
all tangents through the layer loop at once, so one pass gives the kernels and ``T``
directional derivatives.  ``_problem(net, d)`` is the only place that knows architectures.

Chain rule per layer, with ``(u, v) ~ N(0, [[q1, c], [c, q2]])`` and the partial derivatives
of the maps (``dV/dc = Vdot`` by Price's theorem)::

    dV     = V_q1 dq1 + V_q2 dq2 + Vdot dc
    dVdot  = Vdot_q1 dq1 + Vdot_q2 dq2 + Vdot_c dc
    dK'    = u dK + v (dsw2 V + sw2 dV + dsb2)
    dTheta'= (u + v sw2 Vdot) dTheta + v (dsw2 Vdot + sw2 dVdot) Theta + dntk_w V + ntk_w dV
             + dntk_b

**ABReLU family** (ReLU, leaky ReLU, abs, ...).  The state is the engine's signed gap
(``kernels._recursion``: ``eps = 1 - rho``, or ``-(1 + rho)`` near rho = -1) and its tangent is
``d eps`` in both cases (``d(eps - 2) = d eps``).  With ``s = sqrt(q1 q2)``, ``V = s G(theta)``,
``G = m cos(theta) + fac h(theta)``, ``h = sin(theta) - theta cos(theta)`` and
``d eps = sin(theta) d theta``::

    dV     = ds G - s Vdot d eps             (G' = -Vdot sin(theta): no division)
    dh     = theta d eps
    dVdot  = -fac d theta = -fac d eps / sin(theta)

and ``d eps'`` is the derivative of the engine's cancellation-free gap update
``eps' = (delta + s (beta eps - kappa h)) / sqrt(q1' q2')`` (or of ``1 + rho'`` near -1), so every
term is proportional to ``eps`` or ``d eps`` and keeps its relative accuracy near rho = +-1.
For identical inputs (and on the diagonal) ``eps = d eps = 0`` exactly, so the ``Vdot`` term is
0: the limit is taken analytically, nothing is differenced.

*Infinite derivatives.*  ``eps`` stays 0 only while the inputs stay exactly parallel.  In a
network whose layers have no bias (``bias_var = 0``), two parallel inputs of *different norms*
have ``eps = 0`` at every layer, but any bias separates them: ``eps ~ C sb2``, so
``theta ~ sqrt(sb2)`` and ``Vdot = m - fac theta`` has an infinite one-sided derivative with
respect to ``bias_var`` at 0.  The NTK's derivative with respect to ``bias_var`` is then
reported as ``-inf`` (the sign of ``-fac Theta d eps``); the NNGP's stays finite.  The same
holds at rho = -1 (antiparallel inputs).  No NaN is produced: products of a zero coefficient
and an infinite tangent are taken as 0 (the coefficient does not depend on the parameters).

**Smooth activations.**  The state is the covariance.  ``Erf`` uses closed forms
(``P = (1 + 2 b^2 q1)(1 + 2 b^2 q2)``, ``D = P - 4 b^4 c^2``)::

    V_q1 = -Vdot c b^2 / (1 + 2 b^2 q1)
    Vdot_q1 = -Vdot b^2 (1 + 2 b^2 q2) / D,      Vdot_c = 4 Vdot b^4 c / D

with ``1/D = (Vdot / (a^2 b^2 4/pi))^2`` taken from the engine's overflow-free ``Vdot``.  Other
activations (``Tanh``, ``Activation(fn)``) use the Gauss-Hermite rule of ``V`` with Price's
theorem for the variances and a fixed-correlation derivative for ``Vdot`` (only phi'' needed)::

    V_q1    = E[phi''(u) phi(v)] / 2
    Vdot_c  = E[phi''(u) phi''(v)]
    Vdot_q1 = (E[phi''(u) u phi'(v)] - c Vdot_c) / (2 q1)

(the last from ``Vdot = F(q1, q2, rho)``: ``dF/dq1 = E[phi''(u) u phi'(v)]/(2 q1)`` at fixed
rho, minus ``Vdot_c c / (2 q1)`` from rho's dependence on q1).  These are quadratures of the
exact derivatives, not derivatives of the quadrature: they agree with differences of
``net.kernels`` to the accuracy of the rule (about 1e-9 at variances of order 1 with the
default degree; at large variances, where ``Activation`` documents that the rule itself loses
accuracy, raise ``deg``).  ``Activation(fn)`` takes phi'' from its pointwise form (the central
difference of ``deriv``), good to about 1e-9 relative.  Zero-variance inputs are refused
(``run``).

*Ends of a ResNet* (per-layer variances).  The input Dense is a tangent seeded at the stem
(``d w0 = 1`` or ``d b0 = 1``; NTK parameterisation also ``d a0``, ``d c0``).  The readout's
derivatives are closed form, applied after the layer loop: with ``NNGP = sv K_L + bv`` and
``NTK = a K_L + c + sv Theta_L`` (NTK parameterisation ``(a, c) = (sv, bv)``; standard
``(n, [bv])``, kernels.md §5b), ``dNNGP/dsv = K_L``, ``dNNGP/dbv = 1``, ``dNTK/dsv = K_L +
Theta_L`` (standard: ``Theta_L``), ``dNTK/dbv = 1`` (standard: 0).

Inputs only (no ``K0``); no rescaling of inputs of extreme norm (the kernel engine's
``_homogeneous_rescale``): norms between about 1e-70 and 1e70.

Cost (``benchmarks/kernel_grads.py``, N = 1000, depth 100, busy 2-core machine): about 2-2.5x
``net.kernels(x)`` for the two scalar-variance tangents, ReLU with bias and Erf alike.  The
ABReLU loop keeps a block's state and per-entry coefficients in one buffer with compile-time
field offsets (LLVM then needs no runtime alias checks and vectorises): one pass per layer
for the values, which stores the coefficients every tangent needs, and one division-free pass
per layer and tangent.  Per-layer variances use one tangent per Dense layer (forward mode); a
tangent's passes start at the first layer it moves, so the time is about ``L^2 / 2``
tangent-layer passes, ``O(N^2 L^2)``, and the result itself is ``O(N^2 L)`` memory.  (A reverse
sweep per block would give ``O(N^2 L)`` time; not implemented.)
"""
import math
from dataclasses import dataclass
from typing import Optional

import numba
import numpy as np
from numba import prange

from . import _checks, _gram, _recursion as _rec
from .activations import _erf_pair
from ._fastmath import acos1m_unit, gaps_of, h_of, near_minus_one, rho_of, signed_gap

__all__ = ["KernelGrads", "kernel_grads"]

_BLOCK = 256


@dataclass(frozen=True)
class KernelGrads:
    """Kernels and their derivatives with respect to the variances.

    Attributes
    ----------
    nngp, ntk : dict
        ``{"weight_var": dK, "bias_var": dK}``: derivatives of the NNGP (NTK) with respect to
        that variance, each shaped like the kernel (N1, N2) for a scalar variance, or
        (n_layers, N1, N2) for per-layer variances (entry ``l``: the derivative with respect
        to Dense layer ``l``'s variance).  MLP: ``n_layers = depth + 1`` (input first,
        readout last).  ResNet: ``n_layers = depth + 2`` in the order of
        ``ResNet(weight_var=[depth + 2 values])``: input Dense, each block's branch Dense,
        readout Dense (also when the per-layer value was given as ``depth`` block values plus
        ``input_*_var`` / ``readout_*_var``); a scalar ResNet variance is the branch variance
        of every block, and its derivative is the sum over the blocks only.  A derivative that is infinite (a one-sided derivative at
        ``bias_var = 0``, see ``kernels._grads``) is ``-inf`` or ``inf``, never NaN.
    kernels : Kernels
        The NNGP and NTK themselves (computed in the same pass; equal to ``net.kernels`` to
        rounding).
    """

    nngp: dict
    ntk: dict
    kernels: object


@dataclass(frozen=True)
class _Problem:
    """Plain arrays for the engine (see the module docstring).

    Layer arrays are (L,); tangent arrays (T, L); stem = (w0, b0, a0, c0), readout
    (w, b, a, c) or None, their tangents (T, 4).  ``keys``: name -> (first tangent, count,
    per_layer) describing how tangents are returned."""

    activation: object
    u: np.ndarray
    v: np.ndarray
    sw2: np.ndarray
    sb2: np.ndarray
    ntk_w: np.ndarray
    ntk_b: np.ndarray
    stem: tuple
    readout: Optional[tuple]
    d_sw2: np.ndarray
    d_sb2: np.ndarray
    d_ntk_w: np.ndarray
    d_ntk_b: np.ndarray
    d_stem: np.ndarray
    d_readout: np.ndarray
    keys: dict


def _problem(net, d):
    """The glue from an architecture to the engine's arrays: the only function here that
    reads an architecture (``net._stack()``, the per-layer description of the kernel engine).

    The differentiated parameters are the Dense layers that ``net.weight_var`` and
    ``net.bias_var`` describe.  A scalar variance gives one tangent (the sum of the per-layer
    ones, chain rule); a per-layer variance (a sequence) gives one tangent per Dense layer.

    * MLP: ``depth + 1`` Dense layers, layer 0 = the input Dense (the stem), layer p = stack
      layer p - 1 (the last one is the output layer).
    * ResNet, scalar variance: the Dense inside each of the ``depth`` branches (the input and
      readout Dense have their own scalar variances, ``input_*_var`` / ``readout_*_var``,
      not differentiated).  ResNet, per-layer variance: ``depth + 2`` tangents in the order
      of ``ResNet(weight_var=[depth + 2 values])``: the input Dense (the stem), each block's
      branch Dense, the readout Dense (whose derivatives the driver applies in closed form).

    NTK parameterisation: the NTK coefficients ntk_w = v sw2, ntk_b = v sb2, the stem's
    (a0, c0) = (w0, b0) and the readout's (a, c) = (w, b) move with the variances; standard
    parameterisation: they are widths and 0/1 flags, which do not.  ``d``: the input dimension
    (the standard stem's a0)."""
    try:
        stack = net._stack(d=d)
    except TypeError:                 # a stack without the standard parameterization
        stack = net._stack()
    L = stack.u.shape[0]
    u = np.ascontiguousarray(stack.u, dtype=np.float64)
    v = np.ascontiguousarray(stack.v, dtype=np.float64)
    sw2 = np.ascontiguousarray(np.broadcast_to(np.asarray(stack.sw2, dtype=np.float64), (L,)))
    sb2 = np.ascontiguousarray(np.broadcast_to(np.asarray(stack.sb2, dtype=np.float64), (L,)))
    ntk_w = getattr(stack, "ntk_w", None)
    ntk_b = getattr(stack, "ntk_b", None)
    ntk_w = v * sw2 if ntk_w is None else np.broadcast_to(np.asarray(ntk_w, float), (L,))
    ntk_b = v * sb2 if ntk_b is None else np.broadcast_to(np.asarray(ntk_b, float), (L,))
    w0, b0 = (float(z) for z in stack.stem)
    a0, c0 = (float(z) for z in getattr(stack, "stem_ntk", None) or (w0, b0))
    readout = None
    if stack.readout is not None:
        w, b = (float(z) for z in stack.readout)
        a, c = (float(z) for z in getattr(stack, "readout_ntk", None) or (w, b))
        readout = (w, b, a, c)
    ntkp = getattr(net, "parameterization", "ntk") == "ntk"
    has_stem = stack.readout is None              # MLP: the stem is one of the Dense layers
    # slots: ("stem",), ("layer", l), ("readout",)
    layer_slots = [("layer", l) for l in range(L)]
    keys, rows = {}, []
    for name, field in (("weight_var", 0), ("bias_var", 1)):
        per_layer = np.ndim(getattr(net, name)) > 0
        if has_stem:
            slots = [("stem",)] + layer_slots
        elif per_layer:
            slots = [("stem",)] + layer_slots + [("readout",)]
        else:
            slots = layer_slots
        groups = [[s] for s in slots] if per_layer else [slots]
        keys[name] = (len(rows), len(groups), per_layer)
        rows += [(field, g) for g in groups]
    T = len(rows)
    d_sw2, d_sb2, d_ntk_w, d_ntk_b = (np.zeros((T, L)) for _ in range(4))
    d_stem = np.zeros((T, 4))
    d_readout = np.zeros((T, 4))
    for k, (field, group) in enumerate(rows):
        for slot in group:
            if slot[0] in ("stem", "readout"):
                dend = d_stem if slot[0] == "stem" else d_readout
                dend[k, field] = 1.0
                dend[k, 2 + field] = 1.0 if ntkp else 0.0
                continue
            layer = slot[1]
            (d_sw2 if field == 0 else d_sb2)[k, layer] = 1.0
            if ntkp:
                (d_ntk_w if field == 0 else d_ntk_b)[k, layer] = v[layer]
    return _Problem(stack.activation, u, v, sw2, sb2, np.ascontiguousarray(ntk_w),
                    np.ascontiguousarray(ntk_b), (w0, b0, a0, c0), readout, d_sw2, d_sb2,
                    d_ntk_w, d_ntk_b, d_stem, d_readout, keys)


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------
def kernel_grads(net, x1, x2=None):
    """``net.kernel_grads``: see ``_KernelMethods.kernel_grads``."""
    x1 = _checks.inputs(x1, "x1")
    if x2 is not None:
        x2 = _checks.inputs(x2, "x2", d=x1.shape[1])
    return run(_problem(net, x1.shape[1]), x1, x2)


def run(prob, x1, x2=None):
    """Run the engine on a ``_Problem``; returns ``KernelGrads``."""
    from .architectures import Kernels, _check_finite
    act = prob.activation
    kind = act._engine()
    sym = x2 is None
    xb = x1 if sym else x2
    n1, n2 = x1.shape[0], xb.shape[0]
    d = x1.shape[1]
    L = prob.u.shape[0]
    T = prob.d_sw2.shape[0]
    w0, b0, a0, c0 = prob.stem
    qa_in = _gram.row_dots(x1) / d
    qb_in = qa_in if sym else _gram.row_dots(xb) / d
    if b0 == 0.0 and (np.any(qa_in == 0.0) or np.any(qb_in == 0.0)):
        which = "x1" if np.any(qa_in == 0.0) else "x2"
        row = int(np.flatnonzero((qa_in if which == "x1" else qb_in) == 0.0)[0])
        raise ValueError(f"kernel_grads: {which}[{row}] has zero norm and the input layer has "
                         f"no bias: the derivatives of the kernel maps at a zero variance are "
                         f"infinite or undefined; remove the zero input or give the input "
                         f"layer a bias")
    nb = 8.0 * (L + 1) * (n1 + n2) * (2 * T + 4) + 8.0 * n1 * n2 * (2 * T + 4)
    _checks.memory_guard(nb, f"kernel gradients of {n1} x {n2} entries with {T} tangents "
                          f"through {L} layers")
    G = _gram.gram(x1, None if sym else xb)
    gscale = 1.0 / d
    consts = np.array([w0, b0, a0, c0], dtype=np.float64)
    lay = np.ascontiguousarray(np.stack([prob.u, prob.v * prob.sw2, prob.v * prob.sb2,
                                         prob.ntk_w, prob.ntk_b]))
    dlay = np.ascontiguousarray(np.stack([np.zeros((T, L)), prob.v * prob.d_sw2,
                                          prob.v * prob.d_sb2, prob.d_ntk_w, prob.d_ntk_b]))
    dstem = np.ascontiguousarray(prob.d_stem, dtype=np.float64)
    start = _first_layers(dstem, dlay)
    K = np.empty((n1, n2))
    Th = np.empty((n1, n2))
    dK = np.empty((T, n1, n2))
    dTh = np.empty((T, n1, n2))
    if kind[0] == "abrelu":
        _, a, b = kind
        tabs_a = _diag_abrelu(qa_in, consts, dstem, lay, dlay, a, b)
        tabs_b = tabs_a if sym else _diag_abrelu(qb_in, consts, dstem, lay, dlay, a, b)
        zin = np.empty((n1, n2))
        scratch = np.empty((n1, n2))
        from .architectures import _REFINE_EPS, _unit_rows
        ua = _unit_rows(x1)
        ub = ua if sym else _unit_rows(xb)
        _rec._init_gap(sym, G, gscale, qa_in, qb_in, 1.0, 0.0, ua, ub, _REFINE_EPS, zin,
                       scratch)
        del scratch
        _abrelu_engine(sym, zin, G, gscale, qa_in, qb_in, consts, dstem, lay, dlay, start,
                       *tabs_a, *tabs_b, a, b, K, Th, dK, dTh)
    else:
        dmap, params = _smooth_dmap(act)
        tabs_a = _diag_smooth(dmap, params, qa_in, consts, dstem, lay, dlay)
        tabs_b = tabs_a if sym else _diag_smooth(dmap, params, qb_in, consts, dstem, lay, dlay)
        _smooth_engine(dmap, params, sym, G, gscale, consts, dstem, lay, dlay, start,
                       *tabs_a, *tabs_b, K, Th, dK, dTh)
    if prob.readout is not None:
        w, bb, ar, cr = prob.readout
        dr = np.asarray(prob.d_readout, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            for k in range(T):
                dw, db, da, dc = dr[k]
                wdT = w * dTh[k] if w != 0.0 else 0.0
                dTh[k] = da * K + ar * dK[k] + dc + dw * Th + wdT
                dK[k] = dw * K + w * dK[k] + db
            K2 = w * K + bb
            Th = ar * K + cr + w * Th
            K = K2
    stack_like = _StackName(act)
    _check_finite(stack_like, (("NNGP", K), ("NTK", Th)))
    for name, arr in (("NNGP", dK), ("NTK", dTh)):
        if np.isnan(arr).any():
            raise FloatingPointError(f"the derivative of the {name} has NaN entries (an "
                                     f"overflow, or two infinite one-sided derivatives of "
                                     f"opposite signs); reduce the depth or adjust the "
                                     f"variances")
    out_k, out_t = {}, {}
    for name, (k0, cnt, per_layer) in prob.keys.items():
        if per_layer:
            out_k[name], out_t[name] = dK[k0:k0 + cnt], dTh[k0:k0 + cnt]
        else:
            out_k[name], out_t[name] = dK[k0], dTh[k0]
    return KernelGrads(nngp=out_k, ntk=out_t, kernels=Kernels(nngp=K, ntk=Th))


def _first_layers(dstem, dlay):
    """For each tangent, the first layer whose coefficients it moves (0 if it moves the stem;
    L if none): before it the tangent state is exactly zero and its passes are skipped, so
    per-layer variances cost about L^2 / 2 tangent-layer passes, not L^2."""
    T, L = dstem.shape[0], dlay.shape[2]
    start = np.full(T, L, dtype=np.int64)
    for k in range(T):
        if np.any(dstem[k] != 0.0):
            start[k] = 0
        else:
            nz = np.flatnonzero(np.any(dlay[:, k, :] != 0.0, axis=0))
            if nz.size:
                start[k] = nz[0]
    return start


@dataclass(frozen=True)
class _StackName:
    activation: object


# ----------------------------------------------------------------------------------------------
# diagonals: q_l, Theta_l and their tangents, layers 0..L
# ----------------------------------------------------------------------------------------------
def _diag_abrelu(q_in, consts, dstem, lay, dlay, a, b):
    L = lay.shape[1]
    T = dstem.shape[0]
    n = q_in.shape[0]
    q = np.empty((L + 1, n))
    t = np.empty((L + 1, n))
    dq = np.empty((L + 1, T, n))
    dt = np.empty((L + 1, T, n))
    _abrelu_diag(q_in, consts, dstem, lay, dlay, 0.5 * (a * a + b * b), q, t, dq, dt)
    sq = np.sqrt(q)
    inv = np.where(sq > 0.0, 1.0 / np.where(sq > 0.0, sq, 1.0), 0.0)
    dsq = 0.5 * dq * inv[:, None, :]
    return q, t, dq, dt, sq, inv, np.ascontiguousarray(dsq)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _stem_diag(q_in, consts, dstem, q, t, dq, dt):
    """Row 0 of the diagonal tables: the stem (K = w0 q + b0, Theta = a0 q + c0) and its
    tangents (``dstem[k]`` = derivatives of w0, b0, a0, c0 along tangent k)."""
    w0, b0, a0, c0 = consts[0], consts[1], consts[2], consts[3]
    for i in range(q_in.shape[0]):
        q[0, i] = w0 * q_in[i] + b0
        t[0, i] = a0 * q_in[i] + c0
        for k in range(dstem.shape[0]):
            dq[0, k, i] = dstem[k, 0] * q_in[i] + dstem[k, 1]
            dt[0, k, i] = dstem[k, 2] * q_in[i] + dstem[k, 3]


@numba.njit(cache=True, error_model="numpy")
def _abrelu_diag(q_in, consts, dstem, lay, dlay, m, q, t, dq, dt):
    """V(q, q, q) = m q, Vdot = m on the diagonal."""
    n = q_in.shape[0]
    L = lay.shape[1]
    T = dstem.shape[0]
    _stem_diag(q_in, consts, dstem, q, t, dq, dt)
    for l in range(L):
        u, mu, g, nw, nb = lay[0, l], lay[1, l], lay[2, l], lay[3, l], lay[4, l]
        cT = u + mu * m
        for i in range(n):
            qi = q[l, i]
            ti = t[l, i]
            V = m * qi
            q[l + 1, i] = u * qi + mu * V + g
            t[l + 1, i] = cT * ti + nw * V + nb
            for k in range(T):
                dqi = dq[l, k, i]
                dV = m * dqi
                dq[l + 1, k, i] = u * dqi + dlay[1, k, l] * V + mu * dV + dlay[2, k, l]
                dti = dt[l, k, i]
                dTterm = cT * dti if cT != 0.0 else 0.0
                dt[l + 1, k, i] = (dTterm + dlay[1, k, l] * m * ti + dlay[3, k, l] * V
                                   + nw * dV + dlay[4, k, l])


def _diag_smooth(dmap, params, q_in, consts, dstem, lay, dlay):
    L = lay.shape[1]
    T = dstem.shape[0]
    n = q_in.shape[0]
    q = np.empty((L + 1, n))
    t = np.empty((L + 1, n))
    dq = np.empty((L + 1, T, n))
    dt = np.empty((L + 1, T, n))
    _smooth_diag(dmap, params, q_in, consts, dstem, lay, dlay, q, t, dq, dt)
    return q, t, dq, dt


@numba.njit(error_model="numpy")
def _smooth_diag(dmap, params, q_in, consts, dstem, lay, dlay, q, t, dq, dt):
    n = q_in.shape[0]
    L = lay.shape[1]
    T = dstem.shape[0]
    _stem_diag(q_in, consts, dstem, q, t, dq, dt)
    for l in range(L):
        u, mu, g, nw, nb = lay[0, l], lay[1, l], lay[2, l], lay[3, l], lay[4, l]
        for i in range(n):
            qi = q[l, i]
            ti = t[l, i]
            V, Vd, V1, V2, Vd1, Vd2, Vdc = dmap(qi, qi, qi, params)
            q[l + 1, i] = u * qi + mu * V + g
            cT = u + mu * Vd
            t[l + 1, i] = cT * ti + nw * V + nb
            sV = V1 + V2 + Vd
            sVd = Vd1 + Vd2 + Vdc
            for k in range(T):
                dqi = dq[l, k, i]
                dV = sV * dqi
                dVd = sVd * dqi
                dmu = dlay[1, k, l]
                dq[l + 1, k, i] = u * dqi + dmu * V + mu * dV + dlay[2, k, l]
                dt[l + 1, k, i] = (cT * dt[l, k, i] + (dmu * Vd + mu * dVd) * ti
                                   + dlay[3, k, l] * V + nw * dV + dlay[4, k, l])


# ----------------------------------------------------------------------------------------------
# off-diagonal entries, ABReLU family
# ----------------------------------------------------------------------------------------------
@numba.njit(inline="always", cache=True, error_model="numpy")
def _stem_entry(zin, kin, sa, sb, sq_i, sq_j, dsq_i, dsq_j, consts, dstem, buf, dst, jj):
    """Signed gap, NTK and tangents after the stem for one entry (block slot jj)."""
    B = _BLOCK
    w0, b0, a0, c0 = consts[0], consts[1], consts[2], consts[3]
    e_in, w_in = gaps_of(zin)
    s = sa * sb
    sQ = sq_i * sq_j
    sQinv = 1.0 / sQ
    A = w0 * s + b0
    dd = sa - sb
    den = sQ + A
    delta = w0 * b0 * dd * dd / den if den > 0.0 else 0.0
    en = (delta + w0 * s * e_in) * sQinv
    wn = (delta + 2.0 * b0 + w0 * s * w_in) * sQinv
    sel = en <= wn
    buf[jj] = signed_gap(en, wn)
    buf[B + jj] = a0 * kin + c0
    for k in range(dstem.shape[0]):
        dw, db, da, dc = dstem[k, 0], dstem[k, 1], dstem[k, 2], dstem[k, 3]
        dsQ = dsq_i[k] * sq_j + sq_i * dsq_j[k]
        dA = dw * s + db
        ddelta = ((dw * b0 + w0 * db) * dd * dd - delta * (dsQ + dA)) / den if den > 0.0 else 0.0
        den_ = (ddelta + dw * s * e_in - en * dsQ) * sQinv
        dwn = (ddelta + 2.0 * db + dw * s * w_in - wn * dsQ) * sQinv
        dst[k, jj] = den_ if sel else -dwn
        dst[k, B + jj] = da * kin + dc


# fields of the per-block buffer ``buf`` (field f of entry jj at f * _BLOCK + jj; field 4 is
# unused): one array with compile-time offsets, so LLVM sees constant dependence distances
# and needs no runtime alias checks between the fields (it vectorises the passes below)
_NFIELDS = 15


@numba.njit(inline="always", cache=True, error_model="numpy")
def _values_pass(buf, si, sni, ini, sq_t, sq_t1, inv_t1, bta, g, kap, u, mu, xi, zeta, nw,
                 nbias, m, fac, ab, apb2):
    """One layer for a block of entries: the engine's update of the signed gap (field 0) and
    Theta (field 1), and the per-entry coefficients the tangent passes use (fields 2..14):
    with d eps the tangent of the gap and dmu that of v sw2, the tangent of the new gap is
    ``sg ((ddelta + (1 - sg) dg + ds Z + s (dmu a + b d eps)) r + Q dr)`` (module docstring)."""
    B = _BLOCK
    bg = bta * g
    for jj in range(sq_t.shape[0]):
        sj = sq_t[jj]
        snj = sq_t1[jj]
        z = buf[jj]
        Tv = buf[B + jj]
        s = si * sj
        A = bta * s + g
        d = si - sj
        den = sni * snj + A
        delta = bg * d * d / den
        neg = near_minus_one(z)
        az = abs(z)
        t = acos1m_unit(az)
        ht = h_of(t, az)
        e = 2.0 + z if neg else z
        w = -z if neg else 2.0 - z
        h = ht + math.pi * (1.0 - w) if neg else ht
        th = math.pi - t if neg else t
        X = xi + zeta * w - kap * ht if neg else bta * e - kap * ht
        Y = bta * w + kap * h
        r = ini * inv_t1[jj]
        En = delta + s * X
        Wn = delta + 2.0 * g + s * Y
        en = max(En * r, 0.0)
        wn = Wn * r
        Gv = m * (1.0 - e) + fac * h
        vdot = ab + fac * t if neg else m - fac * t
        sel = en <= wn
        zn = signed_gap(en, wn)
        buf[jj] = zn if r > 0.0 else 1.0
        buf[B + jj] = (u + mu * vdot) * Tv + nw * s * Gv + nbias
        a1 = apb2 - ab * w - fac * ht if neg else m * e - fac * h
        b1 = kap * t - zeta if neg else bta - kap * th
        sn = math.sqrt(az * (2.0 - az))                 # sin(theta)
        buf[2 * B + jj] = delta
        buf[3 * B + jj] = 1.0 / den
        buf[5 * B + jj] = X if sel else Y
        buf[6 * B + jj] = a1 if sel else m * w + fac * h
        buf[7 * B + jj] = b1 if sel else kap * th - bta
        buf[8 * B + jj] = En if sel else Wn
        buf[9 * B + jj] = 1.0 if sel else -1.0
        buf[10 * B + jj] = r
        buf[11 * B + jj] = Gv
        buf[12 * B + jj] = vdot
        buf[13 * B + jj] = 1.0 / sn                     # inf where sin(theta) = 0
        buf[14 * B + jj] = Tv


@numba.njit(inline="always", cache=True, error_model="numpy")
def _tangent_pass(dst, buf, si, sni, dsi, dsni, sq_t, sq_t1, dsq_t, dsq_t1, bta, g, kap, u,
                  mu, nw, m, dmu, dg, dnw, dnb):
    """One layer, one tangent, a block of entries: (d eps, d Theta) in dst (d eps at jj,
    d Theta at _BLOCK + jj), from the coefficients of ``_values_pass``."""
    B = _BLOCK
    bg = bta * g
    db_ = dmu * m
    for jj in range(sq_t.shape[0]):
        sj = sq_t[jj]
        snj = sq_t1[jj]
        dsj = dsq_t[jj]
        dsnj = dsq_t1[jj]
        delta = buf[2 * B + jj]
        invden = buf[3 * B + jj]
        Zf = buf[5 * B + jj]
        af = buf[6 * B + jj]
        bf = buf[7 * B + jj]
        Qf = buf[8 * B + jj]
        sg = buf[9 * B + jj]
        r = buf[10 * B + jj]
        Gv = buf[11 * B + jj]
        vdot = buf[12 * B + jj]
        invsn = buf[13 * B + jj]
        Tv = buf[14 * B + jj]
        de = dst[jj]
        dT = dst[B + jj]
        s = si * sj
        d = si - sj
        ds = dsi * sj + si * dsj
        dA = db_ * s + bta * ds + dg
        dden = dsni * snj + sni * dsnj + dA
        ddelta = ((db_ * g + bta * dg) * d * d + 2.0 * bg * d * (dsi - dsj)
                  - delta * dden) * invden
        dr = -r * r * (dsni * snj + sni * dsnj)
        inner = (ddelta + (1.0 - sg) * dg + ds * Zf + s * (dmu * af + bf * de)) * r + Qf * dr
        dst[jj] = sg * inner if r > 0.0 else 0.0
        dV = ds * Gv - s * vdot * de
        dth = 0.0 if de == 0.0 else de * invsn          # +-inf where sin(theta) = 0
        cT = u + mu * vdot
        c2 = kap * Tv
        t1 = cT * dT if cT != 0.0 else 0.0
        t2 = -c2 * dth if c2 != 0.0 else 0.0
        dst[B + jj] = t1 + t2 + dmu * vdot * Tv + dnw * s * Gv + nw * dV + dnb


@numba.njit(cache=True, error_model="numpy")
def _abrelu_row(i, j0, j1, sym, zin, G, gscale, qa_in, qb_in, consts, dstem, lay, dlay, start,
                sqa, inva, dsqa, sqb, invb, dsqb, a, b, K, Th, dK, dTh, buf, dst):
    """Entries (i, j0..j1-1) through the stem, every layer, to the outputs."""
    L = lay.shape[1]
    T = dstem.shape[0]
    B = _BLOCK
    nb = j1 - j0
    m = 0.5 * (a * a + b * b)
    fac = (a - b) ** 2 / (2.0 * math.pi)
    ab = a * b
    apb2 = 0.5 * (a + b) ** 2
    sa = math.sqrt(qa_in[i])
    for jj in range(nb):
        j = j0 + jj
        _stem_entry(zin[i, j], gscale * G[i, j], sa, math.sqrt(qb_in[j]), sqa[0, i], sqb[0, j],
                    dsqa[0, :, i], dsqb[0, :, j], consts, dstem, buf, dst, jj)
    for l in range(L):
        u, mu, g, nw, nbias = lay[0, l], lay[1, l], lay[2, l], lay[3, l], lay[4, l]
        bta = u + mu * m
        kap = mu * fac
        xi = 2.0 * u + mu * apb2
        zeta = -u - mu * ab
        si = sqa[l, i]
        sni = sqa[l + 1, i]
        sq_t = sqb[l, j0:j1]
        sq_t1 = sqb[l + 1, j0:j1]
        _values_pass(buf, si, sni, inva[l + 1, i], sq_t, sq_t1, invb[l + 1, j0:j1], bta, g,
                     kap, u, mu, xi, zeta, nw, nbias, m, fac, ab, apb2)
        for k in range(T):
            if l < start[k]:
                continue                     # the tangent is still exactly zero
            _tangent_pass(dst[k], buf, si, sni, dsqa[l, k, i], dsqa[l + 1, k, i], sq_t, sq_t1,
                          dsqb[l, k, j0:j1], dsqb[l + 1, k, j0:j1], bta, g, kap, u, mu, nw, m,
                          dlay[1, k, l], dlay[2, k, l], dlay[3, k, l], dlay[4, k, l])
    # outputs: K = s_L rho_L, dK = ds rho - s d eps
    siL = sqa[L, i]
    for jj in range(nb):
        j = j0 + jj
        rho = rho_of(buf[jj])
        s = siL * sqb[L, j]
        K[i, j] = s * rho
        Th[i, j] = buf[B + jj]
        for k in range(T):
            ds = dsqa[L, k, i] * sqb[L, j] + siL * dsqb[L, k, j]
            dK[k, i, j] = ds * rho - s * dst[k, jj]
            dTh[k, i, j] = dst[k, B + jj]
        if sym:
            K[j, i] = K[i, j]
            Th[j, i] = Th[i, j]
            for k in range(T):
                dK[k, j, i] = dK[k, i, j]
                dTh[k, j, i] = dTh[k, i, j]


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _abrelu_engine(sym, zin, G, gscale, qa_in, qb_in, consts, dstem, lay, dlay, start,
                   qa, ta, dqa, dta, sqa, inva, dsqa, qb, tb_, dqb, dtb_, sqb, invb, dsqb,
                   a, b, K, Th, dK, dTh):
    n1, n2 = K.shape
    T = dstem.shape[0]
    ntask = (n1 + 1) // 2 if sym else n1
    for ptask in prange(ntask):
        task = np.int64(ptask)
        buf = np.empty(_NFIELDS * _BLOCK)
        dst = np.empty((T, 2 * _BLOCK))
        for half in range(2 if sym else 1):
            i = task if half == 0 else n1 - 1 - task
            if half == 1 and i == task:
                continue
            if sym:        # the diagonal from the tables
                K[i, i] = qa[-1, i]
                Th[i, i] = ta[-1, i]
                for k in range(T):
                    dK[k, i, i] = dqa[-1, k, i]
                    dTh[k, i, i] = dta[-1, k, i]
            for j0 in range(i + 1 if sym else 0, n2, _BLOCK):
                j1 = min(j0 + _BLOCK, n2)
                _abrelu_row(i, j0, j1, sym, zin, G, gscale, qa_in, qb_in, consts, dstem, lay,
                            dlay, start, sqa, inva, dsqa, sqb, invb, dsqb, a, b, K, Th, dK,
                            dTh, buf, dst)

# ----------------------------------------------------------------------------------------------
# off-diagonal entries, smooth activations
# ----------------------------------------------------------------------------------------------
@numba.njit(parallel=True, error_model="numpy")
def _smooth_engine(dmap, params, sym, G, gscale, consts, dstem, lay, dlay, start,
                   qa, ta, dqa, dta, qb, tb, dqb, dtb, K, Th, dK, dTh):
    """Smooth activations: (covariance, Theta) and tangents, a block of entries of one row
    at a time, layers outer and entries inner (the column tables of a layer are contiguous)."""
    n1, n2 = K.shape
    T = dstem.shape[0]
    L = lay.shape[1]
    B = _BLOCK
    w0, b0, a0, c0 = consts[0], consts[1], consts[2], consts[3]
    ntask = (n1 + 1) // 2 if sym else n1
    for ptask in prange(ntask):
        task = np.int64(ptask)
        cb = np.empty(B)
        Tb = np.empty(B)
        dcb = np.empty((T, B))
        dTb = np.empty((T, B))
        for half in range(2 if sym else 1):
            i = task if half == 0 else n1 - 1 - task
            if half == 1 and i == task:
                continue
            if sym:
                K[i, i] = qa[L, i]
                Th[i, i] = ta[L, i]
                for k in range(T):
                    dK[k, i, i] = dqa[L, k, i]
                    dTh[k, i, i] = dta[L, k, i]
            for j0 in range(i + 1 if sym else 0, n2, B):
                j1 = min(j0 + B, n2)
                nb = j1 - j0
                for jj in range(nb):
                    kin = gscale * G[i, j0 + jj]
                    cb[jj] = w0 * kin + b0
                    Tb[jj] = a0 * kin + c0
                    for k in range(T):
                        dcb[k, jj] = dstem[k, 0] * kin + dstem[k, 1]
                        dTb[k, jj] = dstem[k, 2] * kin + dstem[k, 3]
                for l in range(L):
                    u, mu, g, nw, nbias = lay[0, l], lay[1, l], lay[2, l], lay[3, l], lay[4, l]
                    qi = qa[l, i]
                    q_t = qb[l, j0:j1]
                    for jj in range(nb):
                        c = cb[jj]
                        Tv = Tb[jj]
                        V, Vd, V1, V2, Vd1, Vd2, Vdc = dmap(qi, q_t[jj], c, params)
                        cT = u + mu * Vd
                        for k in range(T):
                            if l < start[k]:
                                continue             # the tangent is still exactly zero
                            dqi = dqa[l, k, i]
                            dqj = dqb[l, k, j0 + jj]
                            dc = dcb[k, jj]
                            dV = V1 * dqi + V2 * dqj + Vd * dc
                            dVd = Vd1 * dqi + Vd2 * dqj + Vdc * dc
                            dmu = dlay[1, k, l]
                            dTb[k, jj] = (cT * dTb[k, jj] + (dmu * Vd + mu * dVd) * Tv
                                          + dlay[3, k, l] * V + nw * dV + dlay[4, k, l])
                            dcb[k, jj] = u * dc + dmu * V + mu * dV + dlay[2, k, l]
                        Tb[jj] = cT * Tv + nw * V + nbias
                        cb[jj] = u * c + mu * V + g
                for jj in range(nb):
                    j = j0 + jj
                    K[i, j] = cb[jj]
                    Th[i, j] = Tb[jj]
                    for k in range(T):
                        dK[k, i, j] = dcb[k, jj]
                        dTh[k, i, j] = dTb[k, jj]
                    if sym:
                        K[j, i] = cb[jj]
                        Th[j, i] = Tb[jj]
                        for k in range(T):
                            dK[k, j, i] = dcb[k, jj]
                            dTh[k, j, i] = dTb[k, jj]
# ----------------------------------------------------------------------------------------------
# derivative maps of smooth activations
# ----------------------------------------------------------------------------------------------
@numba.njit(cache=True, error_model="numpy")
def _erf_dmap(q1, q2, c, params):
    """(V, Vdot, V_q1, V_q2, Vdot_q1, Vdot_q2, Vdot_c) for a erf(b x) + c0 (module docstring)."""
    V, Vd = _erf_pair(q1, q2, c, params)
    a, b = params[0], params[1]
    B = b * b
    kap = a * a * B * (4.0 / math.pi)
    if kap == 0.0:
        return V, Vd, 0.0, 0.0, 0.0, 0.0, 0.0
    p1 = 1.0 + 2.0 * B * q1
    p2 = 1.0 + 2.0 * B * q2
    x = Vd / kap
    invD = x * x                      # 1 / (P - 4 b^4 c^2)
    V1 = -Vd * c * B / p1
    V2 = -Vd * c * B / p2
    Vd1 = -Vd * B * p2 * invD
    Vd2 = -Vd * B * p1 * invD
    Vdc = 4.0 * Vd * B * B * c * invD
    return V, Vd, V1, V2, Vd1, Vd2, Vdc


_DMAP_CACHE = {}


def _smooth_dmap(act):
    """(compiled derivative map, params) for a smooth activation."""
    from .activations import Erf, _dtanh, _FnPoint, _tanh, _TanhPoint
    if isinstance(act, Erf):
        return _erf_dmap, np.array([act.a, act.b, act.c], dtype=np.float64)
    p = act.pointwise()
    if isinstance(p, _TanhPoint):
        f, df, d2f = _tanh, _dtanh, _d2tanh
    elif isinstance(p, _FnPoint):
        f, df, d2f = p.fn, p.dfn, p.d2fn
    else:
        raise NotImplementedError(f"kernel_grads needs phi'' of the activation {act!r} in a "
                                  f"form it knows (Erf, Tanh, Activation(fn) or the ABReLU "
                                  f"family)")
    key = (f, df, d2f)
    if key not in _DMAP_CACHE:
        _DMAP_CACHE[key] = _build_gh_dmap(f, df, d2f)
    return _DMAP_CACHE[key], act._params


@numba.njit(cache=True)
def _d2tanh(x):
    t = math.tanh(x)
    return -2.0 * t * (1.0 - t * t)


def _build_gh_dmap(fn, dfn, d2fn):
    """Gauss-Hermite rule of ``Activation`` (kernels.md §1.4) for V, Vdot and the partial
    derivatives (module docstring), on the same nodes."""

    @numba.njit(error_model="numpy", fastmath={"contract"})
    def dmap(q1, q2, c, params):
        n = params.shape[0] // 2
        if q1 > 0.0:
            a = math.sqrt(2.0 * q1)
            bc = c * math.sqrt(2.0 / q1)
            cc = c * c
            if cc < 1e300 and (cc > 1e-300 or c == 0.0):
                cq = cc / q1
            else:
                cq = c * (c / q1)
            e = math.sqrt(2.0 * max(q2 - cq, 0.0))
        else:
            a = 0.0
            bc = 0.0
            e = math.sqrt(2.0 * max(q2, 0.0))
        V = 0.0
        Vd = 0.0
        Vdc = 0.0
        P1 = 0.0     # E[f''(u) f(v)]
        P2 = 0.0     # E[f(u) f''(v)]
        B1 = 0.0     # E[f''(u) u f'(v)]
        B2 = 0.0     # E[f'(u) f''(v) v]
        for i in range(n):
            xi = params[i]
            wi = params[n + i]
            ui = a * xi
            f_u = fn(ui)
            d_u = dfn(ui)
            d2_u = d2fn(ui)
            base = bc * xi
            s_f = 0.0
            s_d = 0.0
            s_d2 = 0.0
            s_d2v = 0.0
            for j in range(n):
                y = base + e * params[j]
                wj = params[n + j]
                fy = fn(y)
                dy = dfn(y)
                d2y = d2fn(y)
                s_f += wj * fy
                s_d += wj * dy
                s_d2 += wj * d2y
                s_d2v += wj * d2y * y
            V += wi * f_u * s_f
            Vd += wi * d_u * s_d
            Vdc += wi * d2_u * s_d2
            P1 += wi * d2_u * s_f
            P2 += wi * f_u * s_d2
            B1 += wi * d2_u * ui * s_d
            B2 += wi * d_u * s_d2v
        V /= math.pi
        Vd /= math.pi
        Vdc /= math.pi
        V1 = 0.5 * P1 / math.pi
        V2 = 0.5 * P2 / math.pi
        Vd1 = (B1 / math.pi - c * Vdc) / (2.0 * q1)
        Vd2 = (B2 / math.pi - c * Vdc) / (2.0 * q2)
        return V, Vd, V1, V2, Vd1, Vd2, Vdc

    return dmap
