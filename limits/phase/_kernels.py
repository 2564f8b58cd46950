"""Full-batch gradient descent of the two-layer ReLU network, compiled (numba).

One call runs a whole training (every step, the step-size rule of :func:`limits.phase.train`
and its stopping rule) on ``f = c sum_k a_k relu(W_k . x)``, updating ``a`` and ``W`` in place
and writing R_S at every step to ``loss_out``:

* ``_gd``: any input dimension; the products ``W Xa^T`` and ``E Xa`` go to BLAS;
* ``_gd2``: 1-d inputs ``(x, 1)`` with the two weight columns stored apart (about 3x faster);
* ``_gd2_par``: ``_gd2`` with the neurons split over numba's threads (``prange``).

``_run_gd`` picks one.  Each returns ``(status, steps, time)`` with status ``_CONVERGED``,
``_BUDGET`` or ``_INCREASE`` (the caller restarts with smaller steps).  The kernels take no
Python objects and check nothing: :func:`limits.phase.train` validates every argument first.
"""
import math

import numba
import numpy as np
from numba import prange

_CONVERGED, _BUDGET, _INCREASE = 0, 1, 2
_STATUS = {0: "converged", 1: "budget", 2: "diverged"}


@numba.njit(inline="always")
def _check_and_lr(loss, prev, slack, tol, step, max_steps, trace, vmax2, n, c, F, delta,
                  lr_fixed):
    """Stopping rule and the step size of the next step; returns (code, lr), code -1 = go on.
    ``prev`` is the running minimum of R_S."""
    if not (loss <= prev * (1.0 + slack)):       # increase above the running minimum, nan, inf
        return _INCREASE, 0.0
    if loss < tol:
        return _CONVERGED, 0.0
    if step == max_steps:
        return _BUDGET, 0.0
    if lr_fixed > 0.0:
        return -1, lr_fixed
    lr = np.inf
    if trace > 0.0:
        lr = F * n / (c * c * trace)
    if vmax2 > 0.0:
        lr2 = delta * n / (abs(c) * math.sqrt(vmax2))
        if lr2 < lr:
            lr = lr2
    if not math.isfinite(lr):          # zero gradient and zero trace: nothing can move
        return _BUDGET, 0.0
    return -1, lr


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _gd(a, W, Xa, y, c, tol, max_steps, F, delta, lr_fixed, slack, loss_out):
    """Full-batch GD on f = c sum_k a_k relu(W_k . x), any input dimension; a (M,) and W (M, D)
    are updated in place.  The two products ``Z = W Xa^T`` and ``S = E Xa`` go to BLAS, the
    rest is fused in loops over neurons.  Returns (status, steps, gradient-flow time sum lr)."""
    M, D = W.shape
    n = Xa.shape[0]
    XaT = np.ascontiguousarray(Xa.T)
    xx = np.zeros(n)
    for i in range(n):
        for j in range(D):
            xx[i] += Xa[i, j] * Xa[i, j]
    ga = np.zeros(M)
    S = np.zeros((M, D))
    E = np.empty((M, n))
    f = np.zeros(n)
    e = np.zeros(n)
    lr = 0.0
    time = 0.0
    prev = np.inf
    cn = c / n
    for step in range(max_steps + 1):
        # the previous step's update, then the forward pass and trace(G) / c^2
        if step > 0:
            for k in range(M):
                ak = a[k]
                a[k] = ak - lr * cn * ga[k]
                sc = lr * cn * ak
                for j in range(D):
                    W[k, j] -= sc * S[k, j]
        Z = np.dot(W, XaT)
        f[:] = 0.0
        tr = 0.0
        for k in range(M):
            ak = a[k]
            for i in range(n):
                z = Z[k, i]
                h = max(z, 0.0)
                ind = 1.0 if z > 0.0 else 0.0
                f[i] += ak * h
                tr += h * h + ak * ak * xx[i] * ind
        loss = 0.0
        for i in range(n):
            e[i] = c * f[i] - y[i]
            loss += e[i] * e[i]
        loss /= 2.0 * n
        loss_out[step] = loss
        if not (loss <= prev * (1.0 + slack)) or loss < tol or step == max_steps:
            code, lr = _check_and_lr(loss, prev, slack, tol, step, max_steps, 0.0, 0.0, n, c, F,
                                     delta, lr_fixed)
            return code, step, time
        if loss < prev:
            prev = loss                # running minimum of R_S
        # g_k = sum_i e_i relu(z_ik), s_k = sum_i e_i 1[z_ik > 0] x_i  (S = E Xa)
        for k in range(M):
            g = 0.0
            for i in range(n):
                z = Z[k, i]
                g += e[i] * max(z, 0.0)
                E[k, i] = e[i] if z > 0.0 else 0.0
            ga[k] = g
        np.dot(E, Xa, S)
        vm = 0.0
        for k in range(M):
            v = 0.0
            for j in range(D):
                v += S[k, j] * S[k, j]
            vm = max(vm, v)
        code, lr = _check_and_lr(loss, np.inf, slack, tol, -1, max_steps, tr, vm, n, c, F, delta,
                                 lr_fixed)
        if code != -1:
            return code, step, time
        time += lr
    return _BUDGET, max_steps, time


