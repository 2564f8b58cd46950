"""Hostile-but-realistic inputs to the public API, the CLIs and the sweep store (issue 21,
second pass: inputs not in the issue's list).  Not a test: it prints one row per probe
(probe, outcome, verdict) and the counts.

    PYTHONPATH=. python benchmarks/hostile_probes.py [--no-cli] [FILTER]

Each probe either expects a refusal (a ``ValueError`` / ``TypeError`` raised by our own code,
before compiled code runs, whose message names the argument: verdict ``ok``; raised from
inside NumPy / SciPy / numba, of another type, or not naming the argument: ``FINDING``; a
result: ``FINDING`` (accepted)), or a result (finite, and right where a check is given:
``ok``; NaN, wrong or an error: ``FINDING``).
"""
import math
import os
import subprocess
import sys
import tempfile
import traceback
import warnings

import numba
import numpy as np

import kernels as kn
import limits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS = (os.path.join(ROOT, "kernels"), os.path.join(ROOT, "limits"))

PROBES = []


def err(name, fn, *names):
    """A probe that expects a ValueError/TypeError naming one of ``names``."""
    PROBES.append((name, fn, "error", names))


def ok(name, fn, check=None):
    """A probe that expects a finite result (and ``check(result)`` true, if given)."""
    PROBES.append((name, fn, "ok", check))


def _finite(r):
    if r is None:
        return True
    if isinstance(r, (str, np.str_)) or (isinstance(r, np.ndarray) and r.dtype.kind in "USO"):
        return True
    if isinstance(r, (float, int, np.floating, np.integer, np.ndarray)):
        return bool(np.all(np.isfinite(np.asarray(r, dtype=float))))
    if isinstance(r, dict):
        return all(_finite(v) for v in r.values() if isinstance(v, (float, np.ndarray)))
    if isinstance(r, (tuple, list)):
        return all(_finite(v) for v in r)
    for attr in ("nngp", "ntk", "mean", "values", "cov"):
        v = getattr(r, attr, None)
        if isinstance(v, (np.ndarray, float)):
            if not _finite(v):
                return False
    return True


def _where(exc):
    tb = traceback.extract_tb(exc.__traceback__)
    return tb[-1].filename if tb else "?"


def run_one(name, fn, kind, extra):
    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            r = fn()
        except Exception as exc:               # noqa: BLE001  (a probe reports every error)
            where = _where(exc)
            ours = where.startswith(OURS)
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0][:110] if str(exc) else ''}"
            if kind == "ok":
                return msg, "FINDING (error on a valid input)"
            good_type = type(exc) in (ValueError, TypeError) or (
                type(exc) is FloatingPointError and ours) or (
                isinstance(exc, (ValueError, TypeError))
                and type(exc).__module__.split(".")[0] in ("kernels", "limits", "builtins"))
            named = any(n.lower() in str(exc).lower() for n in extra) if extra else True
            if good_type and ours and named:
                return msg, "ok"
            why = []
            if not good_type:
                why.append(f"type {type(exc).__module__}.{type(exc).__name__}")
            if not ours:
                why.append(f"raised in {os.path.relpath(where, ROOT)[:60]}")
            if not named:
                why.append(f"does not name {extra}")
            return msg, "FINDING (" + "; ".join(why) + ")"
    out = _short(r)
    if kind == "error":
        return out, "FINDING (accepted)" + ("" if _finite(r) else ", non-finite result")
    if not _finite(r):
        return out, "FINDING (non-finite result)"
    if extra is not None:
        try:
            good = extra(r)
        except Exception as exc:               # noqa: BLE001
            return out, f"FINDING (check raised {type(exc).__name__}: {exc})"
        if not good:
            return out, "FINDING (wrong answer)"
    return out, "ok"


def _short(r):
    if isinstance(r, np.ndarray):
        s = f"array{r.shape} {np.array2string(r.ravel()[:3], precision=4)}"
    else:
        s = repr(r)
    s = " ".join(s.split())
    return s[:110]


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
rng = np.random.default_rng(0)
X = rng.standard_normal((5, 3))
Y = np.sin(X[:, 0])
XT = rng.standard_normal((3, 3))
NET = kn.MLP(depth=2, activation=kn.Erf(), bias_var=0.1)
RELU = kn.MLP(depth=2, activation=kn.ReLU(), weight_var=2.0, bias_var=0.1)
RES = kn.ResNet(depth=2, activation=kn.ReLU(), weight_var=1.0, bias_var=0.1)
lml = kn.gp.log_marginal_likelihood

# ---- kn.gp.log_marginal_likelihood ---------------------------------------------------------
err("gp.lml noise_var='a'", lambda: lml(NET, X, Y, "a"), "noise_var")
err("gp.lml noise_var=None", lambda: lml(NET, X, Y, None), "noise_var")
err("gp.lml noise_var=True", lambda: lml(NET, X, Y, True), "noise_var")
err("gp.lml noise_var=nan", lambda: lml(NET, X, Y, float("nan")), "noise_var")
err("gp.lml noise_var=inf", lambda: lml(NET, X, Y, float("inf")), "noise_var")
err("gp.lml noise_var=-1", lambda: lml(NET, X, Y, -1.0), "noise_var")
err("gp.lml noise_var=1j", lambda: lml(NET, X, Y, 1j), "noise_var")
err("gp.lml noise_var=[0.1]", lambda: lml(NET, X, Y, [0.1]), "noise_var")
ok("gp.lml noise_var=np.float32(0.1)", lambda: lml(NET, X, Y, np.float32(0.1)),
   lambda v: abs(v - lml(NET, X, Y, 0.1)) < 1e-6 * abs(v))
ok("gp.lml noise_var=0-d array", lambda: lml(NET, X, Y, np.array(0.1)),
   lambda v: v == lml(NET, X, Y, 0.1))
err("gp.lml noise_var=0, duplicated rows", lambda: lml(NET, np.vstack([X, X[:1]]),
                                                     np.append(Y, Y[0]), 0.0), "noise_var")
err("gp.lml y wrong length", lambda: lml(NET, X, Y[:4], 0.1), "y")
err("gp.lml y NaN", lambda: lml(NET, X, np.where(np.arange(5) == 2, np.nan, Y), 0.1), "y")
err("gp.lml y complex", lambda: lml(NET, X, Y + 1j, 0.1), "y")
err("gp.lml y 3-d", lambda: lml(NET, X, Y.reshape(5, 1, 1), 0.1), "y")
err("gp.lml y=None", lambda: lml(NET, X, None, 0.1), "y")
err("gp.lml y str", lambda: lml(NET, X, "abc", 0.1), "y")
err("gp.lml y (5, 0)", lambda: lml(NET, X, np.zeros((5, 0)), 0.1), "y")
err("gp.fit y (5, 0)", lambda: fit(NET, X, np.zeros((5, 0)), 0.1), "y")
err("gp.lml x 0 rows", lambda: lml(NET, np.zeros((0, 3)), np.zeros(0), 0.1), "x")
ok("gp.lml 1 row", lambda: lml(NET, X[:1], Y[:1], 0.1))
ok("gp.lml int x and y", lambda: lml(NET, np.arange(6).reshape(3, 2), np.arange(3), 0.1))
ok("gp.lml float32 x", lambda: lml(NET, X.astype(np.float32), Y, 0.1))
ok("gp.lml y bool", lambda: lml(NET, X, Y > 0, 0.1))
err("gp.lml x complex", lambda: lml(NET, X + 0j, Y, 0.1), "x")
err("gp.lml x 1-d", lambda: lml(NET, X[0], Y[:1], 0.1), "x")
err("gp.lml kind='NNGP'", lambda: lml(NET, X, Y, 0.1, kind="NNGP"), "kind")
err("gp.lml kind=None", lambda: lml(NET, X, Y, 0.1, kind=None), "kind")
err("gp.lml kind=['nngp']", lambda: lml(NET, X, Y, 0.1, kind=["nngp"]), "kind")
err("gp.lml grad='yes'", lambda: lml(NET, X, Y, 0.1, grad="yes"), "grad")
err("gp.lml grad=1", lambda: lml(NET, X, Y, 0.1, grad=1), "grad")
err("gp.lml net=None", lambda: lml(None, X, Y, 0.1), "net")
err("gp.lml net=activation", lambda: lml(kn.ReLU(), X, Y, 0.1), "net")
ok("gp.lml grad=True ResNet", lambda: lml(RES, X, Y, 0.1, grad=True)[0])
ok("gp.lml grad, per-layer", lambda: lml(kn.MLP(2, kn.Erf(), weight_var=[1.0, 1.5, 2.0],
                                                 bias_var=0.1), X, Y, 0.1, grad=True)[1][
    "weight_var"], lambda g: np.shape(g) == (3,))
