"""Finite-width random networks: exact Monte Carlo of MLPs and ResNets, empirical NNGP / NTK and
per-layer Gram paths.

Networks (the engine's conventions, NTK parameterisation, all weights and biases iid N(0, 1);
``n`` = width, ``x`` is (N, d) and ``X = x^T``, hidden states are (n, N))::

    MLP     h_1     = sqrt(sw2/d) W_0 X + sqrt(sb2) b_0
            h_{l+1} = sqrt(sw2/n) W_l phi(h_l) + sqrt(sb2) b_l          l = 1..L-1
            f       = sqrt(sw2/n) w^T phi(h_L) + sqrt(sb2) b_L
    ResNet  h_0     = sqrt(s0/d) W_in X + sqrt(b0) b_in
            h_l     = h_{l-1} + alpha_l (sqrt(sw2/n) W_l phi(h_{l-1}) + sqrt(sb2) b_l)
            f       = sqrt(sv/n) w^T h_L + sqrt(bv) b_out

**NNGP estimator.**  Given the last hidden layer, f is Gaussian in the readout weights, so
``E[f(x) f(x') | h] = sw2 phi(h_L)^T phi(h_L) / n + sb2`` (MLP) or ``sv h_L^T h_L / n + bv``
(ResNet).  This conditional expectation is an unbiased estimator of the NNGP ``E[f f']`` with
smaller variance than ``f f'`` itself (Rao-Blackwell); it is what ``monte_carlo`` averages.
Conditioning on the last hidden layer is also how Li, Nica & Roy (2022) state the law of the
logits: Gaussian given the penultimate covariance.

**Empirical NTK.**  ``Theta(x, x') = sum_theta df(x)/dtheta df(x')/dtheta`` over every weight and
bias, readout included (neural-tangents ``monte_carlo_kernel_fn`` with ``get='ntk'``).  For a
dense layer ``h' = sqrt(s/m) W u + sqrt(t) b`` the contribution is a product of two Grams::

    (s u^T u / m + t)  (.)  (delta^T delta),      delta = df/dh'  (n, N)

so the NTK is a sum over layers of (forward Gram of the layer's input, bias included) times
(backward Gram of the gradient with respect to its output), with no per-sample Jacobians.
Backward passes: ``delta_L = sqrt(sw2/n) w (.) phi'(h_L)``,
``delta_l = phi'(h_l) (.) (sqrt(sw2/n) W_l^T delta_{l+1})`` (MLP); ``g_L = sqrt(sv/n) w``,
``g_{l-1} = g_l + alpha_l sqrt(sw2/n) phi'(h_{l-1}) (.) (W_l^T g_l)`` (ResNet).

**Per-layer variances and the standard parameterization.**  Each Dense layer ``l`` uses its own
``(sw2_l, sb2_l)`` (``net.weight_var`` / ``bias_var`` given per layer).  A standard-parameterised
network (``parameterization="standard"``) has ``W ~ N(0, sw2/m)``, ``b ~ N(0, sb2)``, the same
law as above, so the forward pass and the NNGP are sampled identically; only its NTK differs:
gradients are taken with respect to ``W`` and ``b`` themselves, so each layer's forward factor
``s u^T u / m + t`` becomes ``u^T u + [b]`` (``m / s`` times the weight part; ``[b] = 1`` if the
layer has a bias parameter, ``bias_var=None``: none), with no ``alpha_l^2`` for a ResNet branch.
Its NTK depends on the width, so ``width`` defaults to the network's and must equal it.

**Two samplers, one law.**

* ``"weights"``: explicit Gaussian weight matrices, forward (and for the NTK backward) passes
  with BLAS, O(n^2 N) per layer.
* ``"gram"``: given ``phi(h)`` (n, N), the rows of ``sqrt(sw2/n) W phi(h) + sqrt(sb2) b`` are iid
  ``N(0, K)`` with ``K = sw2 phi(h)^T phi(h) / n + sb2`` (N, N).  So the next layer is sampled as
  ``Z U`` with Z an (n, N) standard normal matrix and ``U^T U = K`` (upper Cholesky factor), in
  O(n N^2 + N^3) per layer.  This is the exact finite-width Markov chain of Li, Nica & Roy (2022,
  "The neural covariance SDE", theory/sde.md §2.1); the ResNet branch is sampled the same way
  and added to the residual stream.  It is exact in law for everything computed from the
  forward pass (NNGP, per-layer Grams, correlations), not for the NTK (the backward pass needs
  the weights themselves).  A positive semi-definite K is factorised by a Cholesky
  factorisation in which pivots below ``1e-13`` times their diagonal entry (rounding level, e.g.
  duplicate inputs or dead ReLU units) are set to 0, so that singular K are handled.

**One description, two widths.**  The samplers run the per-layer description that the
infinite-width engine runs (``net._stack(width)``: stem, layers ``K <- u K + v (sw2 V(K) + sb2)``,
readout), with the activation's compiled pointwise form (``Activation.pointwise()``,
kernels/_pointwise.py); the samplers are in kernels/_gram_chain.py and
kernels/_weights_sampler.py.

**Per-layer Grams** (``simulate_paths``), indexed like ``net.trajectory``: for the MLP, layer
``l`` is ``G_l = sw2 phi(h_l)^T phi(h_l) / n + sb2`` (the covariance of the rows of h_{l+1} given
h_l; ``G_0 = sw2 x x^T / d + sb2``; ``G_L`` is the NNGP estimator), whose infinite-width limit is
the engine's K_{l+1}; for the ResNet, layer ``l`` is the residual-stream Gram ``h_l^T h_l / n``
(limit: the engine's K_l).  With ``sw2 = c`` and ``sb2 = 0`` the MLP ``G_l`` is exactly the
``V_l = (c/n) <phi(z_l), phi(z_l)>`` of theory/sde.md §2.1 when ``G_0 = V_0``.

**Random numbers** (kernels/_random.py).  Samples come in fixed blocks of 1024; block ``j`` uses
the ``j``-th child of ``SeedSequence(seed)`` (``SeedSequence(seed).spawn(...)[j]``), whose
``generate_state(2, uint64)`` gives two root words (a, b); sample ``1024 j + i`` has the two
64-bit keys ``mix(a + (i + 1) G)`` and ``mix(b + (i + 1) G)`` (SplitMix64).  Within a sample
every matrix (layer, role) is a separate stream of a counter-based generator: word ``c`` of the
sample is ``mix(mix(c * G + k1) ^ k2)`` with ``mix`` the SplitMix64 output function (Steele, Lea &
Flood 2014; a counter-based design in the sense of Salmon et al. 2011, "Parallel random
numbers: as easy as 1, 2, 3") and ``G`` the 64-bit golden ratio; two words give two normals by
the Box-Muller transform (branch-free, vectorised log / sin / cos, about 1e-16 accurate).  The
``"weights"`` sampler, whose weight matrices are most of its cost after the products, draws each
matrix from its own SplitMix64 sequence instead (one output mix per word; its seed and odd
increment are two words of the sample's counter-based generator), with a cheaper Box-Muller
transform (the angle is a point of the first octant moved by a random symmetry of the square:
``_wfill_part`` and ``_box_muller_oct_k`` in kernels/_random.py).  A number therefore depends
only on (seed, sample, layer, role, index), never on how samples are batched or how many
threads run, and the results are reproducible bit for bit (sample means are accumulated in
sample order with Welford's algorithm).

**Threads.**  The ``"weights"`` sampler runs whole networks in parallel, one per thread, with
BLAS limited to one thread (threadpoolctl) while ``monte_carlo`` runs, so that numba's and BLAS's
threads never multiply (kernels/_weights_sampler.py).

References
----------
M. B. Li, M. Nica, D. M. Roy, "The Neural Covariance SDE: Shaped Infinite Depth-and-Width
Networks at Initialization", NeurIPS 2022 (arXiv 2206.02768).
M. B. Li, M. Nica, "Differential Equation Scaling Limits of Shaped and Unshaped Neural
Networks", TMLR 2024 (arXiv 2310.12079).
R. Novak et al., "Neural Tangents", ICLR 2020: ``neural_tangents.monte_carlo_kernel_fn``.
B. P. Welford, "Note on a method for calculating corrected sums of squares and products",
Technometrics 4 (1962).
"""
import math
import sys
from dataclasses import dataclass, field
from typing import Optional

