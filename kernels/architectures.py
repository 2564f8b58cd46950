"""Architectures: MLP and ResNet as frozen dataclasses, with their infinite-width kernels.

Conventions follow neural-tangents (DESIGN.md): NTK parameterisation (or, with
``parameterization="standard"``, neural-tangents' standard one: kernels.md §5b), input kernel
``K0 = x x' / d``, ``depth`` = number of nonlinearities, NNGP = covariance of one scalar output,
NTK summed over every weight and bias, readout included.  Variances may be given per Dense
layer.
"""
import numbers
from dataclasses import dataclass

import numpy as np

from . import _checks
from ._engine import (  # noqa: F401  (re-exported: _blockwise, _dask, _grads, _fast_equal_norm)
    _FAST_REFUSAL, _REFINE_EPS, _TABLE_CACHE, Kernels, Trajectory, _check_finite, _fast_pieces,
    _finish, _homogeneous_rescale, _input_state, _ntk_param_stack, _run, _run_abrelu,
    _run_smooth, _serial, _Stack, _trajectory_memory, _unit_rows)
from .activations import Activation, ShapedReLU

__all__ = ["MLP", "ResNet", "Kernels", "Trajectory"]


# ----------------------------------------------------------------------------------------------
# public architectures
# ----------------------------------------------------------------------------------------------
def _check_activation(activation):
    if not isinstance(activation, Activation):
        raise TypeError(f"activation must be a kernels activation (ReLU(), Erf(), "
                        f"Activation(fn), ...), got {type(activation).__name__}: {activation!r}")
    return activation


