"""Every ```python block of README.md runs as written, as a script in a fresh process.

Conventions a README block may use:

- a block whose first line is ``# file: NAME.py`` is not run but written to NAME.py in the
  directory where the later blocks run (e.g. a small experiment module for ``limits.sweep``);
- a block right after a line ``<!-- readme-test: skip REASON -->`` is skipped with that reason
  (for what cannot run here, such as a dask cluster at a made-up address).

Blocks run one after the other in one temporary directory, each as ``python block_N.py`` (so an
``if __name__ == "__main__":`` guard behaves as it does for a user), with this checkout first on
``PYTHONPATH`` and matplotlib's Agg backend.
"""
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*(.*?)\s*-->")

# Known failures, keyed by a string of the failing block: strict, so that the test reports
# (XPASS -> failure) as soon as the README is fixed and the mark must go.
XFAIL = {}
# Blocks that need more than 60 s (marked slow); none at present.
SLOW = {}


def _blocks():
    text = README.read_text()
    out = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = _SKIP.search(before)
        out.append((line, m.group(1), skip.group(1) or "marked skip" if skip else None))
    return out


BLOCKS = _blocks()


def _params():
    params = []
    for k, (line, code, skip) in enumerate(BLOCKS):
        marks = []
        for key, reason in XFAIL.items():
            if key in code:
                marks.append(pytest.mark.xfail(strict=True, reason=reason))
        for key in SLOW:
            if key in code:
                marks.append(pytest.mark.slow)
        params.append(pytest.param(k, marks=marks, id=f"README.md:{line}"))
    return params


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    for line, code, skip in BLOCKS:                      # the '# file:' blocks, for every run
        first = code.split("\n", 1)[0].strip()
        if first.startswith("# file:"):
            (d / first[len("# file:"):].strip()).write_text(code)
    return d


def test_readme_has_python_blocks():
    assert BLOCKS, "README.md has no ```python blocks"


@pytest.mark.parametrize("k", _params())
def test_readme_block_runs(k, workdir):
    line, code, skip = BLOCKS[k]
    if skip:
        pytest.skip(skip)
    if code.split("\n", 1)[0].strip().startswith("# file:"):
        pytest.skip("a file block: written, not run")
    script = workdir / f"block_{k}.py"
    script.write_text(code)
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in
                                          os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                          if p]))
    r = subprocess.run([sys.executable, script.name], cwd=workdir, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (f"README.md block at line {line} failed:\n{code}\n"
                               f"--- stderr ---\n{r.stderr[-3000:]}")
