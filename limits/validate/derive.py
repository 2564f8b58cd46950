"""Validation checks of the symbolic derivations (``limits.derive``).

Expected values: the hand-derived formulas of theory/sde.md (§2.3, §2.4, §3.3), the constants
k = 2 sqrt2/(3 pi), q* = 9 pi^2/2, and one-step increments of finite shaped ReLU networks
simulated here with numpy (independent of the package).
"""
import math
import subprocess
import sys
import time

import numpy as np
import sympy as sp

from .. import derive as D
from ._registry import Result, check


@check("derive: SymPy output = hand-derived formulas of sde.md §2.3, §2.4, §3.3")
def _formulas(ctx):
    rho, cp, cm, pi = D.rho, D.c_plus_sym, D.c_minus_sym, sp.pi

    def nu(r):
        return (cp - cm) ** 2 / (2 * pi) * (sp.sqrt(1 - r ** 2) - r * sp.acos(r))

    def zero(e):
        return sp.simplify(D.explicit(e)) == 0

    cov = D.covariance_sde(2)
    V11, V12, V22 = cov.state
    S = sp.Matrix([[2 * V11 ** 2, 2 * V11 * V12, 2 * V12 ** 2],
                   [2 * V11 * V12, V11 * V22 + V12 ** 2, 2 * V12 * V22],
                   [2 * V12 ** 2, 2 * V12 * V22, 2 * V22 ** 2]])
    ok_cov = (cov.drift[0] == 0 and cov.drift[2] == 0 and cov.diffusion == S
              and zero(cov.drift[1] - nu(V12 / sp.sqrt(V11 * V22)) * sp.sqrt(V11 * V22)))
    drift, diff = D.correlation_sde()
    ok_corr = zero(drift - nu(rho) + rho * (1 - rho ** 2) / 2) and zero(diff - (1 - rho ** 2) ** 2)
    k, q_star = D.unshaped_constants()
    q = D.unshaped_q_sde()
    qs, t = q.state[0], q.time
    kk = 2 * sp.sqrt(2) / (3 * pi)
    ok_q = (zero(k - kk) and zero(q_star - 9 * pi ** 2 / 2)
            and zero(q.drift[0] - (2 * qs - kk * qs ** sp.Rational(3, 2)) / t - 2 * qs)
            and zero(q.diffusion[0, 0] - 8 * qs ** 2))
    return [
        Result("derive: covariance SDE b, Sigma (2 inputs, shaped ReLU)", "sde.md §2.3",
               "difference simplifies to 0" if ok_cov else "differs", "exact", ok_cov),
        Result("derive: correlation SDE by Itô", "nu - rho(1-rho^2)/2, (1-rho^2)^2 (§2.4)",
               f"{drift} ; {diff}", "exact", ok_corr),
        Result("derive: unshaped q SDE, k, q*", "k = 2 sqrt2/(3 pi), q* = 9 pi^2/2 (§3.3)",
               f"k = {k}, q* = {q_star}, b = {q.drift[0]}, Sigma = {q.diffusion[0, 0]}",
               "exact", ok_q)]


def _one_layer(V, n, N, c_plus, c_minus, seed, chunk=4000):
    """N one-layer steps of a width-n shaped ReLU MLP from Gram V (rows iid N(0, V))."""
    rng = np.random.default_rng(seed)
    L = np.linalg.cholesky(V)
    s_p, s_m = 1 + c_plus / math.sqrt(n), 1 + c_minus / math.sqrt(n)
    c = 2 / (s_p ** 2 + s_m ** 2)
    out = np.empty((N, 3))
    for s in range(0, N, chunk):
        m = min(chunk, N - s)
        z = rng.standard_normal((2, m, n))
        ga, gb = L[0, 0] * z[0], L[1, 0] * z[0] + L[1, 1] * z[1]
        pa = s_m * ga + (s_p - s_m) * np.maximum(ga, 0)
        pb = s_m * gb + (s_p - s_m) * np.maximum(gb, 0)
        out[s:s + m] = np.stack([(pa * pa).sum(1), (pa * pb).sum(1), (pb * pb).sum(1)], 1)
    return out * (c / n)


@check("derive: drift and diffusion = one-step increments of width-100/200 networks")
def _one_step(ctx):
    N = 300_000 if ctx.quick else 3_000_000
    r0, c_pm = -0.5, (1.0, -1.0)
    V = np.array([[1.0, r0 * math.sqrt(2)], [r0 * math.sqrt(2), 2.0]])
    est, se = {}, {}
    for n in (100, 200):
        o = _one_layer(V, n, N, *c_pm, seed=n)
        dr = o[:, 1] / np.sqrt(o[:, 0] * o[:, 2]) - r0
        c2 = (dr - dr.mean()) ** 2
        dv = o[:, 1] - V[0, 1]
        c12 = (dv - dv.mean()) ** 2
        vals = [dr, c2, dv, c12]
        est[n] = n * np.array([v.mean() for v in vals])
        se[n] = n * np.array([v.std() / math.sqrt(N) for v in vals])
    # Richardson: 2 M(200) - M(100) removes the O(1/n) term (see tests/limits/test_derive.py)
    e, s = 2 * est[200] - est[100], np.sqrt(4 * se[200] ** 2 + se[100] ** 2)
    p = np.array(c_pm)
    cr = D.correlation_derivation().compile()
    cv = D.covariance_sde(2).compile()
    b, S = np.empty(3), np.empty((3, 3))
    y = np.array([V[0, 0], V[0, 1], V[1, 1]])
    cv.drift(y, p, b)
    cv.diffusion(y, p, S)
    want = [cr.b(r0, p), cr.s(r0, p) ** 2, b[1], S[1, 1]]
    names = ["E d rho", "Var d rho", "E dV12", "Var dV12"]
    out = []
    for nm, g, ss, w in zip(names, e, s, want):
        z = (g - w) / ss
        out.append(Result(f"derive vs network: n*{nm} (rho0 = -0.5, C = 4; Richardson n = 100, 200)",
                          f"{w:.4f} (derived)", f"{g:.4f} ± {ss:.4f} ({z:+.2f} se)", "4 se",
                          abs(z) < 4))
    return out


@check("derive: cold derivation + code generation of the correlation SDE <= 10 s")
def _cold(ctx):
    code = ("import time; import limits.derive as D; t = time.perf_counter(); "
            "d = D.correlation_derivation(); d.compile(); "
            "print(time.perf_counter() - t)")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        return [Result("derive: cold derivation + compile", "<= 10 s", r.stderr[-200:], "10 s",
                       False)]
    sec = float(r.stdout.split()[-1])
    return [Result("derive: cold derivation + compile of the correlation SDE (fresh process)",
                   "<= 10 s", f"{sec:.2f} s (process incl. imports {wall:.2f} s)", "10 s",
                   sec <= 10)]
