"""Kernels past memory: out= (tiles into memory maps), diagonal=True, dask arrays, CG regression.

The tile and dask checks are exact (``==``): a tile must be the corresponding block of the
in-memory kernel bit for bit (kernels/_blockwise.py explains how).
"""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import kernels as kn

NETS = {
    "relu-bias": lambda: kn.MLP(10, kn.ReLU(), weight_var=2.0, bias_var=0.1),
    "relu-fast": lambda: kn.MLP(40, kn.ReLU(), weight_var=2.0),
    "erf": lambda: kn.MLP(3, kn.Erf(), weight_var=1.5, bias_var=0.2),
    "tanh": lambda: kn.MLP(3, kn.Tanh(), weight_var=1.2, bias_var=0.1),
    "resnet": lambda: kn.ResNet(5, kn.ReLU(), bias_var=0.1, readout_bias_var=0.3),
}


def _inputs(n, d=6, seed=1):
    x = np.random.default_rng(seed).standard_normal((n, d))
    x[7] = x[3]          # a duplicate pair (gap refined from the unit inputs)
    x[10] = 0.0          # a zero-norm input
    x[12] = -x[5]        # an antipodal pair
    return x


def _equal(got, ref):
    np.testing.assert_array_equal(got.nngp, ref.nngp)
    np.testing.assert_array_equal(got.ntk, ref.ntk)


# ----------------------------------------------------------------------------------------------
# out=: tiles equal the in-memory kernel exactly
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(NETS))
def test_out_tiles_equal_in_memory(name):
    net = NETS[name]()
    x, x2 = _inputs(110), _inputs(37, seed=2)
    full, cross = net.kernels(x), net.kernels(x, x2)
    for tile in (9, 64, 110, 500):
        a, b = np.full((110, 110), np.nan), np.full((110, 110), np.nan)
        got = net.kernels(x, out=(a, b), tile=tile)
        assert got.nngp is a and got.ntk is b
        _equal(got, full)
        a, b = np.full((110, 37), np.nan), np.full((110, 37), np.nan)
        _equal(net.kernels(x, x2, out=(a, b), tile=tile), cross)


def test_out_into_npy_memmap(tmp_path):
    net = NETS["relu-bias"]()
    x = _inputs(90)
    ref = net.kernels(x)
    fa, fb = tmp_path / "nngp.npy", tmp_path / "ntk.npy"
    a = np.lib.format.open_memmap(fa, mode="w+", dtype=np.float64, shape=(90, 90))
    b = np.lib.format.open_memmap(fb, mode="w+", dtype=np.float64, shape=(90, 90))
    net.kernels(x, out=(a, b), tile=32, progress=False)
    del a, b
    np.testing.assert_array_equal(np.load(fa), ref.nngp)
    np.testing.assert_array_equal(np.load(fb), ref.ntk)
    # single-kernel forms
    c = np.lib.format.open_memmap(tmp_path / "c.npy", mode="w+", dtype=np.float64,
                                  shape=(90, 90))
    assert net.nngp(x, out=c, tile=20) is c
    np.testing.assert_array_equal(c, ref.nngp)
    m = np.memmap(tmp_path / "raw.bin", mode="w+", dtype=np.float64, shape=(90, 90))
    net.ntk(x, out=m, tile=50)
    np.testing.assert_array_equal(m, ref.ntk)


def _input_kernel(x):
    K0 = x @ x.T / x.shape[1]
    K0[4, 9] += 1e-15 * K0[4, 4]             # not exactly symmetric: symmetrised as in memory
    return K0


