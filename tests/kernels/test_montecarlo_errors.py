"""Monte Carlo refuses what it cannot compute: non-finite outputs (with their cause) and runs
that cannot fit in memory (with the bytes), before or instead of returning NaN."""
import math

import numpy as np
import pytest

import kernels as kn
from kernels import _checks


def _inputs(N=3, d=4, seed=0):
    return np.random.default_rng(seed).standard_normal((N, d))


def test_huge_inputs_are_refused_before_sampling():
    net = kn.MLP(depth=2, activation=kn.ReLU())
    with pytest.raises(ValueError, match=r"x is too large.*1\.\d+e\+200"):
        kn.monte_carlo(net, _inputs() * 1e200, width=8, samples=2, progress=False)
    with pytest.raises(ValueError, match="x is too large"):
        kn.simulate_paths(net, _inputs() * 1e200, width=8, samples=2, progress=False)


@pytest.mark.parametrize("method", ["gram", "weights"])
def test_activation_returning_nan_is_named(method):
    # finite at every Gauss-Hermite node (|x| < 25 at unit variance: the analytic maps accept
    # it), NaN far out in the left tail, which large inputs reach in a finite network
    bad = kn.Activation(lambda t: t if t > -40.0 else math.nan, name="tailnan")
    net = kn.MLP(depth=2, activation=bad)
    x = 1e3 * _inputs()
    with pytest.raises(FloatingPointError, match="activation tailnan returns nan at x = -"):
        kn.monte_carlo(net, x, width=8, samples=2, ntk=False, method=method, progress=False)
    with pytest.raises(FloatingPointError, match="activation tailnan returns nan"):
        kn.simulate_paths(net, x, width=8, samples=2, method=method, progress=False)


@pytest.mark.parametrize("method", ["gram", "weights"])
def test_overflowing_grams_name_sample_and_layer(method):
    # ReLU with weight_var 1e10: the Grams grow like (5e9)^l and overflow near l = 32
    net = kn.MLP(depth=60, activation=kn.ReLU(), weight_var=1e10)
    with np.errstate(over="ignore", invalid="ignore"):
        with pytest.raises(FloatingPointError,
                           match=r"per-layer Grams \(first at sample 0, layer \d+\).*overflowed"):
            kn.simulate_paths(net, _inputs(), width=8, samples=2, method=method,
                              progress=False)
        with pytest.raises(FloatingPointError, match="NNGP estimates.*overflowed"):
            kn.monte_carlo(net, _inputs(), width=8, samples=2, ntk=False, method=method,
                           progress=False)


def test_ntk_overflow_is_reported():
    net = kn.MLP(depth=60, activation=kn.ReLU(), weight_var=1e10)
    with np.errstate(over="ignore", invalid="ignore"):
        with pytest.raises(FloatingPointError, match="non-finite values"):
            kn.monte_carlo(net, _inputs(), width=8, samples=1, progress=False)


def test_memory_guard_refuses_a_huge_width(monkeypatch):
    monkeypatch.setattr(_checks, "available_memory", lambda: 16 << 30)
    net = kn.MLP(depth=2, activation=kn.ReLU())
    # one 60000 x 60000 weight matrix alone is 8 * 3.6e9 = 2.88e10 bytes
    with pytest.raises(_checks.MemoryBudgetError,
                       match=r"monte_carlo needs about 2\d,\d{3},\d{3},\d{3} bytes"
                                         r".*weight matrices 60000 x 60000.*17,179,869,184"):
        kn.monte_carlo(net, _inputs(), width=60000, samples=1, progress=False)
    with pytest.raises(_checks.MemoryBudgetError, match="simulate_paths needs about"):
        kn.simulate_paths(net, _inputs(), width=60000, samples=1, method="weights",
                          progress=False)


def test_memory_guard_refuses_keeping_too_many_samples(monkeypatch):
    monkeypatch.setattr(_checks, "available_memory", lambda: 16 << 30)
    net = kn.MLP(depth=2, activation=kn.ReLU())
    # 1e9 samples x 3 x 3 x (NNGP, NTK) doubles = 1.44e11 bytes; paths: x 3 layers = 2.16e11
    with pytest.raises(_checks.MemoryBudgetError,
                       match=r"needs about 144,\d{3},\d{3},\d{3} bytes.*keep_samples"):
        kn.monte_carlo(net, _inputs(), width=8, samples=10 ** 9, keep_samples=True,
                       progress=False)
    with pytest.raises(_checks.MemoryBudgetError,
                       match=r"needs about 216,\d{3},\d{3},\d{3} bytes.*gram: 1000000000 x 3 x 3"):
        kn.simulate_paths(net, _inputs(), width=8, samples=10 ** 9, progress=False)


def test_memory_guard_lets_ordinary_runs_through(monkeypatch):
    monkeypatch.setattr(_checks, "available_memory", lambda: 16 << 30)
    net = kn.MLP(depth=2, activation=kn.ReLU())
    r = kn.monte_carlo(net, _inputs(), width=8, samples=3, keep_samples=True, progress=False)
    assert r.nngp_samples.shape == (3, 3, 3)
    assert _checks.available_memory.__name__ == "<lambda>"
    monkeypatch.undo()
    assert _checks.available_memory() is None or _checks.available_memory() > 0
