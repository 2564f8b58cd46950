"""limits.which_limit: the verdicts on the known cases of issue 17 (shaped ReLU MLP at
depth/width = 1 and 0.002; ResNet with branch scale depth^-1/2 at large width), the report's
structure, its plot, bad input.  The expected verdicts come from the theory (theory/sde.md §2.4,
§3.2), not from our output."""
import math

import numpy as np
import pytest

import kernels as kn
import limits

X = np.array([[1.0, 0.0], [0.3, math.sqrt(1 - 0.09)]])


def _shaped(depth):
    return kn.MLP(depth=depth, activation=kn.ShapedReLU(1.0, -1.0, rate="width"),
                  weight_var=1.0)


def test_shallow_shaped_accepts_nngp():
    rep = limits.which_limit(_shaped(2), X, width=1000, samples=600, seed=1)
    assert [r["limit"] for r in rep.table] == ["nngp", "correlation_sde"]
    assert rep.verdict("nngp") == "consistent"
    assert rep.verdict("correlation_sde") == "consistent"
    for r in rep.table:
        assert set(r) >= {"limit", "distance", "uncertainty", "tolerance", "verdict"}
        assert r["tolerance"] == 0.05 and r["uncertainty"] > 0
    # the NNGP point mass is the fixed-slope kernel at that width
    K = kn.MLP(depth=2, activation=kn.ShapedReLU(1.0, -1.0).resolved(1000)).nngp(X)
    assert rep.predicted["nngp"] == pytest.approx(K[0, 1] / math.sqrt(K[0, 0] * K[1, 1]))
    with pytest.raises(KeyError):
        rep.verdict("resnet_ode")


def test_deep_shaped_small_width_rejects_nngp():
    """depth/width = 1 at width 64: the correlation is spread (sd ~ (1 - rho0^2) sqrt(T))."""
    rep = limits.which_limit(_shaped(64), X, width=64, samples=800, seed=2)
    assert rep.verdict("nngp") == "rejected"
    assert rep.verdict("correlation_sde") == "consistent"


@pytest.mark.slow
def test_deep_shaped_rejects_nngp_accepts_sde():
    rep = limits.which_limit(_shaped(256), X, width=256, samples=2000, seed=3)
    assert rep.verdict("nngp") == "rejected"
    assert rep.verdict("correlation_sde") == "consistent"
    row = rep.table[1]
    assert row["distance"] < 0.05


def test_resnet_consistent_with_ode():
    net = kn.ResNet(depth=50, activation=kn.ReLU(), weight_var=2.0)
    rep = limits.which_limit(net, X, width=1024, samples=300, seed=4)
    assert [r["limit"] for r in rep.table] == ["nngp", "resnet_ode"]
    assert rep.verdict("resnet_ode") == "consistent"


def test_unshaped_relu_limits_and_plot():
    import matplotlib
    import matplotlib.pyplot as plt
    backend = matplotlib.get_backend()
    net = kn.MLP(depth=16, activation=kn.ReLU(), weight_var=2.0)
    rep = limits.which_limit(net, X, width=64, samples=200, seed=5, tol=0.02, n_boot=20)
    assert [r["limit"] for r in rep.table] == ["nngp", "unshaped_sde"]
    assert "unshaped_sde" in str(rep)
    fig = rep.plot()
    assert matplotlib.get_backend() == backend
    plt.close(fig)


def test_bad_input():
    net = _shaped(4)
    with pytest.raises(TypeError, match="net"):
        limits.which_limit("mlp", X, width=16)
    with pytest.raises(ValueError, match="two inputs"):
        limits.which_limit(net, np.eye(3), width=16)
    with pytest.raises(ValueError, match="x"):
        limits.which_limit(net, [[1.0, np.nan], [0.0, 1.0]], width=16)
    with pytest.raises(ValueError, match="width"):
        limits.which_limit(net, X, width=0)
    with pytest.raises(ValueError, match="tol"):
        limits.which_limit(net, X, width=16, tol=-1.0)
    with pytest.raises(ValueError, match="zero input"):
        limits.which_limit(net, [[0.0, 0.0], [0.0, 1.0]], width=16)
