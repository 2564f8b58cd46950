"""The command line: python -m limits validate / kernel / sde / phase-diagram, python -m kernels."""
import os
import subprocess
import sys

import numpy as np
import pytest

import kernels as kn


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=900)


def test_kernel_subcommand_matches_library(tmp_path):
    x = np.random.default_rng(3).standard_normal((5, 4))
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "k.npz"
    r = _run("limits", "kernel", str(tmp_path / "x.npy"), "--depth", "7", "--bias-var", "0.1",
             "--save", str(out))
    assert r.returncode == 0, r.stderr
    got = np.load(out)
    k = kn.MLP(7, kn.ReLU(), 2.0, 0.1).kernels(x)
    np.testing.assert_array_equal(got["nngp"], k.nngp)
    np.testing.assert_array_equal(got["ntk"], k.ntk)


def test_help_explains_options():
    r = _run("limits", "validate", "--help")
    assert r.returncode == 0
    for opt in ("--quick", "--full", "--out"):
        assert opt in r.stdout


def test_validate_quick_writes_report_and_figures(tmp_path):
    r = _run("limits", "validate", "--quick", "--out", str(tmp_path / "rep"), "--no-progress")
    assert r.returncode == 0, r.stdout + r.stderr
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "**FAIL**" not in report
    assert "| pass |" in report
    pngs = [f for f in os.listdir(tmp_path / "rep") if f.endswith(".png")]
    assert len(pngs) >= 2
    for name in pngs:                       # every figure is linked from the report
        assert f"({name})" in report


def test_validate_exit_status_reports_failure(monkeypatch, tmp_path):
    from limits.validate import _registry as validate

    def failing(ctx):
        return [validate.Result("always fails", "1", "2", "0", False)]

    monkeypatch.setattr(validate, "CHECKS", [validate._Check(failing, "failing", False)])
    monkeypatch.setattr(validate, "_load_check_modules", lambda: None)
    from limits.__main__ import main
    assert main(["validate", "--out", str(tmp_path), "--no-progress"]) == 1
    assert "**FAIL**" in (tmp_path / "report.md").read_text()


def test_kernels_demo_runs():
    r = _run("kernels", "--depths", "1", "10")
    assert r.returncode == 0, r.stderr
    assert "ReLU MLP" in r.stdout and "ResNet" in r.stdout


