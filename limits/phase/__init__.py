"""Phase diagram of two-layer ReLU networks: linear / critical / condensed.

Luo, Xu, Ma & Zhang, "Phase diagram for two-layer ReLU neural networks at infinite-width limit",
JMLR 22(71), 2021 (arXiv 2007.07497), written P1 below; all definitions are those of
``theory/training.md`` §1.

Model (P1 Eq. (1), (3), (4)), the bias absorbed by augmenting the input with a 1::

    f(x) = (1/alpha) sum_{k=1..m} a_k relu(w_k . (x, 1)),   a_k ~ N(0, beta_1^2),
                                                           w_k ~ N(0, beta_2^2 I_{d+1})
    R_S  = 1/(2n) sum_i (f(x_i) - y_i)^2

Coordinates (P1 Eq. (8), (14))::

    kappa  = beta_1 beta_2 / alpha,   kappa' = beta_1 / beta_2
    gamma  = -log(kappa) / log(m),    gamma' = -log(kappa') / log(m)
    inverse: beta_2 = beta_1 m^gamma',  alpha = beta_1 beta_2 m^gamma

Regimes (P1 §4.1.1, Thm 6 and 8): linear if gamma < 1 + max(0, gamma'), condensed if
gamma > 1 + max(0, gamma'), critical on the boundary gamma = 1 + max(0, gamma').  The order
parameter is the relative distance of the input weights at the end of training,
``RD = ||theta_w* - theta_w(0)|| / ||theta_w(0)||`` (P1 Eq. (16)), and its width exponent
``S_w = lim log RD / log m`` (P1 Eq. (19)), estimated by least squares of log RD on log m.

Choices P1 does not state (training.md §1.5; each is a parameter, not hard-coded):

* data: the 4-point 1-d problem ``x = -1/2, -1/6, 1/6, 1/2``, ``y = x^2`` is *inferred* from
  P1 Fig. 2 and P1-code (:func:`one_d_data`; ``X, y`` take any data);
* optimiser: full-batch GD with our step rule (see :func:`train`; ``step_factor``,
  ``curvature_factor`` or a fixed ``lr``), stop at ``R_S < tol = 1e-6`` (P1-code stops at
  ``mean(e^2) < 1e-6``, i.e. ``R_S < 5e-7``: ``tol`` is a parameter);
* ASI on by default and RD on the first copy (P1-code; ``asi=False`` trains one copy);
* initial draws ``a = beta_1 A``, ``W = beta_2 Z`` from ``SeedSequence([seed, m, d])``, shared by
  every (alpha, beta_1, beta_2) and every grid point at the same (seed, m, d).

Entry points: :func:`regime`, :func:`boundary_distance`, the coordinate conversions
(:func:`kappas`, :func:`gammas_of`, :func:`from_gamma`), :data:`INITIALISATIONS`, :func:`train`,
:func:`slope`, :func:`diagram`, :func:`zero_crossings`, :func:`step_convergence`,
:func:`condensation_index` (ours, not P1's) and :func:`neuron_features`; failed runs raise
:class:`TrainingFailed`.  Figures: ``limits.plots.phase_diagram``, ``slope_heatmap``,
``condensation_picture``, ``rd_vs_width``.

Modules (each public name is re-exported here, so ``limits.phase.<name>`` is the API):

* ``_coordinates``: coordinates and theory (regime, boundary, kappas, gammas, initialisations,
  the 1-d data), pure NumPy;
* ``_kernels``: the compiled full-batch GD loops (numba);
* ``_training``: :func:`train`, :class:`TrainResult`, :func:`initial_parameters`,
  :func:`step_convergence`, the grid-point function;
* ``_slopes``: :func:`slope`, :func:`diagram`, :func:`zero_crossings` (runs through
  ``limits.sweep``);
* ``_condensation``: :func:`neuron_features`, :func:`condensation_index`.
"""
from ._condensation import condensation_index, neuron_features
from ._coordinates import (INITIALISATIONS, Initialisation, boundary, boundary_distance,
                           from_gamma, from_kappa, gammas_of, kappas, one_d_data, regime)
from ._slopes import DEFAULT_WIDTHS, Diagram, Slope, diagram, slope, zero_crossings
from ._training import (TrainingFailed, TrainResult, _phase_point, initial_parameters,
                        step_convergence, train)

__all__ = [
    "regime", "boundary", "boundary_distance", "kappas", "gammas_of", "from_gamma",
    "from_kappa", "Initialisation", "INITIALISATIONS", "one_d_data", "TrainResult", "train",
    "TrainingFailed", "Slope", "slope", "Diagram", "diagram", "zero_crossings",
    "neuron_features", "condensation_index", "DEFAULT_WIDTHS", "initial_parameters",
    "step_convergence",
]
