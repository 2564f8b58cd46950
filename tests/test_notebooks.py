"""Execute the notebooks in a fast configuration so they never rot, and check that every cell that
draws a figure shows it (an ``image/png`` output under Jupyter's inline backend: a library module
that switched matplotlib to Agg would leave these cells without images)."""
import os
import pathlib
import re

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

# a call of a project plot function (limits.plots.xxx(...)) or of pyplot (plt.xxx(...))
_PLOTTING = re.compile(r"\b(?:plots|plt)\.\w+\s*\(")


def _plotting(source):
    code = "\n".join(line.split("#")[0] for line in source.splitlines()
                     if not line.lstrip().startswith(("import ", "from ")))
    return bool(_PLOTTING.search(code))


def test_plotting_cells_are_recognised():
    assert _plotting("fig = limits.plots.sde_paths(sol)")
    assert _plotting("fig, ax = plt.subplots(1, 2)\nax[0].plot(x, y)")
    assert not _plotting("import matplotlib.pyplot as plt\nimport limits.plots\nx = 1")
    assert not _plotting("print(1)  # plt.show() would draw")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_shows_its_figures(path):
    nb = nbformat.read(path, as_version=4)
    # fast configuration: the first code cell defines FAST = False; switch it on
    for cell in nb.cells:
        if cell.cell_type == "code" and "FAST = False" in cell.source:
            cell.source = cell.source.replace("FAST = False", "FAST = True")
            break
    else:
        pytest.fail(f"{path.name} has no 'FAST = False' switch")
    # Jupyter's inline backend, whatever MPLBACKEND the test environment sets
    nb.cells.insert(0, nbformat.v4.new_code_cell("%matplotlib inline"))
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    plotting = [c for c in nb.cells[1:] if c.cell_type == "code" and _plotting(c.source)]
    assert plotting, f"{path.name}: no plotting cell found"
    for cell in plotting:
        images = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        assert images, (f"{path.name}: a plotting cell shows no image/png output "
                        f"(was the matplotlib backend switched?):\n{cell.source[:300]}")
    # the documentation's gallery renders these executed copies (docs/build.py)
    out = os.environ.get("NN_LIMITS_EXECUTED_NOTEBOOKS")
    if out:
        del nb.cells[0]                        # the inserted "%matplotlib inline"
        pathlib.Path(out).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(pathlib.Path(out) / path.name))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"