class _KernelMethods:
    """nngp / ntk / kernels / trajectory on top of ``self._stack()``."""

    def _prepare(self, x1, x2, K0, name1="x1"):
        if K0 is not None:
            if x1 is not None or x2 is not None:
                raise ValueError(f"give either inputs {name1} (and x2) or an input kernel K0, "
                                 "not both")
            return None, None, _checks.psd_kernel(K0, "K0")
        x1 = _checks.inputs(x1, name1)
        if x2 is not None:
            x2 = _checks.inputs(x2, "x2", d=x1.shape[1])
        return x1, x2, None

    def kernels(self, x1=None, x2=None, *, K0=None, fast=None, out=None, diagonal=False,
                tile=None, progress=None):
        """NNGP and NTK in one pass.

        Parameters
        ----------
        x1 : (N1, d) array_like
            Inputs; the input kernel is ``K0 = x1 x2' / d`` (neural-tangents convention).
        x2 : (N2, d) array_like, optional
            Second set of inputs for the cross kernel; default ``x1`` (symmetry is used).
        K0 : (N, N) array_like, optional
            A positive semi-definite input kernel to start from instead of inputs.
        fast : bool, optional
            Use a depth-independent tabulated path: bias-free ReLU-type networks, or any
            network on inputs of equal norm (every ``|x_i|^2 / d``, or ``K0_ii``, equal to a
            relative 1e-14, as normalised data is; a cross kernel needs each set of equal
            norm), whose cost does not grow with depth beyond one layer loop over about
            1000 tabulation points; within 1e-12 sqrt(K(x,x) K(x',x')) of the loop
            (``kernels._fast_equal_norm``).  Default: automatic, when it applies and is cheaper
            (depth >= 32 and >= 7680 pairs); ``False`` forces the layer loop; ``True`` raises
            ValueError when neither case applies.
        out : pair of arrays (nngp_out, ntk_out), optional
            Fill these (N1, N2) float64 arrays, e.g. ``numpy.memmap`` or ``.npy`` files opened
            with ``numpy.lib.format.open_memmap(..., mode="w+")``, tile by tile instead of
            building the kernels in memory (either may be None: not stored).  Extra memory is a
            few ``tile^2`` arrays; symmetry is used; the entries equal the in-memory result bit
            for bit.  With ``K0`` (itself possibly a memory map), tile by tile too, at about
            twice the work (``kernels._blockwise``).  Returns ``Kernels`` of these arrays.
        diagonal : bool
            Return only the (N,) diagonals ``K(x_i, x_i)``, ``Theta(x_i, x_i)`` in O(N depth),
            equal to the diagonal of the full computation (x2 must be None).
        tile : int >= 1, optional
            Rows and columns per tile with ``out`` (default 1024).
        progress : bool, optional
            Progress bar (tqdm) with ``out``; default: shown when N1 N2 >= 5e7.

        Returns
        -------
        Kernels
            ``.nngp`` and ``.ntk``, each (N1, N2) (or (N,) with ``diagonal=True``).
        """
        return self._kernels(x1, x2, K0, fast, out, diagonal, tile, progress, ntk=True)

    def _kernels(self, x1, x2, K0, fast, out, diagonal, tile, progress, ntk):
        if out is not None or diagonal is not False or tile is not None or progress is not None:
            from . import _blockwise
            return _blockwise.kernels(self, x1, x2, K0, fast, out, diagonal, tile, progress, ntk)
        x1, x2, K0 = self._prepare(x1, x2, K0)
        if fast is not None and not isinstance(fast, bool):
            raise TypeError(f"fast must be True, False or None, got {fast!r}")
        return _run(self._engine_stack(x1, K0, ntk), x1, x2, K0, fast=fast, ntk=ntk)

    def _engine_stack(self, x1, K0, ntk=True):
        """The stack for inputs x1 (its dimension d enters the standard parameterization's
        NTK) or an input kernel K0 (refused for the standard NTK: d is unknown)."""
        if K0 is not None and ntk and self.parameterization == "standard":
            raise ValueError("an input kernel K0 cannot give the NTK in the standard "
                             "parameterization: its first layer adds d K0 = x x' (d = the "
                             "input dimension, unknown from K0); give the inputs x instead "
                             "(the NNGP, net.nngp(K0=...), or a trajectory with ntk=False, "
                             "does not need d)")
        return self._stack(d=None if x1 is None else x1.shape[1], nngp_only=not ntk)

    def nngp(self, x1=None, x2=None, *, K0=None, fast=None, out=None, diagonal=False,
             tile=None, progress=None):
        """NNGP kernel ``E[f(x) f(x')]`` of one scalar output (see ``kernels``; ``out`` is one
        array here).

        Runs the NNGP recursion alone: no NTK operation in the layer loop (and no NTK
        overflow can stop it)."""
        return self._kernels(x1, x2, K0, fast, None if out is None else (out, None), diagonal,
                             tile, progress, ntk=False).nngp

    def ntk(self, x1=None, x2=None, *, K0=None, fast=None, out=None, diagonal=False, tile=None,
            progress=None):
        """Neural tangent kernel, summed over every weight and bias (see ``kernels``; ``out``
        is one array here)."""
        return self.kernels(x1, x2, K0=K0, fast=fast, out=None if out is None else (None, out),
                            diagonal=diagonal, tile=tile, progress=progress).ntk

    def trajectory(self, x=None, *, K0=None, layers=None, ntk=True):
        """Per-layer NNGP, NTK and correlation of the hidden representation.

        Parameters
        ----------
        x : (N, d) array_like
            Inputs (or give ``K0``).
        K0 : (N, N) array_like, optional
            Input kernel instead of ``x``.
        layers : sequence of int, optional
            Layer indices in ``0..depth`` to record (default: all).  Layer 0 is the stem output.
        ntk : bool, default True
            Also compute the NTK.  ``False`` skips every NTK operation (``.ntk`` is None), so
            a correlation trajectory is not refused because the NTK, which grows like
            ``chi_1^l`` in the chaotic phase, overflows.

        Returns
        -------
        Trajectory

        Raises
        ------
        MemoryError
            Up front, with the number of bytes, if the recorded layers cannot fit in the
            memory available (about 11 arrays of (layers, N, N) float64; 9 with ntk=False).
        """
        x1, _, K0 = self._prepare(x, None, K0, name1="x")
        ntk = _checks.flag(ntk, "ntk")
        n = (K0 if K0 is not None else x1).shape[0]
        if layers is None:              # check before the layer list itself is allocated
            _trajectory_memory(self.depth + 1, n, n, ntk)
            layers = np.arange(self.depth + 1)
        else:     # sorted and de-duplicated (np.unique hashes: seconds for 1e6 layers)
            layers = np.sort(np.asarray(layers).ravel())
            if layers.size:
                layers = layers[np.concatenate([[True], layers[1:] != layers[:-1]])]
        if layers.ndim != 1 or layers.size == 0 or not np.issubdtype(layers.dtype, np.integer):
            raise ValueError(f"layers must be a non-empty sequence of integers, got {layers!r}")
        if layers[0] < 0 or layers[-1] > self.depth:
            raise ValueError(f"layers must lie in 0..{self.depth}, got "
                             f"{_short(layers.tolist())}")
        _trajectory_memory(len(layers), n, n, ntk)
        stack = self._engine_stack(x1, K0, ntk)
        return _run(stack.without_readout(), x1, None, K0, record=layers, fast=False, ntk=ntk)

    def kernel_grads(self, x1, x2=None):
        """Kernels and their derivatives with respect to ``weight_var`` and ``bias_var``.

        A tangent (forward-mode) recursion runs inside the compiled layer loop next to the
        kernel recursion (theory/kernels.md §5b; ``kernels._grads``): exact derivatives, no
        finite differences, exact at rho = +-1 and on the diagonal (no NaN at the ReLU kink).
        MLP: every Dense layer's variances.  ResNet with scalar variances: the branch
        ``weight_var`` / ``bias_var`` shared by every block (the derivative is the sum over the
        blocks; the input and readout Dense have their own ``input_*_var`` / ``readout_*_var``,
        not differentiated).  ResNet with per-layer variances: every Dense layer, ``depth + 2``
        of them in the order input, each block, readout (the order of
        ``ResNet(weight_var=[depth + 2 values])``).  Cost: about 2-3x ``kernels(x)`` for scalar
        variances; per-layer, one tangent per Dense layer (``kernels._grads``).

        Parameters
        ----------
        x1 : (N1, d) array_like
        x2 : (N2, d) array_like, optional (default ``x1``)

        Returns
        -------
        KernelGrads
            ``.nngp`` and ``.ntk``: dicts ``{"weight_var": dK, "bias_var": dK}`` of
            derivatives shaped like the kernel, (N1, N2), or (n_layers, N1, N2) for a per-layer
            variance (MLP: ``depth + 1`` layers, readout last; ResNet: ``depth + 2``, input
            Dense, blocks, readout Dense); ``.kernels``: the ``Kernels`` themselves.  A one-sided infinite
            derivative (``bias_var = 0``, exactly parallel or antiparallel inputs of different
            norms: the NTK's derivative w.r.t. ``bias_var``) is -inf, never NaN.

        Raises
        ------
        ValueError
            An input of zero norm when the input Dense has no bias (the maps' derivatives at
            zero variance are infinite or undefined).
        """
        from . import _grads
        return _grads.kernel_grads(self, x1, x2)