ok("gp.lml kind=ntk", lambda: lml(RELU, X, Y, 0.1, kind="ntk"))
err("gp.lml x1 huge scale 1e200 (NNGP overflows?)", lambda: lml(NET, X * 1e200, Y, 0.1), "x")
# (FloatingPointError from our own code naming the rows is the documented overflow refusal)

# ---- kn.gp.fit ------------------------------------------------------------------------------
fit = kn.gp.fit
err("gp.fit params='weight'", lambda: fit(NET, X, Y, 0.1, params="weight"), "params")
err("gp.fit params=[]", lambda: fit(NET, X, Y, 0.1, params=[]), "params")
err("gp.fit params=None", lambda: fit(NET, X, Y, 0.1, params=None), "params")
err("gp.fit params=7", lambda: fit(NET, X, Y, 0.1, params=7), "params")
err("gp.fit bounds low>high", lambda: fit(NET, X, Y, 0.1, bounds={"noise_var": (1, 0.1)}),
    "bounds")
err("gp.fit bounds negative", lambda: fit(NET, X, Y, 0.1, bounds={"noise_var": (-1, 1)}),
    "bounds")
err("gp.fit bounds unknown", lambda: fit(NET, X, Y, 0.1, bounds={"foo": (1, 2)}), "bounds")
err("gp.fit bounds triple", lambda: fit(NET, X, Y, 0.1, bounds={"noise_var": (1, 2, 3)}),
    "bounds")
err("gp.fit bounds list", lambda: fit(NET, X, Y, 0.1, bounds=[(1e-3, 1)]), "bounds")
err("gp.fit bounds None entry", lambda: fit(NET, X, Y, 0.1, bounds={"noise_var": None}),
    "bounds")
err("gp.fit noise_var=0 fitted", lambda: fit(NET, X, Y, 0.0), "noise_var")
err("gp.fit bias_var=None fitted", lambda: fit(kn.MLP(2, kn.Erf(), bias_var=None), X, Y, 0.1),
    "bias_var")
err("gp.fit maxiter=0", lambda: fit(NET, X, Y, 0.1, maxiter=0), "maxiter")
err("gp.fit maxiter=1.5", lambda: fit(NET, X, Y, 0.1, maxiter=1.5), "maxiter")
err("gp.fit ftol=-1", lambda: fit(NET, X, Y, 0.1, ftol=-1.0), "ftol")
err("gp.fit gtol='a'", lambda: fit(NET, X, Y, 0.1, gtol="a"), "gtol")
ok("gp.fit 2 rows", lambda: fit(NET, X[:2], Y[:2], 0.1).log_marginal_likelihood)
ok("gp.fit noise only", lambda: fit(NET, X, Y, 0.1, params=("noise_var",)).noise_var)
ok("gp.fit ResNet", lambda: fit(RES, X, Y, 0.1, maxiter=5).log_marginal_likelihood)
ok("gp.fit start outside bounds", lambda: fit(NET, X, Y, 10.0, params=("noise_var",),
                                              bounds={"noise_var": (1e-3, 1)}).noise_var,
   lambda v: 1e-3 <= v <= 1)

# ---- kernels.sklearn ------------------------------------------------------------------------
from kernels.sklearn import NNGPKernel, NTKKernel  # noqa: E402

err("NNGPKernel(net=None)", lambda: NNGPKernel(None), "net")
err("NNGPKernel()(X 1-d)", lambda: NNGPKernel(NET)(X[0]), "x")
err("NNGPKernel()(X NaN)", lambda: NNGPKernel(NET)(np.full((2, 3), np.nan)), "x")
err("NNGPKernel()(X, Y wrong d)", lambda: NNGPKernel(NET)(X, XT[:, :2]), "Y")
err("NNGPKernel()(X complex)", lambda: NNGPKernel(NET)(X + 1j), "x")
err("NNGPKernel(weight_var='a')(X)", lambda: NNGPKernel(NET, weight_var="a")(X), "weight_var")
err("NNGPKernel(weight_var=-1)(X)", lambda: NNGPKernel(NET, weight_var=-1.0)(X), "weight_var")
err("NNGPKernel(weight_var=nan)(X)", lambda: NNGPKernel(NET, weight_var=np.nan)(X),
    "weight_var")
ok("NNGPKernel(net bias_var=None: 0.0 in the NTK parameterization)",
   lambda: NNGPKernel(kn.MLP(2, kn.Erf(), bias_var=None))(X),
   lambda k: np.array_equal(k, kn.MLP(2, kn.Erf(), bias_var=0.0).nngp(X)))
err("NNGPKernel(per-layer net)", lambda: NNGPKernel(kn.MLP(2, kn.Erf(),
                                                            weight_var=[1.0, 1.0, 1.0]))(X),
    "weight_var")
ok("NTKKernel eval_gradient", lambda: NTKKernel(RELU)(X, eval_gradient=True)[1],
   lambda g: g.shape == (5, 5, 2))
ok("NNGPKernel diag", lambda: NNGPKernel(NET).diag(X),
   lambda d: np.allclose(d, np.diag(NET.nngp(X)), rtol=1e-12))
ok("NNGPKernel list-of-lists X", lambda: NNGPKernel(NET)(X.tolist()))
err("NNGPKernel diag(X NaN)", lambda: NNGPKernel(NET).diag(np.full((2, 3), np.nan)), "x")
ok("NNGPKernel gradient bounds fixed", lambda: NNGPKernel(
    NET, weight_var_bounds="fixed", bias_var_bounds="fixed")(X, eval_gradient=True)[1],
   lambda g: g.shape == (5, 5, 0))

# ---- net.kernel_grads -----------------------------------------------------------------------
err("kernel_grads x NaN", lambda: RELU.kernel_grads(np.full((2, 3), np.nan)), "x")
err("kernel_grads x2 wrong d", lambda: RELU.kernel_grads(X, XT[:, :2]), "x")
err("kernel_grads x 0 rows", lambda: RELU.kernel_grads(np.zeros((0, 3))), "x")
err("kernel_grads x complex", lambda: RELU.kernel_grads(X + 1j), "x")
err("kernel_grads x=None", lambda: RELU.kernel_grads(None), "x")
err("kernel_grads x 1-d", lambda: RELU.kernel_grads(X[0]), "x")
ok("kernel_grads 1 row", lambda: RELU.kernel_grads(X[:1]).nngp["weight_var"])
ok("kernel_grads int x", lambda: RELU.kernel_grads(np.arange(6).reshape(2, 3)).nngp[
    "weight_var"])
ok("kernel_grads duplicated rows", lambda: RELU.kernel_grads(np.vstack([X[:1], X[:1]])).nngp[
    "weight_var"])
ok("kernel_grads x2 given", lambda: RELU.kernel_grads(X, XT).nngp["bias_var"],
   lambda g: g.shape == (5, 3))
ok("kernel_grads tanh", lambda: kn.MLP(2, kn.Tanh(), 1.5, 0.1).kernel_grads(X).ntk[
    "weight_var"])
ok("kernel_grads zero row (ReLU, sb2>0)", lambda: RELU.kernel_grads(
    np.vstack([X[:1], np.zeros((1, 3))])).nngp["weight_var"])
ok("kernel_grads x scale 1e150", lambda: RELU.kernel_grads(X * 1e150).nngp["weight_var"])

