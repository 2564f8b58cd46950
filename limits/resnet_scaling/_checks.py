"""Argument checks of ``limits.resnet_scaling`` (run before any compiled code)."""
import math

import numpy as np


def _int(name, v, minimum):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {v!r}")
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v!r}")
    return int(v)


def _real(name, v, positive=False, nonneg=False):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v!r}")
    if positive and not v > 0:
        raise ValueError(f"{name} must be > 0, got {v!r}")
    if nonneg and v < 0:
        raise ValueError(f"{name} must be >= 0, got {v!r}")
    return v


def _choice(name, v, options):
    if not isinstance(v, str):
        raise TypeError(f"{name} must be a string, one of {options}, got {v!r}")
    if v not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {v!r}")
    return v


def _matrix(name, x, cols=None):
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real array, got {type(x).__name__}")
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-d (samples, features), got shape {a.shape}")
    if cols is not None and a.shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns (the width d), got shape {a.shape}")
    if a.shape[0] < 1:
        raise ValueError(f"{name} must have at least one row, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite")
    return np.ascontiguousarray(a)