def _short(seq, k=6):
    return str(seq) if len(seq) <= 2 * k else f"[{str(seq[:k])[1:-1]}, ..., {str(seq[-k:])[1:-1]}]"


_MAX_DEPTH = 10 ** 9      # 32 bytes of layer description per layer: 32 GB at the bound


def _check_depth(depth):
    depth = _checks.positive_int(depth, "depth")
    if depth > _MAX_DEPTH:
        raise ValueError(f"depth must be <= {_MAX_DEPTH:.0e}, got {depth:.3g}: the per-layer "
                         f"description alone would need {32 * depth / 2 ** 30:.3g} GiB (and "
                         f"the layer loop about {depth * 5e-9:.3g} s per input pair)")
    return depth


def _stack_memory(L):
    """Refuse up front a per-layer description that cannot fit (u, v, ntk_w, ntk_b: 32 bytes
    a layer; scalar variances are broadcast views)."""
    _checks.memory_guard(32.0 * L, f"the per-layer description of depth {L}")


def _check_resolvable(activation, depth):
    """Fail early on activations the architecture cannot use.  ``ShapedReLU(rate="width")`` is
    allowed: its networks can be simulated (``kernels.montecarlo``), though its infinite-width
    kernels raise when asked for (the slopes depend on the width)."""
    if isinstance(activation, ShapedReLU) and activation.rate == "width":
        return
    activation._resolve(depth)


class _Unset:
    """Default of the ResNet's input_* / readout_* variances: not given by the user."""

    def __repr__(self):
        return "<default>"


_UNSET = _Unset()
_PARAMETERIZATIONS = ("ntk", "standard")


def _check_parameterization(value):
    if not isinstance(value, str):
        raise TypeError(f"parameterization must be 'ntk' or 'standard', got "
                        f"{type(value).__name__}: {value!r}")
    if value not in _PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be 'ntk' or 'standard', got {value!r}")
    return value


