"""Argument validation at the public boundary: clear errors before any compiled code runs."""
import numbers
import os

import numpy as np


def finite_float(value, name):
    """A finite real number as float, else TypeError/ValueError naming ``name``."""
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
    real_array(x, name)
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of real numbers: {exc}") from exc
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-d (N, d), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} has {arr.shape[1]} features but the first inputs have {d}")
    return np.ascontiguousarray(arr)


def psd_kernel(K, name="K0"):
    """A finite, symmetric, positive semi-definite float64 matrix."""
    real_array(K, name)
    try:
        arr = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of real numbers: {exc}") from exc
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 1:
        raise ValueError(f"{name} must be a square (N, N) matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
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
    """Refuse complex input with a TypeError naming ``name`` (NumPy would drop the imaginary
    part with only a ComplexWarning).  Returns ``value`` unchanged."""
    try:
        cplx = np.iscomplexobj(value)
    except (TypeError, ValueError):      # ragged or non-numeric: the caller's cast reports it
        cplx = False
    if cplx:
        raise TypeError(f"{name} must be real, got complex values")
    return value


def boolean(value, name):
    """A bool (NumPy bools included), else TypeError naming ``name``: strings such as "no" are
    truthy and must not silently count as True."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {type(value).__name__}: {value!r}")


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


def memory_budget(nbytes, what, hint=""):
    """Refuse up front (MemoryError with the number) a computation that needs ``nbytes`` bytes
    when that exceeds the memory available now."""
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise MemoryError(f"{what} needs about {_fmt_bytes(nbytes)}, but only "
                          f"{_fmt_bytes(avail)} is available{': ' + hint if hint else ''}")


def _fmt_bytes(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"
