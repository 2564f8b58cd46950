"""Generate nt_parameterization.json: neural-tangents 0.6.5 reference kernels for per-layer
variances and the standard parameterization (MLP and ResNet), float64, eager (no jax.jit).

Run with the neural-tangents environment (jax 0.4.26):

    /work/ntvenv/bin/python tests/kernels/data/make_nt_parameterization.py

Every case is a stax network written out layer by layer (kernels.md §2.2, §3.1, §5b): MLP
``serial(Dense, phi, ..., phi, Dense(1))``; ResNet ``serial(Dense, [FanOut(2), parallel(
Identity(), serial(phi, Dense(W_std=alpha sw, b_std=alpha sb))), FanInSum()] * L, Dense(1))``.
Variances in the JSON are W_std**2 and b_std**2 (b_std None = no bias parameter: variance
None).  Inputs: x1 (5, 4), x2 (3, 4), standard normal from a fixed seed: no two rows are
parallel (neural-tangents loses ~1e-8 there).  Stored: kernel_fn(x1, None) and kernel_fn(x1, x2).
"""
import json
import math
import platform
import sys
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
import neural_tangents as nt  # noqa: E402
from neural_tangents import stax  # noqa: E402

SEED = 20261206
rng = np.random.default_rng(SEED)
X1 = rng.standard_normal((5, 4))
X2 = rng.standard_normal((3, 4))


def _std(v):
    return None if v is None else math.sqrt(v)


def _act(name):
    return {"relu": stax.Relu(), "erf": stax.Erf()}[name]


def mlp(act, sw2, sb2, param, widths):
    """Dense layers l = 0..L (readout last); widths: hidden widths n_1..n_L."""
    L = len(sw2) - 1
    layers = []
    for l in range(L + 1):
        out = 1 if l == L else widths[l]
        layers.append(stax.Dense(out, W_std=_std(sw2[l]), b_std=_std(sb2[l]),
                                 parameterization=param))
        if l < L:
            layers.append(_act(act))
    return stax.serial(*layers)


def resnet(act, sw2, sb2, alphas, param, width):
    """sw2, sb2: input Dense, each block's Dense, readout (L + 2 values)."""
    L = len(alphas)
    layers = [stax.Dense(width, W_std=_std(sw2[0]), b_std=_std(sb2[0]),
                         parameterization=param)]
    for l in range(L):
        a = alphas[l]
        b_std = None if sb2[l + 1] is None else a * math.sqrt(sb2[l + 1])
        branch = stax.serial(_act(act), stax.Dense(width, W_std=a * math.sqrt(sw2[l + 1]),
                                                   b_std=b_std, parameterization=param))
        layers += [stax.FanOut(2), stax.parallel(stax.Identity(), branch), stax.FanInSum()]
    layers.append(stax.Dense(1, W_std=_std(sw2[-1]), b_std=_std(sb2[-1]),
                             parameterization=param))
    return stax.serial(*layers)