@pytest.mark.parametrize("name", list(NETS))
def test_out_from_input_kernel_equals_in_memory(name, tmp_path):
    net = NETS[name]()
    x = _inputs(130)                         # 130: the relu-fast net takes the tabulated path
    K0 = _input_kernel(x)
    full = net.kernels(K0=K0)
    src = np.lib.format.open_memmap(tmp_path / "k0.npy", mode="w+", dtype=np.float64,
                                    shape=K0.shape)
    src[:] = K0
    src.flush()
    ro = np.load(tmp_path / "k0.npy", mmap_mode="r")       # K0 itself a read-only memory map
    for tile, k0 in ((9, K0), (64, ro), (130, ro), (500, K0)):
        a, b = np.full((130, 130), np.nan), np.full((130, 130), np.nan)
        got = net.kernels(K0=k0, out=(a, b), tile=tile)
        assert got.nngp is a and got.ntk is b
        _equal(got, full)
    c = np.lib.format.open_memmap(tmp_path / "c.npy", mode="w+", dtype=np.float64,
                                  shape=(130, 130))
    assert net.nngp(K0=ro, out=c, tile=40) is c
    np.testing.assert_array_equal(c, net.nngp(K0=K0))
    np.testing.assert_array_equal(ro, src)                 # K0 untouched


def test_out_from_input_kernel_extreme_rows():
    net = kn.MLP(3, kn.ReLU(), weight_var=2.0)             # bias-free: extreme rows rescaled
    x = _inputs(60)
    nrm = np.linalg.norm(x, axis=1, keepdims=True)
    u = x / np.where(nrm > 0, nrm, 1.0)
    s = np.ones(60)
    s[[2, 40]], s[[5, 41]] = 1e150, 1e-150
    K0 = ((u @ u.T) * s[:, None]) * s[None, :]              # K ~ 1e300 and 1e-300 entries
    K0 = 0.5 * (K0 + K0.T)
    full = net.kernels(K0=K0)
    assert np.all(np.isfinite(full.nngp)) and 1e298 < full.nngp[2, 2] < 1e302
    for tile in (7, 25):
        a, b = np.empty((60, 60)), np.empty((60, 60))
        _equal(net.kernels(K0=K0, out=(a, b), tile=tile), full)


def test_out_from_input_kernel_refusals(tmp_path):
    net = NETS["erf"]()
    x = _inputs(30)
    K0 = x @ x.T / x.shape[1]
    good = np.full((30, 30), 7.0)
    checks = [
        (dict(K0=K0, out=(np.empty((30, 29)), None)), ValueError, r"shape \(30, 30\)"),
        (dict(K0=K0, out=(np.empty((30, 30), np.float32), None)), TypeError, "float64"),
        (dict(K0=K0, out=(K0, None)), ValueError, "shares memory with K0"),
        (dict(K0=K0[:, :29], out=(good, None)), ValueError, "square"),
        (dict(K0=K0 + np.triu(np.ones((30, 30)), 1), out=(good, None)), ValueError,
         "symmetric"),
        (dict(K0=np.where(np.eye(30) > 0, np.nan, K0), out=(good, None)), ValueError,
         "finite"),
        (dict(K0=K0 - 2 * np.eye(30) * K0.max(), out=(good, None)), ValueError,
         "negative diagonal"),
        (dict(K0=np.eye(30) + 1.5 * (np.eye(30, k=1) + np.eye(30, k=-1)), out=(good, None),
              tile=10), ValueError, "positive semi-definite"),
        (dict(K0=K0.astype(complex), out=(good, None)), TypeError, "real"),
        (dict(x1=x, K0=K0, out=(good, None)), ValueError, "not both"),
        (dict(K0=K0, out=(good, None), tile=0), ValueError, "tile must be >= 1"),
        (dict(K0=K0, out=(good, None), fast=True), ValueError, "fast=True"),
    ]
    for kw, exc, match in checks:
        with pytest.raises(exc, match=match):
            net.kernels(**kw)
    assert np.all(good == 7.0)                              # refused before any tile
    with pytest.raises(ValueError, match="standard parameterization"):
        kn.MLP(3, kn.Erf(), parameterization="standard").kernels(K0=K0, out=(None, good))


