"""Generate nt_grads.json: derivatives of neural-tangents kernels w.r.t. the variances.

Run with the neural-tangents 0.6.5 environment (jax 0.4.26, float64)::

    /work/ntvenv/bin/python tests/kernels/data/make_nt_grads.py

For each network, ``kernel_fn`` is written as a function of (sw2, sb2) with
``stax.Dense(W_std=sqrt(sw2), b_std=sqrt(sb2))`` and differentiated by forward-mode autodiff
(``jax.jvp``) along (1, 0) (weight_var) and (0, 1) (bias_var).  ResNet (theory/kernels.md §3.1):
stem ``Dense(W_std=1, b_std=sqrt(0.05))``, blocks ``FanOut(2), parallel(Identity(),
serial(Relu(), Dense(W_std=alpha sqrt(sw2), b_std=alpha sqrt(sb2)))), FanInSum()`` with
alpha = depth^-1/2, readout ``Dense(W_std=1, b_std=0)``; only the branch variances vary.
"""
import json
import os
import platform

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
import neural_tangents as nt  # noqa: E402
from neural_tangents import stax  # noqa: E402


def mlp(act, depth):
    def build(sw2, sb2):
        W, b = jnp.sqrt(sw2), jnp.sqrt(sb2)
        layers = [stax.Dense(1, W_std=W, b_std=b)]
        for _ in range(depth):
            layers += [act(), stax.Dense(1, W_std=W, b_std=b)]
        return stax.serial(*layers)[2]
    return build


def resnet(depth, s0=1.0, b0=0.05, sv=1.0, bv=0.0):
    alpha = depth ** -0.5

    def build(sw2, sb2):
        W, b = alpha * jnp.sqrt(sw2), alpha * jnp.sqrt(sb2)
        block = stax.serial(stax.FanOut(2),
                            stax.parallel(stax.Identity(),
                                          stax.serial(stax.Relu(), stax.Dense(1, W_std=W,
                                                                              b_std=b))),
                            stax.FanInSum())
        return stax.serial(stax.Dense(1, W_std=s0, b_std=np.sqrt(b0)), *([block] * depth),
                           stax.Dense(1, W_std=sv, b_std=np.sqrt(bv)))[2]
    return build


CASES = [
    dict(name="relu_mlp", arch="MLP", activation="ReLU", depth=3, sw2=2.0, sb2=0.1,
         build=mlp(stax.Relu, 3)),
    dict(name="leaky_mlp", arch="MLP", activation="LeakyReLU(0.2)", depth=2, sw2=1.7, sb2=0.3,
         build=mlp(lambda: stax.LeakyRelu(0.2), 2)),
    dict(name="erf_mlp", arch="MLP", activation="Erf", depth=3, sw2=1.5, sb2=0.2,
         build=mlp(stax.Erf, 3)),
    dict(name="relu_resnet", arch="ResNet", activation="ReLU", depth=4, sw2=1.5, sb2=0.1,
         input_weight_var=1.0, input_bias_var=0.05, readout_weight_var=1.0,
         readout_bias_var=0.0, build=resnet(4)),
]


def grads(build, sw2, sb2, x1, x2):
    def f(a, b):
        k = build(a, b)(x1, x2, ("nngp", "ntk"))
        return k[0], k[1]
    out = {}
    (K, Th), (dKw, dThw) = jax.jvp(f, (sw2, sb2), (1.0, 0.0))
    _, (dKb, dThb) = jax.jvp(f, (sw2, sb2), (0.0, 1.0))
    for key, val in (("nngp", K), ("ntk", Th), ("d_nngp_weight_var", dKw),
                     ("d_ntk_weight_var", dThw), ("d_nngp_bias_var", dKb),
                     ("d_ntk_bias_var", dThb)):
        out[key] = np.asarray(val).tolist()
    return out


def main():
    rng = np.random.default_rng(16)
    x1 = rng.standard_normal((6, 4))
    x2 = rng.standard_normal((3, 4))
    res = {"versions": {"neural_tangents": nt.__version__, "jax": jax.__version__,
                        "python": platform.python_version()},
           "command": "/work/ntvenv/bin/python tests/kernels/data/make_nt_grads.py",
           "inputs": {"seed": 16, "x1": x1.tolist(), "x2": x2.tolist(),
                      "recipe": "rng = default_rng(16); x1 = rng.standard_normal((6, 4)); "
                                "x2 = rng.standard_normal((3, 4))"},
           "cases": []}
    for c in CASES:
        c = dict(c)
        build = c.pop("build")
        sym = grads(build, jnp.float64(c["sw2"]), jnp.float64(c["sb2"]), jnp.asarray(x1), None)
        cross = grads(build, jnp.float64(c["sw2"]), jnp.float64(c["sb2"]), jnp.asarray(x1),
                      jnp.asarray(x2))
        c["sym"], c["cross"] = sym, cross
        res["cases"].append(c)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nt_grads.json")
    with open(path, "w") as fh:
        json.dump(res, fh, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