import numba
import numpy as np

from . import _checks
from ._gram_chain import _gram_block
from ._random import _MAX_WORDS, _KEY_BLOCK, _check_seed, _parts, _sample_keys, _seed_repr
from ._weights_sampler import _W_BUDGET, _WeightsSampler, blas_threads, sample_parallel
from .architectures import MLP, Kernels, ResNet

__all__ = ["monte_carlo", "simulate_paths", "MonteCarloResult", "Paths"]

_METHODS = ("auto", "weights", "gram")
_BLOCK_WORK = 1 << 22               # default gram block: about this many normals per block
_BLOCK_BYTES = 64 << 20             # ... and at most this much recorded output per block


# ----------------------------------------------------------------------------------------------
# the network at finite width: the engine's per-layer description
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Finite:
    """``net._stack(width)`` (the engine's description) read at finite width."""

    stack: object           # architectures._Stack, activation resolved at this width
    point: tuple            # its compiled pointwise form (kernels/_pointwise.py)
    resid: np.ndarray       # (L,) bool: layer l adds to the stream (u_l != 0) or replaces it
    scale: np.ndarray       # (L,) multiplier of the sampled layer (alpha_l, or sqrt(v_l))
    K0: np.ndarray          # covariance of the rows of the first hidden layer (the stem)
    sw2: np.ndarray         # (L,) contiguous per-layer variances of the stack
    sb2: np.ndarray
    T0: np.ndarray          # the stem's NTK factor a0 x x^T / d + c0 (K0 itself in the NTK
                            # parameterization)

    @property
    def depth(self):
        return self.resid.shape[0]


