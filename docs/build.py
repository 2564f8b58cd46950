"""Build the documentation site: python docs/build.py [--notebooks DIR] [--out DIR].

Copies the executed notebooks (written by the test run, tests/test_notebooks.py, into
$NN_LIMITS_EXECUTED_NOTEBOOKS) into docs/gallery/, then runs Sphinx with warnings as errors.
Without executed notebooks it renders notebooks/ as stored (no outputs) and says so.
"""
import argparse
import os
import pathlib
import subprocess
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--notebooks", default=os.environ.get("NN_LIMITS_EXECUTED_NOTEBOOKS"),
                    help="directory of executed notebooks (default: $NN_LIMITS_EXECUTED_NOTEBOOKS)")
    ap.add_argument("--out", default=str(DOCS / "_build" / "html"), help="output directory")
    args = ap.parse_args(argv)
    src = pathlib.Path(args.notebooks) if args.notebooks else None
    if src is None or not any(src.glob("*.ipynb")):
        print("docs: no executed notebooks given; the gallery shows notebooks/ without outputs",
              file=sys.stderr)
        src = ROOT / "notebooks"
    gallery = DOCS / "gallery"
    for old in gallery.glob("*.ipynb"):
        old.unlink()
    for nb in sorted(src.glob("*.ipynb")):
        # notebooks link the theory pages as ../docs/theory/...: from docs/gallery/ that is
        # ../theory/...
        text = nb.read_text(encoding="utf-8").replace("](../docs/", "](../")
        (gallery / nb.name).write_text(text, encoding="utf-8")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-b", "html",
           str(DOCS), args.out]
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
