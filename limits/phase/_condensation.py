"""Condensation of the trained neurons: per-neuron features and a condensation index.

P1 §3.1, §4.2 show condensation as pictures of the neurons' orientations; :func:`neuron_features`
gives the per-neuron amplitude and orientation, and :func:`condensation_index` (ours, not P1's)
one number for how concentrated the amplitude is in orientation.
"""
import math

import numpy as np

from kernels._checks import finite_array, int_in_range

__all__ = ["neuron_features", "condensation_index"]


def neuron_features(a, W, reference=None):
    """Per-neuron amplitude and orientation (P1 §3.1, §4.2).

    ``A_k = |a_k| ||w_k||`` (w includes the bias).  Orientation: for 1-d input (W of shape
    (m, 2), columns (w, b)) the angle ``atan2(b_k, w_k)`` in [-pi, pi] (P1-code); for higher
    dimension the projection ``I_k = w_k . p / ||w_k||`` on ``p = ones(d+1)/sqrt(d+1)``
    (P1-code's reference direction) or on ``reference``.

    Returns
    -------
    A : ndarray (m,)
    orientation : ndarray (m,)
    """
    a = finite_array(a, "a").reshape(-1)
    W = finite_array(W, "W")
    if W.ndim != 2 or W.shape[0] != a.shape[0]:
        raise ValueError(f"W must have shape ({a.shape[0]}, d+1), got {W.shape}")
    norm = np.linalg.norm(W, axis=1)
    A = np.abs(a) * norm
    if W.shape[1] == 2 and reference is None:
        return A, np.arctan2(W[:, 1], W[:, 0])
    p = np.ones(W.shape[1]) if reference is None else finite_array(reference, "reference")
    if p.shape != (W.shape[1],) or not np.any(p):
        raise ValueError(f"reference must be a non-zero vector of length {W.shape[1]}")
    p = p / np.linalg.norm(p)
    with np.errstate(invalid="ignore", divide="ignore"):
        I = np.where(norm > 0, W @ p / norm, 0.0)
    return A, I


def condensation_index(a, W, bins=64, reference=None):
    """Condensation index (**ours, not P1's**: P1 has no quantitative condensation measure,
    training.md §1.6): one minus the normalised entropy of the amplitude-weighted histogram
    of neuron orientations::

        p_j = sum_{k in bin j} A_k / sum_k A_k,    C = 1 - (-sum_j p_j log p_j) / log(bins)

    with ``A_k = |a_k| ||w_k||`` and the orientation of :func:`neuron_features` (the angle on
    [-pi, pi] for 1-d input, the projection on [-1, 1] otherwise), ``bins`` equal bins.
    C = 1 when all amplitude sits in one bin (complete condensation), C = 0 when it is spread
    evenly over the bins; random initialisations give a small C that shrinks as m grows.

    Parameters
    ----------
    a : array_like (m,)
    W : array_like (m, d+1)
    bins : int, default 64
    reference : array_like (d+1,), optional
        Projection direction for d > 1.

    Returns
    -------
    float
    """
    bins = int_in_range(bins, "bins", 2)
    A, o = neuron_features(a, W, reference)
    tot = A.sum()
    if not tot > 0:
        raise ValueError("all amplitudes |a_k| ||w_k|| are zero; the index is undefined")
    lo, hi = (-math.pi, math.pi) if (W.shape[1] == 2 and reference is None) else (-1.0, 1.0)
    h, _ = np.histogram(o, bins=bins, range=(lo, hi), weights=A)
    p = h[h > 0] / tot
    return float(1.0 + np.dot(p, np.log(p)) / math.log(bins))