def test_sde_subcommand_matches_library(tmp_path):
    import limits
    out = tmp_path / "s.npz"
    r = _run("limits", "sde", "--paths", "500", "--times", "0.1", "0.3", "--c-minus", "-1.5",
             "--seed", "4", "--save", str(out), "--plot", str(tmp_path / "p.png"))
    assert r.returncode == 0, r.stderr
    assert "| 0.3 |" in r.stdout
    got = np.load(out)
    sol = limits.solve(limits.CorrelationSDE(0.0, -1.5), 0.3, [0.1, 0.3], paths=500, seed=4)
    np.testing.assert_array_equal(got["values"], sol.values)
    assert (tmp_path / "p.png").stat().st_size > 1000
    r = _run("limits", "sde", "unshaped", "--paths", "200", "--times", "0.1", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "ln(q/q*)" in r.stdout
    r = _run("limits", "sde", "--rho0", "1.5", "--paths", "10")
    assert r.returncode == 2 and "error: " in r.stderr and "rho0" in r.stderr
    assert "Traceback" not in r.stderr


def test_validate_runs_checks_on_an_executor_in_order(monkeypatch, tmp_path):
    import time
    from concurrent.futures import ThreadPoolExecutor

    from limits.validate import _registry as validate

    def slow(ctx):
        time.sleep(0.3)
        return [validate.Result("slow", "1", "1", "0", True)]

    def fast(ctx):
        return [validate.Result("fast", "1", "1", "0", True),
                validate.Result("fast 2", "1", "2", "0", False)]

    def crash(ctx):
        raise RuntimeError("boom")

    monkeypatch.setattr(validate, "CHECKS", [validate._Check(slow, "slow", False),
                                             validate._Check(fast, "fast", False),
                                             validate._Check(crash, "crash", False)])
    monkeypatch.setattr(validate, "_load_check_modules", lambda: None)
    with ThreadPoolExecutor(2) as ex:
        res = validate.run(out=str(tmp_path), progress=False, executor=ex)
    assert [r.name for r in res] == ["slow", "fast", "fast 2", "crash"]
    assert [r.passed for r in res] == [True, True, False, False]
    assert "boom" in res[-1].measured


def test_validate_bad_workers_is_a_clean_error():
    r = _run("limits", "validate", "--workers", "0", "--out", "/tmp/x-unused")
    assert r.returncode == 2 and "--workers" in r.stderr and "Traceback" not in r.stderr
    r = _run("limits", "validate", "--workers", "2", "--dask-scheduler", "tcp://x:1")
    assert r.returncode == 2                       # argparse: mutually exclusive


def test_phase_diagram_subcommand(tmp_path):
    out = tmp_path / "pd.png"
    r = _run("limits", "phase-diagram", "--gammas", "0.6", "1.4", "--widths", "200", "400",
             "800", "--out", str(out), "--no-progress", "--store", str(tmp_path / "s.db"))
    assert r.returncode == 0, r.stderr
    line = next(s for s in r.stdout.splitlines() if s.startswith("gamma' = +0.00"))
    s06, s14 = (float(v.split("(")[0]) for v in line.split(":")[1].split())
    assert s06 < 0 < s14                 # linear (slope < 0) at 0.6, condensed (> 0) at 1.4
    assert out.stat().st_size > 1000
    r = _run("limits", "phase-diagram", "--theory", "--out", str(tmp_path / "t.png"))
    assert r.returncode == 0 and (tmp_path / "t.png").stat().st_size > 1000
    r = _run("limits", "phase-diagram", "--widths", "100", "--out", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr


def test_kernel_subcommand_bad_input_is_a_one_line_error(tmp_path):
    r = _run("limits", "kernel", str(tmp_path / "missing.npy"))
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "bad.npy").write_bytes(b"not a numpy file")
    r = _run("limits", "kernel", str(tmp_path / "bad.npy"))
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    r = _run("limits", "kernel", str(tmp_path / "nan.npy"))
    assert r.returncode == 2 and "NaN" in r.stderr
    r = _run("limits", "kernel", str(tmp_path / "nan.npy"), "--depth", "0")
    assert r.returncode == 2 and "depth" in r.stderr
    r = _run("limits", "sde", "--paths", "abc")
    assert r.returncode == 2 and "invalid int value" in r.stderr        # argparse


def test_validate_runs_on_a_dask_executor(monkeypatch, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    from limits.validate import _registry as validate

    def ok(ctx):
        return [validate.Result("ok", "1", "1", "0", True)]

    def bad(ctx):
        return [validate.Result("bad", "1", "2", "0", False)]

    monkeypatch.setattr(validate, "CHECKS", [validate._Check(ok, "ok", False),
                                             validate._Check(bad, "bad", False)])
    monkeypatch.setattr(validate, "_load_check_modules", lambda: None)
    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=2,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        res = validate.run(out=str(tmp_path), progress=False, executor=client.get_executor())
    assert [(r.name, r.passed) for r in res] == [("ok", True), ("bad", False)]
    assert "**FAIL**" in (tmp_path / "report.md").read_text()


# ----------------------------------------------------------------------------------------------
# help texts, validate --list / --only
# ----------------------------------------------------------------------------------------------
def test_every_option_has_help_and_its_default():
    import argparse

    from limits.__main__ import _parser
    p = _parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    for name, sp in sub.choices.items():
        text = sp.format_help()
        for a in sp._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            assert a.help, (name, a.dest)
            if a.option_strings and a.default is not None:
                assert f"(default: {a.default})" in " ".join(text.split()), (name, a.dest)
    assert "--method" in sub.choices["sde"].format_help()
    desc = " ".join(sub.choices["validate"].format_help().split())
    for capability in ("Monte Carlo", "SDE", "phase diagram", "ResNet weights", "sweep"):
        assert capability in desc
    r = _run("kernels", "--help")
    assert r.returncode == 0 and "(default: 0.0)" in r.stdout


def test_validate_list_and_only(tmp_path):
    r = _run("limits", "validate", "--list")
    assert r.returncode == 0, r.stderr
    names = r.stdout.splitlines()
    assert "NNGP/NTK vs neural-tangents 0.6.5" in names
    assert not any("--full only" in n for n in names)
    r = _run("limits", "validate", "--list", "--full")
    assert any("--full only" in n for n in r.stdout.splitlines())
    r = _run("limits", "validate", "--list", "--only", "NEURAL-tangents", "--only", "fast p*")
    assert r.returncode == 0
    assert r.stdout.splitlines()[:2] == ["NNGP/NTK vs neural-tangents 0.6.5",
                                         "fast path vs layer loop"]
    out = tmp_path / "rep"
    r = _run("limits", "validate", "--only", "neural-tangents", "--out", str(out),
             "--no-progress")
    assert r.returncode == 0, r.stdout + r.stderr
    report = (out / "report.md").read_text()
    assert "NT reference" in report and "deep ReLU" not in report
    r = _run("limits", "validate", "--only", "no such check", "--out", str(out))
    assert r.returncode == 2 and "matches no" in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------------------------
# early, clear errors (issue 21): before any computation, never a traceback
# ----------------------------------------------------------------------------------------------
def _refused(r, *words):
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr
    assert r.stdout == "", r.stdout               # nothing was computed
    for w in words:
        assert w in r.stderr, (w, r.stderr)


def test_kernel_input_files_are_checked(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}, None], dtype=object))
    _refused(_run("limits", "kernel", str(tmp_path / "obj.npy")), "not a numeric .npy array")
    np.savez(tmp_path / "x.npz", x=np.ones((3, 2)))
    _refused(_run("limits", "kernel", str(tmp_path / "x.npz")), ".npz archive", "['x']")
    np.save(tmp_path / "c.npy", np.ones((3, 2)) * 1j)
    _refused(_run("limits", "kernel", str(tmp_path / "c.npy")), "complex")
    np.save(tmp_path / "v.npy", np.ones(3))
    _refused(_run("limits", "kernel", str(tmp_path / "v.npy")), "shape (3,)")