def _finite(net, x, width):
    st = net._stack(width, d=x.shape[1])
    if np.any((st.u != 0.0) & (st.u != 1.0)):
        raise NotImplementedError(f"Monte Carlo samples layers with u in {{0, 1}}, got {st.u}")
    scale = st.scales if st.scales is not None else np.sqrt(st.v)
    w, b = st.stem
    d = x.shape[1]
    with np.errstate(over="ignore", invalid="ignore"):
        G = (1.0 / d) * (x @ x.T)
        K0 = w * G + b                                 # as in the engine: w (G / d) + b
        a0, c0 = st.stem_ntk
        T0 = None if tuple(st.stem_ntk) == (w, b) else a0 * G + c0
    if not np.all(np.isfinite(K0)):
        raise ValueError(f"x is too large: the first layer's covariance w x x^T / d + b "
                         f"overflows (max |x| = {np.max(np.abs(x)):.3g}, w = {w!r}); rescale "
                         f"the inputs")
    K0 = 0.5 * (K0 + K0.T)
    return _Finite(st, st.activation.pointwise(), np.ascontiguousarray(st.u != 0.0),
                   np.ascontiguousarray(scale, dtype=np.float64), K0,
                   np.ascontiguousarray(st.sw2, dtype=np.float64),
                   np.ascontiguousarray(st.sb2, dtype=np.float64),
                   K0 if T0 is None else 0.5 * (T0 + T0.T))


# ----------------------------------------------------------------------------------------------
# finiteness and memory
# ----------------------------------------------------------------------------------------------
def _bad_activation(point, name):
    """A message if the activation returns NaN on a grid of arguments, else None: moderate ones
    first, then a log-spaced grid out to +-1e300 (an ``Activation(fn)`` that is NaN only far
    in a tail passes the Gauss-Hermite check at construction, but large inputs reach it)."""
    from ._pointwise import phi
    far = np.logspace(1.0, 300.0, 300)
    grid = np.concatenate([[0.0], np.linspace(-8.0, 8.0, 33), np.ravel(np.c_[-far, far])])
    for k, t in enumerate(grid):
        try:
            v = float(phi(point, float(t)))
        except Exception:               # pragma: no cover - a compiled fn that raises
            continue
        if math.isnan(v) or (k < 34 and not math.isfinite(v)):   # inf only counts if moderate
            return f"the activation {name} returns {v} at x = {t:g}"
    return None


def _check_finite_block(values, what, lo, fin, layers=None):
    """Raise FloatingPointError naming the cause if ``values`` (B, ...) has NaN / inf."""
    ok = np.isfinite(values)
    if ok.all():
        return
    bad = np.argwhere(~ok)[0]
    where = f"sample {lo + int(bad[0])}"
    if layers is not None:
        where += f", layer {int(layers[bad[1]])}"
    act = fin.stack.activation
    cause = _bad_activation(fin.point, getattr(act, "name", None) or repr(act))
    if cause is None:
        cause = ("the hidden layers overflowed (large inputs, variances or depth: reduce "
                 "them)")
    raise FloatingPointError(f"{int((~ok).sum())} non-finite values in the {what} "
                             f"(first at {where}): {cause}")



