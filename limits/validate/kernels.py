"""Validation checks of the kernels package (registered with ``limits.validate.check``).

Expected values: neural-tangents 0.6.5 output (``limits/_data/nt_relu_mlp.json``), the closed
forms and mpmath / quadrature / DOP853 tables of theory/kernels.md and theory/sde.md §3.3
(``limits/_data/kernels_oracles.json``, ``sde_oracles.json``), and the exact layer loop for the
tabulated fast path.
"""
import numpy as np

import kernels as kn

from ._registry import Result, _rel, check, reference_table


@check("NNGP/NTK vs neural-tangents 0.6.5")
def _nt_reference(ctx):
    ref = reference_table("nt_relu_mlp")
    x = np.array(ref["inputs"]["x"])
    out = []
    for case in ref["cases"]:
        net = kn.MLP(case["depth_L"], kn.ReLU(), weight_var=case["W_std"] ** 2,
                     bias_var=case["b_std"] ** 2)
        k = net.kernels(x)
        err = max(_rel(k.nngp, case["nngp"]), _rel(k.ntk, case["ntk"]))
        out.append(Result(f"NT reference {case['name']} (nngp, ntk, every entry)",
                          "neural-tangents output", f"max rel err {err:.1e}", "1e-12",
                          err <= 1e-12))
    return out


# theory/kernels.md §1.5 (mpmath) at (q1, q2, c) = (1, 2, 0.5), and the §1.4 tanh values
_KERNELS = reference_table("kernels_oracles")
_ORACLE_15 = {name: (getattr(kn, row["activation"])(*row["args"]), *row["values"])
              for name, row in _KERNELS["activation_maps"]["rows"].items()}
_TANH_14 = _KERNELS["tanh"]


@check("activation maps vs closed-form table")
def _activation_table(ctx):
    out = []
    for name, (act, V, Vd, Vdiag) in _ORACLE_15.items():
        got = (float(act.V(1, 2, 0.5)), float(act.Vdot(1, 2, 0.5)), float(act.V(1, 1, 1)))
        err = _rel(got, (V, Vd, Vdiag))
        out.append(Result(f"V, Vdot, V(1,1,1) for {name} (kernels.md §1.5)",
                          f"{V:.6g}, {Vd:.6g}, {Vdiag:.6g}", f"max rel err {err:.1e}",
                          "1e-12", err <= 1e-12))
    tanh = kn.Tanh()
    got = (float(tanh.V(1, 2, 0.5)), float(tanh.Vdot(1, 2, 0.5)), float(tanh.V(1, 1, 1)))
    exp = (_TANH_14["V(1, 2, 0.5)"], _TANH_14["Vdot(1, 2, 0.5)"], _TANH_14["V(1, 1, 1)"])
    err = _rel(got, exp)
    out.append(Result("tanh V, Vdot (quadrature) vs dblquad (kernels.md §1.4)",
                      ", ".join(f"{v:.6g}" for v in exp), f"max rel err {err:.1e}", "1e-10",
                      err <= 1e-10))
    return out


# theory/kernels.md §2.3: rho_n = f^n(0), NTK off-diagonal and diagonal (unit inputs)
_RHO_TABLE = _KERNELS["he_relu_map"]["rho_n"]
_NTK_TABLE = _KERNELS["he_relu_map"]["ntk_offdiagonal_n"]
_NTK_DIAG = _KERNELS["he_relu_map"]["ntk_diagonal_n"]


@check("He-ReLU correlation map f^n(0) and NTK")
def _relu_table(ctx):
    K0 = np.eye(2)
    tr = kn.MLP(10, kn.ReLU(), weight_var=2.0).trajectory(K0=K0)
    rho = tr.correlation[1:, 0, 1]
    err_rho = _rel(rho, _RHO_TABLE)
    # layer l of the MLP trajectory has the stem scaled by sw2 = 2: divide by 2 for unit inputs
    ntk = tr.ntk[1:6, 0, 1] / 2.0
    ntk_diag = tr.ntk[1:6, 0, 0] / 2.0
    err_ntk = max(_rel(ntk, _NTK_TABLE), _rel(ntk_diag, _NTK_DIAG))
    return [Result("rho_n = f^n(0), n = 1..10 (kernels.md §2.3, mpmath)", "table",
                   f"max rel err {err_rho:.1e}", "1e-13", err_rho <= 1e-13),
            Result("NTK off-diagonal and diagonal, n = 1..5 (kernels.md §2.3)", "table",
                   f"max rel err {err_ntk:.1e}", "1e-13", err_ntk <= 1e-13)]


# theory/sde.md §3.3: l^2 (1 - rho_l) from rho_0 (mpmath, 40 digits)
_DEEP_TABLE = {float(r0): {int(l): v for l, v in row.items()}
               for r0, row in reference_table("sde_oracles")["deep_relu"]["rows"].items()}


