"""MLP kernels against neural-tangents 0.6.5 reference outputs (nt_relu_mlp.json, shipped with
the package as limits/_data/nt_relu_mlp.json, a copy of shared/reference/nt_relu_mlp.json).

Every entry of the 6 x 6 NNGP and NTK matrices, diagonal included, to 1e-12 relative.
Variances are W_std**2 and b_std**2, as the JSON's stax expressions use them.
"""
import json
from importlib import resources

import numpy as np
import pytest

import kernels as kn

with resources.files("limits").joinpath("_data/nt_relu_mlp.json").open() as fh:
    REF = json.load(fh)

X = np.array(REF["inputs"]["x"], dtype=np.float64)
CASES = REF["cases"]
BIAS_FREE = [c for c in CASES if c["b_std"] == 0.0]
RTOL = 1e-12


def _net(case):
    return kn.MLP(depth=case["depth_L"], activation=kn.ReLU(),
                  weight_var=case["W_std"] ** 2, bias_var=case["b_std"] ** 2)


def _ids(cases):
    return [c["name"] for c in cases]


def test_reference_file_shape():
    assert X.shape == (6, 5)
    assert len(CASES) == 5
    for c in CASES:
        assert np.shape(c["nngp"]) == (6, 6) and np.shape(c["ntk"]) == (6, 6)


def test_inputs_match_recipe():
    # the JSON records how x was generated; the sq-norm/d column is an extra consistency check
    x = np.random.default_rng(REF["inputs"]["seed"]).standard_normal((6, 5))
    np.testing.assert_array_equal(x, X)
    np.testing.assert_allclose((X * X).sum(1) / X.shape[1], REF["inputs"]["sq_norm_over_dim"],
                               rtol=1e-15)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_nngp_matches_neural_tangents(case):
    got = _net(case).nngp(X)
    np.testing.assert_allclose(got, np.array(case["nngp"]), rtol=RTOL, atol=0)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_ntk_matches_neural_tangents(case):
    got = _net(case).ntk(X)
    np.testing.assert_allclose(got, np.array(case["ntk"]), rtol=RTOL, atol=0)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_layer_loop_matches_neural_tangents(case):
    k = _net(case).kernels(X, fast=False)
    np.testing.assert_allclose(k.nngp, np.array(case["nngp"]), rtol=RTOL, atol=0)
    np.testing.assert_allclose(k.ntk, np.array(case["ntk"]), rtol=RTOL, atol=0)


@pytest.mark.parametrize("case", BIAS_FREE, ids=_ids(BIAS_FREE))
def test_fast_path_matches_neural_tangents(case):
    k = _net(case).kernels(X, fast=True)
    np.testing.assert_allclose(k.nngp, np.array(case["nngp"]), rtol=RTOL, atol=0)
    np.testing.assert_allclose(k.ntk, np.array(case["ntk"]), rtol=RTOL, atol=0)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_trajectory_last_layer_is_network_output(case):
    tr = _net(case).trajectory(X)
    np.testing.assert_allclose(tr.nngp[-1], np.array(case["nngp"]), rtol=RTOL, atol=0)
    np.testing.assert_allclose(tr.ntk[-1], np.array(case["ntk"]), rtol=RTOL, atol=0)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_input_kernel_route_matches(case):
    # K0 = x x' / d (NT input kernel) must give the same output as x
    K0 = X @ X.T / X.shape[1]
    k = _net(case).kernels(K0=K0)
    np.testing.assert_allclose(k.nngp, np.array(case["nngp"]), rtol=RTOL, atol=0)
    np.testing.assert_allclose(k.ntk, np.array(case["ntk"]), rtol=RTOL, atol=0)
