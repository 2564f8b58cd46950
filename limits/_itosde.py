"""``ItoSDE``: any user SDE ``dY = a(t, Y) dt + B(t, Y) dW`` from numba-compiled drift and
diffusion, and its Euler-Maruyama kernels (run by ``limits.solve`` under the name ``"ito"``).

Random numbers come from the per-path counter-based streams of ``limits._sde_paths``, as for
every built-in SDE.
"""
import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import prange

from ._sde_paths import _path_key, _path_pair
from .sde import _SDE, _real_array

__all__ = ["ItoSDE"]

_SENTINEL = -1.2345678901234567e-300     # fills the guard after out in _check_callables


def _is_dispatcher(f):
    return isinstance(f, numba.core.dispatcher.Dispatcher)


def _dimension(value, name, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int{' or None' if allow_none else ''}, got "
                        f"{type(value).__name__}: {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class ItoSDE(_SDE):
    """Any Itô SDE ``dY = a(t, Y) dt + B(t, Y) dW`` given by numba-compiled coefficients::

        drift(t, y, out)       out[:] = a(t, y), shape (dim,)
        diffusion(t, y, out)   noise_dim None (diagonal noise, dY^r = a^r dt + b^r dW^r):
                                   out[:] = b(t, y), shape (dim,)
                               else out[:, :] = B(t, y), shape (dim, noise_dim)

    with ``t`` a float and ``y``, ``out`` float64 arrays (write into ``out``; do not modify
    ``y``).  ``limits.solve(ItoSDE(...), y0, times, paths, seed)`` integrates it by
    Euler-Maruyama (``method="euler"`` only: Milstein would need derivatives of B, Heun
    additive noise; strong order 1/2, weak order 1) on the uniform grid of step ``dt``, with
    the guarantees of the built-in SDEs: path j draws its normals from its own counter-based
    stream (``dim`` or ``noise_dim`` per step, in order), so its values depend only on (seed, j)
    and not on how many paths are solved or how they are grouped; values are saved exactly at
    ``times``.  ``y0`` has shape (dim,) (a scalar when dim = 1); ``.values`` are
    ``(len(times), paths)`` for dim = 1, else ``(len(times), paths, dim)``.  A one-dimensional
    ItoSDE draws the same numbers as the built-in scalar SDEs (e.g. ``GeometricBM``).

    The solver kernel is compiled for the given functions once per process (numba does not
    cache kernels specialised on function arguments); the state is not transformed, so an SDE
    whose domain is bounded should be written in coordinates that cannot leave it (sde.md §5).

    Parameters
    ----------
    drift, diffusion : numba dispatchers (``@numba.njit`` functions)
    dim : int >= 1
    noise_dim : int >= 1 or None (diagonal noise: one Brownian motion per coordinate)

    Examples
    --------
    Ornstein-Uhlenbeck ``dX = -X dt + 0.5 dW``:

    >>> import numba, limits
    >>> @numba.njit
    ... def a(t, y, out):
    ...     out[0] = -y[0]
    >>> @numba.njit
    ... def b(t, y, out):
    ...     out[0] = 0.5
    >>> limits.solve(limits.ItoSDE(a, b, 1), 1.0, [1.0], paths=4).values.shape
    (1, 4)
    """

    drift: object
    diffusion: object
    dim: int = 1
    noise_dim: object = None
    euler_only = "a user SDE supplies only its drift and diffusion"

    def __post_init__(self):
        for name in ("drift", "diffusion"):
            f = getattr(self, name)
            if not _is_dispatcher(f):
                raise TypeError(f"{name} must be a numba-compiled function (@numba.njit) "
                                f"{name}(t, y, out), got {type(f).__name__}: {f!r}")
        object.__setattr__(self, "dim", _dimension(self.dim, "dim"))
        object.__setattr__(self, "noise_dim", _dimension(self.noise_dim, "noise_dim", True))

    @property
    def params(self):
        return np.zeros(0)

    def _integrator(self, z0, method):
        return "ito"

    def to_coords(self, y0):
        y = _real_array(y0, "y0")
        if self.dim == 1 and y.ndim == 0:
            y = y.reshape(1)
        if y.shape != (self.dim,):
            raise ValueError(f"y0 must have shape ({self.dim},) (dim = {self.dim}), got shape "
                             f"{y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"y0 must be finite, got {y.tolist()}")
        return y

    def from_coords(self, z):
        return z[..., 0] if self.dim == 1 else z

    def _check_callables(self, t, z0):
        """Call drift and diffusion once at (t, y0) before the compiled solver runs: a function
        that does not compile for (float, float64 array, float64 array), fails, or returns
        non-finite coefficients is reported here, naming it."""
        shapes = {"drift": (self.dim,),
                  "diffusion": (self.dim,) if self.noise_dim is None
                  else (self.dim, self.noise_dim)}
        for name, shape in shapes.items():
            # out is a view at the start of a larger buffer whose tail holds a sentinel: compiled
            # code does not check bounds, so a write past out (a wrong dim) shows there
            size = int(np.prod(shape))
            buf = np.full(size + 64, np.nan)
            buf[size:] = _SENTINEL
            out = buf[:size].reshape(shape)
            try:
                getattr(self, name)(t, z0.copy(), out)
            except Exception as exc:
                raise TypeError(f"{name}(t, y, out) failed for t = {t}, y = y0 (float64, shape "
                                f"({self.dim},)) and out float64 of shape {shape}: "
                                f"{type(exc).__name__}: {str(exc)[:300]}") from exc
            if not np.array_equal(buf[size:], np.full(64, _SENTINEL)):
                raise ValueError(f"{name}(t, y0, out) wrote past the end of out (shape {shape}): "
                                 f"it expects a larger dim{'' if name == 'drift' else ' or noise_dim'}"
                                 f" than dim = {self.dim}, noise_dim = {self.noise_dim}")
            if not np.all(np.isfinite(out)):
                raise ValueError(f"{name}(t, y0, out) left non-finite values in out (shape "
                                 f"{shape}; every entry must be written): {out.tolist()}")


# ----------------------------------------------------------------------------------------------
# ItoSDE: Euler-Maruyama of a user's compiled drift(t, y, out) and diffusion(t, y, out)
# ----------------------------------------------------------------------------------------------
@numba.njit(inline="always", cache=True, error_model="numpy")
def _next_normal(kk, c, z_odd):
    """Normal c of the path with key kk and the cached second normal of its pair: normals
    2i, 2i + 1 come as one Box-Muller pair, so an even c draws both, an odd c uses z_odd."""
    if (c & 1) == 0:
        return _path_pair(kk, np.uint64(c))
    return z_odd, z_odd


@numba.njit(parallel=True, error_model="numpy")
def _solve_ito_diagonal(drift, diffusion, y0, grid, save, keys, out):
    """``dY^r = a^r dt + b^r dW^r`` (diagonal noise, ``diffusion`` fills b (dim,)); out (S,
    paths, dim).  Path j's normals are its stream's numbers 0, 1, 2, ... in order (dim per
    step), so a one-dimensional ItoSDE draws exactly the numbers of the built-in scalar SDEs.
    Not cached (specialised on the user's functions)."""
    paths = keys.shape[0]
    nsteps = grid.shape[0] - 1
    dim = y0.shape[0]
    for j in prange(paths):
        kk = _path_key(keys[j, 0], keys[j, 1])
        y = y0.copy()
        a = np.empty(dim)
        b = np.empty(dim)
        k = 0
        while k < save.shape[0] and save[k] == 0:
            out[k, j, :] = y
            k += 1
        c = 0
        z_odd = 0.0
        for i in range(nsteps):
            t = grid[i]
            h = grid[i + 1] - t
            sh = math.sqrt(h)
            drift(t, y, a)
            diffusion(t, y, b)
            for r in range(dim):
                z, z_odd = _next_normal(kk, c, z_odd)
                c += 1
                dw = sh * z
                y[r] = y[r] + a[r] * h + b[r] * dw
            while k < save.shape[0] and save[k] == i + 1:
                out[k, j, :] = y
                k += 1


@numba.njit(parallel=True, error_model="numpy")
def _solve_ito(drift, diffusion, noise_dim, y0, grid, save, keys, out):
    """``dY = a dt + B dW`` with B (dim, noise_dim) filled by ``diffusion``; out (S, paths, dim).
    Normals in stream order, noise_dim per step.  Not cached."""
    paths = keys.shape[0]
    nsteps = grid.shape[0] - 1
    dim = y0.shape[0]
    for j in prange(paths):
        kk = _path_key(keys[j, 0], keys[j, 1])
        y = y0.copy()
        a = np.empty(dim)
        B = np.empty((dim, noise_dim))
        dw = np.empty(noise_dim)
        k = 0
        while k < save.shape[0] and save[k] == 0:
            out[k, j, :] = y
            k += 1
        c = 0
        z_odd = 0.0
        for i in range(nsteps):
            t = grid[i]
            h = grid[i + 1] - t
            sh = math.sqrt(h)
            for q in range(noise_dim):
                z, z_odd = _next_normal(kk, c, z_odd)
                c += 1
                dw[q] = sh * z
            drift(t, y, a)
            diffusion(t, y, B)
            for r in range(dim):
                s = 0.0
                for q in range(noise_dim):
                    s += B[r, q] * dw[q]
                y[r] = y[r] + a[r] * h + s
            while k < save.shape[0] and save[k] == i + 1:
                out[k, j, :] = y
                k += 1