@numba.njit(inline="always", error_model="numpy", fastmath={"contract"})
def _step_and_forward(a, w0, w1, x0, ga, g0, g1, lr_cn, update, lo, hi, f):
    """Neurons lo..hi-1 of ``_gd2``: the GD update (if ``update``; step lr c/n) from the previous
    gradients, then their outputs added to f; returns their part of the trace of the Gram."""
    n = x0.shape[0]
    tr = 0.0
    for k in range(lo, hi):
        ak = a[k]
        if update:
            a[k] = ak - lr_cn * ga[k]
            w0[k] -= lr_cn * ak * g0[k]
            w1[k] -= lr_cn * ak * g1[k]
            ak = a[k]
        for i in range(n):
            z = w0[k] * x0[i] + w1[k]
            h = max(z, 0.0)
            ind = 1.0 if z > 0.0 else 0.0
            f[i] += ak * h
            tr += h * h + ak * ak * (x0[i] * x0[i] + 1.0) * ind
    return tr


@numba.njit(inline="always", error_model="numpy", fastmath={"contract"})
def _gradients(w0, w1, x0, e, ga, g0, g1, lo, hi):
    """Neurons lo..hi-1 of ``_gd2``: gradient sums (ga, g0, g1) from the residual e; returns
    the largest ``g0^2 + g1^2`` among them."""
    n = x0.shape[0]
    vm = 0.0
    for k in range(lo, hi):
        g = 0.0
        s0 = 0.0
        s1 = 0.0
        for i in range(n):
            z = w0[k] * x0[i] + w1[k]
            g += e[i] * max(z, 0.0)
            ei = e[i] if z > 0.0 else 0.0
            s0 += ei * x0[i]
            s1 += ei
        ga[k] = g
        g0[k] = s0
        g1[k] = s1
        vm = max(vm, s0 * s0 + s1 * s1)
    return vm


@numba.njit(nogil=True, cache=True, error_model="numpy", fastmath={"contract"})
def _gd2(a, w0, w1, x0, y, c, tol, max_steps, F, delta, lr_fixed, slack, loss_out):
    """The same as ``_gd`` for 1-d inputs (x, 1): the two input-weight columns w0 (slope) and
    w1 (bias) stored apart, which keeps every neuron's update in registers (about 3x faster)."""
    M = a.shape[0]
    n = x0.shape[0]
    ga = np.zeros(M)
    g0 = np.zeros(M)
    g1 = np.zeros(M)
    f = np.zeros(n)
    e = np.zeros(n)
    lr = 0.0
    time = 0.0
    prev = np.inf
    cn = c / n
    for step in range(max_steps + 1):
        f[:] = 0.0
        tr = _step_and_forward(a, w0, w1, x0, ga, g0, g1, lr * cn, step > 0, 0, M, f)
        loss = 0.0
        for i in range(n):
            e[i] = c * f[i] - y[i]
            loss += e[i] * e[i]
        loss /= 2.0 * n
        loss_out[step] = loss
        if not (loss <= prev * (1.0 + slack)) or loss < tol or step == max_steps:
            code, lr = _check_and_lr(loss, prev, slack, tol, step, max_steps, 0.0, 0.0, n, c, F,
                                     delta, lr_fixed)
            return code, step, time
        if loss < prev:
            prev = loss                # running minimum of R_S
        vm = _gradients(w0, w1, x0, e, ga, g0, g1, 0, M)
        code, lr = _check_and_lr(loss, np.inf, slack, tol, -1, max_steps, tr, vm, n, c, F, delta,
                                 lr_fixed)
        if code != -1:
            return code, step, time
        time += lr
    return _BUDGET, max_steps, time


