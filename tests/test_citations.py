"""Every citation of the theory pages in code, help texts and notebooks resolves to a file and a
section of this repository (docs/theory/*.md), and the paper keys resolve to docs/references.md."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
THEORY = ROOT / "docs" / "theory"
CITE = re.compile(r"(?:theory/)?\b(kernels|sde|training)\.md(?: ?§ ?(\d+[a-z]?(?:\.\d+)?)(?: ([A-D])\b)?)?")


def _sources():
    for sub in ("kernels", "limits", "benchmarks", "notebooks", "tests"):
        for p in sorted((ROOT / sub).rglob("*")):
            if p.suffix in (".py", ".ipynb") and p.name != "test_citations.py":
                yield p


def _citations():
    out = set()
    for p in _sources():
        for m in CITE.finditer(p.read_text(encoding="utf-8")):
            out.add((m.group(1), m.group(2), m.group(3), p.relative_to(ROOT).as_posix()))
    return sorted(out, key=lambda c: tuple(x or "" for x in c))


def _section_lines(text, sec):
    """The lines of section `sec` (e.g. '2.4', '5b', '6') of a markdown page: from its heading
    to the next heading of the same or a higher level."""
    lines = text.splitlines()
    head = re.compile(r"^(#+) " + re.escape(sec) + r"[. ]")
    for i, line in enumerate(lines):
        m = head.match(line)
        if m:
            level = len(m.group(1))
            j = i + 1
            while j < len(lines) and not re.match(r"^#{1,%d} " % level, lines[j]):
                j += 1
            return lines[i:j]
    return None


CITATIONS = _citations()


def test_there_are_citations():
    assert len(CITATIONS) > 50


@pytest.mark.parametrize("page,sec,sub,where", CITATIONS,
                         ids=[f"{c[0]}§{c[1]}{c[2] or ''}@{c[3]}" for c in CITATIONS])
def test_citation_resolves(page, sec, sub, where):
    path = THEORY / f"{page}.md"
    assert path.is_file(), f"{where} cites {page}.md, which is not in docs/theory/"
    if sec is None:
        return
    text = path.read_text(encoding="utf-8")
    body = _section_lines(text, sec)
    if body is None and "." in sec:       # "§5.4": item 4 of the numbered list of section 5
        top, item = sec.split(".", 1)
        parent = _section_lines(text, top)
        if parent is not None and any(line.startswith(f"{item}. ") for line in parent):
            body = parent
    assert body is not None, f"{where} cites {page}.md §{sec}, which has no such heading"
    if sub is not None:
        assert any(line.startswith(f"{sub}.") for line in body), (
            f"{where} cites {page}.md §{sec} {sub}, which has no item {sub}.")


def test_paper_keys_resolve():
    refs = (ROOT / "docs" / "references.md").read_text(encoding="utf-8")
    for key in ("[P1] (SDE)", "[P2] (SDE)", "P1 (training)", "P2 (training)", "P&F"):
        assert key in refs
    for arxiv in ("2310.12079", "2206.02768", "2007.07497", "2105.12245", "1905.11065"):
        assert f"arxiv.org/abs/{arxiv}" in refs