# ---- predict(t=array), predict_from_kernels, kernel_regression ------------------------------
K = RELU.kernels(X)
KT = RELU.kernels(XT, X)
KTT = RELU.kernels(XT)
pfk = kn.predict_from_kernels
err("predict t=-1", lambda: kn.predict(RELU, X, Y, XT, t=-1.0), "t")
err("predict t=nan", lambda: kn.predict(RELU, X, Y, XT, t=float("nan")), "t")
err("predict t=[1, -1]", lambda: kn.predict(RELU, X, Y, XT, t=[1.0, -1.0]), "t")
err("predict t=[1, nan]", lambda: kn.predict(RELU, X, Y, XT, t=[1.0, np.nan]), "t")
err("predict t='1'", lambda: kn.predict(RELU, X, Y, XT, t="1"), "t")
err("predict t=1j", lambda: kn.predict(RELU, X, Y, XT, t=1j), "t")
err("predict t=True", lambda: kn.predict(RELU, X, Y, XT, t=True), "t")
err("predict t=[] (empty)", lambda: kn.predict(RELU, X, Y, XT, t=[]).mean, "t")
ok("predict t=[0, 1, None, inf]", lambda: kn.predict(RELU, X, Y, XT, t=[0.0, 1.0, None,
                                                                     np.inf]).mean,
   lambda m: m.shape[0] == 4 and np.allclose(m[2], m[3]))
ok("predict t=0 gives prior mean 0", lambda: kn.predict(RELU, X, Y, XT, t=0.0).mean,
   lambda m: np.all(m == 0))
ok("predict t=int array", lambda: kn.predict(RELU, X, Y, XT, t=np.arange(3)).mean)
ok("predict t=float32 array 2-d", lambda: kn.predict(RELU, X, Y, XT, t=np.ones((2, 2),
                                                                          np.float32)).mean,
   lambda m: m.shape[:2] == (2, 2))
ok("predict t=1e300", lambda: kn.predict(RELU, X, Y, XT, t=1e300, kind="ntk").mean)
err("predict x_test wrong d", lambda: kn.predict(RELU, X, Y, XT[:, :2]), "x_test")
err("predict x_test 0 rows", lambda: kn.predict(RELU, X, Y, np.zeros((0, 3))), "x_test")
err("predict diag_reg=-1", lambda: kn.predict(RELU, X, Y, XT, diag_reg=-1.0), "diag_reg")
err("predict diag_reg=nan", lambda: kn.predict(RELU, X, Y, XT, diag_reg=np.nan), "diag_reg")
err("predict learning_rate=0", lambda: kn.predict(RELU, X, Y, XT, t=1.0, learning_rate=0.0),
    "learning_rate")
err("predict solver='CG'", lambda: kn.predict(RELU, X, Y, XT, solver="CG"), "solver")
err("predict jitter=-1", lambda: kn.predict(RELU, X, Y, XT, jitter=-1.0), "jitter")
err("predict jitter='yes'", lambda: kn.predict(RELU, X, Y, XT, jitter="yes"), "jitter")
err("predict kind='gp'", lambda: kn.predict(RELU, X, Y, XT, kind="gp"), "kind")
err("predict tol=0", lambda: kn.predict(RELU, X, Y, XT, solver="cg", tol=0.0), "tol")
err("predict duplicated train rows, diag_reg=0 nngp (singular: refused with advice)",
    lambda: kn.predict(RELU, np.vstack([X, X[:1]]), np.append(Y, Y[0]), XT).mean, "jitter")
err("predict duplicated rows, conflicting y",
    lambda: kn.predict(RELU, np.vstack([X, X[:1]]), np.append(Y, Y[0] + 1), XT).mean,
    "singular", "definite", "diag_reg", "jitter")
err("pfk k_train_train not square", lambda: pfk(K.nngp[:, :4], KT.nngp, Y), "k_train_train")
err("pfk k_test_train wrong n", lambda: pfk(K.nngp, KT.nngp[:, :4], Y), "k_test_train")
err("pfk y wrong n", lambda: pfk(K.nngp, KT.nngp, Y[:4]), "y_train")
err("pfk non-symmetric", lambda: pfk(K.nngp + np.triu(np.ones((5, 5)), 1), KT.nngp, Y),
    "k_train_train")
err("pfk non-PSD", lambda: pfk(K.nngp - 10 * np.eye(5), KT.nngp, Y), "k_train_train")
err("pfk NaN kernel", lambda: pfk(np.where(np.eye(5) > 0, np.nan, K.nngp), KT.nngp, Y),
    "k_train_train")
err("pfk complex kernel", lambda: pfk(K.nngp + 0j, KT.nngp, Y), "k_train_train")
err("pfk kind=ntk with plain arrays and cov",
    lambda: pfk(K.ntk, KT.ntk, Y, KTT.nngp, kind="ntk"), "nngp")
err("pfk dict missing ntk", lambda: pfk({"nngp": K.nngp}, {"nngp": KT.nngp}, Y, kind="ntk"),
    "ntk")
err("pfk k_test_test wrong shape", lambda: pfk(K.nngp, KT.nngp, Y, KTT.nngp[:2, :2]),
    "k_test_test")
err("pfk k_train_train None", lambda: pfk(None, KT.nngp, Y), "k_train_train")
ok("pfk Kernels objects", lambda: pfk(K, KT, Y, KTT, kind="ntk").mean)
ok("pfk float32 kernels", lambda: pfk(K.nngp.astype(np.float32), KT.nngp.astype(np.float32),
                                      Y).mean)
ok("pfk 1 train point", lambda: pfk(K.nngp[:1, :1], KT.nngp[:, :1], Y[:1]).mean)
err("pfk 0 test points (refused like predict's)", lambda: pfk(K.nngp, np.zeros((0, 5)), Y).mean,
    "k_test_train")
kr = kn.kernel_regression
ok("kernel_regression basic", lambda: kr(K.nngp + 1e-3 * np.eye(5), Y, KT.nngp).mean)
err("kernel_regression diag_reg=-1", lambda: kr(K.nngp, Y, diag_reg=-1.0), "diag_reg")
err("kernel_regression tol=0", lambda: kr(K.nngp, Y, tol=0.0), "tol")
err("kernel_regression tol=nan", lambda: kr(K.nngp, Y, tol=np.nan), "tol")
err("kernel_regression maxiter=0", lambda: kr(K.nngp, Y, maxiter=0), "maxiter")
err("kernel_regression block=0", lambda: kr(K.nngp, Y, block=0), "block")
err("kernel_regression solver='x'", lambda: kr(K.nngp, Y, solver="x"), "solver")
err("kernel_regression preconditioner='x'", lambda: kr(K.nngp, Y, preconditioner="x"),
    "preconditioner")
err("kernel_regression K not square", lambda: kr(K.nngp[:, :4], Y), "k_train_train")
err("kernel_regression y wrong n", lambda: kr(K.nngp, Y[:3]), "y_train")
err("kernel_regression y NaN", lambda: kr(K.nngp, np.full(5, np.nan)), "y_train")
err("kernel_regression K NaN", lambda: kr(np.full((5, 5), np.nan), Y), "k_train_train")
err("kernel_regression K complex", lambda: kr(K.nngp + 0j, Y), "k_train_train")
err("kernel_regression test wrong n", lambda: kr(K.nngp, Y, KT.nngp[:, :3]), "k_test_train")
err("kernel_regression K negative definite", lambda: kr(-np.eye(5), Y), "k_train_train",
    "definite")
err("kernel_regression K=None", lambda: kr(None, Y), "k_train_train")
ok("kernel_regression 1x1", lambda: kr(np.array([[2.0]]), np.array([1.0])).coef,
   lambda c: np.allclose(c, 0.5))
ok("kernel_regression 0 rows y (0,)",
   lambda: kr(np.zeros((0, 0)), np.zeros(0)).coef if True else None)

# ---- per-layer variances, standard parameterization -----------------------------------------
err("MLP weight_var list too short", lambda: kn.MLP(2, kn.ReLU(), weight_var=[1.0, 2.0]),
    "weight_var")
err("MLP weight_var list too long", lambda: kn.MLP(2, kn.ReLU(), weight_var=[1.0] * 4),
    "weight_var")
err("MLP weight_var list with NaN", lambda: kn.MLP(2, kn.ReLU(), weight_var=[1.0, np.nan, 1.0]),
    "weight_var")
err("MLP weight_var list with str", lambda: kn.MLP(2, kn.ReLU(), weight_var=[1.0, "a", 1.0]),
    "weight_var")
err("MLP weight_var list with negative", lambda: kn.MLP(2, kn.ReLU(),
                                                        weight_var=[1.0, -1.0, 1.0]),
    "weight_var")
err("MLP weight_var list with None", lambda: kn.MLP(2, kn.ReLU(), weight_var=[1.0, None, 1.0]),
    "weight_var")