# ----------------------------------------------------------------------------------------------
# diagonal=True
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(NETS))
def test_diagonal_equals_full_diagonal(name):
    net = NETS[name]()
    for n in (30, 150):          # 150: the relu-fast net takes the tabulated path
        x = _inputs(n)
        full = net.kernels(x)
        d = net.kernels(x, diagonal=True)
        assert d.nngp.shape == d.ntk.shape == (n,)
        np.testing.assert_array_equal(d.nngp, np.diag(full.nngp))
        np.testing.assert_array_equal(d.ntk, np.diag(full.ntk))
        np.testing.assert_array_equal(net.nngp(x, diagonal=True), np.diag(full.nngp))
        np.testing.assert_array_equal(net.ntk(x, diagonal=True), np.diag(full.ntk))


def test_diagonal_from_input_kernel():
    net = NETS["erf"]()
    x = _inputs(20)
    K0 = x @ x.T / x.shape[1]
    full = net.kernels(K0=K0)
    d = net.kernels(K0=K0, diagonal=True)
    np.testing.assert_array_equal(d.nngp, np.diag(full.nngp))
    np.testing.assert_array_equal(d.ntk, np.diag(full.ntk))


@pytest.mark.parametrize("name", ["relu-bias", "relu-fast", "erf"])
def test_tiles_serial_and_parallel_paths_agree(name):
    # the whole 300-point kernel runs the threaded per-matrix passes and layer chunks
    # (architectures._serial, _rec.SERIAL_ENTRIES), small tiles the one-thread variants
    net = NETS[name]()
    x = _inputs(300)
    full = net.kernels(x)
    for tile in (7, 128):
        a, b = np.empty((300, 300)), np.empty((300, 300))
        _equal(net.kernels(x, out=(a, b), tile=tile), full)


@pytest.mark.parametrize("depth", [3, 40])
def test_extreme_rows_rescaled_in_tiles_and_diagonal(depth):
    # bias-free ReLU: rows of extreme norm are rescaled by powers of two (row by row), in
    # tiles and in the diagonal exactly as in the whole computation
    net = kn.MLP(depth, kn.ReLU(), weight_var=2.0)
    x = _inputs(150)
    x[[2, 40, 99]] *= 1e150         # K ~ 1e300: x x' and q q' overflow unless rescaled
    x[[5, 41, 120]] *= 1e-150
    x2 = _inputs(37, seed=2)
    x2[[1, 30]] *= 1e-100
    full, cross = net.kernels(x), net.kernels(x, x2)
    assert np.all(np.isfinite(full.nngp)) and np.all(np.isfinite(full.ntk))
    assert 1e298 < full.nngp[2, 2] < 1e302 and 1e-302 < full.nngp[5, 5] < 1e-298
    for tile in (9, 64):
        a, b = np.empty((150, 150)), np.empty((150, 150))
        _equal(net.kernels(x, out=(a, b), tile=tile), full)
        a, b = np.empty((150, 37)), np.empty((150, 37))
        _equal(net.kernels(x, x2, out=(a, b), tile=tile), cross)
    d = net.kernels(x, diagonal=True)
    np.testing.assert_array_equal(d.nngp, np.diag(full.nngp))
    np.testing.assert_array_equal(d.ntk, np.diag(full.ntk))
    if depth == 3:
        dask = pytest.importorskip("dask")
        dk = kn.dask_kernels(net, x, chunks=40)
        K, T = dask.compute(dk.nngp, dk.ntk, scheduler="threads")
        np.testing.assert_array_equal(K, full.nngp)
        np.testing.assert_array_equal(T, full.ntk)
        dc = kn.dask_kernels(net, x, x2, chunks=(40, 20))
        np.testing.assert_array_equal(dc.nngp.compute(scheduler="threads"), cross.nngp)
    K0 = np.diag(np.array([1e-310, 1.0, 1e300, 4.0]))
    K0[1, 3] = K0[3, 1] = 1.5
    fk = net.kernels(K0=K0)
    dk = net.kernels(K0=K0, diagonal=True)
    np.testing.assert_array_equal(dk.nngp, np.diag(fk.nngp))
    np.testing.assert_array_equal(dk.ntk, np.diag(fk.ntk))