# No fastmath here: the prange bodies are compiled as separate gufuncs linked into this
# function, and with 'contract' a freshly compiled and a cache-loaded kernel fused
# multiply-adds differently (different last bits, cold vs warm numba cache).
@numba.njit(parallel=True, cache=True, error_model="numpy")
def _gd2_par(a, w0, w1, x0, y, c, tol, max_steps, F, delta, lr_fixed, slack, nch, loss_out):
    """``_gd2`` with the neurons split in ``nch`` chunks over numba's threads (``prange``).

    Two parallel regions per step; the per-chunk partial sums are added in chunk order, so the
    result depends on ``nch`` (a function of m only), not on the thread count."""
    M = a.shape[0]
    n = x0.shape[0]
    ga = np.zeros(M)
    g0 = np.zeros(M)
    g1 = np.zeros(M)
    fpart = np.zeros((nch, n))
    trpart = np.zeros(nch)
    vpart = np.zeros(nch)
    e = np.zeros(n)
    lr = 0.0
    time = 0.0
    prev = np.inf
    cn = c / n
    for step in range(max_steps + 1):
        for ch in prange(nch):
            lo = (M * ch) // nch
            hi = (M * (ch + 1)) // nch
            fl = np.zeros(n)
            tr = _step_and_forward(a, w0, w1, x0, ga, g0, g1, lr * cn, step > 0, lo, hi, fl)
            for i in range(n):
                fpart[ch, i] = fl[i]
            trpart[ch] = tr
        loss = 0.0
        tr = 0.0
        for ch in range(nch):
            tr += trpart[ch]
        for i in range(n):
            f = 0.0
            for ch in range(nch):
                f += fpart[ch, i]
            e[i] = c * f - y[i]
            loss += e[i] * e[i]
        loss /= 2.0 * n
        loss_out[step] = loss
        if not (loss <= prev * (1.0 + slack)) or loss < tol or step == max_steps:
            code, lr = _check_and_lr(loss, prev, slack, tol, step, max_steps, 0.0, 0.0, n, c, F,
                                     delta, lr_fixed)
            return code, step, time
        if loss < prev:
            prev = loss
        for ch in prange(nch):
            lo = (M * ch) // nch
            hi = (M * (ch + 1)) // nch
            vpart[ch] = _gradients(w0, w1, x0, e, ga, g0, g1, lo, hi)
        vm = 0.0
        for ch in range(nch):
            vm = max(vm, vpart[ch])
        code, lr = _check_and_lr(loss, np.inf, slack, tol, -1, max_steps, tr, vm, n, c, F, delta,
                                 lr_fixed)
        if code != -1:
            return code, step, time
        time += lr
    return _BUDGET, max_steps, time


def _chunks(M):
    """Chunks of the parallel kernel: a function of the number of neurons only."""
    return int(min(64, max(1, M // 4096)))


def _run_gd(a, W, Xa, y, c, tol, max_steps, F, delta, lr_fixed, slack, loss, parallel=False):
    """Dispatch to the 1-d kernel when the augmented input is (x, 1) (its ``prange`` variant
    with ``parallel``); W is updated in place."""
    if Xa.shape[1] == 2 and np.all(Xa[:, 1] == 1.0):
        w0 = np.ascontiguousarray(W[:, 0])
        w1 = np.ascontiguousarray(W[:, 1])
        x0 = np.ascontiguousarray(Xa[:, 0])
        if parallel:
            out = _gd2_par(a, w0, w1, x0, y, c, tol, max_steps, F, delta, lr_fixed, slack,
                           _chunks(a.shape[0]), loss)
        else:
            out = _gd2(a, w0, w1, x0, y, c, tol, max_steps, F, delta, lr_fixed, slack, loss)
        W[:, 0] = w0
        W[:, 1] = w1
        return out
    return _gd(a, W, Xa, y, c, tol, max_steps, F, delta, lr_fixed, slack, loss)
