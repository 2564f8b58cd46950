"""Argument validation at the public boundary: clear errors before any compiled code runs."""
import numbers
import os

import numpy as np


def finite_float(value, name):
    """A finite real number as float, else TypeError/ValueError naming ``name``.  A 0-d
    real array (``np.array(0.1)``) counts as its number; bools, strings, complex numbers and
    arrays of any other shape do not."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
        value = value[()]
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}: {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def positive_float(value, name):
    """A finite float > 0."""
    v = finite_float(value, name)
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def nonneg_float(value, name):
    value = finite_float(value, name)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}: {value!r}")
    value = int(value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return value


def inputs(x, name, d=None):
    """A finite float64 array of shape (N, d)."""
    if x is None:
        raise TypeError(f"{name} is required (or give an input kernel K0=)")
    arr = finite_array(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-d (N, d), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column, got {arr.shape}")
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} has {arr.shape[1]} features but the first inputs have {d}")
    return np.ascontiguousarray(arr)


def psd_kernel(K, name="K0"):
    """A finite, symmetric, positive semi-definite float64 matrix."""
    arr = finite_array(K, name)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 1:
        raise ValueError(f"{name} must be a square (N, N) matrix, got shape {arr.shape}")
    scale = max(float(np.max(np.abs(np.diag(arr)))), 1e-300)
    if not np.allclose(arr, arr.T, rtol=0, atol=1e-12 * scale):
        raise ValueError(f"{name} must be symmetric (max |K - K.T| = "
                         f"{float(np.max(np.abs(arr - arr.T))):.3g})")
    if np.any(np.diag(arr) < 0):
        raise ValueError(f"{name} has a negative diagonal entry")
    lam = float(np.linalg.eigvalsh(0.5 * (arr + arr.T))[0])
    if lam < -1e-10 * max(float(np.trace(arr)), 1e-300):
        raise ValueError(f"{name} is not positive semi-definite (smallest eigenvalue {lam:.3g})")
    return np.ascontiguousarray(0.5 * (arr + arr.T))


def real_array(value, name):
    """A float64 array of any shape (a scalar gives a 0-d array), not checked for finiteness;
    the type half of :func:`finite_array` (for callers that check the shape first).

    ``None``, strings (NumPy would give NaN, parse "1.5", or drop the imaginary part of
    complex input with only a ComplexWarning) and complex input are a TypeError, as is object,
    ragged or non-numeric input; every message names ``name``.  Returns ``np.asarray(value, dtype=np.float64)`` (no copy of a float64
    array).
    """
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a real number or an array of real numbers, got "
                        f"{type(value).__name__}: {_short(value)}")
    try:
        a = value if isinstance(value, np.ndarray) else np.asarray(value)
    except (TypeError, ValueError):      # ragged: the cast below reports it
        a = None
    if a is not None and a.dtype.kind in "USV":
        raise TypeError(f"{name} must be a real number or an array of real numbers, got an "
                        f"array of {a.dtype} ({_short(value)}); NumPy would parse strings")
    if a is not None and np.iscomplexobj(a):
        raise TypeError(f"{name} must be real, got complex values")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a real number or an array of real numbers, "
                        f"got {_short(value)} ({exc})") from None


def finite_array(value, name):
    """A finite float64 array of any shape (a scalar gives a 0-d array); the one check of
    array arguments at the public boundary.

    ``None``, strings, complex input (NumPy would drop the imaginary part with only a
    ComplexWarning), object, ragged or non-numeric input is a TypeError (:func:`real_array`); NaN or inf is a
    ValueError giving the first bad index; every message names ``name``.  Shape checks are the
    caller's.
    """
    arr = real_array(value, name)
    if not np.all(np.isfinite(arr)):
        if arr.ndim == 0:
            raise ValueError(f"{name} must be finite, got {value!r} "
                             f"({'NaN' if np.isnan(arr) else 'infinite'})")
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name} must be finite: it contains NaN or inf (first at index "
                         f"{bad}: {float(arr[bad])!r})")
    return arr


def int_in_range(value, name, lo, hi=None):
    """An integer ``lo <= value <= hi`` (``hi=None``: no upper bound) as int.  Integer-valued
    floats are refused (TypeError), unlike :func:`positive_int`: use this where a float means
    a mistake (a width, a seed, a step count)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral,
                                                                     np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}: {value!r}")
    value = int(value)
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return value


def flag(value, name):
    """A bool (Python or NumPy), else TypeError naming ``name`` (``"no"`` is not False)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}: {value!r}")
    return bool(value)


def _short(value, n=80):
    r = repr(value)
    return r if len(r) <= n else r[:n - 3] + "..."


def _size(nbytes):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.3g} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024


def available_memory():
    """Bytes of memory available to a new allocation (MemAvailable on Linux), or None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


class MemoryBudgetError(MemoryError, ValueError):
    """A computation refused up front because it would not fit in memory.

    A ``MemoryError`` (memory is what is short) and a ``ValueError`` (an argument asked for
    it: the refusal comes before any allocation or compiled code, like every argument
    check), so that either ``except`` clause catches it."""


def memory_guard(need, what, hint=""):
    """Refuse up front what cannot fit: the one memory check of both packages.

    Parameters
    ----------
    need : float or list of (float, str)
        Bytes the computation needs; or its parts as ``(bytes, description)`` (summed; the
        message names the largest part).
    what : str
        What needs it, e.g. ``"monte_carlo"`` or ``"m=100 with n=10: the training state"``.
    hint : str, optional
        What to change to fit (e.g. ``"reduce the width"``).

    Raises
    ------
    MemoryBudgetError
        When the bytes exceed the memory available now (``available_memory``: MemAvailable on
        Linux; where unknown, the 2^63-byte address space), with both sizes in bytes and
        binary units, instead of a MemoryError or swapping after the work has started.
    """
    parts = need if isinstance(need, (list, tuple)) else [(need, None)]
    total = sum(float(b) for b, _ in parts)
    avail = available_memory()
    limit = 2.0 ** 63 if avail is None else avail
    if total <= limit:
        return
    largest = max(parts, key=lambda p: p[0])[1]
    largest = f"; the largest part: {largest}" if largest else ""
    where = (f"but only {_size(avail)} is available ({avail:,} bytes of memory)"
             if avail is not None else "more than the 2^63-byte address space")
    raise MemoryBudgetError(f"{what} needs about {int(total):,} bytes ({_size(total)}"
                            f"{largest}), {where}{': ' + hint if hint else ''}")


