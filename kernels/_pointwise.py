"""Pointwise activations in compiled code: ``phi(p, x)``, ``dphi(p, x)``, ``d2phi(p, x)``.

An activation's compiled form is a small named tuple ``p = activation.pointwise()`` (its
parameters, e.g. the slopes of an ``ABReLU``) whose class carries three static methods
``phi(p, x)``, ``dphi(p, x)``, ``d2phi(p, x)``.  The three functions here dispatch on the type
of ``p`` at compile time and are inlined into the caller (numba ``overload`` with
``inline="always"``), so a loop ``for i: out[i] = phi(p, h[i])`` compiles to the closed form of
that activation with no call and no branch on the activation kind, and functions taking
``p`` are cached on disk for the built-in activations (their tuple types are module-level
classes).  A user ``Activation(fn)`` gives a tuple holding its compiled ``fn`` and derivatives
(numba dispatchers, called directly; such callers compile once per process).

Usage from any package (Monte Carlo, trainers, SDE coefficients)::

    from kernels._pointwise import phi, dphi
    p = net.activation.finite(width, depth).pointwise()     # ShapedReLU slopes resolved

    @numba.njit
    def layer(p, h, out):
        for i in range(h.shape[0]):
            out[i] = phi(p, h[i])

A new activation adds its tuple class (fields = parameters, plus the three static methods) and
returns an instance from ``pointwise()``; nothing here changes.  Outside compiled code
``phi(p, x)`` calls the same static method on a Python float.
"""
from numba.extending import overload

__all__ = ["phi", "dphi", "d2phi"]


def phi(p, x):
    """``phi(x)`` of the activation whose compiled form is ``p``."""
    return type(p).phi(p, x)


def dphi(p, x):
    """``phi'(x)`` of the activation whose compiled form is ``p``."""
    return type(p).dphi(p, x)


def d2phi(p, x):
    """``phi''(x)`` of the activation whose compiled form is ``p``."""
    return type(p).d2phi(p, x)


def _impl(p, name):
    cls = getattr(p, "instance_class", None)
    return getattr(cls, name, None)


@overload(phi, inline="always")
def _ol_phi(p, x):
    return _impl(p, "phi")


@overload(dphi, inline="always")
def _ol_dphi(p, x):
    return _impl(p, "dphi")


@overload(d2phi, inline="always")
def _ol_d2phi(p, x):
    return _impl(p, "d2phi")


# ----------------------------------------------------------------------------------------------
# user activations and the on-disk cache
# ----------------------------------------------------------------------------------------------
def cacheable(p):
    """Whether compiled functions taking ``p`` may keep their machine code in numba's on-disk
    cache: true for the built-in activations (tuples of floats), false for a user
    ``Activation(fn)`` (its tuple holds ``fn``'s dispatcher).  A cache index that names a user
    function cannot be read by a later process that cannot import that function's module (every
    later call, with any activation, then fails with ModuleNotFoundError), so such calls go
    through :func:`uncached` twins instead."""
    from numba.core.dispatcher import Dispatcher
    return not any(isinstance(v, Dispatcher) for v in p)


_TWINS = {}


def uncached(module, names):
    """Twins of the cached numba functions ``names`` of ``module``: the same code and compiler
    options without ``cache=True``, calling each other (a twin's globals name the other twins;
    every other global is the module's own).  Built once per process; they compile per
    activation type like any numba function.  Use for calls taking a non-:func:`cacheable`
    pointwise form."""
    import types

    import numba
    key = (module.__name__, tuple(names))
    if key not in _TWINS:
        g = dict(vars(module))
        for name in names:
            d = getattr(module, name)
            f = d.py_func
            opts = {k: v for k, v in d.targetoptions.items() if k != "nopython"}
            g[name] = numba.njit(**opts)(types.FunctionType(f.__code__, g, f.__name__,
                                                             f.__defaults__, f.__closure__))
        _TWINS[key] = types.SimpleNamespace(**{n: g[n] for n in names})
    return _TWINS[key]
