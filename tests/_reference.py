"""Independent reference implementations shared by several test modules.

Written in plain NumPy from the formulas of theory/kernels.md, without calling the package: the
arc-cosine maps of ``phi = b relu(x) - a relu(-x)`` (§1.2), the erf maps (§1.3) and tensor
Gauss-Hermite quadrature for any activation (§1.4).  Each ``*_maps`` returns
``maps(q1, q2, c) -> (V, Vdot)`` on broadcast arrays.
"""
import math

import numpy as np
from scipy.special import roots_hermite

PI = math.pi


def abrelu_maps(a, b):
    """V, Vdot of ``phi = b relu(x) - a relu(-x)`` by quadrant probabilities (kernels.md §1.2)."""
    def maps(q1, q2, c):
        s = np.sqrt(q1 * q2)
        th = np.arctan2(np.sqrt(np.maximum(q1 * q2 - c * c, 0.0)), c)   # q1*q2 as a product
        e_rr = s * (np.sin(th) + (PI - th) * np.cos(th)) / (2 * PI)
        e_rm = s * (np.sin(th) - th * np.cos(th)) / (2 * PI)
        V = (a * a + b * b) * e_rr - 2 * a * b * e_rm
        Vd = ((a * a + b * b) * (PI - th) + 2 * a * b * th) / (2 * PI)
        return V, Vd
    return maps


def erf_maps(a=1.0, b=1.0, c0=0.0):
    """V and Vdot of ``phi = a erf(b x) + c0`` (kernels.md §1.3)."""
    def maps(q1, q2, c):
        b2 = b * b
        P = (1 + 2 * b2 * q1) * (1 + 2 * b2 * q2)
        V = a * a * (2 / PI) * np.arcsin(2 * b2 * c / np.sqrt(P)) + c0 * c0
        Vd = a * a * b2 * (4 / PI) / np.sqrt(P - 4 * b2 * b2 * c * c)
        return V, Vd
    return maps


def gh_maps(fn, dfn, deg, min_weight=0.0):
    """V and Vdot of any ``fn`` (derivative ``dfn``) by tensor Gauss-Hermite of degree ``deg``
    (kernels.md §1.4).  Nodes whose weight is below ``min_weight`` times the largest are dropped
    (for bounded fn, dfn such as tanh, sech^2 and ``min_weight = 1e-20`` their contribution is
    below 1e-20)."""
    xs, ws = roots_hermite(deg)
    keep = ws >= min_weight * ws.max()
    xs, ws = xs[keep], ws[keep]
    W = ws[:, None] * ws[None, :]

    def maps(q1, q2, c):
        q1, q2, c = np.broadcast_arrays(*(np.asarray(t, dtype=float) for t in (q1, q2, c)))
        u = np.sqrt(2 * q1)[..., None] * xs                                  # (..., i)
        y = ((c * np.sqrt(2 / q1))[..., None, None] * xs[:, None]             # (..., i, j)
             + np.sqrt(2 * np.maximum(q2 - c * c / q1, 0.0))[..., None, None] * xs[None, :])
        V = np.einsum("...i,...ij,ij->...", fn(u), fn(y), W) / PI
        Vd = np.einsum("...i,...ij,ij->...", dfn(u), dfn(y), W) / PI
        return V, Vd
    return maps