def _check_memory(caller, parts):
    """Refuse up front what cannot fit (``_checks.MemoryBudgetError``, a MemoryError and a
    ValueError): ``parts`` is a list of (bytes, what)."""
    _checks.memory_guard(parts, caller, "reduce the width, the samples kept or the layers "
                                        "recorded")


def _sampler_bytes(method, n, N, d, L, ntk, batch, R):
    """Workspace of one block of the sampler (bytes, what)."""
    if method == "gram":
        threads = max(1, _parts())
        return [(8 * threads * (3 * n * N + 3 * N * N), f"gram workspace {threads} x 3 x "
                 f"{n} x {N}"), (8 * batch * (1 + max(R, 1)) * N * N, "one block of Grams")]
    conc = min(batch, _parts()) if sample_parallel(batch) else 1     # networks at once
    parts = [(8 * conc * n * max(n if L > 1 or ntk else 0, d), f"{conc} x weight matrices "
              f"{n} x {max(n, d)}"), (8 * conc * n * N * (4 + (2 * L if ntk else 0)),
                                      f"{conc} x hidden layers {n} x {N}")]
    if ntk:
        parts.append((min(_W_BUDGET, 8 * conc * n * n * L), "weights kept for the backward "
                      "pass"))
    return parts


# ----------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------
def _check_net(net):
    if not isinstance(net, (MLP, ResNet)):
        raise TypeError(f"net must be a kernels MLP or ResNet, got {type(net).__name__}: {net!r}")
    return net


def _check_bool_or_none(value, name):
    if value is not None and not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True, False or None, got {value!r}")
    return None if value is None else bool(value)


def _check_width(net, width):
    """The hidden width of the sampled networks: ``width``, or the network's own ``width``
    (which the standard parameterization's NTK depends on); the two must agree."""
    own = net.width
    if isinstance(own, tuple) and len(set(own)) > 1:
        raise ValueError(f"Monte Carlo samples networks with one hidden width, but the "
                         f"network's width varies by layer: {own}")
    own = own[0] if isinstance(own, tuple) else own
    if width is None:
        if own is None:
            raise TypeError("width is required: the hidden width n of the sampled networks "
                            "(or give the network a width: MLP(..., width=n))")
        return own
    width = _checks.positive_int(width, "width")
    if own is not None and width != own:
        raise ValueError(f"width={width} differs from the network's width={own} (its "
                         f"finite-width networks, and in the standard parameterization its "
                         f"NTK, have width {own}): give width={own} or leave it out")
    return width


def _check_samples(samples):
    if samples is None:
        raise TypeError("samples is required: the number of sampled networks (an int >= 1)")
    return _checks.positive_int(samples, "samples")


def _check_common(net, x, width, samples, seed, method, progress, batch):
    net = _check_net(net)
    width = _check_width(net, width)
    samples = _check_samples(samples)
    x = _checks.inputs(x, "x")
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    ss = _check_seed(seed)
    progress = _check_bool_or_none(progress, "progress")
    if batch is not None:
        batch = _checks.positive_int(batch, "batch")
    N, d = x.shape
    words = 2 * max(width * max(width, d, N), width) + 2
    if words > _MAX_WORDS:
        raise ValueError(f"width {width} is too large for the generator's streams "
                         f"(width * max(width, d, N) must stay below {_MAX_WORDS // 2})")
    return net, x, width, samples, ss, progress, batch


def _progress_bar(show, total, desc):
    if show is None:
        show = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if not show:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="sample", leave=False)


# ----------------------------------------------------------------------------------------------
# running blocks of samples
# ----------------------------------------------------------------------------------------------
def _choose_method(method, ntk, N, width):
    if method == "auto":
        return "gram" if (not ntk and N < width) else "weights"
    if method == "gram":
        if ntk:
            raise ValueError("method='gram' samples the forward pass only (NNGP, per-layer "
                             "Grams): it cannot give the NTK; use method='weights' or 'auto', "
                             "or ntk=False")
        if N > width:
            raise ValueError(f"method='gram' needs N <= width (the N x N layer covariance has "
                             f"rank <= width); got N = {N} inputs and width = {width}: use "
                             f"method='weights' (method='auto' chooses it)")
    return method