err("MLP weight_var list with bool", lambda: kn.MLP(2, kn.ReLU(), weight_var=[1.0, True, 1.0]),
    "weight_var")
err("MLP weight_var 2-d array", lambda: kn.MLP(2, kn.ReLU(), weight_var=np.ones((3, 1))),
    "weight_var")
err("MLP weight_var complex", lambda: kn.MLP(2, kn.ReLU(), weight_var=1 + 1j), "weight_var")
err("MLP weight_var complex array", lambda: kn.MLP(2, kn.ReLU(), weight_var=np.ones(3) + 1j),
    "weight_var")
err("MLP weight_var=True", lambda: kn.MLP(2, kn.ReLU(), weight_var=True), "weight_var")
err("MLP weight_var='2'", lambda: kn.MLP(2, kn.ReLU(), weight_var="2"), "weight_var")
err("MLP weight_var=None", lambda: kn.MLP(2, kn.ReLU(), weight_var=None), "weight_var")
err("MLP weight_var=[] ", lambda: kn.MLP(2, kn.ReLU(), weight_var=[]), "weight_var")
ok("MLP weight_var=np.float32", lambda: kn.MLP(2, kn.ReLU(), weight_var=np.float32(2.0)).nngp(X))
ok("MLP weight_var=0-d array", lambda: kn.MLP(2, kn.ReLU(), weight_var=np.array(2.0)).nngp(X),
   lambda k: np.allclose(k, kn.MLP(2, kn.ReLU(), weight_var=2.0).nngp(X), rtol=0, atol=0))
ok("MLP weight_var int array", lambda: kn.MLP(2, kn.ReLU(), weight_var=np.array([1, 2, 2]))
   .nngp(X))
ok("MLP weight_var tuple of np.float32", lambda: kn.MLP(
    2, kn.ReLU(), weight_var=tuple(np.float32(v) for v in (1, 2, 2))).nngp(X))
ok("MLP weight_var per-layer zero", lambda: kn.MLP(2, kn.ReLU(), weight_var=[1.0, 0.0, 2.0],
                                                   bias_var=0.1).nngp(X))
ok("MLP bias_var list with None entries", lambda: kn.MLP(2, kn.ReLU(),
                                                         bias_var=[None, 0.1, None]).nngp(X))
err("MLP bias_var list too short", lambda: kn.MLP(2, kn.ReLU(), bias_var=[0.1]), "bias_var")
err("MLP parameterization='NTK'", lambda: kn.MLP(2, kn.ReLU(), parameterization="NTK"),
    "parameterization")
err("MLP parameterization=None", lambda: kn.MLP(2, kn.ReLU(), parameterization=None),
    "parameterization")
err("MLP standard without width", lambda: kn.MLP(2, kn.ReLU(), parameterization="standard"),
    "width")
err("MLP standard width=0", lambda: kn.MLP(2, kn.ReLU(), parameterization="standard", width=0),
    "width")
err("MLP standard width=-5", lambda: kn.MLP(2, kn.ReLU(), parameterization="standard",
                                            width=-5), "width")
err("MLP standard width=2.5", lambda: kn.MLP(2, kn.ReLU(), parameterization="standard",
                                             width=2.5), "width")
err("MLP standard width='512'", lambda: kn.MLP(2, kn.ReLU(), parameterization="standard",
                                               width="512"), "width")
err("MLP standard width=True", lambda: kn.MLP(2, kn.ReLU(), parameterization="standard",
                                              width=True), "width")
err("MLP standard width list wrong length", lambda: kn.MLP(2, kn.ReLU(),
                                                           parameterization="standard",
                                                           width=[4, 4, 4]), "width")
err("MLP standard width=nan", lambda: kn.MLP(2, kn.ReLU(), parameterization="standard",
                                             width=float("nan")), "width")
ok("MLP standard width=np.int64", lambda: kn.MLP(2, kn.ReLU(), parameterization="standard",
                                                 width=np.int64(64)).ntk(X))
ok("MLP standard width per layer", lambda: kn.MLP(2, kn.ReLU(), parameterization="standard",
                                                  width=[8, 16]).ntk(X))
ok("MLP standard width=10**15 (NTK ~ width)", lambda: kn.MLP(
    2, kn.ReLU(), parameterization="standard", width=10 ** 15).ntk(X))
err("MLP standard from K0 (ntk needs d)", lambda: kn.MLP(
    2, kn.ReLU(), parameterization="standard", width=8).ntk(K0=np.eye(2)), "K0", "d")
ok("MLP standard nngp == ntk-param nngp", lambda: kn.MLP(
    2, kn.ReLU(), parameterization="standard", width=8).nngp(X),
   lambda k: np.allclose(k, kn.MLP(2, kn.ReLU()).nngp(X), rtol=1e-14))
err("ResNet weight_var list wrong length", lambda: kn.ResNet(3, kn.ReLU(),
                                                             weight_var=[1.0, 1.0]),
    "weight_var")
ok("ResNet per-layer", lambda: kn.ResNet(2, kn.ReLU(), weight_var=[1.0, 0.5],
                                         bias_var=[0.1, 0.0]).ntk(X))
err("MLP depth=np.float64(2.5)", lambda: kn.MLP(np.float64(2.5), kn.ReLU()), "depth")
err("MLP depth='3'", lambda: kn.MLP("3", kn.ReLU()), "depth")
err("MLP depth=True", lambda: kn.MLP(True, kn.ReLU()), "depth")
err("MLP activation='relu'", lambda: kn.MLP(2, "relu"), "activation")
err("MLP activation=ReLU class", lambda: kn.MLP(2, kn.ReLU), "activation")
err("nngp x (3, 0)", lambda: RELU.nngp(np.zeros((3, 0))), "x")
err("nngp x2 wrong d", lambda: RELU.nngp(X, XT[:, :2]), "x2")
err("nngp x object array", lambda: RELU.nngp(np.array([[1, "a"]], dtype=object)), "x")
err("nngp x ragged list", lambda: RELU.nngp([[1.0, 2.0], [3.0]]), "x")
ok("nngp x zero rows and antipodal", lambda: RELU.nngp(np.vstack([X[:1], -X[:1],
                                                                   np.zeros((1, 3))])))
err("nngp diagonal='yes'", lambda: RELU.nngp(X, diagonal="yes"), "diagonal")
err("nngp K0 non-PSD", lambda: RELU.nngp(K0=np.array([[1.0, 2.0], [2.0, 1.0]])), "K0")
err("nngp K0 + x both", lambda: RELU.nngp(X, K0=np.eye(5)), "K0")

# ---- limits.criticality ---------------------------------------------------------------------
from limits import criticality as cr  # noqa: E402

sp = cr.signal_propagation
_sin = numba.njit(lambda v: math.sin(v))
_cos = numba.njit(lambda v: math.cos(v))
err("signal_propagation weight_var=-1", lambda: sp(kn.Tanh(), -1.0, 0.1), "weight_var")
err("signal_propagation weight_var=nan", lambda: sp(kn.Tanh(), np.nan, 0.1), "weight_var")
err("signal_propagation weight_var=inf", lambda: sp(kn.Tanh(), np.inf, 0.1), "weight_var")
err("signal_propagation weight_var='a'", lambda: sp(kn.Tanh(), "a", 0.1), "weight_var")
err("signal_propagation weight_var=None", lambda: sp(kn.Tanh(), None, 0.1), "weight_var")
err("signal_propagation weight_var=True", lambda: sp(kn.Tanh(), True, 0.1), "weight_var")
err("signal_propagation weight_var complex array", lambda: sp(kn.Tanh(), np.array([1.5 + 1j]),
                                                             0.1), "weight_var")
err("signal_propagation weight_var=1j", lambda: sp(kn.Tanh(), 1j, 0.1), "weight_var")
err("signal_propagation bias_var ragged", lambda: sp(kn.Tanh(), 1.5, [[0.1], [0.1, 0.2]]),
    "bias_var")
err("signal_propagation shapes don't broadcast", lambda: sp(kn.Tanh(), [1.0, 2.0],
                                                           [0.1, 0.2, 0.3]),
    "weight_var", "bias_var", "broadcast")
