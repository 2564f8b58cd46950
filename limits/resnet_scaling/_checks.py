"""Argument checks of ``limits.resnet_scaling`` (run before any compiled code).

Numbers and arrays are checked by ``kernels._checks`` (the one check layer of both packages:
``int_in_range``, ``finite_float``, ``positive_float``, ``nonneg_float``, ``finite_array``);
this module adds the two shapes of argument only this capability has: a string option and a
(samples, features) data matrix."""
import numpy as np

from kernels._checks import finite_array


def _choice(name, v, options):
    if not isinstance(v, str):
        raise TypeError(f"{name} must be a string, one of {options}, got {v!r}")
    if v not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {v!r}")
    return v


def _matrix(name, x, cols=None):
    """A finite float64 (samples, features) matrix, C-contiguous; ``cols`` features if given."""
    a = finite_array(x, name)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-d (samples, features), got shape {a.shape}")
    if cols is not None and a.shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns (the width d), got shape {a.shape}")
    if a.shape[0] < 1:
        raise ValueError(f"{name} must have at least one row, got shape {a.shape}")
    return np.ascontiguousarray(a)


def _samples(xname, X, yname, Y, cols=None):
    """Checked inputs and targets: two :func:`_matrix` with the same rows, Y with X's columns
    (``cols`` columns if given)."""
    X = _matrix(xname, X, cols=cols)
    Y = _matrix(yname, Y, cols=X.shape[1])
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"{xname} and {yname} must have the same number of rows, got "
                         f"{X.shape[0]} and {Y.shape[0]}")
    return X, Y