def test_nngp_out_and_diagonal_skip_the_ntk(monkeypatch):
    from kernels import architectures as arch
    net = NETS["relu-bias"]()
    x = _inputs(60)
    ref = net.nngp(x)
    calls = []
    run = arch._run

    def spy(*args, **kw):
        calls.append(kw.get("ntk", True))
        return run(*args, **kw)

    monkeypatch.setattr(arch, "_run", spy)
    a = np.empty((60, 60))
    assert net.nngp(x, out=a, tile=25) is a
    np.testing.assert_array_equal(a, ref)
    np.testing.assert_array_equal(net.nngp(x, diagonal=True), np.diag(ref))
    assert len(calls) == 6 + 1 and not any(calls)
    calls.clear()
    k = net.kernels(x, out=(a, None), tile=25)
    assert k.ntk is None and len(calls) == 6 and not any(calls)


# ----------------------------------------------------------------------------------------------
# bad input: clear errors before any work
# ----------------------------------------------------------------------------------------------
def test_bad_out(tmp_path):
    net = NETS["relu-bias"]()
    x = _inputs(20)
    good = np.empty((20, 20))
    with pytest.raises(ValueError, match=r"shape \(20, 20\)"):
        net.kernels(x, out=(np.empty((20, 19)), good))
    with pytest.raises(TypeError, match="float64"):
        net.kernels(x, out=(good, np.empty((20, 20), dtype=np.float32)))
    with pytest.raises(TypeError, match="numpy array"):
        net.nngp(x, out=[[0.0] * 20] * 20)
    with pytest.raises(TypeError, match="pair"):
        net.kernels(x, out=good)
    with pytest.raises(ValueError, match="share memory"):
        net.kernels(x, out=(good, good))
    f = tmp_path / "k.npy"
    np.lib.format.open_memmap(f, mode="w+", dtype=np.float64, shape=(20, 20))[:] = 7.0
    ro = np.load(f, mmap_mode="r")
    with pytest.raises(ValueError, match="read-only"):
        net.nngp(x, out=ro)
    with pytest.raises(ValueError, match="tile must be >= 1"):
        net.kernels(x, out=(good, None), tile=0)
    with pytest.raises(ValueError, match="x2"):
        net.kernels(x, x, diagonal=True)
    with pytest.raises(ValueError, match="fast=True"):
        net.kernels(x, out=(good, None), fast=True)
    assert np.all(np.load(f) == 7.0)


def test_bad_chunks():
    pytest.importorskip("dask")
    net = NETS["relu-bias"]()
    x = _inputs(20)
    for chunks in (0, -3):
        with pytest.raises(ValueError, match="chunks must be >= 1"):
            kn.dask_kernels(net, x, chunks=chunks)
    with pytest.raises(ValueError, match="sum to 20"):
        kn.dask_kernels(net, x, chunks=((10, 5), (10, 5)))
    with pytest.raises(ValueError, match="same blocks"):
        kn.dask_kernels(net, x, chunks=(10, 5))
    with pytest.raises(TypeError, match="MLP or ResNet"):
        kn.dask_kernels("net", x)
    with pytest.raises(TypeError, match="chunks=7"):
        kn.dask_kernels(net, x, 7)
    with pytest.raises(TypeError, match="chunks must be an integer"):
        kn.dask_kernels(net, x, chunks=2.5)
    with pytest.raises(ValueError, match="chunks must be >= 1"):
        kn.dask_kernels(net, x, chunks=(0, 20))
    with pytest.raises(ValueError, match="chunks must be >= 1"):
        kn.dask_kernels(net, x, x[:5], chunks=(10, 0))


def test_import_does_not_import_dask():
    code = "import sys, kernels; print('dask' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------------------------
