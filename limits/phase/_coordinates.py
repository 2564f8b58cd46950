"""Coordinates and theory of the two-layer ReLU phase diagram (P1 §4.1; ``theory/training.md`` §1).

The scales ``(alpha, beta_1, beta_2)`` and their coordinates ``(kappa, kappa')`` (P1 Eq. (8)),
``(gamma, gamma')`` (P1 Eq. (14)); the predicted regime and the critical line
``gamma = 1 + max(0, gamma')`` (P1 §4.1.1); the common initialisations as points of the diagram
(P1 Table 1); the 1-d training data of P1 §3.1.  Pure NumPy, no training.
"""
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from kernels._checks import finite_array, int_in_range, nonneg_float, positive_float

__all__ = ["regime", "boundary", "boundary_distance", "kappas", "gammas_of", "from_gamma",
           "from_kappa", "Initialisation", "INITIALISATIONS", "one_d_data"]


def _power(m, e):
    """``float(m) ** e``, inf where it overflows (the caller names the argument)."""
    try:
        return float(m) ** e
    except OverflowError:
        return math.inf


def _representable(value, what, name, given, m=None):
    """``value`` if it is a finite float64 > 0, else a ValueError naming the arguments."""
    if 0.0 < value < math.inf:
        return value
    at = f" at m={m}" if m is not None else ""
    kind = "overflows" if value == math.inf else "underflows to 0 in"
    raise ValueError(f"{name}={given!r}{at}: {what} {kind} float64; the scales must stay "
                     f"within about 1e-308..1e308")


def boundary(gamma_prime):
    """Theoretical phase boundary ``gamma_c(gamma') = 1 + max(0, gamma')`` (P1 §4.1.1, Thm 6, 8).

    Parameters
    ----------
    gamma_prime : float or array_like

    Returns
    -------
    ndarray or float
        The value of gamma on the critical line.
    """
    gp = finite_array(gamma_prime, "gamma_prime")
    out = 1.0 + np.maximum(0.0, gp)
    return float(out) if out.ndim == 0 else out


def boundary_distance(gamma, gamma_prime):
    """Signed Euclidean distance of ``(gamma, gamma')`` to the critical line.

    The critical line is the union of the rays ``{gamma = 1, gamma' <= 0}`` and
    ``{gamma' = gamma - 1, gamma' >= 0}`` (P1 §4.1.1).  The sign is ``+`` in the condensed
    regime (``gamma > 1 + max(0, gamma')``) and ``-`` in the linear regime.

    Parameters
    ----------
    gamma, gamma_prime : float or array_like (broadcast together)

    Returns
    -------
    ndarray or float
    """
    g = finite_array(gamma, "gamma")
    gp = finite_array(gamma_prime, "gamma_prime")
    g, gp = np.broadcast_arrays(g, gp)
    u, v = g - 1.0, gp
    corner = np.hypot(u, v)
    d_vert = np.where(v <= 0, np.abs(u), corner)
    t = 0.5 * (u + v)                                  # projection on (1, 1)/sqrt 2 from (1, 0)
    d_diag = np.where(t >= 0, np.abs(u - v) / math.sqrt(2.0), corner)
    d = np.minimum(d_vert, d_diag)
    out = np.where(g > 1.0 + np.maximum(0.0, gp), d, -d)
    return float(out) if out.ndim == 0 else out


def regime(gamma, gamma_prime, tol=1e-9):
    """Regime predicted by the theory: ``"linear"``, ``"critical"`` or ``"condensed"``.

    ``gamma < 1 + max(0, gamma') - tol`` is linear, ``gamma > 1 + max(0, gamma') + tol`` is
    condensed, and the band ``|gamma - 1 - max(0, gamma')| <= tol`` is critical
    (P1 §4.1.1; Thm 6 for the linear and Thm 8 for the condensed regime; the critical regime is
    the boundary, with mean-field as its typical point, P1 §4.2).

    Parameters
    ----------
    gamma, gamma_prime : float or array_like
        Coordinates (P1 Eq. (14)); arrays are broadcast together.
    tol : float, default 1e-9
        Half-width of the critical band, measured along gamma.  The default only absorbs
        rounding (e.g. ``1 + 0.1``); use e.g. 0.05 to call nearby points critical.

    Returns
    -------
    str or ndarray of str
    """
    g = finite_array(gamma, "gamma")
    gp = finite_array(gamma_prime, "gamma_prime")
    tol = nonneg_float(tol, "tol")
    g, gp = np.broadcast_arrays(g, gp)
    diff = g - (1.0 + np.maximum(0.0, gp))
    out = np.where(diff > tol, "condensed", np.where(diff < -tol, "linear", "critical"))
    return str(out) if out.ndim == 0 else out.astype("<U9")


def kappas(alpha, beta_1, beta_2):
    """Scaling parameters ``kappa = beta_1 beta_2 / alpha`` and ``kappa' = beta_1 / beta_2``
    (P1 Eq. (8)).

    Returns
    -------
    (kappa, kappa_prime)
    """
    alpha, beta_1, beta_2 = (positive_float(v, n) for n, v in
                             (("alpha", alpha), ("beta_1", beta_1), ("beta_2", beta_2)))
    kappa = _representable(beta_1 * beta_2 / alpha, "kappa = beta_1 beta_2 / alpha",
                           "alpha, beta_1, beta_2", (alpha, beta_1, beta_2))
    kappa_prime = _representable(beta_1 / beta_2, "kappa' = beta_1 / beta_2", "beta_1, beta_2",
                                 (beta_1, beta_2))
    return kappa, kappa_prime


