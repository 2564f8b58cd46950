"""Depth scaling of trained deep ResNet weights: neural ODE, SDE, or neither.

Cohen, Cont, Rossier & Xu, "Scaling Properties of Deep Residual Networks", ICML 2021
(arXiv 2105.12245), written P2 below; every definition is that of ``theory/training.md`` §2 (the
authors' code, ``instadeepai/scaling-resnets``, where the paper text was not available).

Model (P2 Eq. (1); training.md §2.1), width ``d``, depth ``L``, no input or readout layer::

    h_{k+1} = h_k + s_k sigma(A_k h_k + b_k),   k = 0..L-1,   h_0 = x,   output h_L
    s_k = 1 (delta 'none'),  |delta| (one trainable scalar, 'shared', init 1/L),
          delta_k (one per layer, 'multi', init N(0, 1/L^2))
    loss = mean over batch and coordinates of (h_L - y)^2            (torch MSELoss)

We write ``A_k h`` (column vectors); P2's code computes ``x @ A_l``, i.e. our ``A_k`` is the
transpose of theirs.  Norms are transpose-invariant; entry ``[i, j]`` here is ``[j, i]`` there.
Effective weights (training.md §2.3): ``T_k = |delta_k| A_k`` and ``|delta_k| b_k`` for a positively
homogeneous activation (relu, identity) with per-layer delta, since
``delta relu(A h + b) = sign(delta) relu(|delta| A h + |delta| b)``; ``T_k = A_k`` otherwise.

Why hand-written numba and not a framework: at this size (d <= 32, L up to ~10^4, batch 32) every
layer is a 32 x d x d product, far below the size where a framework's kernels pay for their
per-operation dispatch (a few microseconds per op, about 15 ops per layer and pass); a fused
float64 loop over the layers in one compiled call (batch innermost, so the inner loops vectorise)
has no dependency beyond numba.  ``benchmarks/resnet_scaling.py`` measures one epoch (d = 10,
L = 1000, batch 32, 1024 samples) against the same maths in vectorised NumPy: about 0.065 s and
10-13x for relu, 0.086-0.09 s and 7.2-7.6x for tanh.  (The passes and Adam are compiled with
``error_model="numpy"``: with Python's error model every division carries a zero check and the
loops over the batch do not vectorise; tanh was then 0.18 s and 3.4x.)  Gradients are tested
against finite differences and the optimiser against a hand-computed Adam update.

Scaling statistics (P2-code ``regression.compute_statistics``; training.md §2.3) on a per-layer
sequence ``T_0..T_{L-1}`` with Frobenius norms: Maximum, Spectral, Root SSQ, QuadraticVariation,
SqrtSobolev, Increment(factor), cumsum, detrended-cumsum (:func:`statistics`).  Exponents by
least squares on log-log data (:func:`scaling_exponents`)::

    beta  = -slope(log L, log max_k ||T_k||),    alpha = -slope(log L, log max_k |delta_k|)

and the H1 (smooth / ODE) vs H2 (diffusive / SDE) diagnostic of training.md §2.3; the verdict
rule is ours (the hypotheses' wording in P2 is UNVERIFIED), see :func:`scaling_exponents`.

Entry points: :func:`train` (one network), :func:`study` (a depth grid, through
``limits.sweep.run_grid``), :func:`depth_grid`, :func:`ode_data`, :func:`digits_data`,
:func:`statistics`, :func:`scaling_exponents`, :func:`decompose` (trend / noise) and
:func:`evaluate` (loss of a network with given weights), :func:`denoised_losses` (the
re-evaluation with denoised weights).  Figures:
``limits.plots.max_norm_vs_depth``, ``weight_paths``, ``detrended_cumsums``,
``hypothesis_diagnostic``.

Layout (one job per module; every public name is re-exported here, so
``limits.resnet_scaling.<name>`` is the API): ``data`` (data sets, depth grid), ``trainer`` (the
compiled passes, optimisers and :func:`train`), ``stats`` (statistics, exponents, verdict, trend /
noise), ``studies`` (:func:`study`, a depth grid of runs through ``limits.sweep.run_grid``),
``_checks`` (argument checks).
"""
from .data import Dataset, depth_grid, digits_data, ode_data
from .stats import (Decomposition, Fit, ScalingExponents, decompose, denoised_loss,
                    denoised_losses, detrended_cumsum, increment, scaling_exponents, statistics)
from .studies import Study, study
from .trainer import (ACTIVATIONS, DELTA_TYPES, INITS, LOADERS, OPTIMIZERS, TrainResult,
                      effective_parameters, evaluate, gradient, train)
# private kernels used by tests and benchmarks/resnet_scaling.py
from .trainer import _backward, _epoch, _exp40, _forward, _tanh  # noqa: F401


__all__ = [
    "ACTIVATIONS", "DELTA_TYPES", "INITS", "OPTIMIZERS", "LOADERS", "Dataset", "ode_data",
    "digits_data", "depth_grid", "TrainResult", "train", "evaluate", "statistics", "increment",
    "detrended_cumsum", "Fit", "ScalingExponents", "scaling_exponents", "Decomposition",
    "decompose", "Study", "study", "effective_parameters", "gradient", "denoised_loss",
    "denoised_losses",
]