# dask
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["relu-bias", "relu-fast", "erf"])
def test_dask_threaded_equals_in_memory(name):
    dask = pytest.importorskip("dask")
    net = NETS[name]()
    # the check is N = 3000 in chunks of 700; N = 600 in chunks of 140 keeps the same
    # grid shape (5 x 5 blocks, a ragged last one) at 1/25 of the cost on this 2-core machine
    x, x2 = _inputs(600), _inputs(230, seed=3)
    full = net.kernels(x)
    dk = kn.dask_kernels(net, x, chunks=140)
    assert dk.nngp.chunks == ((140,) * 4 + (40,),) * 2
    K, T = dask.compute(dk.nngp, dk.ntk, scheduler="threads")
    np.testing.assert_array_equal(K, full.nngp)
    np.testing.assert_array_equal(T, full.ntk)
    cross = net.kernels(x, x2)
    dc = kn.dask_kernels(net, x, x2, chunks=(140, 100))
    np.testing.assert_array_equal(dc.ntk.compute(scheduler="threads"), cross.ntk)


def test_dask_each_symmetric_pair_once():
    pytest.importorskip("dask")
    net = NETS["relu-bias"]()
    dk = kn.dask_kernels(net, _inputs(50), chunks=10)
    graph = dict(dk.nngp.__dask_graph__())
    pairs = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("kernel-pairs")]
    assert len(pairs) == 5 * 6 // 2


def test_dask_to_npy_stack_and_memmap(tmp_path):
    dask = pytest.importorskip("dask")
    import dask.array as da
    net = NETS["erf"]()
    x = _inputs(120)
    ref = net.kernels(x)
    dk = kn.dask_kernels(net, x, chunks=50)
    with dask.config.set(scheduler="threads"):
        da.to_npy_stack(tmp_path / "nngp", dk.nngp, axis=0)
        back = da.from_npy_stack(tmp_path / "nngp").compute()
        np.testing.assert_array_equal(back, ref.nngp)
        mm = np.lib.format.open_memmap(tmp_path / "ntk.npy", mode="w+", dtype=np.float64,
                                       shape=(120, 120))
        da.store(dk.ntk, mm, lock=True)
        mm.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "ntk.npy"), ref.ntk)


def test_dask_local_cluster():
    pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    net = NETS["relu-bias"]()
    x = _inputs(200)
    full = net.kernels(x)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        dk = kn.dask_kernels(net, x, chunks=70)
        K, T = client.compute([dk.nngp, dk.ntk], sync=True)
    np.testing.assert_array_equal(K, full.nngp)
    np.testing.assert_array_equal(T, full.ntk)


def test_dask_to_zarr(tmp_path):
    dask = pytest.importorskip("dask")
    zarr = pytest.importorskip("zarr")
    import dask.array as da
    net = NETS["relu-bias"]()
    x = _inputs(130)
    ref = net.kernels(x)
    dk = kn.dask_kernels(net, x, chunks=50)
    with dask.config.set(scheduler="threads"):
        da.to_zarr(dk.nngp, str(tmp_path / "nngp.zarr"))
        da.to_zarr(dk.ntk, str(tmp_path / "ntk.zarr"))
    np.testing.assert_array_equal(zarr.open(str(tmp_path / "nngp.zarr"), mode="r")[:], ref.nngp)
    np.testing.assert_array_equal(da.from_zarr(str(tmp_path / "ntk.zarr")).compute(), ref.ntk)


def test_dask_large_n_graph_is_small():
    # N = 20,000 inputs of dimension 784 (125 MB) in chunks of 1000: the inputs are scattered
    # to the workers once, the graph holds references only, no "large graph" warning
    import pickle
    import warnings
    pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    import time
    n = 20000
    x = np.random.default_rng(0).standard_normal((n, 784))
    net = NETS["relu-bias"]()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        t = time.perf_counter()
        dk = kn.dask_kernels(net, x, chunks=1000)
        built = time.perf_counter() - t
        graph = dict(dk.nngp.__dask_graph__())
        assert len(pickle.dumps(graph)) < 1e6
        assert built < 30, built                 # scatter of 125 MB included (0.5-4 s here)
        with warnings.catch_warnings():
            warnings.simplefilter("error")       # distributed's "Sending large graph" warns
            corner = client.compute(dk.nngp[995:1003, 1990:2001]).result()
    np.testing.assert_array_equal(corner, net.nngp(x[995:1003], x[1990:2001]))