def _variance(value, name, standard, allow_none):
    """One variance: a float >= 0, or None (no bias parameter: kept in the standard
    parameterization, 0.0 in the NTK parameterization)."""
    if value is None and allow_none:
        return None if standard else 0.0
    return _checks.nonneg_float(value, name)


def _variances(value, name, lengths, standard, allow_none, order):
    """A scalar variance, or one per Dense layer: returns a float (or None) or a tuple whose
    length is one of ``lengths``.  ``order`` describes the layers (for the messages)."""
    if value is None or isinstance(value, (numbers.Real, np.floating, np.integer, str, bytes)) \
            or (isinstance(value, np.ndarray) and value.ndim == 0):
        return _variance(value.item() if isinstance(value, np.ndarray) else value, name,
                         standard, allow_none)
    if isinstance(value, np.ndarray) and value.ndim != 1:
        raise ValueError(f"{name} must be a scalar or a 1-d sequence ({order}), got an array "
                         f"of shape {value.shape}")
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"{name} must be a number or a sequence of numbers ({order}), got "
                        f"{type(value).__name__}: {value!r}") from None
    if len(items) not in lengths:
        want = " or ".join(str(k) for k in lengths)
        raise ValueError(f"{name} must be a scalar or have {want} values ({order}), got "
                         f"{len(items)} values: {_short(items)}")
    return tuple(_variance(v, f"{name}[{k}]", standard, allow_none)
                 for k, v in enumerate(items))


def _per_layer(value, n):
    """(values (n,) float64 with None -> 0, has_bias (n,) bool): a float is broadcast (a view,
    no memory), None is "no bias parameter"."""
    if isinstance(value, tuple):
        vals = np.array([0.0 if v is None else v for v in value], dtype=np.float64)
        return vals, np.array([v is not None for v in value])
    if value is None:
        return np.broadcast_to(0.0, (n,)), np.broadcast_to(False, (n,))
    return np.broadcast_to(np.float64(value), (n,)), np.broadcast_to(True, (n,))


def _check_width(width, name, count, standard, per_layer):
    """width: None, an int >= 1, or (per_layer) one int per hidden layer (``count``)."""
    if width is None:
        if standard:
            raise ValueError(f"{name} is required in the standard parameterization (its NTK "
                             f"adds each layer's input width times its input covariance): "
                             f"give {name}=n (an int" + (f", or {count} ints, one per hidden "
                                                         f"layer)" if per_layer else ")"))
        return None
    if isinstance(width, (list, tuple, np.ndarray)):
        if not per_layer:
            raise TypeError(f"{name} must be one int (the residual stream and every branch "
                            f"have the same width), got {type(width).__name__}: "
                            f"{_short(list(np.ravel(width)))}")
        if isinstance(width, np.ndarray) and width.ndim != 1:
            raise ValueError(f"{name} must be an int or a 1-d sequence of {count} ints, got "
                             f"an array of shape {width.shape}")
        items = list(width)
        if len(items) != count:
            raise ValueError(f"{name} must be an int or have {count} values (one per hidden "
                             f"layer), got {len(items)} values: {_short(items)}")
        return tuple(_checks.positive_int(w, f"{name}[{k}]") for k, w in enumerate(items))
    return _checks.positive_int(width, name)


def _need_d(d, cls):
    if d is None:
        raise ValueError(f"the standard parameterization's NTK needs the input dimension d "
                         f"(its first layer adds d K0 = x x'): compute the {cls} kernels from "
                         f"inputs x, not from an input kernel K0")
    return float(d)


