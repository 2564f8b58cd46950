"""kernels.sklearn: the NNGP / NTK as scikit-learn kernels."""
import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import approx_fprime
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import WhiteKernel

import kernels as kn
from kernels.sklearn import NNGPKernel, NTKKernel


def _data(n=30, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + 0.05 * rng.standard_normal(n)
    return x, y


NET = kn.MLP(3, kn.ReLU(), 1.5, 0.1)


def test_import_kernels_does_not_import_sklearn():
    code = "import sys, kernels; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_values_theta_bounds_and_params():
    x, _ = _data()
    k = NNGPKernel(NET)
    np.testing.assert_array_equal(k(x), NET.nngp(x))
    np.testing.assert_array_equal(k(x[:5], x[5:]), NET.nngp(x[:5], x[5:]))
    np.testing.assert_allclose(k.diag(x), np.diag(NET.nngp(x)), rtol=1e-14)
    assert not k.is_stationary()
    # hyperparameters in alphabetical order (scikit-learn's), in log space
    assert [h.name for h in k.hyperparameters] == ["bias_var", "weight_var"]
    np.testing.assert_allclose(k.theta, np.log([0.1, 1.5]))
    np.testing.assert_allclose(k.bounds, np.log([[1e-6, 1e2], [1e-3, 1e3]]))
    k2 = k.clone_with_theta(np.log([0.2, 2.0]))
    assert k2.network == kn.MLP(3, kn.ReLU(), 2.0, 0.2)
    assert k.network == NET                         # the original is unchanged
    c = clone(k)
    assert c.get_params() == k.get_params() and c is not k
    kt = NTKKernel(NET)
    np.testing.assert_array_equal(kt(x), NET.ntk(x))
    fixed = NNGPKernel(NET, bias_var_bounds="fixed")
    assert [h.name for h in fixed.hyperparameters if not h.fixed] == ["weight_var"]
    assert fixed(x, eval_gradient=True)[1].shape == (30, 30, 1)


@pytest.mark.parametrize("cls,net", [(NNGPKernel, NET), (NTKKernel, NET),
                                     (NNGPKernel, kn.ResNet(4, kn.Erf(), 1.2, 0.2))],
                         ids=["nngp-mlp", "ntk-mlp", "nngp-resnet-erf"])
def test_gradient_is_log_space_derivative(cls, net):
    x, _ = _data(12)
    k = cls(net)
    K, G = k(x, eval_gradient=True)
    np.testing.assert_allclose(K, k(x), rtol=1e-13)
    assert G.shape == (12, 12, 2)

    def entry(theta, i, j):
        return k.clone_with_theta(theta)(x)[i, j]

    for i, j in ((0, 0), (0, 5), (3, 7)):
        num = approx_fprime(k.theta, entry, 1e-7, i, j)
        np.testing.assert_allclose(G[i, j], num, rtol=1e-5, atol=1e-7)


def test_gaussian_process_regressor_fits_and_gradient_check():
    x, y = _data(40)
    kernel = NNGPKernel(kn.MLP(2, kn.ReLU(), 1.0, 0.5)) + WhiteKernel(0.1)
    gp = GaussianProcessRegressor(kernel=kernel, random_state=0, normalize_y=False)
    gp.fit(x, y)
    # the fit improved on the starting point and moved the network's variances
    start = gp.log_marginal_likelihood(kernel.theta)
    assert gp.log_marginal_likelihood_value_ > start
    fitted = gp.kernel_.k1
    assert isinstance(fitted, NNGPKernel)
    assert (fitted.weight_var, fitted.bias_var) != (1.0, 0.5)
    # scikit-learn's gradient of the log marginal likelihood against its finite differences,
    # at the start and at the optimum
    for theta in (kernel.theta, gp.kernel_.theta, gp.kernel_.theta + 0.3):
        lml, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
        num = approx_fprime(theta, lambda t: gp.log_marginal_likelihood(t), 1e-7)
        np.testing.assert_allclose(grad, num, rtol=1e-4, atol=1e-4 * max(1.0, abs(lml)))
    mean, std = gp.predict(x[:5], return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(std > 0)


def test_errors():
    with pytest.raises(TypeError, match="net must be a kernels architecture"):
        NNGPKernel("relu")
    k = NNGPKernel(kn.MLP(2, kn.ReLU(), 2.0, 0.0))
    x, _ = _data(5)
    with pytest.raises(ValueError, match="bias_var = 0.0"):
        k(x, eval_gradient=True)
    with pytest.raises(ValueError, match="Gradient can only be evaluated when Y is None"):
        k(x, x, eval_gradient=True)
    k0 = NNGPKernel(kn.MLP(2, kn.ReLU(), 2.0, 0.0), bias_var_bounds="fixed")
    assert k0(x, eval_gradient=True)[1].shape == (5, 5, 1)