def gammas_of(alpha, beta_1, beta_2, m):
    """Finite-width coordinates ``gamma = -log(kappa)/log(m)``, ``gamma' = -log(kappa')/log(m)``
    (P1 Eq. (14) without the limit; constants such as sqrt(2) give a log(2)/log(m) offset).

    Returns
    -------
    (gamma, gamma_prime)
    """
    m = int_in_range(m, "m", 2)
    k, kp = kappas(alpha, beta_1, beta_2)
    lm = math.log(m)
    return -math.log(k) / lm, -math.log(kp) / lm


def from_gamma(gamma, gamma_prime, m, beta_1=1.0):
    """``(alpha, beta_1, beta_2)`` at width m for the coordinates (gamma, gamma'):
    ``beta_2 = beta_1 m^gamma'``, ``alpha = beta_1 beta_2 m^gamma`` (P1 Fig. 3 caption).

    Parameters
    ----------
    gamma, gamma_prime : float
    m : int
        Width (>= 2).
    beta_1 : float, default 1
        Free choice; S_w does not depend on it (P1 Fig. 3(d)).

    Returns
    -------
    (alpha, beta_1, beta_2)
    """
    gamma = float(finite_array(gamma, "gamma"))
    gamma_prime = float(finite_array(gamma_prime, "gamma_prime"))
    m = int_in_range(m, "m", 2)
    beta_1 = positive_float(beta_1, "beta_1")
    beta_2 = _representable(beta_1 * _power(m, gamma_prime), "beta_2 = beta_1 m^gamma'",
                            "gamma_prime", gamma_prime, m)
    alpha = _representable(beta_1 * beta_2 * _power(m, gamma), "alpha = beta_1 beta_2 m^gamma",
                           "gamma", gamma, m)
    return alpha, beta_1, beta_2


def from_kappa(kappa, kappa_prime, beta_1=1.0):
    """``(alpha, beta_1, beta_2)`` with the given ``(kappa, kappa')``: ``beta_2 = beta_1/kappa'``,
    ``alpha = beta_1 beta_2 / kappa`` (inverse of :func:`kappas`)."""
    kappa, kappa_prime, beta_1 = (positive_float(v, n) for n, v in
                                  (("kappa", kappa), ("kappa_prime", kappa_prime),
                                   ("beta_1", beta_1)))
    beta_2 = _representable(beta_1 / kappa_prime, "beta_2 = beta_1 / kappa'",
                            "kappa_prime, beta_1", (kappa_prime, beta_1))
    alpha = _representable(beta_1 * beta_2 / kappa, "alpha = beta_1 beta_2 / kappa",
                           "kappa, kappa_prime, beta_1", (kappa, kappa_prime, beta_1))
    return alpha, beta_1, beta_2


@dataclass(frozen=True)
class Initialisation:
    """A common initialisation as a point (or line) of the phase diagram (P1 Table 1).

    ``alpha(m, d)``, ``beta_1(m, d)``, ``beta_2(m, d)`` give the scales at width m and input
    dimension d; ``gamma``, ``gamma_prime`` are the limits m -> inf.  The E et al. (2020) family is
    the line ``gamma' = gamma`` (``line=True``; ``gamma``, ``gamma_prime`` hold one example point,
    beta = m^-1/4).
    """

    name: str
    alpha: Callable
    beta_1: Callable
    beta_2: Callable
    gamma: float
    gamma_prime: float
    line: bool = False

    def scales(self, m, d):
        """``(alpha, beta_1, beta_2)`` at width m, input dimension d."""
        return float(self.alpha(m, d)), float(self.beta_1(m, d)), float(self.beta_2(m, d))


INITIALISATIONS = {
    "LeCun": Initialisation("LeCun", lambda m, d: 1.0, lambda m, d: math.sqrt(1 / m),
                            lambda m, d: math.sqrt(1 / d), 0.5, 0.5),
    "He": Initialisation("He", lambda m, d: 1.0, lambda m, d: math.sqrt(2 / m),
                         lambda m, d: math.sqrt(2 / d), 0.5, 0.5),
    "Xavier": Initialisation("Xavier", lambda m, d: 1.0, lambda m, d: math.sqrt(2 / (m + 1)),
                             lambda m, d: math.sqrt(2 / (m + d)), 1.0, 0.0),
    "NTK": Initialisation("NTK", lambda m, d: math.sqrt(m), lambda m, d: 1.0,
                          lambda m, d: 1.0, 0.5, 0.0),
    "mean-field": Initialisation("mean-field", lambda m, d: float(m), lambda m, d: 1.0,
                                 lambda m, d: 1.0, 1.0, 0.0),
    "E et al.": Initialisation("E et al.", lambda m, d: 1.0, lambda m, d: m ** -0.25,
                               lambda m, d: 1.0, 0.25, 0.25, line=True),
}
"""P1 Table 1.  LeCun/He/NTK are linear, Xavier and mean-field sit at the corner (1, 0) of the
critical line, and the E et al. line gamma' = gamma lies in the linear regime."""


def one_d_data():
    """The 4-point 1-d problem of P1 §3.1 (inferred, training.md §1.5):
    ``X = [-1/2, -1/6, 1/6, 1/2]``, ``y = X^2``.

    Returns
    -------
    X : ndarray (4, 1)
    y : ndarray (4,)
    """
    x = np.array([-0.5, -1.0 / 6.0, 1.0 / 6.0, 0.5])
    return x[:, None], x ** 2