@check("deep ReLU: l^2 (1 - rho_l) vs mpmath")
def _deep_table(ctx):
    out = []
    for rho0, row in _DEEP_TABLE.items():
        K0 = np.array([[1.0, rho0], [rho0, 1.0]])
        L = max(row)
        tr = kn.MLP(L, kn.ReLU(), weight_var=2.0).trajectory(K0=K0, layers=sorted(row))
        got = [l * l * tr.one_minus_correlation[k, 0, 1] for k, l in enumerate(tr.layers)]
        exp = [row[l] for l in tr.layers]
        # the table has 10 significant digits: 1e-9 relative is its resolution
        err = _rel(got, exp)
        out.append(Result(f"rho_0 = {rho0}: l^2(1 - rho_l), l = 10..1e5 (sde.md §3.3)",
                          f"{exp[-1]:.8f} at l = 1e5", f"max rel err {err:.1e}", "1e-9",
                          err <= 1e-9))
    from limits.plots import correlation_vs_depth
    fig = correlation_vs_depth(
        depth=10_000 if ctx.quick else 100_000)
    out[-1].figure = ctx.save(fig, "correlation_vs_depth.png")
    return out


# theory/kernels.md §3.4: ODE limit at t = 1 (DOP853, rtol 1e-13)
# rows: sw2, sb2, K0 (q1, q2, c), K1 (q1, q2, c), Theta1 (11, 22, 12)
_ODE_TABLE = [(sw2, sb2, tuple(K0), tuple(K1), tuple(T1))
              for sw2, sb2, K0, K1, T1, _ in _KERNELS["resnet_ode"]["rows"]]


def _stream(L, sw2, sb2, K0):
    tr = kn.ResNet(L, kn.ReLU(), weight_var=sw2, bias_var=sb2).trajectory(K0=K0, layers=[L])
    K, T = tr.nngp[0], tr.ntk[0]
    return np.array([K[0, 0], K[1, 1], K[0, 1], T[0, 0], T[1, 1], T[0, 1]])


@check("ReLU ResNet -> ODE limit (Richardson)")
def _resnet_ode(ctx):
    """The ResNet recursion is forward Euler with step 1/L (kernels.md §3.3), so its error has
    an expansion in powers of 1/L; two Richardson steps over L, 2L, 4L leave O(L^-3), measured
    below 3e-9 relative at L = 500 for these rows (and below 1e-10 at L = 2000)."""
    out = []
    L = 500 if ctx.quick else 2000
    tol = 1e-8 if ctx.quick else 1e-10
    for sw2, sb2, (q1, q2, c), K1, T1 in _ODE_TABLE:
        K0 = np.array([[q1, c], [c, q2]], dtype=float)
        a, b, d = (_stream(n, sw2, sb2, K0) for n in (L, 2 * L, 4 * L))
        r1, r1b = 2 * b - a, 2 * d - b            # removes the O(1/L) term
        rich = (4 * r1b - r1) / 3                  # removes the O(1/L^2) term
        exp = np.array(K1 + T1)
        err = _rel(rich, exp)
        out.append(Result(f"sw2={sw2}, sb2={sb2}, K0={K0[0, 0]:g},{K0[1, 1]:g},{K0[0, 1]:g}: "
                          f"K_1, Theta_1 (kernels.md §3.4)", "ODE table (DOP853)",
                          f"max rel err {err:.1e} (L={L},{2 * L},{4 * L})", f"{tol:g}",
                          err <= tol))
    from limits.plots import resnet_vs_ode
    fig = resnet_vs_ode(weight_var=1.0,
                        ode_value=_KERNELS["resnet_ode"]["rows"][0][-1])
    out[-1].figure = ctx.save(fig, "resnet_vs_ode.png")
    return out


@check("fast path vs layer loop")
def _fast_vs_loop(ctx):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 8))
    x[1] = x[0] + 1e-7 * rng.standard_normal(8)        # a nearly parallel pair
    out = []
    for name, act in [("ReLU", kn.ReLU()), ("leaky 0.2", kn.LeakyReLU(0.2)),
                      ("abs", kn.ABReLU(-1.0, 1.0))]:
        for L in ((100, 3000) if ctx.quick else (100, 3000, 30_000)):
            net = kn.MLP(L, act, weight_var=2.0 / (1 + act.a ** 2))
            a, b = net.kernels(x, fast=True), net.kernels(x, fast=False)
            err = 0.0
            for A, B in ((a.nngp, b.nngp), (a.ntk, b.ntk)):
                d = np.sqrt(np.outer(np.diag(B), np.diag(B)))
                err = max(err, float(np.max(np.abs(A - B) / d)))
            out.append(Result(f"{name} MLP depth {L}: tabulated vs loop", "equal",
                              f"max |diff| / sqrt(K_ii K_jj) = {err:.1e}", "1e-12",
                              err <= 1e-12))
    return out