# ----------------------------------------------------------------------------------------------
# CG kernel regression
# ----------------------------------------------------------------------------------------------
def _regression_problem(n, m, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + m, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.sin(3 * x[:n, 0]) + x[:n, 1] * x[:n, 2]
    return x, y


def _check_cg_against_direct(n, m, preconditioner, tmp_path=None, block=256):
    net = kn.MLP(3, kn.ReLU(), weight_var=2.0, bias_var=0.05)
    x, y = _regression_problem(n, m)
    k = net.kernels(x)
    r, tol = 1e-3, 1e-10
    for K in (k.nngp, k.ntk):
        Kxx, Ksx = K[:n, :n], K[n:, :n]
        if tmp_path is not None:
            mm = np.lib.format.open_memmap(tmp_path / "k.npy", mode="w+", dtype=np.float64,
                                           shape=(n, n))
            mm[:] = Kxx
            Kxx = mm
        cg = kn.kernel_regression(Kxx, y, Ksx, diag_reg=r, tol=tol, block=block,
                                  preconditioner=preconditioner)
        direct = kn.kernel_regression(K[:n, :n], y, Ksx, diag_reg=r, solver="direct")
        assert cg.residual <= tol and cg.iterations > 0
        # |mean_cg - mean| <= |k_*i| |(K + r I)^-1| |residual| <= |k_*i| tol |y| / r
        bound = np.linalg.norm(Ksx, axis=1) * tol * np.linalg.norm(y) / r
        assert np.all(np.abs(cg.mean - direct.mean) <= bound)
        # and the direct solver is what kernels.predict computes
        ref = np.linalg.solve(K[:n, :n] + r * np.eye(n), y)
        np.testing.assert_allclose(direct.coef, ref, rtol=1e-6, atol=1e-8 * np.abs(ref).max())


@pytest.mark.parametrize("preconditioner", ["block", "jacobi"])
def test_cg_matches_direct_small(preconditioner, tmp_path):
    _check_cg_against_direct(700, 50, preconditioner, tmp_path)


@pytest.mark.slow
def test_cg_matches_direct_n5000(tmp_path):
    _check_cg_against_direct(5000, 200, "block", tmp_path, block=1024)


def test_cg_on_dask_kernel():
    dask = pytest.importorskip("dask")
    net = kn.MLP(3, kn.ReLU(), weight_var=2.0, bias_var=0.05)
    n, r, tol = 600, 1e-3, 1e-10
    x, y = _regression_problem(n, 40)
    k = net.kernels(x)
    dk = kn.dask_kernels(net, x[:n], chunks=150)
    dc = kn.dask_kernels(net, x[n:], x[:n], chunks=(40, 150))
    direct = kn.kernel_regression(k.nngp[:n, :n], y, k.nngp[n:, :n], diag_reg=r,
                                  solver="direct")
    bound = np.linalg.norm(k.nngp[n:, :n], axis=1) * tol * np.linalg.norm(y) / r
    with dask.config.set(scheduler="threads"):
        for pre in ("block", "jacobi"):
            a = kn.kernel_regression(dk.nngp, y, dc.nngp, diag_reg=r, tol=tol, block=200,
                                     preconditioner=pre)
            assert a.residual <= tol and a.iterations > 0
            assert np.all(np.abs(a.mean - direct.mean) <= bound)
        # the direct solver loads a dask kernel
        d = kn.kernel_regression(dk.nngp, y, dc.nngp, diag_reg=r, solver="direct")
    np.testing.assert_array_equal(d.coef, direct.coef)       # the same Cholesky solve
    # the test-train product is summed by dask over 4 column blocks: rounding only
    np.testing.assert_allclose(d.mean, direct.mean, rtol=1e-12, atol=1e-12)


def test_predict_cg_matches_direct():
    net = kn.MLP(3, kn.ReLU(), weight_var=2.0, bias_var=0.05)
    x, y = _regression_problem(300, 20)
    r, tol = 1e-3, 1e-10
    for kind in ("nngp", "ntk"):
        d = kn.predict(net, x[:300], y, x[300:], kind=kind, diag_reg=r, compute_cov=False)
        c = kn.predict(net, x[:300], y, x[300:], kind=kind, diag_reg=r, compute_cov=False,
                       solver="cg", tol=tol)
        K = getattr(net.kernels(x[300:], x[:300]), kind)
        bound = np.linalg.norm(K, axis=1) * tol * np.linalg.norm(y) / r
        assert np.all(np.abs(c.mean - d.mean) <= bound)
    with pytest.raises(ValueError, match="compute_cov=False"):
        kn.predict(net, x[:300], y, x[300:], solver="cg")
    with pytest.raises(ValueError, match="solver"):
        kn.predict(net, x[:300], y, x[300:], solver="lu")


def test_cg_bad_input():
    K = np.eye(5)
    with pytest.raises(ValueError, match="square"):
        kn.kernel_regression(np.ones((5, 4)), np.ones(5))
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        kn.kernel_regression(K, np.ones(4))
    with pytest.raises(ValueError, match="tol must be > 0"):
        kn.kernel_regression(K, np.ones(5), tol=0.0)
    with pytest.raises(ValueError, match="preconditioner"):
        kn.kernel_regression(K, np.ones(5), preconditioner="ilu")
    with pytest.raises(ValueError, match="5 columns"):
        kn.kernel_regression(K, np.ones(5), np.ones((3, 4)))
    with pytest.raises(ValueError, match="block must be >= 1"):
        kn.kernel_regression(K, np.ones(5), block=0)
    with pytest.raises(TypeError, match="memmap or dask"):
        kn.kernel_regression([[1.0]], np.ones(1))
    with pytest.raises(TypeError, match="real numbers"):
        kn.kernel_regression(K.astype(complex), np.ones(5))
    with pytest.raises(ValueError, match="solver"):
        kn.kernel_regression(K, np.ones(5), solver="lu")


# ----------------------------------------------------------------------------------------------
# N = 16,000 into memory maps
# ----------------------------------------------------------------------------------------------
def _rss_anon_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise RuntimeError("no RssAnon in /proc/self/status")


@pytest.mark.slow
def test_n16000_into_memmaps(tmp_path):
    n, d = 16000, 784
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    net = kn.MLP(10, kn.ReLU(), weight_var=2.0, bias_var=0.05)
    net.kernels(x[:64], out=(np.empty((64, 64)), np.empty((64, 64))))   # compile first
    a = np.lib.format.open_memmap(tmp_path / "nngp.npy", mode="w+", dtype=np.float64,
                                  shape=(n, n))
    b = np.lib.format.open_memmap(tmp_path / "ntk.npy", mode="w+", dtype=np.float64,
                                  shape=(n, n))
    before = _rss_anon_kb()
    peak = [before]
    stop = threading.Event()

    def sample():                       # peak RssAnon, every 50 ms
        while not stop.wait(0.05):
            peak[0] = max(peak[0], _rss_anon_kb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        net.kernels(x, out=(a, b), progress=False)
    finally:
        stop.set()
        sampler.join()
    grown_mb = (max(peak[0], _rss_anon_kb()) - before) / 1024
    assert grown_mb < 600, grown_mb
    rows = np.r_[3:9, 12000:12004]
    cols = np.r_[0:5, 7000:7003, 15990:16000]
    block = net.kernels(x[rows], x[cols])
    np.testing.assert_array_equal(a[np.ix_(rows, cols)], block.nngp)
    np.testing.assert_array_equal(b[np.ix_(rows, cols)], block.ntk)
