"""Per-path random streams, seeds and time grids of the SDE solvers, and the exact q_t sampler:
the shared layer below ``limits.sde`` (which imports it) and ``limits.solve`` (which imports
both), so that ``sde`` never imports ``solve``.

Random numbers are counter-based: path ``j`` has the key kappa_j = mix(k1 ^ mix(k2)) from its
generator keys (k1, k2) of ``kernels.montecarlo`` (``_sample_keys``), its word ``c`` is
mix(kappa_j + c G) (SplitMix64: Steele, Lea & Flood 2014; G the 64-bit golden ratio), and words
2i, 2i + 1 give normals 2i, 2i + 1 by ``kernels.montecarlo``'s Box-Muller transform.  So normal
``i`` of path ``j`` depends only on (seed, j, i): results do not depend on the thread count or
on how paths are blocked (``limits.solve``'s module docstring has the overlap probability).
"""
import math

import numba
import numpy as np
from numba import prange

from kernels._random import BM_K, MIX_K, _box_muller_k, _mix, _mix_k, _sample_keys


@numba.njit(inline="always", cache=True)
def _path_key(k1, k2):
    """Key kappa of a path's stream from its generator keys (k1, k2)."""
    return _mix(k1 ^ _mix(k2))


@numba.njit(inline="always", cache=True, error_model="numpy")
def _path_pair_k(kk, c, mk, bk):
    """Normals c, c + 1 (c even) of the path with key kk; mk = MIX_K, bk = BM_K."""
    g = mk[0]
    return _box_muller_k(_mix_k(kk + c * g, mk), _mix_k(kk + (c + np.uint64(1)) * g, mk), bk)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _path_pair(kk, c):
    """Normals c, c + 1 (c even) of the path with key kk."""
    return _path_pair_k(kk, c, MIX_K, BM_K)


@numba.njit(inline="always", cache=True, error_model="numpy")
def _gauss(kk, i):
    """Standard normal number i of the path with key kk."""
    a, b = _path_pair(kk, np.uint64(2 * (i >> 1)))
    return b if (i & 1) else a


@numba.njit(inline="always", cache=True)
def _lane_keys(keys, lo, n, lanes):
    """Stream keys (``_path_key``) of paths lo .. lo + n - 1 as a lane array (unused lanes: 0)."""
    kk = np.zeros(lanes, dtype=np.uint64)
    for l in range(n):
        kk[l] = _path_key(keys[lo + l, 0], keys[lo + l, 1])
    return kk


def _keys(seed, paths):
    """Generator keys (paths, 2) of ``seed`` (int >= 0 or SeedSequence)."""
    if isinstance(seed, np.random.SeedSequence):
        ss = seed
    else:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer or a SeedSequence, "
                             f"got {seed!r}")
        ss = np.random.SeedSequence(int(seed))
    return _sample_keys(ss, 0, paths)


def _check_times(times, allow_zero=True):
    try:
        t = np.atleast_1d(np.asarray(times, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"times must be an array of real numbers: {exc}") from exc
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"times must be a non-empty 1-d sequence, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"times must be finite, got {t.tolist()}")
    if t[0] < 0 or (not allow_zero and t[0] <= 0):
        raise ValueError(f"times must be {'>= 0' if allow_zero else '> 0'}, got {t.tolist()}")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"times must be strictly increasing, got {t.tolist()}")
    return t


def _uniform_grid(times, dt):
    """Steps of at most dt from 0 through every save time; returns (grid, save indices)."""
    pts = [0.0]
    save = []
    for t in times:
        if t == 0.0:
            save.append(0)
            continue
        n = max(1, int(math.ceil((t - pts[-1]) / dt - 1e-9)))
        pts.extend(np.linspace(pts[-1], t, n + 1)[1:].tolist())
        save.append(len(pts) - 1)
    return np.array(pts), np.array(save, dtype=np.int64)


def _geometric_grid(times, t0, h):
    """Geometric steps t_{i+1} = t_i (1 + h) from t0 through every save time."""
    pts = [t0]
    save = []
    for t in times:
        n = max(1, int(math.ceil(math.log(t / pts[-1]) / math.log1p(h) - 1e-9)))
        pts.extend(np.geomspace(pts[-1], t, n + 1)[1:].tolist())
        save.append(len(pts) - 1)
    return np.array(pts), np.array(save, dtype=np.int64)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _exact_q(keys, grid, save, qstar, out):
    """Exact q_t = q* / Y_t^2 (sde.md §3.3) along a Brownian path on ``grid`` (trapezoid rule for
    int_0^t e^{-s + sqrt2 B_s} ds)."""
    paths = keys.shape[0]
    s2 = math.sqrt(2.0)
    for j in prange(paths):
        kk = _path_key(keys[j, 0], keys[j, 1])
        B = 0.0
        f_prev = 1.0            # e^{-0 + sqrt2 B_0}
        integral = 0.0
        k = 0
        for i in range(grid.shape[0] - 1):
            h = grid[i + 1] - grid[i]
            B += math.sqrt(h) * _gauss(kk, i)
            t = grid[i + 1]
            f = math.exp(-t + s2 * B)
            integral += 0.5 * h * (f_prev + f)
            f_prev = f
            while k < save.shape[0] and save[k] == i + 1:
                Y = math.exp(t - s2 * B) * integral / t
                out[k, j] = qstar / (Y * Y)
                k += 1
