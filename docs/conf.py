"""Sphinx configuration of the nn-limits documentation (build: see docs/README.md)."""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

project = "nn-limits"
author = "The nn-limits developers"
copyright = "2026, the nn-limits developers"
release = version = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",      # NumPy-style docstrings
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",                  # Markdown pages and the notebook gallery
]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"undoc-members": False, "show-inheritance": False}
napoleon_use_ivar = True        # dataclass attributes as fields, not duplicate objects

# The notebooks are rendered with the outputs of the test run (tests/test_notebooks.py writes the
# executed copies to $NN_LIMITS_EXECUTED_NOTEBOOKS; docs/gallery/ is filled from there by
# docs/build.py).  The docs build never executes them itself.
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "README.md", "**/.ipynb_checkpoints"]
html_theme = "alabaster"
html_title = "nn-limits"
# Type words in parameter lists ("array (N, d)") are cross-referenced by the Python domain; a
# word that names an attribute of two classes ("d", "depth") is ambiguous, not an error.
suppress_warnings = ["ref.python"]
# Docstrings write absolute values as |delta| and |delta_k| (plain text, as in the formulas of
# theory/training.md); render them literally rather than as reST substitutions.
rst_prolog = r"""
.. |delta| replace:: \|delta\|
.. |delta_k| replace:: \|delta_k\|
"""