def test_sizes_that_cannot_fit_are_refused_early(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((3, 2)))
    _refused(_run("limits", "kernel", str(tmp_path / "x.npy"), "--depth", str(10 ** 12)),
             "--depth", "needs about", "bytes of memory")
    _refused(_run("limits", "sde", "--paths", str(10 ** 11)), "--paths", "needs about",
             "bytes of memory")
    _refused(_run("limits", "sde", "--paths", "1"), "--paths must be >= 2")


def test_phase_grid_that_overflows_is_refused(tmp_path):
    for g in ("1000", "-1000"):
        _refused(_run("limits", "phase-diagram", "--gammas", g, "--out", str(tmp_path / "p.png")),
                 "gamma", g, "float64")


def test_unwritable_outputs_fail_before_computing(tmp_path):
    missing = tmp_path / "no" / "such" / "dir"
    np.save(tmp_path / "x.npy", np.ones((3, 2)))
    _refused(_run("limits", "sde", "--paths", "100", "--plot", str(missing / "p.png")),
             "--plot", "does not exist")
    _refused(_run("limits", "sde", "--paths", "100", "--save", str(tmp_path)),
             "--save", "is a directory")
    _refused(_run("limits", "kernel", str(tmp_path / "x.npy"), "--save", str(missing / "k")),
             "--save")
    _refused(_run("limits", "phase-diagram", "--out", str(missing / "p.png")), "--out")
    _refused(_run("limits", "phase-diagram", "--theory", "--out", str(missing / "p.png")),
             "--out")
    (tmp_path / "file").write_text("")
    _refused(_run("limits", "validate", "--out", str(tmp_path / "file" / "rep")), "--out")
    assert not list(tmp_path.glob("*.npz")) and not list(tmp_path.glob("*.png"))


def test_kernels_demo_says_what_it_skips():
    r = _run("kernels", "--depths", "1", "2000")
    assert r.returncode == 0, r.stderr
    tanh = r.stdout.split("tanh MLP")[1].split("ReLU ResNet")[0]
    assert "skipped" in tanh and "--tanh-max-depth" in tanh
    r = _run("kernels", "--depths", "1", "3", "--tanh-max-depth", "3")
    assert "skipped" not in r.stdout


def test_one_row_phase_diagram_is_a_curve_not_a_heat_map():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.collections import QuadMesh

    from limits import phase, plots
    g = np.array([0.6, 1.0, 1.4])
    S, SE = np.array([[-0.3, 0.02, 0.2]]), np.array([[0.04, 0.1, 0.1]])
    d = phase.Diagram(g, np.array([0.0]), (200, 400), (0,), S, SE, np.zeros((1, 3, 1, 2)),
                      phase.zero_crossings(g, S), [])
    fig = plots.slope_heatmap(d)
    ax = fig.axes[0]
    assert not any(isinstance(c, QuadMesh) for c in ax.collections)
    assert ax.get_xlabel() == "$\\gamma$" and ax.get_ylabel() == "$S_w$"
    assert len(ax.containers) == 1                          # the error bars of S_w(gamma)
    d2 = phase.Diagram(g, np.array([0.0, 0.5]), (200, 400), (0,), np.vstack([S, S]),
                       np.vstack([SE, SE]), np.zeros((2, 3, 1, 2)),
                       phase.zero_crossings(g, np.vstack([S, S])), [])
    assert any(isinstance(c, QuadMesh) for c in plots.slope_heatmap(d2).axes[0].collections)