err("signal_propagation activation='tanh'", lambda: sp("tanh", 1.5, 0.1), "activation")
err("signal_propagation ShapedReLU without n", lambda: sp(kn.ShapedReLU(1, -1), 1.0, 0.0), "n")
err("signal_propagation n with ReLU", lambda: sp(kn.ReLU(), 1.0, 0.0, n=10), "n")
err("signal_propagation ShapedReLU n=0", lambda: sp(kn.ShapedReLU(1, -1), 1.0, 0.0, n=0), "n")
err("signal_propagation ShapedReLU n=1.5", lambda: sp(kn.ShapedReLU(1, -1), 1.0, 0.0, n=1.5),
    "n")
err("signal_propagation finite_difference='yes'",
    lambda: sp(kn.Activation(_sin), 1.0, 0.1, finite_difference="yes"), "finite_difference")
ok("signal_propagation empty arrays", lambda: sp(kn.Tanh(), [], 0.1).q_star,
   lambda q: q.shape == (0,))
ok("signal_propagation float32 / int", lambda: sp(kn.Tanh(), np.float32(1.5), 0).chi_1)
ok("signal_propagation 0-d arrays", lambda: sp(kn.Tanh(), np.array(1.5), np.array(0.05)).chi_1)
ok("signal_propagation sw2 = 0", lambda: sp(kn.Tanh(), 0.0, 0.1).q_star,
   lambda q: abs(float(q) - 0.1) < 1e-12)
ok("signal_propagation huge sw2 1e300 (ReLU)", lambda: sp(kn.ReLU(), 1e300, 0.1).phase,
   lambda p: str(p) == "chaotic")
ok("signal_propagation huge sw2 1e300 (tanh: q* > 1e12 documented as unbounded)",
   lambda: sp(kn.Tanh(), 1e300, 0.1).phase, lambda p: str(p) == "unbounded")
ok("signal_propagation huge sb2 1e300 (tanh)", lambda: sp(kn.Tanh(), 1.5, 1e300).q_star)
ok("signal_propagation tiny sw2 1e-300 (erf)", lambda: sp(kn.Erf(), 1e-300, 0.0).chi_1)
ok("signal_propagation erf sw2 = pi/4 sb2 = 0 (critical)",
   lambda: sp(kn.Erf(), math.pi / 4, 0.0).phase, lambda p: str(p) == "critical")
ok("signal_propagation Identity sw2=1", lambda: sp(kn.Identity(), 1.0, 0.0).phase)
ok("signal_propagation Activation(sin, cos)", lambda: sp(kn.Activation(_sin, _cos), 2.0,
                                                         0.1).chi_1)
ok("signal_propagation ShapedReLU n=10", lambda: sp(kn.ShapedReLU(1, -1), 1.0, 0.1,
                                                    n=10).chi_1)
err("edge_of_chaos bias_var=-1", lambda: cr.edge_of_chaos(kn.Tanh(), -1.0), "bias_var")
err("edge_of_chaos bias_var=nan", lambda: cr.edge_of_chaos(kn.Tanh(), np.nan), "bias_var")
err("edge_of_chaos bias_var complex", lambda: cr.edge_of_chaos(kn.Tanh(), np.array([1j])),
    "bias_var")
err("edge_of_chaos bias_var=None", lambda: cr.edge_of_chaos(kn.Tanh(), None), "bias_var")
err("edge_of_chaos bias_var=True", lambda: cr.edge_of_chaos(kn.Tanh(), True), "bias_var")
ok("edge_of_chaos empty", lambda: cr.edge_of_chaos(kn.Tanh(), []), lambda e: e.shape == (0,))
ok("edge_of_chaos bias_var=1e300 tanh (q* > 1e12: documented inf)",
   lambda: str(float(cr.edge_of_chaos(kn.Tanh(), 1e300))), lambda e: e == "inf")
ok("edge_of_chaos int 0", lambda: cr.edge_of_chaos(kn.Tanh(), 0), lambda e: abs(e - 1) < 1e-12)
ok("edge_of_chaos ReLU", lambda: cr.edge_of_chaos(kn.ReLU(), [0.0, 1.0]),
   lambda e: np.all(e == 2.0))

# ---- limits.which_limit ---------------------------------------------------------------------
SH = kn.MLP(depth=8, activation=kn.ShapedReLU(1.0, -1.0, rate="width"), weight_var=1.0)
X2 = np.array([[1.0, 0.0], [0.3, math.sqrt(1 - 0.09)]])
wl = limits.which_limit
err("which_limit width=0", lambda: wl(SH, X2, 0, samples=50), "width")
err("which_limit width=2.5", lambda: wl(SH, X2, 2.5, samples=50), "width")
err("which_limit width='64'", lambda: wl(SH, X2, "64", samples=50), "width")
err("which_limit samples=1", lambda: wl(SH, X2, 64, samples=1), "samples")
err("which_limit samples=0", lambda: wl(SH, X2, 64, samples=0), "samples")
err("which_limit tol=-1", lambda: wl(SH, X2, 64, samples=50, tol=-1.0), "tol")
err("which_limit tol=nan", lambda: wl(SH, X2, 64, samples=50, tol=np.nan), "tol")
err("which_limit n_boot=5", lambda: wl(SH, X2, 64, samples=50, n_boot=5), "n_boot")
err("which_limit x 1 row", lambda: wl(SH, X2[:1], 64, samples=50), "x")
err("which_limit x 3 rows", lambda: wl(SH, np.eye(3), 64, samples=50), "x")
err("which_limit x NaN", lambda: wl(SH, np.full((2, 2), np.nan), 64, samples=50), "x")
ok("which_limit x identical rows (correlation 1: every limit exact)",
   lambda: wl(SH, np.ones((2, 2)), 64, samples=50, n_boot=10).table[0]["distance"],
   lambda d: d < 1e-12)
err("which_limit x zero row", lambda: wl(SH, np.array([[1.0, 0], [0, 0]]), 64, samples=50),
    "x")
err("which_limit net=None", lambda: wl(None, X2, 64, samples=50), "net")
err("which_limit seed='a'", lambda: wl(SH, X2, 64, samples=50, seed="a"), "seed")
err("which_limit huge width", lambda: wl(SH, X2, 10 ** 9, samples=50), "width", "memory",
    "bytes")
ok("which_limit ReLU net", lambda: wl(RELU, X2[:, :2], 64, samples=50, n_boot=10).table[0][
    "distance"])

# ---- limits.trainability.trainability_grid --------------------------------------------------
from limits.trainability import trainability_grid, train_tanh_mlp  # noqa: E402

TMP = tempfile.mkdtemp(prefix="hostile-")
st = os.path.join(TMP, "t.sqlite")
err("trainability_grid weight_vars=[]", lambda: trainability_grid([], [2], st), "weight_vars")
err("trainability_grid depths=[]", lambda: trainability_grid([1.0], [], st), "depths")
err("trainability_grid depths=[0]", lambda: trainability_grid([1.0], [0], st), "depth")
err("trainability_grid depths=[2.5]", lambda: trainability_grid([1.0], [2.5], st), "depth")
err("trainability_grid weight_vars=[-1]", lambda: trainability_grid([-1.0], [2], st),
    "weight_var")
err("trainability_grid weight_vars=[nan]", lambda: trainability_grid([np.nan], [2], st),
    "weight_var")
err("trainability_grid weight_vars='1.0'", lambda: trainability_grid("1.0", [2], st),
    "weight_var")
ok("trainability_grid weight_vars=1.0 (scalar: one column)",
   lambda: trainability_grid(1.0, [2], os.path.join(TMP, "t1.sqlite"), steps=5).accuracy)
err("trainability_grid store=None", lambda: trainability_grid([1.0], [2], None), "store")
err("trainability_grid store in missing dir", lambda: trainability_grid(
    [1.0], [2], os.path.join(TMP, "no", "such", "dir", "s.sqlite")), "store")
err("trainability_grid width=0", lambda: trainability_grid([1.0], [2], st, width=0), "width")
err("trainability_grid steps=0", lambda: trainability_grid([1.0], [2], st, steps=0), "steps")
err("trainability_grid lr=0", lambda: trainability_grid([1.0], [2], st, lr=0.0), "lr")
err("trainability_grid lr=nan", lambda: trainability_grid([1.0], [2], st, lr=np.nan), "lr")
err("trainability_grid bias_var=-1", lambda: trainability_grid([1.0], [2], st, bias_var=-1.0),
    "bias_var")