def _default_batch(method, width, N, depth, R):
    """Samples per block: a multiple of the key block with enough work to hide the Python
    overhead (scheduling only: results do not depend on it)."""
    if method != "gram":
        # networks run in parallel (kernels/_weights_sampler.py): enough per block to keep the
        # threads busy, at most _BLOCK_BYTES of estimates
        return max(_parts(), min(64, _BLOCK_BYTES // (16 * max(1, R) * N * N)))
    b = _BLOCK_WORK // max(1, width * N * depth)
    b = min(b, _BLOCK_BYTES // (8 * max(1, R) * N * N))
    return max(_KEY_BLOCK, b - b % _KEY_BLOCK)


@numba.njit(cache=True)
def _welford(count, mean, m2, vals):
    """Add the samples vals (B, ...) in order; returns the new count."""
    flat_mean = mean.reshape(-1)
    flat_m2 = m2.reshape(-1)
    B = vals.shape[0]
    V = vals.reshape(B, -1)
    for s in range(B):
        count += 1
        inv = 1.0 / count
        for k in range(V.shape[1]):
            x = V[s, k]
            delta = x - flat_mean[k]
            flat_mean[k] += delta * inv
            flat_m2[k] += delta * (x - flat_mean[k])
    return count


# ----------------------------------------------------------------------------------------------
# public results
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MonteCarloResult:
    """Monte Carlo estimates of the NNGP and NTK of a finite-width network.

    Attributes
    ----------
    nngp : (N, N) array
        Sample mean of ``E[f(x) f(x') | last hidden layer]`` (unbiased for the NNGP).
    ntk : (N, N) array or None
        Sample mean of the empirical NTK (None when ``ntk=False``).
    nngp_stderr, ntk_stderr : (N, N) arrays (or None)
        Standard errors of the means, ``sqrt(s^2 / samples)`` with the unbiased sample variance
        ``s^2`` (Welford); NaN when ``samples == 1``.
    samples : int
    width : int
    method : str
        ``"weights"`` or ``"gram"``: the sampler actually used.
    seed : dict
        ``{"entropy": ..., "spawn_key": ...}`` of the root ``SeedSequence`` (reproduces the run).
    nngp_samples, ntk_samples : (samples, N, N) arrays or None
        Every sample, when ``keep_samples=True``.
    """

    nngp: np.ndarray
    ntk: Optional[np.ndarray]
    nngp_stderr: np.ndarray
    ntk_stderr: Optional[np.ndarray]
    samples: int
    width: int
    method: str
    seed: dict
    nngp_samples: Optional[np.ndarray] = field(default=None, repr=False)
    ntk_samples: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def stderr(self):
        """``Kernels(nngp=nngp_stderr, ntk=ntk_stderr)``."""
        return Kernels(nngp=self.nngp_stderr, ntk=self.ntk_stderr)


@dataclass(frozen=True)
class Paths:
    """Per-layer Gram samples of finite-width networks (``simulate_paths``).

    Attributes
    ----------
    layers : (R,) int array
        Recorded layer indices (as in ``net.trajectory``).
    gram : (samples, R, N, N) array or None
        ``gram[s, k]`` is layer ``layers[k]``'s Gram of sample ``s`` (None if ``record="rho"``).
    samples, width, method, seed
        As in ``MonteCarloResult``.
    """

    layers: np.ndarray
    gram: Optional[np.ndarray]
    samples: int
    width: int
    method: str
    seed: dict
    _rho: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def correlation(self):
        """(samples, R, N, N) correlations ``G_ab / sqrt(G_aa G_bb)`` (NaN where a norm is 0)."""
        if self.gram is None:
            raise ValueError("only rho was recorded (record='rho'): use .rho")
        diag = np.sqrt(np.einsum("...ii->...i", self.gram))
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.gram / (diag[..., :, None] * diag[..., None, :])

    @property
    def rho(self):
        """(samples, R) correlation of the pair of inputs (N = 2 only)."""
        if self._rho is not None:
            return self._rho
        if self.gram.shape[-1] != 2:
            raise ValueError(f"rho is defined for N = 2 inputs, got N = {self.gram.shape[-1]}; "
                             "use .correlation")
        return _rho_of(self.gram[..., 0, 0], self.gram[..., 0, 1], self.gram[..., 1, 1])


def _rho_of(g11, g12, g22):
    with np.errstate(invalid="ignore", divide="ignore"):
        return g12 / np.sqrt(g11 * g22)


# ----------------------------------------------------------------------------------------------
# entry points
# ----------------------------------------------------------------------------------------------
def monte_carlo(net, x, width=None, samples=None, seed=0, ntk=True, method="auto",
                progress=None, batch=None, keep_samples=False):
    """Monte Carlo NNGP and NTK of finite-width random networks.

    Samples ``samples`` independent networks of the architecture ``net`` (an ``MLP`` or
    ``ResNet``) at hidden width ``width``, and averages, per network,

    * the NNGP estimator ``E[f(x) f(x') | h_L] = sw2 phi(h_L)^T phi(h_L) / n + sb2`` (MLP) or
      ``sv h_L^T h_L / n + bv`` (ResNet), unbiased for ``E[f(x) f(x')]`` with lower variance;
    * the empirical NTK ``sum_theta df(x)/dtheta df(x')/dtheta`` over every weight and bias,
      readout included, as a sum over layers of (forward Gram) (.) (backward Gram)
      (neural-tangents ``monte_carlo_kernel_fn`` computes the same quantity from Jacobians).

    As ``width -> infinity`` the means converge to ``net.nngp(x)`` and ``net.ntk(x)``; the bias
    is O(1/width).  See the module docstring for the formulas.

    Parameters
    ----------
    net : MLP or ResNet
        The architecture.  Its activation is used at fixed slopes: ``ShapedReLU(rate="width")``
        takes the slopes ``1 + c/sqrt(width)``, ``rate="depth"`` ``1 + c/sqrt(depth)``.
    x : (N, d) array_like
        Inputs (finite).
    width : int >= 1, optional
        Hidden width n; default: the network's ``width`` (``MLP(..., width=n)``).  If both
        are given they must agree (ValueError), since the standard parameterization's NTK
        depends on it; an MLP whose widths differ by layer cannot be sampled.
    samples : int >= 1
        Number of independent networks (required).
    seed : int >= 0, numpy.random.SeedSequence or None, default 0
        Root seed; samples ``1024 j .. 1024 j + 1023`` draw their keys from the ``j``-th child
        ``SeedSequence`` (module docstring), so the result depends only on (seed, arguments),
        not on ``batch`` or the thread count.
        ``None`` draws fresh entropy (recorded in ``result.seed``).
    ntk : bool, default True
        Also compute the empirical NTK (needs the ``"weights"`` sampler).
    method : {"auto", "weights", "gram"}
        ``"weights"``: explicit weight matrices, O(width^2 N) per layer.  ``"gram"``: the exact
        Gram chain (rows of each layer sampled from their conditional Gaussian law),
        O(width N^2 + N^3) per layer, forward quantities only; it needs ``N <= width`` (else a
        ``ValueError``).  ``"auto"``: ``"gram"`` when ``ntk=False`` and ``N < width``, else
        ``"weights"``.
    progress : bool or None
        tqdm progress bar: None shows it when stderr is a terminal; True / False force it.
    batch : int, optional
        Samples per block (memory and scheduling only; results do not depend on it).
    keep_samples : bool, default False
        Also return every sample (``nngp_samples``, ``ntk_samples``); otherwise only streaming
        means and variances are kept.

    Returns
    -------
    MonteCarloResult

    Raises
    ------
    TypeError, ValueError
        Bad arguments (before any compiled code runs); ``ValueError`` also when the inputs
        overflow the first layer's covariance, or when the run needs more memory than is
        available (the message gives the bytes).
    FloatingPointError
        Non-finite estimates, with the cause: the activation returns NaN / inf, or the hidden
        layers overflowed.

    Examples
    --------
    >>> import numpy as np, kernels as kn
    >>> from kernels.montecarlo import monte_carlo
    >>> net = kn.MLP(depth=2, activation=kn.ReLU())
    >>> x = np.array([[1.0, 0.0], [0.6, 0.8]])
    >>> mc = monte_carlo(net, x, width=64, samples=20, seed=1)
    >>> mc.nngp.shape, mc.ntk.shape, mc.method
    ((2, 2), (2, 2), 'weights')
    """
    net, x, width, samples, ss, progress, batch = _check_common(net, x, width, samples, seed,
                                                                method, progress, batch)
    if not isinstance(ntk, (bool, np.bool_)):
        raise TypeError(f"ntk must be True or False, got {ntk!r}")
    if not isinstance(keep_samples, (bool, np.bool_)):
        raise TypeError(f"keep_samples must be True or False, got {keep_samples!r}")
    ntk = bool(ntk)
    N = x.shape[0]
    method = _choose_method(method, ntk, N, width)
    fin = _finite(net, x, width)
    L = net.depth
    slots = np.full(L + 1, -1, dtype=np.int64)
    if batch is None:
        batch = _default_batch(method, width, N, L, 0)
    kept = [(8 * samples * N * N * (1 + ntk), f"keep_samples: {samples} x {N} x {N} x "
             f"{1 + ntk}")] if keep_samples else []
    _check_memory("monte_carlo", _sampler_bytes(method, width, N, x.shape[1], L, ntk,
                                                min(batch, samples), 0) + kept)

    count = 0
    mean_k, m2_k = np.zeros((N, N)), np.zeros((N, N))
    mean_t, m2_t = (np.zeros((N, N)), np.zeros((N, N))) if ntk else (None, None)
    all_k = np.empty((samples, N, N)) if keep_samples else None
    all_t = np.empty((samples, N, N)) if keep_samples and ntk else None
    sampler = _WeightsSampler(fin, x, width, ntk, slots) if method == "weights" else None
    bar = _progress_bar(progress, samples, f"monte_carlo ({method})")
    blas = blas_threads(min(batch, samples)) if method == "weights" else None
    try:
        for lo in range(0, samples, batch):
            hi = min(samples, lo + batch)
            keys = _sample_keys(ss, lo, hi)
            if method == "gram":
                est, _ = _gram_block(fin, width, keys, slots, 0)
                tk = None
            else:
                est = np.empty((hi - lo, N, N))
                tk = np.empty((hi - lo, N, N)) if ntk else None
                sampler.run_many(keys, est, tk)
            _check_finite_block(est, "NNGP estimates", lo, fin)
            if ntk:
                _check_finite_block(tk, "NTK estimates", lo, fin)
            c0 = count
            count = _welford(c0, mean_k, m2_k, est)
            if ntk:
                _welford(c0, mean_t, m2_t, tk)
            if keep_samples:
                all_k[lo:hi] = est
                if ntk:
                    all_t[lo:hi] = tk
            if bar is not None:
                bar.update(hi - lo)
    finally:
        if blas is not None:
            blas.restore_original_limits()
        if bar is not None:
            bar.close()

    def stderr(m2):
        if count < 2:
            return np.full((N, N), np.nan)
        return np.sqrt(m2 / (count - 1) / count)

    return MonteCarloResult(nngp=mean_k, ntk=mean_t, nngp_stderr=stderr(m2_k),
                            ntk_stderr=stderr(m2_t) if ntk else None, samples=samples,
                            width=width, method=method, seed=_seed_repr(ss),
                            nngp_samples=all_k, ntk_samples=all_t)


def simulate_paths(net, x, width=None, samples=None, seed=0, layers=None, record="gram",
                   method="auto", progress=None, batch=None):
    """Per-layer Gram matrices (or the correlation of a pair) of finite-width random networks.

    For limit studies (theory/sde.md): records, for every sample network and every chosen
    layer, the Gram matrix of that layer (indexed like ``net.trajectory``)::

        MLP     G_l = sw2 phi(h_l)^T phi(h_l) / n + sb2,  G_0 = sw2 x x^T / d + sb2,
                G_depth = the NNGP estimator;  width -> inf: the engine's K_{l+1}
        ResNet  G_l = h_l^T h_l / n  (residual stream, l = 0..depth);  width -> inf: K_l

    Samples are processed in blocks and only the chosen layers are kept, so memory is
    ``samples x len(layers) x N^2`` doubles (``samples x len(layers)`` with ``record="rho"``)
    plus one block's workspace.

    Parameters
    ----------
    net, x, width, samples, seed, progress, batch
        As in ``monte_carlo``.
    layers : sequence of int, optional
        Layers in 0..depth to record (default: all).
    record : {"gram", "rho"}
        ``"gram"``: Gram matrices (samples, R, N, N).  ``"rho"``: only the correlation of the
        pair, ``G_12 / sqrt(G_11 G_22)`` (samples, R); needs N = 2.
    method : {"auto", "weights", "gram"}
        As in ``monte_carlo`` (``"auto"`` = ``"gram"`` when ``N <= width``).  Both samplers
        have the same law.

    Returns
    -------
    Paths
        ``.layers``, ``.gram``, ``.rho`` (N = 2), ``.correlation``.

    Raises
    ------
    TypeError, ValueError, FloatingPointError
        As in ``monte_carlo`` (non-finite Grams name the first sample and layer).

    Reference: M. B. Li, M. Nica, D. M. Roy (2022), the finite-width covariance Markov chain.

    Examples
    --------
    >>> import numpy as np, kernels as kn
    >>> from kernels.montecarlo import simulate_paths
    >>> net = kn.MLP(depth=8, activation=kn.ReLU())
    >>> x = np.array([[1.0, 0.0], [0.6, 0.8]])
    >>> p = simulate_paths(net, x, width=32, samples=10, layers=[0, 4, 8], record="rho")
    >>> p.rho.shape
    (10, 3)
    """
    net, x, width, samples, ss, progress, batch = _check_common(net, x, width, samples, seed,
                                                                method, progress, batch)
    N = x.shape[0]
    L = net.depth
    if layers is None:
        layers = np.arange(L + 1)
    try:
        layers = np.unique(np.asarray(layers))
    except TypeError as exc:
        raise TypeError(f"layers must be a sequence of integers: {exc}") from exc
    if layers.ndim != 1 or layers.size == 0 or not np.issubdtype(layers.dtype, np.integer):
        raise ValueError(f"layers must be a non-empty sequence of integers, got {layers!r}")
    if layers[0] < 0 or layers[-1] > L:
        raise ValueError(f"layers must lie in 0..{L}, got {layers.tolist()}")
    if record not in ("gram", "rho"):
        raise ValueError(f"record must be 'gram' or 'rho', got {record!r}")
    if record == "rho" and N != 2:
        raise ValueError(f"record='rho' needs N = 2 inputs, got N = {N}; use record='gram'")
    if method == "auto":
        method = "gram" if N <= width else "weights"
    method = _choose_method(method, False, N, width)
    fin = _finite(net, x, width)
    R = layers.size
    slots = np.full(L + 1, -1, dtype=np.int64)
    slots[layers] = np.arange(R)
    if batch is None:
        batch = _default_batch(method, width, N, L, R)
    out = ((8 * samples * R * N * N, f"gram: {samples} x {R} x {N} x {N}") if record == "gram"
           else (8 * samples * R, f"rho: {samples} x {R}"))
    _check_memory("simulate_paths", _sampler_bytes(method, width, N, x.shape[1], L, False,
                                                   min(batch, samples), R) + [out])
    gram = np.empty((samples, R, N, N)) if record == "gram" else None
    rho = np.empty((samples, R)) if record == "rho" else None
    sampler = _WeightsSampler(fin, x, width, False, slots) if method == "weights" else None
    bar = _progress_bar(progress, samples, f"simulate_paths ({method})")
    blas = blas_threads(min(batch, samples)) if method == "weights" else None
    try:
        for lo in range(0, samples, batch):
            hi = min(samples, lo + batch)
            keys = _sample_keys(ss, lo, hi)
            if method == "gram":
                _, rec = _gram_block(fin, width, keys, slots, R)
            else:
                rec = np.empty((hi - lo, R, N, N))
                sampler.run_many(keys, np.empty((hi - lo, N, N)), None, rec)
            _check_finite_block(rec, "per-layer Grams", lo, fin, layers)
            if gram is not None:
                gram[lo:hi] = rec
            else:
                rho[lo:hi] = _rho_of(rec[..., 0, 0], rec[..., 0, 1], rec[..., 1, 1])
            if bar is not None:
                bar.update(hi - lo)
    finally:
        if blas is not None:
            blas.restore_original_limits()
        if bar is not None:
            bar.close()
    return Paths(layers=layers, gram=gram, samples=samples, width=width, method=method,
                 seed=_seed_repr(ss), _rho=rho)
