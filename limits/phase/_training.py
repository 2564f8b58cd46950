"""Training of the two-layer ReLU network: full-batch GD from the phase-diagram scales.

:func:`train` validates its arguments, draws the initialisation (:func:`initial_parameters`),
runs the compiled loop of ``limits.phase._kernels`` (restarting with halved step factors after
a loss increase) and returns a :class:`TrainResult` with ``RD(theta_w*)`` (P1 Eq. (16)).
:func:`step_convergence` checks that RD does not depend on the step size; ``_run_point`` is one
run from a JSON-able dict (the grid point of :func:`limits.phase.slope` and
:func:`limits.phase.diagram`).
"""
import math
from dataclasses import dataclass, field

import numpy as np

from kernels._checks import (finite_array, flag, int_in_range, memory_guard,
                             positive_float)

from ._coordinates import _power, _representable, from_gamma, one_d_data
from ._kernels import _INCREASE, _STATUS, _run_gd

__all__ = ["TrainingFailed", "TrainResult", "initial_parameters", "train", "step_convergence"]


class TrainingFailed(RuntimeError):
    """A training run hit its step budget or diverged; its numbers are not used."""


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    rd : float
        ``RD(theta_w*) = ||W* - W0||_F / ||W0||_F`` over the input weights (bias included) of the
        first ASI copy (P1 Eq. (16); P1-code).
    status : str
        ``"converged"`` (R_S < tol), ``"budget"`` (step budget reached) or ``"diverged"`` (the loss
        increased at every one of the allowed step-size halvings).  Only ``"converged"`` runs
        are results; see :attr:`failed`.
    steps : int
        GD steps of the final attempt.
    loss : ndarray
        R_S at every step of the final attempt (``loss[0]`` at initialisation).
    time : float
        Gradient-flow time of the final attempt, ``sum_t lr_t``.
    a0, W0, a, W : ndarray
        Initial and final output weights (m,) and input weights (m, d+1) of the first copy
        (original, not normalised, coordinates; the last column of W is the bias).
    alpha, beta_1, beta_2 : float
    m : int
    step_factor, curvature_factor : float
        The factors F, delta of the final attempt (after halvings).
    restarts : int
        Restarts after a loss increase.
    """

    rd: float
    status: str
    steps: int
    loss: np.ndarray
    time: float
    a0: np.ndarray
    W0: np.ndarray
    a: np.ndarray
    W: np.ndarray
    alpha: float
    beta_1: float
    beta_2: float
    m: int
    step_factor: float
    curvature_factor: float
    restarts: int
    asi: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def failed(self):
        """True unless the run converged (R_S < tol)."""
        return self.status != "converged"

    def check(self):
        """Raise :class:`TrainingFailed` if the run failed; return self otherwise."""
        if self.failed:
            raise TrainingFailed(
                f"training {self.status} (m={self.m}, alpha={self.alpha:.4g}, "
                f"beta_1={self.beta_1:.4g}, beta_2={self.beta_2:.4g}, steps={self.steps}, "
                f"last R_S={self.loss[-1]:.3g}, restarts={self.restarts})")
        return self


def _data(X, y):
    if X is None and y is None:
        return one_d_data()
    if X is None or y is None:
        raise ValueError("give both X and y (or neither, for the 1-d data of P1 §3.1)")
    X = finite_array(X, "X")
    y = finite_array(y, "y")
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must have shape (n, d), got shape {X.shape}")
    y = y.reshape(-1) if y.ndim == 2 and 1 in y.shape else y
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X {X.shape}, got {y.shape}")
    return X, y


def _scales(m, gamma, gamma_prime, alpha, beta_1, beta_2):
    explicit = alpha is not None or beta_2 is not None
    if gamma is not None or gamma_prime is not None:
        if explicit:
            raise ValueError("give either (gamma, gamma_prime[, beta_1]) or (alpha, beta_1, "
                             "beta_2), not both")
        if gamma is None or gamma_prime is None:
            raise ValueError(f"give both gamma and gamma_prime, got gamma={gamma!r}, "
                             f"gamma_prime={gamma_prime!r}")
        return from_gamma(gamma, gamma_prime, m, 1.0 if beta_1 is None else beta_1)
    if alpha is None or beta_1 is None or beta_2 is None:
        raise ValueError("give (gamma, gamma_prime) or all of alpha, beta_1, beta_2")
    return (positive_float(alpha, "alpha"), positive_float(beta_1, "beta_1"),
            positive_float(beta_2, "beta_2"))


def _max_steps(max_steps):
    """The step budget: an integer >= 1 whose loss history (8 bytes a step) fits in memory."""
    max_steps = int_in_range(max_steps, "max_steps", 1)
    memory_guard(8 * (max_steps + 1), f"max_steps={max_steps}: the loss history (8 bytes a "
                                      f"step)")
    return max_steps


def _check_state_memory(m, n, d):
    """Refuse a width whose training state (2m neurons with ASI: weights, their copies,
    gradients, the (2m, n) pre-activations and residual masks) cannot fit in memory."""
    memory_guard(8 * 2 * m * (3 * (d + 1) + 2 * n + 6), f"m={m} with n={n}, d={d}: the "
                                                           f"training state")


def _beta_1(m, beta1_exponent):
    """``beta_1 = m^-beta1_exponent`` (:func:`limits.phase.slope`), or a ValueError."""
    return _representable(_power(m, -beta1_exponent), "beta_1 = m^-beta1_exponent",
                          "beta1_exponent", beta1_exponent, m)


def _scale_args(m, gamma, gamma_prime, alpha, beta_1, beta_2):
    """The arguments that set the scales, for error messages."""
    if gamma is not None:
        return f"gamma={gamma!r}, gamma_prime={gamma_prime!r} (beta_1={beta_1!r}) at m={m}"
    return f"alpha={alpha!r}, beta_1={beta_1!r}, beta_2={beta_2!r} at m={m}"


def _check_first_step(a, W, Xa, y, c, F, delta, lr_fixed, tol, given):
    """Refuse scales that float64 cannot train, before the compiled loop runs.

    Two checks on the initial state, with the formulas of :func:`train`:

    * the output ``c sum_k a_k relu(w_k . x_i)`` must be computable to better than the scale
      of the targets: its rounding error, at least ``eps |c| sum_k |a_k| relu(w_k . x_i)``,
      must stay below ``max(max|y|, sqrt(2 n tol))``.  (E.g. gamma = -150 at m = 10: c = 1e150
      turns the rounding residue of the antisymmetric initialisation into R_S = 1e269.)
    * the first gradient step must be finite (loss, ``c^2 tr G``, step size > 0, updates) and
      change some weight.  (E.g. gamma = -300 at m = 10: ``c^2 = 1e600`` overflows and the
      step size is 0.)

    Otherwise the run could only end in a meaningless "budget" or "diverged".  A run that
    converges at once (R_S < tol) or cannot move at all (zero gradient) is left to
    :func:`train`."""
    n = Xa.shape[0]
    c = np.float64(c)                                # numpy division: inf, never an exception
    with np.errstate(all="ignore"):
        Z = W @ Xa.T
        H = np.maximum(Z, 0.0)
        ind = Z > 0.0
        e = c * (a @ H) - y
        loss = float(e @ e) / (2.0 * n)
        if loss < tol:
            return
        noise = float(np.finfo(float).eps * abs(c) * np.max(np.abs(a) @ H))
        scale = max(float(np.max(np.abs(y))), math.sqrt(2.0 * n * tol))
        if not noise < scale:
            raise ValueError(f"{given}: the network output carries a float64 rounding error "
                             f"of about {noise:.3g} at initialisation (output scale "
                             f"c = 1/alpha = {c:.3g}), above the scale of the targets "
                             f"({scale:.3g}); such extreme scales cannot be trained at this "
                             f"width")
        tr = np.float64(np.sum(H * H) + (a * a) @ (ind @ np.sum(Xa * Xa, 1)))
        S = (ind * e) @ Xa
        vm = np.float64(np.max(np.sum(S * S, 1)))
        if lr_fixed > 0.0:
            lr = np.float64(lr_fixed)
        else:
            lr = np.float64(np.inf)
            if tr > 0.0:
                lr = F * n / (c * c * tr)
            if vm > 0.0:
                lr = min(lr, delta * n / (abs(c) * np.sqrt(vm)))
        if lr == np.inf and math.isfinite(loss):         # zero gradient: "budget" in train
            return
        step = lr * c / n
        a1 = a - step * (H @ e)
        W1 = W - (step * a)[:, None] * S
        ctr = c * c * tr
        ok = bool(math.isfinite(loss) and np.isfinite(ctr) and 0.0 < lr < np.inf
                  and np.all(np.isfinite(a1)) and np.all(np.isfinite(W1)))
        moves = ok and not (np.array_equal(a1, a) and np.array_equal(W1, W))
    if not ok:
        raise ValueError(f"{given}: the first gradient step is not representable in float64 "
                         f"(output scale c = 1/alpha = {c:.3g}, R_S = {loss:.3g}, "
                         f"c^2 tr G = {ctr:.3g}, step size {lr:.3g}); such extreme "
                         f"scales cannot be trained at this width")
    if not moves:
        raise ValueError(f"{given}: the first gradient step changes no weight in float64 "
                         f"(output scale c = 1/alpha = {c:.3g}, R_S = {loss:.3g}, step size "
                         f"{lr:.3g}); such extreme scales cannot be trained at this width")


def _norm(x):
    """Frobenius norm, rescaled so that squares neither under- nor overflow."""
    scale = float(np.max(np.abs(x))) if x.size else 0.0
    if scale == 0.0 or not math.isfinite(scale):
        return scale
    return scale * float(np.linalg.norm(x / scale))


def _relative_distance(W1, W0):
    """``RD = ||W1 - W0||_F / ||W0||_F``.  The plain formula where its squares are safe (for
    bit-identical results there); each norm rescaled where they under- or overflow (weights
    below ~1e-154 or above ~1e154), where the plain formula gives 0, inf or nan."""
    with np.errstate(all="ignore"):
        num = np.linalg.norm(W1 - W0)
        den = np.linalg.norm(W0)
    if 0.0 < den < np.inf and num < np.inf and (num > 0.0 or np.array_equal(W1, W0)):
        return float(num / den)
    den = _norm(W0)
    if den == 0.0:
        raise ValueError("the initial input weights are all zero: RD is undefined")
    return float(_norm(W1 - W0) / den)


def initial_parameters(m, d, seed, beta_1=1.0, beta_2=1.0):
    """Initial ``a (m,)`` and ``W (m, d+1)``: ``a = beta_1 A``, ``W = beta_2 Z`` with A, Z
    standard normal from ``numpy.random.default_rng(SeedSequence([seed, m, d]))`` (P1 Eq. (4)).

    The same seed gives the same normalised draws (A, Z) for every (alpha, beta_1, beta_2), so
    points of a diagram share their random numbers."""
    m = int_in_range(m, "m", 1)
    d = int_in_range(d, "d", 1)
    seed = int_in_range(seed, "seed", 0)
    beta_1 = positive_float(beta_1, "beta_1")
    beta_2 = positive_float(beta_2, "beta_2")
    memory_guard(8 * m * (d + 2), f"m={m}, d={d}: the initial parameters")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), m, int(d)]))
    A = rng.standard_normal(m)
    Z = rng.standard_normal((m, d + 1))
    return beta_1 * A, beta_2 * Z


def train(m, gamma=None, gamma_prime=None, *, alpha=None, beta_1=None, beta_2=None, X=None,
          y=None, seed=0, asi=True, tol=1e-6, max_steps=200_000, step_factor=1.0,
          curvature_factor=0.02, lr=None, increase_tol=0.05, max_restarts=8, init=None,
          parallel=False):
    """Train the two-layer ReLU network by full-batch gradient descent and return RD(theta_w*).

    Model and loss as in P1 Eq. (1), (3)-(5) (see the module docstring); the dynamics are GD on
    the original parameters ``theta <- theta - eta_t grad R_S(theta)``, in float64, with the
    whole step loop in one numba call (``nogil``; :func:`slope` and :func:`diagram` run
    several trainings at once on the cores; ``parallel=True`` splits one run's neurons over
    the cores with ``prange`` instead).

    **Learning-rate rule** (ours; P1 states none, training.md §1.5).  At every step::

        eta_t = min( F n / tr G,   delta n / (|c| max_k |v_k|) ),   c = 1/alpha
        tr G  = c^2 sum_k sum_i [relu(w_k.x_i)^2 + a_k^2 1[w_k.x_i > 0] |x_i|^2]
        v_k   = sum_i e_i 1[w_k.x_i > 0] x_i

    The first term is the stability limit of the Gauss-Newton part of the Hessian: G is the
    empirical NTK Gram, ``tr G >= lambda_max(G)``, so ``eta lambda_max(G)/n <= F`` and every
    output mode contracts monotonically for F <= 1.  The second term resolves the other part,
    ``(1/n) sum_i e_i Hess f(x_i)``, which is block-diagonal with eigenvalues
    ``+-|c| |v_k|/n`` per neuron: it sets the rate at which neurons grow and rotate away from
    initialisation (the condensed regime starts with that growth, at kappa m << 1).  Keeping
    ``eta |c| |v_k| / n <= delta`` makes GD follow gradient flow there, where the Gram rule
    alone takes steps far too large (training.md §1.5: RD at gamma = 1.75 changes by 2.4x with
    the step size).  With the defaults F = 1, delta = 0.02 we measured RD converged in the step
    size: F/4 and delta/16 move RD by < 1.5 % at (gamma, gamma') = (1.75, 0), (1.3, -0.3),
    (1.4, 0.3), (1.2, -0.1), (1.0, 0) for m = 1000 and 40000, and by 4.8 % at (1.4, -0.4),
    m = 1000 (:func:`step_convergence` repeats the check at any point).  Both terms are
    invariant under the rescaling of P1 Eq. (7), so runs at the same (kappa, kappa') with
    different (alpha, beta_1, beta_2) are the same run up to rounding.
    ``lr`` fixes a constant step instead.

    **Safeguard.**  If R_S rises above its running minimum by more than ``increase_tol``
    (relative, default 5 %) or becomes non-finite, F and delta (or ``lr``) are halved and the
    run restarts from the same initialisation (as P1-code does, which restarts on any
    increase).  The slack is needed because the loss is only piecewise smooth: neurons whose
    kink sits on a data point (condensed solutions) make GD chatter, and we measured
    increases up to 2.5 % above the running minimum at small steps at gamma = 1.75, with RD
    unaffected; a real instability grows geometrically and is caught.  After ``max_restarts``
    halvings the run is reported ``"diverged"``.  A run that reaches ``max_steps`` is
    reported ``"budget"``.  Neither is a result: :attr:`TrainResult.failed` is True and
    :meth:`TrainResult.check` raises.

    Parameters
    ----------
    m : int
        Width (number of hidden neurons of one copy), >= 2.
    gamma, gamma_prime : float, optional
        Coordinates; then ``beta_1`` (default 1) is free, ``beta_2 = beta_1 m^gamma'`` and
        ``alpha = beta_1 beta_2 m^gamma``.
    alpha, beta_1, beta_2 : float, optional
        Explicit scales instead of (gamma, gamma').
    X, y : array_like (n, d) and (n,), optional
        Training data (the input is augmented with a 1).  Default: the 1-d data of P1 §3.1.
    seed : int
        Initialisation seed (see :func:`initial_parameters`).
    asi : bool, default True
        Antisymmetric initialisation (P1 §4.1; Zhang et al. 2020): a second copy with output
        ``-c sum a'_k relu(w'_k.x)``, starting at ``(a', w') = (a, w)`` and trained
        independently, so ``f = 0`` at initialisation.  RD uses the first copy (P1-code).
    tol : float, default 1e-6
        Stop when ``R_S < tol`` (training.md §1.5).
    max_steps : int, default 200000
        Step budget.
    step_factor, curvature_factor : float, default 1.0 and 0.02
        F and delta of the learning-rate rule.
    lr : float, optional
        Constant step instead of the rule.
    increase_tol : float, default 0.05
        Relative rise of R_S above its running minimum that triggers a restart.
    max_restarts : int, default 8
    init : (a0, W0), optional
        Explicit initial parameters (original coordinates, W0 of shape (m, d+1)).
    parallel : bool, default False
        1-d data only: split the neurons over numba's threads (``prange``, two parallel
        regions per step).  It pays for one large run on otherwise idle cores (see
        ``benchmarks/phase.py``); :func:`slope` and :func:`diagram` instead run whole
        trainings in parallel, which needs no per-step synchronisation.  Rounding differs
        from the serial kernel (partial sums per chunk).

    Returns
    -------
    TrainResult
    """
    m = int_in_range(m, "m", 2)
    X, y = _data(X, y)
    alpha, beta_1, beta_2 = _scales(m, gamma, gamma_prime, alpha, beta_1, beta_2)
    asi = flag(asi, "asi")
    tol = positive_float(tol, "tol")
    max_steps = _max_steps(max_steps)
    F = positive_float(step_factor, "step_factor")
    delta = positive_float(curvature_factor, "curvature_factor")
    lr_fixed = 0.0 if lr is None else positive_float(lr, "lr")
    increase_tol = positive_float(increase_tol, "increase_tol")
    parallel = flag(parallel, "parallel")
    max_restarts = int_in_range(max_restarts, "max_restarts", 0)
    seed = int_in_range(seed, "seed", 0)
    n, d = X.shape
    _check_state_memory(m, n, d)
    Xa = np.ascontiguousarray(np.hstack([X, np.ones((n, 1))]))
    y = np.ascontiguousarray(y, dtype=float)
    if init is None:
        a0, W0 = initial_parameters(m, d, seed, beta_1, beta_2)
    else:
        try:
            a0, W0 = init
        except (TypeError, ValueError):
            raise TypeError(f"init must be a pair (a0, W0), got {type(init).__name__}") from None
        a0, W0 = finite_array(a0, "init[0] (a0)"), finite_array(W0, "init[1] (W0)")
        if a0.shape != (m,) or W0.shape != (m, d + 1):
            raise ValueError(f"init must be (a0 of shape ({m},), W0 of shape ({m}, {d + 1})), "
                             f"got {a0.shape}, {W0.shape}")
    if asi:
        a_init = np.concatenate([a0, -a0])       # second copy: output -c a'_k, a' = a at t = 0
        W_init = np.concatenate([W0, W0])
    else:
        a_init, W_init = a0.copy(), W0.copy()
    c = 1.0 / alpha
    _check_first_step(a_init, W_init, Xa, y, c, F, delta, lr_fixed, tol,
                      _scale_args(m, gamma, gamma_prime, alpha, beta_1, beta_2))
    restarts = 0
    while True:
        a = a_init.copy()
        W = np.ascontiguousarray(W_init.copy())
        loss = np.empty(max_steps + 1)
        code, steps, time = _run_gd(a, W, Xa, y, c, tol, max_steps, F, delta, lr_fixed,
                                     increase_tol, loss, parallel)
        if code != _INCREASE or restarts >= max_restarts:
            break
        restarts += 1
        F, delta, lr_fixed = F / 2, delta / 2, lr_fixed / 2
    a1, W1 = a[:m].copy(), W[:m].copy()
    rd = _relative_distance(W1, W0)
    return TrainResult(rd=rd, status=_STATUS[code], steps=int(steps), loss=loss[:steps + 1].copy(),
                       time=float(time), a0=a0, W0=W0, a=a1, W=W1, alpha=alpha, beta_1=beta_1,
                       beta_2=beta_2, m=m, step_factor=F, curvature_factor=delta,
                       restarts=restarts, asi=bool(asi),
                       extra={"lr": lr_fixed if lr is not None else None})


def step_convergence(m, gamma, gamma_prime, factor=4.0, **train_kw):
    """Relative change of RD when both step factors F and delta are divided by ``factor``.

    Returns ``(rd, rd_small_steps, |rd_small - rd| / rd)``; both runs must converge (else
    :class:`TrainingFailed`).  Use it to show that RD is a property of gradient flow and not of
    the step size (training.md §1.5)."""
    factor = positive_float(factor, "factor")
    F = train_kw.pop("step_factor", 1.0)
    delta = train_kw.pop("curvature_factor", 0.02)
    r1 = train(m, gamma, gamma_prime, step_factor=F, curvature_factor=delta, **train_kw).check()
    r2 = train(m, gamma, gamma_prime, step_factor=F / factor, curvature_factor=delta / factor,
               **train_kw).check()
    return r1.rd, r2.rd, abs(r2.rd - r1.rd) / r1.rd


def _run_point(p):
    """One training run from a JSON-able dict; returns a dict of results or raises
    :class:`TrainingFailed`.  ``p`` holds gamma, gamma_prime, m, seed, beta1_exponent and the
    keyword arguments of :func:`train` (X, y as nested lists or None)."""
    kw = dict(p)
    g, gp, m, seed = kw.pop("gamma"), kw.pop("gamma_prime"), int(kw.pop("m")), int(kw.pop("seed"))
    e1 = float(kw.pop("beta1_exponent", 0.0))
    X, y = kw.pop("X", None), kw.pop("y", None)
    r = train(m, g, gp, beta_1=_beta_1(m, e1), X=X, y=y, seed=seed, **kw)
    r.check()
    return {"rd": r.rd, "steps": r.steps, "time": r.time, "restarts": r.restarts}


def _phase_point(params, rng_seed=None):
    """Point function of :func:`limits.phase.slope` and :func:`limits.phase.diagram` for
    ``limits.sweep``: one training run (``_run_point``).

    The initialisation comes from ``params["seed"]`` and the width (see
    :func:`initial_parameters`), not from the sweep's ``rng_seed``, so that :func:`train`,
    ``slope`` and ``diagram`` give the same numbers whatever runs them.  A run is
    single-threaded; the executor's threads or processes use the cores.  The sweep names an
    experiment by its function's import path: ``limits.phase`` re-exports this function and it
    says it lives there, so that stores written before ``limits.phase`` became a package
    (experiments bound to ``limits.phase:_phase_point``) resume."""
    return _run_point(params)


_phase_point.__module__ = "limits.phase"