err("trainability_grid duplicate depths", lambda: trainability_grid([1.0], [2, 2], st),
    "depths")
err("trainability_grid huge depth", lambda: trainability_grid([1.0], [10 ** 12], st),
    "depth", "memory")
err("train_tanh_mlp width=10**9", lambda: train_tanh_mlp(2, 1.0, width=10 ** 9), "width",
    "memory")
err("train_tanh_mlp depth=2.5", lambda: train_tanh_mlp(2.5, 1.0), "depth")
err("train_tanh_mlp weight_var=True", lambda: train_tanh_mlp(2, True), "weight_var")
err("train_tanh_mlp seed='a'", lambda: train_tanh_mlp(2, 1.0, seed="a"), "seed")
# (steps=10**12 is accepted and runs for days: a time, not a memory, budget: not refused)
ok("train_tanh_mlp weight_var=1e300 (diverges or not; reported)",
   lambda: train_tanh_mlp(2, 1e300, steps=5)["train_accuracy"])

# ---- limits.ItoSDE --------------------------------------------------------------------------

@numba.njit
def _a(t, y, out):
    out[0] = -y[0]


@numba.njit
def _b(t, y, out):
    out[0] = 0.5


@numba.njit
def _a2(t, y, out):
    out[0] = -y[0]
    out[1] = -y[1]


@numba.njit
def _bnan(t, y, out):
    out[0] = np.nan


@numba.njit
def _aexp(t, y, out):
    out[0] = y[0] * y[0]


ITO = limits.ItoSDE(_a, _b, 1)
err("ItoSDE drift=python function", lambda: limits.ItoSDE(lambda t, y, o: None, _b, 1), "drift")
err("ItoSDE diffusion=None", lambda: limits.ItoSDE(_a, None, 1), "diffusion")
err("ItoSDE dim=0", lambda: limits.ItoSDE(_a, _b, 0), "dim")
err("ItoSDE dim=1.0", lambda: limits.ItoSDE(_a, _b, 1.0), "dim")
err("ItoSDE dim=True", lambda: limits.ItoSDE(_a, _b, True), "dim")
err("ItoSDE noise_dim=0", lambda: limits.ItoSDE(_a, _b, 1, noise_dim=0), "noise_dim")
err("ItoSDE y0 wrong shape", lambda: limits.solve(ITO, [1.0, 2.0], [1.0]), "y0")
err("ItoSDE y0 NaN", lambda: limits.solve(ITO, np.nan, [1.0]), "y0")
err("ItoSDE y0 complex", lambda: limits.solve(ITO, 1j, [1.0]), "y0")
err("ItoSDE y0 str", lambda: limits.solve(ITO, "a", [1.0]), "y0")
err("ItoSDE y0 None", lambda: limits.solve(ITO, None, [1.0]), "y0")
err("ItoSDE y0 ragged", lambda: limits.solve(limits.ItoSDE(_a2, _a2, 2), [[1.0], [1.0, 2.0]],
                                             [1.0]), "y0")
err("ItoSDE drift wrong dim (writes out[1] with dim 1)",
    lambda: limits.solve(limits.ItoSDE(_a2, _b, 1), 1.0, [1.0]), "drift")
err("ItoSDE diffusion returns NaN", lambda: limits.solve(limits.ItoSDE(_a, _bnan, 1), 1.0,
                                                        [1.0]), "diffusion")
err("ItoSDE blows up (y^2 drift)", lambda: limits.solve(limits.ItoSDE(_aexp, _b, 1), 10.0,
                                                       [10.0], paths=4),
    "finite", "blew", "diverg", "overflow", "inf")
err("ItoSDE method='milstein'", lambda: limits.solve(ITO, 1.0, [1.0], method="milstein"),
    "method")
err("ItoSDE times negative", lambda: limits.solve(ITO, 1.0, [-1.0]), "times")
err("ItoSDE times NaN", lambda: limits.solve(ITO, 1.0, [np.nan]), "times")
err("ItoSDE times decreasing", lambda: limits.solve(ITO, 1.0, [2.0, 1.0]), "times")
err("ItoSDE times empty", lambda: limits.solve(ITO, 1.0, []), "times")
err("ItoSDE dt=0", lambda: limits.solve(ITO, 1.0, [1.0], dt=0.0), "dt")
err("ItoSDE dt=-1", lambda: limits.solve(ITO, 1.0, [1.0], dt=-1.0), "dt")
err("ItoSDE dt=nan", lambda: limits.solve(ITO, 1.0, [1.0], dt=np.nan), "dt")
err("ItoSDE paths=0", lambda: limits.solve(ITO, 1.0, [1.0], paths=0), "paths")
err("ItoSDE paths=2.5", lambda: limits.solve(ITO, 1.0, [1.0], paths=2.5), "paths")
err("ItoSDE paths=10**12", lambda: limits.solve(ITO, 1.0, [1.0], paths=10 ** 12), "paths",
    "memory", "bytes")
err("ItoSDE times 1e12 with dt 1e-3 (10^15 steps)", lambda: limits.solve(ITO, 1.0, [1e12],
                                                                         dt=1e-3),
    "dt", "steps", "times")
err("ItoSDE seed=-1", lambda: limits.solve(ITO, 1.0, [1.0], seed=-1), "seed")
err("ItoSDE seed=1.5", lambda: limits.solve(ITO, 1.0, [1.0], seed=1.5), "seed")
ok("ItoSDE y0 0-d array", lambda: limits.solve(ITO, np.array(1.0), [1.0], paths=3).values)
ok("ItoSDE y0 int", lambda: limits.solve(ITO, 1, [1.0], paths=3).values)
ok("ItoSDE times=0", lambda: limits.solve(ITO, 1.0, [0.0], paths=3).values,
   lambda v: np.all(v == 1.0))
ok("ItoSDE times int array", lambda: limits.solve(ITO, 1.0, np.array([1, 2]), paths=3).values)

# ---- other SDEs (not the issue's list) ------------------------------------------------------
err("CorrelationSDE c_plus='a'", lambda: limits.CorrelationSDE("a", -1.0), "c_plus")
err("CorrelationSDE c_plus=None", lambda: limits.CorrelationSDE(None, -1.0), "c_plus")
err("CorrelationSDE c_plus=True", lambda: limits.CorrelationSDE(True, -1.0), "c_plus")
err("CorrelationSDE rho0=1.5", lambda: limits.solve(limits.CorrelationSDE(1.0, -1.0), 1.5,
                                                    [1.0]), "rho0", "y0")
err("CorrelationSDE rho0=nan", lambda: limits.solve(limits.CorrelationSDE(1.0, -1.0), np.nan,
                                                    [1.0]), "rho0", "y0")
err("CorrelationSDE rho0=[0.3, 0.4]", lambda: limits.solve(limits.CorrelationSDE(1.0, -1.0),
                                                           [0.3, 0.4], [1.0]), "rho0", "y0")
err("CorrelationSDE rho0 complex", lambda: limits.solve(limits.CorrelationSDE(1.0, -1.0),
                                                        0.3 + 0j, [1.0]), "rho0", "y0")
ok("CorrelationSDE rho0=np.float32", lambda: limits.solve(limits.CorrelationSDE(1.0, -1.0),
                                                          np.float32(0.3), [0.5],
                                                          paths=4).values)
err("CorrelationSDE rho0=-1 exactly (documented: never reached from inside)",
    lambda: limits.solve(limits.CorrelationSDE(1.0, -1.0), -1.0, [0.5], paths=4).values, "rho0")
err("OrnsteinUhlenbeck sigma='a'", lambda: limits.OrnsteinUhlenbeck(1.0, "a"), "sigma")
err("GeometricBM sigma=nan", lambda: limits.GeometricBM(0.0, np.nan), "sigma")
ok("GeometricBM y0=-1 (linear SDE: X_0 exp(...) < 0)", lambda: limits.solve(
    limits.GeometricBM(0.0, 1.0), -1.0, [1.0], paths=4).values, lambda v: np.all(v < 0))
err("LinearSDE y0 complex", lambda: limits.solve(limits.LinearSDE(), 1j, [1.0]), "y0")
err("ResNetODE K0 wrong shape", lambda: limits.solve(limits.ResNetODE(kn.ReLU()),
                                                     np.ones((2, 3)), [1.0]), "K0", "y0")