CASES = [
    # --- MLP, per-layer variances, NTK parameterization
    dict(name="mlp_relu_perlayer_ntk", arch="mlp", act="relu", param="ntk",
         weight_var=[1.5, 2.0, 1.2, 0.8], bias_var=[0.1, 0.0, 0.3, 0.05], width=None),
    dict(name="mlp_erf_perlayer_ntk", arch="mlp", act="erf", param="ntk",
         weight_var=[2.0, 1.0, 3.0], bias_var=[0.2, 0.1, 0.0], width=None),
    dict(name="mlp_relu_perlayer_nobias_ntk", arch="mlp", act="relu", param="ntk",
         weight_var=[1.0, 2.5, 1.5], bias_var=[None, None, None], width=None),
    # --- MLP, standard parameterization
    dict(name="mlp_relu_standard_bias", arch="mlp", act="relu", param="standard",
         weight_var=[2.0] * 4, bias_var=[0.1] * 4, width=64),
    dict(name="mlp_relu_standard_zero_bias", arch="mlp", act="relu", param="standard",
         weight_var=[2.0] * 4, bias_var=[0.0] * 4, width=128),
    dict(name="mlp_relu_standard_no_bias", arch="mlp", act="relu", param="standard",
         weight_var=[2.0] * 4, bias_var=[None] * 4, width=64),
    dict(name="mlp_relu_standard_two_widths_perlayer", arch="mlp", act="relu",
         param="standard", weight_var=[1.5, 2.0, 1.2, 0.8], bias_var=[0.1, None, 0.0, 0.05],
         width=[50, 200, 100]),
    dict(name="mlp_erf_standard_perlayer", arch="mlp", act="erf", param="standard",
         weight_var=[2.0, 1.0, 3.0], bias_var=[0.2, 0.0, None], width=[32, 256]),
    # --- ResNet, per-layer variances, NTK parameterization (alpha = L^-1/2 and a list)
    dict(name="resnet_relu_perlayer_ntk", arch="resnet", act="relu", param="ntk",
         weight_var=[1.3, 2.0, 1.5, 2.5, 0.7], bias_var=[0.2, 0.1, 0.0, 0.3, 0.05],
         alphas=[3 ** -0.5] * 3, width=None),
    dict(name="resnet_erf_perlayer_ntk", arch="resnet", act="erf", param="ntk",
         weight_var=[1.0, 2.0, 0.5, 1.5], bias_var=[0.0, 0.1, 0.2, 0.0],
         alphas=[0.9, 0.4], width=None),
    # --- ResNet, standard parameterization
    dict(name="resnet_relu_standard_bias", arch="resnet", act="relu", param="standard",
         weight_var=[1.0, 2.0, 2.0, 2.0, 1.0], bias_var=[0.1, 0.1, 0.1, 0.1, 0.1],
         alphas=[3 ** -0.5] * 3, width=64),
    dict(name="resnet_relu_standard_zero_bias", arch="resnet", act="relu", param="standard",
         weight_var=[1.0, 2.0, 2.0, 2.0, 1.0], bias_var=[0.0] * 5,
         alphas=[3 ** -0.5] * 3, width=32),
    dict(name="resnet_relu_standard_no_bias", arch="resnet", act="relu", param="standard",
         weight_var=[1.0, 2.0, 2.0, 2.0, 1.0], bias_var=[None] * 5,
         alphas=[3 ** -0.5] * 3, width=100),
    dict(name="resnet_erf_standard_perlayer", arch="resnet", act="erf", param="standard",
         weight_var=[1.0, 2.0, 0.5, 1.5], bias_var=[0.0, 0.1, None, 0.2],
         alphas=[0.9, 0.4], width=48),
]


def run(case):
    if case["arch"] == "mlp":
        L = len(case["weight_var"]) - 1
        w = case["width"]
        widths = [512] * L if w is None else ([w] * L if isinstance(w, int) else w)
        _, _, kfn = mlp(case["act"], case["weight_var"], case["bias_var"], case["param"],
                        widths)
    else:
        w = 512 if case["width"] is None else case["width"]
        _, _, kfn = resnet(case["act"], case["weight_var"], case["bias_var"], case["alphas"],
                           case["param"], w)
    out = dict(case)
    for key, x2 in (("self", None), ("cross", X2)):
        k = kfn(X1, x2, ("nngp", "ntk"))
        out[key] = {"nngp": np.asarray(k.nngp).tolist(), "ntk": np.asarray(k.ntk).tolist()}
    return out


def main():
    import jaxlib
    data = {
        "generator": "neural-tangents stax kernel_fn(x1, x2, ('nngp', 'ntk')), eager (no "
                     "jax.jit), jax_enable_x64=True, CPU",
        "command": "/work/ntvenv/bin/python tests/kernels/data/make_nt_parameterization.py",
        "versions": {"neural_tangents": nt.__version__, "jax": jax.__version__,
                     "jaxlib": jaxlib.__version__, "numpy": np.__version__,
                     "python": platform.python_version(), "platform": platform.platform()},
        "conventions": "weight_var = W_std**2, bias_var = b_std**2 (None: b_std=None, no bias "
                       "parameter).  MLP: one value per Dense layer, readout last; hidden "
                       "widths 'width' (int or per hidden layer; None = 512, irrelevant in "
                       "the NTK parameterization).  ResNet: (input Dense, each block's Dense, "
                       "readout); the block Dense has W_std = alpha sqrt(weight_var), b_std = "
                       "alpha sqrt(bias_var).  Input kernel x x'/d, d = 4.",
        "inputs": {"seed": SEED, "recipe": "rng = numpy.random.default_rng(seed); x1 = "
                   "rng.standard_normal((5, 4)); x2 = rng.standard_normal((3, 4))",
                   "x1": X1.tolist(), "x2": X2.tolist()},
        "cases": [run(c) for c in CASES],
    }
    path = Path(__file__).with_name("nt_parameterization.json")
    path.write_text(json.dumps(data, indent=1))
    print(f"wrote {path} ({len(data['cases'])} cases)", file=sys.stderr)


if __name__ == "__main__":
    main()
