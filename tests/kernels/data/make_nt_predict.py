"""Generate nt_predict.json: neural-tangents 0.6.5 finite-time predictions (float64) used by
tests/kernels/test_predict_nt.py.

Command (from the repository root, in a venv with neural-tangents 0.6.5 / jax 0.4.26):
    /work/ntvenv/bin/python tests/kernels/data/make_nt_predict.py

For each case: ``nt.predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y_train,
learning_rate=lr, diag_reg=r, diag_reg_absolute_scale=True)`` and then
``predict_fn(t=T_NT, x_test=x_test, get=("nngp", "ntk"), compute_cov=True)`` at an array of
neural-tangents times T_NT (including inf), and ``predict_fn(t=None, ...)`` (infinite time by
Cholesky).  Stored raw, in neural-tangents' own time unit: the test converts.
Networks (NTK parameterization, NT stax): L blocks [Dense(W_std, b_std), activation] and one
readout Dense(W_std, b_std); the library's MLP(depth=L, weight_var=W_std**2, bias_var=b_std**2).
"""
import json
import platform
import sys

import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import neural_tangents as nt  # noqa: E402
from neural_tangents import stax  # noqa: E402

CASES = [
    dict(name="relu_L3_bias", act="relu", depth=3, W_std=2.0 ** 0.5, b_std=0.1 ** 0.5,
         n=8, m=5, d=4, k=1, lr=1.0, diag_reg=0.0, seed=1),
    dict(name="relu_L2_k2_lr", act="relu", depth=2, W_std=1.5 ** 0.5, b_std=0.3 ** 0.5,
         n=7, m=4, d=3, k=2, lr=0.6, diag_reg=1e-3, seed=2),
    dict(name="erf_L2_k2", act="erf", depth=2, W_std=1.7 ** 0.5, b_std=0.05 ** 0.5,
         n=9, m=4, d=5, k=2, lr=0.8, diag_reg=1e-4, seed=3),
    dict(name="erf_L1_nobias", act="erf", depth=1, W_std=1.0, b_std=0.0,
         n=6, m=3, d=2, k=1, lr=2.0, diag_reg=0.0, seed=4),
]
T_NT = [0.0, 0.05, 0.5, 2.0, 10.0, 100.0, 1e4, float("inf")]


def main():
    out = dict(generator=" ".join(sys.argv), command="/work/ntvenv/bin/python "
               "tests/kernels/data/make_nt_predict.py",
               versions=dict(neural_tangents=nt.__version__, jax=jax.__version__,
                             numpy=np.__version__, python=platform.python_version(),
                             platform=platform.platform()),
               conventions=("NT time unit: predict_fn(t) uses exp(-learning_rate * Theta * t / "
                            "y_train.size); y_train stored with shape (n, k); trace_axes=(-1,); "
                            "diag_reg_absolute_scale=True (ridge added as is)."),
               t_nt=[("inf" if np.isinf(t) else t) for t in T_NT], cases=[])
    for c in CASES:
        rng = np.random.default_rng(c["seed"])
        x = rng.standard_normal((c["n"] + c["m"], c["d"]))
        y = np.stack([np.sin(x[:, 0]) + 0.3 * j * x[:, 1] for j in range(1, c["k"] + 1)], 1)
        xtr, xte, ytr = x[:c["n"]], x[c["n"]:], y[:c["n"]]
        act = stax.Relu() if c["act"] == "relu" else stax.Erf()
        layers = []
        for _ in range(c["depth"]):
            layers += [stax.Dense(512, W_std=c["W_std"], b_std=c["b_std"]), act]
        layers.append(stax.Dense(1, W_std=c["W_std"], b_std=c["b_std"]))
        _, _, kernel_fn = stax.serial(*layers)
        pf = nt.predict.gradient_descent_mse_ensemble(
            kernel_fn, jnp.asarray(xtr), jnp.asarray(ytr), learning_rate=c["lr"],
            diag_reg=c["diag_reg"], diag_reg_absolute_scale=True)
        fin = pf(t=jnp.asarray(T_NT), x_test=jnp.asarray(xte), get=("nngp", "ntk"),
                 compute_cov=True)
        inf = pf(t=None, x_test=jnp.asarray(xte), get=("nngp", "ntk"), compute_cov=True)
        rec = dict(c, x_train=xtr.tolist(), y_train=ytr.tolist(), x_test=xte.tolist())
        for g in ("nngp", "ntk"):
            rec[g] = dict(mean=np.asarray(getattr(fin, g).mean).tolist(),
                          cov=np.asarray(getattr(fin, g).covariance).tolist(),
                          mean_none=np.asarray(getattr(inf, g).mean).tolist(),
                          cov_none=np.asarray(getattr(inf, g).covariance).tolist())
        out["cases"].append(rec)
        print(c["name"], np.asarray(fin.ntk.mean).shape, np.asarray(fin.ntk.covariance).shape)
    with open(__file__.replace("make_nt_predict.py", "nt_predict.json"), "w") as fh:
        json.dump(out, fh, indent=0)


if __name__ == "__main__":
    main()