err("CovarianceSDE V0 1x1 for 2 inputs", lambda: limits.solve(limits.CovarianceSDE(1.0, -1.0),
                                                              np.ones((1, 1)), [1.0]),
    "V0", "y0")
err("CovarianceSDE V0 with NaN and wrong shape", lambda: limits.solve(
    limits.CovarianceSDE(1.0, -1.0), np.full((2, 3), np.nan), [1.0]), "V0", "y0")
err("CovarianceSDE V0 ragged", lambda: limits.solve(limits.CovarianceSDE(1.0, -1.0),
                                                    [[1.0, 0.1], [0.1]], [1.0]), "V0", "y0")
err("SmoothCovarianceSDE V0 complex", lambda: limits.solve(
    limits.SmoothCovarianceSDE(0.1, 0.1), np.eye(2) + 0j, [0.1]), "V0", "y0")

# ---- resnet_scaling.train(loader=...) ----------------------------------------------------------
from limits import resnet_scaling as rs  # noqa: E402

err("rs.train loader='random'", lambda: rs.train(4, loader="random", max_epochs=1), "loader")
err("rs.train loader=None", lambda: rs.train(4, loader=None, max_epochs=1), "loader")
err("rs.train loader=1", lambda: rs.train(4, loader=1, max_epochs=1), "loader")
err("rs.train depth=0", lambda: rs.train(0, max_epochs=1), "depth")
err("rs.train depth=2.5", lambda: rs.train(2.5, max_epochs=1), "depth")
err("rs.train lr=-1", lambda: rs.train(4, lr=-1.0, max_epochs=1), "lr")
err("rs.train lr=nan", lambda: rs.train(4, lr=np.nan, max_epochs=1), "lr")
err("rs.train batch_size=0", lambda: rs.train(4, batch_size=0, max_epochs=1), "batch_size")
err("rs.train batch_size > n", lambda: rs.train(4, batch_size=10 ** 6, max_epochs=1),
    "batch_size")
err("rs.train batch_size > n (p2-collapsed)", lambda: rs.train(
    4, batch_size=10 ** 6, max_epochs=1, loader="p2-collapsed"), "batch_size")
err("rs.train activation='sigmoid'", lambda: rs.train(4, activation="sigmoid", max_epochs=1),
    "activation")
err("rs.train init='he'", lambda: rs.train(4, init="he", max_epochs=1), "init")
err("rs.train optimizer='lbfgs'", lambda: rs.train(4, optimizer="lbfgs", max_epochs=1),
    "optimizer")
err("rs.train delta_type='x'", lambda: rs.train(4, delta_type="x", max_epochs=1), "delta_type")
err("rs.train betas=(1.5, 0.9)", lambda: rs.train(4, betas=(1.5, 0.9), max_epochs=1), "betas")
err("rs.train betas=0.9", lambda: rs.train(4, betas=0.9, max_epochs=1), "betas")
err("rs.train momentum=-0.5", lambda: rs.train(4, optimizer="sgd", momentum=-0.5,
                                               max_epochs=1), "momentum")
err("rs.train epsilon=nan", lambda: rs.train(4, epsilon=np.nan, max_epochs=1), "epsilon")
err("rs.train initial_sd=-1", lambda: rs.train(4, initial_sd=-1.0, max_epochs=1), "initial_sd")
err("rs.train patience=0", lambda: rs.train(4, patience=0, max_epochs=1), "patience")
err("rs.train max_epochs=0", lambda: rs.train(4, max_epochs=0), "max_epochs")
err("rs.train d=3 (data has 10)", lambda: rs.train(4, d=3, max_epochs=1), "d")
err("rs.train seed=None", lambda: rs.train(4, seed=None, max_epochs=1), "seed")
err("rs.train depth=10**9 (memory)", lambda: rs.train(10 ** 9, max_epochs=1), "depth",
    "memory")
err("rs.train data=(x, y) tuple", lambda: rs.train(4, data=(np.ones((4, 10)), np.ones((4, 10))),
                                                   max_epochs=1), "data")
ok("rs.train loader='p2-collapsed'", lambda: rs.train(4, loader="p2-collapsed", max_epochs=1,
                                                      seed=0))


# ---- CLI ------------------------------------------------------------------------------------
def cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env,
                       timeout=300, cwd=TMP)
    return p.returncode, p.stdout, p.stderr


class CLIError(ValueError):
    pass


def cli_err(name, *args, names=()):
    def f():
        rc, out, e = cli(*args)
        if rc == 0:
            return f"rc 0: {out.strip()[-100:]}"
        if "Traceback" in e:
            raise RuntimeError("traceback: " + e.strip().splitlines()[-1][:100])
        raise CLIError(e.strip().splitlines()[-1][:200] if e.strip() else f"rc {rc}")
    PROBES.append((name, f, "cli-error", names))


def cli_ok(name, *args, check=None):
    def f():
        rc, out, e = cli(*args)
        if rc != 0 or "Traceback" in e:
            raise RuntimeError(f"rc {rc}: {e.strip().splitlines()[-1][:100] if e else ''}")
        if check is not None and not check(out):
            raise RuntimeError("wrong output: " + out.strip()[-100:])
        if "nan" in out.lower().split():
            raise RuntimeError("NaN in output")
        return out.strip().splitlines()[-1][:100] if out.strip() else ""
    PROBES.append((name, f, "cli-ok", None))


np.save(os.path.join(TMP, "x.npy"), X)
np.save(os.path.join(TMP, "x1d.npy"), X[0])
np.save(os.path.join(TMP, "xc.npy"), X + 1j)
np.save(os.path.join(TMP, "xnan.npy"), np.full((2, 3), np.nan))
np.save(os.path.join(TMP, "x0.npy"), np.zeros((0, 3)))
np.save(os.path.join(TMP, "xint.npy"), np.arange(6).reshape(2, 3))
np.save(os.path.join(TMP, "xstr.npy"), np.array([["a", "b"]]))
open(os.path.join(TMP, "empty.npy"), "wb").close()
cli_ok("kernel x.npy", "limits", "kernel", "x.npy")
cli_ok("kernel int x", "limits", "kernel", "xint.npy")
cli_err("kernel 1-d x", "limits", "kernel", "x1d.npy", names=("x",))
cli_err("kernel complex x", "limits", "kernel", "xc.npy", names=("complex", "real"))
cli_err("kernel NaN x", "limits", "kernel", "xnan.npy", names=("finite", "nan"))
cli_err("kernel 0 rows", "limits", "kernel", "x0.npy", names=("(0, 3)",))
cli_err("kernel string array", "limits", "kernel", "xstr.npy", names=("x", "real", "number"))
cli_err("kernel empty file", "limits", "kernel", "empty.npy", names=("npy", "read", "file"))
cli_err("kernel missing file", "limits", "kernel", "nope.npy", names=("nope",))
cli_err("kernel directory", "limits", "kernel", TMP, names=("direct", "file", TMP))
cli_err("kernel --depth 0", "limits", "kernel", "x.npy", "--depth", "0", names=("depth",))
cli_err("kernel --depth -3", "limits", "kernel", "x.npy", "--depth", "-3", names=("depth",))
cli_err("kernel --weight-var -1", "limits", "kernel", "x.npy", "--weight-var", "-1",
        names=("weight",))
cli_err("kernel --weight-var nan", "limits", "kernel", "x.npy", "--weight-var", "nan",
        names=("weight",))
cli_err("kernel --bias-var inf", "limits", "kernel", "x.npy", "--bias-var", "inf",
        names=("bias",))
cli_err("kernel --slope nan (leaky)", "limits", "kernel", "x.npy", "--activation", "leaky",
        "--slope", "nan", names=("slope",))
cli_err("kernel --save to missing dir", "limits", "kernel", "x.npy", "--save",
        "/nonexistent/dir/k.npz", names=("save", "/nonexistent"))
cli_err("sde --rho0 1.5", "limits", "sde", "--rho0", "1.5", "--paths", "10", "--no-progress",
        names=("rho0",))
cli_err("sde --rho0 nan", "limits", "sde", "--rho0", "nan", "--paths", "10", "--no-progress",
        names=("rho0",))
cli_err("sde --times -1", "limits", "sde", "--times", "-1", "--paths", "10", "--no-progress",
        names=("times",))
