"""Grid-point functions for the tests, the check and the benchmark of ``limits.sweep``.

They live in an importable module because worker processes import ``fn`` by module and
qualname (test files collected with ``--import-mode=importlib`` are not importable there).
"""
import os
import time

import numpy as np


def trivial(params, rng_seed):
    """Nothing to compute: the benchmark of the per-point overhead."""
    return {"x": params["x"]}


def noisy(params, rng_seed):
    """Random results of every stored kind: scalars, list, str, NumPy scalar, arrays."""
    rng = np.random.default_rng(rng_seed)
    n = int(params.get("n", 3))
    z = rng.standard_normal(n)
    return {"mean": float(z.mean()), "first": np.float64(z[0]), "count": np.int64(n),
            "flag": bool(z[0] > 0), "label": f"x={params.get('x')}", "pair": [1, 2.5, None],
            "z": z, "ints": rng.integers(0, 100, size=(2, n), dtype=np.int32),
            "scalar": np.array(rng.random()), "entropy": list(rng_seed.spawn_key)}


def fail_on(params, rng_seed):
    """Raises ``ValueError`` at the points whose ``x`` is in ``params['bad']``."""
    if params["x"] in params.get("bad", ()):
        raise ValueError(f"bad point x={params['x']}")
    return noisy(params, rng_seed)


def _log(params):
    fd = os.open(params["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{params['x']}\n".encode())
    finally:
        os.close(fd)


def logged(params, rng_seed):
    """Appends ``x`` to the file ``params['log']`` (one line per call), sleeps
    ``params['sleep']`` seconds, returns :func:`noisy` results."""
    _log(params)
    time.sleep(params.get("sleep", 0.0))
    return noisy(params, rng_seed)


def flaky(params, rng_seed):
    """Fails the first call at each point (a marker file in ``params['dir']``), then works."""
    marker = os.path.join(params["dir"], f"tried-{params['x']}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError(f"transient failure at x={params['x']}")
    return noisy(params, rng_seed)


def die_once(params, rng_seed):
    """Kills its worker process (``os._exit``) the first time it runs at ``x == params['die']``
    (a marker file next to ``params['log']``); otherwise as :func:`logged`."""
    marker = params["log"] + ".died"
    if params["x"] == params["die"] and not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(params.get("sleep", 0.0))
        os._exit(3)
    return logged(params, rng_seed)


def wrong_return(params, rng_seed):
    """Returns something that cannot be stored without pickle."""
    return {"obj": np.array([object()], dtype=object)} if params["x"] else [1, 2]