@dataclass(frozen=True)
class MLP(_KernelMethods):
    """Fully connected network: ``depth`` hidden layers, then a linear readout.

    ``serial(Dense, phi, Dense, phi, ..., phi, Dense)`` with ``depth`` nonlinearities and
    ``depth + 1`` Dense layers; Dense layer ``l`` (``l = 0..depth``, the readout last) has
    weight variance ``sw2_l`` (``W_std**2``) and bias variance ``sb2_l`` (``b_std**2``).
    Infinite-width recursion (kernels.md §2.2, §5b; Lee et al. 2018, Jacot et al. 2018,
    Arora et al. 2019), ``K_0 = x.x'/d``::

        K_1 = sw2_0 K_0 + sb2_0,             Theta_1 = K_1
        K_{h+1}     = sw2_h V(K_h) + sb2_h
        Theta_{h+1} = K_{h+1} + sw2_h Vdot(K_h) Theta_h,     h = 1..depth

    and NNGP = K_{depth+1}, NTK = Theta_{depth+1}.  In ``trajectory``, layer ``l`` is ``K_{l+1}``
    (layer 0 = the first Dense's output; layer ``depth`` = the network output).

    **Standard parameterization** (``parameterization="standard"``; neural-tangents
    ``stax.Dense(..., parameterization="standard")``, Sohl-Dickstein et al. 2020, arXiv
    2001.07301): the finite network is ``z = W x + b`` with ``W ~ N(0, sw2_l / n_l)``,
    ``b ~ N(0, sb2_l)``, the same law as in the NTK parameterization, so the NNGP is
    unchanged; the NTK sums gradients with respect to ``W`` and ``b`` themselves::

        Theta_1     = d K_0 + [b_0]                                  (= x.x' + [b_0])
        Theta_{h+1} = n_h V(K_h) + sw2_h Vdot(K_h) Theta_h + [b_h]

    with ``n_h`` the width of hidden layer ``h`` and ``[b_l] = 1`` if Dense ``l`` has a bias
    parameter: ``bias_var = 0.0`` is a trained bias initialised at zero (neural-tangents
    ``b_std=0.0``), ``bias_var = None`` no bias parameter (``b_std=None``; it adds nothing).
    In the NTK parameterization ``None`` is the same as 0.0.  The standard NTK grows with the
    width.  Its NTK cannot be computed from an input kernel ``K0`` alone (``d`` is needed).

    Parameters
    ----------
    depth : int >= 1
    activation : Activation
        ``ReLU()``, ``Erf()``, ``ShapedReLU(c_plus, c_minus)`` (slopes resolved with ``depth``), ...
    weight_var, bias_var : float >= 0, or a sequence of ``depth + 1`` of them
        One value for every Dense layer, or one per Dense layer (first layer first, readout
        last).  ``bias_var`` (or an entry) may be None: no bias parameter (see above).
    parameterization : {"ntk", "standard"}, default "ntk"
    width : int >= 1 or a sequence of ``depth`` of them, optional
        Hidden widths ``n_1..n_depth`` (the first Dense's input width is the input dimension
        d).  Required in the standard parameterization; in the NTK parameterization the
        kernels do not depend on it.  It is the default width of ``kernels.montecarlo``.

    Examples
    --------
    >>> import numpy as np, kernels as kn
    >>> net = kn.MLP(depth=3, activation=kn.ReLU())
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> bool(np.allclose(np.diag(net.nngp(x)), 2 * (x * x).sum(1) / 2))
    True
    >>> std = kn.MLP(depth=2, activation=kn.ReLU(), weight_var=[1.0, 2.0, 2.0],
    ...              bias_var=None, parameterization="standard", width=512)
    >>> std.ntk(x).shape
    (2, 2)
    """

    depth: int
    activation: Activation
    weight_var: object = 2.0
    bias_var: object = 0.0
    parameterization: str = "ntk"
    width: object = None

    def __post_init__(self):
        object.__setattr__(self, "depth", _check_depth(self.depth))
        _check_activation(self.activation)
        std = _check_parameterization(self.parameterization) == "standard"
        order = f"one per Dense layer: {self.depth + 1}, the readout last"
        object.__setattr__(self, "weight_var", _variances(
            self.weight_var, "weight_var", (self.depth + 1,), std, False, order))
        object.__setattr__(self, "bias_var", _variances(
            self.bias_var, "bias_var", (self.depth + 1,), std, True, order))
        object.__setattr__(self, "width", _check_width(self.width, "width", self.depth, std,
                                                       per_layer=True))
        _check_resolvable(self.activation, self.depth)

    def _hidden_widths(self):
        """(depth,) float64 hidden widths n_1..n_depth (None if no width was given)."""
        if self.width is None:
            return None
        if isinstance(self.width, tuple):
            return np.array(self.width, dtype=np.float64)
        return np.broadcast_to(np.float64(self.width), (self.depth,))

    def _stack(self, width=None, d=None, nngp_only=False):
        """The per-layer description; at a finite ``width`` the activation is ``finite(width,
        depth)`` (Monte Carlo).  ``d``: the input dimension (the standard NTK's first layer);
        ``nngp_only``: the NTK coefficients are not needed (the NTK parameterization's)."""
        L = self.depth
        _stack_memory(L)
        act = self.activation._resolve(L) if width is None else self.activation.finite(width, L)
        sw, _ = _per_layer(self.weight_var, L + 1)
        sb, hb = _per_layer(self.bias_var, L + 1)
        stem = (float(sw[0]), float(sb[0]))
        u, v = np.zeros(L), np.ones(L)
        if self.parameterization == "ntk" or nngp_only:
            return _ntk_param_stack(act, sw[1:], sb[1:], stem, u, v, None)
        d = _need_d(d, "MLP")
        return _Stack(act, np.ascontiguousarray(sw[1:]), np.ascontiguousarray(sb[1:]), stem,
                      u, v, None, np.ascontiguousarray(self._hidden_widths()),
                      hb[1:].astype(np.float64), (d, float(hb[0])), None)