cli_err("sde --times nan", "limits", "sde", "--times", "nan", "--paths", "10", "--no-progress",
        names=("times",))
cli_ok("sde --times 2 1 (the CLI sorts the times)", "limits", "sde", "--times", "2", "1",
       "--paths", "10", "--no-progress")
cli_err("sde --dt 0", "limits", "sde", "--dt", "0", "--paths", "10", "--no-progress",
        names=("dt",))
cli_err("sde --dt -1", "limits", "sde", "--dt", "-1", "--paths", "10", "--no-progress",
        names=("dt",))
cli_err("sde --seed -1", "limits", "sde", "--seed", "-1", "--paths", "10", "--no-progress",
        names=("seed",))
cli_err("sde --c-plus nan", "limits", "sde", "--c-plus", "nan", "--paths", "10",
        "--no-progress", names=("c_plus", "c-plus"))
cli_ok("sde --method heun (additive noise in artanh coordinates)", "limits", "sde", "--method",
       "heun", "--paths", "10", "--no-progress")
cli_ok("sde --paths 2", "limits", "sde", "--paths", "2", "--times", "0.1", "--no-progress")
cli_err("phase-diagram --widths 0", "limits", "phase-diagram", "--widths", "0", "--no-progress",
        names=("width",))
cli_err("phase-diagram --seeds -1", "limits", "phase-diagram", "--seeds", "-1",
        "--no-progress", names=("seed",))
cli_err("phase-diagram --gammas nan", "limits", "phase-diagram", "--gammas", "nan",
        "--no-progress", names=("gamma",))
cli_err("phase-diagram --workers 0", "limits", "phase-diagram", "--workers", "0",
        "--no-progress", names=("workers",))
cli_err("phase-diagram --store is a directory", "limits", "phase-diagram", "--store", TMP,
        "--no-progress", names=("store", TMP))
cli_err("validate --only nosuchcheck", "limits", "validate", "--only", "nosuchcheck",
        names=("nosuchcheck", "check", "only"))
cli_err("kernels --rho 1.5", "kernels", "--rho", "1.5", names=("rho",))
cli_err("kernels --rho nan", "kernels", "--rho", "nan", names=("rho",))
cli_err("kernels --depths 0", "kernels", "--depths", "0", names=("depth",))
cli_err("kernels --depths 10**13", "kernels", "--depths", "10000000000000",
        names=("depth", "memory"))
cli_err("kernels --tanh-max-depth -1", "kernels", "--tanh-max-depth", "-1",
        names=("tanh",))
cli_ok("kernels --rho -1", "kernels", "--rho", "-1", "--depths", "1", "2")

# ---- sweep store ----------------------------------------------------------------------------
from limits import sweep  # noqa: E402


from limits._sweep_testing import trivial as _sq_fn  # noqa: E402


err("sweep.run_grid store=directory", lambda: sweep.run_grid(
    _sq_fn, [{"x": 1}], TMP, progress=False), "store", TMP)
err("sweep.run_grid empty grid", lambda: sweep.run_grid(
    _sq_fn, [], os.path.join(TMP, "e.sqlite"), progress=False), "grid")
err("sweep.run_grid grid=dict of lists", lambda: sweep.run_grid(
    _sq_fn, {"x": [1, 2]}, os.path.join(TMP, "e2.sqlite"), progress=False), "grid")
err("sweep.run_grid grid=None", lambda: sweep.run_grid(
    _sq_fn, None, os.path.join(TMP, "e3.sqlite"), progress=False), "grid")
err("sweep.run_grid fn='module:f' string", lambda: sweep.run_grid(
    "nomodule_xyz:f", [{"x": 1}], os.path.join(TMP, "e4.sqlite"), progress=False), "fn")
err("sweep.run_grid fn lambda", lambda: sweep.run_grid(
    lambda p, s: {}, [{"x": 1}], os.path.join(TMP, "e5.sqlite"), progress=False), "fn")
err("sweep.run_grid grid NaN value", lambda: sweep.run_grid(
    _sq_fn, [{"x": float("nan")}], os.path.join(TMP, "e6.sqlite"), progress=False),
    "grid", "nan", "finite")
err("sweep.run_grid grid object value", lambda: sweep.run_grid(
    _sq_fn, [{"x": object()}], os.path.join(TMP, "e7.sqlite"), progress=False),
    "grid", "json")
err("sweep.run_grid grid int keys", lambda: sweep.run_grid(
    _sq_fn, [{1: 1}], os.path.join(TMP, "e8.sqlite"), progress=False), "grid", "key", "str")
err("sweep.run_grid duplicate points", lambda: sweep.run_grid(
    _sq_fn, [{"x": 1}, {"x": 1}], os.path.join(TMP, "e9.sqlite"), progress=False),
    "grid", "same", "duplicate")
err("sweep.run_grid seed=-1", lambda: sweep.run_grid(
    _sq_fn, [{"x": 1}], os.path.join(TMP, "e10.sqlite"), seed=-1, progress=False), "seed")
err("sweep.run_grid retries=-1", lambda: sweep.run_grid(
    _sq_fn, [{"x": 1}], os.path.join(TMP, "e11.sqlite"), retries=-1, progress=False),
    "retries")
err("sweep.run_grid lease=0", lambda: sweep.run_grid(
    _sq_fn, [{"x": 1}], os.path.join(TMP, "e12.sqlite"), lease=0, progress=False), "lease")
_bad = os.path.join(TMP, "garbage.sqlite")
with open(_bad, "wb") as _fh:
    _fh.write(b"this is not a database at all" * 100)
err("sweep.run_grid store=garbage file", lambda: sweep.run_grid(
    _sq_fn, [{"x": 1}], _bad, progress=False), "store", "garbage", "sqlite", "database")
err("sweep.run_grid store in missing dir", lambda: sweep.run_grid(
    _sq_fn, [{"x": 1}], os.path.join(TMP, "no", "dir", "s.sqlite"), progress=False),
    "store", "director")
ok("sweep.run_grid ThreadPoolExecutor, 1 point", lambda: _thread_run())
err("sweep.load store missing", lambda: sweep.load(os.path.join(TMP, "missing.sqlite")),
    "missing", "store")
err("sweep.load store=garbage", lambda: sweep.load(_bad), "garbage", "store", "database")
err("sweep.load name unknown", lambda: sweep.load(os.path.join(TMP, "ok.sqlite"), name="zz"),
    "zz", "name")
err("sweep.product no axes", lambda: sweep.product(), "axes", "product", "axis")
err("sweep.product axis not a list", lambda: sweep.product(x=3), "x")


def _thread_run():
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(1) as ex:
        sweep.run_grid(_sq_fn, [{"x": 1.5}], os.path.join(TMP, "ok.sqlite"), executor=ex,
                       progress=False)
    return 0.0


def main(argv):
    flt = [a for a in argv if not a.startswith("--")]
    no_cli = "--no-cli" in argv
    rows = []
    for name, fn, kind, extra in PROBES:
        if flt and not any(f in name for f in flt):
            continue
        if no_cli and kind.startswith("cli"):
            continue
        if kind == "cli-error":
            try:
                r = fn()
                outcome, verdict = r, "FINDING (accepted)"
            except CLIError as exc:
                named = any(n.lower() in str(exc).lower() for n in extra)
                outcome = f"error: {exc}"[:110]
                verdict = "ok" if named else f"FINDING (does not name {extra})"
            except Exception as exc:           # noqa: BLE001
                outcome, verdict = f"{exc}"[:110], "FINDING (traceback)"
        elif kind == "cli-ok":
            try:
                outcome, verdict = fn(), "ok"
            except Exception as exc:           # noqa: BLE001
                outcome, verdict = f"{exc}"[:110], "FINDING"
        else:
            outcome, verdict = run_one(name, fn, kind, extra)
        rows.append((name, outcome, verdict))
        print(f"{name[:58]:58s} | {outcome[:90]:90s} | {verdict}", flush=True)
    n_find = sum(v != "ok" for _, _, v in rows)
    print(f"\n{len(rows)} probes, {n_find} findings")
    for name, outcome, verdict in rows:
        if verdict != "ok":
            print(f"  FINDING: {name}: {outcome} -> {verdict}")


if __name__ == "__main__":
    main(sys.argv[1:])