@dataclass(frozen=True)
class ResNet(_KernelMethods):
    """Residual network: trained input Dense, ``depth`` residual blocks, readout Dense.

    Finite width: ``h_0 = Dense(x)``, ``h_l = h_{l-1} + alpha_l Dense(phi(h_{l-1}))``,
    ``f = Dense(h_depth)`` (neural-tangents: ``serial(Dense(W_std=sqrt(s0)), FanOut(2),
    parallel(Identity(), serial(phi, Dense(W_std=alpha sw, b_std=alpha sb))), FanInSum(), ...,
    Dense(W_std=sqrt(sv)))``, kernels.md §3.1).  Infinite-width recursion (kernels.md §3.2)::

        K_0 = s0 x.x'/d + b0,   Theta_0 = K_0
        dK_l    = alpha_l^2 (sw2_l V(K_{l-1}) + sb2_l)
        K_l     = K_{l-1} + dK_l
        Theta_l = Theta_{l-1} + dK_l + alpha_l^2 sw2_l Vdot(K_{l-1}) Theta_{l-1}
        NNGP = sv K_L + bv,     NTK = NNGP + sv Theta_L

    With the default ``alpha = depth**-0.5`` this is the forward-Euler scheme of the ODE
    ``dK/dt = sb2 + sw2 V(K)`` on [0, 1] (Peluchetti & Favaro 2020; Hayou et al. 2021, "Stable
    ResNet"; kernels.md §3.3).  ``trajectory`` records the residual stream ``K_l, Theta_l``
    (l = 0..depth), before the readout.

    **Standard parameterization** (see ``MLP``): the NNGP is unchanged; with ``n`` = ``width``
    and ``[.] = 1`` for a layer with a bias parameter (``None``: none)::

        Theta_0 = d K_in + [b0]                                        (= x.x' + [b0])
        Theta_l = Theta_{l-1} + n V(K_{l-1}) + [b_l] + alpha_l^2 sw2_l Vdot(K_{l-1}) Theta_{l-1}
        NTK     = n K_L + [bv] + sv Theta_L

    (the branch Dense has ``W_std = alpha_l sw``: its own weights add ``n V``, with no
    ``alpha_l^2``).

    Parameters
    ----------
    depth : int >= 1
    activation : Activation
    weight_var, bias_var : float >= 0, or a sequence
        Variances of the Dense inside each branch: one value, or one per block (``depth``
        values), or one per Dense layer in the order (input Dense, block 1, ..., block
        ``depth``, readout) = ``depth + 2`` values, which then also set the input and readout
        layers: combining such a list with an explicit ``input_weight_var`` /
        ``readout_weight_var`` (``input_bias_var`` / ``readout_bias_var`` for ``bias_var``)
        raises ValueError.  The object stores the per-block part (``depth`` values) in
        ``weight_var`` and the ends in ``input_weight_var``, ``readout_weight_var``.
        ``bias_var`` entries may be None (no bias parameter, see ``MLP``).
    branch_scale : float or (depth,) array, optional
        ``alpha_l``; default ``depth**-0.5``.
    input_weight_var, input_bias_var : float >= 0
        ``s0``, ``b0`` of the input Dense (default 1.0, 0.0; ``input_bias_var`` may be None).
    readout_weight_var, readout_bias_var : float >= 0
        ``sv``, ``bv`` of the readout Dense (default 1.0, 0.0; ``readout_bias_var`` may be
        None).
    parameterization : {"ntk", "standard"}, default "ntk"
    width : int >= 1, optional
        The width ``n`` of the residual stream (and of every branch); required in the standard
        parameterization; the default width of ``kernels.montecarlo``.
    """

    depth: int
    activation: Activation
    weight_var: object = 2.0
    bias_var: object = 0.0
    branch_scale: object = None
    input_weight_var: object = _UNSET
    readout_weight_var: object = _UNSET
    input_bias_var: object = _UNSET
    readout_bias_var: object = _UNSET
    parameterization: str = "ntk"
    width: object = None

    def __post_init__(self):
        object.__setattr__(self, "depth", _check_depth(self.depth))
        _check_activation(self.activation)
        std = _check_parameterization(self.parameterization) == "standard"
        L = self.depth
        order = (f"one per block ({L}) or one per Dense layer ({L + 2}: input, each block, "
                 f"readout)")
        for kind, default, allow_none in (("weight", 1.0, False), ("bias", 0.0, True)):
            name = f"{kind}_var"
            val = _variances(getattr(self, name), name, (L, L + 2), std, allow_none, order)
            full = isinstance(val, tuple) and len(val) == L + 2
            ends = {}
            for end in ("input", "readout"):
                ename = f"{end}_{kind}_var"
                given = getattr(self, ename)
                if given is _UNSET:
                    ends[end] = default
                elif full:
                    raise ValueError(
                        f"{name} has {L + 2} values (input, each block, readout), which "
                        f"already set the input and readout layers: do not also give "
                        f"{ename}={given!r} (or give {L} per-block values)")
                else:
                    ends[end] = _variance(given, ename, std, allow_none)
            if full:
                ends["input"], ends["readout"], val = val[0], val[-1], val[1:-1]
            object.__setattr__(self, name, val)
            object.__setattr__(self, f"input_{kind}_var", ends["input"])
            object.__setattr__(self, f"readout_{kind}_var", ends["readout"])
        bs = self.branch_scale
        if bs is not None and np.ndim(bs) == 0:
            object.__setattr__(self, "branch_scale", _checks.finite_float(bs, "branch_scale"))
        elif bs is not None:
            arr = np.asarray(bs, dtype=np.float64)
            if arr.shape != (self.depth,):
                raise ValueError(f"branch_scale must be a scalar or have shape ({self.depth},), "
                                 f"got shape {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError("branch_scale contains NaN or inf")
            object.__setattr__(self, "branch_scale", tuple(float(a) for a in arr))
        object.__setattr__(self, "width", _check_width(self.width, "width", 1, std,
                                                       per_layer=False))
        _check_resolvable(self.activation, self.depth)

    @property
    def alphas(self):
        """The per-block branch scales ``alpha_l``, shape (depth,)."""
        if self.branch_scale is None:
            return np.full(self.depth, self.depth ** -0.5)
        return np.broadcast_to(np.asarray(self.branch_scale, dtype=np.float64),
                               (self.depth,)).copy()

    def _hidden_widths(self):
        """(depth,) float64: the input width of every branch Dense (None if not given)."""
        return None if self.width is None else np.broadcast_to(np.float64(self.width),
                                                               (self.depth,))

    def _stack(self, width=None, d=None, nngp_only=False):
        """The per-layer description (see ``MLP._stack``)."""
        L = self.depth
        _stack_memory(L)
        act = self.activation._resolve(L) if width is None else self.activation.finite(width, L)
        alphas = self.alphas
        sw, _ = _per_layer(self.weight_var, L)
        sb, hb = _per_layer(self.bias_var, L)
        s0, b0 = self.input_weight_var, self.input_bias_var
        sv, bv = self.readout_weight_var, self.readout_bias_var
        stem = (s0, 0.0 if b0 is None else b0)
        readout = (sv, 0.0 if bv is None else bv)
        if self.parameterization == "ntk" or nngp_only:
            return _ntk_param_stack(act, sw, sb, stem, np.ones(L), alphas ** 2, readout, alphas)
        d = _need_d(d, "ResNet")
        n = float(self.width)
        return _Stack(act, np.ascontiguousarray(sw), np.ascontiguousarray(sb), stem,
                      np.ones(L), alphas ** 2, readout, np.full(L, n),
                      hb.astype(np.float64), (d, float(b0 is not None)),
                      (n, float(bv is not None)), alphas)
